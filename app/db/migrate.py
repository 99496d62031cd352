"""Run the Alembic migrations from code (the CLI, the demo and the tests share this).

The migrations ship inside the package (``app.migrations``), so this works from a wheel
with no checkout and no ``alembic.ini``.
"""

from __future__ import annotations

import argparse
from importlib import resources

from alembic import command
from alembic.config import Config


def _config(url: str, pg_cron: bool) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("app.migrations")))
    cfg.cmd_opts = argparse.Namespace(x=[f"url={url}", f"pg_cron={'on' if pg_cron else 'off'}"])
    return cfg


def upgrade(url: str, revision: str = "head", pg_cron: bool = True) -> None:
    command.upgrade(_config(url, pg_cron), revision)


def downgrade(url: str, revision: str = "base", pg_cron: bool = True) -> None:
    command.downgrade(_config(url, pg_cron), revision)


def schedule(url: str) -> None:
    """(Re)register the pg_cron jobs exactly as migration 0004 does, idempotently (pg_cron
    upserts jobs by name): the repair for a database whose jobs were lost or never registered,
    with no downgrade of anything."""
    import importlib.util

    from app.db import connect

    path = resources.files("app.migrations").joinpath("versions", "0004_pg_cron.py")
    spec = importlib.util.spec_from_file_location("dispatch_migration_0004", str(path))
    assert spec is not None and spec.loader is not None
    registration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(registration)
    with connect.engine(url).connect() as bind:
        cron_db = registration._cron_database(bind)
        if cron_db is None:
            return
        app_db = str(bind.exec_driver_sql("SELECT current_database()").scalar())
        if cron_db == app_db:
            registration._schedule_here(bind)
        else:
            registration._schedule_elsewhere(bind, cron_db, app_db)
        bind.commit()


def head() -> str | None:
    """The newest revision the code ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config("", False)).get_current_head()


def current(url: str) -> str | None:
    import psycopg

    with psycopg.connect(url) as conn:
        # public: a database not migrated since the version table moved (migrations/env.py moves it)
        for table in ("dispatch.alembic_version", "public.alembic_version"):
            exists = conn.execute("SELECT to_regclass(%s)", [table]).fetchone()
            if exists and exists[0] is not None:
                row = conn.execute(f"SELECT version_num FROM {table}").fetchone()
                return row[0] if row else None
        return None
