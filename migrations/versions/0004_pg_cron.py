"""pg_cron drives time: `dispatch-tick` and `dispatch-maintain` every minute, history cleanup daily.

pg_cron lives in one database per server (``cron.database_name``). Where that is the app
database the jobs are plain ``cron.schedule``; elsewhere they are created from a second
connection to the pg_cron database with ``cron.schedule_in_database`` and named
``<job>@<app database>`` (job names are per server, and several app databases may share it).
Where pg_cron is missing (not preloaded, no extension, no privilege) the migration succeeds
and says what to do; the daemon's watchdog runs the tick meanwhile. ``-x pg_cron=off`` skips
all of it (the test template is built that way: pg_cron cannot connect to a template).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import logging
import sys

from alembic import context, op
from sqlalchemy import text
from sqlalchemy.engine import Connection

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# (name, schedule, command). pg_cron 1.4 runs in GMT; these are time-zone free anyway.
JOBS = [
    ("dispatch-tick", "* * * * *", "SELECT dispatch.tick()"),
    ("dispatch-maintain", "* * * * *", "SELECT dispatch.maintain()"),
]
# Runs where cron.job_run_details lives (the pg_cron database), which pg_cron never prunes.
CLEANUP = ("dispatch-cleanup-cron-history", "17 3 * * *",
           "DELETE FROM cron.job_run_details WHERE end_time < now() - interval '7 days'")
WHAT_TO_DO = ("the tick then runs only when the daemon's watchdog runs it. To let pg_cron drive it: "
              "add pg_cron to shared_preload_libraries, CREATE EXTENSION pg_cron in the database named by "
              "cron.database_name, GRANT USAGE ON SCHEMA cron (and EXECUTE on cron.schedule_in_database) "
              "to the migrating role, then run `alembic downgrade 0003 && alembic upgrade head`")


def _say(message: str) -> None:
    log.warning("0004_pg_cron: %s", message)
    print(f"0004_pg_cron: {message}", file=sys.stderr)


def _enabled() -> bool:
    return context.get_x_argument(as_dictionary=True).get("pg_cron", "on").lower() not in ("off", "false", "0", "no")


def _cron_database(bind: Connection) -> str | None:
    """cron.database_name, or None (with a message) when pg_cron is not preloaded."""
    name = bind.execute(text("SELECT current_setting('cron.database_name', true)")).scalar()
    if not name:
        _say(f"pg_cron is not loaded on this server (no cron.database_name); {WHAT_TO_DO}")
        return None
    return str(name)


def _other_database_url(bind: Connection, dbname: str) -> str:
    """The migration's own connection parameters (whatever form they came in), another database."""
    from psycopg.conninfo import make_conninfo

    info = bind.connection.dbapi_connection.info  # type: ignore[union-attr]
    extra = {"password": info.password} if info.password else {}
    return make_conninfo(info.dsn, dbname=dbname, **extra)


def upgrade() -> None:
    if not _enabled():
        _say("skipped (-x pg_cron=off); the daemon's watchdog will run the tick")
        return
    bind = op.get_bind()
    cron_db = _cron_database(bind)
    if cron_db is None:
        return
    app_db = str(bind.execute(text("SELECT current_database()")).scalar())
    if cron_db == app_db:
        _schedule_here(bind)
    else:
        _schedule_elsewhere(bind, cron_db, app_db)


def _schedule_here(bind: Connection) -> None:
    has = bind.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'")).scalar()
    if not has:
        _say(f"pg_cron is preloaded but the extension is not created in this database; {WHAT_TO_DO}")
        return
    try:
        with bind.begin_nested():
            for name, schedule, command in [*JOBS, CLEANUP]:
                bind.execute(text("SELECT cron.schedule(:n, :s, :c)"), {"n": name, "s": schedule, "c": command})
    except Exception as exc:  # privilege errors: the migration itself must still succeed
        _say(f"could not schedule the pg_cron jobs ({str(exc).splitlines()[0]}); {WHAT_TO_DO}")
        return
    _say("scheduled dispatch-tick, dispatch-maintain, dispatch-cleanup-cron-history with pg_cron")


def _schedule_elsewhere(bind: Connection, cron_db: str, app_db: str) -> None:
    import psycopg

    try:
        with psycopg.connect(_other_database_url(bind, cron_db), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'").fetchone():
                _say(f"pg_cron is preloaded but not created in database {cron_db!r}; {WHAT_TO_DO}")
                return
            with conn.transaction():
                for name, schedule, command in JOBS:
                    conn.execute("SELECT cron.schedule_in_database(%s, %s, %s, %s)",
                                 [f"{name}@{app_db}", schedule, command, app_db])
                name, schedule, command = CLEANUP
                conn.execute("SELECT cron.schedule_in_database(%s, %s, %s, %s)",
                             [f"{name}@{app_db}", schedule, command, cron_db])
    except psycopg.Error as exc:
        _say(f"could not schedule the pg_cron jobs in database {cron_db!r} "
             f"({str(exc).splitlines()[0]}); {WHAT_TO_DO}")
        return
    _say(f"scheduled dispatch-tick@{app_db}, dispatch-maintain@{app_db} with pg_cron (in {cron_db!r})")


def _names(app_db: str, here: bool) -> list[str]:
    names = [name for name, _, _ in [*JOBS, CLEANUP]]
    return names if here else [f"{n}@{app_db}" for n in names]


def downgrade() -> None:
    if not _enabled():
        _say("skipped (-x pg_cron=off): pg_cron jobs, if any, are left in place")
        return
    bind = op.get_bind()
    cron_db = _cron_database(bind)
    if cron_db is None:
        return
    app_db = str(bind.execute(text("SELECT current_database()")).scalar())
    # By job id: cron.unschedule(name) takes `name` on 1.4 and `text` on 1.5+.
    sql = "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = ANY(%s)"
    if cron_db == app_db:
        if bind.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'")).scalar():
            bind.execute(text(sql.replace("%s", "CAST(:names AS text[])")), {"names": _names(app_db, True)})
        return
    import psycopg

    try:
        with psycopg.connect(_other_database_url(bind, cron_db), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'").fetchone():
                conn.execute(sql, [_names(app_db, False)])
    except psycopg.Error as exc:
        _say(f"could not unschedule the pg_cron jobs in {cron_db!r} ({str(exc).splitlines()[0]}); "
             f"remove them with: SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE '%@{app_db}'")
