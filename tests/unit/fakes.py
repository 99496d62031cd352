"""Small in-memory twins for unit tests, where no I/O is the point."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.core.job import ClaimedJob
from app.core.secret import Secret


def claimed(**overrides: Any) -> ClaimedJob:
    now = datetime.now(UTC)
    fields: dict[str, Any] = dict(
        id=1, integration_id="acme", kind="export", payload={}, attempts=1, max_attempts=3, scheduled_for=now,
        run_after=now, enqueued_at=now, started_at=now, idempotency_key="acme:export:1", schedule_id=None,
        adapter="fake", config={}, secret_name=None, circuit="closed")
    fields.update(overrides)
    return ClaimedJob(**fields)


class FakeCredentials:
    """A vault of one value per integration; counts reads and invalidations."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.reads = 0
        self.invalidated: list[str] = []

    async def get(self, integration_id: str, default_name: str | None = None) -> Secret:
        self.reads += 1
        return Secret(self.values.get(integration_id, '{"token": "t0ps3cret-token"}'))

    def invalidate(self, integration_id: str) -> None:
        self.invalidated.append(integration_id)


class FakeJobStore:
    """The JobStore's surface over a dict of job id -> status, for duty and poller tests."""

    def __init__(self) -> None:
        self.expired: int = 0
        self.renewed: list[list[int]] = []
        self.lost: set[int] = set()

    async def rescue_expired(self) -> int:
        rescued, self.expired = self.expired, 0
        return rescued

    async def renew(self, ids: list[int], lease: float) -> set[int]:
        self.renewed.append(list(ids))
        return set(ids) - self.lost
