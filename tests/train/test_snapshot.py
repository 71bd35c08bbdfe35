"""textgen.train.snapshot: exact resume (after kill -9 too), and refusing another model's run."""

import signal
import subprocess
import sys
import time

import pytest

from textgen.model import checkpoint
from textgen.train.trainer import Trainer


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])  # the GRU trains through textgen.model.cpu_gru
def test_kill_9_and_resume_equals_uninterrupted(
    tmp_path, prepared, cell, tiny_flags, textgen_cli, losses
):
    common = [
        "train",
        "--data",
        str(prepared),
        *tiny_flags,
        "--cell",
        cell,
        "--max-steps",
        "400",
        "--eval-every",
        "200",
        "--save-every",
        "25",
        "--seed",
        "3",
    ]
    full = textgen_cli(*common, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "textgen", *common, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # kill somewhere between two saves, mid-run
        if (out / "metrics.jsonl").exists() and len(losses(out)) >= 137:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(losses(out))
    assert 137 <= killed_at < 400
    assert checkpoint.load(out / "last.pt")["step"] <= killed_at
    resumed = textgen_cli(*common, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    want, got = losses(tmp_path / "full"), losses(out)
    assert sorted(got) == list(range(1, 401))
    assert got == want  # identical float losses, step for step


def test_resume_refuses_another_model(tmp_path, prepared, tiny_model, tiny_train):
    Trainer(prepared, tmp_path, tiny_model(prepared), tiny_train(max_steps=10)).run()
    other = Trainer(prepared, tmp_path, tiny_model(prepared, hidden_size=24), tiny_train())
    with pytest.raises(ValueError, match="another model config"):
        other.resume()
