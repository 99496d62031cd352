"""Helpers to run an adapter against an emulator with a real httpx.AsyncClient."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from app.adapters.base import Integration, JobContext, ProbeContext
from app.core.errors import PermanentError, RetryableError
from app.core.secret import Secret

T = TypeVar("T")


@dataclass
class Intent:
    last_sent_at: float
    sends: int = 1
    confirmed: dict[str, Any] | None = None


class LedgerWrites:
    """``ctx.writes`` with the decisions of dispatch.begin_write (send / wait / confirmed),
    in memory: what the adapters see from the daemon's WriteGuard, without a database."""

    def __init__(self, window: float = 0.0) -> None:
        self.window = window
        self.intents: dict[str, Intent] = {}
        self.calls: list[tuple[str, str]] = []  # (what, reference)

    async def before_write(self, reference: str) -> None:
        self.calls.append(("before_write", reference))
        intent = self.intents.get(reference)
        if intent is None:
            self.intents[reference] = Intent(time.monotonic())
            return
        if intent.confirmed is not None:
            raise PermanentError(f"the ledger records that the vendor holds {reference}")
        wait = self.window - (time.monotonic() - intent.last_sent_at)
        if wait > 0:
            raise RetryableError(f"an earlier send of {reference} may still be applied", retry_after=wait,
                                 park=True)
        intent.last_sent_at, intent.sends = time.monotonic(), intent.sends + 1

    async def confirmed(self, reference: str, document: dict[str, Any]) -> None:
        self.calls.append(("confirmed", reference))
        intent = self.intents.setdefault(reference, Intent(time.monotonic(), sends=0))
        intent.confirmed = document

    async def not_sent(self, reference: str) -> None:
        self.calls.append(("not_sent", reference))
        intent = self.intents.get(reference)
        if intent is not None and intent.confirmed is None:
            intent.sends -= 1
            if intent.sends <= 0:
                del self.intents[reference]


@dataclass
class Vendor:
    """An emulator, its URL, and what an integration needs to reach it."""

    emulator: Any
    url: str
    config: dict[str, Any]
    credentials: dict[str, str]
    state: dict[str, Any] = field(default_factory=dict)  # per-integration, like the daemon's
    writes: LedgerWrites = field(default_factory=LedgerWrites)  # per key, like the ledger

    def job(self, http: httpx.AsyncClient, kind: str, payload: dict[str, Any],
            key: str = "acme:export:2026-02-01T00:00:00Z",
            credentials: dict[str, str] | None = None) -> JobContext:
        return JobContext(
            job_id=1, integration=Integration("acme", "x", self.config), kind=kind,
            payload=payload, idempotency_key=key, attempt=1, scheduled_for=datetime.now(UTC),
            credentials=Secret(json.dumps(credentials or self.credentials)), http=http,
            state=self.state, writes=self.writes,
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
