"""Every query a /metrics scrape runs reads indexes, never the history: a plan on 1,000,000
finished jobs (and 100,000 resolved alerts) has no sequential scan of dispatch.jobs,
dispatch.job_events or dispatch.alerts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from app.db.queries import query
from tests.support import ROOT

pytestmark = pytest.mark.integration

FINISHED = 1_000_000
HISTORY = {"jobs", "job_events", "alerts"}


def scrape_queries() -> list[str]:
    """The names app/web/metrics.py reads at scrape time: a new one is covered without listing it here."""
    names = re.findall(r'query\("(\w+)"\)', (ROOT / "app" / "web" / "metrics.py").read_text())
    assert {"metrics_queue_depth", "metrics_integrations", "metrics_open_alerts"} <= set(names)
    return names


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@pytest.fixture
def history(conn: psycopg.Connection) -> psycopg.Connection:
    """50 integrations; 1M finished jobs, a few queued and running; 100k resolved alerts, a few open.

    Loaded as the triggers would leave it but without running them (session_replication_role =
    replica, this session only): the ledger, events and NOTIFY are not what is measured here.
    """
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) "
                 "SELECT 'i' || g, 'noop' FROM generate_series(1, 50) g")
    conn.execute("SET session_replication_role = replica")
    conn.execute("""
        INSERT INTO dispatch.jobs (integration_id, kind, status, scheduled_for, run_after, started_at, finished_at,
                                   attempts, idempotency_key, worker_id, lease_expires_at)
        SELECT 'i' || (1 + g %% 50), 'sync', s.status::dispatch.job_status, t, t,
               CASE WHEN s.status <> 'queued' THEN t END, CASE WHEN s.status NOT IN ('queued', 'running') THEN t END,
               1, 'job:' || g, CASE WHEN s.status = 'running' THEN 'w' END,
               CASE WHEN s.status = 'running' THEN now() + interval '1 minute' END
          FROM generate_series(1, %s + 300) g,
               LATERAL (SELECT now() - make_interval(secs => (%s + 300 - g) / 10.0) AS t,
                               CASE WHEN g > %s + 100 THEN 'queued' WHEN g > %s THEN 'running'
                                    WHEN g %% 100 = 0 THEN 'failed' ELSE 'succeeded' END AS status) s""",
                 [FINISHED, FINISHED, FINISHED, FINISHED])
    conn.execute("""INSERT INTO dispatch.alerts (kind, subject, message, raised_at, resolved_at)
        SELECT CASE WHEN g % 2 = 0 THEN 'drift' ELSE 'job_failed' END, 'job:' || g, 'm', now() - interval '1 day',
               CASE WHEN g > 20 THEN now() - interval '1 hour' END
          FROM generate_series(1, 100000) g""")
    conn.execute("RESET session_replication_role")
    conn.execute("ANALYZE dispatch.jobs, dispatch.alerts, dispatch.integrations, dispatch.job_events")
    return conn


def test_metrics__every_scrape_query_reads_an_index_over_1m_finished_jobs(history: psycopg.Connection) -> None:
    assert history.execute("SELECT count(*) FROM dispatch.jobs WHERE finished_at IS NOT NULL").fetchone() == (
        FINISHED,)
    for name in scrape_queries():
        (raw,) = history.execute("EXPLAIN (FORMAT JSON) " + query(name)).fetchone() or (None,)
        plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
        scans = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes(plan)
                 if "Relation Name" in n]
        assert not [s for s in scans if s[0] == "Seq Scan" and s[1] in HISTORY], f"{name} scans history: {scans}"
        if name != "metrics_integrations":  # one row per integration by design: the label set itself
            assert any(s[2] for s in scans), f"{name} reads no index: {scans}"
    # And the answers are right, from the partial indexes.
    depth = {(i, s): n for i, s, n in history.execute(query("metrics_queue_depth")).fetchall() if n}
    assert sum(n for (_, s), n in depth.items() if s == "queued") == 200
    assert sum(n for (_, s), n in depth.items() if s == "running") == 100
    assert dict(history.execute(query("metrics_open_alerts")).fetchall()) == {"drift": 10, "job_failed": 10}
