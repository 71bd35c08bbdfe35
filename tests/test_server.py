"""The HTTP service: every endpoint and error status in-process, then the real `textgen serve`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from devtools import local_server as local
from tests.test_generate import BUNDLED, train_tiny
from textgen.data.script import detect_text_script
from textgen.server.app import create_app
from textgen.server.settings import Settings


@pytest.fixture(scope="module")
def ckpt(prepared, tmp_path_factory) -> Path:
    return train_tiny(prepared, tmp_path_factory.mktemp("serve_ckpt"))


@pytest.fixture(scope="module")
def client(ckpt) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(checkpoint=str(ckpt), max_prompt_chars=100))) as c:
        yield c


@pytest.fixture(scope="module")
def small_client(ckpt) -> Iterator[TestClient]:
    """Small limits keep schema fuzzing fast (it tries the largest values allowed)."""
    settings = Settings(checkpoint=str(ckpt), max_new_tokens=20, max_n=2, max_prompt_chars=50)
    with TestClient(create_app(settings)) as c:
        yield c


def sse_events(lines: Iterator[str]) -> list[tuple[str, object]]:
    """(event name, parsed data) pairs from Server-Sent Events lines."""
    events, name = [], "message"
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
            events.append((name, data if data == "[DONE]" else json.loads(data)))
            name = "message"
    return events


def wait_until(check, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return False


# ----------------------------------------------------------------- endpoints (in-process)


def test_health_model_models(client):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert info["vocab_size"] > 100 and info["model_config"]["cell"] == "lstm"
    assert len(info["sha256"]) == 64 and info["step"] == 10
    assert info["limits"]["max_prompt_chars"] == 100 and info["limits"]["max_queue"] >= 64
    assert "val_bpc" in info["metrics"]
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == info["id"]


def test_generate_json(client):
    body = {"prompt": "中国", "max_new_tokens": 12, "seed": 3, "logprobs": True}
    r = client.post("/v1/generate", json=body).json()
    assert len(r["text"]) == 12 and r["finish_reason"] == "length"
    assert r["usage"] == {"prompt_tokens": 2, "completion_tokens": 12, "total_tokens": 14,
                          "unknown_prompt_chars": 0}  # fmt: skip
    assert len(r["choices"][0]["logprobs"]) == 12 and r["timing"]["total_ms"] > 0
    assert client.post("/v1/generate", json=body).json()["text"] == r["text"]


def test_generate_stream_matches_json(client):
    body = {"prompt": "人民", "max_new_tokens": 15, "seed": 9, "stop": ["的了"]}
    plain = client.post("/v1/generate", json=body).json()
    with client.stream("POST", "/v1/generate", json={**body, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.iter_lines())
    chunks = [d["text"] for name, d in events if name == "chunk"]
    assert events[-1][0] == "done" and len(chunks) >= 1
    assert "".join(chunks) == events[-1][1]["text"] == plain["text"]


def test_completions_openai_shape(client):
    r = client.post("/v1/completions", json={"model": "anything", "prompt": ["中国"],
                                              "max_tokens": 5, "n": 2, "seed": 1, "logprobs": 2})  # fmt: skip
    body = r.json()
    assert body["object"] == "text_completion" and len(body["choices"]) == 2
    lp = body["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == 5 and len(lp["top_logprobs"][0]) == 2
    assert lp["text_offset"][0] == 2 and body["usage"]["completion_tokens"] == 10


def test_completions_stream_ends_with_done(client):
    with client.stream("POST", "/v1/completions",
                       json={"prompt": "中国", "max_tokens": 6, "stream": True}) as r:  # fmt: skip
        events = sse_events(r.iter_lines())
    assert events[-1][1] == "[DONE]"
    text = "".join(d["choices"][0]["text"] for _, d in events[:-1])
    assert len(text) == 6 and events[-2][1]["choices"][0]["finish_reason"] == "length"


def test_playground_page(client):
    r = client.get("/")
    assert r.status_code == 200 and "textgen playground" in r.text and "/v1/generate" in r.text
    assert '<select id="script">' in r.text and 'value="traditional"' in r.text


def test_metrics_prometheus_text(client):
    client.post("/v1/generate", json={"prompt": "中国", "max_new_tokens": 3})
    client.post("/v1/generate", json={"prompt": "中国", "temperature": 9})
    text = client.get("/metrics").text
    assert 'textgen_requests_total{route="/v1/generate",status="200"}' in text
    assert 'textgen_requests_total{route="/v1/generate",status="422"}' in text
    assert 'textgen_request_duration_seconds_bucket{route="/v1/generate",le="+Inf"}' in text
    assert "textgen_queue_depth 0" in text and "textgen_batch_size_count" in text
    chars = [ln for ln in text.splitlines() if ln.startswith("textgen_generated_chars_total ")]
    assert float(chars[0].split()[1]) >= 3


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


@pytest.fixture(scope="module")
def bundled_client() -> Iterator[TestClient]:
    """The bundled model (Simplified, as checkpoints/default/model.pt)."""
    with TestClient(create_app(Settings(checkpoint=str(BUNDLED)))) as c:
        yield c


def test_traditional_prompt_gets_a_traditional_answer_json_and_stream(bundled_client):
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


def test_completions_script_field(bundled_client):
    body = {"prompt": "中国", "max_tokens": 30, "seed": 5, "script": "traditional"}
    text = bundled_client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    assert len(text) == 30 and detect_text_script(text) == "traditional"
    with bundled_client.stream("POST", "/v1/completions", json={**body, "stream": True}) as resp:
        events = sse_events(resp.iter_lines())
    assert "".join(d["choices"][0]["text"] for _, d in events[:-1]) == text
    bad = bundled_client.post("/v1/completions", json={**body, "script": "zh-TW"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "script"


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("path", ["/v1/generate", "/v1/completions"])
def test_schema_fuzz(small_client, path, mode):
    """Schema-valid bodies get 200 and a schema-valid answer; invalid ones 4xx, never 500."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", small_client.app)
    op = schema[path]["POST"]
    strategy = op.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    examples = int(os.environ.get("FUZZ_EXAMPLES", "25"))  # `make fuzz` runs many more
    statuses: Counter[int] = Counter()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case):
        r = case.call()
        statuses[r.status_code] += 1
        if mode == "positive":
            assert r.status_code == 200, (case.body, r.text[:300])
        else:
            assert 400 <= r.status_code < 500, (case.body, r.status_code, r.text[:300])
        case.validate_response(r)  # the answer, error or not, is what the schema documents

    check()
    # shown with `pytest -s` (make fuzz, make reliability)
    print(f"\nfuzz {path} {mode}: {sum(statuses.values())} cases, statuses {dict(statuses)}")


@pytest.mark.parametrize(
    ("body", "field", "shown"),
    [
        ({"temperature": -1}, "temperature", "-1"),
        ({"temperature": 2.5}, "temperature", "2.5"),
        ({"top_p": 0}, "top_p", "0"),
        ({"top_k": -1}, "top_k", "-1"),
        ({"n": 9}, "n", "9"),
        ({"max_new_tokens": 0}, "max_new_tokens", "0"),
        ({"max_new_tokens": 100000}, "max_new_tokens", "100000"),
        ({"repetition_penalty": 0.5}, "repetition_penalty", "0.5"),
        ({"seed": -3}, "seed", "-3"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "["),
        ({"temprature": 1}, "temprature", "1"),
        ({"max_new_tokens": "5"}, "max_new_tokens", "'5'"),
        ({"stream": "yes"}, "stream", "'yes'"),
        ({"prompt": ""}, "prompt", "''"),
        ({"prompt": "长" * 101}, "prompt", "'长长"),
        ({"prompt": "中\x00国"}, "prompt", "x00"),
        ({"script": "tw"}, "script", "'tw'"),
    ],
)
def test_invalid_values_get_422_naming_field_and_value(client, body, field, shown):
    r = client.post("/v1/generate", json={"prompt": "中国", **body})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["param"].startswith(field) and field in err["message"] and shown in err["message"]


def test_lone_surrogate_and_empty_after_normalisation_get_422(client):
    raw = b'{"prompt": "\\ud800abc"}'
    r = client.post("/v1/generate", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "prompt"
    r = client.post("/v1/generate", json={"prompt": " \u200b\t"})
    assert r.status_code == 422 and "visible character" in r.json()["error"]["message"]


JSON = "application/json"


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "says"),
    [
        (
            b'{"prompt": "x", "stop": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            JSON,
            400,
            "nested too deeply",
        ),
        (
            b'{"prompt": "' + "中".encode("gb18030") + b'"}',
            JSON,
            400,
            "byte 0xd6 at offset 12 is not UTF-8",
        ),
        (b'{"prompt": ', JSON, 400, "not valid JSON: Expecting value at line 1 column 12"),
        (b"", JSON, 400, "not valid JSON"),
        (b'{"prompt": "x"}', "text/plain", 415, "must be application/json, got 'text/plain'"),
        (
            b'{"prompt": "x"}',
            None,
            415,
            "got none (with curl: -H 'Content-Type: application/json')",
        ),
        (b'{"prompt": "x", "temperature": NaN}', JSON, 422, "temperature"),
        (b'{"prompt": "x", "top_p": Infinity}', JSON, 422, "top_p"),
        (b'{"prompt": "x", "seed": -Infinity}', JSON, 422, "seed: Input should be a finite number"),
        (b'{"prompt": "x", "n": 1e309}', JSON, 422, "n: Input should be a finite number"),
        (b'{"prompt": "x", "n": 99999999999999999999999}', JSON, 422, "n: Input should be less"),
        (b'{"prompt": "' + "中".encode() * 350_000 + b'"}', JSON, 413, "at most 65536 bytes"),
        (b'[{"prompt": "x"}]', JSON, 422, "body: Input should be a valid dictionary"),
    ],
    ids=[
        "nested",
        "gbk",
        "truncated",
        "empty",
        "text-plain",
        "no-type",
        "nan",
        "inf",
        "-inf",
        "1e309",
        "huge-int",
        "1MB",
        "array",
    ],  # fmt: skip
)
def test_hostile_bodies_get_a_clear_4xx_and_the_server_keeps_serving(
    client, raw, content_type, status, says
):
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/v1/generate", "/v1/completions"):
        r = client.post(path, content=raw, headers=headers)
        assert r.status_code == status, r.text[:300]
        assert says in r.json()["error"]["message"]
    assert (
        client.post("/v1/generate", json={"prompt": "中国", "max_new_tokens": 2}).status_code == 200
    )


def test_oversized_body_gets_413_declared_or_chunked(client):
    big = json.dumps({"prompt": "x" * 70_000}).encode()
    r = client.post("/v1/generate", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "at most 65536 bytes" in r.json()["error"]["message"]

    def chunked():  # no content-length: the limit must hold while reading
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    r = client.post("/v1/generate", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_full_queue_gets_429_and_a_dropped_stream_frees_its_slot(ckpt):
    app = create_app(Settings(checkpoint=str(ckpt), max_queue=1, max_batch=1))
    long = {"prompt": "中国", "max_new_tokens": 1000, "stream": True}
    with TestClient(app) as c:
        engine = app.state.runner.engine
        with c.stream("POST", "/v1/generate", json=long) as r:
            next(r.iter_lines())  # generating now
            busy = c.post("/v1/generate", json={"prompt": "中国", "max_new_tokens": 2})
            assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        assert wait_until(lambda: engine.in_flight == 0)
        assert (
            c.post("/v1/generate", json={"prompt": "中国", "max_new_tokens": 2}).status_code == 200
        )


def test_draining_server_answers_503(ckpt):
    app = create_app(Settings(checkpoint=str(ckpt)))
    with TestClient(app) as c:
        app.state.runner.close(timeout=5)
        assert c.get("/health").status_code == 503
        r = c.post("/v1/generate", json={"prompt": "中国"})
        assert r.status_code == 503 and "shutting down" in r.json()["error"]["message"]


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
    fields = {f for name in ("GenerateRequest", "CompletionRequest")
              for f in schemas[name]["properties"]}  # fmt: skip
    assert "prompt" in fields and not [
        f for f in fields if re.search("path|file|dir|checkpoint", f)
    ]
    r = client.post("/v1/generate", json={"prompt": "中国", "checkpoint": "/etc/passwd"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "checkpoint"
    r = client.post(
        "/v1/completions", json={"prompt": "中国", "max_tokens": 2, "model": "/etc/passwd"}
    )
    assert r.status_code == 200 and r.json()["model"] == client.get("/v1/model").json()["id"]


def test_settings_from_env():
    env = {"TEXTGEN_MAX_BATCH": "1", "TEXTGEN_CORS_ORIGINS": "a.org, b.org", "TEXTGEN_PORT": "9"}
    s = Settings.from_env(env, port=8123)
    assert s.max_batch == 1 and s.cors_origins == ("a.org", "b.org") and s.port == 8123
    with pytest.raises(ValueError, match="TEXTGEN_MAX_QUEUE must be an integer, got 'many'"):
        Settings.from_env({"TEXTGEN_MAX_QUEUE": "many"})
    with pytest.raises(ValueError, match="max_batch must be an integer >= 1, got 0"):
        Settings(max_batch=0)


# ----------------------------------------------------------------- the real server


def start_server(ckpt: Path, log: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """`textgen serve` on a free loopback port; returns once /health is 200."""
    try:
        return local.spawn(log, "--checkpoint", str(ckpt), *flags, timeout=60)
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def server(ckpt, tmp_path_factory) -> Iterator[str]:
    proc, url = start_server(ckpt, tmp_path_factory.mktemp("serve_log") / "serve.log")
    yield url
    local.stop(proc, timeout=20)


def test_real_server_json_stream_and_batching(server):
    r = httpx.post(server + "/v1/generate", json={"prompt": "中国", "max_new_tokens": 8, "seed": 1})
    assert r.status_code == 200 and len(r.json()["text"]) == 8
    body = {"prompt": "中国", "max_new_tokens": 8, "seed": 1, "stream": True}
    with httpx.stream("POST", server + "/v1/generate", json=body) as s:
        events = sse_events(s.iter_lines())
    assert "".join(d["text"] for n, d in events if n == "chunk") == r.json()["text"]

    results: list[int] = []

    def one(i: int) -> None:
        b = {"prompt": "人民", "max_new_tokens": 200, "seed": i}
        results.append(httpx.post(server + "/v1/generate", json=b, timeout=60).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8
    metrics = local.scrape(server)
    single, total = (
        metrics['textgen_batch_size_bucket{le="1"}'],
        metrics["textgen_batch_size_count"],
    )
    assert single < total  # some steps held > 1 sequence


def test_real_server_client_disconnect_frees_slot(server):
    body = {"prompt": "中国", "max_new_tokens": 1000, "stream": True}
    with httpx.stream("POST", server + "/v1/generate", json=body) as s:
        next(s.iter_lines())

    assert wait_until(lambda: _metric(server, "textgen_requests_in_flight") == 0, 10)


def _metric(url: str, name: str) -> float:
    return local.scrape(url)[name]


def test_real_server_client_leaving_a_json_request_cancels_it(server):
    before = _metric(server, "textgen_generated_chars_total")
    body = {"prompt": "中国", "max_new_tokens": 1000, "n": 8}
    with pytest.raises(httpx.TimeoutException):  # httpx then closes the connection
        httpx.post(server + "/v1/generate", json=body, timeout=0.05)
    assert wait_until(lambda: _metric(server, "textgen_requests_in_flight") == 0, 10)
    assert _metric(server, "textgen_generated_chars_total") - before < 8000


def test_openai_client_completes(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    done = client.completions.create(model=model, prompt="中国", max_tokens=10, seed=1,
                                     temperature=0.7, top_p=0.9, stop=["。"], logprobs=1)  # fmt: skip
    choice = done.choices[0]
    assert choice.finish_reason in ("length", "stop") and 0 < len(choice.text) <= 10
    assert len(choice.logprobs.tokens) == len(choice.text)
    stream = client.completions.create(model=model, prompt="中国", max_tokens=10, seed=1,
                                       temperature=0.7, top_p=0.9, stop=["。"], stream=True)  # fmt: skip
    assert "".join(c.choices[0].text for c in stream) == choice.text
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model=model, prompt="中国", temperature=7)


def test_graceful_shutdown_finishes_in_flight_streams(ckpt, tmp_path):
    proc, url = start_server(ckpt, tmp_path / "serve.log", "--log-level", "info")
    body = {"prompt": "中国", "max_new_tokens": 1000, "stream": True}
    with httpx.stream("POST", url + "/v1/generate", json=body, timeout=30) as s:
        lines = s.iter_lines()
        next(lines)
        proc.send_signal(signal.SIGTERM)
        events = sse_events(lines)
    assert events[-1][0] == "done" and events[-1][1]["usage"]["completion_tokens"] == 1000
    # uvicorn re-raises the signal once it has shut down cleanly
    assert proc.wait(30) in (0, -signal.SIGTERM)
    log = (tmp_path / "serve.log").read_text()
    assert "Waiting for connections to close" in log  # the stream was still running
    assert "shutting down: finishing" in log and "Traceback" not in log
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=1)


def test_serve_help_teaches():
    out = subprocess.run([sys.executable, "-m", "textgen", "serve", "--help"],
                         capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    assert "examples:" in out and "TEXTGEN_MAX_BATCH=1" in out and "/v1/completions" in out
