"""Job history (dispatch.job_events): every transition, written by the jobs triggers, shown by `jobs show`."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import errors

from app.db.queries import query
from app.main import main

pytestmark = pytest.mark.integration


def _cli(db_url: str, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(["--database-url", db_url, *argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _claim(conn: psycopg.Connection, worker: str = "w1", lease: float = 30) -> list[int]:
    rows = conn.execute(query("claim_jobs"), {"worker": worker, "limit": 10, "lease": lease}).fetchall()
    return [r[0] for r in rows]


def _events(conn: psycopg.Connection, job_id: int) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT event, status::text, attempt, worker_id, actor, reason, error_class, message "
                        "FROM dispatch.job_timeline(%s)", (job_id,)).fetchall()


def _enqueue(conn: psycopg.Connection, integration: str, max_attempts: int = 5) -> int:
    return conn.execute("INSERT INTO dispatch.jobs (integration_id, kind, max_attempts) VALUES (%s, 'export', %s) "
                        "RETURNING id", (integration, max_attempts)).fetchone()[0]  # type: ignore[index]


def test_history__two_failed_attempts_a_named_retry_and_a_success_in_order(
        conn: psycopg.Connection, db_url: str, integration: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    job = _cli(db_url, capsys, "enqueue", integration, "export", "--max-attempts", "2")["job_id"]
    assert _claim(conn) == [job]
    conn.execute(query("retry_job"), {"id": job, "worker": "w1", "delay": 0, "refund": False,
                                      "error": "vendor 503: try later"})
    assert _claim(conn) == [job]
    conn.execute(query("fail_job"), {"id": job, "worker": "w1",
                                     "error": "vendor 503 (attempt 2 of 2; giving up)"})
    _cli(db_url, capsys, "jobs", "retry", str(job), "--reason", "vendor fixed their API")
    assert _claim(conn, "w2") == [job]
    conn.execute(query("complete_jobs"), {"ids": [job], "finished": [1.8e9], "results": '[{"doc": "INV-1"}]',
                                          "worker": "w2"})

    shown = _cli(db_url, capsys, "jobs", "show", str(job))
    timeline = [(e["event"], e["attempt"], e["worker_id"], e["actor"], e["reason"], e["error_class"])
                for e in shown["events"]]
    assert timeline == [
        ("enqueued", 0, None, "alice", None, None),
        ("claimed", 1, "w1", None, None, None),
        ("attempt_failed", 1, "w1", None, None, "retryable"),
        ("claimed", 2, "w1", None, None, None),
        ("failed", 2, "w1", None, None, "attempts_exhausted"),
        ("retried", 2, None, "alice", "vendor fixed their API", None),
        ("claimed", 1, "w2", None, None, None),
        ("succeeded", 1, "w2", None, None, None),
    ]
    assert shown["events"][2]["message"] == "vendor 503: try later"
    previous = shown["events"][5]["details"]["previous"]
    # The retry resets the row for its new run; the failed run stays on record.
    assert previous["status"] == "failed" and previous["attempts"] == 2 and previous["worker_id"] == "w1"
    assert previous["started_at"] and previous["finished_at"] and "giving up" in previous["last_error"]
    assert shown["status"] == "succeeded"
    capsys.readouterr()
    assert main(["--database-url", db_url, "jobs", "show", str(job)]) == 0
    out = capsys.readouterr().out
    assert "history" in out and "retried" in out and "alice" in out and "vendor fixed their API" in out
    # The API's one-call form holds the same events.
    events = conn.execute(query("job_events_json"), {"id": job}).fetchone()[0]  # type: ignore[index]
    assert [e["event"] for e in events] == [e["event"] for e in shown["events"]]


def test_history__parked_rescued_and_cancelled_at_the_vendor_boundary(conn: psycopg.Connection,
                                                                     integration: str) -> None:
    parked = _enqueue(conn, integration)
    _claim(conn)
    conn.execute(query("retry_job"), {"id": parked, "worker": "w1", "delay": 5, "refund": True,
                                      "error": "circuit open: waiting"})
    assert _events(conn, parked)[-1][:3] == ("parked", "queued", 1)
    assert _events(conn, parked)[-1][6] == "parked"

    conn.execute("UPDATE dispatch.jobs SET status = 'cancelled', finished_at = now() WHERE id = %s", (parked,))
    rescued = _enqueue(conn, integration)
    assert _claim(conn, lease=0.001) == [rescued]
    conn.execute("SELECT pg_sleep(0.01)")
    assert conn.execute("SELECT dispatch.rescue_expired_leases()").fetchone() == (1,)
    event, status, attempt, worker, actor, _, error_class, message = _events(conn, rescued)[-1]
    assert (event, status, attempt, worker, error_class) == ("rescued", "queued", 1, "w1", "lease_expired")
    assert actor.startswith("db:") and message.startswith("lease expired at")

    _claim(conn)
    conn.execute("SELECT set_config('dispatch.actor', 'jwt:user-42', false)")
    conn.execute(query("cli_jobs_cancel_many"), {"ids": [rescued]})
    conn.execute("SELECT set_config('dispatch.actor', '', false)")
    conn.execute(query("cancel_job"), {"id": rescued, "worker": "w1", "error": "cancelled before the vendor write"})
    tail = [(e[0], e[1], e[4]) for e in _events(conn, rescued)[-2:]]
    assert tail == [("cancel_requested", "running", "jwt:user-42"), ("cancelled", "cancelled", None)]


def test_history__error_messages_are_redacted(conn: psycopg.Connection, integration: str) -> None:
    job = _enqueue(conn, integration)
    _claim(conn)
    conn.execute(query("retry_job"), {"id": job, "worker": "w1", "delay": 0, "refund": False,
                                      "error": "HTTPStatusError: 401 for Authorization: Bearer abcdefgh12345678 "
                                               "body {\"access_token\": \"tok-secret-1\"}"})
    (message, details), = conn.execute("SELECT message, details FROM dispatch.job_events WHERE job_id = %s "
                                       "AND event = 'attempt_failed'", (job,)).fetchall()
    assert "abcdefgh12345678" not in message and "tok-secret-1" not in message
    assert "Bearer [redacted]" in message and details["exception"] == "HTTPStatusError"


def test_history__actor_from_set_local_in_the_callers_transaction(conn: psycopg.Connection, db_url: str,
                                                                  integration: str) -> None:
    with psycopg.connect(db_url) as api:  # as an HTTP handler would: one transaction per request
        api.execute("SELECT set_config('dispatch.actor', 'jwt:9f1c-sub', true)")
        job = api.execute("SELECT dispatch.enqueue(%s, 'sync')", (integration,)).fetchone()[0]  # type: ignore[index]
        api.commit()
        plain = api.execute("SELECT dispatch.enqueue(%s, 'sync')", (integration,)).fetchone()[0]  # type: ignore[index]
        api.commit()
    assert _events(conn, job)[0][4] == "jwt:9f1c-sub"
    assert _events(conn, plain)[0][4].startswith("db:")  # SET LOCAL ended with its transaction


def test_history__append_only_and_pruned_with_its_job(conn: psycopg.Connection, integration: str) -> None:
    job = _enqueue(conn, integration)
    other = _enqueue(conn, integration)
    with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
        conn.execute("UPDATE dispatch.job_events SET actor = 'mallory'")
    with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
        conn.execute("DELETE FROM dispatch.job_events WHERE job_id = %s", (job,))
    conn.execute("UPDATE dispatch.jobs SET status = 'succeeded', finished_at = now() - interval '40 days' "
                 "WHERE id = %s", (job,))
    assert conn.execute("SELECT dispatch.prune_jobs(interval '30 days')").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM dispatch.job_events WHERE job_id = %s", (job,)).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM dispatch.job_events WHERE job_id = %s", (other,)).fetchone() == (1,)


def test_history__the_daemon_role_writes_it_through_the_triggers(conn: psycopg.Connection, db_url: str,
                                                                 integration: str) -> None:
    job = _enqueue(conn, integration)
    with psycopg.connect(db_url, autocommit=True) as worker:
        worker.execute("SET ROLE dispatch_worker")
        assert _claim(worker) == [job]
        assert worker.execute(query("complete_jobs"), {"ids": [job], "finished": [1.8e9], "results": "[{}]",
                                                       "worker": "w1"}).fetchall() == [(job,)]
        with pytest.raises(errors.InsufficientPrivilege):
            worker.execute("DELETE FROM dispatch.job_events")
    assert [e[0] for e in _events(conn, job)] == ["enqueued", "claimed", "succeeded"]


def test_history__lease_renewals_write_no_event(conn: psycopg.Connection, integration: str) -> None:
    job = _enqueue(conn, integration)
    _claim(conn)
    for _ in range(3):
        conn.execute(query("renew_leases"), {"ids": [job], "worker": "w1", "lease": 30})
    assert [e[0] for e in _events(conn, job)] == ["enqueued", "claimed"]


def test_history__a_batch_of_claims_and_successes_records_each_job_and_its_ledger_row(
        conn: psycopg.Connection, integration: str) -> None:
    """Claims and successes are recorded once per statement (the hot path): every job of the
    batch gets its own event, with the same fields the row triggers write, and its ledger row."""
    jobs = [_enqueue(conn, integration) for _ in range(4)]
    keys = dict(conn.execute("SELECT id, idempotency_key FROM dispatch.jobs WHERE id = ANY(%s)", (jobs,)).fetchall())
    conn.execute("UPDATE dispatch.integrations SET max_concurrency = 10 WHERE id = %s", (integration,))
    assert sorted(_claim(conn)) == jobs
    # One job's lease has run out by the time its success is written: the event says so.
    conn.execute("UPDATE dispatch.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s", (jobs[0],))
    results = json.dumps([{"doc": f"INV-{i}"} for i in range(4)])
    done = conn.execute(query("complete_jobs"), {"ids": jobs, "finished": [1.8e9] * 4, "results": results,
                                                 "worker": "w1"}).fetchall()
    assert sorted(r[0] for r in done) == jobs
    rows = conn.execute("SELECT job_id, event, attempt, worker_id, actor, details FROM dispatch.job_events "
                        "WHERE job_id = ANY(%s) AND event IN ('claimed', 'succeeded') ORDER BY id", (jobs,)).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(j, "claimed") for j in jobs] + [(j, "succeeded") for j in jobs]
    for job_id, event, attempt, worker, actor, details in rows:
        assert (attempt, worker) == (1, "w1")
        if event == "claimed":
            assert set(details) == {"lease_expires_at", "drift_seconds"} and actor is None
        elif job_id == jobs[0]:
            assert set(details) == {"started_at", "seconds", "lease_expired_at"} and actor.startswith("db:")
        else:
            assert set(details) == {"started_at", "seconds"} and actor is None
    ledger = dict(conn.execute("SELECT key, result FROM dispatch.idempotency_keys WHERE key = ANY(%s) "
                               "AND state = 'succeeded'", (list(keys.values()),)).fetchall())
    assert {ledger[keys[j]]["doc"] for j in jobs} == {"INV-0", "INV-1", "INV-2", "INV-3"}
    # Every other transition is still a row trigger's: exactly one event each, none twice.
    conn.execute("UPDATE dispatch.jobs SET status = 'queued', finished_at = NULL WHERE id = %s", (jobs[1],))
    assert [e[0] for e in _events(conn, jobs[1])] == ["enqueued", "claimed", "succeeded", "retried"]
