"""The HTTP service: FastAPI routes over one continuously batched generation engine.

``create_app(settings)`` builds the app; the model is loaded once in ``lifespan`` and the
engine runs in a background thread (see :mod:`textgen.server.batcher`). Run it with
``textgen serve`` or ``uvicorn --factory textgen.server.app:app_from_env``.

No ``from __future__ import annotations`` here: FastAPI must see the request models, which
are built per app (:func:`~textgen.server.requests.request_models`), as real objects.
"""

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel

from textgen import __version__
from textgen.inference.engine import PromptError, QueueFull
from textgen.inference.generator import TextGenerator
from textgen.inference.sampling import Chunk, Done, Failed
from textgen.server import responses as out
from textgen.server.batcher import BatchRunner, EngineError, Handle, ShuttingDown
from textgen.server.guard import BodyGuardMiddleware, error
from textgen.server.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from textgen.server.requests import request_models, to_config
from textgen.server.responses import ErrorResponse
from textgen.server.settings import Settings

log = logging.getLogger(__name__)
SSE = "text/event-stream"
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the body is not UTF-8 JSON (or nested too deep)"},
    413: {"model": ErrorResponse, "description": "request body over max_body_bytes"},
    422: {
        "model": ErrorResponse,
        "description": "a parameter out of bounds (field and value named)",
    },
    415: {"model": ErrorResponse, "description": "a Content-Type other than application/json"},
    429: {"model": ErrorResponse, "description": "max_queue requests already in flight; retry"},
    503: {"model": ErrorResponse, "description": "the server is shutting down"},
}


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


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        shown = repr(e.get("input"))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        detail.append({"loc": loc, "msg": e.get("msg", ""), "type": e.get("type"), "input": shown})
    first = detail[0] if detail else {"loc": [], "msg": "invalid request", "input": ""}
    field = ".".join(first["loc"]) or "body"
    message = f"{field}: {first['msg']}, got {first['input']}"
    return error(422, message, "invalid_request_error", field, detail)


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    handlers = {
        PromptError: lambda r, e: error(422, str(e), "invalid_request_error", "prompt"),
        QueueFull: lambda r, e: error(
            429, f"server busy: {e}", "rate_limit_error", headers={"Retry-After": "1"}
        ),
        ShuttingDown: lambda r, e: error(503, str(e), "service_unavailable"),
        EngineError: lambda r, e: error(500, str(e), "server_error"),
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)


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


def _playground() -> str:
    try:
        return (resources.files("textgen.server") / "static" / "index.html").read_text("utf-8")
    except FileNotFoundError:  # an install without package data: the API still works
        log.warning("textgen/server/static/index.html is missing: no playground at /")
        return "<!doctype html><title>textgen</title><p>Playground not installed; see /docs."


def server_threads(threads: int) -> int:
    """Torch threads for the engine; 0 = one fewer than torch's default, at least 1.

    The event loop needs a core too: on a 2-core machine two OpenMP threads plus the loop
    oversubscribe the CPU, and a spinning OpenMP team then runs decode steps ~10x slower.
    """
    return threads if threads > 0 else max(1, torch.get_num_threads() - 1)


def _lifespan(settings: Settings, metrics: Metrics):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threads_before = torch.get_num_threads()
        gen = TextGenerator.from_checkpoint(settings.checkpoint, server_threads(settings.threads))
        runner = BatchRunner(
            gen.engine(settings.max_batch, settings.max_queue, metrics.observe_step)
        )
        engine = runner.engine
        metrics.read_gauges(
            {
                "textgen_queue_depth": lambda: engine.queue_depth,
                "textgen_active_sequences": lambda: engine.active,
                "textgen_requests_in_flight": lambda: engine.in_flight,
            }
        )
        app.state.generator, app.state.runner = gen, runner
        app.state.created = int(gen.path.stat().st_mtime)
        runner.start()
        log.info(
            "serving %s (%s) max_batch=%d max_queue=%d",
            gen.path,
            gen.model_id,
            settings.max_batch,
            settings.max_queue,
        )
        yield
        log.info("shutting down: finishing %d requests in flight", runner.engine.in_flight)
        runner.close(settings.shutdown_timeout)
        torch.set_num_threads(threads_before)

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: from ``TEXTGEN_*``). The model loads at startup."""
    settings = settings or Settings.from_env()
    metrics = Metrics()
    app = FastAPI(
        title="textgen",
        version=__version__,
        description="Character-level Chinese text generation. Limits: "
        + json.dumps(settings.limits()),
        lifespan=_lifespan(settings, metrics),
    )
    app.state.settings, app.state.metrics = settings, metrics
    _install_error_handlers(app)
    _add_generation_routes(app, settings)
    _add_info_routes(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyGuardMiddleware, limit=settings.max_body_bytes)
    paths = {getattr(r, "path", "") for r in app.routes}
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: paths)
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory textgen.server.app:app_from_env``."""
    return create_app(Settings.from_env())


def _add_generation_routes(app: FastAPI, settings: Settings) -> None:
    GenerateRequest, CompletionRequest = request_models(settings)
    limit = settings.max_prompt_chars

    @app.post(
        "/v1/generate",
        response_model=out.GenerateResponse,
        responses={**ERRORS, **GENERATE_SSE},
        summary="Generate text (JSON or SSE)",
    )
    async def generate(body: GenerateRequest, request: Request) -> Any:  # type: ignore[valid-type]
        """Continue a prompt. With `stream: true`: `chunk` events, then a `done` event."""
        handle = request.app.state.runner.submit(body.prompt, to_config(body), body.stream, limit)
        model = request.app.state.generator.model_id
        if body.stream:
            return StreamingResponse(generate_events(handle, model), media_type=SSE)
        return out.generate_response(await handle.result(request.receive), model)

    @app.post(
        "/v1/completions",
        response_model=out.CompletionResponse,
        responses={**ERRORS, **COMPLETION_SSE},
        summary="OpenAI-compatible completions",
    )
    async def completions(body: CompletionRequest, request: Request) -> Any:  # type: ignore[valid-type]
        """The OpenAI legacy completions subset, so OpenAI client libraries work unchanged."""
        handle = request.app.state.runner.submit(body.text, to_config(body), body.stream, limit)
        model, created = request.app.state.generator.model_id, int(time.time())
        if body.stream:
            return StreamingResponse(completion_events(handle, model, created), media_type=SSE)
        result = await handle.result(request.receive)
        return out.completion_response(result, model, created)


def _add_info_routes(app: FastAPI, settings: Settings) -> None:
    @app.get(
        "/health",
        response_model=out.Health,
        summary="200 once the model is loaded",
        responses={503: ERRORS[503]},
    )
    async def health(request: Request) -> Any:
        if request.app.state.runner.closing:
            return error(503, "shutting down", "service_unavailable")
        return out.Health(model=request.app.state.generator.model_id)

    @app.get("/v1/model", summary="The served model: config, vocabulary, limits, hash, metrics")
    async def model_info(request: Request) -> dict[str, Any]:
        gen = request.app.state.generator
        return {
            "id": gen.model_id,
            "checkpoint": gen.path.name,
            "sha256": gen.sha256,
            **gen.info,
            "limits": settings.limits(),
        }

    @app.get("/v1/models", response_model=out.ModelList, summary="OpenAI model list")
    async def models(request: Request) -> Any:
        card = out.ModelCard(
            id=request.app.state.generator.model_id, created=request.app.state.created
        )
        return out.ModelList(data=[card])

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def prometheus(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.app.state.metrics.render(), media_type=CONTENT_TYPE)

    page = _playground()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse(page)
