"""dispatch.tick(): schedules as data, lookahead, catch-up, idempotency under overlap."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _schedule(conn: psycopg.Connection, cron: str = "*/15 * * * *", catch_up: str = "all",
              next_slot: datetime | None = T0, tz: str = "UTC", window: str = "1 day") -> int:
    row = conn.execute(
        "INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone, catch_up, catch_up_window, "
        "next_slot, payload) VALUES ('x', 'export', %s, %s, %s, %s::interval, %s, '{\"ledger\": \"gl\"}') "
        "RETURNING id", [cron, tz, catch_up, window, next_slot]).fetchone()
    assert row is not None
    return int(row[0])


def _tick(conn: psycopg.Connection, now: datetime) -> int:
    row = conn.execute("SELECT dispatch.tick(%s)", [now]).fetchone()
    assert row is not None
    return int(row[0])


def _slots(conn: psycopg.Connection) -> list[datetime]:
    return [r[0] for r in conn.execute("SELECT scheduled_for FROM dispatch.jobs ORDER BY scheduled_for")]


def _missed(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT subject FROM dispatch.alerts WHERE kind = 'missed_slot' AND resolved_at IS NULL ORDER BY subject")]


def test_schedules__insert_computes_next_slot_after_now(conn: psycopg.Connection, integration: str) -> None:
    sid = _schedule(conn, "0 2 * * *", next_slot=None, tz="Europe/Oslo")
    row = conn.execute("SELECT next_slot = dispatch.cron_next('0 2 * * *', 'Europe/Oslo', now()), next_slot > now() "
                       "FROM dispatch.schedules WHERE id = %s", [sid]).fetchone()
    assert row == (True, True)


def test_schedules__explicit_next_slot_is_kept(conn: psycopg.Connection, integration: str) -> None:
    sid = _schedule(conn, next_slot=datetime(2020, 1, 1, tzinfo=UTC))
    conn.execute("UPDATE dispatch.schedules SET cron = '0 * * * *', next_slot = '2021-01-01Z' WHERE id = %s", [sid])
    assert conn.execute("SELECT next_slot FROM dispatch.schedules WHERE id = %s", [sid]).fetchone() == (
        datetime(2021, 1, 1, tzinfo=UTC),)


def test_schedules__cron_change_recomputes_next_slot(conn: psycopg.Connection, integration: str) -> None:
    sid = _schedule(conn, next_slot=datetime(2020, 1, 1, tzinfo=UTC))
    conn.execute("UPDATE dispatch.schedules SET cron = '@yearly' WHERE id = %s", [sid])
    row = conn.execute("SELECT next_slot = dispatch.cron_next('@yearly', 'UTC', now()) FROM dispatch.schedules "
                       "WHERE id = %s", [sid]).fetchone()
    assert row == (True,)


@pytest.mark.parametrize(("cron", "tz", "message"), [
    ("0 25 * * *", "UTC", "hour field value 25 out of range 0-23"),
    ("0 0 * * *", "Mars/Base", 'unknown time zone "Mars/Base"'),
])
def test_schedules__invalid_cron_or_zone_is_rejected(conn: psycopg.Connection, integration: str, cron: str,
                                                     tz: str, message: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        _schedule(conn, cron, tz=tz, next_slot=None)
    sid = _schedule(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute("UPDATE dispatch.schedules SET cron = %s, timezone = %s WHERE id = %s", [cron, tz, sid])


def test_tick__inserts_within_lookahead_with_run_after_the_slot(conn: psycopg.Connection, integration: str) -> None:
    sid = _schedule(conn)
    assert _tick(conn, T0 - timedelta(minutes=3)) == 0
    assert _tick(conn, T0 - timedelta(seconds=100)) == 1
    job = conn.execute("SELECT scheduled_for, run_after, source, schedule_id, idempotency_key, payload "
                       "FROM dispatch.jobs").fetchone()
    assert job == (T0, T0, "cron", sid, "x:export:2026-03-02T12:00:00Z",
                   {"ledger": "gl", "slot": "2026-03-02T12:00:00Z", "period_start": "2026-03-02T11:45:00Z",
                    "period_end": "2026-03-02T12:00:00Z", "timezone": "UTC", "schedule_id": sid,
                    "period_unit": "slot", "period_label": "2026-03-02T12:00:00Z"})
    row = conn.execute("SELECT next_slot, last_slot FROM dispatch.schedules WHERE id = %s", [sid]).fetchone()
    assert row == (T0 + timedelta(minutes=15), T0)
    run = conn.execute("SELECT acting_for, inserted, skipped, caller, lateness_ms FROM dispatch.tick_runs "
                       "ORDER BY id DESC").fetchone()
    assert run == (T0 - timedelta(seconds=100), 1, 0, "manual", None)


def test_tick__repeated_and_clock_back_create_no_duplicate(conn: psycopg.Connection, integration: str) -> None:
    sid = _schedule(conn)
    for now in [T0, T0, T0 + timedelta(minutes=1), T0 - timedelta(hours=1), T0]:
        _tick(conn, now)
    assert _slots(conn) == [T0]
    # An operator rewinds next_slot over slots that already ran: the ledger refuses them.
    conn.execute("UPDATE dispatch.schedules SET next_slot = %s WHERE id = %s", [T0 - timedelta(minutes=15), sid])
    assert _tick(conn, T0) == 1
    assert _slots(conn) == [T0 - timedelta(minutes=15), T0]


def test_tick__concurrent_ticks_create_no_duplicate(db_url: str, conn: psycopg.Connection, integration: str) -> None:
    for i in range(50):
        _schedule(conn, f"{i % 60} * * * *", next_slot=T0)
    barrier = threading.Barrier(4)
    totals: list[int] = []

    def tick() -> None:
        with psycopg.connect(db_url, autocommit=True) as c:
            barrier.wait()
            for k in range(3):
                totals.append(_tick(c, T0 + timedelta(minutes=k)))

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dup = conn.execute("SELECT count(*), count(DISTINCT idempotency_key) FROM dispatch.jobs").fetchone()
    assert dup is not None and dup[0] == dup[1] == sum(totals)
    # Every schedule's slot at T0 exists exactly once (cron i * * * * -> first slot T0 + i min, i <= 2).
    assert conn.execute("SELECT count(*) FROM dispatch.jobs WHERE scheduled_for = %s", [T0]).fetchone() == (1,)


def test_tick__edited_schedule_mid_period_creates_no_duplicate(conn: psycopg.Connection, integration: str) -> None:
    sid = _schedule(conn, "0 * * * *")
    _tick(conn, T0 - timedelta(minutes=1))           # 12:00 inserted early
    conn.execute("UPDATE dispatch.schedules SET cron = '0,30 * * * *', next_slot = %s WHERE id = %s", [T0, sid])
    _tick(conn, T0 + timedelta(minutes=29))
    assert _slots(conn) == [T0, T0 + timedelta(minutes=30)]


@pytest.mark.parametrize(("policy", "runs", "alerts"), [
    # A 3-hour outage on a quarter-hourly schedule: slots 12:00 .. 15:00 are due at 15:00.
    ("all", [T0 + timedelta(minutes=15 * i) for i in range(13)], 0),
    ("latest", [T0 + timedelta(minutes=165), T0 + timedelta(minutes=180)], 11),
    ("skip", [T0 + timedelta(minutes=180)], 12),
])
def test_tick__three_hour_outage_follows_catch_up_policy(conn: psycopg.Connection, integration: str, policy: str,
                                                         runs: list[datetime], alerts: int) -> None:
    _schedule(conn, catch_up=policy)
    inserted = _tick(conn, T0 + timedelta(hours=3))
    assert (inserted, _slots(conn)) == (len(runs), runs)
    missed = _missed(conn)
    assert len(missed) == alerts
    ran = {f"{r:%Y-%m-%dT%H:%M:%SZ}" for r in runs}
    assert not any(m.split(":", 2)[2] in ran for m in missed)
    assert conn.execute("SELECT skipped FROM dispatch.tick_runs").fetchone() == (alerts,)


def test_tick__catch_up_window_bounds_all(conn: psycopg.Connection, integration: str) -> None:
    sid = _schedule(conn, window="1 hour")
    _tick(conn, T0 + timedelta(hours=3))
    assert _slots(conn)[0] == T0 + timedelta(hours=2)
    assert len(_missed(conn)) == 8                      # 12:00 .. 13:45, older than the window
    assert f"schedule:{sid}:2026-03-02T12:00:00Z" in _missed(conn)


def test_tick__long_backlog_is_capped_per_tick(conn: psycopg.Connection, integration: str) -> None:
    conn.execute("INSERT INTO dispatch.settings (key, value) VALUES ('tick_max_slots_per_schedule', '5') "
                 "ON CONFLICT (key) DO UPDATE SET value = '5'")
    _schedule(conn)
    assert _tick(conn, T0 + timedelta(hours=3)) == 5
    assert _tick(conn, T0 + timedelta(hours=3)) == 5
    assert _tick(conn, T0 + timedelta(hours=3)) == 3
    assert len(_slots(conn)) == 13


def test_tick__disabled_schedule_is_paused_and_catches_up_on_enable(conn: psycopg.Connection,
                                                                    integration: str) -> None:
    sid = _schedule(conn)
    conn.execute("UPDATE dispatch.schedules SET enabled = false WHERE id = %s", [sid])
    assert _tick(conn, T0 + timedelta(hours=1)) == 0
    conn.execute("UPDATE dispatch.schedules SET enabled = true WHERE id = %s", [sid])
    assert _tick(conn, T0 + timedelta(hours=1)) == 5


def test_tick__watchdog_caller_is_recorded(conn: psycopg.Connection, integration: str) -> None:
    conn.execute("SET dispatch.tick_caller = 'watchdog'")
    _tick(conn, T0)
    assert conn.execute("SELECT last_caller FROM dispatch.scheduler_status").fetchone() == ("watchdog",)


def test_tick__two_schedules_sharing_a_slot_make_one_job(conn: psycopg.Connection, integration: str) -> None:
    conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, next_slot) VALUES "
                 "('x', 'sync', '*/5 * * * *', '2026-03-01 10:00Z'), "
                 "('x', 'sync', '*/10 * * * *', '2026-03-01 10:00Z')")
    inserted = conn.execute("SELECT dispatch.tick('2026-03-01 10:00:30Z')").fetchone()
    assert inserted == (1,)
    assert conn.execute("SELECT idempotency_key, schedule_id = (SELECT min(id) FROM dispatch.schedules) "
                        "FROM dispatch.jobs").fetchall() == [("x:sync:2026-03-01T10:00:00Z", True)]
    assert conn.execute("SELECT count(*) FROM dispatch.schedules WHERE next_slot > '2026-03-01 10:00Z'").fetchone() \
        == (2,)
