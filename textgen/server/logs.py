"""Request IDs and the server's log lines: text or JSON, each line about a request tagged.

:data:`REQUEST_ID` holds the id of the request being served (set by
:class:`~textgen.server.guard.RequestIdMiddleware`); asyncio copies it into every task the
request starts, so a log line written anywhere while serving it (uvicorn's access line
included) carries it. :func:`configure` installs one handler on the root logger that adds the
id and writes either ``LEVEL logger: [id] message`` or one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import time
import uuid
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("textgen_request_id", default=None)
MAX_REQUEST_ID = 128
UNSAFE = re.compile(r"[^A-Za-z0-9._:@/+=-]")


def request_id(raw: str | None) -> str:
    """The client's ``X-Request-Id`` kept to a safe charset and at most 128 chars, else a new one.

    Only letters, digits and ``._:@/+=-`` are kept (no spaces, quotes or control characters
    that could forge a log line or a header); an id left empty gets a fresh random one.
    """
    cleaned = UNSAFE.sub("", raw or "")[:MAX_REQUEST_ID]
    return cleaned or uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id``: its own ``extra``, else the current request's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """``INFO textgen.server.app: [<request id>] message`` (no brackets outside a request)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(tag)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.tag = f"[{rid}] " if rid else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            doc["request_id"] = rid
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "text") -> None:
    """Route every logger (uvicorn's too) to one stderr handler in format ``fmt``."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"request_id": {"()": RequestIdFilter}},
            "formatters": {"line": {"()": formatter}},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "line",
                    "filters": ["request_id"],
                    "stream": "ext://sys.stderr",
                },
            },
            "loggers": {  # uvicorn's loggers: no handlers of their own, so one format for all
                name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
            },
            "root": {"handlers": ["stderr"], "level": level.upper()},
        }
    )
