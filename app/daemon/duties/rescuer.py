"""Returns jobs whose lease expired (a crashed or stalled daemon's) to the queue."""

from __future__ import annotations

from collections.abc import Callable

from app.daemon.duties.base import Service
from app.db.stores import JobStore


class Rescuer(Service):
    name = "rescue"

    def __init__(self, store: JobStore, wake: Callable[[], None], interval: float = 10.0) -> None:
        super().__init__(interval)
        self.store, self.wake = store, wake

    async def run_once(self) -> int:
        rescued = await self.store.rescue_expired()
        if rescued:
            self.wake()
        return rescued
