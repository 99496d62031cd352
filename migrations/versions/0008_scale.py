"""Costs that grow with the wrong thing: claims with many integrations, cron_prev's worst
case, retention slower than the drain, and a metrics read that counted history.

- The claim counts running jobs only for integrations that have a due queued job (the claim
  index answers that), not for every enabled integration.
- ``cron_prev`` finds the last slot by bisection over the window it found (about 20
  ``cron_next`` calls for a year) instead of walking forward slot by slot (260,000 of them
  for ``* * * 1-6 *`` before 1 January).
- ``maintain()`` prunes in batches until the backlog is gone (up to ``prune_batches_per_run``
  batches of ``prune_batch_size``), and keeps alerts and the workers registry bounded too.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op
from app.migrations import earlier_function

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_CLAIM_FILTER = ("        WHERE i.enabled AND i.circuit <> 'open'\n    ),",
                 "        WHERE i.enabled AND i.circuit <> 'open'\n"
                 "          -- Only integrations with a due job: the claim index answers this, so the\n"
                 "          -- cost follows the queue, not the number of integrations.\n"
                 "          AND EXISTS (SELECT 1 FROM dispatch.jobs d WHERE d.integration_id = i.id\n"
                 "                         AND d.status = 'queued' AND d.run_after <= v_now)\n    ),")

CRON_PREV = r"""
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
"""

RETENTION = r"""
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
"""


def claim_jobs() -> str:
    """This revision's claim_jobs (CREATE OR REPLACE; 0006's search_path is set after it)."""
    claim = earlier_function("0001_schema.py", "claim_jobs", "p_worker text, p_limit integer")
    assert _CLAIM_FILTER[0] in claim
    return claim.replace(*_CLAIM_FILTER)


def upgrade() -> None:
    op.execute(claim_jobs())
    # CREATE OR REPLACE takes the SET clauses of its text: keep 0006's fixed search_path.
    op.execute("ALTER FUNCTION dispatch.claim_jobs(text, integer, double precision) "
               "SET search_path = pg_catalog, dispatch, pg_temp")
    op.execute(CRON_PREV)
    op.execute(RETENTION)


def downgrade() -> None:
    op.execute(earlier_function("0003_time.py", "maintain", "now timestamptz DEFAULT now()) RETURNS integer"))
    op.execute("ALTER FUNCTION dispatch.maintain(timestamptz) SET search_path = pg_catalog, dispatch, pg_temp")
    op.execute("COMMENT ON FUNCTION dispatch.maintain IS 'the per-minute pg_cron duty: lease rescue, job and "
               "tick_runs retention, alert checks'")
    op.execute("DELETE FROM dispatch.settings WHERE key IN ('prune_batch_size', 'prune_batches_per_run', "
               "'alert_retention_days', 'worker_retention_days')")
    op.execute(earlier_function("0003_time.py", "cron_prev", "p_spec dispatch.cron_spec, p_tz text, p_before"))
    op.execute("ALTER FUNCTION dispatch.cron_prev(dispatch.cron_spec, text, timestamptz) "
               "SET search_path = pg_catalog, dispatch, pg_temp")
    op.execute(earlier_function("0001_schema.py", "claim_jobs", "p_worker text, p_limit integer"))
    op.execute("ALTER FUNCTION dispatch.claim_jobs(text, integer, double precision) "
               "SET search_path = pg_catalog, dispatch, pg_temp")
