"""supabase/migrations/ is rendered from the Alembic migrations and yields the same schema."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.supabase.conftest import ROOT, alembic_upgrade, apply_with_psql, dispatch_dump, rendered_files, run_sql

pytestmark = [pytest.mark.supabase, pytest.mark.migration]
RENDER = ROOT / "scripts" / "render-supabase-migrations"


def test_render__the_committed_files_are_what_rendering_gives() -> None:
    res = subprocess.run([sys.executable, str(RENDER), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    names = [p.name for p in rendered_files()]
    revisions = sorted(p.name.split("_")[0] + ".sql" for p in (ROOT / "migrations" / "versions").glob("0*.py"))
    assert [n.split("_")[-1] for n in names] == revisions, "one rendered file per Alembic revision"
    assert names == sorted(names), "versions must sort in revision order"


def test_render__the_supabase_case_skips_the_vault_stand_in_and_schedules_pg_cron() -> None:
    vault, cron = (p.read_text() for p in rendered_files()[1:4:2])
    assert "CREATE SCHEMA vault" not in vault and "vault_root.key" not in vault, "Supabase has Vault: no stand-in"
    assert "CREATE FUNCTION dispatch.integration_secret" in vault
    assert "CREATE EXTENSION IF NOT EXISTS pg_cron" in cron
    for job in ("dispatch-tick", "dispatch-maintain", "dispatch-cleanup-cron-history"):
        assert f"PERFORM cron.schedule('{job}'" in cron


@pytest.fixture
def scratch_db(pg_cluster: Any, admin_url: str) -> Iterator[str]:
    name = f"sb_rendered_{os.getpid()}"
    run_sql(admin_url, f'CREATE DATABASE "{name}"')
    yield pg_cluster.url(name)
    run_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_rendered__applied_with_psql_equals_the_alembic_schema(pg_cluster: Any, scratch_db: str,
                                                               alembic_reference_dump: str) -> None:
    stderr = apply_with_psql(pg_cluster, scratch_db, rendered_files())
    # This database is not cron.database_name: the pg_cron block warns, the migration succeeds.
    assert "pg_cron jobs not registered" in stderr
    assert dispatch_dump(pg_cluster, scratch_db) == alembic_reference_dump


def test_rendered__refuses_a_database_alembic_migrates(pg_cluster: Any, scratch_db: str) -> None:
    alembic_upgrade(scratch_db)
    res = subprocess.run([str(pg_cluster.server.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1",
                          "-f", str(rendered_files()[1]), scratch_db], capture_output=True, text=True)
    assert res.returncode != 0
    assert "this database is migrated by Alembic" in res.stderr
