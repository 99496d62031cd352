"""The HTTP API against a real database, served by the daemon as a real process.

One daemon (and one database cloned from the migrated template) serves the whole module:
the routes are stateless apart from the rows they write, and a daemon start per test would
cost more than every request here together.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app.devkit.cluster import LocalCluster
from app.web.api import ROUTES
from app.web.auth import mint_token
from tests.conftest import create_database, drop_database
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.acceptance

SECRET = "integration-test-jwt-secret-of-at-least-32-bytes"
NO_AUTH_ENV = {"SUPABASE_JWT_SECRET": "", "SUPABASE_URL": ""}  # a developer's .env must not leak in


@pytest.fixture(scope="module")
def api_db(pg_cluster: LocalCluster, admin_url: str, template_db: str) -> Iterator[str]:
    name = create_database(admin_url, template_db, prefix="api")
    url = pg_cluster.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('x', 'noop')")
    yield url
    drop_database(admin_url, name)


@pytest.fixture(scope="module")
def daemon(api_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(api_db, tmp_path_factory.mktemp("api"), **{**NO_AUTH_ENV, "SUPABASE_JWT_SECRET": SECRET})
    d.start()
    yield d
    d.stop()
    d.close()


@pytest.fixture
def conn(api_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(api_db, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def client(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {mint_token(SECRET)}"}
    with httpx.Client(base_url=daemon.url, headers=headers, timeout=10) as c:
        yield c


def error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, Any] = response.json()["error"]
    assert set(body) >= {"code", "message"}
    return body


def dispatch(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/dispatch", json={"integration_id": "x", "kind": "sync", **body})


# -- POST /dispatch
def test_dispatch__enqueues_a_job_that_runs(client: httpx.Client, conn: psycopg.Connection) -> None:
    response = dispatch(client, payload={"n": 1})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "queued" and body["duplicate"] is False and isinstance(body["job_id"], int)
    job = wait_for(lambda: (j := client.get(f"/jobs/{body['job_id']}").json())["status"] == "succeeded" and j,
                   10, message="the dispatched job succeeded")
    assert job["source"] == "api" and job["payload"] == {"n": 1} and job["result"] == {"ok": True}
    assert job["drift_seconds"] >= 0 and job["last_error"] is None
    row = conn.execute("SELECT source, attempts FROM dispatch.jobs WHERE id = %s", [body["job_id"]]).fetchone()
    assert row == ("api", 1)


def test_dispatch__repeated_idempotency_key_returns_the_first_job(client: httpx.Client) -> None:
    first = dispatch(client, idempotency_key="invoice-42").json()
    second = dispatch(client, idempotency_key="invoice-42", payload={"other": True}).json()
    assert second["job_id"] == first["job_id"] and second["duplicate"] is True and first["duplicate"] is False
    assert second["status"] in {"queued", "running", "succeeded"}


def test_dispatch__takes_every_enqueue_field(client: httpx.Client, conn: psycopg.Connection) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    body = dispatch(client, scheduled_for=later.isoformat(), run_after=later.isoformat(), priority=-3,
                    max_attempts=2, idempotency_key="all-fields").json()
    row = conn.execute("SELECT scheduled_for, run_after, priority, max_attempts, idempotency_key "
                       "FROM dispatch.jobs WHERE id = %s", [body["job_id"]]).fetchone()
    assert row == (later, later, -3, 2, "all-fields")


def test_dispatch__unknown_integration_is_404_with_the_databases_hint(client: httpx.Client) -> None:
    response = client.post("/dispatch", json={"integration_id": "nope", "kind": "sync"})
    assert response.status_code == 404
    body = error(response)
    assert body["code"] == "unknown_integration" and "nope" in body["message"]
    assert "integrations add" in body["hint"]


def test_dispatch__body_over_the_limit_is_413(client: httpx.Client) -> None:
    big = {"integration_id": "x", "kind": "sync", "payload": {"blob": "x" * (1024 * 1024)}}
    response = client.post("/dispatch", content=json.dumps(big))
    assert response.status_code == 413 and error(response)["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while reading
        yield b'{"integration_id": "x", "kind": "sync", "payload": {"blob": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}}'

    assert client.post("/dispatch", content=chunks()).status_code == 413


@pytest.mark.parametrize(("body", "field"), [
    ({"integration_id": "x", "kind": "Not A Kind"}, "kind"),
    ({"integration_id": "x"}, "kind"),
    ({"kind": "sync"}, "integration_id"),
    ({"integration_id": "x", "kind": "sync", "priority": "high"}, "priority"),
    ({"integration_id": "x", "kind": "sync", "priority": 1.5}, "priority"),
    ({"integration_id": "x", "kind": "sync", "priority": 40000}, "priority"),
    ({"integration_id": "x", "kind": "sync", "max_attempts": 0}, "max_attempts"),
    ({"integration_id": "x", "kind": "sync", "payload": [1, 2]}, "payload"),
    ({"integration_id": "x", "kind": "sync", "scheduled_for": "2030-01-01T00:00:00"}, "scheduled_for"),
    ({"integration_id": "x", "kind": "sync", "run_after": "0001-01-01T00:00:00Z"}, "run_after"),
    ({"integration_id": "x", "kind": "sync", "colour": "red"}, "colour"),
    ({"integration_id": "x", "kind": "sync", "payload": {"note": "a\u0000b"}}, "payload.note"),
    ({"integration_id": "x\u0000", "kind": "sync"}, "integration_id"),
    ({"integration_id": "x", "kind": "sync", "payload": {"a": ["ok", "\u0000"]}}, "payload.a[1]"),
])
def test_dispatch__invalid_field_is_422_naming_it(client: httpx.Client, body: dict[str, Any], field: str) -> None:
    response = client.post("/dispatch", json=body)
    assert response.status_code == 422
    assert error(response)["field"] == field and field in error(response)["message"]


@pytest.mark.parametrize(("content", "words"), [
    (b"", "empty"),
    (b"{not json", "not valid JSON"),
    (b'{"integration_id": "x", "kind": "sync"', "not valid JSON"),
    (b"\xff\xfe{}", "UTF-8"),
    (b'{"integration_id": "x", "kind": "sync", "payload": {"n": NaN}}', "not valid JSON"),
    (b'{"integration_id": "x", "kind": "sync", "payload": {"n": 1e999}}', "out of range"),
    (b"[1, 2, 3]", "JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"integration_id": "x", "kind": "sync", "payload": {"s": "\\ud800"}}', "surrogate"),
])
def test_dispatch__invalid_body_is_422_with_a_message(client: httpx.Client, content: bytes, words: str) -> None:
    response = client.post("/dispatch", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert words in error(response)["message"]


def test_dispatch__deep_payload_is_refused_before_the_database(client: httpx.Client) -> None:
    payload: Any = "leaf"
    for _ in range(100):
        payload = {"a": payload}
    response = dispatch(client, payload=payload)
    assert response.status_code == 422 and "nested" in error(response)["message"]


# -- auth on every protected route
def _protected() -> list[tuple[str, str]]:
    return [(s.method, s.path.replace("{job_id}", "1")) for s in ROUTES.values() if s.public_reason is None]


@pytest.mark.parametrize(("method", "path"), _protected())
def test_protected_routes__refuse_missing_expired_and_wrong_role_tokens(daemon: DaemonProcess, method: str,
                                                                         path: str) -> None:
    cases = [(None, 401, "missing_token"), ("Bearer nope", 401, "malformed_token"),
             (f"Bearer {mint_token(SECRET, ttl=-120)}", 401, "expired_token"),
             (f"Bearer {mint_token('some-other-secret-of-32-bytes-or-more!')}", 401, "invalid_signature"),
             (f"Bearer {mint_token(SECRET, role='anon')}", 403, "wrong_role")]
    for header, status, code in cases:
        headers = {"Authorization": header} if header else {}
        response = httpx.request(method, daemon.url + path, headers=headers, json={}, timeout=10)
        assert (response.status_code, error(response)["code"]) == (status, code)
        assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")


def test_public_routes__answer_without_a_token(daemon: DaemonProcess) -> None:
    public = [s.path for s in ROUTES.values() if s.public_reason]
    assert sorted(public) == ["/health", "/health/live", "/health/ready", "/openapi.json"]
    for path in public:
        assert httpx.get(daemon.url + path, timeout=5).status_code == 200


def test_protected_routes__are_503_when_no_verification_is_configured(api_db: str, tmp_path: Path) -> None:
    d = DaemonProcess(api_db, tmp_path, **NO_AUTH_ENV).start()
    try:
        response = httpx.post(d.url + "/dispatch", json={}, headers={"Authorization": f"Bearer {mint_token(SECRET)}"})
        assert response.status_code == 503 and "SUPABASE_JWT_SECRET" in error(response)["message"]
        assert httpx.get(d.url + "/health").status_code == 200
    finally:
        d.stop()
        d.close()


# -- GET /jobs/{id}
def test_job__shows_timestamps_drift_and_last_error(client: httpx.Client, conn: psycopg.Connection) -> None:
    slot = datetime.now(UTC) - timedelta(seconds=3)
    job_id = dispatch(client, scheduled_for=slot.isoformat(), run_after=datetime.now(UTC).isoformat(),
                      payload={"fail": "permanent"}).json()["job_id"]
    job = wait_for(lambda: (j := client.get(f"/jobs/{job_id}").json())["status"] == "failed" and j, 10,
                   message="the job failed")
    assert 3 <= job["drift_seconds"] < 10
    assert "fail permanently" in job["last_error"]
    for name in ("scheduled_for", "run_after", "enqueued_at", "started_at", "finished_at"):
        datetime.fromisoformat(job[name])
    # Its history: every event, oldest first.
    assert [e["event"] for e in job["events"]] == ["enqueued", "claimed", "failed"]


@pytest.mark.parametrize(("path", "status"), [
    ("/jobs/999999999", 404), ("/jobs/abc", 422), ("/jobs/0", 422), ("/jobs/-1", 422),
    ("/jobs/99999999999999999999999", 422), ("/jobs/%EF%BC%91", 422),
])
def test_job__missing_or_invalid_id(client: httpx.Client, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status and error(response)


# -- GET /metrics
def test_metrics__exposes_the_documented_names(client: httpx.Client, conn: psycopg.Connection) -> None:
    conn.execute("SELECT dispatch.raise_alert('drift', 'test:metrics', 'a test alert')")
    dispatch(client, run_after=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in ("dispatch_jobs_finished_total", "dispatch_job_duration_seconds", "dispatch_job_pickup_latency_seconds",
                 "dispatch_job_drift_seconds", "dispatch_vendor_request_duration_seconds", "dispatch_queue_depth",
                 "dispatch_integration_health", "dispatch_integration_circuit", "dispatch_alerts_open",
                 "dispatch_jobs_in_flight", "dispatch_metrics_db_up"):
        assert f"# TYPE {name} " in text, name
    assert 'dispatch_queue_depth{integration="x",status="queued"}' in text
    health = [line for line in text.splitlines() if line.startswith('dispatch_integration_health{integration="x"')]
    assert len(health) == 3 and sum(float(line.split()[-1]) for line in health) == 1  # one state is current
    assert 'dispatch_alerts_open{kind="drift"} 1.0' in text
    assert "dispatch_metrics_db_up 1.0" in text


# -- the document and the error shape
def test_openapi__is_a_valid_document_describing_every_declared_route(daemon: DaemonProcess) -> None:
    from openapi_spec_validator import validate

    document = httpx.get(daemon.url + "/openapi.json").json()
    validate(document)
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert described == {(s.method, s.path) for s in ROUTES.values()}
    for spec in ROUTES.values():
        operation = document["paths"][spec.path][spec.method.lower()]
        assert (operation.get("security") == []) == (spec.public_reason is not None)


def test_unknown_routes_and_methods__answer_json(client: httpx.Client) -> None:
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and error(missing)["code"] == "not_found"
    wrong = client.put("/dispatch", json={})
    assert wrong.status_code == 405 and error(wrong)["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]


def test_dispatch__is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    from app.devkit.cluster import free_port

    d = DaemonProcess(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", tmp_path,
                      **{**NO_AUTH_ENV, "SUPABASE_JWT_SECRET": SECRET}).start(wait=False)
    try:
        wait_for(lambda: d.health() is not None, 20, message="the HTTP server answers")
        headers = {"Authorization": f"Bearer {mint_token(SECRET)}"}
        response = httpx.post(d.url + "/dispatch", json={"integration_id": "x", "kind": "sync"}, headers=headers,
                              timeout=30)
        assert response.status_code == 503 and error(response)["code"] == "database_unavailable"
        assert response.headers["retry-after"] == "1"
        metrics = httpx.get(d.url + "/metrics", headers=headers, timeout=30)
        assert metrics.status_code == 200 and "dispatch_metrics_db_up 0.0" in metrics.text
    finally:
        d.kill()
