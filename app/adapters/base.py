"""The adapter contract: what the daemon gives an adapter and what it expects back.

An adapter never fetches secrets and never builds HTTP clients: the daemon passes
credentials and an ``httpx.AsyncClient`` in. It raises the errors of :mod:`app.errors`
to steer retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import httpx
    from pydantic import BaseModel

    from app.secret import Secret


@dataclass(frozen=True)
class Integration:
    id: str
    adapter: str
    config: dict[str, Any]
    secret_name: str | None = None


@dataclass
class JobContext:
    """Everything an adapter may use to run one job."""

    job_id: int
    integration: Integration
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    attempt: int
    scheduled_for: datetime
    credentials: Secret | None
    http: httpx.AsyncClient
    # Shared, per-integration scratch space that outlives the job (e.g. an OAuth token).
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProbeContext:
    """What a health probe gets: no job, the cheapest call only."""

    integration: Integration
    credentials: Secret | None
    http: httpx.AsyncClient
    state: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Adapter(Protocol):
    """A vendor connector, registered under a stable ``name``."""

    name: ClassVar[str]
    #: pydantic model of the integration's ``config`` (None: any object).
    config_model: ClassVar[type[BaseModel] | None]
    #: "active" adapters are probed; "passive" ones are judged from real jobs.
    default_health_mode: ClassVar[str]

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        """Do the job; return a small JSON-able result stored on the job row."""
        ...

    async def probe(self, ctx: ProbeContext) -> None:
        """The vendor's cheapest call. Raise on failure."""
        ...

    async def warm_up(self, ctx: ProbeContext) -> None:
        """Prepare for a job due soon (token, connection) without a data request."""
        ...
