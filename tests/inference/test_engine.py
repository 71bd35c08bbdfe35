"""textgen.inference.engine: continuous batching (requests join and leave between steps),
max_batch, cancelling, the queue limit."""

from __future__ import annotations

import pytest

from textgen.inference.engine import Engine, QueueFull
from textgen.inference.events import Done
from textgen.inference.generator import TextGenerator
from textgen.inference.sampling import GenerationConfig


def _collect(engine: Engine, prompt: str, cfg: GenerationConfig, out: dict):
    req = engine.request(prompt, cfg, lambda evs: out.setdefault(prompt, []).extend(evs))
    return engine.submit(req)


def test_requests_join_and_leave_between_steps(gen, generate):
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
    alone = generate(gen, "人民", max_new_tokens=20, seed=2, n=2)
    assert [s.text for s in out["人民"][-1].result.samples] == [s.text for s in alone.samples]
    assert out["中国"][-1].result.text == generate(gen, max_new_tokens=10, seed=1).text


def test_gru_checkpoint_batches_too(prepared, tmp_path, tiny_model, tiny_train, generate):
    from textgen.train.trainer import Trainer

    Trainer(prepared, tmp_path, tiny_model(prepared, cell="gru"), tiny_train(max_steps=3)).run()
    gru = TextGenerator.from_checkpoint(tmp_path)
    batched = generate(gru, max_new_tokens=15, seed=2, n=3)
    alone = [generate(gru, max_new_tokens=15, seed=2, n=3).samples[i].text for i in range(3)]
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
