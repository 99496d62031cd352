-- integration-dispatch, Alembic revision 0012: Cron's worst cases: cron_prev and cron_next cheap for every shape, a tick that one broken
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0012_cron_worst_cases.py
-- (sha256 eae63468f5cfbeb1). Do not edit: change the Alembic migration, re-render.
-- The Supabase case of its branches: Supabase Vault installed, pg_cron in this database (postgres).

-- One tool per database: refuse a database that Alembic (`integration-dispatch db upgrade`) migrates.
DO $guard$
DECLARE
    t text;
    v text;
BEGIN
    FOREACH t IN ARRAY ARRAY['dispatch.alembic_version', 'public.alembic_version'] LOOP
        CONTINUE WHEN to_regclass(t) IS NULL OR to_regnamespace('dispatch') IS NULL;
        EXECUTE format('SELECT max(version_num) FROM %s', t) INTO v;
        IF v ~ '^[0-9]{4}$' THEN
            RAISE EXCEPTION 'integration-dispatch: this database is migrated by Alembic (% is at %); do not also apply supabase/migrations', t, v
                USING HINT = 'use one tool per database: `integration-dispatch db upgrade` here, or supabase db push on a database Alembic never migrated';
        END IF;
    END LOOP;
END $guard$;

-- "Last allowed value <= i" at [i + 1] (NULL when none): the mirror of the *_next arrays.
ALTER TYPE dispatch.cron_spec ADD ATTRIBUTE minute_prev smallint[], ADD ATTRIBUTE hour_prev smallint[];

-- A *_prev lookup from its *_next array, which holds every allowed value at its own index
-- ([v + 1] = v): the running maximum of those (one pass, ~30 us; parsing costs ~0.25 ms).
CREATE FUNCTION dispatch.cron_prev_lookup(p_next smallint[]) RETURNS smallint[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
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

CREATE OR REPLACE FUNCTION dispatch.cron_wall_next(p_spec dispatch.cron_spec, p_after timestamp) RETURNS timestamp
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
DECLARE
    w timestamp;
BEGIN
    <<wall_next>>
    DECLARE
        t timestamp := date_trunc('minute', p_after) + interval '1 minute';
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
        w := NULL;
        IF ((p_spec.month_bits >> date_part('month', d)::integer) & 1 = 1
       AND CASE WHEN p_spec.dom_star OR p_spec.dow_star
                THEN (p_spec.dom_bits >> date_part('day', d)::integer) & 1 = 1 AND (p_spec.dow_bits >> date_part('dow', d)::integer) & 1 = 1
                ELSE (p_spec.dom_bits >> date_part('day', d)::integer) & 1 = 1 OR (p_spec.dow_bits >> date_part('dow', d)::integer) & 1 = 1 END) THEN
            hh := p_spec.hour_next[h + 1];
            IF hh = h THEN
                mm := p_spec.minute_next[mi + 1];
                IF mm IS NOT NULL THEN
                    w := d + make_time(h, mm, 0);
                    EXIT wall_next;
                END IF;
                hh := CASE WHEN h < 23 THEN p_spec.hour_next[h + 2] END;
            END IF;
            IF hh IS NOT NULL THEN
                w := d + make_time(hh, p_spec.minute_next[1], 0);
                EXIT wall_next;
            END IF;
        END IF;
        v_limit := (t + interval '50 years')::date;
        m := d - date_part('day', d)::integer + 1;
        v_from := date_part('day', d)::integer + 1;
        WHILE m <= v_limit LOOP
            fw := date_part('dow', m);
            days := (CASE WHEN (p_spec.month_bits >> date_part('month', m)::integer) & 1 = 0 THEN 0::bigint
                   ELSE (CASE WHEN p_spec.dom_star OR p_spec.dow_star
                              THEN p_spec.dom_bits & ((((((p_spec.dow_bits >> fw) | (p_spec.dow_bits << (7 - fw))) & 127)::bigint * 270549121) << 1))
                              ELSE p_spec.dom_bits | ((((((p_spec.dow_bits >> fw) | (p_spec.dow_bits << (7 - fw))) & 127)::bigint * 270549121) << 1)) END)
                        & ((1::bigint << (((m + interval '1 month')::date - m) + 1)) - 2) END) & ~((1::bigint << v_from) - 1);
            IF days <> 0 THEN
                d := m + (63 - length(rtrim(days::bit(64)::text, '0')));      -- the lowest bit set
                IF d <= v_limit THEN
                    w := d + make_time(p_spec.hour_next[1], p_spec.minute_next[1], 0);
                END IF;
                EXIT wall_next;
            END IF;
            m := (m + interval '1 month')::date;
            v_from := 1;
        END LOOP;
    END wall_next;
    RETURN w;
END $$;

CREATE FUNCTION dispatch.cron_wall_prev(p_spec dispatch.cron_spec, p_before timestamp) RETURNS timestamp
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
DECLARE
    w timestamp;
BEGIN
    <<wall_prev>>
    DECLARE
        t timestamp := date_trunc('minute', p_before - interval '1 microsecond');
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
        w := NULL;
        IF ((p_spec.month_bits >> date_part('month', d)::integer) & 1 = 1
       AND CASE WHEN p_spec.dom_star OR p_spec.dow_star
                THEN (p_spec.dom_bits >> date_part('day', d)::integer) & 1 = 1 AND (p_spec.dow_bits >> date_part('dow', d)::integer) & 1 = 1
                ELSE (p_spec.dom_bits >> date_part('day', d)::integer) & 1 = 1 OR (p_spec.dow_bits >> date_part('dow', d)::integer) & 1 = 1 END) THEN
            hh := p_spec.hour_prev[h + 1];
            IF hh = h THEN
                mm := p_spec.minute_prev[mi + 1];
                IF mm IS NOT NULL THEN
                    w := d + make_time(h, mm, 0);
                    EXIT wall_prev;
                END IF;
                hh := CASE WHEN h > 0 THEN p_spec.hour_prev[h] END;
            END IF;
            IF hh IS NOT NULL THEN
                w := d + make_time(hh, p_spec.minute_prev[60], 0);
                EXIT wall_prev;
            END IF;
        END IF;
        v_limit := (t - interval '50 years')::date;
        m := d - date_part('day', d)::integer + 1;
        v_upto := date_part('day', d)::integer - 1;
        WHILE (m + interval '1 month')::date > v_limit LOOP
            fw := date_part('dow', m);
            days := (CASE WHEN (p_spec.month_bits >> date_part('month', m)::integer) & 1 = 0 THEN 0::bigint
                   ELSE (CASE WHEN p_spec.dom_star OR p_spec.dow_star
                              THEN p_spec.dom_bits & ((((((p_spec.dow_bits >> fw) | (p_spec.dow_bits << (7 - fw))) & 127)::bigint * 270549121) << 1))
                              ELSE p_spec.dom_bits | ((((((p_spec.dow_bits >> fw) | (p_spec.dow_bits << (7 - fw))) & 127)::bigint * 270549121) << 1)) END)
                        & ((1::bigint << (((m + interval '1 month')::date - m) + 1)) - 2) END) & ((1::bigint << (v_upto + 1)) - 1);
            IF days <> 0 THEN
                d := m + (length(ltrim(days::bit(64)::text, '0')) - 2);         -- the highest bit set
                IF d >= v_limit THEN
                    w := d + make_time(p_spec.hour_prev[24], p_spec.minute_prev[60], 0);
                END IF;
                EXIT wall_prev;
            END IF;
            m := (m - interval '1 month')::date;
            v_upto := 31;
        END LOOP;
    END wall_prev;
    RETURN w;
END $$;
COMMENT ON FUNCTION dispatch.cron_wall_prev(dispatch.cron_spec, timestamp) IS 'the last wall-clock minute the expression allows strictly before p_before (NULL: none within 50 years)';

CREATE OR REPLACE FUNCTION dispatch.cron_next(p_spec dispatch.cron_spec, p_tz text, p_after timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
DECLARE
    w timestamp := p_after AT TIME ZONE p_tz;
    r timestamptz;
BEGIN
    -- Walls <= the local time of p_after map to instants <= p_after, so start there. In a
    -- repeated hour, walls just after it can still map to earlier first occurrences: skip.
    FOR i IN 1..2000 LOOP
    <<wall_next>>
    DECLARE
        t timestamp := date_trunc('minute', w) + interval '1 minute';
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
        w := NULL;
        IF ((p_spec.month_bits >> date_part('month', d)::integer) & 1 = 1
       AND CASE WHEN p_spec.dom_star OR p_spec.dow_star
                THEN (p_spec.dom_bits >> date_part('day', d)::integer) & 1 = 1 AND (p_spec.dow_bits >> date_part('dow', d)::integer) & 1 = 1
                ELSE (p_spec.dom_bits >> date_part('day', d)::integer) & 1 = 1 OR (p_spec.dow_bits >> date_part('dow', d)::integer) & 1 = 1 END) THEN
            hh := p_spec.hour_next[h + 1];
            IF hh = h THEN
                mm := p_spec.minute_next[mi + 1];
                IF mm IS NOT NULL THEN
                    w := d + make_time(h, mm, 0);
                    EXIT wall_next;
                END IF;
                hh := CASE WHEN h < 23 THEN p_spec.hour_next[h + 2] END;
            END IF;
            IF hh IS NOT NULL THEN
                w := d + make_time(hh, p_spec.minute_next[1], 0);
                EXIT wall_next;
            END IF;
        END IF;
        v_limit := (t + interval '50 years')::date;
        m := d - date_part('day', d)::integer + 1;
        v_from := date_part('day', d)::integer + 1;
        WHILE m <= v_limit LOOP
            fw := date_part('dow', m);
            days := (CASE WHEN (p_spec.month_bits >> date_part('month', m)::integer) & 1 = 0 THEN 0::bigint
                   ELSE (CASE WHEN p_spec.dom_star OR p_spec.dow_star
                              THEN p_spec.dom_bits & ((((((p_spec.dow_bits >> fw) | (p_spec.dow_bits << (7 - fw))) & 127)::bigint * 270549121) << 1))
                              ELSE p_spec.dom_bits | ((((((p_spec.dow_bits >> fw) | (p_spec.dow_bits << (7 - fw))) & 127)::bigint * 270549121) << 1)) END)
                        & ((1::bigint << (((m + interval '1 month')::date - m) + 1)) - 2) END) & ~((1::bigint << v_from) - 1);
            IF days <> 0 THEN
                d := m + (63 - length(rtrim(days::bit(64)::text, '0')));      -- the lowest bit set
                IF d <= v_limit THEN
                    w := d + make_time(p_spec.hour_next[1], p_spec.minute_next[1], 0);
                END IF;
                EXIT wall_next;
            END IF;
            m := (m + interval '1 month')::date;
            v_from := 1;
        END LOOP;
    END wall_next;
        IF w IS NULL THEN
            RETURN NULL;
        END IF;
        r := w AT TIME ZONE p_tz;
        IF ((r - interval '3 hours') AT TIME ZONE p_tz) - ((r - interval '3 hours') AT TIME ZONE 'UTC')
           <> ((r + interval '3 hours') AT TIME ZONE p_tz) - ((r + interval '3 hours') AT TIME ZONE 'UTC') THEN
            r := dispatch.cron_wall_to_instant(w, p_tz, p_spec.every_hour);
        END IF;
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
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
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
    <<wall_prev>>
    DECLARE
        t timestamp := date_trunc('minute', w - interval '1 microsecond');
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
        w := NULL;
        IF ((v_spec.month_bits >> date_part('month', d)::integer) & 1 = 1
       AND CASE WHEN v_spec.dom_star OR v_spec.dow_star
                THEN (v_spec.dom_bits >> date_part('day', d)::integer) & 1 = 1 AND (v_spec.dow_bits >> date_part('dow', d)::integer) & 1 = 1
                ELSE (v_spec.dom_bits >> date_part('day', d)::integer) & 1 = 1 OR (v_spec.dow_bits >> date_part('dow', d)::integer) & 1 = 1 END) THEN
            hh := v_spec.hour_prev[h + 1];
            IF hh = h THEN
                mm := v_spec.minute_prev[mi + 1];
                IF mm IS NOT NULL THEN
                    w := d + make_time(h, mm, 0);
                    EXIT wall_prev;
                END IF;
                hh := CASE WHEN h > 0 THEN v_spec.hour_prev[h] END;
            END IF;
            IF hh IS NOT NULL THEN
                w := d + make_time(hh, v_spec.minute_prev[60], 0);
                EXIT wall_prev;
            END IF;
        END IF;
        v_limit := (t - interval '50 years')::date;
        m := d - date_part('day', d)::integer + 1;
        v_upto := date_part('day', d)::integer - 1;
        WHILE (m + interval '1 month')::date > v_limit LOOP
            fw := date_part('dow', m);
            days := (CASE WHEN (v_spec.month_bits >> date_part('month', m)::integer) & 1 = 0 THEN 0::bigint
                   ELSE (CASE WHEN v_spec.dom_star OR v_spec.dow_star
                              THEN v_spec.dom_bits & ((((((v_spec.dow_bits >> fw) | (v_spec.dow_bits << (7 - fw))) & 127)::bigint * 270549121) << 1))
                              ELSE v_spec.dom_bits | ((((((v_spec.dow_bits >> fw) | (v_spec.dow_bits << (7 - fw))) & 127)::bigint * 270549121) << 1)) END)
                        & ((1::bigint << (((m + interval '1 month')::date - m) + 1)) - 2) END) & ((1::bigint << (v_upto + 1)) - 1);
            IF days <> 0 THEN
                d := m + (length(ltrim(days::bit(64)::text, '0')) - 2);         -- the highest bit set
                IF d >= v_limit THEN
                    w := d + make_time(v_spec.hour_prev[24], v_spec.minute_prev[60], 0);
                END IF;
                EXIT wall_prev;
            END IF;
            m := (m - interval '1 month')::date;
            v_upto := 31;
        END LOOP;
    END wall_prev;
        IF w IS NULL THEN
            RETURN NULL;
        END IF;
        r := w AT TIME ZONE p_tz;
        IF ((r - interval '3 hours') AT TIME ZONE p_tz) - ((r - interval '3 hours') AT TIME ZONE 'UTC')
           <> ((r + interval '3 hours') AT TIME ZONE p_tz) - ((r + interval '3 hours') AT TIME ZONE 'UTC') THEN
            r := dispatch.cron_wall_to_instant(w, p_tz, v_spec.every_hour);
        END IF;
        IF r < p_before THEN
            RETURN r;
        END IF;
        -- The walls from the reading just before r up to w all map to r or later (a DST gap
        -- maps an hour of them to its end): step over them at once.
        w := least(w, (r - interval '1 microsecond') AT TIME ZONE p_tz);
    END LOOP;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION dispatch.cron_parse(p_expr text) RETURNS dispatch.cron_spec
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_text text := lower(btrim(coalesce(p_expr, '')));
    f text[];
    mins integer[]; hours integer[]; doms integer[]; months integer[]; dows integer[];
    r dispatch.cron_spec;
BEGIN
    IF v_text LIKE '@%' THEN
        v_text := CASE v_text
            WHEN '@hourly' THEN '0 * * * *'
            WHEN '@daily' THEN '0 0 * * *'   WHEN '@midnight' THEN '0 0 * * *'
            WHEN '@weekly' THEN '0 0 * * 0'  WHEN '@monthly' THEN '0 0 1 * *'
            WHEN '@yearly' THEN '0 0 1 1 *'  WHEN '@annually' THEN '0 0 1 1 *' END;
        IF v_text IS NULL THEN
            PERFORM dispatch.cron_error(p_expr, 'unknown macro; use @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually');
        END IF;
    END IF;
    f := regexp_split_to_array(v_text, '\s+');
    IF v_text = '' OR cardinality(f) <> 5 THEN
        PERFORM dispatch.cron_error(p_expr, format('expected 5 fields (minute hour day-of-month month day-of-week), got %s',
                                                   CASE WHEN v_text = '' THEN 0 ELSE cardinality(f) END));
    END IF;
    mins := dispatch.cron_field_values(p_expr, f[1], 1);
    hours := dispatch.cron_field_values(p_expr, f[2], 2);
    doms := dispatch.cron_field_values(p_expr, f[3], 3);
    months := dispatch.cron_field_values(p_expr, f[4], 4);
    dows := dispatch.cron_field_values(p_expr, f[5], 5);
    r.minute_next := ARRAY(SELECT (SELECT min(v) FROM unnest(mins) v WHERE v >= i) FROM generate_series(0, 59) i ORDER BY i);
    r.hour_next := ARRAY(SELECT (SELECT min(v) FROM unnest(hours) v WHERE v >= i) FROM generate_series(0, 23) i ORDER BY i);
    r.minute_prev := dispatch.cron_prev_lookup(r.minute_next);
    r.hour_prev := dispatch.cron_prev_lookup(r.hour_next);
    r.dom_bits := (SELECT sum(1::bigint << v) FROM unnest(doms) v);
    r.month_bits := (SELECT sum(1 << v) FROM unnest(months) v);
    r.dow_bits := (SELECT sum(1 << v) FROM unnest(dows) v);
    r.dom_star := f[3] LIKE '*%';
    r.dow_star := f[5] LIKE '*%';
    r.every_hour := cardinality(hours) = 24;
    RETURN r;
END $$;

ALTER FUNCTION dispatch.cron_parse(text) SET search_path = pg_catalog, dispatch, pg_temp
;

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

-- NULL when this server can use the zone, else why not. A zone that a tzdata update removed
-- passed the validation when it was saved; only trying it tells (pg_timezone_names reads
-- every zone file: ~20 ms). No write happens inside, so the block takes no transaction id.
CREATE FUNCTION dispatch.time_zone_problem(p_tz text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.now() AT TIME ZONE p_tz;
    RETURN NULL;
EXCEPTION WHEN data_exception THEN
    RETURN SQLERRM;
END $$;
COMMENT ON FUNCTION dispatch.time_zone_problem(text) IS 'NULL when this server knows the time zone, else the error using it raises';

-- NULL when the expression parses, else the parser's message.
CREATE FUNCTION dispatch.cron_problem(p_expr text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
BEGIN
    PERFORM dispatch.cron_parse(p_expr);
    RETURN NULL;
EXCEPTION WHEN data_exception THEN
    RETURN SQLERRM;
END $$;
COMMENT ON FUNCTION dispatch.cron_problem(text) IS 'NULL when the cron expression parses, else why not';

CREATE FUNCTION dispatch.raise_schedule_invalid(p_schedule_id bigint, p_problem text, p_sqlstate text, p_acting_for timestamptz)
RETURNS bigint LANGUAGE sql SET search_path = pg_catalog, dispatch, pg_temp AS $$
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
LANGUAGE plpgsql SET search_path = pg_catalog, dispatch, pg_temp AS $$
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

-- One statement for any number of due schedules (0005's tick, over p_ids), advancing next_slot.
CREATE FUNCTION dispatch.tick_schedules(p_ids bigint[], p_now timestamptz, p_until timestamptz, p_grace interval, p_cap integer,
                                        OUT n_inserted integer, OUT n_skipped integer, OUT n_adjusted integer)
LANGUAGE plpgsql SET jit = off SET search_path = pg_catalog, dispatch, pg_temp AS $$
DECLARE
    v_now timestamptz := p_now;
    v_until timestamptz := p_until;
    v_grace interval := p_grace;
    v_cap integer := p_cap;
BEGIN
    WITH due AS (
        -- dispatch.tick() locked them (SKIP LOCKED) and screened them.
        SELECT s.id, s.integration_id, s.kind, coalesce(s.cron_spec, dispatch.cron_parse(s.cron)) AS spec,
               s.timezone, s.payload, s.priority, s.max_attempts, s.catch_up, s.catch_up_window, s.next_slot,
               s.period, s.period_end AS last_end
        FROM dispatch.schedules s
        WHERE s.id = ANY (p_ids) AND s.enabled AND s.next_slot <= v_until
        FOR UPDATE
    ), slots AS (
        SELECT d.*, x.slot, x.is_next,
               dispatch.period_end_for(d.period, d.timezone, x.slot) AS natural_end,
               dispatch.period_natural_start(d.period, d.timezone, x.slot, x.period_start) AS natural_start,
               NOT x.is_next AND x.slot < v_now - v_grace AS missed,
               x.slot >= v_now - d.catch_up_window AS in_window,
               max(x.slot) FILTER (WHERE x.is_next) OVER w AS batch_next
        FROM due d
        CROSS JOIN LATERAL dispatch.schedule_due_slots(d.spec, d.timezone, d.next_slot, v_until, v_cap) x
        WINDOW w AS (PARTITION BY d.id)
    ), ranked AS (
        SELECT s.*,
               -- 'latest' runs the newest missed slot only when this batch reaches the present.
               s.slot = max(s.slot) FILTER (WHERE s.missed AND s.in_window) OVER (PARTITION BY s.id)
                   AND (s.batch_next IS NULL OR s.batch_next >= v_now - v_grace) AS newest_missed,
               -- A period is handed out once: the first slot that closes it. A slot closing a
               -- period that already has its job (a calendar period with several slots, or one
               -- the schedule handed out before an edit) is passed by without a job or an alert.
               NOT s.is_next AND (
                   coalesce(s.natural_end <= s.last_end, false) AND EXISTS (
                       SELECT 1 FROM dispatch.idempotency_keys k
                        WHERE k.key = dispatch.slot_key(s.integration_id, s.kind, s.natural_end) AND k.job_id IS NOT NULL)
                   OR row_number() OVER (PARTITION BY s.id, s.natural_end, s.is_next ORDER BY s.slot) > 1) AS covered,
               -- An operator rewound next_slot over a period that has no job (it was skipped and
               -- alerted): it runs as its natural span, filling that hole only.
               coalesce(s.natural_end <= s.last_end, false) AS revisit
        FROM slots s
    ), periods AS (
        -- Contiguous: each period starts where the previous one ended (in this batch, else
        -- the schedule's last period), never at a start of its own that would overlap or gap.
        SELECT r.*,
               CASE WHEN r.revisit THEN r.natural_start
                    ELSE coalesce(greatest(lag(r.natural_end) OVER (PARTITION BY r.id ORDER BY r.slot), r.last_end),
                                  r.natural_start) END AS period_start
        FROM ranked r WHERE NOT r.covered AND NOT r.is_next
    ), plan AS (
        SELECT p.*, dispatch.slot_key(p.integration_id, p.kind, p.natural_end) AS key,
               NOT p.missed OR p.in_window AND (p.catch_up = 'all' OR p.catch_up = 'latest' AND p.newest_missed) AS run
        FROM periods p
    ), reserved AS (
        INSERT INTO dispatch.idempotency_keys (key, integration_id, kind, slot)
        SELECT p.key, p.integration_id, p.kind, p.slot FROM plan p WHERE p.run
        ON CONFLICT (key) DO NOTHING
        RETURNING key
    ), inserted AS (
        INSERT INTO dispatch.jobs (integration_id, kind, payload, priority, max_attempts, scheduled_for,
                                   run_after, idempotency_key, source, schedule_id)
        SELECT p.integration_id, p.kind,
               p.payload || jsonb_build_object('slot', dispatch.slot_iso(p.slot),
                                               'period_unit', p.period,
                                               'period_label', dispatch.period_label(p.period, p.timezone, p.natural_end),
                                               'period_start', dispatch.slot_iso(p.period_start),
                                               'period_end', dispatch.slot_iso(p.natural_end),
                                               'timezone', p.timezone, 'schedule_id', p.id),
               p.priority, coalesce(p.max_attempts, 5), p.slot, p.slot, p.key, 'cron', p.id
        -- Two schedules of one integration and kind that share a period share its key: one job
        -- (the older schedule's) is that period's one effect.
        FROM (SELECT DISTINCT ON (p.key) p.* FROM plan p JOIN reserved r ON r.key = p.key ORDER BY p.key, p.id) p
        ORDER BY p.slot, p.id
        RETURNING 1
    ), alerted AS (
        SELECT dispatch.raise_alert(
                   'missed_slot', 'schedule:' || p.id || ':' || dispatch.slot_iso(p.slot),
                   format('schedule %s (%s %s): slot %s was not run: %s', p.id, p.integration_id, p.kind,
                          dispatch.slot_iso(p.slot), reason),
                   jsonb_build_object('slot', dispatch.slot_iso(p.slot), 'reason', reason, 'catch_up', p.catch_up,
                                      'idempotency_key', p.key, 'acting_for', v_now,
                                      'period_start', dispatch.slot_iso(p.period_start),
                                      'period_end', dispatch.slot_iso(p.natural_end)),
                   p.integration_id, NULL, p.id)
        FROM plan p,
             LATERAL (SELECT CASE WHEN NOT p.in_window THEN format('older than the catch-up window (%s)', p.catch_up_window)
                                  WHEN p.catch_up = 'latest' THEN 'catch_up = latest: only the newest missed slot runs'
                                  ELSE 'catch_up = skip: missed slots are not run' END AS reason) r
        WHERE NOT p.run
    ), adjusted AS (
        SELECT dispatch.raise_alert(
                   'period_adjusted', 'schedule:' || p.id || ':' || dispatch.slot_iso(p.natural_end),
                   format('schedule %s (%s %s): the period ending %s starts at %s, where the last one ended, not at %s: '
                          'the schedule''s cron, time zone or period changed; check that export',
                          p.id, p.integration_id, p.kind, dispatch.slot_iso(p.natural_end),
                          dispatch.slot_iso(p.period_start), dispatch.slot_iso(p.natural_start)),
                   jsonb_build_object('period_start', dispatch.slot_iso(p.period_start),
                                      'period_end', dispatch.slot_iso(p.natural_end),
                                      'natural_start', dispatch.slot_iso(p.natural_start), 'idempotency_key', p.key),
                   p.integration_id, NULL, p.id)
        FROM plan p
        WHERE p.run AND p.natural_start IS NOT NULL AND p.period_start IS DISTINCT FROM p.natural_start
    ), taken AS (
        -- A key in the schedules' namespace that no tick made (its ledger row has no slot):
        -- the period's export did not run; say so loudly.
        SELECT dispatch.raise_alert(
                   'slot_key_taken', 'key:' || p.key,
                   format('schedule %s (%s %s): the key %s of the period ending %s was already taken by job %s, which '
                          'the schedule did not make; the scheduled export did not run',
                          p.id, p.integration_id, p.kind, p.key, dispatch.slot_iso(p.natural_end),
                          coalesce(k.job_id::text, '(none)')),
                   jsonb_build_object('idempotency_key', p.key, 'job_id', k.job_id), p.integration_id, k.job_id, p.id)
        FROM plan p JOIN dispatch.idempotency_keys k ON k.key = p.key
        WHERE p.run AND k.slot IS NULL
    ), advanced AS (
        UPDATE dispatch.schedules s
           SET next_slot = a.next_slot, last_slot = greatest(s.last_slot, a.last_slot),
               period_end = coalesce(greatest(s.period_end, a.period_end), s.period_end)
          FROM (SELECT r.id, max(r.slot) FILTER (WHERE r.is_next) AS next_slot,
                       max(r.slot) FILTER (WHERE NOT r.is_next) AS last_slot,
                       max(r.natural_end) FILTER (WHERE NOT r.is_next AND NOT r.covered) AS period_end
                FROM ranked r GROUP BY r.id) a
         WHERE s.id = a.id
    )
    -- (data-modifying CTEs run whether or not they are read: `advanced` always happens)
    -- (and the alert CTEs run because they are read here)
    SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM alerted) + (SELECT count(*) FROM taken),
           (SELECT count(*) FROM adjusted)
      INTO n_inserted, n_skipped, n_adjusted;
END $$;
COMMENT ON FUNCTION dispatch.tick_schedules(bigint[], timestamptz, timestamptz, interval, integer) IS
    'the tick''s statement over the given (locked, due) schedules: jobs, catch-up, alerts, next_slot';

-- tick_schedules in a subtransaction. When one schedule's data makes it fail (a data or
-- integrity error), the ids are split in halves and each half retried, down to the schedule
-- that fails: it is alerted and skipped, every other one runs. Errors that are no schedule's
-- fault (out of memory, a cancel, a deadlock) fail the tick as before.
CREATE FUNCTION dispatch.tick_isolated(p_ids bigint[], p_now timestamptz, p_until timestamptz, p_grace interval, p_cap integer,
                                       OUT n_inserted integer, OUT n_skipped integer, OUT n_failed integer)
LANGUAGE plpgsql SET jit = off SET search_path = pg_catalog, dispatch, pg_temp AS $$
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
LANGUAGE plpgsql SET jit = off SET search_path = pg_catalog, dispatch, pg_temp AS $$
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
        FOREACH v_id IN ARRAY coalesce(v_retry, '{}') LOOP
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

-- An enabled schedule with no next slot never runs again, whatever emptied it (the tick when
-- the expression has no slot left, or a hand): say so. What was said stops holding when it
-- has a next slot again, is paused or is gone.
CREATE FUNCTION dispatch.schedules_alerts() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, dispatch, pg_temp AS $$
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

DO $grant$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dispatch_worker') THEN
        GRANT EXECUTE ON FUNCTION dispatch.cron_prev_lookup(smallint[]), dispatch.cron_wall_prev(dispatch.cron_spec, timestamp), dispatch.time_zone_problem(text), dispatch.cron_problem(text), dispatch.raise_schedule_invalid(bigint, text, text, timestamptz), dispatch.raise_no_future_slot(bigint, timestamptz), dispatch.tick_schedules(bigint[], timestamptz, timestamptz, interval, integer), dispatch.tick_isolated(bigint[], timestamptz, timestamptz, interval, integer), dispatch.schedules_alerts() TO dispatch_worker;
    END IF;
END $grant$;
