"""The jobs table, the ledger and enqueue(), against a real PostgreSQL."""

from __future__ import annotations

import threading

import psycopg
import pytest

pytestmark = pytest.mark.integration


def test_plain_insert__gets_defaults_and_a_ledger_key(conn: psycopg.Connection, integration: str) -> None:
    row = conn.execute(
        "INSERT INTO dispatch.jobs (integration_id, kind, payload) VALUES ('x', 'sync', '{}') "
        "RETURNING id, status, idempotency_key, scheduled_for = run_after, attempts"
    ).fetchone()
    assert row is not None
    job_id, status, key, same, attempts = row
    assert (status, key, same, attempts) == ("queued", f"job:{job_id}", True, 0)
    ledger = conn.execute("SELECT job_id, state FROM dispatch.idempotency_keys WHERE key = %s", [key]).fetchone()
    assert ledger == (job_id, "pending")


def test_plain_insert__notifies_once_per_statement_after_commit(db_url: str, integration: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener, psycopg.connect(db_url) as writer:
        listener.execute("LISTEN dispatch_jobs")
        writer.execute("INSERT INTO dispatch.jobs (integration_id, kind) SELECT 'x', 'sync' FROM generate_series(1, 5)")
        assert list(listener.notifies(timeout=0.2, stop_after=1)) == []  # not before commit
        writer.commit()
        got = list(listener.notifies(timeout=2, stop_after=1))
        assert [n.channel for n in got] == ["dispatch_jobs"]
        assert list(listener.notifies(timeout=0.2, stop_after=1)) == []  # one, not five


def test_enqueue__repeated_key_returns_first_job(conn: psycopg.Connection, integration: str) -> None:
    first = conn.execute("SELECT dispatch.enqueue('x', 'export', '{}', idempotency_key => 'k')").fetchone()
    again = conn.execute("SELECT dispatch.enqueue('x', 'export', '{\"other\": 1}', idempotency_key => 'k')").fetchone()
    assert first == again
    assert conn.execute("SELECT count(*) FROM dispatch.jobs").fetchone() == (1,)


def test_enqueue__concurrent_callers_with_one_key_make_one_row(db_url: str, conn: psycopg.Connection,
                                                              integration: str) -> None:
    barrier = threading.Barrier(16)
    ids: list[int] = []

    def call() -> None:
        with psycopg.connect(db_url, autocommit=True) as c:
            barrier.wait()
            row = c.execute("SELECT dispatch.enqueue('x', 'export', '{}', idempotency_key => 'same')").fetchone()
            assert row is not None
            ids.append(row[0])

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 16 and len(set(ids)) == 1
    assert conn.execute("SELECT count(*) FROM dispatch.jobs").fetchone() == (1,)


def test_ledger__outlives_job_retention(conn: psycopg.Connection, integration: str) -> None:
    job = conn.execute("SELECT dispatch.enqueue('x', 'export', '{}', idempotency_key => 'kept')").fetchone()
    conn.execute("DELETE FROM dispatch.jobs")
    assert conn.execute("SELECT dispatch.enqueue('x', 'export', '{}', idempotency_key => 'kept')").fetchone() == job
    assert conn.execute("SELECT count(*) FROM dispatch.jobs").fetchone() == (0,)
    with pytest.raises(psycopg.errors.UniqueViolation, match="idempotency key already used"):
        conn.execute("INSERT INTO dispatch.jobs (integration_id, kind, idempotency_key) VALUES ('x', 'export', 'kept')")


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ("'nope', 'sync'", psycopg.errors.ForeignKeyViolation, 'unknown integration "nope"'),
        ("'x', ''", psycopg.errors.CheckViolation, "job kind is empty"),
        ("'x', 'sync', '[1, 2]'", psycopg.errors.InvalidParameterValue, "payload must be a JSON object"),
        ("'x', 'Bad Kind'", psycopg.errors.CheckViolation, "jobs_kind_format"),
    ],
)
def test_enqueue__bad_input_is_a_clear_error(conn: psycopg.Connection, integration: str, args: str,
                                             error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        conn.execute(f"SELECT dispatch.enqueue({args})")


def test_failed_job__raises_alert_and_updates_ledger(conn: psycopg.Connection, integration: str) -> None:
    (job_id,) = conn.execute("SELECT dispatch.enqueue('x', 'sync')").fetchone() or (0,)
    conn.execute("UPDATE dispatch.jobs SET status = 'failed', last_error = 'boom' WHERE id = %s", [job_id])
    alert = conn.execute("SELECT kind, subject FROM dispatch.open_alerts").fetchall()
    assert alert == [("job_failed", f"job:{job_id}")]
    assert conn.execute("SELECT state FROM dispatch.idempotency_keys").fetchone() == ("failed",)
    conn.execute("UPDATE dispatch.jobs SET status = 'queued' WHERE id = %s", [job_id])
    assert conn.execute("SELECT count(*) FROM dispatch.open_alerts").fetchone() == (0,)
    assert conn.execute("SELECT state FROM dispatch.idempotency_keys").fetchone() == ("pending",)


def test_prune_jobs__removes_old_finished_jobs_and_keeps_the_ledger(conn: psycopg.Connection, integration: str) -> None:
    (old,) = conn.execute("SELECT dispatch.enqueue('x', 'export', '{}', idempotency_key => 'old')").fetchone() or (0,)
    conn.execute("SELECT dispatch.enqueue('x', 'export', '{}', idempotency_key => 'queued')")
    conn.execute("UPDATE dispatch.jobs SET status = 'succeeded', finished_at = now() - interval '40 days' "
                 "WHERE id = %s", [old])
    assert conn.execute("SELECT dispatch.prune_jobs(interval '30 days')").fetchone() == (1,)
    assert conn.execute("SELECT idempotency_key FROM dispatch.jobs").fetchall() == [("queued",)]
    assert conn.execute("SELECT state FROM dispatch.idempotency_keys WHERE key = 'old'").fetchone() == ("succeeded",)
    assert conn.execute("SELECT dispatch.enqueue('x', 'export', '{}', idempotency_key => 'old')").fetchone() == (old,)
