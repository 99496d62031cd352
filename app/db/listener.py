"""The LISTEN side: one dedicated autocommit session connection, never a pooled one.

It wakes the worker on ``dispatch_jobs`` notifications, reconnects by itself with
backoff, and wakes the worker after every (re)connect too: notifications sent while it was
away are lost, so the worker must rescan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg

from app.core import logs

CHANNELS = ("dispatch_jobs", "dispatch_alerts")


class Listener:
    def __init__(self, url: str, on_jobs: Callable[[], None], on_alerts: Callable[[], None] | None = None,
                 enabled: bool = True) -> None:
        self._url = url
        self._on_jobs = on_jobs
        self.on_alerts = on_alerts
        self.enabled = enabled
        self.connected = False
        self.last_error: str | None = None
        self._conn: psycopg.AsyncConnection[object] | None = None

    async def run(self) -> None:
        """Listen until cancelled; reconnect on any connection error."""
        if not self.enabled:
            return
        delay = 0.1
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            finally:
                self.connected = False
                await self._close()
            logs.event("listener.disconnected", logging.WARNING, error=self.last_error, retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _session(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True,
                                                           application_name="dispatch-listener")
        for channel in CHANNELS:
            await self._conn.execute(f"LISTEN {channel}")
        self.connected = True
        self.last_error = None
        logs.event("listener.connected")
        self._on_jobs()  # rescan: anything sent while we were away is lost
        async for notify in self._conn.notifies():
            if notify.channel == "dispatch_jobs":
                self._on_jobs()
            elif self.on_alerts is not None:
                self.on_alerts()

    async def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # closing a broken connection may fail; nothing to do
                await conn.close()
