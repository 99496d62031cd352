--
-- PostgreSQL database dump
--



SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: dispatch; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA dispatch;


--
-- Name: SCHEMA dispatch; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA dispatch IS 'integration-dispatch: scheduler and dispatcher state';


--
-- Name: vault; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA vault;


--
-- Name: SCHEMA vault; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA vault IS 'integration-dispatch: Supabase Vault stand-in (pgcrypto), created by migration 0002; pgcrypto_created=yes; extensions_schema_created=yes';


--
-- Name: cron_spec; Type: TYPE; Schema: dispatch; Owner: -
--

CREATE TYPE dispatch.cron_spec AS (
	minute_next smallint[],
	hour_next smallint[],
	dom_bits bigint,
	month_bits integer,
	dow_bits integer,
	dom_star boolean,
	dow_star boolean,
	every_hour boolean,
	minute_prev smallint[],
	hour_prev smallint[]
);


--
-- Name: job_status; Type: TYPE; Schema: dispatch; Owner: -
--

CREATE TYPE dispatch.job_status AS ENUM (
    'queued',
    'running',
    'succeeded',
    'failed',
    'cancelled'
);


--
-- Name: alerts_notify(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.alerts_notify() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    PERFORM pg_notify('dispatch_alerts', '');
    RETURN NULL;
END $$;


--
-- Name: begin_write(bigint, text, text, double precision); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.begin_write(p_job_id bigint, p_worker text, p_reference text, p_window_seconds double precision, OUT decision text, OUT wait_seconds double precision, OUT sends integer) RETURNS record
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
DECLARE
    v_key text;
    v_cancelled boolean;
    v_intent dispatch.write_intents;
BEGIN
    -- The intent must survive a crash of the database, whatever the session's setting.
    PERFORM set_config('synchronous_commit', 'on', true);
    SELECT j.idempotency_key, j.cancel_requested_at IS NOT NULL INTO v_key, v_cancelled FROM dispatch.jobs j
     WHERE j.id = p_job_id AND j.worker_id = p_worker AND j.status = 'running'
       AND j.lease_expires_at > clock_timestamp()
       FOR UPDATE;
    IF NOT FOUND THEN
        decision := 'not_owner'; wait_seconds := 0; sends := 0;
        RETURN;
    END IF;
    IF v_cancelled THEN
        decision := 'cancelled'; wait_seconds := 0; sends := 0;
        RETURN;
    END IF;
    SELECT * INTO v_intent FROM dispatch.write_intents WHERE idempotency_key = v_key FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO dispatch.write_intents (idempotency_key, reference, job_id, worker_id)
        VALUES (v_key, p_reference, p_job_id, p_worker);
        decision := 'send'; wait_seconds := 0; sends := 1;
        RETURN;
    END IF;
    IF v_intent.confirmed_at IS NOT NULL THEN
        decision := 'confirmed'; wait_seconds := 0; sends := v_intent.sends;
        RETURN;
    END IF;
    wait_seconds := p_window_seconds - extract(epoch FROM clock_timestamp() - v_intent.last_sent_at);
    IF wait_seconds > 0 THEN
        decision := 'wait'; sends := v_intent.sends;
        RETURN;
    END IF;
    -- The window since the last send has passed and the caller's lookup was negative: the
    -- vendor never applied it. Send again, and say so in the ledger.
    UPDATE dispatch.write_intents
       SET previous_sent_at = last_sent_at, last_sent_at = clock_timestamp(), sends = write_intents.sends + 1,
           job_id = p_job_id, worker_id = p_worker,
           reference = p_reference
     WHERE idempotency_key = v_key
    RETURNING write_intents.sends INTO sends;
    decision := 'send'; wait_seconds := 0;
END $$;


--
-- Name: FUNCTION begin_write(p_job_id bigint, p_worker text, p_reference text, p_window_seconds double precision, OUT decision text, OUT wait_seconds double precision, OUT sends integer); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.begin_write(p_job_id bigint, p_worker text, p_reference text, p_window_seconds double precision, OUT decision text, OUT wait_seconds double precision, OUT sends integer) IS 'record (durably) that the owner of a running job is about to send its write; refuses while an earlier send may still land';


--
-- Name: check_alerts(timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.check_alerts(now timestamp with time zone DEFAULT now()) RETURNS integer
    LANGUAGE sql
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT dispatch.check_drift(check_alerts.now, make_interval(secs => dispatch.setting('drift_alert_seconds', '300')::double precision))
         + dispatch.check_overdue(check_alerts.now, make_interval(secs => dispatch.setting('overdue_alert_seconds', '300')::double precision))
         + dispatch.check_missed_slots(check_alerts.now)
$$;


--
-- Name: FUNCTION check_alerts(now timestamp with time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.check_alerts(now timestamp with time zone) IS 'raise and resolve drift, overdue and missed_slot alerts; returns alerts opened + resolved';


--
-- Name: check_caller_key(text, text, text, text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.check_caller_key(p_integration_id text, p_kind text, p_key text, p_source text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    IF p_key IS NOT NULL AND coalesce(p_source, 'sql') NOT IN ('cron', 'backfill')
       AND dispatch.is_schedule_key(p_integration_id, p_kind, p_key) THEN
        RAISE EXCEPTION 'idempotency key "%" is reserved for scheduled periods (keys "%:%:..." belong to the schedules)',
                        p_key, p_integration_id, p_kind
            USING ERRCODE = 'check_violation',
                  HINT = 'use a key of your own, e.g. "manual:' || p_key || '"; to re-run a scheduled period use `integration-dispatch jobs retry` or a backfill';
    END IF;
    -- Retention deletes a job's own key with the job: a caller holding one could repeat it later.
    IF left(p_key, 4) = 'job:' THEN
        RAISE EXCEPTION 'idempotency key "%" is reserved (keys "job:<id>" are the ones jobs without a key get)', p_key
            USING ERRCODE = 'check_violation',
                  HINT = 'use a key of your own, e.g. "manual:' || substr(p_key, 5) || '", or give none';
    END IF;
END $$;


--
-- Name: FUNCTION check_caller_key(p_integration_id text, p_kind text, p_key text, p_source text); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.check_caller_key(p_integration_id text, p_kind text, p_key text, p_source text) IS 'refuse a caller''s key in the namespace of scheduled periods, or of jobs'' own keys (job:<id>)';


--
-- Name: check_drift(timestamp with time zone, interval); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.check_drift(p_now timestamp with time zone, p_limit interval) RETURNS integer
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: check_missed_slots(timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.check_missed_slots(p_now timestamp with time zone) RETURNS integer
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    WITH resolved AS (
        UPDATE dispatch.alerts a SET resolved_at = p_now
         WHERE a.kind = 'missed_slot' AND a.resolved_at IS NULL
           AND EXISTS (SELECT 1 FROM dispatch.idempotency_keys k
                       WHERE k.key = a.details ->> 'idempotency_key' AND k.job_id IS NOT NULL)
        RETURNING 1
    )
    SELECT count(*)::integer FROM resolved
$$;


--
-- Name: check_overdue(timestamp with time zone, interval); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.check_overdue(p_now timestamp with time zone, p_limit interval) RETURNS integer
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: check_time_zone(text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.check_time_zone(p_tz text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: claim_jobs(text, integer, double precision); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.claim_jobs(p_worker text, p_limit integer, p_lease_seconds double precision) RETURNS TABLE(id bigint, integration_id text, kind text, payload jsonb, attempts integer, max_attempts integer, scheduled_for timestamp with time zone, run_after timestamp with time zone, enqueued_at timestamp with time zone, started_at timestamp with time zone, idempotency_key text, schedule_id bigint, adapter text, config jsonb, secret_name text, circuit text)
    LANGUAGE plpgsql
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    SET enable_seqscan TO 'off'
    AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_window integer := 2 * p_limit + 16;  -- due jobs looked at in the first round
    v_held text[] := '{}';                 -- integrations this claim holds, until its commit
    v_ids text[];                          -- a round's integrations to try, in claim order
    v_free integer[];                      -- and how many jobs each looks able to take
    v_want integer;
    v_seen integer;
    v_taken integer := 0;
    v_n integer;
    -- The claim-order key of the last job looked at: below every job, to start with.
    v_priority smallint := -32768;
    v_run_after timestamptz := '-infinity';
    v_id bigint := 0;
BEGIN
    IF p_limit < 1 THEN
        RETURN;
    END IF;
    FOR v_round IN 1..5 LOOP
        IF v_round < 5 THEN
            -- The next window of due jobs in claim order, straight off the claim-order index (a
            -- claim reads a few index entries, however many integrations there are), and the
            -- window's integrations in claim order with what each looks able to take: as many of
            -- its jobs as the window holds, at most its free slots as of this snapshot.
            WITH w AS (
                SELECT j.id, j.integration_id, j.priority, j.run_after,
                       row_number() OVER (ORDER BY j.priority, j.run_after, j.id) AS n
                  FROM dispatch.jobs j
                 WHERE j.status = 'queued' AND j.run_after <= v_now
                   AND (j.priority, j.run_after, j.id) > (v_priority, v_run_after, v_id)
                 ORDER BY j.priority, j.run_after, j.id
                 LIMIT v_window),
            c AS (
                SELECT g.integration_id, g.first,
                       least(g.jobs, CASE i.circuit WHEN 'closed' THEN i.max_concurrency ELSE 1 END
                                     - (SELECT count(*) FROM dispatch.jobs r
                                         WHERE r.integration_id = g.integration_id AND r.status = 'running')::integer) AS free
                  FROM (SELECT w.integration_id, min(w.n) AS first, count(*)::integer AS jobs FROM w GROUP BY 1) g
                  JOIN dispatch.integrations i ON i.id = g.integration_id
                 WHERE i.enabled AND i.circuit <> 'open' AND g.integration_id <> ALL (v_held))
            SELECT l.n, l.priority, l.run_after, l.id,
                   ARRAY(SELECT c.integration_id FROM c WHERE c.free > 0 ORDER BY c.first),
                   ARRAY(SELECT c.free FROM c WHERE c.free > 0 ORDER BY c.first)
              INTO v_seen, v_priority, v_run_after, v_id, v_ids, v_free
              FROM w l ORDER BY l.n DESC LIMIT 1;
            EXIT WHEN NOT FOUND;  -- nothing (more) is due
        ELSE
            -- Four windows and the jobs ahead still belong to integrations at their limit (or
            -- held by other claims): every integration with due work and a free slot, by its
            -- first due job, and no upper bound on the jobs taken from them.
            WITH c AS (
                SELECT i.id, h.priority, h.run_after, h.id AS head,
                       CASE i.circuit WHEN 'closed' THEN i.max_concurrency ELSE 1 END
                       - (SELECT count(*) FROM dispatch.jobs r
                           WHERE r.integration_id = i.id AND r.status = 'running')::integer AS free
                  FROM dispatch.integrations i
                 CROSS JOIN LATERAL (
                    SELECT d.priority, d.run_after, d.id FROM dispatch.jobs d
                     WHERE d.integration_id = i.id AND d.status = 'queued' AND d.run_after <= v_now
                     ORDER BY d.priority, d.run_after, d.id LIMIT 1) h
                 WHERE i.enabled AND i.circuit <> 'open' AND i.id <> ALL (v_held))
            SELECT ARRAY(SELECT c.id FROM c WHERE c.free > 0 ORDER BY c.priority, c.run_after, c.head),
                   ARRAY(SELECT c.free FROM c WHERE c.free > 0 ORDER BY c.priority, c.run_after, c.head)
              INTO v_ids, v_free;
            v_priority := 32767;
            v_run_after := 'infinity';
            v_id := 9223372036854775807;
        END IF;
        -- Lock, in claim order, just enough of them to fill the claim. A try-lock: one that
        -- another claim holds is skipped, never waited for (so no deadlock either), and that
        -- claim sees to its jobs. The two-key form is its own space (pg_locks.objsubid 2); two
        -- ids of one hash only make their claims skip each other now and then.
        v_want := p_limit - v_taken;
        FOR v_i IN 1..cardinality(v_ids) LOOP
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtext('dispatch.claim_jobs'), hashtext(v_ids[v_i]));
            v_held := v_held || v_ids[v_i];
            v_want := v_want - v_free[v_i];
            EXIT WHEN v_want < 1;
        END LOOP;
        -- A new statement, so a new snapshot taken after the locks: it sees every claim that
        -- held these integrations before, and no other claim can add to them until this one
        -- commits. So each held integration's free slots are exact.
        RETURN QUERY
        WITH capacity AS (
            SELECT i.id AS integration_id,
                   CASE i.circuit WHEN 'closed' THEN i.max_concurrency WHEN 'half_open' THEN 1 ELSE 0 END
                   - (SELECT count(*) FROM dispatch.jobs r
                       WHERE r.integration_id = i.id AND r.status = 'running')::integer AS free
            FROM dispatch.integrations i
            WHERE i.id = ANY (v_held)
        ),
        -- Per integration, at most its free capacity, straight off the partial claim index, and
        -- only jobs up to the window's end: claim order holds across integrations.
        candidates AS (
            SELECT q.id, q.priority, q.run_after
            FROM capacity c
            CROSS JOIN LATERAL (
                SELECT j.id, j.priority, j.run_after FROM dispatch.jobs j
                WHERE j.integration_id = c.integration_id AND j.status = 'queued' AND j.run_after <= v_now
                  AND (j.priority, j.run_after, j.id) <= (v_priority, v_run_after, v_id)
                ORDER BY j.priority, j.run_after, j.id
                LIMIT least(c.free, p_limit - v_taken)  -- never read more than this claim can take
            ) q
            WHERE c.free > 0
            ORDER BY q.priority, q.run_after, q.id
            LIMIT p_limit - v_taken
        ),
        -- SKIP LOCKED: a row an operator (or a cancel) holds is skipped, never waited for.
        locked AS (
            SELECT j.id FROM dispatch.jobs j
            WHERE j.id = ANY (ARRAY(SELECT candidates.id FROM candidates)) AND j.status = 'queued'
            FOR UPDATE SKIP LOCKED
        )
        -- started_at is read now, after this statement's snapshot saw the capacity: a job that
        -- finished just before must never look as if it overlapped the one taking its slot.
        UPDATE dispatch.jobs j
           SET status = 'running', started_at = clock_timestamp(), attempts = j.attempts + 1, worker_id = p_worker,
               lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds)
          FROM dispatch.integrations i
         WHERE j.id = ANY (ARRAY(SELECT l.id FROM locked l)) AND i.id = j.integration_id
        RETURNING j.id, j.integration_id, j.kind, j.payload, j.attempts, j.max_attempts, j.scheduled_for,
                  j.run_after, j.enqueued_at, j.started_at, j.idempotency_key, j.schedule_id,
                  i.adapter, i.config, i.secret_name, i.circuit;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_taken := v_taken + v_n;
        EXIT WHEN v_taken >= p_limit OR v_seen < v_window;  -- full, or every due job was seen
        v_window := v_window * 2;
    END LOOP;
END $$;


--
-- Name: FUNCTION claim_jobs(p_worker text, p_limit integer, p_lease_seconds double precision); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.claim_jobs(p_worker text, p_limit integer, p_lease_seconds double precision) IS 'claim up to p_limit due jobs for p_worker, respecting each integration''s max_concurrency across all workers';


--
-- Name: confirm_write(bigint, text, jsonb); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.confirm_write(p_job_id bigint, p_reference text, p_document jsonb) RETURNS boolean
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    -- Upsert: a lookup may confirm a document whose intent predates the intents table.
    INSERT INTO dispatch.write_intents AS w (idempotency_key, reference, job_id, worker_id, confirmed_at, document)
    SELECT j.idempotency_key, p_reference, j.id, coalesce(j.worker_id, ''), clock_timestamp(), p_document
      FROM dispatch.jobs j WHERE j.id = p_job_id
    ON CONFLICT (idempotency_key) DO UPDATE
        SET confirmed_at = coalesce(w.confirmed_at, EXCLUDED.confirmed_at), document = EXCLUDED.document
    RETURNING true
$$;


--
-- Name: FUNCTION confirm_write(p_job_id bigint, p_reference text, p_document jsonb); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.confirm_write(p_job_id bigint, p_reference text, p_document jsonb) IS 'record what the vendor holds for a job''s key';


--
-- Name: cron_check(text, text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_check(expr text, tz text DEFAULT 'UTC'::text) RETURNS dispatch.cron_spec
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: FUNCTION cron_check(expr text, tz text); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.cron_check(expr text, tz text) IS 'validate a cron expression and time zone; raises invalid_parameter_value naming the bad field';


--
-- Name: cron_error(text, text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_error(p_expr text, p_detail text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    RAISE EXCEPTION 'invalid cron expression "%": %', p_expr, p_detail
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'five fields: minute hour day-of-month month day-of-week, e.g. ''0 2 * * *'', or @hourly/@daily/@weekly/@monthly/@yearly';
END $$;


--
-- Name: cron_field_value(text, text, integer); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_field_value(p_expr text, p_token text, p_idx integer) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $_$
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
END $_$;


--
-- Name: cron_field_values(text, text, integer); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_field_values(p_expr text, p_text text, p_idx integer) RETURNS integer[]
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $_$
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
END $_$;


--
-- Name: cron_next(dispatch.cron_spec, text, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_next(p_spec dispatch.cron_spec, p_tz text, p_after timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: cron_next(text, text, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_next(expr text, tz text, after timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT dispatch.cron_next(dispatch.cron_parse(expr), tz, after)
$$;


--
-- Name: FUNCTION cron_next(expr text, tz text, after timestamp with time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.cron_next(expr text, tz text, after timestamp with time zone) IS 'the first slot of expr in zone tz strictly after `after` (NULL: none within 50 years)';


--
-- Name: cron_parse(text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_parse(p_expr text) RETURNS dispatch.cron_spec
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: FUNCTION cron_parse(p_expr text); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.cron_parse(p_expr text) IS 'parse a 5-field cron expression (or @macro) once; raises invalid_parameter_value naming the bad field';


--
-- Name: cron_prev(dispatch.cron_spec, text, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_prev(p_spec dispatch.cron_spec, p_tz text, p_before timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: cron_prev(text, text, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_prev(expr text, tz text, before timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT dispatch.cron_prev(dispatch.cron_parse(expr), tz, before)
$$;


--
-- Name: FUNCTION cron_prev(expr text, tz text, before timestamp with time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.cron_prev(expr text, tz text, before timestamp with time zone) IS 'the last slot of expr in zone tz strictly before `before`';


--
-- Name: cron_prev_lookup(smallint[]); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_prev_lookup(p_next smallint[]) RETURNS smallint[]
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT ARRAY(SELECT max(CASE WHEN n = o - 1 THEN n END) OVER (ORDER BY o)
                   FROM unnest(p_next) WITH ORDINALITY AS u(n, o) ORDER BY o)::smallint[]
$$;


--
-- Name: cron_problem(text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_problem(p_expr text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    PERFORM dispatch.cron_parse(p_expr);
    RETURN NULL;
EXCEPTION WHEN data_exception THEN
    RETURN SQLERRM;
END $$;


--
-- Name: FUNCTION cron_problem(p_expr text); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.cron_problem(p_expr text) IS 'NULL when the cron expression parses, else why not';


--
-- Name: cron_slots(text, text, timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_slots(expr text, tz text, from_ts timestamp with time zone, to_ts timestamp with time zone) RETURNS SETOF timestamp with time zone
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: FUNCTION cron_slots(expr text, tz text, from_ts timestamp with time zone, to_ts timestamp with time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.cron_slots(expr text, tz text, from_ts timestamp with time zone, to_ts timestamp with time zone) IS 'the slots of expr in zone tz with from_ts < slot <= to_ts, in order';


--
-- Name: cron_wall_next(dispatch.cron_spec, timestamp without time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_wall_next(p_spec dispatch.cron_spec, p_after timestamp without time zone) RETURNS timestamp without time zone
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: cron_wall_prev(dispatch.cron_spec, timestamp without time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_wall_prev(p_spec dispatch.cron_spec, p_before timestamp without time zone) RETURNS timestamp without time zone
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: FUNCTION cron_wall_prev(p_spec dispatch.cron_spec, p_before timestamp without time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.cron_wall_prev(p_spec dispatch.cron_spec, p_before timestamp without time zone) IS 'the last wall-clock minute the expression allows strictly before p_before (NULL: none within 50 years)';


--
-- Name: cron_wall_to_instant(timestamp without time zone, text, boolean); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.cron_wall_to_instant(p_wall timestamp without time zone, p_tz text, p_skip_gap boolean) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: current_actor(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.current_actor() RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT coalesce(nullif(current_setting('dispatch.actor', true), ''), 'db:' || session_user)
$$;


--
-- Name: FUNCTION current_actor(); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.current_actor() IS 'SET LOCAL dispatch.actor (CLI: the OS user; API: jwt:<sub>), else db:<role>';


--
-- Name: current_reason(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.current_reason() RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT nullif(current_setting('dispatch.reason', true), '')
$$;


--
-- Name: enqueue(text, text, jsonb, timestamp with time zone, text, smallint, integer, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.enqueue(integration_id text, kind text, payload jsonb DEFAULT '{}'::jsonb, scheduled_for timestamp with time zone DEFAULT NULL::timestamp with time zone, idempotency_key text DEFAULT NULL::text, priority smallint DEFAULT 0, max_attempts integer DEFAULT NULL::integer, run_after timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS bigint
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $_$
    SELECT (dispatch.enqueue_job($1, $2, $3, $4, $5, $6, $7, $8, 'sql')).job_id
$_$;


--
-- Name: FUNCTION enqueue(integration_id text, kind text, payload jsonb, scheduled_for timestamp with time zone, idempotency_key text, priority smallint, max_attempts integer, run_after timestamp with time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.enqueue(integration_id text, kind text, payload jsonb, scheduled_for timestamp with time zone, idempotency_key text, priority smallint, max_attempts integer, run_after timestamp with time zone) IS 'enqueue a job and return its id; a repeated idempotency key returns the first job''s id';


--
-- Name: enqueue_job(text, text, jsonb, timestamp with time zone, text, smallint, integer, timestamp with time zone, text, bigint); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.enqueue_job(integration_id text, kind text, payload jsonb DEFAULT '{}'::jsonb, scheduled_for timestamp with time zone DEFAULT NULL::timestamp with time zone, idempotency_key text DEFAULT NULL::text, priority smallint DEFAULT 0, max_attempts integer DEFAULT NULL::integer, run_after timestamp with time zone DEFAULT NULL::timestamp with time zone, source text DEFAULT 'sql'::text, schedule_id bigint DEFAULT NULL::bigint, OUT job_id bigint, OUT duplicate boolean) RETURNS record
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
DECLARE
    v_key text := nullif(enqueue_job.idempotency_key, '');
BEGIN
    PERFORM dispatch.check_caller_key(enqueue_job.integration_id, enqueue_job.kind, v_key, enqueue_job.source);
    IF v_key IS NOT NULL THEN
        -- Reserve the key first: a concurrent caller with the same key waits here on the
        -- unique index, then sees our committed job and returns it.
        INSERT INTO dispatch.idempotency_keys (key, integration_id, kind, slot)
        VALUES (v_key, enqueue_job.integration_id, coalesce(enqueue_job.kind, ''),
                CASE WHEN enqueue_job.schedule_id IS NOT NULL THEN enqueue_job.scheduled_for END)
        ON CONFLICT (key) DO NOTHING;
        IF NOT FOUND THEN
            SELECT k.job_id INTO enqueue_job.job_id FROM dispatch.idempotency_keys k WHERE k.key = v_key;
            duplicate := true;
            RETURN;
        END IF;
    END IF;
    INSERT INTO dispatch.jobs (integration_id, kind, payload, scheduled_for, run_after,
                               idempotency_key, priority, max_attempts, source, schedule_id)
    VALUES (enqueue_job.integration_id, enqueue_job.kind, enqueue_job.payload,
            enqueue_job.scheduled_for, enqueue_job.run_after, v_key,
            coalesce(enqueue_job.priority, 0), coalesce(enqueue_job.max_attempts, 5),
            coalesce(enqueue_job.source, 'sql'), enqueue_job.schedule_id)
    RETURNING jobs.id INTO enqueue_job.job_id;
    duplicate := false;
END $$;


--
-- Name: FUNCTION enqueue_job(integration_id text, kind text, payload jsonb, scheduled_for timestamp with time zone, idempotency_key text, priority smallint, max_attempts integer, run_after timestamp with time zone, source text, schedule_id bigint, OUT job_id bigint, OUT duplicate boolean); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.enqueue_job(integration_id text, kind text, payload jsonb, scheduled_for timestamp with time zone, idempotency_key text, priority smallint, max_attempts integer, run_after timestamp with time zone, source text, schedule_id bigint, OUT job_id bigint, OUT duplicate boolean) IS 'enqueue a job; a repeated idempotency key returns the first job and duplicate = true';


--
-- Name: integration_secret(text, text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.integration_secret(p_integration_id text, p_default_name text DEFAULT NULL::text) RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
DECLARE
    v_name  text;
    v_value text;
BEGIN
    SELECT i.secret_name INTO v_name FROM dispatch.integrations i WHERE i.id = p_integration_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown integration "%"', p_integration_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'add it first: `integration-dispatch integrations add` or INSERT INTO dispatch.integrations';
    END IF;
    v_name := coalesce(nullif(v_name, ''), nullif(p_default_name, ''));
    IF v_name IS NULL THEN
        RAISE EXCEPTION 'integration "%" has no secret name', p_integration_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'set dispatch.integrations.secret_name, or VAULT_SECRET_NAME and the default_secret_name setting';
    END IF;
    -- Only names the operator has pointed at: an integration's secret_name, or the setting
    -- default_secret_name. A caller cannot name an arbitrary vault secret.
    IF NOT EXISTS (SELECT FROM dispatch.integrations i WHERE i.secret_name = v_name)
       AND v_name IS DISTINCT FROM dispatch.setting('default_secret_name', NULL) THEN
        RAISE EXCEPTION 'secret "%" is neither an integration''s secret_name nor the default_secret_name setting', v_name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'set dispatch.integrations.secret_name, or INSERT INTO dispatch.settings (key, value) VALUES (''default_secret_name'', <name>)';
    END IF;
    SELECT s.decrypted_secret INTO v_value FROM vault.decrypted_secrets s WHERE s.name = v_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'secret "%" for integration "%" is not in the vault', v_name, p_integration_id
            USING ERRCODE = 'no_data_found', HINT = 'add it with integration-dispatch secrets set ' || v_name;
    END IF;
    RETURN v_value;
END $$;


--
-- Name: FUNCTION integration_secret(p_integration_id text, p_default_name text); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.integration_secret(p_integration_id text, p_default_name text) IS 'the decrypted vault secret of an integration (its secret_name, else p_default_name); only names some integration or the default_secret_name setting references';


--
-- Name: is_schedule_key(text, text, text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.is_schedule_key(p_integration_id text, p_kind text, p_key text) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT left(p_key, length(p_integration_id) + length(p_kind) + 2) = p_integration_id || ':' || p_kind || ':'
$$;


--
-- Name: job_events_append_only(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.job_events_append_only() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    IF TG_OP = 'UPDATE' OR pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'dispatch.job_events is append-only (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'history leaves only with its job: dispatch.prune_jobs() or DELETE FROM dispatch.jobs';
    END IF;
    RETURN NULL;
END $$;


--
-- Name: job_events_json(bigint); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.job_events_json(p_job_id bigint) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT coalesce(jsonb_agg(to_jsonb(e) - 'job_id' ORDER BY e.id), '[]') FROM dispatch.job_events e WHERE e.job_id = p_job_id
$$;


--
-- Name: FUNCTION job_events_json(p_job_id bigint); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.job_events_json(p_job_id bigint) IS 'the history of one job as a JSON array, oldest first (for GET /jobs/{id})';


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: job_events; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.job_events (
    id bigint NOT NULL,
    job_id bigint NOT NULL,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    event text NOT NULL,
    status dispatch.job_status,
    attempt integer,
    worker_id text,
    actor text,
    reason text,
    error_class text,
    message text,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    CONSTRAINT job_events_event CHECK ((event = ANY (ARRAY['enqueued'::text, 'claimed'::text, 'attempt_failed'::text, 'parked'::text, 'rescued'::text, 'cancel_requested'::text, 'cancelled'::text, 'retried'::text, 'succeeded'::text, 'failed'::text])))
);


--
-- Name: TABLE job_events; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON TABLE dispatch.job_events IS 'append-only history of every job; deleted only with its job (retention)';


--
-- Name: job_timeline(bigint); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.job_timeline(p_job_id bigint) RETURNS SETOF dispatch.job_events
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT * FROM dispatch.job_events WHERE job_id = p_job_id ORDER BY id
$$;


--
-- Name: FUNCTION job_timeline(p_job_id bigint); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.job_timeline(p_job_id bigint) IS 'the history of one job, oldest first';


--
-- Name: jobs_before_insert(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.jobs_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    IF NEW.kind IS NULL OR btrim(NEW.kind) = '' THEN
        RAISE EXCEPTION 'job kind is empty'
            USING ERRCODE = 'check_violation', HINT = 'give a kind such as ''sync'' or ''export''';
    END IF;
    IF NEW.payload IS NULL OR jsonb_typeof(NEW.payload) <> 'object' THEN
        RAISE EXCEPTION 'job payload must be a JSON object, got %', coalesce(jsonb_typeof(NEW.payload), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'wrap the value in an object, e.g. {"value": ...}';
    END IF;
    PERFORM 1 FROM dispatch.integrations WHERE id = NEW.integration_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown integration "%"', NEW.integration_id
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'add it first: INSERT INTO dispatch.integrations (id, adapter) or `integration-dispatch integrations add`';
    END IF;
    PERFORM dispatch.check_caller_key(NEW.integration_id, NEW.kind, NEW.idempotency_key, NEW.source);
    NEW.scheduled_for := coalesce(NEW.scheduled_for, now());
    NEW.run_after := coalesce(NEW.run_after, NEW.scheduled_for);
    -- Receivers deduplicate on the key, so every job carries one.
    NEW.idempotency_key := coalesce(NEW.idempotency_key, 'job:' || NEW.id);
    RETURN NEW;
END $$;


--
-- Name: jobs_forget_events(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.jobs_forget_events() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    DELETE FROM dispatch.job_events e WHERE e.job_id = ANY (ARRAY(SELECT o.id FROM old_rows o));
    RETURN NULL;
END $$;


--
-- Name: jobs_ledger_insert(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.jobs_ledger_insert() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
DECLARE
    v_taken bigint;
BEGIN
    INSERT INTO dispatch.idempotency_keys AS k (key, integration_id, kind, slot, job_id)
    SELECT n.idempotency_key, n.integration_id, n.kind,
           CASE WHEN n.schedule_id IS NOT NULL THEN n.scheduled_for END, n.id
    FROM new_rows n
    ON CONFLICT (key) DO UPDATE SET job_id = EXCLUDED.job_id, updated_at = now()
        WHERE k.job_id IS NULL;              -- a reservation made by dispatch.enqueue()
    SELECT n.id INTO v_taken FROM new_rows n
        JOIN dispatch.idempotency_keys k ON k.key = n.idempotency_key
        WHERE k.job_id IS DISTINCT FROM n.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'idempotency key already used by another job'
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'idempotency_keys_pkey',
                  HINT = 'use dispatch.enqueue(), which returns the existing job for a repeated key';
    END IF;
    RETURN NULL;
END $$;


--
-- Name: jobs_notify(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.jobs_notify() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    PERFORM pg_notify('dispatch_jobs', '');
    RETURN NULL;
END $$;


--
-- Name: jobs_record_batch(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.jobs_record_batch() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    -- Lease renewals and other updates that change no status find nothing here.
    INSERT INTO dispatch.job_events (job_id, event, status, attempt, worker_id, actor, details)
    SELECT n.id,
           CASE WHEN n.status = 'running' THEN 'claimed' ELSE 'succeeded' END,
           n.status,
           CASE WHEN n.status = 'running' THEN n.attempts ELSE o.attempts END,
           CASE WHEN n.status = 'running' THEN n.worker_id ELSE o.worker_id END,
           -- A success written after its lease ran out names who wrote it, as a rescue would.
           CASE WHEN o.status = 'running' AND o.lease_expires_at < clock_timestamp() THEN dispatch.current_actor()
                ELSE nullif(current_setting('dispatch.actor', true), '') END,
           CASE WHEN n.status = 'running' THEN
                    jsonb_build_object('lease_expires_at', n.lease_expires_at,
                                       'drift_seconds', round(extract(epoch FROM n.started_at - n.scheduled_for)::numeric, 3))
                ELSE jsonb_strip_nulls(jsonb_build_object(
                    'started_at', o.started_at,
                    'seconds', round(extract(epoch FROM clock_timestamp() - o.started_at)::numeric, 3),
                    'lease_expired_at', CASE WHEN o.lease_expires_at < clock_timestamp() THEN o.lease_expires_at END))
           END
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE (o.status = 'queued' AND n.status = 'running') OR (o.status = 'running' AND n.status = 'succeeded')
     ORDER BY n.id;
    -- ANY(ARRAY(...)), not a join with old_rows: the planner cannot see the transition tables'
    -- sizes and chose a nested loop that rescanned old_rows once per row.
    UPDATE dispatch.idempotency_keys k
       SET state = 'succeeded', result = n.result, updated_at = now()
      FROM new_rows n
     WHERE k.key = n.idempotency_key AND n.status = 'succeeded'
       AND n.id = ANY (ARRAY(SELECT o.id FROM old_rows o WHERE o.status = 'running'));
    RETURN NULL;
END $$;


--
-- Name: FUNCTION jobs_record_batch(); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.jobs_record_batch() IS 'history and ledger for claims and successes, once per statement (the row triggers record every other transition)';


--
-- Name: jobs_record_enqueued(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.jobs_record_enqueued() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    INSERT INTO dispatch.job_events (job_id, event, status, attempt, actor, reason, details)
    SELECT n.id, 'enqueued', n.status, n.attempts,
           CASE WHEN n.source = 'cron' THEN coalesce(nullif(current_setting('dispatch.actor', true), ''), 'scheduler')
                ELSE dispatch.current_actor() END,
           dispatch.current_reason(),
           jsonb_strip_nulls(jsonb_build_object('source', n.source, 'scheduled_for', n.scheduled_for, 'run_after', n.run_after,
                                                'idempotency_key', n.idempotency_key, 'schedule_id', n.schedule_id))
      FROM new_rows n ORDER BY n.id;
    RETURN NULL;
END $$;


--
-- Name: jobs_record_transition(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.jobs_record_transition() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
DECLARE
    v_event text;
    v_class text;
    v_manual boolean := false;
    v_worker text := OLD.worker_id;
    v_details jsonb := '{}';
    v_message text;
    v_expired boolean := OLD.status = 'running' AND OLD.lease_expires_at < clock_timestamp();
BEGIN
    IF OLD.status = NEW.status THEN
        IF OLD.cancel_requested_at IS NOT NULL OR NEW.cancel_requested_at IS NULL THEN
            RETURN NULL;
        END IF;
        v_event := 'cancel_requested'; v_manual := true;
    ELSIF NEW.status = 'running' THEN
        v_event := 'claimed'; v_worker := NEW.worker_id;
        v_details := jsonb_build_object('lease_expires_at', NEW.lease_expires_at,
                                        'drift_seconds', round(extract(epoch FROM NEW.started_at - NEW.scheduled_for)::numeric, 3));
    ELSIF OLD.status = 'running' THEN
        v_message := NEW.last_error;
        v_details := jsonb_build_object('started_at', OLD.started_at,
                                        'seconds', round(extract(epoch FROM clock_timestamp() - OLD.started_at)::numeric, 3));
        IF NEW.status = 'succeeded' THEN
            v_event := 'succeeded'; v_message := NULL;
        ELSIF NEW.status = 'cancelled' THEN
            v_event := 'cancelled'; v_class := 'cancelled';
        ELSIF NEW.status = 'failed' THEN
            v_event := 'failed';
            v_class := CASE WHEN v_expired THEN 'lease_expired'
                            WHEN NEW.attempts >= NEW.max_attempts THEN 'attempts_exhausted' ELSE 'permanent' END;
        ELSIF v_expired THEN
            v_event := 'rescued'; v_class := 'lease_expired';
        ELSIF NEW.attempts < OLD.attempts THEN   -- the attempt was given back: circuit open, shutdown, vendor wait
            v_event := 'parked'; v_class := 'parked';
            v_details := v_details || jsonb_build_object('run_after', NEW.run_after);
        ELSE
            v_event := 'attempt_failed'; v_class := 'retryable';
            v_details := v_details || jsonb_build_object('retry_at', NEW.run_after);
        END IF;
        IF v_expired THEN
            v_details := v_details || jsonb_build_object('lease_expired_at', OLD.lease_expires_at);
        END IF;
    ELSIF NEW.status = 'queued' THEN
        -- A finished job put back in the queue: its previous run stays on record here.
        v_event := 'retried'; v_manual := true; v_worker := NULL;
        v_details := jsonb_build_object('previous', jsonb_build_object(
            'status', OLD.status, 'attempts', OLD.attempts, 'started_at', OLD.started_at,
            'finished_at', OLD.finished_at, 'worker_id', OLD.worker_id, 'last_error', dispatch.redact(OLD.last_error)));
    ELSE
        -- queued -> cancelled (an operator), or any hand-written change of state.
        v_event := NEW.status::text; v_manual := true; v_message := NEW.last_error;
        v_class := CASE WHEN NEW.status = 'cancelled' THEN 'cancelled' END;
    END IF;
    IF v_message IS NOT NULL THEN
        v_details := v_details || coalesce(jsonb_build_object('exception',
            (regexp_match(v_message, '^(unexpected )?([A-Z][A-Za-z0-9_]*(Error|Exception|Timeout))\M'))[2]), '{}');
    END IF;
    INSERT INTO dispatch.job_events (job_id, event, status, attempt, worker_id, actor, reason, error_class, message, details)
    VALUES (NEW.id, v_event, NEW.status, CASE WHEN NEW.status = 'running' THEN NEW.attempts ELSE OLD.attempts END, v_worker,
            CASE WHEN v_manual OR v_expired THEN dispatch.current_actor() ELSE nullif(current_setting('dispatch.actor', true), '') END,
            CASE WHEN v_manual THEN dispatch.current_reason() END,
            v_class, CASE WHEN v_message IS NOT NULL THEN dispatch.redact(v_message) END,
            CASE WHEN v_event = 'claimed' THEN v_details ELSE jsonb_strip_nulls(v_details) END);
    RETURN NULL;
END $$;


--
-- Name: jobs_terminal(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.jobs_terminal() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    UPDATE dispatch.idempotency_keys
       SET state = CASE WHEN NEW.status IN ('queued', 'running') THEN 'pending' ELSE NEW.status::text END,
           result = CASE WHEN NEW.status = 'succeeded' THEN NEW.result ELSE result END,
           updated_at = now()
     WHERE key = NEW.idempotency_key;
    IF NEW.status = 'failed' THEN
        PERFORM dispatch.raise_alert('job_failed', 'job:' || NEW.id,
            format('job %s (%s %s) failed after %s attempt(s): %s', NEW.id, NEW.integration_id, NEW.kind,
                   NEW.attempts, coalesce(NEW.last_error, 'no error recorded')),
            jsonb_build_object('attempts', NEW.attempts, 'scheduled_for', NEW.scheduled_for),
            NEW.integration_id, NEW.id, NEW.schedule_id);
    ELSIF OLD.status = 'failed' THEN
        PERFORM dispatch.resolve_alert('job_failed', 'job:' || NEW.id);
    END IF;
    RETURN NULL;
END $$;


--
-- Name: tick_runs; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.tick_runs (
    id bigint NOT NULL,
    acting_for timestamp with time zone NOT NULL,
    started_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    duration_ms double precision,
    inserted integer DEFAULT 0 NOT NULL,
    skipped integer DEFAULT 0 NOT NULL,
    caller text NOT NULL,
    lateness_ms double precision
);


--
-- Name: last_tick(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.last_tick() RETURNS dispatch.tick_runs
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT * FROM dispatch.tick_runs ORDER BY started_at DESC LIMIT 1
$$;


--
-- Name: maintain(timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.maintain(now timestamp with time zone DEFAULT now()) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
DECLARE
    v_batch integer := dispatch.setting('prune_batch_size', '20000')::integer;
    v_batches integer := dispatch.setting('prune_batches_per_run', '50')::integer;
    v_pruned integer;
BEGIN
    DELETE FROM dispatch.tick_runs WHERE started_at < maintain.now - dispatch.retention('tick_runs_retention_days', '7');
    DELETE FROM dispatch.alerts WHERE resolved_at < maintain.now - dispatch.retention('alert_retention_days', '90');
    DELETE FROM dispatch.workers WHERE heartbeat_at < maintain.now - dispatch.retention('worker_retention_days', '7');
    -- Crashed daemons' jobs come back even when no daemon is running to rescue them.
    PERFORM dispatch.rescue_expired_leases();
    -- Until the backlog is gone (a daemon finishes thousands of jobs a second), within a bound.
    FOR i IN 1..v_batches LOOP
        v_pruned := dispatch.prune_jobs(dispatch.retention('job_retention_days', '30'), v_batch);
        EXIT WHEN v_pruned < v_batch;
    END LOOP;
    FOR i IN 1..v_batches LOOP
        v_pruned := dispatch.prune_ledger_results(dispatch.retention('ledger_result_retention_days', '90'), v_batch);
        EXIT WHEN v_pruned < v_batch;
    END LOOP;
    RETURN dispatch.check_alerts(maintain.now);
END $$;


--
-- Name: FUNCTION maintain(now timestamp with time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.maintain(now timestamp with time zone) IS 'the per-minute pg_cron duty: lease rescue, retention of jobs and ledger results (in batches until done), tick runs, alerts and workers, alert checks';


--
-- Name: period_end_for(text, text, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.period_end_for(p_period text, p_tz text, p_slot timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE WHEN p_period OPERATOR(pg_catalog.=) 'slot' THEN p_slot
                ELSE pg_catalog.timezone(p_tz, pg_catalog.date_trunc(p_period, pg_catalog.timezone(p_tz, p_slot))) END
$$;


--
-- Name: period_label(text, text, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.period_label(p_period text, p_tz text, p_end timestamp with time zone) RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE WHEN p_period OPERATOR(pg_catalog.=) 'day'
                THEN pg_catalog.to_char(pg_catalog.timezone(p_tz, p_end) OPERATOR(pg_catalog.-) '1 day'::pg_catalog.interval, 'YYYY-MM-DD')
                WHEN p_period OPERATOR(pg_catalog.=) 'week'
                THEN pg_catalog.to_char(pg_catalog.timezone(p_tz, p_end) OPERATOR(pg_catalog.-) '1 day'::pg_catalog.interval, 'IYYY-"W"IW')
                WHEN p_period OPERATOR(pg_catalog.=) 'month'
                THEN pg_catalog.to_char(pg_catalog.timezone(p_tz, p_end) OPERATOR(pg_catalog.-) '1 day'::pg_catalog.interval, 'YYYY-MM')
                ELSE dispatch.slot_iso(p_end) END
$$;


--
-- Name: period_natural_start(text, text, timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.period_natural_start(p_period text, p_tz text, p_slot timestamp with time zone, p_prev_slot timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE WHEN p_period OPERATOR(pg_catalog.=) 'slot' THEN p_prev_slot
                ELSE pg_catalog.timezone(p_tz, pg_catalog.date_trunc(p_period, pg_catalog.timezone(p_tz, p_slot))
                                               OPERATOR(pg_catalog.-) ('1 ' OPERATOR(pg_catalog.||) p_period)::pg_catalog.interval) END
$$;


--
-- Name: prune_jobs(interval, integer); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.prune_jobs(p_older_than interval, p_limit integer DEFAULT 10000) RETURNS integer
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    SET jit TO 'off'
    AS $$
    WITH old AS (
        SELECT id FROM dispatch.jobs
        WHERE finished_at < clock_timestamp() - p_older_than AND status IN ('succeeded', 'failed', 'cancelled')
        ORDER BY finished_at LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        -- ANY(ARRAY(...)) here and below: probes of the primary key. As joins, the planner hashed
        -- the whole table (jobs, the ledger) once per batch.
        DELETE FROM dispatch.jobs j WHERE j.id = ANY (ARRAY(SELECT old.id FROM old))
        RETURNING j.id, j.idempotency_key
    ), own_keys AS (
        -- A job's own key ('job:<id>': callers cannot give one) leaves with its job. Keys a vendor
        -- write was recorded under stay, with their write_intents row.
        DELETE FROM dispatch.idempotency_keys k
         WHERE k.key = ANY (ARRAY(SELECT g.idempotency_key FROM gone g WHERE g.idempotency_key = 'job:' || g.id))
           AND k.slot IS NULL
           AND NOT EXISTS (SELECT 1 FROM dispatch.write_intents w WHERE w.idempotency_key = k.key)
           AND NOT coalesce(k.state = 'succeeded' AND k.result ? 'cursor' AND k.updated_at >= (
               SELECT n.updated_at FROM dispatch.idempotency_keys n
                WHERE n.integration_id = k.integration_id AND n.kind = k.kind AND n.state = 'succeeded'
                  AND n.result ? 'cursor'
                ORDER BY n.updated_at DESC LIMIT 1), false)
    )
    SELECT count(*)::integer FROM gone
$$;


--
-- Name: FUNCTION prune_jobs(p_older_than interval, p_limit integer); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.prune_jobs(p_older_than interval, p_limit integer) IS 'delete finished jobs older than p_older_than (at most p_limit), their history, and the ledger rows of their own job:<id> keys; callers'' and schedules'' keys are kept';


--
-- Name: prune_ledger_results(interval, integer); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.prune_ledger_results(p_older_than interval, p_limit integer DEFAULT 10000) RETURNS integer
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    SET jit TO 'off'
    AS $$
    WITH old AS (
        SELECT k.key FROM dispatch.idempotency_keys k
         WHERE k.slot IS NULL AND k.result IS NOT NULL AND k.key NOT LIKE 'job:%'
           AND k.updated_at < clock_timestamp() - p_older_than
           AND NOT coalesce(k.state = 'succeeded' AND k.result ? 'cursor' AND k.updated_at >= (
               SELECT n.updated_at FROM dispatch.idempotency_keys n
                WHERE n.integration_id = k.integration_id AND n.kind = k.kind AND n.state = 'succeeded'
                  AND n.result ? 'cursor'
                ORDER BY n.updated_at DESC LIMIT 1), false)
         ORDER BY k.updated_at LIMIT p_limit
         FOR UPDATE SKIP LOCKED
    ), cleared AS (
        -- updated_at stays: it is when the key's job last changed, not when retention came by.
        UPDATE dispatch.idempotency_keys k SET result = NULL
         WHERE k.key = ANY (ARRAY(SELECT old.key FROM old))
        RETURNING 1
    )
    SELECT count(*)::integer FROM cleared
$$;


--
-- Name: FUNCTION prune_ledger_results(p_older_than interval, p_limit integer); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.prune_ledger_results(p_older_than interval, p_limit integer) IS 'clear the result of callers'' ad-hoc keys last updated before p_older_than (at most p_limit); the keys stay, schedules'' keys are never touched';


--
-- Name: raise_alert(text, text, text, jsonb, text, bigint, bigint); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.raise_alert(p_kind text, p_subject text, p_message text, p_details jsonb DEFAULT '{}'::jsonb, p_integration_id text DEFAULT NULL::text, p_job_id bigint DEFAULT NULL::bigint, p_schedule_id bigint DEFAULT NULL::bigint) RETURNS bigint
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    INSERT INTO dispatch.alerts AS a (kind, subject, message, details, integration_id, job_id, schedule_id)
    VALUES (p_kind, p_subject, p_message, coalesce(p_details, '{}'), p_integration_id, p_job_id, p_schedule_id)
    ON CONFLICT (kind, subject) WHERE resolved_at IS NULL
    DO UPDATE SET last_seen_at = now(), message = EXCLUDED.message, details = EXCLUDED.details
    RETURNING a.id
$$;


--
-- Name: FUNCTION raise_alert(p_kind text, p_subject text, p_message text, p_details jsonb, p_integration_id text, p_job_id bigint, p_schedule_id bigint); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.raise_alert(p_kind text, p_subject text, p_message text, p_details jsonb, p_integration_id text, p_job_id bigint, p_schedule_id bigint) IS 'open (or refresh) the one open alert for (kind, subject)';


--
-- Name: raise_no_future_slot(bigint, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.raise_no_future_slot(p_schedule_id bigint, p_after timestamp with time zone) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: FUNCTION raise_no_future_slot(p_schedule_id bigint, p_after timestamp with time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.raise_no_future_slot(p_schedule_id bigint, p_after timestamp with time zone) IS 'open (or refresh) the no_future_slot alert of an enabled schedule with no next slot, saying why';


--
-- Name: raise_schedule_invalid(bigint, text, text, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.raise_schedule_invalid(p_schedule_id bigint, p_problem text, p_sqlstate text, p_acting_for timestamp with time zone) RETURNS bigint
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: FUNCTION raise_schedule_invalid(p_schedule_id bigint, p_problem text, p_sqlstate text, p_acting_for timestamp with time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.raise_schedule_invalid(p_schedule_id bigint, p_problem text, p_sqlstate text, p_acting_for timestamp with time zone) IS 'open (or refresh) the schedule_invalid alert of a schedule the tick could not run';


--
-- Name: redact(text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.redact(p_text text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT left(regexp_replace(regexp_replace(p_text,
               '\m(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}', '\1\2[redacted]', 'gi'),
               '\m(access_token|refresh_token|client_secret|password)(["'']?\s*[:=]\s*["'']?)[^"''&\s,}]+', '\1\2[redacted]', 'gi'),
               2000)
$$;


--
-- Name: rescue_expired_leases(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.rescue_expired_leases() RETURNS integer
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    WITH expired AS (
        SELECT j.id, j.cancel_requested_at IS NOT NULL AND NOT EXISTS (
                   SELECT 1 FROM dispatch.write_intents w
                    WHERE w.idempotency_key = j.idempotency_key AND w.confirmed_at IS NULL) AS cancel_now
        FROM dispatch.jobs j
        WHERE j.status = 'running' AND j.lease_expires_at < clock_timestamp()
        FOR UPDATE OF j SKIP LOCKED
    ), rescued AS (
        UPDATE dispatch.jobs j
           SET status = CASE WHEN e.cancel_now THEN 'cancelled'
                             WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'queued' END::dispatch.job_status,
               last_error = CASE WHEN e.cancel_now
                                 THEN format('cancelled: its lease expired at %s on worker %s before the cancel reached it, and no vendor write was in flight',
                                             j.lease_expires_at, j.worker_id)
                                 ELSE format('lease expired at %s on worker %s (the worker crashed, hung or lost the database)',
                                             j.lease_expires_at, j.worker_id) END,
               finished_at = CASE WHEN e.cancel_now OR j.attempts >= j.max_attempts THEN clock_timestamp() END,
               run_after = CASE WHEN e.cancel_now OR j.attempts >= j.max_attempts THEN j.run_after ELSE clock_timestamp() END,
               worker_id = CASE WHEN e.cancel_now OR j.attempts >= j.max_attempts THEN j.worker_id END,
               lease_expires_at = NULL
          FROM expired e WHERE j.id = e.id
        RETURNING 1)
    SELECT count(*)::integer FROM rescued
$$;


--
-- Name: resolve_alert(text, text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.resolve_alert(p_kind text, p_subject text) RETURNS integer
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    WITH r AS (
        UPDATE dispatch.alerts SET resolved_at = now()
        WHERE kind = p_kind AND subject = p_subject AND resolved_at IS NULL RETURNING 1)
    SELECT count(*)::integer FROM r
$$;


--
-- Name: retention(text, text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.retention(p_key text, p_default_days text) RETURNS interval
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT dispatch.setting(p_key, p_default_days)::double precision * interval '1 day'
$$;


--
-- Name: FUNCTION retention(p_key text, p_default_days text); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.retention(p_key text, p_default_days text) IS 'a *_retention_days setting as an interval (fractions of a day allowed)';


--
-- Name: schedule_due_slots(dispatch.cron_spec, text, timestamp with time zone, timestamp with time zone, integer); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.schedule_due_slots(v_spec dispatch.cron_spec, p_tz text, p_from timestamp with time zone, p_until timestamp with time zone, p_cap integer) RETURNS TABLE(slot timestamp with time zone, period_start timestamp with time zone, is_next boolean)
    LANGUAGE plpgsql STABLE ROWS 2
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: schedule_periods(bigint, timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.schedule_periods(p_schedule_id bigint, p_from timestamp with time zone, p_to timestamp with time zone) RETURNS TABLE(slot timestamp with time zone, period_start timestamp with time zone, period_end timestamp with time zone, period_label text, key text)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT DISTINCT ON (p.period_end) p.slot,
           dispatch.period_natural_start(s.period, s.timezone, p.slot, dispatch.cron_prev(s.cron_spec, s.timezone, p.slot)),
           p.period_end, dispatch.period_label(s.period, s.timezone, p.period_end),
           dispatch.slot_key(s.integration_id, s.kind, p.period_end)
      FROM dispatch.schedules s
     CROSS JOIN LATERAL dispatch.cron_slots(s.cron, s.timezone, p_from - interval '1 microsecond', p_to) AS x(slot)
     CROSS JOIN LATERAL (SELECT x.slot, dispatch.period_end_for(s.period, s.timezone, x.slot) AS period_end) p
     WHERE s.id = p_schedule_id
     ORDER BY p.period_end, p.slot
$$;


--
-- Name: FUNCTION schedule_periods(p_schedule_id bigint, p_from timestamp with time zone, p_to timestamp with time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.schedule_periods(p_schedule_id bigint, p_from timestamp with time zone, p_to timestamp with time zone) IS 'the periods closed by a schedule''s slots in [p_from, p_to], with the keys the tick would give them';


--
-- Name: schedules_alerts(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.schedules_alerts() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: schedules_before_write(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.schedules_before_write() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: setting(text, text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.setting(p_key text, p_default text) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT coalesce((SELECT value FROM dispatch.settings WHERE key = p_key), p_default)
$$;


--
-- Name: slot_iso(timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.slot_iso(p_slot timestamp with time zone) RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT pg_catalog.to_char(pg_catalog.timezone('UTC', p_slot), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;


--
-- Name: slot_key(text, text, timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.slot_key(p_integration_id text, p_kind text, p_slot timestamp with time zone) RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT p_integration_id OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) p_kind
           OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) dispatch.slot_iso(p_slot)
$$;


--
-- Name: FUNCTION slot_key(p_integration_id text, p_kind text, p_slot timestamp with time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.slot_key(p_integration_id text, p_kind text, p_slot timestamp with time zone) IS 'the idempotency key of scheduled work: <integration_id>:<kind>:<slot in UTC ISO 8601>';


--
-- Name: tick(timestamp with time zone); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.tick(now timestamp with time zone DEFAULT now()) RETURNS integer
    LANGUAGE plpgsql
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: FUNCTION tick(now timestamp with time zone); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.tick(now timestamp with time zone) IS 'insert one job per due period (lookahead, catch-up policy, contiguous periods, ledger dedup), advance next_slot; a schedule that cannot be run is alerted and skipped alone; returns jobs inserted';


--
-- Name: tick_caller(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.tick_caller() RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
    SELECT CASE WHEN current_setting('application_name') = 'pg_cron'
                  OR (SELECT a.backend_type FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()) = 'pg_cron'
                THEN 'pg_cron'
                ELSE coalesce(nullif(current_setting('dispatch.tick_caller', true), ''), 'manual') END
$$;


--
-- Name: FUNCTION tick_caller(); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.tick_caller() IS 'pg_cron when pg_cron runs us, else SET dispatch.tick_caller (e.g. watchdog), else manual';


--
-- Name: tick_isolated(bigint[], timestamp with time zone, timestamp with time zone, interval, integer); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.tick_isolated(p_ids bigint[], p_now timestamp with time zone, p_until timestamp with time zone, p_grace interval, p_cap integer, OUT n_inserted integer, OUT n_skipped integer, OUT n_failed integer) RETURNS record
    LANGUAGE plpgsql
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: FUNCTION tick_isolated(p_ids bigint[], p_now timestamp with time zone, p_until timestamp with time zone, p_grace interval, p_cap integer, OUT n_inserted integer, OUT n_skipped integer, OUT n_failed integer); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.tick_isolated(p_ids bigint[], p_now timestamp with time zone, p_until timestamp with time zone, p_grace interval, p_cap integer, OUT n_inserted integer, OUT n_skipped integer, OUT n_failed integer) IS 'tick_schedules where one schedule''s failure is alerted (schedule_invalid) and skipped, never the others''';


--
-- Name: tick_schedules(bigint[], timestamp with time zone, timestamp with time zone, interval, integer); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.tick_schedules(p_ids bigint[], p_now timestamp with time zone, p_until timestamp with time zone, p_grace interval, p_cap integer, OUT n_inserted integer, OUT n_skipped integer, OUT n_adjusted integer) RETURNS record
    LANGUAGE plpgsql
    SET jit TO 'off'
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
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


--
-- Name: FUNCTION tick_schedules(p_ids bigint[], p_now timestamp with time zone, p_until timestamp with time zone, p_grace interval, p_cap integer, OUT n_inserted integer, OUT n_skipped integer, OUT n_adjusted integer); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.tick_schedules(p_ids bigint[], p_now timestamp with time zone, p_until timestamp with time zone, p_grace interval, p_cap integer, OUT n_inserted integer, OUT n_skipped integer, OUT n_adjusted integer) IS 'the tick''s statement over the given (locked, due) schedules: jobs, catch-up, alerts, next_slot';


--
-- Name: time_zone_problem(text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.time_zone_problem(p_tz text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    PERFORM pg_catalog.now() AT TIME ZONE p_tz;
    RETURN NULL;
EXCEPTION WHEN data_exception THEN
    RETURN SQLERRM;
END $$;


--
-- Name: FUNCTION time_zone_problem(p_tz text); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.time_zone_problem(p_tz text) IS 'NULL when this server knows the time zone, else the error using it raises';


--
-- Name: touch_updated_at(); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;


--
-- Name: withdraw_write(bigint, text, text); Type: FUNCTION; Schema: dispatch; Owner: -
--

CREATE FUNCTION dispatch.withdraw_write(p_job_id bigint, p_worker text, p_reference text) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'dispatch', 'pg_temp'
    AS $$
DECLARE
    v_key text;
BEGIN
    SELECT j.idempotency_key INTO v_key FROM dispatch.jobs j
     WHERE j.id = p_job_id AND j.worker_id = p_worker AND j.status = 'running';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM dispatch.write_intents
     WHERE idempotency_key = v_key AND reference = p_reference AND confirmed_at IS NULL AND sends = 1;
    IF FOUND THEN
        RETURN true;
    END IF;
    UPDATE dispatch.write_intents
       SET last_sent_at = coalesce(previous_sent_at, last_sent_at), previous_sent_at = NULL, sends = sends - 1
     WHERE idempotency_key = v_key AND reference = p_reference AND confirmed_at IS NULL AND sends > 1;
    RETURN FOUND;
END $$;


--
-- Name: FUNCTION withdraw_write(p_job_id bigint, p_worker text, p_reference text); Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON FUNCTION dispatch.withdraw_write(p_job_id bigint, p_worker text, p_reference text) IS 'the owner''s last send was refused by the vendor before it ran: it cannot land, so it does not hold the window';


--
-- Name: _crypto_aead_det_decrypt(bytea, bytea, bigint, bytea, bytea); Type: FUNCTION; Schema: vault; Owner: -
--

CREATE FUNCTION vault._crypto_aead_det_decrypt(message bytea, additional bytea, key_id bigint, context bytea DEFAULT '\x7067736f6469756d'::bytea, nonce bytea DEFAULT NULL::bytea) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
DECLARE
    v_root bytea;
    v_len integer := pg_catalog.length(message);
    v_ct bytea;
BEGIN
    IF message IS NULL THEN
        RETURN NULL;
    END IF;
    IF nonce IS NULL OR pg_catalog.length(nonce) <> 16 OR v_len < 48 OR (v_len - 32) % 16 <> 0 THEN
        RAISE EXCEPTION 'vault._crypto_aead_det_decrypt: invalid ciphertext' USING ERRCODE = 'data_exception';
    END IF;
    v_root := vault._root_key();
    v_ct := pg_catalog.substr(message, 1, v_len - 32);
    IF "extensions".hmac(pg_catalog.int4send(pg_catalog.length(coalesce(additional, ''::bytea)))
                  || coalesce(additional, ''::bytea) || nonce || v_ct,
                  "extensions".hmac('mac:'::bytea || context, v_root, 'sha256'), 'sha256')
       IS DISTINCT FROM pg_catalog.substr(message, v_len - 31) THEN
        RAISE EXCEPTION 'vault._crypto_aead_det_decrypt: invalid ciphertext' USING ERRCODE = 'data_exception';
    END IF;
    RETURN "extensions".decrypt_iv(v_ct, "extensions".hmac('enc:'::bytea || context, v_root, 'sha256'), nonce, 'aes-cbc/pad:pkcs');
END $$;


--
-- Name: _crypto_aead_det_encrypt(bytea, bytea, bigint, bytea, bytea); Type: FUNCTION; Schema: vault; Owner: -
--

CREATE FUNCTION vault._crypto_aead_det_encrypt(message bytea, additional bytea, key_id bigint, context bytea DEFAULT '\x7067736f6469756d'::bytea, nonce bytea DEFAULT NULL::bytea) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
DECLARE
    v_root bytea := vault._root_key();
    v_ct bytea;
BEGIN
    IF message IS NULL THEN
        RETURN NULL;
    END IF;
    IF nonce IS NULL OR pg_catalog.length(nonce) <> 16 THEN
        RAISE EXCEPTION 'vault._crypto_aead_det_encrypt: the nonce must be 16 bytes' USING ERRCODE = 'data_exception';
    END IF;
    v_ct := "extensions".encrypt_iv(message, "extensions".hmac('enc:'::bytea || context, v_root, 'sha256'), nonce, 'aes-cbc/pad:pkcs');
    -- Encrypt-then-MAC; the length prefix keeps (additional, nonce, ciphertext) unambiguous.
    RETURN v_ct || "extensions".hmac(pg_catalog.int4send(pg_catalog.length(coalesce(additional, ''::bytea)))
                              || coalesce(additional, ''::bytea) || nonce || v_ct,
                              "extensions".hmac('mac:'::bytea || context, v_root, 'sha256'), 'sha256');
END $$;


--
-- Name: _crypto_aead_det_noncegen(); Type: FUNCTION; Schema: vault; Owner: -
--

CREATE FUNCTION vault._crypto_aead_det_noncegen() RETURNS bytea
    LANGUAGE sql
    SET search_path TO ''
    AS $$ SELECT "extensions".gen_random_bytes(16) $$;


--
-- Name: _root_key(); Type: FUNCTION; Schema: vault; Owner: -
--

CREATE FUNCTION vault._root_key() RETURNS bytea
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $_$
DECLARE
    v_hex text := pg_catalog.btrim(pg_catalog.pg_read_file('vault_root.key', 0, 256, true), E' \t\r\n');
BEGIN
    IF v_hex IS NULL OR v_hex !~ '^[0-9a-fA-F]{64}$' THEN
        RAISE EXCEPTION 'vault root key file "vault_root.key" is missing or malformed in the data directory'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'restore it from backup; without it no stored secret can be decrypted';
    END IF;
    RETURN pg_catalog.decode(v_hex, 'hex');
END $_$;


--
-- Name: create_secret(text, text, text, uuid); Type: FUNCTION; Schema: vault; Owner: -
--

CREATE FUNCTION vault.create_secret(new_secret text, new_name text DEFAULT NULL::text, new_description text DEFAULT ''::text, new_key_id uuid DEFAULT NULL::uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
DECLARE
  v_id uuid := pg_catalog.gen_random_uuid();
  v_nonce bytea := vault._crypto_aead_det_noncegen();
BEGIN
  INSERT INTO vault.secrets (id, secret, name, description, nonce)
  VALUES (
    v_id,
    pg_catalog.encode(vault._crypto_aead_det_encrypt(
      message := pg_catalog.convert_to(new_secret, 'utf8'),
      additional := pg_catalog.convert_to(v_id::text, 'utf8'),
      key_id := 0,
      context := 'pgsodium'::bytea,
      nonce := v_nonce
    ), 'base64'),
    new_name,
    new_description,
    v_nonce
  );
  RETURN v_id;
END
$$;


--
-- Name: update_secret(uuid, text, text, text, uuid); Type: FUNCTION; Schema: vault; Owner: -
--

CREATE FUNCTION vault.update_secret(secret_id uuid, new_secret text DEFAULT NULL::text, new_name text DEFAULT NULL::text, new_description text DEFAULT NULL::text, new_key_id uuid DEFAULT NULL::uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
DECLARE
  -- As upstream: a row whose ciphertext no longer verifies errors here (only DELETE helps).
  v_current text := (SELECT d.decrypted_secret FROM vault.decrypted_secrets d WHERE d.id = secret_id);
  v_nonce bytea := vault._crypto_aead_det_noncegen();
BEGIN
  UPDATE vault.secrets s
  SET
    secret = CASE WHEN new_secret IS NULL THEN s.secret
                  ELSE pg_catalog.encode(vault._crypto_aead_det_encrypt(
                    message := pg_catalog.convert_to(new_secret, 'utf8'),
                    additional := pg_catalog.convert_to(s.id::text, 'utf8'),
                    key_id := 0,
                    context := 'pgsodium'::bytea,
                    nonce := v_nonce
                  ), 'base64') END,
    nonce = CASE WHEN new_secret IS NULL THEN s.nonce ELSE v_nonce END,
    name = coalesce(new_name, s.name),
    description = coalesce(new_description, s.description),
    updated_at = pg_catalog.now()
  WHERE s.id = secret_id;
END
$$;


--
-- Name: alembic_version; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.alembic_version (
    version_num character varying(32) NOT NULL
);


--
-- Name: alerts; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.alerts (
    id bigint NOT NULL,
    kind text NOT NULL,
    subject text NOT NULL,
    message text NOT NULL,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    integration_id text,
    job_id bigint,
    schedule_id bigint,
    raised_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    resolved_at timestamp with time zone,
    notified_at timestamp with time zone
);


--
-- Name: alerts_id_seq; Type: SEQUENCE; Schema: dispatch; Owner: -
--

ALTER TABLE dispatch.alerts ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME dispatch.alerts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: drift_alerts; Type: VIEW; Schema: dispatch; Owner: -
--

CREATE VIEW dispatch.drift_alerts AS
 SELECT alerts.id,
    alerts.kind,
    alerts.subject,
    alerts.message,
    alerts.details,
    alerts.integration_id,
    alerts.job_id,
    alerts.schedule_id,
    alerts.raised_at,
    alerts.last_seen_at,
    alerts.resolved_at,
    alerts.notified_at
   FROM dispatch.alerts
  WHERE (alerts.kind = ANY (ARRAY['drift'::text, 'overdue'::text, 'missed_slot'::text]));


--
-- Name: jobs; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.jobs (
    id bigint NOT NULL,
    integration_id text NOT NULL,
    kind text NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    status dispatch.job_status DEFAULT 'queued'::dispatch.job_status NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    scheduled_for timestamp with time zone NOT NULL,
    run_after timestamp with time zone NOT NULL,
    enqueued_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    attempts integer DEFAULT 0 NOT NULL,
    max_attempts integer DEFAULT 5 NOT NULL,
    lease_expires_at timestamp with time zone,
    worker_id text,
    last_error text,
    result jsonb,
    idempotency_key text NOT NULL,
    source text DEFAULT 'sql'::text NOT NULL,
    schedule_id bigint,
    cancel_requested_at timestamp with time zone,
    trace_context text,
    CONSTRAINT jobs_kind_format CHECK ((kind ~ '^[a-z][a-z0-9_.-]{0,62}$'::text)),
    CONSTRAINT jobs_max_attempts CHECK ((max_attempts >= 1)),
    CONSTRAINT jobs_payload_object CHECK ((jsonb_typeof(payload) = 'object'::text)),
    CONSTRAINT jobs_running_has_lease CHECK (((status <> 'running'::dispatch.job_status) OR ((worker_id IS NOT NULL) AND (lease_expires_at IS NOT NULL)))),
    CONSTRAINT jobs_trace_context_size CHECK ((length(trace_context) <= 512))
);


--
-- Name: COLUMN jobs.priority; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON COLUMN dispatch.jobs.priority IS 'lower runs first';


--
-- Name: COLUMN jobs.scheduled_for; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON COLUMN dispatch.jobs.scheduled_for IS 'the slot (or the request time); drift = started_at - scheduled_for';


--
-- Name: COLUMN jobs.cancel_requested_at; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON COLUMN dispatch.jobs.cancel_requested_at IS 'a cancel asked of a running job: its worker stops the adapter call, then records the outcome';


--
-- Name: COLUMN jobs.trace_context; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON COLUMN dispatch.jobs.trace_context IS 'W3C traceparent the job was enqueued under (POST /dispatch); its run joins that trace';


--
-- Name: drift_report; Type: VIEW; Schema: dispatch; Owner: -
--

CREATE VIEW dispatch.drift_report AS
 SELECT j.integration_id,
    j.kind,
    count(*) AS jobs,
    percentile_cont((0.5)::double precision) WITHIN GROUP (ORDER BY ((EXTRACT(epoch FROM (j.started_at - j.scheduled_for)))::double precision)) AS p50_seconds,
    percentile_cont((0.95)::double precision) WITHIN GROUP (ORDER BY ((EXTRACT(epoch FROM (j.started_at - j.scheduled_for)))::double precision)) AS p95_seconds,
    max(EXTRACT(epoch FROM (j.started_at - j.scheduled_for))) AS max_seconds,
    count(*) FILTER (WHERE ((j.started_at - j.scheduled_for) > make_interval(secs => (dispatch.setting('drift_alert_seconds'::text, '300'::text))::double precision))) AS late
   FROM dispatch.jobs j
  WHERE (j.started_at > (now() - '24:00:00'::interval))
  GROUP BY j.integration_id, j.kind;


--
-- Name: VIEW drift_report; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON VIEW dispatch.drift_report IS 'drift (started_at - scheduled_for) per integration and kind over the last 24 h';


--
-- Name: idempotency_keys; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.idempotency_keys (
    key text NOT NULL,
    integration_id text NOT NULL,
    kind text NOT NULL,
    slot timestamp with time zone,
    job_id bigint,
    state text DEFAULT 'pending'::text NOT NULL,
    result jsonb,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT idempotency_keys_not_empty CHECK ((key <> ''::text)),
    CONSTRAINT idempotency_keys_state CHECK ((state = ANY (ARRAY['pending'::text, 'succeeded'::text, 'failed'::text, 'cancelled'::text])))
);


--
-- Name: integrations; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.integrations (
    id text NOT NULL,
    adapter text NOT NULL,
    config jsonb DEFAULT '{}'::jsonb NOT NULL,
    secret_name text,
    enabled boolean DEFAULT true NOT NULL,
    max_concurrency integer DEFAULT 1 NOT NULL,
    health_mode text,
    health_status text DEFAULT 'unknown'::text NOT NULL,
    circuit text DEFAULT 'closed'::text NOT NULL,
    health_checked_at timestamp with time zone,
    health_next_probe_at timestamp with time zone,
    health_failures integer DEFAULT 0 NOT NULL,
    health_latency_ms double precision,
    health_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    paused_at timestamp with time zone,
    paused_by text,
    pause_reason text,
    CONSTRAINT integrations_adapter_set CHECK ((adapter <> ''::text)),
    CONSTRAINT integrations_circuit CHECK ((circuit = ANY (ARRAY['closed'::text, 'open'::text, 'half_open'::text]))),
    CONSTRAINT integrations_config_object CHECK ((jsonb_typeof(config) = 'object'::text)),
    CONSTRAINT integrations_health_mode CHECK ((health_mode = ANY (ARRAY['active'::text, 'passive'::text]))),
    CONSTRAINT integrations_health_status CHECK ((health_status = ANY (ARRAY['unknown'::text, 'healthy'::text, 'unhealthy'::text]))),
    CONSTRAINT integrations_id_slug CHECK ((id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'::text)),
    CONSTRAINT integrations_max_concurrency_range CHECK (((max_concurrency >= 1) AND (max_concurrency <= 10000)))
);


--
-- Name: COLUMN integrations.config; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON COLUMN dispatch.integrations.config IS 'non-secret adapter configuration; secrets live in the vault under secret_name';


--
-- Name: COLUMN integrations.health_mode; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON COLUMN dispatch.integrations.health_mode IS 'NULL = the adapter''s default';


--
-- Name: COLUMN integrations.paused_at; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON COLUMN dispatch.integrations.paused_at IS 'set by `integrations pause` (with enabled = false): its jobs wait until resumed';


--
-- Name: integration_health; Type: VIEW; Schema: dispatch; Owner: -
--

CREATE VIEW dispatch.integration_health AS
 SELECT i.id AS integration_id,
    i.adapter,
    i.enabled,
    COALESCE(i.health_mode, 'adapter default'::text) AS health_mode,
    i.health_status,
    i.circuit,
    i.health_checked_at,
    i.health_next_probe_at,
    i.health_failures,
    i.health_latency_ms,
    i.health_error,
    ( SELECT count(*) AS count
           FROM dispatch.jobs j
          WHERE ((j.integration_id = i.id) AND (j.status = 'queued'::dispatch.job_status))) AS queued,
    ( SELECT count(*) AS count
           FROM dispatch.jobs j
          WHERE ((j.integration_id = i.id) AND (j.status = 'running'::dispatch.job_status))) AS running,
    i.paused_at,
    i.paused_by,
    i.pause_reason
   FROM dispatch.integrations i;


--
-- Name: job_drift; Type: VIEW; Schema: dispatch; Owner: -
--

CREATE VIEW dispatch.job_drift AS
 SELECT j.id AS job_id,
    j.integration_id,
    j.kind,
    j.status,
    j.source,
    j.schedule_id,
    j.scheduled_for,
    j.run_after,
    j.enqueued_at,
    j.started_at,
    j.finished_at,
    j.attempts,
    (j.started_at - j.scheduled_for) AS drift,
    EXTRACT(epoch FROM (j.started_at - j.scheduled_for)) AS drift_seconds,
    (j.finished_at - j.started_at) AS duration
   FROM dispatch.jobs j;


--
-- Name: VIEW job_drift; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON VIEW dispatch.job_drift IS 'drift = started_at - scheduled_for, per job';


--
-- Name: job_events_id_seq; Type: SEQUENCE; Schema: dispatch; Owner: -
--

ALTER TABLE dispatch.job_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME dispatch.job_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: jobs_id_seq; Type: SEQUENCE; Schema: dispatch; Owner: -
--

ALTER TABLE dispatch.jobs ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME dispatch.jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: open_alerts; Type: VIEW; Schema: dispatch; Owner: -
--

CREATE VIEW dispatch.open_alerts AS
 SELECT alerts.id,
    alerts.kind,
    alerts.subject,
    alerts.message,
    alerts.details,
    alerts.integration_id,
    alerts.job_id,
    alerts.schedule_id,
    alerts.raised_at,
    alerts.last_seen_at,
    alerts.resolved_at,
    alerts.notified_at
   FROM dispatch.alerts
  WHERE (alerts.resolved_at IS NULL);


--
-- Name: operator_actions; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.operator_actions (
    id bigint NOT NULL,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    actor text DEFAULT dispatch.current_actor() NOT NULL,
    action text NOT NULL,
    subject text NOT NULL,
    reason text DEFAULT dispatch.current_reason(),
    details jsonb DEFAULT '{}'::jsonb NOT NULL
);


--
-- Name: TABLE operator_actions; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON TABLE dispatch.operator_actions IS 'schedule and integration actions taken by operators (job actions are in job_events)';


--
-- Name: operator_actions_id_seq; Type: SEQUENCE; Schema: dispatch; Owner: -
--

ALTER TABLE dispatch.operator_actions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME dispatch.operator_actions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: overdue_jobs; Type: VIEW; Schema: dispatch; Owner: -
--

CREATE VIEW dispatch.overdue_jobs AS
 SELECT j.id AS job_id,
    j.integration_id,
    j.kind,
    j.scheduled_for,
    j.run_after,
    (now() - j.scheduled_for) AS waiting
   FROM dispatch.jobs j
  WHERE ((j.status = 'queued'::dispatch.job_status) AND (j.run_after <= (now() - '00:05:00'::interval)));


--
-- Name: scheduler_status; Type: VIEW; Schema: dispatch; Owner: -
--

CREATE VIEW dispatch.scheduler_status AS
 SELECT t.started_at AS last_tick_at,
    t.caller AS last_caller,
    t.acting_for AS last_acting_for,
    t.inserted AS last_inserted,
    t.duration_ms AS last_duration_ms,
    ( SELECT r.started_at
           FROM dispatch.tick_runs r
          WHERE (r.caller = 'pg_cron'::text)
          ORDER BY r.started_at DESC
         LIMIT 1) AS last_pg_cron_tick_at,
    EXTRACT(epoch FROM (clock_timestamp() - t.started_at)) AS seconds_since_tick
   FROM dispatch.last_tick() t(id, acting_for, started_at, duration_ms, inserted, skipped, caller, lateness_ms);


--
-- Name: VIEW scheduler_status; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON VIEW dispatch.scheduler_status IS 'one row: the last tick (any caller) and the last pg_cron tick, for the watchdog';


--
-- Name: schedules; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.schedules (
    id bigint NOT NULL,
    integration_id text NOT NULL,
    kind text NOT NULL,
    cron text NOT NULL,
    timezone text DEFAULT 'UTC'::text NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    catch_up text DEFAULT 'all'::text NOT NULL,
    catch_up_window interval DEFAULT '1 day'::interval NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    max_attempts integer,
    next_slot timestamp with time zone,
    last_slot timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    cron_spec dispatch.cron_spec,
    period text DEFAULT 'slot'::text NOT NULL,
    period_end timestamp with time zone,
    CONSTRAINT schedules_catch_up CHECK ((catch_up = ANY (ARRAY['all'::text, 'latest'::text, 'skip'::text]))),
    CONSTRAINT schedules_catch_up_window CHECK ((catch_up_window >= '00:00:00'::interval)),
    CONSTRAINT schedules_kind_format CHECK ((kind ~ '^[a-z][a-z0-9_.-]{0,62}$'::text)),
    CONSTRAINT schedules_max_attempts CHECK ((max_attempts >= 1)),
    CONSTRAINT schedules_payload_object CHECK ((jsonb_typeof(payload) = 'object'::text)),
    CONSTRAINT schedules_period CHECK ((period = ANY (ARRAY['slot'::text, 'day'::text, 'week'::text, 'month'::text])))
);


--
-- Name: COLUMN schedules.cron_spec; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON COLUMN dispatch.schedules.cron_spec IS 'cron parsed by dispatch.cron_parse(); maintained by the schedules_before_write trigger';


--
-- Name: COLUMN schedules.period; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON COLUMN dispatch.schedules.period IS 'what one job stands for: slot (the span since the previous slot) or the calendar day, week (ISO, from Monday) or month before the slot, in the schedule''s zone';


--
-- Name: COLUMN schedules.period_end; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON COLUMN dispatch.schedules.period_end IS 'where the last period handed out (or alerted) ended: the next one starts here, whatever the cron or zone became';


--
-- Name: schedules_id_seq; Type: SEQUENCE; Schema: dispatch; Owner: -
--

ALTER TABLE dispatch.schedules ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME dispatch.schedules_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: settings; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.settings (
    key text NOT NULL,
    value text NOT NULL,
    description text DEFAULT ''::text NOT NULL
);


--
-- Name: tick_runs_id_seq; Type: SEQUENCE; Schema: dispatch; Owner: -
--

ALTER TABLE dispatch.tick_runs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME dispatch.tick_runs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: time_zones; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.time_zones (
    name text NOT NULL
);


--
-- Name: workers; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.workers (
    id text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat_at timestamp with time zone DEFAULT now() NOT NULL,
    cold_start_ms double precision,
    concurrency integer,
    stopped_at timestamp with time zone
);


--
-- Name: write_intents; Type: TABLE; Schema: dispatch; Owner: -
--

CREATE TABLE dispatch.write_intents (
    idempotency_key text NOT NULL,
    reference text NOT NULL,
    job_id bigint,
    worker_id text NOT NULL,
    first_sent_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    last_sent_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    previous_sent_at timestamp with time zone,
    sends integer DEFAULT 1 NOT NULL,
    confirmed_at timestamp with time zone,
    document jsonb,
    CONSTRAINT write_intents_reference_set CHECK ((reference <> ''::text))
);


--
-- Name: TABLE write_intents; Type: COMMENT; Schema: dispatch; Owner: -
--

COMMENT ON TABLE dispatch.write_intents IS 'one row per key whose write was (or may have been) sent to a vendor; never pruned with jobs';


--
-- Name: secrets; Type: TABLE; Schema: vault; Owner: -
--

CREATE TABLE vault.secrets (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text,
    description text DEFAULT ''::text NOT NULL,
    secret text NOT NULL,
    key_id uuid,
    nonce bytea DEFAULT vault._crypto_aead_det_noncegen(),
    created_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    updated_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);


--
-- Name: TABLE secrets; Type: COMMENT; Schema: vault; Owner: -
--

COMMENT ON TABLE vault.secrets IS 'Table with encrypted `secret` column for storing sensitive information on disk.';


--
-- Name: decrypted_secrets; Type: VIEW; Schema: vault; Owner: -
--

CREATE VIEW vault.decrypted_secrets AS
 SELECT s.id,
    s.name,
    s.description,
    s.secret,
    convert_from(vault._crypto_aead_det_decrypt(message => decode(s.secret, 'base64'::text), additional => convert_to((s.id)::text, 'utf8'::name), key_id => (0)::bigint, context => '\x7067736f6469756d'::bytea, nonce => s.nonce), 'utf8'::name) AS decrypted_secret,
    s.key_id,
    s.nonce,
    s.created_at,
    s.updated_at
   FROM vault.secrets s;


--
-- Name: alembic_version alembic_version_pkc; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.alembic_version
    ADD CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num);


--
-- Name: alerts alerts_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.alerts
    ADD CONSTRAINT alerts_pkey PRIMARY KEY (id);


--
-- Name: idempotency_keys idempotency_keys_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.idempotency_keys
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (key);


--
-- Name: integrations integrations_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.integrations
    ADD CONSTRAINT integrations_pkey PRIMARY KEY (id);


--
-- Name: job_events job_events_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.job_events
    ADD CONSTRAINT job_events_pkey PRIMARY KEY (id);


--
-- Name: jobs jobs_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);


--
-- Name: operator_actions operator_actions_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.operator_actions
    ADD CONSTRAINT operator_actions_pkey PRIMARY KEY (id);


--
-- Name: schedules schedules_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.schedules
    ADD CONSTRAINT schedules_pkey PRIMARY KEY (id);


--
-- Name: settings settings_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (key);


--
-- Name: tick_runs tick_runs_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.tick_runs
    ADD CONSTRAINT tick_runs_pkey PRIMARY KEY (id);


--
-- Name: time_zones time_zones_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.time_zones
    ADD CONSTRAINT time_zones_pkey PRIMARY KEY (name);


--
-- Name: workers workers_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);


--
-- Name: write_intents write_intents_pkey; Type: CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.write_intents
    ADD CONSTRAINT write_intents_pkey PRIMARY KEY (idempotency_key);


--
-- Name: secrets secrets_pkey; Type: CONSTRAINT; Schema: vault; Owner: -
--

ALTER TABLE ONLY vault.secrets
    ADD CONSTRAINT secrets_pkey PRIMARY KEY (id);


--
-- Name: alerts_kind_subject_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX alerts_kind_subject_idx ON dispatch.alerts USING btree (kind, subject);


--
-- Name: alerts_open_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE UNIQUE INDEX alerts_open_idx ON dispatch.alerts USING btree (kind, subject) WHERE (resolved_at IS NULL);


--
-- Name: alerts_raised_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX alerts_raised_idx ON dispatch.alerts USING btree (raised_at);


--
-- Name: alerts_resolved_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX alerts_resolved_idx ON dispatch.alerts USING btree (resolved_at) WHERE (resolved_at IS NOT NULL);


--
-- Name: alerts_unnotified_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX alerts_unnotified_idx ON dispatch.alerts USING btree (id) WHERE (notified_at IS NULL);


--
-- Name: idempotency_keys_latest_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX idempotency_keys_latest_idx ON dispatch.idempotency_keys USING btree (integration_id, kind, updated_at DESC) WHERE (state = 'succeeded'::text);


--
-- Name: idempotency_keys_period_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX idempotency_keys_period_idx ON dispatch.idempotency_keys USING btree (integration_id, kind, slot);


--
-- Name: idempotency_keys_results_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX idempotency_keys_results_idx ON dispatch.idempotency_keys USING btree (updated_at) WHERE ((slot IS NULL) AND (result IS NOT NULL) AND (key !~~ 'job:%'::text));


--
-- Name: job_events_job_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX job_events_job_idx ON dispatch.job_events USING btree (job_id, id);


--
-- Name: jobs_claim_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX jobs_claim_idx ON dispatch.jobs USING btree (integration_id, priority, run_after, id) WHERE (status = 'queued'::dispatch.job_status);


--
-- Name: jobs_claim_order_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX jobs_claim_order_idx ON dispatch.jobs USING btree (priority, run_after, id) WHERE (status = 'queued'::dispatch.job_status);


--
-- Name: jobs_finished_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX jobs_finished_idx ON dispatch.jobs USING btree (finished_at) WHERE (finished_at IS NOT NULL);


--
-- Name: jobs_idempotency_key_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE UNIQUE INDEX jobs_idempotency_key_idx ON dispatch.jobs USING btree (idempotency_key);


--
-- Name: jobs_queued_run_after_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX jobs_queued_run_after_idx ON dispatch.jobs USING btree (run_after) WHERE (status = 'queued'::dispatch.job_status);


--
-- Name: jobs_running_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX jobs_running_idx ON dispatch.jobs USING btree (integration_id, lease_expires_at) WHERE (status = 'running'::dispatch.job_status);


--
-- Name: jobs_schedule_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX jobs_schedule_idx ON dispatch.jobs USING btree (schedule_id, scheduled_for) WHERE (schedule_id IS NOT NULL);


--
-- Name: jobs_started_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX jobs_started_idx ON dispatch.jobs USING btree (started_at) WHERE (started_at IS NOT NULL);


--
-- Name: operator_actions_subject_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX operator_actions_subject_idx ON dispatch.operator_actions USING btree (subject, id);


--
-- Name: schedules_due_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX schedules_due_idx ON dispatch.schedules USING btree (next_slot) WHERE enabled;


--
-- Name: schedules_integration_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX schedules_integration_idx ON dispatch.schedules USING btree (integration_id);


--
-- Name: tick_runs_started_idx; Type: INDEX; Schema: dispatch; Owner: -
--

CREATE INDEX tick_runs_started_idx ON dispatch.tick_runs USING btree (started_at);


--
-- Name: secrets_name_idx; Type: INDEX; Schema: vault; Owner: -
--

CREATE UNIQUE INDEX secrets_name_idx ON vault.secrets USING btree (name) WHERE (name IS NOT NULL);


--
-- Name: alerts alerts_notify; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER alerts_notify AFTER INSERT ON dispatch.alerts FOR EACH STATEMENT EXECUTE FUNCTION dispatch.alerts_notify();


--
-- Name: integrations integrations_touch; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER integrations_touch BEFORE UPDATE ON dispatch.integrations FOR EACH ROW EXECUTE FUNCTION dispatch.touch_updated_at();


--
-- Name: job_events job_events_append_only; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER job_events_append_only BEFORE DELETE OR UPDATE ON dispatch.job_events FOR EACH STATEMENT EXECUTE FUNCTION dispatch.job_events_append_only();


--
-- Name: jobs jobs_before_insert; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER jobs_before_insert BEFORE INSERT ON dispatch.jobs FOR EACH ROW EXECUTE FUNCTION dispatch.jobs_before_insert();


--
-- Name: jobs jobs_forget_events; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER jobs_forget_events AFTER DELETE ON dispatch.jobs REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION dispatch.jobs_forget_events();


--
-- Name: jobs jobs_ledger_insert; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER jobs_ledger_insert AFTER INSERT ON dispatch.jobs REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dispatch.jobs_ledger_insert();


--
-- Name: jobs jobs_notify; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER jobs_notify AFTER INSERT ON dispatch.jobs FOR EACH STATEMENT EXECUTE FUNCTION dispatch.jobs_notify();


--
-- Name: jobs jobs_record_batch; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER jobs_record_batch AFTER UPDATE ON dispatch.jobs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dispatch.jobs_record_batch();


--
-- Name: jobs jobs_record_enqueued; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER jobs_record_enqueued AFTER INSERT ON dispatch.jobs REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dispatch.jobs_record_enqueued();


--
-- Name: jobs jobs_record_transition; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER jobs_record_transition AFTER UPDATE OF status, cancel_requested_at ON dispatch.jobs FOR EACH ROW WHEN ((((old.status IS DISTINCT FROM new.status) AND (NOT (((old.status = 'queued'::dispatch.job_status) AND (new.status = 'running'::dispatch.job_status)) OR ((old.status = 'running'::dispatch.job_status) AND (new.status = 'succeeded'::dispatch.job_status))))) OR (old.cancel_requested_at IS DISTINCT FROM new.cancel_requested_at))) EXECUTE FUNCTION dispatch.jobs_record_transition();


--
-- Name: jobs jobs_terminal; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER jobs_terminal AFTER UPDATE OF status ON dispatch.jobs FOR EACH ROW WHEN (((old.status IS DISTINCT FROM new.status) AND (NOT (((old.status = 'queued'::dispatch.job_status) AND (new.status = 'running'::dispatch.job_status)) OR ((old.status = 'running'::dispatch.job_status) AND (new.status = 'succeeded'::dispatch.job_status)))) AND ((new.status = ANY (ARRAY['succeeded'::dispatch.job_status, 'failed'::dispatch.job_status, 'cancelled'::dispatch.job_status])) OR (old.status = ANY (ARRAY['succeeded'::dispatch.job_status, 'failed'::dispatch.job_status, 'cancelled'::dispatch.job_status]))))) EXECUTE FUNCTION dispatch.jobs_terminal();


--
-- Name: schedules schedules_alerts; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER schedules_alerts AFTER UPDATE ON dispatch.schedules FOR EACH ROW WHEN ((((new.enabled AND (new.next_slot IS NULL)) IS DISTINCT FROM (old.enabled AND (old.next_slot IS NULL))) OR (old.enabled AND (NOT new.enabled)))) EXECUTE FUNCTION dispatch.schedules_alerts();


--
-- Name: schedules schedules_alerts_on_delete; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER schedules_alerts_on_delete AFTER DELETE ON dispatch.schedules FOR EACH ROW EXECUTE FUNCTION dispatch.schedules_alerts();


--
-- Name: schedules schedules_before_write; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER schedules_before_write BEFORE INSERT OR UPDATE ON dispatch.schedules FOR EACH ROW EXECUTE FUNCTION dispatch.schedules_before_write();


--
-- Name: schedules schedules_touch; Type: TRIGGER; Schema: dispatch; Owner: -
--

CREATE TRIGGER schedules_touch BEFORE UPDATE ON dispatch.schedules FOR EACH ROW EXECUTE FUNCTION dispatch.touch_updated_at();


--
-- Name: jobs jobs_integration_id_fkey; Type: FK CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.jobs
    ADD CONSTRAINT jobs_integration_id_fkey FOREIGN KEY (integration_id) REFERENCES dispatch.integrations(id) ON UPDATE CASCADE;


--
-- Name: jobs jobs_schedule_id_fkey; Type: FK CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.jobs
    ADD CONSTRAINT jobs_schedule_id_fkey FOREIGN KEY (schedule_id) REFERENCES dispatch.schedules(id) ON DELETE SET NULL;


--
-- Name: schedules schedules_integration_id_fkey; Type: FK CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.schedules
    ADD CONSTRAINT schedules_integration_id_fkey FOREIGN KEY (integration_id) REFERENCES dispatch.integrations(id) ON UPDATE CASCADE ON DELETE CASCADE;


--
-- Name: write_intents write_intents_idempotency_key_fkey; Type: FK CONSTRAINT; Schema: dispatch; Owner: -
--

ALTER TABLE ONLY dispatch.write_intents
    ADD CONSTRAINT write_intents_idempotency_key_fkey FOREIGN KEY (idempotency_key) REFERENCES dispatch.idempotency_keys(key);


--
-- Name: SCHEMA dispatch; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA dispatch TO dispatch_worker;
GRANT USAGE ON SCHEMA dispatch TO service_role;


--
-- Name: SCHEMA vault; Type: ACL; Schema: -; Owner: -
--

REVOKE ALL ON SCHEMA vault FROM postgres;
GRANT CREATE ON SCHEMA vault TO postgres;
GRANT USAGE ON SCHEMA vault TO postgres WITH GRANT OPTION;
GRANT USAGE ON SCHEMA vault TO service_role;


--
-- Name: FUNCTION alerts_notify(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.alerts_notify() TO dispatch_worker;


--
-- Name: FUNCTION begin_write(p_job_id bigint, p_worker text, p_reference text, p_window_seconds double precision, OUT decision text, OUT wait_seconds double precision, OUT sends integer); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.begin_write(p_job_id bigint, p_worker text, p_reference text, p_window_seconds double precision, OUT decision text, OUT wait_seconds double precision, OUT sends integer) TO dispatch_worker;


--
-- Name: FUNCTION check_caller_key(p_integration_id text, p_kind text, p_key text, p_source text); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.check_caller_key(p_integration_id text, p_kind text, p_key text, p_source text) TO dispatch_worker;


--
-- Name: FUNCTION claim_jobs(p_worker text, p_limit integer, p_lease_seconds double precision); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.claim_jobs(p_worker text, p_limit integer, p_lease_seconds double precision) TO dispatch_worker;


--
-- Name: FUNCTION confirm_write(p_job_id bigint, p_reference text, p_document jsonb); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.confirm_write(p_job_id bigint, p_reference text, p_document jsonb) TO dispatch_worker;


--
-- Name: FUNCTION cron_prev_lookup(p_next smallint[]); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.cron_prev_lookup(p_next smallint[]) TO dispatch_worker;


--
-- Name: FUNCTION cron_problem(p_expr text); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.cron_problem(p_expr text) TO dispatch_worker;


--
-- Name: FUNCTION cron_wall_prev(p_spec dispatch.cron_spec, p_before timestamp without time zone); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.cron_wall_prev(p_spec dispatch.cron_spec, p_before timestamp without time zone) TO dispatch_worker;


--
-- Name: FUNCTION current_actor(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.current_actor() TO dispatch_worker;


--
-- Name: FUNCTION current_reason(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.current_reason() TO dispatch_worker;


--
-- Name: FUNCTION enqueue(integration_id text, kind text, payload jsonb, scheduled_for timestamp with time zone, idempotency_key text, priority smallint, max_attempts integer, run_after timestamp with time zone); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.enqueue(integration_id text, kind text, payload jsonb, scheduled_for timestamp with time zone, idempotency_key text, priority smallint, max_attempts integer, run_after timestamp with time zone) TO dispatch_worker;


--
-- Name: FUNCTION enqueue_job(integration_id text, kind text, payload jsonb, scheduled_for timestamp with time zone, idempotency_key text, priority smallint, max_attempts integer, run_after timestamp with time zone, source text, schedule_id bigint, OUT job_id bigint, OUT duplicate boolean); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.enqueue_job(integration_id text, kind text, payload jsonb, scheduled_for timestamp with time zone, idempotency_key text, priority smallint, max_attempts integer, run_after timestamp with time zone, source text, schedule_id bigint, OUT job_id bigint, OUT duplicate boolean) TO dispatch_worker;


--
-- Name: FUNCTION integration_secret(p_integration_id text, p_default_name text); Type: ACL; Schema: dispatch; Owner: -
--

REVOKE ALL ON FUNCTION dispatch.integration_secret(p_integration_id text, p_default_name text) FROM PUBLIC;
GRANT ALL ON FUNCTION dispatch.integration_secret(p_integration_id text, p_default_name text) TO dispatch_worker;
GRANT ALL ON FUNCTION dispatch.integration_secret(p_integration_id text, p_default_name text) TO service_role;


--
-- Name: FUNCTION is_schedule_key(p_integration_id text, p_kind text, p_key text); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.is_schedule_key(p_integration_id text, p_kind text, p_key text) TO dispatch_worker;


--
-- Name: FUNCTION job_events_append_only(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.job_events_append_only() TO dispatch_worker;


--
-- Name: FUNCTION job_events_json(p_job_id bigint); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.job_events_json(p_job_id bigint) TO dispatch_worker;


--
-- Name: TABLE job_events; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT,INSERT ON TABLE dispatch.job_events TO dispatch_worker;


--
-- Name: FUNCTION job_timeline(p_job_id bigint); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.job_timeline(p_job_id bigint) TO dispatch_worker;


--
-- Name: FUNCTION jobs_before_insert(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.jobs_before_insert() TO dispatch_worker;


--
-- Name: FUNCTION jobs_forget_events(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.jobs_forget_events() TO dispatch_worker;


--
-- Name: FUNCTION jobs_ledger_insert(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.jobs_ledger_insert() TO dispatch_worker;


--
-- Name: FUNCTION jobs_notify(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.jobs_notify() TO dispatch_worker;


--
-- Name: FUNCTION jobs_record_batch(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.jobs_record_batch() TO dispatch_worker;


--
-- Name: FUNCTION jobs_record_enqueued(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.jobs_record_enqueued() TO dispatch_worker;


--
-- Name: FUNCTION jobs_record_transition(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.jobs_record_transition() TO dispatch_worker;


--
-- Name: FUNCTION jobs_terminal(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.jobs_terminal() TO dispatch_worker;


--
-- Name: TABLE tick_runs; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT,INSERT,UPDATE ON TABLE dispatch.tick_runs TO dispatch_worker;


--
-- Name: FUNCTION period_end_for(p_period text, p_tz text, p_slot timestamp with time zone); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.period_end_for(p_period text, p_tz text, p_slot timestamp with time zone) TO dispatch_worker;


--
-- Name: FUNCTION period_label(p_period text, p_tz text, p_end timestamp with time zone); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.period_label(p_period text, p_tz text, p_end timestamp with time zone) TO dispatch_worker;


--
-- Name: FUNCTION period_natural_start(p_period text, p_tz text, p_slot timestamp with time zone, p_prev_slot timestamp with time zone); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.period_natural_start(p_period text, p_tz text, p_slot timestamp with time zone, p_prev_slot timestamp with time zone) TO dispatch_worker;


--
-- Name: FUNCTION prune_jobs(p_older_than interval, p_limit integer); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.prune_jobs(p_older_than interval, p_limit integer) TO dispatch_worker;


--
-- Name: FUNCTION raise_alert(p_kind text, p_subject text, p_message text, p_details jsonb, p_integration_id text, p_job_id bigint, p_schedule_id bigint); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.raise_alert(p_kind text, p_subject text, p_message text, p_details jsonb, p_integration_id text, p_job_id bigint, p_schedule_id bigint) TO dispatch_worker;


--
-- Name: FUNCTION raise_no_future_slot(p_schedule_id bigint, p_after timestamp with time zone); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.raise_no_future_slot(p_schedule_id bigint, p_after timestamp with time zone) TO dispatch_worker;


--
-- Name: FUNCTION raise_schedule_invalid(p_schedule_id bigint, p_problem text, p_sqlstate text, p_acting_for timestamp with time zone); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.raise_schedule_invalid(p_schedule_id bigint, p_problem text, p_sqlstate text, p_acting_for timestamp with time zone) TO dispatch_worker;


--
-- Name: FUNCTION redact(p_text text); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.redact(p_text text) TO dispatch_worker;


--
-- Name: FUNCTION rescue_expired_leases(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.rescue_expired_leases() TO dispatch_worker;


--
-- Name: FUNCTION resolve_alert(p_kind text, p_subject text); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.resolve_alert(p_kind text, p_subject text) TO dispatch_worker;


--
-- Name: FUNCTION schedule_periods(p_schedule_id bigint, p_from timestamp with time zone, p_to timestamp with time zone); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.schedule_periods(p_schedule_id bigint, p_from timestamp with time zone, p_to timestamp with time zone) TO dispatch_worker;


--
-- Name: FUNCTION schedules_alerts(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.schedules_alerts() TO dispatch_worker;


--
-- Name: FUNCTION setting(p_key text, p_default text); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.setting(p_key text, p_default text) TO dispatch_worker;


--
-- Name: FUNCTION tick_isolated(p_ids bigint[], p_now timestamp with time zone, p_until timestamp with time zone, p_grace interval, p_cap integer, OUT n_inserted integer, OUT n_skipped integer, OUT n_failed integer); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.tick_isolated(p_ids bigint[], p_now timestamp with time zone, p_until timestamp with time zone, p_grace interval, p_cap integer, OUT n_inserted integer, OUT n_skipped integer, OUT n_failed integer) TO dispatch_worker;


--
-- Name: FUNCTION tick_schedules(p_ids bigint[], p_now timestamp with time zone, p_until timestamp with time zone, p_grace interval, p_cap integer, OUT n_inserted integer, OUT n_skipped integer, OUT n_adjusted integer); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.tick_schedules(p_ids bigint[], p_now timestamp with time zone, p_until timestamp with time zone, p_grace interval, p_cap integer, OUT n_inserted integer, OUT n_skipped integer, OUT n_adjusted integer) TO dispatch_worker;


--
-- Name: FUNCTION time_zone_problem(p_tz text); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.time_zone_problem(p_tz text) TO dispatch_worker;


--
-- Name: FUNCTION touch_updated_at(); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.touch_updated_at() TO dispatch_worker;


--
-- Name: FUNCTION withdraw_write(p_job_id bigint, p_worker text, p_reference text); Type: ACL; Schema: dispatch; Owner: -
--

GRANT ALL ON FUNCTION dispatch.withdraw_write(p_job_id bigint, p_worker text, p_reference text) TO dispatch_worker;


--
-- Name: FUNCTION _crypto_aead_det_decrypt(message bytea, additional bytea, key_id bigint, context bytea, nonce bytea); Type: ACL; Schema: vault; Owner: -
--

REVOKE ALL ON FUNCTION vault._crypto_aead_det_decrypt(message bytea, additional bytea, key_id bigint, context bytea, nonce bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault._crypto_aead_det_decrypt(message bytea, additional bytea, key_id bigint, context bytea, nonce bytea) FROM postgres;
GRANT ALL ON FUNCTION vault._crypto_aead_det_decrypt(message bytea, additional bytea, key_id bigint, context bytea, nonce bytea) TO postgres WITH GRANT OPTION;
GRANT ALL ON FUNCTION vault._crypto_aead_det_decrypt(message bytea, additional bytea, key_id bigint, context bytea, nonce bytea) TO service_role;


--
-- Name: FUNCTION _crypto_aead_det_encrypt(message bytea, additional bytea, key_id bigint, context bytea, nonce bytea); Type: ACL; Schema: vault; Owner: -
--

REVOKE ALL ON FUNCTION vault._crypto_aead_det_encrypt(message bytea, additional bytea, key_id bigint, context bytea, nonce bytea) FROM PUBLIC;


--
-- Name: FUNCTION _crypto_aead_det_noncegen(); Type: ACL; Schema: vault; Owner: -
--

REVOKE ALL ON FUNCTION vault._crypto_aead_det_noncegen() FROM PUBLIC;


--
-- Name: FUNCTION _root_key(); Type: ACL; Schema: vault; Owner: -
--

REVOKE ALL ON FUNCTION vault._root_key() FROM PUBLIC;


--
-- Name: FUNCTION create_secret(new_secret text, new_name text, new_description text, new_key_id uuid); Type: ACL; Schema: vault; Owner: -
--

REVOKE ALL ON FUNCTION vault.create_secret(new_secret text, new_name text, new_description text, new_key_id uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.create_secret(new_secret text, new_name text, new_description text, new_key_id uuid) FROM postgres;
GRANT ALL ON FUNCTION vault.create_secret(new_secret text, new_name text, new_description text, new_key_id uuid) TO postgres WITH GRANT OPTION;
GRANT ALL ON FUNCTION vault.create_secret(new_secret text, new_name text, new_description text, new_key_id uuid) TO service_role;


--
-- Name: FUNCTION update_secret(secret_id uuid, new_secret text, new_name text, new_description text, new_key_id uuid); Type: ACL; Schema: vault; Owner: -
--

REVOKE ALL ON FUNCTION vault.update_secret(secret_id uuid, new_secret text, new_name text, new_description text, new_key_id uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.update_secret(secret_id uuid, new_secret text, new_name text, new_description text, new_key_id uuid) FROM postgres;
GRANT ALL ON FUNCTION vault.update_secret(secret_id uuid, new_secret text, new_name text, new_description text, new_key_id uuid) TO postgres WITH GRANT OPTION;
GRANT ALL ON FUNCTION vault.update_secret(secret_id uuid, new_secret text, new_name text, new_description text, new_key_id uuid) TO service_role;


--
-- Name: TABLE alembic_version; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.alembic_version TO dispatch_worker;


--
-- Name: TABLE alerts; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT,INSERT,UPDATE ON TABLE dispatch.alerts TO dispatch_worker;


--
-- Name: SEQUENCE alerts_id_seq; Type: ACL; Schema: dispatch; Owner: -
--

GRANT USAGE ON SEQUENCE dispatch.alerts_id_seq TO dispatch_worker;


--
-- Name: TABLE drift_alerts; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.drift_alerts TO dispatch_worker;


--
-- Name: TABLE jobs; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT,INSERT,UPDATE ON TABLE dispatch.jobs TO dispatch_worker;


--
-- Name: TABLE drift_report; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.drift_report TO dispatch_worker;


--
-- Name: TABLE idempotency_keys; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT,INSERT,UPDATE ON TABLE dispatch.idempotency_keys TO dispatch_worker;


--
-- Name: TABLE integrations; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.integrations TO dispatch_worker;


--
-- Name: COLUMN integrations.health_status; Type: ACL; Schema: dispatch; Owner: -
--

GRANT UPDATE(health_status) ON TABLE dispatch.integrations TO dispatch_worker;


--
-- Name: COLUMN integrations.circuit; Type: ACL; Schema: dispatch; Owner: -
--

GRANT UPDATE(circuit) ON TABLE dispatch.integrations TO dispatch_worker;


--
-- Name: COLUMN integrations.health_checked_at; Type: ACL; Schema: dispatch; Owner: -
--

GRANT UPDATE(health_checked_at) ON TABLE dispatch.integrations TO dispatch_worker;


--
-- Name: COLUMN integrations.health_next_probe_at; Type: ACL; Schema: dispatch; Owner: -
--

GRANT UPDATE(health_next_probe_at) ON TABLE dispatch.integrations TO dispatch_worker;


--
-- Name: COLUMN integrations.health_failures; Type: ACL; Schema: dispatch; Owner: -
--

GRANT UPDATE(health_failures) ON TABLE dispatch.integrations TO dispatch_worker;


--
-- Name: COLUMN integrations.health_latency_ms; Type: ACL; Schema: dispatch; Owner: -
--

GRANT UPDATE(health_latency_ms) ON TABLE dispatch.integrations TO dispatch_worker;


--
-- Name: COLUMN integrations.health_error; Type: ACL; Schema: dispatch; Owner: -
--

GRANT UPDATE(health_error) ON TABLE dispatch.integrations TO dispatch_worker;


--
-- Name: TABLE integration_health; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.integration_health TO dispatch_worker;


--
-- Name: TABLE job_drift; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.job_drift TO dispatch_worker;


--
-- Name: SEQUENCE job_events_id_seq; Type: ACL; Schema: dispatch; Owner: -
--

GRANT USAGE ON SEQUENCE dispatch.job_events_id_seq TO dispatch_worker;


--
-- Name: SEQUENCE jobs_id_seq; Type: ACL; Schema: dispatch; Owner: -
--

GRANT USAGE ON SEQUENCE dispatch.jobs_id_seq TO dispatch_worker;


--
-- Name: TABLE open_alerts; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.open_alerts TO dispatch_worker;


--
-- Name: TABLE operator_actions; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.operator_actions TO dispatch_worker;


--
-- Name: SEQUENCE operator_actions_id_seq; Type: ACL; Schema: dispatch; Owner: -
--

GRANT USAGE ON SEQUENCE dispatch.operator_actions_id_seq TO dispatch_worker;


--
-- Name: TABLE overdue_jobs; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.overdue_jobs TO dispatch_worker;


--
-- Name: TABLE scheduler_status; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.scheduler_status TO dispatch_worker;


--
-- Name: TABLE schedules; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.schedules TO dispatch_worker;


--
-- Name: COLUMN schedules.next_slot; Type: ACL; Schema: dispatch; Owner: -
--

GRANT UPDATE(next_slot) ON TABLE dispatch.schedules TO dispatch_worker;


--
-- Name: COLUMN schedules.last_slot; Type: ACL; Schema: dispatch; Owner: -
--

GRANT UPDATE(last_slot) ON TABLE dispatch.schedules TO dispatch_worker;


--
-- Name: COLUMN schedules.period_end; Type: ACL; Schema: dispatch; Owner: -
--

GRANT UPDATE(period_end) ON TABLE dispatch.schedules TO dispatch_worker;


--
-- Name: SEQUENCE schedules_id_seq; Type: ACL; Schema: dispatch; Owner: -
--

GRANT USAGE ON SEQUENCE dispatch.schedules_id_seq TO dispatch_worker;


--
-- Name: TABLE settings; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.settings TO dispatch_worker;


--
-- Name: SEQUENCE tick_runs_id_seq; Type: ACL; Schema: dispatch; Owner: -
--

GRANT USAGE ON SEQUENCE dispatch.tick_runs_id_seq TO dispatch_worker;


--
-- Name: TABLE time_zones; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT ON TABLE dispatch.time_zones TO dispatch_worker;


--
-- Name: TABLE workers; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT,INSERT,UPDATE ON TABLE dispatch.workers TO dispatch_worker;


--
-- Name: TABLE write_intents; Type: ACL; Schema: dispatch; Owner: -
--

GRANT SELECT,INSERT,UPDATE ON TABLE dispatch.write_intents TO dispatch_worker;


--
-- Name: TABLE secrets; Type: ACL; Schema: vault; Owner: -
--

REVOKE ALL ON TABLE vault.secrets FROM postgres;
GRANT INSERT,REFERENCES,TRIGGER,TRUNCATE,UPDATE ON TABLE vault.secrets TO postgres;
GRANT SELECT,DELETE ON TABLE vault.secrets TO postgres WITH GRANT OPTION;
GRANT SELECT,DELETE ON TABLE vault.secrets TO service_role;


--
-- Name: TABLE decrypted_secrets; Type: ACL; Schema: vault; Owner: -
--

REVOKE ALL ON TABLE vault.decrypted_secrets FROM postgres;
GRANT INSERT,REFERENCES,TRIGGER,TRUNCATE,UPDATE ON TABLE vault.decrypted_secrets TO postgres;
GRANT SELECT,DELETE ON TABLE vault.decrypted_secrets TO postgres WITH GRANT OPTION;
GRANT SELECT,DELETE ON TABLE vault.decrypted_secrets TO service_role;


--
-- Name: DEFAULT PRIVILEGES FOR SEQUENCES; Type: DEFAULT ACL; Schema: dispatch; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA dispatch GRANT USAGE ON SEQUENCES  TO dispatch_worker;


--
-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: dispatch; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA dispatch GRANT SELECT ON TABLES  TO dispatch_worker;


--
-- PostgreSQL database dump complete
--
