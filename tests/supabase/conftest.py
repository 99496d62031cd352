"""Fixtures for the Supabase-native tests: the supabase/ project, its migrations, the CLI.

Markers (registered here, as pyproject.toml belongs to the integrator):
  supabase      - the supabase/ project: layout, rendered migrations, Supabase-shaped database
  supabase_cli  - needs the Supabase CLI from npm (installed on demand into .local/supabase-cli;
                  fails, never skips, when npm is present and the install fails)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
SUPABASE = ROOT / "supabase"
MIGRATIONS = SUPABASE / "migrations"
CLI_VERSION = "2.117.0"
CLI_DIR = ROOT / ".local" / "supabase-cli"
DISPATCH = ROOT / ".venv" / "bin" / "integration-dispatch"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "supabase: the supabase/ project, its migrations and a Supabase-shaped database")
    config.addinivalue_line("markers", f"supabase_cli: needs the Supabase CLI {CLI_VERSION} from npm "
                                       "(installed into .local/supabase-cli on demand)")


def cluster_class() -> Any:
    """LocalCluster from app.devkit.cluster (after the layered-package move) or app.localdb."""
    import importlib

    try:
        module = importlib.import_module("app.devkit.cluster")
    except ImportError:
        module = importlib.import_module("app.localdb")
    return module.LocalCluster


def bindir(cluster: Any) -> Path:
    return Path(cluster.server.bindir)


def rendered_files() -> list[Path]:
    return sorted(MIGRATIONS.glob("*_dispatch_*.sql"))


def run_sql(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params or None)
        return cur.fetchall() if cur.description else []


def apply_with_psql(cluster: Any, url: str, files: list[Path]) -> str:
    """Apply each file in its own transaction, as `supabase db push` does; returns stderr."""
    err = []
    for path in files:
        res = subprocess.run([str(bindir(cluster) / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1",
                              "-f", str(path), url], capture_output=True, text=True)
        assert res.returncode == 0, f"{path.name} failed:\n{res.stderr[-3000:]}"
        err.append(res.stderr)
    return "".join(err)


def alembic_upgrade(url: str) -> None:
    res = subprocess.run([str(DISPATCH), "--database-url", url, "db", "upgrade", "--no-pg-cron"],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"db upgrade failed:\n{res.stderr[-3000:]}"


_NOISE = ("-- Dumped", "\\restrict", "\\unrestrict", "-- Started on", "-- Completed on")


def dispatch_dump(cluster: Any, url: str) -> str:
    """`pg_dump --schema-only --no-owner --schema=dispatch`, normalised as app.migrate.schema_dump
    does, plus the migrating role's name (ALTER DEFAULT PRIVILEGES FOR ROLE x) made neutral:
    the two paths under comparison are run by different roles on purpose."""
    # Alembic's bookkeeping table is not schema: excluded, so the comparison survives it moving
    # from public into dispatch (issue 12), where only the Alembic path has it.
    out = subprocess.run([str(bindir(cluster) / "pg_dump"), "--schema-only", "--no-owner", "--schema=dispatch",
                          "--exclude-table=dispatch.alembic_version", "--dbname", url],
                         capture_output=True, text=True, check=True).stdout
    keep = [line for line in out.splitlines() if not line.startswith(_NOISE)]
    text = "\n".join(keep).strip() + "\n"
    return re.sub(r"FOR ROLE \S+ IN SCHEMA", "FOR ROLE <migrator> IN SCHEMA", text)


@pytest.fixture(scope="session")
def alembic_reference_dump(pg_cluster: Any, admin_url: str) -> Iterator[str]:
    """The dispatch schema as `integration-dispatch db upgrade` (Alembic) leaves it."""
    name = f"sb_alembic_ref_{os.getpid()}"
    run_sql(admin_url, f'CREATE DATABASE "{name}"')
    try:
        url = pg_cluster.url(name)
        alembic_upgrade(url)
        yield dispatch_dump(pg_cluster, url)
    finally:
        run_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def supabase_cli() -> Path:
    """The Supabase CLI binary, installed with npm into .local/supabase-cli when missing."""
    binary = CLI_DIR / "node_modules" / ".bin" / "supabase"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(f"npm is not installed, so the Supabase CLI {CLI_VERSION} cannot be installed "
                        "(apt-get install npm); this test needs it")
        res = subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--save-exact",
                              "--prefix", str(CLI_DIR), f"supabase@{CLI_VERSION}"], capture_output=True, text=True)
        assert res.returncode == 0 and binary.exists(), \
            f"npm install supabase@{CLI_VERSION} failed:\n{res.stderr[-2000:]}"
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert version == CLI_VERSION, f"{binary} is {version}, expected {CLI_VERSION}"
    return binary
