"""Cron in SQL equals croniter (with the repeated-hour rule applied) on generated cases, both
ways: cron_next against get_next, cron_prev against get_prev.

The oracle is croniter with ``implement_cron_bug=True``: day-of-month and day-of-week are
OR-ed only when neither field starts with ``*`` (Vixie cron, pg_cron). croniter's default
ORs whenever both fields are restricted after expansion, so ``*/2`` there counts as
restricted. A wall time that occurs twice fires once, at its first occurrence: croniter
fires both, and the oracle drops the second.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

ZONES = ["Europe/Oslo", "America/New_York", "UTC", "Australia/Lord_Howe", "Asia/Kolkata",
         "America/Sao_Paulo", "Europe/Dublin", "Pacific/Chatham"]
BATCH = 50
BATCHES = 110                      # 5,500 generated cases per property run
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# field: (low, high of '*', names, highest literal)
FIELDS = [(0, 59, None, 59), (0, 23, None, 23), (1, 31, None, 31), (1, 12, MONTHS, 12), (0, 6, DAYS, 7)]
MACROS = ["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"]
START, END = datetime(2024, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC)


def _transitions(zone: str) -> list[datetime]:
    """The instants where the zone's UTC offset changes between START and END."""
    tz, found, t = ZoneInfo(zone), [], START
    while t < END:
        nxt = t + timedelta(hours=1)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = t, nxt
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if mid.astimezone(tz).utcoffset() == t.astimezone(tz).utcoffset() else (lo, mid)
            found.append(hi.replace(second=0, microsecond=0))
        t = nxt
    return found


TRANSITIONS = {z: _transitions(z) for z in ZONES}


# ---------------------------------------------------------------- generators
@st.composite
def _value(draw: st.DrawFn, idx: int, literal_max: int | None = None) -> tuple[int, str]:
    lo, hi, names, top = FIELDS[idx]
    v = draw(st.integers(lo, literal_max if literal_max is not None else top))
    if names and draw(st.booleans()):
        name = names[v - 1] if idx == 3 else names[v % 7]
        return v, draw(st.sampled_from([name, name.upper(), name.capitalize()]))
    return v, str(v)


@st.composite
def _item(draw: st.DrawFn, idx: int) -> str:
    lo, hi, _names, _top = FIELDS[idx]
    width = hi - lo + 1
    kind = draw(st.sampled_from(["star", "star_step", "value", "range", "range_step", "start_step", "wrap"]))
    if kind == "star":
        return "*"
    if kind == "star_step":
        return f"*/{draw(st.integers(1, width))}"
    if kind == "value":
        return draw(_value(idx))[1]
    if kind == "start_step":  # a/step = a through the maximum
        return f"{draw(_value(idx, hi))[1]}/{draw(st.integers(1, width))}"
    a, a_txt = draw(_value(idx, hi))
    b, b_txt = draw(_value(idx))
    if a == b or (b % 7 == a and idx == 4):  # croniter reads an equal range as the whole field
        return a_txt
    if kind == "wrap" or (kind == "range" and a > b):
        if idx in (0, 2) or b == 7:  # keep wraps to hours, months, weekdays
            return a_txt
        return f"{a_txt}-{b_txt}"
    a, b, a_txt, b_txt = (a, b, a_txt, b_txt) if a < b else (b, a, b_txt, a_txt)
    if kind == "range_step" and b != 7:
        return f"{a_txt}-{b_txt}/{draw(st.integers(1, width))}"
    return f"{a_txt}-{b_txt}"


def _field(idx: int) -> st.SearchStrategy[str]:
    # Items with '*' go first: croniter reads a full day field as '*' when the other day
    # field contains a '*' anywhere ("20,*/3"); Vixie (and we) look at the first character.
    return st.lists(_item(idx), min_size=1, max_size=3).map(
        lambda items: "*" if "*" in items else ",".join(sorted(items, key=lambda i: not i.startswith("*"))))


def _fires(expr: str) -> bool:
    """False for expressions whose day never comes (e.g. 30 Feb): croniter searches 50 years."""
    if expr.startswith("@"):
        return True
    _, _, dom, month, dow = expr.split()
    try:
        expanded = croniter.expand(expr)[0]
    except Exception:
        return False
    doms, months = expanded[2], expanded[3]
    if not (dom.startswith("*") or dow.startswith("*")) or doms == ["*"] or months == ["*"]:
        return True  # OR-ed with weekdays, or every day/month possible
    longest = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
    return any(d <= longest[m] for d in doms for m in months)  # type: ignore[operator,index]


EXPRESSIONS = st.one_of(
    st.sampled_from(MACROS).map(lambda m: m if len(m) % 2 else m.upper()),
    st.tuples(*[_field(i) for i in range(5)]).map(" ".join),
).filter(_fires)


@st.composite
def _instant(draw: st.DrawFn, zone: str) -> datetime:
    seconds = draw(st.sampled_from([0, 0, 0, 1, 30, 59]))
    if TRANSITIONS[zone] and draw(st.booleans()):  # near a DST transition
        t = draw(st.sampled_from(TRANSITIONS[zone]))
        return t + timedelta(minutes=draw(st.integers(-200, 200)), seconds=seconds)
    minutes = draw(st.integers(0, int((END - START).total_seconds() // 60)))
    return START + timedelta(minutes=minutes, seconds=seconds)


@st.composite
def _case(draw: st.DrawFn) -> tuple[str, str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    return draw(EXPRESSIONS), zone, draw(_instant(zone))


# ---------------------------------------------------------------- the oracle
def _second_occurrence(t: datetime, tz: ZoneInfo) -> bool:
    local = t.astimezone(UTC).astimezone(tz)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def oracle_next(expr: str, zone: str, after: datetime) -> datetime:
    tz = ZoneInfo(zone)
    it = croniter(expr, after.astimezone(tz), implement_cron_bug=True)
    while True:
        t: datetime = it.get_next(datetime)
        if not _second_occurrence(t, tz):
            return t.astimezone(UTC)


def oracle_prev(expr: str, zone: str, before: datetime) -> datetime:
    tz = ZoneInfo(zone)
    it = croniter(expr, before.astimezone(tz), implement_cron_bug=True)
    while True:
        t: datetime = it.get_prev(datetime)
        if not _second_occurrence(t, tz):
            return t.astimezone(UTC)


def sql_next(conn: psycopg.Connection, cases: list[tuple[str, str, datetime]], fn: str = "cron_next"
             ) -> list[datetime | None]:
    rows = conn.execute(
        f"SELECT dispatch.{fn}(e, z, t) FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) "
        "WITH ORDINALITY AS u(e, z, t, n) ORDER BY n",
        [[c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases]],
    ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture(scope="module")
def cron_conn(pg_cluster, admin_url: str, template_db: str):  # type: ignore[no-untyped-def]
    from tests.conftest import create_database, drop_database

    name = create_database(admin_url, template_db, prefix="cron")
    with psycopg.connect(pg_cluster.url(name), autocommit=True) as c:
        yield c
    drop_database(admin_url, name)


PROPERTY = settings(max_examples=BATCHES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@PROPERTY
@given(cases=st.lists(_case(), min_size=BATCH, max_size=BATCH))
def test_cron_next__equals_croniter(cron_conn: psycopg.Connection, cases: list[tuple[str, str, datetime]]) -> None:
    got = sql_next(cron_conn, cases)
    for (expr, zone, after), sql in zip(cases, got, strict=True):
        assert sql == oracle_next(expr, zone, after), (expr, zone, after.isoformat())


@PROPERTY
@given(cases=st.lists(_case(), min_size=BATCH, max_size=BATCH))
def test_cron_prev__equals_croniter_get_prev(cron_conn: psycopg.Connection,
                                             cases: list[tuple[str, str, datetime]]) -> None:
    got = sql_next(cron_conn, cases, "cron_prev")
    for (expr, zone, before), sql in zip(cases, got, strict=True):
        assert sql == oracle_prev(expr, zone, before), (expr, zone, before.isoformat())


@settings(PROPERTY, max_examples=30)       # a cross-check of the two functions: fewer cases do
@given(cases=st.lists(_case(), min_size=BATCH, max_size=BATCH))
def test_cron_prev__is_the_slot_cron_next_comes_back_to(cron_conn: psycopg.Connection,
                                                        cases: list[tuple[str, str, datetime]]) -> None:
    """prev < t and no slot between them: the first slot after prev is at or after t."""
    rows = cron_conn.execute(
        "SELECT p, dispatch.cron_next(e, z, p) FROM (SELECT e, z, t, n, dispatch.cron_prev(e, z, t) AS p "
        "FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) WITH ORDINALITY AS u(e, z, t, n)) x ORDER BY n",
        [[c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases]]).fetchall()
    for (expr, zone, before), (prev, after_prev) in zip(cases, rows, strict=True):
        assert prev is not None and prev < before <= after_prev, (expr, zone, before.isoformat())


@PROPERTY
@given(case=_case())
def test_cron_slots__equals_successive_croniter_slots(cron_conn: psycopg.Connection,
                                                      case: tuple[str, str, datetime]) -> None:
    expr, zone, after = case
    expected, t = [], after
    for _ in range(8):
        t = oracle_next(expr, zone, t)
        expected.append(t)
    rows = cron_conn.execute("SELECT dispatch.cron_slots(%s, %s, %s, %s)",
                             [expr, zone, after, expected[-1]]).fetchall()
    assert [r[0] for r in rows] == expected


# ---------------------------------------------------------------- explicit DST edges
def _z(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@pytest.mark.parametrize(("expr", "zone", "after", "expected"), [
    # Oslo, clocks forward 2025-03-30 02:00 -> 03:00: a daily 02:30 runs at 03:00 CEST.
    ("30 2 * * *", "Europe/Oslo", "2025-03-29T23:00:00Z", ["2025-03-30T01:00:00Z", "2025-03-31T00:30:00Z"]),
    # ... an hourly :30 skips the hour that does not exist.
    ("30 * * * *", "Europe/Oslo", "2025-03-30T00:00:00Z", ["2025-03-30T00:30:00Z", "2025-03-30T01:30:00Z"]),
    # ... several missing wall times collapse into one run at the end of the gap.
    ("0,15,45 2 * * *", "Europe/Oslo", "2025-03-29T23:00:00Z", ["2025-03-30T01:00:00Z", "2025-03-31T00:00:00Z"]),
    # Oslo, clocks back 2025-10-26 03:00 -> 02:00: 02:30 runs once, at its first occurrence.
    ("30 2 * * *", "Europe/Oslo", "2025-10-25T23:00:00Z", ["2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z"]),
    ("*/30 * * * *", "Europe/Oslo", "2025-10-26T00:00:00Z", ["2025-10-26T00:30:00Z", "2025-10-26T02:00:00Z"]),
    # New York, forward 2025-03-09 02:00 -> 03:00 and back 2025-11-02 02:00 -> 01:00.
    ("30 2 * * *", "America/New_York", "2025-03-09T05:00:00Z", ["2025-03-09T07:00:00Z", "2025-03-10T06:30:00Z"]),
    ("30 1 * * *", "America/New_York", "2025-11-02T04:00:00Z", ["2025-11-02T05:30:00Z", "2025-11-03T06:30:00Z"]),
    # Lord Howe moves by 30 minutes (2025-10-05 02:00 -> 02:30).
    ("15 2 * * *", "Australia/Lord_Howe", "2025-10-04T14:00:00Z", ["2025-10-04T15:30:00Z", "2025-10-05T15:15:00Z"]),
    # Day-of-month OR day-of-week when both are restricted; AND when one starts with '*'.
    ("0 0 13 * FRI", "UTC", "2026-02-01T00:00:00Z", ["2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z"]),
    ("0 0 */2 * MON", "UTC", "2026-02-01T00:00:00Z", ["2026-02-09T00:00:00Z", "2026-02-23T00:00:00Z"]),
    ("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
])
def test_cron_next__dst_and_day_edges(cron_conn: psycopg.Connection, expr: str, zone: str, after: str,
                                      expected: list[str]) -> None:
    t, got = _z(after), []
    for _ in expected:
        row = cron_conn.execute("SELECT dispatch.cron_next(%s, %s, %s)", [expr, zone, t]).fetchone()
        assert row is not None
        t = row[0]
        got.append(t)
    assert got == [_z(e) for e in expected]
    assert got == [oracle_next(expr, zone, x) for x in [_z(after), *got[:-1]]]


@pytest.mark.parametrize(("expr", "zone", "at", "before", "after"), [
    # The shapes whose search is longest: months skipped, a day decades apart, no day at all.
    ("* * * 1-6 *", "UTC", "2027-01-01T00:00:00Z", "2026-06-30T23:59:00Z", "2027-01-01T00:01:00Z"),
    ("0 12 * nov-feb *", "Europe/Oslo", "2026-11-01T00:00:00Z", "2026-02-28T11:00:00Z", "2026-11-01T11:00:00Z"),
    ("0 9 * * 1-5", "Europe/Oslo", "2026-12-06T12:00:00Z", "2026-12-04T08:00:00Z", "2026-12-07T08:00:00Z"),
    ("0 0 1 1 *", "UTC", "2026-12-31T23:59:00Z", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ("0 0 29 2 *", "UTC", "2028-02-28T00:00:00Z", "2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"),
    ("0 0 29 2 */7", "UTC", "2059-03-01T00:00:00Z", "2032-02-29T00:00:00Z", "2060-02-29T00:00:00Z"),
    ("0 0 30 2 *", "UTC", "2026-06-01T00:00:00Z", None, None),
    # Next to DST transitions (Oslo: forward 2025-03-30 01:00Z, back 2025-10-26 01:00Z).
    ("* * * * *", "Europe/Oslo", "2025-10-26T01:30:00Z", "2025-10-26T00:59:00Z", "2025-10-26T02:00:00Z"),
    ("* 2 * * *", "Europe/Oslo", "2025-03-30T01:00:00Z", "2025-03-29T01:59:00Z", "2025-03-31T00:00:00Z"),
    ("30 2 * * *", "Europe/Oslo", "2025-03-30T01:00:30Z", "2025-03-30T01:00:00Z", "2025-03-31T00:30:00Z"),
    ("30 * * * *", "Europe/Oslo", "2025-03-30T01:30:00Z", "2025-03-30T00:30:00Z", "2025-03-30T02:30:00Z"),
])
def test_cron_prev_next__worst_shapes(cron_conn: psycopg.Connection, expr: str, zone: str, at: str,
                                      before: str | None, after: str | None) -> None:
    """The slot before and after `at` (NULL both ways when the expression has none)."""
    row = cron_conn.execute("SELECT dispatch.cron_prev(%s, %s, %s), dispatch.cron_next(%s, %s, %s)",
                            [expr, zone, _z(at)] * 2).fetchone()
    assert row == (before and _z(before), after and _z(after))
    if before is not None and after is not None:
        assert row == (oracle_prev(expr, zone, _z(at)), oracle_next(expr, zone, _z(at)))


def test_cron_prev__spec_parsed_before_0011_still_answers(cron_conn: psycopg.Connection) -> None:
    """A kept spec without the *_prev lookups (parsed before 0011, restored from an old dump)."""
    row = cron_conn.execute(
        "WITH p AS (SELECT dispatch.cron_parse('15 2,14 * * 1-5') AS s) "
        "SELECT dispatch.cron_prev(ROW((s).minute_next, (s).hour_next, (s).dom_bits, (s).month_bits, (s).dow_bits, "
        "(s).dom_star, (s).dow_star, (s).every_hour, NULL, NULL)::dispatch.cron_spec, 'Europe/Oslo', %s), "
        "dispatch.cron_prev(s, 'Europe/Oslo', %s) FROM p", [_z("2026-12-07T12:00:00Z")] * 2).fetchone()
    assert row == (_z("2026-12-07T01:15:00Z"), _z("2026-12-07T01:15:00Z"))


@pytest.mark.parametrize(("expr", "tz", "message"), [
    ("61 * * * *", "UTC", 'invalid cron expression "61 * * * *": minute field value 61 out of range 0-59'),
    ("0 24 * * *", "UTC", "hour field value 24 out of range 0-23"),
    ("0 0 0 * *", "UTC", "day-of-month field value 0 out of range 1-31"),
    ("0 0 * 13 *", "UTC", "month field value 13 out of range 1-12"),
    ("0 0 * * 8", "UTC", "day-of-week field value 8 out of range 0-7"),
    ("0 0 * FOO *", "UTC", 'month field: unknown value "foo"'),
    ("0 0 * * MON#2", "UTC", 'day-of-week field: cannot parse "mon#2"'),
    ("*/0 * * * *", "UTC", "minute field step 0 out of range 1-60"),
    ("0 0 * *", "UTC", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
    ("@reboot", "UTC", "unknown macro"),
    ("0 0 30 2 *", "UTC", "day-of-month field never occurs in the months of the month field"),
    ("0 0 * * *", "Mars/Base", 'unknown time zone "Mars/Base"'),
    ("0 0 * * *", "UTC+3", 'unknown time zone "UTC+3"'),
])
def test_cron_check__names_the_bad_field(cron_conn: psycopg.Connection, expr: str, tz: str, message: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message.replace("*", r"\*").replace("(", r"\(")
                       .replace(")", r"\)").replace("+", r"\+")):
        cron_conn.execute("SELECT dispatch.cron_check(%s, %s)", [expr, tz])


def test_cron_check__accepts_every_syntax_form(cron_conn: psycopg.Connection) -> None:
    for expr in ["*/15 1-10/2 1,15 JAN-mar,Dec sun-THU", "5/15 22-2 * NOV-FEB FRI-MON", "0 0 * * 7",
                 "@Hourly", "@annually", "  0   0 1 * *  "]:
        cron_conn.execute("SELECT dispatch.cron_check(%s, 'Europe/Oslo')", [expr])
