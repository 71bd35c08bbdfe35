"""Recurrent state: a tensor (L, B, H) for GRU/RNN, an ``(h, c)`` pair of those for LSTM.

Helpers that cut, select and concatenate states along the batch (dim 1): truncated BPTT
detaches it between steps, and the inference engine moves per-request rows in and out of
a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

State = Tensor | tuple[Tensor, Tensor]  # (L, B, H) or LSTM (h, c), each (L, B, H)


def map_state(state: State, fn: Callable[[Tensor], Tensor]) -> State:
    """Apply ``fn`` to the tensor, or to both tensors of an LSTM (h, c) state."""
    return (fn(state[0]), fn(state[1])) if isinstance(state, tuple) else fn(state)


def detach(state: State) -> State:
    """Cut the autograd graph (truncated BPTT)."""
    return map_state(state, Tensor.detach)


def select(state: State, index: Tensor | Sequence[int]) -> State:
    """Rows ``index`` of the batch (dim 1): (L, B, H) -> (L, len(index), H)."""
    h = state[0] if isinstance(state, tuple) else state
    idx = torch.as_tensor(index, dtype=torch.long, device=h.device)
    return map_state(state, lambda t: t.index_select(1, idx))


def stack(states: Sequence[State]) -> State:
    """Concatenate per-request states (L, b_i, H) along the batch dim -> (L, sum b_i, H)."""
    if not states:
        raise ValueError("stack needs at least one state, got none")
    first = states[0]
    if isinstance(first, tuple):
        pairs = [s for s in states if isinstance(s, tuple)]
        return (torch.cat([s[0] for s in pairs], 1), torch.cat([s[1] for s in pairs], 1))
    return torch.cat([s for s in states if isinstance(s, Tensor)], 1)


def split(state: State) -> list[State]:
    """Inverse of :func:`stack` for batch-1 states: one (L, 1, H) state per row."""
    h = state[0] if isinstance(state, tuple) else state
    return [select(state, [i]) for i in range(h.size(1))]
