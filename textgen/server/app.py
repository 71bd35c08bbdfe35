"""The HTTP service: FastAPI routes over one continuously batched generation engine.

``create_app(settings)`` builds the app; the model is loaded once in ``lifespan`` and the
engine runs in a background thread (see :mod:`textgen.server.batcher`). Run it with
``textgen serve`` or ``uvicorn --factory textgen.server.app:app_from_env``.

No ``from __future__ import annotations`` here: FastAPI must see the request models, which
are built per app (:func:`~textgen.server.requests.request_models`), as real objects.
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal, cast

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from textgen import __version__
from textgen.inference.engine import PromptError, QueueFull
from textgen.inference.generator import TextGenerator
from textgen.inference.limits import ParamError
from textgen.inference.patterns import FieldError
from textgen.inference.sampling import GenerationConfig
from textgen.server import requests
from textgen.server import responses as out
from textgen.server.access import ApiKeyMiddleware, RequestIdMiddleware, is_loopback
from textgen.server.batcher import (
    BatchRunner,
    EngineError,
    Handle,
    QueueTimeout,
    ShuttingDown,
)
from textgen.server.fill import add_fill_route
from textgen.server.guard import BodyGuardMiddleware, error
from textgen.server.logs import REQUEST_ID
from textgen.server.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from textgen.server.requests import JsonRequest, request_models, to_config
from textgen.server.responses import ErrorResponse
from textgen.server.settings import Settings
from textgen.server.streams import (
    COMPLETION_SSE,
    GENERATE_SSE,
    EventStream,
    completion_events,
    generate_events,
)

log = logging.getLogger(__name__)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the body is not UTF-8 JSON (or nested too deep)"},
    413: {"model": ErrorResponse, "description": "request body over max_body_bytes"},
    422: {
        "model": ErrorResponse,
        "description": "a parameter out of bounds (field and value named)",
    },
    415: {"model": ErrorResponse, "description": "a Content-Type other than application/json"},
    429: {"model": ErrorResponse, "description": "max_queue requests already in flight; retry"},
    503: {
        "model": ErrorResponse,
        "description": "the server is draining, or the request waited queue_timeout for a slot",
    },
}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "a missing or unknown API key"}
}


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
        FieldError: lambda r, e: error(422, str(e), "invalid_request_error", e.field),
        QueueFull: lambda r, e: error(
            429, f"server busy: {e}", "rate_limit_error", headers={"Retry-After": "1"}
        ),
        ShuttingDown: lambda r, e: error(503, str(e), "service_unavailable"),
        QueueTimeout: lambda r, e: error(
            503, f"server busy: {e}", "service_unavailable", headers={"Retry-After": "1"}
        ),
        EngineError: lambda r, e: error(500, str(e), "server_error"),
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)


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
        gen = TextGenerator.from_checkpoint(
            settings.checkpoint, server_threads(settings.threads), settings.precision
        )
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
        engine.constraints.close()
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
    keys = settings.keys()
    if not keys and not is_loopback(settings.host):
        log.warning(
            "no API keys and host %s: anyone who reaches this port can generate; "
            "set TEXTGEN_API_KEYS or --api-key-file",
            settings.host,
        )
    _install_error_handlers(app)
    _add_generation_routes(app, settings, UNAUTHORIZED if keys else {})
    _add_info_routes(app, settings, UNAUTHORIZED if keys else {})
    fill_errors: dict[int | str, dict[str, Any]] = {422: ERRORS[422]}
    add_fill_route(app, {**fill_errors, **(UNAUTHORIZED if keys else {})})
    # the last added runs first: metrics, request id, CORS, API keys, body guard, the routes
    app.add_middleware(BodyGuardMiddleware, limit=settings.max_body_bytes)
    if keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys, metrics=settings.metrics_auth)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Request-Id"],
        )
    app.add_middleware(RequestIdMiddleware)
    paths = {getattr(r, "path", "") for r in app.routes}
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: paths)
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory textgen.server.app:app_from_env``."""
    return create_app(Settings.from_env())


def _config(body: JsonRequest) -> GenerationConfig:
    """The request's config; what only the config can check is a 422 naming its field."""
    try:
        return to_config(body)
    except ParamError as e:
        names = {core: name for name, core in body.CORE_NAMES.items()}  # max_new_tokens -> ...
        name = names.get(e.field, e.field)
        raise FieldError(name if name in type(body).model_fields else "body", str(e)) from None


async def _submit(request: Request, body: JsonRequest, prompt: str) -> Handle:
    """Queue a request with its id and deadlines (its own timeout, capped by the server's).

    A regex, choice or form is compiled first, off the event loop (then cached): a slow
    compile never stalls other requests, and a bad pattern is a 422 before anything queues.
    """
    s: Settings = request.app.state.settings
    config = _config(body)
    if config.constrained:
        await asyncio.to_thread(request.app.state.runner.engine.constraints.for_config, config)
    return request.app.state.runner.submit(
        prompt,
        config,
        body.stream,
        s.max_prompt_chars,
        rid=REQUEST_ID.get(),
        timeout=s.timeout_for(body.timeout),
        queue_timeout=s.queue_timeout,
    )


def _add_generation_routes(app: FastAPI, settings: Settings, auth: dict) -> None:
    GenerateRequest, CompletionRequest = request_models(settings)

    @app.post(
        "/v1/generate",
        response_model=out.GenerateResponse,
        responses={**ERRORS, **auth, **GENERATE_SSE},
        summary="Generate text (JSON or SSE)",
    )
    async def generate(body: GenerateRequest, request: Request) -> Any:  # type: ignore[valid-type]
        """Continue a prompt. With `stream: true`: `chunk` events, then a `done` event."""
        req = cast(requests.GenerateBody, body)
        handle = await _submit(request, req, req.prompt)
        model = request.app.state.generator.model_id
        if req.stream:
            await handle.started(request.receive)  # a 503 is still possible until then
            return EventStream(generate_events(handle, model), handle)
        return out.generate_response(await handle.result(request.receive), model)

    @app.post(
        "/v1/completions",
        response_model=out.CompletionResponse,
        responses={**ERRORS, **auth, **COMPLETION_SSE},
        summary="OpenAI-compatible completions",
    )
    async def completions(body: CompletionRequest, request: Request) -> Any:  # type: ignore[valid-type]
        """The OpenAI legacy completions subset, so OpenAI client libraries work unchanged."""
        req = cast(requests.CompletionBody, body)
        handle = await _submit(request, req, req.text)
        model, created = request.app.state.generator.model_id, int(time.time())
        if req.stream:
            await handle.started(request.receive)
            return EventStream(completion_events(handle, model, created), handle)
        result = await handle.result(request.receive)
        return out.completion_response(result, model, created)


def _add_info_routes(app: FastAPI, settings: Settings, auth: dict) -> None:
    @app.get(
        "/health",
        response_model=out.Health,
        responses={503: ERRORS[503]},
        summary="Liveness: 200 while the engine thread runs (draining included)",
    )
    async def health(request: Request) -> Any:
        runner = request.app.state.runner
        if not runner.alive:
            return error(503, "the generation engine has stopped", "service_unavailable")
        status: Literal["ok", "draining"] = "draining" if runner.closing else "ok"
        return out.Health(status=status, model=request.app.state.generator.model_id)

    @app.get(
        "/ready",
        response_model=out.Health,
        responses={503: ERRORS[503]},
        summary="Readiness: 200 when the model is loaded, the engine runs and no drain",
    )
    async def ready(request: Request) -> Any:
        state = request.app.state
        runner, gen = getattr(state, "runner", None), getattr(state, "generator", None)
        if gen is None or runner is None or not runner.alive:
            return error(
                503, "not ready: the model or the engine is not running", "service_unavailable"
            )
        if runner.closing:
            return error(503, "not ready: draining before shutdown", "service_unavailable")
        return out.Health(model=gen.model_id)

    @app.get(
        "/v1/model",
        responses=auth,
        summary="The served model: config, vocabulary, limits, hash, metrics",
    )
    async def model_info(request: Request) -> dict[str, Any]:
        gen = request.app.state.generator
        return {
            "id": gen.model_id,
            "checkpoint": gen.path.name,
            "sha256": gen.sha256,
            **gen.info,
            "limits": settings.limits(),
        }

    @app.get(
        "/v1/models", response_model=out.ModelList, responses=auth, summary="OpenAI model list"
    )
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
