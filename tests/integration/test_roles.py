"""dispatch_worker: what the daemon's role can and cannot do, and the secret accessor's rules."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors

from app.devkit.cluster import LocalCluster

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("SET ROLE dispatch_worker")
        yield c


@pytest.fixture
def seeded(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter, secret_name) VALUES "
                 "('acme', 'noop', 'acme-creds'), ('bare', 'noop', NULL)")
    conn.execute("SELECT vault.create_secret('acme-value', 'acme-creds')")
    conn.execute("SELECT vault.create_secret('unrelated-value', 'someone-elses')")
    conn.execute("SELECT vault.create_secret('shared-value', 'shared')")
    return conn


def test_worker__enqueues_and_claims_and_completes(seeded: psycopg.Connection, worker: psycopg.Connection) -> None:
    job = worker.execute("SELECT dispatch.enqueue('acme', 'sync', '{}', idempotency_key => 'k1')").fetchone()
    again = worker.execute("SELECT dispatch.enqueue('acme', 'sync', '{}', idempotency_key => 'k1')").fetchone()
    assert job == again
    worker.execute("INSERT INTO dispatch.jobs (integration_id, kind) VALUES ('acme', 'export')")
    claimed = worker.execute("""
        WITH c AS (SELECT id FROM dispatch.jobs WHERE status = 'queued' ORDER BY id LIMIT 2
                   FOR UPDATE SKIP LOCKED)
        UPDATE dispatch.jobs j SET status = 'running', worker_id = 'w1', started_at = now(),
               lease_expires_at = now() + interval '1 minute', attempts = j.attempts + 1
        FROM c WHERE j.id = c.id RETURNING j.id""").fetchall()
    assert len(claimed) == 2
    worker.execute("UPDATE dispatch.jobs SET status = 'succeeded', finished_at = now() WHERE id = %s",
                   [claimed[0][0]])
    worker.execute("UPDATE dispatch.jobs SET status = 'failed', finished_at = now(), last_error = 'boom' "
                   "WHERE id = %s", [claimed[1][0]])  # raises a job_failed alert as the worker
    assert worker.execute("SELECT count(*) FROM dispatch.open_alerts WHERE kind = 'job_failed'").fetchone() == (1,)
    assert worker.execute("SELECT state FROM dispatch.idempotency_keys WHERE key = 'k1'").fetchone() == ("succeeded",)


def test_worker__reports_health_and_registers(seeded: psycopg.Connection, worker: psycopg.Connection) -> None:
    worker.execute("UPDATE dispatch.integrations SET health_status = 'unhealthy', circuit = 'open', "
                   "health_failures = health_failures + 1, health_error = 'down' WHERE id = 'acme'")
    worker.execute("INSERT INTO dispatch.workers (id, host, pid, version) VALUES ('w1', 'h', 1, '0')")
    worker.execute("UPDATE dispatch.workers SET heartbeat_at = now() WHERE id = 'w1'")
    worker.execute("INSERT INTO dispatch.tick_runs (acting_for, caller) VALUES (now(), 'watchdog')")
    worker.execute("SELECT dispatch.raise_alert('drift', 'acme', 'late')")
    worker.execute("SELECT dispatch.resolve_alert('drift', 'acme')")
    assert worker.execute("SELECT health_status, circuit FROM dispatch.integration_health "
                          "WHERE integration_id = 'acme'").fetchone() == ("unhealthy", "open")


@pytest.mark.parametrize("statement", [
    "UPDATE dispatch.integrations SET secret_name = 'someone-elses' WHERE id = 'acme'",
    "UPDATE dispatch.integrations SET adapter = 'webhook'",
    "UPDATE dispatch.integrations SET config = '{}'",
    "INSERT INTO dispatch.integrations (id, adapter) VALUES ('new', 'noop')",
    "INSERT INTO dispatch.settings (key, value) VALUES ('default_secret_name', 'someone-elses')",
    "UPDATE dispatch.settings SET value = 'x'",
    "DELETE FROM dispatch.jobs",
    "DELETE FROM dispatch.idempotency_keys",
    "TRUNCATE dispatch.jobs",
    "UPDATE dispatch.schedules SET enabled = false",
    "SELECT * FROM vault.secrets",
    "SELECT * FROM vault.decrypted_secrets",
    "SELECT vault.create_secret('x', 'y')",
    "SELECT vault._crypto_aead_det_decrypt('\\x00', '\\x00', 0)",
    "CREATE TABLE dispatch.mine (x int)",
])
def test_worker__is_refused(seeded: psycopg.Connection, worker: psycopg.Connection, statement: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        worker.execute(statement)


def test_worker__cannot_read_other_schemas(conn: psycopg.Connection, worker: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE public.customer_data (secret text)")
    conn.execute("INSERT INTO public.customer_data VALUES ('private')")
    with pytest.raises(errors.InsufficientPrivilege):
        worker.execute("SELECT * FROM public.customer_data")


def test_accessor__returns_the_integrations_secret(seeded: psycopg.Connection, worker: psycopg.Connection) -> None:
    assert worker.execute("SELECT dispatch.integration_secret('acme')").fetchone() == ("acme-value",)
    # The integration's own secret_name wins over the default.
    assert worker.execute("SELECT dispatch.integration_secret('acme', 'shared')").fetchone() == ("acme-value",)


def test_accessor__refuses_a_name_nothing_references(seeded: psycopg.Connection, worker: psycopg.Connection) -> None:
    with pytest.raises(errors.InsufficientPrivilege, match='secret "someone-elses" is neither'):
        worker.execute("SELECT dispatch.integration_secret('bare', 'someone-elses')")


def test_accessor__allows_the_default_secret_name_setting(seeded: psycopg.Connection,
                                                          worker: psycopg.Connection) -> None:
    seeded.execute("INSERT INTO dispatch.settings (key, value) VALUES ('default_secret_name', 'shared')")
    assert worker.execute("SELECT dispatch.integration_secret('bare', 'shared')").fetchone() == ("shared-value",)


def test_accessor__unknown_integration(seeded: psycopg.Connection, worker: psycopg.Connection) -> None:
    with pytest.raises(errors.InvalidParameterValue, match='unknown integration "nope"'):
        worker.execute("SELECT dispatch.integration_secret('nope')")


def test_accessor__missing_secret_is_no_data_found_with_a_hint(seeded: psycopg.Connection,
                                                               worker: psycopg.Connection) -> None:
    seeded.execute("UPDATE dispatch.integrations SET secret_name = 'not-there' WHERE id = 'bare'")
    with pytest.raises(errors.NoDataFound) as info:
        worker.execute("SELECT dispatch.integration_secret('bare')")
    assert info.value.diag.message_primary == 'secret "not-there" for integration "bare" is not in the vault'
    assert info.value.diag.message_hint == "add it with integration-dispatch secrets set not-there"


def test_accessor__no_name_at_all_is_no_data_found(seeded: psycopg.Connection, worker: psycopg.Connection) -> None:
    with pytest.raises(errors.NoDataFound, match='integration "bare" has no secret name'):
        worker.execute("SELECT dispatch.integration_secret('bare')")


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_accessor__is_not_executable_by_api_roles(seeded: psycopg.Connection, db_url: str, role: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(f"SET ROLE {role}")
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SELECT dispatch.integration_secret('acme')")


def test_accessor__is_executable_by_service_role(seeded: psycopg.Connection, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("SET ROLE service_role")
        assert c.execute("SELECT dispatch.integration_secret('acme')").fetchone() == ("acme-value",)


def test_login_role__granted_dispatch_worker_works_as_documented(seeded: psycopg.Connection,
                                                                 pg_cluster: LocalCluster, db_url: str) -> None:
    # docs/security.md: CREATE ROLE dispatch_daemon LOGIN PASSWORD '...' IN ROLE dispatch_worker
    # (the test cluster trusts loopback, so no password here).
    with contextlib.suppress(errors.DuplicateObject):
        seeded.execute("CREATE ROLE dispatch_daemon_test LOGIN IN ROLE dispatch_worker")
    database = db_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_cluster.url(database, user="dispatch_daemon_test"), autocommit=True) as c:
        assert c.execute("SELECT dispatch.integration_secret('acme')").fetchone() == ("acme-value",)
        assert c.execute("SELECT dispatch.enqueue('acme', 'sync')").fetchone() is not None
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SELECT * FROM vault.decrypted_secrets")


def test_stand_in__root_key_is_not_reachable_from_sql(conn: psycopg.Connection, worker: psycopg.Connection) -> None:
    comment = conn.execute("SELECT obj_description('vault'::regnamespace, 'pg_namespace')").fetchone()
    if not (comment and comment[0] and "stand-in" in comment[0]):
        pytest.skip("the real Supabase Vault keeps its key outside SQL by construction")
    for role in ("dispatch_worker", "service_role"):
        worker.execute(f"SET ROLE {role}")
        for statement in ("SELECT pg_read_file('vault_root.key')", "SELECT vault._root_key()",
                          "SELECT vault._crypto_aead_det_encrypt('\\x00', '\\x00', 0)"):
            with pytest.raises(errors.InsufficientPrivilege):
                worker.execute(statement)
        settings = worker.execute("SELECT string_agg(coalesce(setting, ''), ' ') FROM pg_settings").fetchone()
        key = conn.execute("SELECT btrim(pg_read_file('vault_root.key'), E'\\n')").fetchone()
        assert settings is not None and key is not None and key[0] not in settings[0]


def test_dispatch_worker__can_run_the_watchdog_tick(conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('w', 'noop')")
    conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, next_slot) "
                 "VALUES ('w', 'sync', '* * * * *', now() - interval '1 minute')")
    with conn.transaction():
        conn.execute("SET LOCAL ROLE dispatch_worker")
        conn.execute("SELECT set_config('dispatch.tick_caller', 'watchdog', true)")
        inserted = conn.execute("SELECT dispatch.tick()").fetchone()
    assert inserted is not None and inserted[0] >= 1
