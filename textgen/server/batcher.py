"""Continuous batching for the server: the engine in one background thread, bridged to asyncio.

Torch releases the GIL inside its kernels, so one engine thread steps the model while the
event loop keeps serving HTTP. Requests reach the engine through its thread-safe ``submit``;
the engine hands each request's events back with ``loop.call_soon_threadsafe`` onto that
request's ``asyncio.Queue``. A handle that stops being read (client gone) cancels its request,
and the engine drops its rows at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import Receive

from textgen.inference.config import GenerationConfig
from textgen.inference.engine import Engine
from textgen.inference.events import Done, Event, Expired, Failed, GenerationResult
from textgen.inference.request import Request

log = logging.getLogger(__name__)


class ShuttingDown(RuntimeError):
    """The server is draining; new requests get 503."""


class QueueTimeout(RuntimeError):
    """The request waited for a batch slot past the queue timeout; the server answers 503."""


class EngineError(RuntimeError):
    """The engine failed while this request was in flight; the server answers 500."""


class Handle:
    """A submitted request, seen from the event loop."""

    def __init__(self, request: Request, queue: asyncio.Queue[list[Event]]) -> None:
        self.request, self._queue = request, queue
        self._pending: deque[Event] = deque()

    async def started(self, receive: Receive | None = None) -> None:
        """Wait for the request's first events (it has a batch slot); QueueTimeout if it
        expired in the queue. With ``receive``, a client leaving meanwhile cancels it."""
        async with self._watching(receive):
            if not self._pending:
                self._pending.extend(await self._queue.get())
        if isinstance(self._pending[0], Expired):
            raise QueueTimeout(f"waited {self._pending[0].waited_s:.1f}s for a batch slot")

    async def events(self) -> AsyncIterator[Event]:
        """Chunk events as they come (streaming requests), then one Done or Failed."""
        try:
            while True:
                if not self._pending:
                    self._pending.extend(await self._queue.get())
                event = self._pending.popleft()
                if isinstance(event, Expired):
                    raise QueueTimeout(f"waited {event.waited_s:.1f}s for a batch slot")
                if isinstance(event, (Done, Failed)):
                    _log_end(event)  # before the yield: a reader stops at the last event
                    yield event
                    return
                yield event
        finally:
            self.request.cancel()  # a no-op once finished; frees the rows if the reader left

    async def result(self, receive: Receive | None = None) -> GenerationResult:
        """Wait for the result; with ``receive``, a client disconnect cancels the request."""
        async with self._watching(receive):
            async for event in self.events():
                if isinstance(event, Done):
                    return event.result
                if isinstance(event, Failed):
                    raise EngineError(event.message)
            raise EngineError("request ended without a result")

    @contextlib.asynccontextmanager
    async def _watching(self, receive: Receive | None) -> AsyncIterator[None]:
        watcher = asyncio.create_task(self._watch(receive)) if receive is not None else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        log.info("client disconnected, cancelling %s", self.request.id)
        self.request.cancel()


def _log_end(event: Done | Failed) -> None:
    """One line per finished request; the log filter adds its request id."""
    if isinstance(event, Failed):
        log.warning("failed: %s", event.message)
        return
    r = event.result
    log.info(
        "%s: %d prompt + %d generated tokens in %.0f ms (queued %.0f ms)",
        r.finish_reason,
        r.prompt_tokens,
        r.completion_tokens,
        r.timing["total_ms"],
        r.timing["queue_ms"],
    )


class BatchRunner:
    """Owns the engine thread: start, submit from the event loop, drain and stop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="textgen-engine", daemon=True)

    @property
    def closing(self) -> bool:
        """Draining or closed: new requests get 503."""
        return self._closing

    @property
    def alive(self) -> bool:
        """The engine thread is running."""
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def submit(
        self,
        prompt: str,
        config: GenerationConfig,
        stream: bool = False,
        max_prompt_tokens: int | None = None,
        **limits: Any,
    ) -> Handle:
        """Queue a request from the event loop (QueueFull, PromptError, ShuttingDown).

        ``limits``: ``rid``, ``timeout`` and ``queue_timeout`` of :meth:`Engine.request`.
        """
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[Event]] = asyncio.Queue()

        def sink(events: list[Event]) -> None:  # runs on the engine thread
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, events)

        req = self.engine.request(prompt, config, sink, stream, max_prompt_tokens, **limits)
        self.engine.submit(req)
        self._wake.set()
        return Handle(req, queue)

    def drain(self) -> None:
        """Refuse new requests (503) while the ones in flight go on."""
        self._closing = True

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new requests, finish the ones in flight, then stop the thread."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "engine still busy after %.0fs; abandoning %d requests",
                timeout,
                self.engine.in_flight,
            )

    def _run(self) -> None:
        while True:
            if self.engine.idle:
                if self._closing:
                    return
                self._wake.wait(timeout=1.0)
                self._wake.clear()  # a submit after this still shows as "not idle" above
                continue
            try:
                self.engine.step()
            except Exception as exc:  # keep serving: fail what was in flight, log why
                log.exception("engine step failed")
                self.engine.fail_all(f"internal error in the generation engine: {exc}")
