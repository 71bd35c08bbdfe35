"""Deadlines: a request that runs out of time keeps its text ("timeout"); one that waits too
long for a batch slot gets 503 with Retry-After; a per-request timeout is capped."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from textgen.inference.events import Chunk, Done, Expired
from textgen.inference.generator import TextGenerator
from textgen.inference.sampling import GenerationConfig
from textgen.server.app import create_app
from textgen.server.settings import Settings

LONG = {"prompt": "中国", "max_new_tokens": 20_000}  # ~20 s on the bundled model: never done


def _drive(engine, request, seconds: float = 30.0) -> list:
    events: list = []
    request.sink = events.extend
    engine.submit(request)
    end = time.monotonic() + seconds
    while not request.finished and time.monotonic() < end:
        engine.step()
    return events


def test_the_engine_ends_a_late_request_with_timeout_and_keeps_its_text(bundled):
    gen = TextGenerator.from_checkpoint(bundled)
    engine = gen.engine(max_batch=4)
    config = GenerationConfig(max_new_tokens=5000, n=2, stop=("。。。",))  # a stop holds text back
    req = engine.request("中国", config, stream=True, timeout=0.3)
    events = _drive(engine, req)
    done = events[-1]
    assert isinstance(done, Done) and {s.finish_reason for s in done.result.samples} == {"timeout"}
    for s in done.result.samples:
        assert 0 < len(s.text) < 5000 and s.tokens >= len(s.text)
        streamed = "".join(e.text for e in events if isinstance(e, Chunk) and e.index == s.index)
        assert streamed == s.text  # held-back text was flushed before Done
    assert engine.in_flight == 0 and engine.idle


def test_the_engine_expires_a_request_that_never_got_a_slot(bundled):
    gen = TextGenerator.from_checkpoint(bundled)
    engine = gen.engine(max_batch=1)
    first = engine.request("中国", GenerationConfig(max_new_tokens=5000))
    first.sink = lambda events: None
    engine.submit(first)
    engine.step()  # admitted: it holds the only row
    waiting = engine.request("人民", GenerationConfig(max_new_tokens=5), queue_timeout=0.2)
    events = _drive(engine, waiting, seconds=10)
    assert len(events) == 1 and isinstance(events[0], Expired) and events[0].waited_s >= 0.2
    assert engine.in_flight == 1 and engine.queue_depth == 0  # only the first one is left
    first.cancel()
    engine.step()
    assert engine.in_flight == 0


@pytest.fixture(scope="module")
def slow_server(bundled):
    """The bundled model (~1,000 chars/s at most here): LONG takes many seconds."""
    settings = Settings(checkpoint=str(bundled), request_timeout=0.5, max_new_tokens=20_000)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def one_row_server(bundled):
    """One batch row: a second request waits, for at most 0.3 s."""
    settings = Settings(
        checkpoint=str(bundled), max_batch=1, queue_timeout=0.3, max_new_tokens=20_000
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_a_json_request_past_the_timeout_ends_timeout_with_text(slow_server):
    t0 = time.monotonic()
    r = slow_server.post("/v1/generate", json={**LONG, "timeout": 60})  # capped at 0.5 s
    took = time.monotonic() - t0
    body = r.json()
    assert r.status_code == 200 and body["finish_reason"] == "timeout" and took < 5
    assert 0 < len(body["text"]) < 20_000 and body["choices"][0]["finish_reason"] == "timeout"


def test_a_stream_past_the_timeout_says_so_in_its_last_event(slow_server, sse_events):
    with slow_server.stream("POST", "/v1/generate", json={**LONG, "stream": True}) as r:
        events = sse_events(r.iter_lines())
    name, done = events[-1]
    assert name == "done" and done["finish_reason"] == "timeout"
    assert "".join(d["text"] for n, d in events if n == "chunk") == done["text"] != ""
    body = {"prompt": "中国", "max_tokens": 20_000, "stream": True, "timeout": 0.2}
    with slow_server.stream("POST", "/v1/completions", json=body) as r:
        events = sse_events(r.iter_lines())
    assert events[-1][1] == "[DONE]" and events[-2][1]["choices"][0]["finish_reason"] == "timeout"


def test_waiting_past_the_queue_timeout_gets_503_with_retry_after(one_row_server):
    c = one_row_server
    with c.stream("POST", "/v1/generate", json={**LONG, "stream": True}) as r:
        lines = r.iter_lines()  # kept: a dropped iterator would close the stream
        next(lines)  # it holds the only row for seconds
        late = c.post("/v1/generate", json={"prompt": "人民", "max_new_tokens": 2})
        assert late.status_code == 503 and late.headers["retry-after"] == "1"
        assert "waited" in late.json()["error"]["message"]
        body = {"prompt": "人民", "max_new_tokens": 2, "stream": True}
        late = c.post("/v1/generate", json=body)  # before any event: still a 503
        assert late.status_code == 503
    ok = c.post("/v1/generate", json={"prompt": "人民", "max_new_tokens": 2})
    assert ok.status_code == 200


def test_a_timeout_must_be_positive(slow_server):
    r = slow_server.post("/v1/generate", json={**LONG, "timeout": 0})
    assert r.status_code == 422 and r.json()["error"]["param"] == "timeout"
