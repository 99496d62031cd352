"""Integration health: gentle active probes, passive judgement from real jobs, the circuit.

Active integrations are probed with the vendor's cheapest call at most once per
``base_interval`` (15 min), then 30, 60, 120, up to 240 minutes after consecutive failures,
with jitter. The probe is reserved in the database before it is sent, so restarts and extra
daemons never probe more often. Passive integrations (the default for billed APIs) are never
probed: job outcomes decide. Failures open the circuit (jobs wait, attempts unspent); for a
passive integration the circuit half-opens after the backoff and one trial job decides.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app import logs
from app.adapters import Registry
from app.adapters.base import Integration
from app.db import query
from app.errors import DispatchError
from app.execution import redact
from app.services import Service

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from app.execution import Executor, Outcome
    from app.worker import ClaimedJob


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

    async def job_finished(self, job: ClaimedJob, outcome: Outcome) -> str | None:
        """Record a job's verdict on its integration; return the circuit when it was recorded."""
        if outcome.status == "succeeded":
            # A trial job (circuit not closed when claimed) always reports; otherwise only news does.
            if job.circuit != "closed" or job.integration_id not in self._known_ok:
                return await self.record(job.integration_id, ok=True, error=None, latency_ms=None, from_job=True)
        elif outcome.vendor_fault:
            # A job that failed for good marks the integration unhealthy at once; retries count up.
            threshold = 1 if outcome.status == "failed" else None
            return await self.record(job.integration_id, ok=False, error=outcome.error, latency_ms=None,
                                     from_job=True, threshold=threshold)
        return None

    async def record(self, integration_id: str, ok: bool, error: str | None, latency_ms: float | None,
                     from_job: bool = False, failures_before: int | None = None,
                     threshold: int | None = None) -> str | None:
        # A job failure sets the half-open wait (passive); a probe result sets the next probe.
        next_probe = None if ok and from_job else self.policy.next_probe(
            0 if ok else (failures_before if failures_before is not None else 0))
        params = {"id": integration_id, "ok": ok, "error": (error or "")[:500], "latency_ms": latency_ms,
                  "threshold": threshold or self.policy.failure_threshold, "next_probe_s": next_probe}
        async with self.pool.connection() as conn:
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


class HealthMonitor(Service):
    """Probes due active integrations; half-opens passive circuits whose wait is over."""

    name = "health"

    def __init__(self, health: Health, executor: Executor, interval: float = 30.0) -> None:
        super().__init__(interval)
        self.health, self.executor = health, executor

    async def run_once(self) -> int:
        async with self.health.pool.connection() as conn:
            rows = await (await conn.execute(query("health_probe_candidates"))).fetchall()
            circuits = await (await conn.execute(query("open_circuits"))).fetchall()
            passive_open = [r[0] for r in circuits
                            if effective_mode(self.health.registry, r[1], r[2]) == "passive"]
            if passive_open:
                await conn.execute(query("health_half_open"), {"ids": passive_open})
        probes = [self._probe(r) for r in rows if effective_mode(self.health.registry, r[1], r[4]) == "active"]
        results = await asyncio.gather(*probes)
        return sum(results)

    async def _probe(self, row: tuple[Any, ...]) -> int:
        integration_id, adapter_name, config, secret_name, _, failures = row
        async with self.health.pool.connection() as conn:
            hold = self.health.policy.next_probe(failures)
            won = await (await conn.execute(query("health_reserve_probe"),
                                            {"id": integration_id, "hold": hold})).fetchone()
        if won is None:
            return 0  # another daemon reserved it
        t0 = time.perf_counter()
        ctx = None
        try:
            adapter = self.health.registry.get(adapter_name)
            ctx = await self.executor.probe_context(adapter, Integration(integration_id, adapter_name, config,
                                                                         secret_name))
            await asyncio.wait_for(adapter.probe(ctx), 60)
            ok, error = True, None
        except Exception as exc:  # noqa: BLE001 — any failure is a failed probe, recorded with its reason
            ok, error = False, (redact(f"{type(exc).__name__}: {exc}", ctx.credentials if ctx else None,
                                       self.executor.state.get(integration_id)) or "")[:500]
        latency = round((time.perf_counter() - t0) * 1000, 1)
        await self.health.record(integration_id, ok, error, latency, failures_before=0 if ok else failures + 1)
        logs.event("health.probed", logging.INFO if ok else logging.WARNING, integration=integration_id,
                   ok=ok, latency_ms=latency, error=error)
        return 1


class WarmUp(Service):
    """Before a slot, resolve credentials and token and open the connection (no data request)."""

    name = "warm_up"

    def __init__(self, pool: AsyncConnectionPool[Any], executor: Executor, window: float = 30.0,
                 interval: float = 5.0, fresh_for: float = 240.0) -> None:
        super().__init__(interval)
        self.pool, self.executor, self.window, self.fresh_for = pool, executor, window, fresh_for

    async def run_once(self) -> int:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(query("warm_up_candidates"), {"window": self.window})).fetchall()
        done = 0
        for integration_id, adapter_name, config, secret_name in rows:
            state = self.executor.state.setdefault(integration_id, {})
            if time.monotonic() - state.get("_warmed_at", -1e9) < self.fresh_for:
                continue
            done += await self._warm(Integration(integration_id, adapter_name, config, secret_name), state)
        return done

    async def _warm(self, integration: Integration, state: dict[str, Any]) -> int:
        t0 = time.perf_counter()
        try:
            adapter = self.executor.registry.get(integration.adapter)
            ctx = await self.executor.probe_context(adapter, integration)
            await asyncio.wait_for(adapter.warm_up(ctx), 30)
        except Exception as exc:  # noqa: BLE001 — a failed warm-up only means the job pays the cost itself
            logs.event("warm_up.failed", logging.WARNING, integration=integration.id,
                       error=(redact(f"{type(exc).__name__}: {exc}", None, state) or "")[:300])
            return 0
        state["_warmed_at"] = time.monotonic()
        logs.event("warm_up.done", integration=integration.id, ms=round((time.perf_counter() - t0) * 1000, 1))
        return 1
