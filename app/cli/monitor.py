"""Operator commands that watch: `drift`, `alerts list|resolve` and `health`."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.context import NotFound, connect, fetch_all, fetch_one
from app.cli.output import print_json, print_record, print_table


def cmd_drift(args: argparse.Namespace) -> int:
    # The window is the caller's (--since); dispatch.drift_report is the same figures fixed at 24 h.
    with connect(args) as conn:
        rows = fetch_all(conn, "cli_drift_from_jobs", since=args.since)
    if args.json:
        print_json(rows)
        return 0
    print(f"drift (started_at - scheduled_for, seconds) of jobs started in the last {args.since}")
    print_table(rows, empty="no started jobs in the window")
    return 0


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
            print(f"alert {args.id} was already resolved at {existing['resolved_at']:%Y-%m-%d %H:%M:%S%z}")
            return 0
    print(f"alert {row['id']} ({row['kind']} {row['subject']}) resolved; it reopens if the condition recurs")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        integrations = fetch_all(conn, "cli_health_integrations")
        workers = fetch_all(conn, "cli_health_workers")
        last_tick = fetch_one(conn, "cli_health_last_tick")
    if args.json:
        print_json({"integrations": integrations, "workers": workers, "last_tick": last_tick})
        return 0
    print("integrations")
    print_table(integrations, ["integration_id", "adapter", "enabled", "health_mode", "health_status",
                                         "circuit", "queued", "running", "health_failures", "health_checked_at",
                                         "health_error"], empty="  (none)")
    print("\nworkers")
    print_table(workers, ["id", "host", "pid", "version", "concurrency", "heartbeat_age_s",
                                    "cold_start_ms", "stopped_at"], empty="  (none: no daemon has run here)")
    print("\nlast tick")
    if last_tick is None:
        print("  (none: pg_cron has not run dispatch.tick() here; `integration-dispatch db upgrade` registers it)")
    else:
        print_record(last_tick)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("drift", help="scheduling drift (start minus slot) per integration and kind")
    p.add_argument("--since", default="24 hours",
                   help="window when computed from dispatch.job_drift, a Postgres interval (default: '24 hours')")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_drift)

    alerts = sub.add_parser("alerts", help="list and resolve alerts").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = alerts.add_parser("list", help="open alerts, newest first")
    p.add_argument("--all", action="store_true", help="include resolved alerts")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default: 100)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_alerts_list)

    p = alerts.add_parser("resolve", help="mark an alert resolved")
    p.add_argument("id", type=int, help="alert id")
    p.set_defaults(func=cmd_alerts_resolve)

    p = sub.add_parser("health", help="integration health, the daemons' registry and the last scheduler tick")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_health)
