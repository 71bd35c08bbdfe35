"""Fixtures for the training tests that run `textgen train` as a process."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from textgen.train.runlog import read_metrics

# a tiny model, trained on one thread without a progress bar
TINY = [
    "--embed-dim",
    "8",
    "--hidden-size",
    "16",
    "--layers",
    "1",
    "--batch-size",
    "4",
    "--seq-len",
    "16",
    "--warmup-steps",
    "2",
    "--threads",
    "1",
    "--no-progress",
]


@pytest.fixture(scope="session")
def tiny_flags() -> list[str]:
    """`textgen train` flags for a 1x16 LSTM, batch 4 x 16, one thread, no progress bar."""
    return list(TINY)


@pytest.fixture(scope="session")
def train_argv() -> Callable[..., list[str]]:
    """``train_argv(data, out, *extra)``: `python -m textgen train` on a tiny model."""

    def argv(data, out, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "textgen",
            "train",
            "--data",
            str(data),
            "--out",
            str(out),
            *TINY,
            *extra,
        ]

    return argv


@pytest.fixture(scope="session")
def losses() -> Callable[[Path], dict[int, float]]:
    """``losses(run_dir)``: {step: training loss} from the run's metrics.jsonl."""

    def losses(run_dir: Path) -> dict[int, float]:
        rows = read_metrics(run_dir / "metrics.jsonl")
        return {r["step"]: r["loss"] for r in rows if "loss" in r}

    return losses
