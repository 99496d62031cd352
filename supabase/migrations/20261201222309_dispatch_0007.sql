-- integration-dispatch, Alembic revision 0007: The operator's day: every transition of every job on record, who did what and why.
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0007_operations.py
-- (sha256 c7e0494b3fd7060e). Do not edit: change the Alembic migration, re-render.
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

CREATE TABLE dispatch.job_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       bigint NOT NULL,        -- no FK (its check would cost the hot path): jobs_forget_events deletes with the job
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    event        text NOT NULL CONSTRAINT job_events_event CHECK (event IN (
                     'enqueued', 'claimed', 'attempt_failed', 'parked', 'rescued', 'cancel_requested',
                     'cancelled', 'retried', 'succeeded', 'failed')),
    status       dispatch.job_status,    -- the job's status after the event
    attempt      integer,                -- the attempt the event belongs to
    worker_id    text,
    actor        text,                   -- who asked (manual actions, enqueues); NULL for the worker's own steps
    reason       text,
    error_class  text,                   -- retryable | permanent | attempts_exhausted | lease_expired | parked | cancelled
    message      text,                   -- the error, redacted
    details      jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE dispatch.job_events IS 'append-only history of every job; deleted only with its job (retention)';
CREATE INDEX job_events_job_idx ON dispatch.job_events (job_id, id);

CREATE FUNCTION dispatch.current_actor() RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
    SELECT coalesce(nullif(current_setting('dispatch.actor', true), ''), 'db:' || session_user)
$$;
COMMENT ON FUNCTION dispatch.current_actor IS 'SET LOCAL dispatch.actor (CLI: the OS user; API: jwt:<sub>), else db:<role>';

CREATE FUNCTION dispatch.current_reason() RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
    SELECT nullif(current_setting('dispatch.reason', true), '')
$$;

-- The daemon redacts before it writes; this is the second line, for errors written by others.
CREATE FUNCTION dispatch.redact(p_text text) RETURNS text LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, dispatch, pg_temp AS $$
    SELECT left(regexp_replace(regexp_replace(p_text,
               '\m(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}', '\1\2[redacted]', 'gi'),
               '\m(access_token|refresh_token|client_secret|password)(["'']?\s*[:=]\s*["'']?)[^"''&\s,}]+', '\1\2[redacted]', 'gi'),
               2000)
$$;

-- Status changes (and cancel requests): what happened, told by the transition itself.
CREATE FUNCTION dispatch.jobs_record_transition() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, dispatch, pg_temp AS $$
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
-- UPDATE OF: statements that set neither column (lease renewals) never even test the WHEN.
CREATE TRIGGER jobs_record_transition AFTER UPDATE OF status, cancel_requested_at ON dispatch.jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.cancel_requested_at IS DISTINCT FROM NEW.cancel_requested_at)
    EXECUTE FUNCTION dispatch.jobs_record_transition();

-- One INSERT per statement, however many rows (a tick, a backfill, a bulk load).
CREATE FUNCTION dispatch.jobs_record_enqueued() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, dispatch, pg_temp AS $$
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
CREATE TRIGGER jobs_record_enqueued AFTER INSERT ON dispatch.jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dispatch.jobs_record_enqueued();

-- Retention follows the jobs': whoever deletes a job (dispatch.prune_jobs, an operator) deletes its history.
CREATE FUNCTION dispatch.jobs_forget_events() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, dispatch, pg_temp AS $$
BEGIN
    DELETE FROM dispatch.job_events e USING old_rows o WHERE e.job_id = o.id;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_forget_events AFTER DELETE ON dispatch.jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION dispatch.jobs_forget_events();

-- Append-only: no UPDATE ever; a DELETE only from jobs_forget_events (trigger depth 2).
CREATE FUNCTION dispatch.job_events_append_only() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, dispatch, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' OR pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'dispatch.job_events is append-only (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'history leaves only with its job: dispatch.prune_jobs() or DELETE FROM dispatch.jobs';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER job_events_append_only BEFORE UPDATE OR DELETE ON dispatch.job_events
    FOR EACH STATEMENT EXECUTE FUNCTION dispatch.job_events_append_only();

CREATE FUNCTION dispatch.job_timeline(p_job_id bigint) RETURNS SETOF dispatch.job_events
LANGUAGE sql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
    SELECT * FROM dispatch.job_events WHERE job_id = p_job_id ORDER BY id
$$;
COMMENT ON FUNCTION dispatch.job_timeline IS 'the history of one job, oldest first';

CREATE FUNCTION dispatch.job_events_json(p_job_id bigint) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
    SELECT coalesce(jsonb_agg(to_jsonb(e) - 'job_id' ORDER BY e.id), '[]') FROM dispatch.job_events e WHERE e.job_id = p_job_id
$$;
COMMENT ON FUNCTION dispatch.job_events_json IS 'the history of one job as a JSON array, oldest first (for GET /jobs/{id})';

-- Existing jobs get one line saying their history starts here.
INSERT INTO dispatch.job_events (job_id, event, status, attempt, actor, details)
SELECT id, 'enqueued', status, attempts, 'migration 0007',
       jsonb_build_object('source', source, 'scheduled_for', scheduled_for, 'note', 'history recorded from migration 0007 on')
  FROM dispatch.jobs ORDER BY id;

CREATE TABLE dispatch.operator_actions (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor     text NOT NULL DEFAULT dispatch.current_actor(),
    action    text NOT NULL,             -- e.g. schedule.backfill, integration.pause
    subject   text NOT NULL,             -- schedule:<id>, integration:<id>
    reason    text DEFAULT dispatch.current_reason(),
    details   jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE dispatch.operator_actions IS 'schedule and integration actions taken by operators (job actions are in job_events)';
CREATE INDEX operator_actions_subject_idx ON dispatch.operator_actions (subject, id);

-- The periods a schedule's slots in [p_from, p_to] close, keyed exactly as the tick keys them
-- (dispatch.slot_key on the period end), each once (by its first slot): what a backfill or a
-- trigger reserves, so a period never gets a second job whoever makes it first.
CREATE FUNCTION dispatch.schedule_periods(p_schedule_id bigint, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (slot timestamptz, period_start timestamptz, period_end timestamptz, period_label text, key text)
LANGUAGE sql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
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
COMMENT ON FUNCTION dispatch.schedule_periods IS 'the periods closed by a schedule''s slots in [p_from, p_to], with the keys the tick would give them';

ALTER TABLE dispatch.integrations
    ADD COLUMN paused_at    timestamptz,
    ADD COLUMN paused_by    text,
    ADD COLUMN pause_reason text;
COMMENT ON COLUMN dispatch.integrations.paused_at IS 'set by `integrations pause` (with enabled = false): its jobs wait until resumed';

CREATE OR REPLACE VIEW dispatch.integration_health AS
SELECT i.id AS integration_id, i.adapter, i.enabled, coalesce(i.health_mode, 'adapter default') AS health_mode,
       i.health_status, i.circuit, i.health_checked_at, i.health_next_probe_at, i.health_failures,
       i.health_latency_ms, i.health_error,
       (SELECT count(*) FROM dispatch.jobs j WHERE j.integration_id = i.id AND j.status = 'queued') AS queued,
       (SELECT count(*) FROM dispatch.jobs j WHERE j.integration_id = i.id AND j.status = 'running') AS running,
       i.paused_at, i.paused_by, i.pause_reason
FROM dispatch.integrations i;

DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dispatch_worker') THEN
        -- The jobs triggers run as the caller: the daemon's claims and completions write history.
        GRANT SELECT, INSERT ON dispatch.job_events TO dispatch_worker;
        GRANT SELECT ON dispatch.operator_actions TO dispatch_worker;
        GRANT EXECUTE ON FUNCTION dispatch.current_actor(), dispatch.current_reason(), dispatch.redact(text),
                                  dispatch.jobs_record_transition(), dispatch.jobs_record_enqueued(),
                                  dispatch.jobs_forget_events(), dispatch.job_events_append_only(),
                                  dispatch.job_timeline(bigint), dispatch.job_events_json(bigint),
                                  dispatch.schedule_periods(bigint, timestamptz, timestamptz) TO dispatch_worker;
    END IF;
END $$
;
