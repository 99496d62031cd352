"""The poller: wait for work, claim a batch in one statement, run each job, record it.

The loop wakes on a NOTIFY, on a freed slot, at the earliest future ``run_after`` and on the
poll interval. Claims take up to the free capacity; successes are written in batches by the
:class:`Completer`; retries and failures are written one by one (they are rare). Every write
is conditional on ownership: a job whose lease was lost is someone else's now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from app import logs, metrics
from app.db import query
from app.execution import Executor, Outcome
from app.retry import RetryPolicy

FETCH_COOLDOWN = 0.002  # seconds a nearly-full worker waits for more slots before claiming
DB_ERRORS = (psycopg.OperationalError, psycopg.errors.AdminShutdown, OSError)


@dataclass
class ClaimedJob:
    id: int
    integration_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    scheduled_for: datetime
    run_after: datetime
    enqueued_at: datetime
    started_at: datetime
    idempotency_key: str
    schedule_id: int | None
    adapter: str
    config: dict[str, Any]
    secret_name: str | None
    circuit: str


@dataclass
class WorkerConfig:
    worker_id: str
    concurrency: int = 10
    poll_interval: float = 2.0
    lease_seconds: float = 30.0
    retry: RetryPolicy = RetryPolicy()


class DbState:
    """What the worker last saw of the database, for /health."""

    def __init__(self) -> None:
        self.ok = False
        self.error: str | None = "not connected yet"

    def up(self) -> None:
        self.ok, self.error = True, None

    def down(self, exc: BaseException) -> None:
        self.ok, self.error = False, f"{type(exc).__name__}: {str(exc).strip()[:200]}"


async def with_retry(pool: AsyncConnectionPool[Any], db: DbState, fn: Callable[[Any], Awaitable[Any]],
                     give_up: Callable[[], bool] = lambda: False) -> Any:
    """Run ``fn(conn)`` in a transaction, retrying transient database errors with backoff."""
    delay = 0.05
    while True:
        try:
            async with pool.connection() as conn:
                result = await fn(conn)
            db.up()
            return result
        except DB_ERRORS as exc:
            db.down(exc)
            if give_up():
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class Completer:
    """Writes successes in batches: one UPDATE for everything finished since the last write."""

    def __init__(self, pool: AsyncConnectionPool[Any], db: DbState, worker_id: str,
                 on_done: Callable[[list[int], list[int]], None], forget: Callable[[int], None]) -> None:
        self._pool, self._db, self._worker_id, self._on_done = pool, db, worker_id, on_done
        self._forget_one = forget
        self._pending: list[tuple[int, float, dict[str, Any]]] = []
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()  # one write at a time; a final flush waits for the current one

    def add(self, job_id: int, finished_at: float, result: dict[str, Any]) -> None:
        """``finished_at`` in epoch seconds."""
        self._pending.append((job_id, finished_at, result))
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            self._ready.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[tuple[int, float, dict[str, Any]]]) -> None:
        params = {"worker": self._worker_id, "ids": [b[0] for b in batch],
                  "finished": [b[1] for b in batch], "results": json.dumps([b[2] for b in batch], default=str)}

        async def write(conn: Any) -> set[int]:
            cur = await conn.execute(query("complete_jobs"), params)
            return {row[0] for row in await cur.fetchall()}

        try:
            written = await with_retry(self._pool, self._db, write)
        except psycopg.Error as exc:
            # The database refused the batch (e.g. a result it cannot store, such as a NUL
            # character in JSON): write the rows one by one so one bad row fails only its job.
            if len(batch) == 1:
                await self._refuse(batch[0][0], exc)
                return self._on_done([], [])
            for item in batch:
                await self._write([item])
            return
        lost = [b[0] for b in batch if b[0] not in written]
        self._on_done(sorted(written), lost)

    async def _refuse(self, job_id: int, exc: psycopg.Error) -> None:
        error = (f"the job succeeded but its result could not be stored: {type(exc).__name__}: "
                 f"{str(exc).splitlines()[0][:200]}; the adapter must return plain JSON")
        params = {"id": job_id, "worker": self._worker_id, "error": error}

        async def write(conn: Any) -> None:
            await conn.execute(query("fail_job"), params)

        await with_retry(self._pool, self._db, write)
        logs.event("job.failed", logging.ERROR, job_id=job_id, error=error)
        self._forget_one(job_id)


class Worker:
    def __init__(self, pool: AsyncConnectionPool[Any], executor: Executor, config: WorkerConfig) -> None:
        self.pool = pool
        self.executor = executor
        self.config = config
        self.db = DbState()
        self.inflight: dict[int, asyncio.Task[None]] = {}  # executing now
        # Finished, success not yet written: still 'running' in the database (the lease keeper
        # renews them) but no longer using a local slot, so claims overlap with writes.
        self.unflushed: set[int] = set()
        self.jobs: dict[int, ClaimedJob] = {}
        self.completer = Completer(pool, self.db, config.worker_id, self._completed,
                                   lambda job_id: self._forget([job_id]))
        self.stopping = False
        self._wake = asyncio.Event()
        self._min_batch = max(1, config.concurrency // 4)
        self.listening: Callable[[], bool] = lambda: True  # the daemon points this at its listener
        self.claimed_total = 0

    # -- the loop
    def wake(self) -> None:
        self._wake.set()

    def free(self) -> int:
        return self.config.concurrency - len(self.inflight)

    async def run(self) -> None:
        # The completer outlives the loop: drain() flushes and stops it.
        self._completer_task = asyncio.create_task(self.completer.run(), name="completer")
        while not self.stopping:
            if self.inflight and 0 < self.free() < self._min_batch:
                # Claims are serialised across daemons: take slots in batches, not one by one.
                await asyncio.sleep(FETCH_COOLDOWN)
            self._wake.clear()
            timeout = await self._step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _step(self) -> float | None:
        """Claim what is due; return how long to wait before looking again."""
        free = self.free()
        if free <= 0:
            return None
        try:
            claimed = await self._claim(free)
        except DB_ERRORS as exc:
            self.db.down(exc)
            return 0.5
        except Exception as exc:  # noqa: BLE001 — e.g. a schema older than this code: say so, keep going
            logs.event("worker.claim_failed", logging.ERROR, error=f"{type(exc).__name__}: {str(exc)[:300]}")
            return self.config.poll_interval
        if claimed == free:
            return 0  # maybe more is due: look again at once
        return await self._until_next_run_after()

    async def _claim(self, limit: int) -> int:
        params = {"worker": self.config.worker_id, "limit": limit, "lease": self.config.lease_seconds}
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query("claim_jobs"), params)
            rows = await cur.fetchall()
        self.db.up()
        for row in rows:
            self._start(ClaimedJob(**row))
        self.claimed_total += len(rows)
        return len(rows)

    async def _until_next_run_after(self) -> float:
        try:
            async with self.pool.connection() as conn:
                row = await (await conn.execute(query("next_run_after"))).fetchone()
        except DB_ERRORS as exc:
            self.db.down(exc)
            return 0.5
        poll = self.poll_interval()
        if row is None or row[0] is None:
            return poll
        wait: float = (row[0] - datetime.now(UTC)).total_seconds()
        return min(poll, max(wait + 0.001, 0.0))

    def poll_interval(self) -> float:
        """The configured interval; at most one second while no NOTIFY can wake us."""
        return self.config.poll_interval if self.listening() else min(self.config.poll_interval, 1.0)

    # -- one job
    def _start(self, job: ClaimedJob) -> None:
        self.jobs[job.id] = job
        self.inflight[job.id] = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
        metrics.observe_started(job)
        logs.event("job.started", job_id=job.id, integration=job.integration_id, kind=job.kind,
                   attempt=job.attempts, drift_ms=_ms(job.started_at - job.scheduled_for))

    async def _run_job(self, job: ClaimedJob) -> None:
        t0 = time.perf_counter()
        outcome = await self.executor.execute(job)
        metrics.observe_finished(job, outcome.status, time.perf_counter() - t0)
        duration_ms = round((time.perf_counter() - t0) * 1000, 2)
        if outcome.status == "succeeded":
            del self.inflight[job.id]
            self.unflushed.add(job.id)
            self.wake()
            self.completer.add(job.id, time.time(), outcome.result or {})
            logs.event("job.succeeded", job_id=job.id, integration=job.integration_id, kind=job.kind,
                       attempt=job.attempts, duration_ms=duration_ms)
            return
        await self._record_failure(job, outcome, duration_ms)

    async def _record_failure(self, job: ClaimedJob, outcome: Outcome, duration_ms: float) -> None:
        name = {"retry": "retry_job", "park": "retry_job", "failed": "fail_job"}[outcome.status]
        params = {"id": job.id, "worker": self.config.worker_id, "error": outcome.error,
                  "delay": outcome.delay, "refund": outcome.status == "park"}

        async def write(conn: Any) -> Any:
            return await (await conn.execute(query(name), params)).fetchone()

        try:
            row = await with_retry(self.pool, self.db, write, give_up=lambda: self.stopping)
        except DB_ERRORS:
            row = None
        level = logging.ERROR if outcome.status == "failed" else logging.WARNING
        logs.event(f"job.{outcome.status}", level, job_id=job.id, integration=job.integration_id,
                   kind=job.kind, attempt=job.attempts, duration_ms=duration_ms, error=outcome.error,
                   retry_in_s=round(outcome.delay, 3) if outcome.status != "failed" else None,
                   ownership_lost=row is None or None)
        self._forget([job.id])

    def _completed(self, written: list[int], lost: list[int]) -> None:
        for job_id in lost:
            logs.event("job.ownership_lost", logging.WARNING, job_id=job_id,
                       detail="its lease expired before the completion was written; the ledger guards a rerun")
        self._forget(written + lost)

    def _forget(self, ids: list[int]) -> None:
        for job_id in ids:
            self.inflight.pop(job_id, None)
            self.unflushed.discard(job_id)
            self.jobs.pop(job_id, None)
        self.wake()

    # -- leases and shutdown
    async def renew_leases(self) -> int:
        ids = [*self.inflight, *self.unflushed]
        if not ids:
            return 0
        params = {"ids": ids, "worker": self.config.worker_id, "lease": self.config.lease_seconds}
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(query("renew_leases"), params)).fetchall()
        kept = {r[0] for r in rows}
        for job_id in set(ids) - kept:
            task = self.inflight.get(job_id)
            if task is not None:
                task.cancel()
                logs.event("job.lease_lost", logging.WARNING, job_id=job_id,
                           detail="another worker rescued it; this run was cancelled")
                self._forget([job_id])
        return len(kept)

    async def drain(self, grace: float) -> None:
        """Stop claiming, let in-flight jobs finish within ``grace``, release the rest."""
        self.stopping = True
        self.wake()
        tasks = list(self.inflight.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        leftover = [job_id for job_id, t in self.inflight.items() if not t.done()]
        for job_id in leftover:
            self.inflight[job_id].cancel()
        await self.completer.flush()
        completer = getattr(self, "_completer_task", None)
        if completer is not None:
            completer.cancel()
        if leftover:
            await self._release(leftover)

    async def _release(self, ids: list[int]) -> None:
        params = {"ids": ids, "worker": self.config.worker_id,
                  "reason": "released at shutdown before it finished; the attempt was not counted"}
        try:
            async with self.pool.connection() as conn:
                await conn.execute(query("release_jobs"), params)
            logs.event("jobs.released", count=len(ids), job_ids=ids)
        except DB_ERRORS as exc:
            logs.event("jobs.release_failed", logging.ERROR, count=len(ids), error=str(exc)[:200],
                       detail="their leases will expire and they will be retried")
        self._forget(ids)


def _ms(delta: timedelta) -> float:
    return round(delta.total_seconds() * 1000, 2)
