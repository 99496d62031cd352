"""dispatch.check_alerts(): drift, overdue and missed_slot alerts, raised and resolved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _job(conn: psycopg.Connection, slot: datetime, started: datetime | None = None) -> int:
    row = conn.execute(
        "INSERT INTO dispatch.jobs (integration_id, kind, scheduled_for, status, started_at, worker_id, "
        "lease_expires_at) VALUES ('x', 'sync', %s, %s, %s, %s, %s) RETURNING id",
        [slot, "running" if started else "queued", started, "w" if started else None,
         started + timedelta(minutes=5) if started else None]).fetchone()
    assert row is not None
    return int(row[0])


def _check(conn: psycopg.Connection, now: datetime) -> int:
    row = conn.execute("SELECT dispatch.check_alerts(%s)", [now]).fetchone()
    assert row is not None
    return int(row[0])


def _open(conn: psycopg.Connection, kind: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT subject FROM dispatch.alerts WHERE kind = %s AND resolved_at IS NULL ORDER BY id", [kind])]


def test_check_alerts__drift_raised_once_and_resolved_by_an_on_time_start(conn: psycopg.Connection,
                                                                          integration: str) -> None:
    late = _job(conn, T0, started=T0 + timedelta(minutes=6))
    _job(conn, T0 + timedelta(hours=1), started=T0 + timedelta(minutes=10))  # early start: not drift
    assert _check(conn, T0 + timedelta(minutes=7)) == 1
    assert _open(conn, "drift") == [f"job:{late}"]
    assert _check(conn, T0 + timedelta(minutes=8)) == 0              # no second alert for the same job
    _job(conn, T0 + timedelta(hours=2), started=T0 + timedelta(hours=2, seconds=1))
    assert _check(conn, T0 + timedelta(hours=2, minutes=1)) == 1     # resolved: on time again
    assert _open(conn, "drift") == []
    assert _check(conn, T0 + timedelta(hours=2, minutes=2)) == 0     # and not raised again


def test_check_alerts__overdue_while_waiting_resolved_when_started(conn: psycopg.Connection,
                                                                   integration: str) -> None:
    job = _job(conn, T0)
    assert _check(conn, T0 + timedelta(seconds=299)) == 0
    assert _check(conn, T0 + timedelta(seconds=301)) == 1
    assert _check(conn, T0 + timedelta(minutes=30)) == 0             # still one open alert
    assert _open(conn, "overdue") == [f"job:{job}"]
    conn.execute("UPDATE dispatch.jobs SET status = 'running', started_at = %s, worker_id = 'w', "
                 "lease_expires_at = %s WHERE id = %s", [T0 + timedelta(minutes=31), T0 + timedelta(hours=1), job])
    _check(conn, T0 + timedelta(minutes=32))
    assert _open(conn, "overdue") == []
    assert _open(conn, "drift") == [f"job:{job}"]                     # it started late


def test_check_alerts__missed_slot_resolved_by_backfill(conn: psycopg.Connection, integration: str) -> None:
    sid = conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, catch_up, next_slot) "
                       "VALUES ('x', 'sync', '0 * * * *', 'skip', %s) RETURNING id", [T0]).fetchone()
    assert sid is not None
    conn.execute("SELECT dispatch.tick(%s)", [T0 + timedelta(hours=2)])
    assert _open(conn, "missed_slot") == [f"schedule:{sid[0]}:2026-03-02T12:00:00Z",
                                          f"schedule:{sid[0]}:2026-03-02T13:00:00Z"]
    detail = conn.execute("SELECT message, details ->> 'reason' FROM dispatch.alerts WHERE kind = 'missed_slot' "
                          "ORDER BY id LIMIT 1").fetchone()
    assert detail is not None and "catch_up = skip" in detail[1] and "2026-03-02T12:00:00Z" in detail[0]
    # The operator backfills 12:00 by rewinding next_slot; the alert for it clears.
    conn.execute("UPDATE dispatch.schedules SET catch_up = 'all', next_slot = %s WHERE id = %s", [T0, sid[0]])
    conn.execute("SELECT dispatch.tick(%s)", [T0 + timedelta(hours=2)])
    assert _check(conn, T0 + timedelta(hours=2)) == 2 + 2           # 2 resolved, 2 late jobs now overdue
    assert _open(conn, "missed_slot") == []
    assert len(_open(conn, "overdue")) == 2


def test_drift_report__percentiles_per_integration_and_kind(conn: psycopg.Connection, integration: str) -> None:
    now = datetime.now(UTC)
    for seconds in [1, 2, 3, 4, 100]:
        _job(conn, now - timedelta(minutes=10), started=now - timedelta(minutes=10) + timedelta(seconds=seconds))
    row = conn.execute("SELECT integration_id, kind, jobs, p50_seconds, max_seconds FROM dispatch.drift_report"
                       ).fetchone()
    assert row is not None and row[:3] == ("x", "sync", 5) and round(row[3]) == 3 and round(float(row[4])) == 100


def test_scheduler_status__reports_the_last_tick(conn: psycopg.Connection, integration: str) -> None:
    assert conn.execute("SELECT last_tick_at FROM dispatch.scheduler_status").fetchone() == (None,)
    conn.execute("SELECT dispatch.tick()")
    row = conn.execute("SELECT last_caller, last_pg_cron_tick_at, seconds_since_tick < 5 "
                       "FROM dispatch.scheduler_status").fetchone()
    assert row == ("manual", None, True)
