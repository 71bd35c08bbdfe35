"""One GRU layer with a hand-written backward, for training on CPU.

Why: on CPU ``nn.GRU`` has no oneDNN kernel. It runs each time step as separate ops and
autograd records every one of them, so forward + backward take about twice the time of
their matrix products alone (``python benchmarks/rnn_ceiling.py --cells gru``; figures in
docs/architecture.md). Here the forward keeps only
what the backward needs, and the backward runs its own loop over time with the gate
derivatives precomputed for all steps at once, so most of its work is a few large GEMMs.

The maths is PyTorch's GRU (gate order r, z, n; ``b_hn`` inside the reset product):

    r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)
    z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
    h' = (1 - z) * n + z * h

``dtype`` is the dtype of the matrix products: float32 gives nn.GRU's results to float
rounding (tested), bfloat16 does what autocast would (GEMMs in bf16) but keeps the gate
maths and the carried state in float32, which is more precise than autocast's nn.GRU.

The time loops run in C++ (``textgen/model/csrc/cpu_gru.cpp``, built on first use by
textgen.model.native: one GEMM and one fused gate pass per step) where a compiler is available,
else in Python below (about five small ATen calls per step besides the GEMM). Both give the
same results (tested); the C++ loops come much closer to the GEMMs' own time than nn.GRU
(``python benchmarks/rnn_ceiling.py --cells gru``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from textgen.model.native import built, cpu_gru_ops, pack


class GRULayer(torch.autograd.Function):
    """x (T, B, E) time-major, h0 (B, H) -> (outputs (T, B, H), last state (B, H))."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        h0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor,
        b_hh: Tensor,
        dtype: torch.dtype,
        native: bool,
    ) -> tuple[Tensor, Tensor]:
        ctx.native = native
        ctx.grad_dtypes = (x.dtype, h0.dtype, w_ih.dtype, w_hh.dtype, b_ih.dtype, b_hh.dtype)
        run = _forward_native if native else _forward
        with torch.autocast("cpu", enabled=False):
            return run(ctx, x, h0, (w_ih, w_hh, b_ih, b_hh), dtype)

    @staticmethod
    def backward(ctx: Any, d_out: Tensor | None, d_last: Tensor | None):
        grads = (_backward_native if ctx.native else _backward)(ctx, d_out, d_last)
        return (*(g.to(d) for g, d in zip(grads, ctx.grad_dtypes, strict=True)), None, None)


def _forward_native(
    ctx: Any, x: Tensor, h0: Tensor, weights: tuple[Tensor, ...], dt: torch.dtype
) -> tuple[Tensor, Tensor]:
    w_ih, w_hh, b_ih, b_hh = weights  # (3H, E), (3H, H), (3H,), (3H,)
    steps, batch, n_in = x.shape
    f32 = torch.float32
    wih, whh = w_ih.to(dt), w_hh.to(dt).contiguous()
    xd = x.to(dt).contiguous()
    xp = torch.mm(xd.view(steps * batch, n_in), wih.t()).view(steps, batch, -1)  # b_ih: in C++
    rz, n, p_n, hs, hs_d = built(cpu_gru_ops(), "GRU").forward(
        xp,
        b_ih.to(f32).contiguous(),
        whh,
        pack(whh, batch),
        b_hh.to(f32).contiguous(),
        h0.to(f32).contiguous(),
    )
    ctx.save_for_backward(xd, wih, whh, rz, n, p_n, hs, hs_d)
    return hs[1:], hs[steps].clone()


def _backward_native(ctx: Any, d_out: Tensor | None, d_last: Tensor | None) -> tuple[Tensor, ...]:
    xd, wih, whh, rz, n, p_n, hs, hs_d = ctx.saved_tensors
    steps, batch, h = n.shape
    f32 = torch.float32
    d_out = d_out.to(f32).contiguous() if d_out is not None else torch.zeros_like(n)
    d_last = d_last.to(f32).contiguous() if d_last is not None else torch.zeros_like(hs[0])
    whh_t = whh.t().contiguous()  # (H, 3H): d h_{t-1} = d p_t @ W_hh
    # d(h W_hh + b_hh) and d(x W_ih + b_ih) for every step, the bias gradients, d h0
    dp, dx, db_ih, db_hh, d_h0 = built(cpu_gru_ops(), "GRU").backward(
        d_out, d_last, rz, n, p_n, hs, whh_t, pack(whh_t, batch)
    )
    dx, dp = dx.view(steps * batch, 3 * h), dp.view(steps * batch, 3 * h)
    return _gradients(dx, dp, d_h0, db_ih, db_hh, xd, wih, hs_d)


def _forward(
    ctx: Any, x: Tensor, h0: Tensor, weights: tuple[Tensor, ...], dt: torch.dtype
) -> tuple[Tensor, Tensor]:
    w_ih, w_hh, b_ih, b_hh = weights
    steps, batch, n_in = x.shape
    h = w_hh.shape[1]
    f32 = torch.float32
    wih, whh = w_ih.to(dt), w_hh.to(dt)
    xd = x.to(dt).contiguous()
    # input products for every step at once: (T, B, 3H), float32
    xp = torch.mm(xd.view(steps * batch, n_in), wih.t()).to(f32).add_(b_ih)
    xp = xp.view(steps, batch, 3 * h)
    whh_t, bhh = whh.t(), b_hh.to(dt)
    rz_all = torch.empty(steps, batch, 2 * h, dtype=f32)  # r, z
    n_all = torch.empty(steps, batch, h, dtype=f32)
    hp_all = torch.empty(steps, batch, 3 * h, dtype=f32)  # h W_hh + b_hh
    hs = torch.empty(steps + 1, batch, h, dtype=f32)  # h_0 .. h_T
    hs_d = hs if dt == f32 else torch.empty(steps + 1, batch, h, dtype=dt)
    hp_d = torch.empty(batch, 3 * h, dtype=dt)
    hs[0] = h0
    if hs_d is not hs:
        hs_d[0] = h0
    for t in range(steps):
        hp = hp_all[t]
        if dt == f32:
            torch.addmm(bhh, hs_d[t], whh_t, out=hp)
        else:
            hp.copy_(torch.addmm(bhh, hs_d[t], whh_t, out=hp_d))
        rz = torch.add(xp[t, :, : 2 * h], hp[:, : 2 * h], out=rz_all[t]).sigmoid_()
        n = torch.addcmul(xp[t, :, 2 * h :], rz[:, :h], hp[:, 2 * h :], out=n_all[t]).tanh_()
        torch.lerp(n, hs[t], rz[:, h:], out=hs[t + 1])  # n + z * (h - n)
        if hs_d is not hs:
            hs_d[t + 1].copy_(hs[t + 1])
    ctx.save_for_backward(xd, wih, whh, rz_all, n_all, hp_all, hs, hs_d)
    return hs[1:], hs[steps].clone()


def _backward(ctx: Any, d_out: Tensor | None, d_last: Tensor | None) -> tuple[Tensor, ...]:
    xd, wih, whh, rz_all, n_all, hp_all, hs, hs_d = ctx.saved_tensors
    dt, f32 = wih.dtype, torch.float32
    steps, batch, h = n_all.shape
    r, z = rz_all[..., :h], rz_all[..., h:]
    # d(pre-activation) / d(h_t) for every step, computed at once: (T, B, 3, H) for r, z and
    # the recurrent part of n; a_n is the input part of n.
    a_n = (1 - n_all * n_all).mul_(1 - z)
    k = torch.empty(steps, batch, 3, h, dtype=f32)
    torch.mul(a_n, hp_all[..., 2 * h :], out=k[:, :, 0]).mul_(r * (1 - r))
    torch.sub(hs[:-1], n_all, out=k[:, :, 1]).mul_(z * (1 - z))
    torch.mul(a_n, r, out=k[:, :, 2])
    dh_all = torch.empty(steps, batch, h, dtype=f32)
    dhp_all = torch.empty(steps, batch, 3 * h, dtype=dt)  # d(h W_hh + b_hh), every step
    scratch = torch.empty(batch, 3, h, dtype=f32)
    carry = d_last.to(f32) if d_last is not None else torch.zeros(batch, h, dtype=f32)
    d_out = d_out.contiguous() if d_out is not None else torch.zeros(steps, batch, h, dtype=f32)
    for t in range(steps - 1, -1, -1):
        dh = torch.add(d_out[t], carry, out=dh_all[t])
        if dt == f32:
            torch.mul(dh[:, None], k[t], out=dhp_all[t].view(batch, 3, h))
        else:
            torch.mul(dh[:, None], k[t], out=scratch)
            dhp_all[t].copy_(scratch.view(batch, 3 * h))
        carry = torch.addcmul(torch.mm(dhp_all[t], whh), dh, z[t])  # d h_{t-1}
    dxp = dhp_all.clone()  # d(x W_ih + b_ih): same for r and z, n has no reset factor
    dxp[..., 2 * h :] = dh_all * a_n
    dxp = dxp.view(steps * batch, 3 * h)
    dhp = dhp_all.view(steps * batch, 3 * h)
    return _gradients(dxp, dhp, carry, dxp.sum(0, dtype=f32), dhp.sum(0, dtype=f32), xd, wih, hs_d)


def _gradients(
    dx: Tensor,
    dp: Tensor,
    d_h0: Tensor,
    db_ih: Tensor,
    db_hh: Tensor,
    xd: Tensor,
    wih: Tensor,
    hs_d: Tensor,
) -> tuple[Tensor, ...]:
    """The gradients of (x, h0, w_ih, w_hh, b_ih, b_hh), for both backward loops.

    ``dx`` and ``dp`` are d(x W_ih + b_ih) and d(h W_hh + b_hh) of every step, (T * B, 3H);
    ``xd`` (T, B, E) and ``hs_d`` (h_0 .. h_T) are the GEMMs' inputs as the forward saved them.
    """
    steps, batch, n_in = xd.shape
    h = hs_d.shape[-1]
    return (
        torch.mm(dx, wih).view(steps, batch, n_in),  # x
        d_h0,
        torch.mm(dx.t(), xd.view(steps * batch, n_in)),  # w_ih
        torch.mm(dp.t(), hs_d[:-1].reshape(steps * batch, h)),  # w_hh
        db_ih,
        db_hh,
    )


def gru_layer(
    x: Tensor, h0: Tensor, weights: list[Tensor], dtype: torch.dtype, native: bool | None = None
) -> tuple[Tensor, Tensor]:
    """x (T, B, E), h0 (B, H), weights [w_ih, w_hh, b_ih, b_hh] -> (out (T, B, H), h_T (B, H)).

    ``native``: the C++ loops (True), the Python loops (False), or C++ where built (None).
    """
    if native is None:
        native = cpu_gru_ops() is not None
    w_ih, w_hh, b_ih, b_hh = weights
    return GRULayer.apply(x, h0, w_ih, w_hh, b_ih, b_hh, dtype, native)
