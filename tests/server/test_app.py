"""The HTTP service in-process: every endpoint, streaming, scripts, 429 / 503, CORS."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from textgen.data.script import detect_text_script
from textgen.server.app import create_app
from textgen.server.responses import CompletionChunk, CompletionResponse, GenerateResponse
from textgen.server.settings import Settings


def test_health_model_models(client):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert info["vocab_size"] > 100 and info["model_config"]["cell"] == "lstm"
    assert len(info["sha256"]) == 64 and info["step"] == 10
    assert info["limits"]["max_prompt_chars"] == 100 and info["limits"]["max_queue"] >= 64
    assert set(info["limits"]) == {
        "max_batch",
        "max_queue",
        "max_prompt_chars",
        "max_new_tokens",
        "max_n",
        "max_body_bytes",
    }
    assert "val_bpc" in info["metrics"]
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == info["id"]


def test_generate_json(client):
    body = {"prompt": "中国", "max_new_tokens": 12, "seed": 3, "logprobs": True}
    r = client.post("/v1/generate", json=body).json()
    assert len(r["text"]) == 12 and r["finish_reason"] == "length"
    assert r["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 12,
        "total_tokens": 14,
        "unknown_prompt_chars": 0,
    }
    assert len(r["choices"][0]["logprobs"]) == 12 and r["timing"]["total_ms"] > 0
    assert GenerateResponse.model_validate(r).choices[0].text == r["text"]
    assert client.post("/v1/generate", json=body).json()["text"] == r["text"]


def test_generate_stream_matches_json(client, sse_events):
    body = {"prompt": "人民", "max_new_tokens": 15, "seed": 9, "stop": ["的了"]}
    plain = client.post("/v1/generate", json=body).json()
    with client.stream("POST", "/v1/generate", json={**body, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.iter_lines())
        rid = r.headers["x-request-id"]
    chunks = [d["text"] for name, d in events if name == "chunk"]
    assert events[-1][0] == "done" and len(chunks) >= 1
    assert "".join(chunks) == events[-1][1]["text"] == plain["text"]
    done = GenerateResponse.model_validate(events[-1][1])
    assert done.id == rid and done.timing.total_ms > 0


def test_completions_openai_shape(client):
    body = {
        "model": "anything",
        "prompt": ["中国"],
        "max_tokens": 5,
        "n": 2,
        "seed": 1,
        "logprobs": 2,
    }
    r = client.post("/v1/completions", json=body)
    body = r.json()
    assert body["object"] == "text_completion" and len(body["choices"]) == 2
    lp = body["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == 5 and len(lp["top_logprobs"][0]) == 2
    assert lp["text_offset"][0] == 2 and body["usage"]["completion_tokens"] == 10
    assert CompletionResponse.model_validate(body).id == r.headers["x-request-id"]


def test_completions_stream_ends_with_done(client, sse_events):
    body = {"prompt": "中国", "max_tokens": 6, "stream": True}
    with client.stream("POST", "/v1/completions", json=body) as r:
        events = sse_events(r.iter_lines())
    assert events[-1][1] == "[DONE]"
    chunks = [CompletionChunk.model_validate(d) for _, d in events[:-1]]
    text = "".join(c.choices[0].text for c in chunks)
    assert len(text) == 6 and chunks[-1].choices[0].finish_reason == "length"
    assert "usage" not in events[0][1] and len({c.id for c in chunks}) == 1


def test_playground_page(client):
    r = client.get("/")
    assert r.status_code == 200 and "textgen playground" in r.text and "/v1/generate" in r.text
    assert '<select id="script">' in r.text and 'value="traditional"' in r.text


def test_openapi_documents_limits_and_errors(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/generate", "/v1/completions"):
        assert {"200", "413", "422", "429", "503"} <= set(spec["paths"][path]["post"]["responses"])
    props = spec["components"]["schemas"]["GenerateRequest"]["properties"]
    assert props["prompt"]["maxLength"] == 100 and props["temperature"]["maximum"] == 2
    assert props["max_new_tokens"]["maximum"] == 1000 and props["n"]["maximum"] == 8
    scripts = ["auto", "simplified", "traditional"]
    assert props["script"]["enum"] == scripts and props["script"]["default"] == "auto"
    completion = spec["components"]["schemas"]["CompletionRequest"]["properties"]
    assert completion["script"]["enum"] == scripts


# ----------------------------------------------------------------- Traditional / Simplified

TRADITIONAL = "春眠不覺曉，處處聞啼鳥"


def test_traditional_prompt_gets_a_traditional_answer_json_and_stream(bundled_client, sse_events):
    assert bundled_client.get("/v1/model").json()["script"] == "simplified"
    body = {"prompt": TRADITIONAL, "max_new_tokens": 30, "seed": 4, "n": 2, "logprobs": True}
    r = bundled_client.post("/v1/generate", json=body).json()
    assert r["prompt"] == "春眠不觉晓，处处闻啼鸟" and r["usage"]["unknown_prompt_chars"] == 0
    assert r["script"] == "traditional"
    for choice in r["choices"]:
        assert detect_text_script(choice["text"]) == "traditional"
        assert "".join(t["token"] for t in choice["logprobs"]) == choice["text"]
    with bundled_client.stream("POST", "/v1/generate", json={**body, "stream": True}) as resp:
        events = sse_events(resp.iter_lines())
    for choice in r["choices"]:
        chunks = [d for name, d in events if name == "chunk" and d["index"] == choice["index"]]
        assert "".join(d["text"] for d in chunks) == choice["text"]  # same seed, streamed or not
    simp = bundled_client.post("/v1/generate", json={**body, "script": "simplified"}).json()
    assert simp["script"] == "simplified" and detect_text_script(simp["text"]) == "simplified"


def test_completions_script_field(bundled_client, sse_events):
    body = {"prompt": "中国", "max_tokens": 30, "seed": 5, "script": "traditional"}
    text = bundled_client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    assert len(text) == 30 and detect_text_script(text) == "traditional"
    with bundled_client.stream("POST", "/v1/completions", json={**body, "stream": True}) as resp:
        events = sse_events(resp.iter_lines())
    assert "".join(d["choices"][0]["text"] for _, d in events[:-1]) == text
    bad = bundled_client.post("/v1/completions", json={**body, "script": "zh-TW"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "script"


# ----------------------------------------------------------------- busy, draining, CORS


def test_full_queue_gets_429_and_a_dropped_stream_frees_its_slot(ckpt, wait_until):
    app = create_app(Settings(checkpoint=str(ckpt), max_queue=1, max_batch=1, max_new_tokens=10**6))
    long = {"prompt": "中国", "max_new_tokens": 10**6, "stream": True}  # minutes: never done here
    with TestClient(app) as c:
        engine = app.state.runner.engine
        with c.stream("POST", "/v1/generate", json=long) as r:
            lines = r.iter_lines()  # kept: a dropped iterator would close the stream
            next(lines)  # generating now
            busy = c.post("/v1/generate", json={"prompt": "中国", "max_new_tokens": 2})
            assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        assert wait_until(lambda: engine.in_flight == 0)  # cancelled, not finished
        ok = c.post("/v1/generate", json={"prompt": "中国", "max_new_tokens": 2})
        assert ok.status_code == 200


def test_draining_is_not_ready_but_alive_and_a_stopped_engine_is_neither(ckpt):
    app = create_app(Settings(checkpoint=str(ckpt)))
    with TestClient(app) as c:
        assert c.get("/ready").json()["status"] == "ok" and c.get("/health").status_code == 200
        app.state.runner.drain()
        r = c.get("/ready")
        assert r.status_code == 503 and "draining" in r.json()["error"]["message"]
        assert c.get("/health").json()["status"] == "draining"  # liveness: still alive
        r = c.post("/v1/generate", json={"prompt": "中国"})
        assert r.status_code == 503 and "shutting down" in r.json()["error"]["message"]
        app.state.runner.close(timeout=5)
        assert c.get("/health").status_code == 503 and c.get("/ready").status_code == 503


def test_cors_off_by_default_and_configurable(client, ckpt):
    pre = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/v1/generate", headers=pre).headers
    app = create_app(Settings(checkpoint=str(ckpt), cors_origins=("https://example.org",)))
    with TestClient(app) as c:
        r = c.options("/v1/generate", headers=pre)
        assert r.headers["access-control-allow-origin"] == "https://example.org"


def test_no_request_field_names_a_file_and_the_default_bind_is_loopback(client):
    assert Settings().host == "127.0.0.1"
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    fields = {
        f for name in ("GenerateRequest", "CompletionRequest") for f in schemas[name]["properties"]
    }
    assert "prompt" in fields and not [
        f for f in fields if re.search("path|file|dir|checkpoint", f)
    ]
    r = client.post("/v1/generate", json={"prompt": "中国", "checkpoint": "/etc/passwd"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "checkpoint"
    r = client.post(
        "/v1/completions", json={"prompt": "中国", "max_tokens": 2, "model": "/etc/passwd"}
    )
    assert r.status_code == 200 and r.json()["model"] == client.get("/v1/model").json()["id"]
