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
from collections.abc import AsyncIterator

from starlette.types import Receive

from textgen.inference.engine import Engine
from textgen.inference.request import Request
from textgen.inference.sampling import Done, Event, Failed, GenerationConfig, GenerationResult

log = logging.getLogger(__name__)


class ShuttingDown(RuntimeError):
    """The server is draining; new requests get 503."""


class EngineError(RuntimeError):
    """The engine failed while this request was in flight; the server answers 500."""


class Handle:
    """A submitted request, seen from the event loop."""

    def __init__(self, request: Request, queue: asyncio.Queue[list[Event]]) -> None:
        self.request, self._queue = request, queue

    async def events(self) -> AsyncIterator[Event]:
        """Chunk events as they come (streaming requests), then one Done or Failed."""
        try:
            while True:
                for event in await self._queue.get():
                    yield event
                    if isinstance(event, (Done, Failed)):
                        return
        finally:
            self.request.cancel()  # a no-op once finished; frees the rows if the reader left

    async def result(self, receive: Receive | None = None) -> GenerationResult:
        """Wait for the result; with ``receive``, a client disconnect cancels the request."""
        watcher = asyncio.create_task(self._watch(receive)) if receive is not None else None
        try:
            async for event in self.events():
                if isinstance(event, Done):
                    return event.result
                if isinstance(event, Failed):
                    raise EngineError(event.message)
            raise EngineError("request ended without a result")
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        log.info("%s: client disconnected, cancelling", self.request.id)
        self.request.cancel()


class BatchRunner:
    """Owns the engine thread: start, submit from the event loop, drain and stop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="textgen-engine", daemon=True)

    @property
    def closing(self) -> bool:
        return self._closing

    def start(self) -> None:
        self._thread.start()

    def submit(self, prompt: str, config: GenerationConfig, stream: bool = False,
               max_prompt_tokens: int | None = None) -> Handle:  # fmt: skip
        """Queue a request from the event loop (QueueFull, PromptError, ShuttingDown)."""
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[Event]] = asyncio.Queue()

        def sink(events: list[Event]) -> None:  # runs on the engine thread
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, events)

        req = self.engine.request(prompt, config, sink, stream, max_prompt_tokens)
        self.engine.submit(req)
        self._wake.set()
        return Handle(req, queue)

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new requests, finish the ones in flight, then stop the thread."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("engine still busy after %.0fs; abandoning %d requests",
                        timeout, self.engine.in_flight)  # fmt: skip

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
