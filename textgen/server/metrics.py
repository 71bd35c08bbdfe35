"""Prometheus metrics with ``prometheus_client``, in a registry of each app's own.

Counters and histograms are updated from the event loop (requests) and from the engine
thread (steps); ``prometheus_client`` makes every update thread-safe. Gauges (queue depth,
active sequences, requests in flight) read the engine when ``/metrics`` is scraped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# no *_created series: they would double the exposition, and nothing here reads them
disable_created_metrics()
GAUGES = {
    "textgen_queue_depth": "requests waiting for a batch slot",
    "textgen_active_sequences": "sequences in the batch",
    "textgen_requests_in_flight": "requests waiting or generating",
}


class Metrics:
    """Everything `/metrics` shows, registered in ``self.registry`` (not the global one)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "textgen_requests_total",
            "HTTP requests by route and status",
            ("route", "status"),
            registry=r,
        )
        self.latency = Histogram(
            "textgen_request_duration_seconds",
            "HTTP request latency (to the last byte)",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.chars = Counter(
            "textgen_generated_chars_total", "characters (tokens) generated", registry=r
        )
        self.steps = Counter("textgen_engine_steps_total", "batched decode steps", registry=r)
        self.batch = Histogram(
            "textgen_batch_size", "sequences per decode step", buckets=BATCH_BUCKETS, registry=r
        )
        self.gauges = {name: Gauge(name, text, registry=r) for name, text in GAUGES.items()}

    def read_gauges(self, reads: dict[str, Callable[[], float]]) -> None:
        """Give each gauge the function that reads its value at scrape time."""
        for name, read in reads.items():
            self.gauges[name].set_function(read)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_step(self, batch: int, tokens: int) -> None:
        """Called by the engine thread after each step: decode batch size, tokens drawn."""
        self.chars.inc(tokens)
        if batch:  # 0: only prefills ran
            self.steps.inc()
            self.batch.observe(batch)

    def render(self) -> bytes:
        return generate_latest(self.registry)


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
