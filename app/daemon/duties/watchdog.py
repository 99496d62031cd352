"""The scheduler watchdog: notices when pg_cron's tick stops and ticks in its place.

pg_cron can stop silently (extension missing, launcher dead, scheduler backend terminated).
When no pg_cron tick has run for ``stall_after`` seconds while schedules exist, the watchdog
raises a ``scheduler_stalled`` alert and runs ``dispatch.tick()`` itself under an advisory
lock; when pg_cron's ticks resume it resolves the alert and stands back.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from app.core import logs
from app.daemon.duties.base import Service
from app.db.queries import query

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

SUBJECT = "scheduler"


class Watchdog(Service):
    name = "watchdog"

    def __init__(self, pool: AsyncConnectionPool[Any], stall_after: float = 120.0, interval: float = 30.0) -> None:
        super().__init__(interval)
        self.pool, self.stall_after = pool, stall_after
        self.stalled = False
        self._since_start = time.monotonic()  # "never ticked" counts from when we started watching

    async def run_once(self) -> int:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(query("watchdog_status"))).fetchone()
            last, since, has_schedules = row if row else (None, None, False)
            silent_for = float(since) if since is not None else time.monotonic() - self._since_start
            stalled = bool(has_schedules) and silent_for > self.stall_after
            if stalled:
                await self._raise(conn, last)
                return await self._tick(conn)
            if self.stalled or last is not None:
                await conn.execute("SELECT dispatch.resolve_alert('scheduler_stalled', %s)", [SUBJECT])
            if self.stalled:
                logs.event("watchdog.handed_back", last_cron_tick=str(last))
            self.stalled = False
        return 0

    async def _raise(self, conn: Any, last: Any) -> None:
        message = ("pg_cron has not run dispatch.tick() " + (f"since {last}" if last else "at all") +
                   "; the daemons tick in its place. Check cron.job and cron.job_run_details, and that pg_cron "
                   "is in shared_preload_libraries")
        await conn.execute("SELECT dispatch.raise_alert('scheduler_stalled', %s, %s)", [SUBJECT, message])
        if not self.stalled:
            logs.event("watchdog.took_over", logging.WARNING, last_cron_tick=str(last))
        self.stalled = True

    async def _tick(self, conn: Any) -> int:
        async with conn.transaction():
            locked = await (await conn.execute(query("watchdog_lock"))).fetchone()
            if not (locked and locked[0]):
                return 0
            await conn.execute(query("watchdog_tick"))
        return 1
