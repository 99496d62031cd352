"""Helpers to run an adapter against an emulator with a real httpx.AsyncClient."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from app.adapters.base import Integration, JobContext, ProbeContext
from app.core.secret import Secret

T = TypeVar("T")


@dataclass
class Vendor:
    """An emulator, its URL, and what an integration needs to reach it."""

    emulator: Any
    url: str
    config: dict[str, Any]
    credentials: dict[str, str]
    state: dict[str, Any] = field(default_factory=dict)  # per-integration, like the daemon's

    def job(self, http: httpx.AsyncClient, kind: str, payload: dict[str, Any],
            key: str = "acme:export:2026-02-01T00:00:00Z",
            credentials: dict[str, str] | None = None) -> JobContext:
        return JobContext(
            job_id=1, integration=Integration("acme", "x", self.config), kind=kind,
            payload=payload, idempotency_key=key, attempt=1, scheduled_for=datetime.now(UTC),
            credentials=Secret(json.dumps(credentials or self.credentials)), http=http,
            state=self.state,
        )

    def probe_ctx(self, http: httpx.AsyncClient,
                  credentials: dict[str, str] | None = None) -> ProbeContext:
        return ProbeContext(
            integration=Integration("acme", "x", self.config),
            credentials=Secret(json.dumps(credentials or self.credentials)), http=http,
            state=self.state,
        )


def with_client(work: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run ``work(http)`` in a fresh event loop with a fresh client (no pytest-asyncio)."""

    async def main() -> T:
        async with httpx.AsyncClient() as http:
            return await work(http)

    return asyncio.run(main())
