"""Scheduling end to end: pg_cron's own firing, the daemon's precision, the watchdog."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from app.db.migrate import downgrade, upgrade
from app.devkit.cluster import LocalCluster
from tests.conftest import drop_database
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.acceptance


def _tick_callers(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT caller FROM dispatch.tick_runs ORDER BY id").fetchall()]


def test_watchdog__ticks_while_pg_cron_is_silent_and_hands_back(
        conn: psycopg.Connection, integration: str, daemon_factory: Callable[..., DaemonProcess]) -> None:
    # This database has no pg_cron job (the template is built without), like a stopped pg_cron.
    conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron) VALUES ('x', 'sync', '* * * * *')")
    daemon_factory(DISPATCH_WATCHDOG_INTERVAL="0.3", DISPATCH_STALL_AFTER="1")
    wait_for(lambda: "watchdog" in _tick_callers(conn), 15, message="a watchdog tick")
    alert = conn.execute("SELECT message FROM dispatch.open_alerts WHERE kind = 'scheduler_stalled'").fetchone()
    assert alert is not None and "pg_cron has not run dispatch.tick() at all" in alert[0]
    assert conn.execute("SELECT count(*) >= 1 FROM dispatch.jobs WHERE source = 'cron'").fetchone() == (True,)
    # pg_cron comes back (its ticks carry application_name pg_cron): the watchdog stands back.
    conn.execute("SET application_name = 'pg_cron'")
    conn.execute("SELECT dispatch.tick()")
    conn.execute("RESET application_name")
    wait_for(lambda: conn.execute("SELECT count(*) FROM dispatch.open_alerts WHERE kind = 'scheduler_stalled'")
             .fetchone() == (0,), 15, message="alert resolved")
    ticks = len(_tick_callers(conn))
    wait_for(lambda: conn.execute("SELECT count(*) FROM dispatch.alerts WHERE kind = 'scheduler_stalled' "
                                  "AND resolved_at IS NOT NULL").fetchone() == (1,), 5, message="one resolved alert")
    assert _tick_callers(conn)[ticks - 1] == "pg_cron"


@pytest.fixture
def cron_db(pg_cluster: LocalCluster, admin_url: str) -> Iterator[str]:
    """A database migrated with pg_cron registration on (pg_cron lives in `postgres` here)."""
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute('CREATE DATABASE "cron_e2e"')
    url = pg_cluster.url("cron_e2e")
    upgrade(url, pg_cron=True)
    yield url
    downgrade(url, "base", pg_cron=True)  # unschedules its pg_cron jobs
    drop_database(admin_url, "cron_e2e")


def test_pg_cron__its_own_firing_produces_jobs_started_within_a_second(
        cron_db: str, admin_url: str, tmp_path: Path) -> None:
    with psycopg.connect(admin_url) as c:
        jobs = c.execute("SELECT jobname FROM cron.job WHERE database = 'cron_e2e'").fetchall()
    assert jobs, "pg_cron jobs registered for the database"
    with psycopg.connect(cron_db, autocommit=True) as conn:
        conn.execute("INSERT INTO dispatch.integrations (id, adapter, max_concurrency) VALUES ('x', 'noop', 5)")
        conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron) VALUES ('x', 'sync', '* * * * *')")
        # The watchdog stays out of it: every tick here must be pg_cron's own.
        daemon = DaemonProcess(cron_db, tmp_path, DISPATCH_STALL_AFTER="100000").start()
        try:
            def ran_from_pg_cron() -> bool:
                # A slot inserted ahead by the lookahead (the first tick may find its slot already due).
                row = conn.execute("SELECT count(*) FROM dispatch.jobs WHERE source = 'cron' AND status = 'succeeded' "
                                   "AND enqueued_at < scheduled_for "
                                   "AND EXISTS (SELECT 1 FROM dispatch.tick_runs WHERE caller = 'pg_cron')").fetchone()
                return row is not None and row[0] >= 1
            wait_for(ran_from_pg_cron, 150, interval=0.5, message="a job from pg_cron's tick ran")
            drift = conn.execute("SELECT max(extract(epoch FROM started_at - scheduled_for)) FROM dispatch.jobs "
                                 "WHERE status = 'succeeded' AND enqueued_at < scheduled_for").fetchone()
            assert drift is not None and 0 <= float(drift[0]) < 1.0
            assert set(_tick_callers(conn)) == {"pg_cron"}
        finally:
            daemon.kill()


def test_watchdog__takes_over_from_an_unscheduled_pg_cron_job_and_hands_back(
        cron_db: str, admin_url: str, tmp_path: Path) -> None:
    job = "dispatch-tick@cron_e2e"
    with psycopg.connect(admin_url, autocommit=True) as admin, psycopg.connect(cron_db, autocommit=True) as conn:
        command = admin.execute("SELECT command FROM cron.job WHERE jobname = %s", [job]).fetchone()
        assert command is not None
        admin.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s", [job])
        conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('x', 'noop')")
        conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron) VALUES ('x', 'sync', '* * * * *')")
        daemon = DaemonProcess(cron_db, tmp_path, DISPATCH_STALL_AFTER="5", DISPATCH_WATCHDOG_INTERVAL="0.5").start()
        try:
            wait_for(lambda: "watchdog" in _tick_callers(conn), 30, message="the watchdog ticks")
            assert conn.execute("SELECT count(*) FROM dispatch.open_alerts WHERE kind = 'scheduler_stalled'")\
                .fetchone() == (1,)
            # pg_cron's job comes back; its next minute's tick makes the watchdog stand back.
            admin.execute("SELECT cron.schedule_in_database(%s, '* * * * *', %s, 'cron_e2e')", [job, command[0]])
            wait_for(lambda: conn.execute("SELECT count(*) FROM dispatch.alerts WHERE kind = 'scheduler_stalled' "
                                          "AND resolved_at IS NOT NULL").fetchone() == (1,),
                     100, interval=0.5, message="the alert resolved after pg_cron's tick")
            assert "pg_cron" in _tick_callers(conn)
            assert daemon.events("watchdog.handed_back")
        finally:
            daemon.kill()
