"""The daemon's HTTP server (Starlette, served by uvicorn inside the daemon's event loop):
the app, its error shape, and the server that leaves the signals to the daemon.

``GET /health``, ``/health/live`` and ``/health/ready`` (app/web/health.py) are public on
purpose; every other route verifies a JWT (app/web/auth.py).

The server holds against slow and idle clients: fewer than ``limit_concurrency`` open
connections (a new one closes the oldest idle one, so a probe always gets through and the HTTP
surface never takes the file descriptors the database pools need; uvicorn answers 503 when
all are busy with requests), a connection that sends nothing for ``keep_alive`` seconds is
closed (before its first request too), and a bounded listen backlog.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.core import logs

if TYPE_CHECKING:
    import uvicorn

    from app.core.settings import Settings
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
    routes = [Route("/health", health.endpoint, methods=["GET"]),
              Route("/health/live", health.live_endpoint, methods=["GET"]),
              Route("/health/ready", health.ready_endpoint, methods=["GET"]), *(extra_routes or [])]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _server_error})
    # An API answers the path it is asked, with JSON; no redirects to a slash-less twin.
    app.router.redirect_slashes = False
    app.state.health = health  # GET /health/details (app/web/api.py, behind the JWT) reads it
    return app


@dataclass(frozen=True)
class ServerLimits:
    """uvicorn's knobs against slow and idle clients (DISPATCH_HTTP_* in .env.example)."""

    limit_concurrency: int = 128
    keep_alive: float = 5.0
    backlog: int = 128

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(limit_concurrency=settings.dispatch_http_limit_concurrency,
                   keep_alive=settings.dispatch_http_keep_alive, backlog=settings.dispatch_http_backlog)


def bounded_protocol(max_connections: int) -> type[Any]:
    """uvicorn's h11 protocol, with an idle timer from the first byte and a connection cap
    that evicts the oldest idle connection (never one with a request in flight)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            # A connection that never sends a request is closed like an idle keep-alive one.
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)
            order: dict[Any, None] = self.server_state.__dict__.setdefault("bounded_order", {})
            order[self] = None
            while len(order) > max_connections:
                victim = next((c for c in order if c is not self and c._idle()), None)
                if victim is None:  # every other connection is mid-request: refuse this one
                    victim = self
                order.pop(victim, None)
                self.connections.discard(victim)  # counted out now, not when the loop gets to it
                victim.transport.close()
                if victim is self:
                    break

        def connection_lost(self, exc: Exception | None) -> None:
            self.server_state.__dict__.get("bounded_order", {}).pop(self, None)
            super().connection_lost(exc)

        def _idle(self) -> bool:
            return self.cycle is None or bool(self.cycle.response_complete)

    return BoundedH11Protocol


def make_server(app: Starlette, host: str, port: int, limits: ServerLimits | None = None) -> uvicorn.Server:
    import uvicorn

    if limits is None:
        from app.core.settings import get_settings

        limits = ServerLimits.from_settings(get_settings())

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # The daemon owns SIGTERM/SIGINT (drain, then stop); uvicorn must not take them.
            yield

    # ws="none": no route speaks WebSocket, and "auto" imports a WebSocket library at start.
    config = uvicorn.Config(app, host=host, port=port, lifespan="off", ws="none", log_level="warning",
                            access_log=False, server_header=False, http=bounded_protocol(limits.limit_concurrency - 1),
                            limit_concurrency=limits.limit_concurrency,
                            timeout_keep_alive=max(1, round(limits.keep_alive)),
                            backlog=limits.backlog, h11_max_incomplete_event_size=16 * 1024)
    return Server(config)


