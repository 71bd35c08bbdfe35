"""/metrics: Prometheus' own parser reads a real scrape; the families, labels and values."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from textgen.server.metrics import CONTENT_TYPE

FAMILIES = {
    "textgen_requests": "counter",
    "textgen_request_duration_seconds": "histogram",
    "textgen_generated_chars": "counter",
    "textgen_engine_steps": "counter",
    "textgen_batch_size": "histogram",
    "textgen_queue_depth": "gauge",
    "textgen_active_sequences": "gauge",
    "textgen_requests_in_flight": "gauge",
}


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    families = list(text_string_to_metric_families(text))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_a_scrape_parses_with_every_family_and_counts_requests(client):
    before = _samples(client.get("/metrics").text)
    client.post("/v1/generate", json={"prompt": "中国", "max_new_tokens": 3})
    client.post("/v1/generate", json={"prompt": "中国", "temperature": 9})
    r = client.get("/metrics")
    assert r.headers["content-type"] == CONTENT_TYPE
    families = {f.name: f.type for f in text_string_to_metric_families(r.text)}
    assert families == FAMILIES  # the same names as ever, and nothing else
    after = _samples(r.text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert grew("textgen_requests_total", route="/v1/generate", status="200") == 1
    assert grew("textgen_requests_total", route="/v1/generate", status="422") == 1
    assert grew("textgen_request_duration_seconds_count", route="/v1/generate") == 2
    inf = grew("textgen_request_duration_seconds_bucket", route="/v1/generate", le="+Inf")
    assert inf == 2
    assert grew("textgen_generated_chars_total") >= 3 and grew("textgen_engine_steps_total") >= 2
    assert (
        after[("textgen_queue_depth", ())] == 0 and after[("textgen_requests_in_flight", ())] == 0
    )
    buckets = [v for (n, _), v in sorted(after.items()) if n == "textgen_batch_size_bucket"]
    assert buckets and after[("textgen_batch_size_count", ())] >= 2


def test_unknown_paths_share_one_label(client):
    client.get("/no/such/page")
    client.get("/another/missing")
    labels = {
        dict(k[1]).get("route")
        for k in _samples(client.get("/metrics").text)
        if k[0] == "textgen_requests_total"
    }
    assert "other" in labels and not any(str(x).startswith("/no") for x in labels)


def test_each_app_has_its_own_registry(ckpt):
    from textgen.server.app import create_app
    from textgen.server.settings import Settings

    a, b = (create_app(Settings(checkpoint=str(ckpt))) for _ in range(2))
    assert a.state.metrics.registry is not b.state.metrics.registry
