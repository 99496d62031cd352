"""What every operator command shares: where the database is, one connection, named
queries, JSON options and the errors commands raise."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from app.cli import exits
from app.core.errors import DispatchError
from app.db.queries import query

Row = dict[str, Any]


def database_url(args: argparse.Namespace) -> str:
    """--database-url, else DATABASE_URL, else libpq's PG* variables; nothing set is an error
    naming DATABASE_URL. Operator commands never start a cluster."""
    from app.core.settings import get_settings
    from app.db import connect

    return connect.resolve(getattr(args, "database_url", None), get_settings().database_url)


class CommandError(DispatchError):
    """The command could not do what was asked: see the message for what to do."""

    exit_code = exits.ERROR


class NotFound(CommandError):
    """No such object: list the existing ones with the matching `list` command."""

    exit_code = exits.NOT_FOUND


class TimedOut(CommandError):
    """A wait ran out of time: try again, or give a longer --timeout."""

    exit_code = exits.TIMEOUT


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[psycopg.Connection[Row]]:
    """One autocommit connection per command: each statement is its own short transaction."""
    with psycopg.connect(database_url(args), autocommit=True, row_factory=dict_row,
                         application_name="integration-dispatch cli") as conn:
        yield conn


def fetch_all(conn: psycopg.Connection[Row], name: str, /, **params: Any) -> list[Row]:
    return conn.execute(query(name), params).fetchall()


def fetch_one(conn: psycopg.Connection[Row], name: str, /, **params: Any) -> Row | None:
    return conn.execute(query(name), params).fetchone()


def json_arg(text: str | None, option: str) -> dict[str, Any] | None:
    """A JSON object from an option, or a one-line error naming the option."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option} is not valid JSON ({exc.msg} at column {exc.colno}): "
                           "quote it for the shell, e.g. --payload '{\"period\": \"2024-05\"}'") from None
    if not isinstance(value, dict):
        raise CommandError(f"{option} must be a JSON object, got {type(value).__name__}: "
                           "wrap the value, e.g. '{\"value\": ...}'")
    return value


def require_integration(conn: psycopg.Connection[Row], integration_id: str) -> Row:
    row = fetch_one(conn, "cli_integration_exists", id=integration_id)
    if row is None:
        raise NotFound(f'unknown integration "{integration_id}": add it with '
                       f"`integration-dispatch integrations add {integration_id} --adapter NAME`")
    return row


# -- parser
def json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")
