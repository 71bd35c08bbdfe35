"""The model's own layers: a cheaper CPU dropout, and the adaptive softmax computed in float32.

``nn.AdaptiveLogSoftmaxWithLoss.forward`` cannot be used under autocast when its input is
float32 (GRU features stay float32 under CPU autocast): it allocates its output with the
input's dtype and then ``index_copy_``s bf16 cluster log-probs into it. The functions here
compute the same thing from the module's own ``head`` / ``tail`` layers (same parameters,
same algorithm) with every log-softmax in float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Dropout(nn.Module):
    """Inverted dropout with a cheaper mask on CPU; optionally one mask for all time steps.

    On CPU ``nn.Dropout`` draws one float per element with ``bernoulli_``, about as slow as a
    matmul of the same activation. Here one 64-bit draw from the same (seeded, checkpointed)
    generator gives four 16-bit numbers, and an element is kept when its number is >=
    ``p * 65536`` (several times cheaper: docs/architecture.md). ``p`` is thereby
    rounded to a multiple of 1/65536, and kept elements are scaled by 1 / (1 - that p).
    Other devices draw the mask with ``F.dropout``.

    ``locked``: a (B, T, D) input gets one (B, 1, D) mask shared by every time step
    (variational or "locked" dropout, Gal & Ghahramani 2016; AWD-LSTM): a unit a sequence
    loses, it loses for the whole chunk, so the recurrent layer cannot average the noise away.
    """

    def __init__(self, p: float, locked: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p!r}")
        self.p = p
        self.locked = locked
        self._threshold = round(p * 65536) - 32768  # keep int16 values >= this
        self._scale = 65536 / (65536 - round(p * 65536))

    def extra_repr(self) -> str:
        return f"p={self.p}, locked={self.locked}"

    @property
    def active(self) -> bool:
        return self.training and self._threshold != -32768

    def forward(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        if self.locked and x.dim() == 3:
            return x * self.mask((x.size(0), 1, x.size(2)), x.dtype, x.device)
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        return x * self.mask(x.shape, x.dtype)

    def mask(
        self,
        shape: torch.Size | tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """0 or 1 / (1 - p) per element, ``dtype``, on ``device``."""
        if torch.device(device).type != "cpu":
            ones = torch.ones(shape, dtype=dtype, device=device)
            return F.dropout(ones, self.p, training=True)
        n = math.prod(shape)
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
        keep = words.view(torch.int16)[:n].view(shape) >= self._threshold
        return keep.to(dtype).mul_(self._scale)


def adaptive_log_probs(asm: nn.AdaptiveLogSoftmaxWithLoss, x: Tensor) -> Tensor:
    """x (N, H) -> log-probabilities (N, V); AdaptiveLogSoftmaxWithLoss.log_prob's maths."""
    head = F.log_softmax(asm.head(x).float(), dim=-1)  # (N, shortlist + clusters)
    parts = [head[:, : asm.shortlist_size]]
    for i, tail in enumerate(asm.tail):
        cluster = F.log_softmax(tail(x).float(), dim=-1)  # (N, cluster size)
        parts.append(cluster + head[:, asm.shortlist_size + i, None])
    return torch.cat(parts, dim=-1)


def adaptive_nll(asm: nn.AdaptiveLogSoftmaxWithLoss, x: Tensor, y: Tensor) -> Tensor:
    """x (N, H), y (N,) -> per-token NLL (N,) float32; each tail sees only its own rows."""
    bounds = torch.tensor(asm.cutoffs[:-1], device=y.device)  # tail starts
    cluster = torch.bucketize(y, bounds, right=True)  # (N,) 0 = shortlist
    head_idx = torch.where(cluster == 0, y, asm.shortlist_size + cluster - 1)
    head = F.log_softmax(asm.head(x).float(), dim=-1)  # (N, shortlist + clusters)
    logp = head.gather(1, head_idx[:, None]).squeeze(1)  # (N,)
    for i, tail in enumerate(asm.tail):
        rows = (cluster == i + 1).nonzero().squeeze(1)  # (n_i,)
        if rows.numel() == 0:
            continue
        local = F.log_softmax(tail(x.index_select(0, rows)).float(), dim=-1)  # (n_i, size)
        rel = (y.index_select(0, rows) - asm.cutoffs[i])[:, None]  # (n_i, 1)
        logp = logp.index_add(0, rows, local.gather(1, rel).squeeze(1))
    return -logp
