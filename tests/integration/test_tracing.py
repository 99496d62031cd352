"""Tracing (the [otel] extra): one trace from POST /dispatch to the vendor request, with the
in-memory exporter; and nothing of OpenTelemetry imported while no OTEL_ variable is set.

In-process: the API's routes served through httpx's ASGI transport on a real database, the
claim through JobStore, the run through the Executor with a fake adapter whose vendor is an
httpx MockTransport behind the daemon's own event hooks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import psycopg
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the [otel] extra is not installed")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from starlette.applications import Starlette  # noqa: E402

from app.adapters import Registry  # noqa: E402
from app.adapters.base import JobContext  # noqa: E402
from app.core import metrics, tracing  # noqa: E402
from app.core.job import Status  # noqa: E402
from app.core.logs import JsonFormatter  # noqa: E402
from app.daemon.executor import Executor, HttpClients  # noqa: E402
from app.db.pool import make_pool  # noqa: E402
from app.db.stores import JobStore  # noqa: E402
from app.web.api import Api  # noqa: E402
from app.web.auth import AuthConfig, Verifier, mint_token  # noqa: E402
from tests.unit.fakes import FakeCredentials  # noqa: E402

pytestmark = pytest.mark.integration

SECRET = "tracing-test-jwt-secret-of-at-least-32-bytes"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Vendor:
    """An adapter that makes one vendor request per run."""

    name: ClassVar[str] = "traced"
    config_model: ClassVar[Any] = None
    default_health_mode: ClassVar[str] = "passive"
    uses_http: ClassVar[bool] = True
    uses_credentials: ClassVar[bool] = False

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        response = await ctx.http.post("https://vendor.example/api/vouchers?token=sekret", json=ctx.payload)
        return {"document": response.json()["id"]}

    async def probe(self, ctx: Any) -> None:
        return None

    async def warm_up(self, ctx: Any) -> None:
        return None


class MockVendorClients(HttpClients):
    """The daemon's client (its event hooks) with a vendor that answers in-process."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[httpx.Headers] = []

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            def vendor(request: httpx.Request) -> httpx.Response:
                self.headers.append(request.headers)
                return httpx.Response(201, json={"id": "V-1"})

            self._client = httpx.AsyncClient(transport=httpx.MockTransport(vendor),
                                             event_hooks=metrics.httpx_event_hooks())
        return self._client


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.setup(environ={}, exporter=exporter)
    yield exporter
    tracing.shutdown()


def _dispatch_one(db_url: str, clients: MockVendorClients, headers: dict[str, str]) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        pool = make_pool(db_url, "tracing-test", 1, 2)
        await pool.open()
        try:
            api = Api(None, pool, verifier=Verifier(AuthConfig(jwt_secret=SECRET)))  # type: ignore[arg-type]
            app = Starlette(routes=api.routes())
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dispatch") as c:
                response = await c.post("/dispatch", json={"integration_id": "traced", "kind": "export",
                                                           "payload": {"period": "2026-11"}},
                                        headers={"Authorization": f"Bearer {mint_token(SECRET)}", **headers})
            assert response.status_code == 200, response.text
            job_id = int(response.json()["job_id"])
            store = JobStore(pool, "tracing-test:1")
            (job,) = await store.claim(1, 30)
            assert job.id == job_id
            registry = Registry(builtin={})
            registry.register("traced", Vendor)
            executor = Executor(registry, FakeCredentials(), clients, trace_context=store.trace_context)
            outcome = await executor.execute(job)
            await clients.aclose()
            return job_id, outcome
        finally:
            await pool.close()

    return asyncio.run(go())


@pytest.fixture
def traced_integration(conn: psycopg.Connection) -> str:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('traced', 'traced')")
    return "traced"


def test_one_job__one_trace_from_post_dispatch_to_the_vendor_request(
        db_url: str, conn: psycopg.Connection, traced_integration: str, spans: InMemorySpanExporter) -> None:
    clients = MockVendorClients()
    job_id, outcome = _dispatch_one(db_url, clients, {"traceparent": TRACEPARENT})
    assert outcome.status is Status.SUCCEEDED and outcome.result == {"document": "V-1"}

    finished = spans.get_finished_spans()
    by_name = {s.name: s for s in finished}
    assert sorted(by_name) == ["HTTP POST", "adapter.run", "dispatch.claim", "dispatch.enqueue", "dispatch.job"]
    assert len(finished) == 5
    # One trace: the caller's.
    assert {f"{s.context.trace_id:032x}" for s in finished} == {CALLER_TRACE}

    def parent(name: str) -> int | None:
        p = by_name[name].parent
        return p.span_id if p is not None else None

    assert parent("dispatch.enqueue") == int("00f067aa0ba902b7", 16)  # the caller's span
    assert parent("dispatch.job") == by_name["dispatch.enqueue"].context.span_id
    assert parent("dispatch.claim") == by_name["dispatch.job"].context.span_id
    assert parent("adapter.run") == by_name["dispatch.job"].context.span_id
    assert parent("HTTP POST") == by_name["adapter.run"].context.span_id

    enqueue, job, http = by_name["dispatch.enqueue"], by_name["dispatch.job"], by_name["HTTP POST"]
    assert enqueue.attributes["dispatch.job_id"] == job_id and enqueue.attributes["dispatch.duplicate"] is False
    assert job.attributes["dispatch.job_id"] == job_id and job.attributes["dispatch.outcome"] == "succeeded"
    assert job.attributes["dispatch.integration"] == "traced" and job.attributes["dispatch.attempt"] == 1
    assert http.attributes["http.response.status_code"] == 201
    assert http.attributes["server.address"] == "vendor.example" and http.attributes["url.path"] == "/api/vouchers"
    assert "sekret" not in json.dumps(dict(http.attributes))  # no query string
    assert "traceparent" not in clients.headers[0]  # the trace is not sent to the vendor

    # The row carries the enqueue span's context (the caller's trace id).
    (stored,) = conn.execute("SELECT trace_context FROM dispatch.jobs WHERE id = %s", (job_id,)).fetchone()  # type: ignore[misc]
    assert stored == f"00-{CALLER_TRACE}-{enqueue.context.span_id:016x}-01"


def test_without_a_traceparent__the_enqueue_starts_the_trace(
        db_url: str, traced_integration: str, spans: InMemorySpanExporter) -> None:
    _dispatch_one(db_url, MockVendorClients(), {"traceparent": "not-a-traceparent"})
    finished = spans.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1
    (enqueue,) = [s for s in finished if s.name == "dispatch.enqueue"]
    assert enqueue.parent is None


def test_tracing_off__a_valid_traceparent_is_still_stored_for_the_run(
        db_url: str, conn: psycopg.Connection, traced_integration: str) -> None:
    assert not tracing.on()
    job_id, outcome = _dispatch_one(db_url, MockVendorClients(), {"traceparent": f" {TRACEPARENT.upper()} "})
    assert outcome.status is Status.SUCCEEDED
    (stored,) = conn.execute("SELECT trace_context FROM dispatch.jobs WHERE id = %s", (job_id,)).fetchone()  # type: ignore[misc]
    assert stored == TRACEPARENT


def test_log_lines__carry_the_trace_id_while_tracing(spans: InMemorySpanExporter) -> None:
    record = logging.LogRecord("dispatch", logging.INFO, __file__, 1, "job.cold_start", None, None)
    with tracing.span("dispatch.job", parent=TRACEPARENT):
        inside = json.loads(JsonFormatter().format(record))
    outside = json.loads(JsonFormatter().format(record))
    assert inside["trace_id"] == CALLER_TRACE and "trace_id" not in outside


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**clean, **env}, timeout=60)


def test_no_otel_variable__no_opentelemetry_import() -> None:
    done = _python("import app.composition, app.main\n"
                   "from app.core import tracing\n"
                   "assert not tracing.setup()\n")
    assert done.returncode == 0, done.stderr
    assert "opentelemetry" not in done.stderr  # -X importtime lists every module imported


def test_an_otel_variable__turns_tracing_on() -> None:
    done = _python("from app.core import tracing\nassert tracing.setup()\n"
                   "with tracing.span('x'):\n    assert tracing.trace_id()\n"
                   "tracing.shutdown()\n", OTEL_TRACES_EXPORTER="none")
    assert done.returncode == 0, done.stderr
    assert "opentelemetry.sdk.trace" in done.stderr
    off = _python("from app.core import tracing\nassert not tracing.setup()\n",
                  OTEL_TRACES_EXPORTER="none", OTEL_SDK_DISABLED="true")
    assert off.returncode == 0, off.stderr
