"""Vanishing and exploding gradients, made visible: gradient norms through time and training health.

``gradient_norms`` measures ||d loss_T / d h_{T-k}|| for lags k = 1..K on windows of real text.
The fused nn.LSTM/GRU/RNN kernels keep intermediate states out of autograd, so the model is
stepped one character at a time (after a no-grad burn-in that warms the state up on the same
text) and every step's state keeps its gradient. The state after step T-k is the whole
recurrent state carried to step T-k+1; "layer l" is its h block for that layer, the other
blocks (other layers, the LSTM's c) held fixed -- the partial derivative with respect to the
Markov state. The measurement runs on a float64 copy so that a fast decay over 100 steps stays
above the float range instead of flushing to zero.

Per lag both the arithmetic and the geometric mean over the B sequences are reported. The fit
(least squares of log norm against k) uses the geometric mean: its log is the mean of the
per-sequence log norms, so its slope is the average of each sequence's own decay rate. The
arithmetic mean at large k is dominated by the one sequence whose gradient survived longest.

``training_health`` reads runs' metrics.jsonl: the distribution of gradient norms, clip rate
and loss over time, and whether a run stopped on non-finite steps. Both reports are JSON
with a ``schema_version``.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from textgen.model import CharLM, ModelConfig
from textgen.train import read_metrics

SCHEMA_VERSION = 1
QUANTITY = (
    "L2 norm of d loss_T / d h_{T-k} (loss_T: NLL of the character after step T, nats) for "
    "each sequence and layer; h is the layer's hidden state carried from step T-k to T-k+1, "
    "the rest of the state (other layers, LSTM c) held fixed; float64"
)
FLOOR = 1e-300  # a float64 norm this small has underflowed: left out of fits and plots
CELL_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


# ---------------------------------------------------------------------- models to measure
def model_label(config: ModelConfig, step: int | None = None) -> str:
    """'LSTM fb=1.0 (trained 1200 steps)', 'RNN (fresh)': how curves are named by default."""
    name = CELL_NAMES[config.cell]
    if config.cell == "lstm":
        name += f" fb={float(config.forget_bias)}"
    return f"{name} (fresh)" if step is None else f"{name} (trained {step} steps)"


def fresh_model(config: ModelConfig, seed: int) -> CharLM:
    """An untrained model; the same seed gives the same weights for the same sizes and cell."""
    torch.manual_seed(seed)
    return CharLM(config).eval()


def describe(model: CharLM, label: str, source: str, step: int | None) -> dict[str, Any]:
    """The identifying part of one model's entry in the gradient report."""
    c = model.config
    return {
        "label": label,
        "source": source,
        "cell": c.cell,
        "forget_bias": float(c.forget_bias) if c.cell == "lstm" else None,
        "embed_dim": c.embed_dim,
        "hidden_size": c.hidden_size,
        "num_layers": c.num_layers,
        "trained_steps": step,
    }


# ---------------------------------------------------------------------- measurement
def sample_windows(tokens: np.ndarray, n: int, length: int, seed: int) -> tuple[Tensor, list[int]]:
    """n random windows of `length` tokens -> ((n, length) long tensor, start positions)."""
    if len(tokens) < length:
        raise ValueError(
            f"the split holds {len(tokens)} tokens, fewer than burn_in + k + 1 = {length}; "
            "lower k or burn_in"
        )
    rng = np.random.default_rng(seed)
    starts = sorted(int(s) for s in rng.integers(0, len(tokens) - length + 1, size=n))
    rows = np.stack([np.asarray(tokens[s : s + length], dtype=np.int64) for s in starts])
    return torch.from_numpy(rows), starts


def _h(state: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    return state[0] if isinstance(state, tuple) else state


def gradient_norms(model: CharLM, windows: Tensor, burn_in: int) -> tuple[Tensor, Tensor]:
    """Per-sequence gradient norms at every lag, and each sequence's final loss.

    windows (B, burn_in + K + 1): the first burn_in tokens warm the state up without
    gradients, the next K are stepped one at a time, the last is the target of step T.
    Returns norms (L, B, K) with [..., k - 1] = ||d loss_T / d h_{T-k}||, and loss (B,) nats.
    """
    k_max = windows.size(1) - burn_in - 1
    if k_max < 1 or burn_in < 0:
        raise ValueError(f"windows of {windows.size(1)} tokens leave k={k_max} after burn_in")
    net = copy.deepcopy(model).double().eval()  # eval: no dropout between layers
    net.requires_grad_(False)  # only the states need gradients
    b = windows.size(0)
    state = net.init_state(b)
    with torch.no_grad():
        if burn_in:
            _, state = net.rnn(net.embed(windows[:, :burn_in]), state)  # one fused call
    if isinstance(state, tuple):  # LSTM (h, c): both are inputs of the graph
        state = tuple(t.detach().requires_grad_() for t in state)
    else:
        state = state.detach().requires_grad_()
    states = [state]  # states[j]: after step T - K + j
    for t in range(burn_in, burn_in + k_max):
        out, state = net.rnn(net.embed(windows[:, t : t + 1]), state)  # (B, 1, H)
        _h(state).retain_grad()
        states.append(state)
    logp = net.log_probs(out)  # (B, 1, V)
    losses = -logp.gather(-1, windows[:, -1:, None]).view(b)  # (B,) NLL of each target
    losses.sum().backward()  # a sum, not a mean: each row's gradient is its sequence's own
    grads = [_h(states[k_max - k]).grad for k in range(1, k_max + 1)]  # K x (L, B, H)
    norms = torch.linalg.vector_norm(torch.stack(grads, dim=-1), dim=2)  # (L, B, K)
    return norms, losses.detach()


def fit_decay(lags: Sequence[int], values: Sequence[float]) -> dict[str, float | None]:
    """Least-squares line through log(values) against lag: the decay factor per step.

    Lags whose value is not finite or under FLOOR are left out. half_life_steps is null for a
    gradient that does not shrink, doubling_steps null for one that does not grow.
    """
    x, y = np.asarray(lags, dtype=float), np.asarray(values, dtype=float)
    ok = np.isfinite(y) & (y > FLOOR)
    if ok.sum() < 2:
        return {"slope": None, "decay_per_step": None, "half_life_steps": None,
                "doubling_steps": None, "r2": None, "points": int(ok.sum())}  # fmt: skip
    x, y = x[ok], np.log(y[ok])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    spread = float(((y - y.mean()) ** 2).sum())
    return {
        "slope": float(slope),
        "decay_per_step": float(math.exp(slope)),
        "half_life_steps": float(math.log(2) / -slope) if slope < 0 else None,
        "doubling_steps": float(math.log(2) / slope) if slope > 0 else None,
        "r2": 1.0 - float((residual**2).sum()) / spread if spread > 0 else 1.0,
        "points": int(ok.sum()),
    }


def summarize_layers(norms: Tensor) -> list[dict[str, Any]]:
    """norms (L, B, K) -> per layer: mean and geometric mean over B at each lag, and the fit."""
    lags = list(range(1, norms.size(-1) + 1))
    tiny = torch.finfo(norms.dtype).tiny
    layers = []
    for layer, n in enumerate(norms):  # n (B, K)
        geo = n.clamp_min(tiny).log().mean(0).exp()  # (K,)
        layers.append(
            {
                "layer": layer,
                "mean": n.mean(0).tolist(),
                "geomean": geo.tolist(),
                "fit": {"on": "geomean", **fit_decay(lags, geo.tolist())},
            }
        )
    return layers


def gradient_report(
    models: Sequence[tuple[CharLM, dict[str, Any]]],
    tokens: np.ndarray,
    k: int = 100,
    batch: int = 32,
    burn_in: int = 64,
    seed: int = 0,
    data: str = "",
) -> dict[str, Any]:
    """Measure each (model, describe(...)) pair on the same windows of `tokens`."""
    for name, value in (("k", k), ("batch", batch)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if burn_in < 0:
        raise ValueError(f"burn_in must be >= 0, got {burn_in}")
    windows, starts = sample_windows(tokens, batch, burn_in + k + 1, seed)
    entries = []
    for model, info in models:
        norms, losses = gradient_norms(model, windows, burn_in)
        bpc = float(losses.mean()) / math.log(2)
        entries.append({**info, "final_step_bpc": bpc, "layers": summarize_layers(norms)})
    settings = {"data": data, "split": "val", "k": k, "batch": batch, "burn_in": burn_in,
                "seed": seed, "starts": starts}  # fmt: skip
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "gradient_norms",
        "quantity": QUANTITY,
        "settings": settings,
        "lags": list(range(1, k + 1)),
        "models": entries,
    }


# ---------------------------------------------------------------------- training health
def _config_label(run: Path) -> tuple[str, dict[str, Any]]:
    path = run / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    model, train = cfg.get("model", {}), cfg.get("train", {})
    if not model:
        return run.name, {}
    label = CELL_NAMES.get(model.get("cell"), "?")
    if model.get("cell") == "lstm":
        label += f" fb={float(model.get('forget_bias', 1.0))}"
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


# ---------------------------------------------------------------------- output
def jsonable(obj: Any) -> Any:
    """NaN and infinities become null: strict JSON, readable by every parser."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(report), ensure_ascii=False, allow_nan=False, indent=1)
    path.write_text(text + "\n", encoding="utf-8")
    return path


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
