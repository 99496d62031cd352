"""The circuit's bookkeeping against a real database (the daemon-level part: tests/acceptance/test_health.py)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from app.adapters import Registry
from app.core.job import Outcome, Status
from app.daemon.circuit import Health, HealthPolicy
from app.db.pool import make_pool
from tests.unit.fakes import claimed

pytestmark = pytest.mark.integration


def test_circuit__the_first_batch_of_successes_writes_the_integration_once(
        conn: psycopg.Connection, db_url: str, integration: str) -> None:
    """Fifty jobs of a fresh daemon finish together: one health write, which all fifty wait for
    (they used to queue fifty updates of the same row, holding their slots meanwhile)."""
    conn.execute("UPDATE dispatch.integrations SET health_status = 'unknown' WHERE id = %s", [integration])

    async def go() -> tuple[list[str | None], int]:
        pool = make_pool(db_url, "circuit-test", 1, 4)
        await pool.open()
        try:
            health = Health(pool, Registry(builtin={}), HealthPolicy())
            writes = 0
            record = health.record

            async def counted(*args: object, **kwargs: object) -> str | None:
                nonlocal writes
                writes += 1
                return await record(*args, **kwargs)  # type: ignore[arg-type]

            health.record = counted  # type: ignore[method-assign]
            jobs = [claimed(id=i, integration_id=integration) for i in range(50)]
            circuits = await asyncio.gather(*(health.job_finished(j, Outcome(Status.SUCCEEDED)) for j in jobs))
            # Once it is known healthy, a success costs nothing at all.
            assert await health.job_finished(jobs[0], Outcome(Status.SUCCEEDED)) is None
            return circuits, writes
        finally:
            await pool.close()

    circuits, writes = asyncio.run(go())
    assert writes == 1
    assert circuits == ["closed"] * 50
    assert conn.execute("SELECT health_status, circuit FROM dispatch.integrations WHERE id = %s",
                        [integration]).fetchone() == ("healthy", "closed")
