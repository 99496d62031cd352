"""The daemon's login role (granted dispatch_worker), connected as the daemon connects.

tests/integration/test_roles.py checks dispatch_worker through SET ROLE statement by statement;
this adds the login role's view and catalog sweeps: nothing outside ``dispatch`` is readable,
and the one SECURITY DEFINER function it may execute is the secret accessor.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors

from app.devkit.cluster import LocalCluster
from app.devkit.demo import put_secret
from tests.security.conftest import plant, role_url

pytestmark = pytest.mark.integration


@pytest.fixture
def seeded(conn: psycopg.Connection) -> dict[str, str]:
    values = {"acme": plant("acme"), "unreferenced": plant("unreferenced")}
    conn.execute("INSERT INTO dispatch.integrations (id, adapter, secret_name) VALUES "
                 "('acme', 'noop', 'acme-creds'), ('bare', 'noop', NULL)")
    put_secret(conn, "acme-creds", values["acme"])
    put_secret(conn, "nobody-references-me", values["unreferenced"])
    conn.execute("CREATE TABLE public.customer_data (secret text); INSERT INTO public.customer_data VALUES ('x')")
    conn.execute("CREATE SCHEMA crm; CREATE TABLE crm.accounts (iban text); INSERT INTO crm.accounts VALUES ('y')")
    return values


@pytest.fixture
def daemon(seeded: dict[str, str], daemon_role: str, pg_cluster: LocalCluster, db_url: str
           ) -> Iterator[psycopg.Connection]:
    with psycopg.connect(role_url(pg_cluster, db_url, daemon_role), autocommit=True) as c:
        yield c


def test_daemon_role__no_table_outside_dispatch_is_readable(daemon: psycopg.Connection) -> None:
    readable = daemon.execute("""
        SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')
          AND n.nspname NOT IN ('dispatch', 'pg_catalog', 'information_schema', 'pg_toast')
          AND (has_table_privilege(c.oid, 'SELECT') OR has_table_privilege(c.oid, 'INSERT')
               OR has_table_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE'))
        ORDER BY 1""").fetchall()
    assert readable == []


@pytest.mark.parametrize("statement", [
    "SELECT * FROM public.customer_data",
    "SELECT * FROM crm.accounts",
    "SELECT * FROM vault.secrets",
    "SELECT decrypted_secret FROM vault.decrypted_secrets",
    "SELECT * FROM pg_authid",
    "SELECT pg_read_file('postgresql.conf')",
    "COPY (SELECT 1) TO PROGRAM 'true'",
    "CREATE TABLE public.mine (x int)",
    "SELECT dispatch.integration_secret('bare', 'nobody-references-me')",
])
def test_daemon_role__is_refused(daemon: psycopg.Connection, statement: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        daemon.execute(statement)


def test_daemon_role__only_security_definer_function_is_the_accessor(daemon: psycopg.Connection) -> None:
    callable_definers = daemon.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND has_function_privilege(p.oid, 'EXECUTE') ORDER BY 1""").fetchall()
    assert callable_definers == [("dispatch.integration_secret(text,text)",)]


def test_daemon_role__reads_its_integrations_secret_and_nothing_else(daemon: psycopg.Connection,
                                                                     seeded: dict[str, str]) -> None:
    assert daemon.execute("SELECT dispatch.integration_secret('acme')").fetchone() == (seeded["acme"],)
    for default in ("nobody-references-me", "acme-creds-typo", "%"):
        with pytest.raises((errors.InsufficientPrivilege, errors.NoDataFound)) as info:
            daemon.execute("SELECT dispatch.integration_secret('bare', %s)", [default])
        assert seeded["unreferenced"] not in str(info.value)


def test_daemon_role__is_not_a_superuser_and_cannot_change_roles(daemon: psycopg.Connection) -> None:
    row = daemon.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
                         "WHERE rolname = current_user").fetchone()
    assert row == (False, False, False, False)
    for statement in ("SET ROLE postgres", "SET ROLE service_role", "ALTER ROLE current_user SUPERUSER"):
        with pytest.raises(errors.InsufficientPrivilege):
            daemon.execute(statement)
