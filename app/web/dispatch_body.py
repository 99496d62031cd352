"""The body of ``POST /dispatch`` as a pydantic model, imported on the first request (and for
the OpenAPI document): the daemon's start and ``/health`` never load pydantic for it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from app.web.api import KIND_PATTERN

_EARLIEST, _LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def _in_range(value: datetime) -> datetime:
    # Bounded so that every stored time reads back into Python (no BC years, no infinity) and
    # normalised to UTC because PostgreSQL refuses offsets beyond ±15:59 that Python accepts.
    if not _EARLIEST <= value < _LATEST:
        raise ValueError("must be between 1970-01-01 and 9000-01-01")
    return value.astimezone(UTC)


Timestamp = Annotated[AwareDatetime, AfterValidator(_in_range)]


class DispatchRequest(BaseModel):
    """The body of ``POST /dispatch``; the fields are those of ``dispatch.enqueue_job``."""

    model_config = ConfigDict(extra="forbid")

    integration_id: str = Field(min_length=1, max_length=63, description="an integration's id (slug)")
    kind: str = Field(pattern=KIND_PATTERN, description="the job kind, e.g. sync or export")
    payload: dict[str, Any] | None = Field(None, description="a JSON object handed to the adapter; default {}")
    scheduled_for: Timestamp | None = Field(None, description="the slot this job stands for; default now")
    idempotency_key: str | None = Field(None, min_length=1, max_length=512, description=(
        "one key, one job: repeating it returns the first job with duplicate = true"))
    priority: int | None = Field(None, ge=-32768, le=32767, strict=True, description="lower runs first; default 0")
    max_attempts: int | None = Field(None, ge=1, le=1000, strict=True, description="default 5")
    run_after: Timestamp | None = Field(None, description="the earliest start; default scheduled_for")
