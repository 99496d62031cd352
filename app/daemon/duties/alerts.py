"""Alert forwarding: every new alert goes to the log and, when ALERT_WEBHOOK_URL is set, to
that URL (retried with backoff in the background, never blocking job work)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from app.core import logs
from app.daemon.duties.base import Service
from app.db.queries import query

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from app.daemon.executor import HttpClients


class AlertForwarder(Service):
    name = "alerts"

    def __init__(self, pool: AsyncConnectionPool[Any], http: HttpClients, webhook_url: str | None,
                 interval: float = 30.0, attempts: int = 3) -> None:
        super().__init__(interval)
        self.pool, self.http, self.webhook_url, self.attempts = pool, http, webhook_url, attempts
        self.wake = asyncio.Event()
        self._deliveries: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        # Woken by NOTIFY dispatch_alerts as well as the interval.
        async def nudge() -> None:
            while True:
                await self.wake.wait()
                self.wake.clear()
                try:
                    await self.run_once()
                except Exception as exc:  # noqa: BLE001 — the interval loop retries
                    self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"

        waker = asyncio.create_task(nudge())
        try:
            await super().run()
        finally:
            waker.cancel()

    async def run_once(self) -> int:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(query("alerts_to_forward"))).fetchall()
        alerts = [dict(zip(("id", "kind", "subject", "message", "details", "integration_id", "job_id",
                            "schedule_id", "raised_at"), row, strict=True)) for row in rows]
        for alert in alerts:
            logs.event("alert.raised", logging.WARNING, alert_id=alert["id"], kind=alert["kind"],
                       subject=alert["subject"], message=alert["message"])
        if alerts and self.webhook_url:
            task = asyncio.create_task(self._deliver(alerts))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        return len(alerts)

    async def _deliver(self, alerts: list[dict[str, Any]]) -> None:
        body = json.dumps({"alerts": alerts}, default=str)
        delay = 1.0
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self.http.get().post(str(self.webhook_url), content=body, timeout=10,
                                                      headers={"Content-Type": "application/json"})
                if response.status_code < 300:
                    return
                error = f"HTTP {response.status_code}"
            except Exception as exc:  # noqa: BLE001 — any delivery failure is retried, then handed back
                error = type(exc).__name__
            logs.event("alert.delivery_failed", logging.WARNING, attempt=attempt, error=error,
                       alert_ids=[a["id"] for a in alerts])
            await asyncio.sleep(delay)
            delay *= 4
        async with self.pool.connection() as conn:  # the next round tries again
            await conn.execute(query("alerts_unforward"), {"ids": [a["id"] for a in alerts]})
