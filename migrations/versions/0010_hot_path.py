"""The per-job database path: claims probe by key, and the two transitions every job makes are
recorded once per statement instead of once per row.

The claim probes the primary key per candidate instead of joining (the planner scanned the
whole table twice per claim once the queue held a few thousand rows).

A claim (queued -> running) and a success (running -> succeeded) are what the daemon writes
thousands of times a second, in batches. Their history event and (for a success) the ledger's
state were written by row triggers in PL/pgSQL, one call and one INSERT/UPDATE per job: about
two thirds of the database's work per job. ``dispatch.jobs_record_batch`` now writes them
with one INSERT and one UPDATE per statement from the statement's transition tables; the row
triggers keep every other transition (retries, failures, cancels, rescues, hand edits), which
are rare. The events and the ledger rows are the same as before, field for field.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op
from app.migrations import earlier_revision

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The claim's last two steps probe the primary key once per candidate (= ANY(ARRAY(...))): as a
# join, the planner chose a sequential scan of the whole jobs table, twice per claim, whenever
# the queue was a few thousand rows or more.
_CLAIM_PROBES = (
    ("        WHERE j.id IN (SELECT candidates.id FROM candidates) AND j.status = 'queued'\n",
     "        WHERE j.id = ANY (ARRAY(SELECT candidates.id FROM candidates)) AND j.status = 'queued'\n"),
    ("      FROM locked l, dispatch.integrations i\n     WHERE j.id = l.id AND i.id = j.integration_id\n",
     "      FROM dispatch.integrations i\n     WHERE j.id = ANY (ARRAY(SELECT l.id FROM locked l)) AND i.id = j.integration_id\n"),
)

HOT = "(OLD.status = 'queued' AND NEW.status = 'running') OR (OLD.status = 'running' AND NEW.status = 'succeeded')"

BATCH = r"""
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
"""


def _row_triggers(skip_hot: bool) -> str:
    hot = f" AND NOT ({HOT})" if skip_hot else ""
    return f"""
DROP TRIGGER jobs_record_transition ON dispatch.jobs;
-- UPDATE OF: statements that set neither column (lease renewals) never even test the WHEN.
CREATE TRIGGER jobs_record_transition AFTER UPDATE OF status, cancel_requested_at ON dispatch.jobs
    FOR EACH ROW
    WHEN ((OLD.status IS DISTINCT FROM NEW.status{hot})
          OR OLD.cancel_requested_at IS DISTINCT FROM NEW.cancel_requested_at)
    EXECUTE FUNCTION dispatch.jobs_record_transition();
DROP TRIGGER jobs_terminal ON dispatch.jobs;
CREATE TRIGGER jobs_terminal AFTER UPDATE OF status ON dispatch.jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status{hot}
          AND (NEW.status IN ('succeeded', 'failed', 'cancelled') OR OLD.status IN ('succeeded', 'failed', 'cancelled')))
    EXECUTE FUNCTION dispatch.jobs_terminal();
"""


def _claim(probes: bool) -> str:
    claim: str = earlier_revision("0008_scale.py").claim_jobs()
    for old, new in _CLAIM_PROBES if probes else ():
        assert old in claim, f"claim_jobs is not the text this revision expects: {old!r}"
        claim = claim.replace(old, new)
    # CREATE OR REPLACE takes the SET clauses of its text: keep 0006's fixed search_path. And
    # every step of the claim has an index made for it; statistics taken while the queue was
    # full made the planner scan the heap for "is anything due?", which walks every finished
    # row in front of the first queued one, so the claim never scans. With that, the cached
    # (generic) plan is as good as a fresh one, and planning the claim anew on every call
    # (force_custom_plan) cost half its time: 1.2 ms against 0.73 ms for a claim of one job.
    fn = "ALTER FUNCTION dispatch.claim_jobs(text, integer, double precision)"
    return (claim + f"{fn} SET search_path = pg_catalog, dispatch, pg_temp;\n"
            + (f"{fn} SET enable_seqscan = off;\n{fn} RESET plan_cache_mode;\n" if probes else ""))


def upgrade() -> None:
    op.execute(_claim(probes=True))
    op.execute(BATCH)
    op.execute(_row_triggers(skip_hot=True))


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_record_batch ON dispatch.jobs; DROP FUNCTION dispatch.jobs_record_batch();")
    op.execute(_row_triggers(skip_hot=False))
    op.execute(_claim(probes=False))
