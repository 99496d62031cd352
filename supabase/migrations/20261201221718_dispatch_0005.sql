-- integration-dispatch, Alembic revision 0005: Exactly once under slow vendors and stalled daemons: write intents, cancel at the vendor
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0005_exactly_once.py
-- (sha256 5ae6e5f668f2a55b). Do not edit: change the Alembic migration, re-render.
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

CREATE TABLE dispatch.write_intents (
    idempotency_key  text PRIMARY KEY REFERENCES dispatch.idempotency_keys (key),
    reference        text NOT NULL CONSTRAINT write_intents_reference_set CHECK (reference <> ''),
    job_id           bigint,                 -- no FK: jobs are pruned, the ledger is not
    worker_id        text NOT NULL,          -- who sent last
    first_sent_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_sent_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    previous_sent_at timestamptz,            -- the send before the last (restored when the vendor refused the last unrun)
    sends            integer NOT NULL DEFAULT 1,
    confirmed_at     timestamptz,            -- the vendor holds it (the write answered, or a lookup found it)
    document         jsonb                   -- what the vendor holds (its ids), once confirmed
);
COMMENT ON TABLE dispatch.write_intents IS 'one row per key whose write was (or may have been) sent to a vendor; never pruned with jobs';

-- Called by the adapter (through the daemon) after a negative lookup, right before it sends.
-- decision: 'send' (recorded: go), 'wait' (an earlier send may still be applied by the
-- vendor: look again after wait_seconds), 'confirmed' (the vendor holds it: do not send),
-- 'not_owner' (this worker's lease lapsed or the job moved on: stop), 'cancelled' (an
-- operator cancelled the job: send nothing).
CREATE FUNCTION dispatch.begin_write(p_job_id bigint, p_worker text, p_reference text, p_window_seconds double precision,
                                     OUT decision text, OUT wait_seconds double precision, OUT sends integer)
LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION dispatch.begin_write IS 'record (durably) that the owner of a running job is about to send its write; refuses while an earlier send may still land';

-- The vendor refused the send before running it (429, 503 from its queue, Xledger's limit
-- codes): nothing of it can land later, so the window restarts from the send before (or the
-- intent goes, when that was the only one). Only the attempt that owns the job may say so.
CREATE FUNCTION dispatch.withdraw_write(p_job_id bigint, p_worker text, p_reference text) RETURNS boolean
LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION dispatch.withdraw_write IS 'the owner''s last send was refused by the vendor before it ran: it cannot land, so it does not hold the window';

CREATE FUNCTION dispatch.confirm_write(p_job_id bigint, p_reference text, p_document jsonb) RETURNS boolean
LANGUAGE sql AS $$
    -- Upsert: a lookup may confirm a document whose intent predates the intents table.
    INSERT INTO dispatch.write_intents AS w (idempotency_key, reference, job_id, worker_id, confirmed_at, document)
    SELECT j.idempotency_key, p_reference, j.id, coalesce(j.worker_id, ''), clock_timestamp(), p_document
      FROM dispatch.jobs j WHERE j.id = p_job_id
    ON CONFLICT (idempotency_key) DO UPDATE
        SET confirmed_at = coalesce(w.confirmed_at, EXCLUDED.confirmed_at), document = EXCLUDED.document
    RETURNING true
$$;
COMMENT ON FUNCTION dispatch.confirm_write IS 'record what the vendor holds for a job''s key';

ALTER TABLE dispatch.jobs ADD COLUMN cancel_requested_at timestamptz;
COMMENT ON COLUMN dispatch.jobs.cancel_requested_at IS 'a cancel asked of a running job: its worker stops the adapter call, then records the outcome';

-- Expired leases: a cancel-requested job with no write possibly in flight is cancelled; one
-- whose write may have been sent goes back to the queue, where its next attempt only
-- reconciles (dispatch.begin_write refuses to send for it) and records what the vendor holds.
CREATE OR REPLACE FUNCTION dispatch.rescue_expired_leases() RETURNS integer LANGUAGE sql AS $$
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

-- The namespace the schedules' keys live in: <integration_id>:<kind>:...
CREATE FUNCTION dispatch.is_schedule_key(p_integration_id text, p_kind text, p_key text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT left(p_key, length(p_integration_id) + length(p_kind) + 2) = p_integration_id || ':' || p_kind || ':'
$$;

CREATE FUNCTION dispatch.check_caller_key(p_integration_id text, p_kind text, p_key text, p_source text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_key IS NOT NULL AND coalesce(p_source, 'sql') NOT IN ('cron', 'backfill')
       AND dispatch.is_schedule_key(p_integration_id, p_kind, p_key) THEN
        RAISE EXCEPTION 'idempotency key "%" is reserved for scheduled periods (keys "%:%:..." belong to the schedules)',
                        p_key, p_integration_id, p_kind
            USING ERRCODE = 'check_violation',
                  HINT = 'use a key of your own, e.g. "manual:' || p_key || '"; to re-run a scheduled period use `integration-dispatch jobs retry` or a backfill';
    END IF;
END $$;
COMMENT ON FUNCTION dispatch.check_caller_key IS 'refuse a caller''s key in the namespace of scheduled periods';

CREATE OR REPLACE FUNCTION dispatch.enqueue_job(
    integration_id  text,
    kind            text,
    payload         jsonb DEFAULT '{}',
    scheduled_for   timestamptz DEFAULT NULL,
    idempotency_key text DEFAULT NULL,
    priority        smallint DEFAULT 0,
    max_attempts    integer DEFAULT NULL,
    run_after       timestamptz DEFAULT NULL,
    source          text DEFAULT 'sql',
    schedule_id     bigint DEFAULT NULL,
    OUT job_id bigint, OUT duplicate boolean
) LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION dispatch.jobs_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
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

ALTER TABLE dispatch.schedules
    ADD COLUMN period text NOT NULL DEFAULT 'slot'
        CONSTRAINT schedules_period CHECK (period IN ('slot', 'day', 'week', 'month')),
    ADD COLUMN period_end timestamptz;
COMMENT ON COLUMN dispatch.schedules.period IS 'what one job stands for: slot (the span since the previous slot) or the calendar day, week (ISO, from Monday) or month before the slot, in the schedule''s zone';
COMMENT ON COLUMN dispatch.schedules.period_end IS 'where the last period handed out (or alerted) ended: the next one starts here, whatever the cron or zone became';

-- The end of the period a slot closes: the slot itself, or the calendar boundary at or before it.
CREATE FUNCTION dispatch.period_end_for(p_period text, p_tz text, p_slot timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE p_period WHEN 'slot' THEN p_slot
                ELSE date_trunc(p_period, p_slot AT TIME ZONE p_tz) AT TIME ZONE p_tz END
$$;

-- Where that period starts when nothing came before it: the previous slot, or one calendar unit back.
CREATE FUNCTION dispatch.period_natural_start(p_period text, p_tz text, p_slot timestamptz, p_prev_slot timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT CASE p_period WHEN 'slot' THEN p_prev_slot
                ELSE (date_trunc(p_period, p_slot AT TIME ZONE p_tz) - ('1 ' || p_period)::interval) AT TIME ZONE p_tz END
$$;

CREATE FUNCTION dispatch.period_label(p_period text, p_tz text, p_end timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE p_period
        WHEN 'day' THEN to_char((p_end AT TIME ZONE p_tz) - interval '1 day', 'YYYY-MM-DD')
        WHEN 'week' THEN to_char((p_end AT TIME ZONE p_tz) - interval '1 day', 'IYYY-"W"IW')
        WHEN 'month' THEN to_char((p_end AT TIME ZONE p_tz) - interval '1 day', 'YYYY-MM')
        ELSE dispatch.slot_iso(p_end) END
$$;

CREATE OR REPLACE FUNCTION dispatch.tick(now timestamptz DEFAULT now()) RETURNS integer
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
    v_adjusted integer;
BEGIN
    WITH due AS (
        -- SKIP LOCKED: a concurrent tick handles the other schedules instead of waiting;
        -- the ledger's primary key is what makes a second job for a period impossible.
        SELECT s.id, s.integration_id, s.kind, coalesce(s.cron_spec, dispatch.cron_parse(s.cron)) AS spec,
               s.timezone, s.payload, s.priority, s.max_attempts, s.catch_up, s.catch_up_window, s.next_slot,
               s.period, s.period_end AS last_end
        FROM dispatch.schedules s
        WHERE s.enabled AND s.next_slot <= v_until
        FOR UPDATE SKIP LOCKED
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
      INTO v_inserted, v_skipped, v_adjusted;

    INSERT INTO dispatch.tick_runs (acting_for, started_at, duration_ms, inserted, skipped, caller, lateness_ms)
    VALUES (v_now, v_t0, 1000 * extract(epoch FROM clock_timestamp() - v_t0), v_inserted, v_skipped, v_caller,
            -- pg_cron fires at the minute; the transaction start says how late it was.
            CASE WHEN v_caller = 'pg_cron'
                 THEN 1000 * extract(epoch FROM pg_catalog.now() - date_trunc('minute', pg_catalog.now())) END);
    RETURN v_inserted;
END $$;
COMMENT ON FUNCTION dispatch.tick IS 'insert one job per due period (lookahead, catch-up policy, contiguous periods, ledger dedup), advance next_slot; returns jobs inserted';

DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dispatch_worker') THEN
        GRANT SELECT, INSERT, UPDATE ON dispatch.write_intents TO dispatch_worker;
        GRANT UPDATE (period_end) ON dispatch.schedules TO dispatch_worker;
        GRANT EXECUTE ON FUNCTION dispatch.begin_write(bigint, text, text, double precision),
                                  dispatch.confirm_write(bigint, text, jsonb),
                                  dispatch.withdraw_write(bigint, text, text),
                                  dispatch.is_schedule_key(text, text, text),
                                  dispatch.check_caller_key(text, text, text, text),
                                  dispatch.period_end_for(text, text, timestamptz),
                                  dispatch.period_natural_start(text, text, timestamptz, timestamptz),
                                  dispatch.period_label(text, text, timestamptz) TO dispatch_worker;
    END IF;
END $$
;
