"""Alembic environment: one connection, raw-SQL migrations, the database from the caller.

The conninfo comes from ``-x url=...`` (what :mod:`app.db.migrate` passes: a URL, a libpq
key=value string, or ``""`` for libpq's ``PG*`` variables), else ``DATABASE_URL``.
``-x pg_cron=off`` skips the pg_cron registration (the test harness builds its template
database that way, because a database that pg_cron connects to every minute cannot serve
as a template).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from app.db import connect

VERSION_SCHEMA = "dispatch"  # not public: Supabase exposes public to its API roles


def _conninfo() -> str:
    x = context.get_x_argument(as_dictionary=True)
    if "url" in x:
        return connect.libpq(x["url"])
    from app.core.settings import get_settings

    return connect.resolve(None, get_settings().database_url)


def _prepare(connection: Connection) -> None:
    """One migrator per database, and the version table where it belongs."""
    if connection.execute(text("SELECT to_regclass('supabase_migrations.schema_migrations')")).scalar() and \
            connection.execute(text("SELECT EXISTS (SELECT 1 FROM supabase_migrations.schema_migrations "
                                    "WHERE name LIKE 'dispatch_%')")).scalar():
        raise SystemExit("this database's dispatch schema is managed by `supabase db push` "
                         "(supabase/migrations): migrate it that way, not with `integration-dispatch db upgrade`")
    connection.execute(text("CREATE SCHEMA IF NOT EXISTS dispatch"))
    # Databases migrated before the version table moved out of public.
    if connection.execute(text("SELECT to_regclass('public.alembic_version') IS NOT NULL "
                               "AND to_regclass('dispatch.alembic_version') IS NULL")).scalar():
        connection.execute(text("ALTER TABLE public.alembic_version SET SCHEMA dispatch"))
    connection.commit()


def run_migrations_online() -> None:
    with connect.engine(_conninfo()).connect() as connection:
        _prepare(connection)
        context.configure(connection=connection, transaction_per_migration=True,
                          version_table_schema=VERSION_SCHEMA)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
