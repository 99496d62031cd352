"""``integration-dispatch``: the command line. Errors print as one line plus what to do."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from app.errors import DispatchError

Handler = Callable[[argparse.Namespace], int]


def _settings() -> Any:
    from app.settings import get_settings

    return get_settings()


def _db_url(args: argparse.Namespace) -> str:
    """--database-url, else DATABASE_URL, else the local cluster (started if needed)."""
    if getattr(args, "database_url", None):
        return str(args.database_url)
    from app.localdb import database_url

    return database_url()


# -- commands
def cmd_serve(args: argparse.Namespace) -> int:
    from app.daemon import serve

    settings = _settings()
    if not settings.database_url:
        settings.database_url = _db_url(args)
    return serve(settings, port=args.port, concurrency=args.concurrency)


def cmd_db(args: argparse.Namespace) -> int:
    from app import migrate

    url = _db_url(args)
    if args.action == "upgrade":
        migrate.upgrade(url, args.revision or "head", pg_cron=not args.no_pg_cron)
    elif args.action == "downgrade":
        migrate.downgrade(url, args.revision or "base", pg_cron=not args.no_pg_cron)
    current, head = migrate.current(url), migrate.head()
    print(json.dumps({"database": _redact_url(url), "revision": current, "head": head,
                      "up_to_date": current == head}))
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    from app.adapters import registry

    infos = registry.info()
    if args.json:
        print(json.dumps([i.__dict__ for i in infos], indent=2))
        return 0
    for info in infos:
        fields = ", ".join((info.config_schema or {}).get("properties", {})) or "-"
        print(f"{info.name:<14} {info.origin:<10} {info.target:<45} config: {fields}")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from app.dev import run

    return run(minutes=args.minutes)


def _redact_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# -- parser
def build_parser(extensions: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="integration-dispatch",
                                     description="Postgres-centric scheduler and dispatcher for accounting "
                                                 "syncs and exports.")
    parser.add_argument("--database-url", help="database to use (default: DATABASE_URL, else the local cluster)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the daemon: claim and run jobs, serve /health")
    p.add_argument("--port", type=int, help="HTTP port (default: DISPATCH_HTTP_PORT)")
    p.add_argument("--concurrency", type=int, help="jobs run at once (default: DISPATCH_CONCURRENCY)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("db", help="migrate the database: upgrade | downgrade | status")
    p.add_argument("action", choices=["upgrade", "downgrade", "status"])
    p.add_argument("revision", nargs="?", help="target revision (default: head / base)")
    p.add_argument("--no-pg-cron", action="store_true", help="do not register the pg_cron jobs")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("adapters", help="list the registered adapters")
    p.add_argument("action", nargs="?", choices=["list"], default="list")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_adapters)

    p = sub.add_parser("dev", help="run the demo: local cluster, vendor emulators, seeded schedules, the daemon, "
                                   "a live view")
    p.add_argument("--minutes", type=float, help="stop after this many minutes (default: until Ctrl-C)")
    p.set_defaults(func=cmd_dev)

    if extensions:
        for register in _extensions():
            register(sub)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """Command groups that live in their own modules (they register their subparsers)."""
    from app import commands

    return commands.REGISTER


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `serve` is the cold-start path: skip importing the operator commands.
    parser = build_parser(extensions="serve" not in argv[:3])
    args = parser.parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except DispatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 — one line, never a traceback, for known driver errors
        import psycopg

        if isinstance(exc, psycopg.Error):
            diag = getattr(exc, "diag", None)
            hint = getattr(diag, "message_hint", None) if diag else None
            print(f"error: {str(exc).splitlines()[0]}" + (f"\n  hint: {hint}" if hint else ""), file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
