"""Operator commands for vault secrets: `secrets set | list` (values are never shown)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

import psycopg

from app.cli.context import (
    CommandError,
    Row,
    connect,
    fetch_all,
    fetch_one,
    json_flag,
)
from app.cli.output import print_json, print_table


def cmd_secrets_set(args: argparse.Namespace) -> int:
    value = read_secret_value(args.name)
    with connect(args) as conn, conn.transaction():
        _require_vault(conn)
        existing = fetch_one(conn, "secret_id", name=args.name)
        if existing is None:
            fetch_one(conn, "secret_create", value=value, name=args.name, description=args.description)
        else:
            fetch_one(conn, "secret_update", id=existing["id"], value=value, description=args.description)
    if args.json:  # the name and what happened, never the value
        print_json({"name": args.name, "created": existing is None})
        return 0
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


def register(sub: Any) -> None:
    group = sub.add_parser("secrets", help="store and list vault secrets (values are never shown)").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = group.add_parser("set", help="create or replace a secret; the value comes from stdin or a hidden prompt",
                         description="Create or replace a vault secret. The value is read from stdin when piped "
                                     "(one trailing newline dropped), else from a hidden prompt; never from argv.")
    p.add_argument("name", help="secret name, e.g. acme-xledger")
    p.add_argument("--description", help="what the secret is for (kept on update when omitted)")
    json_flag(p)
    p.set_defaults(func=cmd_secrets_set)

    p = group.add_parser("list", help="secret names, descriptions, timestamps and users (never values)")
    json_flag(p)
    p.set_defaults(func=cmd_secrets_list)
