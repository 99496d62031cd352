-- integration-dispatch, Alembic revision 0010: The per-job database path: claims probe by key, and the two transitions every job makes are
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0010_hot_path.py
-- (sha256 c71635b1f469674a). Do not edit: change the Alembic migration, re-render.
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

CREATE OR REPLACE FUNCTION dispatch.claim_jobs(p_worker text, p_limit integer, p_lease_seconds double precision)
RETURNS TABLE (id bigint, integration_id text, kind text, payload jsonb, attempts integer,
               max_attempts integer, scheduled_for timestamptz, run_after timestamptz,
               enqueued_at timestamptz, started_at timestamptz, idempotency_key text,
               schedule_id bigint, adapter text, config jsonb, secret_name text, circuit text)
LANGUAGE plpgsql
-- JIT compiling a millisecond query costs more than it saves; and the generic plan (chosen
-- after five calls, blind to the limit and the queue's shape) was measured 6x slower than a
-- custom plan, so plan each call.
SET jit = off SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_now timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('dispatch.claim_jobs'));
    v_now := clock_timestamp();
    RETURN QUERY
    WITH capacity AS (
        SELECT i.id AS integration_id,
               CASE i.circuit WHEN 'closed' THEN i.max_concurrency WHEN 'half_open' THEN 1 ELSE 0 END
               - (SELECT count(*) FROM dispatch.jobs r
                   WHERE r.integration_id = i.id AND r.status = 'running')::integer AS free
        FROM dispatch.integrations i
        WHERE i.enabled AND i.circuit <> 'open'
          -- Only integrations with a due job: the claim index answers this, so the
          -- cost follows the queue, not the number of integrations.
          AND EXISTS (SELECT 1 FROM dispatch.jobs d WHERE d.integration_id = i.id
                         AND d.status = 'queued' AND d.run_after <= v_now)
    ),
    -- Per integration, at most its free capacity, straight off the partial claim index.
    candidates AS (
        SELECT q.id, q.priority, q.run_after
        FROM capacity c
        CROSS JOIN LATERAL (
            SELECT j.id, j.priority, j.run_after FROM dispatch.jobs j
            WHERE j.integration_id = c.integration_id AND j.status = 'queued' AND j.run_after <= v_now
            ORDER BY j.priority, j.run_after, j.id
            LIMIT least(c.free, p_limit)  -- never read more than this claim can take
        ) q
        WHERE c.free > 0
        ORDER BY q.priority, q.run_after, q.id
        LIMIT p_limit
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
END $$;
ALTER FUNCTION dispatch.claim_jobs(text, integer, double precision) SET search_path = pg_catalog, dispatch, pg_temp;
ALTER FUNCTION dispatch.claim_jobs(text, integer, double precision) SET enable_seqscan = off;
ALTER FUNCTION dispatch.claim_jobs(text, integer, double precision) RESET plan_cache_mode;

CREATE FUNCTION dispatch.jobs_record_batch() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, dispatch, pg_temp AS $$
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
COMMENT ON FUNCTION dispatch.jobs_record_batch() IS
    'history and ledger for claims and successes, once per statement (the row triggers record every other transition)';
CREATE TRIGGER jobs_record_batch AFTER UPDATE ON dispatch.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dispatch.jobs_record_batch();
DO $grant$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dispatch_worker') THEN
        GRANT EXECUTE ON FUNCTION dispatch.jobs_record_batch() TO dispatch_worker;
    END IF;
END $grant$;

DROP TRIGGER jobs_record_transition ON dispatch.jobs;
-- UPDATE OF: statements that set neither column (lease renewals) never even test the WHEN.
CREATE TRIGGER jobs_record_transition AFTER UPDATE OF status, cancel_requested_at ON dispatch.jobs
    FOR EACH ROW
    WHEN ((OLD.status IS DISTINCT FROM NEW.status AND NOT ((OLD.status = 'queued' AND NEW.status = 'running') OR (OLD.status = 'running' AND NEW.status = 'succeeded')))
          OR OLD.cancel_requested_at IS DISTINCT FROM NEW.cancel_requested_at)
    EXECUTE FUNCTION dispatch.jobs_record_transition();
DROP TRIGGER jobs_terminal ON dispatch.jobs;
CREATE TRIGGER jobs_terminal AFTER UPDATE OF status ON dispatch.jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND NOT ((OLD.status = 'queued' AND NEW.status = 'running') OR (OLD.status = 'running' AND NEW.status = 'succeeded'))
          AND (NEW.status IN ('succeeded', 'failed', 'cancelled') OR OLD.status IN ('succeeded', 'failed', 'cancelled')))
    EXECUTE FUNCTION dispatch.jobs_terminal();
