"""A worked example of a third-party adapter: POSTs a job's payload to MyCorp's ledger API.

Install it next to integration-dispatch (``pip install ./docs/examples/mycorp_adapter``) and it
appears in ``integration-dispatch adapters list`` through its entry point.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, HttpUrl

from app.adapters.base import JobContext, ProbeContext
from app.core.errors import AuthError, PermanentError, RetryableError


class MyCorpConfig(BaseModel):
    base_url: HttpUrl


class MyCorpAdapter:
    name: ClassVar[str] = "mycorp"
    config_model: ClassVar[type[BaseModel]] = MyCorpConfig
    default_health_mode: ClassVar[str] = "active"

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        config = MyCorpConfig.model_validate(ctx.integration.config)
        token = ctx.credentials.reveal() if ctx.credentials else ""
        response = await ctx.http.post(f"{config.base_url}entries", json=ctx.payload,
                                       headers={"Authorization": f"Bearer {token}",
                                                "Idempotency-Key": ctx.idempotency_key})
        if response.status_code == 401:
            raise AuthError("MyCorp refused the token")
        if response.status_code in (429, 503):
            raise RetryableError(f"MyCorp is busy ({response.status_code})")
        if response.status_code >= 400:
            raise PermanentError(f"MyCorp rejected the entry: {response.text[:200]}")
        return {"id": response.json().get("id")}

    async def probe(self, ctx: ProbeContext) -> None:
        config = MyCorpConfig.model_validate(ctx.integration.config)
        (await ctx.http.get(f"{config.base_url}health", timeout=10)).raise_for_status()

    async def warm_up(self, ctx: ProbeContext) -> None:
        return None
