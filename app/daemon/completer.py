"""Successes, written in batches: one UPDATE for everything finished since the last write."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from app.core import logs
from app.db.errors import translate
from app.db.pool import DbState, with_retry
from app.db.stores import JobStore

Finished = tuple[int, float, dict[str, object]]  # job id, finished at (epoch seconds), result


class Completer:
    def __init__(self, store: JobStore, db: DbState, on_done: Callable[[list[int], list[int]], None],
                 forget: Callable[[int], None]) -> None:
        self._store, self._db, self._on_done, self._forget_one = store, db, on_done, forget
        self._pending: list[Finished] = []
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()  # one write at a time; a final flush waits for the current one

    def add(self, job_id: int, finished_at: float, result: dict[str, object]) -> None:
        self._pending.append((job_id, finished_at, result))
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            self._ready.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[Finished]) -> None:
        ids, finished, results = [b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch]
        try:
            written = await with_retry(self._db, lambda: self._store.complete(ids, finished, results))
        except psycopg.Error as exc:
            # The database refused the batch (e.g. a result it cannot store, such as a NUL
            # character in JSON): write the rows one by one so one bad row fails only its job.
            if len(batch) == 1:
                await self._refuse(batch[0][0], exc)
                return self._on_done([], [])
            for item in batch:
                await self._write([item])
            return
        self._on_done(sorted(written), [i for i in ids if i not in written])

    async def _refuse(self, job_id: int, exc: psycopg.Error) -> None:
        error = (f"the job succeeded but its result could not be stored: {type(exc).__name__}: "
                 f"{str(translate(exc))[:200]}; the adapter must return plain JSON")
        await with_retry(self._db, lambda: self._store.fail(job_id, error))
        logs.event("job.failed", logging.ERROR, job_id=job_id, error=error)
        self._forget_one(job_id)
