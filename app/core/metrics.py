"""Prometheus metrics: what the daemon counts in-process, and what it reads from the database
at scrape time.

Everything lives in :data:`REGISTRY`, our own registry: the global one would also export
whatever any imported library registers there, and tests could not build a second app.

The worker calls :func:`observe_started` and :func:`observe_finished`; vendor HTTP clients
record every request through :func:`httpx_event_hooks` (or :func:`observe_vendor_request`
for a request that never got a response). Queue depth, integration health and open alerts
come from one short database read per scrape (app/web/metrics.py).

Labels stay bounded. ``kind`` is free text in a job row, so a job whose kind is not one its
adapter declares (``kinds``, app/adapters/base.py; ``export`` and ``sync`` unless it says
otherwise) is counted under ``other``. ``integration`` is the id of a row in
``dispatch.integrations`` (jobs reference it): the series grow with the integrations an operator
adds, never with the jobs, so it is kept as it is.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

if TYPE_CHECKING:
    import httpx

# Text format 0.0.4 is what every Prometheus version (2.x and 3.x) and every agent parses;
# our metric names need none of the newer format's escaping.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

REGISTRY = CollectorRegistry(auto_describe=True)

# Latencies of a scheduler span milliseconds (LISTEN wake-up) to minutes (a daemon was down).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_VENDOR_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

JOBS_FINISHED = Counter(
    "dispatch_jobs_finished", "Job runs finished, by outcome (succeeded, retry, park, failed).",
    ["integration", "kind", "outcome"], registry=REGISTRY)
JOB_DURATION = Histogram(
    "dispatch_job_duration_seconds", "Time one job run took in its adapter.",
    ["integration", "kind", "outcome"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
PICKUP_LATENCY = Histogram(
    "dispatch_job_pickup_latency_seconds",
    "Claim time minus the moment the job became due: started_at - max(run_after, enqueued_at).",
    ["integration", "kind"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
DRIFT = Histogram(
    "dispatch_job_drift_seconds", "Claim time minus the slot: started_at - scheduled_for (negative counts as 0).",
    ["integration", "kind"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
VENDOR_LATENCY = Histogram(
    "dispatch_vendor_request_duration_seconds",
    "Vendor HTTP requests until the response headers arrived, by host, method and status ('error': no response).",
    ["host", "method", "status"], buckets=_VENDOR_BUCKETS, registry=REGISTRY)
QUEUE_DEPTH = Gauge(
    "dispatch_queue_depth", "Jobs waiting or running, by integration and status (from the database).",
    ["integration", "status"], registry=REGISTRY)
INTEGRATION_HEALTH = Gauge(
    "dispatch_integration_health", "1 for the integration's current health status (unknown, healthy, unhealthy).",
    ["integration", "status"], registry=REGISTRY)
INTEGRATION_CIRCUIT = Gauge(
    "dispatch_integration_circuit", "1 for the integration's current circuit state (closed, open, half_open).",
    ["integration", "state"], registry=REGISTRY)
ALERTS_OPEN = Gauge("dispatch_alerts_open", "Open alerts, by kind (from the database).", ["kind"], registry=REGISTRY)
DB_SCRAPE_OK = Gauge(
    "dispatch_metrics_db_up", "1 if the last scrape-time database read succeeded; 0 and the database gauges "
    "are absent if it failed.", registry=REGISTRY)

#: The label of every kind its adapter does not declare.
OTHER_KIND = "other"
#: The kinds an adapter is counted under when it declares none (app/adapters/base.py keeps the same default).
DEFAULT_KINDS: frozenset[str] = frozenset({"export", "sync"})

_HEALTH_STATES = ("unknown", "healthy", "unhealthy")
_CIRCUIT_STATES = ("closed", "open", "half_open")


class StartedJob(Protocol):
    integration_id: str
    kind: str
    adapter: str
    started_at: datetime
    run_after: datetime
    enqueued_at: datetime
    scheduled_for: datetime


# -- in-process: the worker and the vendor clients call these
def observe_started(job: StartedJob) -> None:
    """Record a claimed job's pickup latency and drift."""
    children = _started.get((job.integration_id, job.kind)) or _started_children(job)
    due = max(job.run_after, job.enqueued_at)
    children[0].observe(_seconds(job.started_at - due))
    children[1].observe(_seconds(job.started_at - job.scheduled_for))


def observe_finished(job: StartedJob, outcome_status: str, duration_s: float) -> None:
    """Record one finished run: ``outcome_status`` is the Outcome's status."""
    children = _finished.get((job.integration_id, job.kind, outcome_status)) or _finished_children(job, outcome_status)
    children[0].inc()
    children[1].observe(max(duration_s, 0.0))


def bind_known_kinds(kinds_of: Callable[[str], Iterable[str]]) -> None:
    """Where an adapter's declared kinds come from, by adapter name (the composition root binds
    the registry's); until then every adapter has :data:`DEFAULT_KINDS`."""
    global _kinds_of
    _kinds_of = kinds_of
    _known.clear()
    _started.clear()
    _finished.clear()


def kind_label(adapter: str, kind: str) -> str:
    """``kind`` when ``adapter`` declares it, else :data:`OTHER_KIND`."""
    known = _known.get(adapter)
    if known is None:
        try:
            known = frozenset(_kinds_of(adapter))
        except Exception:  # noqa: BLE001 — an unknown adapter's job fails on its own; its kind still counts
            known = DEFAULT_KINDS
        _known[adapter] = known
    return kind if kind in known else OTHER_KIND


# The label children per (integration, kind label[, outcome]): ``.labels()`` was a visible part of
# the per-job profile. Keyed by the label, never the raw kind, so unknown kinds add no entries.
_Children = tuple[Any, Any]
_started: dict[tuple[str, str], _Children] = {}
_finished: dict[tuple[str, str, str], _Children] = {}
_known: dict[str, frozenset[str]] = {}


def _default_kinds(adapter: str) -> Iterable[str]:
    return DEFAULT_KINDS


_kinds_of: Callable[[str], Iterable[str]] = _default_kinds


def _started_children(job: StartedJob) -> _Children:
    key = (job.integration_id, kind_label(job.adapter, job.kind))
    found = _started.get(key)
    if found is None:
        found = _started[key] = (PICKUP_LATENCY.labels(*key), DRIFT.labels(*key))
    return found


def _finished_children(job: StartedJob, outcome_status: str) -> _Children:
    key = (job.integration_id, kind_label(job.adapter, job.kind), outcome_status)
    found = _finished.get(key)
    if found is None:
        found = _finished[key] = (JOBS_FINISHED.labels(*key), JOB_DURATION.labels(*key))
    return found


def observe_vendor_request(host: str, method: str, status: int | str, seconds: float) -> None:
    VENDOR_LATENCY.labels(host, method, str(status)).observe(max(seconds, 0.0))


def httpx_event_hooks() -> dict[str, list[Callable[[Any], Any]]]:
    """Hooks for ``httpx.AsyncClient(event_hooks=...)`` recording each request's latency and status.

    Latency runs to the response headers (the hook fires before the body is read). A request
    that fails without a response never reaches the response hook: callers that want those
    counted call :func:`observe_vendor_request` with status ``"error"``.

    With tracing on (app/core/tracing.py) each request is a client span too, ended with the
    response headers; a request that fails without a response leaves no span (the adapter's
    span records the error).
    """
    from app.core import tracing

    async def on_request(request: httpx.Request) -> None:
        request.extensions["dispatch_t0"] = time.perf_counter()
        if tracing.on():
            request.extensions["dispatch_span"] = tracing.http_started(request.method, request.url)

    async def on_response(response: httpx.Response) -> None:
        request = response.request
        t0 = request.extensions.get("dispatch_t0")
        if t0 is not None:
            observe_vendor_request(request.url.host, request.method, response.status_code, time.perf_counter() - t0)
        tracing.http_finished(request.extensions.pop("dispatch_span", None), response.status_code)

    return {"request": [on_request], "response": [on_response]}


def _seconds(delta: timedelta) -> float:
    return max(delta.total_seconds(), 0.0)


class InFlight:
    """``dispatch_jobs_in_flight`` read at scrape time from the worker's own table, so the
    gauge cannot drift from the truth whatever path a job leaves by (lease lost, shutdown)."""

    def __init__(self, integrations: Callable[[], Iterable[str]]) -> None:
        self._integrations = integrations

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("dispatch_jobs_in_flight", "Jobs this daemon is running now, by integration.",
                                   labels=["integration"])
        for integration, count in sorted(Tally(self._integrations()).items()):
            family.add_metric([integration], count)
        yield family


def bind_in_flight(integrations: Callable[[], Iterable[str]]) -> None:
    """Expose in-flight jobs from ``integrations()`` (one integration id per running job)."""
    collector = InFlight(integrations)
    global _in_flight
    if _in_flight is not None:
        REGISTRY.unregister(_in_flight)
    REGISTRY.register(collector)
    _in_flight = collector


_in_flight: InFlight | None = None


def render() -> bytes:
    return generate_latest(REGISTRY)
