# ruff: noqa: E501  -- SQL text: comments and messages read better unwrapped than split mid-phrase
"""Cron's worst cases: cron_prev and cron_next cheap for every shape, a tick that one broken
schedule cannot stop, and no schedule that goes quiet without an alert.

- ``cron_prev`` walks back from the instant (``dispatch.cron_wall_prev``, the mirror of
  ``cron_wall_next``) instead of bisecting with ``cron_next``. The bisection made ~30
  ``cron_next`` calls, each walking forward over everything the expression skips: 0.5 ms on
  average for a mix of yearly, monthly and weekday shapes (95 % of a tick's time), 12 ms for
  ``0 0 29 2 */7`` (29 February on a Sunday, 28 years apart), 19 ms for an expression with no
  slot. ``dispatch.cron_spec`` gains the ``minute_prev``/``hour_prev`` lookups ("last allowed
  value <= i") the walk needs; the specs kept with the schedules get them here.
- Both walks pass over a month the expression does not allow on any day in one step (a bit
  mask of the month's allowed days) instead of day by day, and are written out inside
  ``cron_next``/``cron_prev``: a call of a function with a fixed search_path costs ~3 us, as
  much as the search, and the tick makes three cron calls per due schedule. The tick's five
  per-job helpers (``slot_iso``, ``slot_key``, ``period_*``) are inlined by the planner now
  (see INLINED below): another quarter of its time.
- ``dispatch.tick()`` evaluated every due schedule in one statement, so one schedule whose
  zone the server no longer knows (a tzdata update removed it) or whose expression does not
  parse (a row written around the validation trigger) failed the tick for every schedule,
  every minute. Now the tick screens the due schedules first, cheaply (each distinct zone
  once; the expression only where no parsed one is kept), alerts ``schedule_invalid`` for
  those and leaves them where they are; the rest run in one statement (``tick_schedules``)
  inside one subtransaction. Should that statement still fail on one schedule's data, the
  batch is split in halves until the schedule that fails is found, alerted and skipped: one
  subtransaction per tick normally, O(log n) more for each unforeseen bad schedule, never one
  per schedule (each would hold a subtransaction id). A schedule with an open
  ``schedule_invalid`` alert runs alone until it succeeds, which resolves the alert.
- An enabled schedule whose ``next_slot`` is NULL never runs again, and nothing said so: the
  tick set it when the expression had no slot left (none within 50 years, e.g. ``0 0 30 2
  *`` written around the validation). A trigger now raises ``no_future_slot`` whenever that
  happens, saying why; it resolves when the schedule has a next slot again (a cron or time
  zone edit), is disabled or is deleted. Schedules that went quiet before this revision are
  alerted by it.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op
from app.migrations import earlier_function

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SEARCH_PATH = "SET search_path = pg_catalog, dispatch, pg_temp"
WORKER_GRANT = """DO $grant$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dispatch_worker') THEN
        GRANT EXECUTE ON FUNCTION {functions} TO dispatch_worker;
    END IF;
END $grant$;
"""

# ---------------------------------------------------------------- cron_prev by walking back
PREV_LOOKUPS = rf"""
-- "Last allowed value <= i" at [i + 1] (NULL when none): the mirror of the *_next arrays.
ALTER TYPE dispatch.cron_spec ADD ATTRIBUTE minute_prev smallint[], ADD ATTRIBUTE hour_prev smallint[];

-- A *_prev lookup from its *_next array, which holds every allowed value at its own index
-- ([v + 1] = v): the running maximum of those (one pass, ~30 us; parsing costs ~0.25 ms).
CREATE FUNCTION dispatch.cron_prev_lookup(p_next smallint[]) RETURNS smallint[]
LANGUAGE sql IMMUTABLE {SEARCH_PATH} AS $$
    SELECT ARRAY(SELECT max(CASE WHEN n = o - 1 THEN n END) OVER (ORDER BY o)
                   FROM unnest(p_next) WITH ORDINALITY AS u(n, o) ORDER BY o)::smallint[]
$$;

-- The specs kept with the schedules, completed in place (the write trigger would restore the
-- old value, and touching updated_at would claim an edit nobody made).
ALTER TABLE dispatch.schedules DISABLE TRIGGER schedules_before_write, DISABLE TRIGGER schedules_touch;
UPDATE dispatch.schedules
   SET cron_spec.minute_prev = dispatch.cron_prev_lookup((cron_spec).minute_next),
       cron_spec.hour_prev = dispatch.cron_prev_lookup((cron_spec).hour_next)
 WHERE (cron_spec).minute_next IS NOT NULL;      -- (a row "IS NOT NULL" only when every field is)
ALTER TABLE dispatch.schedules ENABLE TRIGGER schedules_before_write, ENABLE TRIGGER schedules_touch;
"""

# The walks are written once, here, and spelled out where they run: inside cron_next and
# cron_prev, and as cron_wall_next/cron_wall_prev. A call of a function with a fixed
# search_path costs as much as the walk itself (~3 us, a GUC save and restore), and the tick
# makes three cron calls per due schedule.

# The days of month m (a date, the 1st) that {spec} allows, as bits 1..31, given fw = the
# 1st's weekday: a month with none is passed over in one step instead of day by day (29
# February on a Sunday is 28 years away). The weekday bits are rotated to start at the 1st's
# and repeated five times (270549121 = bits 0, 7, 14, 21, 28) from bit 1.
_MONTH_DAYS = """CASE WHEN ({spec}.month_bits >> date_part('month', m)::integer) & 1 = 0 THEN 0::bigint
                   ELSE (CASE WHEN {spec}.dom_star OR {spec}.dow_star
                              THEN {spec}.dom_bits & (((((({spec}.dow_bits >> fw) | ({spec}.dow_bits << (7 - fw))) & 127)::bigint * 270549121) << 1))
                              ELSE {spec}.dom_bits | (((((({spec}.dow_bits >> fw) | ({spec}.dow_bits << (7 - fw))) & 127)::bigint * 270549121) << 1)) END)
                        & ((1::bigint << (((m + interval '1 month')::date - m) + 1)) - 2) END"""

# Does {spec} allow day d? (Vixie: day-of-month OR day-of-week unless one field starts with '*'.)
# Parenthesised: PL/pgSQL ends an IF condition at the first THEN outside parentheses.
_DAY_MATCHES = """(({spec}.month_bits >> date_part('month', d)::integer) & 1 = 1
       AND CASE WHEN {spec}.dom_star OR {spec}.dow_star
                THEN ({spec}.dom_bits >> date_part('day', d)::integer) & 1 = 1 AND ({spec}.dow_bits >> date_part('dow', d)::integer) & 1 = 1
                ELSE ({spec}.dom_bits >> date_part('day', d)::integer) & 1 = 1 OR ({spec}.dow_bits >> date_part('dow', d)::integer) & 1 = 1 END)"""

# {dst} := the first matching wall-clock minute strictly after {src} (NULL: none within 50
# years, croniter's horizon too): the rest of {src}'s day by the hour and minute lookups,
# then the first allowed day after it, month by month.
_WALL_NEXT = """<<wall_next>>
    DECLARE
        t timestamp := date_trunc('minute', {src}) + interval '1 minute';
        d date := t::date;
        h integer := date_part('hour', t);
        mi integer := date_part('minute', t);
        v_limit date;
        m date;
        v_from integer;
        fw integer;
        days bigint;
        hh integer; mm integer;
    BEGIN
        {dst} := NULL;
        IF {day_matches} THEN
            hh := {spec}.hour_next[h + 1];
            IF hh = h THEN
                mm := {spec}.minute_next[mi + 1];
                IF mm IS NOT NULL THEN
                    {dst} := d + make_time(h, mm, 0);
                    EXIT wall_next;
                END IF;
                hh := CASE WHEN h < 23 THEN {spec}.hour_next[h + 2] END;
            END IF;
            IF hh IS NOT NULL THEN
                {dst} := d + make_time(hh, {spec}.minute_next[1], 0);
                EXIT wall_next;
            END IF;
        END IF;
        v_limit := (t + interval '50 years')::date;
        m := d - date_part('day', d)::integer + 1;
        v_from := date_part('day', d)::integer + 1;
        WHILE m <= v_limit LOOP
            fw := date_part('dow', m);
            days := ({month_days}) & ~((1::bigint << v_from) - 1);
            IF days <> 0 THEN
                d := m + (63 - length(rtrim(days::bit(64)::text, '0')));      -- the lowest bit set
                IF d <= v_limit THEN
                    {dst} := d + make_time({spec}.hour_next[1], {spec}.minute_next[1], 0);
                END IF;
                EXIT wall_next;
            END IF;
            m := (m + interval '1 month')::date;
            v_from := 1;
        END LOOP;
    END wall_next;"""

# {dst} := the last matching wall-clock minute strictly before {src}: the same, backwards.
_WALL_PREV = """<<wall_prev>>
    DECLARE
        t timestamp := date_trunc('minute', {src} - interval '1 microsecond');
        d date := t::date;
        h integer := date_part('hour', t);
        mi integer := date_part('minute', t);
        v_limit date;
        m date;
        v_upto integer;
        fw integer;
        days bigint;
        hh integer; mm integer;
    BEGIN
        {dst} := NULL;
        IF {day_matches} THEN
            hh := {spec}.hour_prev[h + 1];
            IF hh = h THEN
                mm := {spec}.minute_prev[mi + 1];
                IF mm IS NOT NULL THEN
                    {dst} := d + make_time(h, mm, 0);
                    EXIT wall_prev;
                END IF;
                hh := CASE WHEN h > 0 THEN {spec}.hour_prev[h] END;
            END IF;
            IF hh IS NOT NULL THEN
                {dst} := d + make_time(hh, {spec}.minute_prev[60], 0);
                EXIT wall_prev;
            END IF;
        END IF;
        v_limit := (t - interval '50 years')::date;
        m := d - date_part('day', d)::integer + 1;
        v_upto := date_part('day', d)::integer - 1;
        WHILE (m + interval '1 month')::date > v_limit LOOP
            fw := date_part('dow', m);
            days := ({month_days}) & ((1::bigint << (v_upto + 1)) - 1);
            IF days <> 0 THEN
                d := m + (length(ltrim(days::bit(64)::text, '0')) - 2);         -- the highest bit set
                IF d >= v_limit THEN
                    {dst} := d + make_time({spec}.hour_prev[24], {spec}.minute_prev[60], 0);
                END IF;
                EXIT wall_prev;
            END IF;
            m := (m - interval '1 month')::date;
            v_upto := 31;
        END LOOP;
    END wall_prev;"""

# {dst} := the instant of wall {src}: its one instant when no DST transition is within three
# hours (cron_wall_to_instant's common case), else what cron_wall_to_instant says.
_TO_INSTANT = """{dst} := {src} AT TIME ZONE p_tz;
        IF (({dst} - interval '3 hours') AT TIME ZONE p_tz) - (({dst} - interval '3 hours') AT TIME ZONE 'UTC')
           <> (({dst} + interval '3 hours') AT TIME ZONE p_tz) - (({dst} + interval '3 hours') AT TIME ZONE 'UTC') THEN
            {dst} := dispatch.cron_wall_to_instant({src}, p_tz, {spec}.every_hour);
        END IF;"""


def _walk(template: str, src: str, dst: str, spec: str) -> str:
    return template.format(src=src, dst=dst, spec=spec, day_matches=_DAY_MATCHES.format(spec=spec),
                           month_days=_MONTH_DAYS.format(spec=spec))


WALKS = rf"""
CREATE OR REPLACE FUNCTION dispatch.cron_wall_next(p_spec dispatch.cron_spec, p_after timestamp) RETURNS timestamp
LANGUAGE plpgsql IMMUTABLE {SEARCH_PATH} AS $$
DECLARE
    w timestamp;
BEGIN
    {_walk(_WALL_NEXT, "p_after", "w", "p_spec")}
    RETURN w;
END $$;

CREATE FUNCTION dispatch.cron_wall_prev(p_spec dispatch.cron_spec, p_before timestamp) RETURNS timestamp
LANGUAGE plpgsql IMMUTABLE {SEARCH_PATH} AS $$
DECLARE
    w timestamp;
BEGIN
    {_walk(_WALL_PREV, "p_before", "w", "p_spec")}
    RETURN w;
END $$;
COMMENT ON FUNCTION dispatch.cron_wall_prev(dispatch.cron_spec, timestamp) IS 'the last wall-clock minute the expression allows strictly before p_before (NULL: none within 50 years)';

CREATE OR REPLACE FUNCTION dispatch.cron_next(p_spec dispatch.cron_spec, p_tz text, p_after timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE {SEARCH_PATH} AS $$
DECLARE
    w timestamp := p_after AT TIME ZONE p_tz;
    r timestamptz;
BEGIN
    -- Walls <= the local time of p_after map to instants <= p_after, so start there. In a
    -- repeated hour, walls just after it can still map to earlier first occurrences: skip.
    FOR i IN 1..2000 LOOP
    {_walk(_WALL_NEXT, "w", "w", "p_spec")}
        IF w IS NULL THEN
            RETURN NULL;
        END IF;
        {_TO_INSTANT.format(src="w", dst="r", spec="p_spec")}
        IF r > p_after THEN
            RETURN r;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- The slots are cron_next's: wall times mapped by cron_wall_to_instant (first occurrence; the
-- end of a gap, or nothing when every hour is named), a mapping that never goes backwards.
-- So the last slot before p_before is the first wall, walking back, whose instant is before
-- it. The walk starts at p_before read at the larger of the offsets around it: in a repeated
-- hour, walls after the present reading still map to earlier first occurrences. Away from a
-- transition the first wall is the answer; next to one, at most an hour of walls is passed.
CREATE OR REPLACE FUNCTION dispatch.cron_prev(p_spec dispatch.cron_spec, p_tz text, p_before timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE {SEARCH_PATH} AS $$
DECLARE
    v_spec dispatch.cron_spec := p_spec;
    u timestamp := p_before AT TIME ZONE 'UTC';
    w timestamp := greatest(p_before AT TIME ZONE p_tz,
                            u + (((p_before - interval '3 hours') AT TIME ZONE p_tz) - (u - interval '3 hours')));
    r timestamptz;
BEGIN
    IF v_spec.minute_prev IS NULL OR v_spec.hour_prev IS NULL THEN     -- a spec made before 0012
        v_spec.minute_prev := dispatch.cron_prev_lookup(v_spec.minute_next);
        v_spec.hour_prev := dispatch.cron_prev_lookup(v_spec.hour_next);
    END IF;
    FOR i IN 1..2000 LOOP
    {_walk(_WALL_PREV, "w", "w", "v_spec")}
        IF w IS NULL THEN
            RETURN NULL;
        END IF;
        {_TO_INSTANT.format(src="w", dst="r", spec="v_spec")}
        IF r < p_before THEN
            RETURN r;
        END IF;
        -- The walls from the reading just before r up to w all map to r or later (a DST gap
        -- maps an hour of them to its end): step over them at once.
        w := least(w, (r - interval '1 microsecond') AT TIME ZONE p_tz);
    END LOOP;
    RETURN NULL;
END $$;
"""

_PARSE_NEXT = "    r.hour_next := ARRAY(SELECT (SELECT min(v) FROM unnest(hours) v WHERE v >= i) FROM generate_series(0, 23) i ORDER BY i);\n"
_PARSE_PREV = ("    r.minute_prev := dispatch.cron_prev_lookup(r.minute_next);\n"
               "    r.hour_prev := dispatch.cron_prev_lookup(r.hour_next);\n")


def cron_parse() -> str:
    """0003's cron_parse, filling the *_prev lookups too."""
    parse = earlier_function("0003_time.py", "cron_parse", "p_expr text")
    assert _PARSE_NEXT in parse, "cron_parse is not the text this revision expects"
    return parse.replace(_PARSE_NEXT, _PARSE_NEXT + _PARSE_PREV)


# ---------------------------------------------------------------- helpers the planner can inline
# The tick calls these five per job or per slot (~6,000 calls for 1,000 due schedules). A SQL
# function with a SET clause is never inlined: each call ran the SQL-function executor and a
# GUC save and restore, a quarter of the tick's time. Without the clause they are inlined
# into their callers' plans, and every name in them is written with its schema (operators
# too, and no `CASE x WHEN`, which hides an `=`), so no search_path can redirect one: the same
# guarantee as 0006's fixed search_path (CREATE OR REPLACE drops the SET clause 0006 gave
# them). slot_iso and slot_key are STABLE, as to_char is: an IMMUTABLE one is not inlined.
INLINED = r"""
CREATE OR REPLACE FUNCTION dispatch.slot_iso(p_slot timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.to_char(pg_catalog.timezone('UTC', p_slot), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

CREATE OR REPLACE FUNCTION dispatch.slot_key(p_integration_id text, p_kind text, p_slot timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT p_integration_id OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) p_kind
           OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) dispatch.slot_iso(p_slot)
$$;

CREATE OR REPLACE FUNCTION dispatch.period_end_for(p_period text, p_tz text, p_slot timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_period OPERATOR(pg_catalog.=) 'slot' THEN p_slot
                ELSE pg_catalog.timezone(p_tz, pg_catalog.date_trunc(p_period, pg_catalog.timezone(p_tz, p_slot))) END
$$;

CREATE OR REPLACE FUNCTION dispatch.period_natural_start(p_period text, p_tz text, p_slot timestamptz, p_prev_slot timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_period OPERATOR(pg_catalog.=) 'slot' THEN p_prev_slot
                ELSE pg_catalog.timezone(p_tz, pg_catalog.date_trunc(p_period, pg_catalog.timezone(p_tz, p_slot))
                                               OPERATOR(pg_catalog.-) ('1 ' OPERATOR(pg_catalog.||) p_period)::pg_catalog.interval) END
$$;

CREATE OR REPLACE FUNCTION dispatch.period_label(p_period text, p_tz text, p_end timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_period OPERATOR(pg_catalog.=) 'day'
                THEN pg_catalog.to_char(pg_catalog.timezone(p_tz, p_end) OPERATOR(pg_catalog.-) '1 day'::pg_catalog.interval, 'YYYY-MM-DD')
                WHEN p_period OPERATOR(pg_catalog.=) 'week'
                THEN pg_catalog.to_char(pg_catalog.timezone(p_tz, p_end) OPERATOR(pg_catalog.-) '1 day'::pg_catalog.interval, 'IYYY-"W"IW')
                WHEN p_period OPERATOR(pg_catalog.=) 'month'
                THEN pg_catalog.to_char(pg_catalog.timezone(p_tz, p_end) OPERATOR(pg_catalog.-) '1 day'::pg_catalog.interval, 'YYYY-MM')
                ELSE dispatch.slot_iso(p_end) END
$$;
"""

# Where each helper was defined: downgrade restores that text, with 0006's search_path.
_INLINED_FROM = (("0003_time.py", "slot_iso", "p_slot timestamptz", "timestamptz"),
                 ("0003_time.py", "slot_key", "p_integration_id text", "text, text, timestamptz"),
                 ("0005_exactly_once.py", "period_end_for", "p_period text, p_tz text, p_slot", "text, text, timestamptz"),
                 ("0005_exactly_once.py", "period_natural_start", "p_period text", "text, text, timestamptz, timestamptz"),
                 ("0005_exactly_once.py", "period_label", "p_period text", "text, text, timestamptz"))


# ---------------------------------------------------------------- a tick one schedule cannot stop
CHECKS = rf"""
-- NULL when this server can use the zone, else why not. A zone that a tzdata update removed
-- passed the validation when it was saved; only trying it tells (pg_timezone_names reads
-- every zone file: ~20 ms). No write happens inside, so the block takes no transaction id.
CREATE FUNCTION dispatch.time_zone_problem(p_tz text) RETURNS text
LANGUAGE plpgsql STABLE {SEARCH_PATH} AS $$
BEGIN
    PERFORM pg_catalog.now() AT TIME ZONE p_tz;
    RETURN NULL;
EXCEPTION WHEN data_exception THEN
    RETURN SQLERRM;
END $$;
COMMENT ON FUNCTION dispatch.time_zone_problem(text) IS 'NULL when this server knows the time zone, else the error using it raises';

-- NULL when the expression parses, else the parser's message.
CREATE FUNCTION dispatch.cron_problem(p_expr text) RETURNS text
LANGUAGE plpgsql STABLE {SEARCH_PATH} AS $$
BEGIN
    PERFORM dispatch.cron_parse(p_expr);
    RETURN NULL;
EXCEPTION WHEN data_exception THEN
    RETURN SQLERRM;
END $$;
COMMENT ON FUNCTION dispatch.cron_problem(text) IS 'NULL when the cron expression parses, else why not';

CREATE FUNCTION dispatch.raise_schedule_invalid(p_schedule_id bigint, p_problem text, p_sqlstate text, p_acting_for timestamptz)
RETURNS bigint LANGUAGE sql {SEARCH_PATH} AS $$
    SELECT dispatch.raise_alert(
               'schedule_invalid', 'schedule:' || s.id,
               format('schedule %s (%s %s) was not run: %s. Its slots wait from %s until it is fixed: correct its cron or '
                      'timezone (or what the error names), or disable it; the alert resolves at the first tick that runs it',
                      s.id, s.integration_id, s.kind, p_problem, dispatch.slot_iso(s.next_slot)),
               jsonb_strip_nulls(jsonb_build_object('error', p_problem, 'sqlstate', p_sqlstate, 'cron', s.cron,
                                                    'timezone', s.timezone, 'next_slot', dispatch.slot_iso(s.next_slot),
                                                    'acting_for', p_acting_for)),
               s.integration_id, NULL, s.id)
    FROM dispatch.schedules s WHERE s.id = p_schedule_id
$$;
COMMENT ON FUNCTION dispatch.raise_schedule_invalid(bigint, text, text, timestamptz) IS 'open (or refresh) the schedule_invalid alert of a schedule the tick could not run';

CREATE FUNCTION dispatch.raise_no_future_slot(p_schedule_id bigint, p_after timestamptz) RETURNS bigint
LANGUAGE plpgsql {SEARCH_PATH} AS $$
DECLARE
    s dispatch.schedules;
    v_problem text;
    v_next timestamptz;
BEGIN
    SELECT * INTO s FROM dispatch.schedules WHERE id = p_schedule_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- Why there is no next slot: none left (the usual case), the zone or expression is broken,
    -- or next_slot was emptied by hand.
    v_problem := coalesce(dispatch.time_zone_problem(s.timezone),
                          CASE WHEN s.cron_spec IS NULL THEN dispatch.cron_problem(s.cron) END);
    IF v_problem IS NULL THEN
        v_next := dispatch.cron_next(coalesce(s.cron_spec, dispatch.cron_parse(s.cron)), s.timezone, coalesce(p_after, now()));
    END IF;
    RETURN dispatch.raise_alert(
        'no_future_slot', 'schedule:' || s.id,
        CASE WHEN v_problem IS NOT NULL
             THEN format('schedule %s (%s %s) will not run again: it has no next slot, and %s; correct its cron or timezone, or disable it',
                         s.id, s.integration_id, s.kind, v_problem)
             WHEN v_next IS NULL
             THEN format('schedule %s (%s %s) will not run again: cron "%s" in %s has no slot within 50 years after %s; '
                         'change its cron or time zone, or disable it', s.id, s.integration_id, s.kind, s.cron, s.timezone,
                         dispatch.slot_iso(coalesce(p_after, now())))
             ELSE format('schedule %s (%s %s) will not run again: its next_slot is empty, though cron "%s" in %s fires next at %s; '
                         'set next_slot (UPDATE dispatch.schedules SET next_slot = dispatch.cron_next(cron, timezone, now()) WHERE id = %s) '
                         'or disable it', s.id, s.integration_id, s.kind, s.cron, s.timezone, dispatch.slot_iso(v_next), s.id) END,
        jsonb_strip_nulls(jsonb_build_object('cron', s.cron, 'timezone', s.timezone, 'after', dispatch.slot_iso(p_after),
                                             'fires_next_at', dispatch.slot_iso(v_next), 'error', v_problem)),
        s.integration_id, NULL, s.id);
END $$;
COMMENT ON FUNCTION dispatch.raise_no_future_slot(bigint, timestamptz) IS 'open (or refresh) the no_future_slot alert of an enabled schedule with no next slot, saying why';
"""

# The statement 0005's tick ran over every due schedule, now over the ids it is given.
_DUE = ("""        -- SKIP LOCKED: a concurrent tick handles the other schedules instead of waiting;
        -- the ledger's primary key is what makes a second job for a period impossible.
        SELECT s.id, s.integration_id, s.kind, coalesce(s.cron_spec, dispatch.cron_parse(s.cron)) AS spec,""",
        """        -- dispatch.tick() locked them (SKIP LOCKED) and screened them.
        SELECT s.id, s.integration_id, s.kind, coalesce(s.cron_spec, dispatch.cron_parse(s.cron)) AS spec,""")
_WHERE = ("        WHERE s.enabled AND s.next_slot <= v_until\n        FOR UPDATE SKIP LOCKED\n",
          "        WHERE s.id = ANY (p_ids) AND s.enabled AND s.next_slot <= v_until\n        FOR UPDATE\n")
_COUNTS = ("      INTO v_inserted, v_skipped, v_adjusted;", "      INTO n_inserted, n_skipped, n_adjusted;")


def tick_statement() -> str:
    """0005's tick statement over the given schedule ids."""
    tick = earlier_function("0005_exactly_once.py", "tick", "now timestamptz DEFAULT now()) RETURNS integer")
    statement = tick[tick.index("    WITH due AS (\n"):tick.index("      INTO v_inserted, v_skipped, v_adjusted;") +
                     len("      INTO v_inserted, v_skipped, v_adjusted;")]
    for old, new in (_DUE, _WHERE, _COUNTS):
        assert statement.count(old) == 1, f"the tick is not the text this revision expects: {old!r}"
        statement = statement.replace(old, new)
    return statement


def tick_functions() -> str:
    return rf"""
-- One statement for any number of due schedules (0005's tick, over p_ids), advancing next_slot.
CREATE FUNCTION dispatch.tick_schedules(p_ids bigint[], p_now timestamptz, p_until timestamptz, p_grace interval, p_cap integer,
                                        OUT n_inserted integer, OUT n_skipped integer, OUT n_adjusted integer)
LANGUAGE plpgsql SET jit = off {SEARCH_PATH} AS $$
DECLARE
    v_now timestamptz := p_now;
    v_until timestamptz := p_until;
    v_grace interval := p_grace;
    v_cap integer := p_cap;
BEGIN
{tick_statement()}
END $$;
COMMENT ON FUNCTION dispatch.tick_schedules(bigint[], timestamptz, timestamptz, interval, integer) IS
    'the tick''s statement over the given (locked, due) schedules: jobs, catch-up, alerts, next_slot';

-- tick_schedules in a subtransaction. When one schedule's data makes it fail (a data or
-- integrity error), the ids are split in halves and each half retried, down to the schedule
-- that fails: it is alerted and skipped, every other one runs. Errors that are no schedule's
-- fault (out of memory, a cancel, a deadlock) fail the tick as before.
CREATE FUNCTION dispatch.tick_isolated(p_ids bigint[], p_now timestamptz, p_until timestamptz, p_grace interval, p_cap integer,
                                       OUT n_inserted integer, OUT n_skipped integer, OUT n_failed integer)
LANGUAGE plpgsql SET jit = off {SEARCH_PATH} AS $$
DECLARE
    n integer := coalesce(cardinality(p_ids), 0);
    a record;
    b record;
    v_message text;
    v_state text;
BEGIN
    n_inserted := 0; n_skipped := 0; n_failed := 0;
    IF n = 0 THEN
        RETURN;
    END IF;
    BEGIN
        SELECT t.n_inserted, t.n_skipped INTO n_inserted, n_skipped
          FROM dispatch.tick_schedules(p_ids, p_now, p_until, p_grace, p_cap) t;
        IF n = 1 THEN
            PERFORM dispatch.resolve_alert('schedule_invalid', 'schedule:' || p_ids[1]);
        END IF;
        RETURN;
    EXCEPTION WHEN data_exception OR integrity_constraint_violation OR raise_exception THEN
        GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
    END;
    IF n = 1 THEN
        PERFORM dispatch.raise_schedule_invalid(p_ids[1], v_message, v_state, p_now);
        n_failed := 1;
        RETURN;
    END IF;
    a := dispatch.tick_isolated(p_ids[1:n / 2], p_now, p_until, p_grace, p_cap);
    b := dispatch.tick_isolated(p_ids[n / 2 + 1:n], p_now, p_until, p_grace, p_cap);
    n_inserted := a.n_inserted + b.n_inserted;
    n_skipped := a.n_skipped + b.n_skipped;
    n_failed := a.n_failed + b.n_failed;
END $$;
COMMENT ON FUNCTION dispatch.tick_isolated(bigint[], timestamptz, timestamptz, interval, integer) IS
    'tick_schedules where one schedule''s failure is alerted (schedule_invalid) and skipped, never the others''';

CREATE OR REPLACE FUNCTION dispatch.tick(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql SET jit = off {SEARCH_PATH} AS $$
DECLARE
    v_t0 timestamptz := clock_timestamp();
    v_now timestamptz := tick.now;
    v_until timestamptz := v_now + make_interval(secs => dispatch.setting('tick_lookahead_seconds', '120')::double precision);
    v_grace interval := make_interval(secs => dispatch.setting('catch_up_grace_seconds', '120')::double precision);
    v_cap integer := dispatch.setting('tick_max_slots_per_schedule', '100')::integer;
    v_caller text := dispatch.tick_caller();
    v_due bigint[];
    v_retry bigint[];
    v_id bigint;
    v_inserted integer := 0;
    v_skipped integer := 0;
    v_failed bigint;
    r record;
BEGIN
    -- SKIP LOCKED: a concurrent tick handles the other schedules instead of waiting; the
    -- ledger's primary key is what makes a second job for a period impossible.
    SELECT array_agg(d.id ORDER BY d.id) INTO v_due
      FROM (SELECT s.id FROM dispatch.schedules s WHERE s.enabled AND s.next_slot <= v_until
            FOR UPDATE SKIP LOCKED) d;
    IF v_due IS NOT NULL THEN
        -- What breaks one schedule's evaluation, checked cheaply: each distinct zone once, the
        -- expression only where no parsed one is kept. Those are alerted and stay where they are.
        WITH zones AS MATERIALIZED (
            SELECT z.timezone, dispatch.time_zone_problem(z.timezone) AS problem
              FROM (SELECT DISTINCT s.timezone FROM dispatch.schedules s WHERE s.id = ANY (v_due)) z
        ), screened AS (
            SELECT s.id, coalesce(z.problem, CASE WHEN s.cron_spec IS NULL THEN dispatch.cron_problem(s.cron) END) AS problem
              FROM dispatch.schedules s JOIN zones z ON z.timezone = s.timezone
             WHERE s.id = ANY (v_due)
        ), failed AS (
            SELECT dispatch.raise_schedule_invalid(c.id, c.problem, NULL, v_now) FROM screened c WHERE c.problem IS NOT NULL
        )
        SELECT array_agg(c.id ORDER BY c.id) FILTER (WHERE c.problem IS NULL), (SELECT count(*) FROM failed)
          INTO v_due, v_failed FROM screened c;
        -- A schedule that failed before runs alone until it succeeds (which resolves its alert),
        -- so it cannot send the batch into halves every minute.
        SELECT array_agg(a.schedule_id ORDER BY a.schedule_id) INTO v_retry
          FROM dispatch.alerts a
         WHERE a.kind = 'schedule_invalid' AND a.resolved_at IS NULL AND a.schedule_id = ANY (v_due);
        IF v_retry IS NOT NULL THEN
            v_due := ARRAY(SELECT x FROM unnest(v_due) x WHERE x <> ALL (v_retry) ORDER BY x);
        END IF;
        r := dispatch.tick_isolated(v_due, v_now, v_until, v_grace, v_cap);
        v_inserted := r.n_inserted; v_skipped := r.n_skipped;
        FOREACH v_id IN ARRAY coalesce(v_retry, '{{}}') LOOP
            r := dispatch.tick_isolated(ARRAY[v_id], v_now, v_until, v_grace, v_cap);
            v_inserted := v_inserted + r.n_inserted; v_skipped := v_skipped + r.n_skipped;
        END LOOP;
    END IF;

    INSERT INTO dispatch.tick_runs (acting_for, started_at, duration_ms, inserted, skipped, caller, lateness_ms)
    VALUES (v_now, v_t0, 1000 * extract(epoch FROM clock_timestamp() - v_t0), v_inserted, v_skipped, v_caller,
            -- pg_cron fires at the minute; the transaction start says how late it was.
            CASE WHEN v_caller = 'pg_cron'
                 THEN 1000 * extract(epoch FROM pg_catalog.now() - date_trunc('minute', pg_catalog.now())) END);
    RETURN v_inserted;
END $$;
COMMENT ON FUNCTION dispatch.tick IS 'insert one job per due period (lookahead, catch-up policy, contiguous periods, ledger dedup), advance next_slot; a schedule that cannot be run is alerted and skipped alone; returns jobs inserted';
"""


ALERTS = rf"""
-- An enabled schedule with no next slot never runs again, whatever emptied it (the tick when
-- the expression has no slot left, or a hand): say so. What was said stops holding when it
-- has a next slot again, is paused or is gone.
CREATE FUNCTION dispatch.schedules_alerts() RETURNS trigger
LANGUAGE plpgsql {SEARCH_PATH} AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.enabled AND NEW.next_slot IS NULL THEN
        PERFORM dispatch.raise_no_future_slot(NEW.id, greatest(OLD.next_slot, NEW.last_slot));
        RETURN NULL;
    END IF;
    PERFORM dispatch.resolve_alert('no_future_slot', 'schedule:' || OLD.id);
    IF TG_OP = 'DELETE' OR NOT NEW.enabled THEN
        PERFORM dispatch.resolve_alert('schedule_invalid', 'schedule:' || OLD.id);
    END IF;
    RETURN NULL;
END $$;
-- The WHEN keeps the tick's own updates (next_slot from one slot to the next) away from it.
CREATE TRIGGER schedules_alerts AFTER UPDATE ON dispatch.schedules
    FOR EACH ROW WHEN ((NEW.enabled AND NEW.next_slot IS NULL) IS DISTINCT FROM (OLD.enabled AND OLD.next_slot IS NULL)
                       OR (OLD.enabled AND NOT NEW.enabled))
    EXECUTE FUNCTION dispatch.schedules_alerts();
CREATE TRIGGER schedules_alerts_on_delete AFTER DELETE ON dispatch.schedules
    FOR EACH ROW EXECUTE FUNCTION dispatch.schedules_alerts();

-- Schedules that went quiet before this revision.
SELECT dispatch.raise_no_future_slot(s.id, coalesce(s.last_slot, s.updated_at))
  FROM dispatch.schedules s WHERE s.enabled AND s.next_slot IS NULL;
"""

NEW_FUNCTIONS = ("dispatch.cron_prev_lookup(smallint[])", "dispatch.cron_wall_prev(dispatch.cron_spec, timestamp)",
                 "dispatch.time_zone_problem(text)", "dispatch.cron_problem(text)",
                 "dispatch.raise_schedule_invalid(bigint, text, text, timestamptz)",
                 "dispatch.raise_no_future_slot(bigint, timestamptz)",
                 "dispatch.tick_schedules(bigint[], timestamptz, timestamptz, interval, integer)",
                 "dispatch.tick_isolated(bigint[], timestamptz, timestamptz, interval, integer)",
                 "dispatch.schedules_alerts()")


def upgrade() -> None:
    op.execute(PREV_LOOKUPS)
    op.execute(WALKS)
    op.execute(cron_parse())
    # CREATE OR REPLACE takes the SET clauses of its text: keep 0006's fixed search_path.
    op.execute(f"ALTER FUNCTION dispatch.cron_parse(text) {SEARCH_PATH}")
    op.execute(INLINED)
    op.execute(CHECKS)
    op.execute(tick_functions())
    op.execute(ALERTS)
    op.execute(WORKER_GRANT.format(functions=", ".join(NEW_FUNCTIONS)))


def downgrade() -> None:
    op.execute("DROP TRIGGER schedules_alerts_on_delete ON dispatch.schedules; "
               "DROP TRIGGER schedules_alerts ON dispatch.schedules; DROP FUNCTION dispatch.schedules_alerts();")
    op.execute(earlier_function("0005_exactly_once.py", "tick", "now timestamptz DEFAULT now()) RETURNS integer"))
    op.execute(f"ALTER FUNCTION dispatch.tick(timestamptz) {SEARCH_PATH}")
    op.execute("COMMENT ON FUNCTION dispatch.tick IS 'insert one job per due period (lookahead, catch-up policy, "
               "contiguous periods, ledger dedup), advance next_slot; returns jobs inserted'")
    op.execute("""
DROP FUNCTION dispatch.tick_isolated(bigint[], timestamptz, timestamptz, interval, integer);
DROP FUNCTION dispatch.tick_schedules(bigint[], timestamptz, timestamptz, interval, integer);
DROP FUNCTION dispatch.raise_no_future_slot(bigint, timestamptz);
DROP FUNCTION dispatch.raise_schedule_invalid(bigint, text, text, timestamptz);
DROP FUNCTION dispatch.cron_problem(text);
DROP FUNCTION dispatch.time_zone_problem(text);
""")
    for revision_file, name, args, types in _INLINED_FROM:
        op.execute(earlier_function(revision_file, name, args))
        op.execute(f"ALTER FUNCTION dispatch.{name}({types}) {SEARCH_PATH}")
    op.execute(earlier_function("0008_scale.py", "cron_prev", "p_spec dispatch.cron_spec, p_tz text, p_before"))
    op.execute(earlier_function("0003_time.py", "cron_next", "p_spec dispatch.cron_spec, p_tz text, p_after"))
    op.execute(f"ALTER FUNCTION dispatch.cron_next(dispatch.cron_spec, text, timestamptz) {SEARCH_PATH}")
    op.execute("DROP FUNCTION dispatch.cron_wall_prev(dispatch.cron_spec, timestamp)")
    op.execute(earlier_function("0003_time.py", "cron_wall_next", "p_spec dispatch.cron_spec, p_after timestamp"))
    op.execute(f"ALTER FUNCTION dispatch.cron_wall_next(dispatch.cron_spec, timestamp) {SEARCH_PATH}")
    op.execute(earlier_function("0003_time.py", "cron_parse", "p_expr text"))
    op.execute(f"ALTER FUNCTION dispatch.cron_parse(text) {SEARCH_PATH}")
    op.execute("DROP FUNCTION dispatch.cron_prev_lookup(smallint[]); "
               "ALTER TYPE dispatch.cron_spec DROP ATTRIBUTE hour_prev, DROP ATTRIBUTE minute_prev;")
