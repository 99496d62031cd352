"""Retention (dispatch.maintain()): each table by its own setting, and the ledger keeps what a
repeat, a schedule, a vendor write or the next sync still needs."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

pytestmark = pytest.mark.integration


def _set(conn: psycopg.Connection, **days: str) -> None:
    for key, value in days.items():
        conn.execute("INSERT INTO dispatch.settings (key, value) VALUES (%s, %s) "
                     "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", [key, value])


def _job(conn: psycopg.Connection, kind: str = "sync", key: str | None = None) -> int:
    row = conn.execute("SELECT dispatch.enqueue('x', %s, '{}', idempotency_key => %s)", [kind, key]).fetchone()
    assert row is not None
    return int(row[0])


def _finish(conn: psycopg.Connection, job_id: int, hours_ago: float, result: str = '{"ok": true}',
            status: str = "succeeded") -> None:
    conn.execute("UPDATE dispatch.jobs SET status = %s, result = %s::jsonb, "
                 "finished_at = now() - make_interval(secs => %s * 3600) WHERE id = %s",
                 [status, result, hours_ago, job_id])


def _ledger(conn: psycopg.Connection) -> dict[str, Any]:
    return {key: (state, result) for key, state, result in
            conn.execute("SELECT key, state, result FROM dispatch.idempotency_keys ORDER BY key")}


def _maintain(conn: psycopg.Connection) -> None:
    conn.execute("SELECT dispatch.maintain()")


def test_maintain__prunes_jobs_after_job_retention_days_fractions_included(conn: psycopg.Connection,
                                                                           integration: str) -> None:
    _set(conn, job_retention_days="0.05")  # 72 minutes
    old, recent, queued = _job(conn), _job(conn), _job(conn)
    _finish(conn, old, hours_ago=2)
    _finish(conn, recent, hours_ago=1)
    _maintain(conn)
    assert [r[0] for r in conn.execute("SELECT id FROM dispatch.jobs ORDER BY id")] == [recent, queued]
    assert conn.execute("SELECT count(*) FROM dispatch.job_events WHERE job_id = %s", [old]).fetchone() == (0,)
    assert conn.execute("SELECT count(*) > 0 FROM dispatch.job_events WHERE job_id = %s", [recent]).fetchone() == (
        True,)


def test_prune_jobs__a_jobs_own_key_leaves_with_it_callers_keys_stay(conn: psycopg.Connection,
                                                                     integration: str) -> None:
    own, keyed = _job(conn), _job(conn, "export", key="acme:invoice-17")
    for job_id in (own, keyed):
        _finish(conn, job_id, hours_ago=24 * 40)
    assert conn.execute("SELECT dispatch.prune_jobs(interval '30 days')").fetchone() == (2,)
    assert _ledger(conn) == {"acme:invoice-17": ("succeeded", {"ok": True})}
    # The caller's key is still spent: a repeat returns the first job and creates nothing.
    assert _job(conn, "export", key="acme:invoice-17") == keyed
    assert conn.execute("SELECT count(*) FROM dispatch.jobs").fetchone() == (0,)


def test_caller_key__the_jobs_own_namespace_is_reserved(conn: psycopg.Connection, integration: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=r'"job:7" is reserved'):
        _job(conn, key="job:7")
    with pytest.raises(psycopg.errors.CheckViolation, match=r'"job:8" is reserved'):
        conn.execute("INSERT INTO dispatch.jobs (integration_id, kind, idempotency_key) VALUES ('x', 'sync', 'job:8')")
    job_id = _job(conn)  # no key: it gets its own
    assert conn.execute("SELECT idempotency_key FROM dispatch.jobs").fetchone() == (f"job:{job_id}",)


def test_prune_jobs__a_key_a_vendor_write_was_recorded_under_stays(conn: psycopg.Connection, integration: str) -> None:
    job_id = _job(conn, "export")
    conn.execute("INSERT INTO dispatch.write_intents (idempotency_key, reference, job_id, worker_id, confirmed_at) "
                 "VALUES (%s, 'ref-1', %s, 'w', now())", [f"job:{job_id}", job_id])
    _finish(conn, job_id, hours_ago=24 * 40)
    assert conn.execute("SELECT dispatch.prune_jobs(interval '30 days')").fetchone() == (1,)
    assert list(_ledger(conn)) == [f"job:{job_id}"]
    assert conn.execute("SELECT reference FROM dispatch.write_intents").fetchall() == [("ref-1",)]


def test_prune_jobs__the_newest_sync_cursor_stays(conn: psycopg.Connection, integration: str) -> None:
    first, second = _job(conn), _job(conn)
    _finish(conn, first, hours_ago=24 * 41, result='{"cursor": "c1"}')
    conn.execute("UPDATE dispatch.idempotency_keys SET updated_at = now() - interval '41 days' WHERE job_id = %s",
                 [first])
    _finish(conn, second, hours_ago=24 * 40, result='{"cursor": "c2"}')
    assert conn.execute("SELECT dispatch.prune_jobs(interval '30 days')").fetchone() == (2,)
    assert _ledger(conn) == {f"job:{second}": ("succeeded", {"cursor": "c2"})}
    cursor = conn.execute("SELECT result->>'cursor' FROM dispatch.idempotency_keys WHERE integration_id = 'x' "
                          "AND kind = 'sync' AND state = 'succeeded' AND result ? 'cursor' "
                          "ORDER BY updated_at DESC LIMIT 1").fetchone()
    assert cursor == ("c2",)


def test_maintain__scheduled_keys_and_their_results_are_never_pruned(conn: psycopg.Connection,
                                                                     integration: str) -> None:
    _set(conn, job_retention_days="0", ledger_result_retention_days="0")
    conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron, next_slot) "
                 "VALUES ('x', 'export', '0 * * * *', '2026-03-02T10:00:00Z')")
    assert conn.execute("SELECT dispatch.tick('2026-03-02T12:00:00Z')").fetchone() == (3,)
    for (job_id,) in conn.execute("SELECT id FROM dispatch.jobs").fetchall():
        _finish(conn, job_id, hours_ago=1, result='{"document": "JE-1"}')
    conn.execute("UPDATE dispatch.idempotency_keys SET updated_at = now() - interval '1000 days'")
    _maintain(conn)
    assert conn.execute("SELECT count(*) FROM dispatch.jobs").fetchone() == (0,)
    ledger = _ledger(conn)
    assert len(ledger) == 3 and all(v == ("succeeded", {"document": "JE-1"}) for v in ledger.values())
    assert conn.execute("SELECT count(*) FROM dispatch.idempotency_keys WHERE slot IS NOT NULL").fetchone() == (3,)
    # The periods are still exported once: a backfill of them finds their keys spent.
    key = min(ledger)
    row = conn.execute("SELECT (dispatch.enqueue_job('x', 'export', '{}', idempotency_key => %s, "
                       "source => 'backfill')).duplicate", [key]).fetchone()
    assert row == (True,)


def test_maintain__clears_callers_results_after_ledger_result_retention_days(conn: psycopg.Connection,
                                                                             integration: str) -> None:
    _set(conn, ledger_result_retention_days="10")
    old, recent = _job(conn, "export", key="old-export"), _job(conn, "export", key="recent-export")
    own = _job(conn, "export")
    for job_id in (old, recent, own):
        _finish(conn, job_id, hours_ago=1, result='{"document": "D"}')
    conn.execute("UPDATE dispatch.idempotency_keys SET updated_at = now() - interval '11 days' "
                 "WHERE key IN ('old-export', %s)", [f"job:{own}"])
    _maintain(conn)
    assert _ledger(conn) == {"old-export": ("succeeded", None), "recent-export": ("succeeded", {"document": "D"}),
                             f"job:{own}": ("succeeded", {"document": "D"})}  # its job still holds it: kept
    assert _job(conn, "export", key="old-export") == old  # the key itself stays spent
    assert conn.execute("SELECT count(*) FROM dispatch.jobs").fetchone() == (3,)


def test_prune_ledger_results__keeps_the_newest_cursor_of_a_callers_keys(conn: psycopg.Connection,
                                                                         integration: str) -> None:
    first, second = _job(conn, key="sync-1"), _job(conn, key="sync-2")
    _finish(conn, first, hours_ago=1, result='{"cursor": "c1"}')
    _finish(conn, second, hours_ago=1, result='{"cursor": "c2"}')
    conn.execute("UPDATE dispatch.idempotency_keys SET updated_at = now() - "
                 "CASE key WHEN 'sync-1' THEN interval '99 days' ELSE interval '98 days' END")
    assert conn.execute("SELECT dispatch.prune_ledger_results(interval '90 days')").fetchone() == (1,)
    assert _ledger(conn) == {"sync-1": ("succeeded", None), "sync-2": ("succeeded", {"cursor": "c2"})}


def test_maintain__alerts_by_alert_retention_days(conn: psycopg.Connection, integration: str) -> None:
    _set(conn, alert_retention_days="1.5")
    conn.execute("""INSERT INTO dispatch.alerts (kind, subject, message, raised_at, resolved_at) VALUES
        ('drift', 'job:1', 'm', now() - interval '9 days', now() - interval '2 days'),
        ('drift', 'job:2', 'm', now() - interval '9 days', now() - interval '1 day'),
        ('drift', 'job:3', 'm', now() - interval '9 days', NULL)""")
    _maintain(conn)
    assert conn.execute("SELECT subject FROM dispatch.alerts ORDER BY subject").fetchall() == [("job:2",), ("job:3",)]


def test_maintain__workers_by_worker_retention_days(conn: psycopg.Connection, integration: str) -> None:
    _set(conn, worker_retention_days="0.5")
    conn.execute("""INSERT INTO dispatch.workers (id, host, pid, version, heartbeat_at) VALUES
        ('gone', 'h', 1, '0', now() - interval '13 hours'), ('here', 'h', 2, '0', now() - interval '11 hours')""")
    _maintain(conn)
    assert conn.execute("SELECT id FROM dispatch.workers").fetchall() == [("here",)]


def test_maintain__tick_runs_by_tick_runs_retention_days(conn: psycopg.Connection, integration: str) -> None:
    _set(conn, tick_runs_retention_days="2")
    conn.execute("""INSERT INTO dispatch.tick_runs (acting_for, caller, started_at) VALUES
        (now(), 'old', now() - interval '3 days'), (now(), 'new', now() - interval '1 day')""")
    _maintain(conn)
    assert conn.execute("SELECT caller FROM dispatch.tick_runs").fetchall() == [("new",)]


def test_maintain__prunes_a_backlog_larger_than_a_batch_in_one_run(conn: psycopg.Connection,
                                                                   integration: str) -> None:
    _set(conn, job_retention_days="0", prune_batch_size="100", prune_batches_per_run="5")
    conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) SELECT 'x', 'sync' FROM generate_series(1, 450)")
    conn.execute("UPDATE dispatch.jobs SET status = 'succeeded', finished_at = now() - interval '1 second'")
    _maintain(conn)
    counts = conn.execute("SELECT (SELECT count(*) FROM dispatch.jobs), (SELECT count(*) FROM dispatch.job_events), "
                          "(SELECT count(*) FROM dispatch.idempotency_keys)").fetchone()
    assert counts == (0, 0, 0)


def test_retention_settings__every_one_is_documented(conn: psycopg.Connection) -> None:
    rows = conn.execute("SELECT key, description FROM dispatch.settings WHERE key LIKE '%retention_days'").fetchall()
    assert {key for key, _ in rows} == {"job_retention_days", "tick_runs_retention_days", "alert_retention_days",
                                        "worker_retention_days", "ledger_result_retention_days"}
    assert all("fractions of a day allowed" in description for _, description in rows)
