"""``webhook``: POST the job as JSON to the integration's ``config.url``.

The body is signed with HMAC-SHA256 using the integration's secret
(``X-Dispatch-Signature: sha256=<hex>``) and carries the job's key in ``Idempotency-Key`` so
the receiver can drop repeats. 2xx succeeds; 408, 429 and 5xx retry (``Retry-After``
honoured); any other status fails the job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, Field, HttpUrl

from app.adapters._vendor_http import parse_retry_after
from app.adapters.base import JobContext, ProbeContext
from app.core.errors import PermanentError, RetryableError


class WebhookConfig(BaseModel):
    url: HttpUrl
    timeout_seconds: float = Field(30.0, gt=0, le=300)


class WebhookAdapter:
    name: ClassVar[str] = "webhook"
    config_model: ClassVar[type[BaseModel]] = WebhookConfig
    default_health_mode: ClassVar[str] = "passive"

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        config = ctx.config if isinstance(ctx.config, WebhookConfig) else WebhookConfig.model_validate(
            ctx.integration.config)
        body = json.dumps({
            "job_id": ctx.job_id, "integration_id": ctx.integration.id, "kind": ctx.kind,
            "payload": ctx.payload, "idempotency_key": ctx.idempotency_key, "attempt": ctx.attempt,
            "scheduled_for": ctx.scheduled_for.isoformat(),
        }, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": ctx.idempotency_key}
        if ctx.credentials is not None:
            digest = hmac.new(ctx.credentials.reveal().encode(), body, hashlib.sha256).hexdigest()
            headers["X-Dispatch-Signature"] = f"sha256={digest}"
        try:
            response = await ctx.http.post(str(config.url), content=body, headers=headers,
                                           timeout=config.timeout_seconds)
        except httpx.TransportError as exc:
            raise RetryableError(f"webhook {config.url.host} unreachable: {type(exc).__name__}") from None
        return self._outcome(response)

    def _outcome(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            return {"status": status}
        if status in (408, 429) or status >= 500:
            raise RetryableError(f"webhook answered {status}",
                                 retry_after=parse_retry_after(response.headers.get("Retry-After")))
        raise PermanentError(f"webhook refused the job with HTTP {status}: {response.text[:200]}")

    async def probe(self, ctx: ProbeContext) -> None:
        return None

    async def warm_up(self, ctx: ProbeContext) -> None:
        return None
