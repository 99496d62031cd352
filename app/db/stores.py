"""Small stores: every query the daemon runs, behind one method each, with typed rows.

The daemon never writes SQL itself; the named queries live in ``sql/queries.sql``. Every
write after a claim is conditional on ownership (``worker_id`` and ``status = 'running'``):
a write that changes no row means the job was rescued elsewhere, and the method says so.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.adapt import Loader

from app.core.job import ClaimedJob
from app.db.queries import query

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool


class Unreadable:
    """A JSON document Python cannot parse (nested deeper than its recursion limit)."""

    def __init__(self, size: int) -> None:
        self.reason = f"{size} bytes nested too deeply to read"


class _SafeJsonb(Loader):
    """jsonb, except that a document nested too deeply becomes :class:`Unreadable`: the claim
    must never fail on one job's payload (that would leave it claimed by nobody)."""

    def load(self, data: Any) -> Any:
        raw = bytes(data)
        if raw[:1] == b"\x01":  # binary jsonb: a version byte, then the text
            raw = raw[1:]
        try:
            return json.loads(raw)
        except RecursionError:
            return Unreadable(len(raw))


def _claimed(row: dict[str, Any]) -> ClaimedJob:
    payload = row["payload"]
    if isinstance(payload, Unreadable):
        row = {**row, "payload": {}, "unreadable": payload.reason}
    return ClaimedJob(**row)


class JobStore:
    """The job table as one worker sees it."""

    def __init__(self, pool: AsyncConnectionPool[Any], worker_id: str) -> None:
        self.pool, self.worker_id = pool, worker_id

    async def claim(self, limit: int, lease: float) -> list[ClaimedJob]:
        from psycopg.rows import dict_row

        params = {"worker": self.worker_id, "limit": limit, "lease": lease}
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            cur.adapters.register_loader("jsonb", _SafeJsonb)
            await cur.execute(query("claim_jobs"), params)
            return [_claimed(row) for row in await cur.fetchall()]

    async def complete(self, ids: list[int], finished: list[float], results: list[dict[str, Any]]) -> set[int]:
        """Mark these succeeded (``finished`` in epoch seconds); return the ids still ours."""
        params = {"worker": self.worker_id, "ids": ids, "finished": finished,
                  "results": json.dumps(results, default=str)}
        async with self.pool.connection() as conn:
            cur = await conn.execute(query("complete_jobs"), params)
            return {row[0] for row in await cur.fetchall()}

    async def retry(self, job_id: int, error: str | None, delay: float, refund: bool) -> bool:
        params = {"id": job_id, "worker": self.worker_id, "error": error, "delay": delay, "refund": refund}
        return await self._owned("retry_job", params)

    async def fail(self, job_id: int, error: str | None) -> bool:
        return await self._owned("fail_job", {"id": job_id, "worker": self.worker_id, "error": error})

    async def release(self, ids: list[int], reason: str) -> set[int]:
        params = {"ids": ids, "worker": self.worker_id, "reason": reason}
        async with self.pool.connection() as conn:
            return {r[0] for r in await (await conn.execute(query("release_jobs"), params)).fetchall()}

    async def renew(self, ids: list[int], lease: float) -> dict[int, bool]:
        """Extend the leases still ours: id -> whether an operator asked to cancel it."""
        params = {"ids": ids, "worker": self.worker_id, "lease": lease}
        async with self.pool.connection() as conn:
            return {r[0]: r[1] for r in await (await conn.execute(query("renew_leases"), params)).fetchall()}

    async def cancel(self, job_id: int, error: str | None) -> bool:
        return await self._owned("cancel_job", {"id": job_id, "worker": self.worker_id, "error": error})

    async def begin_write(self, job_id: int, reference: str, window: float) -> tuple[str, float, int]:
        """(decision, seconds to wait, sends so far): see dispatch.begin_write."""
        params = {"id": job_id, "worker": self.worker_id, "reference": reference, "window": window}
        async with self.pool.connection() as conn:
            row = await (await conn.execute(query("begin_write"), params)).fetchone()
        assert row is not None
        return str(row[0]), float(row[1]), int(row[2])

    async def withdraw_write(self, job_id: int, reference: str) -> bool:
        params = {"id": job_id, "worker": self.worker_id, "reference": reference}
        async with self.pool.connection() as conn:
            row = await (await conn.execute(query("withdraw_write"), params)).fetchone()
        return bool(row and row[0])

    async def confirm_write(self, job_id: int, reference: str, document: dict[str, Any]) -> None:
        params = {"id": job_id, "reference": reference, "document": json.dumps(document, default=str)}
        async with self.pool.connection() as conn:
            await conn.execute(query("confirm_write"), params)

    async def next_run_after(self) -> datetime | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(query("next_run_after"))).fetchone()
        return row[0] if row else None

    async def last_cursor(self, integration_id: str, kind: str) -> str | None:
        params = {"integration_id": integration_id, "kind": kind}
        async with self.pool.connection() as conn:
            row = await (await conn.execute(query("last_sync_cursor"), params)).fetchone()
        return str(row[0]) if row and row[0] else None

    async def trace_context(self, job_id: int) -> str | None:
        """The traceparent the job was enqueued under (read only when tracing is on)."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(query("job_trace_context"), {"id": job_id})).fetchone()
        return str(row[0]) if row and row[0] else None

    async def rescue_expired(self) -> int:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(query("rescue_expired_leases"))).fetchone()
        return int(row[0]) if row else 0

    async def _owned(self, name: str, params: dict[str, Any]) -> bool:
        async with self.pool.connection() as conn:
            return await (await conn.execute(query(name), params)).fetchone() is not None


class WorkerStore:
    """This daemon's row in ``dispatch.workers``."""

    def __init__(self, pool: AsyncConnectionPool[Any], worker_id: str) -> None:
        self.pool, self.worker_id = pool, worker_id

    async def register(self, host: str, pid: int, version: str, concurrency: int) -> None:
        params = {"id": self.worker_id, "host": host, "pid": pid, "version": version, "concurrency": concurrency}
        await self._run("register_worker", params)

    async def heartbeat(self, cold_start_ms: float | None) -> None:
        await self._run("worker_heartbeat", {"id": self.worker_id, "cold_start_ms": cold_start_ms})

    async def stopped(self) -> None:
        async with self.pool.connection(timeout=2.0) as conn:  # at shutdown: never wait long
            await conn.execute(query("worker_stopped"), {"id": self.worker_id})

    async def _run(self, name: str, params: dict[str, Any]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(query(name), params)
