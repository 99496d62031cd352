"""The daemon's HTTP surface (Starlette, served by uvicorn inside the daemon's event loop).

``GET /health`` is public on purpose: it is a liveness/readiness probe for load balancers
and orchestrators, which carry no credentials, and it reveals nothing secret (booleans,
counts and the version). Every other route verifies a JWT (see app/auth.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app import __version__

if TYPE_CHECKING:
    import uvicorn

    from app.listener import Listener
    from app.worker import Worker


class HealthView:
    def __init__(self, worker: Worker, listener: Listener) -> None:
        self.worker = worker
        self.listener = listener

    def report(self) -> tuple[int, dict[str, Any]]:
        reasons = []
        if not self.worker.db.ok:
            reasons.append(f"database unreachable: {self.worker.db.error}")
        if self.listener.enabled and not self.listener.connected:
            reasons.append(f"listener disconnected: {self.listener.last_error or 'connecting'}")
        if self.worker.stopping:
            reasons.append("shutting down")
        listener = ("connected" if self.listener.connected else "disconnected") if self.listener.enabled \
            else "disabled (polling only)"
        body = {
            "status": "ok" if not reasons else "unavailable",
            "database": self.worker.db.ok,
            "listener": listener,
            "in_flight": len(self.worker.inflight),
            "worker_id": self.worker.config.worker_id,
            "version": __version__,
        }
        if reasons:
            body["reasons"] = reasons
        return (200 if not reasons else 503), body

    async def endpoint(self, request: Request) -> JSONResponse:
        status, body = self.report()
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def build_app(health: HealthView, extra_routes: list[Route] | None = None) -> Starlette:
    routes = [Route("/health", health.endpoint, methods=["GET"]), *(extra_routes or [])]
    return Starlette(routes=routes)


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


