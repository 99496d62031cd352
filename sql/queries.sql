-- Runtime SQL of integration-dispatch, one named block per query, loaded once by app/db.py.
-- Every write after a claim is conditional on ownership (worker_id and status = 'running');
-- a write that returns no row means the job was rescued elsewhere: the caller treats that
-- as OwnershipLost, never as success.

-- name: claim_jobs
SELECT * FROM dispatch.claim_jobs(%(worker)s::text, %(limit)s::integer, %(lease)s::double precision);

-- name: complete_jobs
UPDATE dispatch.jobs j
   SET status = 'succeeded', finished_at = u.finished_at, result = u.result,
       lease_expires_at = NULL, last_error = NULL
  -- Results travel as one JSON array and finish times as epoch seconds: far cheaper to send
  -- than an array of jsonb values and timestamps.
  FROM (SELECT i.id, to_timestamp(i.t) AS finished_at, r.result
          FROM unnest(%(ids)s::bigint[], %(finished)s::float8[]) WITH ORDINALITY AS i(id, t, n)
          JOIN jsonb_array_elements(%(results)s::jsonb) WITH ORDINALITY AS r(result, n) USING (n)) u
 WHERE j.id = u.id AND j.worker_id = %(worker)s::text AND j.status = 'running'
RETURNING j.id;

-- name: retry_job
UPDATE dispatch.jobs
   SET status = 'queued', run_after = clock_timestamp() + make_interval(secs => %(delay)s::double precision),
       last_error = %(error)s::text, worker_id = NULL, lease_expires_at = NULL,
       -- A parked job (open circuit, shutdown) gets its attempt back.
       attempts = attempts - CASE WHEN %(refund)s::boolean THEN 1 ELSE 0 END
 WHERE id = %(id)s::bigint AND worker_id = %(worker)s::text AND status = 'running'
RETURNING id, run_after;

-- name: fail_job
UPDATE dispatch.jobs
   SET status = 'failed', finished_at = clock_timestamp(), last_error = %(error)s::text,
       lease_expires_at = NULL
 WHERE id = %(id)s::bigint AND worker_id = %(worker)s::text AND status = 'running'
RETURNING id;

-- name: release_jobs
UPDATE dispatch.jobs
   SET status = 'queued', run_after = clock_timestamp(), worker_id = NULL, lease_expires_at = NULL,
       attempts = greatest(attempts - 1, 0), last_error = %(reason)s::text
 WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker)s::text AND status = 'running'
RETURNING id;

-- name: renew_leases
-- Also says which of them an operator asked to cancel (the worker stops them at the vendor boundary).
UPDATE dispatch.jobs
   SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s::double precision)
 WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker)s::text AND status = 'running'
RETURNING id, cancel_requested_at IS NOT NULL AS cancel_requested;

-- name: cancel_job
-- The worker stopped a cancel-requested job (or refused its write): record it, ownership-checked.
UPDATE dispatch.jobs
   SET status = 'cancelled', finished_at = clock_timestamp(), last_error = %(error)s::text, lease_expires_at = NULL
 WHERE id = %(id)s::bigint AND worker_id = %(worker)s::text AND status = 'running'
RETURNING id;

-- name: begin_write
-- Durable (the function commits with synchronous_commit on): the intent must outlive a crash.
SELECT decision, wait_seconds, sends
  FROM dispatch.begin_write(%(id)s::bigint, %(worker)s::text, %(reference)s::text, %(window)s::double precision);

-- name: withdraw_write
SELECT dispatch.withdraw_write(%(id)s::bigint, %(worker)s::text, %(reference)s::text);

-- name: confirm_write
SELECT dispatch.confirm_write(%(id)s::bigint, %(reference)s::text, %(document)s::jsonb);

-- name: rescue_expired_leases
SELECT dispatch.rescue_expired_leases();

-- name: next_run_after
-- The earliest future start among queued jobs: the daemon sleeps until then.
SELECT min(run_after) FROM dispatch.jobs WHERE status = 'queued' AND run_after > clock_timestamp();

-- name: register_worker
INSERT INTO dispatch.workers (id, host, pid, version, concurrency)
VALUES (%(id)s::text, %(host)s::text, %(pid)s::integer, %(version)s::text, %(concurrency)s::integer)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL;

-- name: worker_heartbeat
UPDATE dispatch.workers SET heartbeat_at = now(), cold_start_ms = coalesce(%(cold_start_ms)s::double precision, cold_start_ms)
 WHERE id = %(id)s::text;

-- name: worker_stopped
UPDATE dispatch.workers SET stopped_at = now(), heartbeat_at = now() WHERE id = %(id)s::text;

-- name: ping
SELECT 1;

-- name: get_job
SELECT id, integration_id, kind, payload, status::text AS status, priority, scheduled_for, run_after,
       enqueued_at, started_at, finished_at, attempts, max_attempts, lease_expires_at, worker_id,
       last_error, result, idempotency_key, source, schedule_id,
       extract(epoch FROM started_at - scheduled_for) AS drift_seconds,
       dispatch.job_events_json(id) AS events  -- every attempt, retry and cancel, with its actor
  FROM dispatch.jobs WHERE id = %(id)s::bigint;

-- name: job_set_trace_context
-- POST /dispatch, in the enqueue's transaction: the traceparent its run continues (migration 0009).
UPDATE dispatch.jobs SET trace_context = %(trace_context)s::text WHERE id = %(id)s::bigint;

-- name: job_trace_context
-- Read by the daemon only when tracing is on (one query per job run).
SELECT trace_context FROM dispatch.jobs WHERE id = %(id)s::bigint;

-- name: enqueue_job
SELECT job_id, duplicate FROM dispatch.enqueue_job(
    %(integration_id)s::text, %(kind)s::text, %(payload)s::jsonb, %(scheduled_for)s::timestamptz,
    %(idempotency_key)s::text, %(priority)s::smallint, %(max_attempts)s::integer,
    %(run_after)s::timestamptz, %(source)s::text);

-- ---------------------------------------------------------------- operator CLI (app/cli_*.py)

-- name: cli_jobs_list
SELECT id, integration_id, kind, status::text AS status, priority, attempts, max_attempts, source,
       scheduled_for, run_after, started_at, finished_at,
       extract(epoch FROM started_at - scheduled_for) AS drift_seconds, last_error
  FROM dispatch.jobs
 WHERE (%(status)s::text IS NULL OR status = %(status)s::dispatch.job_status)
   AND (%(integration_id)s::text IS NULL OR integration_id = %(integration_id)s::text)
   AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
   AND (%(since)s::timestamptz IS NULL OR scheduled_for >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR scheduled_for < %(until)s::timestamptz)
   AND (%(text)s::text IS NULL OR strpos(lower(last_error), lower(%(text)s::text)) > 0)
 ORDER BY id DESC
 LIMIT %(limit)s::integer;

-- name: cli_job_status
SELECT id, status::text AS status, finished_at, last_error FROM dispatch.jobs WHERE id = %(id)s::bigint;

-- name: cli_job_retry
-- Only failed or cancelled jobs: a succeeded job's key already had its one effect, and a
-- queued or running job belongs to the queue or to a worker. Attempts start over.
UPDATE dispatch.jobs
   SET status = 'queued', run_after = clock_timestamp(), attempts = 0, started_at = NULL,
       finished_at = NULL, worker_id = NULL, lease_expires_at = NULL
 WHERE id = %(id)s::bigint AND status IN ('failed', 'cancelled')
RETURNING id, status::text AS status, run_after;

-- name: cli_notify_jobs
-- A status UPDATE fires no insert trigger, so wake the daemons by hand.
SELECT pg_notify('dispatch_jobs', '');

-- name: cli_job_cancel
-- A queued job is cancelled at once. A running one is asked: its worker stops the adapter
-- call at the vendor boundary (or lets a write in flight finish) and records the outcome;
-- `jobs cancel --wait` follows it there.
WITH target AS (
    SELECT id, status FROM dispatch.jobs
     WHERE id = %(id)s::bigint AND status IN ('queued', 'running')
       FOR UPDATE
)
UPDATE dispatch.jobs j
   SET status = CASE WHEN t.status = 'queued' THEN 'cancelled'::dispatch.job_status ELSE j.status END,
       finished_at = CASE WHEN t.status = 'queued' THEN clock_timestamp() ELSE j.finished_at END,
       cancel_requested_at = coalesce(j.cancel_requested_at, clock_timestamp())
  FROM target t
 WHERE j.id = t.id
RETURNING j.id, t.status::text AS was, j.status::text AS status, j.worker_id;

-- name: cli_integration_exists
SELECT id, enabled FROM dispatch.integrations WHERE id = %(id)s::text;

-- name: cli_integration_add
INSERT INTO dispatch.integrations (id, adapter, config, secret_name, max_concurrency, health_mode)
VALUES (%(id)s::text, %(adapter)s::text, %(config)s::jsonb, %(secret_name)s::text,
        %(max_concurrency)s::integer, %(health_mode)s::text)
ON CONFLICT (id) DO NOTHING
RETURNING id, adapter, config, secret_name, max_concurrency, health_mode, enabled;

-- name: cli_integrations_list
SELECT id, adapter, enabled, max_concurrency, coalesce(health_mode, 'adapter default') AS health_mode,
       health_status, circuit, secret_name, config, created_at
  FROM dispatch.integrations
 ORDER BY id;

-- name: cli_integration_set_enabled
UPDATE dispatch.integrations SET enabled = %(enabled)s::boolean
 WHERE id = %(id)s::text
RETURNING id, enabled;

-- name: cli_schedule_add
INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone, payload, catch_up, catch_up_window)
VALUES (%(integration_id)s::text, %(kind)s::text, %(cron)s::text, %(timezone)s::text, %(payload)s::jsonb,
        %(catch_up)s::text, %(catch_up_window)s::interval)
RETURNING id, integration_id, kind, cron, timezone, catch_up, catch_up_window::text AS catch_up_window, next_slot;

-- name: cli_schedules_list
SELECT id, integration_id, kind, cron, timezone, enabled, catch_up, catch_up_window::text AS catch_up_window,
       next_slot, last_slot, payload
  FROM dispatch.schedules
 ORDER BY integration_id, kind, id;

-- name: cli_schedule_get
SELECT id, integration_id, kind, cron, timezone FROM dispatch.schedules WHERE id = %(id)s::bigint;

-- name: cli_cron_slots
-- The CLI widens the window until it has n slots, so a yearly cron costs a few calls,
-- and a per-minute cron never materialises years of slots.
SELECT slot
  FROM dispatch.cron_slots(%(cron)s::text, %(timezone)s::text, now(), now() + %(horizon)s::interval) AS slot
 ORDER BY slot
 LIMIT %(n)s::integer;

-- name: cli_vault_installed
SELECT to_regclass('vault.secrets') IS NOT NULL
   AND to_regproc('vault.create_secret') IS NOT NULL
   AND to_regproc('vault.update_secret') IS NOT NULL AS installed;

-- name: secret_id
SELECT id FROM vault.secrets WHERE name = %(name)s::text;

-- name: secret_create
SELECT vault.create_secret(%(value)s::text, %(name)s::text, coalesce(%(description)s::text, '')) AS id;

-- name: secret_update
SELECT vault.update_secret(%(id)s::uuid, %(value)s::text, NULL, %(description)s::text);

-- name: cli_secrets_list
-- Names and metadata only: never the secret or decrypted_secret columns.
SELECT s.name, s.description, s.created_at, s.updated_at,
       (SELECT string_agg(i.id, ',' ORDER BY i.id) FROM dispatch.integrations i
         WHERE i.secret_name = s.name) AS used_by
  FROM vault.secrets s
 ORDER BY s.name NULLS LAST;

-- name: cli_drift_from_jobs
-- Drift percentiles per integration and kind over the caller's window.
SELECT integration_id, kind, count(*) AS started,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY drift_seconds) AS p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY drift_seconds) AS p95_s,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY drift_seconds) AS p99_s,
       max(drift_seconds) AS max_s, max(started_at) AS last_started
  FROM dispatch.job_drift
 WHERE started_at >= now() - %(since)s::interval
 GROUP BY integration_id, kind
 ORDER BY integration_id, kind;

-- name: cli_alerts_list
SELECT id, kind, subject, message, integration_id, job_id, schedule_id, raised_at, last_seen_at, resolved_at
  FROM dispatch.alerts
 WHERE %(all)s::boolean OR resolved_at IS NULL
 ORDER BY raised_at DESC, id DESC
 LIMIT %(limit)s::integer;

-- name: cli_alert_resolve
UPDATE dispatch.alerts SET resolved_at = now()
 WHERE id = %(id)s::bigint AND resolved_at IS NULL
RETURNING id, kind, subject, resolved_at;

-- name: cli_alert_get
SELECT id, kind, subject, resolved_at FROM dispatch.alerts WHERE id = %(id)s::bigint;

-- name: cli_health_integrations
SELECT integration_id, adapter, enabled, health_mode, health_status, circuit, queued, running,
       health_failures, health_latency_ms, health_checked_at, health_error
  FROM dispatch.integration_health
 ORDER BY integration_id;

-- name: cli_health_workers
-- Stopped workers are kept for a day so a recent crash or restart is still visible.
SELECT id, host, pid, version, concurrency, started_at, heartbeat_at,
       extract(epoch FROM now() - heartbeat_at) AS heartbeat_age_s, cold_start_ms, stopped_at
  FROM dispatch.workers
 WHERE stopped_at IS NULL OR stopped_at > now() - interval '1 day'
 ORDER BY stopped_at IS NOT NULL, heartbeat_at DESC
 LIMIT 50;

-- name: cli_health_last_tick
SELECT id, caller, acting_for, started_at, extract(epoch FROM now() - started_at) AS age_s,
       duration_ms, inserted, skipped, lateness_ms
  FROM dispatch.tick_runs
 ORDER BY id DESC
 LIMIT 1;

-- name: metrics_queue_depth
-- /metrics: queued and running jobs per integration, zeros included (a drained queue must
-- read 0, not vanish). One count per integration and status, each off its partial index
-- (jobs_claim_idx, jobs_running_idx): finished history is never read, however long it grows.
SELECT i.id, 'queued' AS status,
       (SELECT count(*) FROM dispatch.jobs j WHERE j.integration_id = i.id AND j.status = 'queued')
  FROM dispatch.integrations i
UNION ALL
SELECT i.id, 'running',
       (SELECT count(*) FROM dispatch.jobs j WHERE j.integration_id = i.id AND j.status = 'running')
  FROM dispatch.integrations i;

-- name: metrics_integrations
SELECT id, health_status, circuit FROM dispatch.integrations;

-- name: metrics_open_alerts
SELECT kind, count(*) FROM dispatch.alerts WHERE resolved_at IS NULL GROUP BY kind;

-- name: cli_cron_slots_present
SELECT to_regproc('dispatch.cron_slots') IS NOT NULL AS present;

-- name: health_probe_candidates
-- Integrations whose next probe is due (the daemon filters by effective health mode).
SELECT id, adapter, config, secret_name, health_mode, health_failures
  FROM dispatch.integrations
 WHERE enabled AND (health_next_probe_at IS NULL OR health_next_probe_at <= clock_timestamp());

-- name: health_reserve_probe
-- Reserve the probe before sending it: one daemon wins, and the reservation outlives restarts,
-- so an integration is never probed more often than its interval however many daemons run.
UPDATE dispatch.integrations
   SET health_next_probe_at = clock_timestamp() + make_interval(secs => %(hold)s::double precision)
 WHERE id = %(id)s::text AND (health_next_probe_at IS NULL OR health_next_probe_at <= clock_timestamp())
RETURNING id;

-- name: health_record
-- One probe or job outcome. Failures open the circuit once they reach the threshold; a
-- success closes it. next_probe_at carries the backoff.
UPDATE dispatch.integrations
   SET health_status = CASE WHEN %(ok)s::boolean THEN 'healthy'
                            WHEN health_failures + 1 >= %(threshold)s::integer THEN 'unhealthy'
                            ELSE health_status END,
       circuit = CASE WHEN %(ok)s::boolean THEN 'closed'
                      WHEN health_failures + 1 >= %(threshold)s::integer THEN 'open'
                      ELSE circuit END,
       health_failures = CASE WHEN %(ok)s::boolean THEN 0 ELSE health_failures + 1 END,
       health_checked_at = clock_timestamp(),
       health_latency_ms = coalesce(%(latency_ms)s::double precision, health_latency_ms),
       health_error = CASE WHEN %(ok)s::boolean THEN NULL ELSE %(error)s::text END,
       health_next_probe_at = CASE WHEN %(next_probe_s)s::double precision IS NULL THEN health_next_probe_at
                                   ELSE clock_timestamp() + make_interval(secs => %(next_probe_s)s::double precision) END
 WHERE id = %(id)s::text
RETURNING health_status, circuit, health_failures;

-- name: health_half_open
-- An open circuit whose wait is over lets one trial job through (passive integrations).
UPDATE dispatch.integrations SET circuit = 'half_open'
 WHERE circuit = 'open' AND health_next_probe_at <= clock_timestamp() AND id = ANY(%(ids)s::text[])
RETURNING id;

-- name: open_circuits
SELECT id, adapter, health_mode FROM dispatch.integrations WHERE circuit = 'open' AND enabled;

-- name: warm_up_candidates
-- Integrations with work due within the warm-up window.
SELECT DISTINCT i.id, i.adapter, i.config, i.secret_name
  FROM dispatch.jobs j JOIN dispatch.integrations i ON i.id = j.integration_id
 WHERE j.status = 'queued' AND i.enabled AND i.circuit <> 'open'
   AND j.run_after BETWEEN clock_timestamp() AND clock_timestamp() + make_interval(secs => %(window)s::double precision);

-- name: integration_secret
-- The narrow SECURITY DEFINER accessor: only secrets an integration references.
SELECT dispatch.integration_secret(%(integration_id)s::text, %(default_name)s::text);

-- name: alerts_to_forward
-- New alerts, each taken by exactly one daemon (SKIP LOCKED), oldest first.
UPDATE dispatch.alerts a SET notified_at = clock_timestamp()
  FROM (SELECT id FROM dispatch.alerts WHERE notified_at IS NULL ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED) n
 WHERE a.id = n.id
RETURNING a.id, a.kind, a.subject, a.message, a.details, a.integration_id, a.job_id, a.schedule_id, a.raised_at;

-- name: alerts_unforward
-- A webhook delivery that failed: the next round tries again.
UPDATE dispatch.alerts SET notified_at = NULL WHERE id = ANY(%(ids)s::bigint[]);

-- name: watchdog_status
-- The last tick pg_cron ran, and whether any schedule needs ticking at all.
SELECT (SELECT max(started_at) FROM dispatch.tick_runs WHERE caller = 'pg_cron') AS last_cron_tick,
       extract(epoch FROM clock_timestamp() - (SELECT max(started_at) FROM dispatch.tick_runs WHERE caller = 'pg_cron'))
           AS seconds_since,
       EXISTS (SELECT 1 FROM dispatch.schedules WHERE enabled) AS has_schedules;

-- name: watchdog_lock
-- Taken in the watchdog's transaction: one daemon ticks at a time.
SELECT pg_try_advisory_xact_lock(hashtext('dispatch.watchdog'));

-- name: watchdog_tick
-- In place of pg_cron, only what dispatch_worker may run: the tick (recorded as caller
-- 'watchdog'), lease rescue and the alert checks. Retention (dispatch.maintain deletes
-- history) is the owner's: it waits for pg_cron.
SELECT set_config('dispatch.tick_caller', 'watchdog', true), dispatch.tick(), dispatch.rescue_expired_leases(),
       dispatch.check_alerts();

-- name: dev_seed_integration
INSERT INTO dispatch.integrations (id, adapter, config, secret_name)
VALUES (%(id)s::text, %(adapter)s::text, %(config)s::jsonb, %(id)s::text)
ON CONFLICT (id) DO UPDATE SET config = EXCLUDED.config, enabled = true;

-- name: dev_seed_schedule
INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone, payload)
SELECT %(id)s::text, 'export', '* * * * *', 'Europe/Oslo', %(payload)s::jsonb
 WHERE NOT EXISTS (SELECT 1 FROM dispatch.schedules WHERE integration_id = %(id)s::text);

-- name: dev_jobs_by_state
SELECT integration_id, status::text, count(*) FROM dispatch.jobs GROUP BY 1, 2 ORDER BY 1, 2;

-- name: dev_drift
SELECT count(*),
       round(coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY drift_seconds), 0)::numeric * 1000, 1),
       round(coalesce(max(drift_seconds), 0)::numeric * 1000, 1)
  FROM dispatch.job_drift WHERE started_at IS NOT NULL;

-- name: dev_open_alerts
SELECT kind, subject, message FROM dispatch.open_alerts ORDER BY raised_at DESC LIMIT 5;

-- name: tick
SELECT dispatch.tick();

-- name: last_sync_cursor
-- Where the last successful sync of this integration and kind stopped. From the ledger, which
-- keeps results after the jobs themselves are pruned.
SELECT result->>'cursor' FROM dispatch.idempotency_keys
 WHERE integration_id = %(integration_id)s::text AND kind = %(kind)s::text AND state = 'succeeded'
   AND result ? 'cursor'
 ORDER BY updated_at DESC LIMIT 1;

-- ---------------------------------------------------------------- the operator's day (migration 0007)

-- name: cli_set_actor
-- Who is acting and why, for the jobs triggers (job_events) and operator_actions: local to
-- the caller's transaction, so it never leaks to the next statement on a pooled connection.
SELECT set_config('dispatch.actor', %(actor)s::text, true),
       set_config('dispatch.reason', coalesce(%(reason)s::text, ''), true);

-- name: job_events
-- One job's history, oldest first (jobs show; GET /jobs/{id}).
SELECT id, at, event, status::text AS status, attempt, worker_id, actor, reason, error_class, message, details
  FROM dispatch.job_timeline(%(id)s::bigint);

-- name: job_events_json
-- The same history as one JSON array (for an API response built in one round trip).
SELECT dispatch.job_events_json(%(id)s::bigint) AS events;

-- name: cli_jobs_select
-- The rows a bulk action would touch: the same filters for --dry-run and for the real run
-- (which re-reads them in its own transaction). --since/--until compare scheduled_for.
SELECT id, integration_id, kind, status::text AS status, attempts, max_attempts, schedule_id,
       scheduled_for, finished_at, worker_id, last_error
  FROM dispatch.jobs
 WHERE status = ANY(%(statuses)s::dispatch.job_status[])
   AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
   AND (%(integration_id)s::text IS NULL OR integration_id = %(integration_id)s::text)
   AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
   AND (%(since)s::timestamptz IS NULL OR scheduled_for >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR scheduled_for < %(until)s::timestamptz)
   AND (%(schedule_id)s::bigint IS NULL OR schedule_id = %(schedule_id)s::bigint)
 ORDER BY id;

-- name: cli_jobs_retry_many
-- Failed or cancelled jobs back to the queue with a fresh attempt budget. The previous run
-- (status, attempts, started_at, finished_at, worker, error) goes into its 'retried' event
-- (jobs_record_transition). A stale cancel request is cleared, or the next attempt would be
-- refused its write.
UPDATE dispatch.jobs
   SET status = 'queued', run_after = clock_timestamp(), attempts = 0, started_at = NULL, finished_at = NULL,
       worker_id = NULL, lease_expires_at = NULL, cancel_requested_at = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND status IN ('failed', 'cancelled')
RETURNING id, status::text AS status, run_after;

-- name: cli_jobs_cancel_many
-- Queued jobs are cancelled at once; running ones are asked (their worker stops at the
-- vendor boundary and records the outcome).
WITH target AS (
    SELECT id, status FROM dispatch.jobs
     WHERE id = ANY(%(ids)s::bigint[]) AND status IN ('queued', 'running')
     ORDER BY id
       FOR UPDATE
)
UPDATE dispatch.jobs j
   SET status = CASE WHEN t.status = 'queued' THEN 'cancelled'::dispatch.job_status ELSE j.status END,
       finished_at = CASE WHEN t.status = 'queued' THEN clock_timestamp() ELSE j.finished_at END,
       cancel_requested_at = coalesce(j.cancel_requested_at, clock_timestamp())
  FROM target t
 WHERE j.id = t.id
RETURNING j.id, t.status::text AS was, j.status::text AS status, j.worker_id;

-- name: cli_operator_action
-- Actor and reason come from cli_set_actor (the column defaults read them).
INSERT INTO dispatch.operator_actions (action, subject, details)
VALUES (%(action)s::text, %(subject)s::text, %(details)s::jsonb)
RETURNING id, at, actor, reason;

-- name: cli_schedule_full
SELECT id, integration_id, kind, cron, timezone, enabled, period, payload, priority, max_attempts, catch_up,
       catch_up_window::text AS catch_up_window, next_slot, last_slot, period_end
  FROM dispatch.schedules WHERE id = %(id)s::bigint;

-- name: cli_schedule_set_enabled
UPDATE dispatch.schedules SET enabled = %(enabled)s::boolean
 WHERE id = %(id)s::bigint
RETURNING id, integration_id, kind, enabled, next_slot, catch_up, catch_up_window::text AS catch_up_window;

-- name: cli_schedule_edit
-- Only the options given change; a new cron or zone recomputes next_slot (schedules_before_write).
UPDATE dispatch.schedules
   SET cron = coalesce(%(cron)s::text, cron),
       timezone = coalesce(%(timezone)s::text, timezone),
       payload = coalesce(%(payload)s::jsonb, payload),
       catch_up = coalesce(%(catch_up)s::text, catch_up),
       catch_up_window = coalesce(%(catch_up_window)s::interval, catch_up_window),
       period = coalesce(%(period)s::text, period),
       priority = coalesce(%(priority)s::smallint, priority),
       max_attempts = coalesce(%(max_attempts)s::integer, max_attempts)
 WHERE id = %(id)s::bigint
RETURNING id, integration_id, kind, cron, timezone, enabled, period, payload, priority, max_attempts, catch_up,
          catch_up_window::text AS catch_up_window, next_slot, last_slot, period_end;

-- name: cli_schedule_delete
-- Its jobs stay (schedule_id becomes NULL); the ledger keeps its periods' keys.
DELETE FROM dispatch.schedules WHERE id = %(id)s::bigint RETURNING id, integration_id, kind;

-- name: cli_schedule_latest_slot
-- The last slot at or before now: the period `schedules trigger` runs.
SELECT dispatch.cron_prev(cron_spec, timezone, now() + interval '1 microsecond') AS slot
  FROM dispatch.schedules WHERE id = %(id)s::bigint;

-- name: cli_schedule_periods
-- What a backfill of [from, to] would do: each period, its key, and the job that already has it.
SELECT p.slot, p.period_start, p.period_end, p.period_label, p.key, k.job_id, j.status::text AS job_status,
       k.state AS key_state
  FROM dispatch.schedule_periods(%(id)s::bigint, %(from)s::timestamptz, %(to)s::timestamptz) p
  LEFT JOIN dispatch.idempotency_keys k ON k.key = p.key
  LEFT JOIN dispatch.jobs j ON j.id = k.job_id
 ORDER BY p.slot;

-- name: cli_schedule_backfill
-- Reserve each period's key exactly as the tick does (ON CONFLICT DO NOTHING on the ledger's
-- primary key: whoever comes first, tick or backfill, makes the period's one job), then
-- insert jobs for the keys this statement reserved, with the tick's payload, source 'backfill'.
WITH plan AS (
    SELECT p.*, s.integration_id, s.kind, s.payload, s.priority, s.max_attempts, s.period, s.timezone, s.id AS schedule_id
      FROM dispatch.schedule_periods(%(id)s::bigint, %(from)s::timestamptz, %(to)s::timestamptz) p
     CROSS JOIN dispatch.schedules s
     WHERE s.id = %(id)s::bigint
), reserved AS (
    INSERT INTO dispatch.idempotency_keys (key, integration_id, kind, slot)
    SELECT p.key, p.integration_id, p.kind, p.slot FROM plan p
    ON CONFLICT (key) DO NOTHING
    RETURNING key
)
INSERT INTO dispatch.jobs (integration_id, kind, payload, priority, max_attempts, scheduled_for,
                           run_after, idempotency_key, source, schedule_id)
SELECT p.integration_id, p.kind,
       p.payload || jsonb_build_object('slot', dispatch.slot_iso(p.slot), 'period_unit', p.period,
                                       'period_label', p.period_label,
                                       'period_start', dispatch.slot_iso(p.period_start),
                                       'period_end', dispatch.slot_iso(p.period_end),
                                       'timezone', p.timezone, 'schedule_id', p.schedule_id),
       p.priority, coalesce(p.max_attempts, 5), p.slot, p.slot, p.key, 'backfill', p.schedule_id
  FROM plan p JOIN reserved r ON r.key = p.key
 ORDER BY p.slot
RETURNING id, idempotency_key AS key, scheduled_for AS slot;

-- name: cli_integration_pause
-- A pause is a disable with a reason: claims skip it, its jobs (and its schedules' new slots) wait.
UPDATE dispatch.integrations
   SET enabled = false, paused_at = now(), paused_by = dispatch.current_actor(), pause_reason = %(reason)s::text
 WHERE id = %(id)s::text
RETURNING id, paused_at, paused_by, pause_reason;

-- name: cli_integration_resume
UPDATE dispatch.integrations i
   SET enabled = true, paused_at = NULL, paused_by = NULL, pause_reason = NULL
  FROM (SELECT id, paused_at, pause_reason FROM dispatch.integrations WHERE id = %(id)s::text FOR UPDATE) o
 WHERE i.id = o.id
RETURNING i.id, o.paused_at AS was_paused_at, o.pause_reason AS was_pause_reason,
          (SELECT count(*) FROM dispatch.jobs j WHERE j.integration_id = i.id AND j.status = 'queued') AS queued;

-- name: cli_integration_set_enabled_ops
-- enable clears a pause too: the integration runs again, whichever verb said so.
UPDATE dispatch.integrations
   SET enabled = %(enabled)s::boolean,
       paused_at = CASE WHEN %(enabled)s::boolean THEN NULL ELSE paused_at END,
       paused_by = CASE WHEN %(enabled)s::boolean THEN NULL ELSE paused_by END,
       pause_reason = CASE WHEN %(enabled)s::boolean THEN NULL ELSE pause_reason END
 WHERE id = %(id)s::text
RETURNING id, enabled;

-- name: cli_integrations_list_ops
SELECT id, adapter, enabled, max_concurrency, coalesce(health_mode, 'adapter default') AS health_mode,
       health_status, circuit, secret_name, config, created_at, paused_at, paused_by, pause_reason
  FROM dispatch.integrations
 ORDER BY id;

-- name: cli_health_integrations_ops
SELECT integration_id, adapter, enabled, health_mode, health_status, circuit, queued, running,
       health_failures, health_latency_ms, health_checked_at, health_error, paused_at, paused_by, pause_reason
  FROM dispatch.integration_health
 ORDER BY integration_id;

-- name: cli_cron_check
-- Validates an expression and zone, raising a message that names the bad field.
SELECT dispatch.cron_check(%(cron)s::text, %(timezone)s::text) IS NOT NULL AS ok;

-- name: cli_now
SELECT now() AS now;

-- name: integration_secret_guard
-- What app/db/vault.py checks before the accessor: the integration's own secret_name, the
-- settings that name shared secrets, and every other integration whose id or secret_name could
-- claim the same vault name.
SELECT i.secret_name,
       (SELECT s.value FROM dispatch.settings s WHERE s.key = 'default_secret_name'),
       (SELECT s.value FROM dispatch.settings s WHERE s.key = 'shared_secret_names'),
       ARRAY(SELECT o.id FROM dispatch.integrations o
              WHERE o.id <> i.id
                AND (o.secret_name = n.name OR n.name = o.id
                     OR left(n.name, length(o.id) + 1) IN (o.id || '-', o.id || '_', o.id || '.', o.id || '/', o.id || ':')))
  FROM dispatch.integrations i,
       LATERAL (SELECT coalesce(nullif(i.secret_name, ''), nullif(%(default_name)s::text, '')) AS name) n
 WHERE i.id = %(integration_id)s::text;
