"""The bundled default model: present in the package, small, loadable, and used by default."""

import json
import os
from pathlib import Path

import torch

import textgen
from textgen.model import checkpoint
from textgen.model.checkpoint import default_checkpoint

BUNDLED = Path(textgen.__file__).parent / "default_model"


def test_bundled_model_is_found_and_small():
    path = BUNDLED / "model.pt"
    assert path.is_file() and path.stat().st_size < 15_000_000
    assert (BUNDLED / "README.md").is_file() and (BUNDLED / "train.toml").is_file()
    ckpt = checkpoint.load(path)
    assert ckpt["kind"] == "inference" and "optimizer" not in ckpt
    assert all(t.dtype == torch.float16 for t in ckpt["model"].values() if t.is_floating_point())
    assert ckpt["tokenizer"]["normalization"]["name"] == "textgen-zh-v1"


def test_generate_without_checkpoint_uses_the_bundled_model(textgen_cli):
    env = {k: v for k, v in os.environ.items() if k != "TEXTGEN_CHECKPOINT"}
    if "TEXTGEN_CHECKPOINT" not in os.environ:
        assert default_checkpoint().resolve() == (BUNDLED / "model.pt").resolve()
    args = ["--prompt", "中国", "--max-new-tokens", "20", "--seed", "1", "--json"]
    run = textgen_cli("generate", *args, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    vocab = set(checkpoint.load(BUNDLED / "model.pt")["tokenizer"]["vocab"]["tokens"])
    # --json prints /v1/generate's body: text, finish_reason and usage of choice 0 on top
    text, choices = result["text"], result["choices"]
    assert len(choices) == 1 and choices[0]["text"] == text and result["id"] == "gen-1"
    assert result["model"].startswith("textgen-model-") and result["prompt"] == "中国"
    assert result["finish_reason"] == choices[0]["finish_reason"] in ("length", "stop")
    assert result["usage"]["completion_tokens"] == choices[0]["tokens"] and result["timing"]
    assert 0 < len(text) <= 20 and set(text) <= vocab
    assert run.stdout.startswith(text)  # streamed to the terminal first, then the JSON line


def test_bundled_recipe_is_the_one_that_made_the_model():
    """train.toml (what scripts/default_model.sh trains) matches the config the model was trained with."""
    import tomllib

    recipe = tomllib.loads((BUNDLED / "train.toml").read_text(encoding="utf-8"))
    ckpt = checkpoint.load(BUNDLED / "model.pt")
    for table, used in (("model", ckpt["model_config"]), ("train", ckpt["train_config"])):
        differs = {k: (v, used.get(k)) for k, v in recipe[table].items() if used.get(k) != v}
        assert not differs, f"train.toml [{table}] differs from the bundled model's: {differs}"
    assert ckpt["data"]["path"] == "data/prepared/pd1998"
