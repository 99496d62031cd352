"""Retention that keeps up, and keeps what must stay: every table that grows with the work has
its own retention, and the ledger loses only what nobody can ask for again.

- Every ``*_retention_days`` setting takes fractions of a day (``0.0007`` is about a minute), read
  through ``dispatch.retention()``: a soak, a test or a small database can prune within minutes.
- ``prune_jobs`` deletes the ledger row of a job's *own* key with the job. A job enqueued without
  a key gets ``job:<id>`` (so receivers can deduplicate), one ledger row per job: the ledger grew
  by one row per job for ever. Nobody can ask for such a key again — callers may no longer give
  ``job:...`` keys (``check_caller_key`` refuses them) — so the row goes with its job, unless a
  vendor write was recorded under it (``write_intents``, never pruned; its key stays) or it holds
  the newest sync cursor of its integration and kind (``last_sync_cursor`` reads it).
- Callers' keys (``dispatch.enqueue(..., idempotency_key => ...)``) stay for ever: a repeat must
  still return the first job and create nothing. Only their ``result`` is cleared, after
  ``ledger_result_retention_days`` (90), by ``prune_ledger_results`` (again keeping the newest
  sync cursor). The schedules' keys (``slot`` set) are never touched, nor are their results.
- ``maintain()`` runs ``prune_ledger_results`` in batches like the jobs; resolved alerts are found
  by an index instead of a scan of every alert.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op
from app.migrations import earlier_function

# Another branch may also add a 0011: renumber here (and the "Revision ID" lines above).
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

PATH = "SET search_path = pg_catalog, dispatch, pg_temp"

# What each retention setting does now, and what it said before (restored by the downgrade).
DESCRIPTIONS = {
    "job_retention_days": (
        "dispatch.maintain() deletes finished jobs older than this, with their history and their own job:<id> keys "
        "(callers' and schedules' keys stay); fractions of a day allowed",
        "dispatch.maintain() deletes finished jobs older than this; the ledger keeps their keys"),
    "tick_runs_retention_days": ("dispatch.maintain() deletes older tick_runs rows; fractions of a day allowed",
                                 "dispatch.maintain() deletes older tick_runs rows"),
    "alert_retention_days": (
        "dispatch.maintain() deletes alerts resolved longer ago than this; fractions of a day allowed",
        "dispatch.maintain() deletes alerts resolved longer ago than this"),
    "worker_retention_days": (
        "dispatch.maintain() deletes daemons that stopped (or went silent) longer ago than this; "
        "fractions of a day allowed",
        "dispatch.maintain() deletes daemons that stopped (or went silent) longer ago than this"),
}

SETTINGS = r"""
INSERT INTO dispatch.settings (key, value, description) VALUES
    ('ledger_result_retention_days', '90', 'dispatch.maintain() clears the result a caller''s ad-hoc idempotency key keeps in the ledger after this (the key stays: a repeat still returns the first job; the newest sync cursor stays too); fractions of a day allowed')
ON CONFLICT (key) DO NOTHING;
"""


def _describe(which: int) -> str:
    return "".join(f"UPDATE dispatch.settings SET description = '{texts[which].replace(chr(39), chr(39) * 2)}' "
                   f"WHERE key = '{key}';\n" for key, texts in DESCRIPTIONS.items())


RETENTION = r"""
CREATE FUNCTION dispatch.retention(p_key text, p_default_days text) RETURNS interval
LANGUAGE sql STABLE SET search_path = pg_catalog, dispatch, pg_temp AS $$
    SELECT dispatch.setting(p_key, p_default_days)::double precision * interval '1 day'
$$;
COMMENT ON FUNCTION dispatch.retention IS 'a *_retention_days setting as an interval (fractions of a day allowed)';
"""

# The newest succeeded row with a sync cursor of k's integration and kind is what
# last_sync_cursor (sql/queries.sql) reads: never cleared, never deleted (ties keep every tied
# row). Found the way last_sync_cursor finds it, newest first down idempotency_keys_latest_idx.
# coalesce: a row without a result (a failed job's) is no cursor, and NOT NULL would keep it.
_NEWEST_CURSOR = """coalesce(k.state = 'succeeded' AND k.result ? 'cursor' AND k.updated_at >= (
               SELECT n.updated_at FROM dispatch.idempotency_keys n
                WHERE n.integration_id = k.integration_id AND n.kind = k.kind AND n.state = 'succeeded'
                  AND n.result ? 'cursor'
                ORDER BY n.updated_at DESC LIMIT 1), false)"""

# jit = off: the cursor check's estimate made every batch JIT-compile its plan (~17 ms), for a
# statement that runs in a few hundred.
PRUNE_JOBS = rf"""
CREATE OR REPLACE FUNCTION dispatch.prune_jobs(p_older_than interval, p_limit integer DEFAULT 10000) RETURNS integer
LANGUAGE sql {PATH} SET jit = off AS $$
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
           AND NOT {_NEWEST_CURSOR}
    )
    SELECT count(*)::integer FROM gone
$$;
COMMENT ON FUNCTION dispatch.prune_jobs IS 'delete finished jobs older than p_older_than (at most p_limit), their history, and the ledger rows of their own job:<id> keys; callers'' and schedules'' keys are kept';
"""

PRUNE_LEDGER_RESULTS = rf"""
-- Callers' ad-hoc keys whose result is still kept: what prune_ledger_results walks, oldest first.
-- Jobs' own keys never enter it (they leave with their job), so the per-job path adds no entry.
CREATE INDEX idempotency_keys_results_idx ON dispatch.idempotency_keys (updated_at)
    WHERE slot IS NULL AND result IS NOT NULL AND key NOT LIKE 'job:%';
CREATE FUNCTION dispatch.prune_ledger_results(p_older_than interval, p_limit integer DEFAULT 10000) RETURNS integer
LANGUAGE sql {PATH} SET jit = off AS $$
    WITH old AS (
        SELECT k.key FROM dispatch.idempotency_keys k
         WHERE k.slot IS NULL AND k.result IS NOT NULL AND k.key NOT LIKE 'job:%'
           AND k.updated_at < clock_timestamp() - p_older_than
           AND NOT {_NEWEST_CURSOR}
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
"""

# The history of a batch of jobs by the (job_id, id) index: as a join with the transition table
# the planner hashed every event of every job (a sequential scan of job_events per batch).
FORGET_EVENTS = rf"""
CREATE OR REPLACE FUNCTION dispatch.jobs_forget_events() RETURNS trigger LANGUAGE plpgsql {PATH} AS $$
BEGIN
    DELETE FROM dispatch.job_events e WHERE e.job_id = ANY (ARRAY(SELECT o.id FROM old_rows o));
    RETURN NULL;
END $$;
"""

CALLER_KEY = rf"""
CREATE OR REPLACE FUNCTION dispatch.check_caller_key(p_integration_id text, p_kind text, p_key text, p_source text) RETURNS void
LANGUAGE plpgsql {PATH} AS $$
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
"""

MAINTAIN = rf"""
CREATE OR REPLACE FUNCTION dispatch.maintain(now timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql {PATH} AS $$
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
"""


def upgrade() -> None:
    op.execute(SETTINGS)
    op.execute(_describe(0))
    op.execute(RETENTION)
    op.execute(PRUNE_JOBS)
    op.execute(FORGET_EVENTS)
    op.execute(PRUNE_LEDGER_RESULTS)
    op.execute(CALLER_KEY)
    op.execute(MAINTAIN)


def downgrade() -> None:
    # The earlier functions read whole days.
    op.execute("UPDATE dispatch.settings SET value = ceil(value::double precision)::integer::text "
               "WHERE key LIKE '%\\_retention\\_days' AND value !~ '^[0-9]+$'")
    op.execute(earlier_function("0008_scale.py", "maintain", "now timestamptz DEFAULT now()) RETURNS integer"))
    op.execute(f"ALTER FUNCTION dispatch.maintain(timestamptz) {PATH}")
    op.execute("COMMENT ON FUNCTION dispatch.maintain IS 'the per-minute pg_cron duty: lease rescue, retention of "
               "jobs (in batches until done), tick runs, alerts and workers, alert checks'")
    op.execute(earlier_function("0005_exactly_once.py", "check_caller_key", "p_integration_id text, p_kind text"))
    op.execute(f"ALTER FUNCTION dispatch.check_caller_key(text, text, text, text) {PATH}")
    op.execute("COMMENT ON FUNCTION dispatch.check_caller_key IS 'refuse a caller''s key in the namespace of "
               "scheduled periods'")
    op.execute("DROP INDEX dispatch.alerts_resolved_idx")
    op.execute("DROP FUNCTION dispatch.prune_ledger_results(interval, integer)")
    op.execute("DROP INDEX dispatch.idempotency_keys_results_idx")
    op.execute(earlier_function("0001_schema.py", "prune_jobs", "p_older_than interval, p_limit integer"))
    op.execute(f"ALTER FUNCTION dispatch.prune_jobs(interval, integer) {PATH}")
    op.execute("COMMENT ON FUNCTION dispatch.prune_jobs IS 'delete finished jobs older than p_older_than (at most "
               "p_limit); the idempotency ledger is kept'")
    op.execute(earlier_function("0007_operations.py", "jobs_forget_events", ")").replace("{PATH}", PATH))
    op.execute("DROP FUNCTION dispatch.retention(text, text)")
    op.execute(_describe(1))
    op.execute("DELETE FROM dispatch.settings WHERE key = 'ledger_result_retention_days'")
