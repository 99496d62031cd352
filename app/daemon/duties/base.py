"""The skeleton every background duty shares (one duty per module in this package).

A duty has a name, an interval and ``run_once()`` returning how much it did; it logs at
info only when it did something and survives database errors by backing off.
"""

from __future__ import annotations

import asyncio
import logging

from app.core import logs
from app.db.errors import DB_ERRORS


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
