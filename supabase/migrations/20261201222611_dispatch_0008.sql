-- integration-dispatch, Alembic revision 0008: Costs that grow with the wrong thing: claims with many integrations, cron_prev's worst
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0008_scale.py
-- (sha256 080f86474855da9c). Do not edit: change the Alembic migration, re-render.
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
        WHERE j.id IN (SELECT candidates.id FROM candidates) AND j.status = 'queued'
        FOR UPDATE SKIP LOCKED
    )
    -- started_at is read now, after this statement's snapshot saw the capacity: a job that
    -- finished just before must never look as if it overlapped the one taking its slot.
    UPDATE dispatch.jobs j
       SET status = 'running', started_at = clock_timestamp(), attempts = j.attempts + 1, worker_id = p_worker,
           lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds)
      FROM locked l, dispatch.integrations i
     WHERE j.id = l.id AND i.id = j.integration_id
    RETURNING j.id, j.integration_id, j.kind, j.payload, j.attempts, j.max_attempts, j.scheduled_for,
              j.run_after, j.enqueued_at, j.started_at, j.idempotency_key, j.schedule_id,
              i.adapter, i.config, i.secret_name, i.circuit;
END $$;

ALTER FUNCTION dispatch.claim_jobs(text, integer, double precision) SET search_path = pg_catalog, dispatch, pg_temp
;

CREATE OR REPLACE FUNCTION dispatch.cron_prev(p_spec dispatch.cron_spec, p_tz text, p_before timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
DECLARE
    span interval;
    lo timestamptz; hi timestamptz; mid timestamptz;
BEGIN
    -- Widen the window until it holds a slot, then bisect it: cron_next(lo) < p_before <= cron_next(hi)
    -- (or hi = p_before), and slots are whole minutes apart, so a minute-wide window leaves one answer.
    FOREACH span IN ARRAY ARRAY['2 minutes', '20 minutes', '3 hours', '27 hours', '8 days', '32 days',
                                '367 days', '1462 days', '8 years', '50 years']::interval[] LOOP
        lo := p_before - span;
        IF dispatch.cron_next(p_spec, p_tz, lo) < p_before THEN
            hi := p_before;
            WHILE hi - lo > interval '1 minute' LOOP
                mid := lo + (hi - lo) / 2;
                IF dispatch.cron_next(p_spec, p_tz, mid) < p_before THEN lo := mid; ELSE hi := mid; END IF;
            END LOOP;
            RETURN dispatch.cron_next(p_spec, p_tz, lo);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

INSERT INTO dispatch.settings (key, value, description) VALUES
    ('prune_batch_size', '20000', 'finished jobs one prune batch deletes'),
    ('prune_batches_per_run', '50', 'at most this many batches per dispatch.maintain() run (once a minute): 1,000,000 jobs a minute by default'),
    ('alert_retention_days', '90', 'dispatch.maintain() deletes alerts resolved longer ago than this'),
    ('worker_retention_days', '7', 'dispatch.maintain() deletes daemons that stopped (or went silent) longer ago than this')
ON CONFLICT (key) DO NOTHING;

CREATE OR REPLACE FUNCTION dispatch.maintain(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, dispatch, pg_temp AS $$
DECLARE
    v_batch integer := dispatch.setting('prune_batch_size', '20000')::integer;
    v_pruned integer;
BEGIN
    DELETE FROM dispatch.tick_runs
     WHERE started_at < maintain.now - make_interval(days => dispatch.setting('tick_runs_retention_days', '7')::integer);
    DELETE FROM dispatch.alerts
     WHERE resolved_at < maintain.now - make_interval(days => dispatch.setting('alert_retention_days', '90')::integer);
    DELETE FROM dispatch.workers
     WHERE heartbeat_at < maintain.now - make_interval(days => dispatch.setting('worker_retention_days', '7')::integer);
    -- Crashed daemons' jobs come back even when no daemon is running to rescue them.
    PERFORM dispatch.rescue_expired_leases();
    -- Until the backlog is gone (a daemon finishes thousands of jobs a second), within a bound.
    FOR i IN 1..dispatch.setting('prune_batches_per_run', '50')::integer LOOP
        v_pruned := dispatch.prune_jobs(make_interval(days => dispatch.setting('job_retention_days', '30')::integer), v_batch);
        EXIT WHEN v_pruned < v_batch;
    END LOOP;
    RETURN dispatch.check_alerts(maintain.now);
END $$;
COMMENT ON FUNCTION dispatch.maintain IS 'the per-minute pg_cron duty: lease rescue, retention of jobs (in batches until done), tick runs, alerts and workers, alert checks';
