"""``GET /health``: public on purpose.

It is a liveness/readiness probe for load balancers and orchestrators, which carry no
credentials, and it reveals nothing secret (booleans, counts and the version).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from app import __version__

if TYPE_CHECKING:
    from app.daemon.poller import Worker
    from app.db.listener import Listener


class HealthView:
    def __init__(self, worker: Worker, listener: Listener, duties: list[Any] | None = None) -> None:
        self.worker = worker
        self.listener = listener
        self.duties = duties or []  # background services: their round counts and last errors

    def report(self) -> tuple[int, dict[str, Any]]:
        reasons = []
        if not self.worker.db.ok:
            reasons.append(f"database unreachable: {self.worker.db.error}")
        if self.worker.stopping:
            reasons.append("shutting down")
        # Without LISTEN the daemon still works: it polls every second. Degraded, not down.
        degraded = self.listener.enabled and not self.listener.connected
        body: dict[str, Any] = {
            "status": "unavailable" if reasons else "degraded" if degraded else "ok",
            "database": self.worker.db.ok,
            "listener": self._listener(),
            "in_flight": len(self.worker.inflight),
            "worker_id": self.worker.config.worker_id,
            "version": __version__,
            "duties": {d.name: {"runs": d.runs, "last_error": d.last_error} for d in self.duties},
        }
        if reasons:
            body["reasons"] = reasons
        return (200 if not reasons else 503), body

    def _listener(self) -> str:
        if not self.listener.enabled:
            return f"disabled (polling only, every {self.worker.poll_interval():g} s)"
        if self.listener.connected:
            return "connected"
        return (f"disconnected, polling every {self.worker.poll_interval():g} s meanwhile: "
                f"{self.listener.last_error or 'connecting'}")

    async def endpoint(self, request: Request) -> JSONResponse:
        status, body = self.report()
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
