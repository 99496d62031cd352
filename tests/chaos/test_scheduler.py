"""pg_cron stops: the watchdog ticks in its place; and two ticks race without creating a duplicate."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import psycopg
import pytest

from tests.chaos.conftest import assert_ledger, record_figure, wait_settled
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.chaos


def test_pg_cron_stopped__two_watchdogs_tick_once_per_slot_and_jobs_run(
        conn: psycopg.Connection, integration: str, daemons: Callable[..., DaemonProcess]) -> None:
    # No pg_cron job exists for this database (the template is migrated without): pg_cron is
    # as good as stopped. next_slot = the current minute, so the first slot is due at once
    # (within the catch-up grace) instead of at the next minute.
    conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, next_slot) "
                 "VALUES ('x', 'sync', '* * * * *', date_trunc('minute', now()))")
    watch = {"DISPATCH_STALL_AFTER": "2", "DISPATCH_WATCHDOG_INTERVAL": "0.5"}
    pair = [daemons(**watch) for _ in range(2)]
    wait_for(lambda: _ticks(conn) >= 3, 30, message="three watchdog ticks")
    alert = conn.execute("SELECT message FROM dispatch.open_alerts WHERE kind = 'scheduler_stalled'").fetchone()
    assert alert is not None and "pg_cron has not run dispatch.tick()" in alert[0]
    wait_for(lambda: conn.execute("SELECT count(*) FROM dispatch.jobs WHERE source = 'cron' AND run_after <= now()")
             .fetchone() != (0,), 30, message="a due slot's job")
    # A fixed cutoff: slots inserted ahead (the lookahead) become due while we check.
    cutoff = (conn.execute("SELECT now()::text").fetchone() or ("now",))[0]
    due = f"source = 'cron' AND run_after <= '{cutoff}'::timestamptz"
    wait_settled(conn, 30, where=due)
    per_slot = conn.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM dispatch.jobs "
                            "GROUP BY schedule_id, scheduled_for) s").fetchone()
    assert per_slot == (1,), "a slot produced two jobs"
    n_due = (conn.execute(f"SELECT count(*) FROM dispatch.jobs WHERE {due}").fetchone() or (0,))[0]
    ledger = assert_ledger(conn, n_due, where=due)
    tickers = [sum(1 for e in d.events("watchdog.ran")) for d in pair]
    record_figure("pg_cron stopped", f"{_ticks(conn)} watchdog ticks from 2 daemons (per daemon: {tickers}); "
                  f"{ledger.summary()}; one job per slot")


def _ticks(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM dispatch.tick_runs WHERE caller = 'watchdog'").fetchone()
    return int(row[0]) if row else 0


def test_tick__run_twice_at_once_creates_no_duplicate(db_url: str, conn: psycopg.Connection,
                                                      integration: str) -> None:
    # 50 integrations with a schedule each, slots due: two sessions tick at the same instant,
    # 15 rounds. (One integration per schedule, so each slot key belongs to one schedule.)
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) "
                 "SELECT 'i' || g, 'noop' FROM generate_series(1, 50) g")
    conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, next_slot) "
                 "SELECT 'i' || g, 'sync', '* * * * *', date_trunc('minute', now()) FROM generate_series(1, 50) g")
    start = (conn.execute("SELECT date_trunc('minute', now())").fetchone() or (datetime.now(),))[0]
    rounds = 15
    barrier = threading.Barrier(2, timeout=30)
    results: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def ticker(slot: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                for r in range(rounds):
                    now = start + timedelta(minutes=r)
                    barrier.wait()
                    row = c.execute("SELECT dispatch.tick(%s)", [now]).fetchone()
                    results[slot].append(int(row[0]) if row else 0)
        except BaseException as exc:  # noqa: BLE001 — reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=ticker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, f"a concurrent tick failed: {errors[0]!r}"
    inserted = sum(results[0]) + sum(results[1])
    jobs = conn.execute("SELECT count(*), count(DISTINCT (schedule_id, scheduled_for)) FROM dispatch.jobs").fetchone()
    assert jobs is not None and jobs[0] == jobs[1] == inserted, f"jobs {jobs}, ticks returned {inserted}"
    # Every schedule got every slot once, from the first one to the last round's lookahead.
    per_schedule = conn.execute("SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM dispatch.jobs "
                                "GROUP BY schedule_id) s").fetchone()
    assert per_schedule is not None and per_schedule[0] == per_schedule[1]
    keys = conn.execute("SELECT count(*) FROM dispatch.idempotency_keys k JOIN dispatch.jobs j "
                        "ON j.idempotency_key = k.key AND k.job_id = j.id").fetchone()
    assert keys == (inserted,)
    both = sum(1 for a, b in zip(*results, strict=True) if a and b)
    record_figure("tick twice at once", f"{rounds} rounds x 2 sessions behind a barrier: {inserted} jobs for "
                  f"{jobs[1]} distinct slots, 0 duplicates; rounds where both sessions inserted: {both}")


def test_tick__two_schedules_sharing_a_slot_do_not_abort_everyone_elses_tick(
        conn: psycopg.Connection, integration: str) -> None:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('other', 'noop')")
    # Every minute, and every five minutes: they share each :00/:05 slot (same key, by design).
    conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, next_slot) VALUES "
                 "('x', 'sync', '* * * * *', '2026-01-01 10:00Z'), ('x', 'sync', '*/5 * * * *', '2026-01-01 10:00Z'), "
                 "('other', 'sync', '* * * * *', '2026-01-01 10:00Z')")
    conn.execute("SELECT dispatch.tick('2026-01-01 10:00:30Z')")
    per_integration = dict(conn.execute("SELECT integration_id, count(*) FROM dispatch.jobs GROUP BY 1").fetchall())
    assert per_integration.get("other", 0) >= 1, "an unrelated integration's schedule got no job"
    assert conn.execute("SELECT count(*) = count(DISTINCT idempotency_key) FROM dispatch.jobs").fetchone() == (True,)


def test_pg_cron_stopped__a_login_role_that_is_only_dispatch_worker_ticks_and_runs_the_slot(
        conn: psycopg.Connection, db_url: str, integration: str, daemons: Callable[..., DaemonProcess]) -> None:
    # docs/security.md: the daemon logs in as a role that is only a member of dispatch_worker.
    # The watchdog's fallback must then run only what that role may: tick, rescue, alert checks.
    role = "dispatch_daemon_lp"
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone() is None:
        conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE dispatch_worker")
    conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, next_slot) "
                 "VALUES ('x', 'sync', '* * * * *', date_trunc('minute', now()))")
    least = db_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
    assert least != db_url
    daemon = daemons(url=least, DISPATCH_STALL_AFTER="2", DISPATCH_WATCHDOG_INTERVAL="0.5")
    wait_for(lambda: _ticks(conn) >= 1, 30, message="a watchdog tick as the least-privilege role")
    assert conn.execute("SELECT 1 FROM dispatch.open_alerts WHERE kind = 'scheduler_stalled'").fetchone()
    wait_for(lambda: conn.execute("SELECT count(*) FROM dispatch.jobs WHERE source = 'cron' AND status = 'succeeded'")
             .fetchone() != (0,), 30, message="the slot's job ran")
    assert "permission denied" not in daemon.logs()
    assert not daemon.events("watchdog.failed")
    record_figure("least privilege",
                  f"{_ticks(conn)} watchdog ticks as a dispatch_worker-only login; the slot's job ran")
