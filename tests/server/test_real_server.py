"""The real `textgen serve` process: batching, disconnects, the OpenAI client, SIGTERM drain."""

from __future__ import annotations

import threading

import httpx
import pytest

from devtools import local_server as local

pytestmark = pytest.mark.slow


def test_real_server_json_stream_and_batching(server, sse_events):
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
        metrics['textgen_batch_size_bucket{le="1.0"}'],
        metrics["textgen_batch_size_count"],
    )
    assert single < total  # some steps held > 1 sequence


def test_real_server_client_disconnect_frees_slot(server, metric, wait_until):
    body = {"prompt": "中国", "max_new_tokens": 1000, "stream": True}
    with httpx.stream("POST", server + "/v1/generate", json=body) as s:
        next(s.iter_lines())
    assert wait_until(lambda: metric(server, "textgen_requests_in_flight") == 0, 10)


def test_real_server_client_leaving_a_json_request_cancels_it(server, metric, wait_until):
    before = metric(server, "textgen_generated_chars_total")
    body = {"prompt": "中国", "max_new_tokens": 1000, "n": 8}
    with pytest.raises(httpx.TimeoutException):  # httpx then closes the connection
        httpx.post(server + "/v1/generate", json=body, timeout=0.05)
    assert wait_until(lambda: metric(server, "textgen_requests_in_flight") == 0, 10)
    assert metric(server, "textgen_generated_chars_total") - before < 8000


def test_openai_client_completes(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    args = {
        "model": model,
        "prompt": "中国",
        "max_tokens": 10,
        "seed": 1,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop": ["。"],
    }
    choice = client.completions.create(**args, logprobs=1).choices[0]
    assert choice.finish_reason in ("length", "stop") and 0 < len(choice.text) <= 10
    assert len(choice.logprobs.tokens) == len(choice.text)
    stream = client.completions.create(**args, stream=True)
    assert "".join(c.choices[0].text for c in stream) == choice.text
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model=model, prompt="中国", temperature=7)
