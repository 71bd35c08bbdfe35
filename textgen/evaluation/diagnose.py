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

The report is JSON with a ``schema_version`` (as is textgen.evaluation.health's); plots are in
textgen.evaluation.plots.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from textgen.model.charlm import CharLM
from textgen.model.config import ModelConfig

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
    """'LSTM fb=1.0 (trained 1200 steps)', 'RNN relu (fresh)': how curves are named by default."""
    name = CELL_NAMES[config.cell]
    if config.cell == "lstm":
        name += f" fb={float(config.forget_bias)}"
    if config.activation != "tanh":
        name += f" {config.activation}"
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
        state = (state[0].detach().requires_grad_(), state[1].detach().requires_grad_())
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
    if any(g is None for g in grads):
        raise RuntimeError("a state got no gradient: the loss does not depend on it")
    norms = torch.linalg.vector_norm(
        torch.stack([g for g in grads if g is not None], dim=-1), dim=2
    )  # (L, B, K)
    return norms, losses.detach()


def fit_decay(lags: Sequence[int], values: Sequence[float]) -> dict[str, float | None]:
    """Least-squares line through log(values) against lag: the decay factor per step.

    Lags whose value is not finite or under FLOOR are left out. half_life_steps is null for a
    gradient that does not shrink, doubling_steps null for one that does not grow.
    """
    x, y = np.asarray(lags, dtype=float), np.asarray(values, dtype=float)
    ok = np.isfinite(y) & (y > FLOOR)
    if ok.sum() < 2:
        return {
            "slope": None,
            "decay_per_step": None,
            "half_life_steps": None,
            "doubling_steps": None,
            "r2": None,
            "points": int(ok.sum()),
        }
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
    settings = {
        "data": data,
        "split": "val",
        "k": k,
        "batch": batch,
        "burn_in": burn_in,
        "seed": seed,
        "starts": starts,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "gradient_norms",
        "quantity": QUANTITY,
        "settings": settings,
        "lags": list(range(1, k + 1)),
        "models": entries,
    }


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
