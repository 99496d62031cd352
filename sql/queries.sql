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
  FROM unnest(%(ids)s::bigint[], %(finished)s::timestamptz[], %(results)s::jsonb[])
       AS u(id, finished_at, result)
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
UPDATE dispatch.jobs
   SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s::double precision)
 WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker)s::text AND status = 'running'
RETURNING id;

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
       extract(epoch FROM started_at - scheduled_for) AS drift_seconds
  FROM dispatch.jobs WHERE id = %(id)s::bigint;

-- name: enqueue_job
SELECT job_id, duplicate FROM dispatch.enqueue_job(
    %(integration_id)s::text, %(kind)s::text, %(payload)s::jsonb, %(scheduled_for)s::timestamptz,
    %(idempotency_key)s::text, %(priority)s::smallint, %(max_attempts)s::integer,
    %(run_after)s::timestamptz, %(source)s::text);
