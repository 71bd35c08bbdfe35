"""`textgen eval` and `textgen baseline` on the command line: JSON and text, word level too."""

import json
import subprocess
import sys

import pytest

from textgen.train.runlog import read_metrics
from textgen.train.trainer import Trainer

pytestmark = pytest.mark.slow  # every test here runs the command line as a process


def test_eval_and_baseline_cli(tmp_path, prepared, tiny_model, tiny_train, textgen_cli):
    Trainer(prepared, tmp_path, tiny_model(prepared), tiny_train(max_steps=10)).run()
    run = textgen_cli(
        "eval", "--checkpoint", str(tmp_path), "--data", str(prepared), "--split", "test", "--json"
    )
    assert run.returncode == 0, run.stderr
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert {"bpc", "perplexity", "unknown_rate", "tokens"} <= set(r) and r["bpc"] > 0
    text = tmp_path / "t.txt"
    text.write_text("中国人民在１９９８年迎来新年。龘\n", encoding="utf-8")
    run = textgen_cli(
        "eval", "--checkpoint", str(tmp_path / "last.pt"), "--text", str(text), "--json"
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["unknown_rate"] > 0
    run = textgen_cli("baseline", "--data", str(prepared), "--order", "3", "--json")
    assert run.returncode == 0, run.stderr
    b = json.loads(run.stdout.strip().splitlines()[-1])
    assert b["order"] == 3 and 3 < b["val_bpc"] < 12 and 3 < b["test_bpc"] < 12


def test_word_level_reports_bits_per_character(tmp_path, pfr_slice, tiny_model, tiny_train):
    from textgen.data.prepare import PrepareConfig, prepare

    words = tmp_path / "w"
    prepare(PrepareConfig(sources=[str(pfr_slice)], out=str(words), level="word"), progress=False)
    Trainer(words, tmp_path / "r", tiny_model(words), tiny_train(max_steps=10)).run()
    row = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if "val_bpc" in r][-1]
    assert row["val_bits_per_token"] > 1.3 * row["val_bpc"]  # a word is ~1.6 characters

    def cli(*args):
        r = subprocess.run(
            [sys.executable, "-m", "textgen", *args, "--json"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout, json.loads(r.stdout.strip().splitlines()[-1])

    text, ev = cli("eval", "--checkpoint", str(tmp_path / "r"), "--data", str(words))
    assert ev["chars"] > 1.3 * ev["tokens"] and "bits/char" in text and "bits/token" in text
    # the same bits over characters or over tokens ("chars" is rounded to a whole number)
    assert abs(ev["bpc"] * ev["chars"] - ev["bits_per_token"] * ev["tokens"]) < ev["bpc"]
    assert abs(ev["bpc"] - row["val_bpc"]) < 1e-4
    text, kn = cli("baseline", "--data", str(words), "--order", "3")
    assert kn["val_bits_per_token"] > 1.3 * kn["val_bpc"] and "bits/word" in text
