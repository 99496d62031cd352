"""The probes: ``/health/live``, ``/health/ready`` and ``/health`` are public; ``/health/details``
needs a token.

Orchestrators and load balancers carry no credentials, so the public probes answer without
one, and for the same reason they disclose nothing an outsider could use: booleans, counts,
status words and the version. No database error (it names the host, port and role), no
listener error, no duty error, no worker id (it names the host and the pid). Those are in
``GET /health/details`` (a verified JWT, served through app/web/api.py) and in the log.

- ``/health/live``: 200 whenever the process answers at all: the event loop is turning. It
  never looks at the database, so a database outage never gets healthy daemons restarted.
- ``/health/ready``: 200 when the database is reachable, LISTEN is connected (or disabled)
  and the daemon is not stopping; 503 with generic reason codes otherwise.
- ``/health``: the compatible combined view (503 when not ready, 200 "degraded" while LISTEN
  reconnects), redacted to the same public fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from app import __version__

if TYPE_CHECKING:
    from app.daemon.poller import Worker
    from app.db.listener import Listener

# Reason codes, and the generic words /health shows for them (tests/acceptance look for these).
REASONS = {"database_unavailable": "database unreachable", "listener_disconnected": "listener disconnected",
           "stopping": "shutting down"}
_NO_STORE = {"Cache-Control": "no-store"}


class HealthView:
    def __init__(self, worker: Worker, listener: Listener, duties: list[Any] | None = None) -> None:
        self.worker = worker
        self.listener = listener
        self.duties = duties or []  # background services: their round counts and last errors

    # -- state
    def _not_ready(self) -> list[str]:
        codes = []
        if not self.worker.db.ok:
            codes.append("database_unavailable")
        if self.listener.enabled and not self.listener.connected:
            codes.append("listener_disconnected")
        if self.worker.stopping:
            codes.append("stopping")
        return codes

    def _listener_word(self) -> str:
        if not self.listener.enabled:
            return f"disabled (polling only, every {self.worker.poll_interval():g} s)"
        if self.listener.connected:
            return "connected"
        return f"disconnected, polling every {self.worker.poll_interval():g} s meanwhile"

    # -- the public bodies
    def live(self) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "alive", "version": __version__}

    def ready(self) -> tuple[int, dict[str, Any]]:
        codes = self._not_ready()
        body: dict[str, Any] = {"status": "not_ready" if codes else "ready", "version": __version__}
        if codes:
            body["reasons"] = codes
        return (503 if codes else 200), body

    def report(self) -> tuple[int, dict[str, Any]]:
        """``/health``: 503 while the database is away or the daemon stops; 200 "degraded"
        without LISTEN (it polls meanwhile); public fields only."""
        codes = [c for c in self._not_ready() if c != "listener_disconnected"]
        degraded = self.listener.enabled and not self.listener.connected
        body: dict[str, Any] = {
            "status": "unavailable" if codes else "degraded" if degraded else "ok",
            "database": self.worker.db.ok,
            "listener": self._listener_word(),
            "in_flight": len(self.worker.inflight),
            "version": __version__,
            "duties": {d.name: {"runs": d.runs, "failing": d.last_error is not None} for d in self.duties},
        }
        if codes:
            body["reasons"] = [REASONS[c] for c in codes]
        return (503 if codes else 200), body

    # -- the detailed view (behind the JWT)
    def details(self) -> tuple[int, dict[str, Any]]:
        status, body = self.report()
        return status, {
            **body,
            "ready": self.ready()[0] == 200,
            "worker_id": self.worker.config.worker_id,
            "database_error": None if self.worker.db.ok else self.worker.db.error,
            "listener_error": self.listener.last_error,
            "duties": {d.name: {"runs": d.runs, "last_error": d.last_error} for d in self.duties},
        }

    # -- endpoints
    async def endpoint(self, request: Request) -> JSONResponse:
        return _json(*self.report())

    async def live_endpoint(self, request: Request) -> JSONResponse:
        return _json(*self.live())

    async def ready_endpoint(self, request: Request) -> JSONResponse:
        return _json(*self.ready())


def _json(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=_NO_STORE)
