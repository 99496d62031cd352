"""Migrations: up -> down -> up, and the result equals the checked-in sql/schema.sql."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.db.migrate import current, downgrade, upgrade
from app.devkit.cluster import LocalCluster
from app.devkit.schema import schema_dump
from tests.conftest import drop_database
from tests.support import ROOT

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
        left = conn.execute("SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'dispatch'::regnamespace "
                            "AND c.relkind = 'r' "
                            "UNION ALL SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'dispatch'::regnamespace"
                            ).fetchall()
        assert left == [("alembic_version",)], "at base only Alembic's version table remains"
    assert current(empty_db) is None
    upgrade(empty_db, pg_cron=False)
    assert schema_dump(empty_db) == first
    snapshot = (ROOT / "sql" / "schema.sql").read_text()
    assert first == snapshot, "the schema differs from sql/schema.sql: run scripts/schema-snapshot and review the diff"


def test_queries__every_name_the_code_uses_exists() -> None:
    """Names reach the loaders through query("x") and through the helpers that call it (the
    stores' _owned/_run, the CLI's fetch_all/fetch_one, the console's q): every literal passed to
    any of them must name a block of sql/queries.sql, or of the console's own queries.sql."""
    import ast

    from app.db.queries import named_blocks, queries

    takers = {"query", "_owned", "_run", "fetch_all", "fetch_one", "q"}
    console_dir = Path(ROOT, "app", "web", "console")
    names = {"main": set(queries()), "console": set(named_blocks((console_dir / "queries.sql").read_text()))}
    used: dict[str, set[str]] = {"main": set(), "console": set()}
    for path in Path(ROOT, "app").rglob("*.py"):
        scope = "console" if path.is_relative_to(console_dir) else "main"
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if func in takers:
                used[scope] |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    assert {"claim_jobs", "retry_job", "register_worker", "cli_jobs_list"} <= used["main"], "the scan missed names"
    assert used["console"], "the scan missed the console's queries"
    for scope in ("main", "console"):
        assert used[scope] <= names[scope], f"missing in the {scope} queries.sql: {sorted(used[scope] - names[scope])}"


def test_cron_worst_cases__upgrade_completes_kept_specs_and_alerts_quiet_schedules(empty_db: str) -> None:
    """The cron revision on a database with schedules: each kept spec gains the lookups cron_prev
    walks with (no edit recorded), an enabled schedule already without a next slot is alerted,
    and the way back keeps the schedules working."""
    from app.migrations import VERSIONS, earlier_revision

    [path] = VERSIONS.glob("*_cron_worst_cases.py")
    rev = earlier_revision(path.name)
    upgrade(empty_db, rev.down_revision, pg_cron=False)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('x', 'noop')")
        conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone) VALUES "
                     "('x', 'weekdays', '15 2,14 * * 1-5', 'Europe/Oslo'), ('x', 'quiet', '*/5 * * * *', 'UTC')")
        conn.execute("UPDATE dispatch.schedules SET next_slot = NULL WHERE kind = 'quiet'")
        edited = conn.execute("SELECT kind, updated_at FROM dispatch.schedules ORDER BY kind").fetchall()
    upgrade(empty_db, rev.revision, pg_cron=False)
    prev = ("SELECT dispatch.cron_prev(cron_spec, timezone, '2026-12-07T12:00:00Z') FROM dispatch.schedules "
            "WHERE kind = 'weekdays'")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute("SELECT bool_and(cron_spec = dispatch.cron_parse(cron)) FROM dispatch.schedules"
                            ).fetchone() == (True,)
        assert conn.execute("SELECT kind, updated_at FROM dispatch.schedules ORDER BY kind").fetchall() == edited
        assert conn.execute("SELECT s.kind FROM dispatch.alerts a JOIN dispatch.schedules s ON s.id = a.schedule_id "
                            "WHERE a.kind = 'no_future_slot'").fetchall() == [("quiet",)]
        after = conn.execute(prev).fetchone()
    downgrade(empty_db, rev.down_revision, pg_cron=False)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute(prev).fetchone() == after
    assert after is not None and after[0].isoformat() == "2026-12-07T01:15:00+00:00"
