"""The circuit breaker per integration: gentle active probes, passive judgement from real jobs.

Active integrations are probed with the vendor's cheapest call at most once per
``base_interval`` (15 min), then 30, 60, 120, up to 240 minutes after consecutive failures,
with jitter. The probe is reserved in the database before it is sent, so restarts and extra
daemons never probe more often. Passive integrations (the default for billed APIs) are never
probed: job outcomes decide. Failures open the circuit (jobs wait, attempts unspent); for a
passive integration the circuit half-opens after the backoff and one trial job decides.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.adapters import Registry
from app.core.errors import DispatchError
from app.core.job import Status
from app.db.queries import query

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from app.core.job import ClaimedJob, Outcome


@dataclass(frozen=True)
class HealthPolicy:
    base_interval: float = 900.0     # 15 minutes between probes of a healthy integration
    max_interval: float = 14_400.0   # 240 minutes at most, after consecutive failures
    jitter: float = 0.1              # +-10 %
    failure_threshold: int = 3       # consecutive vendor failures that open the circuit

    def next_probe(self, failures: int, rng: random.Random | None = None) -> float:
        interval = min(self.max_interval, self.base_interval * float(2 ** max(failures, 0)))
        factor: float = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return interval * factor


def effective_mode(registry: Registry, adapter: str, mode: str | None) -> str:
    if mode:
        return mode
    try:
        return str(getattr(registry.cls(adapter), "default_health_mode", "passive"))
    except DispatchError:
        return "passive"


class Health:
    """Records probe and job outcomes in dispatch.integrations and keeps the alert in step."""

    def __init__(self, pool: AsyncConnectionPool[Any], registry: Registry, policy: HealthPolicy) -> None:
        self.pool, self.registry, self.policy = pool, registry, policy
        self._known_ok: set[str] = set()  # integrations last recorded healthy: successes cost nothing
        # A success being recorded now, per integration: the other jobs of the same first batch
        # wait for that one write instead of queueing fifty updates of the same row behind it.
        self._recording_ok: dict[str, asyncio.Future[str | None]] = {}

    async def job_finished(self, job: ClaimedJob, outcome: Outcome) -> str | None:
        """Record a job's verdict on its integration; return the circuit when it was recorded."""
        if outcome.status is Status.SUCCEEDED:
            # A trial job (circuit not closed when claimed) always reports; otherwise only news does.
            if job.circuit != "closed" or job.integration_id not in self._known_ok:
                return await self._record_ok(job.integration_id)
        elif outcome.vendor_fault:
            # A job that failed for good marks the integration unhealthy at once; retries count up.
            threshold = 1 if outcome.status is Status.FAILED else None
            return await self.record(job.integration_id, ok=False, error=outcome.error, latency_ms=None,
                                     from_job=True, threshold=threshold)
        return None

    async def _record_ok(self, integration_id: str) -> str | None:
        future = self._recording_ok.get(integration_id)
        if future is None:
            future = asyncio.ensure_future(self.record(integration_id, ok=True, error=None, latency_ms=None,
                                                       from_job=True))
            self._recording_ok[integration_id] = future

            def done(f: asyncio.Future[str | None]) -> None:
                self._recording_ok.pop(integration_id, None)
                if not f.cancelled():
                    f.exception()  # every waiter is told; none left over to warn about it

            future.add_done_callback(done)
        # shield: one waiting job being cancelled must not cancel the write the others wait for.
        return await asyncio.shield(future)

    async def record(self, integration_id: str, ok: bool, error: str | None, latency_ms: float | None,
                     from_job: bool = False, failures_before: int | None = None,
                     threshold: int | None = None) -> str | None:
        # A job failure sets the half-open wait (passive); a probe result sets the next probe.
        next_probe = None if ok and from_job else self.policy.next_probe(
            0 if ok else (failures_before if failures_before is not None else 0))
        params = {"id": integration_id, "ok": ok, "error": (error or "")[:500], "latency_ms": latency_ms,
                  "threshold": threshold or self.policy.failure_threshold, "next_probe_s": next_probe}
        # One transaction: whoever sees the circuit change also sees its alert.
        async with self.pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(query("health_record"), params)).fetchone()
            if row is None:
                return None
            status, circuit, failures = row
            await self._alert(conn, integration_id, status, circuit, failures, error)
        (self._known_ok.add if status == "healthy" else self._known_ok.discard)(integration_id)
        return str(circuit)

    async def _alert(self, conn: Any, integration_id: str, status: str, circuit: str, failures: int,
                     error: str | None) -> None:
        subject = f"integration:{integration_id}"
        if status == "unhealthy":
            message = (f"integration {integration_id} is unhealthy after {failures} consecutive failure(s); "
                       f"its jobs wait (circuit {circuit}): {error or 'no detail'}")
            await conn.execute("SELECT dispatch.raise_alert('integration_unhealthy', %s, %s, '{}', %s)",
                               [subject, message, integration_id])
        elif status == "healthy":
            await conn.execute("SELECT dispatch.resolve_alert('integration_unhealthy', %s)", [subject])
