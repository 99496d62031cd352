"""Alembic environment: one connection, raw-SQL migrations, the database from the caller.

The conninfo comes from ``-x url=...`` (what :mod:`app.db.migrate` passes: a URL, a libpq
key=value string, or ``""`` for libpq's ``PG*`` variables), else ``DATABASE_URL``.
``-x pg_cron=off`` skips the pg_cron registration (the test harness builds its template
database that way, because a database that pg_cron connects to every minute cannot serve
as a template).
"""

from __future__ import annotations

from alembic import context

from app.db import connect


def _conninfo() -> str:
    x = context.get_x_argument(as_dictionary=True)
    if "url" in x:
        return connect.libpq(x["url"])
    from app.core.settings import get_settings

    return connect.resolve(None, get_settings().database_url)


def run_migrations_online() -> None:
    with connect.engine(_conninfo()).connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
