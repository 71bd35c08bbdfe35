"""Weight averaging: an exponential moving average (EMA) of the weights, evaluated and exported.

SGD-style training ends near a minimum but keeps bouncing around it; the average of the last
few thousand steps' weights usually sits closer to it (Polyak averaging; AWD-LSTM used
averaged SGD). ``--ema D`` keeps, after every optimizer step,

    avg = d * avg + (1 - d) * weights,   d = min(D, (1 + n) / (10 + n))

where n counts the updates (the ramp keeps the first steps' random weights from lingering).
Validation, samples, ``best.pt``'s score and ``textgen export`` use the averaged weights;
training continues from the raw ones. Checkpoints carry both (``averaged_model``), so a
resumed run continues bit for bit and inference (``load_model``) picks the average.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn


class WeightAverage:
    """The EMA of ``model``'s parameters (float32, on the model's device)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = model
        self.decay = decay
        self.params = list(model.parameters())  # tied parameters once
        self.avg = [p.detach().clone() for p in self.params]
        self.updates = 0
        # state-dict key -> its parameter's average (a tied parameter under each of its keys)
        by_id = {id(p): a for p, a in zip(self.params, self.avg, strict=True)}
        self._by_key = {
            k: by_id[id(v)] for k, v in model.state_dict(keep_vars=True).items() if id(v) in by_id
        }

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.avg, [p.detach() for p in self.params], 1.0 - d)

    def state_dict(self) -> dict[str, Tensor]:
        """The model's state dict with every parameter replaced by its average."""
        return {
            k: self._by_key.get(k, v).detach().clone()
            for k, v in self.model.state_dict(keep_vars=True).items()
        }

    @torch.no_grad()
    def load_state_dict(self, weights: dict[str, Tensor], updates: int) -> None:
        for k, a in self._by_key.items():
            a.copy_(weights[k])
        self.updates = updates

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own ones after."""
        with torch.no_grad():
            own = [p.detach().clone() for p in self.params]
            torch._foreach_copy_([p.data for p in self.params], self.avg)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params], own)


def averaged(average: WeightAverage | None) -> Any:
    """``average.swapped_in()``, or a no-op without averaging."""
    return average.swapped_in() if average is not None else nullcontext()
