"""Who may call the API and which request a line is about: API keys and request IDs.

* :class:`ApiKeyMiddleware`: with keys configured, every ``/v1/*`` route (and ``/metrics``
  when asked) needs ``Authorization: Bearer <key>``, what OpenAI clients send, else 401 in the
  usual error envelope. Each key is compared in constant time, and every key is compared
  whatever matched before, so the time taken tells nothing about which key nearly matched.
* :class:`RequestIdMiddleware`: takes ``X-Request-Id`` (kept to a safe charset, at most 128
  chars) or makes one, sets it for the request's log lines and echoes it in the response.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textgen.server.guard import error
from textgen.server.logs import REQUEST_ID, request_id

HEADER = b"x-request-id"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_matches(token: bytes, keys: tuple[bytes, ...]) -> bool:
    """Constant-time: every key is compared, whichever matches."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(token, key)
    return found


class ApiKeyMiddleware:
    """401 unless ``Authorization: Bearer <one of keys>`` on the guarded paths."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...], metrics: bool = False) -> None:
        self.app, self.keys = app, tuple(k.encode() for k in keys)
        self.prefixes = ("/v1/", "/metrics") if metrics else ("/v1/",)

    def guarded(self, scope: Scope) -> bool:
        path = scope["path"]
        return any(path == p.rstrip("/") or path.startswith(p) for p in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or not self.guarded(scope):
            await self.app(scope, receive, send)  # CORS preflights carry no credentials
            return
        auth = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() == b"bearer" and key_matches(token.strip(), self.keys):
            await self.app(scope, receive, send)
            return
        why = "invalid API key" if auth else "missing API key"
        msg = f"{why}: send the header 'Authorization: Bearer <key>'"
        headers = {"WWW-Authenticate": "Bearer"}
        await error(401, msg, "authentication_error", headers=headers)(scope, receive, send)


class RequestIdMiddleware:
    """Sets :data:`~textgen.server.logs.REQUEST_ID` for the request, echoes ``X-Request-Id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(HEADER, b"").decode("latin-1")
        rid = request_id(raw)
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode())]}
            await send(message)

        token = REQUEST_ID.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
