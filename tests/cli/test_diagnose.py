"""`textgen diagnose`: trained and fresh models, runs' health, labels, and its errors."""

import argparse
import json

import numpy as np
import pytest

from textgen.cli.diagnose import add_diagnose

pytestmark = pytest.mark.usefixtures("one_thread")


def _diagnose(*argv):
    parser = argparse.ArgumentParser(prog="textgen")
    add_diagnose(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["diagnose", *argv])
    return args.func(args)


def test_cli_on_trained_and_fresh_models(tmp_path, prepared, runs, capsys, check_png, tab10):
    out = tmp_path / "out"
    code = _diagnose(
        "--checkpoint",
        str(runs / "lstm"),
        str(runs / "rnn" / "last.pt"),
        "--fresh",
        "rnn,lstm,gru",
        "--forget-bias",
        "0,1",
        "--k",
        "6",
        "--batch",
        "3",
        "--burn-in",
        "4",
        "--runs",
        str(runs / "lstm"),
        str(runs / "rnn"),
        "--out",
        str(out),
        "--json",
    )
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed.strip().splitlines()[-1])
    doc = json.loads((out / "gradients.json").read_text(encoding="utf-8"))
    labels = [m["label"] for m in doc["models"]]
    assert labels == [
        "LSTM fb=1.0 (trained 12 steps)",
        "RNN (trained 12 steps)",
        "RNN (fresh)",
        "LSTM fb=0.0 (fresh)",
        "LSTM fb=1.0 (fresh)",
        "GRU (fresh)",
    ]
    assert all(m["num_layers"] == 2 and m["hidden_size"] == 16 for m in doc["models"])
    assert doc["settings"]["data"] == str(prepared)  # taken from the checkpoint
    assert set(summary["models"]) == set(labels) and len(summary["runs"]) == 2
    # two layers: 2 x 6 by 4.8 inches, a curve per model in tab10 order; the runs 13 x 8.5
    check_png(out / "gradients.png", size=(12, 4.8), colors=[tab10(i) for i in range(6)])
    check_png(out / "training_health.png", size=(13, 8.5), colors=[tab10(0), tab10(1)])
    assert (out / "training_health.json").is_file() and "decay/step" in printed


def test_cli_labels_and_errors(tmp_path, prepared, runs):
    out = tmp_path / "out"
    _diagnose(
        "--checkpoint",
        str(runs / "rnn"),
        "--label",
        "plain RNN",
        "--k",
        "3",
        "--batch",
        "2",
        "--burn-in",
        "0",
        "--out",
        str(out),
    )
    doc = json.loads((out / "gradients.json").read_text(encoding="utf-8"))
    assert [m["label"] for m in doc["models"]] == ["plain RNN"]
    with pytest.raises(ValueError, match="--data is required with --fresh"):
        _diagnose("--fresh", "rnn", "--out", str(out))
    with pytest.raises(ValueError, match="--fresh takes cells from lstm, gru, rnn, got 'lstn'"):
        _diagnose("--fresh", "lstn", "--data", str(prepared), "--out", str(out))
    with pytest.raises(ValueError, match="--label given 2 times for 1 checkpoints"):
        _diagnose(
            "--checkpoint", str(runs / "rnn"), "--label", "a", "--label", "b", "--out", str(out)
        )
    with pytest.raises(ValueError, match="fewer than burn_in \\+ k \\+ 1"):
        _diagnose("--fresh", "rnn", "--data", str(prepared), "--k", "10000000", "--out", str(out))
    with pytest.raises(ValueError, match="nothing to diagnose"):
        _diagnose("--out", str(out))
    assert np.isfinite(doc["models"][0]["final_step_bpc"])
