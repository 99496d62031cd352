"""Job payloads per adapter, fuzzed. The adapters' payload validation directly (pure, fast):
a model or PermanentError with a readable message, never another exception type. Then a
sample of bad payloads through a real daemon: each fails its job with a message, the daemon
stays healthy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.adapters._vendor_http import ExportPayload, SyncPayload, validate
from app.adapters.base import Integration, JobContext
from app.adapters.noop import NoopAdapter
from app.adapters.webhook import WebhookAdapter
from app.core.errors import PermanentError, RetryableError
from tests.support import DaemonProcess, wait_for

FUZZ = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                    st.sampled_from(["2026-11-30", "125.00", "-125.00", "NaN", "1e400", "", "\x00"]))
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                      st.dictionaries(st.text(max_size=12), kids, max_size=4)),
                      max_leaves=20)
line = st.fixed_dictionaries({"account": values, "amount": values}, optional={"description": values})
export_like = st.fixed_dictionaries({"posting_date": values, "lines": st.one_of(values, st.lists(line, max_size=6))},
                                    optional={"description": values, "period": values, "slot": values,
                                              "extra": values})
sync_like = st.fixed_dictionaries({}, optional={"since": values, "page_size": values, "timezone": values,
                                                "schedule_id": values})
any_payload = st.one_of(values, export_like, sync_like, st.dictionaries(st.text(max_size=12), values, max_size=6))


def _readable(exc: PermanentError) -> None:
    # Field names come from the payload and are echoed as given (control characters too); the
    # message is bounded and says what is wrong.
    message = str(exc)
    assert 0 < len(message) < 2000 and ("invalid" in message or "noop" in message), message


@pytest.mark.unit
@FUZZ
@given(payload=st.one_of(export_like, any_payload))
def test_export_payload__model_or_permanent_error(payload: Any) -> None:
    try:
        validate(ExportPayload, payload, "export payload")
    except PermanentError as exc:
        _readable(exc)
        assert str(exc).startswith("invalid export payload: ")


@pytest.mark.unit
@FUZZ
@given(payload=st.one_of(sync_like, any_payload))
def test_sync_payload__model_or_permanent_error(payload: Any) -> None:
    try:
        validate(SyncPayload, payload, "sync payload")
    except PermanentError as exc:
        _readable(exc)


def _ctx(payload: dict[str, Any], http: httpx.AsyncClient, config: dict[str, Any] | None = None) -> JobContext:
    return JobContext(job_id=1, integration=Integration("x", "webhook", config or {"url": "http://127.0.0.1:9/h"}),
                      kind="notify", payload=payload, idempotency_key="k", attempt=1,
                      scheduled_for=datetime.now(UTC), credentials=None, http=http)


json_objects = st.dictionaries(st.text(max_size=12), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)),
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=20), max_size=6)


@pytest.mark.unit
@FUZZ
@given(payload=json_objects)
def test_webhook__any_json_object_payload_is_sent(payload: dict[str, Any]) -> None:
    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as http:
            return await WebhookAdapter().run(_ctx(payload, http))
    assert asyncio.run(run()) == {"status": 200}


noop_payloads = st.fixed_dictionaries({}, optional={"sleep_ms": scalars, "fail": scalars, "retry_after": scalars})


@pytest.mark.unit
@FUZZ
@given(payload=noop_payloads)
def test_noop__payload_gives_success_or_a_dispatch_error(payload: dict[str, Any]) -> None:
    async def no_sleep(_: float) -> None:
        return None

    async def run() -> None:
        ctx = _ctx(payload, None)  # type: ignore[arg-type]
        original, asyncio.sleep = asyncio.sleep, no_sleep  # type: ignore[assignment]
        try:
            await NoopAdapter().run(ctx)
        except RetryableError as exc:
            assert payload.get("fail") and exc.retry_after is None or isinstance(exc.retry_after, int | float)
        except PermanentError as exc:
            _readable(exc)
        finally:
            asyncio.sleep = original  # type: ignore[assignment]
    asyncio.run(run())


# ----------------------------------------------------------------- through a real daemon
BAD_PAYLOADS: dict[str, tuple[str, str, str]] = {  # name -> (adapter, kind, payload JSON text)
    "export unbalanced": ("xledger", "export", json.dumps({"posting_date": "2026-11-30", "lines": [
        {"account": "6300", "amount": "1.00"}]})),
    "export no lines": ("dynamics_bc", "export", json.dumps({"posting_date": "2026-11-30", "lines": []})),
    "export 1 MB": ("xledger", "export", json.dumps({"posting_date": "x", "description": "d" * 1_048_576,
                                                     "lines": "nope"})),
    "sync bad since": ("dynamics_bc", "sync", json.dumps({"since": "yesterday-ish", "page_size": -1})),
    "unknown kind": ("xledger", "reconcile", "{}"),
    "noop permanent": ("noop", "sync", json.dumps({"fail": "permanent"})),
    "deep nesting": ("noop", "sync", '{"a":' * 5000 + "1" + "}" * 5000),
    "noop bad sleep": ("noop", "sync", json.dumps({"sleep_ms": "soon"})),
    "noop bad retry_after": ("noop", "sync", json.dumps({"fail": True, "retry_after": "later"})),
}


@pytest.fixture
def adapters_seeded(conn: psycopg.Connection) -> psycopg.Connection:
    cfg = {"xledger": {"base_url": "http://127.0.0.1:9"},
           "dynamics_bc": {"base_url": "http://127.0.0.1:9", "login_url": "http://127.0.0.1:9", "company_id": "c"}}
    for adapter in ("xledger", "dynamics_bc", "noop"):
        integration_id = f"f-{adapter.replace('_', '-')}"  # its secret is its own: "<id>-creds"
        conn.execute("INSERT INTO dispatch.integrations (id, adapter, config, secret_name) VALUES (%s, %s, %s, %s)",
                     [integration_id, adapter, json.dumps(cfg.get(adapter, {})), f"{integration_id}-creds"])
    return conn


def _enqueue_bad(conn: psycopg.Connection, names: list[str]) -> dict[str, int]:
    from app.devkit.demo import put_secret
    put_secret(conn, "f-xledger-creds", json.dumps({"token": "t"}))
    put_secret(conn, "f-dynamics-bc-creds", json.dumps({"tenant_id": "t", "client_id": "c", "client_secret": "s"}))
    ids = {}
    for name in names:
        adapter, kind, payload = BAD_PAYLOADS[name]
        row = conn.execute("SELECT dispatch.enqueue(%s, %s, %s::jsonb, max_attempts => 1)",
                           [f"f-{adapter.replace('_', '-')}", kind, payload]).fetchone()
        assert row is not None
        ids[name] = row[0]
    return ids


@pytest.fixture
def daemon(db_url: str, tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(db_url, tmp_path, DISPATCH_LEASE_SECONDS="5", DISPATCH_RESCUE_INTERVAL="1")
    try:
        yield process.start()
    finally:
        process.kill()


GROUPS = {
    "vendor payloads": pytest.param(["export unbalanced", "export no lines", "export 1 MB", "sync bad since",
                                     "unknown kind", "noop permanent"], id="vendor-payloads"),
    # A payload nested deeper than Python reads fails its job with a message (app/daemon.py safe_json_loads).
    "deep nesting": pytest.param(["deep nesting"], id="deep-nesting"),
    "noop non-numbers": pytest.param(["noop bad sleep", "noop bad retry_after"], id="noop-non-numbers"),
}


@pytest.mark.acceptance
@pytest.mark.parametrize("names", list(GROUPS.values()))
def test_bad_payloads__fail_their_jobs_with_a_message_and_the_daemon_serves_on(
        adapters_seeded: psycopg.Connection, daemon: DaemonProcess, names: list[str]) -> None:
    conn = adapters_seeded
    ids = _enqueue_bad(conn, names)
    try:
        wait_for(lambda: _finished(conn, ids), 30, interval=0.2, message="every bad job finished")
    except AssertionError:
        states = {n: conn.execute("SELECT status::text, attempts, left(last_error, 200) FROM dispatch.jobs "
                                  "WHERE id = %s", [i]).fetchone() for n, i in ids.items()}
        errors = [e for e in daemon.events() if e.get("level") in ("error", "warning")][-5:]
        raise AssertionError(f"jobs not finished: {states}\ndaemon errors: {errors}") from None
    rows = {name: conn.execute("SELECT status::text, last_error FROM dispatch.jobs WHERE id = %s", [i]).fetchone()
            for name, i in ids.items()}
    assert {n: r[0] for n, r in rows.items() if r is not None} == dict.fromkeys(ids, "failed")
    assert all(r is not None and r[1] and len(r[1]) < 4000 for r in rows.values()), rows
    health = daemon.health()
    assert health is not None and health.status_code == 200
    good = conn.execute("SELECT dispatch.enqueue('f-noop', 'sync')").fetchone()
    assert good is not None
    wait_for(lambda: conn.execute("SELECT status = 'succeeded' FROM dispatch.jobs WHERE id = %s", good).fetchone()
             == (True,), 20, message="a good job after the bad ones")


def _finished(conn: psycopg.Connection, ids: dict[str, int]) -> bool:
    row = conn.execute("SELECT count(*) FROM dispatch.jobs WHERE id = ANY(%s) AND status IN ('failed', 'succeeded')",
                       [list(ids.values())]).fetchone()
    return row is not None and row[0] == len(ids)
