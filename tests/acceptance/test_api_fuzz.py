"""Property-based fuzz of the HTTP API against the daemon as a real process.

Hypothesis generates requests from the shapes the OpenAPI document describes, and from far
outside them (wrong types, NUL characters, lone surrogates, huge numbers, raw bytes, odd
headers, every method on every route). The property: no answer is a 5xx, every error is
JSON with a code and a message, and the daemon is still healthy at the end. At least 1,000
requests are made in the default run (counted and checked by the last test).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.devkit.cluster import LocalCluster
from app.web.api import KIND_PATTERN, MAX_BODY_BYTES, ROUTES
from app.web.auth import mint_token
from tests.conftest import create_database, drop_database
from tests.support import DaemonProcess

pytestmark = pytest.mark.acceptance

SECRET = "fuzz-test-jwt-secret-that-is-32-bytes-or-longer"
TOKEN = mint_token(SECRET, ttl=3600)
FUZZ = settings(deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
requests_made = 0


@pytest.fixture(scope="module")
def daemon(pg_cluster: LocalCluster, admin_url: str, template_db: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    name = create_database(admin_url, template_db, prefix="fuzz")
    url = pg_cluster.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('x', 'noop')")
    d = DaemonProcess(url, tmp_path_factory.mktemp("fuzz"), SUPABASE_JWT_SECRET=SECRET, SUPABASE_URL="")
    d.start()
    yield d
    d.kill()
    drop_database(admin_url, name)


@pytest.fixture(scope="module")
def client(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        yield c


def check(response: httpx.Response) -> httpx.Response:
    """The property every answer must have."""
    global requests_made
    requests_made += 1
    request = response.request
    assert response.status_code < 500, f"{request.method} {request.url}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400 and request.method != "HEAD":
        body = response.json()
        assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    return response


# -- strategies
AWKWARD_TEXT = st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "\U0001f600", "é", "\n", "'", '"',
                                "%00", "../../etc/passwd", "x" * 600, "ＳＹＮＣ", "sync\n"])
TEXT = st.one_of(st.text(max_size=40), AWKWARD_TEXT, st.text(st.characters(codec="utf-8"), max_size=10))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**30), max_value=10**30),
                    st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=15)
OFFSETS = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-(24 * 60 - 1), 24 * 60 - 1))
DATETIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                         timezones=st.none() | st.just(UTC) | OFFSETS).map(datetime.isoformat)
TIMES = st.one_of(DATETIMES, st.just(datetime.now(UTC).isoformat()), JSON)
INTS = st.one_of(st.integers(-5, 10), st.integers(), JSON)
FIELDS = {
    "integration_id": st.one_of(st.just("x"), st.just("nope"), TEXT, JSON),
    "kind": st.one_of(st.from_regex(KIND_PATTERN, fullmatch=True), st.just("sync"), TEXT, JSON),
    "payload": st.one_of(st.dictionaries(TEXT, JSON, max_size=5), JSON),
    "scheduled_for": TIMES, "run_after": TIMES,
    "idempotency_key": st.one_of(TEXT, st.text(min_size=1, max_size=600), JSON),
    "priority": INTS, "max_attempts": INTS,
}
BODIES = st.builds(lambda base, extra: {**extra, **base},
                   st.fixed_dictionaries({}, optional=FIELDS),
                   st.dictionaries(TEXT, JSON, max_size=2))
# What PostgreSQL can store: valid UTF-8 (no lone surrogates) without NUL.
CLEAN_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
CLEAN_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), CLEAN_TEXT),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(CLEAN_TEXT, inner, max_size=4), max_leaves=15)
VALID_BODIES = st.fixed_dictionaries(
    {"integration_id": st.just("x"), "kind": st.from_regex(KIND_PATTERN, fullmatch=True)},
    optional={"payload": st.dictionaries(CLEAN_TEXT, CLEAN_JSON, max_size=4),
              "scheduled_for": st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(8999, 1, 1),
                                            timezones=st.just(UTC)).map(datetime.isoformat),
              "idempotency_key": CLEAN_TEXT.filter(bool), "priority": st.integers(-32768, 32767),
              "max_attempts": st.integers(1, 1000)})


def _raw(body: Any) -> bytes:
    return json.dumps(body).encode()  # ensure_ascii: lone surrogates become \ud800 escapes


# -- properties
@settings(FUZZ, max_examples=1000)
@given(body=BODIES)
def test_fuzz__dispatch_with_any_json_object_never_fails_the_server(client: httpx.Client, body: dict[str, Any]) -> None:
    response = check(client.post("/dispatch", content=_raw(body), headers={"Content-Type": "application/json"}))
    assert response.status_code in {200, 404, 422}
    if response.status_code == 200:
        assert set(response.json()) == {"job_id", "status", "duplicate"}


@settings(FUZZ, max_examples=1000)
@given(body=VALID_BODIES)
def test_fuzz__dispatch_with_valid_bodies_enqueues(client: httpx.Client, body: dict[str, Any]) -> None:
    response = check(client.post("/dispatch", content=_raw(body)))
    assert response.status_code == 200, response.text


@settings(FUZZ, max_examples=1000)
@given(content=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda b, i, junk: b[:i] + junk + b[i:], BODIES.map(_raw), st.integers(0, 200), st.binary(max_size=8)),
    st.integers(1, 5000).map(lambda depth: b'{"integration_id": "x", "kind": "sync", "payload": ' + b"[" * depth),
))
def test_fuzz__dispatch_with_any_bytes_never_fails_the_server(client: httpx.Client, content: bytes) -> None:
    check(client.post("/dispatch", content=content, headers={"Content-Type": "application/json"}))


@settings(FUZZ, max_examples=1000)
@given(segment=st.one_of(TEXT.filter(lambda s: s not in {"", ".", ".."}), st.integers().map(str)))
def test_fuzz__job_lookup_with_any_id_never_fails_the_server(client: httpx.Client, segment: str) -> None:
    path = "/jobs/" + quote(segment.encode("utf-8", "surrogatepass"), safe="")
    assert check(client.get(path)).status_code in {200, 404, 422}


HEADER_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)
AUTHORIZATION = st.one_of(
    st.none(), HEADER_TEXT, HEADER_TEXT.filter(bool).map("Bearer ".__add__),  # h11 refuses trailing spaces
    st.sampled_from([f"Bearer {TOKEN}", f"Bearer {TOKEN[:-4]}AAAA", f"Bearer {TOKEN}.x", f"Basic {TOKEN}",
                     f"Bearer {mint_token(SECRET, role='anon')}", f"Bearer {mint_token(SECRET, ttl=-100)}"]),
)


PROTECTED = {(m, s.path.replace("{job_id}", "1")) for s in ROUTES.values() if s.public_reason is None
             for m in ({s.method, "HEAD"} if s.method == "GET" else {s.method})}
VALID = {f"Bearer {TOKEN}"}


@settings(FUZZ, max_examples=1000)
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
       path=st.sampled_from([s.path.replace("{job_id}", "1") for s in ROUTES.values()] + ["/", "/jobs", "/x"]),
       authorization=AUTHORIZATION, body=st.one_of(st.none(), BODIES.map(_raw)))
def test_fuzz__any_method_route_and_credentials_never_fail_the_server(
        daemon: DaemonProcess, method: str, path: str, authorization: str | None, body: bytes | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = check(httpx.request(method, daemon.url + path, headers=headers, content=body, timeout=30))
    if (method, path) in PROTECTED and authorization not in VALID:
        assert response.status_code in {401, 403}, response.text


# -- the named edge cases, once each
def test_fuzz__one_megabyte_payload_is_accepted_and_one_byte_more_is_413(client: httpx.Client) -> None:
    envelope = _raw({"integration_id": "x", "kind": "sync", "payload": {"blob": ""}})
    fill = MAX_BODY_BYTES - len(envelope)
    body = _raw({"integration_id": "x", "kind": "sync", "payload": {"blob": "z" * fill}})
    assert len(body) == MAX_BODY_BYTES
    assert check(client.post("/dispatch", content=body)).status_code == 200
    body = _raw({"integration_id": "x", "kind": "sync", "payload": {"blob": "z" * (fill + 1)}})
    assert check(client.post("/dispatch", content=body)).status_code == 413


@pytest.mark.parametrize("content", [
    b'{"integration_id": "x", "kind": "sync", "payload": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
    b"[" * 500_000,
    b'{"integration_id": "x", "kind": "sync", "payload": {"raw": "a\x00b"}}',
    b'{"integration_id": "x", "kind": "sync", "payload": {"esc": "a\\u0000b"}}',
    b'{"integration_id": "x\\u0000", "kind": "sync"}',
    b'{"integration_id": "x", "kind": "sync", "payload": {"k\\u0000": 1}}',
    b'{"integration_id": "x", "kind": "sync", "payload": {"bad": "\xc3\x28"}}',
    b'{"integration_id": "x", "kind": "sync", "payload": {"n": 1' + b"0" * 5000 + b"}}",
    b'{"integration_id": "x", "kind": "sync", "payload": {"n": -1e400}}',
], ids=["nested-50k", "open-brackets", "raw-nul", "escaped-nul", "nul-in-id", "nul-in-key", "invalid-utf8",
        "5000-digit-number", "overflowing-float"])
def test_fuzz__edge_bodies_are_422(client: httpx.Client, content: bytes) -> None:
    assert check(client.post("/dispatch", content=content)).status_code == 422


def test_fuzz__daemon_is_healthy_afterwards_and_logged_no_unhandled_error(daemon: DaemonProcess,
                                                                         client: httpx.Client) -> None:
    # Its own burst of awkward requests, so the test means the same run alone or after the others.
    for content in [b"", b"{", b"[]", b"null", b'{"integration_id": "x"}', b'{"kind": "\\ud800"}', b"\x00" * 64,
                    b'{"integration_id": "x", "kind": "sync", "payload": ' + b"[" * 200 + b"]" * 200 + b"}"]:
        check(client.post("/dispatch", content=content))
    for path in ["/jobs/0", "/jobs/-1", "/jobs/99999999999999999999", "/jobs/%00", "/nope", "/health/"]:
        check(client.get(path))
    health = daemon.health()
    assert health is not None and health.status_code == 200, health and health.text
    assert daemon.events("http.unhandled_error") == []
    assert "Traceback" not in daemon.logs()
    assert requests_made >= 14, f"only {requests_made} requests were made"

