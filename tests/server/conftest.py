"""Fixtures of the server tests: a tiny trained checkpoint, in-process clients, real servers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devtools import local_server as local
from textgen.server.app import create_app
from textgen.server.settings import Settings


@pytest.fixture(scope="session")
def bundled(bundled_checkpoint) -> Path:
    """The bundled model (Simplified, as checkpoints/default/model.pt)."""
    return bundled_checkpoint


@pytest.fixture(scope="module")
def client(ckpt) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(checkpoint=str(ckpt), max_prompt_chars=100))) as c:
        yield c


FUZZ_KEY = "fuzz-key-1"


@pytest.fixture(scope="session")
def fuzz_auth() -> dict[str, str]:
    """The header that `small_client`'s server wants (its API keys are on)."""
    return {"Authorization": f"Bearer {FUZZ_KEY}"}


@pytest.fixture(scope="module")
def small_client(ckpt) -> Iterator[TestClient]:
    """Small limits keep schema fuzzing fast (it tries the largest values allowed); API keys
    are on, as a public deployment would have them."""
    settings = Settings(
        checkpoint=str(ckpt),
        max_new_tokens=20,
        max_n=2,
        max_prompt_chars=50,
        api_keys=(FUZZ_KEY, "another-key"),
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def bundled_client(bundled) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(checkpoint=str(bundled)))) as c:
        yield c


def _sse_events(lines: Iterator[str]) -> list[tuple[str, object]]:
    events, name = [], "message"
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
            events.append((name, data if data == "[DONE]" else json.loads(data)))
            name = "message"
    return events


@pytest.fixture(scope="session")
def sse_events() -> Callable[[Iterator[str]], list[tuple[str, object]]]:
    """(event name, parsed data) pairs from Server-Sent Events lines."""
    return _sse_events


def _wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., bool]:
    """``wait_until(check, timeout=5)``: poll ``check`` until true; False on timeout."""
    return _wait_until


@pytest.fixture(scope="session")
def start_server() -> Callable[..., tuple]:
    """``start_server(ckpt, log, *flags, env=None)``: `textgen serve` on a free loopback port;
    returns (process, url) once /health is 200. The test stops it (``devtools.local_server``)."""

    def start(ckpt: Path, log: Path, *flags: str, env=None):
        try:
            return local.spawn(log, "--checkpoint", str(ckpt), *flags, env=env, timeout=60)
        except RuntimeError as e:
            pytest.fail(str(e))

    return start


@pytest.fixture(scope="module")
def server(ckpt, tmp_path_factory, start_server) -> Iterator[str]:
    """One real server for a module's tests."""
    proc, url = start_server(ckpt, tmp_path_factory.mktemp("serve_log") / "serve.log")
    yield url
    local.stop(proc, timeout=20)


@pytest.fixture(scope="session")
def metric() -> Callable[[str, str], float]:
    """``metric(url, sample)``: one sample of a running server's /metrics."""
    return lambda url, name: local.scrape(url)[name]
