"""textgen.model.state: cutting, selecting and joining recurrent states along the batch."""

from __future__ import annotations

import pytest
import torch

from textgen.model import state as states
from textgen.model.config import CELLS


@pytest.mark.parametrize("cell", CELLS)
def test_state_select_stack_split_round_trip(cell: str, make, ids, state_tensors, sizes) -> None:
    H, L, B = sizes.H, sizes.L, sizes.B
    m = make(cell).eval()
    _, state = m(ids())
    parts = states.split(state)
    assert len(parts) == B
    assert all(s.shape == (L, 1, H) for p in parts for s in state_tensors(p))
    for a, b in zip(state_tensors(states.stack(parts)), state_tensors(state), strict=True):
        torch.testing.assert_close(a, b)
    perm = states.select(state, [2, 0])
    for a, b in zip(state_tensors(perm), state_tensors(state), strict=True):
        torch.testing.assert_close(a, b[:, [2, 0]])
    with pytest.raises(ValueError, match="at least one state"):
        states.stack([])


def test_detach_state(make, ids, state_tensors) -> None:
    m = make("lstm")
    _, state = m(ids())
    assert all(s.requires_grad for s in state_tensors(state))
    assert not any(s.requires_grad for s in state_tensors(states.detach(state)))
