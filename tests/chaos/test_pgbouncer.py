"""The Supabase pooler layout, locally: claims through pgbouncer in transaction mode, LISTEN on a
direct connection; and polling only when there is nothing but the transaction pooler.

Supabase (reference/supabase-platform.md §5): Supavisor transaction mode on port 6543 and the
dedicated PgBouncer never deliver LISTEN/NOTIFY; the direct connection (or session mode) does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.devkit.cluster import free_port
from tests.chaos.conftest import assert_ledger, healthy, insert_jobs, record_figure, wait_settled
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.chaos

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class PgBouncer:
    """pgbouncer 1.x in transaction mode in front of one database, on a loopback port."""

    def __init__(self, pg_port: int, dbname: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="chaos-pgbouncer-"))
        self.port = free_port()
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(f"""
[databases]
pooled = host=127.0.0.1 port={pg_port} dbname={dbname} user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir / 'users.txt'}
pool_mode = transaction
default_pool_size = 4
max_client_conn = 100
ignore_startup_parameters = extra_float_digits,options
logfile = {self.dir / 'pgbouncer.log'}
pidfile = {self.dir / 'pgbouncer.pid'}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/pooled"

    def start(self) -> PgBouncer:
        cmd = [PGBOUNCER, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root, like postgres (see app/localdb.py)
            os.chmod(self.dir, 0o755)
            for path in [self.dir, *self.dir.iterdir()]:
                shutil.chown(path, "postgres", "postgres")
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def accepting() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"pgbouncer exited:\n{self.log()}"
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=2, prepare_threshold=None) as c:
                    return c.execute("SELECT 1").fetchone() == (1,)
            except psycopg.OperationalError:
                return False

        wait_for(accepting, 30, interval=0.1, message="pgbouncer accepting")
        return self

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # runuser and pgbouncer: the whole group
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pgbouncer(pg_cluster: Any, conn: psycopg.Connection) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(pg_cluster.port, str(conn.info.dbname)).start()
    yield bouncer
    bouncer.stop()


def _backends(conn: psycopg.Connection, application_name: str) -> int:
    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name = %s", [application_name]).fetchone()
    return int(row[0]) if row else 0


def test_listen_through_transaction_pooling__receives_nothing(
        pgbouncer: PgBouncer, conn: psycopg.Connection) -> None:
    """Documented behaviour, not ours: why LISTEN must use a direct (or session-mode) URL."""
    with psycopg.connect(pgbouncer.url, autocommit=True, prepare_threshold=None) as pooled, \
            psycopg.connect(pgbouncer.url, autocommit=True, prepare_threshold=None) as other, \
            psycopg.connect(conn.info.dsn, autocommit=True) as direct:
        pooled.execute("LISTEN chaos_channel")  # succeeds, on whichever backend served it
        # That backend goes back to the pool and serves the next client (pgbouncer reuses the
        # most recent one): the listening client is somewhere else from now on.
        other.execute("BEGIN")
        other.execute("SELECT 1")
        direct.execute("LISTEN chaos_channel")
        conn.execute("NOTIFY chaos_channel, 'hello'")
        got_direct = list(direct.notifies(timeout=5, stop_after=1))
        pooled.execute("SELECT 1")  # even a later transaction on the pooled connection
        got_pooled = list(pooled.notifies(timeout=2))
        other.execute("COMMIT")
    assert [n.payload for n in got_direct] == ["hello"]
    assert got_pooled == [], "LISTEN through transaction pooling delivered a notification"


def test_pooled_claims_with_direct_listen__jobs_run_at_notify_speed(
        pgbouncer: PgBouncer, db_url: str, conn: psycopg.Connection, integration: str,
        daemons: Callable[..., DaemonProcess]) -> None:
    conn.execute("UPDATE dispatch.integrations SET max_concurrency = 10")
    daemon = daemons(url=pgbouncer.url, LISTEN_DATABASE_URL=db_url, DISPATCH_POLL_INTERVAL="30")
    assert daemon.health().json()["listener"] == "connected"  # type: ignore[union-attr]
    assert _backends(conn, "dispatch-listener") == 1  # LISTEN holds a direct session
    # Enough rounds that every pooled statement has run more than psycopg's prepare threshold.
    for _ in range(8):
        insert_jobs(conn, "x", 25, {"sleep_ms": 5})
        wait_settled(conn, 15)  # a 30 s poll: only NOTIFY on the direct connection is this fast
    ledger = assert_ledger(conn, 200)
    pickup = conn.execute("SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM "
                          "started_at - enqueued_at)) FROM dispatch.jobs").fetchone()
    assert healthy(daemon)
    assert not daemon.events("worker.claim_failed"), daemon.events("worker.claim_failed")[:2]
    record_figure("pgbouncer transaction mode + direct LISTEN",
                  f"{ledger.summary()}; p95 pickup {float(pickup[0]) * 1000:.0f} ms (poll interval 30 s)"
                  if pickup else ledger.summary())


def test_transaction_pooler_only__polls_and_says_so_in_health(
        pgbouncer: PgBouncer, conn: psycopg.Connection, integration: str,
        daemons: Callable[..., DaemonProcess]) -> None:
    conn.execute("UPDATE dispatch.integrations SET max_concurrency = 10")
    daemon = daemons(url=pgbouncer.url, DISPATCH_LISTEN="false", DISPATCH_POLL_INTERVAL="0.5")
    body = daemon.health().json()  # type: ignore[union-attr]
    assert body["listener"].startswith("disabled (polling only"), body
    assert _backends(conn, "dispatch-listener") == 0
    t0 = time.monotonic()
    for _ in range(4):
        insert_jobs(conn, "x", 25)
        wait_settled(conn, 30)
    ledger = assert_ledger(conn, 100)
    pickup = conn.execute("SELECT max(extract(epoch FROM started_at - enqueued_at)) FROM dispatch.jobs").fetchone()
    assert pickup is not None and float(pickup[0]) < 5.0
    record_figure("pgbouncer only, polling", f"{ledger.summary()} in {time.monotonic() - t0:.1f} s; worst pickup "
                  f"{float(pickup[0]) * 1000:.0f} ms with a 0.5 s poll; /health listener = {body['listener']!r}")
