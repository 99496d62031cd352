"""Before a slot, resolve credentials and token and open the connection (no data request)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from app.adapters.base import Integration
from app.core import logs
from app.core.redaction import redact
from app.daemon.duties.base import Service
from app.db.queries import query

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from app.daemon.executor import Executor


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
            if time.monotonic() - self.executor.warmed.get(integration_id, -1e9) < self.fresh_for:
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
        self.executor.warmed[integration.id] = time.monotonic()
        logs.event("warm_up.done", integration=integration.id, ms=round((time.perf_counter() - t0) * 1000, 1))
        return 1
