"""The CLI's conventions: --version, the distinct exit codes, --json on every command that prints data."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import psycopg
import pytest

from app import __version__
from app.cli import exits
from app.main import build_parser, main
from tests.integration.test_cli import CLI
from tests.integration.test_cli import cli as cli  # noqa: F401 — the fixture

pytestmark = pytest.mark.integration

NO_DATABASE = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2"


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    return [leaf for a in subs for name, sub in a.choices.items() for leaf in _leaves(sub, (*path, name))]


def test_exit_codes__are_distinct_and_sysexits_where_one_fits() -> None:
    codes = [exits.OK, exits.FAILED, exits.ERROR, exits.NOT_FOUND, exits.USAGE, exits.UNAVAILABLE, exits.TIMEOUT,
             exits.INTERRUPTED]
    assert len(set(codes)) == len(codes)
    assert (exits.USAGE, exits.UNAVAILABLE, exits.TIMEOUT) == (64, 69, 75)


def test_version__prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"integration-dispatch {__version__}"


@pytest.mark.parametrize("argv", [["no-such-command"], ["jobs", "show"], ["jobs", "show", "not-a-number"],
                                  ["alerts", "list", "--no-such-option"], []])
def test_usage_errors__exit_64(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == exits.USAGE
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["jobs", "list"], ["alerts", "resolve", "1"], ["health"], ["db", "status"]])
def test_unavailable_database__exits_69_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database-url", NO_DATABASE, *argv]) == exits.UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("error: the database is unavailable") and "Traceback" not in err, err


def test_not_found__exits_3(cli: CLI) -> None:
    cli("jobs", "show", "999999", code=exits.NOT_FOUND)
    cli("alerts", "resolve", "999999", code=exits.NOT_FOUND)
    cli("integrations", "enable", "ghost", code=exits.NOT_FOUND)
    cli("schedules", "next", "424242", code=exits.NOT_FOUND)
    _, err = cli("enqueue", "ghost", "sync", code=exits.NOT_FOUND)  # the database's unknown_reference
    assert err.startswith('error: unknown integration "ghost"')


def test_timeout__exits_75(cli: CLI, integration: str) -> None:
    _, err = cli("enqueue", integration, "sync", "--wait", "--timeout", "0.2", code=exits.TIMEOUT)
    assert "still queued after 0.2s" in err


def test_other_errors__exit_2(cli: CLI, integration: str) -> None:
    cli("enqueue", integration, "sync", "--payload", "[1]", code=exits.ERROR)
    cli("integrations", "add", integration, "--adapter", "noop", code=exits.ERROR)  # exists already


def test_json__on_every_command_but_the_daemon_the_demo_and_db() -> None:
    # `db` prints JSON always; `serve` and `dev` print logs, not data.
    missing = [" ".join(path) for path, p in _leaves(build_parser())
               if not any("--json" in a.option_strings for a in p._actions)]
    assert sorted(missing) == ["db", "dev", "serve"]


def test_json__alerts_resolve(cli: CLI, conn: psycopg.Connection) -> None:
    alert_id = conn.execute("SELECT dispatch.raise_alert('test', 's', 'm')").fetchone()[0]  # type: ignore[index]
    first = cli.json("alerts", "resolve", str(alert_id))
    assert first["id"] == alert_id and first["kind"] == "test" and first["already_resolved"] is False
    assert first["resolved_at"]
    again = cli.json("alerts", "resolve", str(alert_id))
    assert again["already_resolved"] is True and again["resolved_at"] == first["resolved_at"]


def test_json__integrations_enable_and_disable(cli: CLI, conn: psycopg.Connection, integration: str) -> None:
    assert cli.json("integrations", "disable", integration) == {"id": integration, "enabled": False}
    assert cli.json("integrations", "enable", integration) == {"id": integration, "enabled": True}


def test_json__secrets_set_never_prints_the_value(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-value\n"))
    out, _ = cli("secrets", "set", "conv-secret", "--json")
    assert json.loads(out) == {"name": "conv-secret", "created": True} and "s3cret" not in out
    monkeypatch.setattr("sys.stdin", io.StringIO("other-value"))
    assert cli.json("secrets", "set", "conv-secret") == {"name": "conv-secret", "created": False}
