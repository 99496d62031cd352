"""Benchmarks of integration-dispatch (not tests): prints JSON and a small table.

    scripts/bench                 # everything
    scripts/bench drain pickup    # some of: drain pickup cold_start precision tick cron claim claims scale load soak
    scripts/bench claims --size 2 # --size scales the job counts of the benchmarks that take it (claims)
    BENCH_SOAK_JOBS=200000 scripts/bench soak   # the soak's size (default 1,000,000) and BENCH_SOAK_RATE (jobs/s)

Runs on its own throwaway cluster under .local/pg/bench (durable settings, as in
production), the daemon as a real process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db.migrate import upgrade  # noqa: E402
from app.db.queries import query  # noqa: E402
from app.devkit.cluster import LocalCluster, free_port, local_dir  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import load  # noqa: E402  (scripts/load.py: one load harness, one exactly-once account, one sweep line)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Bench:
    def __init__(self, size: float = 1.0) -> None:
        self.size = size  # scales the job counts of the benchmarks that take it
        self.cluster = LocalCluster(local_dir() / "pg" / "bench", cron_database="postgres")
        self.cluster.ensure()
        self.admin = self.cluster.url("postgres")

    def fresh_db(self, name: str = "bench") -> str:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.cluster.url(name)
        upgrade(url, pg_cron=False)
        return url

    @contextmanager
    def daemon(self, url: str, concurrency: int, **env: str) -> Iterator[subprocess.Popen[bytes]]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port), "--concurrency", str(concurrency)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "DATABASE_URL": url, "DISPATCH_LOG_LEVEL": env.pop("log", "WARNING"), **env})
        try:
            wait_healthy(port, proc)
            yield proc
        finally:
            proc.terminate()
            proc.wait(30)


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 30, started: float | None = None) -> float:
    """Until /health answers 200 with status "ok" (not "degraded": the listener is up too).
    Seconds since this call, or milliseconds since ``started`` (a time.time()) when given."""
    t0 = time.perf_counter()
    with httpx.Client() as client:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise SystemExit("daemon exited during start")
            try:
                r = client.get(f"http://127.0.0.1:{port}/health", timeout=0.5)
                if r.status_code == 200 and r.json().get("status") == "ok":
                    return (time.time() - started) * 1000 if started is not None else time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.001)
    raise SystemExit("daemon never became healthy")


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out")
        time.sleep(interval)


def add_integration(conn: psycopg.Connection[Any], max_concurrency: int) -> None:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter, max_concurrency) VALUES ('bench', 'noop', %s)",
                 [max_concurrency])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


# -- benchmarks
def bench_drain(b: Bench, jobs: int = 20_000) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for concurrency in (10, 50):
        url = b.fresh_db()
        with psycopg.connect(url, autocommit=True) as conn:
            add_integration(conn, 1000)
            conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) "
                         "SELECT 'bench', 'sync' FROM generate_series(1, %s)", [jobs])
            conn.execute("ANALYZE dispatch.jobs")
            with b.daemon(url, concurrency) as proc:
                # A cheap check (partial indexes), not too often: the bench must not load the database.
                wait_until(lambda: conn.execute("SELECT NOT EXISTS (SELECT 1 FROM dispatch.jobs "
                                                "WHERE status IN ('queued', 'running'))").fetchone() == (True,), 300,
                           interval=0.2)
                rss = peak_rss_mb(proc.pid)
            span = conn.execute("SELECT extract(epoch FROM max(finished_at) - min(started_at)) "
                                "FROM dispatch.jobs").fetchone()
        seconds = float(span[0]) if span else float("nan")
        out[f"concurrency_{concurrency}"] = {"jobs": jobs, "seconds": round(seconds, 2),
                                            "jobs_per_s": round(jobs / seconds), "peak_rss_mb": rss}
    return out


def bench_pickup(b: Bench, count: int = 300, rate: float = 20.0) -> dict[str, Any]:
    url = b.fresh_db()
    with psycopg.connect(url, autocommit=True) as conn, b.daemon(url, 10):
        add_integration(conn, 100)
        committed: dict[int, float] = {}
        for _ in range(count):
            row = conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) VALUES ('bench', 'sync') RETURNING id")
            committed[row.fetchone()[0]] = time.time()  # type: ignore[index]
            time.sleep(1 / rate)
        wait_until(lambda: conn.execute("SELECT count(*) FROM dispatch.jobs WHERE started_at IS NULL")
                   .fetchone() == (0,), 30)
        started = dict(conn.execute("SELECT id, extract(epoch FROM started_at) FROM dispatch.jobs").fetchall())
    lat = [(float(started[i]) - t) * 1000 for i, t in committed.items()]
    return _dist(lat, "ms")


def bench_cold_start(b: Bench, runs: int = 5) -> dict[str, Any]:
    """exec -> first queued job started (read from the database) and exec -> /health 200, median."""
    url = b.fresh_db()
    health, first_job = [], []
    with psycopg.connect(url, autocommit=True) as conn:
        add_integration(conn, 10)
        for _ in range(runs):
            job_id = conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) VALUES ('bench', 'sync') "
                                  "RETURNING id").fetchone()[0]  # type: ignore[index]
            port = free_port()
            t0 = time.time()
            proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=ROOT,
                                    env={**os.environ, "DATABASE_URL": url, "DISPATCH_LOG_LEVEL": "WARNING"},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            health.append(wait_healthy(port, proc, started=t0))
            wait_until(lambda job_id=job_id: conn.execute(  # type: ignore[misc]
                "SELECT started_at IS NOT NULL FROM dispatch.jobs WHERE id = %s", [job_id]).fetchone() == (True,), 30)
            started = conn.execute("SELECT extract(epoch FROM started_at) FROM dispatch.jobs WHERE id = %s",
                                   [job_id]).fetchone()[0]  # type: ignore[index]
            first_job.append((float(started) - t0) * 1000)
            proc.terminate()
            proc.wait(30)
    return {"health_median_ms": round(statistics.median(health), 1), "health_runs_ms": [round(t, 1) for t in health],
            "first_job_median_ms": round(statistics.median(first_job), 1),
            "first_job_runs_ms": [round(t, 1) for t in first_job]}


def bench_precision(b: Bench, schedules: int = 100, minutes: int = 2) -> dict[str, Any]:
    """Slots of `* * * * *` schedules, inserted ahead by the tick's lookahead; started_at - slot."""
    url = b.fresh_db()
    with psycopg.connect(url, autocommit=True) as conn:
        add_integration(conn, 1000)
        # One kind per schedule: same integration, kind and slot would be one key, one job.
        conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron) "
                     "SELECT 'bench', 'k' || g, '* * * * *' FROM generate_series(1, %s) g", [schedules])
        with b.daemon(url, schedules):
            end = time.time() + minutes * 60 + 5
            while time.time() < end:  # stands in for pg_cron: a tick every 30 s
                conn.execute("SELECT dispatch.tick()")
                time.sleep(30 - time.time() % 30)
            wait_until(lambda: conn.execute("SELECT count(*) FROM dispatch.jobs WHERE status <> 'succeeded' "
                                            "AND scheduled_for < now()").fetchone() == (0,), 30)
            rows = conn.execute("SELECT extract(epoch FROM started_at - scheduled_for) * 1000 FROM dispatch.jobs "
                                "WHERE started_at IS NOT NULL").fetchall()
    return _dist([float(r[0]) for r in rows], "ms")


def bench_tick(b: Bench, sizes: tuple[int, ...] = (1_000, 10_000, 100_000), due: int = 1000) -> dict[str, Any]:
    """Tick duration with `due` schedules due and the rest next year: cost must follow due slots."""
    out = {}
    for total in sizes:
        url = b.fresh_db()
        with psycopg.connect(url, autocommit=True) as conn:
            add_integration(conn, 10)
            # `due` schedules have a slot within the lookahead, the rest not for 300 days: the tick
            # must not touch those (every-minute cron; an explicitly written next_slot is kept).
            conn.execute("""INSERT INTO dispatch.schedules (integration_id, kind, cron, next_slot)
                SELECT 'bench', 'k' || g, '* * * * *', CASE WHEN g <= %s
                       THEN date_trunc('minute', now()) + interval '1 minute'
                       ELSE date_trunc('minute', now()) + interval '300 days' END
                FROM generate_series(1, %s) g""", [due, total])
            conn.execute("VACUUM ANALYZE dispatch.schedules")
            t0 = time.perf_counter()
            inserted = conn.execute("SELECT dispatch.tick()").fetchone()
            ms = (time.perf_counter() - t0) * 1000
        out[f"schedules_{total}"] = {"schedules": total, "due": due, "jobs_inserted": inserted[0] if inserted else None,
                                     "ms": round(ms, 1)}
    return out


def bench_claim(b: Bench, sizes: tuple[int, ...] = (0, 10_000, 100_000, 1_000_000)) -> dict[str, Any]:
    """Median claim of 50 jobs as finished history grows: the partial index keeps it flat."""
    url = b.fresh_db()
    out: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        add_integration(conn, 1000)
        have = 0
        for size in sizes:
            _add_history(conn, have, size)
            have = size
            out[f"finished_{size}"] = {"finished_jobs": size, "claim_ms": _claim_cost(conn)}
        plan = conn.execute("EXPLAIN SELECT j.id FROM dispatch.jobs j WHERE j.integration_id = 'bench' "
                            "AND j.status = 'queued' AND j.run_after <= now() "
                            "ORDER BY j.priority, j.run_after, j.id LIMIT 50").fetchall()
        out["plan"] = [r[0] for r in plan]
    return out


def _add_history(conn: psycopg.Connection[Any], have: int, size: int) -> None:
    if size <= have:
        return
    conn.execute("ALTER TABLE dispatch.jobs DISABLE TRIGGER USER")  # bulk history, no ledger churn
    conn.execute("""INSERT INTO dispatch.jobs (integration_id, kind, status, scheduled_for, run_after,
                        started_at, finished_at, attempts, idempotency_key)
                    SELECT 'bench', 'sync', 'succeeded', now() - interval '1 day', now() - interval '1 day',
                           now() - interval '1 day', now() - interval '1 day', 1, 'hist:' || g
                    FROM generate_series(%s::bigint, %s::bigint) g""", [have + 1, size])
    conn.execute("ALTER TABLE dispatch.jobs ENABLE TRIGGER USER")
    conn.execute("VACUUM ANALYZE dispatch.jobs")


def _claim_cost(conn: psycopg.Connection[Any], rounds: int = 50) -> float:
    times = []
    for _ in range(rounds):
        conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) "
                     "SELECT 'bench', 'sync' FROM generate_series(1, 50)")
        t0 = time.perf_counter()
        conn.execute("SELECT count(*) FROM dispatch.claim_jobs('bench-worker', 50, 30)")
        times.append((time.perf_counter() - t0) * 1000)
        conn.execute("UPDATE dispatch.jobs SET status = 'succeeded', finished_at = now() WHERE status = 'running'")
    return round(statistics.median(times), 3)


def bench_scale(b: Bench) -> dict[str, Any]:
    """The worst shapes: claims with 1,000 integrations (limits 1-3) against one, cron_prev and
    cron_next for hard expressions, and the /metrics queue-depth read over 300,000 finished jobs."""
    url = b.fresh_db("bench_scale")
    out: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        add_integration(conn, 1000)
        out["claim_1_integration_ms"] = _claim_cost(conn)
        conn.execute("INSERT INTO dispatch.integrations (id, adapter, max_concurrency) "
                     "SELECT 'i' || g, 'noop', 1 + g % 3 FROM generate_series(1, 999) g")
        out["claim_1000_integrations_ms"] = _claim_cost(conn)
        out["claim_ratio"] = round(out["claim_1000_integrations_ms"] / out["claim_1_integration_ms"], 2)
        out["cron_ms"] = cron_shapes(conn)
        _add_history(conn, 0, 300_000)
        t0 = time.perf_counter()
        for _ in range(5):
            conn.execute(query("metrics_queue_depth")).fetchall()
        out["metrics_queue_depth_ms_300k_finished"] = round((time.perf_counter() - t0) * 1000 / 5, 2)
        plan = conn.execute("EXPLAIN " + query("metrics_queue_depth")).fetchall()
        out["metrics_plan_seq_scan_on_jobs"] = any("Seq Scan on jobs" in r[0] for r in plan)
    return out


def bench_claims(b: Bench, jobs: int = 3000, integrations: int = 1000, concurrency: int = 4,
                 daemon_counts: tuple[int, ...] = (1, 2, 4), delay_ms: tuple[float, float] = (50.0, 100.0),
                 burst: int = 3) -> dict[str, Any]:
    """Claims at scale, 1,000 integrations with limits 1-3, in three parts.

    ``single_connection``: one claim of 50, the due jobs in 1 integration against spread over 1,000.
    ``claim_path``: claims alone (no daemon), 1, 2 and 4 connections claiming and finishing at once:
    a global lock keeps claims/s flat as connections are added, per-integration locks let it grow.
    ``daemons_N``: webhook integrations against a slow loopback receiver, 1, 2 and 4 daemons (real
    processes; ``concurrency`` each, small enough that 4 of them stay I/O-bound on 2 cores), jobs in
    bursts of ``burst`` per integration so the limits bind. Per run: jobs/s, claim latency under
    contention (a claim of 50 on a side connection, rolled back, every 100 ms; and the daemons' own
    mean from pg_stat_user_functions), claims waiting on a lock (pg_stat_activity every 10 ms), how
    busy the machine was, the sweep-line limit check and the exactly-once account (the receiver
    saw each job's key once)."""
    out: dict[str, Any] = {"single_connection": _claim_spread(b, integrations),
                           "claim_path": _claim_path(b, integrations)}
    jobs = round(jobs * b.size)
    for daemons in daemon_counts:
        url = b.fresh_db("bench_claims")
        with psycopg.connect(b.admin, autocommit=True) as conn:  # the daemons' claims, timed by Postgres
            conn.execute("ALTER DATABASE bench_claims SET track_functions = 'pl'")
        args = load.parse(["--jobs", str(jobs), "--integrations", str(integrations), "--daemons", str(daemons),
                           "--concurrency", str(concurrency), "--burst", str(burst),
                           "--webhook-delay-ms", *map(str, delay_ms)])
        watch = ClaimWatch(url)
        cpu = MachineCpu()
        with tempfile.TemporaryDirectory(prefix="bench-claims-logs-") as logs, cpu:
            result = load.run(url, args, Path(logs), watch=watch)
        with psycopg.connect(url, autocommit=True) as conn:
            span = conn.execute("SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM dispatch.jobs"
                                ).fetchone()
            calls, total_ms = conn.execute("SELECT calls, total_time FROM pg_stat_user_functions "
                                           "WHERE schemaname = 'dispatch' AND funcname = 'claim_jobs'"
                                           ).fetchone() or (0, 0.0)
        seconds = float(span[0]) if span and span[0] else float("nan")
        own_calls, own_ms = calls - len(watch.probe_ms), total_ms - sum(watch.probe_ms)
        out[f"daemons_{daemons}"] = {
            "daemons": daemons, "concurrency_per_daemon": concurrency, "jobs": jobs,
            "seconds": round(seconds, 2), "jobs_per_s": round(jobs / seconds, 1),
            "claim_probe_50_ms": _dist(watch.probe_ms, "ms") if watch.probe_ms else None,
            "daemon_claims": {"calls": own_calls, "mean_ms": round(own_ms / own_calls, 3) if own_calls else None,
                              "mean_in_progress": round(own_ms / 1000 / seconds, 3)},
            "lock_waits": watch.lock_waits(),
            # The machine is shared: how busy it was, and what the daemons and the receiver used.
            "cpu": {**cpu.figures(), "daemons_and_receiver_ms_per_job": round(cpu.children_s * 1000 / jobs, 2)},
            "limits": {"over_limit": result["concurrency"]["over_limit"],
                       "max_observed_by_limit": result["concurrency"]["max_observed_by_limit"]},
            "exactly_once": {k: result["accounting"][k] for k in (
                "succeeded", "received", "keys_not_received", "keys_received_twice", "attempts_not_one")},
            "ok": result["ok"],
        }
    return out


def _claim_spread(b: Bench, integrations: int, queued: int = 3000, rounds: int = 50) -> dict[str, Any]:
    """Median claim of 50 on one connection, ``queued`` due jobs in one integration against spread
    round-robin over ``integrations`` (limits 1-3); each round finishes what it claimed and queues as
    many again, so the shape holds."""
    url = b.fresh_db("bench_claims")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO dispatch.integrations (id, adapter, max_concurrency) VALUES ('one', 'noop', 1000)")
        one = _claim_rounds(conn, ["one"], queued, rounds)
        conn.execute("INSERT INTO dispatch.integrations (id, adapter, max_concurrency) "
                     "SELECT 's' || g, 'noop', 1 + g %% 3 FROM generate_series(1, %s) g", [integrations])
        ids = [f"s{g}" for g in range(1, integrations + 1)]
        many = _claim_rounds(conn, ids, queued, rounds)
    return {"claim_50_1_integration_ms": one, f"claim_50_{integrations}_integrations_ms": many,
            "ratio": round(many / one, 2), "queued": queued}


def _claim_path(b: Bench, integrations: int, connections: tuple[int, ...] = (1, 2, 4), seconds: float = 4.0,
                batch: int = 4) -> dict[str, Any]:
    """``n`` connections, each claiming ``batch`` and finishing what it took at once, for ``seconds``:
    claims/s, jobs/s and the claim's latency, per ``n``. One queue for all (bursts of 3 per
    integration, round after round), consumed from its head."""
    url = b.fresh_db("bench_claims")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO dispatch.integrations (id, adapter, max_concurrency) "
                     "SELECT 'p' || g, 'noop', 1 + g %% 3 FROM generate_series(0, %s - 1) g", [integrations])
        for _ in range(12):
            conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) "
                         "SELECT 'p' || (g / 3), 'sync' FROM generate_series(0, 3 * %s - 1) g", [integrations])
        conn.execute("VACUUM ANALYZE dispatch.jobs")
    out: dict[str, Any] = {"batch": batch, "seconds": seconds}
    for n in connections:
        times: list[float] = []
        taken: list[int] = []
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=_claimer, args=(url, f"path-{n}-{i}", batch, deadline, times, taken))
                   for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out[f"connections_{n}"] = {"claims_per_s": round(len(times) / seconds, 1),
                                   "jobs_per_s": round(sum(taken) / seconds, 1), "claim_ms": _dist(times, "ms")}
    with psycopg.connect(url, autocommit=True) as conn:
        out["queued_left"] = conn.execute("SELECT count(*) FROM dispatch.jobs WHERE status = 'queued'").fetchone()[0]  # type: ignore[index]
    return out


def _claimer(url: str, worker: str, batch: int, deadline: float, times: list[float], taken: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            ids = [r[0] for r in c.execute("SELECT id FROM dispatch.claim_jobs(%s, %s, 30)", [worker, batch])]
            times.append((time.perf_counter() - t0) * 1000)
            taken.append(len(ids))
            c.execute("UPDATE dispatch.jobs SET status = 'succeeded', finished_at = clock_timestamp() "
                      "WHERE id = ANY(%s)", [ids])


def _claim_rounds(conn: psycopg.Connection[Any], ids: list[str], queued: int, rounds: int) -> float:
    conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) "
                 "SELECT (%s::text[])[1 + g %% %s], 'sync' FROM generate_series(0, %s - 1) g", [ids, len(ids), queued])
    conn.execute("VACUUM ANALYZE dispatch.jobs")
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        claimed = [r[0] for r in conn.execute("SELECT integration_id FROM dispatch.claim_jobs('bench-worker', 50, 30)")]
        times.append((time.perf_counter() - t0) * 1000)
        conn.execute("UPDATE dispatch.jobs SET status = 'succeeded', finished_at = now() WHERE status = 'running'")
        conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) SELECT unnest(%s::text[]), 'sync'", [claimed])
    conn.execute("UPDATE dispatch.jobs SET status = 'cancelled', finished_at = now() WHERE status = 'queued'")
    return round(statistics.median(times), 3)


# Backends of this database in a claim, and those of them waiting for a lock (which, if any).
_ACTIVITY_SQL = """
SELECT count(*) FILTER (WHERE state = 'active'),
       coalesce(array_agg(wait_event) FILTER (WHERE wait_event_type = 'Lock'), '{}')
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%dispatch.claim_jobs(%'
"""


class MachineCpu:
    """Across a block: the share of the machine's CPU time that was busy (anyone's), the load
    average at the end, and the CPU seconds of this process's children (daemons, receiver)."""

    def __enter__(self) -> MachineCpu:
        self._stat, self._children = _proc_stat(), _children_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        stat = _proc_stat()
        busy, total = (b - a for a, b in zip(self._stat, stat, strict=True))
        self.busy_share = busy / total if total else float("nan")
        self.children_s = _children_cpu() - self._children
        self.load = os.getloadavg()[0]

    def figures(self) -> dict[str, float]:
        return {"machine_busy_share": round(self.busy_share, 3), "load_average_1m": round(self.load, 2)}


def _proc_stat() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]  # guest is in user
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class ClaimWatch:
    """While the daemons run: a claim of 50 timed on a side connection every 100 ms (rolled
    back: it takes nothing), and pg_stat_activity sampled every 10 ms for claims in progress
    and claims waiting on a lock."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.probe_ms: list[float] = []
        self.samples = 0
        self.claiming: list[int] = []
        self.waiting: list[int] = []
        self.wait_events: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="claim-watch", daemon=True)

    def __enter__(self) -> ClaimWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as activity, psycopg.connect(self.url) as probe:
            next_probe = time.monotonic()
            while not self._stop.wait(0.01):
                row = activity.execute(_ACTIVITY_SQL).fetchone()
                if row:
                    self.claiming.append(row[0])
                    self.waiting.append(len(row[1]))
                    self.wait_events.update(row[1])
                if time.monotonic() >= next_probe:
                    t0 = time.perf_counter()
                    probe.execute("SELECT count(*) FROM dispatch.claim_jobs('bench-probe', 50, 30)")
                    self.probe_ms.append((time.perf_counter() - t0) * 1000)
                    probe.rollback()
                    next_probe = time.monotonic() + 0.1

    def lock_waits(self) -> dict[str, Any]:
        n = len(self.waiting) or 1
        return {"samples": len(self.waiting),
                "share_with_a_claim_waiting": round(sum(1 for w in self.waiting if w) / n, 3),
                "mean_claims_waiting": round(sum(self.waiting) / n, 3),
                "mean_claims_in_progress": round(sum(self.claiming) / n, 3),
                "wait_events": dict(self.wait_events)}


# -- cron worst cases (issue 16, item 5)

def _transitions(zone: str, year: int) -> list[datetime]:
    """The instants (to the minute) where the zone's UTC offset changes during the year."""
    tz, found = ZoneInfo(zone), []
    t, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    while t < end:
        nxt = t + timedelta(hours=1)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = t, nxt
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if mid.astimezone(tz).utcoffset() == t.astimezone(tz).utcoffset() else (lo, mid)
            found.append(hi)
        t = nxt
    return found


def _z(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Every shape the issue names, each at the instants that make its search longest (the far side
# of the months or days it skips) and, in a DST zone, around both of 2026's transitions.
CRON_SHAPES: dict[str, tuple[str, str, list[str]]] = {
    "every minute": ("* * * * *", "UTC", ["2026-12-01T00:00:00"]),
    "month range 1-6": ("* * * 1-6 *", "UTC", ["2027-01-01T00:00:00", "2026-07-01T00:00:00", "2026-06-30T23:59:30"]),
    "month range NOV-FEB, Oslo": ("0 12 * nov-feb *", "Europe/Oslo", ["2026-11-01T00:00:00", "2026-03-01T00:00:00"]),
    "one month, every minute": ("* * * 2 *", "UTC", ["2027-02-01T00:00:00", "2026-03-01T00:00:00"]),
    "weekdays 09:00, Oslo": ("0 9 * * 1-5", "Europe/Oslo", ["2026-12-07T00:00:00", "2026-12-05T12:00:00"]),
    "Sundays 02:30, Oslo (the DST nights)": ("30 2 * * 0", "Europe/Oslo", []),
    "Saturdays, every minute": ("* * * * 6", "UTC", ["2026-12-06T00:00:00", "2026-12-04T00:00:00"]),
    "yearly": ("0 0 1 1 *", "UTC", ["2026-12-31T23:59:00", "2026-01-01T00:01:00"]),
    "yearly 03:00, New York": ("0 3 1 1 *", "America/New_York", ["2026-12-31T00:00:00", "2026-01-02T00:00:00"]),
    "29 February": ("0 0 29 2 *", "UTC", ["2028-02-28T00:00:00", "2028-03-01T00:00:00"]),
    "29 February on a Sunday (28 years apart)": ("0 0 29 2 */7", "UTC", ["2059-03-01T00:00:00", "2032-03-01T00:00:00"]),
    "the 13th on a Friday or Sunday": ("0 0 13 * */5", "UTC", ["2026-11-14T00:00:00", "2026-03-14T00:00:00"]),
    "DST gap, 02:30 Oslo": ("30 2 * * *", "Europe/Oslo", []),
    "DST gap, 02:00-02:45 Oslo": ("0,15,45 2 * * *", "Europe/Oslo", []),
    "DST every minute, Oslo": ("* * * * *", "Europe/Oslo", []),
    "DST every minute of 02:xx, Oslo": ("* 2 * * *", "Europe/Oslo", []),
    "DST hourly :30, New York": ("30 * * * *", "America/New_York", []),
    "DST 30-minute shift, Lord Howe": ("15 2 * * *", "Australia/Lord_Howe", []),
    "DST 45-minute offset, Chatham": ("45 2 * * *", "Pacific/Chatham", []),
    "negative DST, Dublin": ("30 1 * * *", "Europe/Dublin", []),
    "no slot at all (30 February, written around the validation)": ("0 0 30 2 *", "UTC", ["2026-06-01T00:00:00"]),
}


def _shape_instants(tz: str, fixed: list[str]) -> list[datetime]:
    at = [_z(t) for t in fixed]
    for transition in _transitions(tz, 2026):
        at += [transition + timedelta(minutes=m) for m in (-61, -1, 0, 1, 30, 59, 60, 61, 121)]
    return at or [_z("2026-06-15T12:00:30")]


_TIME_CRON = """CREATE FUNCTION pg_temp.time_cron(fn text, expr text, tz text, t timestamptz, n integer)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    s dispatch.cron_spec := dispatch.cron_parse(expr);
    t0 timestamptz;
    best double precision := 'infinity';
    r timestamptz;
BEGIN
    FOR i IN 1..n LOOP
        t0 := clock_timestamp();
        IF fn = 'cron_prev' THEN r := dispatch.cron_prev(s, tz, t); ELSE r := dispatch.cron_next(s, tz, t); END IF;
        best := least(best, 1000 * extract(epoch FROM clock_timestamp() - t0));
    END LOOP;
    RETURN best;
END $$"""


def cron_shapes(conn: psycopg.Connection[Any], repeat: int = 5) -> dict[str, Any]:
    """cron_prev and cron_next per shape, at the instant that costs it most: `ms` is the call as
    a caller makes it (text expression, parse included, one round trip; median of `repeat`),
    `server_ms` the function alone on a parsed expression as the tick calls it (best of
    `repeat`, timed inside the server)."""
    conn.execute(_TIME_CRON)
    out: dict[str, Any] = {}
    for fn in ("cron_prev", "cron_next"):
        per_shape: dict[str, Any] = {}
        for name, (expr, tz, fixed) in CRON_SHAPES.items():
            worst, worst_at, server = 0.0, "", 0.0
            for at in _shape_instants(tz, fixed):
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    conn.execute(f"SELECT dispatch.{fn}(%s, %s, %s::timestamptz)", [expr, tz, at]).fetchone()
                    times.append((time.perf_counter() - t0) * 1000)
                if statistics.median(times) > worst:
                    worst, worst_at = statistics.median(times), at.isoformat()
                row = conn.execute("SELECT pg_temp.time_cron(%s, %s, %s, %s, %s)",
                                   [fn, expr, tz, at, repeat]).fetchone()
                server = max(server, float(row[0]) if row else 0.0)
            per_shape[name] = {"expr": expr, "tz": tz, "worst_ms": round(worst, 2), "at": worst_at,
                               "worst_server_ms": round(server, 3)}
        top = max(per_shape, key=lambda k: per_shape[k]["worst_ms"])
        top_server = max(per_shape, key=lambda k: per_shape[k]["worst_server_ms"])
        out[fn] = {"worst_ms": per_shape[top]["worst_ms"], "worst_shape": top,
                   "worst_server_ms": per_shape[top_server]["worst_server_ms"], "worst_server_shape": top_server,
                   "shapes": per_shape}
    return out


TICK_ZONES = ["UTC", "Europe/Oslo", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Sao_Paulo",
              "Europe/Dublin", "Asia/Tokyo", "America/Los_Angeles", "Pacific/Honolulu"]
TICK_AT = _z("2028-02-29T12:00:00")        # a 29 February: a slot of every shape below in every zone above


def _tick_mix() -> list[tuple[str, str]]:
    """(cron, zone) pairs: ten shapes in ten zones, each with a slot at TICK_AT."""
    mix = []
    for zone in TICK_ZONES:
        local = TICK_AT.astimezone(ZoneInfo(zone))
        m, h, d, mo, dow = local.minute, local.hour, local.day, local.month, (local.weekday() + 1) % 7
        mix += [(c, zone) for c in (
            "* * * * *", "*/15 * * * *", f"{m} * * * *", f"{m} {h} * * *", f"{m} {h} * * {dow}",
            f"{m} {h} * * {'1-5' if 1 <= dow <= 5 else '0,6'}",             # weekdays (or the weekend) only
            f"{m} {h} {d} {mo} *",                                           # yearly: 29 February
            f"{m} {h} {d} {mo}-{(mo + 2) % 12 + 1} *",                       # a month range
            f"{m} {h} {d} * *",                                              # monthly
            f"{m} {h} {d} {mo} {'*/2' if dow % 2 == 0 else '*'}")]           # 29 February and a weekday
    return mix


def _add_mixed_schedules(conn: psycopg.Connection[Any], total: int, due: int) -> None:
    """`total` schedules of the mix, `due` of them due at TICK_AT, the rest next year. The trigger
    parses the hundred distinct (cron, zone) pairs once; their rows are copied with its result."""
    mix = _tick_mix()
    conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone, next_slot) "
                 "SELECT 'bench', 'mix' || n, c, z, %s FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY u(c, z, n)",
                 [TICK_AT, [c for c, _ in mix], [z for _, z in mix]])
    conn.execute("ALTER TABLE dispatch.schedules DISABLE TRIGGER schedules_before_write")
    conn.execute("""INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone, cron_spec, next_slot)
        SELECT 'bench', 'k' || g, m.cron, m.timezone, m.cron_spec,
               CASE WHEN g <= %(due)s THEN %(at)s ELSE %(at)s::timestamptz + interval '300 days' END
        FROM generate_series(1, %(n)s) g
        JOIN dispatch.schedules m ON m.kind = 'mix' || (1 + g %% %(mix)s)""",
                 {"due": due - len(mix), "at": TICK_AT, "n": total - len(mix), "mix": len(mix)})
    conn.execute("ALTER TABLE dispatch.schedules ENABLE TRIGGER schedules_before_write")
    conn.execute("VACUUM ANALYZE dispatch.schedules")


def _backend_cpu_ms(pid: int) -> float | None:
    """CPU time the server process has used (the cluster is local): a figure the other load
    on a shared machine does not inflate, unlike wall time."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e6
    except (OSError, ValueError, IndexError):
        return None


def _timed_tick(url: str, runs: int = 3) -> dict[str, Any]:
    """dispatch.tick() acting for just before TICK_AT, `runs` times, each on a new connection (a
    cold plan cache, as pg_cron's background worker has) and rolled back (the same work each time)."""
    walls, cpus, out = [], [], {}
    for _ in range(runs):
        with psycopg.connect(url) as conn:
            pid = conn.info.backend_pid
            cpu0, t0 = _backend_cpu_ms(pid), time.perf_counter()
            try:
                row = conn.execute("SELECT dispatch.tick(%s)", [TICK_AT - timedelta(seconds=60)]).fetchone()
            except psycopg.Error as e:
                return {"ms": round((time.perf_counter() - t0) * 1000, 1), "error": str(e).splitlines()[0]}
            walls.append((time.perf_counter() - t0) * 1000)
            cpu1 = _backend_cpu_ms(pid)
            if cpu0 is not None and cpu1 is not None:
                cpus.append(cpu1 - cpu0)
            out = {"jobs_inserted": row[0] if row else None,
                   "alerts": dict(conn.execute("SELECT kind, count(*) FROM dispatch.alerts GROUP BY kind").fetchall())}
            conn.rollback()
    return {"ms": round(statistics.median(walls), 1), "runs_ms": [round(w, 1) for w in walls],
            "server_cpu_ms": round(statistics.median(cpus), 1) if cpus else None, **out,
            "load_1min": round(os.getloadavg()[0], 2)}


def bench_cron(b: Bench, sizes: tuple[int, ...] = (1_000, 10_000, 100_000), due: int = 1000) -> dict[str, Any]:
    """Cron worst cases: cron_prev/cron_next per shape; a tick with `due` schedules of ten shapes
    in ten zones due at once against 1k/10k/100k schedules in all; the same tick with broken
    schedules among them (screened out, and one found by halving the batch)."""
    out: dict[str, Any] = {}
    url = b.fresh_db("bench_cron")
    with psycopg.connect(url, autocommit=True) as conn:
        out["cron_ms"] = cron_shapes(conn)
    for total in sizes:
        url = b.fresh_db("bench_cron")
        with psycopg.connect(url, autocommit=True) as conn:
            add_integration(conn, 10)
            _add_mixed_schedules(conn, total, due)
        out[f"tick_schedules_{total}"] = {"schedules": total, "due": due, **_timed_tick(url)}
    url = b.fresh_db("bench_cron")
    with psycopg.connect(url, autocommit=True) as conn:
        add_integration(conn, 10)
        _add_mixed_schedules(conn, sizes[0], due)
        # Written around the validation trigger: a zone a tzdata update removed, an expression
        # that does not parse, one whose day never comes.
        conn.execute("ALTER TABLE dispatch.schedules DISABLE TRIGGER schedules_before_write")
        conn.execute("""INSERT INTO dispatch.schedules (integration_id, kind, cron, timezone, cron_spec, next_slot)
            VALUES ('bench', 'bad-zone', '* * * * *', 'US/Pacific-New', dispatch.cron_parse('* * * * *'), %(at)s),
                   ('bench', 'bad-cron', '* * * * * *', 'UTC', NULL, %(at)s),
                   ('bench', 'never', '0 0 30 2 *', 'UTC', dispatch.cron_parse('0 0 30 2 *'), %(at)s)""",
                     {"at": TICK_AT})
        conn.execute("ALTER TABLE dispatch.schedules ENABLE TRIGGER schedules_before_write")
    out["tick_with_3_broken"] = {"schedules": sizes[0] + 3, "due": due + 3, **_timed_tick(url)}
    url = b.fresh_db("bench_cron")
    with psycopg.connect(url, autocommit=True) as conn:
        add_integration(conn, 10)
        _add_mixed_schedules(conn, sizes[0], due)
        # One the screening cannot see: its integration deleted while foreign keys were off.
        conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('gone', 'noop')")
        conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, next_slot) "
                     "VALUES ('gone', 'orphan', '* * * * *', %s)", [TICK_AT])
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM dispatch.integrations WHERE id = 'gone'")
        conn.execute("RESET session_replication_role")
    out["tick_first_after_an_orphan"] = {"schedules": sizes[0] + 1, "due": due + 1, **_timed_tick(url)}
    return out


def _dist(values: list[float], unit: str) -> dict[str, Any]:
    return {"n": len(values), "unit": unit, **{f"p{p}": round(percentile(values, p), 2) for p in (50, 95, 99)},
            "max": round(max(values), 2)}


def bench_load(b: Bench, jobs: int = 100_000) -> dict[str, Any]:
    """scripts/load.py: 100,000 jobs, 200 integrations, 4 daemons, exactly-once accounting."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "load.py"), "--jobs", str(jobs), "--durable"],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    try:
        return dict(json.loads(out.stdout))
    except ValueError:
        return {"error": (out.stderr or out.stdout)[-2000:]}


# -- soak: sustained load through the daemon while retention runs as pg_cron would
SOAK_RETENTION_S = 30.0   # job_retention_days, as seconds: short, so pruning runs all through
SOAK_MAINTAIN_EVERY_S = 60.0  # pg_cron's dispatch-maintain: once a minute
SOAK_MARK = 100_000


def bench_soak(b: Bench) -> dict[str, Any]:
    """BENCH_SOAK_JOBS (1,000,000) noop jobs fed at BENCH_SOAK_RATE (2,000/s) through one daemon
    (concurrency 50) while dispatch.maintain() runs every minute with a 30 s job retention. At
    each 100k jobs done: table and index sizes, a claim of 50 timed on the side, drain so far."""
    total = int(os.environ.get("BENCH_SOAK_JOBS", "1000000"))
    rate = float(os.environ.get("BENCH_SOAK_RATE", "2000"))
    url = b.fresh_db("bench_soak")
    with psycopg.connect(url, autocommit=True) as conn:
        add_integration(conn, 1000)
        conn.execute("INSERT INTO dispatch.integrations (id, adapter, max_concurrency) VALUES ('probe', 'noop', 50)")
        conn.execute("UPDATE dispatch.settings SET value = %s WHERE key = 'job_retention_days'",
                     [repr(SOAK_RETENTION_S / 86400)])
        maintainer = _Maintainer(url)
        with b.daemon(url, 50):
            maintainer.start()
            try:
                marks, seconds = _soak_feed(conn, total, rate, maintainer)
            finally:
                maintainer.stop()
    return _soak_summary(total, rate, seconds, marks, maintainer.runs)


class _Maintainer(threading.Thread):
    """Calls dispatch.maintain() as pg_cron would, and counts what each run deleted."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.halt = url, threading.Event()
        self.runs: list[dict[str, float]] = []

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.halt.wait(SOAK_MAINTAIN_EVERY_S):
                self.runs.append(self.maintain(conn))

    def maintain(self, conn: psycopg.Connection[Any]) -> dict[str, float]:
        t0 = time.perf_counter()
        with conn.transaction():
            conn.execute("SELECT dispatch.maintain()")
            row = conn.execute("SELECT n_tup_del FROM pg_stat_xact_user_tables "
                               "WHERE relid = 'dispatch.jobs'::regclass").fetchone()
        seconds = time.perf_counter() - t0
        pruned = int(row[0]) if row else 0
        return {"pruned": pruned, "seconds": round(seconds, 3), "jobs_per_s": round(pruned / seconds)}

    def stop(self) -> None:
        self.halt.set()
        self.join(SOAK_MAINTAIN_EVERY_S + 120)


def _soak_feed(conn: psycopg.Connection[Any], total: int, rate: float,
               maintainer: _Maintainer) -> tuple[list[dict[str, Any]], float]:
    """Insert at a fixed rate in batches of a tenth of a second; a mark at each 100k jobs done."""
    marks: list[dict[str, Any]] = []
    fed, t0, last = 0, time.perf_counter(), (0.0, 0)
    next_mark = min(SOAK_MARK, total)
    while True:
        elapsed = time.perf_counter() - t0
        due = min(total, int(rate * elapsed)) - fed
        if due > 0:
            conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) SELECT 'bench', 'sync' "
                         "FROM generate_series(1, %s)", [due])
            fed += due
        done = fed - _open_jobs(conn)
        if done >= next_mark:
            marks.append(_soak_mark(conn, done, elapsed, last, maintainer.runs))
            print(f"  soak: {json.dumps(marks[-1])}", file=sys.stderr, flush=True)
            last = (elapsed, done)
            if done >= total:
                return marks, elapsed
            next_mark = min(next_mark + SOAK_MARK, total)
        time.sleep(max(0.0, 0.1 - (time.perf_counter() - t0 - elapsed)))


def _open_jobs(conn: psycopg.Connection[Any]) -> int:
    # Off the partial indexes (jobs_queued_run_after_idx, jobs_running_idx): never the history.
    row = conn.execute("SELECT (SELECT count(*) FROM dispatch.jobs WHERE status = 'queued') "
                       "+ (SELECT count(*) FROM dispatch.jobs WHERE status = 'running')").fetchone()
    return int(row[0]) if row else 0


def _soak_mark(conn: psycopg.Connection[Any], done: int, elapsed: float, last: tuple[float, int],
               runs: list[dict[str, float]]) -> dict[str, Any]:
    sizes = conn.execute("""
        SELECT c.relname, pg_relation_size(c.oid), pg_indexes_size(c.oid), c.reltuples
          FROM pg_class c WHERE c.oid IN ('dispatch.jobs'::regclass, 'dispatch.job_events'::regclass,
                                          'dispatch.idempotency_keys'::regclass)""").fetchall()
    rows = conn.execute("SELECT (SELECT count(*) FROM dispatch.jobs), (SELECT count(*) FROM dispatch.jobs "
                        "WHERE finished_at < now() - make_interval(secs => %s))",
                        [SOAK_RETENTION_S + SOAK_MAINTAIN_EVERY_S]).fetchone() or (0, 0)
    pruned = sum(r["pruned"] for r in runs)
    return {"done": done, "seconds": round(elapsed, 1),
            "drain_jobs_per_s": round((done - last[1]) / max(elapsed - last[0], 1e-9)),
            "prune_jobs_per_s": round(pruned / max(sum(r["seconds"] for r in runs), 1e-9)) if runs else None,
            "maintain_runs": len(runs), "pruned": pruned,
            "jobs_rows": rows[0], "overdue_for_pruning": rows[1],
            **{f"{name}_mb": round(heap / 2**20, 1) for name, heap, _, _ in sizes},
            **{f"{name}_indexes_mb": round(index / 2**20, 1) for name, _, index, _ in sizes},
            "claim_50_ms": _claim_probe(conn), "load_1m": round(os.getloadavg()[0], 2)}


def _claim_probe(conn: psycopg.Connection[Any], rounds: int = 20) -> dict[str, float]:
    """A claim of 50 beside the daemon: its own 50 jobs, inserted and claimed in a transaction that
    is rolled back, so the daemon never sees them (median and p95 of ``rounds``)."""
    times = []
    for _ in range(rounds):
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO dispatch.jobs (integration_id, kind, priority) "
                         "SELECT 'probe', 'sync', -1 FROM generate_series(1, 50)")
            t0 = time.perf_counter()
            conn.execute("SELECT count(*) FROM dispatch.claim_jobs('soak-probe', 50, 30)").fetchone()
            times.append((time.perf_counter() - t0) * 1000)
    return {"p50": round(percentile(times, 50), 2), "p95": round(percentile(times, 95), 2)}


def _soak_summary(total: int, rate: float, seconds: float, marks: list[dict[str, Any]],
                  runs: list[dict[str, float]]) -> dict[str, Any]:
    busy = sum(r["seconds"] for r in runs)
    prune = sum(r["pruned"] for r in runs) / busy if busy else float("nan")
    drain = total / seconds
    return {"jobs": total, "feed_jobs_per_s": rate, "seconds": round(seconds, 1), "drain_jobs_per_s": round(drain),
            "prune_jobs_per_s": round(prune), "prune_over_drain": round(prune / drain, 2),
            "retention_s": SOAK_RETENTION_S, "maintain_every_s": SOAK_MAINTAIN_EVERY_S,
            "load_average": [round(x, 2) for x in os.getloadavg()], "marks": marks, "maintain_runs": runs}


BENCHES: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "scale": bench_scale, "claims": bench_claims,
    "drain": bench_drain, "pickup": bench_pickup, "cold_start": bench_cold_start,
    "tick": bench_tick, "cron": bench_cron, "claim": bench_claim, "precision": bench_precision, "load": bench_load,
    "soak": bench_soak,
}
# The soak takes about ten minutes on its own (BENCH_SOAK_JOBS makes it shorter): by name only.
DEFAULT = [name for name in BENCHES if name != "soak"]


def write_report(results: dict[str, Any], path: Path) -> None:
    """docs/benchmarks.md and the growth plot, from one run's results."""
    plot = path.with_name("benchmarks-growth.png")
    _plot(results, plot)
    m = results["machine"]
    # The leading "Side by side with the peers" section is scripts/bench peers' own: kept as it is.
    old = path.read_text() if path.exists() else ""
    peers = old[old.find("<!-- peers:begin"):old.find("<!-- peers:end -->") + len("<!-- peers:end -->")] \
        if "<!-- peers:begin" in old and "<!-- peers:end -->" in old else ""
    lines = ["# Benchmarks", "", *([peers, ""] if peers else []),
             "Regenerate with `scripts/bench --report` (all benchmarks; about 10 minutes).", "",
             f"Machine: {m['cpus']} CPUs, Python {m['python']}, {m['platform']}, PostgreSQL on the same machine "
             "(throwaway cluster, default durability). Run at " + m.get("at", "?") + ".", ""]
    for name, data in results.items():
        if name == "machine":
            continue
        lines += [f"## {name}", "", f"`scripts/bench {name}`", "", "```json", json.dumps(data, indent=2), "```", ""]
    if plot.exists():
        lines += ["## Growth", "", f"![claim latency vs finished jobs, tick time vs schedules]({plot.name})", ""]
    path.write_text("\n".join(lines))


def _plot(results: dict[str, Any], out: Path) -> None:
    if "claim" not in results and "tick" not in results:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    claim = [v for k, v in results.get("claim", {}).items() if k.startswith("finished_")]
    if claim:
        axes[0].plot([max(c["finished_jobs"], 1) for c in claim], [c["claim_ms"] for c in claim], marker="o")
        axes[0].set(xscale="log", xlabel="finished jobs in dispatch.jobs", ylabel="claim of 50 jobs (ms, median)",
                    title="Claim cost vs history", ylim=(0, None))
    tick = [v for k, v in results.get("tick", {}).items() if k.startswith("schedules_")]
    if tick:
        axes[1].plot([t["schedules"] for t in tick], [t["ms"] for t in tick], marker="o")
        axes[1].set(xscale="log", xlabel="schedules (1,000 due)", ylabel="dispatch.tick() (ms)",
                    title="Tick cost vs schedules", ylim=(0, None))
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", default=[], metavar="NAME",
                        help=f"benchmarks to run (default: all of {', '.join(DEFAULT)}; soak only by name)")
    parser.add_argument("--json-out", type=Path, help="also write the results to this file")
    parser.add_argument("--report", action="store_true", help="write docs/benchmarks.md and its growth plot")
    parser.add_argument("--size", type=float, default=1.0,
                        help="scale the job counts of the benchmarks that take it (claims; default 1)")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}")
    b = Bench(args.size)
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "platform": platform.platform(),
                                           "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
    for name in args.names or DEFAULT:
        print(f"running {name} ...", file=sys.stderr)
        results[name] = BENCHES[name](b)
        print(f"  {name}: {json.dumps(results[name])[:300]}", file=sys.stderr)
    print(json.dumps(results, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    if args.report:
        # A partial run updates its sections of the last full report; the rest is kept.
        store = ROOT / "docs" / "benchmarks.json"
        merged = {**(json.loads(store.read_text()) if store.exists() and args.names else {}), **results}
        store.write_text(json.dumps(merged, indent=2) + "\n")
        write_report(merged, ROOT / "docs" / "benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
