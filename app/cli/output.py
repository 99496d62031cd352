"""How operator commands print: aligned tables, `key: value` records, JSON, a live status line."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
import uuid
from collections.abc import Sequence
from typing import Any, TextIO

Row = dict[str, Any]


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
