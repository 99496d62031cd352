"""Migration 0004 registers the pg_cron jobs, pg_cron really fires the tick, downgrade removes them.

The test cluster's pg_cron lives in `postgres`, so an app database there takes the
cron.schedule_in_database path; the `postgres` database itself takes the plain path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from app.db.migrate import downgrade, upgrade
from app.devkit.cluster import LocalCluster
from tests.conftest import drop_database

pytestmark = pytest.mark.integration

JOBS = ["dispatch-tick", "dispatch-maintain", "dispatch-cleanup-cron-history"]


def _cron_jobs(admin_url: str, like: str) -> dict[str, str]:
    with psycopg.connect(admin_url) as c:
        rows = c.execute("SELECT jobname, database FROM cron.job WHERE jobname LIKE %s", [like]).fetchall()
    return {str(name): str(db) for name, db in rows}


@pytest.fixture
def fresh_db(pg_cluster: LocalCluster, admin_url: str) -> Iterator[str]:
    """An empty database (not the template), migrated with pg_cron on."""
    name = f"cronreg_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE %s", [f"%@{name}"])
        drop_database(admin_url, name)


def test_pg_cron_registration__other_database_schedules_in_database_and_fires(
        pg_cluster: LocalCluster, admin_url: str, fresh_db: str) -> None:
    url = pg_cluster.url(fresh_db)
    upgrade(url, pg_cron=True)
    jobs = _cron_jobs(admin_url, f"%@{fresh_db}")
    assert jobs == {f"dispatch-tick@{fresh_db}": fresh_db, f"dispatch-maintain@{fresh_db}": fresh_db,
                    f"dispatch-cleanup-cron-history@{fresh_db}": "postgres"}
    # pg_cron's own firing, not a direct call: wait for the next minute boundary at most.
    deadline = time.monotonic() + 75
    with psycopg.connect(url, autocommit=True) as c:
        row = None
        while time.monotonic() < deadline and row is None:
            row = c.execute("SELECT caller, lateness_ms FROM dispatch.tick_runs WHERE caller = 'pg_cron'").fetchone()
            if row is None:
                c.execute("SELECT pg_sleep(0.5)")   # polling a condition with a deadline
    assert row is not None and row[0] == "pg_cron"
    assert 0 <= row[1] < 5000
    downgrade(url, "0003", pg_cron=True)
    assert _cron_jobs(admin_url, f"%@{fresh_db}") == {}


def test_pg_cron_registration__cron_database_uses_plain_schedule(pg_cluster: LocalCluster,
                                                                 admin_url: str) -> None:
    try:
        upgrade(admin_url, pg_cron=True)
        assert _cron_jobs(admin_url, "dispatch-%") == {name: "postgres" for name in JOBS}
        downgrade(admin_url, "0003", pg_cron=True)
        assert _cron_jobs(admin_url, "dispatch-%") == {}
    finally:
        downgrade(admin_url, "base", pg_cron=False)
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = ANY(%s)", [JOBS])
            c.execute("DROP SCHEMA IF EXISTS dispatch CASCADE")  # base keeps only the version table there


def test_pg_cron_registration__off_registers_nothing(pg_cluster: LocalCluster, admin_url: str,
                                                     fresh_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    upgrade(pg_cluster.url(fresh_db), pg_cron=False)
    assert _cron_jobs(admin_url, f"%@{fresh_db}") == {}
    assert "skipped (-x pg_cron=off)" in capsys.readouterr().err  # migration messages go to stderr


def test_db_schedule__reregisters_lost_jobs_idempotently_without_a_downgrade(
        pg_cluster: LocalCluster, admin_url: str, fresh_db: str) -> None:
    url = pg_cluster.url(fresh_db)
    upgrade(url, pg_cron=False)  # as if pg_cron had been missing at migration time
    assert _cron_jobs(admin_url, f"%@{fresh_db}") == {}
    from app.main import main

    for _ in range(2):  # twice: the second run changes nothing
        assert main(["--database-url", url, "db", "schedule"]) == 0
        assert _cron_jobs(admin_url, f"%@{fresh_db}") == {
            f"dispatch-tick@{fresh_db}": fresh_db, f"dispatch-maintain@{fresh_db}": fresh_db,
            f"dispatch-cleanup-cron-history@{fresh_db}": "postgres"}
    from app.db.migrate import head

    with psycopg.connect(url) as c:  # nothing was downgraded on the way
        assert c.execute("SELECT version_num FROM dispatch.alembic_version").fetchone() == (head(),)
