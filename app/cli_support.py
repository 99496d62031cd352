"""What every operator command shares: the connection, named queries, tables, JSON, errors."""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import psycopg
from psycopg.rows import dict_row

from app.db import query
from app.errors import DispatchError

Row = dict[str, Any]


class CommandError(DispatchError):
    """The command could not do what was asked: see the message for what to do."""


class NotFound(CommandError):
    """No such object: list the existing ones with the matching `list` command."""


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[psycopg.Connection[Row]]:
    """One autocommit connection per command: each statement is its own short transaction."""
    from app.cli import _db_url

    with psycopg.connect(_db_url(args), autocommit=True, row_factory=dict_row,
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


# -- output
def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(data: Any, out: TextIO | None = None) -> None:
    print(json.dumps(data, default=_jsonable, indent=2), file=out or sys.stdout)


def cell(value: Any) -> str:
    """A short, human form of one value (full values are in --json)."""
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds():.1f}s"
    if isinstance(value, float | decimal.Decimal):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=_jsonable)
    return str(value)


def print_table(rows: Sequence[Row], columns: Sequence[str] | None = None, empty: str = "(none)",
                width: int = 60) -> None:
    """A plain aligned table; cells longer than ``width`` are cut with an ellipsis."""
    if not rows:
        print(empty)
        return
    cols = list(columns or rows[0].keys())
    cells = [[_cut(cell(r.get(c)), width) for c in cols] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def print_record(row: Row) -> None:
    """One object as `key: value` lines."""
    width = max(len(k) for k in row)
    for key, value in row.items():
        print(f"{key.ljust(width)}  {cell(value)}")


def _cut(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


class LiveLine:
    """A single status line rewritten in place on a terminal; plain lines otherwise (logs, CI)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self._last = ""

    def update(self, text: str) -> None:
        if text == self._last:
            return
        self._last = text
        if self.tty:
            self.out.write("\r\x1b[K" + text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.tty and self._last:
            self.out.write("\n")
            self.out.flush()
