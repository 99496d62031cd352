"""The adapter contract: what the daemon gives an adapter and what it expects back.

An adapter never fetches secrets and never builds HTTP clients: the daemon passes
credentials and an ``httpx.AsyncClient`` in. It raises the errors of :mod:`app.core.errors`
to steer retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import httpx
    from pydantic import BaseModel

    from app.core.secret import Secret


@dataclass(frozen=True)
class Integration:
    id: str
    adapter: str
    config: dict[str, Any]
    secret_name: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """What an adapter needs from the daemon, declared as class attributes of the same names."""

    uses_http: bool = True          # gets the shared httpx.AsyncClient (False: ``ctx.http`` is None)
    uses_credentials: bool = True   # gets the integration's vault secret (False: none is read)
    resumes_sync: bool = False      # a ``sync`` without ``since`` continues from the last one's ``cursor``
    #: Seconds the vendor may still apply a write after the client stopped waiting (its queue
    #: and execution limits). A retry that finds an unconfirmed write waits this long since
    #: the last send, and looks the reference up, before it sends again.
    write_window: float = 0.0
    #: The job kinds it runs, by name: metrics label other kinds ``other`` (app/core/metrics.py,
    #: whose DEFAULT_KINDS is this default), so a caller's free-text kinds cannot grow the series.
    kinds: frozenset[str] = frozenset({"export", "sync"})

    @classmethod
    def of(cls, adapter: Any) -> Capabilities:
        """The capabilities an adapter (class or instance) declares; undeclared ones take the
        defaults. Read once per class: this is on every job's path."""
        kind = adapter if isinstance(adapter, type) else type(adapter)
        found = _KNOWN.get(kind)
        if found is None:
            found = _KNOWN[kind] = cls(**{name: type(default)(getattr(kind, name, default))
                                          for name, default in _DEFAULTS.items()})
        return found


_DEFAULTS: dict[str, Any] = {"uses_http": True, "uses_credentials": True, "resumes_sync": False, "write_window": 0.0,
                             "kinds": frozenset({"export", "sync"})}
_KNOWN: dict[type, Capabilities] = {}


class Writes(Protocol):
    """The write-ahead protocol every adapter follows around a vendor write:

    1. look the job's reference up at the vendor; if found, ``await ctx.writes.confirmed(ref, doc)``
       and return it (the write already happened, perhaps late);
    2. ``await ctx.writes.before_write(ref)``: records the intent durably, or raises — a
       parking :class:`~app.core.errors.RetryableError` while an earlier send may still be
       applied by the vendor, :class:`~app.core.errors.WriteRefused` when this attempt no
       longer owns the job (its lease lapsed) or the job was cancelled;
    3. send, then ``await ctx.writes.confirmed(ref, doc)`` with what the vendor answered — or,
       when the vendor refused the request before running it (429, a queue's 503, a limit
       code), ``await ctx.writes.not_sent(ref)``, so the refused send does not hold the window.
    """

    async def before_write(self, reference: str) -> None: ...

    async def not_sent(self, reference: str) -> None: ...

    async def confirmed(self, reference: str, document: dict[str, Any]) -> None: ...


class NoWrites:
    """For contexts built by hand (tests, tools): records nothing, refuses nothing."""

    async def before_write(self, reference: str) -> None:
        return None

    async def not_sent(self, reference: str) -> None:
        return None

    async def confirmed(self, reference: str, document: dict[str, Any]) -> None:
        return None


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
    #: ``integration.config`` validated once into the adapter's ``config_model`` by the daemon
    #: (None when the adapter has no model, or when a test builds the context by hand).
    config: Any = None
    #: The write-ahead intent and the fence (see :class:`Writes`).
    writes: Writes = field(default_factory=NoWrites)


@dataclass
class ProbeContext:
    """What a health probe gets: no job, the cheapest call only."""

    integration: Integration
    credentials: Secret | None
    http: httpx.AsyncClient
    state: dict[str, Any] = field(default_factory=dict)
    config: Any = None


@runtime_checkable
class Adapter(Protocol):
    """A vendor connector, registered under a stable ``name``."""

    name: ClassVar[str]
    #: pydantic model of the integration's ``config`` (None: any object).
    config_model: ClassVar[type[BaseModel] | None]
    #: "active" adapters are probed; "passive" ones are judged from real jobs.
    default_health_mode: ClassVar[str]
    #: Capabilities (see :class:`Capabilities`; undeclared ones take its defaults).
    uses_http: ClassVar[bool]
    uses_credentials: ClassVar[bool]
    resumes_sync: ClassVar[bool]
    write_window: ClassVar[float]
    kinds: ClassVar[frozenset[str]]

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        """Do the job; return a small JSON-able result stored on the job row."""
        ...

    async def probe(self, ctx: ProbeContext) -> None:
        """The vendor's cheapest call. Raise on failure."""
        ...

    async def warm_up(self, ctx: ProbeContext) -> None:
        """Prepare for a job due soon (token, connection) without a data request."""
        ...
