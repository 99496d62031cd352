"""Property-based fuzzing of the SQL entry points: dispatch.enqueue_job / dispatch.enqueue
arguments and schedule definitions on INSERT. Each bad input gets a clear error from a known
set of SQLSTATEs (never XX000, never a dropped connection); good ones become rows.

Every example runs in a transaction that is rolled back, on one connection per test.
"""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
# data exceptions (22xxx: bad value, out of range, bad JSON/timestamp, NUL escape),
# integrity (23xxx: unknown integration, check), and nesting limits (54xxx).
CLEAR_CLASSES = ("22", "23", "54")

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=50))
json_values = st.recursive(json_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=20), kids, max_size=5)), max_leaves=30)


def deep(depth: int, kind: str) -> str:
    """JSON text nested ``depth`` levels (built as text: json.dumps recurses)."""
    opening, closing = ("[", "]") if kind == "list" else ('{"a":', "}")
    return opening * depth + "1" + closing * depth


payloads = st.one_of(
    json_values.map(json.dumps),
    st.dictionaries(st.text(max_size=20), json_values, max_size=5).map(json.dumps),
    st.tuples(st.integers(1, 20_000), st.sampled_from(["list", "dict"])).map(lambda t: deep(*t)),
    st.text(max_size=40),                              # not JSON at all
    st.integers(0, 200_000).map(lambda n: json.dumps({"blob": "x" * n})),  # large (1 MB: the named cases)
)
instants = st.one_of(
    st.none(),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.sampled_from(["infinity", "-infinity", "epoch", "now", "294277-01-01", "4714-11-24 BC", "2026-02-30"]),
    st.text(max_size=30),
)
texts = st.one_of(st.text(max_size=80), st.text(min_size=5000, max_size=20_000), st.sampled_from(["x", "sync"]))


def run_or_clear_error(conn: psycopg.Connection, sql: str, params: list[Any]) -> str:
    """'ok' or the SQLSTATE of a clear error; anything else fails the example."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(sql, params)
        return "ok"
    except psycopg.DataError as exc:
        if exc.sqlstate is None:  # refused client-side before sending
            assert "NUL" in str(exc) and any("\x00" in p for p in params if isinstance(p, str)), str(exc)
            return "client:NUL"
        return _clear(exc)
    except psycopg.DatabaseError as exc:
        return _clear(exc)


def _clear(exc: psycopg.Error) -> str:
    assert not conn_lost(exc), f"connection lost: {exc}"
    state = exc.sqlstate or ""
    assert state[:2] in CLEAR_CLASSES, f"unclear error {state} {type(exc).__name__}: {exc}"
    assert exc.diag.message_primary, f"{state} without a message"
    return state


def conn_lost(exc: psycopg.Error) -> bool:
    return isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None


ENQUEUE = ("SELECT * FROM dispatch.enqueue_job(%s, %s, %s::jsonb, %s::timestamptz, %s, %s::smallint, "
           "%s::integer, %s::timestamptz)")


@FUZZ
@given(integration=st.one_of(st.just("x"), texts), kind=texts, payload=payloads, scheduled_for=instants,
       key=st.one_of(st.none(), texts), priority=st.integers(-100_000, 100_000),
       max_attempts=st.one_of(st.none(), st.integers(-10, 2**40)), run_after=instants)
def test_enqueue_job__any_arguments_give_a_job_or_a_clear_error(
        conn: psycopg.Connection, integration: str, kind: str, payload: str, scheduled_for: str | None,
        key: str | None, priority: int, max_attempts: int | None, run_after: str | None) -> None:
    _ensure_integration(conn)
    params = [integration, kind, payload, scheduled_for, key, priority, max_attempts, run_after]
    run_or_clear_error(conn, ENQUEUE, params)
    assert conn.execute("SELECT 1").fetchone() == (1,), "the connection still serves"


@FUZZ
@given(payload=payloads, key=st.one_of(st.none(), texts), when=instants)
def test_enqueue__valid_target_any_payload(conn: psycopg.Connection, payload: str, key: str | None,
                                           when: str | None) -> None:
    _ensure_integration(conn)
    outcome = run_or_clear_error(conn, "SELECT dispatch.enqueue('x', 'sync', %s::jsonb, %s::timestamptz, %s)",
                                 [payload, when, key])
    if outcome == "ok":
        assert _is_object(payload), "only JSON objects are accepted as payloads"


def _is_object(text: str) -> bool:
    return text.lstrip(" \t\n\r").startswith("{")  # json.loads would recurse on deep nesting


def _ensure_integration(conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('x', 'noop') ON CONFLICT DO NOTHING")


def test_enqueue__named_cases(conn: psycopg.Connection) -> None:
    """The brief's named inputs, with the error each must get."""
    _ensure_integration(conn)
    cases = {
        "nul in text": (["x", "sy\x00nc", "{}"], "client:NUL"),
        "nul escape in json": (["x", "sync", '{"a": "\\u0000"}'], "22P05"),
        "invalid utf-8 surrogate in json": (["x", "sync", '{"a": "\\ud800"}'], "22P02"),
        "array payload": (["x", "sync", "[1, 2]"], "22023"),
        "unknown integration": (["nope", "sync", "{}"], "23503"),
        "bad kind": (["x", "Not A Kind!", "{}"], "23514"),
        "deep nesting": (["x", "sync", deep(10_000, "dict")], "ok"),
        "deeper than the parser allows": (["x", "sync", deep(1_000_000, "list")], "54001"),
        "1 MB payload": (["x", "sync", json.dumps({"blob": "x" * 1_048_576})], "ok"),
    }
    got = {name: run_or_clear_error(conn, "SELECT dispatch.enqueue(%s, %s, %s::jsonb)", params)
           for name, (params, _) in cases.items()}
    assert got == {name: want for name, (_, want) in cases.items()}


def test_enqueue__invalid_utf8_bytes_are_refused_clearly(conn: psycopg.Connection) -> None:
    _ensure_integration(conn)
    for raw in (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80"):
        with pytest.raises(psycopg.DataError) as info, conn.transaction(force_rollback=True):
            conn.execute("SELECT dispatch.enqueue('x', 'sync', convert_from(%s::bytea, 'UTF8')::jsonb)", [raw])
        assert info.value.sqlstate == "22021" and "invalid byte sequence" in str(info.value)


# -------------------------------------------------------------------------------- schedules
CRON_TOKENS = ["*", "*/5", "0", "59", "60", "1-5", "5-1", "1,2,3", "MON", "mon-fri", "JAN", "L", "?", "#", "-1",
               "*/0", "0/15", "", "  ", "@daily", "@hourly", "@reboot", "@yearly"]
crons = st.one_of(
    st.lists(st.sampled_from(CRON_TOKENS), min_size=0, max_size=7).map(" ".join),
    st.text(max_size=40),
    st.sampled_from(["0 2 * * *", "* * * * *", "0 0 30 2 *", "0 0 31 4 *", "59 23 31 12 *"]),
)
zones = st.one_of(st.sampled_from(sorted(zoneinfo.available_timezones())), st.text(max_size=30),
                  st.sampled_from(["utc", "UTC+3", "Europe/Osl0", "EST5EDT", "Mars/Olympus"]))
FIELDS = ("cron", "time zone", "kind", "catch", "window", "max_attempts", "never")


@FUZZ
@given(cron=crons, tz=zones, kind=st.one_of(st.just("sync"), st.text(max_size=20)),
       window=st.one_of(st.just("1 day"), st.sampled_from(["-1 hour", "0", "forever", "1000 years"])))
def test_schedule_insert__valid_or_a_clear_error_naming_the_field(
        conn: psycopg.Connection, cron: str, tz: str, kind: str, window: str) -> None:
    _ensure_integration(conn)
    sql = ("INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone, catch_up_window) "
           "VALUES ('x', %s, %s, %s, %s::interval) RETURNING next_slot")
    try:
        with conn.transaction(force_rollback=True):
            row = conn.execute(sql, [kind, cron, tz, window]).fetchone()
        assert row is not None and row[0] is not None, "a saved schedule has its next slot"
    except psycopg.DataError as exc:
        if exc.sqlstate is None:
            assert "NUL" in str(exc)
            return
        _named(exc)
    except psycopg.DatabaseError as exc:
        _named(exc)


def _named(exc: psycopg.Error) -> None:
    _clear(exc)
    text = " ".join(filter(None, [exc.diag.message_primary, exc.diag.constraint_name, exc.diag.message_detail]))
    assert any(f in text.lower() for f in FIELDS) or exc.sqlstate in ("22007", "22008", "22015"), text


def test_schedule__timestamps_far_out_do_not_break_next_slot(conn: psycopg.Connection) -> None:
    _ensure_integration(conn)
    far = datetime(9999, 12, 31, tzinfo=UTC) - timedelta(minutes=1)
    row = conn.execute("SELECT dispatch.cron_next('* * * * *', 'UTC', %s)", [far]).fetchone()
    assert row is not None
