"""The real `textgen serve` in production trim: API keys, request IDs in JSON logs, a request
timeout, and the SIGTERM drain that /ready reports while requests in flight finish."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest

from devtools import local_server as local

pytestmark = pytest.mark.slow

KEYS = "k-first-0123,k-second-4567"
GEN = {"prompt": "中国", "max_new_tokens": 5, "seed": 1}


@pytest.fixture(scope="module")
def keyed(ckpt, tmp_path_factory, start_server):
    log = tmp_path_factory.mktemp("keyed") / "serve.log"
    env = {**os.environ, "TEXTGEN_API_KEYS": KEYS}
    proc, url = start_server(ckpt, log, "--log-level", "info", "--log-format", "json", env=env)
    yield url, log
    local.stop(proc, timeout=20)


def test_keys_guard_v1_and_leave_the_probes_open(keyed):
    url, _ = keyed
    r = httpx.post(url + "/v1/generate", json=GEN)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    bad = httpx.post(url + "/v1/generate", json=GEN, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    for key in KEYS.split(","):
        ok = httpx.post(url + "/v1/generate", json=GEN, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and len(ok.json()["text"]) == 5
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(url + path).status_code == 200, path


def test_the_openai_client_sends_its_key(keyed):
    openai = pytest.importorskip("openai")
    url, _ = keyed
    client = openai.OpenAI(base_url=url + "/v1", api_key="k-second-4567", max_retries=0)
    done = client.completions.create(model="textgen", prompt="中国", max_tokens=6, seed=2)
    assert len(done.choices[0].text) == 6 and done.choices[0].finish_reason == "length"
    stranger = openai.OpenAI(base_url=url + "/v1", api_key="k-guess", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.completions.create(model="textgen", prompt="中国", max_tokens=6)


def test_request_id_is_echoed_and_on_every_log_line_of_the_request(keyed):
    url, log = keyed
    headers = {"Authorization": "Bearer k-first-0123", "X-Request-Id": "trace-7f3a/attempt:2"}
    r = httpx.post(url + "/v1/generate", json=GEN, headers=headers)
    assert r.headers["x-request-id"] == "trace-7f3a/attempt:2" == r.json()["id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
        mine = [d for d in lines if d.get("request_id") == "trace-7f3a/attempt:2"]
        if len(mine) >= 2:
            break
        time.sleep(0.1)
    loggers = {d["logger"] for d in mine}
    assert {"uvicorn.access", "textgen.server.batcher"} <= loggers, mine  # access + result
    assert any("POST /v1/generate" in d["message"] for d in mine)
    text = log.read_text()
    assert all(k not in text for k in KEYS.split(","))  # keys are never logged


def test_a_long_request_under_a_half_second_timeout_ends_timeout(bundled, tmp_path, start_server):
    proc, url = start_server(bundled, tmp_path / "serve.log", "--request-timeout", "0.5")
    try:
        body = {"prompt": "中国", "max_new_tokens": 1000, "n": 8, "seed": 3}  # seconds of work
        t0 = time.monotonic()
        r = httpx.post(url + "/v1/generate", json=body, timeout=30).json()
        assert time.monotonic() - t0 < 5 and r["finish_reason"] == "timeout"
        for choice in r["choices"]:
            assert choice["finish_reason"] == "timeout" and 0 < len(choice["text"]) < 1000
        with httpx.stream(
            "POST",
            url + "/v1/completions",
            timeout=30,
            json={"prompt": "中国", "max_tokens": 1000, "n": 8, "stream": True},
        ) as s:
            last = [ln for ln in s.iter_lines() if ln.startswith("data: {")][-1]
        assert json.loads(last[6:])["choices"][0]["finish_reason"] == "timeout"
    finally:
        local.stop(proc, timeout=20)


def test_sigterm_drains_ready_turns_503_and_the_stream_finishes(bundled, tmp_path, start_server):
    proc, url = start_server(bundled, tmp_path / "serve.log", "--log-level", "info")
    body = {"prompt": "中国", "max_new_tokens": 1000, "n": 8, "seed": 5, "stream": True}
    seen: dict[str, object] = {}

    def probe() -> None:  # new connections while the drain goes on
        end = time.monotonic() + 20
        while time.monotonic() < end and "ready" not in seen:
            ready = httpx.get(url + "/ready", timeout=2)
            if ready.status_code == 503:
                seen["ready"] = ready.json()["error"]["message"]
                seen["health"] = httpx.get(url + "/health", timeout=2).json()["status"]
                seen["generate"] = httpx.post(url + "/v1/generate", json=GEN).status_code
            time.sleep(0.02)

    with httpx.stream("POST", url + "/v1/generate", json=body, timeout=60) as s:
        lines = s.iter_lines()
        next(lines)
        proc.send_signal(signal.SIGTERM)
        prober = threading.Thread(target=probe)
        prober.start()
        events = [json.loads(ln[6:]) for ln in lines if ln.startswith("data: ")]
        prober.join()
    assert "draining" in str(seen.get("ready")) and seen["health"] == "draining"
    assert seen["generate"] == 503
    done = events[-1]
    assert done["finish_reason"] == "length" and done["usage"]["completion_tokens"] == 8000
    assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal when done
    log = (tmp_path / "serve.log").read_text()
    assert "draining: /ready is 503, finishing 1 requests in flight" in log
    assert "shutting down: finishing 0 requests in flight" in log and "Traceback" not in log
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=1)
