"""VaultCredentials against a real database, as the daemon's least-privilege role."""

from __future__ import annotations

import asyncio
import contextlib
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from app.core.errors import MissingSecret, PermanentError
from app.core.secret import Secret
from app.db.vault import CredentialProvider, VaultCredentials
from app.devkit.cluster import LocalCluster

pytestmark = pytest.mark.integration

# One value per session, planted in the vault by these tests and searched for in the log.
PLANTED = f"planted-{uuid.uuid4().hex}"
DAEMON = "dispatch_daemon_creds_test"


@pytest.fixture
def daemon_url(conn: psycopg.Connection, pg_cluster: LocalCluster, db_url: str) -> str:
    """A login role granted dispatch_worker, as docs/security.md tells operators to make."""
    with contextlib.suppress(psycopg.errors.DuplicateObject):
        conn.execute(f"CREATE ROLE {DAEMON} LOGIN IN ROLE dispatch_worker")
    return pg_cluster.url(db_url.rsplit("/", 1)[1], user=DAEMON)


@pytest.fixture
def planted(conn: psycopg.Connection) -> str:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter, secret_name) VALUES "
                 "('acme', 'noop', 'acme-creds'), ('bare', 'noop', NULL), ('gone', 'noop', 'gone-creds')")
    conn.execute("SELECT vault.create_secret(%s, 'acme-creds')", [PLANTED])
    return PLANTED


def _factory(url: str) -> Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]:
    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(url, autocommit=True)
    return connect


def _set_secret(conn: psycopg.Connection, name: str, value: str) -> None:
    conn.execute("SELECT vault.update_secret(id, new_secret => %s) FROM vault.secrets WHERE name = %s", [value, name])


def _leaks(exc: BaseException, value: str) -> bool:
    text = repr(exc) + str(exc) + "".join(traceback.format_exception(exc))
    return value in text


def test_get__returns_a_secret_through_a_pool(planted: str, daemon_url: str) -> None:
    async def run() -> Secret:
        async with AsyncConnectionPool(daemon_url, min_size=1, max_size=2, open=False) as pool:
            provider: CredentialProvider = VaultCredentials(pool, ttl=60)
            return await provider.get("acme")

    secret = asyncio.run(run())
    assert isinstance(secret, Secret) and secret.reveal() == planted
    assert planted not in repr(secret) and planted not in str(secret)


def test_get__caches_within_the_ttl_and_invalidate_rereads(conn: psycopg.Connection, planted: str,
                                                          daemon_url: str) -> None:
    now = [0.0]
    provider = VaultCredentials(_factory(daemon_url), ttl=30, clock=lambda: now[0])

    async def run() -> list[str]:
        seen = [(await provider.get("acme")).reveal()]
        _set_secret(conn, "acme-creds", "rotated-1")
        now[0] = 29.0
        seen.append((await provider.get("acme")).reveal())  # cached: no query
        provider.invalidate("acme")
        seen.append((await provider.get("acme")).reveal())  # re-read at once
        _set_secret(conn, "acme-creds", "rotated-2")
        now[0] = 29.0 + 30.0
        seen.append((await provider.get("acme")).reveal())  # TTL over
        return seen

    assert asyncio.run(run()) == [planted, planted, "rotated-1", "rotated-2"]


def test_get__concurrent_callers_share_one_read(planted: str, daemon_url: str) -> None:
    connects = [0]
    inner = _factory(daemon_url)

    async def counting() -> psycopg.AsyncConnection[Any]:
        connects[0] += 1
        return await inner()

    provider = VaultCredentials(counting, ttl=60)

    async def run() -> set[str]:
        got = await asyncio.gather(*(provider.get("acme") for _ in range(10)))
        return {s.reveal() for s in got}

    assert asyncio.run(run()) == {planted}
    assert connects[0] == 1


def test_get__missing_secret_is_missing_secret(planted: str, daemon_url: str) -> None:
    provider = VaultCredentials(_factory(daemon_url), ttl=60)
    with pytest.raises(MissingSecret) as info:
        asyncio.run(provider.get("gone"))
    message = str(info.value)
    assert 'secret "gone-creds" for integration "gone" is not in the vault' in message
    assert "integration-dispatch secrets set gone-creds" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_get__no_secret_name_is_missing_secret(planted: str, daemon_url: str) -> None:
    provider = VaultCredentials(_factory(daemon_url), ttl=60)
    with pytest.raises(MissingSecret, match='integration "bare" has no secret name'):
        asyncio.run(provider.get("bare"))


def test_get__unknown_integration_is_permanent(planted: str, daemon_url: str) -> None:
    provider = VaultCredentials(_factory(daemon_url), ttl=60)
    with pytest.raises(PermanentError, match='unknown integration "nope"') as info:
        asyncio.run(provider.get("nope"))
    assert not isinstance(info.value, MissingSecret)


def test_get__unreferenced_default_name_is_permanent(planted: str, daemon_url: str) -> None:
    provider = VaultCredentials(_factory(daemon_url), ttl=60)
    with pytest.raises(PermanentError, match="default_secret_name"):
        asyncio.run(provider.get("bare", "acme-creds-elsewhere"))


def test_get__default_name_from_the_setting(conn: psycopg.Connection, planted: str, daemon_url: str) -> None:
    conn.execute("SELECT vault.create_secret('shared-value', 'shared')")
    conn.execute("INSERT INTO dispatch.settings (key, value) VALUES ('default_secret_name', 'shared')")
    provider = VaultCredentials(_factory(daemon_url), ttl=60)
    assert asyncio.run(provider.get("bare", "shared")).reveal() == "shared-value"


def test_errors__never_carry_the_secret(conn: psycopg.Connection, planted: str, daemon_url: str) -> None:
    provider = VaultCredentials(_factory(daemon_url), ttl=60)
    # gone-creds gets acme-creds' ciphertext: the read fails inside the decryption.
    other = conn.execute("SELECT vault.create_secret(%s, 'gone-creds')", ["x" + planted]).fetchone()
    assert other is not None
    conn.execute("UPDATE vault.secrets t SET secret = s.secret FROM vault.secrets s "
                 "WHERE s.name = 'acme-creds' AND t.name = 'gone-creds'")
    failures: list[BaseException] = []
    for integration, default in (("gone", None), ("nope", None), ("bare", "acme-creds-x"), ("bare", None)):
        try:
            asyncio.run(provider.get(integration, default))
        except PermanentError as exc:
            failures.append(exc)
    assert len(failures) == 4
    assert "cannot be decrypted" in str(failures[0])
    assert not any(_leaks(exc, planted) for exc in failures)


def test_server_log__never_contains_the_secret(conn: psycopg.Connection, planted: str, daemon_url: str,
                                               pg_cluster: LocalCluster) -> None:
    marker = f"log-probe-{uuid.uuid4().hex}"
    conn.execute("SELECT vault.create_secret('x', %s)", [marker])
    # Failing statements carrying the value, as a literal and as a bound parameter: with the
    # cluster's log settings neither the statement text nor the parameters reach the log.
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f"SELECT vault.create_secret('{planted}', '{marker}')")  # noqa: S608 (on purpose)
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("SELECT vault.create_secret(%s, %s)", [planted, marker])
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute("SELECT vault.create_secret(%s, 'n', new_description => NULL)", [planted])
    with pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("SELECT %s::text, 1/0", [planted])
    provider = VaultCredentials(_factory(daemon_url), ttl=0)
    assert asyncio.run(provider.get("acme")).reveal() == planted
    with pytest.raises(MissingSecret):
        asyncio.run(provider.get("gone"))
    log = (pg_cluster.datadir / "server.log").read_text()
    assert marker in log  # errors are logged, so the check below is not vacuous
    assert planted not in log
