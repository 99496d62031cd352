"""`alerts list | resolve`."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.context import NotFound, connect, fetch_all, fetch_one
from app.cli.output import print_json, print_table


def cmd_alerts_list(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        rows = fetch_all(conn, "cli_alerts_list", all=args.all, limit=args.limit)
    if args.json:
        print_json(rows)
    else:
        columns = ["id", "kind", "subject", "raised_at", "last_seen_at", "message"]
        print_table(rows, columns + (["resolved_at"] if args.all else []),
                    empty="no alerts" if args.all else "no open alerts", width=70)
    return 0


def cmd_alerts_resolve(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        row = fetch_one(conn, "cli_alert_resolve", id=args.id)
        if row is None:
            existing = fetch_one(conn, "cli_alert_get", id=args.id)
            if existing is None:
                raise NotFound(f"no alert {args.id}: list open alerts with `integration-dispatch alerts list`")
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
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_alerts_resolve)
