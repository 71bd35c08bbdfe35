"""API keys and request IDs, in-process: who may call what, and which request is which."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from textgen.server.access import is_loopback, key_matches
from textgen.server.app import create_app
from textgen.server.logs import request_id
from textgen.server.settings import Settings

KEYS = ("key-alpha", "key-beta")
GEN = {"prompt": "中国", "max_new_tokens": 3}
COMP = {"prompt": "中国", "max_tokens": 3}  # OpenAI's name: max_new_tokens is a 422 there


@pytest.fixture(scope="module")
def keyed(ckpt):
    settings = Settings(checkpoint=str(ckpt), api_keys=KEYS, cors_origins=("https://a.org",))
    with TestClient(create_app(settings)) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/generate", GEN),
        ("POST", "/v1/completions", COMP),
        ("GET", "/v1/models", None),
        ("GET", "/v1/model", None),
    ],
)
def test_v1_needs_a_key_when_keys_are_set(keyed, method, path, body):
    for headers, why in [
        ({}, "missing API key"),
        (bearer("key-gamma"), "invalid API key"),
        ({"Authorization": "key-alpha"}, "invalid API key"),
    ]:
        r = keyed.request(method, path, json=body, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        err = r.json()["error"]
        assert err["type"] == "authentication_error" and why in err["message"]
        assert "key-alpha" not in r.text
    for key in KEYS:
        assert keyed.request(method, path, json=body, headers=bearer(key)).status_code == 200


def test_probes_page_docs_and_metrics_stay_open(keyed):
    for path in ("/health", "/ready", "/", "/openapi.json", "/metrics"):
        assert keyed.get(path).status_code == 200, path
    spec = keyed.get("/openapi.json").json()
    assert "401" in spec["paths"]["/v1/generate"]["post"]["responses"]


def test_metrics_auth_guards_metrics_too(ckpt):
    settings = Settings(checkpoint=str(ckpt), api_keys=KEYS, metrics_auth=True)
    with TestClient(create_app(settings)) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=bearer("key-beta")).status_code == 200
        assert c.get("/health").status_code == 200


def test_a_cors_preflight_needs_no_key_and_a_401_is_readable_cross_origin(keyed):
    pre = {
        "Origin": "https://a.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    r = keyed.options("/v1/generate", headers=pre)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://a.org"
    r = keyed.post("/v1/generate", json=GEN, headers={"Origin": "https://a.org"})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "https://a.org"
    assert "x-request-id" in r.headers["access-control-expose-headers"].lower()


def test_key_comparison_and_loopback():
    keys = (b"k1", b"k2")
    assert key_matches(b"k2", keys) and not key_matches(b"k3", keys) and not key_matches(b"", keys)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_no_keys_on_a_public_host_warns_once(ckpt, caplog):
    with caplog.at_level(logging.WARNING, logger="textgen.server.app"):
        create_app(Settings(checkpoint=str(ckpt), host="0.0.0.0"))
        create_app(Settings(checkpoint=str(ckpt), host="127.0.0.1"))
        create_app(Settings(checkpoint=str(ckpt), host="0.0.0.0", api_keys=KEYS))
    warned = [r for r in caplog.records if "no API keys" in r.getMessage()]
    assert len(warned) == 1 and "0.0.0.0" in warned[0].getMessage()


# ----------------------------------------------------------------- request IDs


def test_request_id_is_echoed_and_is_the_response_id(keyed):
    h = {**bearer("key-alpha"), "X-Request-Id": "order-42/retry:1"}
    r = keyed.post("/v1/generate", json=GEN, headers=h)
    assert r.headers["x-request-id"] == "order-42/retry:1" == r.json()["id"]
    r = keyed.post("/v1/completions", json=COMP, headers=h)
    assert r.headers["x-request-id"] == "order-42/retry:1" == r.json()["id"]
    r = keyed.post("/v1/generate", json=GEN, headers={"X-Request-Id": "on-a-401"})
    assert r.status_code == 401 and r.headers["x-request-id"] == "on-a-401"


def test_a_missing_request_id_is_made_and_differs_each_time(keyed):
    a, b = (keyed.post("/v1/generate", json=GEN, headers=bearer("key-alpha")) for _ in range(2))
    ids = [r.headers["x-request-id"] for r in (a, b)]
    assert ids[0] != ids[1] and all(len(i) == 32 for i in ids) and a.json()["id"] == ids[0]


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("abc-123", "abc-123"),
        ("a b\"c'\\d<e>", "abcde"),
        ("x" * 500, "x" * 128),
        ("id\r\nX-Evil: 1", "idX-Evil:1"),
        ("日本", None),
        ("", None),
        (None, None),
    ],
)
def test_request_ids_are_kept_to_a_safe_charset_and_length(raw, kept):
    rid = request_id(raw)
    assert rid == kept if kept is not None else len(rid) == 32 and rid.isalnum()
