"""Running one claimed job through its adapter and deciding what happens next.

The executor never raises: whatever the adapter does, it returns an :class:`Outcome`
(succeeded, retry, park, failed) with a message an operator can act on. A malformed job
fails that job, never the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from app.adapters import Registry
from app.adapters.base import Capabilities, Integration, JobContext, NoWrites, ProbeContext, Writes
from app.core import logs, tracing
from app.core.errors import AuthError, PermanentError, RetryableError, WriteRefused
from app.core.job import ClaimedJob, Outcome, Status
from app.core.redaction import redact
from app.core.retry import RetryPolicy
from app.core.secret import Secret
from app.daemon.writes import Fence, FenceExpired, WriteGuard

if TYPE_CHECKING:
    import httpx

    from app.db.stores import JobStore


class Credentials(Protocol):
    async def get(self, integration_id: str, default_name: str | None) -> Secret: ...

    def invalidate(self, integration_id: str) -> None: ...


class HealthHook(Protocol):
    async def job_finished(self, job: ClaimedJob, outcome: Outcome) -> str | None:
        """Record the outcome; return the integration's circuit when it changed."""
        ...


CREDENTIAL_DB_ERRORS = (psycopg.OperationalError,)


@dataclass
class Executor:
    registry: Registry
    credentials: Credentials
    http: HttpClients
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    default_secret_name: str | None = None
    job_timeout: float = 300.0
    #: Per-integration scratch space adapters keep between jobs (e.g. an OAuth token).
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: When each integration was last warmed up (monotonic seconds): a job after that is not cold.
    warmed: dict[str, float] = field(default_factory=dict)
    health: HealthHook | None = None
    #: Where the last successful sync stopped (integration, kind) -> cursor; the daemon reads the ledger.
    last_cursor: Callable[[str, str], Awaitable[str | None]] | None = None
    #: Records write intents (None: adapters get a guard that records nothing, e.g. in unit tests).
    jobs: JobStore | None = None
    #: The write guard of each job running now: the poller asks whether a write is in flight.
    guards: dict[int, WriteGuard] = field(default_factory=dict)
    #: The traceparent a job was enqueued under (dispatch.jobs.trace_context); read only when tracing is on.
    trace_context: Callable[[int], Awaitable[str | None]] | None = None

    async def execute(self, job: ClaimedJob, fence: Fence | None = None) -> Outcome:
        if not tracing.on():
            return await self._execute(job, fence)
        parent = await self._trace_parent(job.id)
        with tracing.span("dispatch.job", parent=parent, start=job.started_at, job_id=job.id,
                          integration=job.integration_id, kind=job.kind, adapter=job.adapter,
                          attempt=job.attempts) as current:
            tracing.record("dispatch.claim", job.started_at, job_id=job.id, attempt=job.attempts)
            outcome = await self._execute(job, fence)
            tracing.annotate(current, outcome=outcome.status.value, error=outcome.error)
        return outcome

    async def _trace_parent(self, job_id: int) -> str | None:
        if self.trace_context is None:
            return None
        try:
            return await self.trace_context(job_id)
        except Exception as exc:  # noqa: BLE001 — a trace is never worth a job
            logs.event("tracing.context_unread", logging.WARNING, job_id=job_id, error=type(exc).__name__)
            return None

    async def _execute(self, job: ClaimedJob, fence: Fence | None) -> Outcome:
        secret: Secret | None = None
        try:
            adapter = self.registry.get(job.adapter)
            config = self._validate_config(adapter, job)
            if job.unreadable:
                raise PermanentError(f"the payload is unreadable ({job.unreadable}); "
                                     "flatten it to at most a few hundred levels")
            ctx = await self._context(adapter, job, config, self._writes(adapter, job, config, fence))
            secret = ctx.credentials
            outcome = await self._run(adapter, ctx, fence)
        except CREDENTIAL_DB_ERRORS as exc:
            # The vault could not be read (the database, not the job): try again, attempt unspent.
            outcome = Outcome(Status.PARK, error=f"credentials could not be read: {type(exc).__name__}",
                              delay=self.retry.delay(1, None))
        except PermanentError as exc:
            outcome = Outcome(Status.FAILED, error=str(exc))
        except WriteRefused as exc:
            outcome = Outcome(Status.CANCELLED if exc.cancelled else Status.PARK, error=str(exc), delay=1.0)
        except RetryableError as exc:
            if exc.park:  # the vendor asked us to wait: no attempt spent, no fault counted
                outcome = Outcome(Status.PARK, error=str(exc), delay=self.retry.delay(1, exc.retry_after))
            else:
                outcome = self._retry_or_fail(job, str(exc), exc.retry_after, vendor_fault=True)
        except TimeoutError as exc:
            if isinstance(exc, FenceExpired) or (fence is not None and fence.expired()):
                logs.event("job.fenced", logging.WARNING, job_id=job.id, integration=job.integration_id,
                           detail="the lease could not be renewed: the adapter call was stopped before it expired")
                outcome = Outcome(Status.PARK, delay=1.0, error="the adapter call was stopped before the job's lease "
                                  "expired: the lease could not be renewed (database unreachable?)")
            else:
                outcome = self._retry_or_fail(job, f"the job did not finish within {self.job_timeout:g} s", None,
                                              vendor_fault=True)
        except Exception as exc:  # noqa: BLE001 — an adapter bug must fail the job, not the daemon
            logs.event("job.adapter_crashed", logging.ERROR, job_id=job.id, error_type=type(exc).__name__)
            outcome = self._retry_or_fail(job, f"unexpected {type(exc).__name__}: {exc}", None)
        finally:
            self.guards.pop(job.id, None)
        outcome.error = redact(outcome.error, secret, self.state.get(job.integration_id))
        if self.health is not None:
            try:
                circuit = await self.health.job_finished(job, outcome)
                if outcome.status is Status.RETRY and circuit == "open":
                    # The failure opened the circuit: the job waits with the others, attempt refunded.
                    outcome.status = Status.PARK
            except Exception as exc:  # noqa: BLE001 — health bookkeeping must not change the job's outcome
                logs.event("health.record_failed", logging.WARNING, integration=job.integration_id,
                           error=f"{type(exc).__name__}: {str(exc)[:200]}")
        return outcome

    async def _run(self, adapter: Any, ctx: JobContext, fence: Fence | None) -> Outcome:
        cold = Capabilities.of(adapter).uses_http and ctx.integration.id not in self.warmed
        t0 = time.perf_counter()
        with tracing.span("adapter.run", adapter=ctx.integration.adapter, integration=ctx.integration.id,
                          kind=ctx.kind):
            try:
                result = await self._bounded(adapter.run(ctx), fence, self._timeout(adapter, ctx))
            except AuthError:
                # Credentials may have been rotated: re-read them once and try again.
                self.credentials.invalidate(ctx.integration.id)
                ctx.credentials = await self._secret(adapter, ctx.integration)
                ctx.state.clear()
                result = await self._bounded(adapter.run(ctx), fence, self._timeout(adapter, ctx))
        if cold:
            # Nothing warmed this integration before the job: its first call paid for the
            # connection (and token). Worth knowing for scheduled exports.
            self.warmed[ctx.integration.id] = time.monotonic()
            logs.event("job.cold_start", job_id=ctx.job_id, integration=ctx.integration.id,
                       ms=round((time.perf_counter() - t0) * 1000, 1))
        return Outcome(Status.SUCCEEDED, result=result if isinstance(result, dict) else {"value": result})

    async def _bounded(self, work: Any, fence: Fence | None, limit: float) -> Any:
        # asyncio.timeout, not wait_for: no extra task per job on the hot path. The fence
        # brings the deadline forward to the lease's, and renewals push it on.
        own_deadline = asyncio.get_running_loop().time() + limit
        try:
            async with asyncio.timeout(limit) as timeout:
                if fence is not None:
                    fence.bind(timeout, own_deadline)
                return await work
        except TimeoutError:
            when = timeout.when()
            if fence is not None and when is not None and when < own_deadline:
                raise FenceExpired from None
            raise
        finally:
            if fence is not None:
                # The job stays leased until its completion is written: a renewal meanwhile
                # extends the fence, and must not reschedule this finished timer.
                fence.unbind(timeout)

    def _timeout(self, adapter: Any, ctx: JobContext) -> float:
        """The adapter's own bound for a job (e.g. Business Central's post timeout), else ours."""
        own = getattr(adapter, "job_timeout", None)
        return float(own(ctx.config)) if callable(own) and ctx.config is not None else self.job_timeout

    def write_in_flight(self, job_id: int) -> bool:
        guard = self.guards.get(job_id)
        return guard is not None and guard.in_flight

    def _writes(self, adapter: Any, job: ClaimedJob, config: Any, fence: Fence | None) -> Writes:
        if self.jobs is None:
            return NoWrites()
        window = getattr(config, "write_window_seconds", None)
        guard = WriteGuard(self.jobs, job.id, Capabilities.of(adapter).write_window if window is None else window,
                           fence)
        self.guards[job.id] = guard
        return guard

    def _retry_or_fail(self, job: ClaimedJob, error: str, retry_after: float | None,
                       vendor_fault: bool = False) -> Outcome:
        if job.attempts >= job.max_attempts:
            return Outcome(Status.FAILED, error=f"{error} (attempt {job.attempts} of {job.max_attempts}; giving up)",
                           vendor_fault=vendor_fault)
        delay = self.retry.delay(job.attempts, retry_after)
        return Outcome(Status.RETRY, error=error, delay=delay, vendor_fault=vendor_fault)

    def _validate_config(self, adapter: Any, job: ClaimedJob) -> Any:
        """The integration's config as the adapter's model (validated once, here), or the raw dict."""
        model = getattr(adapter, "config_model", None)
        if model is None:
            return None
        from pydantic import ValidationError

        try:
            return model.model_validate(job.config)
        except ValidationError as exc:
            raise PermanentError(f"integration {job.integration_id!r} has an invalid config: "
                                 f"{_first_error(exc)}; fix dispatch.integrations.config") from None

    async def _context(self, adapter: Any, job: ClaimedJob, config: Any, writes: Writes) -> JobContext:
        integration = Integration(job.integration_id, job.adapter, job.config, job.secret_name)
        return JobContext(
            job_id=job.id, integration=integration, kind=job.kind, payload=await self._payload(adapter, job),
            idempotency_key=job.idempotency_key, attempt=job.attempts, scheduled_for=job.scheduled_for,
            credentials=await self._secret(adapter, integration), http=self._http(adapter),
            state=self.state.setdefault(job.integration_id, {}), config=config, writes=writes,
        )

    async def _payload(self, adapter: Any, job: ClaimedJob) -> dict[str, Any]:
        """A sync without its own ``since`` continues where the last successful one stopped
        (for adapters that return a ``cursor`` and declare ``resumes_sync``)."""
        if (job.kind != "sync" or "since" in job.payload or self.last_cursor is None
                or not Capabilities.of(adapter).resumes_sync):
            return job.payload
        cursor = await self.last_cursor(job.integration_id, job.kind)
        return {**job.payload, "since": cursor} if cursor else job.payload

    async def probe_context(self, adapter: Any, integration: Integration) -> ProbeContext:
        model = getattr(adapter, "config_model", None)
        config = model.model_validate(integration.config) if model is not None else None
        return ProbeContext(integration=integration, credentials=await self._secret(adapter, integration),
                            http=self._http(adapter), state=self.state.setdefault(integration.id, {}),
                            config=config)

    def _http(self, adapter: Any) -> Any:
        return self.http.get() if Capabilities.of(adapter).uses_http else None

    async def _secret(self, adapter: Any, integration: Integration) -> Secret | None:
        if not Capabilities.of(adapter).uses_credentials:
            return None
        return await self.credentials.get(integration.id, self.default_secret_name)


class HttpClients:
    """One shared ``httpx.AsyncClient``, created on first use so a daemon that never calls
    out never imports httpx."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            from app.core import metrics

            self._client = httpx.AsyncClient(
                event_hooks=metrics.httpx_event_hooks(),
                timeout=httpx.Timeout(30.0, connect=10.0),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                headers={"User-Agent": "integration-dispatch"},
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _first_error(exc: Any) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
    return f"{loc}: {err.get('msg')}"
