"""Operator commands that set things up: integrations, schedules and vault secrets."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
import zoneinfo
from typing import Any

import psycopg

from app.cli.context import CommandError, NotFound, Row, connect, fetch_all, fetch_one, json_arg
from app.cli.output import print_json, print_table

# Widened one step at a time until `schedules next` has its n slots (see cli_cron_slots).
HORIZONS = ["1 hour", "1 day", "32 days", "400 days", "1500 days", "3000 days"]


def require_integration(conn: psycopg.Connection[Row], integration_id: str) -> Row:
    row = fetch_one(conn, "cli_integration_exists", id=integration_id)
    if row is None:
        raise NotFound(f'unknown integration "{integration_id}": add it with '
                       f"`integration-dispatch integrations add {integration_id} --adapter NAME`")
    return row


# -- integrations
def cmd_integrations_add(args: argparse.Namespace) -> int:
    config = json_arg(args.config, "--config") or {}
    _check_adapter(args.adapter, config)
    with connect(args) as conn:
        row = fetch_one(conn, "cli_integration_add", id=args.id, adapter=args.adapter, config=json.dumps(config),
                        secret_name=args.secret_name, max_concurrency=args.max_concurrency,
                        health_mode=args.health_mode)
    if row is None:
        raise CommandError(f'integration "{args.id}" already exists: pick another id, '
                           f"or enable/disable it with `integration-dispatch integrations enable|disable {args.id}`")
    if args.json:
        print_json(row)
    else:
        print(f"integration {row['id']} added (adapter {row['adapter']}, max concurrency {row['max_concurrency']})")
    return 0


def _check_adapter(name: str, config: dict[str, Any]) -> None:
    """Refuse an unknown adapter or a config its model rejects now, not at the first job."""
    from pydantic import ValidationError

    from app.adapters import registry

    model = getattr(registry.cls(name), "config_model", None)
    if model is None:
        return
    try:
        model.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
        raise CommandError(f"--config does not fit adapter {name!r}: {problems} "
                           "(see the fields with `integration-dispatch adapters list`)") from None


def cmd_integrations_list(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        rows = fetch_all(conn, "cli_integrations_list")
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["id", "adapter", "enabled", "max_concurrency", "health_mode", "health_status",
                           "circuit", "secret_name", "config"], empty="no integrations yet: "
                    "add one with `integration-dispatch integrations add ID --adapter NAME`")
    return 0


def cmd_integrations_enable(args: argparse.Namespace) -> int:
    enabled = args.action == "enable"
    with connect(args) as conn:
        row = fetch_one(conn, "cli_integration_set_enabled", id=args.id, enabled=enabled)
    if row is None:
        raise NotFound(f'unknown integration "{args.id}": list them with `integration-dispatch integrations list`')
    print(f"integration {args.id} {'enabled' if enabled else 'disabled: its queued jobs wait'}")
    return 0


# -- schedules
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


# -- secrets
def cmd_secrets_set(args: argparse.Namespace) -> int:
    value = read_secret_value(args.name)
    with connect(args) as conn, conn.transaction():
        _require_vault(conn)
        existing = fetch_one(conn, "secret_id", name=args.name)
        if existing is None:
            fetch_one(conn, "secret_create", value=value, name=args.name, description=args.description)
        else:
            fetch_one(conn, "secret_update", id=existing["id"], value=value, description=args.description)
    print(f"secret {args.name} {'created' if existing is None else 'updated'} in the vault")
    return 0


def read_secret_value(name: str) -> str:
    """From a pipe or a hidden prompt, never from argv (argv shows in `ps` and shell history)."""
    if sys.stdin is None or not sys.stdin.isatty():
        value = sys.stdin.read() if sys.stdin is not None else ""
        # One trailing newline is the pipe's (echo, a file), not the secret's.
        value = value.removesuffix("\n").removesuffix("\r")
    else:
        value = getpass.getpass(f"value for secret {name} (input hidden): ")
    if not value:
        raise CommandError(f"empty value for secret {name}: pipe it in (e.g. `secrets set {name} < file`) "
                           "or type it at the prompt")
    return value


def _require_vault(conn: psycopg.Connection[Row]) -> None:
    row = fetch_one(conn, "cli_vault_installed")
    if row is None or not row["installed"]:
        raise CommandError("the vault is not installed in this database: run `integration-dispatch db upgrade` "
                           "(on Supabase, enable the Vault extension first)")


def cmd_secrets_list(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        _require_vault(conn)
        rows = fetch_all(conn, "cli_secrets_list")
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["name", "description", "used_by", "created_at", "updated_at"], empty="no secrets yet")
    return 0


# -- parser
def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: Any) -> None:
    _register_integrations(sub)
    _register_schedules(sub)
    _register_secrets(sub)


def _register_integrations(sub: Any) -> None:
    group = sub.add_parser("integrations", help="add, list, enable and disable integrations").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = group.add_parser("add", help="add an integration (one connection to one vendor account)")
    p.add_argument("id", help="slug: lowercase letters, digits, . _ - (e.g. acme-xledger)")
    p.add_argument("--adapter", required=True, help="adapter name (see `integration-dispatch adapters list`)")
    p.add_argument("--config", help="non-secret adapter configuration as a JSON object (default: {})")
    p.add_argument("--secret-name", help="name of the vault secret holding its credentials")
    p.add_argument("--max-concurrency", type=int, default=1, help="jobs run at once, across all daemons (default: 1)")
    p.add_argument("--health-mode", choices=["active", "passive"],
                   help="active: probe the vendor; passive: judge from real jobs (default: the adapter's)")
    _json_flag(p)
    p.set_defaults(func=cmd_integrations_add)

    p = group.add_parser("list", help="every integration with its health and circuit")
    _json_flag(p)
    p.set_defaults(func=cmd_integrations_list)
    for action, text in (("enable", "let the daemons claim its jobs again"),
                         ("disable", "stop claiming its jobs (they stay queued)")):
        p = group.add_parser(action, help=text)
        p.add_argument("id", help="integration id")
        p.set_defaults(func=cmd_integrations_enable)


def _register_schedules(sub: Any) -> None:
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
    _json_flag(p)
    p.set_defaults(func=cmd_schedules_add)

    p = group.add_parser("list", help="every schedule with its next slot")
    _json_flag(p)
    p.set_defaults(func=cmd_schedules_list)

    p = group.add_parser("next", help="the next slots of a schedule, in its zone and in UTC")
    p.add_argument("id", type=int, help="schedule id")
    p.add_argument("-n", type=int, default=5, help="how many slots (default: 5)")
    _json_flag(p)
    p.set_defaults(func=cmd_schedules_next)


def _register_secrets(sub: Any) -> None:
    group = sub.add_parser("secrets", help="store and list vault secrets (values are never shown)").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = group.add_parser("set", help="create or replace a secret; the value comes from stdin or a hidden prompt",
                         description="Create or replace a vault secret. The value is read from stdin when piped "
                                     "(one trailing newline dropped), else from a hidden prompt; never from argv.")
    p.add_argument("name", help="secret name, e.g. acme-xledger")
    p.add_argument("--description", help="what the secret is for (kept on update when omitted)")
    p.set_defaults(func=cmd_secrets_set)

    p = group.add_parser("list", help="secret names, descriptions, timestamps and users (never values)")
    _json_flag(p)
    p.set_defaults(func=cmd_secrets_list)
