"""The PNGs: training curves (loss and validation BPC, gradient norm, clip rate), gradient
norms through time, and training health."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textgen.evaluation.diagnose import FLOOR
from textgen.train.runlog import read_metrics


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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_gradients(report: dict[str, Any], out_png: str | Path) -> Path:
    """One panel per layer, one curve per model: geometric-mean norm against lag, log scale."""
    plt = _pyplot()
    n_layers = max(len(m["layers"]) for m in report["models"])
    fig, axes = plt.subplots(1, n_layers, figsize=(6 * n_layers, 4.8), sharey=True, squeeze=False)
    colors = plt.get_cmap("tab10")
    lags = report["lags"]
    for i, model in enumerate(report["models"]):
        for layer in model["layers"]:
            decay = layer["fit"]["decay_per_step"]
            rate = f"x{decay:.3f}/step" if decay is not None else "no fit"
            values = [v if v is not None and v > FLOOR else np.nan for v in layer["geomean"]]
            ax = axes[0][layer["layer"]]
            ax.plot(lags, values, color=colors(i % 10), label=f"{model['label']}: {rate}")
    s = report["settings"]
    for layer, ax in enumerate(axes[0]):
        ax.set_yscale("log")
        ax.set_xlabel("lag k (steps back from the predicted character)")
        ax.set_title(f"layer {layer}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(r"$\|\partial\, \mathrm{loss}_T / \partial h_{T-k}\|$ (geometric mean)")
    fig.suptitle(
        f"gradient reaching k steps back, {s['batch']} validation windows, "
        f"burn-in {s['burn_in']}; legend: fitted decay per step"
    )
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def plot_training_health(report: dict[str, Any], out_png: str | Path) -> Path:
    """Four panels: gradient-norm histogram, norm over time, clip rate over time, loss."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    colors = plt.get_cmap("tab10")
    for i, run in enumerate(report["runs"]):
        c, s, label = colors(i % 10), run["series"], run["label"]
        hist = run["histogram"]
        axes[0][0].stairs(hist["counts"], hist["log10_edges"], color=c, label=label)
        steps = s["step"]
        axes[0][1].plot(steps, _nan(s["grad_norm_median"]), color=c, label=label)
        axes[0][1].plot(steps, _nan(s["grad_norm_max"]), color=c, lw=0.5, alpha=0.5)
        axes[1][0].plot(steps, [100 * v for v in s["clip_rate"]], color=c, label=label)
        loss = _nan(s["loss_bpc"])
        axes[1][1].plot(steps, loss, color=c, label=label)
        if run["stopped_non_finite"]:  # mark where the run died of non-finite steps
            finite = [(x, y) for x, y in zip(steps, loss, strict=True) if np.isfinite(y)]
            if finite:
                axes[1][1].plot(*finite[-1], "x", color=c, ms=12, mew=2)
    _label_health_axes(axes, report["runs"][0]["rolling_window"] if report["runs"] else 1)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def _nan(values: Sequence[float | None]) -> list[float]:
    return [np.nan if v is None else v for v in values]


def _label_health_axes(axes, window: int) -> None:
    axes[0][0].set_xlabel("log10 gradient norm (before clipping)")
    axes[0][0].set_ylabel("steps")
    axes[0][0].set_title("distribution of gradient norms")
    axes[0][1].set_yscale("log")
    axes[0][1].set_ylabel(f"{window}-step rolling median (thick), max (thin)")
    axes[0][1].set_title("gradient norm over time")
    axes[1][0].set_ylabel("clipped steps, %")
    axes[1][0].set_title(f"clip rate over time ({window}-step rolling mean)")
    axes[1][1].set_ylabel(f"training loss, bits/char ({window}-step rolling mean)")
    axes[1][1].set_title("training loss (x: stopped, non-finite)")
    for ax in (axes[0][1], axes[1][0], axes[1][1]):
        ax.set_xlabel("step")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
