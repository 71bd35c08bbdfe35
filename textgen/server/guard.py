"""The error envelope and the request-body guard in front of every POST route.

The guard reads the (small, bounded) body once and answers, before FastAPI sees it:

* 413 when it is over ``limit`` bytes, declared or streamed (chunked);
* 415 when its Content-Type is not ``application/json``;
* 400 when it is not UTF-8 JSON, or nested too deeply to parse.

Everything else goes on to the app with the body replayed, so validation (422 naming the
field and the value) happens in one place, the request models.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def error(
    status: int,
    message: str,
    kind: str,
    param: str | None = None,
    detail: list | None = None,
    headers: dict | None = None,
) -> JSONResponse:
    """The OpenAI-style error body every non-200 answer uses."""
    body: dict[str, Any] = {
        "error": {"message": message, "type": kind, "param": param, "code": None}
    }
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def body_problem(content_type: str, body: bytes) -> tuple[int, str] | None:
    """(status, message) for a POST body the app should never see, else None."""
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json":
        shown = repr(content_type) if content_type else "none"
        hint = (
            " (with curl: -H 'Content-Type: application/json')"
            if not media or "form" in media
            else ""
        )
        return 415, f"Content-Type must be application/json, got {shown}{hint}"
    try:
        json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        return (
            400,
            f"request body must be UTF-8 JSON: byte {e.object[e.start]:#04x} at offset {e.start} is not UTF-8",
        )
    except json.JSONDecodeError as e:
        return 400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
    except RecursionError:
        return 400, "request body is not valid JSON: nested too deeply"
    return None


class BodyGuardMiddleware:
    """413 / 415 / 400 for bad POST bodies (see the module docstring); the rest is replayed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send, f"got {int(declared)}")
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._too_large(scope, receive, send, "got more")
                return
            if not message.get("more_body", False):
                break
        raw = bytes(body)
        problem = body_problem(headers.get(b"content-type", b"").decode("latin-1"), raw)
        if problem is not None:
            status, text = problem
            await error(status, text, "invalid_request_error")(scope, receive, send)
            return
        await self.app(scope, _replay(raw, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, got: str) -> None:
        msg = f"request body must be at most {self.limit} bytes, {got}"
        await error(413, msg, "request_too_large")(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as ASGI says

    return replay
