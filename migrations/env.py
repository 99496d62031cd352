"""Alembic environment: one connection, raw-SQL migrations, URL from the environment.

The URL comes from ``-x url=...`` or ``DATABASE_URL``. ``-x pg_cron=off`` skips the pg_cron
registration (the test harness builds its template database that way, because a database
that pg_cron connects to every minute cannot serve as a template).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from app.db import sqlalchemy_url


def _url() -> str:
    x = context.get_x_argument(as_dictionary=True)
    if "url" in x:
        return sqlalchemy_url(x["url"])
    from app.settings import get_settings

    return sqlalchemy_url(get_settings().require_database_url())


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
