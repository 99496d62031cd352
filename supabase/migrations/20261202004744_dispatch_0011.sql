-- integration-dispatch, Alembic revision 0011: Retention that keeps up, and keeps what must stay: every table that grows with the work has
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0011_retention.py
-- (sha256 58cb3078b7447ab0). Do not edit: change the Alembic migration, re-render.
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

INSERT INTO dispatch.settings (key, value, description) VALUES
    ('ledger_result_retention_days', '90', 'dispatch.maintain() clears the result a caller''s ad-hoc idempotency key keeps in the ledger after this (the key stays: a repeat still returns the first job; the newest sync cursor stays too); fractions of a day allowed')
ON CONFLICT (key) DO NOTHING;

UPDATE dispatch.settings SET description = 'dispatch.maintain() deletes finished jobs older than this, with their history and their own job:<id> keys (callers'' and schedules'' keys stay); fractions of a day allowed' WHERE key = 'job_retention_days';
UPDATE dispatch.settings SET description = 'dispatch.maintain() deletes older tick_runs rows; fractions of a day allowed' WHERE key = 'tick_runs_retention_days';
UPDATE dispatch.settings SET description = 'dispatch.maintain() deletes alerts resolved longer ago than this; fractions of a day allowed' WHERE key = 'alert_retention_days';
UPDATE dispatch.settings SET description = 'dispatch.maintain() deletes daemons that stopped (or went silent) longer ago than this; fractions of a day allowed' WHERE key = 'worker_retention_days';

CREATE FUNCTION dispatch.retention(p_key text, p_default_days text) RETURNS interval
LANGUAGE sql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
    SELECT dispatch.setting(p_key, p_default_days)::double precision * interval '1 day'
$$;
COMMENT ON FUNCTION dispatch.retention IS 'a *_retention_days setting as an interval (fractions of a day allowed)';

CREATE OR REPLACE FUNCTION dispatch.prune_jobs(p_older_than interval, p_limit integer DEFAULT 10000) RETURNS integer
LANGUAGE sql SET search_path = pg_catalog, dispatch, pg_temp SET jit = off AS $$
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
COMMENT ON FUNCTION dispatch.prune_jobs IS 'delete finished jobs older than p_older_than (at most p_limit), their history, and the ledger rows of their own job:<id> keys; callers'' and schedules'' keys are kept';

CREATE OR REPLACE FUNCTION dispatch.jobs_forget_events() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, dispatch, pg_temp AS $$
BEGIN
    DELETE FROM dispatch.job_events e WHERE e.job_id = ANY (ARRAY(SELECT o.id FROM old_rows o));
    RETURN NULL;
END $$;

-- Callers' ad-hoc keys whose result is still kept: what prune_ledger_results walks, oldest first.
-- Jobs' own keys never enter it (they leave with their job), so the per-job path adds no entry.
CREATE INDEX idempotency_keys_results_idx ON dispatch.idempotency_keys (updated_at)
    WHERE slot IS NULL AND result IS NOT NULL AND key NOT LIKE 'job:%';
CREATE FUNCTION dispatch.prune_ledger_results(p_older_than interval, p_limit integer DEFAULT 10000) RETURNS integer
LANGUAGE sql SET search_path = pg_catalog, dispatch, pg_temp SET jit = off AS $$
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
COMMENT ON FUNCTION dispatch.prune_ledger_results IS 'clear the result of callers'' ad-hoc keys last updated before p_older_than (at most p_limit); the keys stay, schedules'' keys are never touched';
CREATE INDEX alerts_resolved_idx ON dispatch.alerts (resolved_at) WHERE resolved_at IS NOT NULL;

CREATE OR REPLACE FUNCTION dispatch.check_caller_key(p_integration_id text, p_kind text, p_key text, p_source text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, dispatch, pg_temp AS $$
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
COMMENT ON FUNCTION dispatch.check_caller_key IS 'refuse a caller''s key in the namespace of scheduled periods, or of jobs'' own keys (job:<id>)';

CREATE OR REPLACE FUNCTION dispatch.maintain(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, dispatch, pg_temp AS $$
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
COMMENT ON FUNCTION dispatch.maintain IS 'the per-minute pg_cron duty: lease rescue, retention of jobs and ledger results (in batches until done), tick runs, alerts and workers, alert checks';
