"""PGQueuer peer for scripts/bench peers (asyncpg driver; durability 'durable', its default).

Concurrency C: QueueManager.run(max_concurrent_tasks=C, batch_size=C // 2) (PGQueuer requires
max_concurrent_tasks >= 2 x batch_size). Started = the 'picked' row in pgqueuer_log (created = now()
of the claiming statement); finished = 'successful' rows in pgqueuer_log.
"""

from __future__ import annotations

import asyncio

import asyncpg
from _common import paced, parse, quiet_logs, stop_on_sigterm
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries


async def main() -> None:
    args = parse()
    quiet_logs()
    conn = await asyncpg.connect(args.dsn)
    driver = AsyncpgDriver(conn)
    if args.command == "setup":
        await Queries(driver).install()
    elif args.command == "seed":
        q = Queries(driver)
        for start in range(0, args.count, 5000):
            n = min(5000, args.count - start)
            await q.enqueue(["noop"] * n, [None] * n, [0] * n)
    elif args.command == "produce":
        q = Queries(driver)
        await paced(args.count, args.rate, lambda: _one(q))
    else:
        qm = QueueManager(Queries(driver))

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            return None

        stop_on_sigterm(qm.shutdown.set)
        await qm.run(max_concurrent_tasks=args.concurrency, batch_size=max(1, args.concurrency // 2))
    await conn.close()


async def _one(q: Queries) -> int:
    return int((await q.enqueue("noop", None))[0])


if __name__ == "__main__":
    asyncio.run(main())
