"""Shared fixtures: real slices of the default corpus, tiny models and runs, the CLI, PNG checks.

Test modules never import each other or this file: what more than one of them needs is a
fixture here (or in a subfolder's conftest.py); a factory fixture returns a callable.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import textgen
from textgen.data.corpus import default_corpus_path

# The bundled model (checkpoints/default's), as the package ships it.
BUNDLED = Path(textgen.__file__).parent / "default_model" / "model.pt"


def read_corpus_lines(n: int, start: int = 0) -> list[str]:
    """The first n lines (after `start`) of the real PFR-tagged People's Daily file."""
    out = []
    with open(default_corpus_path(), encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= start + n:
                break
            if i >= start:
                out.append(line)
    return out


def tiny_model_config(data: Path, **kw):
    """A 1x16 LSTM (8-wide embedding) for the prepared corpus at `data`; `kw` overrides."""
    from textgen.data.dataset import PreparedCorpus
    from textgen.model.config import ModelConfig

    args = {"embed_dim": 8, "hidden_size": 16, "num_layers": 1, "dropout": 0.1, **kw}
    return ModelConfig(vocab_size=len(PreparedCorpus.open(data).vocab), **args)


def tiny_train_config(**kw):
    """30 steps of batch 4 x 16, on one thread, evaluating and saving every 10; `kw` overrides."""
    from textgen.train.config import TrainConfig

    args = {
        "batch_size": 4,
        "seq_len": 16,
        "max_steps": 30,
        "eval_every": 10,
        "save_every": 10,
        "warmup_steps": 2,
        "progress": False,
        "threads": 1,
        **kw,
    }
    return TrainConfig(**args)


def train_tiny_checkpoint(prepared: Path, out: Path) -> Path:
    """A real (tiny, briefly trained) checkpoint: 1x16 LSTM, about a second of training."""
    from textgen.train.trainer import Trainer

    Trainer(prepared, out, tiny_model_config(prepared), tiny_train_config(max_steps=10)).run()
    return out / "last.pt"


# ----------------------------------------------------------------- corpus


@pytest.fixture(scope="session")
def corpus_lines() -> Callable[..., list[str]]:
    """``corpus_lines(n, start=0)``: real lines of the PFR-tagged People's Daily file."""
    return read_corpus_lines


@pytest.fixture(scope="session")
def pfr_slice(tmp_path_factory) -> Path:
    """400 real PFR lines (~40k characters) as a file."""
    path = tmp_path_factory.mktemp("corpus") / "slice.txt"
    path.write_text("".join(read_corpus_lines(400)), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, pfr_slice) -> Path:
    """The real slice prepared at character level (about 36k train tokens)."""
    from textgen.data.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("prepared") / "slice"
    prepare(PrepareConfig(sources=[str(pfr_slice)], out=str(out)), progress=False)
    return out


# ----------------------------------------------------------------- tiny models and runs


@pytest.fixture(scope="session")
def tiny_model():
    """``tiny_model(data, **overrides)`` -> the ModelConfig of a 1x16 LSTM for `data`."""
    return tiny_model_config


@pytest.fixture(scope="session")
def tiny_train():
    """``tiny_train(**overrides)`` -> a TrainConfig of 30 short single-threaded steps."""
    return tiny_train_config


@pytest.fixture(scope="session")
def train_tiny() -> Callable[[Path, Path], Path]:
    """``train_tiny(prepared, out)`` -> out/last.pt, a 1x16 LSTM trained for 10 steps."""
    return train_tiny_checkpoint


@pytest.fixture(scope="session")
def ckpt(prepared, tmp_path_factory) -> Path:
    """One tiny trained checkpoint (see ``train_tiny``) for the whole session."""
    return train_tiny_checkpoint(prepared, tmp_path_factory.mktemp("gen_ckpt"))


@pytest.fixture(scope="session")
def gen(ckpt):
    """A TextGenerator over ``ckpt``."""
    from textgen.inference.generator import TextGenerator

    return TextGenerator.from_checkpoint(ckpt)


@pytest.fixture(scope="session")
def generate():
    """``generate(gen, prompt="中国", **config)``: one GenerationResult."""
    from textgen.inference.sampling import GenerationConfig

    def run(gen, prompt: str = "中国", **kw):
        return gen.generate(prompt, GenerationConfig(**kw))

    return run


@pytest.fixture(scope="session")
def bundled_checkpoint() -> Path:
    """textgen/default_model/model.pt: the bundled model."""
    return BUNDLED


@pytest.fixture(scope="session")
def runs(tmp_path_factory, prepared) -> Path:
    """Real tiny checkpoints trained on the prepared slice: root/lstm and root/rnn (2 layers)."""
    from textgen.train.trainer import Trainer

    root = tmp_path_factory.mktemp("runs")
    for cell in ("lstm", "rnn"):
        cfg = tiny_model_config(prepared, cell=cell, num_layers=2)
        Trainer(prepared, root / cell, cfg, tiny_train_config(max_steps=12)).run()
    return root


@pytest.fixture
def one_thread():
    """Torch on one thread during the test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------- the command line


@pytest.fixture(scope="session")
def textgen_cli() -> Callable[..., subprocess.CompletedProcess]:
    """``textgen_cli(*args, timeout=300, python=sys.executable, **run_kw)``: `python -m textgen
    ARGS`, output captured."""

    def cli(
        *args: str, timeout: float = 300, python: str = sys.executable, **kw
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [python, "-m", "textgen", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )

    return cli


# ----------------------------------------------------------------- figures


def _check_png(
    path: Path, size: tuple[float, float], colors: list[tuple[float, float, float]], dpi: int = 100
) -> np.ndarray:
    from matplotlib import image

    pixels = image.imread(path)  # (rows, columns, RGBA) floats in [0, 1]
    want = (round(size[1] * dpi), round(size[0] * dpi))
    assert pixels.shape[:2] == want, f"{path.name}: {pixels.shape[:2]} pixels, not {want}"
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05, f"{path.name} is (nearly) one colour"
    for color in colors:
        hits = int((np.abs(rgb - np.array(color)).max(axis=-1) < 0.02).sum())
        assert hits > 100, f"{path.name}: only {hits} pixels of the line colour {color}"
    return pixels


@pytest.fixture(scope="session")
def check_png() -> Callable[..., np.ndarray]:
    """``check_png(path, size=(w, h) inches, colors=[rgb, ...])``: a real figure, not a blank.

    Its size in pixels is the figure's size x 100 dpi (textgen.evaluation.plots saves at 100),
    it is not one flat colour, and each line colour given covers more than 100 pixels.
    """
    return _check_png


@pytest.fixture(scope="session")
def tab10() -> Callable[[int], tuple[float, float, float]]:
    """Matplotlib's tab10 colours (the default line colours C0, C1, ...) as RGB in [0, 1]."""
    from matplotlib import colormaps

    return lambda i: tuple(colormaps["tab10"](i)[:3])
