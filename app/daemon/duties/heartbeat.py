"""Keeps this daemon's row in dispatch.workers fresh; doubles as the database probe."""

from __future__ import annotations

from app.daemon.duties.base import Service
from app.db.errors import DB_ERRORS
from app.db.pool import DbState
from app.db.stores import WorkerStore


class Heartbeat(Service):
    name = "heartbeat"

    def __init__(self, store: WorkerStore, db: DbState, interval: float = 5.0) -> None:
        super().__init__(interval)
        self.store, self.db = store, db
        self.cold_start_ms: float | None = None

    async def run_once(self) -> int:
        try:
            await self.store.heartbeat(self.cold_start_ms)
            self.db.up()
        except DB_ERRORS as exc:
            self.db.down(exc)
            raise
        return 0
