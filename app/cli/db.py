"""``db upgrade | downgrade | status | schedule``: the migrations, from the package (no checkout
needed), and the pg_cron jobs' registration on its own."""

from __future__ import annotations

import argparse
import json
from typing import Any

from app.cli.context import database_url


def cmd_db(args: argparse.Namespace) -> int:
    from app.db import connect, migrate

    url = database_url(args)
    if args.action == "schedule":
        migrate.schedule(url)
    elif args.action == "upgrade":
        migrate.upgrade(url, args.revision or "head", pg_cron=not args.no_pg_cron)
    elif args.action == "downgrade":
        migrate.downgrade(url, args.revision or "base", pg_cron=not args.no_pg_cron)
    current, head = migrate.current(url), migrate.head()
    print(json.dumps({"database": connect.redact(url), "revision": current, "head": head,
                      "up_to_date": current == head}))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("db", help="migrate the database: upgrade | downgrade | status | schedule (re-register "
                                  "the pg_cron jobs, idempotent)")
    p.add_argument("action", choices=["upgrade", "downgrade", "status", "schedule"])
    p.add_argument("revision", nargs="?", help="target revision (default: head / base)")
    p.add_argument("--no-pg-cron", action="store_true", help="do not register the pg_cron jobs")
    p.set_defaults(func=cmd_db)
