"""Sampling parameters and the next-token sampler: a chain of processors, then one draw.

One decode step yields log-probabilities for every sequence in flight, each with its own
parameters. :func:`sample_next` runs them through :data:`PROCESSORS`, each one concern over
all rows at once (the repetition penalty, the logit bias, the constraint's mask, the
temperature), then draws each row's token after its top-k and top-p filters with an
inverse-CDF lookup of a uniform number that the row's own seeded RNG supplies. Every stage
works row by row, so a sequence's draws never depend on which other sequences share the
batch: same seed, same text, constrained neighbours or not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from textgen.inference.config import GenerationConfig
from textgen.inference.events import TokenLogprob


@dataclass
class RowParams:
    """One row of a decode batch: its parameters, recent context, uniform draw, the tokens its
    constraint allows now (an additive mask (V,) float32, 0 or -inf; None: all) and its logit
    bias ((ids, values), or None)."""

    config: GenerationConfig
    recent: Sequence[int]
    uniform: float
    allowed: Tensor | None = None
    bias: tuple[Tensor, Tensor] | None = None


Processor = Callable[[Tensor, Sequence[RowParams]], None]


def sample_next(log_probs: Tensor, rows: Sequence[RowParams], banned: Sequence[int] = ()) -> Tensor:
    """log_probs (B, V) float32 -> next token ids (B,) long, one row per ``rows`` entry.

    ``banned`` ids (``<unk>``) are never drawn, so output only holds vocabulary tokens.
    """
    scores = log_probs.clone()  # (B, V)
    if banned:
        scores[:, list(banned)] = -math.inf
    for process in PROCESSORS:
        process(scores, rows)
    greedy = [r.config.temperature == 0 for r in rows]
    if all(greedy):
        return scores.argmax(dim=-1)  # (B,)
    uniforms = torch.tensor([r.uniform for r in rows], dtype=torch.float64)  # (B,)
    drawn = _draw_filtered(scores, rows, uniforms)
    if any(greedy):
        drawn = torch.where(torch.tensor(greedy), scores.argmax(dim=-1), drawn)
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


def _apply_logit_bias(scores: Tensor, rows: Sequence[RowParams]) -> None:
    """OpenAI's logit_bias: each row's values added to its tokens' scores, in place."""
    for i, row in enumerate(rows):
        if row.bias is not None:
            ids, values = row.bias  # (K,) each
            scores[i, ids] += values


def _apply_constraint(scores: Tensor, rows: Sequence[RowParams]) -> None:
    """Tokens a row's constraint does not allow now get -inf, in place."""
    idx = [i for i, r in enumerate(rows) if r.allowed is not None]
    if not idx:
        return
    penalty = torch.stack([rows[i].allowed for i in idx])  # type: ignore[misc]  # (C, V)
    if len(idx) == len(rows):
        scores += penalty
    else:
        scores[idx] += penalty
    if any(rows[i].bias is not None for i in idx):
        # a bias of -inf on every allowed token would leave nothing to draw: such a row's
        # allowed tokens come back level, so the draw still obeys the constraint
        sub = scores[idx]
        dead = torch.isinf(sub.amax(dim=-1))
        if bool(dead.any()):
            sub[dead] = penalty[dead]
            scores[idx] = sub


def _apply_temperature(scores: Tensor, rows: Sequence[RowParams]) -> None:
    """Divide each row by its temperature, in place; greedy rows (0) are left for argmax."""
    temps = [r.config.temperature for r in rows]
    if all(t in (0.0, 1.0) for t in temps):
        return
    t = torch.tensor([x if x > 0 else 1.0 for x in temps], dtype=scores.dtype)  # (B,)
    scores /= t[:, None]


# Order matters: the mask comes after the bias (a bias cannot reopen a masked token) and
# before top-k / top-p (the k likeliest among the allowed tokens).
PROCESSORS: tuple[Processor, ...] = (
    _apply_repetition_penalty,
    _apply_logit_bias,
    _apply_constraint,
    _apply_temperature,
)


HEAD_RANKS = 256  # ranks a top-k / top-p draw sorts when its filters allow


def _draw_filtered(scaled: Tensor, rows: Sequence[RowParams], uniforms: Tensor) -> Tensor:
    """Top-k / top-p filter, then inverse-CDF draw. scaled (B, V) -> ids (B,).

    A row without filters draws over the vocabulary in id order, a filtered row over its
    ranked head: each row takes its own path, so a neighbour's filters never change its draw.
    """
    filtered = [r.config.top_k > 0 or r.config.top_p < 1.0 for r in rows]
    if not any(filtered):
        return _inverse_cdf(torch.softmax(scaled, dim=-1), uniforms)
    if all(filtered):
        return _draw_ranked(scaled, rows, uniforms)
    on = torch.tensor(filtered)
    drawn = torch.empty(len(rows), dtype=torch.long)
    ranked = [r for r, f in zip(rows, filtered, strict=True) if f]
    drawn[~on] = _inverse_cdf(torch.softmax(scaled[~on], dim=-1), uniforms[~on])
    drawn[on] = _draw_ranked(scaled[on], ranked, uniforms[on])
    return drawn


def _draw_ranked(scaled: Tensor, rows: Sequence[RowParams], uniforms: Tensor) -> Tensor:
    """The draw of rows with a top-k or top-p filter: over their ranked, filtered head."""
    top_k = [r.config.top_k for r in rows]
    top_p = [r.config.top_p for r in rows]
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
    HEAD_RANKS, or the head already holds top_p of the mass), else the whole vocabulary: a
    top-k of the head is several times cheaper than a full sort (docs/benchmarks.md).
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
