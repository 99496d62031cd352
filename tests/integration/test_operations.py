"""The operator's day from the CLI: bulk retry and cancel, schedule verbs, backfill against the tick, pauses."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from app.db.queries import query
from app.main import main

pytestmark = pytest.mark.integration


class CLI:
    def __init__(self, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.db_url, self.capsys = db_url, capsys

    def __call__(self, *argv: str, code: int = 0) -> tuple[str, str]:
        self.capsys.readouterr()
        rc = main(["--database-url", self.db_url, *argv])
        out, err = self.capsys.readouterr()
        assert rc == code, f"exit {rc}, wanted {code}\nstdout: {out}\nstderr: {err}"
        return out, err

    def json(self, *argv: str) -> Any:
        return json.loads(self(*argv, "--json")[0])


@pytest.fixture
def cli(db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CLI:
    monkeypatch.setattr("getpass.getuser", lambda: "ops-oncall")
    return CLI(db_url, capsys)


def _failed(conn: psycopg.Connection, integration: str, kind: str, scheduled_for: str, n: int = 1) -> list[int]:
    rows = conn.execute("INSERT INTO dispatch.jobs (integration_id, kind, scheduled_for, status, finished_at, "
                        "attempts, last_error) SELECT %s, %s, %s::timestamptz, 'failed', now(), 5, 'boom' "
                        "FROM generate_series(1, %s) RETURNING id", (integration, kind, scheduled_for, n)).fetchall()
    return [r[0] for r in rows]


def _statuses(conn: psycopg.Connection) -> dict[int, str]:
    return dict(conn.execute("SELECT id, status::text FROM dispatch.jobs").fetchall())  # type: ignore[arg-type]


# -- bulk actions
def test_bulk_retry__dry_run_changes_nothing_and_lists_exactly_what_the_run_changes(
        cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('other', 'noop')")
    last_night = _failed(conn, integration, "export", "2026-11-30T23:00Z", 3)
    _failed(conn, integration, "export", "2026-11-20T23:00Z")          # too early
    _failed(conn, integration, "sync", "2026-11-30T23:00Z")            # another kind
    _failed(conn, "other", "export", "2026-11-30T23:00Z")              # another integration
    before = _statuses(conn)
    filters = ["--integration", integration, "--kind", "export", "--status", "failed",
               "--since", "2026-11-30T00:00:00Z", "--until", "2026-12-01T00:00:00Z"]
    dry = cli.json("jobs", "retry", *filters, "--dry-run")
    assert dry["dry_run"] is True and [j["id"] for j in dry["jobs"]] == last_night
    assert _statuses(conn) == before
    out, _ = cli("jobs", "retry", *filters, "--dry-run")
    assert out.startswith("dry run: 3 job(s) would be queued again (nothing changed)")

    done = cli.json("jobs", "retry", *filters, "--reason", "vendor outage over")
    assert [j["id"] for j in done["jobs"]] == last_night
    assert {i for i, s in _statuses(conn).items() if s != before[i]} == set(last_night)
    actors = conn.execute("SELECT DISTINCT actor, reason FROM dispatch.job_events WHERE event = 'retried'").fetchall()
    assert actors == [("ops-oncall", "vendor outage over")]


def test_bulk__over_the_cap_needs_yes_and_no_filter_is_refused(cli: CLI, conn: psycopg.Connection,
                                                              integration: str) -> None:
    _failed(conn, integration, "export", "2026-11-30T23:00Z", 101)
    _, err = cli("jobs", "retry", "--status", "failed", code=2)
    assert "101 jobs match, more than 100" in err and "--yes" in err
    assert conn.execute("SELECT count(*) FROM dispatch.jobs WHERE status = 'failed'").fetchone() == (101,)
    assert cli.json("jobs", "retry", "--status", "failed", "--yes")["count"] == 101
    _, err = cli("jobs", "cancel", code=2)
    assert "say which jobs" in err
    with pytest.raises(SystemExit):  # a queued job is the queue's: argparse offers failed and cancelled only
        cli("jobs", "retry", "--status", "queued")


def test_bulk_cancel__ids_and_schedule_filter_recorded_with_reason(cli: CLI, conn: psycopg.Connection,
                                                                   integration: str) -> None:
    ids = [cli.json("enqueue", integration, "sync")["job_id"] for _ in range(3)]
    result = cli.json("jobs", "cancel", str(ids[0]), str(ids[1]), "--reason", "duplicate run")
    assert sorted(j["id"] for j in result["jobs"]) == ids[:2]
    assert _statuses(conn)[ids[2]] == "queued"
    events = conn.execute("SELECT job_id, actor, reason FROM dispatch.job_events WHERE event = 'cancelled' "
                          "ORDER BY job_id").fetchall()
    assert events == [(ids[0], "ops-oncall", "duplicate run"), (ids[1], "ops-oncall", "duplicate run")]


# -- schedules
def _hourly(cli: CLI, integration: str, *extra: str) -> int:
    return int(cli.json("schedules", "add", integration, "export", "0 * * * *", *extra)["id"])


def test_backfill__then_the_tick_over_the_same_range_makes_no_job(cli: CLI, conn: psycopg.Connection,
                                                                  integration: str) -> None:
    sid = _hourly(cli, integration)
    dry = cli.json("schedules", "backfill", str(sid), "--from", "2026-11-01T00:00:00Z", "--to",
                   "2026-11-01T05:00:00Z", "--dry-run")
    assert [p["action"] for p in dry["periods"]] == ["create"] * 6
    assert conn.execute("SELECT count(*) FROM dispatch.jobs").fetchone() == (0,)
    done = cli.json("schedules", "backfill", str(sid), "--from", "2026-11-01T00:00:00Z", "--to",
                    "2026-11-01T05:00:00Z", "--reason", "vendor maintenance")
    assert done["created"] == 6
    keys = [p["key"] for p in done["periods"]]
    assert keys[0] == f"{integration}:export:2026-11-01T00:00:00Z"
    payload = conn.execute("SELECT payload, source FROM dispatch.jobs ORDER BY id LIMIT 1").fetchone()
    assert payload[1] == "backfill" and payload[0]["period_end"] == "2026-11-01T00:00:00Z"  # type: ignore[index]

    # The tick walks the same slots (as after a re-enable): every period already has its job.
    conn.execute("UPDATE dispatch.schedules SET next_slot = '2026-11-01T00:00Z', catch_up_window = '60 days' "
                 "WHERE id = %s", (sid,))
    assert conn.execute("SELECT dispatch.tick('2026-11-01T05:00:30Z')").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM dispatch.jobs").fetchone() == (6,)
    assert conn.execute("SELECT count(*) FROM dispatch.open_alerts WHERE kind = 'slot_key_taken'").fetchone() == (0,)

    # Overlapping an exported range: only the missing periods get jobs.
    again = cli.json("schedules", "backfill", str(sid), "--from", "2026-11-01T03:00:00Z", "--to",
                     "2026-11-01T08:00:00Z")
    assert again["created"] == 3
    assert [p["action"] for p in again["periods"]] == ["exists"] * 3 + ["created"] * 3
    assert conn.execute("SELECT count(*), count(DISTINCT idempotency_key) FROM dispatch.jobs").fetchone() == (9, 9)
    action = conn.execute("SELECT actor, reason FROM dispatch.operator_actions WHERE action = 'schedule.backfill' "
                          "ORDER BY id LIMIT 1").fetchone()
    assert action == ("ops-oncall", "vendor maintenance")


def test_backfill__after_the_tick_makes_only_what_the_tick_did_not(cli: CLI, conn: psycopg.Connection,
                                                                  integration: str) -> None:
    sid = int(cli.json("schedules", "add", integration, "export", "0 */6 * * *", "--timezone", "Europe/Oslo")["id"])
    conn.execute("UPDATE dispatch.schedules SET period = 'day', next_slot = '2026-11-02T00:00+01', "
                 "catch_up_window = '60 days' WHERE id = %s", (sid,))
    conn.execute("SELECT dispatch.tick('2026-11-03T00:00:30+01')")
    ticked = {r[0] for r in conn.execute("SELECT idempotency_key FROM dispatch.jobs").fetchall()}
    assert len(ticked) == 2  # the days ending 2 and 3 November, Oslo time
    done = cli.json("schedules", "backfill", str(sid), "--from", "2026-11-01T00:00:00+01:00",
                    "--to", "2026-11-03T23:00:00+01:00")
    assert [p["period_label"] for p in done["periods"]] == ["2026-10-31", "2026-11-01", "2026-11-02"]
    assert [p["action"] for p in done["periods"]] == ["created", "exists", "exists"]
    assert {p["key"] for p in done["periods"][1:]} == ticked


def test_trigger__runs_the_latest_period_once(cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    sid = _hourly(cli, integration)
    first = cli.json("schedules", "trigger", str(sid))
    assert first["created"] == 1 and first["periods"][0]["action"] == "created"
    second = cli.json("schedules", "trigger", str(sid))
    assert second["created"] == 0 and second["periods"][0]["action"] == "exists"
    slot = conn.execute("SELECT scheduled_for FROM dispatch.jobs").fetchone()[0]  # type: ignore[index]
    conn.execute("UPDATE dispatch.schedules SET next_slot = %s WHERE id = %s", (slot, sid))
    conn.execute("SELECT dispatch.tick(%s)", (slot,))
    assert conn.execute("SELECT count(*) FROM dispatch.jobs WHERE scheduled_for = %s", (slot,)).fetchone() == (1,)


def test_schedules__preview_enable_disable_edit_delete(cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    slots = cli.json("schedules", "preview", "30 1 * * 1-5", "--timezone", "Asia/Kolkata", "-n", "4")
    assert len(slots) == 4 and all(s["local"].endswith("01:30:00+05:30") for s in slots)
    _, err = cli("schedules", "preview", "61 * * * *", code=2)
    assert "minute field value 61 out of range" in err
    sid = _hourly(cli, integration)
    out, _ = cli("schedules", "disable", str(sid), "--reason", "vendor maintenance")
    assert "disabled" in out
    assert conn.execute("SELECT enabled FROM dispatch.schedules WHERE id = %s", (sid,)).fetchone() == (False,)
    out, _ = cli("schedules", "enable", str(sid))
    assert "caught up by its policy" in out
    edited = cli.json("schedules", "edit", str(sid), "--cron", "15 3 * * *", "--timezone", "Europe/Oslo")
    assert edited["changed"]["cron"] == {"from": "0 * * * *", "to": "15 3 * * *"}
    assert all(s["local"][11:19] == "03:15:00" for s in edited["next"])
    cli("schedules", "edit", str(sid), code=2)
    job = cli.json("enqueue", integration, "sync")["job_id"]
    conn.execute("UPDATE dispatch.jobs SET schedule_id = %s WHERE id = %s", (sid, job))
    _, err = cli("schedules", "delete", str(sid), code=2)
    assert "--yes" in err and "1 queued job(s) stay queued" in err
    deleted = cli.json("schedules", "delete", str(sid), "--yes", "--cancel-queued", "--reason", "replaced")
    assert deleted["cancelled"] == [job]
    assert conn.execute("SELECT count(*) FROM dispatch.schedules").fetchone() == (0,)
    actions = [r[0] for r in conn.execute("SELECT action FROM dispatch.operator_actions ORDER BY id").fetchall()]
    assert actions == ["schedule.disable", "schedule.enable", "schedule.edit", "schedule.delete"]


# -- integrations
def test_integrations_pause_resume__reason_shown_and_claims_skip_it(cli: CLI, conn: psycopg.Connection,
                                                                    integration: str) -> None:
    job = cli.json("enqueue", integration, "sync")["job_id"]
    with pytest.raises(SystemExit):
        cli("integrations", "pause", integration)
    paused = cli.json("integrations", "pause", integration, "--reason", "vendor maintenance until 06:00")
    assert paused["paused_by"] == "ops-oncall"
    assert conn.execute(query("claim_jobs"), {"worker": "w", "limit": 5, "lease": 30}).fetchall() == []
    health = cli.json("health")["integrations"][0]
    assert health["pause_reason"] == "vendor maintenance until 06:00" and health["enabled"] is False
    out, _ = cli("health")
    assert "paused" in out and "vendor maintenance until 06:00" in out
    assert cli.json("integrations", "list")[0]["paused_by"] == "ops-oncall"
    out, _ = cli("integrations", "resume", integration)
    assert "1 queued job(s) run now" in out and "vendor maintenance" in out
    assert [r[0] for r in conn.execute(query("claim_jobs"), {"worker": "w", "limit": 5, "lease": 30})] == [job]
    assert cli.json("integrations", "list")[0]["paused_at"] is None
