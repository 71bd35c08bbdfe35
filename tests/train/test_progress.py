"""textgen.train.progress: log lines without a terminal, the limits, samples at evaluation."""

import logging

from textgen.train.runlog import read_metrics
from textgen.train.trainer import Trainer


def test_log_lines_without_a_terminal_and_samples_at_evaluation(
    tmp_path, prepared, caplog, tiny_model, tiny_train
):
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
