"""Operator command groups beyond serve/db/adapters (jobs, integrations, schedules, ...).

Each entry of ``REGISTER`` adds its subparsers to the CLI. The groups live in ``cli_jobs``
(enqueue, jobs), ``cli_setup`` (integrations, schedules, secrets) and ``cli_monitor``
(drift, alerts, health); ``cli_support`` holds what they share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app import cli_jobs, cli_monitor, cli_setup

REGISTER: list[Callable[[Any], None]] = [cli_jobs.register, cli_setup.register, cli_monitor.register]
