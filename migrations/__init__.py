"""The migrations as package data (app.migrations): Alembic reads env.py and versions/ from here."""

from __future__ import annotations

import re
from pathlib import Path

VERSIONS = Path(__file__).resolve().parent / "versions"


def earlier_function(revision_file: str, name: str, args: str) -> str:
    """An earlier revision's text of one ``dispatch`` function as CREATE OR REPLACE: what a later
    revision builds on, and restores on downgrade."""
    text = (VERSIONS / revision_file).read_text()
    match = re.search(rf"CREATE (?:OR REPLACE )?FUNCTION dispatch\.{name}\({re.escape(args)}.*?\$\$;\n", text, re.S)
    assert match, f"{name} not found in {revision_file}"
    return re.sub(r"^CREATE (?:OR REPLACE )?FUNCTION", "CREATE OR REPLACE FUNCTION", match.group(0))
