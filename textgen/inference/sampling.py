"""Sampling parameters, the vectorised next-token sampler, and what sampling produces.

One decode step yields log-probabilities for every sequence in flight, each with its own
parameters. :func:`sample_next` applies the repetition penalty, temperature, top-k and top-p
to all rows at once and draws each row's token with an inverse-CDF lookup of a uniform number
that the row's own seeded RNG supplies. A sequence's draws therefore never depend on which
other sequences share the batch: same seed, same text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from torch import Tensor

from textgen.data.script import SCRIPTS
from textgen.inference.limits import BOUNDS, MAX_STOP_CHARS, MAX_STOP_STRINGS

FinishReason = Literal["length", "stop", "timeout", "cancelled"]


@dataclass(frozen=True)
class GenerationConfig:
    """How to sample one request; validated on construction.

    ``temperature`` 0 means greedy. ``top_k`` 0 and ``top_p`` 1 switch those filters off.
    ``repetition_penalty`` > 1 divides the odds of every token seen in the last
    ``repetition_window`` tokens (prompt included), the cure for the loops char models fall
    into. Generation ends after ``max_new_tokens`` characters (a word model's last word may be
    cut) or at the first ``stop`` string, which is not part of the returned text. ``n`` independent samples share one prefill.
    ``script`` is the Chinese script of the returned text: "simplified", "traditional" or
    "auto" (the prompt's; the model's when the prompt shows neither).
    """

    max_new_tokens: int = 200
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    repetition_window: int = 64
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    script: str = "auto"

    def __post_init__(self) -> None:
        for name, bound in BOUNDS.items():  # the bounds live in textgen.inference.limits
            value = getattr(self, name)
            if not (name == "seed" and value is None):
                bound.check(name, value)
        if self.script not in SCRIPTS:
            raise ValueError(f"script must be one of {', '.join(SCRIPTS)}, got {self.script!r}")
        self._check_stop()

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> GenerationConfig:
        """The config from any mapping that uses its field names (parsed flags, a request's
        fields): other keys and None values are ignored, a list of stop strings is fine."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in values.items() if k in names and v is not None}
        if isinstance(kw.get("stop"), list):
            kw["stop"] = tuple(kw["stop"])
        return cls(**kw)

    def _check_stop(self) -> None:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        object.__setattr__(self, "stop", stop)  # frozen: normalise str -> tuple once
        if len(stop) > MAX_STOP_STRINGS:
            raise ValueError(f"stop must hold at most {MAX_STOP_STRINGS} strings, got {len(stop)}")
        for s in stop:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop strings must be non-empty strings, got {s!r}")
            if len(s) > MAX_STOP_CHARS:
                raise ValueError(f"stop strings must be at most {MAX_STOP_CHARS} chars, got {s!r}")

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs or self.top_logprobs > 0


@dataclass
class RowParams:
    """One row of a decode batch: its parameters, recent context and uniform draw."""

    config: GenerationConfig
    recent: Sequence[int]
    uniform: float


HEAD_RANKS = 256  # ranks a top-k / top-p draw sorts when its filters allow


def sample_next(log_probs: Tensor, rows: Sequence[RowParams], banned: Sequence[int] = ()) -> Tensor:
    """log_probs (B, V) float32 -> next token ids (B,) long, one row per ``rows`` entry.

    ``banned`` ids (``<unk>``) are never drawn, so output only holds vocabulary tokens.
    """
    scores = log_probs.clone()  # (B, V)
    if banned:
        scores[:, list(banned)] = -math.inf
    _apply_repetition_penalty(scores, rows)
    temps_list = [r.config.temperature for r in rows]
    if all(t == 0 for t in temps_list):
        return scores.argmax(dim=-1)  # (B,)
    temps = torch.tensor(temps_list, dtype=scores.dtype)  # (B,)
    scaled = scores / temps.clamp_min(1e-6)[:, None]  # (B, V); greedy rows are replaced below
    uniforms = torch.tensor([r.uniform for r in rows], dtype=torch.float64)  # (B,)
    drawn = _draw_filtered(scaled, rows, uniforms)
    if any(t == 0 for t in temps_list):
        drawn = torch.where(temps == 0, scores.argmax(dim=-1), drawn)
    return drawn


def _apply_repetition_penalty(scores: Tensor, rows: Sequence[RowParams]) -> None:
    """CTRL-style: a seen token's score s becomes s / p if s > 0 else s * p, in place.

    Log-probabilities are <= 0, so a penalty p > 1 always makes seen tokens less likely.
    """
    r_idx: list[int] = []
    c_idx: list[int] = []
    pens: list[float] = []
    for i, row in enumerate(rows):
        cfg = row.config
        if cfg.repetition_penalty == 1.0 or cfg.repetition_window == 0:
            continue
        seen = set(row.recent[-cfg.repetition_window :])
        r_idx.extend([i] * len(seen))
        c_idx.extend(seen)
        pens.extend([cfg.repetition_penalty] * len(seen))
    if not r_idx:
        return
    ri, ci = torch.tensor(r_idx), torch.tensor(c_idx)  # (S,) each, unique pairs
    s = scores[ri, ci]
    p = torch.tensor(pens, dtype=scores.dtype)
    scores[ri, ci] = torch.where(s > 0, s / p, s * p)


def _draw_filtered(scaled: Tensor, rows: Sequence[RowParams], uniforms: Tensor) -> Tensor:
    """Top-k / top-p filter, then inverse-CDF draw. scaled (B, V) -> ids (B,)."""
    top_k = [r.config.top_k for r in rows]
    top_p = [r.config.top_p for r in rows]
    if not any(top_k) and all(p >= 1.0 for p in top_p):
        probs = torch.softmax(scaled, dim=-1)  # (B, V)
        return _inverse_cdf(probs, uniforms)
    probs, order = _ranked(torch.softmax(scaled, dim=-1), top_k, top_p)  # (B, R) each
    vocab = scaled.size(-1)
    ks = torch.tensor([k if k > 0 else vocab for k in top_k])  # (B,)
    ranks = torch.arange(probs.size(-1))[None, :]  # (1, R)
    probs = probs.masked_fill(ranks >= ks[:, None], 0.0)
    ps = torch.tensor(top_p, dtype=probs.dtype)[:, None]  # (B, 1)
    before = probs.cumsum(dim=-1) - probs  # mass strictly above each rank
    probs = probs.masked_fill(before >= ps, 0.0)  # rank 0 always survives (before == 0)
    picked = _inverse_cdf(probs, uniforms)  # (B,) positions in sorted order
    return order.gather(1, picked[:, None]).squeeze(1)


def _ranked(probs: Tensor, top_k: list[int], top_p: list[float]) -> tuple[Tensor, Tensor]:
    """probs (B, V) -> (probabilities in descending order, their ids), each (B, R).

    R is HEAD_RANKS when every row's top-k or top-p filter drops all ranks past it (top_k <=
    HEAD_RANKS, or the head already holds top_p of the mass), else the whole vocabulary: at
    batch 32 a full sort of 4,689 entries costs ~4.6 ms on 2 cores, the top 256 ~0.9 ms.
    """
    # a row whose top-k is off (or past the head) and top-p is 1 keeps every rank: the mass
    # test below cannot pass (it needs m >= 1.001), so skip the topk and sort at once
    unfiltered = any(
        not 0 < k <= HEAD_RANKS and p >= 1.0 for k, p in zip(top_k, top_p, strict=True)
    )
    if probs.size(-1) > HEAD_RANKS and not unfiltered:
        head, order = probs.topk(HEAD_RANKS, dim=-1)  # (B, R) each
        mass = head.sum(dim=-1).tolist()
        # 1e-3 of slack: rounding must not decide whether rank R would have survived top-p
        if all(
            0 < k <= HEAD_RANKS or m >= p + 1e-3 for k, p, m in zip(top_k, top_p, mass, strict=True)
        ):
            return head, order
    return probs.sort(dim=-1, descending=True)


def _inverse_cdf(probs: Tensor, uniforms: Tensor) -> Tensor:
    """probs (B, V) >= 0, not necessarily normalised; uniforms (B,) in [0, 1) -> ids (B,)."""
    cdf = probs.double().cumsum(dim=-1)  # float64: the tail of 5k small terms stays exact
    target = (uniforms * cdf[:, -1])[:, None]  # (B, 1)
    # first index whose cdf exceeds the target: never a zero-probability token
    idx = torch.searchsorted(cdf, target, right=True).squeeze(1)
    return idx.clamp(max=probs.size(-1) - 1)


def token_logprobs(
    log_probs: Tensor, tokens: list[int], configs: Sequence[GenerationConfig], names: Sequence[str]
) -> list[TokenLogprob | None]:
    """Model log-probabilities of the drawn tokens (B,) and, per row, its top alternatives.

    They are the model's own (before temperature and penalties); ``offset`` is filled in by
    whoever places the token in its text. Rows that did not ask get None.
    """
    want = [c.wants_logprobs for c in configs]
    if not any(want):
        return [None] * len(tokens)
    chosen = log_probs.gather(1, torch.tensor(tokens)[:, None])[:, 0].tolist()  # (B,)
    k = max(c.top_logprobs for c in configs)
    top_v, top_i = log_probs.topk(k, dim=-1) if k else (None, None)  # (B, k) each
    out: list[TokenLogprob | None] = []
    for b, cfg in enumerate(configs):
        top = None
        if cfg.top_logprobs and top_v is not None and top_i is not None:
            pairs = zip(
                top_i[b, : cfg.top_logprobs].tolist(),
                top_v[b, : cfg.top_logprobs].tolist(),
                strict=True,
            )
            top = {names[i]: v for i, v in pairs}
        out.append(TokenLogprob(names[tokens[b]], chosen[b], 0, top) if want[b] else None)
    return out


# ---------------------------------------------------------------- what sampling produces


@dataclass
class TokenLogprob:
    """A generated token, its model log-probability, its char offset, the top alternatives."""

    token: str
    logprob: float
    offset: int
    top: dict[str, float] | None = None


@dataclass
class SampleResult:
    """One of a request's ``n`` samples. ``tokens`` counts every generated token."""

    index: int
    text: str
    finish_reason: FinishReason  # "timeout": the request's deadline
    tokens: int
    logprobs: list[TokenLogprob] | None = None


@dataclass
class GenerationResult:
    """A finished request: normalised prompt, counts, samples and timings (milliseconds).

    ``prompt`` is what the model read (normalised, in the model's script); ``script`` is the
    script of the samples' text ("unknown" when no conversion applies).
    """

    id: str
    prompt: str
    prompt_tokens: int
    unknown_prompt_chars: int
    samples: list[SampleResult]
    timing: dict[str, float]
    script: str = "unknown"

    @property
    def text(self) -> str:
        return self.samples[0].text if self.samples else ""

    @property
    def finish_reason(self) -> FinishReason:
        return self.samples[0].finish_reason if self.samples else "cancelled"

    @property
    def completion_tokens(self) -> int:
        return sum(s.tokens for s in self.samples)


@dataclass
class Chunk:
    """Newly generated text of sample ``index`` (streaming), with its tokens' log-probs."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Done:
    """The request is finished; the last event it gets."""

    result: GenerationResult


@dataclass
class Failed:
    """The engine hit an unexpected error; the request is over."""

    message: str


@dataclass
class Expired:
    """The request waited for a batch slot past its start deadline and never started."""

    waited_s: float


Event = Chunk | Done | Failed | Expired
