"""dispatch.claim_jobs across connections: claim order, limits that bind, integrations that another
claim holds, and many claimers at once that never take an integration past its max_concurrency."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import psycopg
import pytest

from app.db.queries import query
from app.devkit import limits

pytestmark = pytest.mark.integration


def _integrations(conn: psycopg.Connection, count: int, limit: Any = 1) -> list[str]:
    """``count`` noop integrations c000.. with max_concurrency ``limit`` (or limit(i))."""
    ids = [f"c{i:03d}" for i in range(count)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO dispatch.integrations (id, adapter, max_concurrency) VALUES (%s, 'noop', %s)",
                        [(ident, limit(i) if callable(limit) else limit) for i, ident in enumerate(ids)])
    return ids


def _jobs(conn: psycopg.Connection, integration: str, n: int, priority: int = 0, age_s: float = 0) -> list[int]:
    rows = conn.execute("INSERT INTO dispatch.jobs (integration_id, kind, priority, run_after) "
                        "SELECT %s, 'sync', %s, now() - make_interval(secs => %s) FROM generate_series(1, %s) "
                        "RETURNING id", (integration, priority, age_s, n)).fetchall()
    return [r[0] for r in rows]


def _claim(conn: psycopg.Connection, limit: int, worker: str = "w") -> list[tuple[int, str]]:
    rows = conn.execute(query("claim_jobs"), {"worker": worker, "limit": limit, "lease": 30}).fetchall()
    return [(r[0], r[1]) for r in rows]


def _running(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT integration_id, count(*) FROM dispatch.jobs WHERE status = 'running' "
                             "GROUP BY 1").fetchall())


def test_claim__takes_jobs_in_priority_then_run_after_order_across_integrations(conn: psycopg.Connection) -> None:
    _integrations(conn, 3, limit=10)
    late = _jobs(conn, "c000", 3, age_s=1)
    early = _jobs(conn, "c001", 3, age_s=60)
    urgent = _jobs(conn, "c002", 2, priority=-5)
    assert {i for i, _ in _claim(conn, 4)} == {*urgent, *early[:2]}
    assert {i for i, _ in _claim(conn, 10)} == {early[2], *late}


def test_claim__an_integration_at_its_limit_at_the_head_of_the_queue_does_not_starve_the_rest(
        conn: psycopg.Connection) -> None:
    # 2,000 due jobs of a limit-1 integration ahead of everyone else's: more than every window the
    # claim slides through, so only the look at every integration finds the others.
    _integrations(conn, 4, limit=2)
    conn.execute("UPDATE dispatch.integrations SET max_concurrency = 1 WHERE id = 'c000'")
    head = _jobs(conn, "c000", 2000, age_s=3600)
    for ident in ("c001", "c002", "c003"):
        _jobs(conn, ident, 3)
    first = _claim(conn, 5)  # c000's oldest, then the next in claim order: two of c001, two of c002
    assert sorted(ident for _, ident in first) == ["c000", "c001", "c001", "c002", "c002"]
    assert [i for i, ident in first if ident == "c000"] == [head[0]]
    assert sorted(ident for _, ident in _claim(conn, 5)) == ["c003", "c003"]  # the only free slots left
    assert _claim(conn, 5) == []
    assert _running(conn) == {"c000": 1, "c001": 2, "c002": 2, "c003": 2}


def test_claim__skips_an_integration_another_claim_holds_without_waiting(db_url: str,
                                                                          conn: psycopg.Connection) -> None:
    _integrations(conn, 2, limit=5)
    _jobs(conn, "c000", 5, age_s=60)  # c000 leads the queue
    _jobs(conn, "c001", 5)
    with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
        taken = _claim(first, 2)  # holds c000 until it commits
        assert {ident for _, ident in taken} == {"c000"}
        second.execute("SET lock_timeout = '1s'")  # a wait would fail the claim
        t0 = time.monotonic()
        other = _claim(second, 5)
        assert time.monotonic() - t0 < 0.5
        assert {ident for _, ident in other} == {"c001"} and len(other) == 5
        second.commit()
        first.commit()
    assert _running(conn) == {"c000": 2, "c001": 5}


def test_claim__enqueues_for_an_integration_a_claim_holds_do_not_wait(db_url: str, conn: psycopg.Connection) -> None:
    # A claim holds its integrations until it commits: inserts for them never wait on that.
    _integrations(conn, 1, limit=5)
    _jobs(conn, "c000", 1)
    with psycopg.connect(db_url) as claimer:
        assert len(_claim(claimer, 5)) == 1
        conn.execute("SET lock_timeout = '1s'")
        _jobs(conn, "c000", 1)
        claimer.commit()


def test_claim__respects_circuit_and_enabled(conn: psycopg.Connection) -> None:
    _integrations(conn, 3, limit=5)
    for ident in ("c000", "c001", "c002"):
        _jobs(conn, ident, 3)
    conn.execute("UPDATE dispatch.integrations SET circuit = 'open' WHERE id = 'c000'")
    conn.execute("UPDATE dispatch.integrations SET circuit = 'half_open' WHERE id = 'c001'")
    conn.execute("UPDATE dispatch.integrations SET enabled = false WHERE id = 'c002'")
    assert [ident for _, ident in _claim(conn, 10)] == ["c001"]  # a half-open circuit lets one trial through
    assert _claim(conn, 10) == []


@pytest.mark.parametrize("limit", [0, -1])
def test_claim__a_limit_below_one_takes_nothing(conn: psycopg.Connection, integration: str, limit: int) -> None:
    _jobs(conn, integration, 2)
    assert _claim(conn, limit) == []


def test_claims__many_connections_at_once_never_take_an_integration_past_its_limit(
        db_url: str, conn: psycopg.Connection) -> None:
    """Six claimers on their own connections, claims of 1-8 held open for a moment, jobs finished
    at random; a watcher checks the running counts the whole time, and the sweep line over the
    recorded starts and finishes checks the history afterwards."""
    ids = _integrations(conn, 120, limit=lambda i: 1 + i % 3)
    for ident in ids:  # in bursts, so that the limits bind
        _jobs(conn, ident, 12)
    total = 12 * len(ids)
    stop, errors, broken = threading.Event(), [], []

    def claimer(worker: str, seed: int) -> None:
        rng, mine = random.Random(seed), []
        try:
            with psycopg.connect(db_url) as c:
                while not stop.is_set():
                    got = [i for i, _ in _claim(c, rng.randint(1, 8), worker)]
                    if rng.random() < 0.5:
                        time.sleep(rng.random() * 0.003)  # hold the integrations a little
                    c.commit()
                    mine += got
                    rng.shuffle(mine)
                    k = rng.randint(0, len(mine))
                    done, mine = mine[:k], mine[k:]
                    if not got and not done:
                        time.sleep(0.001)
                    c.execute("UPDATE dispatch.jobs SET status = 'succeeded', finished_at = clock_timestamp() "
                              "WHERE id = ANY(%s) AND worker_id = %s AND status = 'running'", (done, worker))
                    c.commit()
        except Exception as exc:  # noqa: BLE001 — reported by the test thread
            errors.append(exc)

    def watcher() -> None:
        with psycopg.connect(db_url, autocommit=True) as c:
            while not stop.is_set():
                broken.extend(c.execute(
                    "SELECT r.integration_id, r.n, i.max_concurrency FROM (SELECT integration_id, count(*) AS n "
                    "FROM dispatch.jobs WHERE status = 'running' GROUP BY 1) r "
                    "JOIN dispatch.integrations i ON i.id = r.integration_id WHERE r.n > i.max_concurrency").fetchall())
                time.sleep(0.002)

    threads = [threading.Thread(target=claimer, args=(f"w{n}", n)) for n in range(6)]
    threads.append(threading.Thread(target=watcher))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while conn.execute("SELECT count(*) FROM dispatch.jobs WHERE status <> 'succeeded'").fetchone() != (0,):
        if errors or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert broken == []
    assert conn.execute("SELECT count(*), count(*) FILTER (WHERE attempts = 1) FROM dispatch.jobs "
                        "WHERE status = 'succeeded'").fetchone() == (total, total)
    swept = limits.concurrency(conn)
    assert swept["integrations_checked"] == len(ids) and swept["over_limit"] == []
    assert swept["max_observed_by_limit"] == {"1": 1, "2": 2, "3": 3}  # the limits were reached: the check had teeth
