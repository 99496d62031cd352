"""Run the Alembic migrations from code (the CLI, the demo and the tests share this)."""

from __future__ import annotations

import argparse

from alembic import command
from alembic.config import Config

from app.localdb import ROOT


def _config(url: str, pg_cron: bool) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.cmd_opts = argparse.Namespace(x=[f"url={url}", f"pg_cron={'on' if pg_cron else 'off'}"])
    return cfg


def upgrade(url: str, revision: str = "head", pg_cron: bool = True) -> None:
    command.upgrade(_config(url, pg_cron), revision)


def downgrade(url: str, revision: str = "base", pg_cron: bool = True) -> None:
    command.downgrade(_config(url, pg_cron), revision)


def head() -> str | None:
    """The newest revision the code ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config("", False)).get_current_head()


def current(url: str) -> str | None:
    import psycopg

    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
        return row[0] if row else None


def schema_dump(url: str) -> str:
    """The dispatch and vault schemas as ``pg_dump --schema-only`` prints them, normalised
    (no version banner, no per-run restrict tokens) so two dumps of one schema are equal."""
    import subprocess

    from app.localdb import find_server

    pg_dump = find_server(install=False).bindir / "pg_dump"
    out = subprocess.run([str(pg_dump), "--schema-only", "--no-owner", "--schema=dispatch", "--schema=vault",
                          "--dbname", url], capture_output=True, text=True, check=True).stdout
    keep = [line for line in out.splitlines()
            if not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict", "-- Started on", "-- Completed on"))]
    return "\n".join(keep).strip() + "\n"
