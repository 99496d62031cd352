"""Operator commands for schedules: `schedules add | list | next`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import zoneinfo
from typing import Any

import psycopg

from app.cli.context import (
    CommandError,
    NotFound,
    Row,
    connect,
    fetch_all,
    fetch_one,
    json_arg,
    json_flag,
    require_integration,
)
from app.cli.output import print_json, print_table

# Widened one step at a time until `schedules next` has its n slots (see cli_cron_slots).
HORIZONS = ["1 hour", "1 day", "32 days", "400 days", "1500 days", "3000 days"]

def cmd_schedules_add(args: argparse.Namespace) -> int:
    payload = json_arg(args.payload, "--payload") or {}
    _check_timezone(args.timezone)
    with connect(args) as conn, conn.transaction():
        require_integration(conn, args.integration)
        row = fetch_one(conn, "cli_schedule_add", integration_id=args.integration, kind=args.kind, cron=args.cron,
                        timezone=args.timezone, payload=json.dumps(payload), catch_up=args.catch_up,
                        catch_up_window=args.catch_up_window)
        assert row is not None  # INSERT ... RETURNING without ON CONFLICT
        # In the same transaction: a cron the database cannot expand rolls the insert back.
        upcoming = next_slots(conn, row, 3)
    if args.json:
        print_json({**row, "next": upcoming})
        return 0
    print(f"schedule {row['id']} added: {row['integration_id']} {row['kind']} at '{row['cron']}' ({row['timezone']})")
    for slot in upcoming or []:
        print(f"  next: {slot['local']}  ({slot['utc']})")
    return 0

def _check_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CommandError(f"unknown time zone {name!r}: use an IANA name such as Europe/Oslo or UTC") from None

def cmd_schedules_list(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        rows = fetch_all(conn, "cli_schedules_list")
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["id", "integration_id", "kind", "cron", "timezone", "enabled", "catch_up",
                           "catch_up_window", "next_slot", "last_slot"], empty="no schedules yet")
    return 0

def cmd_schedules_next(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        schedule = fetch_one(conn, "cli_schedule_get", id=args.id)
        if schedule is None:
            raise NotFound(f"no schedule {args.id}: list them with `integration-dispatch schedules list`")
        slots = next_slots(conn, schedule, args.n)
    if slots is None:
        raise CommandError("dispatch.cron_slots is not in this database: run `integration-dispatch db upgrade`")
    if args.json:
        print_json(slots)
    else:
        print_table(slots, ["local", "utc"], empty="no slot in the next 3000 days")
    return 0

def next_slots(conn: psycopg.Connection[Row], schedule: Row, n: int) -> list[dict[str, str]] | None:
    """The next ``n`` slots in the schedule's zone and in UTC; None without dispatch.cron_slots."""
    present = fetch_one(conn, "cli_cron_slots_present")
    if present is None or not present["present"]:
        return None
    zone = zoneinfo.ZoneInfo(schedule["timezone"])
    rows: list[Row] = []
    for horizon in HORIZONS:
        rows = fetch_all(conn, "cli_cron_slots", cron=schedule["cron"], timezone=schedule["timezone"],
                         horizon=horizon, n=n)
        if len(rows) >= n:
            break
    return [_slot(row["slot"], zone) for row in rows]

def _slot(slot: dt.datetime, zone: zoneinfo.ZoneInfo) -> dict[str, str]:
    return {"local": slot.astimezone(zone).isoformat(), "utc": slot.astimezone(dt.UTC).isoformat()}


def register(sub: Any) -> None:
    group = sub.add_parser("schedules", help="add and list cron schedules, preview their slots").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = group.add_parser("add", help="run KIND for INTEGRATION at every slot of CRON")
    p.add_argument("integration", help="integration id")
    p.add_argument("kind", help="job kind, e.g. sync or export")
    p.add_argument("cron", help="five-field cron expression, quoted, e.g. '0 2 * * *'")
    p.add_argument("--timezone", default="UTC", help="IANA zone the cron is read in (default: UTC)")
    p.add_argument("--payload", help="payload of every job, a JSON object (default: {})")
    p.add_argument("--catch-up", choices=["all", "latest", "skip"], default="all",
                   help="after downtime run every missed slot, only the latest, or none (default: all)")
    p.add_argument("--catch-up-window", default="1 day",
                   help="how far back missed slots are caught up, a Postgres interval (default: '1 day')")
    json_flag(p)
    p.set_defaults(func=cmd_schedules_add)

    p = group.add_parser("list", help="every schedule with its next slot")
    json_flag(p)
    p.set_defaults(func=cmd_schedules_list)

    p = group.add_parser("next", help="the next slots of a schedule, in its zone and in UTC")
    p.add_argument("id", type=int, help="schedule id")
    p.add_argument("-n", type=int, default=5, help="how many slots (default: 5)")
    json_flag(p)
    p.set_defaults(func=cmd_schedules_next)
