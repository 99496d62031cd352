"""Test harness: one throwaway cluster per session, a migrated template, a clone per test."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.db.migrate import upgrade
from app.devkit.cluster import LocalCluster

# Every receiver and emulator in the tests listens on loopback, which the daemon refuses as a
# target by default; the guard's own tests pass allow_loopback explicitly.
os.environ.setdefault("DISPATCH_ALLOW_LOOPBACK_TARGETS", "true")

TEMPLATE = "dispatch_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster]:
    base = Path(tempfile.mkdtemp(prefix="dispatch-test-"))
    os.chmod(base, 0o755)
    # pg_cron lives in `postgres`, so per-test clones never host it (a database pg_cron
    # connects to cannot serve as a template).
    cluster = LocalCluster(base / "pg", cron_database="postgres", fast=True)
    cluster.ensure()
    yield cluster
    cluster.destroy()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_url(pg_cluster: LocalCluster) -> str:
    return pg_cluster.url("postgres")


@pytest.fixture(scope="session")
def template_db(pg_cluster: LocalCluster, admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    upgrade(pg_cluster.url(TEMPLATE), pg_cron=False)
    return TEMPLATE


def create_database(admin_url: str, template: str, prefix: str = "t") -> str:
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_cluster: LocalCluster, admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    name = create_database(admin_url, template_db)
    yield pg_cluster.url(name)
    drop_database(admin_url, name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def integration(conn: psycopg.Connection) -> str:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('x', 'noop')")
    return "x"
