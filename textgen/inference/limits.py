"""The bounds of every sampling parameter, in one table.

:class:`~textgen.inference.sampling.GenerationConfig` validates against :data:`BOUNDS`, the
HTTP request models turn each entry into ``Field(ge=..., le=...)`` (so the OpenAPI schema
publishes the same numbers), and `textgen generate` checks its flags and writes its help
with them. A server may lower ``max_new_tokens`` and ``n`` further (its own settings).

Why these numbers:

* ``temperature`` in [0, 2]: 0 is greedy; past 2 a character model's distribution is so flat
  that the output is noise, whatever the prompt.
* ``repetition_penalty`` in [1, 5]: 1 is off; below 1 it *rewards* repeating, the very loop
  it exists to cure; past 5 every recently seen character is all but banned, which for
  Chinese (common characters recur every few words) breaks the text.
* ``top_k`` up to 100,000 and ``repetition_window`` up to 1,024: beyond any vocabulary we
  train, and beyond what changes the draw, while keeping each step's work bounded.
* ``seed`` up to 2**53 - 1: the largest integer a JSON number (a double) holds exactly, so a
  seed sent over HTTP is never rounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 32
MAX_TOP_LOGPROBS = 5
MAX_SEED = 2**53 - 1
# How decode steps may run (textgen.inference.decoder; `--precision` of serve and generate).
# Here, free of torch, so that the command line can offer them without importing it.
DECODE_PRECISIONS = ("auto", "fp32", "bf16", "int8")


@dataclass(frozen=True)
class Bound:
    """A closed (or, with ``low_open``, left-open) interval; ``high`` None: no upper bound."""

    low: float
    high: float | None = None
    low_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        """``[0, 2]``, ``(0, 1]`` or ``>= 1``, as the error messages and help texts say it."""
        low, high = _show(self.low), None if self.high is None else _show(self.high)
        if high is None:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"{'(' if self.low_open else '['}{low}, {high}]"

    def contains(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and (self.high is None or value <= self.high)

    def check(self, name: str, value: object) -> None:
        """Raise ValueError naming ``name``, the bound and ``value`` when it is outside."""
        if not self.contains(value):
            kind = "an integer" if self.integer else "a number"
            raise ValueError(f"{name} must be {kind} {self._phrase()}, got {value!r}")

    def _phrase(self) -> str:
        return self.describe() if self.high is None else f"in {self.describe()}"

    def field(self, high: float | None = None) -> dict[str, Any]:
        """Keyword arguments for pydantic's ``Field``; ``high`` lowers the upper bound."""
        kw: dict[str, Any] = {"gt" if self.low_open else "ge": self._num(self.low)}
        top = self.high if high is None else (high if self.high is None else min(high, self.high))
        if top is not None:
            kw["le"] = self._num(top)
        return kw

    def _num(self, x: float) -> float:
        return int(x) if self.integer else float(x)


def _show(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


# The one table (see the module docstring for the reasons behind each number).
BOUNDS: dict[str, Bound] = {
    "max_new_tokens": Bound(1, integer=True),
    "temperature": Bound(0.0, 2.0),
    "top_k": Bound(0, 100_000, integer=True),
    "top_p": Bound(0.0, 1.0, low_open=True),
    "repetition_penalty": Bound(1.0, 5.0),
    "repetition_window": Bound(0, 1024, integer=True),
    "seed": Bound(0, MAX_SEED, integer=True),
    "n": Bound(1, integer=True),
    "top_logprobs": Bound(0, MAX_TOP_LOGPROBS, integer=True),
}


def check(name: str, value: object) -> None:
    """Validate one sampling parameter against its entry in :data:`BOUNDS`."""
    BOUNDS[name].check(name, value)
