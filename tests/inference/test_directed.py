"""Directed generation in the library: forms and acrostics, regexes and choices, logit bias,
best_of and prompt scoring, and that none of them changes another request's text."""

from __future__ import annotations

import math
import re
import unicodedata

import numpy as np
import pytest
import torch

from textgen.data.tokenizer import Vocab
from textgen.evaluation.evaluate import evaluate_ids
from textgen.inference.constraints import Constraints
from textgen.inference.engine import Engine
from textgen.inference.patterns import (
    FieldError,
    RegexWorker,
    VocabKey,
    form_regex,
    needed_chars,
    parse_form,
)
from textgen.inference.sampling import GenerationConfig, RowParams, sample_next


def poem_problems(text: str, lines: int, chars: int, heads: str = "") -> list[str]:
    """An independent form checker (not the generator's regex): what is wrong, if anything."""
    found = re.findall(r"([^，。]*)([，。])", text)
    problems = []
    if "".join(a + b for a, b in found) != text:
        problems.append("text outside the lines")
    if len(found) != lines:
        problems.append(f"{len(found)} lines")
    for i, (line, mark) in enumerate(found):
        if len(line) != chars or not all(
            unicodedata.name(c, "").startswith("CJK UNIFIED IDEOGRAPH") for c in line
        ):
            problems.append(f"line {i + 1} {line!r}")
        if mark != ("。" if i % 2 or i == lines - 1 else "，"):
            problems.append(f"mark {i + 1}")
        if i < len(heads) and not line.startswith(heads[i]):
            problems.append(f"head {i + 1}")
    return problems


def _heads(gen, n: int) -> str:
    """n distinct CJK characters of the tiny model's vocabulary (its heads must exist)."""
    cjk = [t for t in gen.vocab.tokens if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    return "".join(cjk[3 : 3 + n])


def test_forms_parse_and_compile_to_their_shape():
    assert parse_form("七言律诗") == (8, 7) and parse_form("3x5") == (3, 5)
    for bad, says in [("九言", "unknown form"), ("40x7", "1 to 16 lines"), ("", "unknown")]:
        with pytest.raises(FieldError, match=says) as e:
            parse_form(bad)
        assert e.value.field == "form"
    with pytest.raises(FieldError, match="5 heads for a form of 4 lines") as e:
        form_regex("五言绝句", "一二三四五")
    assert e.value.field == "acrostic"
    poem = "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。"
    assert re.fullmatch(form_regex("五言绝句"), poem) and not poem_problems(poem, 4, 5)
    assert re.fullmatch(form_regex("五言绝句", "春处"), poem)
    assert not re.fullmatch(form_regex("五言绝句", "夏"), poem)
    assert needed_chars("中国x[a-z]+(ab)?") == {"中", "国", "x", "a", "b"}


@pytest.mark.parametrize("form", ["五言绝句", "七言绝句", "五言律诗", "七言律诗", "3x4"])
def test_every_form_with_and_without_heads_has_its_exact_shape(gen, form):
    lines, chars = parse_form(form)
    for seed, heads in [(1, ""), (2, _heads(gen, lines))]:
        cfg = GenerationConfig(form=form, acrostic=heads or None, seed=seed, temperature=0.9)
        r = gen.generate("中国", cfg)
        assert r.finish_reason == "stop" and not poem_problems(r.text, lines, chars, heads), r.text


def test_regex_and_choice_match_and_end_with_stop(gen):
    pattern = "[0-9]{2}年[0-9]月"
    for seed in range(5):
        r = gen.generate("中国", GenerationConfig(regex=pattern, seed=seed))
        assert re.fullmatch(pattern, r.text) and r.finish_reason == "stop"
    choices = ("中国", "人民", "经济发展")
    texts = {gen.generate("的", GenerationConfig(choice=choices, seed=s)).text for s in range(8)}
    assert texts <= set(choices)


def test_a_complete_pattern_that_may_go_on_ends_at_the_paragraph_mark():
    vocab = Vocab(["<unk>", "\n", "1", "2", "a"])
    built = Constraints(vocab, lambda t: t).for_config(GenerationConfig(choice=("1", "12")))
    assert built is not None
    s0 = built.start()
    assert built.mask(s0).nonzero().flatten().tolist() == [2]  # only "1"
    s1, entry, is_end = built.advance(s0, 2)
    assert not entry.complete and not is_end
    assert built.mask(s1).nonzero().flatten().tolist() == [1, 3]  # "\n" (the end) or "2"
    _, entry, is_end = built.advance(s1, 1)
    assert entry.complete and is_end  # the end mark: complete, not text
    _, entry, is_end = built.advance(s1, 3)
    assert entry.complete and not is_end  # "12": complete and cannot go on


def test_constraint_errors_name_the_field_and_what_is_missing(gen):
    engine = gen.engine()
    cases = [
        (GenerationConfig(regex="("), "regex", "invalid regular expression"),
        (GenerationConfig(regex="ж+"), "regex", "'ж'"),
        (GenerationConfig(regex="[\u0100-\u0110]+"), "regex", "no text of this model"),
        (GenerationConfig(choice=("中国", "ж")), "choice", "'ж'"),
        (GenerationConfig(form="五言绝句", acrostic="ж"), "acrostic", "'ж'"),
        (GenerationConfig(logit_bias={"ж": 1.0}), "logit_bias", "'ж'"),
        (GenerationConfig(logit_bias={"99999": 1.0}), "logit_bias", "99999"),
    ]
    for cfg, field, says in cases:
        with pytest.raises(FieldError, match=re.escape(says)) as e:
            engine.request("中国", cfg)
        assert e.value.field == field
    with pytest.raises(ValueError, match="choice must list 1 to"):
        GenerationConfig(choice=())
    with pytest.raises(ValueError, match="form cannot go with regex"):
        GenerationConfig(regex="a", form="五言绝句")
    with pytest.raises(ValueError, match=re.escape("logit_bias['x'] must be a number in")):
        GenerationConfig(logit_bias={"x": 101})


def test_a_pathological_regex_is_stopped_and_the_worker_recovers(gen):
    worker = RegexWorker(timeout=0.3)
    key = VocabKey(tuple(gen.vocab.tokens), (0,))
    try:
        worker.compile("中国", key)  # warm: the first compile also starts the process
        with pytest.raises(FieldError, match="too complex: compiling it took over 0.3 s"):
            worker.compile("(中|国)*中(中|国){22}", key)
        assert worker.compile("中+", key).get_initial_state() is not None
    finally:
        worker.close()


def _run(engine: Engine, jobs: list[tuple[str, GenerationConfig]]) -> list[list[str]]:
    reqs = [engine.submit(engine.request(p, c)) for p, c in jobs]
    while not engine.idle:
        engine.step()
    return [[s.text for s in r.result().samples] for r in reqs]


def test_a_constrained_neighbour_does_not_change_a_request_s_text(gen):
    free = ("人民", GenerationConfig(max_new_tokens=30, seed=7, temperature=0.9, top_k=20))
    poem = ("中国", GenerationConfig(form="五言绝句", seed=3, temperature=0.9))
    banned = ("经济", GenerationConfig(max_new_tokens=30, seed=4, logit_bias={"的": -100}))
    alone = [_run(gen.engine(), [job])[0] for job in (free, poem, banned)]
    together = _run(gen.engine(), [free, poem, banned])
    assert together == alone


def test_logit_bias_by_character_or_id_bans_or_forces(gen):
    base = dict(max_new_tokens=40, seed=5, temperature=1.0)
    free = gen.generate("中国", GenerationConfig(**base)).text
    common = max(set(free), key=free.count)
    by_char = gen.generate("中国", GenerationConfig(**base, logit_bias={common: -100})).text
    by_id = str(gen.vocab.id(common))
    assert common not in by_char
    assert by_char == gen.generate("中国", GenerationConfig(**base, logit_bias={by_id: -100})).text
    forced = gen.generate("中国", GenerationConfig(**base, logit_bias={"国": 100})).text
    assert set(forced) == {"国"}


def test_best_of_returns_the_samples_of_highest_mean_logprob(gen):
    base = dict(max_new_tokens=12, seed=9, temperature=1.0)
    all4 = gen.generate("中国", GenerationConfig(**base, n=4, logprobs=True)).samples
    mean = [sum(t.logprob for t in s.logprobs) / len(s.logprobs) for s in all4]
    best = sorted(range(4), key=lambda i: -mean[i])[:2]
    got = gen.generate("中国", GenerationConfig(**base, n=2, best_of=4)).samples
    assert [s.text for s in got] == [all4[i].text for i in best] and [s.index for s in got] == [
        0,
        1,
    ]


def test_echo_scores_the_prompt_as_eval_does(gen):
    prompt = "中国人民银行今天宣布，经济发展的新年。"
    r = gen.generate(prompt, GenerationConfig(echo=True, max_new_tokens=0, top_logprobs=2))
    lps = r.prompt_logprobs
    assert r.text == "" and r.samples[0].tokens == 0 and lps is not None
    assert lps[0].logprob is None and "".join(t.token for t in lps) == r.prompt
    ids = gen.engine().tokenizer.encode(r.prompt)
    ev = evaluate_ids(gen.model, np.asarray(ids), gen.vocab, batch_size=1)
    bits = -sum(t.logprob for t in lps[1:]) / math.log(2)
    assert bits / (len(ids) - 1) == pytest.approx(ev["bpc"], rel=1e-5)
    assert all(len(t.top) == 2 for t in lps[1:]) and lps[3].offset == 3
    one = gen.generate("中", GenerationConfig(echo=True, max_new_tokens=0)).prompt_logprobs
    assert one is not None and [(t.token, t.logprob) for t in one] == [("中", None)]


def test_processors_mask_bias_and_leave_other_rows_alone():
    torch.manual_seed(0)
    logp = torch.log_softmax(torch.randn(3, 12), dim=-1)
    cfg = GenerationConfig(temperature=0.7, top_k=5)
    allowed = torch.full((12,), -math.inf)
    allowed[[4, 9]] = 0.0
    bias = (torch.tensor([2]), torch.tensor([100.0]))
    rows = [RowParams(cfg, [], 0.3), RowParams(cfg, [], 0.3, allowed), RowParams(cfg, [], 0.3)]
    rows[2].bias = bias
    out = sample_next(logp, rows).tolist()
    assert out[1] in (4, 9) and out[2] == 2
    assert out[0] == sample_next(logp[:1], rows[:1]).item()  # its neighbours change nothing
    # every allowed token banned by the bias: the draw still keeps to the constraint
    rows[1].bias = (torch.tensor([4, 9]), torch.tensor([-math.inf, -math.inf]))
    assert sample_next(logp, rows)[1].item() in (4, 9)
