"""``noop``: does nothing, for tests, demos and benchmarks.

Payload: ``sleep_ms`` (wait that long), ``fail`` (``"permanent"`` or any other truthy value
for a retryable failure), ``retry_after`` (seconds, with a retryable failure).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from app.adapters.base import JobContext, ProbeContext
from app.errors import PermanentError, RetryableError


class NoopAdapter:
    name: ClassVar[str] = "noop"
    config_model: ClassVar[Any] = None
    default_health_mode: ClassVar[str] = "passive"
    uses_credentials: ClassVar[bool] = False
    uses_http: ClassVar[bool] = False

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        sleep_ms = ctx.payload.get("sleep_ms")
        if sleep_ms:
            await asyncio.sleep(float(sleep_ms) / 1000)
        fail = ctx.payload.get("fail")
        if fail == "permanent":
            raise PermanentError("noop asked to fail permanently (payload.fail = 'permanent')")
        if fail:
            raise RetryableError("noop asked to fail (payload.fail)", retry_after=ctx.payload.get("retry_after"))
        return {"ok": True}

    async def probe(self, ctx: ProbeContext) -> None:
        return None

    async def warm_up(self, ctx: ProbeContext) -> None:
        return None
