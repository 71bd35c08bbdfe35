"""What a request asks of sampling: :class:`GenerationConfig`, validated on construction.

Each field is declared once (default, bounds, help) in :data:`textgen.inference.limits.PARAMS`;
here are the checks that span fields (best_of and n, one constraint at a time, the logit bias).
Every refusal is a :class:`~textgen.inference.limits.ParamError` naming its field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from textgen.data.script import SCRIPTS
from textgen.inference.limits import (
    BOUNDS,
    MAX_ACROSTIC,
    MAX_CHOICE_CHARS,
    MAX_CHOICES,
    MAX_LOGIT_BIAS,
    MAX_LOGIT_BIAS_KEYS,
    MAX_PATTERN_CHARS,
    MAX_STOP_CHARS,
    MAX_STOP_STRINGS,
    PARAMS,
    ParamError,
)

_D = {name: p.default for name, p in PARAMS.items()}  # the declared defaults


@dataclass(frozen=True)
class GenerationConfig:
    """How to sample one request; validated on construction. Each field is declared (default,
    bounds, help) in :data:`textgen.inference.limits.PARAMS`.

    ``temperature`` 0 means greedy. ``top_k`` 0 and ``top_p`` 1 switch those filters off.
    ``repetition_penalty`` > 1 divides the odds of every token seen in the last
    ``repetition_window`` tokens (prompt included), the cure for the loops char models fall
    into. Generation ends after ``max_new_tokens`` characters (a word model's last word may be
    cut), at the first ``stop`` string (not part of the text), or when a constraint (``regex``,
    ``choice``, ``form`` with ``acrostic``) is complete. ``n`` samples share one prefill;
    ``best_of`` draws that many and keeps the ``n`` best by mean log-probability. ``echo``
    scores the prompt. ``logit_bias`` maps token ids or characters to what is added to their
    log-probabilities. ``script`` is the Chinese script of the returned text.
    """

    max_new_tokens: int = _D["max_new_tokens"]
    temperature: float = _D["temperature"]
    top_k: int = _D["top_k"]
    top_p: float = _D["top_p"]
    repetition_penalty: float = _D["repetition_penalty"]
    repetition_window: int = _D["repetition_window"]
    stop: tuple[str, ...] = _D["stop"]
    seed: int | None = _D["seed"]
    n: int = _D["n"]
    best_of: int | None = _D["best_of"]
    logprobs: bool = _D["logprobs"]
    top_logprobs: int = _D["top_logprobs"]
    echo: bool = _D["echo"]
    logit_bias: Mapping[str, float] | None = _D["logit_bias"]
    regex: str | None = _D["regex"]
    choice: tuple[str, ...] | None = _D["choice"]
    form: str | None = _D["form"]
    acrostic: str | None = _D["acrostic"]
    script: str = _D["script"]

    def __post_init__(self) -> None:
        for name, bound in BOUNDS.items():  # the bounds live in textgen.inference.limits
            value = getattr(self, name)
            if not (value is None and PARAMS[name].default is None):
                bound.check(name, value)
        if self.script not in SCRIPTS:
            raise ParamError(
                "script", f"script must be one of {', '.join(SCRIPTS)}, got {self.script!r}"
            )
        if self.best_of is not None and self.best_of < self.n:
            raise ParamError("best_of", f"best_of must be >= n ({self.n}), got {self.best_of}")
        self._check_stop()
        self._check_directions()

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> GenerationConfig:
        """The config from any mapping that uses its field names (parsed flags, a request's
        fields): other keys and None values are ignored, a list of stop strings is fine."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in values.items() if k in names and v is not None}
        for k in ("stop", "choice"):
            if isinstance(kw.get(k), list):
                kw[k] = tuple(kw[k])
        return cls(**kw)

    def _check_stop(self) -> None:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        object.__setattr__(self, "stop", stop)  # frozen: normalise str -> tuple once
        if len(stop) > MAX_STOP_STRINGS:
            raise ParamError(
                "stop", f"stop must hold at most {MAX_STOP_STRINGS} strings, got {len(stop)}"
            )
        for s in stop:
            if not isinstance(s, str) or not s:
                raise ParamError("stop", f"stop strings must be non-empty strings, got {s!r}")
            if len(s) > MAX_STOP_CHARS:
                raise ParamError(
                    "stop", f"stop strings must be at most {MAX_STOP_CHARS} chars, got {s!r}"
                )

    def _check_directions(self) -> None:
        """The cheap checks of regex, choice, form, acrostic and logit_bias (compiling them
        against a vocabulary is the engine's: textgen.inference.constraints)."""
        asked = [k for k in ("regex", "choice", "form") if getattr(self, k) is not None]
        if len(asked) > 1:
            raise ParamError(
                asked[-1],
                f"{asked[-1]} cannot go with {asked[0]}: give at most one of regex, choice, form",
            )
        if self.acrostic is not None and (self.regex is not None or self.choice is not None):
            raise ParamError("acrostic", "acrostic goes with a form, not with regex or choice")
        if self.regex is not None and not 0 < len(self.regex) <= MAX_PATTERN_CHARS:
            raise ParamError(
                "regex", f"regex must be 1 to {MAX_PATTERN_CHARS} characters, got {len(self.regex)}"
            )
        if self.choice is not None:
            choice = tuple(self.choice)
            object.__setattr__(self, "choice", choice)
            if not 0 < len(choice) <= MAX_CHOICES:
                raise ParamError(
                    "choice", f"choice must list 1 to {MAX_CHOICES} strings, got {len(choice)}"
                )
            for c in choice:
                if not isinstance(c, str) or not 0 < len(c) <= MAX_CHOICE_CHARS:
                    raise ParamError(
                        "choice",
                        f"choice strings must be 1 to {MAX_CHOICE_CHARS} characters, got {c!r}",
                    )
        if self.acrostic is not None and not 0 < len(self.acrostic) <= MAX_ACROSTIC:
            raise ParamError(
                "acrostic",
                f"acrostic must be 1 to {MAX_ACROSTIC} characters, got {self.acrostic!r}",
            )
        self._check_bias()

    def _check_bias(self) -> None:
        bias = self.logit_bias
        if bias is None:
            return
        if len(bias) > MAX_LOGIT_BIAS_KEYS:
            raise ParamError(
                "logit_bias",
                f"logit_bias must hold at most {MAX_LOGIT_BIAS_KEYS} entries, got {len(bias)}",
            )
        for key, value in bias.items():
            ok = not isinstance(value, bool) and isinstance(value, (int, float))
            if not ok or not math.isfinite(value) or abs(value) > MAX_LOGIT_BIAS:
                raise ParamError(
                    "logit_bias",
                    f"logit_bias[{key!r}] must be a number in [-{MAX_LOGIT_BIAS:g}, "
                    f"{MAX_LOGIT_BIAS:g}], got {value!r}",
                )

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs or self.top_logprobs > 0

    @property
    def samples(self) -> int:
        """Samples drawn: ``best_of`` when set, else ``n``."""
        return self.best_of if self.best_of is not None else self.n

    @property
    def constrained(self) -> bool:
        return any(getattr(self, k) is not None for k in ("regex", "choice", "form", "acrostic"))
