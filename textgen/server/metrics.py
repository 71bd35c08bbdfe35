"""Prometheus metrics in the text exposition format (0.0.4), written by hand.

Counters and histograms are updated from the event loop (requests) and from the engine
thread (steps), so every update takes one lock. Gauges (queue depth, active sequences) are
read from the engine when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = (f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + ",".join(pairs) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class Counter:
    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self.values: dict[tuple[str, ...], float] = defaultdict(float)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] += amount

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        if not self.labels and not self.values:
            out.append(f"{self.name} 0")
        for key, v in sorted(self.values.items()):
            out.append(f"{self.name}{_labels(self.labels, key)} {_num(v)}")
        return out


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float],
                 labels: Sequence[str] = ()) -> None:  # fmt: skip
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self.buckets = tuple(buckets)
        # per label set: counts per bucket (+Inf last), sum of observations
        self.counts: dict[tuple[str, ...], list[int]] = {}
        self.sums: dict[tuple[str, ...], float] = defaultdict(float)

    def observe(self, value: float, *labels: str) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] += value

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, counts in sorted(self.counts.items()):
            total = 0
            for le, c in zip([*map(_num, self.buckets), "+Inf"], counts, strict=True):
                total += c
                lab = _labels((*self.labels, "le"), (*key, le))
                out.append(f"{self.name}_bucket{lab} {total}")
            lab = _labels(self.labels, key)
            out.append(f"{self.name}_sum{lab} {_num(self.sums[key])}")
            out.append(f"{self.name}_count{lab} {total}")
        return out


class Metrics:
    """Everything `/metrics` shows. ``gauges`` maps a gauge name to (help, read function)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = Counter(
            "textgen_requests_total", "HTTP requests by route and status", ("route", "status")
        )
        self.latency = Histogram(
            "textgen_request_duration_seconds", "HTTP request latency (to the last byte)",
            LATENCY_BUCKETS, ("route",),
        )  # fmt: skip
        self.chars = Counter("textgen_generated_chars_total", "characters (tokens) generated")
        self.steps = Counter("textgen_engine_steps_total", "batched decode steps")
        self.batch = Histogram("textgen_batch_size", "sequences per decode step", BATCH_BUCKETS)
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests.inc(route, str(status))
            self.latency.observe(seconds, route)

    def observe_step(self, batch: int, tokens: int) -> None:
        """Called by the engine thread after each step: decode batch size, tokens drawn."""
        with self._lock:
            self.chars.inc(amount=tokens)
            if batch:  # 0: only prefills ran
                self.steps.inc()
                self.batch.observe(batch)

    def render(self) -> str:
        with self._lock:
            lines = []
            for metric in (self.requests, self.latency, self.chars, self.steps, self.batch):
                lines += metric.render()
        for name, (help_text, read) in self.gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Counts every HTTP request by route template and final status, and times it."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Callable[[], set[str]]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(self._route(scope), status, time.perf_counter() - start)

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None) or scope.get("path", "")
        return path if path in self.routes() else "other"  # bounded label values
