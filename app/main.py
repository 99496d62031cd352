"""``integration-dispatch``: the process entry point and the top of the composition root.

It builds the command line from the groups in :mod:`app.cli`, and owns the two commands
that need the whole system: ``serve`` (the daemon, wired in :mod:`app.composition`) and
``dev`` (the demo, in :mod:`app.devkit`, the one place a local cluster is started).
Errors print as one line plus what to do.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from app import __version__
from app.cli import exits
from app.core.errors import DispatchError

Handler = Callable[[argparse.Namespace], int]


def cmd_serve(args: argparse.Namespace) -> int:
    from app.cli.context import database_url
    from app.composition import serve
    from app.core.settings import get_settings

    settings = get_settings()
    settings.database_url = database_url(args)  # fails closed, naming DATABASE_URL
    return serve(settings, port=args.port, concurrency=args.concurrency)


def cmd_dev(args: argparse.Namespace) -> int:
    # The demo is dev tooling: the runtime never imports it, this command alone does.
    from app.devkit.demo import run

    return run(minutes=args.minutes)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits with exits.USAGE (64) rather than 2: a script can tell
    "you called me wrong" from "it failed". Subparsers inherit the class."""

    def error(self, message: str) -> Any:  # argparse types it NoReturn
        self.print_usage(sys.stderr)
        self.exit(exits.USAGE, f"{self.prog}: error: {message}\n")


def build_parser(extensions: bool = True) -> argparse.ArgumentParser:
    parser = _Parser(prog="integration-dispatch",
                                     description="Postgres-centric scheduler and dispatcher for accounting "
                                                 "syncs and exports.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    parser.add_argument("--database-url", help="database to use (default: DATABASE_URL, else libpq's PG* variables)")
    parser.add_argument("--env-file", help="read settings from this env file too (default: DISPATCH_ENV_FILE; "
                                           "no file is read implicitly)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the daemon: claim and run jobs, serve /health")
    p.add_argument("--port", type=int, help="HTTP port (default: DISPATCH_HTTP_PORT)")
    p.add_argument("--concurrency", type=int, help="jobs run at once (default: DISPATCH_CONCURRENCY)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("dev", help="run the demo: local cluster, vendor emulators, seeded schedules, the daemon, "
                                   "a live view")
    p.add_argument("--minutes", type=float, help="stop after this many minutes (default: until Ctrl-C)")
    p.set_defaults(func=cmd_dev)

    if extensions:
        for register in _groups():
            register(sub)
    return parser


def _groups() -> list[Callable[[Any], None]]:
    """The operator command groups, each registering its own subparsers."""
    from app.cli import adapters, alerts, db, drift, health, integrations, jobs, schedules, secrets

    return [m.register for m in (db, adapters, jobs, integrations, schedules, secrets, drift, alerts, health)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `serve` is the cold-start path: skip importing the operator commands.
    parser = build_parser(extensions="serve" not in argv[:3])
    args = parser.parse_args(argv)
    if args.env_file:
        os.environ["DISPATCH_ENV_FILE"] = args.env_file
    handler: Handler = args.func
    try:
        return handler(args)
    except DispatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exits.of(exc)
    except KeyboardInterrupt:
        return exits.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 — one line, never a traceback, for known driver errors
        driver_error = _driver_error(exc)
        if driver_error is None:
            raise
        from app.db.errors import translate

        refusal = translate(driver_error)
        hint = f"\n  hint: {refusal.hint}" if refusal.hint else ""
        print(f"error: {refusal.message}{hint}", file=sys.stderr)
        return {"unavailable": exits.UNAVAILABLE, "unknown_reference": exits.NOT_FOUND}.get(refusal.kind, exits.ERROR)


def _driver_error(exc: BaseException) -> Any:
    """The psycopg error behind ``exc`` (itself, or the one SQLAlchemy wraps for `db`), else None."""
    import psycopg

    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        if isinstance(candidate, psycopg.Error):
            return candidate
    return None


if __name__ == "__main__":
    raise SystemExit(main())
