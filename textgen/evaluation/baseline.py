"""Character n-gram baseline: interpolated modified Kneser-Ney smoothing.

Every neural model is reported next to this count-based model, so it has to be a strong,
well-understood estimator (Chen & Goodman 1998, "An Empirical Study of Smoothing
Techniques for Language Modeling", section 3.6):

* the highest order uses raw counts; every lower order uses continuation counts
  ``N1+(. w_i..w_n)`` (how many distinct tokens precede the n-gram), because a lower order is
  only consulted when the longer context says little, and there a token's *diversity of
  contexts* predicts better than its frequency;
* each order has three discounts D1, D2, D3+ estimated from its count-of-counts
  ``n1..n4``: ``Y = n1 / (n1 + 2 n2)``, ``Dk = k - (k + 1) Y n_{k+1} / n_k``;
* every order is interpolated with the one below, and order 1 with the uniform
  distribution over the vocabulary, so every token id below ``vocab_size`` gets p > 0.

Implementation: n-grams are never hashed (no collisions to reason about). Order-1 grams are
the token ids; an n-gram is identified by its *rank* among the distinct n-grams of the
training data, computed exactly from the pair ``(rank of its first n-1 tokens, last token)``
packed into one int64 (``rank * vocab_size + token``). Counting is ``np.unique`` over those
keys and look-up of held-out n-grams is ``np.searchsorted``, so fitting order 7 on ~2M
tokens takes seconds and memory stays at a few hundred MB.

The training text is treated as if a begin-of-text marker preceded it (as KenLM does for
``<s>``): the n-gram at position 0 gets one extra continuation count, so every n-gram seen in
training has a positive count at every order. Scoring uses whatever history is available,
so the first tokens of a scored text are predicted from shorter contexts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

# Used when an order's count-of-counts cannot support the Chen & Goodman estimate (a tiny
# corpus without any n-gram seen exactly 1, 2, 3 and 4 times). Any 0 < Dk <= k keeps every
# distribution normalised; these are the usual textbook values.
_FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
# A discount of 0 would give the lower order (and so unseen tokens) zero weight.
_MIN_DISCOUNT = 0.05


@dataclass
class _Level:
    """Everything scoring needs about one order n.

    ``keys`` are the sorted packed keys ``context_rank * V + token`` of the distinct
    n-grams (n >= 2; an n-gram's rank is its index here). Per n-gram rank: ``discounted``
    is ``count - D(count)``. Per context rank (an (n-1)-gram rank; the single empty context
    for n = 1): ``total`` is the sum of counts and ``backoff`` is the mass freed by the
    discounts, sum of ``D(count)``, which is handed to the order below.
    """

    keys: np.ndarray | None
    discounted: np.ndarray
    total: np.ndarray
    backoff: np.ndarray
    discounts: tuple[float, float, float]


def estimate_discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Chen & Goodman's D1, D2, D3+ from the count-of-counts of ``counts`` (zeros ignored)."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == k)) for k in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        logger.debug("count-of-counts %s too sparse; fallback discounts", (n1, n2, n3, n4))
        return _FALLBACK_DISCOUNTS
    y = n1 / (n1 + 2 * n2)
    raw = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    # Dk <= k keeps count - D(count) >= 0, which is what makes each order sum to one.
    d1, d2, d3 = (float(np.clip(d, _MIN_DISCOUNT, k)) for k, d in enumerate(raw, start=1))
    return d1, d2, d3


def _build_level(
    counts: np.ndarray, keys: np.ndarray | None, num_contexts: int, vocab_size: int
) -> _Level:
    """Discount one order's counts and sum them per context."""
    discounts = estimate_discounts(counts)
    # d_of[c] = D(c): 0 for unseen grams, then D1, D2 and D3+ for every count >= 3.
    d_of = np.array((0.0, *discounts))
    d = d_of[np.minimum(counts, 3)]
    contexts = np.zeros(len(counts), np.int64) if keys is None else keys // vocab_size
    return _Level(
        keys=keys,
        discounted=counts - d,
        total=np.bincount(contexts, weights=counts, minlength=num_contexts),
        backoff=np.bincount(contexts, weights=d, minlength=num_contexts),
        discounts=discounts,
    )


def _as_ids(ids: np.ndarray, name: str) -> np.ndarray:
    """Validate a 1-D integer token array and return it as int64 (copies memmaps once)."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if int(arr.min()) < 0:
        raise ValueError(f"{name} holds a negative token id {int(arr.min())}")
    return arr


class KneserNey:
    """Interpolated modified Kneser-Ney n-gram model over integer token ids."""

    def __init__(self, order: int = 7, vocab_size: int | None = None) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be >= 1, got {order!r}")
        if vocab_size is not None and vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size!r}")
        self.order = order
        self.vocab_size = vocab_size
        self._levels: list[_Level] = []

    def fit(self, ids: np.ndarray) -> KneserNey:
        """Count and discount all n-grams of ``ids`` (the training split) up to ``order``."""
        start = time.perf_counter()
        ids = _as_ids(ids, "ids")
        top = int(ids.max())
        if self.vocab_size is None:
            self.vocab_size = top + 1
        elif top >= self.vocab_size:
            raise ValueError(f"token id {top} >= vocab_size {self.vocab_size}")
        counts, keys = self._count(ids)
        num_contexts = [1] + [len(c) for c in counts[:-1]]  # (n-1)-grams; order 1: one
        self._levels = [
            _build_level(c, k, n, self.vocab_size)
            for c, k, n in zip(counts, keys, num_contexts, strict=True)
        ]
        for n, level in enumerate(self._levels, start=1):
            logger.info(
                "order %d: %d n-grams, discounts %s",
                n,
                len(level.discounted),
                ", ".join(f"{d:.3f}" for d in level.discounts),
            )
        logger.info(
            "fitted %d-gram on %d tokens in %.1fs",
            self.order,
            len(ids),
            time.perf_counter() - start,
        )
        return self

    def _count(self, ids: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Per order: the counts KN uses (raw for the top order, continuation below) and keys.

        Orders longer than the text are skipped: they have no n-grams and scoring backs off.
        """
        vocab = self.vocab_size
        assert vocab is not None
        ranks = ids  # rank of the n-gram starting at each position; order 1: the token id
        raw = np.bincount(ids, minlength=vocab)  # raw counts of the previous order's n-grams
        keys: list[np.ndarray | None] = [None]
        counts: list[np.ndarray] = []
        for n in range(2, min(self.order, len(ids)) + 1):
            if len(raw) * vocab > 2**63:
                raise OverflowError(f"{len(raw)} distinct {n - 1}-grams x vocab overflow int64")
            packed = ranks[: len(ids) - n + 1] * vocab + ids[n - 1 :]
            k, first, inverse, c = np.unique(
                packed, return_index=True, return_inverse=True, return_counts=True
            )
            # Continuation count of an (n-1)-gram: distinct n-grams that end with it, i.e.
            # distinct left neighbours, plus one for the begin-of-text marker at position 0.
            cont = np.bincount(ranks[first + 1], minlength=len(raw))
            cont[ranks[0]] += 1
            counts.append(cont)
            keys.append(k)
            raw, ranks = c, inverse.reshape(-1)
        counts.append(raw)
        return counts, keys

    def _probs(self, ids: np.ndarray) -> np.ndarray:
        """p(x_t | up to order-1 previous tokens of ``ids``) for every position t."""
        if not self._levels:
            raise RuntimeError("KneserNey is not fitted; call fit() first")
        vocab = self.vocab_size
        assert vocab is not None
        if int(ids.max()) >= vocab:
            raise ValueError(f"token id {int(ids.max())} >= vocab_size {vocab}")
        size = len(ids)
        probs = np.full(size, 1.0 / vocab)
        ranks = ids  # rank of the training n-gram starting at each position, -1 if unseen
        for n, level in enumerate(self._levels, start=1):
            m = size - n + 1  # positions t = n-1 .. size-1 have n-1 tokens of history
            if m <= 0:
                break
            if level.keys is None:
                contexts, grams = np.zeros(m, np.int64), ranks
            else:
                contexts = ranks[:m]
                grams = self._lookup(level.keys, contexts, ids[n - 1 :])
            probs[n - 1 :] = self._interpolate(level, contexts, grams, probs[n - 1 :])
            ranks = grams
        return probs

    def _lookup(self, keys: np.ndarray, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Training rank of each (context rank, token) n-gram, or -1 where never seen."""
        assert self.vocab_size is not None
        packed = contexts * self.vocab_size + tokens
        idx = np.minimum(np.searchsorted(keys, packed), len(keys) - 1)
        found = (
            (contexts >= 0) & (keys[idx] == packed) if len(keys) else np.zeros(len(packed), bool)
        )
        return np.where(found, idx, -1)

    @staticmethod
    def _interpolate(
        level: _Level, contexts: np.ndarray, grams: np.ndarray, lower: np.ndarray
    ) -> np.ndarray:
        """p_n = (max(c - D(c), 0) + backoff(h) * p_{n-1}) / total(h); p_{n-1} if h unseen."""
        safe_ctx = np.maximum(contexts, 0)
        total = np.where(contexts >= 0, level.total[safe_ctx], 0.0)
        discounted = np.where(grams >= 0, level.discounted[np.maximum(grams, 0)], 0.0)
        seen = total > 0
        mixed = (discounted + level.backoff[safe_ctx] * lower) / np.where(seen, total, 1.0)
        return np.where(seen, mixed, lower)

    def bits_per_token(self, ids: np.ndarray) -> float:
        """Average -log2 p(x_t | history) over every position of ``ids``."""
        probs = self._probs(_as_ids(ids, "ids"))
        return float(-np.mean(np.log2(probs)))

    def prob(self, history: tuple[int, ...], token: int) -> float:
        """p(token | history); only the last ``order - 1`` history tokens matter."""
        keep = tuple(history)[max(0, len(history) - self.order + 1) :] if self.order > 1 else ()
        return float(self._probs(_as_ids(np.array((*keep, token)), "history + token"))[-1])
