"""Renews the leases of this daemon's running jobs, every third of a lease."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.daemon.duties.base import Service

if TYPE_CHECKING:
    from app.daemon.poller import Worker


class LeaseKeeper(Service):
    name = "leases"

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker.config.lease_seconds / 3)
        self.worker = worker

    async def run_once(self) -> int:
        await self.worker.renew_leases()
        return 0  # renewing is routine: not worth a log line
