"""Every sampling parameter, declared once: its default, bounds, help and OpenAI name.

:data:`PARAMS` is the one declaration. :class:`~textgen.inference.sampling.GenerationConfig`
takes its defaults from it and validates against its bounds (:data:`BOUNDS`); the HTTP request
models (:mod:`textgen.server.requests`) build their fields from it, under OpenAI's names for
`/v1/completions`, so the OpenAPI schema publishes the same numbers and help; `textgen
generate` builds its flags from it. A server may lower ``max_new_tokens`` and ``n`` further
(its own settings).

Why these numbers:

* ``temperature`` in [0, 2]: 0 is greedy; past 2 a character model's distribution is so flat
  that the output is noise, whatever the prompt.
* ``repetition_penalty`` in [1, 5]: 1 is off; below 1 it *rewards* repeating, the very loop
  it exists to cure; past 5 every recently seen character is all but banned, which for
  Chinese (common characters recur every few words) breaks the text.
* ``top_k`` up to 100,000 and ``repetition_window`` up to 1,024: beyond any vocabulary we
  train, and beyond what changes the draw, while keeping each step's work bounded.
* ``max_new_tokens`` from 0: 0 generates nothing, for scoring a prompt (``echo``).
* ``logit_bias`` values in [-100, 100], OpenAI's range: -100 all but bans a token, 100 all
  but forces it.
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
MAX_LOGIT_BIAS = 100.0  # |bias| at most this, OpenAI's range
MAX_LOGIT_BIAS_KEYS = 300  # OpenAI's own cap on the map's size
MAX_PATTERN_CHARS = 1000  # a regex (the compile is bounded in time as well)
MAX_CHOICES = 64
MAX_CHOICE_CHARS = 200
MAX_ACROSTIC = 16  # heads: the longest free form has this many lines
# How decode steps may run (textgen.inference.decoder; `--precision` of serve and generate).
# Here, free of torch, so that the command line can offer them without importing it.
DECODE_PRECISIONS = ("auto", "fp32", "bf16", "int8")


class ParamError(ValueError):
    """A sampling parameter's value is refused; ``field`` names the parameter, so that a
    request layer can name it without reading the message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


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
        """Raise ParamError naming ``name``, the bound and ``value`` when it is outside."""
        if not self.contains(value):
            kind = "an integer" if self.integer else "a number"
            raise ParamError(name, f"{name} must be {kind} {self._phrase()}, got {value!r}")

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


@dataclass(frozen=True)
class Param:
    """One sampling parameter: default, help, numeric bound, and its `/v1/completions` name."""

    default: Any
    help: str
    bound: Bound | None = None
    openai: str | None = None  # OpenAI's name for it, where that differs
    openai_default: Any = None  # OpenAI's default, where that differs (max_tokens: 16)


FORMS_HELP = "五言绝句, 七言绝句, 五言律诗, 七言律诗, or LINESxCHARS such as 4x7"

# The one declaration (see the module docstring for the reasons behind each number). The order
# is the order of the CLI's help and of the request models' fields.
PARAMS: dict[str, Param] = {
    "max_new_tokens": Param(
        200, "generate at most this many characters", Bound(0, integer=True), "max_tokens", 16
    ),
    "temperature": Param(1.0, "0 = greedy", Bound(0.0, 2.0)),
    "top_k": Param(0, "sample from the k likeliest (0 = off)", Bound(0, 100_000, integer=True)),
    "top_p": Param(1.0, "nucleus probability mass (1 = off)", Bound(0.0, 1.0, low_open=True)),
    "repetition_penalty": Param(
        1.0,
        "> 1 discourages the characters of the last repetition_window tokens (1 = off)",
        Bound(1.0, 5.0),
    ),
    "repetition_window": Param(
        64, "tokens the repetition penalty looks back", Bound(0, 1024, integer=True)
    ),
    "stop": Param((), "stop before any of these strings (not part of the text)"),
    "seed": Param(None, "same seed, same text", Bound(0, MAX_SEED, integer=True)),
    "n": Param(1, "independent samples", Bound(1, integer=True)),
    "best_of": Param(
        None,
        "draw this many samples and return the n with the highest mean log-probability",
        Bound(1, integer=True),
    ),
    "logprobs": Param(False, "return each character's log-probability"),
    "top_logprobs": Param(
        0, "alternatives returned per character", Bound(0, MAX_TOP_LOGPROBS, integer=True)
    ),
    "echo": Param(False, "also return the prompt's log-probabilities (the first has none)"),
    "logit_bias": Param(
        None,
        f"add to tokens' log-probabilities: {{token id or character: bias in "
        f"[-{MAX_LOGIT_BIAS:g}, {MAX_LOGIT_BIAS:g}]}}; -100 bans a token",
    ),
    "regex": Param(
        None, "the generated text must match this regular expression", openai="guided_regex"
    ),
    "choice": Param(None, "generate exactly one of these strings", openai="guided_choice"),
    "form": Param(None, f"a poem's shape: {FORMS_HELP}"),
    "acrostic": Param(None, "the first character of each line of the form (藏头诗)"),
    "script": Param(
        "auto",
        "Chinese script of the output: auto (the prompt's; the model's when the prompt shows "
        "neither), simplified or traditional",
    ),
}
BOUNDS: dict[str, Bound] = {k: p.bound for k, p in PARAMS.items() if p.bound is not None}


def check(name: str, value: object) -> None:
    """Validate one sampling parameter against its entry in :data:`BOUNDS`."""
    BOUNDS[name].check(name, value)
