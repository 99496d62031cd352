"""Operator commands for schedules: `schedules add | list | next | preview | enable | disable | edit | delete |
trigger | backfill`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import zoneinfo
from typing import Any

import psycopg

from app.cli import operator
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
from app.cli.jobs import iso_instant
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

def list_schedules(conn: psycopg.Connection[Row]) -> list[Row]:
    return fetch_all(conn, "cli_schedules_list")


def cmd_schedules_list(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        rows = list_schedules(conn)
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


def cmd_schedules_preview(args: argparse.Namespace) -> int:
    """An unsaved expression's next slots, validated the way `schedules add` validates it."""
    _check_timezone(args.timezone)
    with connect(args) as conn:
        fetch_one(conn, "cli_cron_check", cron=args.cron, timezone=args.timezone)
        slots = next_slots(conn, {"cron": args.cron, "timezone": args.timezone}, args.n)
    if slots is None:
        raise CommandError("dispatch.cron_slots is not in this database: run `integration-dispatch db upgrade`")
    if args.json:
        print_json(slots)
    else:
        print_table(slots, ["local", "utc"], empty="no slot in the next 3000 days")
    return 0


def _schedule(conn: psycopg.Connection[Row], schedule_id: int) -> Row:
    row = fetch_one(conn, "cli_schedule_full", id=schedule_id)
    if row is None:
        raise NotFound(f"no schedule {schedule_id}: list them with `integration-dispatch schedules list`")
    return row


def set_schedule_enabled(conn: psycopg.Connection[Row], schedule_id: int, enabled: bool, reason: str | None,
                         who: str | None = None) -> Row:
    """Enable or disable one schedule as ``who`` (default the OS user), recorded in operator_actions."""
    with conn.transaction():
        _schedule(conn, schedule_id)
        operator.act(conn, reason, who)
        row = fetch_one(conn, "cli_schedule_set_enabled", id=schedule_id, enabled=enabled)
        assert row is not None  # the row was just read in this transaction
        operator.record(conn, f"schedule.{'enable' if enabled else 'disable'}", f"schedule:{schedule_id}")
    return row


def cmd_schedules_enable(args: argparse.Namespace) -> int:
    enabled = args.action == "enable"
    with connect(args) as conn:
        row = set_schedule_enabled(conn, args.id, enabled, args.reason)
    if args.json:
        print_json(row)
    elif enabled:
        print(f"schedule {args.id} enabled; slots missed since {row['next_slot']:%Y-%m-%d %H:%M%z} are caught up by "
              f"its policy (catch_up = {row['catch_up']}, window {row['catch_up_window']}), or use "
              "`schedules backfill`")
    else:
        print(f"schedule {args.id} disabled: the tick makes no jobs for it until `schedules enable {args.id}`")
    return 0


def cmd_schedules_edit(args: argparse.Namespace) -> int:
    payload = json_arg(args.payload, "--payload")
    if args.timezone is not None:
        _check_timezone(args.timezone)
    changes = {k: getattr(args, k) for k in ("cron", "timezone", "catch_up", "catch_up_window", "period",
                                             "priority", "max_attempts")}
    if payload is None and all(v is None for v in changes.values()):
        raise CommandError("nothing to change: give at least one of --cron --timezone --payload --catch-up "
                           "--catch-up-window --period --priority --max-attempts")
    with connect(args) as conn, conn.transaction():
        before = _schedule(conn, args.id)
        operator.act(conn, args.reason)
        row = fetch_one(conn, "cli_schedule_edit", id=args.id, payload=json.dumps(payload) if payload else None,
                        **changes)
        assert row is not None
        changed = {k: {"from": before[k], "to": row[k]} for k in row if before.get(k) != row[k]}
        operator.record(conn, "schedule.edit", f"schedule:{args.id}", changed=changed)
        upcoming = next_slots(conn, row, 3)
    if args.json:
        print_json({**row, "changed": changed, "next": upcoming})
        return 0
    print(f"schedule {args.id} edited: " + (", ".join(f"{k} {v['from']} -> {v['to']}" for k, v in changed.items())
                                              or "no change"))
    for slot in upcoming or []:
        print(f"  next: {slot['local']}  ({slot['utc']})")
    return 0


def cmd_schedules_delete(args: argparse.Namespace) -> int:
    with connect(args) as conn, conn.transaction():
        schedule = _schedule(conn, args.id)
        queued = fetch_all(conn, "cli_jobs_select", statuses=["queued"], ids=None, integration_id=None, kind=None,
                           since=None, until=None, schedule_id=args.id)
        if not args.yes:
            raise CommandError(f"deleting schedule {args.id} ({schedule['integration_id']} {schedule['kind']} "
                               f"'{schedule['cron']}') cannot be undone ({len(queued)} queued job(s) "
                               f"{'are cancelled' if args.cancel_queued else 'stay queued'}): repeat with --yes, "
                               f"or pause it with `schedules disable {args.id}`")
        operator.act(conn, args.reason)
        cancelled = fetch_all(conn, "cli_jobs_cancel_many", ids=[r["id"] for r in queued]) \
            if args.cancel_queued and queued else []
        operator.record(conn, "schedule.delete", f"schedule:{args.id}", schedule=schedule,
                        cancelled=[r["id"] for r in cancelled])
        fetch_one(conn, "cli_schedule_delete", id=args.id)
    result = {"id": args.id, "deleted": True, "cancelled": [r["id"] for r in cancelled],
              "queued_left": len(queued) - len(cancelled)}
    if args.json:
        print_json(result)
    else:
        print(f"schedule {args.id} deleted; {len(cancelled)} queued job(s) cancelled, "
              f"{result['queued_left']} left queued; its periods' keys stay in the ledger")
    return 0


def latest_slot(conn: psycopg.Connection[Row], schedule_id: int) -> dt.datetime:
    """The last slot at or before now: the period `schedules trigger` runs."""
    _schedule(conn, schedule_id)
    latest = fetch_one(conn, "cli_schedule_latest_slot", id=schedule_id)
    if latest is None or latest["slot"] is None:
        raise CommandError(f"schedule {schedule_id} has no slot at or before now yet: "
                           f"see `schedules next {schedule_id}`")
    slot: dt.datetime = latest["slot"]
    return slot


def schedule_periods(conn: psycopg.Connection[Row], schedule_id: int, start: dt.datetime,
                     end: dt.datetime) -> list[Row]:
    """The periods closed by the slots in [start, end], each with its key and the job that has it."""
    return fetch_all(conn, "cli_schedule_periods", id=schedule_id, **{"from": start, "to": end})


def cmd_schedules_trigger(args: argparse.Namespace) -> int:
    """Run the period closed by the latest slot now, under the key the tick gives it."""
    with connect(args) as conn:
        args.start = args.end = latest_slot(conn, args.id)
    args.dry_run, args.yes = False, True
    return _backfill(args, "schedule.trigger")


def cmd_schedules_backfill(args: argparse.Namespace) -> int:
    if args.end < args.start:
        raise CommandError("--to is before --from")
    return _backfill(args, "schedule.backfill")


def backfill(conn: psycopg.Connection[Row], schedule_id: int, start: dt.datetime, end: dt.datetime, *,
             dry_run: bool, reason: str | None, yes: bool = False, action: str = "schedule.backfill",
             who: str | None = None) -> tuple[list[Row], list[Row], dt.datetime]:
    """Make the jobs of the periods in [start, end] (capped at now) that have none, as ``who``
    (default the OS user); with ``dry_run`` change nothing. Returns (periods, each with its
    ``action``; the jobs created; the capped end)."""
    with conn.transaction():
        _schedule(conn, schedule_id)
        # Only periods already due: the tick makes future ones on time.
        end = min(end, fetch_one(conn, "cli_now")["now"])  # type: ignore[index]
        periods = schedule_periods(conn, schedule_id, start, end)
        missing = [p for p in periods if p["job_id"] is None]
        created: list[Row] = []
        if not dry_run:
            operator.check_cap(len(missing), yes, "missing periods")
            operator.act(conn, reason, who)
            created = fetch_all(conn, "cli_schedule_backfill", id=schedule_id, **{"from": start, "to": end})
            operator.record(conn, action, f"schedule:{schedule_id}", start=start, end=end,
                            created=[r["id"] for r in created])
            if created:
                fetch_one(conn, "cli_notify_jobs")
    made = {r["key"]: r["id"] for r in created}
    for p in periods:
        p["action"] = ("create" if dry_run else "created") if p["job_id"] is None else "exists"
        if p["key"] in made:
            p["job_id"], p["job_status"] = made[p["key"]], "queued"
        elif not dry_run and p["job_id"] is None:
            p["action"] = "taken meanwhile"  # a concurrent tick or backfill made it first
    return periods, created, end


def _backfill(args: argparse.Namespace, action: str) -> int:
    with connect(args) as conn:
        periods, created, end = backfill(conn, args.id, args.start, args.end, dry_run=args.dry_run,
                                         reason=args.reason, yes=args.yes, action=action)
    missing = [p for p in periods if p["action"] == "create"]
    if args.json:
        print_json({"schedule_id": args.id, "dry_run": args.dry_run, "created": len(created), "periods": periods})
        return 0
    verb = "would create" if args.dry_run else "created"
    print(f"schedule {args.id}: {len(periods)} period(s) between {args.start:%Y-%m-%d %H:%M%z} and "
          f"{end:%Y-%m-%d %H:%M%z}; {verb} {len(missing) if args.dry_run else len(created)} job(s)"
          + (" (dry run: nothing changed)" if args.dry_run else ""))
    print_table(periods, ["period_label", "period_start", "period_end", "key", "action", "job_id", "job_status"],
                empty="  (no slot in the range)", width=60)
    return 0


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

    p = group.add_parser("preview", help="the next slots of an unsaved cron expression, in its zone and in UTC")
    p.add_argument("cron", help="five-field cron expression, quoted, e.g. '0 2 * * 1-5'")
    p.add_argument("--timezone", default="UTC", help="IANA zone the cron is read in (default: UTC)")
    p.add_argument("-n", type=int, default=5, help="how many slots (default: 5)")
    json_flag(p)
    p.set_defaults(func=cmd_schedules_preview)

    for action, text in (("enable", "let the tick make jobs for it again (missed slots follow its catch-up policy)"),
                         ("disable", "stop making jobs for it (queued jobs stay queued)")):
        p = group.add_parser(action, help=text)
        p.add_argument("id", type=int, help="schedule id")
        operator.reason_option(p)
        json_flag(p)
        p.set_defaults(func=cmd_schedules_enable)

    p = group.add_parser("edit", help="change a schedule's cron, zone, payload, catch-up, period, priority or attempts")
    p.add_argument("id", type=int, help="schedule id")
    p.add_argument("--cron", help="new five-field cron expression")
    p.add_argument("--timezone", help="new IANA zone")
    p.add_argument("--payload", help="new payload, a JSON object (replaces the old one)")
    p.add_argument("--catch-up", choices=["all", "latest", "skip"], help="new catch-up policy")
    p.add_argument("--catch-up-window", help="new catch-up window, a Postgres interval")
    p.add_argument("--period", choices=["slot", "day", "week", "month"], help="what one job stands for")
    p.add_argument("--priority", type=int, help="lower runs first")
    p.add_argument("--max-attempts", type=int, help="attempts before a job fails")
    operator.reason_option(p)
    json_flag(p)
    p.set_defaults(func=cmd_schedules_edit)

    p = group.add_parser("delete", help="delete a schedule (its jobs and ledger keys stay)")
    p.add_argument("id", type=int, help="schedule id")
    p.add_argument("--cancel-queued", action="store_true", help="also cancel its queued jobs")
    p.add_argument("--yes", action="store_true", help="really delete (it cannot be undone)")
    operator.reason_option(p)
    json_flag(p)
    p.set_defaults(func=cmd_schedules_delete)

    p = group.add_parser("trigger", help="run the period of the latest slot now, under the key the tick gives it")
    p.add_argument("id", type=int, help="schedule id")
    operator.reason_option(p)
    json_flag(p)
    p.set_defaults(func=cmd_schedules_trigger)

    p = group.add_parser("backfill", help="make the jobs of the periods in a range that have none (same keys as "
                                          "the tick: never a second job for a period)")
    p.add_argument("id", type=int, help="schedule id")
    p.add_argument("--from", dest="start", type=iso_instant, required=True,
                   help="first slot to consider, ISO 8601 with offset (inclusive)")
    p.add_argument("--to", dest="end", type=iso_instant, required=True,
                   help="last slot to consider, ISO 8601 with offset (inclusive; capped at now)")
    operator.bulk_options(p, "created")
    operator.reason_option(p)
    json_flag(p)
    p.set_defaults(func=cmd_schedules_backfill)
