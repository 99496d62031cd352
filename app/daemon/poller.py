"""The poller: wait for work, claim a batch in one statement, run each job, record it.

The loop wakes on a NOTIFY, on a freed slot, at the earliest future ``run_after`` and on the
poll interval. Claims take up to the free capacity; successes are written in batches by the
:class:`Completer`; retries and failures are written one by one (they are rare). Every write
is conditional on ownership: a job whose lease was lost is someone else's now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from app.core import logs, metrics
from app.core.job import ClaimedJob, Outcome, Status
from app.core.retry import RetryPolicy
from app.daemon.completer import Completer
from app.daemon.writes import Fence
from app.db.errors import DB_ERRORS
from app.db.pool import DbState, with_retry
from app.db.stores import JobStore

FETCH_COOLDOWN = 0.002  # seconds a nearly-full worker waits for more slots before claiming


class Runs(Protocol):
    """What runs one job (the :class:`~app.daemon.executor.Executor`); never raises."""

    async def execute(self, job: ClaimedJob, fence: Fence | None = None) -> Outcome: ...

    def write_in_flight(self, job_id: int) -> bool:
        """Whether the job has sent a vendor write that has not answered yet."""
        ...


@dataclass
class WorkerConfig:
    worker_id: str
    concurrency: int = 10
    poll_interval: float = 2.0
    lease_seconds: float = 30.0
    retry: RetryPolicy = RetryPolicy()


class Worker:
    def __init__(self, store: JobStore, executor: Runs, config: WorkerConfig) -> None:
        self.store = store
        self.executor = executor
        self.config = config
        self.db = DbState()
        self.inflight: dict[int, asyncio.Task[None]] = {}  # executing now
        # Finished, success not yet written: still 'running' in the database (the lease keeper
        # renews them) but no longer using a local slot, so claims overlap with writes.
        self.unflushed: set[int] = set()
        self.jobs: dict[int, ClaimedJob] = {}
        # Each running job's lease as this process sees it: its adapter call stops before it ends.
        self.fences: dict[int, Fence] = {}
        self.cancelling: set[int] = set()  # an operator asked; the job stops at its next vendor boundary
        self.completer = Completer(store, self.db, self._completed, lambda job_id: self._forget([job_id]))
        self.stopping = False
        self._wake = asyncio.Event()
        self._min_batch = max(1, config.concurrency // 4)
        self.listening: Callable[[], bool] = lambda: True  # the daemon points this at its listener
        self.claimed_total = 0
        self.first_claim = asyncio.Event()  # set once the first claim has answered (jobs or not, or failed)

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
                # Every claim is a statement with a fixed cost: take slots in batches, not one by one.
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
        finally:
            self.first_claim.set()
        if claimed == free:
            return 0  # maybe more is due: look again at once
        return await self._until_next_run_after()

    async def _claim(self, limit: int) -> int:
        jobs = await self.store.claim(limit, self.config.lease_seconds)
        self.db.up()
        for job in jobs:
            self._start(job)
        self.claimed_total += len(jobs)
        return len(jobs)

    async def _until_next_run_after(self) -> float:
        try:
            next_at = await self.store.next_run_after()
        except DB_ERRORS as exc:
            self.db.down(exc)
            return 0.5
        poll = self.poll_interval()
        if next_at is None:
            return poll
        wait: float = (next_at - datetime.now(UTC)).total_seconds()
        return min(poll, max(wait + 0.001, 0.0))

    def poll_interval(self) -> float:
        """The configured interval; at most one second while no NOTIFY can wake us."""
        return self.config.poll_interval if self.listening() else min(self.config.poll_interval, 1.0)

    # -- one job
    def _fence_deadline(self) -> float:
        """Stop an adapter call a fifth of a lease (at most 5 s) before the lease would expire, so
        it has ended before any other daemon can rescue the job, clocks a little apart included."""
        lease = self.config.lease_seconds
        return asyncio.get_running_loop().time() + lease - min(lease / 5, 5.0)

    def _start(self, job: ClaimedJob) -> None:
        if job.id in self.inflight:
            # Never two attempts of one job in one daemon: the old one is still stopping.
            logs.event("job.already_running", logging.WARNING, job_id=job.id,
                       detail="claimed again while its previous attempt is still stopping; released")
            asyncio.get_running_loop().create_task(self.store.release([job.id], "claimed while still running here"))
            return
        self.jobs[job.id] = job
        self.fences[job.id] = Fence(self._fence_deadline())
        self.inflight[job.id] = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
        metrics.observe_started(job)
        logs.event("job.started", job_id=job.id, integration=job.integration_id, kind=job.kind,
                   attempt=job.attempts, drift_ms=_ms(job.started_at - job.scheduled_for))

    async def _run_job(self, job: ClaimedJob) -> None:
        t0 = time.perf_counter()
        try:
            outcome = await self.executor.execute(job, self.fences.get(job.id))
        except asyncio.CancelledError:
            if job.id not in self.cancelling:
                raise  # lease lost or shutdown: someone else records it
            outcome = Outcome(Status.CANCELLED, error="stopped before its next vendor write")
        metrics.observe_finished(job, outcome.status, time.perf_counter() - t0)
        duration_ms = round((time.perf_counter() - t0) * 1000, 2)
        if outcome.status is Status.SUCCEEDED:
            del self.inflight[job.id]
            self.unflushed.add(job.id)
            self.wake()
            self.completer.add(job.id, time.time(), outcome.result or {})
            logs.event("job.succeeded", job_id=job.id, integration=job.integration_id, kind=job.kind,
                       attempt=job.attempts, duration_ms=duration_ms)
            return
        await self._record_failure(job, outcome, duration_ms)

    async def _record_failure(self, job: ClaimedJob, outcome: Outcome, duration_ms: float) -> None:
        if job.id in self.cancelling and outcome.status is not Status.FAILED:
            outcome.status, outcome.error = Status.CANCELLED, f"cancelled by an operator; {outcome.error or 'stopped'}"
        failed = outcome.status in (Status.FAILED, Status.CANCELLED)

        async def write() -> bool:
            if outcome.status is Status.CANCELLED:
                return await self.store.cancel(job.id, outcome.error)
            if failed:
                return await self.store.fail(job.id, outcome.error)
            return await self.store.retry(job.id, outcome.error, outcome.delay, refund=outcome.status is Status.PARK)

        try:
            owned = await with_retry(self.db, write, give_up=lambda: self.stopping)
        except DB_ERRORS:
            owned = False
        level = logging.ERROR if failed else logging.WARNING
        logs.event(f"job.{outcome.status.value}", level, job_id=job.id, integration=job.integration_id,
                   kind=job.kind, attempt=job.attempts, duration_ms=duration_ms, error=outcome.error,
                   retry_in_s=None if failed else round(outcome.delay, 3), ownership_lost=not owned or None)
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
            self.fences.pop(job_id, None)
            self.cancelling.discard(job_id)
        self.wake()

    # -- leases and shutdown
    async def renew_leases(self) -> int:
        ids = [*self.inflight, *self.unflushed]
        if not ids:
            return 0
        kept = await self.store.renew(ids, self.config.lease_seconds)
        deadline = self._fence_deadline()
        for job_id, cancel_requested in kept.items():
            fence = self.fences.get(job_id)
            if fence is not None:
                fence.extend(deadline)
            if cancel_requested:
                self._cancel(job_id)
        for job_id in set(ids) - set(kept):
            task = self.inflight.get(job_id)
            if task is not None:
                task.cancel()
                logs.event("job.lease_lost", logging.WARNING, job_id=job_id,
                           detail="another worker rescued it; this run was cancelled")
                self._forget([job_id])
        return len(kept)

    def _cancel(self, job_id: int) -> None:
        """An operator's cancel: stop the adapter call now, unless a vendor write is in flight,
        which is let finish so that what is recorded is what the vendor holds."""
        task = self.inflight.get(job_id)
        if task is None or job_id in self.cancelling:
            return
        self.cancelling.add(job_id)
        if self.executor.write_in_flight(job_id):
            logs.event("job.cancel_deferred", job_id=job_id, detail="a vendor write is in flight: letting it finish")
            return
        logs.event("job.cancelling", job_id=job_id)
        task.cancel()

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
        try:
            await self.store.release(ids, "released at shutdown before it finished; the attempt was not counted")
            logs.event("jobs.released", count=len(ids), job_ids=ids)
        except DB_ERRORS as exc:
            logs.event("jobs.release_failed", logging.ERROR, count=len(ids), error=str(exc)[:200],
                       detail="their leases will expire and they will be retried")
        self._forget(ids)


def _ms(delta: timedelta) -> float:
    return round(delta.total_seconds() * 1000, 2)
