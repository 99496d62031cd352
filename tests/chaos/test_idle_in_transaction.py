"""Another client sits idle in a transaction holding an old snapshot (its xmin keeps every dead
job version alive: vacuum can remove nothing). Claims must stay within the stated bound:
throughput no worse than 3x the baseline."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from tests.chaos.conftest import assert_ledger, insert_jobs, percentile, record_figure, wait_settled
from tests.support import DaemonProcess

pytestmark = pytest.mark.chaos

JOBS_PER_PHASE = 4000
BOUND = 3.0  # the stated bound (docs/chaos.md): at most 3x slower with the snapshot held


def _phase(conn: psycopg.Connection, label: str) -> dict[str, float]:
    ids = insert_jobs(conn, "x", JOBS_PER_PHASE)
    wait_settled(conn, 80, where=f"id >= {min(ids)}")
    # From the rows' own timestamps: first enqueue to last finish (no polling granularity).
    span = conn.execute("SELECT extract(epoch FROM max(finished_at) - min(enqueued_at)) FROM dispatch.jobs "
                        "WHERE id >= %s", [min(ids)]).fetchone()
    elapsed = float(span[0]) if span else float("nan")
    rows = conn.execute("SELECT extract(epoch FROM started_at - enqueued_at) FROM dispatch.jobs WHERE id >= %s",
                        [min(ids)]).fetchall()
    pickup = [float(r[0]) * 1000 for r in rows]
    return {"label": label, "jobs_per_s": JOBS_PER_PHASE / elapsed, "p50_ms": percentile(pickup, 50),  # type: ignore[dict-item]
            "p95_ms": percentile(pickup, 95), "elapsed_s": elapsed}


def test_idle_in_transaction__claims_stay_within_3x_of_baseline(
        db_url: str, conn: psycopg.Connection, integration: str, daemons: Callable[..., DaemonProcess]) -> None:
    conn.execute("UPDATE dispatch.integrations SET max_concurrency = 100")
    daemons(concurrency=20, DISPATCH_LOG_LEVEL="WARNING")
    _phase(conn, "warm-up")
    baseline = _phase(conn, "baseline")
    with psycopg.connect(db_url) as holder:  # not autocommit: the transaction stays open, idle
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM dispatch.jobs")  # the snapshot (and its xmin) is taken here
        state = conn.execute("SELECT state, backend_xmin IS NOT NULL FROM pg_stat_activity "
                             "WHERE pid = %s", [holder.info.backend_pid]).fetchone()
        assert state == ("idle in transaction", True)
        held = [_phase(conn, f"held {i + 1}") for i in range(3)]
        holder.rollback()
    released = _phase(conn, "released")
    total = 6 * JOBS_PER_PHASE
    assert_ledger(conn, total)
    worst = min(h["jobs_per_s"] for h in held)
    table = "; ".join(f"{p['label']}: {p['jobs_per_s']:.0f} jobs/s, queue wait p50 {p['p50_ms']:.0f} ms "
                      f"p95 {p['p95_ms']:.0f} ms" for p in [baseline, *held, released])
    record_figure("idle in transaction", f"{table}; worst held/baseline throughput = "
                  f"{worst / baseline['jobs_per_s']:.2f}; {3 * JOBS_PER_PHASE} jobs finished under the held snapshot")
    assert worst * BOUND >= baseline["jobs_per_s"], table
