"""Load run with exactly-once accounting (not a test): prints JSON figures.

    .venv/bin/python scripts/load.py                      # 100,000 jobs, 200 integrations, 4 daemons
    .venv/bin/python scripts/load.py --jobs 20000 --database-url postgresql://...   # a migrated database
    .venv/bin/python scripts/load.py --webhook-delay-ms 50 100 --burst 4   # I/O-bound: a slow receiver

N noop jobs across the integrations (max_concurrency 1-3, cycling; ``--burst B``: B consecutive
jobs per integration, so that the limits bind) are inserted while the daemons run. With
``--webhook-delay-ms`` the integrations use the webhook adapter against a slow loopback
receiver (app/devkit/receiver.py) instead, which counts deliveries per idempotency key. At the
end every job must have succeeded once: status, attempts, the ledger, the daemons' own
``job.succeeded`` log events (the effect, counted per job id) and, with the receiver, one
delivery per job key. The per-integration concurrency is recomputed from the recorded
started_at/finished_at with one sweep-line query (app/devkit/limits.py). Without
``--database-url`` it runs on its own throwaway cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db.migrate import upgrade  # noqa: E402
from app.devkit import limits  # noqa: E402
from app.devkit.cluster import LocalCluster, free_port  # noqa: E402

PREFIX = "load-"
INSERT_CHUNK = 10_000
SIGNING_SECRET = "load-webhook-signing-key"  # a test value, not a credential

ACCOUNTING_SQL = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE j.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE j.status IN ('queued', 'running')) AS stuck,
       count(*) FILTER (WHERE j.status IN ('failed', 'cancelled')) AS failed,
       count(*) FILTER (WHERE j.attempts <> 1) AS attempts_not_one,
       count(*) FILTER (WHERE k.state IS DISTINCT FROM 'succeeded' OR k.job_id IS DISTINCT FROM j.id) AS ledger_bad,
       count(*) FILTER (WHERE j.started_at IS NULL OR j.finished_at IS NULL
                        OR j.finished_at < j.started_at) AS bad_intervals
FROM dispatch.jobs j LEFT JOIN dispatch.idempotency_keys k ON k.key = j.idempotency_key
WHERE j.integration_id LIKE 'load-%'
"""

FIGURES_SQL = """
SELECT extract(epoch FROM max(finished_at) - min(enqueued_at)) AS span_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - scheduled_for)) * 1000,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - scheduled_for)) * 1000,
       max(extract(epoch FROM started_at - scheduled_for)) * 1000
FROM dispatch.jobs WHERE integration_id LIKE 'load-%' AND status = 'succeeded'
"""


def limit_for(index: int) -> int:
    return 1 + index % 3


def seed_integrations(conn: psycopg.Connection[Any], count: int, webhook_url: str | None = None) -> None:
    """noop integrations, or webhook ones posting to ``webhook_url``, each with its own signing
    secret in the vault (as in production: a shared one makes every secret read list all sharers)."""
    adapter, config = ("webhook", {"url": webhook_url + "/hook"}) if webhook_url else ("noop", {})
    conn.execute("INSERT INTO dispatch.integrations (id, adapter, config, secret_name, max_concurrency) "
                 "SELECT %s || lpad(i::text, 4, '0'), %s, %s::jsonb, "
                 "CASE WHEN %s THEN %s || lpad(i::text, 4, '0') END, 1 + i %% 3 "
                 "FROM generate_series(0, %s - 1) i",
                 [PREFIX, adapter, json.dumps(config), webhook_url is not None, PREFIX, count])
    if webhook_url:
        conn.execute("SELECT vault.create_secret(%s, i.id, '') FROM dispatch.integrations i WHERE i.id LIKE 'load-%%'",
                     [SIGNING_SECRET])


def insert_jobs(conn: psycopg.Connection[Any], jobs: int, integrations: int, sleep_ms: int, burst: int = 1) -> None:
    """Round-robin over the integrations, ``burst`` consecutive jobs each, in chunks (each chunk
    one statement, one NOTIFY)."""
    payload = json.dumps({"sleep_ms": sleep_ms} if sleep_ms else {})
    for start in range(0, jobs, INSERT_CHUNK):
        stop = min(start + INSERT_CHUNK, jobs)
        conn.execute("INSERT INTO dispatch.jobs (integration_id, kind, payload, idempotency_key) "
                     "SELECT %s || lpad((n / %s %% %s)::text, 4, '0'), 'sync', %s::jsonb, 'load:' || n "
                     "FROM generate_series(%s, %s - 1) n",
                     [PREFIX, burst, integrations, payload, start, stop])


@contextmanager
def receiver(delay_ms: tuple[float, float] | None) -> Iterator[str | None]:
    """The slow webhook receiver as a process of its own (it must not share this one's CPU)."""
    if delay_ms is None:
        yield None
        return
    proc = subprocess.Popen([sys.executable, "-m", "app.devkit.receiver", "--delay-ms", *map(str, delay_ms)],
                            cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the webhook receiver did not start")
        yield str(json.loads(line)["url"])
    finally:
        proc.terminate()
        proc.wait(10)


def deliveries(url: str | None) -> Counter[str] | None:
    """Deliveries per idempotency key, as the receiver counted them."""
    return Counter(httpx.get(url + "/_receiver/keys", timeout=30).json()) if url else None


def wait_done(conn: psycopg.Connection[Any], jobs: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute("SELECT count(*) FROM dispatch.jobs WHERE integration_id LIKE 'load-%' "
                           "AND status NOT IN ('queued', 'running')").fetchone()
        done = row[0] if row else 0
        if done >= jobs:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {jobs} jobs finished within {timeout:.0f} s")
        time.sleep(0.5)


class Daemons:
    """N ``serve`` processes with their logs in ``log_dir``."""

    def __init__(self, url: str, count: int, concurrency: int, log_dir: Path) -> None:
        self.url, self.count, self.concurrency, self.log_dir = url, count, concurrency, log_dir
        self.procs: list[tuple[subprocess.Popen[bytes], int, Path]] = []

    def start(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.url, "DISPATCH_LOG_LEVEL": "INFO", "DISPATCH_POLL_INTERVAL": "1",
               "DISPATCH_ALLOW_LOOPBACK_TARGETS": "true"}  # the receiver is on loopback
        for _ in range(self.count):
            port = free_port()
            log = self.log_dir / f"daemon-{port}.log"
            with log.open("ab") as fh:
                proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port),
                                         "--concurrency", str(self.concurrency)],
                                        cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
            self.procs.append((proc, port, log))
        for proc, port, log in self.procs:
            _wait_healthy(proc, port, log)

    def stop(self) -> None:
        for proc, _, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _, _ in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def succeeded_events(self) -> Counter[int]:
        """job.succeeded events per job id, over every daemon's log: the effects."""
        seen: Counter[int] = Counter()
        for _, _, log in self.procs:
            for line in log.read_text(errors="replace").splitlines():
                if '"job.succeeded"' not in line:
                    continue
                try:
                    seen[int(json.loads(line)["job_id"])] += 1
                except (ValueError, KeyError):
                    continue
        return seen


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"daemon on port {port} not healthy within {timeout} s")


def accounting(conn: psycopg.Connection[Any], effects: Counter[int],
               received: Counter[str] | None = None) -> dict[str, Any]:
    row = conn.execute(ACCOUNTING_SQL).fetchone()
    assert row is not None
    names = ["total", "succeeded", "stuck", "failed", "attempts_not_one", "ledger_bad", "bad_intervals"]
    out: dict[str, Any] = dict(zip(names, row, strict=True))
    jobs = dict(conn.execute("SELECT id, idempotency_key FROM dispatch.jobs WHERE integration_id LIKE 'load-%'")
                .fetchall())
    out["effects"] = sum(effects[i] for i in jobs)
    out["jobs_without_effect"] = sum(1 for i in jobs if effects[i] == 0)
    out["jobs_with_duplicate_effect"] = sum(1 for i in jobs if effects[i] > 1)
    if received is not None:  # the receiving side's count: each job's key exactly once
        keys = set(jobs.values())
        out["received"] = sum(received.values())
        out["keys_not_received"] = sum(1 for k in keys if received[k] == 0)
        out["keys_received_twice"] = sum(1 for k in keys if received[k] > 1)
        out["keys_unknown"] = sum(1 for k in received if k not in keys)
    return out


def figures(conn: psycopg.Connection[Any], jobs: int) -> dict[str, Any]:
    row = conn.execute(FIGURES_SQL).fetchone()
    assert row is not None
    span, p50, p99, worst = (float(v or 0) for v in row)
    return {"span_s": round(span, 2), "throughput_jobs_per_s": round(jobs / span, 1) if span else None,
            "drift_p50_ms": round(p50, 1), "drift_p99_ms": round(p99, 1), "drift_max_ms": round(worst, 1)}


def run(url: str, args: argparse.Namespace, log_dir: Path,
        watch: AbstractContextManager[Any] | None = None) -> dict[str, Any]:
    """One load run; ``watch`` is entered once the jobs are in and left when the last finished."""
    daemons = Daemons(url, args.daemons, args.concurrency, log_dir)
    with psycopg.connect(url, autocommit=True) as conn, receiver(args.webhook_delay_ms) as receiver_url:
        seed_integrations(conn, args.integrations, receiver_url)
        try:
            daemons.start()
            t0 = time.monotonic()
            insert_jobs(conn, args.jobs, args.integrations, args.sleep_ms, args.burst)
            t_inserted = time.monotonic()
            with watch or nullcontext():
                t_done = wait_done(conn, args.jobs, args.timeout or 120 + args.jobs / 50)
        finally:
            daemons.stop()
        result = {"jobs": args.jobs, "integrations": args.integrations, "daemons": args.daemons,
                  "concurrency_per_daemon": args.concurrency, "sleep_ms": args.sleep_ms, "burst": args.burst,
                  "webhook_delay_ms": args.webhook_delay_ms,
                  "insert_s": round(t_inserted - t0, 2), "wall_s": round(t_done - t0, 2),
                  **figures(conn, args.jobs),
                  "accounting": accounting(conn, daemons.succeeded_events(), deliveries(receiver_url)),
                  "concurrency": limits.concurrency(conn, PREFIX + "%")}
    result["ok"] = ok(result)
    return result


def ok(result: dict[str, Any]) -> bool:
    acc = result["accounting"]
    received_once = "received" not in acc or (
        acc["received"] == result["jobs"] and acc["keys_not_received"] == acc["keys_received_twice"]
        == acc["keys_unknown"] == 0)
    return (acc["succeeded"] == result["jobs"] == acc["total"] == acc["effects"]
            and acc["stuck"] == acc["failed"] == acc["attempts_not_one"] == acc["ledger_bad"] == 0
            and acc["jobs_without_effect"] == acc["jobs_with_duplicate_effect"] == acc["bad_intervals"] == 0
            and received_once and not result["concurrency"]["over_limit"])


@contextmanager
def throwaway_database(durable: bool) -> Iterator[str]:
    base = Path(tempfile.mkdtemp(prefix="dispatch-load-"))
    os.chmod(base, 0o755)
    cluster = LocalCluster(base / "pg", cron_database="postgres", fast=not durable)
    cluster.ensure()
    try:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "load"')
        with redirect_stdout(sys.stderr):  # the migration talks on stdout; the figures own it
            upgrade(cluster.url("load"), pg_cron=False)
        yield cluster.url("load")
    finally:
        cluster.destroy()


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--integrations", type=int, default=200)
    p.add_argument("--daemons", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=50, help="jobs each daemon runs at once")
    p.add_argument("--sleep-ms", type=int, default=0, help="noop work per job (0: none)")
    p.add_argument("--burst", type=int, default=1, help="consecutive jobs per integration (1: round-robin)")
    p.add_argument("--webhook-delay-ms", type=float, nargs=2, metavar=("LO", "HI"),
                   help="webhook integrations against a receiver answering after LO-HI ms (default: noop)")
    p.add_argument("--timeout", type=float, help="seconds to wait for the last job (default 120 + jobs/50)")
    p.add_argument("--database-url", help="a migrated database to use (default: a throwaway cluster)")
    p.add_argument("--durable", action="store_true", help="throwaway cluster with fsync on (default off)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with ExitStack() as stack:
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dispatch-load-logs-")))
        url = args.database_url or stack.enter_context(throwaway_database(args.durable))
        result = run(url, args, log_dir)
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
