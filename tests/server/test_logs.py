"""Log lines: the request id on every line about a request, text or one JSON object a line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from textgen.server.logs import REQUEST_ID, JsonFormatter, RequestIdFilter, TextFormatter


def _line(formatter: logging.Formatter, rid: str | None, msg: str = "hello %s", exc=None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("textgen.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    token = REQUEST_ID.set(rid)
    try:
        if exc is not None:
            try:
                raise exc
            except type(exc):
                logger.exception(msg, "world")
        else:
            logger.warning(msg, "world")
    finally:
        REQUEST_ID.reset(token)
        logger.removeHandler(handler)
    return stream.getvalue()


def test_text_lines_carry_the_request_id_when_there_is_one():
    assert _line(TextFormatter(), "r-1") == "WARNING textgen.test_logs: [r-1] hello world\n"
    assert _line(TextFormatter(), None) == "WARNING textgen.test_logs: hello world\n"


@pytest.mark.parametrize("rid", ["r-2", None])
def test_json_lines_are_one_object_each(rid):
    out = _line(JsonFormatter(), rid, msg="multi\nline %s", exc=ValueError("boom"))
    assert out.count("\n") == 1  # the newline in the message and the traceback are escaped
    doc = json.loads(out)
    assert doc["message"] == "multi\nline world" and doc["level"] == "error"
    assert doc["logger"] == "textgen.test_logs" and "ValueError: boom" in doc["exception"]
    assert doc.get("request_id") == rid and doc["time"].endswith("Z")
