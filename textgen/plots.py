"""Training curves as a PNG: loss and validation BPC, gradient norm, clip rate."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from textgen.train import read_metrics


def _rolling(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_curves(metrics_path: str | Path, out_png: str | Path, title: str = "") -> Path:
    """Three panels from metrics.jsonl: BPC (train, smoothed, and val), grad norm, clip rate."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    steps = np.array([r["step"] for r in rows if "loss" in r and not r.get("skipped")])
    loss = np.array([r["loss"] for r in rows if "loss" in r and not r.get("skipped")]) / math.log(2)
    norms = np.array([r["grad_norm"] for r in rows if "loss" in r and not r.get("skipped")])
    clipped = np.array([float(r["clipped"]) for r in rows if "clipped" in r])
    clip_steps = np.array([r["step"] for r in rows if "clipped" in r])
    val = [(r["step"], r["val_bpc"]) for r in rows if "val_bpc" in r]
    window = max(1, min(50, len(steps) // 10))

    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    ax = axes[0]
    ax.plot(steps, loss, color="0.8", lw=0.5, label="train (per step)")
    ax.plot(steps[window - 1 :], _rolling(loss, window), label=f"train ({window}-step mean)")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.set_ylabel("bits per character")
    ax.legend()
    ax.set_title(title or "training curves")
    axes[1].plot(steps, norms, lw=0.5)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("gradient norm (before clipping)")
    axes[2].plot(clip_steps[window - 1 :], _rolling(clipped, window) * 100)
    axes[2].set_ylabel(f"clipped steps, % ({window}-step mean)")
    axes[2].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
