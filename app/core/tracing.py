"""OpenTelemetry tracing, optional: the ``[otel]`` extra, switched on by ``OTEL_*`` variables.

With no ``OTEL_`` variable set (or ``OTEL_SDK_DISABLED=true``) nothing of OpenTelemetry is
imported: every helper here is a no-op costing one ``is None`` check, and :func:`span`
returns a shared null context. :func:`setup` (the daemon calls it at start) builds a tracer
provider when a variable is set and the extra is installed; a set variable without the
extra logs one warning and the daemon runs untraced.

The spans of one job, in one trace:

    dispatch.enqueue            POST /dispatch (continues the request's ``traceparent``)
    └── dispatch.job            the run, parented through ``dispatch.jobs.trace_context``
        ├── dispatch.claim      from the claim (``started_at``) to the executor picking it up
        └── adapter.run         the adapter call (retried once after an AuthError)
            └── HTTP GET|POST…  each vendor request (httpx event hooks, app/core/metrics.py)

Exporters (``OTEL_TRACES_EXPORTER``, comma-separated, default ``otlp``): ``otlp`` (needs
``opentelemetry-exporter-otlp-proto-http`` or ``-grpc`` installed beside the extra; it reads
``OTEL_EXPORTER_OTLP_*`` itself), ``console`` (stdout), ``none`` (spans are made, so
``trace_id`` appears in the logs, but not exported). Vendor requests carry no trace header:
a trace is ours, never sent to a third party.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

#: W3C trace-context, version 00: what POST /dispatch accepts (and stores) without OpenTelemetry.
TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
SERVICE_NAME = "integration-dispatch"

_tracer: Any = None    # an opentelemetry Tracer while tracing is on
_provider: Any = None
_NULL: AbstractContextManager[None] = nullcontext()


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """True when an ``OTEL_`` variable is set (and the SDK is not disabled)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(key.startswith("OTEL_") and value.strip() for key, value in env.items())


def on() -> bool:
    return _tracer is not None


def setup(environ: Mapping[str, str] | None = None, exporter: Any = None) -> bool:
    """Start tracing if wanted; ``exporter``: a span exporter to use instead (tests), always on.

    Returns whether tracing is on."""
    global _tracer, _provider
    env = os.environ if environ is None else environ
    if exporter is None and not wanted(env):
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        from app.core import logs

        logs.event("tracing.unavailable", logging.WARNING,
                   detail="an OTEL_ variable is set but OpenTelemetry is not installed: "
                          "pip install 'integration-dispatch[otel]' (running without traces)")
        return False
    from app import __version__
    from app.core import logs

    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for chosen in _exporters(env):
            provider.add_span_processor(BatchSpanProcessor(chosen))
        from opentelemetry import trace

        trace.set_tracer_provider(provider)  # for any library instrumentation the operator adds
    _provider, _tracer = provider, provider.get_tracer(SERVICE_NAME, __version__)
    logs.event("tracing.started", exporters=env.get("OTEL_TRACES_EXPORTER", "otlp") if exporter is None else "test")
    return True


def _exporters(env: Mapping[str, str]) -> list[Any]:
    found: list[Any] = []
    for name in (n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")):
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            found.append(ConsoleSpanExporter())
        elif name == "otlp":
            exporter = _otlp_exporter(env)
            if exporter is not None:
                found.append(exporter)
        elif name not in ("none", ""):
            from app.core import logs

            logs.event("tracing.unknown_exporter", logging.WARNING, exporter=name[:40],
                       detail="OTEL_TRACES_EXPORTER takes otlp, console or none")
    return found


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    try:
        if protocol.strip() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        from app.core import logs

        logs.event("tracing.no_otlp_exporter", logging.WARNING,
                   detail="OTLP export needs opentelemetry-exporter-otlp-proto-http (or -grpc) installed; "
                          "spans are made but not exported (or set OTEL_TRACES_EXPORTER=console)")
        return None
    return OTLPSpanExporter()


def shutdown() -> None:
    """Flush and stop (the daemon's last step); tracing is off afterwards."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


# -- spans
def _context(traceparent: str | None) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent}) if traceparent else None


def span(name: str, parent: str | None = None, start: datetime | None = None, server: bool = False,
         attributes: Mapping[str, Any] | None = None, **fields: Any) -> AbstractContextManager[Any]:
    """A span around a block, current inside it; a no-op while tracing is off.

    ``parent``: a traceparent to continue (else the current span's trace); ``start``: when the
    span began, if before now (e.g. the claim's ``started_at``); ``fields`` become
    ``dispatch.*`` attributes, ``attributes`` are taken as named (semantic conventions)."""
    if _tracer is None:
        return _NULL
    from opentelemetry.trace import SpanKind

    manager: AbstractContextManager[Any] = _tracer.start_as_current_span(
        name, context=_context(parent) if parent else None, kind=SpanKind.SERVER if server else SpanKind.INTERNAL,
        attributes=_attributes({**(attributes or {}), **fields}), start_time=_ns(start))
    return manager


def record(name: str, start: datetime, end: datetime | None = None, **attributes: Any) -> None:
    """A finished span, child of the current one, for something that already happened."""
    if _tracer is None:
        return
    done = _tracer.start_span(name, attributes=_attributes(attributes), start_time=_ns(start))
    done.end(end_time=_ns(end) or time.time_ns())


def annotate(target: Any, **attributes: Any) -> None:
    """Set attributes on a span :func:`span` yielded (a no-op on the null context's None)."""
    if target is not None:
        target.set_attributes(_attributes(attributes))


def traceparent() -> str | None:
    """The current span as a W3C traceparent, or None when no span is recording."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def trace_id() -> str | None:
    """The current trace's id (32 hex digits) for the log lines, or None."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def valid_traceparent(value: str | None) -> str | None:
    """A well-formed version-00 traceparent, or None (anything else is ignored, never an error)."""
    if value is None:
        return None
    value = value.strip().lower()
    return value if len(value) == 55 and TRACEPARENT.match(value) else None


# -- vendor HTTP requests (called from the httpx event hooks)
def http_started(method: str, url: Any) -> Any:
    """A client span for one vendor request, child of the current span; None while off. The
    query string is left out (it may hold a token)."""
    if _tracer is None:
        return None
    from opentelemetry.trace import SpanKind

    return _tracer.start_span(f"HTTP {method}", kind=SpanKind.CLIENT, attributes={
        "http.request.method": method, "server.address": url.host, "url.scheme": url.scheme,
        "url.path": url.path, **({"server.port": url.port} if url.port else {})})


def http_finished(started: Any, status: int) -> None:
    if started is None:
        return
    from opentelemetry.trace import Status, StatusCode

    started.set_attribute("http.response.status_code", status)
    if status >= 500:
        started.set_status(Status(StatusCode.ERROR))
    started.end()


def _ns(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1_000_000_000) if moment is not None else None


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as OpenTelemetry takes them: dotted names (``job_id`` -> ``dispatch.job_id``)
    and str/bool/int/float values; None is left out."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        name = key if "." in key else f"dispatch.{key}"
        out[name] = value if isinstance(value, str | bool | int | float) else str(value)
    return out
