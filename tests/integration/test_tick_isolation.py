"""dispatch.tick(): one broken schedule fails alone (schedule_invalid), and a schedule that can
never run again says so (no_future_slot).

Broken rows are written the ways they happen: around the validation trigger (a restore, a
hand edit), with a zone that a tzdata update removed, or orphaned from their integration
while foreign keys were off (session_replication_role = replica).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
GONE_ZONE = "US/Pacific-New"          # removed from tzdata in 2020b


@contextmanager
def _around_validation(conn: psycopg.Connection) -> Iterator[None]:
    conn.execute("ALTER TABLE dispatch.schedules DISABLE TRIGGER schedules_before_write")
    try:
        yield
    finally:
        conn.execute("ALTER TABLE dispatch.schedules ENABLE TRIGGER schedules_before_write")


def _schedules(conn: psycopg.Connection, n: int, kind: str = "sync") -> list[int]:
    return [r[0] for r in conn.execute(
        "INSERT INTO dispatch.schedules (integration_id, kind, cron, next_slot) "
        "SELECT 'x', %s || g, '*/15 * * * *', %s FROM generate_series(1, %s) g RETURNING id", [kind, T0, n])]


def _broken(conn: psycopg.Connection, cron: str = "*/15 * * * *", tz: str = "UTC", parsed: bool = True,
            integration: str = "x") -> int:
    with _around_validation(conn):
        row = conn.execute(
            "INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone, cron_spec, next_slot) "
            "VALUES (%s, 'broken', %s, %s, CASE WHEN %s THEN dispatch.cron_parse(%s) END, %s) RETURNING id",
            [integration, cron, tz, parsed, cron, T0]).fetchone()
    assert row is not None
    return int(row[0])


def _tick(conn: psycopg.Connection, now: datetime = T0 - timedelta(seconds=30)) -> int:
    row = conn.execute("SELECT dispatch.tick(%s)", [now]).fetchone()
    assert row is not None
    return int(row[0])


def _jobs(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT schedule_id FROM dispatch.jobs ORDER BY schedule_id")]


def _open(conn: psycopg.Connection, kind: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT subject, message FROM dispatch.alerts WHERE kind = %s AND resolved_at IS NULL ORDER BY id", [kind])]


def _next_slot(conn: psycopg.Connection, sid: int) -> datetime | None:
    row = conn.execute("SELECT next_slot FROM dispatch.schedules WHERE id = %s", [sid]).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def test_tick__zone_the_server_no_longer_knows_fails_alone(conn: psycopg.Connection, integration: str) -> None:
    good = _schedules(conn, 3)
    bad = _broken(conn, tz=GONE_ZONE)
    assert _tick(conn) == 3
    assert _jobs(conn) == good
    [(subject, message)] = _open(conn, "schedule_invalid")
    assert subject == f"schedule:{bad}"
    assert f'time zone "{GONE_ZONE}" not recognized' in message
    assert _next_slot(conn, bad) == T0                       # its slots wait where they were
    # Still broken a minute later: the same alert, seen again, not a second one.
    assert _tick(conn, T0 + timedelta(minutes=14, seconds=30)) == 3
    assert len(_open(conn, "schedule_invalid")) == 1
    assert conn.execute("SELECT last_seen_at > raised_at FROM dispatch.alerts WHERE kind = 'schedule_invalid'"
                        ).fetchone() == (True,)


def test_tick__zone_back_runs_the_waiting_slots_and_resolves(conn: psycopg.Connection, integration: str) -> None:
    bad = _broken(conn, tz=GONE_ZONE)
    _tick(conn)
    assert len(_open(conn, "schedule_invalid")) == 1
    with _around_validation(conn):                           # tzdata restored: the same schedule, usable again
        conn.execute("UPDATE dispatch.schedules SET timezone = 'America/Los_Angeles' WHERE id = %s", [bad])
    assert _tick(conn) == 1
    assert _jobs(conn) == [bad]
    assert _open(conn, "schedule_invalid") == []


def test_tick__expression_that_does_not_parse_fails_alone(conn: psycopg.Connection, integration: str) -> None:
    good = _schedules(conn, 2)
    bad = _broken(conn, cron="*/15 * * * * *", parsed=False)
    assert _tick(conn) == 2
    assert _jobs(conn) == good
    [(subject, message)] = _open(conn, "schedule_invalid")
    assert subject == f"schedule:{bad}"
    assert 'invalid cron expression "*/15 * * * * *": expected 5 fields' in message


def test_tick__unforeseen_failure_is_found_by_halving_and_fails_alone(conn: psycopg.Connection,
                                                                     integration: str) -> None:
    """A schedule the screening passes but the tick's statement cannot run (its integration
    was deleted while foreign keys were off): the batch is halved down to it."""
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('gone', 'noop')")
    first = _schedules(conn, 5, "a")
    bad = _broken(conn, integration="gone")
    last = _schedules(conn, 6, "b")
    conn.execute("SET session_replication_role = replica")
    conn.execute("DELETE FROM dispatch.integrations WHERE id = 'gone'")
    conn.execute("RESET session_replication_role")
    assert _tick(conn) == 11
    assert _jobs(conn) == first + last
    [(subject, message)] = _open(conn, "schedule_invalid")
    assert (subject, 'unknown integration "gone"' in message) == (f"schedule:{bad}", True)
    assert conn.execute("SELECT details ->> 'sqlstate' FROM dispatch.alerts WHERE kind = 'schedule_invalid'"
                        ).fetchone() == ("23503",)
    # Next tick it runs alone (the others are not halved again), and still fails alone.
    assert _tick(conn, T0 + timedelta(minutes=14, seconds=30)) == 11
    assert len(_jobs(conn)) == 22
    assert len(_open(conn, "schedule_invalid")) == 1
    # Deleting it resolves what was said about it.
    conn.execute("DELETE FROM dispatch.schedules WHERE id = %s", [bad])
    assert _open(conn, "schedule_invalid") == []


def test_tick__broken_schedule_fails_alone_for_the_watchdog_role(conn: psycopg.Connection, integration: str) -> None:
    good = _schedules(conn, 2)
    _broken(conn, tz=GONE_ZONE)
    with conn.transaction():
        conn.execute("SET LOCAL ROLE dispatch_worker")
        conn.execute("SELECT set_config('dispatch.tick_caller', 'watchdog', true)")
        assert _tick(conn) == 2
    assert _jobs(conn) == good
    assert len(_open(conn, "schedule_invalid")) == 1


def test_tick__expression_with_no_slot_left_raises_no_future_slot(conn: psycopg.Connection, integration: str) -> None:
    good = _schedules(conn, 1)
    never = _broken(conn, cron="0 0 30 2 *")                   # 30 February: valid fields, no day
    assert _tick(conn) == 1
    assert _jobs(conn) == good
    assert _next_slot(conn, never) is None
    [(subject, message)] = _open(conn, "no_future_slot")
    assert subject == f"schedule:{never}"
    assert 'cron "0 0 30 2 *" in UTC has no slot within 50 years after 2026-03-02T12:00:00Z' in message
    assert _tick(conn) == 0                                    # not due any more, and no second alert
    assert len(_open(conn, "no_future_slot")) == 1
    # An edit that gives it slots again resolves the alert.
    conn.execute("UPDATE dispatch.schedules SET cron = '0 0 28 2 *' WHERE id = %s", [never])
    assert _next_slot(conn, never) is not None
    assert _open(conn, "no_future_slot") == []


def test_schedules__emptied_next_slot_raises_no_future_slot_until_disabled(conn: psycopg.Connection,
                                                                           integration: str) -> None:
    [sid] = _schedules(conn, 1)
    conn.execute("UPDATE dispatch.schedules SET next_slot = NULL WHERE id = %s", [sid])
    [(subject, message)] = _open(conn, "no_future_slot")
    assert subject == f"schedule:{sid}"
    assert "its next_slot is empty, though cron \"*/15 * * * *\" in UTC fires next at" in message
    conn.execute("UPDATE dispatch.schedules SET enabled = false WHERE id = %s", [sid])
    assert _open(conn, "no_future_slot") == []
    # Enabling it again with no next slot says so again.
    conn.execute("UPDATE dispatch.schedules SET enabled = true WHERE id = %s", [sid])
    assert len(_open(conn, "no_future_slot")) == 1


def test_tick__healthy_schedules_take_one_subtransaction(conn: psycopg.Connection, integration: str) -> None:
    """Isolation costs nothing per schedule: 40 due schedules in 8 zones take one subtransaction
    id (the batch's), not forty (ids are handed out in order: count those between the
    transaction's own and the next one asked for)."""
    zones = ["UTC", "Europe/Oslo", "Asia/Kolkata", "Europe/Dublin", "America/New_York", "Asia/Tokyo",
             "Australia/Lord_Howe", "America/Sao_Paulo"]
    conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone, next_slot) "
                 "SELECT 'x', 'sync' || g, '*/15 * * * *', (%s::text[])[1 + g %% 8], %s FROM generate_series(1, 40) g",
                 [zones, T0])
    conn.execute("CREATE TEMP TABLE probe (i integer)")
    with conn.transaction():
        own = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
        assert _tick(conn) == 40
        with conn.transaction():                             # a subtransaction of our own, after the tick's
            after = conn.execute("INSERT INTO probe VALUES (1) RETURNING xmin::text::bigint").fetchone()
    assert own is not None and after is not None
    assert 1 <= after[0] - own[0] - 1 < 10                   # (other sessions may take an id meanwhile)
