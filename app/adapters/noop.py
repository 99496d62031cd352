"""``noop``: does nothing, for tests, demos and benchmarks.

Payload: ``sleep_ms`` (wait that long), ``fail`` (``"permanent"`` or any other truthy value
for a retryable failure), ``retry_after`` (seconds, with a retryable failure).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from app.adapters.base import JobContext, ProbeContext
from app.core.errors import PermanentError, RetryableError


class NoopAdapter:
    name: ClassVar[str] = "noop"
    config_model: ClassVar[Any] = None
    default_health_mode: ClassVar[str] = "passive"
    uses_credentials: ClassVar[bool] = False
    uses_http: ClassVar[bool] = False

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        sleep_ms = _seconds(ctx.payload, "sleep_ms")
        if sleep_ms:
            await asyncio.sleep(sleep_ms / 1000)
        fail = ctx.payload.get("fail")
        if fail == "permanent":
            raise PermanentError("noop asked to fail permanently (payload.fail = 'permanent')")
        if fail:
            raise RetryableError("noop asked to fail (payload.fail)", retry_after=_seconds(ctx.payload, "retry_after"))
        return {"ok": True}

    async def probe(self, ctx: ProbeContext) -> None:
        return None

    async def warm_up(self, ctx: ProbeContext) -> None:
        return None


def _seconds(payload: dict[str, Any], field: str) -> float | None:
    value = payload.get(field)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PermanentError(f"invalid noop payload: {field} must be a number, got {type(value).__name__}") from None
    if not 0 <= number <= 86_400_000:
        raise PermanentError(f"invalid noop payload: {field} must be between 0 and 86400000")
    return number
