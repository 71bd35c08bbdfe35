"""textgen.inference.generator: generation from a checkpoint: length, stop strings, streaming,
the vocabulary, prompts, samples and log-probs, Traditional/Simplified, word-level models."""

from __future__ import annotations

import pytest

from textgen.data.script import detect_text_script, to_script
from textgen.inference.engine import PromptError
from textgen.inference.events import Chunk, Done
from textgen.inference.generator import TextGenerator
from textgen.inference.sampling import GenerationConfig
from textgen.train.trainer import Trainer


def test_max_new_tokens_bounds_length(gen, generate):
    r = generate(gen, max_new_tokens=13, seed=1)
    assert r.finish_reason == "length" and r.samples[0].tokens == 13 and len(r.text) == 13


def test_stop_string_stops_before_it(gen, generate):
    free = generate(gen, max_new_tokens=60, seed=3).text
    stop = free[10]  # a character this seed is known to produce
    r = generate(gen, max_new_tokens=60, seed=3, stop=(stop,))
    assert r.finish_reason == "stop"
    assert r.text == free[: free.index(stop)]


def test_multi_char_stop_is_never_streamed(gen, generate):
    free = generate(gen, max_new_tokens=60, seed=4).text
    stop = free[20:22]
    cfg = GenerationConfig(max_new_tokens=60, seed=4, stop=(stop, "不会出现的字符串"))
    events = list(gen.stream("中国", cfg))
    streamed = "".join(e.text for e in events if isinstance(e, Chunk))
    done = events[-1]
    assert isinstance(done, Done) and done.result.finish_reason == "stop"
    assert streamed == done.result.text == free[: free.index(stop)]


def test_output_uses_only_vocabulary_and_unknown_prompt_chars_are_counted(gen, generate):
    r = generate(gen, "中国🙂㐀", max_new_tokens=200, temperature=2.0, seed=1)
    tokens = set(gen.vocab.tokens) - {"<unk>"}
    assert set(r.text) <= tokens
    assert r.unknown_prompt_chars == 2 and r.prompt_tokens == 4


def test_prompt_is_normalised_like_the_corpus(gen, generate):
    assert generate(gen, "  １９９８年,  中国 ", max_new_tokens=1).prompt == "1998年， 中国"
    with pytest.raises(PromptError, match="empty after normalisation"):
        generate(gen, " \u200b ", max_new_tokens=1)


def test_n_samples_and_logprobs(gen, generate):
    r = generate(gen, max_new_tokens=20, seed=1, n=3, logprobs=True, top_logprobs=2)
    assert [s.index for s in r.samples] == [0, 1, 2]
    assert len({s.text for s in r.samples}) == 3  # independent draws
    for s in r.samples:
        assert len(s.logprobs) == 20 and all(lp.logprob <= 0 for lp in s.logprobs)
        assert "".join(lp.token for lp in s.logprobs) == s.text
        assert all(len(lp.top) == 2 and max(lp.top.values()) >= lp.logprob for lp in s.logprobs)
    assert generate(gen, max_new_tokens=20, seed=1, n=3).samples[1].text == r.samples[1].text


def test_word_level_generation_counts_characters(tmp_path, pfr_slice, tiny_model, tiny_train):
    from textgen.data.prepare import PrepareConfig, prepare

    words = tmp_path / "w"
    prepare(PrepareConfig(sources=[str(pfr_slice)], out=str(words), level="word"), progress=False)
    Trainer(words, tmp_path / "r", tiny_model(words), tiny_train(max_steps=5)).run()
    gen = TextGenerator.from_checkpoint(tmp_path / "r")
    for n in (1, 7, 30):
        r = gen.generate("中国", GenerationConfig(max_new_tokens=n, seed=n))
        s = r.samples[0]
        assert len(s.text) == n and s.finish_reason == "length"
        assert s.tokens <= n  # words: fewer tokens than characters


# ----------------------------------------------------------------- Traditional / Simplified


TRADITIONAL = "春眠不覺曉，處處聞啼鳥"


@pytest.fixture(scope="module")
def bundled(bundled_checkpoint) -> TextGenerator:
    return TextGenerator.from_checkpoint(bundled_checkpoint)


def test_traditional_prompt_reaches_the_simplified_model_and_is_answered_in_kind(bundled, generate):
    assert bundled.script == "simplified" and bundled.info["script"] == "simplified"
    trad = generate(bundled, TRADITIONAL, max_new_tokens=40, seed=3, logprobs=True)
    assert trad.prompt == "春眠不觉晓，处处闻啼鸟" and trad.unknown_prompt_chars == 0
    assert trad.script == "traditional" and detect_text_script(trad.text) == "traditional"
    simp = generate(bundled, TRADITIONAL, max_new_tokens=40, seed=3, script="simplified")
    assert simp.script == "simplified" and detect_text_script(simp.text) == "simplified"
    # the model drew the same characters; only the output's script differs, char for char
    assert len(trad.text) == len(simp.text) and trad.text != simp.text
    assert to_script(trad.text, "simplified") == to_script(simp.text, "simplified")
    lps = trad.samples[0].logprobs
    assert "".join(lp.token for lp in lps) == trad.text  # tokens as shown, offsets still hold
    assert all(trad.text[lp.offset] == lp.token for lp in lps)


def test_converted_stream_adds_up_and_stop_strings_match_in_either_script(bundled, generate):
    greedy = generate(bundled, "中国", max_new_tokens=60, temperature=0).text
    cut = next(i for i, c in enumerate(greedy) if i > 3 and to_script(c, "traditional") != c)
    stop = to_script(greedy[cut], "traditional")  # a Traditional stop for a Simplified model
    config = GenerationConfig(
        max_new_tokens=60, temperature=0, stop=(stop,), n=2, top_logprobs=2, script="traditional"
    )
    events = list(bundled.stream("中国", config))
    result = events[-1].result
    for s in result.samples:
        assert s.finish_reason == "stop" and s.text == to_script(greedy[:cut], "traditional")
        streamed = [c for c in events if isinstance(c, Chunk) and c.index == s.index]
        assert "".join(c.text for c in streamed) == s.text
        assert [lp.offset for c in streamed for lp in c.logprobs or []] == list(range(cut))
