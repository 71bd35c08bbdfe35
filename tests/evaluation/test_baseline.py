"""Tests for the interpolated modified Kneser-Ney baseline (textgen.evaluation.baseline)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from textgen.evaluation.baseline import KneserNey, estimate_discounts

VOCAB = 7  # tokens 5 and 6 never occur in the small training corpus below


def _corpus(seed: int = 0, size: int = 400) -> np.ndarray:
    """Skewed, locally repetitive ids in 0..4 so that every order has varied counts."""
    rng = np.random.default_rng(seed)
    phrases = [(0, 1, 2), (1, 3), (4, 0, 0, 2), (2,), (3, 4)]
    out: list[int] = []
    while len(out) < size:
        out.extend(phrases[rng.choice(len(phrases), p=[0.35, 0.25, 0.2, 0.1, 0.1])])
    return np.array(out[:size], dtype=np.int64)


def _reference_prob(train: list[int], order: int, vocab: int, history: tuple, token: int) -> float:
    """Direct, dictionary-based interpolated modified KN, written from the textbook formulas."""
    grams = [
        Counter(tuple(train[i : i + n]) for i in range(len(train) - n + 1))
        for n in range(1, order + 1)
    ]
    counts = [dict(grams[-1])]  # top order: raw counts; built from the top down
    for n in range(order - 1, 0, -1):
        cont = Counter(g[1:] for g in grams[n])  # distinct left neighbours of each n-gram
        cont[tuple(train[:n])] += 1  # the begin-of-text marker precedes the corpus
        counts.insert(0, dict(cont))
    p = 1.0 / vocab
    for n in range(1, order + 1):
        if len(history) < n - 1:
            break
        ctx = tuple(history[len(history) - n + 1 :]) if n > 1 else ()
        d1, d2, d3 = estimate_discounts(np.array(list(counts[n - 1].values())))
        disc = {g: (d1, d2, d3)[min(c, 3) - 1] for g, c in counts[n - 1].items()}
        same = [g for g in counts[n - 1] if g[:-1] == ctx]
        total = sum(counts[n - 1][g] for g in same)
        if total == 0:
            continue
        c = counts[n - 1].get((*ctx, token), 0)
        num = (c - disc[(*ctx, token)] if c else 0.0) + sum(disc[g] for g in same) * p
        p = num / total
    return p


def test_unigram_matches_hand_computation() -> None:
    # Counts a=1, b=2, c=3, d=4, e=1, and 5, 6 unseen: n1=2, n2=n3=n4=1, so
    # Y = 2/4, D1 = 1 - 2*0.5*1/2 = 0.5, D2 = 2 - 3*0.5 = 0.5, D3+ = 3 - 4*0.5 = 1.
    ids = np.array([0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4])
    model = KneserNey(order=1, vocab_size=VOCAB).fit(ids)
    # Freed mass (0.5*2 + 0.5 + 1*2) / 11 = 3.5/11, spread uniformly: 0.5/11 per token.
    assert model.prob((), 3) == pytest.approx((4 - 1 + 0.5) / 11, abs=1e-12)
    assert model.prob((), 0) == pytest.approx((1 - 0.5 + 0.5) / 11, abs=1e-12)
    assert model.prob((), 6) == pytest.approx(0.5 / 11, abs=1e-12)
    assert model.prob((9, 9, 9), 3) == model.prob((), 3)  # order 1 ignores history
    assert model.bits_per_token(np.array([3, 6])) == pytest.approx(
        -(math.log2(3.5 / 11) + math.log2(0.5 / 11)) / 2, abs=1e-12
    )


def test_discounts_from_count_of_counts() -> None:
    assert estimate_discounts(np.array([1, 1, 2, 3, 4, 0])) == pytest.approx((0.5, 0.5, 1.0))
    assert estimate_discounts(np.array([1, 2])) == (0.5, 1.0, 1.5)  # too sparse: fallback


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_probabilities_sum_to_one(order: int) -> None:
    model = KneserNey(order=order, vocab_size=VOCAB).fit(_corpus())
    histories = [
        (),
        (0,),
        (0, 1),
        (4, 0, 0),
        (1, 3, 4, 0, 0),
        (6,),
        (5, 6),
        (0, 1, 6),
        (2, 6, 2, 2),
    ]
    for history in histories:
        total = sum(model.prob(history, w) for w in range(VOCAB))
        assert total == pytest.approx(1.0, abs=1e-9), history


@pytest.mark.parametrize("order", [2, 3, 4])
def test_matches_dictionary_reference(order: int) -> None:
    train = _corpus(1, 150)
    model = KneserNey(order=order, vocab_size=VOCAB).fit(train)
    held_out = np.concatenate([_corpus(2, 40), [5, 6, 0, 1]])
    for t in range(len(held_out)):
        history = tuple(int(x) for x in held_out[max(0, t - order + 1) : t])
        expected = _reference_prob(train.tolist(), order, VOCAB, history, int(held_out[t]))
        assert model.prob(history, int(held_out[t])) == pytest.approx(expected, rel=1e-12)


def test_bits_per_token_uses_available_history() -> None:
    model = KneserNey(order=3, vocab_size=VOCAB).fit(_corpus())
    ids = np.array([4, 0, 0, 2, 1, 3])
    expected = [model.prob(tuple(ids[max(0, t - 2) : t]), int(ids[t])) for t in range(len(ids))]
    assert model.bits_per_token(ids) == pytest.approx(-np.mean(np.log2(expected)), rel=1e-12)


def test_higher_order_reduces_bits_on_repetitive_text() -> None:
    pattern = np.random.default_rng(3).integers(0, 20, size=50)
    train, held_out = np.tile(pattern, 40), np.tile(pattern, 3)
    bits = [KneserNey(order=n).fit(train).bits_per_token(held_out) for n in (1, 2, 3, 5)]
    assert bits[0] > bits[1] > bits[2] > bits[3]
    assert bits[3] < 0.5 < 3.0 < bits[0]


def test_unseen_tokens_get_finite_bits() -> None:
    model = KneserNey(order=4, vocab_size=50).fit(_corpus())
    bits = model.bits_per_token(np.array([49, 30, 0, 1, 2, 49]))
    assert math.isfinite(bits) and bits > 0
    assert model.prob((0, 1), 49) > 0


def test_default_vocab_and_memmap_input(tmp_path) -> None:
    ids = _corpus()
    path = tmp_path / "train.bin"
    ids.astype(np.uint16).tofile(path)
    mapped = np.memmap(path, dtype=np.uint16, mode="r")
    model = KneserNey(order=3).fit(mapped)
    assert model.vocab_size == 5
    assert model.bits_per_token(mapped[:50]) == KneserNey(order=3).fit(ids).bits_per_token(ids[:50])
    with pytest.raises(ValueError, match="token id 5 >= vocab_size 5"):
        model.bits_per_token(np.array([0, 5]))


def test_corpus_shorter_than_order() -> None:
    model = KneserNey(order=7, vocab_size=4).fit(np.array([1, 2, 3]))
    assert sum(model.prob((1, 2), w) for w in range(4)) == pytest.approx(1.0, abs=1e-12)
    assert math.isfinite(model.bits_per_token(np.array([1, 2, 3, 0, 1, 2, 3, 3])))


@pytest.mark.parametrize("order", [0, -3])
def test_bad_order(order: int) -> None:
    with pytest.raises(ValueError, match=f"order must be >= 1, got {order}"):
        KneserNey(order=order)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="empty"):
        KneserNey(order=3).fit(np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="1-D"):
        KneserNey(order=3).fit(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="integer"):
        KneserNey(order=3).fit(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="negative"):
        KneserNey(order=3).fit(np.array([0, -1]))
    with pytest.raises(ValueError, match="token id 9 >= vocab_size 5"):
        KneserNey(order=3, vocab_size=5).fit(np.array([0, 9]))
    with pytest.raises(RuntimeError, match="not fitted"):
        KneserNey(order=3).bits_per_token(np.array([0, 1]))
    model = KneserNey(order=2).fit(np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="empty"):
        model.bits_per_token(np.array([], dtype=np.int64))
