"""Migrations: up -> down -> up, and the result equals the checked-in sql/schema.sql."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from app.db import SQL_DIR
from app.localdb import LocalCluster
from app.migrate import current, downgrade, schema_dump, upgrade
from tests.conftest import drop_database

pytestmark = pytest.mark.migration


@pytest.fixture
def empty_db(pg_cluster: LocalCluster, admin_url: str) -> Iterator[str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "migration_test"')
    yield pg_cluster.url("migration_test")
    drop_database(admin_url, "migration_test")


def test_migrations__up_down_up_matches_the_snapshot(empty_db: str) -> None:
    upgrade(empty_db, pg_cron=False)
    first = schema_dump(empty_db)
    downgrade(empty_db, "base", pg_cron=False)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regnamespace('dispatch')").fetchone() == (None,)
    assert current(empty_db) is None
    upgrade(empty_db, pg_cron=False)
    assert schema_dump(empty_db) == first
    snapshot = (SQL_DIR / "schema.sql").read_text()
    assert first == snapshot, "the schema differs from sql/schema.sql: run scripts/schema-snapshot and review the diff"


def test_queries__every_name_the_code_uses_exists() -> None:
    import re
    from pathlib import Path

    from app.db import queries

    names = set(queries())
    used: set[str] = set()
    for path in Path(SQL_DIR.parent, "app").rglob("*.py"):
        used |= set(re.findall(r"""query\(\s*["'](\w+)["']""", path.read_text()))
    assert used, "no query() calls found"
    assert used <= names, f"missing in sql/queries.sql: {sorted(used - names)}"
