"""The job as the daemon holds it after a claim, and what running it came to."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class ClaimedJob:
    """One row returned by the claim (``claim_jobs`` in sql/queries.sql), joined with its integration."""

    id: int
    integration_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    scheduled_for: datetime
    run_after: datetime
    enqueued_at: datetime
    started_at: datetime
    idempotency_key: str
    schedule_id: int | None
    adapter: str
    config: dict[str, Any]
    secret_name: str | None
    circuit: str
    #: Why the payload could not be read (nested deeper than Python parses); the job fails with it.
    unreadable: str | None = None


class Status(enum.StrEnum):
    """What one run of a job came to; the poller writes the matching transition."""

    SUCCEEDED = "succeeded"   # done: the completer writes it in a batch
    RETRY = "retry"           # try again after ``delay``; the attempt counts
    PARK = "park"             # wait (open circuit, database trouble) without spending the attempt
    FAILED = "failed"         # terminal: permanent error or attempts spent


@dataclass
class Outcome:
    status: Status
    result: dict[str, Any] | None = None
    error: str | None = None
    delay: float = 0.0
    vendor_fault: bool = False        # the vendor (not the job) failed: counts against health
