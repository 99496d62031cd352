"""The package a user installs: a wheel built from this tree, installed into a fresh
virtualenv outside the checkout, migrates a database and runs a job; and every command but
``dev`` fails closed without a database.

The fresh virtualenv installs from ``.local/wheelhouse`` (filled by ``scripts/bootstrap``)
with ``--no-index``: the test itself sends nothing beyond loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.devkit.cluster import LocalCluster
from tests.conftest import create_database, drop_database
from tests.support import ROOT, DaemonProcess, wait_for

pytestmark = pytest.mark.acceptance

WHEELHOUSE = ROOT / ".local" / "wheelhouse"
_NO_DB = ("DATABASE_URL", "LISTEN_DATABASE_URL", "DISPATCH_ENV_FILE", "PGHOST", "PGHOSTADDR", "PGDATABASE",
          "PGSERVICE", "PGPORT", "PGUSER", "PYTHONPATH")


def _clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in _NO_DB}, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv, outside the checkout, with the built wheel: its bin directory."""
    assert WHEELHOUSE.is_dir(), f"{WHEELHOUSE} is missing: scripts/bootstrap fills it"
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(work / "dist"),
                    str(ROOT)], check=True, capture_output=True, cwd=work)
    wheel = next((work / "dist").glob("integration_dispatch-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    subprocess.run([str(work / "venv" / "bin" / "pip"), "install", "-q", "--no-index", "--find-links",
                    str(WHEELHOUSE), str(wheel)], check=True, capture_output=True, cwd=work)
    return work / "venv" / "bin"


@pytest.fixture
def database(pg_cluster: LocalCluster, admin_url: str) -> Iterator[str]:
    """An empty database: the installed package migrates it itself."""
    name = f"wheel_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_cluster.url(name)
    drop_database(admin_url, name)


def test_wheel__carries_the_sql_and_the_migrations_and_no_checkout_is_on_its_path(installed: Path) -> None:
    out = subprocess.run([str(installed / "python"), "-c",
                          "import app, importlib.resources as r; print(app.__file__); "
                          "print(r.files('app.sql').joinpath('queries.sql').is_file()); "
                          "print(sorted(p.name for p in r.files('app.migrations').joinpath('versions').iterdir() "
                          "if p.name.endswith('.py'))[0])"],
                         capture_output=True, text=True, check=True, cwd=installed.parent, env=_clean_env()).stdout
    where, has_sql, first = out.split()
    assert Path(where).is_relative_to(installed.parent) and not Path(where).is_relative_to(ROOT)
    assert has_sql == "True" and first == "0001_schema.py"


def test_wheel__db_upgrade_then_serve_runs_a_job(installed: Path, database: str, tmp_path: Path) -> None:
    cli = str(installed / "integration-dispatch")
    done = subprocess.run([cli, "--database-url", database, "db", "upgrade", "--no-pg-cron"], capture_output=True,
                          text=True, cwd=tmp_path, env=_clean_env())
    assert done.returncode == 0, done.stderr
    assert '"up_to_date": true' in done.stdout
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('w', 'noop')")
    daemon = DaemonProcess(database, tmp_path, command=[cli], cwd=tmp_path)
    daemon.env = _clean_env(**{k: v for k, v in daemon.env.items() if k in ("DATABASE_URL", "DISPATCH_LOG_LEVEL",
                                                                              "DISPATCH_POLL_INTERVAL")})
    daemon.start()
    try:
        with psycopg.connect(database, autocommit=True) as conn:
            job_id = conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) VALUES ('w', 'sync') "
                                  "RETURNING id").fetchone()[0]
            wait_for(lambda: conn.execute("SELECT status FROM dispatch.jobs WHERE id = %s",
                                          [job_id]).fetchone()[0] == "succeeded", 20, message="the job succeeded")
    finally:
        daemon.stop()


@pytest.mark.parametrize("args", [["serve"], ["jobs", "retry", "1"], ["db", "status"], ["health"]])
def test_commands__without_a_database_fail_closed_in_one_line(args: list[str], tmp_path: Path) -> None:
    # A .env in the working directory is not read: settings come from an explicit place only.
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://nobody@127.0.0.1:1/nothing\n")
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, cwd=tmp_path,
                          env=_clean_env(DISPATCH_LOCAL_DIR=str(tmp_path / "never")), timeout=10)
    elapsed = time.monotonic() - t0
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: DATABASE_URL is not set"), done.stderr
    assert elapsed < 1.5, f"took {elapsed:.2f}s"  # a second of work plus the interpreter on a loaded CI machine
    assert not (tmp_path / "never").exists(), "no local cluster may be started"


def test_database_url__key_value_dsn_and_pg_variables_are_accepted(pg_cluster: LocalCluster, admin_url: str,
                                                                  template_db: str, tmp_path: Path) -> None:
    name = create_database(admin_url, template_db)
    try:
        dsn = f"host=127.0.0.1 port={pg_cluster.port} dbname={name} user=postgres"
        for env in ({"DATABASE_URL": dsn},
                    {"PGHOST": "127.0.0.1", "PGPORT": str(pg_cluster.port), "PGDATABASE": name, "PGUSER": "postgres"}):
            done = subprocess.run([sys.executable, "-m", "app", "db", "status"], capture_output=True, text=True,
                                  cwd=tmp_path, env=_clean_env(**env), timeout=30)
            assert done.returncode == 0, done.stderr
            assert '"up_to_date": true' in done.stdout
    finally:
        drop_database(admin_url, name)


def test_env_file__read_only_when_named(pg_cluster: LocalCluster, admin_url: str, template_db: str,
                                       tmp_path: Path) -> None:
    name = create_database(admin_url, template_db)
    try:
        env_file = tmp_path / "dispatch.env"
        env_file.write_text(f"DATABASE_URL={pg_cluster.url(name)}\n")
        done = subprocess.run([sys.executable, "-m", "app", "--env-file", str(env_file), "db", "status"],
                              capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), timeout=30)
        assert done.returncode == 0, done.stderr
        missing = subprocess.run([sys.executable, "-m", "app", "--env-file", str(tmp_path / "nope.env"), "health"],
                                 capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), timeout=30)
        assert missing.returncode == 2 and "nope.env" in missing.stderr and "DISPATCH_ENV_FILE" in missing.stderr
    finally:
        drop_database(admin_url, name)
