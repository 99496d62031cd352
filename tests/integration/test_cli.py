"""The operator CLI, run in-process against a real database."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import psycopg
import pytest

from app.main import main

pytestmark = pytest.mark.integration


class CLI:
    """``integration-dispatch --database-url URL ...`` with its output captured."""

    def __init__(self, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.db_url, self.capsys = db_url, capsys

    def __call__(self, *argv: str, code: int = 0) -> tuple[str, str]:
        self.capsys.readouterr()
        rc = main(["--database-url", self.db_url, *argv])
        out, err = self.capsys.readouterr()
        assert rc == code, f"exit {rc}, wanted {code}\nstdout: {out}\nstderr: {err}"
        return out, err

    def json(self, *argv: str) -> Any:
        out, _ = self(*argv, "--json")
        return json.loads(out)


@pytest.fixture
def cli(db_url: str, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(db_url, capsys)


def _has(conn: psycopg.Connection, regproc: str) -> bool:
    return conn.execute("SELECT to_regproc(%s) IS NOT NULL", (regproc,)).fetchone()[0]  # type: ignore[index]


def _job(conn: psycopg.Connection, job_id: int) -> tuple[Any, ...]:
    row = conn.execute("SELECT status::text, attempts, worker_id, finished_at FROM dispatch.jobs WHERE id = %s",
                       (job_id,)).fetchone()
    assert row is not None
    return row


# -- help
def test_help__every_command_and_option_has_help_text() -> None:
    from app.main import build_parser

    def walk(parser: Any) -> None:
        for action in parser._actions:
            if action.dest != "help":
                assert action.help or action.choices, f"{parser.prog}: {action.dest} has no help"
            if not isinstance(action, argparse._SubParsersAction):
                continue
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{parser.prog} {name} has no help"
                walk(sub)

    walk(build_parser())


# -- enqueue
def test_enqueue__prints_the_job_and_flags_a_repeated_key(cli: CLI, conn: psycopg.Connection,
                                                          integration: str) -> None:
    out, _ = cli("enqueue", integration, "export", "--payload", '{"period": "2024-05"}', "--key", "k1")
    job_id = int(out.split()[1])
    assert out.strip() == f"job {job_id} enqueued"
    again = cli.json("enqueue", integration, "export", "--key", "k1")
    assert again == {"job_id": job_id, "duplicate": True}
    source, payload = conn.execute("SELECT source, payload FROM dispatch.jobs WHERE id = %s", (job_id,)).fetchone()  # type: ignore[misc]
    assert (source, payload) == ("cli", {"period": "2024-05"})


def test_enqueue__scheduled_for_and_priority(cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    job = cli.json("enqueue", integration, "sync", "--scheduled-for", "2030-01-01T00:00:00+01:00", "--priority", "-3")
    row = conn.execute("SELECT scheduled_for = run_after, scheduled_for = '2029-12-31T23:00Z', priority "
                       "FROM dispatch.jobs WHERE id = %s", (job["job_id"],)).fetchone()
    assert row == (True, True, -3)


def test_enqueue__unknown_integration_is_one_line_with_a_hint(cli: CLI) -> None:
    _, err = cli("enqueue", "nope", "sync", code=3)
    lines = err.strip().splitlines()
    assert lines[0] == 'error: unknown integration "nope"'
    assert lines[1].startswith("  hint: add it first") and "integrations add" in lines[1]
    assert "Traceback" not in err


def test_enqueue__bad_payload_says_what_to_do(cli: CLI, integration: str) -> None:
    _, err = cli("enqueue", integration, "sync", "--payload", "[1]", code=2)
    assert err.startswith("error: --payload must be a JSON object") and len(err.strip().splitlines()) == 1
    _, err = cli("enqueue", integration, "sync", "--payload", "{nope", code=2)
    assert "--payload is not valid JSON" in err


def test_enqueue__naive_scheduled_for_is_refused(cli: CLI, integration: str) -> None:
    with pytest.raises(SystemExit) as exc:
        cli("enqueue", integration, "sync", "--scheduled-for", "2030-01-01T00:00:00")
    assert exc.value.code == 64
    assert "no UTC offset" in cli.capsys.readouterr().err


def test_enqueue__wait_times_out_without_a_daemon(cli: CLI, integration: str) -> None:
    _, err = cli("enqueue", integration, "sync", "--wait", "--timeout", "0.3", code=75)
    assert "still queued after 0.3s" in err and "health" in err


def test_enqueue__wait_reports_the_outcome(cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    job = cli.json("enqueue", integration, "sync")
    conn.execute("UPDATE dispatch.jobs SET status = 'failed', last_error = 'vendor said no' WHERE id = %s",
                 (job["job_id"],))
    out, err = cli("jobs", "retry", str(job["job_id"]), "--wait", "--timeout", "0.2", code=75)
    assert "still queued" in err
    conn.execute("UPDATE dispatch.jobs SET status = 'succeeded' WHERE id = %s", (job["job_id"],))
    from app.cli.context import connect
    from app.cli.jobs import wait_for_job

    class Args:
        database_url = cli.db_url

    with connect(Args()) as c:  # type: ignore[arg-type]
        assert wait_for_job(c, job["job_id"], 1)["status"] == "succeeded"


# -- jobs
def test_jobs_list__filters_and_json(cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('y', 'noop')")
    a = cli.json("enqueue", integration, "sync")["job_id"]
    b = cli.json("enqueue", "y", "export")["job_id"]
    conn.execute("UPDATE dispatch.jobs SET status = 'cancelled' WHERE id = %s", (b,))
    assert [j["id"] for j in cli.json("jobs", "list")] == [b, a]
    assert [j["id"] for j in cli.json("jobs", "list", "--status", "cancelled")] == [b]
    assert [j["id"] for j in cli.json("jobs", "list", "--integration", integration)] == [a]
    assert len(cli.json("jobs", "list", "--limit", "1")) == 1
    out, _ = cli("jobs", "list")
    assert out.splitlines()[0].split()[:4] == ["ID", "INTEGRATION_ID", "KIND", "STATUS"]
    assert out.splitlines()[1].split()[:4] == [str(b), "y", "export", "cancelled"]
    out, _ = cli("jobs", "list", "--status", "failed")
    assert out.strip() == "no jobs match"


def test_jobs_show__record_json_and_unknown(cli: CLI, integration: str) -> None:
    job_id = cli.json("enqueue", integration, "sync", "--key", "show-me")["job_id"]
    shown = cli.json("jobs", "show", str(job_id))
    assert shown["id"] == job_id and shown["status"] == "queued" and shown["idempotency_key"] == "show-me"
    out, _ = cli("jobs", "show", str(job_id))
    assert any(line.split()[:2] == ["status", "queued"] for line in out.splitlines())
    _, err = cli("jobs", "show", "999999", code=3)
    assert err.strip() == "error: no job 999999: list jobs with `integration-dispatch jobs list`"


def test_jobs_retry__requeues_a_failed_job_and_notifies(cli: CLI, conn: psycopg.Connection, db_url: str,
                                                         integration: str) -> None:
    job_id = cli.json("enqueue", integration, "sync")["job_id"]
    conn.execute("UPDATE dispatch.jobs SET status = 'failed', attempts = 5, finished_at = now(), "
                 "started_at = now(), worker_id = 'w1', last_error = 'boom' WHERE id = %s", (job_id,))
    assert conn.execute("SELECT count(*) FROM dispatch.open_alerts WHERE kind = 'job_failed'").fetchone() == (1,)
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN dispatch_jobs")
        out, _ = cli("jobs", "retry", str(job_id))
        assert [n.channel for n in listener.notifies(timeout=5, stop_after=1)] == ["dispatch_jobs"]
    assert out.strip().startswith(f"job {job_id} queued again (attempts reset, runs now")
    assert _job(conn, job_id) == ("queued", 0, None, None)
    assert conn.execute("SELECT count(*) FROM dispatch.open_alerts WHERE kind = 'job_failed'").fetchone() == (0,)
    assert conn.execute("SELECT run_after <= now() FROM dispatch.jobs WHERE id = %s", (job_id,)).fetchone() == (True,)


@pytest.mark.parametrize("status", ["queued", "running", "succeeded"])
def test_jobs_retry__refuses_a_job_that_is_not_failed_or_cancelled(cli: CLI, conn: psycopg.Connection,
                                                                    integration: str, status: str) -> None:
    job_id = cli.json("enqueue", integration, "sync")["job_id"]
    conn.execute("UPDATE dispatch.jobs SET status = %s, worker_id = 'w', lease_expires_at = now() + interval '1m' "
                 "WHERE id = %s", (status, job_id))
    _, err = cli("jobs", "retry", str(job_id), code=2)
    assert err.startswith(f"error: job {job_id} is {status} and cannot be retried")
    assert ("new --key" in err) == (status == "succeeded")
    assert _job(conn, job_id)[0] == status
    cli("jobs", "retry", "999999", code=3)


def test_jobs_cancel__queued_at_once_running_is_a_request_its_worker_records(
        cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    queued = cli.json("enqueue", integration, "sync")["job_id"]
    out, _ = cli("jobs", "cancel", str(queued))
    assert out.strip() == f"job {queued} cancelled (was queued)"
    running = cli.json("enqueue", integration, "sync")["job_id"]
    conn.execute("UPDATE dispatch.jobs SET status = 'running', worker_id = 'w1', started_at = now(), "
                 "lease_expires_at = now() + interval '1 minute' WHERE id = %s", (running,))
    result = cli.json("jobs", "cancel", str(running))
    # Not reported as cancelled before its worker stopped the call at the vendor boundary.
    assert result["was"] == "running" and result["status"] == "running" and result["worker_id"] == "w1"
    from app.db.queries import query

    renewed = conn.execute(query("renew_leases"), {"ids": [running], "worker": "w1", "lease": 30}).fetchall()
    assert renewed == [(running, True)]  # the worker learns of the request with its next renewal
    refused = conn.execute(query("begin_write"), {"id": running, "worker": "w1", "reference": "R", "window": 60})
    assert refused.fetchone() == ("cancelled", 0, 0)  # and may send nothing more
    assert conn.execute(query("cancel_job"), {"id": running, "worker": "w1", "error": "cancelled"}).fetchone()
    assert _job(conn, running)[0] == "cancelled"
    _, err = cli("jobs", "cancel", str(queued), code=2)
    assert "is cancelled and cannot be cancelled: only queued or running jobs" in err


# -- integrations
def test_integrations__add_list_enable_disable(cli: CLI, conn: psycopg.Connection) -> None:
    added = cli.json("integrations", "add", "acme", "--adapter", "noop", "--config", '{"a": 1}',
                     "--secret-name", "acme-creds", "--max-concurrency", "3", "--health-mode", "passive")
    assert added == {"id": "acme", "adapter": "noop", "config": {"a": 1}, "secret_name": "acme-creds",
                     "max_concurrency": 3, "health_mode": "passive", "enabled": True}
    out, _ = cli("integrations", "add", "beta", "--adapter", "noop")
    assert out.strip() == "integration beta added (adapter noop, max concurrency 1)"
    assert [i["id"] for i in cli.json("integrations", "list")] == ["acme", "beta"]
    out, _ = cli("integrations", "disable", "acme")
    assert "disabled" in out
    assert conn.execute("SELECT enabled FROM dispatch.integrations WHERE id = 'acme'").fetchone() == (False,)
    cli("integrations", "enable", "acme")
    assert conn.execute("SELECT enabled FROM dispatch.integrations WHERE id = 'acme'").fetchone() == (True,)
    out, _ = cli("integrations", "list")
    assert out.splitlines()[0].split()[:3] == ["ID", "ADAPTER", "ENABLED"]


def test_integrations__errors(cli: CLI) -> None:
    _, err = cli("integrations", "list")
    cli("integrations", "add", "acme", "--adapter", "noop")
    _, err = cli("integrations", "add", "acme", "--adapter", "noop", code=2)
    assert err.startswith('error: integration "acme" already exists')
    _, err = cli("integrations", "add", "other", "--adapter", "no-such-adapter", code=2)
    assert "no adapter named 'no-such-adapter'" in err and len(err.strip().splitlines()) == 1
    _, err = cli("integrations", "enable", "ghost", code=3)
    assert err.strip() == 'error: unknown integration "ghost": list them with `integration-dispatch integrations list`'
    _, err = cli("integrations", "add", "Bad Slug", "--adapter", "noop", code=2)
    assert "integrations_id_slug" in err


def test_integrations_add__validates_config_against_the_adapter(cli: CLI) -> None:
    from app.adapters import registry

    typed = [i for i in registry.info() if i.config_schema and i.config_schema.get("required")]
    assert typed, "the built-in adapters (webhook, xledger, dynamics_bc) have required config fields"
    _, err = cli("integrations", "add", "typed", "--adapter", typed[0].name, code=2)
    assert err.startswith(f"error: --config does not fit adapter '{typed[0].name}'")


# -- schedules
def test_schedules__add_and_list(cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    added = cli.json("schedules", "add", integration, "export", "0 2 * * *", "--timezone", "Europe/Oslo",
                     "--payload", '{"scope": "daily"}', "--catch-up", "latest", "--catch-up-window", "6 hours")
    assert (added["cron"], added["timezone"], added["catch_up"]) == ("0 2 * * *", "Europe/Oslo", "latest")
    assert added["catch_up_window"] == "06:00:00"
    listed = cli.json("schedules", "list")
    assert [(s["id"], s["payload"]) for s in listed] == [(added["id"], {"scope": "daily"})]
    out, _ = cli("schedules", "list")
    assert "Europe/Oslo" in out


def test_schedules_add__errors(cli: CLI, integration: str) -> None:
    _, err = cli("schedules", "add", "ghost", "sync", "* * * * *", code=3)
    assert err.startswith('error: unknown integration "ghost": add it with `integration-dispatch integrations add')
    _, err = cli("schedules", "add", integration, "sync", "* * * * *", "--timezone", "Mars/Olympus", code=2)
    assert err.strip() == "error: unknown time zone 'Mars/Olympus': use an IANA name such as Europe/Oslo or UTC"
    _, err = cli("schedules", "add", integration, "sync", "* * * * *", "--catch-up-window", "soon", code=2)
    assert err.startswith("error: invalid input syntax for type interval")


def test_schedules_next__in_the_zone_and_in_utc(cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    assert _has(conn, "dispatch.cron_slots"), "dispatch.cron_slots is missing from the migrated schema"
    sid = cli.json("schedules", "add", integration, "export", "30 1 * * *", "--timezone", "Asia/Kolkata")["id"]
    slots = cli.json("schedules", "next", str(sid), "-n", "3")
    assert len(slots) == 3
    for slot in slots:
        assert slot["local"].endswith("01:30:00+05:30") and slot["utc"].endswith("20:00:00+00:00")
    yearly = cli.json("schedules", "add", integration, "sync", "0 0 29 2 *")["id"]
    assert len(cli.json("schedules", "next", str(yearly), "-n", "2")) == 2
    out, _ = cli("schedules", "next", str(sid))
    assert out.splitlines()[0].split() == ["LOCAL", "UTC"] and len(out.splitlines()) == 6


def test_schedules_next__unknown_schedule(cli: CLI) -> None:
    _, err = cli("schedules", "next", "424242", code=3)
    assert err.strip() == "error: no schedule 424242: list them with `integration-dispatch schedules list`"


# -- secrets
def test_secrets_set__from_stdin_creates_then_updates_never_echoing(
        cli: CLI, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _has(conn, "vault.create_secret"), "vault.create_secret is missing from the migrated schema"
    value = "s3cr3t-VALUE-never-printed"
    monkeypatch.setattr("sys.stdin", io.StringIO(value + "\n"))
    out, err = cli("secrets", "set", "acme-creds", "--description", "acme API key")
    assert out.strip() == "secret acme-creds created in the vault" and value not in out + err
    assert conn.execute("SELECT decrypted_secret, description FROM vault.decrypted_secrets "
                        "WHERE name = 'acme-creds'").fetchone() == (value, "acme API key")
    monkeypatch.setattr("sys.stdin", io.StringIO("rotated"))
    out, err = cli("secrets", "set", "acme-creds")
    assert out.strip() == "secret acme-creds updated in the vault"
    assert conn.execute("SELECT decrypted_secret, description FROM vault.decrypted_secrets "
                        "WHERE name = 'acme-creds'").fetchone() == ("rotated", "acme API key")
    assert conn.execute("SELECT count(*) FROM vault.secrets").fetchone() == (1,)


def test_secrets_set__prompts_when_stdin_is_a_terminal(cli: CLI, conn: psycopg.Connection,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert _has(conn, "vault.create_secret"), "vault.create_secret is missing from the migrated schema"

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts: list[str] = []
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or "typed-value")
    cli("secrets", "set", "typed")
    assert prompts == ["value for secret typed (input hidden): "]
    assert conn.execute("SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'typed'").fetchone() \
        == ("typed-value",)


def test_secrets_set__refuses_an_empty_value_and_takes_no_value_argument(
        cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    _, err = cli("secrets", "set", "empty", code=2)
    assert err.startswith("error: empty value for secret empty")
    with pytest.raises(SystemExit):
        cli("secrets", "set", "name", "value-on-argv")


def test_secrets_list__names_and_metadata_only(cli: CLI, conn: psycopg.Connection,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert _has(conn, "vault.create_secret"), "vault.create_secret is missing from the migrated schema"
    conn.execute("INSERT INTO dispatch.integrations (id, adapter, secret_name) VALUES ('acme', 'noop', 'acme-creds')")
    monkeypatch.setattr("sys.stdin", io.StringIO("hidden-value"))
    cli("secrets", "set", "acme-creds", "--description", "acme key")
    listed = cli.json("secrets", "list")
    assert [(s["name"], s["description"], s["used_by"]) for s in listed] == [("acme-creds", "acme key", "acme")]
    assert set(listed[0]) == {"name", "description", "created_at", "updated_at", "used_by"}
    out, _ = cli("secrets", "list")
    assert "acme-creds" in out and "hidden-value" not in out


# -- drift, alerts, health
def test_drift__table_and_json(cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    job_id = cli.json("enqueue", integration, "sync")["job_id"]
    conn.execute("UPDATE dispatch.jobs SET status = 'succeeded', worker_id = 'w', "
                 "started_at = scheduled_for + interval '2.5 seconds', finished_at = now() WHERE id = %s", (job_id,))
    rows = cli.json("drift")
    assert rows == [{**rows[0], "integration_id": integration, "kind": "sync", "started": 1,
                     "p50_s": 2.5, "p95_s": 2.5, "max_s": 2.5}]
    out, _ = cli("drift")
    assert out.startswith("drift (started_at - scheduled_for, seconds) of jobs started in the last 24 hours")


def test_alerts__list_resolve_and_all(cli: CLI, conn: psycopg.Connection) -> None:
    assert cli("alerts", "list")[0].strip() == "no open alerts"
    alert_id = conn.execute("SELECT dispatch.raise_alert('drift', 'x:sync', 'drift 90s over 60s')").fetchone()[0]  # type: ignore[index]
    listed = cli.json("alerts", "list")
    assert [(a["id"], a["kind"], a["message"]) for a in listed] == [(alert_id, "drift", "drift 90s over 60s")]
    out, _ = cli("alerts", "resolve", str(alert_id))
    assert out.startswith(f"alert {alert_id} (drift x:sync) resolved")
    assert cli.json("alerts", "list") == []
    assert [a["id"] for a in cli.json("alerts", "list", "--all")] == [alert_id]
    out, _ = cli("alerts", "resolve", str(alert_id))
    assert "already resolved" in out
    _, err = cli("alerts", "resolve", "999999", code=3)
    assert err.strip() == "error: no alert 999999: list open alerts with `integration-dispatch alerts list`"


def test_health__integrations_workers_and_last_tick(cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    out, _ = cli("health")
    assert "no daemon has run here" in out and "pg_cron has not run dispatch.tick()" in out
    conn.execute("INSERT INTO dispatch.workers (id, host, pid, version) VALUES ('w1', 'h', 1, '0.1.0')")
    conn.execute("INSERT INTO dispatch.tick_runs (acting_for, caller, inserted) VALUES (now(), 'manual', 2)")
    report = cli.json("health")
    assert [i["integration_id"] for i in report["integrations"]] == [integration]
    assert [w["id"] for w in report["workers"]] == ["w1"]
    assert report["last_tick"]["caller"] == "manual" and report["last_tick"]["inserted"] == 2
    out, _ = cli("health")
    assert "w1" in out and "caller" in out
