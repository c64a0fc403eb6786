"""The FastAPI application: routes, OpenAI-style error handlers, request metrics and the engine's
lifetime (started with the app, shut down with it so that unfinished requests end as errors).

FastAPI is imported at module level because it resolves the route signatures' annotations from this
module's globals; only ``slmkit serve`` imports this module.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from slmkit.serve.app import ROUTES, Server, ServeSettings
from slmkit.serve.metrics import endpoint_label
from slmkit.serve.protocol import ApiError

log = logging.getLogger("slmkit.serve")


def create_app(engine: Any, settings: ServeSettings, guard: Any = None) -> Any:
    """An ASGI app serving ``engine`` under ``settings`` with ``guard`` (or none) in front."""
    server = Server(engine, settings, guard)

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        if not engine.alive:
            engine.start()
        yield
        engine.shutdown()

    app = FastAPI(title="slmkit", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

    add_error_handlers(app)

    @app.get("/health")
    async def health() -> Any:
        ok = engine.alive
        return JSONResponse({"status": "ok" if ok else "engine stopped", "model": settings.model_name,
                             "engine": engine.kind, "queued": engine.queued()}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Any:
        server.authorize(request)
        data, content_type = server.metrics.render()
        return Response(data, media_type=content_type)

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        server.authorize(request)
        return {"object": "list", "data": [server.model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> Any:
        server.authorize(request)
        server.check_model(model_id)
        return server.model_card()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await server.serve(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await server.serve(request, chat=True)

    return MetricsMiddleware(app, server)


def add_error_handlers(app: Any) -> None:
    """Every error leaves as an OpenAI-style body: ours, routing errors (404/405) and unexpected ones."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> Any:
        headers = {"Retry-After": "1"} if err.status == 503 else None
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> Any:
        message = f"no route {request.method} {request.url.path}" if err.status_code in (404, 405) else err.detail
        return JSONResponse(ApiError(err.status_code, str(message)).body(), status_code=err.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> Any:
        log.exception("unexpected error serving %s", request.url.path)
        return JSONResponse(ApiError(500, f"internal server error: {type(err).__name__}").body(), status_code=500)


class MetricsMiddleware:
    """Counts every HTTP answer by endpoint and status and times it to its last byte (pure ASGI, so
    streams are timed to their end and nothing is buffered)."""

    def __init__(self, app: Any, server: Server):
        self.app, self.server = app, server
        self.state = app.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def tracked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            label = endpoint_label(scope.get("path", ""), ROUTES)
            self.server.metrics.observe(label, status[0], time.perf_counter() - start)
