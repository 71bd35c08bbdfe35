"""Server-Sent Events: the `/v1/generate` and `/v1/completions` streams and their OpenAPI docs.

Every event's data is a response model (:mod:`textgen.server.responses`) as JSON.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from textgen.inference.events import Chunk, Done, Failed
from textgen.server import responses as out
from textgen.server.batcher import Handle

SSE = "text/event-stream"


class EventStream(StreamingResponse):
    """A Server-Sent Events response that cancels its request however it ends.

    A client that leaves mid-stream cancels the response task, possibly while it waits to
    send rather than inside the event generator, which then would only be closed whenever
    it is garbage-collected; the request is cancelled here instead, at once.
    """

    def __init__(self, events: AsyncIterator[str], handle: Handle) -> None:
        super().__init__(events, media_type=SSE)
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.handle.request.cancel()  # a no-op once it has finished


def _streamed(events: list[str] | None, data: str) -> dict[int | str, dict[str, Any]]:
    """The 200 response: JSON, or Server-Sent Events (one schema per event) when streaming."""
    props: dict[str, Any] = {"data": {"type": "string", "description": data}}
    if events:
        props["event"] = {"type": "string", "enum": events}
    event = {"type": "object", "properties": props, "required": ["data"]}
    return {
        200: {
            "content": {SSE: {"schema": event}},
            "description": "JSON, or Server-Sent Events with stream=true",
        }
    }


GENERATE_SSE = _streamed(
    ["chunk", "done", "error"],
    "JSON: chunk {index, text, logprobs}; done: the full response; error {error}",
)
COMPLETION_SSE = _streamed(None, "a JSON completion chunk, or [DONE] at the end")


def _sse(data: BaseModel, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data.model_dump_json()}\n\n"


async def generate_events(handle: Handle, model: str) -> AsyncIterator[str]:
    """`/v1/generate` stream: one ``chunk`` event per piece of text, then ``done``."""
    async for ev in handle.events():
        if isinstance(ev, Chunk):
            yield _sse(out.chunk_event(ev), "chunk")
        elif isinstance(ev, Done):
            yield _sse(out.generate_response(ev.result, model), "done")
        elif isinstance(ev, Failed):
            yield _sse(out.error_event(ev.message), "error")


async def completion_events(handle: Handle, model: str, created: int) -> AsyncIterator[str]:
    """`/v1/completions` stream in OpenAI's shape, ending with ``data: [DONE]``."""
    rid, base = handle.request.id, len(handle.request.prompt)
    async for ev in handle.events():
        if isinstance(ev, Chunk):
            lps = out.openai_logprobs(ev.logprobs, base)
            choice = out.CompletionChoice(text=ev.text, index=ev.index, logprobs=lps)
            yield _sse(out.completion_chunk(rid, model, created, choice))
        elif isinstance(ev, Done):
            for s in ev.result.samples:
                choice = out.CompletionChoice(text="", index=s.index, finish_reason=s.finish_reason)
                yield _sse(out.completion_chunk(rid, model, created, choice))
        elif isinstance(ev, Failed):
            yield _sse(out.error_event(ev.message))
    yield "data: [DONE]\n\n"
