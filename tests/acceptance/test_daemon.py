"""The daemon as a real process against a real PostgreSQL."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.acceptance


def _status(conn: psycopg.Connection, job_id: int) -> str:
    row = conn.execute("SELECT status::text FROM dispatch.jobs WHERE id = %s", [job_id]).fetchone()
    return row[0] if row else "missing"


def _insert(conn: psycopg.Connection, n: int, payload: str = "{}", integration: str = "x") -> list[int]:
    rows = conn.execute(
        "INSERT INTO dispatch.jobs (integration_id, kind, payload) "
        "SELECT %s, 'sync', %s::jsonb FROM generate_series(1, %s) RETURNING id", [integration, payload, n]).fetchall()
    return [r[0] for r in rows]


def _all_done(conn: psycopg.Connection, status: str = "succeeded") -> Callable[[], bool]:
    def check() -> bool:
        row = conn.execute("SELECT count(*) FILTER (WHERE status::text <> %s) FROM dispatch.jobs", [status]).fetchone()
        return row is not None and row[0] == 0
    return check


def test_serve__runs_a_job_inserted_with_plain_sql(conn: psycopg.Connection, integration: str,
                                                   daemon_factory: Callable[..., DaemonProcess]) -> None:
    daemon = daemon_factory()
    body = daemon.health()
    assert body is not None and body.json()["database"] is True and body.json()["listener"] == "connected"
    (job_id,) = _insert(conn, 1)
    wait_for(lambda: _status(conn, job_id) == "succeeded", 10, message="job succeeded")
    row = conn.execute("SELECT attempts, worker_id IS NOT NULL, started_at >= scheduled_for, result "
                       "FROM dispatch.jobs WHERE id = %s", [job_id]).fetchone()
    assert row == (1, True, True, {"ok": True})
    assert conn.execute("SELECT state FROM dispatch.idempotency_keys").fetchone() == ("succeeded",)


def test_serve__starts_a_future_job_on_time(conn: psycopg.Connection, integration: str,
                                           daemon_factory: Callable[..., DaemonProcess]) -> None:
    daemon_factory(DISPATCH_POLL_INTERVAL="30")  # a long poll: only the run_after timer can start it
    (job_id,) = conn.execute("INSERT INTO dispatch.jobs (integration_id, kind, run_after) "
                             "VALUES ('x', 'sync', now() + interval '1.5 s') RETURNING id").fetchone() or (0,)
    wait_for(lambda: _status(conn, job_id) == "succeeded", 10, message="future job ran")
    late = conn.execute("SELECT extract(epoch FROM started_at - run_after) FROM dispatch.jobs").fetchone()
    assert late is not None and 0 <= late[0] < 0.5


def test_two_daemons__never_share_a_job_or_exceed_the_integration_limit(
        conn: psycopg.Connection, daemon_factory: Callable[..., DaemonProcess]) -> None:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter, max_concurrency) "
                 "VALUES ('a', 'noop', 2), ('b', 'noop', 3)")
    # Neither daemon alone can fill both integrations' limits (2 + 3), so both work; together
    # they could run 6 at once, so the limits are what holds them back.
    daemons = [daemon_factory(concurrency=3, start=False, DISPATCH_POLL_INTERVAL="0.1") for _ in range(2)]
    for d in daemons:
        d.start(wait=False)
    for d in daemons:
        d.wait_healthy()
    _insert(conn, 20, '{"sleep_ms": 150}', "a")
    _insert(conn, 20, '{"sleep_ms": 150}', "b")
    wait_for(_all_done(conn), 60, message="all jobs succeeded")
    assert conn.execute("SELECT max(attempts), count(DISTINCT worker_id) FROM dispatch.jobs").fetchone() == (1, 2)
    # Peak overlap per integration, from the recorded start/finish times.
    peaks = dict(conn.execute("""
        SELECT a.integration_id, max(n) FROM (
            SELECT j.integration_id, j.id,
                   (SELECT count(*) FROM dispatch.jobs k WHERE k.integration_id = j.integration_id
                      AND k.started_at <= j.started_at AND k.finished_at > j.started_at) AS n
            FROM dispatch.jobs j) a GROUP BY 1""").fetchall())
    assert peaks["a"] <= 2 and peaks["b"] <= 3
    for d in daemons:
        d.stop()


def test_kill_9__the_job_is_rescued_by_another_daemon_with_one_effect(
        conn: psycopg.Connection, integration: str, daemon_factory: Callable[..., DaemonProcess]) -> None:
    fast_lease = {"DISPATCH_LEASE_SECONDS": "1.5", "DISPATCH_RESCUE_INTERVAL": "0.5"}
    victim = daemon_factory(**fast_lease)
    (job_id,) = _insert(conn, 1, '{"sleep_ms": 60000}')
    wait_for(lambda: _status(conn, job_id) == "running", 10, message="job running")
    victim.kill()  # SIGKILL: no goodbye, the lease is all that is left
    conn.execute("UPDATE dispatch.jobs SET payload = '{}' WHERE id = %s", [job_id])  # the rerun is quick
    rescuer = daemon_factory(**fast_lease)
    wait_for(lambda: _status(conn, job_id) == "succeeded", 30, message="rescued job succeeded")
    attempts, last_worker = conn.execute("SELECT attempts, worker_id FROM dispatch.jobs WHERE id = %s",
                                         [job_id]).fetchone() or (0, "")
    assert attempts == 2 and last_worker.startswith(rescuer.events("daemon.started")[0]["worker_id"][:10])
    ledger = conn.execute("SELECT count(*), min(state) FROM dispatch.idempotency_keys").fetchone()
    assert ledger == (1, "succeeded")


def test_sigterm__in_flight_jobs_finish_and_the_rest_are_released(
        conn: psycopg.Connection, integration: str, daemon_factory: Callable[..., DaemonProcess]) -> None:
    conn.execute("UPDATE dispatch.integrations SET max_concurrency = 10")
    daemon = daemon_factory(concurrency=2, DISPATCH_SHUTDOWN_GRACE="10")
    quick = _insert(conn, 2, '{"sleep_ms": 800}')
    wait_for(lambda: all(_status(conn, j) == "running" for j in quick), 10, message="two running")
    waiting = _insert(conn, 3)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    assert [_status(conn, j) for j in quick] == ["succeeded", "succeeded"]
    assert [_status(conn, j) for j in waiting] == ["queued"] * 3


def test_sigterm__jobs_past_the_grace_period_are_released_unspent(
        conn: psycopg.Connection, integration: str, daemon_factory: Callable[..., DaemonProcess]) -> None:
    daemon = daemon_factory(DISPATCH_SHUTDOWN_GRACE="0.3")
    (job_id,) = _insert(conn, 1, '{"sleep_ms": 60000}')
    wait_for(lambda: _status(conn, job_id) == "running", 10, message="job running")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    row = conn.execute("SELECT status::text, attempts, worker_id, last_error FROM dispatch.jobs").fetchone()
    assert row is not None and row[:3] == ("queued", 0, None) and "released at shutdown" in row[3]


def test_retry__honours_retry_after_then_fails_with_an_alert(
        conn: psycopg.Connection, integration: str, daemon_factory: Callable[..., DaemonProcess]) -> None:
    daemon_factory()
    (job_id,) = conn.execute("INSERT INTO dispatch.jobs (integration_id, kind, payload, max_attempts) "
                             "VALUES ('x', 'sync', '{\"fail\": true, \"retry_after\": 1}', 2) "
                             "RETURNING id").fetchone() or (0,)
    wait_for(lambda: _status(conn, job_id) == "failed", 20, message="job failed")
    row = conn.execute("SELECT attempts, last_error FROM dispatch.jobs").fetchone()
    assert row is not None and row[0] == 2 and "giving up" in row[1]
    # The job failed for good on a vendor error: the job alerts, and (passive health) so does its integration.
    kinds = {r[0] for r in conn.execute("SELECT kind FROM dispatch.open_alerts").fetchall()}
    assert kinds == {"job_failed", "integration_unhealthy"}


def test_retry__backoff_follows_the_policy(conn: psycopg.Connection, integration: str,
                                          daemon_factory: Callable[..., DaemonProcess]) -> None:
    daemon = daemon_factory(DISPATCH_RETRY_BASE="4")
    (job_id,) = _insert(conn, 1, '{"fail": true}')
    wait_for(lambda: daemon.events("job.retry"), 10, message="a retry")
    row = conn.execute("SELECT run_after - started_at, status::text FROM dispatch.jobs").fetchone()
    assert row is not None and row[1] == "queued"
    # First retry: full jitter in [0, base] seconds.
    assert timedelta(0) <= row[0] <= timedelta(seconds=4.5)
    assert 0 <= daemon.events("job.retry")[0]["retry_in_s"] <= 4


def test_bad_jobs__fail_alone_and_the_loop_keeps_running(
        conn: psycopg.Connection, integration: str, daemon_factory: Callable[..., DaemonProcess]) -> None:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('ghost', 'no_such_adapter')")
    daemon_factory()
    (bad,) = _insert(conn, 1, integration="ghost")
    (boom,) = _insert(conn, 1, '{"fail": "permanent"}')
    (good,) = _insert(conn, 1)
    wait_for(lambda: _status(conn, good) == "succeeded" and _status(conn, bad) == "failed"
             and _status(conn, boom) == "failed", 15, message="outcomes")
    errors: dict[Any, Any] = dict(conn.execute("SELECT id, last_error FROM dispatch.jobs").fetchall())
    assert "no adapter named 'no_such_adapter'" in errors[bad]
    assert "fail permanently" in errors[boom]


def test_postgres_restart__nothing_lost_and_the_daemon_recovers(
        conn: psycopg.Connection, db_url: str, pg_cluster: Any, integration: str,
        daemon_factory: Callable[..., DaemonProcess]) -> None:
    conn.execute("UPDATE dispatch.integrations SET max_concurrency = 10")
    daemon = daemon_factory(concurrency=5)
    _insert(conn, 150, '{"sleep_ms": 20}')
    wait_for(lambda: conn.execute("SELECT count(*) >= 20 FROM dispatch.jobs WHERE status = 'succeeded'")
             .fetchone() == (True,), 20, message="some progress")
    conn.close()
    pg_cluster.restart()
    with psycopg.connect(db_url, autocommit=True) as again:
        wait_for(_all_done(again), 90, message="all jobs succeeded after the restart")
        assert again.execute("SELECT count(*), count(DISTINCT key) FROM dispatch.idempotency_keys "
                             "WHERE state = 'succeeded'").fetchone() == (150, 150)
    wait_for(lambda: (r := daemon.health()) is not None and r.status_code == 200, 30, message="healthy again")
    assert daemon.events("listener.disconnected"), "the listener noticed the restart"


def test_health__503_with_the_reason_while_the_database_is_away(
        db_url: str, pg_cluster: Any, integration: str, daemon_factory: Callable[..., DaemonProcess]) -> None:
    daemon = daemon_factory()
    pg_cluster.stop()
    try:
        def unavailable() -> bool:
            r = daemon.health()
            return r is not None and r.status_code == 503 and "database unreachable" in " ".join(r.json()["reasons"])
        wait_for(unavailable, 30, message="/health 503")
    finally:
        pg_cluster.ensure()
    daemon.wait_healthy(30)


def test_listener_loss__health_says_degraded_and_jobs_still_run_by_polling(
        conn: psycopg.Connection, integration: str, daemon_factory: Callable[..., DaemonProcess]) -> None:
    daemon = daemon_factory(DISPATCH_POLL_INTERVAL="30")
    # Keep terminating the listener's session: LISTEN is unavailable, the daemon must poll.
    def listener_down() -> bool:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = 'dispatch-listener' AND datname = current_database()")
        r = daemon.health()
        return r is not None and r.json()["status"] == "degraded"
    wait_for(listener_down, 20, message="/health degraded")
    body = daemon.health().json()  # type: ignore[union-attr]
    assert daemon.health().status_code == 200  # type: ignore[union-attr]
    assert body["listener"].startswith("disconnected, polling every 1 s")
    (job_id,) = _insert(conn, 1)
    wait_for(lambda: _status(conn, job_id) == "succeeded", 10, message="the job ran by polling")


def test_serve__without_its_http_port_still_runs_jobs_and_opens_no_port(
        conn: psycopg.Connection, integration: str, daemon_factory: Callable[..., DaemonProcess]) -> None:
    import socket

    daemon = daemon_factory(start=False, DISPATCH_HTTP_ENABLED="false")
    daemon.start(wait=False)
    wait_for(lambda: daemon.events("daemon.ready"), 20, message="the daemon ready (database and listener up)")
    ids = _insert(conn, 3)
    wait_for(_all_done(conn), 20, message="jobs done without an HTTP port")
    assert all(_status(conn, i) == "succeeded" for i in ids)
    with socket.socket() as s, pytest.raises(OSError):
        s.connect(("127.0.0.1", daemon.port))  # nothing listens on the port it was given
