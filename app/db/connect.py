"""Where the database is: one resolution for every command, failing closed.

Accepted, in this order: ``--database-url``, ``DATABASE_URL`` (a URL or a libpq key=value
string), then libpq's own ``PG*`` variables (``PGHOST``, ``PGDATABASE``, ``PGSERVICE``, ...).
Nothing configured is an error naming ``DATABASE_URL``: no command but ``dev`` ever starts a
local cluster in its place.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from app.core.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

_LIBPQ_ENV = ("PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE", "PGPORT", "PGUSER")
MISSING = ("DATABASE_URL is not set: export it (a postgresql:// URL or a libpq key=value string), "
           "pass --database-url, or set libpq's PG* variables; `integration-dispatch dev` runs a local demo cluster")


def resolve(explicit: str | None, configured: str | None) -> str:
    """The conninfo to use; ``""`` means libpq reads the ``PG*`` variables itself."""
    for candidate in (explicit, configured):
        if candidate:
            return libpq(candidate)
    if any(os.environ.get(name) for name in _LIBPQ_ENV):
        return ""
    raise ConfigError(MISSING)


def libpq(url: str) -> str:
    """A conninfo libpq accepts (SQLAlchemy's ``postgresql+psycopg://`` spelling undone)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def engine(conninfo: str) -> Engine:
    """A SQLAlchemy engine (for Alembic) on any conninfo libpq accepts: URLs, key=value, PG*."""
    import psycopg
    from sqlalchemy import create_engine, pool

    return create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo),
                         poolclass=pool.NullPool)


def redact(conninfo: str) -> str:
    """The conninfo with its password masked, for messages."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        parts = conninfo_to_dict(conninfo)
    except Exception:  # noqa: BLE001 — unparsable: show nothing of it
        return "(unparsable conninfo)"
    if "password" in parts:
        parts["password"] = "***"
    if conninfo.startswith(("postgresql://", "postgres://")):
        from urllib.parse import urlsplit, urlunsplit

        split = urlsplit(conninfo)
        if split.password:
            return urlunsplit(split._replace(netloc=split.netloc.replace(f":{split.password}@", ":***@")))
        return conninfo
    return make_conninfo(**{k: str(v) for k, v in parts.items()})
