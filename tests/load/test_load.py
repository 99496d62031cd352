"""Load, CI-sized: 20,000 jobs across 200 integrations with 4 daemons, exactly once.

Runs ``scripts/load.py`` against this test's database, then checks the database on its own:
every job succeeded once (status, attempts, ledger), each job has exactly one ``job.succeeded``
effect in the daemons' logs (the script counts them), and no integration ever ran more jobs
at once than its max_concurrency (a sweep line over started_at/finished_at).
"""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from app.devkit import limits
from tests.support import ROOT

pytestmark = pytest.mark.chaos

JOBS = 20_000
INTEGRATIONS = 200

def _run_load(db_url: str) -> dict:
    proc = subprocess.run([sys.executable, "scripts/load.py", "--jobs", str(JOBS), "--integrations",
                           str(INTEGRATIONS), "--daemons", "4", "--sleep-ms", "2", "--database-url", db_url],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_load__20k_jobs_4_daemons__exactly_once_within_limits(db_url: str, conn: psycopg.Connection) -> None:
    result = _run_load(db_url)
    print(json.dumps({k: result[k] for k in ("wall_s", "throughput_jobs_per_s", "drift_p50_ms", "drift_p99_ms")}))
    _check_exactly_once(result, conn)
    _check_concurrency(result, conn)
    assert result["ok"], json.dumps(result, indent=1)


def _check_exactly_once(result: dict, conn: psycopg.Connection) -> None:
    acc = result["accounting"]
    assert acc["succeeded"] == acc["total"] == acc["effects"] == JOBS, acc
    assert acc["jobs_without_effect"] == acc["jobs_with_duplicate_effect"] == 0, acc
    assert conn.execute("SELECT count(*), count(*) FILTER (WHERE attempts = 1 AND status = 'succeeded') "
                        "FROM dispatch.jobs").fetchone() == (JOBS, JOBS)
    ledger = conn.execute("SELECT state, count(*) FROM dispatch.idempotency_keys GROUP BY 1").fetchall()
    assert ledger == [("succeeded", JOBS)]


def _check_concurrency(result: dict, conn: psycopg.Connection) -> None:
    assert result["concurrency"]["integrations_checked"] == INTEGRATIONS
    assert result["concurrency"]["over_limit"] == []
    assert limits.concurrency(conn)["over_limit"] == []  # every integration, on this connection
    # Overlap happened at all, so the check had something to catch.
    assert max(result["concurrency"]["max_observed_by_limit"].values()) > 1
