"""Filling blanks with both sides' context: `textgen fill` and `POST /v1/fill`.

A next-character model sees only the left context. A bidirectional one would see the right
context too, but trained to predict the next character it sees its own target and learns
nothing (the model config refuses it; ``tests/inference/test_fill.py`` shows the leak). The
sound way is Bayes: for a blank between left context L and right context R,

    P(c | L, R)  is proportional to  P(c | L) * P(R | L, c)

so the left model proposes its ``candidates`` likeliest characters for the blank, and each is
rescored by the likelihood of everything after it (up to the next blank: a later blank is not
known yet), all candidates in one batched pass. Blanks are filled left to right, each with its
best character as context for the next. The probabilities returned are normalised over the
candidates considered.

A blank is ``＿`` (U+FF3F) or ``_``; a run of them is one blank per character.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from textgen.data.tokenizer import Vocab, make_tokenizer
from textgen.model.charlm import CharLM

BLANKS = ("＿", "_")
MAX_FILL_CHARS = 2000
MAX_BLANKS = 64  # each blank is a pass over its left context: bounded work per request


class FillError(ValueError):
    """A text that cannot be filled; the server answers 422 naming ``text``."""


@dataclass
class Candidate:
    char: str
    prob: float  # with both sides, normalised over the candidates considered
    left_prob: float  # the left model's own probability of it


@dataclass
class Blank:
    position: int  # character offset in the filled text
    candidates: list[Candidate]


@dataclass
class FillResult:
    text: str  # the text as the model read it, each blank filled with its best candidate
    blanks: list[Blank]


def split_blanks(text: str, normalize: Callable[[str], str]) -> list[str]:
    """The text's pieces between blanks, each normalised: n blanks give n + 1 pieces."""
    for mark in BLANKS[1:]:
        text = text.replace(mark, BLANKS[0])
    return [normalize(piece) if piece else "" for piece in text.split(BLANKS[0])]


def check_text(text: str, pieces: list[str]) -> None:
    if len(text) > MAX_FILL_CHARS:
        raise FillError(f"text must be at most {MAX_FILL_CHARS} characters, got {len(text)}")
    if len(pieces) == 1:
        raise FillError(f"text has no blank (＿ or _) to fill, got {text[:40]!r}")
    if len(pieces) - 1 > MAX_BLANKS:
        raise FillError(f"text must have at most {MAX_BLANKS} blanks, got {len(pieces) - 1}")
    if not "".join(pieces):
        raise FillError(f"text is only blanks: give some context around them, got {text[:40]!r}")


@torch.inference_mode()
def fill(
    model: CharLM,
    vocab: Vocab,
    normalize: Callable[[str], str],
    text: str,
    top: int = 5,
    candidates: int = 64,
    left_only: bool = False,
) -> FillResult:
    """Fill every blank of ``text``; ``top`` candidates per blank are returned, ``candidates``
    are rescored. ``left_only``: the left model alone (for comparison)."""
    pieces = split_blanks(text, normalize)
    check_text(text, pieces)
    encode = make_tokenizer(vocab).encode
    filled, blanks = pieces[0], []
    for i, right in enumerate(pieces[1:]):
        found = _fill_one(model, vocab, encode, filled, right, candidates, left_only)
        if not found:
            raise FillError(f"blank {i + 1} cannot be filled: the model offers only <unk>")
        blanks.append(Blank(len(filled), found[:top]))
        filled += found[0].char + right
    return FillResult(filled, blanks)


def _fill_one(
    model: CharLM,
    vocab: Vocab,
    encode: Callable[[str], object],
    left: str,
    right: str,
    k: int,
    left_only: bool,
) -> list[Candidate]:
    """Candidates for the blank between ``left`` and ``right``, best first."""
    left_ids = torch.as_tensor(encode(left) if left else [vocab.id("\n")], dtype=torch.long)
    features, state = model(left_ids[None])  # (1, T, H)
    logp = model.log_probs(features[:, -1:])[0, 0]  # (V,)
    logp[vocab.unk_id] = -math.inf
    head_lp, head_ids = logp.topk(min(k, len(vocab) - 1))  # (K,) each
    keep = torch.isfinite(head_lp)
    head_lp, head_ids = head_lp[keep], head_ids[keep]
    if not len(head_ids):
        return []
    scores = head_lp.clone()
    right_ids = torch.as_tensor(encode(right), dtype=torch.long) if right else None
    if right_ids is not None and len(right_ids) and not left_only:
        scores += _right_logp(model, state, head_ids, right_ids)
    post = torch.softmax(scores, dim=0)
    order = post.argsort(descending=True).tolist()
    return [
        Candidate(vocab.tokens[int(head_ids[j])], float(post[j]), math.exp(float(head_lp[j])))
        for j in order
    ]


def _right_logp(model: CharLM, state, heads: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """log P(right | left, c) for each candidate c in ``heads`` (K,), in one batched pass."""
    n = len(heads)
    expand = lambda s: s.expand(-1, n, -1).contiguous()  # noqa: E731  (L, 1, H) -> (L, K, H)
    start = tuple(expand(s) for s in state) if isinstance(state, tuple) else expand(state)
    seq = torch.cat([heads[:, None], right[None, :].expand(n, -1)], dim=1)  # (K, 1 + R)
    features, _ = model(seq[:, :-1], start)  # (K, R, H): predicts right
    lp = model.log_probs(features)  # (K, R, V)
    return lp.gather(2, seq[:, 1:, None])[..., 0].sum(dim=1)  # (K,)
