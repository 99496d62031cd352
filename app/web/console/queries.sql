-- Read-only queries only the console needs (every action goes through app/cli's functions).

-- name: console_last_success
SELECT integration_id, max(finished_at) AS last_success
  FROM dispatch.jobs
 WHERE status = 'succeeded'
 GROUP BY integration_id;

-- name: console_scheduler_status
SELECT last_tick_at, last_caller, last_inserted, last_duration_ms, last_pg_cron_tick_at, seconds_since_tick
  FROM dispatch.scheduler_status;

-- name: console_drift_threshold
SELECT dispatch.setting('drift_alert_seconds', '300')::double precision AS seconds;

-- name: console_jobs_by_ids
SELECT id, status::text AS status, attempts, started_at, finished_at,
       extract(epoch FROM started_at - scheduled_for)::double precision AS drift_seconds
  FROM dispatch.jobs
 WHERE id = ANY(%(ids)s::bigint[]);

-- name: console_missed_slots
-- missed_slot alerts of one schedule in a range, by the period key they name.
SELECT details->>'idempotency_key' AS key, id AS alert_id, message, resolved_at
  FROM dispatch.alerts
 WHERE kind = 'missed_slot' AND schedule_id = %(id)s::bigint
   AND (details->>'slot')::timestamptz BETWEEN %(from)s::timestamptz AND %(to)s::timestamptz;

-- name: console_schedule
SELECT id, integration_id, kind, cron, timezone, enabled, period, created_at, next_slot
  FROM dispatch.schedules WHERE id = %(id)s::bigint;

-- name: console_alert
SELECT id, kind, subject, message, integration_id, job_id, schedule_id, raised_at, resolved_at
  FROM dispatch.alerts WHERE id = %(id)s::bigint;
