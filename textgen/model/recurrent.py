"""How the recurrent stack runs: one dispatch table, cell x place x precision -> backend.

Backends (same parameters, nn.LSTM/nn.GRU/nn.RNN's, so checkpoints never depend on which):

* ``torch``: the nn module over the whole stack (cuDNN on CUDA, oneDNN on CPU).
* ``torch_layers``: the same op (``torch._VF``) one layer at a time with textgen's cheaper
  Dropout between layers; used for CPU training with inter-layer dropout, because nn.LSTM's
  own dropout draws one float per element with ``bernoulli_``. Without dropout it equals
  ``torch`` exactly (tested).
* ``cpp_lstm``: textgen.model.cpu_lstm, the C++ time loops (textgen.model.native).
* ``gru_loops``: textgen.model.cpu_gru, C++ time loops where built, else Python loops.

The table's reasons are measurements of ``python benchmarks/rnn_ceiling.py`` (forward and
backward of the benchmark shape); docs/architecture.md gives the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from textgen.model.cpu_gru import gru_layer
from textgen.model.cpu_lstm import lstm_layer
from textgen.model.layers import Dropout
from textgen.model.native import cpu_lstm_ops
from textgen.model.state import State

# (cell, place, precision) -> (backend, reason). place: "cpu-train" (CPU, training, with
# gradients) or "other" (inference, no grad, or CUDA). precision: the GEMMs' dtype there.
TABLE: dict[tuple[str, str, str], tuple[str, str]] = {
    ("lstm", "cpu-train", "bf16"): ("cpp_lstm", "C++ loops beat nn.LSTM's oneDNN in bf16"),
    ("lstm", "cpu-train", "fp32"): ("torch", "in fp32 the C++ loops were slower than nn.LSTM"),
    ("gru", "cpu-train", "bf16"): ("gru_loops", "nn.GRU has no fused CPU kernel"),
    ("gru", "cpu-train", "fp32"): ("gru_loops", "nn.GRU has no fused CPU kernel"),
    ("rnn", "cpu-train", "bf16"): ("torch", "a plain RNN (tanh or ReLU): no loops of ours"),
    ("rnn", "cpu-train", "fp32"): ("torch", "a plain RNN (tanh or ReLU): no loops of ours"),
}
OTHER = ("torch", "inference, no gradients, fp16 or CUDA: the fused library kernels")


@dataclass(frozen=True)
class Route:
    backend: str
    dtype: torch.dtype | None  # the GEMM dtype of textgen's loops (None for torch backends)
    reason: str


def route(
    rnn: nn.RNNBase, cell: str, x: Tensor, training: bool, weight_drop: bool = False
) -> Route:
    """The backend for running ``rnn`` on ``x`` now (autocast and grad mode included).

    ``weight_drop``: the recurrent weights get a DropConnect mask this step, so the stack
    must run from weights handed in (textgen's loops, or torch._VF one layer at a time).
    """
    place = "other"
    if training and x.device.type == "cpu" and torch.is_grad_enabled() and rnn.bias:
        place = "cpu-train"
    precision = "fp32" if x.dtype == torch.float32 else "other"
    if torch.is_autocast_enabled("cpu"):
        bf16 = torch.get_autocast_dtype("cpu") == torch.bfloat16
        precision = "bf16" if bf16 else "other"
    backend, reason = TABLE.get((cell, place, precision), OTHER)
    if backend == "cpp_lstm" and (rnn.proj_size or cpu_lstm_ops() is None):
        backend, reason = "torch", "the C++ LSTM loops are not built here (or proj_size is set)"
    cpu_training = training and x.device.type == "cpu"
    if backend == "torch" and cpu_training and rnn.num_layers > 1 and rnn.dropout > 0:
        backend, reason = "torch_layers", "CPU training with dropout between layers"
    if backend == "torch" and weight_drop:
        backend, reason = "torch_layers", "DropConnect on W_hh: weights handed in per layer"
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(precision)
    return Route(backend, dtype if backend in ("cpp_lstm", "gru_loops") else None, reason)


def run(
    rnn: nn.RNNBase,
    cell: str,
    x: Tensor,
    state: State,
    drop: Dropout,
    r: Route,
    weight_drop: Dropout | None = None,
) -> tuple[Tensor, State]:
    """Run the stack on ``x`` (B, T, E) from ``state`` through backend ``r``.

    ``drop`` runs between layers; ``weight_drop`` (if given) masks each layer's W_hh
    (DropConnect, AWD-LSTM): one mask for the whole step, gradients flow to the kept weights.
    """
    if r.backend == "torch":
        return rnn(x, state)
    n_layers = rnn.num_layers
    per_layer = len(rnn._flat_weights) // n_layers
    hs, cs = [], []
    for layer in range(n_layers):
        if layer:
            x = drop(x)
        weights: list[Tensor] = rnn._flat_weights[layer * per_layer : (layer + 1) * per_layer]  # type: ignore[assignment]
        if weight_drop is not None:  # [w_ih, w_hh, b_ih, b_hh]: mask W_hh
            w_hh = weights[1]
            mask = weight_drop.mask(w_hh.shape, w_hh.dtype, w_hh.device)
            weights = [weights[0], w_hh * mask, *weights[2:]]
        args = (weights, rnn.bias, 1, 0.0, True, False, True)  # 1 layer, train, batch-first
        if r.backend == "cpp_lstm" and isinstance(state, tuple) and r.dtype is not None:
            xt = x.transpose(0, 1)  # time-major inside; the transposes are views
            out, h_l, c_l = lstm_layer(xt, state[0][layer], state[1][layer], weights, r.dtype)
            x, h_l = out.transpose(0, 1), h_l[None]
            cs.append(c_l[None])
        elif isinstance(state, tuple):  # LSTM through torch._VF
            h, c = state
            x, h_l, c_l = torch._VF.lstm(x, (h[layer : layer + 1], c[layer : layer + 1]), *args)
            cs.append(c_l)
        elif r.backend == "gru_loops" and r.dtype is not None:
            out, h_l = gru_layer(x.transpose(0, 1), state[layer], weights, r.dtype)
            x, h_l = out.transpose(0, 1), h_l[None]
        else:
            relu = getattr(rnn, "nonlinearity", "tanh") == "relu"  # nn.RNN's own setting
            step = (
                torch._VF.gru
                if cell == "gru"
                else (torch._VF.rnn_relu if relu else torch._VF.rnn_tanh)
            )
            x, h_l = step(x, state[layer : layer + 1], *args)
        hs.append(h_l)
    h_n = torch.cat(hs)
    return x, ((h_n, torch.cat(cs)) if cs else h_n)
