"""Probes due active integrations; half-opens passive circuits whose wait is over."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from app.adapters.base import Integration
from app.core import logs
from app.core.redaction import redact
from app.daemon.circuit import Health, effective_mode
from app.daemon.duties.base import Service
from app.db.queries import query

if TYPE_CHECKING:
    from app.daemon.executor import Executor


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
