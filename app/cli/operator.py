"""What manual actions share: who acts (the OS user), why (``--reason``), the cap above
which a bulk action needs ``--yes``, and the record of schedule and integration actions."""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

import psycopg

from app.cli.context import CommandError, Row, fetch_one

# More rows than this in one action is more likely a filter typo than an intent.
BULK_CAP = 100


def actor() -> str:
    """The OS user running the CLI: what job_events and operator_actions record as the actor."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return "unknown-os-user"


def act(conn: psycopg.Connection[Row], reason: str | None, who: str | None = None) -> None:
    """Name the actor (``who``, default the OS user) and the reason for the rest of this
    transaction (the jobs triggers and operator_actions read them; ``SET LOCAL`` semantics)."""
    fetch_one(conn, "cli_set_actor", actor=who or actor(), reason=reason)


def check_cap(count: int, yes: bool, what: str) -> None:
    if count > BULK_CAP and not yes:
        raise CommandError(f"{count} {what} match, more than {BULK_CAP}: check the list with --dry-run, "
                           "narrow the filters, or repeat with --yes")


def record(conn: psycopg.Connection[Row], action: str, subject: str, **details: Any) -> None:
    fetch_one(conn, "cli_operator_action", action=action, subject=subject,
              details=json.dumps(details, default=str))


# -- parser
def reason_option(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--reason", required=required,
                   help="why (recorded with your OS user in the history)" + ("" if required else "; optional"))


def bulk_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--dry-run", action="store_true", help=f"list the jobs that would be {what}; change nothing")
    p.add_argument("--yes", action="store_true", help=f"allow more than {BULK_CAP} jobs in one action")
