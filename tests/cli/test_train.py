"""`textgen train` on the command line: with no flags it applies the defaults rule."""

import json

import pytest


@pytest.mark.slow
def test_train_with_no_flags_uses_the_rule_and_a_time_budget_alone_ends_it(
    tmp_path, prepared, textgen_cli
):
    out = tmp_path / "run"
    flags = ["--max-minutes", "0.1", "--threads", "1", "--no-progress", "--json"]
    r = textgen_cli("train", "--data", str(prepared), "--out", str(out), *flags, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "defaults (textgen/train/defaults.py" in r.stdout and "1x640 LSTM" in r.stdout
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["stop_reason"] == "max_minutes"  # no hidden step cap
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["max_steps"] == 0 and config["model"]["hidden_size"] == 640
    assert config["train"]["seq_len"] == 64  # a short time budget: BPTT chunks of 64
    assert config["train"]["eval_every"] == 400  # a small validation split: 819,200 chars
    assert config["train"]["weight_decay"] == 0.1 and config["train"]["ema"] == 0.0
    assert config["defaults"]["reasons"] and config["defaults"]["overridden_by_user"] == []
    assert "limits: 0.1 minutes (time budget; no step limit)" in r.stderr


def test_a_long_budget_over_a_small_corpus_gets_the_bundled_models_levers(
    tmp_path, prepared, textgen_cli
):
    out = tmp_path / "run"
    flags = ["--max-minutes", "60", "--max-steps", "2", "--threads", "1", "--no-progress"]
    r = textgen_cli("train", "--data", str(prepared), "--out", str(out), *flags, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "locked dropout, weight drop 0.4, weight averaging (ema 0.999)" in r.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["hidden_size"] == 768 and config["model"]["weight_drop"] == 0.4
    assert config["model"]["dropout_mask"] == "locked" and config["train"]["ema"] == 0.999
    assert config["train"]["weight_decay"] == 0.1
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2


def test_a_relu_rnn_trains_saves_and_generates(tmp_path, prepared, textgen_cli):
    """--cell rnn --activation relu: trained, saved, reloaded as a ReLU RNN, generates."""
    from textgen.model.checkpoint import load_model

    out = tmp_path / "relu"
    flags = ["--cell", "rnn", "--activation", "relu", "--hidden-size", "16", "--embed-dim", "8"]
    flags += ["--max-steps", "3", "--threads", "1", "--no-progress", "--clip", "1.0"]
    r = textgen_cli("train", "--data", str(prepared), "--out", str(out), *flags, timeout=600)
    assert r.returncode == 0, r.stderr
    model, _, ckpt = load_model(out)
    assert ckpt["model_config"]["activation"] == "relu" and model.rnn.nonlinearity == "relu"
    g = textgen_cli("generate", "--checkpoint", str(out), "--prompt", "中国", "--seed", "1")
    assert g.returncode == 0 and g.stdout.strip(), g.stderr
    bad = textgen_cli(
        "train", "--data", str(prepared), "--out", str(tmp_path / "x"), "--activation", "relu"
    )
    assert bad.returncode != 0 and "activation 'relu' is for the plain RNN" in bad.stderr
