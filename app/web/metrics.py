"""Database-backed gauges, read at scrape time: one short read, cached for
:data:`DB_CACHE_SECONDS` so that several scrapers (or a refreshing dashboard) do not
multiply the queries."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from app.core.metrics import (
    _CIRCUIT_STATES,
    _HEALTH_STATES,
    ALERTS_OPEN,
    DB_SCRAPE_OK,
    INTEGRATION_CIRCUIT,
    INTEGRATION_HEALTH,
    QUEUE_DEPTH,
)
from app.db.queries import query

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

DB_CACHE_SECONDS = 5.0
DB_TIMEOUT_SECONDS = 2.0


class DatabaseGauges:
    """Refreshes the database-backed gauges at most every ``ttl`` seconds, one refresh at a time."""

    def __init__(self, pool: AsyncConnectionPool[Any], ttl: float = DB_CACHE_SECONDS,
                 timeout: float = DB_TIMEOUT_SECONDS) -> None:
        self._pool, self._ttl, self._timeout = pool, ttl, timeout
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() < self._fresh_until:
                return
            try:
                rows = await asyncio.wait_for(self._read(), self._timeout)
            except Exception:  # noqa: BLE001 — a failed read must not fail the scrape; the gauge says so
                _clear_database_gauges()
                DB_SCRAPE_OK.set(0)
            else:
                _set_database_gauges(*rows)
                DB_SCRAPE_OK.set(1)
            self._fresh_until = time.monotonic() + self._ttl

    async def _read(self) -> tuple[list[Any], list[Any], list[Any]]:
        async with self._pool.connection(timeout=self._timeout) as conn:
            depth = await (await conn.execute(query("metrics_queue_depth"))).fetchall()
            integrations = await (await conn.execute(query("metrics_integrations"))).fetchall()
            alerts = await (await conn.execute(query("metrics_open_alerts"))).fetchall()
        return depth, integrations, alerts


def _clear_database_gauges() -> None:
    for gauge in (QUEUE_DEPTH, INTEGRATION_HEALTH, INTEGRATION_CIRCUIT, ALERTS_OPEN):
        gauge.clear()


def _set_database_gauges(depth: list[Any], integrations: list[Any], alerts: list[Any]) -> None:
    # Clear first: an integration deleted (or a queue drained) since the last scrape must vanish.
    _clear_database_gauges()
    for integration_id, status, count in depth:
        QUEUE_DEPTH.labels(integration_id, status).set(count)
    for integration_id, health, circuit in integrations:
        for state in _HEALTH_STATES:
            INTEGRATION_HEALTH.labels(integration_id, state).set(1 if state == health else 0)
        for state in _CIRCUIT_STATES:
            INTEGRATION_CIRCUIT.labels(integration_id, state).set(1 if state == circuit else 0)
    for kind, count in alerts:
        ALERTS_OPEN.labels(kind).set(count)
