"""Security tier fixtures: planted secret values, the daemon's own login role, echoing vendors."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from app.db.migrate import upgrade
from app.devkit.cluster import LocalCluster
from tests.conftest import drop_database

DAEMON_ROLE = "dispatch_daemon_sec"


def plant(label: str) -> str:
    """A value that can only come from this test: grep for it anywhere afterwards."""
    return f"planted-{label}-{uuid.uuid4().hex}"


def ensure_daemon_role(admin_url: str) -> str:
    """A login role granted dispatch_worker, as docs/security.md tells operators to make."""
    with psycopg.connect(admin_url, autocommit=True) as c, contextlib.suppress(errors.DuplicateObject):
        c.execute(f"CREATE ROLE {DAEMON_ROLE} LOGIN IN ROLE dispatch_worker")
    return DAEMON_ROLE


@pytest.fixture
def daemon_role(admin_url: str) -> str:
    return ensure_daemon_role(admin_url)


def role_url(cluster: LocalCluster, db_url: str, role: str, password: str | None = None) -> str:
    """db_url's database as ``role``; the password is ignored by trust auth but must not leak."""
    database = db_url.rsplit("/", 1)[1]
    auth = f"{role}:{password}" if password else role
    return f"postgresql://{auth}@127.0.0.1:{cluster.port}/{database}"


@contextlib.contextmanager
def cron_database(pg_cluster: LocalCluster, admin_url: str) -> Iterator[str]:
    """A database migrated with pg_cron registration on (pg_cron lives in `postgres`)."""
    name = f"sec_cron_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = pg_cluster.url(name)
    try:
        with contextlib.redirect_stdout(None):
            upgrade(url, pg_cron=True)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE database = %s", [name])
        drop_database(admin_url, name)


class ActivitySampler:
    """Samples pg_stat_activity.query (every database) in a thread until stopped."""

    def __init__(self, admin_url: str, interval: float = 0.005) -> None:
        self.admin_url, self.interval = admin_url, interval
        self.texts: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="activity-sampler")

    def _run(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            while not self._stop.is_set():
                rows = c.execute("SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                                 "AND query <> ''").fetchall()
                self.texts.update(r[0] for r in rows)
                self.samples += 1
                self._stop.wait(self.interval)

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class EchoVendor:
    """An ASGI wrapper that answers matching requests with ``status`` and a body echoing the
    request line, every header and the body (as careless vendors do); others pass through."""

    def __init__(self, app: Any, status: int, match: str, shape: str) -> None:
        self.app, self.status, self.match, self.shape = app, status, match, shape
        self.echoed = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self._matches(scope):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.echoed += 1
        await self._answer(send, self._echo(scope, body))

    def _matches(self, scope: dict[str, Any]) -> bool:
        headers = b"\n".join(k + b": " + v for k, v in scope["headers"]).decode("latin-1")
        return self.match in scope["path"] or self.match in headers

    def _echo(self, scope: dict[str, Any], body: bytes) -> str:
        headers = "; ".join(f"{k.decode()}: {v.decode('latin-1')}" for k, v in scope["headers"])
        return f"failed {scope['method']} {scope['path']} headers [{headers}] body [{body.decode('latin-1')}]"

    async def _answer(self, send: Any, echo: str) -> None:
        shapes = {"graphql": {"errors": [{"message": f"internal error: {echo}", "code": "INTERNAL"}]},
                  "odata": {"error": {"code": "Internal_ServerError", "message": echo}},
                  "entra": {"error": "invalid_client", "error_description": echo, "error_codes": [7000215]},
                  "text": None}
        data = shapes[self.shape]
        raw = echo.encode() if data is None else json.dumps(data).encode()
        ctype = b"text/plain" if data is None else b"application/json"
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(raw)).encode())]})
        await send({"type": "http.response.body", "body": raw})


class WebhookReceiver:
    """Accepts every POST with 200 and remembers the bodies."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
