"""Fencing and the write-ahead intent: what stands between an adapter and a vendor write.

A :class:`Fence` is a job's lease as this process sees it: the adapter call is cancelled
before the lease expires unless a renewal pushed the deadline on, so no call outlives its
lease. A :class:`WriteGuard` is what ``ctx.writes`` is for a claimed job: before each write
it checks the fence and records the intent durably in the database (ownership- and
lease-checked there too), and it refuses a send while an earlier one may still be applied by
the vendor (the adapter's processing window since the last send).
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.core import logs
from app.core.errors import PermanentError, RetryableError, WriteRefused
from app.db.stores import JobStore


class FenceExpired(TimeoutError):
    """The adapter call was stopped at its fence (the lease could not be renewed), not at its
    own time limit. Told by which deadline the timer was set to, never by reading the clock
    after it fired: event-loop timers may fire a fraction of a millisecond early."""


class Fence:
    """The deadline (event-loop time) by which this job's adapter call must have stopped."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._timeouts: list[asyncio.Timeout] = []

    def expired(self) -> bool:
        return asyncio.get_running_loop().time() >= self.deadline

    def bind(self, timeout: asyncio.Timeout, limit: float) -> None:
        """Hold ``timeout`` to the fence: renewals move it, but never past ``limit``."""
        self._limit = limit
        self._timeouts.append(timeout)
        timeout.reschedule(min(limit, self.deadline))

    def unbind(self, timeout: asyncio.Timeout) -> None:
        """The call under ``timeout`` has ended: renewals must not touch its finished timer."""
        if timeout in self._timeouts:
            self._timeouts.remove(timeout)

    def extend(self, deadline: float) -> None:
        self.deadline = max(self.deadline, deadline)
        for timeout in self._timeouts:
            if not timeout.expired():
                timeout.reschedule(min(self._limit, self.deadline))


class WriteGuard:
    """``ctx.writes`` for one attempt of one claimed job (see app.adapters.base.Writes)."""

    def __init__(self, store: JobStore, job_id: int, window: float, fence: Fence | None) -> None:
        self.store, self.job_id, self.window, self.fence = store, job_id, window, fence
        self.in_flight = False    # between a recorded intent and the vendor's answer

    async def before_write(self, reference: str) -> None:
        if self.fence is not None and self.fence.expired():
            # A stalled process (GC pause, SIGSTOP) wakes past its lease: another daemon may
            # own the job now. Send nothing.
            raise WriteRefused(f"the lease of job {self.job_id} lapsed before its write of {reference} was sent; "
                               "nothing was sent")
        decision, wait, sends = await self.store.begin_write(self.job_id, reference, self.window)
        if decision == "send":
            self.in_flight = True
            if sends > 1:
                logs.event("job.write_resent", job_id=self.job_id, reference=reference, sends=sends,
                           detail=f"no document after the {self.window:g} s processing window: sending again")
            return
        if decision == "wait":
            raise RetryableError(f"an earlier send of {reference} may still be applied by the vendor (processing "
                                 f"window {self.window:g} s); looking it up again in {wait:.0f} s before any resend",
                                 retry_after=wait, park=True)
        if decision == "cancelled":
            raise WriteRefused(f"job {self.job_id} was cancelled before its write of {reference}; nothing was sent",
                               cancelled=True)
        if decision == "confirmed":
            raise PermanentError(f"the ledger records that the vendor holds {reference}, but the lookup did not "
                                 "find it: nothing was sent again; check the document at the vendor")
        raise WriteRefused(f"job {self.job_id} is no longer this worker's (its lease lapsed); nothing was sent")

    async def not_sent(self, reference: str) -> None:
        self.in_flight = False
        await self.store.withdraw_write(self.job_id, reference)

    async def confirmed(self, reference: str, document: dict[str, Any]) -> None:
        self.in_flight = False
        await self.store.confirm_write(self.job_id, reference, document)
