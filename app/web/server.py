"""The daemon's HTTP server (Starlette, served by uvicorn inside the daemon's event loop):
the app, its error shape, and the server that leaves the signals to the daemon.

``GET /health`` (app/web/health.py) is public on purpose; every other route verifies a JWT
(app/web/auth.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.core import logs

if TYPE_CHECKING:
    import uvicorn

    from app.web.health import HealthView


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    """Every error this surface sends: ``{"error": {"code", "message", ...}}``."""
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status,
                        headers={"Cache-Control": "no-store", **(headers or {})})


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


async def _http_error(request: Request, exc: Exception) -> Response:
    # Starlette's own 404/405 are plain text; an API client parses one error shape only.
    assert isinstance(exc, HTTPException)
    message = f"{request.method} {request.url.path}: {exc.detail}"
    allow = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow")
    if allow:
        message += f" (allowed: {allow})"
    return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), message,
                          headers=dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    logs.event("http.unhandled_error", logging.ERROR, method=request.method, path=request.url.path,
               error_type=type(exc).__name__, error=str(exc)[:300])
    return error_response(500, "internal_error", "the server failed to handle the request; the daemon log has "
                          "the details (event http.unhandled_error)")


def build_app(health: HealthView, extra_routes: Sequence[BaseRoute] | None = None) -> Starlette:
    routes = [Route("/health", health.endpoint, methods=["GET"]), *(extra_routes or [])]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _server_error})
    # An API answers the path it is asked, with JSON; no redirects to a slash-less twin.
    app.router.redirect_slashes = False
    return app


def make_server(app: Starlette, host: str, port: int) -> uvicorn.Server:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # The daemon owns SIGTERM/SIGINT (drain, then stop); uvicorn must not take them.
            yield

    config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="warning",
                            access_log=False, server_header=False)
    return Server(config)


