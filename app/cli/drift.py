"""`drift`: scheduling drift (start minus slot) per integration and kind."""

from __future__ import annotations

import argparse
from typing import Any

import psycopg

from app.cli.context import Row, connect, fetch_all
from app.cli.output import print_json, print_table


def drift_rows(conn: psycopg.Connection[Row], since: str = "24 hours") -> list[Row]:
    """Drift percentiles (p50, p95, p99, max) per integration and kind over ``since``."""
    # The window is the caller's; dispatch.drift_report is the same figures fixed at 24 h.
    return fetch_all(conn, "cli_drift_from_jobs", since=since)


def cmd_drift(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        rows = drift_rows(conn, args.since)
    if args.json:
        print_json(rows)
        return 0
    print(f"drift (started_at - scheduled_for, seconds) of jobs started in the last {args.since}")
    print_table(rows, empty="no started jobs in the window")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("drift", help="scheduling drift (start minus slot) per integration and kind")
    p.add_argument("--since", default="24 hours",
                   help="window when computed from dispatch.job_drift, a Postgres interval (default: '24 hours')")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_drift)
