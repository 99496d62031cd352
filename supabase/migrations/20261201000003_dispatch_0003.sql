-- integration-dispatch, Alembic revision 0003: Time: cron in SQL with time zones, schedules as data, the tick, catch-up and alert checks.
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0003_time.py
-- (sha256 64bdcc2758a7a2c9). Do not edit: change the Alembic migration, re-render.
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

-- A parsed expression. The *_next arrays answer "first allowed value >= i" in one lookup
-- ([i + 1], NULL when none is left), so the search never walks minute by minute.
CREATE TYPE dispatch.cron_spec AS (
    minute_next  smallint[],   -- 60 entries
    hour_next    smallint[],   -- 24 entries
    dom_bits     bigint,       -- bit d set: day-of-month d allowed
    month_bits   integer,      -- bit m set: month m allowed
    dow_bits     integer,      -- bit w set: weekday w allowed (0 = Sunday)
    dom_star     boolean,      -- field starts with '*' (Vixie: then dom AND dow, else dom OR dow)
    dow_star     boolean,
    every_hour   boolean       -- all 24 hours: a wall time in a DST gap is skipped, not moved
);

CREATE FUNCTION dispatch.cron_error(p_expr text, p_detail text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE EXCEPTION 'invalid cron expression "%": %', p_expr, p_detail
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'five fields: minute hour day-of-month month day-of-week, e.g. ''0 2 * * *'', or @hourly/@daily/@weekly/@monthly/@yearly';
END $$;

-- One number or name of field p_idx (1 = minute .. 5 = day-of-week), range-checked.
CREATE FUNCTION dispatch.cron_field_value(p_expr text, p_token text, p_idx integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_field text := (ARRAY['minute', 'hour', 'day-of-month', 'month', 'day-of-week'])[p_idx];
    v_lo integer := (ARRAY[0, 0, 1, 1, 0])[p_idx];
    v_hi integer := (ARRAY[59, 23, 31, 12, 7])[p_idx];      -- day-of-week 7 is Sunday again
    v integer;
BEGIN
    IF p_token ~ '^[0-9]+$' THEN
        -- Long digit strings would overflow the cast; they are out of range anyway.
        v := CASE WHEN length(p_token) <= 6 THEN p_token::integer ELSE 999999 END;
    ELSIF p_idx = 4 THEN
        v := array_position(ARRAY['jan','feb','mar','apr','may','jun','jul','aug','sep','oct','nov','dec'], p_token);
    ELSIF p_idx = 5 THEN
        v := array_position(ARRAY['sun','mon','tue','wed','thu','fri','sat'], p_token) - 1;
    END IF;
    IF v IS NULL THEN
        PERFORM dispatch.cron_error(p_expr, format('%s field: unknown value "%s"', v_field, p_token));
    END IF;
    IF v < v_lo OR v > v_hi THEN
        PERFORM dispatch.cron_error(p_expr, format('%s field value %s out of range %s-%s', v_field, v, v_lo, v_hi));
    END IF;
    RETURN v;
END $$;

-- The sorted allowed values of one field: lists, ranges (wrapping ones such as FRI-MON
-- too), steps (*/15, 1-10/2, 5/15 = 5-max/15) and names.
CREATE FUNCTION dispatch.cron_field_values(p_expr text, p_text text, p_idx integer) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_field text := (ARRAY['minute', 'hour', 'day-of-month', 'month', 'day-of-week'])[p_idx];
    v_lo integer := (ARRAY[0, 0, 1, 1, 0])[p_idx];
    v_hi integer := (ARRAY[59, 23, 31, 12, 6])[p_idx];       -- what '*' spans
    v_vals integer[] := '{}';
    v_item text;
    m text[];
    a integer; b integer; step integer;
BEGIN
    FOREACH v_item IN ARRAY string_to_array(p_text, ',') LOOP
        m := regexp_match(v_item, '^(\*|([a-z0-9]+)(-([a-z0-9]+))?)(/([0-9]{1,6}))?$');
        IF m IS NULL THEN
            PERFORM dispatch.cron_error(p_expr, format('%s field: cannot parse "%s"', v_field, v_item));
        END IF;
        step := coalesce(m[6]::integer, 1);
        IF step < 1 OR step > v_hi - v_lo + 1 THEN
            PERFORM dispatch.cron_error(p_expr, format('%s field step %s out of range 1-%s', v_field, step, v_hi - v_lo + 1));
        END IF;
        IF m[1] = '*' THEN
            a := v_lo; b := v_hi;
        ELSE
            a := dispatch.cron_field_value(p_expr, m[2], p_idx);
            b := CASE WHEN m[4] IS NOT NULL THEN dispatch.cron_field_value(p_expr, m[4], p_idx)
                      WHEN m[6] IS NOT NULL THEN v_hi               -- "a/step": a through the maximum
                      ELSE a END;
        END IF;
        IF a <= b THEN
            v_vals := v_vals || ARRAY(SELECT generate_series(a, b, step));
        ELSIF m[6] IS NULL THEN                                      -- wraps: 22-2, FRI-MON, NOV-FEB
            v_vals := v_vals || ARRAY(SELECT generate_series(a, v_hi)) || ARRAY(SELECT generate_series(v_lo, b));
        ELSE
            PERFORM dispatch.cron_error(p_expr, format('%s field: range "%s" wraps around and has a step; write two ranges', v_field, v_item));
        END IF;
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT CASE WHEN p_idx = 5 THEN v % 7 ELSE v END AS v
                 FROM unnest(v_vals) v ORDER BY 1);
END $$;

CREATE FUNCTION dispatch.cron_parse(p_expr text) RETURNS dispatch.cron_spec
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
    r.dom_bits := (SELECT sum(1::bigint << v) FROM unnest(doms) v);
    r.month_bits := (SELECT sum(1 << v) FROM unnest(months) v);
    r.dow_bits := (SELECT sum(1 << v) FROM unnest(dows) v);
    r.dom_star := f[3] LIKE '*%';
    r.dow_star := f[5] LIKE '*%';
    r.every_hour := cardinality(hours) = 24;
    RETURN r;
END $$;
COMMENT ON FUNCTION dispatch.cron_parse IS 'parse a 5-field cron expression (or @macro) once; raises invalid_parameter_value naming the bad field';

-- The first matching wall-clock minute strictly after p_after (no time zone involved): day by
-- day (months skipped whole), then one array lookup for the hour and one for the minute.
CREATE FUNCTION dispatch.cron_wall_next(p_spec dispatch.cron_spec, p_after timestamp) RETURNS timestamp
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    t timestamp := date_trunc('minute', p_after) + interval '1 minute';
    d date := t::date;
    h integer := extract(hour FROM t);
    mi integer := extract(minute FROM t);
    v_limit date := (t + interval '50 years')::date;   -- croniter's horizon as well
    dom_ok boolean; dow_ok boolean;
    hh integer; mm integer;
BEGIN
    WHILE d <= v_limit LOOP
        IF (p_spec.month_bits >> extract(month FROM d)::integer) & 1 = 0 THEN
            d := (date_trunc('month', d) + interval '1 month')::date; h := 0; mi := 0;
            CONTINUE;
        END IF;
        dom_ok := (p_spec.dom_bits >> extract(day FROM d)::integer) & 1 = 1;
        dow_ok := (p_spec.dow_bits >> extract(dow FROM d)::integer) & 1 = 1;
        IF (CASE WHEN p_spec.dom_star OR p_spec.dow_star THEN dom_ok AND dow_ok ELSE dom_ok OR dow_ok END) THEN
            hh := p_spec.hour_next[h + 1];
            IF hh = h THEN
                mm := p_spec.minute_next[mi + 1];
                IF mm IS NOT NULL THEN
                    RETURN d + make_time(h, mm, 0);
                END IF;
                hh := CASE WHEN h < 23 THEN p_spec.hour_next[h + 2] END;
            END IF;
            IF hh IS NOT NULL THEN
                RETURN d + make_time(hh, p_spec.minute_next[1], 0);
            END IF;
        END IF;
        d := d + 1; h := 0; mi := 0;
    END LOOP;
    RETURN NULL;
END $$;

-- The instant of wall time p_wall in p_tz: the first occurrence when it is ambiguous; the end
-- of the gap when it does not exist (NULL when p_skip_gap: hourly schedules skip it).
CREATE FUNCTION dispatch.cron_wall_to_instant(p_wall timestamp, p_tz text, p_skip_gap boolean) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p timestamptz := p_wall AT TIME ZONE p_tz;
    o_before interval; o_after interval;
    c1 timestamptz; c2 timestamptz;
    ok1 boolean; ok2 boolean;
    g timestamp := p_wall;
BEGIN
    o_before := ((p - interval '3 hours') AT TIME ZONE p_tz) - ((p - interval '3 hours') AT TIME ZONE 'UTC');
    o_after := ((p + interval '3 hours') AT TIME ZONE p_tz) - ((p + interval '3 hours') AT TIME ZONE 'UTC');
    IF o_before = o_after THEN
        RETURN p;                                   -- no transition nearby: the common case
    END IF;
    c1 := (p_wall - o_before) AT TIME ZONE 'UTC';
    c2 := (p_wall - o_after) AT TIME ZONE 'UTC';
    ok1 := (c1 AT TIME ZONE p_tz) = p_wall;
    ok2 := (c2 AT TIME ZONE p_tz) = p_wall;
    IF ok1 OR ok2 THEN
        RETURN least(CASE WHEN ok1 THEN c1 END, CASE WHEN ok2 THEN c2 END);
    END IF;
    IF p_skip_gap THEN
        RETURN NULL;
    END IF;
    -- In the gap: the first existing wall minute after it (croniter walks the same way).
    FOR i IN 1..240 LOOP
        g := g + interval '1 minute';
        c2 := (g - o_after) AT TIME ZONE 'UTC';
        IF (c2 AT TIME ZONE p_tz) = g THEN
            RETURN c2;
        END IF;
    END LOOP;
    RETURN p;
END $$;

CREATE FUNCTION dispatch.cron_next(p_spec dispatch.cron_spec, p_tz text, p_after timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    w timestamp := p_after AT TIME ZONE p_tz;
    r timestamptz;
BEGIN
    -- Walls <= the local time of p_after map to instants <= p_after, so start there. In a
    -- repeated hour, walls just after it can still map to earlier first occurrences: skip.
    FOR i IN 1..2000 LOOP
        w := dispatch.cron_wall_next(p_spec, w);
        IF w IS NULL THEN
            RETURN NULL;
        END IF;
        r := dispatch.cron_wall_to_instant(w, p_tz, p_spec.every_hour);
        IF r > p_after THEN
            RETURN r;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION dispatch.cron_next(expr text, tz text, after timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT dispatch.cron_next(dispatch.cron_parse(expr), tz, after)
$$;
COMMENT ON FUNCTION dispatch.cron_next(text, text, timestamptz) IS 'the first slot of expr in zone tz strictly after `after` (NULL: none within 50 years)';

-- The last slot strictly before p_before: look back over growing spans until one holds a
-- slot, then walk forward inside it (a few steps for any regular schedule).
CREATE FUNCTION dispatch.cron_prev(p_spec dispatch.cron_spec, p_tz text, p_before timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    span interval;
    x timestamptz; y timestamptz;
BEGIN
    FOREACH span IN ARRAY ARRAY['2 minutes', '20 minutes', '3 hours', '27 hours', '8 days', '32 days',
                                '367 days', '1462 days', '8 years', '50 years']::interval[] LOOP
        x := dispatch.cron_next(p_spec, p_tz, p_before - span);
        IF x < p_before THEN
            LOOP
                y := dispatch.cron_next(p_spec, p_tz, x);
                EXIT WHEN y IS NULL OR y >= p_before;
                x := y;
            END LOOP;
            RETURN x;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION dispatch.cron_prev(expr text, tz text, before timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT dispatch.cron_prev(dispatch.cron_parse(expr), tz, before)
$$;
COMMENT ON FUNCTION dispatch.cron_prev(text, text, timestamptz) IS 'the last slot of expr in zone tz strictly before `before`';

CREATE FUNCTION dispatch.cron_slots(expr text, tz text, from_ts timestamptz, to_ts timestamptz)
RETURNS SETOF timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_spec dispatch.cron_spec := dispatch.cron_parse(expr);
    s timestamptz := from_ts;
BEGIN
    LOOP
        s := dispatch.cron_next(v_spec, tz, s);
        EXIT WHEN s IS NULL OR s > to_ts;
        RETURN NEXT s;
    END LOOP;
END $$;
COMMENT ON FUNCTION dispatch.cron_slots IS 'the slots of expr in zone tz with from_ts < slot <= to_ts, in order';

-- Exact IANA names only (pg_timezone_names), not POSIX specs such as 'UTC+3'. The list is
-- cached in a table because pg_timezone_names reads every zone file (~30 ms a call);
-- the view stays the fallback for zones added by a newer tzdata.
CREATE TABLE dispatch.time_zones (name text PRIMARY KEY);
INSERT INTO dispatch.time_zones SELECT name FROM pg_timezone_names;

CREATE FUNCTION dispatch.check_time_zone(p_tz text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_like text;
BEGIN
    IF EXISTS (SELECT 1 FROM dispatch.time_zones WHERE name = p_tz)
       OR EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_tz) THEN
        RETURN;
    END IF;
    SELECT name INTO v_like FROM dispatch.time_zones WHERE lower(name) = lower(p_tz) LIMIT 1;
    RAISE EXCEPTION 'unknown time zone "%"', p_tz
        USING ERRCODE = 'invalid_parameter_value',
              HINT = coalesce('did you mean "' || v_like || '"?',
                              'use an IANA name such as ''Europe/Oslo'' or ''UTC'' (SELECT name FROM pg_timezone_names)');
END $$;

-- The validator a schedule passes on save: raises naming the bad field, else returns the
-- parsed expression.
CREATE FUNCTION dispatch.cron_check(expr text, tz text DEFAULT 'UTC') RETURNS dispatch.cron_spec
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_spec dispatch.cron_spec := dispatch.cron_parse(expr);
BEGIN
    PERFORM dispatch.check_time_zone(tz);
    -- e.g. '0 0 30 2 *': every field is valid, the day never comes.
    IF dispatch.cron_next(v_spec, 'UTC', '2000-01-01') IS NULL THEN
        PERFORM dispatch.cron_error(expr, 'day-of-month field never occurs in the months of the month field');
    END IF;
    RETURN v_spec;
END $$;
COMMENT ON FUNCTION dispatch.cron_check IS 'validate a cron expression and time zone; raises invalid_parameter_value naming the bad field';

-- The parsed expression, kept with the schedule so the tick never parses (parsing costs
-- ~0.3 ms in plpgsql; the tick's budget is ~0.2 ms per due schedule). Derived, never written
-- by users: the trigger below refreshes it whenever cron changes.
ALTER TABLE dispatch.schedules ADD COLUMN cron_spec dispatch.cron_spec;
COMMENT ON COLUMN dispatch.schedules.cron_spec IS 'cron parsed by dispatch.cron_parse(); maintained by the schedules_before_write trigger';
-- Schedules saved before this revision get validated, parsed and a next_slot.
UPDATE dispatch.schedules SET cron_spec = dispatch.cron_check(cron, timezone),
                              next_slot = coalesce(next_slot, dispatch.cron_next(cron, timezone, now()));

-- Validates cron and timezone, and computes next_slot on insert and whenever cron or
-- timezone change, unless the same statement writes next_slot itself (backfill, skip ahead).
CREATE FUNCTION dispatch.schedules_before_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.cron IS NOT DISTINCT FROM OLD.cron
       AND NEW.timezone IS NOT DISTINCT FROM OLD.timezone THEN
        NEW.cron_spec := OLD.cron_spec;
        RETURN NEW;
    END IF;
    NEW.cron_spec := dispatch.cron_check(NEW.cron, NEW.timezone);
    IF TG_OP = 'INSERT' AND NEW.next_slot IS NULL
       OR TG_OP = 'UPDATE' AND NEW.next_slot IS NOT DISTINCT FROM OLD.next_slot THEN
        -- After now, and never at or before a slot already handled.
        NEW.next_slot := dispatch.cron_next(NEW.cron_spec, NEW.timezone,
                                            greatest(now(), CASE WHEN TG_OP = 'UPDATE' THEN OLD.last_slot END));
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER schedules_before_write BEFORE INSERT OR UPDATE ON dispatch.schedules
    FOR EACH ROW EXECUTE FUNCTION dispatch.schedules_before_write();

INSERT INTO dispatch.settings (key, value, description) VALUES
    ('tick_lookahead_seconds', '120', 'dispatch.tick() inserts slots this far ahead (run_after = slot)'),
    ('tick_max_slots_per_schedule', '100', 'slots one tick handles per schedule; a longer backlog continues next tick'),
    ('catch_up_grace_seconds', '120', 'a slot at most this late is on time and runs under every catch-up policy'),
    ('drift_alert_seconds', '300', 'a job started this long after its slot raises a drift alert'),
    ('overdue_alert_seconds', '300', 'a queued job this long past run_after raises an overdue alert'),
    ('tick_runs_retention_days', '7', 'dispatch.maintain() deletes older tick_runs rows'),
    ('job_retention_days', '30', 'dispatch.maintain() deletes finished jobs older than this; the ledger keeps their keys')
ON CONFLICT (key) DO NOTHING;

CREATE FUNCTION dispatch.slot_iso(p_slot timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(p_slot AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

CREATE FUNCTION dispatch.slot_key(p_integration_id text, p_kind text, p_slot timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_integration_id || ':' || p_kind || ':' || dispatch.slot_iso(p_slot)
$$;
COMMENT ON FUNCTION dispatch.slot_key IS 'the idempotency key of scheduled work: <integration_id>:<kind>:<slot in UTC ISO 8601>';

-- The slots one schedule has due: from p_from (inclusive) up to p_until, at most p_cap,
-- then one row with is_next = true: where next_slot goes (NULL: the expression is done).
CREATE FUNCTION dispatch.schedule_due_slots(v_spec dispatch.cron_spec, p_tz text, p_from timestamptz,
                                            p_until timestamptz, p_cap integer)
RETURNS TABLE (slot timestamptz, period_start timestamptz, is_next boolean)
LANGUAGE plpgsql STABLE ROWS 2 AS $$
DECLARE
    s timestamptz := dispatch.cron_next(v_spec, p_tz, p_from - interval '1 microsecond');
    v_prev timestamptz;
BEGIN
    IF s <= p_until THEN
        v_prev := dispatch.cron_prev(v_spec, p_tz, s);
    END IF;
    FOR i IN 1..p_cap LOOP
        EXIT WHEN s IS NULL OR s > p_until;
        slot := s; period_start := v_prev; is_next := false;
        RETURN NEXT;
        v_prev := s;
        s := dispatch.cron_next(v_spec, p_tz, s);
    END LOOP;
    slot := s; period_start := v_prev; is_next := true;
    RETURN NEXT;
END $$;

-- pg_cron's background workers (cron.use_background_workers = on) have backend_type
-- 'pg_cron' and an empty application_name; its libpq connections set application_name.
CREATE FUNCTION dispatch.tick_caller() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN current_setting('application_name') = 'pg_cron'
                  OR (SELECT a.backend_type FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()) = 'pg_cron'
                THEN 'pg_cron'
                ELSE coalesce(nullif(current_setting('dispatch.tick_caller', true), ''), 'manual') END
$$;
COMMENT ON FUNCTION dispatch.tick_caller IS 'pg_cron when pg_cron runs us, else SET dispatch.tick_caller (e.g. watchdog), else manual';

-- Inserts one job per due slot, set-based over the due schedules only (schedules_due_idx),
-- deduplicated by the idempotency ledger's primary key, and advances next_slot.
-- jit off: compiling the plan costs ~0.8 s and the work is ~0.1 ms per due schedule.
CREATE FUNCTION dispatch.tick(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    v_t0 timestamptz := clock_timestamp();
    v_now timestamptz := tick.now;
    v_until timestamptz := v_now + make_interval(secs => dispatch.setting('tick_lookahead_seconds', '120')::double precision);
    v_grace interval := make_interval(secs => dispatch.setting('catch_up_grace_seconds', '120')::double precision);
    v_cap integer := dispatch.setting('tick_max_slots_per_schedule', '100')::integer;
    v_caller text := dispatch.tick_caller();
    v_inserted integer;
    v_skipped integer;
BEGIN
    WITH due AS (
        -- SKIP LOCKED: a concurrent tick handles the other schedules instead of waiting;
        -- the ledger's primary key is what makes a second job for a slot impossible.
        SELECT s.id, s.integration_id, s.kind, coalesce(s.cron_spec, dispatch.cron_parse(s.cron)) AS spec,
               s.timezone, s.payload, s.priority, s.max_attempts, s.catch_up, s.catch_up_window, s.next_slot
        FROM dispatch.schedules s
        WHERE s.enabled AND s.next_slot <= v_until
        FOR UPDATE SKIP LOCKED
    ), slots AS (
        SELECT d.*, x.slot, x.period_start, x.is_next,
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
                   AND (s.batch_next IS NULL OR s.batch_next >= v_now - v_grace) AS newest_missed
        FROM slots s
    ), plan AS (
        SELECT r.*, dispatch.slot_key(r.integration_id, r.kind, r.slot) AS key,
               NOT r.is_next AND (NOT r.missed OR r.in_window AND (r.catch_up = 'all' OR r.catch_up = 'latest' AND r.newest_missed)) AS run
        FROM ranked r
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
                                               'period_start', dispatch.slot_iso(p.period_start),
                                               'period_end', dispatch.slot_iso(p.slot),
                                               'timezone', p.timezone, 'schedule_id', p.id),
               p.priority, coalesce(p.max_attempts, 5), p.slot, p.slot, p.key, 'cron', p.id
        -- Two schedules of one integration and kind that share a slot share its key: one job
        -- (the older schedule's) is that slot's one effect.
        FROM (SELECT DISTINCT ON (p.key) p.* FROM plan p JOIN reserved r ON r.key = p.key ORDER BY p.key, p.id) p
        ORDER BY p.slot, p.id
        RETURNING 1
    ), alerted AS (
        SELECT dispatch.raise_alert(
                   'missed_slot', 'schedule:' || p.id || ':' || dispatch.slot_iso(p.slot),
                   format('schedule %s (%s %s): slot %s was not run: %s', p.id, p.integration_id, p.kind,
                          dispatch.slot_iso(p.slot), reason),
                   jsonb_build_object('slot', dispatch.slot_iso(p.slot), 'reason', reason, 'catch_up', p.catch_up,
                                      'idempotency_key', p.key, 'acting_for', v_now),
                   p.integration_id, NULL, p.id)
        FROM plan p,
             LATERAL (SELECT CASE WHEN NOT p.in_window THEN format('older than the catch-up window (%s)', p.catch_up_window)
                                  WHEN p.catch_up = 'latest' THEN 'catch_up = latest: only the newest missed slot runs'
                                  ELSE 'catch_up = skip: missed slots are not run' END AS reason) r
        WHERE NOT p.run AND NOT p.is_next
    ), advanced AS (
        UPDATE dispatch.schedules s
           SET next_slot = a.next_slot, last_slot = greatest(s.last_slot, a.last_slot)
          FROM (SELECT p.id, max(p.slot) FILTER (WHERE p.is_next) AS next_slot,
                       max(p.slot) FILTER (WHERE NOT p.is_next) AS last_slot
                FROM plan p GROUP BY p.id) a
         WHERE s.id = a.id
    )
    -- (data-modifying CTEs run whether or not they are read: `advanced` always happens)
    SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM alerted) INTO v_inserted, v_skipped;

    INSERT INTO dispatch.tick_runs (acting_for, started_at, duration_ms, inserted, skipped, caller, lateness_ms)
    VALUES (v_now, v_t0, 1000 * extract(epoch FROM clock_timestamp() - v_t0), v_inserted, v_skipped, v_caller,
            -- pg_cron fires at the minute; the transaction start says how late it was.
            CASE WHEN v_caller = 'pg_cron'
                 THEN 1000 * extract(epoch FROM pg_catalog.now() - date_trunc('minute', pg_catalog.now())) END);
    RETURN v_inserted;
END $$;
COMMENT ON FUNCTION dispatch.tick IS 'insert one job per due slot (lookahead, catch-up policy, ledger dedup), advance next_slot; returns jobs inserted';

CREATE FUNCTION dispatch.last_tick() RETURNS dispatch.tick_runs LANGUAGE sql STABLE AS $$
    SELECT * FROM dispatch.tick_runs ORDER BY started_at DESC LIMIT 1
$$;

CREATE VIEW dispatch.scheduler_status AS
SELECT t.started_at AS last_tick_at, t.caller AS last_caller, t.acting_for AS last_acting_for,
       t.inserted AS last_inserted, t.duration_ms AS last_duration_ms,
       (SELECT r.started_at FROM dispatch.tick_runs r WHERE r.caller = 'pg_cron'
         ORDER BY r.started_at DESC LIMIT 1) AS last_pg_cron_tick_at,
       extract(epoch FROM clock_timestamp() - t.started_at) AS seconds_since_tick
FROM dispatch.last_tick() t;   -- one row, all NULL before the first tick
COMMENT ON VIEW dispatch.scheduler_status IS 'one row: the last tick (any caller) and the last pg_cron tick, for the watchdog';

-- Drift checks read recent starts, and a drift alert is raised once per job (open or not).
CREATE INDEX jobs_started_idx ON dispatch.jobs (started_at) WHERE started_at IS NOT NULL;
CREATE INDEX alerts_kind_subject_idx ON dispatch.alerts (kind, subject);

CREATE FUNCTION dispatch.check_drift(p_now timestamptz, p_limit interval) RETURNS integer
LANGUAGE sql AS $$
    WITH raised AS (
        SELECT dispatch.raise_alert('drift', 'job:' || j.id,
                   format('job %s (%s %s) started %s s after its slot %s', j.id, j.integration_id, j.kind,
                          round(extract(epoch FROM j.started_at - j.scheduled_for)::numeric, 1),
                          dispatch.slot_iso(j.scheduled_for)),
                   jsonb_build_object('scheduled_for', j.scheduled_for, 'started_at', j.started_at,
                                      'drift_seconds', extract(epoch FROM j.started_at - j.scheduled_for)),
                   j.integration_id, j.id, j.schedule_id)
        FROM dispatch.jobs j
        WHERE j.started_at > p_now - interval '1 day' AND j.started_at <= p_now
          AND j.started_at - j.scheduled_for > p_limit
          AND NOT EXISTS (SELECT 1 FROM dispatch.alerts a WHERE a.kind = 'drift' AND a.subject = 'job:' || j.id)
    ), resolved AS (
        -- Drift is a past fact: it clears when a later job of the same integration and kind
        -- starts on time again.
        UPDATE dispatch.alerts a SET resolved_at = p_now
          FROM dispatch.jobs late
         WHERE a.kind = 'drift' AND a.resolved_at IS NULL AND late.id = a.job_id
           AND EXISTS (SELECT 1 FROM dispatch.jobs j
                       WHERE j.integration_id = late.integration_id AND j.kind = late.kind
                         AND j.scheduled_for > late.scheduled_for AND j.started_at IS NOT NULL
                         AND j.started_at <= p_now AND j.started_at - j.scheduled_for <= p_limit)
        RETURNING 1
    )
    SELECT ((SELECT count(*) FROM raised) + (SELECT count(*) FROM resolved))::integer
$$;

CREATE FUNCTION dispatch.check_overdue(p_now timestamptz, p_limit interval) RETURNS integer
LANGUAGE sql AS $$
    WITH raised AS (
        SELECT dispatch.raise_alert('overdue', 'job:' || j.id,
                   format('job %s (%s %s) is still queued %s s after its slot %s', j.id, j.integration_id, j.kind,
                          round(extract(epoch FROM p_now - j.run_after)::numeric), dispatch.slot_iso(j.scheduled_for)),
                   jsonb_build_object('scheduled_for', j.scheduled_for, 'run_after', j.run_after),
                   j.integration_id, j.id, j.schedule_id)
        FROM dispatch.jobs j
        WHERE j.status = 'queued' AND j.run_after <= p_now - p_limit
          AND NOT EXISTS (SELECT 1 FROM dispatch.alerts a
                          WHERE a.kind = 'overdue' AND a.subject = 'job:' || j.id AND a.resolved_at IS NULL)
    ), resolved AS (
        -- Clears when the job stops waiting: started, cancelled, deleted, or rescheduled later.
        UPDATE dispatch.alerts a SET resolved_at = p_now
         WHERE a.kind = 'overdue' AND a.resolved_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM dispatch.jobs j
                           WHERE j.id = a.job_id AND j.status = 'queued' AND j.run_after <= p_now - p_limit)
        RETURNING 1
    )
    SELECT ((SELECT count(*) FROM raised) + (SELECT count(*) FROM resolved))::integer
$$;

-- The tick raises missed_slot when it passes a slot by; it clears once the slot has a job
-- after all (an operator backfill, or enqueue with the slot's key).
CREATE FUNCTION dispatch.check_missed_slots(p_now timestamptz) RETURNS integer
LANGUAGE sql AS $$
    WITH resolved AS (
        UPDATE dispatch.alerts a SET resolved_at = p_now
         WHERE a.kind = 'missed_slot' AND a.resolved_at IS NULL
           AND EXISTS (SELECT 1 FROM dispatch.idempotency_keys k
                       WHERE k.key = a.details ->> 'idempotency_key' AND k.job_id IS NOT NULL)
        RETURNING 1
    )
    SELECT count(*)::integer FROM resolved
$$;

CREATE FUNCTION dispatch.check_alerts(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE sql SET jit = off AS $$
    SELECT dispatch.check_drift(check_alerts.now, make_interval(secs => dispatch.setting('drift_alert_seconds', '300')::double precision))
         + dispatch.check_overdue(check_alerts.now, make_interval(secs => dispatch.setting('overdue_alert_seconds', '300')::double precision))
         + dispatch.check_missed_slots(check_alerts.now)
$$;
COMMENT ON FUNCTION dispatch.check_alerts IS 'raise and resolve drift, overdue and missed_slot alerts; returns alerts opened + resolved';

CREATE FUNCTION dispatch.maintain(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM dispatch.tick_runs
     WHERE started_at < maintain.now - make_interval(days => dispatch.setting('tick_runs_retention_days', '7')::integer);
    -- Crashed daemons' jobs come back even when no daemon is running to rescue them.
    PERFORM dispatch.rescue_expired_leases();
    PERFORM dispatch.prune_jobs(make_interval(days => dispatch.setting('job_retention_days', '30')::integer));
    RETURN dispatch.check_alerts(maintain.now);
END $$;
COMMENT ON FUNCTION dispatch.maintain IS 'the per-minute pg_cron duty: lease rescue, job and tick_runs retention, alert checks';

CREATE VIEW dispatch.drift_report AS
SELECT j.integration_id, j.kind, count(*) AS jobs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.started_at - j.scheduled_for)) AS p50_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM j.started_at - j.scheduled_for)) AS p95_seconds,
       max(extract(epoch FROM j.started_at - j.scheduled_for)) AS max_seconds,
       count(*) FILTER (WHERE j.started_at - j.scheduled_for
                              > make_interval(secs => dispatch.setting('drift_alert_seconds', '300')::double precision)) AS late
FROM dispatch.jobs j
WHERE j.started_at > now() - interval '24 hours'
GROUP BY j.integration_id, j.kind;
COMMENT ON VIEW dispatch.drift_report IS 'drift (started_at - scheduled_for) per integration and kind over the last 24 h';

DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dispatch_worker') THEN
            GRANT UPDATE (next_slot, last_slot) ON dispatch.schedules TO dispatch_worker;
        END IF;
    END $$
;
