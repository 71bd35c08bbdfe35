"""Training health from runs' metrics.jsonl: the distribution of gradient norms, clip rate
and loss over time, and whether a run stopped on non-finite steps. JSON with a
``schema_version`` (textgen.evaluation.diagnose's)."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textgen.evaluation.diagnose import CELL_NAMES, SCHEMA_VERSION
from textgen.train.runlog import read_metrics


def _config_label(run: Path) -> tuple[str, dict[str, Any]]:
    path = run / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    model, train = cfg.get("model", {}), cfg.get("train", {})
    if not model:
        return run.name, {}
    label = CELL_NAMES.get(model.get("cell"), "?")
    if model.get("cell") == "lstm":
        label += f" fb={float(model.get('forget_bias', 1.0))}"
    if model.get("activation", "tanh") != "tanh":
        label += f" {model['activation']}"
    clip = train.get("clip", 0)
    label += f" lr={train.get('lr')} " + (f"clip={clip}" if clip else "no clip")
    return label, {"cell": model.get("cell"), "lr": train.get("lr"), "clip": clip}


def _at_ends(values: np.ndarray, ends: np.ndarray, window: int, fn) -> list[float]:
    """fn over the trailing `window` values ending at each index in `ends` (NaN-aware)."""
    with warnings.catch_warnings():  # an all-NaN window (every step skipped) is just NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return [float(fn(values[max(0, e - window + 1) : e + 1])) for e in ends]


def _training_rows(run: Path) -> tuple[list[dict[str, Any]], list[float]]:
    """(training step rows, validation BPC values) of a run folder's metrics.jsonl."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run} is not a run folder (no metrics.jsonl)")
    rows = read_metrics(path)
    steps = [r for r in rows if "loss" in r]
    if not steps:
        raise ValueError(f"{path} has no training steps")
    return steps, [r["val_bpc"] for r in rows if "val_bpc" in r]


def _series(steps: list[dict[str, Any]], ok: np.ndarray, every: int, window: int) -> dict:
    """Time series sampled every `every` steps; each point sums up the `window` steps before."""
    norms = np.array([r["grad_norm"] if o else np.nan for r, o in zip(steps, ok, strict=True)])
    loss = np.array([r["loss"] if o else np.nan for r, o in zip(steps, ok, strict=True)])
    clipped = np.array([float(r.get("clipped", False)) for r in steps])
    ends = np.unique(np.r_[np.arange(every - 1, len(steps), every), len(steps) - 1])
    return {
        "step": [int(steps[e]["step"]) for e in ends],
        "loss_bpc": _at_ends(loss / math.log(2), ends, window, np.nanmean),
        "grad_norm_median": _at_ends(norms, ends, window, np.nanmedian),
        "grad_norm_max": _at_ends(norms, ends, window, np.nanmax),
        "clip_rate": _at_ends(clipped, ends, window, np.mean),
        "skipped": _at_ends((~ok).astype(float), ends, window, np.sum),
    }


def run_health(
    run: str | Path, edges: np.ndarray, every: int, window: int, label: str = ""
) -> dict:
    """One run's gradient health: histogram over `edges` (log10 norm) and rolling series."""
    run = Path(run)
    steps, vals = _training_rows(run)
    default_label, info = _config_label(run)
    ok = np.array([not r.get("skipped") and math.isfinite(r["grad_norm"]) for r in steps])
    good = np.array([r["grad_norm"] for r in steps], dtype=float)[ok]
    counts, _ = np.histogram(np.log10(np.clip(good, 1e-30, None)), bins=edges)
    q = (lambda p: float(np.percentile(good, p))) if len(good) else (lambda p: None)
    return {
        "label": label or default_label,
        "path": str(run),
        **{"cell": None, "lr": None, "clip": None, **info},
        "steps": len(steps),
        "skipped": int((~ok).sum()),
        "clip_rate": float(np.mean([float(r.get("clipped", False)) for r in steps])),
        "stopped_non_finite": bool(steps[-1].get("skipped")),
        "final_val_bpc": vals[-1] if vals else None,
        "grad_norm": {"median": q(50), "p90": q(90), "p99": q(99), "max": q(100)},
        "histogram": {"log10_edges": edges.tolist(), "counts": counts.tolist()},
        "rolling_window": window,
        "series": _series(steps, ok, every, window),
    }


def training_health(
    runs: Sequence[str | Path], labels: Sequence[str] = (), points: int = 200
) -> dict[str, Any]:
    """Health of several runs on shared histogram bins and windows, so they can be overlaid.

    Series hold about `points` points; each is the mean (loss, clip rate), median and max
    (gradient norm) or count (skipped) of the trailing rolling window of steps.
    """
    if labels and len(labels) != len(runs):
        raise ValueError(f"run labels: got {len(labels)} for {len(runs)} runs")
    rows = [_training_rows(Path(run))[0] for run in runs]
    norms = [r["grad_norm"] for steps in rows for r in steps if not r.get("skipped")]
    norms = [n for n in norms if math.isfinite(n) and n > 0]
    logs = np.log10(np.array(norms, dtype=float)) if norms else np.zeros(1)
    lo, hi = math.floor(logs.min() * 4) / 4, math.ceil(logs.max() * 4) / 4 + 0.25
    edges = np.linspace(lo, hi, 41)  # quarter-decade aligned, 40 bins
    longest = max(len(steps) for steps in rows)
    every = max(1, math.ceil(longest / points))
    window = max(every, min(50, longest // 10))  # as in the training curves: <= 50 steps
    entries = [
        run_health(run, edges, every, window, labels[i] if labels else "")
        for i, run in enumerate(runs)
    ]
    return {"schema_version": SCHEMA_VERSION, "kind": "training_health", "runs": entries}
