"""The defaults rule (textgen/train/defaults.py) and what `textgen train` does with no flags."""

import json
import logging
import subprocess
import sys

from tests.conftest import tiny_model, tiny_train
from textgen.train import defaults
from textgen.train.runlog import read_metrics
from textgen.train.trainer import Trainer


def test_rule_follows_budget_corpus_and_vocabulary():
    short = defaults.choose(train_chars=1_700_000, vocab_size=4689, minutes=5)
    assert short.model == {"cell": "lstm", "num_layers": 1, "embed_dim": 256, "hidden_size": 512,
                           "softmax": "adaptive", "dropout": 0.1}  # fmt: skip
    assert short.train["lr"] == 6e-3 and short.train["warmup_steps"] == 50
    long = defaults.choose(train_chars=1_700_000, vocab_size=4689, minutes=70)
    assert long.model["hidden_size"] == 768 and long.model["dropout"] == 0.25
    assert long.train["lr"] == 4e-3
    # a small corpus seen many times over in the budget gets more dropout
    small = defaults.choose(train_chars=100_000, vocab_size=1500, minutes=5)
    assert small.model["dropout"] == 0.25 and small.model["softmax"] == "full"
    assert any("passes" in r for r in small.reasons) and len(small.reasons) >= 4


def test_user_values_win_and_are_reported():
    choice = defaults.choose(1_000_000, 5000, 15)
    model, train = {"hidden_size": 128}, {"lr": 1e-3}
    overridden = defaults.apply(choice, model, train)
    assert model["hidden_size"] == 128 and train["lr"] == 1e-3
    assert model["cell"] == "lstm" and train["warmup_steps"] == 50
    assert sorted(overridden) == ["hidden_size", "lr"]


def test_train_with_no_flags_uses_the_rule_and_a_time_budget_alone_ends_it(tmp_path, prepared):
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "textgen", "train", "--data", str(prepared), "--out", str(out),
         "--max-minutes", "0.1", "--threads", "1", "--no-progress", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "defaults (textgen/train/defaults.py" in r.stdout and "1x512 LSTM" in r.stdout
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["stop_reason"] == "max_minutes"  # no hidden step cap
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["max_steps"] == 0 and config["model"]["hidden_size"] == 512
    assert config["defaults"]["reasons"] and config["defaults"]["overridden_by_user"] == []
    assert "limits: 0.1 minutes (time budget; no step limit)" in r.stderr


def test_log_lines_without_a_terminal_and_samples_at_evaluation(tmp_path, prepared, caplog):
    cfg = tiny_train(max_steps=20, max_minutes=60, eval_every=10, log_every_s=0, sample_chars=12)
    with caplog.at_level(logging.INFO, logger="textgen.train.trainer"):
        Trainer(prepared, tmp_path / "r", tiny_model(prepared), cfg).run()
    lines = [r.getMessage() for r in caplog.records]
    progress = [m for m in lines if m.startswith("step ") and "chars/s" in m]
    assert len(progress) == 20 and all("bpc" in m and "ETA" in m for m in progress)
    assert "grad-norm" in progress[0] and "clipped" in progress[0]
    assert any(m.startswith("limits: 60 minutes or 20 steps, whichever") for m in lines)
    assert any("the step limit will end this run" in m for m in lines)
    evals = [row for row in read_metrics(tmp_path / "r" / "metrics.jsonl") if "val_bpc" in row]
    assert len(evals) == 2 and all(len(row["sample"]) >= 12 + 4 for row in evals)
    assert any("sample:" in m for m in lines)


def test_word_level_reports_bits_per_character(tmp_path, pfr_slice):
    from textgen.data.prepare import PrepareConfig, prepare

    words = tmp_path / "w"
    prepare(PrepareConfig(sources=[str(pfr_slice)], out=str(words), level="word"), progress=False)
    Trainer(words, tmp_path / "r", tiny_model(words), tiny_train(max_steps=10)).run()
    row = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if "val_bpc" in r][-1]
    assert row["val_bits_per_token"] > 1.3 * row["val_bpc"]  # a word is ~1.6 characters

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "textgen", *args, "--json"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout, json.loads(r.stdout.strip().splitlines()[-1])

    text, ev = cli("eval", "--checkpoint", str(tmp_path / "r"), "--data", str(words))
    assert ev["chars"] > 1.3 * ev["tokens"] and "bits/char" in text and "bits/token" in text
    # the same bits over characters or over tokens ("chars" is rounded to a whole number)
    assert abs(ev["bpc"] * ev["chars"] - ev["bits_per_token"] * ev["tokens"]) < ev["bpc"]
    assert abs(ev["bpc"] - row["val_bpc"]) < 1e-4
    text, kn = cli("baseline", "--data", str(words), "--order", "3")
    assert kn["val_bits_per_token"] > 1.3 * kn["val_bpc"] and "bits/word" in text


def test_precision_auto_is_measured_not_read_off_the_flags(monkeypatch, caplog):
    import torch

    from textgen import hardware
    from textgen.train.runtime import resolve_precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    hardware.cpu_bf16_pays.cache_clear()
    assert resolve_precision("auto", cpu) == "fp32"  # no instructions: no measurement
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    hardware.cpu_bf16_pays.cache_clear()
    with caplog.at_level(logging.INFO, logger="textgen.hardware"):
        chosen = resolve_precision("auto", cpu)
    said = [r.getMessage() for r in caplog.records if "precision auto" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith(f"-> {chosen}") and "bf16 GEMM took" in said[0]
    hardware.cpu_bf16_pays.cache_clear()
    assert resolve_precision("bf16", cpu) == "bf16"  # an explicit choice is not measured


def test_word_level_generation_counts_characters(tmp_path, pfr_slice):
    from textgen.data.prepare import PrepareConfig, prepare
    from textgen.inference.generator import TextGenerator
    from textgen.inference.sampling import GenerationConfig

    words = tmp_path / "w"
    prepare(PrepareConfig(sources=[str(pfr_slice)], out=str(words), level="word"), progress=False)
    Trainer(words, tmp_path / "r", tiny_model(words), tiny_train(max_steps=5)).run()
    gen = TextGenerator.from_checkpoint(tmp_path / "r")
    for n in (1, 7, 30):
        r = gen.generate("中国", GenerationConfig(max_new_tokens=n, seed=n))
        s = r.samples[0]
        assert len(s.text) == n and s.finish_reason == "length"
        assert s.tokens <= n  # words: fewer tokens than characters
