-- integration-dispatch, Alembic revision 0013: Claims at scale: per-integration try-locks instead of one global lock, and the head of the queue.
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0013_claim_locks.py
-- (sha256 9dd10e388e7412b6). Do not edit: change the Alembic migration, re-render.
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

CREATE INDEX jobs_claim_order_idx ON dispatch.jobs (priority, run_after, id) WHERE status = 'queued';

CREATE OR REPLACE FUNCTION dispatch.claim_jobs(p_worker text, p_limit integer, p_lease_seconds double precision)
RETURNS TABLE (id bigint, integration_id text, kind text, payload jsonb, attempts integer,
               max_attempts integer, scheduled_for timestamptz, run_after timestamptz,
               enqueued_at timestamptz, started_at timestamptz, idempotency_key text,
               schedule_id bigint, adapter text, config jsonb, secret_name text, circuit text)
LANGUAGE plpgsql
-- JIT compiling a millisecond query costs more than it saves. Plans are cached: every step has
-- an index made for it (enable_seqscan is off, below), so the generic plan is as good as a
-- fresh one, and planning anew on every call cost half the claim's time (0010).
SET jit = off AS $$
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

ALTER FUNCTION dispatch.claim_jobs(text, integer, double precision) SET search_path = pg_catalog, dispatch, pg_temp;
ALTER FUNCTION dispatch.claim_jobs(text, integer, double precision) SET enable_seqscan = off;
