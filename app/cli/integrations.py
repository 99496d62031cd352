"""Operator commands for integrations: `integrations add | list | enable | disable | pause | resume`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from app.cli import operator
from app.cli.context import (
    CommandError,
    NotFound,
    connect,
    fetch_all,
    fetch_one,
    json_arg,
    json_flag,
)
from app.cli.output import print_json, print_table


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
        rows = fetch_all(conn, "cli_integrations_list_ops")
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["id", "adapter", "enabled", "max_concurrency", "health_mode", "health_status",
                           "circuit", "paused_by", "pause_reason", "secret_name", "config"],
                    empty="no integrations yet: add one with `integration-dispatch integrations add ID --adapter NAME`")
    return 0

def cmd_integrations_enable(args: argparse.Namespace) -> int:
    enabled = args.action == "enable"
    with connect(args) as conn, conn.transaction():
        operator.act(conn, None)
        row = fetch_one(conn, "cli_integration_set_enabled_ops", id=args.id, enabled=enabled)
        if row is None:
            raise NotFound(f'unknown integration "{args.id}": list them with `integration-dispatch integrations list`')
        operator.record(conn, f"integration.{args.action}", f"integration:{args.id}")
    if args.json:
        print_json(row)
        return 0
    print(f"integration {args.id} {'enabled' if enabled else 'disabled: its queued jobs wait'}")
    return 0


def cmd_integrations_pause(args: argparse.Namespace) -> int:
    """A disable with a reason (vendor maintenance, a bad export under investigation), shown in `health`."""
    with connect(args) as conn, conn.transaction():
        operator.act(conn, args.reason)
        if args.action == "pause":
            row = fetch_one(conn, "cli_integration_pause", id=args.id, reason=args.reason)
        else:
            row = fetch_one(conn, "cli_integration_resume", id=args.id)
        if row is None:
            raise NotFound(f'unknown integration "{args.id}": list them with `integration-dispatch integrations list`')
        operator.record(conn, f"integration.{args.action}", f"integration:{args.id}")
    if args.json:
        print_json(row)
    elif args.action == "pause":
        print(f"integration {args.id} paused by {row['paused_by']}: {row['pause_reason']}; its jobs (and its "
              f"schedules' new slots) wait until `integrations resume {args.id}`")
    else:
        print(f"integration {args.id} resumed; {row['queued']} queued job(s) run now"
              + (f" (it was paused: {row['was_pause_reason']})" if row["was_paused_at"] else " (it was not paused)"))
    return 0


def register(sub: Any) -> None:
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
    json_flag(p)
    p.set_defaults(func=cmd_integrations_add)

    p = group.add_parser("list", help="every integration with its health and circuit")
    json_flag(p)
    p.set_defaults(func=cmd_integrations_list)
    for action, text in (("enable", "let the daemons claim its jobs again"),
                         ("disable", "stop claiming its jobs (they stay queued)")):
        p = group.add_parser(action, help=text)
        p.add_argument("id", help="integration id")
        json_flag(p)
        p.set_defaults(func=cmd_integrations_enable)

    p = group.add_parser("pause", help="stop claiming its jobs, with a reason shown in `health` (they wait)")
    p.add_argument("id", help="integration id")
    operator.reason_option(p, required=True)
    json_flag(p)
    p.set_defaults(func=cmd_integrations_pause)
    p = group.add_parser("resume", help="end a pause: its waiting jobs run")
    p.add_argument("id", help="integration id")
    operator.reason_option(p)
    json_flag(p)
    p.set_defaults(func=cmd_integrations_pause)
