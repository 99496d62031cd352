"""Periods, not instants: a schedule's periods are contiguous and keyed by their end, so a
schedule edit never exports a period twice; and the schedules' keys are theirs alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

pytestmark = pytest.mark.integration

OSLO_D = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)  # 02:00 in Oslo (UTC+1) on 30 November


def _schedule(conn: psycopg.Connection, cron: str, tz: str, period: str, next_slot: datetime) -> int:
    row = conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone, period, next_slot) "
                       "VALUES ('x', 'export', %s, %s, %s, %s) RETURNING id", [cron, tz, period, next_slot]).fetchone()
    assert row is not None
    return int(row[0])


def _tick(conn: psycopg.Connection, now: datetime) -> int:
    row = conn.execute("SELECT dispatch.tick(%s)", [now]).fetchone()
    assert row is not None
    return int(row[0])


def _periods(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    return [(r[0]["period_start"], r[0]["period_end"], r[1]) for r in conn.execute(
        "SELECT payload, idempotency_key FROM dispatch.jobs ORDER BY scheduled_for")]


def _alerts(conn: psycopg.Connection, kind: str) -> list[dict[str, Any]]:
    return [r[0] for r in conn.execute("SELECT details FROM dispatch.alerts WHERE kind = %s AND resolved_at IS NULL "
                                       "ORDER BY id", [kind])]


def _edit(conn: psycopg.Connection, sid: int, next_slot: datetime, **fields: str) -> None:
    sets = ", ".join(f"{k} = %({k})s" for k in fields)
    conn.execute(f"UPDATE dispatch.schedules SET {sets}, next_slot = %(next)s WHERE id = %(id)s",
                 {**fields, "next": next_slot, "id": sid})


def test_day_period__a_cron_edit_after_the_export_does_not_export_the_day_again(
        conn: psycopg.Connection, integration: str) -> None:
    sid = _schedule(conn, "0 2 * * *", "Europe/Oslo", "day", OSLO_D)
    assert _tick(conn, OSLO_D) == 1
    # 02:30: the operator moves the export to 03:00. The 03:00 slot closes the same day.
    _edit(conn, sid, OSLO_D + timedelta(hours=1), cron="0 3 * * *")
    assert _tick(conn, OSLO_D + timedelta(hours=1)) == 0
    assert _tick(conn, OSLO_D + timedelta(days=1, hours=1)) == 1
    assert _periods(conn) == [
        ("2026-11-28T23:00:00Z", "2026-11-29T23:00:00Z", "x:export:2026-11-29T23:00:00Z"),
        ("2026-11-29T23:00:00Z", "2026-11-30T23:00:00Z", "x:export:2026-11-30T23:00:00Z")]
    labels = [r[0] for r in conn.execute("SELECT payload ->> 'period_label' FROM dispatch.jobs ORDER BY id")]
    assert labels == ["2026-11-29", "2026-11-30"]
    assert _alerts(conn, "period_adjusted") == []


def test_slot_period__a_cron_edit_keeps_periods_contiguous_and_says_so(conn: psycopg.Connection,
                                                                       integration: str) -> None:
    # Before: the 03:00 slot's period was [03:00 yesterday, 03:00 today): 23 hours exported twice.
    sid = _schedule(conn, "0 2 * * *", "Europe/Oslo", "slot", OSLO_D)
    assert _tick(conn, OSLO_D) == 1
    _edit(conn, sid, OSLO_D + timedelta(hours=1), cron="0 3 * * *")
    assert _tick(conn, OSLO_D + timedelta(hours=1)) == 1
    (start1, end1, _), (start2, end2, _) = _periods(conn)
    assert (start1, end1) == ("2026-11-29T01:00:00Z", "2026-11-30T01:00:00Z")
    assert (start2, end2) == ("2026-11-30T01:00:00Z", "2026-11-30T02:00:00Z")  # starts where the last ended
    adjusted = _alerts(conn, "period_adjusted")
    assert [a["natural_start"] for a in adjusted] == ["2026-11-29T02:00:00Z"]


def test_day_period__a_time_zone_change_neither_overlaps_nor_gaps(conn: psycopg.Connection,
                                                                 integration: str) -> None:
    sid = _schedule(conn, "0 2 * * *", "Europe/Oslo", "day", OSLO_D)
    assert _tick(conn, OSLO_D) == 1
    _edit(conn, sid, datetime(2026, 12, 1, 2, 0, tzinfo=UTC), timezone="UTC")
    assert _tick(conn, datetime(2026, 12, 1, 2, 0, tzinfo=UTC)) == 1
    (_, end1, _), (start2, end2, _) = _periods(conn)
    assert start2 == end1 == "2026-11-29T23:00:00Z" and end2 == "2026-12-01T00:00:00Z"
    assert len(_alerts(conn, "period_adjusted")) == 1


@pytest.mark.parametrize(("period", "label"), [("week", "2026-W48"), ("month", "2026-11")])
def test_calendar_periods__one_job_per_period_however_many_slots(conn: psycopg.Connection, integration: str,
                                                                 period: str, label: str) -> None:
    first = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # a Tuesday: closes ISO week 48 and November
    _schedule(conn, "0 2 * * *", "UTC", period, first)
    for day in range(3):
        _tick(conn, first + timedelta(days=day))
    rows = conn.execute("SELECT payload ->> 'period_label', count(*) FROM dispatch.jobs GROUP BY 1").fetchall()
    assert rows == [(label, 1)]


def test_reserved_keys__callers_cannot_take_a_schedules_key(conn: psycopg.Connection, integration: str) -> None:
    message = r'idempotency key "x:export:2026-11-30T23:00:00Z" is reserved for scheduled periods'
    with pytest.raises(psycopg.errors.CheckViolation, match=message):
        conn.execute("SELECT dispatch.enqueue('x', 'export', idempotency_key => 'x:export:2026-11-30T23:00:00Z')")
    with pytest.raises(psycopg.errors.CheckViolation, match="reserved for scheduled periods"):
        conn.execute("INSERT INTO dispatch.jobs (integration_id, kind, idempotency_key) "
                     "VALUES ('x', 'export', 'x:export:anything')")
    # Any other key is the caller's, including one that names the period in its own namespace.
    assert conn.execute("SELECT dispatch.enqueue('x', 'export', idempotency_key => 'manual:x:export:2026-11')"
                        ).fetchone()


def test_reserved_keys__a_key_the_tick_did_not_make_raises_slot_key_taken(conn: psycopg.Connection,
                                                                          integration: str) -> None:
    # A key in the schedules' namespace from before the reservation existed (or written by an
    # owner past the checks): the period's export cannot run, and that must not be silent.
    conn.execute("INSERT INTO dispatch.idempotency_keys (key, integration_id, kind, job_id) "
                 "VALUES ('x:export:2026-11-30T01:00:00Z', 'x', 'export', 4242)")
    _schedule(conn, "0 1 * * *", "UTC", "slot", OSLO_D)
    assert _tick(conn, OSLO_D) == 0
    taken = _alerts(conn, "slot_key_taken")
    assert taken == [{"idempotency_key": "x:export:2026-11-30T01:00:00Z", "job_id": 4242}]


def test_period_end__survives_the_tick_as_the_next_periods_start(conn: psycopg.Connection, integration: str) -> None:
    sid = _schedule(conn, "0 2 * * *", "Europe/Oslo", "day", OSLO_D)
    _tick(conn, OSLO_D)
    row = conn.execute("SELECT period_end FROM dispatch.schedules WHERE id = %s", [sid]).fetchone()
    assert row == (datetime(2026, 11, 29, 23, 0, tzinfo=UTC),)


@pytest.mark.parametrize("period", ["slot", "day", "month"])
def test_scheduled_export__the_payload_the_tick_builds_fits_the_vendor_adapters(
        conn: psycopg.Connection, integration: str, period: str) -> None:
    # The demo's own export (what `integration-dispatch dev` schedules), through the tick.
    import json

    from app.adapters._vendor_http import ExportPayload
    from app.devkit.demo import EXPORT_PAYLOAD

    conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone, period, next_slot, payload) "
                 "VALUES ('x', 'export', '0 2 * * *', 'Europe/Oslo', %s, %s, %s)",
                 [period, OSLO_D, json.dumps(EXPORT_PAYLOAD)])
    assert _tick(conn, OSLO_D) == 1
    payload = conn.execute("SELECT payload FROM dispatch.jobs").fetchone()[0]  # type: ignore[index]
    model = ExportPayload.model_validate(payload)
    assert model.period_unit == period and model.period_end is not None
    assert payload.get("period") == EXPORT_PAYLOAD.get("period")  # the caller's own field is never overwritten
