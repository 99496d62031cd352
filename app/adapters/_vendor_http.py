"""What the accounting adapters share: HTTP error classification, Retry-After, timeouts,
payload models and the deterministic external reference that makes exports exactly-once.

Rules from reference/vendor-apis.md §4.1: throttling and 5xx are retryable (honour
``Retry-After``); a write whose outcome is unknown (read timeout, reset after sending) is
retryable too, because the next attempt looks the external reference up before writing, and
(the write-ahead intent, app.adapters.base.Writes) does not write again until the vendor's
processing window since the last send has passed.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.core.errors import AuthError, DispatchError, PermanentError, RetryableError

M = TypeVar("M", bound=BaseModel)

#: Longest wait we accept from a vendor hint; longer ones are clamped (the job is re-queued).
MAX_RETRY_AFTER_S = 3600.0
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Statuses that say the vendor refused the request before running it: 429 (throttled) and
#: 503 (BC: "a 503 from queue timeout means it was never processed", §4.1).
REFUSED_STATUSES = frozenset({429, 503})
#: Prefix + 16 hex digits = 18 characters: fits BC's Code[20] documentNumber (§2.8).
REFERENCE_PREFIX = "ID"


def timeout(read: float, connect: float = 10.0) -> httpx.Timeout:
    """Generous but bounded: httpx's 5 s default is too short for postings (§4.2)."""
    return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def external_reference(idempotency_key: str) -> str:
    """The vendor-side document reference for one idempotency key: same key, same reference."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16].upper()
    return f"{REFERENCE_PREFIX}{digest}"


def vendor_url(value: str, what: str) -> str:
    """A vendor endpoint from an integration's config: https, except plain http to loopback
    (the emulators), so credentials never cross the network in the clear."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme == "https" and host:
        return value
    if parts.scheme == "http" and loopback:
        return value
    raise ValueError(f"{what} must be an https:// URL (plain http only to loopback, for emulators), got {value!r}")


def same_origin(link: str, base: str) -> bool:
    """Whether ``link`` (e.g. an @odata.nextLink) points where ``base`` does: scheme, host, port."""
    from urllib.parse import urlsplit

    a, b = urlsplit(link), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


class Refused(RetryableError):
    """The vendor refused the request before running it (throttled, queue full): a write
    refused so was not applied, whatever the write-ahead ledger recorded for it."""


# -- HTTP ---------------------------------------------------------------------------------
async def send(
    http: httpx.AsyncClient, method: str, url: str, *, vendor: str, write: bool, **kwargs: Any
) -> httpx.Response:
    """One request; transport failures become RetryableError saying whether a write may
    have happened. Never retried here: the caller's lookup-before-write decides."""
    try:
        return await http.request(method, url, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise RetryableError(f"{vendor} is unreachable ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        outcome = "the write may have happened; the next attempt checks before writing"
        detail = outcome if write else "no answer"
        raise RetryableError(f"{vendor} did not answer ({type(exc).__name__}): {detail}") from None


def status_error(vendor: str, response: httpx.Response, detail: str) -> DispatchError | None:
    """The error for a non-2xx status (None for success)."""
    status = response.status_code
    if status < 400:
        return None
    message = f"{vendor} answered HTTP {status}: {detail}"
    if status == 401:
        return AuthError(message)
    if status in RETRYABLE_STATUSES or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        kind = Refused if status in REFUSED_STATUSES else RetryableError
        return kind(message, retry_after=retry_after)
    return PermanentError(message)


def json_body(response: httpx.Response) -> Any:
    """The parsed body, or None when it is not JSON (HTML error pages, empty 204s)."""
    try:
        return response.json()
    except ValueError:
        return None


# -- payloads -----------------------------------------------------------------------------
def validate(model: type[M], data: Any, what: str) -> M:
    """``model`` from ``data``, or PermanentError naming the fields (never their values)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in exc.errors()[:3]
        )
        raise PermanentError(f"invalid {what}: {problems}") from None


class LedgerLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: Annotated[str, Field(min_length=1, max_length=20)]
    amount: Annotated[Decimal, Field(max_digits=18, decimal_places=2)]
    description: Annotated[str, Field(max_length=100)] = ""


class SlotFields(BaseModel):
    """What dispatch.tick() adds to a scheduled job's payload: the slot and the period it stands for."""

    model_config = ConfigDict(extra="forbid")

    slot: datetime | None = None
    period_unit: str | None = None      # the schedule's period: slot, day, week or month
    period_label: str | None = None     # e.g. 2026-11-30, 2026-W48, 2026-11 (the slot's instant for `slot`)
    period_start: datetime | None = None
    period_end: datetime | None = None
    timezone: str | None = None
    schedule_id: int | None = None


class ExportPayload(SlotFields):
    """``export``: one balanced voucher for the period, written as one document."""

    posting_date: date
    period: str | None = None
    description: Annotated[str, Field(max_length=100)] = ""
    lines: Annotated[list[LedgerLine], Field(min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _balanced(self) -> ExportPayload:
        total = sum((line.amount for line in self.lines), Decimal(0))
        if total != 0:
            raise ValueError(f"lines must balance, they sum to {total}")
        return self


class SyncPayload(SlotFields):
    """``sync``: read everything changed since ``since`` (all when absent)."""

    since: datetime | None = None
    page_size: Annotated[int | None, Field(ge=1, le=10_000)] = None

    def since_utc(self) -> datetime | None:
        if self.since is None or self.since.tzinfo is not None:
            return self.since
        return self.since.replace(tzinfo=UTC)  # a naive instant is taken as UTC


def credentials_json(secret: Any, vendor: str, fields: tuple[str, ...]) -> dict[str, str]:
    """The credential fields from the Secret's JSON; the message names fields, not values."""
    try:
        data = secret.json() if secret is not None else {}
    except ValueError:
        data = {}
    missing = [f for f in fields if not isinstance(data.get(f), str) or not data.get(f)]
    if missing:
        raise PermanentError(
            f"{vendor} credentials must be a JSON object with {', '.join(fields)}; "
            f"missing: {', '.join(missing)}"
        )
    return {f: data[f] for f in fields}
