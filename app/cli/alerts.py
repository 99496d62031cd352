"""`alerts list | resolve`."""

from __future__ import annotations

import argparse
from typing import Any

import psycopg

from app.cli import operator
from app.cli.context import NotFound, Row, connect, fetch_all, fetch_one
from app.cli.output import print_json, print_table


def list_alerts(conn: psycopg.Connection[Row], include_resolved: bool = False, limit: int = 100) -> list[Row]:
    """Open alerts (or all, with ``include_resolved``), newest first."""
    return fetch_all(conn, "cli_alerts_list", all=include_resolved, limit=limit)


def resolve_alert(conn: psycopg.Connection[Row], alert_id: int, reason: str | None,
                  who: str | None = None) -> tuple[Row | None, Row | None]:
    """Resolve one alert as ``who`` (default the OS user), recorded in operator_actions with the
    reason. Returns (resolved row, None), or (None, the existing row) when it was already
    resolved; NotFound when there is no such alert."""
    with conn.transaction():
        operator.act(conn, reason, who)
        row = fetch_one(conn, "cli_alert_resolve", id=alert_id)
        if row is not None:
            operator.record(conn, "alert.resolve", f"alert:{alert_id}", kind=row["kind"], alert_subject=row["subject"])
            return row, None
        existing = fetch_one(conn, "cli_alert_get", id=alert_id)
    if existing is None:
        raise NotFound(f"no alert {alert_id}: list open alerts with `integration-dispatch alerts list`")
    return None, existing


def cmd_alerts_list(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        rows = list_alerts(conn, args.all, args.limit)
    if args.json:
        print_json(rows)
    else:
        columns = ["id", "kind", "subject", "raised_at", "last_seen_at", "message"]
        print_table(rows, columns + (["resolved_at"] if args.all else []),
                    empty="no alerts" if args.all else "no open alerts", width=70)
    return 0


def cmd_alerts_resolve(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        row, existing = resolve_alert(conn, args.id, args.reason)
    if row is None:
        assert existing is not None
        # Resolving twice is harmless: say so and succeed, so scripts can repeat it.
        if args.json:
            print_json({**existing, "already_resolved": True})
            return 0
        print(f"alert {args.id} was already resolved at {existing['resolved_at']:%Y-%m-%d %H:%M:%S%z}")
        return 0
    if args.json:
        print_json({**row, "already_resolved": False})
        return 0
    print(f"alert {row['id']} ({row['kind']} {row['subject']}) resolved; it reopens if the condition recurs")
    return 0


def register(sub: Any) -> None:
    alerts = sub.add_parser("alerts", help="list and resolve alerts").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = alerts.add_parser("list", help="open alerts, newest first")
    p.add_argument("--all", action="store_true", help="include resolved alerts")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default: 100)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_alerts_list)

    p = alerts.add_parser("resolve", help="mark an alert resolved")
    p.add_argument("id", type=int, help="alert id")
    operator.reason_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_alerts_resolve)
