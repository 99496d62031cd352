"""Side by side with the peers (a benchmark, not a test): PGQueuer, Procrastinate and Chancy beside this daemon.

    scripts/bench peers                       # everything, then docs/benchmarks.md and docs/benchmarks-peers.json
    scripts/bench peers --only drain pickup   # some of: drain cold_start pickup (no docs update)
    scripts/bench peers --no-docs             # print only

One harness, one throwaway durable cluster (.local/pg/bench-peers: fsync on, synchronous_commit on),
one database per side, the same job count, concurrency and clock endpoints for every side. The peers
are installed from PyPI, pinned by scripts/peers/requirements.txt, into .local/peers-venv (git-ignored,
never a dependency of the project); each runs as its own worker program from scripts/peers/. This
daemon runs only through its CLI (`python -m app serve`), with DISPATCH_WORKER_SYNCHRONOUS_COMMIT=on
(the compared default: durable completions, like every peer) and =off.

Clock endpoints, the same for everyone:
  drain       exec of the worker process -> the harness's database poll (every 10 ms) first sees no job
              queued/running and N finished jobs: every completion committed. N jobs queued beforehand.
  cold start  exec -> the start timestamp that the side's own claim wrote in the database for the one
              queued job (median of 5 runs); ours also exec -> GET /health 200 with body status "ok".
  peak RSS    VmHWM of the worker process once it has run that one job (median of the 5 runs).
  pickup      time.time() just before the enqueue call -> the side's own start timestamp in the database,
              300 jobs at 20/s into an idle worker (concurrency 10) that has already run one warm-up job.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The one place that imports the project's dev helpers.
from app.db.migrate import upgrade  # noqa: E402
from app.devkit.cluster import LocalCluster, free_port, local_dir  # noqa: E402

PEERS_DIR = ROOT / "scripts" / "peers"
REQUIREMENTS = PEERS_DIR / "requirements.txt"
PEERS_VENV = ROOT / ".local" / "peers-venv"
PEERS_PY = PEERS_VENV / "bin" / "python"
LOG_DIR = ROOT / ".local" / "bench-peers"
JSON_OUT = ROOT / "docs" / "benchmarks-peers.json"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- peers:begin (scripts/bench peers writes this section) -->", "<!-- peers:end -->"

POLL_S = 0.010  # drain: the database poll that observes the last committed completion
COLD_POLL_S = 0.002  # cold start: /health and database polls


# -- sides
@dataclass
class Side:
    key: str
    label: str
    unfinished: str  # SELECT EXISTS(...): some job still queued or running
    finished: str  # SELECT count(*): jobs finished successfully
    started: str  # SELECT id::text, epoch of the side's own start timestamp
    program: str | None = None  # scripts/peers/<program>.py, run in the peers venv
    env: dict[str, str] = field(default_factory=dict)
    package: str | None = None
    version: str = ""
    durability: str = ""
    sync: str = "on (server default)"  # synchronous_commit of the worker's commits, for the table


OURS_SQL = dict(
    # Two EXISTS, one per partial index (queued, running): the poll must not scan finished rows.
    unfinished="SELECT EXISTS (SELECT 1 FROM dispatch.jobs WHERE status = 'queued') "
               "OR EXISTS (SELECT 1 FROM dispatch.jobs WHERE status = 'running')",
    finished="SELECT count(*) FROM dispatch.jobs WHERE status = 'succeeded'",
    started="SELECT id::text, extract(epoch FROM started_at)::float8 FROM dispatch.jobs WHERE started_at IS NOT NULL",
)


def sides() -> list[Side]:
    return [
        Side("ours_sync_on", "ours (sync on)", env={"DISPATCH_WORKER_SYNCHRONOUS_COMMIT": "on"}, sync="on",
             durability="synchronous_commit=on (DISPATCH_WORKER_SYNCHRONOUS_COMMIT=on)", **OURS_SQL),
        Side("ours_sync_off", "ours (sync off)", env={"DISPATCH_WORKER_SYNCHRONOUS_COMMIT": "off"}, sync="off",
             durability="synchronous_commit=off for the worker's own transitions "
                        "(DISPATCH_WORKER_SYNCHRONOUS_COMMIT=off; the shipped default is on)", **OURS_SQL),
        Side("pgqueuer", "PGQueuer", program="pgqueuer_peer", package="pgqueuer",
             durability="synchronous_commit=on (server default; PGQueuer sets none), tables LOGGED "
                        "(durability 'durable', its default)",
             unfinished="SELECT EXISTS (SELECT 1 FROM pgqueuer WHERE status IN ('queued', 'picked'))",
             finished="SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'",
             started="SELECT job_id::text, extract(epoch FROM min(created))::float8 FROM pgqueuer_log "
                     "WHERE status = 'picked' GROUP BY job_id"),
        Side("procrastinate", "Procrastinate", program="procrastinate_peer", package="procrastinate",
             durability="synchronous_commit=on (server default; Procrastinate sets none)",
             unfinished="SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))",
             finished="SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
             started="SELECT job_id::text, extract(epoch FROM min(at))::float8 FROM procrastinate_events "
                     "WHERE type = 'started' GROUP BY job_id"),
        Side("chancy", "Chancy", program="chancy_peer", package="chancy",
             durability="synchronous_commit=on (server default; Chancy sets none); completions batched "
                        "by the worker every 1 s (its send_outgoing_interval)",
             unfinished="SELECT EXISTS (SELECT 1 FROM chancy_jobs WHERE state IN ('pending', 'running', 'retrying'))",
             finished="SELECT count(*) FROM chancy_jobs WHERE state = 'succeeded'",
             started="SELECT id::text, extract(epoch FROM started_at)::float8 FROM chancy_jobs "
                     "WHERE started_at IS NOT NULL"),
    ]


# -- the peers' virtualenv (setup, not the benchmark: the only step that leaves loopback)
def ensure_peers_venv() -> None:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = PEERS_VENV / ".installed"
    if PEERS_PY.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return
    print(f"installing the peers into {PEERS_VENV.relative_to(ROOT)} (pinned: {REQUIREMENTS.relative_to(ROOT)}) ...",
          file=sys.stderr)
    if not PEERS_PY.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run([str(PEERS_PY), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(digest + "\n")


def peer_versions(all_sides: list[Side]) -> None:
    code = ("import json, importlib.metadata as m, sys; "
            "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))")
    packages = [s.package for s in all_sides if s.package]
    out = subprocess.run([str(PEERS_PY), "-c", code, *packages, "asyncpg", "psycopg"], check=True,
                         capture_output=True, text=True).stdout
    versions = json.loads(out)
    for s in all_sides:
        if s.package:
            s.version = versions[s.package]
            s.label = f"{s.label} {s.version}"
    peer_versions.drivers = {k: versions[k] for k in ("asyncpg", "psycopg")}  # type: ignore[attr-defined]


# -- the harness
class Harness:
    def __init__(self) -> None:
        self.cluster = LocalCluster(local_dir() / "pg" / "bench-peers", cron_database="postgres")
        self.cluster.ensure()
        self.admin = self.cluster.url("postgres")
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DISPATCH_", "DATABASE_URL"))}

    def server_settings(self) -> dict[str, str]:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            return {name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                    for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level")}

    def fresh_db(self, side: Side) -> str:
        name = f"peers_{side.key}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = str(self.cluster.url(name))
        if side.program is None:
            upgrade(url, pg_cron=False)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("INSERT INTO dispatch.integrations (id, adapter, max_concurrency) "
                             "VALUES ('bench', 'noop', 1000)")
        else:
            self.peer(side, "setup", url)
        return url

    def peer(self, side: Side, command: str, url: str, *args: str) -> str:
        out = subprocess.run([str(PEERS_PY), str(PEERS_DIR / f"{side.program}.py"), command, "--dsn", url, *args],
                             cwd=PEERS_DIR, env=self.env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise SystemExit(f"{side.key} {command} failed:\n{out.stderr[-3000:]}")
        return str(out.stdout)

    def seed(self, side: Side, url: str, count: int, concurrency: int) -> None:
        if side.program is None:
            if count:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) "
                                 "SELECT 'bench', 'sync' FROM generate_series(1, %s)", [count])
        else:
            self.peer(side, "seed", url, "--count", str(count), "--concurrency", str(concurrency))

    def settle(self, url: str) -> None:
        """Same starting state for every side: statistics fresh, no checkpoint owed."""
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")

    def spawn(self, side: Side, url: str, concurrency: int, tag: str) -> tuple[subprocess.Popen[bytes], int | None]:
        log = (LOG_DIR / f"{side.key}-{tag}.log").open("wb")
        if side.program is None:
            port = free_port()
            cmd = [sys.executable, "-m", "app", "serve", "--port", str(port), "--concurrency", str(concurrency)]
            env = {**self.env, "DATABASE_URL": url, "DISPATCH_LOG_LEVEL": "WARNING", **side.env}
            return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log), port
        cmd = [str(PEERS_PY), str(PEERS_DIR / f"{side.program}.py"), "worker", "--dsn", url,
               "--concurrency", str(concurrency)]
        return subprocess.Popen(cmd, cwd=PEERS_DIR, env=self.env, stdout=log, stderr=log), None


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def scalar(conn: psycopg.Connection[Any], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    return row[0] if row else None


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float, interval: float,
             what: str) -> float:
    """Poll until check() holds; returns time.perf_counter() just after the poll that saw it."""
    deadline = time.perf_counter() + timeout
    while True:
        if check():
            return time.perf_counter()
        if proc.poll() is not None:
            raise SystemExit(f"worker exited (code {proc.returncode}) while waiting for {what}; see {LOG_DIR}")
        if time.perf_counter() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


def _at_least(conn: psycopg.Connection[Any], sql: str, n: int) -> bool:
    return bool(scalar(conn, sql) >= n)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- figures
def bench_drain(h: Harness, side: Side, concurrency: int, jobs: int) -> dict[str, Any]:
    url = h.fresh_db(side)
    h.seed(side, url, jobs, concurrency)
    h.settle(url)
    with psycopg.connect(url, autocommit=True) as conn:
        # The poll costs every side only what its indexes allow: with the statistics taken when
        # the queue was full, the planner would scan the finished rows in front of the queued ones.
        conn.execute("SET enable_seqscan = off")
        load = load1()
        t0 = time.perf_counter()
        proc, _ = h.spawn(side, url, concurrency, f"drain{concurrency}")
        try:
            t1 = wait_for(lambda: not scalar(conn, side.unfinished) and scalar(conn, side.finished) >= jobs,
                          proc, 900, POLL_S, f"{side.key} to drain {jobs} jobs")
            rss = vm_hwm_mb(proc.pid)
        finally:
            stop(proc)
        finished = int(scalar(conn, side.finished))
    seconds = t1 - t0
    return {"jobs": jobs, "finished": finished, "concurrency": concurrency, "seconds": round(seconds, 3),
            "jobs_per_s": round(jobs / seconds), "peak_rss_mb": rss, "load1_before": load}


def bench_cold_start(h: Harness, side: Side, runs: int) -> dict[str, Any]:
    url = h.fresh_db(side)
    h.seed(side, url, 0, 10)
    starts_ms: list[float] = []
    health_ms: list[float] = []
    rss: list[float] = []
    loads: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn, httpx.Client() as client:
        for i in range(runs):
            h.seed(side, url, 1, 10)
            h.settle(url)
            seen = {r[0] for r in conn.execute(side.started).fetchall()}
            loads.append(load1())
            t_exec = time.time()
            p0 = time.perf_counter()
            proc, port = h.spawn(side, url, 10, f"cold{i}")
            try:
                if port is not None:
                    def healthy(port: int = port) -> bool:
                        try:
                            r = client.get(f"http://127.0.0.1:{port}/health", timeout=0.5)
                            return r.status_code == 200 and r.json().get("status") == "ok"
                        except (httpx.HTTPError, ValueError):
                            return False
                    health_ms.append((wait_for(healthy, proc, 60, COLD_POLL_S, f"{side.key} /health ok") - p0) * 1000)
                wait_for(functools.partial(_at_least, conn, side.finished, i + 1), proc, 60, COLD_POLL_S,
                         f"{side.key} to run its first job")
                rss.append(vm_hwm_mb(proc.pid))
            finally:
                stop(proc)
            new = [float(t) for job_id, t in conn.execute(side.started).fetchall() if job_id not in seen]
            starts_ms.append((min(new) - t_exec) * 1000)
    out: dict[str, Any] = {"median_ms": round(statistics.median(starts_ms), 1),
                           "runs_ms": [round(t, 1) for t in starts_ms],
                           "peak_rss_mb": round(statistics.median(rss), 1), "peak_rss_runs_mb": rss,
                           "load1_before": loads}
    if health_ms:
        out["health_ok_median_ms"] = round(statistics.median(health_ms), 1)
        out["health_ok_runs_ms"] = [round(t, 1) for t in health_ms]
    return out


def bench_pickup(h: Harness, side: Side, count: int, rate: float) -> dict[str, Any]:
    url = h.fresh_db(side)
    h.seed(side, url, 1, 10)  # one warm-up job: the worker is ready once it has run it
    h.settle(url)
    with psycopg.connect(url, autocommit=True) as conn:
        proc, _ = h.spawn(side, url, 10, "pickup")
        try:
            wait_for(lambda: scalar(conn, side.finished) >= 1, proc, 60, 0.05, f"{side.key} warm-up job")
            time.sleep(1.0)  # idle
            load = load1()
            if side.program is None:
                sent = _produce_ours(conn, count, rate)
            else:
                sent = json.loads(h.peer(side, "produce", url, "--count", str(count), "--rate", str(rate)))
            wait_for(lambda: scalar(conn, side.finished) >= count + 1, proc, 120, 0.05, f"{side.key} pickup jobs")
        finally:
            stop(proc)
        started = {job_id: float(t) for job_id, t in conn.execute(side.started).fetchall()}
    lat = [(started[job_id] - t) * 1000 for job_id, t in sent.items()]
    return {"n": len(lat), "unit": "ms", **{f"p{p}": round(percentile(lat, p), 2) for p in (50, 95, 99)},
            "max": round(max(lat), 2), "load1_before": load}


def _produce_ours(conn: psycopg.Connection[Any], count: int, rate: float) -> dict[str, float]:
    sent: dict[str, float] = {}
    start = time.time()
    for i in range(count):
        delay = start + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        t = time.time()
        job_id = scalar(conn, "INSERT INTO dispatch.jobs (integration_id, kind) VALUES ('bench', 'sync') RETURNING id")
        sent[str(job_id)] = t
    return sent


# -- the table
ROWS: list[tuple[str, str, Callable[[dict[str, Any]], float | None], bool]] = [
    # (figure, unit, getter over one side's results, higher is better)
    ("drain {jobs:,} no-op jobs, concurrency 10 (exec → last completion committed)", "jobs/s",
     lambda r: r.get("drain_10", {}).get("jobs_per_s"), True),
    ("drain {jobs:,} no-op jobs, concurrency 50 (exec → last completion committed)", "jobs/s",
     lambda r: r.get("drain_50", {}).get("jobs_per_s"), True),
    ("cold start, exec → first queued job started (median of {runs})", "ms",
     lambda r: r.get("cold_start", {}).get("median_ms"), False),
    ("cold start, exec → /health 200 status ok (median of {runs})", "ms",
     lambda r: r.get("cold_start", {}).get("health_ok_median_ms"), False),
    ("peak RSS of the worker, one job (VmHWM, median of {runs})", "MB",
     lambda r: r.get("cold_start", {}).get("peak_rss_mb"), False),
    ("pickup at idle p50, before enqueue call → started (300 at 20/s)", "ms",
     lambda r: r.get("pickup", {}).get("p50"), False),
    ("pickup at idle p99, before enqueue call → started (300 at 20/s)", "ms",
     lambda r: r.get("pickup", {}).get("p99"), False),
]


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "jobs/s":
        return f"{v:,.0f} {unit}"
    return f"{v:,.1f} {unit}" if unit == "MB" or v >= 100 else f"{v:,.2f} {unit}"


def table(results: dict[str, Any], all_sides: list[Side], jobs: int, runs: int) -> tuple[str, dict[str, Any]]:
    peers = [s for s in all_sides if s.program]
    head = ["figure", *(s.label for s in all_sides), "ratio ours (sync on) / best peer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ratios: dict[str, Any] = {}
    lines.append("| synchronous_commit of the worker's commits | " + " | ".join(s.sync for s in all_sides) + " | — |")
    for template, unit, get, higher in ROWS:
        figure = template.format(jobs=jobs, runs=runs)
        values = {s.key: get(results.get(s.key, {})) for s in all_sides}
        peer_vals = [(values[s.key], s.label) for s in peers if values[s.key] is not None]
        cell = "—"
        ours = values.get("ours_sync_on")
        off = values.get("ours_sync_off")
        if peer_vals and ours is not None:
            best, best_label = (max if higher else min)(peer_vals)
            ratio = ours / best if best else float("nan")
            ahead = ratio >= 1 if higher else ratio <= 1
            cell = f"{ratio:.2f} vs {best_label} ({'ours ahead' if ahead else 'ours behind'}; " \
                   f"{'higher' if higher else 'lower'} is better)"
            ratios[figure] = {"ours_sync_on": ours, "best_peer": best_label, "best_peer_value": best,
                              "ratio": round(ratio, 3), "ours_ahead": ahead,
                              "ratio_sync_off": round(off / best, 3) if off is not None and best else None}
        lines.append("| " + " | ".join([f"{figure}", *(_fmt(values[s.key], unit) for s in all_sides), cell]) + " |")
    return "\n".join(lines), ratios


def doc_section(report: dict[str, Any], tbl: str, all_sides: list[Side]) -> str:
    m = report["machine"]
    srv = report["server"]
    loads = [x for side in report.get("results", {}).values() for fig in side.values()
             for x in (fig.get("load1_before") if isinstance(fig.get("load1_before"), list)
                       else [fig.get("load1_before")]) if x is not None]
    notes = [f"- **{s.label}**: {s.durability}." for s in all_sides]
    return "\n".join([
        BEGIN,
        "## Side by side with the peers",
        "",
        "One run, one harness, one throwaway durable PostgreSQL cluster (a database per side), the same job "
        "count, concurrency and clock endpoints for every side. Reproduce with:",
        "",
        "```sh",
        "scripts/bench peers            # installs the pinned peers into .local/peers-venv, runs everything,",
        "                               # rewrites this section and docs/benchmarks-peers.json (about 8 minutes)",
        "scripts/bench peers --only drain --no-docs   # one figure, printed only",
        "```",
        "",
        f"Run at {m['at']} on {m['cpus']} CPUs, Python {m['python']}, PostgreSQL {srv['server_version']} "
        f"(fsync={srv['fsync']}, synchronous_commit={srv['synchronous_commit']}, "
        f"full_page_writes={srv['full_page_writes']}). Load average (1/5/15 min) before: "
        f"{' / '.join(map(str, m['loadavg_before']))}, after: {' / '.join(map(str, m['loadavg_after']))}; "
        f"the 1-minute load before each measurement ranged {min(loads, default=0):.2f}–{max(loads, default=0):.2f} "
        "(a shared machine: other work ran at the same time, so treat differences of a few tens of percent, "
        "and every p99, as noise; each figure's JSON has its load).",
        "",
        tbl,
        "",
        "How each figure is clocked (identical for every side):",
        "",
        "- **drain**: N = 20,000 no-op jobs queued beforehand (then `VACUUM ANALYZE` and `CHECKPOINT`); one "
        "worker process; the clock starts at the worker's exec (not a ready signal) and stops when the harness's "
        "poll of the database (every 10 ms) first sees no job queued or running and N finished jobs, so every "
        "completion is committed. Start-up is inside the window.",
        "- **cold start**: one job queued, exec → the start timestamp that the side's own claim wrote in the "
        "database (ours `dispatch.jobs.started_at` = `clock_timestamp()` in the claim; PGQueuer the `picked` row "
        "of `pgqueuer_log`, Procrastinate the `started` row of `procrastinate_events`, Chancy "
        "`chancy_jobs.started_at`, each `now()` of the claiming transaction, a hair earlier than ours). "
        "Ours also exec → `GET /health` 200 with body status `ok` (the peers have no HTTP endpoint).",
        "- **peak RSS**: `VmHWM` from `/proc/<pid>/status` of the worker process after that one job finished.",
        "- **pickup**: an idle worker (concurrency 10, one warm-up job done, 1 s idle); 300 jobs at 20/s, one "
        "enqueue call each through the side's own API (ours an `INSERT` into `dispatch.jobs`; PGQueuer "
        "`Queries.enqueue`, Procrastinate `defer_async`, Chancy `push`); latency from `time.time()` just before the "
        "call to the same start timestamp as the cold start.",
        "",
        "Durability of each side (the server's `synchronous_commit` is on; only ours changes it, per connection):",
        "",
        *notes,
        "",
        "Concurrency of each side: ours `--concurrency C`; PGQueuer `max_concurrent_tasks=C, batch_size=C/2` "
        "(it requires max ≥ 2 × batch); Procrastinate `concurrency=C`; Chancy a queue with `concurrency=C`, the "
        "AsyncExecutor (its default is a process pool), `eager_polling=True`, `polling_interval=1`. Every peer "
        "runs an async no-op task with its defaults otherwise (LISTEN/NOTIFY, plugins, connections: PGQueuer "
        "one asyncpg connection, Procrastinate a psycopg pool of 4, Chancy a pool of 1–10; ours a pool of 2–8); "
        "every side logs at WARNING (Chancy's own logger defaults to DEBUG, a line per job). Peer versions and "
        f"drivers: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}; pinned in "
        "`scripts/peers/requirements.txt`, worker programs in `scripts/peers/`.",
        "",
        "Raw figures: [`benchmarks-peers.json`](benchmarks-peers.json). The sections below are the project's "
        "own benchmarks (`scripts/bench`), whose windows are not comparable with these.",
        END,
    ])


def update_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = before + section + after
    else:
        first, _, rest = text.partition("\n")
        text = f"{first}\n\n{section}\n{rest}" if first.startswith("# ") else f"{section}\n\n{text}"
    DOC.write_text(text)


FIGURES = ("drain", "cold_start", "pickup")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES), help="figures to run")
    parser.add_argument("--sides", nargs="+", help="side keys to run (default: all)")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks*.{md,json}")
    parser.add_argument("--rewrite-docs", action="store_true",
                        help="only rebuild the docs/benchmarks.md section from docs/benchmarks-peers.json")
    args = parser.parse_args(argv)
    if args.rewrite_docs:
        saved: dict[str, Any] = json.loads(JSON_OUT.read_text())
        all_sides = sides()
        for s in all_sides:
            if s.package:
                s.version = saved["versions"][s.package]
                s.label = f"{s.label} {s.version}"
        tbl, _ = table(saved["results"], all_sides, saved.get("jobs", args.jobs),
                       saved.get("cold_runs", args.cold_runs))
        update_doc(doc_section(saved, tbl, all_sides))
        print(tbl)
        return 0

    ensure_peers_venv()
    all_sides = sides()
    peer_versions(all_sides)
    chosen = [s for s in all_sides if not args.sides or s.key in args.sides]
    h = Harness()
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "loadavg_before": [round(x, 2) for x in os.getloadavg()]},
        "server": h.server_settings(),
        "versions": {**{s.package: s.version for s in all_sides if s.package},
                     **peer_versions.drivers},  # type: ignore[attr-defined]
        "durability": {s.key: s.durability for s in all_sides},
        "jobs": args.jobs, "cold_runs": args.cold_runs,
        "clock": {"drain": "exec of the worker process -> database poll (10 ms) sees no job queued/running and N "
                           "finished", "cold_start": "exec -> side's own start timestamp in the database",
                  "pickup": "time.time() just before the enqueue call -> side's own start timestamp"},
    }
    results: dict[str, dict[str, Any]] = {s.key: {} for s in chosen}
    plan: list[tuple[str, Callable[..., dict[str, Any]]]] = []
    if "drain" in args.only:
        plan += [(f"drain_{c}", functools.partial(bench_drain, h, concurrency=c, jobs=args.jobs)) for c in (10, 50)]
    if "cold_start" in args.only:
        plan.append(("cold_start", functools.partial(bench_cold_start, h, runs=args.cold_runs)))
    if "pickup" in args.only:
        plan.append(("pickup", functools.partial(bench_pickup, h, count=300, rate=20.0)))
    for name, run in plan:
        for side in chosen:
            print(f"{name} {side.key} (load {load1()}) ...", file=sys.stderr, flush=True)
            results[side.key][name] = run(side=side)
            print(f"  {json.dumps(results[side.key][name])[:240]}", file=sys.stderr, flush=True)
    report["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report["results"] = results
    tbl, ratios = table(results, [s for s in all_sides if s.key in results], args.jobs, args.cold_runs)
    report["ratios"] = ratios
    print(tbl)
    print(f"\nload average before {report['machine']['loadavg_before']}, after {report['machine']['loadavg_after']}; "
          f"server {report['server']}")
    if not args.no_docs and set(args.only) == set(FIGURES) and not args.sides:
        JSON_OUT.write_text(json.dumps(report, indent=2) + "\n")
        update_doc(doc_section(report, tbl, all_sides))
        print(f"wrote {JSON_OUT.relative_to(ROOT)} and {DOC.relative_to(ROOT)}", file=sys.stderr)
    elif not args.no_docs:
        print("(a partial run: docs not written)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
