"""The sampling engine: parameters, determinism, stop strings, batching, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import textgen
from tests.conftest import tiny_model, tiny_train
from textgen.data.script import detect_text_script, to_script
from textgen.inference.engine import Engine, PromptError, QueueFull
from textgen.inference.generator import TextGenerator
from textgen.inference.sampling import Chunk, Done, GenerationConfig, RowParams, sample_next
from textgen.model.checkpoint import default_checkpoint


def train_tiny(prepared: Path, out: Path) -> Path:
    """A real (tiny, briefly trained) checkpoint: 1x16 LSTM, about a second of training."""
    from textgen.train.trainer import Trainer

    Trainer(prepared, out, tiny_model(prepared), tiny_train(max_steps=10)).run()
    return out / "last.pt"


@pytest.fixture(scope="module")
def ckpt(prepared, tmp_path_factory) -> Path:
    return train_tiny(prepared, tmp_path_factory.mktemp("gen_ckpt"))


@pytest.fixture(scope="module")
def gen(ckpt) -> TextGenerator:
    return TextGenerator.from_checkpoint(ckpt)


def run(gen: TextGenerator, prompt: str = "中国", **kw):
    return gen.generate(prompt, GenerationConfig(**kw))


# ----------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -1, "temperature must be a number in [0, 2], got -1"),
        ("top_p", 0.0, "top_p must be a number in (0, 1], got 0.0"),
        ("top_k", -2, "top_k must be an integer in [0, 100000], got -2"),
        ("max_new_tokens", 0, "max_new_tokens must be an integer >= 1, got 0"),
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


def test_greedy_is_deterministic_and_ignores_seed(gen):
    a = run(gen, max_new_tokens=30, temperature=0, seed=1)
    b = run(gen, max_new_tokens=30, temperature=0, seed=2)
    assert a.text == b.text and len(a.text) == 30


def test_top_k_1_equals_greedy(gen):
    greedy = run(gen, max_new_tokens=30, temperature=0)
    assert run(gen, max_new_tokens=30, temperature=1.0, top_k=1, seed=5).text == greedy.text


def test_same_seed_same_text_other_seed_other_text(gen):
    a = run(gen, max_new_tokens=40, seed=7)
    assert run(gen, max_new_tokens=40, seed=7).text == a.text
    assert run(gen, max_new_tokens=40, seed=8).text != a.text


def test_max_new_tokens_bounds_length(gen):
    r = run(gen, max_new_tokens=13, seed=1)
    assert r.finish_reason == "length" and r.samples[0].tokens == 13 and len(r.text) == 13


def test_stop_string_stops_before_it(gen):
    free = run(gen, max_new_tokens=60, seed=3).text
    stop = free[10]  # a character this seed is known to produce
    r = run(gen, max_new_tokens=60, seed=3, stop=(stop,))
    assert r.finish_reason == "stop"
    assert r.text == free[: free.index(stop)]


def test_multi_char_stop_is_never_streamed(gen):
    free = run(gen, max_new_tokens=60, seed=4).text
    stop = free[20:22]
    cfg = GenerationConfig(max_new_tokens=60, seed=4, stop=(stop, "不会出现的字符串"))
    events = list(gen.stream("中国", cfg))
    streamed = "".join(e.text for e in events if isinstance(e, Chunk))
    done = events[-1]
    assert isinstance(done, Done) and done.result.finish_reason == "stop"
    assert streamed == done.result.text == free[: free.index(stop)]


def test_output_uses_only_vocabulary_and_unknown_prompt_chars_are_counted(gen):
    r = run(gen, "中国🙂㐀", max_new_tokens=200, temperature=2.0, seed=1)
    tokens = set(gen.vocab.tokens) - {"<unk>"}
    assert set(r.text) <= tokens
    assert r.unknown_prompt_chars == 2 and r.prompt_tokens == 4


def test_prompt_is_normalised_like_the_corpus(gen):
    assert run(gen, "  １９９８年,  中国 ", max_new_tokens=1).prompt == "1998年， 中国"
    with pytest.raises(PromptError, match="empty after normalisation"):
        run(gen, " \u200b ", max_new_tokens=1)


def test_n_samples_and_logprobs(gen):
    r = run(gen, max_new_tokens=20, seed=1, n=3, logprobs=True, top_logprobs=2)
    assert [s.index for s in r.samples] == [0, 1, 2]
    assert len({s.text for s in r.samples}) == 3  # independent draws
    for s in r.samples:
        assert len(s.logprobs) == 20 and all(lp.logprob <= 0 for lp in s.logprobs)
        assert "".join(lp.token for lp in s.logprobs) == s.text
        assert all(len(lp.top) == 2 and max(lp.top.values()) >= lp.logprob for lp in s.logprobs)
    assert run(gen, max_new_tokens=20, seed=1, n=3).samples[1].text == r.samples[1].text


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


def test_repetition_penalty_breaks_greedy_loops(gen):
    plain = run(gen, max_new_tokens=80, temperature=0).text
    penalised = run(gen, max_new_tokens=80, temperature=0, repetition_penalty=3.0).text
    assert len(set(penalised)) > len(set(plain))


# ----------------------------------------------------------------- continuous batching


def _collect(engine: Engine, prompt: str, cfg: GenerationConfig, out: dict):
    req = engine.request(prompt, cfg, lambda evs: out.setdefault(prompt, []).extend(evs))
    return engine.submit(req)


def test_requests_join_and_leave_between_steps(gen):
    batches: list[int] = []
    engine = gen.engine(max_batch=8, on_step=lambda b, t: batches.append(b))
    out: dict = {}
    a = _collect(engine, "中国", GenerationConfig(max_new_tokens=10, seed=1), out)
    for _ in range(3):
        engine.step()
    b = _collect(engine, "人民", GenerationConfig(max_new_tokens=20, seed=2, n=2), out)
    while not engine.idle:
        engine.step()
    # a alone (its first token comes from the prefill), then a + b's two samples, then b alone
    assert batches[:3] == [1, 1, 1] and 3 in batches and batches[-1] == 2
    assert a.finished and b.finished and engine.in_flight == 0
    alone = run(gen, "人民", max_new_tokens=20, seed=2, n=2)
    assert [s.text for s in out["人民"][-1].result.samples] == [s.text for s in alone.samples]
    assert out["中国"][-1].result.text == run(gen, max_new_tokens=10, seed=1).text


def test_gru_checkpoint_batches_too(prepared, tmp_path):
    from textgen.train.trainer import Trainer

    Trainer(prepared, tmp_path, tiny_model(prepared, cell="gru"), tiny_train(max_steps=3)).run()
    gru = TextGenerator.from_checkpoint(tmp_path)
    batched = run(gru, max_new_tokens=15, seed=2, n=3)
    alone = [run(gru, max_new_tokens=15, seed=2, n=3).samples[i].text for i in range(3)]
    assert [s.text for s in batched.samples] == alone and all(len(t) == 15 for t in alone)


def test_max_batch_1_runs_one_request_at_a_time(gen):
    batches: list[int] = []
    engine = gen.engine(max_batch=1, on_step=lambda b, t: batches.append(b))
    out: dict = {}
    for p in ("中国", "人民", "经济"):
        _collect(engine, p, GenerationConfig(max_new_tokens=5, seed=1), out)
    while not engine.idle:
        engine.step()
    assert set(batches) == {1} and len(batches) == 3 * 4  # first token of each is the prefill's
    assert all(isinstance(out[p][-1], Done) for p in out)


def test_cancel_frees_the_slot_at_the_next_step(gen):
    engine = gen.engine()
    out: dict = {}
    req = _collect(engine, "中国", GenerationConfig(max_new_tokens=500, seed=1), out)
    engine.step()
    assert engine.active == 1
    req.cancel()
    engine.step()
    assert engine.idle and engine.in_flight == 0
    assert out["中国"][-1].result.finish_reason == "cancelled"


def test_queue_limit(gen):
    engine = gen.engine(max_queue=2)
    cfg = GenerationConfig(max_new_tokens=5)
    for _ in range(2):
        engine.submit(engine.request("中国", cfg))
    with pytest.raises(QueueFull, match="max_queue=2"):
        engine.submit(engine.request("中国", cfg))


# ----------------------------------------------------------------- default checkpoint, CLI


def test_default_checkpoint_order(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTGEN_CHECKPOINT", str(ckpt))
    assert default_checkpoint() == ckpt
    monkeypatch.delenv("TEXTGEN_CHECKPOINT")
    package = tmp_path / "src" / "textgen"
    monkeypatch.setattr(textgen, "__file__", str(package / "__init__.py"))
    with pytest.raises(FileNotFoundError, match="pass --checkpoint PATH"):
        default_checkpoint()
    repo_default = tmp_path / "src" / "checkpoints" / "default" / "model.pt"
    repo_default.parent.mkdir(parents=True)
    repo_default.write_bytes(b"x")
    assert default_checkpoint() == repo_default
    bundled = package / "default_model" / "model.pt"
    bundled.parent.mkdir(parents=True)
    bundled.write_bytes(b"x")
    assert default_checkpoint() == bundled


def test_cli_generate_streams_then_prints_json(gen, ckpt):
    args = ["--prompt", "中国", "--max-new-tokens", "25", "--temperature", "0.8", "--top-k", "40",
            "--seed", "1", "--checkpoint", str(ckpt), "--json"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "textgen", "generate", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    streamed, last = proc.stdout.rstrip("\n").rsplit("\n", 1)  # the text may hold newlines
    result = json.loads(last)
    expected = run(gen, max_new_tokens=25, temperature=0.8, top_k=40, seed=1).text
    assert result["text"] == expected and streamed == expected
    assert result["usage"]["completion_tokens"] == 25 and result["finish_reason"] == "length"


def test_cli_generate_reports_bad_parameters(ckpt):
    proc = subprocess.run(
        [sys.executable, "-m", "textgen", "generate", "--prompt", "中国", "--top-p", "2",
         "--checkpoint", str(ckpt)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # refused while parsing the flags (exit 2, argparse's usage error), before loading a model
    assert proc.returncode == 2 and "top_p must be a number in (0, 1], got 2.0" in proc.stderr


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


# ----------------------------------------------------------------- Traditional / Simplified

BUNDLED = Path(textgen.__file__).parent / "default_model" / "model.pt"  # checkpoints/default's
TRADITIONAL = "春眠不覺曉，處處聞啼鳥"


@pytest.fixture(scope="module")
def bundled() -> TextGenerator:
    return TextGenerator.from_checkpoint(BUNDLED)


def test_traditional_prompt_reaches_the_simplified_model_and_is_answered_in_kind(bundled):
    assert bundled.script == "simplified" and bundled.info["script"] == "simplified"
    trad = run(bundled, TRADITIONAL, max_new_tokens=40, seed=3, logprobs=True)
    assert trad.prompt == "春眠不觉晓，处处闻啼鸟" and trad.unknown_prompt_chars == 0
    assert trad.script == "traditional" and detect_text_script(trad.text) == "traditional"
    simp = run(bundled, TRADITIONAL, max_new_tokens=40, seed=3, script="simplified")
    assert simp.script == "simplified" and detect_text_script(simp.text) == "simplified"
    # the model drew the same characters; only the output's script differs, char for char
    assert len(trad.text) == len(simp.text) and trad.text != simp.text
    assert to_script(trad.text, "simplified") == to_script(simp.text, "simplified")
    lps = trad.samples[0].logprobs
    assert "".join(lp.token for lp in lps) == trad.text  # tokens as shown, offsets still hold
    assert all(trad.text[lp.offset] == lp.token for lp in lps)


def test_converted_stream_adds_up_and_stop_strings_match_in_either_script(bundled):
    greedy = run(bundled, "中国", max_new_tokens=60, temperature=0).text
    cut = next(i for i, c in enumerate(greedy) if i > 3 and to_script(c, "traditional") != c)
    stop = to_script(greedy[cut], "traditional")  # a Traditional stop for a Simplified model
    config = GenerationConfig(max_new_tokens=60, temperature=0, stop=(stop,), n=2,
                              top_logprobs=2, script="traditional")  # fmt: skip
    events = list(bundled.stream("中国", config))
    result = events[-1].result
    for s in result.samples:
        assert s.finish_reason == "stop" and s.text == to_script(greedy[:cut], "traditional")
        streamed = [c for c in events if isinstance(c, Chunk) and c.index == s.index]
        assert "".join(c.text for c in streamed) == s.text
        assert [lp.offset for c in streamed for lp in c.logprobs or []] == list(range(cut))


def test_cli_generate_script_flag(tmp_path):
    args = ["--prompt", "中国", "--script", "traditional", "--max-new-tokens", "20", "--seed", "2",
            "--checkpoint", str(BUNDLED), "--json"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "textgen", "generate", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    streamed, last = proc.stdout.rstrip("\n").rsplit("\n", 1)
    result = json.loads(last)
    assert result["script"] == "traditional" and streamed == result["text"]
    assert detect_text_script(result["text"]) == "traditional"
    bad = subprocess.run([sys.executable, "-m", "textgen", "generate", "--prompt", "中国",
                          "--script", "tw"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "--script: invalid choice: 'tw'" in bad.stderr
