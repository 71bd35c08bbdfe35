"""Hostile request bodies: a clear 400 / 413 / 415 / 422 each, and the server keeps serving."""

from __future__ import annotations

import json

import pytest

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
    ],
)
def test_hostile_bodies_get_a_clear_4xx_and_the_server_keeps_serving(
    client, raw, content_type, status, says
):
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/v1/generate", "/v1/completions"):
        r = client.post(path, content=raw, headers=headers)
        assert r.status_code == status, r.text[:300]
        assert says in r.json()["error"]["message"]
    ok = client.post("/v1/generate", json={"prompt": "中国", "max_new_tokens": 2})
    assert ok.status_code == 200


def test_oversized_body_gets_413_declared_or_chunked(client):
    big = json.dumps({"prompt": "x" * 70_000}).encode()
    r = client.post("/v1/generate", content=big, headers={"content-type": JSON})
    assert r.status_code == 413 and "at most 65536 bytes" in r.json()["error"]["message"]

    def chunked():  # no content-length: the limit must hold while reading
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    r = client.post("/v1/generate", content=chunked(), headers={"content-type": JSON})
    assert r.status_code == 413


def test_lone_surrogate_and_empty_after_normalisation_get_422(client):
    raw = b'{"prompt": "\\ud800abc"}'
    r = client.post("/v1/generate", content=raw, headers={"content-type": JSON})
    assert r.status_code == 422 and r.json()["error"]["param"] == "prompt"
    r = client.post("/v1/generate", json={"prompt": " \u200b\t"})
    assert r.status_code == 422 and "visible character" in r.json()["error"]["message"]
