"""SIGKILL storm: three daemons share the queue; one of them is killed mid-job, again and again."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import psycopg
import pytest

from tests.chaos.conftest import EffectReceiver, assert_ledger, insert_jobs, record_figure, wait_settled
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.chaos

KILLS = 20
JOBS_PER_ROUND = 15  # 20 rounds x 15 = 300 webhook jobs, fed while the killing goes on
FAST_LEASE = {"DISPATCH_LEASE_SECONDS": "2", "DISPATCH_RESCUE_INTERVAL": "0.5", "DISPATCH_POLL_INTERVAL": "0.5",
              "DISPATCH_RETRY_BASE": "0.2", "DISPATCH_LOG_LEVEL": "WARNING"}


def _running_by(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT worker_id, count(*) FROM dispatch.jobs WHERE status = 'running' "
                        "GROUP BY 1").fetchall()
    return {w: n for w, n in rows}


def test_sigkill_storm__20_kills_mid_job_lose_and_duplicate_nothing(
        conn: psycopg.Connection, webhook: EffectReceiver, daemons: Callable[..., DaemonProcess]) -> None:
    rng = random.Random(7)
    # The receiver takes a while, so kills land between the POST and the completion write.
    webhook.delay = lambda: rng.uniform(0.05, 0.3)
    pool = [daemons(concurrency=4, **FAST_LEASE) for _ in range(3)]
    ids = {d.port: d.worker_id for d in pool}
    t0 = time.monotonic()
    kills, mid_job = 0, 0
    for _ in range(KILLS):
        insert_jobs(conn, "hook", JOBS_PER_ROUND, max_attempts=25)

        def busy_victim() -> DaemonProcess | None:
            running = _running_by(conn)
            busy = [d for d in pool if running.get(ids[d.port], 0) > 0]
            return rng.choice(busy) if busy else None

        try:
            victim = wait_for(busy_victim, 20, interval=0.02, message="a daemon with a job in flight")
            mid_job += 1
        except AssertionError:
            victim = rng.choice(pool)  # the queue drained before we looked: kill one anyway
        victim.kill()  # SIGKILL
        kills += 1
        pool.remove(victim)
        replacement = daemons(concurrency=4, **FAST_LEASE)
        ids[replacement.port] = replacement.worker_id
        pool.append(replacement)
    storm_s = time.monotonic() - t0
    final = wait_settled(conn, 90)
    total_s = time.monotonic() - t0
    ledger = assert_ledger(conn, KILLS * JOBS_PER_ROUND, receiver=webhook)
    rescued = conn.execute("SELECT count(*) FROM dispatch.jobs WHERE attempts > 1").fetchone()
    assert kills == KILLS and mid_job >= KILLS // 2, f"only {mid_job} of {kills} kills hit a job in flight"
    assert final == {"succeeded": KILLS * JOBS_PER_ROUND}
    record_figure("sigkill storm", f"{kills} SIGKILLs ({mid_job} mid-job) in {storm_s:.1f} s, settled after "
                  f"{total_s:.1f} s; {ledger.summary()}; {rescued[0] if rescued else 0} jobs ran more than once")
