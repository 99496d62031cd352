"""Background duties of the daemon, each a small service with the same skeleton.

A service has a name, an interval and ``run_once()`` returning how much it did; it logs at
info only when it did something and survives database errors by backing off.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from app import logs
from app.db import query
from app.worker import DB_ERRORS

if TYPE_CHECKING:
    from app.worker import Worker


class Service:
    name = "service"

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"{self.name}: interval must be positive, got {interval}")
        self.interval = interval
        self.last_error: str | None = None
        self.runs = 0

    async def run_once(self) -> int:
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            try:
                done = await self.run_once()
                self.runs += 1
                self.last_error = None
                if done:
                    logs.event(f"{self.name}.ran", count=done)
            except asyncio.CancelledError:
                raise
            except DB_ERRORS as exc:
                self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            except Exception as exc:  # noqa: BLE001 — a duty must never take the daemon down
                self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                logs.event(f"{self.name}.failed", logging.ERROR, error=self.last_error)
            await asyncio.sleep(self.interval)


class LeaseKeeper(Service):
    """Renews the leases of this daemon's running jobs."""

    name = "leases"

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker.config.lease_seconds / 3)
        self.worker = worker

    async def run_once(self) -> int:
        await self.worker.renew_leases()
        return 0  # renewing is routine: not worth a log line


class Rescuer(Service):
    """Returns jobs whose lease expired (a crashed daemon's) to the queue."""

    name = "rescue"

    def __init__(self, worker: Worker, interval: float = 10.0) -> None:
        super().__init__(interval)
        self.worker = worker

    async def run_once(self) -> int:
        async with self.worker.pool.connection() as conn:
            row = await (await conn.execute(query("rescue_expired_leases"))).fetchone()
        rescued = int(row[0]) if row else 0
        if rescued:
            self.worker.wake()
        return rescued


class Heartbeat(Service):
    """Keeps this daemon's row in dispatch.workers fresh; doubles as the database probe."""

    name = "heartbeat"

    def __init__(self, worker: Worker, interval: float = 5.0) -> None:
        super().__init__(interval)
        self.worker = worker
        self.cold_start_ms: float | None = None

    async def run_once(self) -> int:
        params: dict[str, Any] = {"id": self.worker.config.worker_id, "cold_start_ms": self.cold_start_ms}
        try:
            async with self.worker.pool.connection() as conn:
                await conn.execute(query("worker_heartbeat"), params)
            self.worker.db.up()
        except DB_ERRORS as exc:
            self.worker.db.down(exc)
            raise
        return 0
