"""textgen.inference.sampling: GenerationConfig's validation, the vectorised sampler (top-k,
top-p, repetition penalty), and what temperature, top-k and the seed do to generated text."""

from __future__ import annotations

import math

import pytest
import torch

from textgen.inference.sampling import GenerationConfig, RowParams, sample_next


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -1, "temperature must be a number in [0, 2], got -1"),
        ("top_p", 0.0, "top_p must be a number in (0, 1], got 0.0"),
        ("top_k", -2, "top_k must be an integer in [0, 100000], got -2"),
        ("max_new_tokens", -1, "max_new_tokens must be an integer >= 0, got -1"),
        ("n", 0, "n must be an integer >= 1, got 0"),
        ("repetition_penalty", 0, "repetition_penalty must be a number in [1, 5], got 0"),
        ("seed", -1, "seed must be an integer in [0, 9007199254740991], got -1"),
        ("stop", ("",), "stop strings must be non-empty strings, got ''"),
        ("temperature", math.nan, "temperature must be a number in [0, 2], got nan"),
    ],
)
def test_config_errors_name_field_and_value(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        GenerationConfig(**{field: value})


def test_generation_config_rejects_a_bad_script():
    assert GenerationConfig(script="traditional").script == "traditional"
    with pytest.raises(
        ValueError, match=r"script must be one of auto, simplified, traditional, got 'tw'"
    ):
        GenerationConfig(script="tw")


def test_greedy_is_deterministic_and_ignores_seed(gen, generate):
    a = generate(gen, max_new_tokens=30, temperature=0, seed=1)
    b = generate(gen, max_new_tokens=30, temperature=0, seed=2)
    assert a.text == b.text and len(a.text) == 30


def test_top_k_1_equals_greedy(gen, generate):
    greedy = generate(gen, max_new_tokens=30, temperature=0)
    assert generate(gen, max_new_tokens=30, temperature=1.0, top_k=1, seed=5).text == greedy.text


def test_same_seed_same_text_other_seed_other_text(gen, generate):
    a = generate(gen, max_new_tokens=40, seed=7)
    assert generate(gen, max_new_tokens=40, seed=7).text == a.text
    assert generate(gen, max_new_tokens=40, seed=8).text != a.text


def test_repetition_penalty_breaks_greedy_loops(gen, generate):
    plain = generate(gen, max_new_tokens=80, temperature=0).text
    penalised = generate(gen, max_new_tokens=80, temperature=0, repetition_penalty=3.0).text
    assert len(set(penalised)) > len(set(plain))


# ----------------------------------------------------------------- the sampler


def _rows(n: int, **kw) -> list[RowParams]:
    cfg = GenerationConfig(**kw)
    return [RowParams(cfg, [], (i + 0.5) / n) for i in range(n)]


def test_top_p_keeps_the_nucleus_only():
    logp = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().expand(50, -1)  # (50, 4)
    assert set(sample_next(logp, _rows(50, top_p=0.5)).tolist()) == {0}
    assert set(sample_next(logp, _rows(50, top_p=0.75)).tolist()) == {0, 1}
    assert set(sample_next(logp, _rows(50)).tolist()) == {0, 1, 2, 3}
    assert set(sample_next(logp, _rows(50, top_k=3)).tolist()) == {0, 1, 2}


def test_repetition_penalty_and_banned_tokens():
    logp = torch.tensor([[0.4, 0.35, 0.25]]).log()  # (1, 3)
    cfg = GenerationConfig(temperature=0, repetition_penalty=2.0)
    assert sample_next(logp, [RowParams(cfg, [0], 0.0)]).tolist() == [1]
    assert sample_next(logp, [RowParams(cfg, [0, 1], 0.0)]).tolist() == [2]
    assert sample_next(logp, _rows(1, temperature=0), banned=(0,)).tolist() == [1]


def test_top_k_top_p_draws_from_the_head_equal_full_sort_draws(monkeypatch):
    from textgen.inference import sampling

    g = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(5 * torch.randn(64, 4689, generator=g), dim=-1)  # peaked like a LM
    settings = [(0.8, 40, 1.0), (1.0, 0, 0.9), (0.5, 0, 0.5), (1.0, 256, 1.0), (0.7, 0, 0.95)]
    configs = [GenerationConfig(temperature=t, top_k=k, top_p=p) for t, k, p in settings]
    rows = [sampling.RowParams(configs[i % 5], [], (i * 0.6180339) % 1) for i in range(64)]
    scaled = logp / torch.tensor([r.config.temperature for r in rows])[:, None]
    top_k, top_p = [r.config.top_k for r in rows], [r.config.top_p for r in rows]
    assert sampling._ranked(scaled.softmax(-1), top_k, top_p)[0].size(-1) == 256  # the head
    fast = sampling.sample_next(logp, rows)
    monkeypatch.setattr(sampling, "HEAD_RANKS", 10**9)  # always the full sort
    assert torch.equal(fast, sampling.sample_next(logp, rows))
    monkeypatch.undo()
    wide = [*top_k[:-1], 300]  # one row keeps 300 ranks: the whole batch is sorted
    assert sampling._ranked(scaled.softmax(-1), wide, top_p)[0].size(-1) == 4689
    open_row = [*top_k[:-1], 0], [*top_p[:-1], 1.0]  # one row with neither filter: sorted too
    assert sampling._ranked(scaled.softmax(-1), *open_row)[0].size(-1) == 4689
