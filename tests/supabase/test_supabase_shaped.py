"""Migrations on a Supabase-shaped database: the way a hosted project runs them.

A dedicated throwaway cluster (pg_cron in `postgres`, as on Supabase) where:
  * the cluster's superuser plays `supabase_admin` and owns Vault (the project's pgcrypto
    stand-in, same SQL interface) and pg_cron, with Supabase's after-create grants;
  * `supa_postgres` plays the project's `postgres` role: NOSUPERUSER CREATEDB CREATEROLE
    REPLICATION BYPASSRLS, member of pg_monitor, owner of the database, with Supabase's default
    privileges that expose new `public` tables to anon/authenticated/service_role;
  * anon, authenticated, service_role exist beforehand.
`supabase db push --db-url` (the npm CLI, no Docker) and `integration-dispatch db upgrade` run as
`supa_postgres`; both must succeed and give the Alembic reference schema.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.supabase.conftest import (
    ROOT,
    alembic_upgrade,
    apply_with_psql,
    cluster_class,
    dispatch_dump,
    rendered_files,
    run_sql,
)

pytestmark = pytest.mark.supabase
ROLE = "supa_postgres"
CRON_JOBS = {
    "dispatch-tick": "SELECT dispatch.tick()",
    "dispatch-maintain": "SELECT dispatch.maintain()",
    "dispatch-cleanup-cron-history": "DELETE FROM cron.job_run_details WHERE end_time < now() - interval '7 days'",
}


def _stand_in_sql() -> str:
    """The Vault stand-in's SQL, taken from migration 0002 (one definition of it)."""
    path = ROOT / "migrations" / "versions" / "0002_vault.py"
    spec = importlib.util.spec_from_file_location("_vault_0002", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sql = getattr(module, "_STAND_IN_SQL", None)
    assert isinstance(sql, str), f"{path} no longer defines _STAND_IN_SQL; update this fixture"
    return str(sql).replace("@EXT@", '"extensions"')


class Shaped:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.admin: str = cluster.url("postgres")

    def url(self, db: str, user: str = ROLE) -> str:
        # The CLI insists on TLS unless told otherwise; the throwaway server has none.
        return f"{self.cluster.url(db, user=user)}?sslmode=disable"

    def shape_cluster(self) -> None:
        run_sql(self.admin, f"""
            CREATE ROLE {ROLE} LOGIN NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS;
            GRANT pg_monitor TO {ROLE};
            CREATE ROLE anon NOLOGIN NOINHERIT;
            CREATE ROLE authenticated NOLOGIN NOINHERIT;
            CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;""")

    def shape_database(self, db: str) -> None:
        if db != "postgres":
            run_sql(self.admin, f'CREATE DATABASE "{db}"')
        run_sql(self.admin, f'ALTER DATABASE "{db}" OWNER TO {ROLE}')
        url = self.cluster.url(db)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA extensions; CREATE EXTENSION pgcrypto WITH SCHEMA extensions")
            row = conn.execute("SELECT current_setting('data_directory') || '/vault_root.key'").fetchone()
            assert row is not None
            path = row[0]
            missing = conn.execute("SELECT (pg_stat_file(%s, true)).size IS NULL", [path]).fetchone()
            if missing and missing[0]:
                conn.execute(f"COPY (SELECT encode(extensions.gen_random_bytes(32), 'hex')) TO '{path}'")
            conn.execute(_stand_in_sql())
            # supabase/postgres .../supabase_vault/after-create.sql, with postgres -> supa_postgres.
            conn.execute(f"""
                GRANT USAGE ON SCHEMA vault TO {ROLE} WITH GRANT OPTION;
                GRANT SELECT, DELETE ON vault.secrets, vault.decrypted_secrets TO {ROLE} WITH GRANT OPTION;
                GRANT EXECUTE ON FUNCTION vault.create_secret, vault.update_secret, vault._crypto_aead_det_decrypt
                    TO {ROLE} WITH GRANT OPTION;
                GRANT USAGE ON SCHEMA vault TO service_role;
                GRANT SELECT, DELETE ON vault.secrets, vault.decrypted_secrets TO service_role;""")
            if db == "postgres":  # .../pg_cron/after-create.sql, likewise
                conn.execute(f"""
                    GRANT USAGE ON SCHEMA cron TO {ROLE} WITH GRANT OPTION;
                    GRANT ALL ON ALL FUNCTIONS IN SCHEMA cron TO {ROLE} WITH GRANT OPTION;
                    GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA cron TO {ROLE} WITH GRANT OPTION;
                    REVOKE ALL ON TABLE cron.job FROM {ROLE};
                    GRANT SELECT ON TABLE cron.job TO {ROLE} WITH GRANT OPTION;""")
        # Supabase's defaults: what the project's postgres creates in public is exposed to the API roles.
        with psycopg.connect(self.url(db), autocommit=True) as conn:
            for kind in ("TABLES", "SEQUENCES", "FUNCTIONS"):
                conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON {kind} "
                             "TO anon, authenticated, service_role")


@pytest.fixture(scope="module")
def shaped() -> Iterator[Shaped]:
    base = Path(tempfile.mkdtemp(prefix="dispatch-supabase-shaped-"))
    os.chmod(base, 0o755)
    cluster = cluster_class()(base / "pg", cron_database="postgres", fast=True)
    cluster.ensure()
    try:
        s = Shaped(cluster)
        s.shape_cluster()
        yield s
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


def api_roles_see_nothing(url: str) -> list[str]:
    """What anon/authenticated may reach in dispatch, or write in public (empty = nothing)."""
    return [row[0] for row in run_sql(url, """
        SELECT r || ': USAGE on schema dispatch' FROM unnest(ARRAY['anon', 'authenticated']) r
         WHERE has_schema_privilege(r, 'dispatch', 'USAGE')
        UNION ALL
        SELECT r || ': ' || p || ' on ' || c.oid::regclass FROM pg_class c, unnest(ARRAY['anon', 'authenticated']) r,
               unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
         WHERE c.relnamespace IN ('dispatch'::regnamespace, 'public'::regnamespace)
           AND c.relkind IN ('r', 'v', 'm', 'p')
           AND (p = 'SELECT' AND c.relnamespace = 'dispatch'::regnamespace OR p <> 'SELECT')
           AND has_table_privilege(r, c.oid, p)
        UNION ALL
        SELECT r || ': CREATE on schema public' FROM unnest(ARRAY['anon', 'authenticated']) r
         WHERE has_schema_privilege(r, 'public', 'CREATE')
        UNION ALL
        SELECT r || ': EXECUTE on ' || p.oid::regprocedure FROM pg_proc p, unnest(ARRAY['anon', 'authenticated']) r
         WHERE p.pronamespace = 'dispatch'::regnamespace AND p.prosecdef AND has_function_privilege(r, p.oid, 'EXECUTE')
        ORDER BY 1""")]


@pytest.mark.supabase_cli
def test_db_push__as_the_postgres_role_gives_the_alembic_schema_and_registers_pg_cron(
        shaped: Shaped, supabase_cli: Path, alembic_reference_dump: str) -> None:
    shaped.shape_database("postgres")
    url = shaped.url("postgres")
    push = [str(supabase_cli), "db", "push", "--db-url", url, "--workdir", str(ROOT), "--yes"]
    env = {**os.environ, "SUPABASE_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1"}
    first = subprocess.run(push, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, f"supabase db push failed:\n{first.stdout}\n{first.stderr}"
    rows = run_sql(shaped.admin, "SELECT version FROM supabase_migrations.schema_migrations ORDER BY 1")
    versions = [r[0] for r in rows]
    assert versions == sorted(p.name.split("_")[0] for p in (ROOT / "supabase" / "migrations").glob("*.sql"))

    assert dispatch_dump(shaped.cluster, url) == alembic_reference_dump
    jobs = dict(run_sql(shaped.admin, "SELECT jobname, command FROM cron.job WHERE username = %(r)s", r=ROLE))
    assert jobs == CRON_JOBS, "pg_cron jobs are registered by the push itself, no downgrade needed"
    assert api_roles_see_nothing(url) == []

    again = subprocess.run(push, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and "up to date" in (again.stdout + again.stderr).lower(), again.stderr
    assert len(run_sql(shaped.admin, "SELECT 1 FROM cron.job")) == 3
    # docs/supabase.md: running the 0004 file again re-registers the jobs (upsert by name).
    run_sql(url, "SELECT cron.unschedule('dispatch-maintain')")  # by name: the job's owner
    apply_with_psql(shaped.cluster, url, [p for p in rendered_files() if p.name.endswith("_0004.sql")])
    assert dict(run_sql(shaped.admin, "SELECT jobname, command FROM cron.job")) == CRON_JOBS

    # Vault owned by the superuser, the accessor owned by the postgres role: the daemon's role reads
    # exactly its integration's secret, the API roles nothing.
    run_sql(shaped.admin, "SELECT vault.create_secret('s3cr3t-value', 'acme-secret')")
    run_sql(url, "INSERT INTO dispatch.integrations (id, adapter, secret_name) VALUES ('acme', 'noop', 'acme-secret')")
    with psycopg.connect(shaped.admin) as conn:
        conn.execute("SET ROLE dispatch_worker")
        assert conn.execute("SELECT dispatch.integration_secret('acme')").fetchone() == ("s3cr3t-value",)
    with psycopg.connect(shaped.admin) as conn:
        conn.execute("SET ROLE anon")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT dispatch.integration_secret('acme')")


def test_db_upgrade__as_the_postgres_role_gives_the_same_schema(shaped: Shaped, alembic_reference_dump: str) -> None:
    shaped.shape_database("alembic_shaped")
    url = shaped.url("alembic_shaped")
    alembic_upgrade(url)  # vault exists, so 0002 needs no superuser file access
    assert dispatch_dump(shaped.cluster, url) == alembic_reference_dump
    assert api_roles_see_nothing(url) == []


def test_db_upgrade__keeps_alembic_version_out_of_public(shaped: Shaped) -> None:
    url = shaped.url("alembic_shaped_public")
    shaped.shape_database("alembic_shaped_public")
    alembic_upgrade(url)
    assert api_roles_see_nothing(url) == []
