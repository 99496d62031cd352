"""The database misbehaves under a running daemon: restarted, its sessions terminated, its
connection slots taken by someone else. The daemon recovers by itself, without a restart."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.chaos.conftest import (
    EffectReceiver,
    assert_ledger,
    healthy,
    insert_jobs,
    record_figure,
    wait_settled,
)
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.chaos

QUICK = {"DISPATCH_LEASE_SECONDS": "3", "DISPATCH_RESCUE_INTERVAL": "0.5", "DISPATCH_RETRY_BASE": "0.2",
         "DISPATCH_POLL_INTERVAL": "1"}


def _terminate(conn: psycopg.Connection, db: str, application_name: str) -> int:
    row = conn.execute("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
                       [db, application_name]).fetchone()
    return int(row[0]) if row else 0


def _dbname(conn: psycopg.Connection) -> str:
    return str(conn.info.dbname)


def test_postgres_restart__under_load_nothing_lost_and_health_returns(
        db_url: str, conn: psycopg.Connection, pg_cluster: Any, webhook: EffectReceiver,
        daemons: Callable[..., DaemonProcess]) -> None:
    webhook.delay = lambda: 0.02
    pair = [daemons(concurrency=5, **QUICK) for _ in range(2)]
    insert_jobs(conn, "hook", 200, max_attempts=25)
    wait_for(lambda: (conn.execute("SELECT count(*) FROM dispatch.jobs WHERE status = 'succeeded'")
                      .fetchone() or (0,))[0] >= 30, 30, message="some progress before the restart")
    conn.close()
    t0 = time.monotonic()
    pg_cluster.restart()
    restarted_s = time.monotonic() - t0
    for d in pair:
        wait_for(lambda d=d: len(d.events("listener.connected")) >= 2 and healthy(d), 60, interval=0.1,
                 message="re-LISTENed and /health 200 after the restart")
    back_s = time.monotonic() - t0
    with psycopg.connect(db_url, autocommit=True) as again:
        insert_jobs(again, "hook", 50, max_attempts=25)  # after the restart: re-LISTENed, re-polling
        wait_settled(again, 90)
        ledger = assert_ledger(again, 250, receiver=webhook)
    for d in pair:
        assert d.events("listener.disconnected"), "the listener noticed the restart"
    record_figure("postgres restart", f"pg_ctl restart took {restarted_s:.1f} s, both daemons /health 200 again "
                  f"{back_s:.1f} s after it began; {ledger.summary()}")


def test_terminate_listener__it_reconnects_relistens_and_wakes_on_notify_again(
        conn: psycopg.Connection, integration: str, daemons: Callable[..., DaemonProcess]) -> None:
    # A long poll: a job is picked up within a second only if a NOTIFY woke the daemon.
    daemon = daemons(DISPATCH_POLL_INTERVAL="60")
    db = _dbname(conn)
    def listening() -> bool:  # /health is 200 (degraded) even without LISTEN: ask for the listener itself
        r = daemon.health()
        return r is not None and r.status_code == 200 and r.json().get("listener") == "connected"

    for round_ in range(1, 4):
        wait_for(listening, 30, message=f"listener connected (round {round_})")
        assert _terminate(conn, db, "dispatch-listener") == 1
        wait_for(lambda r=round_: len(daemon.events("listener.connected")) >= r + 1, 30,
                 message=f"listener reconnected (round {round_})")
        wait_for(listening, 30, message="listening again")
        insert_jobs(conn, "x", 1)
        wait_settled(conn, 5)  # far below the 60 s poll: the fresh LISTEN delivered the NOTIFY
    pickup = conn.execute("SELECT max(extract(epoch FROM started_at - enqueued_at)) FROM dispatch.jobs").fetchone()
    assert pickup is not None and float(pickup[0]) < 2.0
    assert_ledger(conn, 3)
    record_figure("listener terminated x3", f"re-LISTEN each time; worst pickup afterwards "
                  f"{float(pickup[0]) * 1000:.0f} ms with a 60 s poll interval")


def test_terminate_pool_connections__repeatedly_while_jobs_run(
        conn: psycopg.Connection, webhook: EffectReceiver, daemons: Callable[..., DaemonProcess]) -> None:
    webhook.delay = lambda: 0.05
    daemon = daemons(concurrency=6, **QUICK)
    db = _dbname(conn)
    insert_jobs(conn, "hook", 150, max_attempts=25)
    terminated, rounds = 0, 0
    deadline = time.monotonic() + 60
    # Keep shooting the pool's sessions until the work is done (pacing, not synchronisation).
    while time.monotonic() < deadline:
        done = counts_done(conn)
        if done >= 150:
            break
        terminated += _terminate(conn, db, "dispatch-worker")
        rounds += 1
        wait_for(lambda d=done: counts_done(conn) > d or time.monotonic() > deadline, 30, interval=0.05,
                 message="progress between two rounds of terminations")
    wait_settled(conn, 60)
    wait_for(lambda: healthy(daemon), 30, message="/health 200")
    ledger = assert_ledger(conn, 150, receiver=webhook)
    assert terminated >= 5, f"only {terminated} pool sessions were terminated"
    crashed = daemon.events("job.adapter_crashed")
    record_figure("pool sessions terminated", f"{terminated} 'dispatch-worker' backends terminated in {rounds} rounds; "
                  f"{ledger.summary()}; job.adapter_crashed events: {len(crashed)}")


def counts_done(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM dispatch.jobs WHERE status = 'succeeded'").fetchone()
    return int(row[0]) if row else 0


class Hog:
    """Another client taking every connection slot it can get (as a superuser, so it takes the
    superuser-reserved slots too: nobody can open a new session while it holds them)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conns: list[psycopg.Connection] = []

    def grab(self, limit: int = 400) -> int:
        while len(self.conns) < limit:
            try:
                self.conns.append(psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                                                  application_name="chaos-hog"))
            except psycopg.OperationalError as exc:
                assert "too many clients" in str(exc) or "reserved" in str(exc), str(exc)
                break
        return len(self.conns)

    def release(self) -> None:
        for c in self.conns:
            c.close()
        self.conns.clear()


def test_connection_exhaustion__working_daemon_keeps_going_new_one_degrades_and_recovers(
        db_url: str, conn: psycopg.Connection, webhook: EffectReceiver,
        daemons: Callable[..., DaemonProcess]) -> None:
    webhook.delay = lambda: 0.02
    first = daemons(concurrency=5, **QUICK)
    insert_jobs(conn, "hook", 40, max_attempts=25)
    wait_settled(conn, 60)  # warm: its pool holds its connections
    hog = Hog(db_url)
    try:
        held = hog.grab()
        max_conn = conn.execute("SELECT current_setting('max_connections')::int").fetchone()
        # Phase 1: no slot left. The running daemon works with the sessions it already holds.
        insert_jobs(conn, "hook", 60, max_attempts=25)
        wait_settled(conn, 60)
        assert healthy(first)
        # Phase 2: a daemon started now cannot connect: it must stay up and say so.
        late = daemons(start=False, concurrency=5, **QUICK)
        late.start(wait=False)

        def refused() -> bool:
            assert late.proc is not None and late.proc.poll() is None, f"daemon died:\n{late.logs()[-2000:]}"
            r = late.health()
            return r is not None and r.status_code == 503 and "database unreachable" in " ".join(
                r.json().get("reasons", []))

        wait_for(refused, 60, interval=0.1, message="the late daemon reports 503 database unreachable")
        hog.grab()  # anything freed meanwhile is taken again
    finally:
        hog.release()
    # Released: the late daemon connects by itself and takes work.
    wait_for(lambda: healthy(late), 60, interval=0.1, message="the late daemon recovered")
    first.kill()
    insert_jobs(conn, "hook", 50, max_attempts=25)
    wait_settled(conn, 60)
    ledger = assert_ledger(conn, 150, receiver=webhook)
    late_id = late.worker_id
    ran_late = conn.execute("SELECT count(*) FROM dispatch.jobs WHERE worker_id = %s", [late_id]).fetchone()
    assert ran_late is not None and ran_late[0] >= 1
    limit = max_conn[0] if max_conn else "?"
    record_figure("connection exhaustion", f"hog held {held} sessions (max_connections {limit}); "
                  "the warm daemon ran 60 jobs meanwhile; a daemon started meanwhile said 503 and recovered "
                  f"on release; {ledger.summary()}")


def test_completion_write_error__the_completer_survives_and_catches_up(
        conn: psycopg.Connection, integration: str, daemons: Callable[..., DaemonProcess]) -> None:
    # A fault injected in the database: completing a 'poison' job fails once, with a non-connection error.
    conn.execute("""
        CREATE SEQUENCE public.chaos_poison_seq;  -- nextval survives the rollback the RAISE causes
        CREATE FUNCTION public.chaos_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.payload ? 'poison' AND NEW.status = 'succeeded' THEN
                IF nextval('public.chaos_poison_seq') = 1 THEN
                    RAISE EXCEPTION 'chaos: completion refused once' USING ERRCODE = 'check_violation';
                END IF;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER chaos_poison BEFORE UPDATE ON dispatch.jobs FOR EACH ROW EXECUTE FUNCTION public.chaos_poison();
    """)
    daemon = daemons(DISPATCH_LEASE_SECONDS="3", DISPATCH_RESCUE_INTERVAL="0.5")
    (poison,) = insert_jobs(conn, "x", 1, {"poison": True})
    wait_for(lambda: conn.execute("SELECT is_called FROM public.chaos_poison_seq").fetchone() == (True,), 15,
             message="the poisoned completion was refused once")
    insert_jobs(conn, "x", 5)
    wait_settled(conn, 20)  # with max_concurrency 1, a poison job stuck in running would block these
    assert_ledger(conn, 5, where=f"id <> {poison}")
    # The poison job itself is settled, either way: recorded succeeded, or failed saying why.
    status, error = conn.execute("SELECT status::text, last_error FROM dispatch.jobs WHERE id = %s",
                                 [poison]).fetchone() or ("missing", None)
    assert status == "succeeded" or (status == "failed" and "could not be stored" in (error or "")), (status, error)
    assert healthy(daemon)
    record_figure("completion refused once", f"poison job ended {status}; the 5 jobs behind it ran")

def test_credentials_read_when_the_session_dies__a_database_hiccup_is_not_an_adapter_crash(
        conn: psycopg.Connection, webhook: EffectReceiver, daemons: Callable[..., DaemonProcess]) -> None:
    # Fault injected in the database: the first credential read kills its own session.
    conn.execute("""
        CREATE SEQUENCE public.chaos_secret_seq;
        ALTER FUNCTION dispatch.integration_secret(text, text) RENAME TO integration_secret_real;
        CREATE FUNCTION dispatch.integration_secret(p_integration_id text, p_default_name text DEFAULT NULL)
        RETURNS text LANGUAGE plpgsql AS $$
        BEGIN
            IF nextval('public.chaos_secret_seq') = 1 THEN
                PERFORM pg_terminate_backend(pg_backend_pid());
            END IF;
            RETURN dispatch.integration_secret_real(p_integration_id, p_default_name);
        END $$;
    """)
    daemon = daemons(DISPATCH_RETRY_BASE="0.2")
    insert_jobs(conn, "hook", 1)
    wait_settled(conn, 30)
    assert_ledger(conn, 1, receiver=webhook)
    assert conn.execute("SELECT is_called FROM public.chaos_secret_seq").fetchone() == (True,)
    crashed = daemon.events("job.adapter_crashed")
    attempts = conn.execute("SELECT attempts FROM dispatch.jobs").fetchone()
    assert (crashed, attempts) == ([], (1,)), f"adapter_crashed {crashed}, attempts {attempts}"


def test_fence__a_call_whose_lease_cannot_be_renewed_stops_before_the_lease_expires(
        db_url: str, conn: psycopg.Connection, integration: str, daemons: Callable[..., DaemonProcess]) -> None:
    daemon = daemons(DISPATCH_LEASE_SECONDS="3", DISPATCH_RESCUE_INTERVAL="60", DISPATCH_RETRY_BASE="30")
    job_id = insert_jobs(conn, "x", 1, payload={"sleep_ms": 30000})[0]
    wait_for(lambda: conn.execute("SELECT status FROM dispatch.jobs WHERE id = %s", [job_id]).fetchone()
             == ("running",), 10, message="the job started")
    # Renewals now wait on this row lock: from the daemon's side, the lease cannot be renewed.
    with psycopg.connect(db_url) as blocker:
        blocker.execute("SELECT 1 FROM dispatch.jobs WHERE id = %s FOR UPDATE", [job_id])
        fenced = wait_for(lambda: daemon.events("job.fenced"), 10, message="the adapter call was fenced")
        lease = conn.execute("SELECT lease_expires_at FROM dispatch.jobs WHERE id = %s", [job_id]).fetchone()
        assert lease is not None and lease[0] is not None
        stopped_at = datetime.strptime(fenced[0]["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        margin = (lease[0] - stopped_at).total_seconds()
        assert margin > 0.2, f"the call stopped only {margin:.2f} s before its lease expired"
        blocker.rollback()
    record_figure("fence", f"adapter call stopped {margin:.2f} s before its lease expired "
                  "(lease 3 s, renewals blocked)")


def test_postgres_killed__an_unclean_crash_mid_drain_with_async_commits_loses_and_duplicates_nothing(
        db_url: str, conn: psycopg.Connection, pg_cluster: Any, webhook: EffectReceiver,
        daemons: Callable[..., DaemonProcess]) -> None:
    # The worker's own transitions commit with synchronous_commit=off (the default): a crash of
    # the database loses the last of them. Leases, rescue and the ledger must make up for it.
    webhook.delay = lambda: 0.01
    pair = [daemons(concurrency=5, DISPATCH_WORKER_SYNCHRONOUS_COMMIT="off", **QUICK) for _ in range(2)]
    with psycopg.connect(db_url, autocommit=True) as durable:
        durable.execute("SET synchronous_commit = on")  # the test's own inserts are what a caller was promised
        insert_jobs(durable, "hook", 300, max_attempts=25)
    wait_for(lambda: (conn.execute("SELECT count(*) FROM dispatch.jobs WHERE status = 'succeeded'")
                      .fetchone() or (0,))[0] >= 50, 30, message="some progress before the crash")
    conn.close()
    postmaster = int((pg_cluster.datadir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    t0 = time.monotonic()
    wait_for(lambda: _dead(postmaster), 30, message="the postmaster died")
    wait_for(lambda: _start_again(pg_cluster), 60, interval=0.2, message="the cluster started after the crash")
    for d in pair:
        wait_for(lambda d=d: healthy(d), 60, interval=0.1, message="/health 200 after the crash")
    back_s = time.monotonic() - t0
    with psycopg.connect(db_url, autocommit=True) as again:
        wait_settled(again, 120)
        ledger = assert_ledger(again, 300, receiver=webhook)
    record_figure("postgres SIGKILL", f"back {back_s:.1f} s after kill -9 of the postmaster; {ledger.summary()}")


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (pg_ctl would still call it running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def _start_again(cluster: Any) -> bool:
    # Until the killed postmaster's backends are gone, its shared memory and its port block a
    # new start on the same port (which the daemons' DATABASE_URL names).
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", cluster.port))
        except OSError:
            return False
    try:
        cluster.ensure()
    except Exception:  # noqa: BLE001 — retried by wait_for until the deadline
        return False
    return True
