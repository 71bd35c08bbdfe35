"""The playground page in headless Chromium, driven over the DevTools protocol.

Only `websocket-client` is needed on top of the Debian `chromium` package: no WebDriver, no
browser download. Skipped (with the reason) when either is missing, except under CI=true.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import unicodedata
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


def _missing() -> str | None:
    if _chromium() is None:
        return "chromium is not installed (apt-get install chromium)"
    try:
        import websocket  # noqa: F401
    except ImportError:
        return "websocket-client is not installed (pip install websocket-client)"
    return None


if _missing() and os.environ.get("CI") != "true":
    pytest.skip(_missing() or "", allow_module_level=True)


class Browser:
    """A headless Chromium page and a minimal DevTools client: call methods, evaluate JS."""

    def __init__(self, profile: Path) -> None:
        import websocket

        cmd = [
            _chromium(),
            *CHROMIUM_FLAGS,
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"  # Chromium writes its port here
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list").json()
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict:
        mid = next(self.ids)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:  # skip events until our answer
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def eval(self, expression: str) -> Any:
        r = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression!r} threw: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, url: str) -> None:
        """Navigate and wait until that page (not the previous one) has loaded."""
        self.call("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"{expression!r} stayed falsy for {timeout}s")

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _serving(checkpoint, folder, start_server):
    """`textgen serve` on ``checkpoint`` while the fixture lasts: yields its URL."""
    proc, url = start_server(checkpoint, folder / "serve.log")
    yield url
    proc.send_signal(signal.SIGINT)
    proc.wait(20)


@pytest.fixture(scope="module")
def served(ckpt, tmp_path_factory, start_server):
    yield from _serving(ckpt, tmp_path_factory.mktemp("playground"), start_server)


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def test_playground_loads_and_streams_text(served, browser):
    browser.open(served + "/")
    model = browser.wait_for(
        "document.getElementById('model').textContent.includes('vocabulary')"
        " && document.getElementById('model').textContent"
    )
    assert "lstm 1×16" in model
    browser.eval("""
        document.getElementById('prompt').value = '人民';
        document.getElementById('max_new_tokens').value = '30';
        document.getElementById('seed').value = '7';
        document.getElementById('go').click();
    """)
    status = browser.wait_for(
        "(s => s.startsWith('done') && s)(document.getElementById('status').textContent)"
    )
    assert "30 chars" in status
    shown = browser.eval("document.getElementById('output').textContent")
    # the page's default sampling settings, sent to the JSON API: the same text comes back
    body = {
        "prompt": "人民",
        "max_new_tokens": 30,
        "seed": 7,
        "temperature": 0.8,
        "top_k": 40,
        "top_p": 0.95,
        "repetition_penalty": 1.1,
    }
    expected = httpx.post(served + "/v1/generate", json=body, timeout=30).json()["text"]
    assert shown == "人民" + expected


def test_playground_shows_validation_errors(served, browser):
    browser.open(served + "/")
    # remove the input's max=2 so the browser's own form validation lets 7 reach the server
    browser.eval("""
        document.getElementById('temperature').removeAttribute('max');
        document.getElementById('temperature').value = '7';
        document.getElementById('go').click();
    """)
    status = browser.wait_for(
        "(s => s.startsWith('422') && s)(document.getElementById('status').textContent)"
    )
    assert "temperature" in status and "7" in status


@pytest.fixture(scope="module")
def served_bundled(bundled, tmp_path_factory, start_server):
    """The bundled model: its vocabulary has the heads 春夏秋冬 and makes a readable poem."""
    yield from _serving(bundled, tmp_path_factory.mktemp("playground_bundled"), start_server)


def _is_han(c: str) -> bool:
    name = unicodedata.name(c, "")
    return name.startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"))


def _poem_problems(text: str, lines: int, chars: int, heads: str) -> list[str]:
    """What keeps ``text`` from being a poem of `lines` lines of `chars` ideographs, each
    followed by "，" (odd lines) or "。" (even lines), line i starting with heads[i]."""
    problems, i = [], 0
    for n in range(lines):
        line = text[i : i + chars]
        punct = text[i + chars : i + chars + 1]
        want = "，" if n % 2 == 0 else "。"
        if len(line) != chars or not all(map(_is_han, line)):
            problems.append(f"line {n + 1} {line!r} is not {chars} ideographs")
        if punct != want:
            problems.append(f"line {n + 1} ends with {punct!r}, not {want!r}")
        if n < len(heads) and line[:1] != heads[n]:
            problems.append(f"line {n + 1} {line!r} does not start with {heads[n]!r}")
        i += chars + 1
    if text[i:]:
        problems.append(f"text after the poem: {text[i:]!r}")
    return problems


def test_playground_generates_a_poem_with_form_and_acrostic(served_bundled, browser):
    browser.open(served_bundled + "/")
    browser.wait_for("document.getElementById('model').textContent.includes('vocabulary')")
    browser.eval("""
        const form = document.getElementById('form');
        form.value = '七言绝句';
        form.dispatchEvent(new Event('change'));
        document.getElementById('acrostic').value = '春夏秋冬';
        document.getElementById('seed').value = '11';
        document.getElementById('go').click();
    """)
    status = browser.wait_for(
        "(s => (s.startsWith('done') || s.startsWith('4')) && s)"
        "(document.getElementById('status').textContent)"
    )
    assert status.startswith("done"), status
    prompt = browser.eval("document.getElementById('prompt').value")
    shown = browser.eval("document.getElementById('output').textContent")
    assert shown.startswith(prompt)
    poem = shown[len(prompt) :]
    assert _poem_problems(poem, 4, 7, "春夏秋冬") == [], poem
    # displayed with a break after the prompt and after each "。": two couplets a row
    rows = browser.eval("document.getElementById('output').innerText").split("\n")
    assert [r for r in rows if r] == [prompt, poem[:16], poem[16:]]
    # the page sent form and acrostic (and nothing else directed): the API gives the same poem
    body = {
        "prompt": prompt,
        "form": "七言绝句",
        "acrostic": "春夏秋冬",
        "seed": 11,
        "temperature": 0.8,
        "top_k": 40,
        "top_p": 0.95,
        "repetition_penalty": 1.1,
    }
    assert httpx.post(served_bundled + "/v1/generate", json=body, timeout=30).json()["text"] == poem
    if shot := os.environ.get("TEXTGEN_PLAYGROUND_SCREENSHOT"):  # to look at it
        data = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        Path(shot).write_bytes(base64.b64decode(data["data"]))


def test_playground_names_the_field_of_a_bad_regex(served_bundled, browser):
    browser.open(served_bundled + "/")
    browser.eval("""
        document.getElementById('regex').value = '(';
        document.getElementById('go').click();
    """)
    status = browser.wait_for(
        "(s => s.startsWith('422') && s)(document.getElementById('status').textContent)"
    )
    assert "regex" in status
    assert browser.eval("document.getElementById('status').className") == "error"


@pytest.fixture(scope="module")
def served_with_keys(ckpt, tmp_path_factory, start_server):
    tmp = tmp_path_factory.mktemp("playground_keys")
    env = {**os.environ, "TEXTGEN_API_KEYS": "page-key-1"}
    proc, url = start_server(ckpt, tmp / "serve.log", env=env)
    yield url
    proc.send_signal(signal.SIGINT)
    proc.wait(20)


def test_playground_asks_for_a_key_keeps_it_and_sends_it(served_with_keys, browser):
    browser.open(served_with_keys + "/")
    browser.wait_for("document.getElementById('model').textContent.includes('needs an API key')")
    browser.eval("""
        const key = document.getElementById('api_key');
        key.value = 'page-key-1';
        key.dispatchEvent(new Event('change'));
    """)
    browser.wait_for("document.getElementById('model').textContent.includes('vocabulary')")
    assert browser.eval("localStorage.getItem('textgen.apiKey')") == "page-key-1"
    browser.open(served_with_keys + "/")  # a reload finds the key where it left it
    browser.wait_for("document.getElementById('model').textContent.includes('vocabulary')")
    browser.eval("""
        document.getElementById('max_new_tokens').value = '10';
        document.getElementById('go').click();
    """)
    status = browser.wait_for(
        "(s => s.startsWith('done') && s)(document.getElementById('status').textContent)"
    )
    assert "10 chars" in status
    browser.eval("""
        const key = document.getElementById('api_key');
        key.value = 'wrong';
        key.dispatchEvent(new Event('change'));
        document.getElementById('go').click();
    """)
    status = browser.wait_for(
        "(s => s.startsWith('401') && s)(document.getElementById('status').textContent)"
    )
    assert "invalid API key" in status
