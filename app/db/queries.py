"""Named SQL, loaded once from the package's ``sql/queries.sql``; connection URL helpers.

``sql/`` and ``migrations/`` sit at the top of the repository (the design fixes them there)
and are mapped into the wheel as the packages ``app.sql`` and ``app.migrations``, so an
installed package finds them with :mod:`importlib.resources`, with no checkout present.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

_BLOCK = re.compile(r"^-- name: (\w+)\s*$", re.M)


def sql_text(name: str) -> str:
    """A file of the packaged ``sql/`` folder."""
    return resources.files("app.sql").joinpath(name).read_text(encoding="utf-8")


def named_blocks(text: str) -> dict[str, str]:
    """Every ``-- name: x`` block of a SQL file, by name (the format of every queries file here)."""
    parts = _BLOCK.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@lru_cache(maxsize=1)
def queries() -> dict[str, str]:
    """Every named block of ``sql/queries.sql``."""
    return named_blocks(sql_text("queries.sql"))


def query(name: str) -> str:
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/queries.sql") from None
