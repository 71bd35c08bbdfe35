"""`textgen serve`: logging, the app, and uvicorn with a readiness-aware drain on SIGTERM.

On SIGTERM (or Ctrl-C) the server first *drains*: ``/ready`` answers 503 and new generation
requests get 503 while the listener stays open and the requests in flight finish (at most
``shutdown_timeout`` seconds); only then does uvicorn shut down. A load balancer or
Kubernetes sees the replica leave before any connection is refused. A second signal stops
at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from textgen.server.app import create_app
from textgen.server.logs import configure
from textgen.server.settings import Settings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM / SIGINT drains before the usual shutdown."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, timeout: float) -> None:
        super().__init__(config)
        self.fastapi, self.drain_timeout = app, timeout
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runner = getattr(self.fastapi.state, "runner", None)
        if self._draining or runner is None or sig not in (signal.SIGINT, signal.SIGTERM):
            super().handle_exit(sig, frame)  # not started yet, or a second signal: stop now
            return
        self._draining = True
        runner.drain()
        log.info(
            "draining: /ready is 503, finishing %d requests in flight", runner.engine.in_flight
        )
        waiter = threading.Thread(target=self._exit_when_idle, args=(runner, sig, frame))
        waiter.start()

    def _exit_when_idle(self, runner, sig: int, frame: FrameType | None) -> None:
        end = time.monotonic() + self.drain_timeout
        while runner.engine.in_flight and time.monotonic() < end:
            time.sleep(0.05)
        super().handle_exit(sig, frame)  # the usual shutdown: close the listener, then wait


def serve(settings: Settings) -> None:
    """Serve ``settings`` until SIGTERM / SIGINT, then drain and stop."""
    configure(settings.log_level, settings.log_format)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # configure() above: one format, every line with its request id
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
    )
    DrainingServer(config, app, settings.shutdown_timeout).run()
