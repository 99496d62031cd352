"""Database seams: connection URLs, named SQL loaded once, driver-error translation."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_BLOCK = re.compile(r"^-- name: (\w+)\s*$", re.M)


def sqlalchemy_url(url: str) -> str:
    """SQLAlchemy wants the driver named; users write plain ``postgresql://``."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@lru_cache(maxsize=1)
def queries() -> dict[str, str]:
    """Every ``-- name: x`` block of ``sql/queries.sql``, by name."""
    text = (SQL_DIR / "queries.sql").read_text()
    parts = _BLOCK.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def query(name: str) -> str:
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/queries.sql") from None
