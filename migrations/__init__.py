"""The migrations as package data (app.migrations): Alembic reads env.py and versions/ from here."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

VERSIONS = Path(__file__).resolve().parent / "versions"


def earlier_function(revision_file: str, name: str, args: str) -> str:
    """An earlier revision's text of one ``dispatch`` function as CREATE OR REPLACE: what a later
    revision builds on, and restores on downgrade."""
    text = (VERSIONS / revision_file).read_text()
    match = re.search(rf"CREATE (?:OR REPLACE )?FUNCTION dispatch\.{name}\({re.escape(args)}.*?\$\$;\n", text, re.S)
    assert match, f"{name} not found in {revision_file}"
    return re.sub(r"^CREATE (?:OR REPLACE )?FUNCTION", "CREATE OR REPLACE FUNCTION", match.group(0))


def earlier_revision(revision_file: str) -> ModuleType:
    """An earlier revision's module, for a later revision that builds on the text it installed."""
    spec = importlib.util.spec_from_file_location(f"_dispatch_revision_{revision_file[:4]}", VERSIONS / revision_file)
    assert spec and spec.loader, revision_file
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
