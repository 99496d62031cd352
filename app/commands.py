"""Operator command groups beyond serve/db/adapters (jobs, integrations, schedules, ...).

Each entry of ``REGISTER`` adds its subparsers to the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REGISTER: list[Callable[[Any], None]] = []
