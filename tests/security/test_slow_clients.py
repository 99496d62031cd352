"""Slow clients (issue 15): thousands of idle connections to /health neither stop claims nor
keep /health/live from answering, and the daemon's HTTP file descriptors stay bounded."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

import httpx
import psycopg

from tests.support import DaemonProcess, wait_for

IDLE = 5000
LIMIT = 64


def _open_idle(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))  # handshake in the kernel; never a byte of a request
        sockets.append(s)
    return sockets


def test_idle_connections__claims_keep_running_and_liveness_answers(
        db_url: str, conn: psycopg.Connection, integration: str, tmp_path: Path) -> None:
    daemon = DaemonProcess(db_url, tmp_path, DISPATCH_HTTP_LIMIT_CONCURRENCY=str(LIMIT), DISPATCH_HTTP_KEEP_ALIVE="5")
    daemon.start()
    assert daemon.proc is not None
    idle: list[socket.socket] = []
    try:
        idle = _open_idle(daemon.port, IDLE)
        # Half-open HTTP: a partial request line on some, as a slowloris would.
        for s in idle[::10]:
            with contextlib.suppress(OSError):
                s.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        time.sleep(1)
        ids = [conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) VALUES (%s, 'sync') RETURNING id",
                            [integration]).fetchone()[0] for _ in range(20)]  # type: ignore[index]

        def done() -> bool:
            row = conn.execute("SELECT count(*) FROM dispatch.jobs WHERE id = ANY(%s) AND status = 'succeeded'",
                               [ids]).fetchone()
            return row is not None and row[0] == len(ids)
        wait_for(done, 30, message="jobs claimed and completed while idle connections are open")
        started = time.monotonic()
        r = httpx.get(daemon.url + "/health/live", timeout=5)
        assert r.status_code == 200 and time.monotonic() - started < 2
        fds = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))
        assert fds < LIMIT + 150, f"the daemon holds {fds} file descriptors with {IDLE} idle clients"
    finally:
        for s in idle:
            s.close()
        daemon.stop()
        daemon.close()
