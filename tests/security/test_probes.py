"""Probes (issue 15): /health/live never depends on the database; /health/ready says 503 with
generic reasons; no public route discloses an error text, a host, a role, a pid or a duty's
error; the details are behind the JWT."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from app.web.auth import mint_token
from app.web.health import HealthView
from tests.support import DaemonProcess, free_port, wait_for

SECRET = "probe-test-jwt-secret-of-at-least-32-bytes!"
DB_ERROR = ('connection failed: connection to server at "10.1.2.3", port 6543 failed: FATAL:  password '
            'authentication failed for user "dispatch_prod"')


def view(db_ok: bool = False, listener: bool = False, stopping: bool = False) -> HealthView:
    worker = SimpleNamespace(db=SimpleNamespace(ok=db_ok, error=None if db_ok else DB_ERROR), stopping=stopping,
                             inflight={}, config=SimpleNamespace(worker_id="db-host-7:4242:abc123"),
                             poll_interval=lambda: 1.0)
    lst = SimpleNamespace(enabled=True, connected=listener, last_error="OperationalError: host 10.1.2.3 refused")
    duty = SimpleNamespace(name="watchdog", runs=3, last_error='UndefinedTable: relation "secret_internal" ...')
    return HealthView(worker, lst, [duty])  # type: ignore[arg-type]


LEAKS = ["10.1.2.3", "6543", "dispatch_prod", "password", "db-host-7", "4242", "secret_internal", "OperationalError"]


def test_public_bodies__carry_no_internals_while_everything_is_down() -> None:
    v = view()
    for status, body in (v.report(), v.ready(), v.live()):
        text = str(body)
        assert [leak for leak in LEAKS if leak in text] == [], (status, body)
    assert v.live()[0] == 200  # liveness never looks at the database
    assert v.ready() == (503, {"status": "not_ready", "version": v.ready()[1]["version"],
                               "reasons": ["database_unavailable", "listener_disconnected"]})
    assert v.report()[0] == 503 and v.report()[1]["reasons"] == ["database unreachable"]


def test_ready__200_only_with_database_and_listener_and_not_stopping() -> None:
    assert view(db_ok=True, listener=True).ready()[0] == 200
    assert view(db_ok=True, listener=False).ready()[0] == 503
    assert view(db_ok=True, listener=True, stopping=True).ready()[1]["reasons"] == ["stopping"]


def test_details__have_what_the_public_bodies_leave_out() -> None:
    status, body = view().details()
    assert status == 503 and body["database_error"] == DB_ERROR and body["worker_id"] == "db-host-7:4242:abc123"
    assert body["duties"]["watchdog"]["last_error"].startswith("UndefinedTable")


def _closed_port() -> int:
    port = free_port()
    with socket.socket() as s:  # make sure nothing listens there
        assert s.connect_ex(("127.0.0.1", port)) != 0
    return port


def test_daemon__during_a_database_outage_no_public_route_reveals_anything(tmp_path: Path) -> None:
    password = "planted-db-password-9f2c"
    url = f"postgresql://dispatch_prod:{password}@127.0.0.1:{_closed_port()}/dispatch"
    daemon = DaemonProcess(url, tmp_path, SUPABASE_JWT_SECRET=SECRET, SUPABASE_URL="")
    daemon.start(wait=False)
    try:
        def live() -> bool:
            try:
                return httpx.get(daemon.url + "/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(live, 20, message="/health/live 200 with the database down")
        bodies: dict[str, Any] = {}
        for path in ("/health", "/health/live", "/health/ready", "/health/details", "/openapi.json", "/jobs/1",
                     "/metrics", "/nope"):
            r = httpx.get(daemon.url + path, timeout=5)
            bodies[path] = (r.status_code, r.text)
        hidden = [password, "dispatch_prod", "refused", socket.gethostname(),
                  "OperationalError", "connection"]
        for path, (_, text) in bodies.items():
            if path == "/openapi.json":
                continue  # the schema describes fields; it holds no values
            assert [h for h in hidden if h and h in text] == [], (path, text[:300])
        assert bodies["/health/ready"][0] == 503 and "database_unavailable" in bodies["/health/ready"][1]
        assert bodies["/health"][0] == 503
        assert bodies["/health/details"][0] == 401  # details need the token
        r = httpx.get(daemon.url + "/health/details", headers={"Authorization": f"Bearer {mint_token(SECRET)}"},
                      timeout=5)
        assert r.status_code == 503 and r.json()["database_error"] and r.json()["worker_id"]
    finally:
        daemon.stop()
        daemon.close()


@pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
def test_probes__are_declared_public_routes(path: str) -> None:
    from app.web.api import ROUTES

    assert any(spec.path == path and spec.public_reason for spec in ROUTES.values())
    assert any(spec.path == "/health/details" and spec.public_reason is None for spec in ROUTES.values())
