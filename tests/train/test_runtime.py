"""textgen.train.runtime: a stop signal ends a run cleanly; two ranks under torchrun train as one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from textgen.model import checkpoint
from textgen.train.runlog import read_metrics


@pytest.mark.slow
def test_sigterm_finishes_the_step_saves_and_exits_0(tmp_path, prepared, train_argv, losses):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        train_argv(prepared, out, "--max-steps", "100000", "--save-every", "100000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (
        (out / "metrics.jsonl").exists() and len(losses(out)) >= 5
    ):
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "signal SIGTERM" in stdout
    last_step = max(losses(out))
    assert checkpoint.load(out / "last.pt")["step"] == last_step


@pytest.mark.slow
def test_two_process_ddp_trains(tmp_path, prepared, train_argv):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    argv = train_argv(
        prepared, out, "--max-steps", "20", "--eval-every", "10", "--save-every", "10", "--json"
    )
    run = subprocess.run(
        [*torchrun, *argv[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["step"] == 20
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 21))  # one writer: rank 0
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert rows[-1]["loss"] < rows[0]["loss"]
