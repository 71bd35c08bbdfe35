"""Shared fixtures: small real slices of the default corpus, written to temporary files."""

from __future__ import annotations

from pathlib import Path

import pytest

from textgen.data.corpus import default_corpus_path


def corpus_lines(n: int, start: int = 0) -> list[str]:
    """The first n lines (after `start`) of the real PFR-tagged People's Daily file."""
    out = []
    with open(default_corpus_path(), encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= start + n:
                break
            if i >= start:
                out.append(line)
    return out


@pytest.fixture(scope="session")
def pfr_slice(tmp_path_factory) -> Path:
    """400 real PFR lines (~40k characters) as a file."""
    path = tmp_path_factory.mktemp("corpus") / "slice.txt"
    path.write_text("".join(corpus_lines(400)), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, pfr_slice) -> Path:
    """The real slice prepared at character level (about 36k train tokens)."""
    from textgen.data.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("prepared") / "slice"
    prepare(PrepareConfig(sources=[str(pfr_slice)], out=str(out)), progress=False)
    return out


def tiny_model(data: Path, **kw):
    from textgen.data.dataset import PreparedCorpus
    from textgen.model.config import ModelConfig

    args = {"embed_dim": 8, "hidden_size": 16, "num_layers": 1, "dropout": 0.1, **kw}
    return ModelConfig(vocab_size=len(PreparedCorpus.open(data).vocab), **args)


def tiny_train(**kw):
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
