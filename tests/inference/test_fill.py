"""Filling blanks with both sides' context (textgen.inference.fill), and the leak that rules
out a bidirectional next-character model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from textgen.inference.fill import MAX_BLANKS, MAX_FILL_CHARS, FillError, fill
from textgen.model.config import ModelConfig


def test_each_blank_gets_ranked_candidates_and_the_text_is_filled(gen):
    r = fill(gen.model, gen.vocab, gen.normalize, "中国＿＿发展", top=4)
    assert len(r.blanks) == 2 and [b.position for b in r.blanks] == [2, 3]
    assert (
        r.text == "中国" + r.blanks[0].candidates[0].char + r.blanks[1].candidates[0].char + "发展"
    )
    for blank in r.blanks:
        probs = [c.prob for c in blank.candidates]
        assert len(probs) == 4 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert all(c.char != "<unk>" and 0 < c.left_prob <= 1 for c in blank.candidates)
    left = fill(gen.model, gen.vocab, gen.normalize, "中国＿＿发展", top=4, left_only=True)
    # left alone, the probabilities are the left model's, renormalised over the candidates
    c = left.blanks[0].candidates
    assert c[0].prob / c[1].prob == pytest.approx(c[0].left_prob / c[1].left_prob, rel=1e-4)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("没有空白", "has no blank"),
        ("＿＿ _", "only blanks"),
        ("中" * MAX_FILL_CHARS + "＿", f"at most {MAX_FILL_CHARS} characters"),
        ("中＿" * (MAX_BLANKS + 1), f"at most {MAX_BLANKS} blanks, got {MAX_BLANKS + 1}"),
    ],
)
def test_bad_texts_are_refused_naming_the_problem(gen, text, says):
    with pytest.raises(FillError, match=says):
        fill(gen.model, gen.vocab, gen.normalize, text)


def test_the_right_context_decides_where_the_left_cannot(bundled_checkpoint):
    from textgen.inference.generator import TextGenerator

    g = TextGenerator.from_checkpoint(bundled_checkpoint, precision="fp32")
    both = fill(g.model, g.vocab, g.normalize, "＿京是中国的首都")
    left = fill(g.model, g.vocab, g.normalize, "＿京是中国的首都", left_only=True)
    assert both.text == "北京是中国的首都" and left.blanks[0].candidates[0].char != "北"


def test_a_bidirectional_next_character_model_sees_its_own_target(corpus_lines):
    """Two stacked bidirectional layers trained to predict the next character drive the loss
    towards zero: the backward direction reads the target. The same model one-way cannot."""
    with pytest.raises(ValueError, match="bidirectional"):
        ModelConfig(50, bidirectional=True)
    text = "".join(corpus_lines(40))[:600]
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    losses = {}
    for both_ways in (True, False):
        torch.manual_seed(0)
        emb, rnn = nn.Embedding(len(chars), 32), nn.LSTM(32, 64, 2, bidirectional=both_ways)
        head = nn.Linear(128 if both_ways else 64, len(chars))
        params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
        opt = torch.optim.Adam(params, lr=1e-2)
        x, y = ids[:-1].view(-1, 1), ids[1:]  # (T, 1): one sequence, predict the next char
        for _ in range(100):
            out, _ = rnn(emb(x))
            loss = nn.functional.cross_entropy(head(out[:, 0]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses[both_ways] = float(loss.detach())
    assert losses[True] < 0.05 < 0.5 < losses[False], losses  # ~0 against a real loss
