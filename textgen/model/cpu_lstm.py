"""One LSTM layer whose time loops run in C++, for training on CPU.

Why: nn.LSTM's oneDNN kernel runs forward + backward well above the time of their matrix
products alone under bf16 autocast (``python benchmarks/rnn_ceiling.py --cells lstm``;
figures in docs/architecture.md), largely because oneDNN reorders W_hh for
every per-step GEMM. ``textgen/model/csrc/cpu_lstm.cpp`` runs each time step as one GEMM on a
prepacked W_hh and one fused pass over the gates, forward and backward. Used by CharLM only
where textgen.model.native built the kernels; otherwise the LSTM trains through nn.LSTM's kernel.

The maths is PyTorch's LSTM (gate order i, f, g, o):

    a = x W_ih + b_ih + h W_hh + b_hh;  i, f, o = sigmoid(a_i, a_f, a_o);  g = tanh(a_g)
    c' = f * c + i * g;  h' = o * tanh(c')

``dtype`` is the dtype of the matrix products: float32 gives nn.LSTM's results to float
rounding (tested); bfloat16 does what autocast would (GEMMs in bf16) but keeps the gate
maths and the carried state in float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from textgen.model.native import built, cpu_lstm_ops, pack


class LSTMLayer(torch.autograd.Function):
    """x (T, B, E) time-major, h0, c0 (B, H) -> (outputs (T, B, H), h_T (B, H), c_T (B, H))."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor,
        b_hh: Tensor,
        dt: torch.dtype,
    ) -> tuple[Tensor, Tensor, Tensor]:
        ctx.grad_dtypes = (x.dtype, h0.dtype, c0.dtype, w_ih.dtype, w_hh.dtype, b_ih.dtype)
        steps, batch, n_in = x.shape
        f32 = torch.float32
        with torch.autocast("cpu", enabled=False):
            wih, whh = w_ih.to(dt), w_hh.to(dt).contiguous()
            xd = x.to(dt).contiguous()
            xp = torch.mm(xd.view(steps * batch, n_in), wih.t()).view(steps, batch, -1)
            bias = b_ih.to(f32) + b_hh.to(f32)  # added in the gate pass, in float32
            act, cs, tc, hs, hs_d = built(cpu_lstm_ops(), "LSTM").forward(
                xp, bias, whh, pack(whh, batch), h0.to(f32).contiguous(), c0.to(f32).contiguous()
            )
        ctx.save_for_backward(xd, wih, whh, act, cs, tc, hs_d)
        return hs[1:], hs[steps].clone(), cs[steps].clone()

    @staticmethod
    def backward(ctx: Any, d_out: Tensor | None, d_h: Tensor | None, d_c: Tensor | None):
        xd, wih, whh, act, cs, tc, hs_d = ctx.saved_tensors
        steps, batch, h = tc.shape
        f32 = torch.float32

        def grad_or_zeros(g: Tensor | None, like: Tensor) -> Tensor:
            return g.to(f32).contiguous() if g is not None else torch.zeros_like(like)

        with torch.autocast("cpu", enabled=False):
            whh_t = whh.t().contiguous()  # (H, 4H): d h_{t-1} = d a_t @ W_hh
            # d a (the gradient of x W_ih + h W_hh + biases) for every step, d bias, d h0, d c0
            da, db, d_h0, d_c0 = built(cpu_lstm_ops(), "LSTM").backward(
                grad_or_zeros(d_out, tc),
                grad_or_zeros(d_h, tc[0]),
                grad_or_zeros(d_c, tc[0]),
                act,
                cs,
                tc,
                whh_t,
                pack(whh_t, batch),
            )
            n_in = xd.shape[-1]
            da = da.view(steps * batch, 4 * h)
            grads = (
                torch.mm(da, wih).view(steps, batch, n_in),  # x
                d_h0,
                d_c0,
                torch.mm(da.t(), xd.view(steps * batch, n_in)),  # w_ih
                torch.mm(da.t(), hs_d[:-1].reshape(steps * batch, h)),  # w_hh
                db,  # b_ih
            )
        grads = tuple(g.to(d) for g, d in zip(grads, ctx.grad_dtypes, strict=True))
        # b_hh's gradient equals b_ih's: a tensor of its own, never shared between parameters
        return (*grads, grads[-1].clone(), None)


def lstm_layer(
    x: Tensor, h0: Tensor, c0: Tensor, weights: list[Tensor], dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """x (T, B, E), h0, c0 (B, H), weights [w_ih, w_hh, b_ih, b_hh] -> (out, h_T, c_T)."""
    w_ih, w_hh, b_ih, b_hh = weights
    return LSTMLayer.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, dtype)
