"""`health`: integration health, the daemons' registry and the last scheduler tick."""

from __future__ import annotations

import argparse
from typing import Any

import psycopg

from app.cli.context import Row, connect, fetch_all, fetch_one
from app.cli.output import print_json, print_record, print_table


def health_snapshot(conn: psycopg.Connection[Row]) -> dict[str, Any]:
    """Integration health (circuit, pause, queue), the daemons' registry and the last tick."""
    return {"integrations": fetch_all(conn, "cli_health_integrations_ops"),
            "workers": fetch_all(conn, "cli_health_workers"), "last_tick": fetch_one(conn, "cli_health_last_tick")}


def cmd_health(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        snapshot = health_snapshot(conn)
    integrations, workers, last_tick = snapshot["integrations"], snapshot["workers"], snapshot["last_tick"]
    if args.json:
        print_json({"integrations": integrations, "workers": workers, "last_tick": last_tick})
        return 0
    print("integrations")
    print_table(integrations, ["integration_id", "adapter", "enabled", "health_mode", "health_status",
                                         "circuit", "queued", "running", "health_failures", "health_checked_at",
                                         "health_error"], empty="  (none)")
    paused = [i for i in integrations if i["paused_at"] is not None]
    if paused:
        print("\npaused")
        print_table(paused, ["integration_id", "paused_at", "paused_by", "pause_reason", "queued"])
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
    p = sub.add_parser("health", help="integration health, the daemons' registry and the last scheduler tick")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_health)
