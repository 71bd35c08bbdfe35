"""Start and stop `textgen serve` as a child process on a free loopback port; read its metrics.

Used by the tests of the real server, `benchmarks/serve.py` and `scripts/reliability.py`, and
handy for any script that wants a private server: ``proc, url = spawn(log, "--checkpoint", p)``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(
    log: Path, *flags: str, env: Mapping[str, str] | None = None, timeout: float = 120.0
) -> tuple[subprocess.Popen, str]:
    """`textgen serve FLAGS` on 127.0.0.1, its output in ``log``; returns once /health is 200.

    Output goes to a file, not a pipe nobody reads, so the server never blocks on it. Raises
    RuntimeError with the log's tail when the server exits or is not healthy in ``timeout`` s.
    """
    import httpx  # the server's own dependency tree has it; importing lazily keeps this light

    port = free_port()
    cmd = [sys.executable, "-m", "textgen", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--log-level", "warning", *flags]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"textgen serve did not start:\n{Path(log).read_text()[-2000:]}")


def scrape(url: str, headers: Mapping[str, str] | None = None) -> dict[str, float]:
    """A running server's /metrics as {sample: value}, read with Prometheus' own parser.

    A sample is named as in the exposition with its labels sorted by name, e.g.
    ``textgen_requests_in_flight`` or ``textgen_batch_size_bucket{le="1.0"}``.
    """
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(url + "/metrics", headers=headers, timeout=10)
    r.raise_for_status()
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{labels}}}" if labels else "")] = float(s.value)
    return out


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGINT (a graceful drain), then SIGKILL if it has not exited in ``timeout`` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
