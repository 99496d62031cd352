"""Chancy peer for scripts/bench peers (default plugins and pool; AsyncExecutor, async job).

Concurrency C: the queue is declared with concurrency=C, the AsyncExecutor (the default executor is a
process pool, which no other side uses), eager_polling=True (poll again as a job completes, instead of
every polling_interval) and polling_interval=1 s. The worker's completion updates are written in
batches every send_outgoing_interval (its default, 1 s). Started = chancy_jobs.started_at (now() of the
fetching transaction); finished = state 'succeeded'. Logs at WARNING, like every side.
"""

from __future__ import annotations

import asyncio
import logging

from _common import paced, parse, quiet_logs
from chancy import Chancy, Queue, Worker, job

QUEUE = "bench"


@job(queue=QUEUE)
async def noop() -> None:
    return None


async def main() -> None:
    # The job is stored by import path: push and run it as `chancy_peer.noop`, not `__main__.noop`.
    import chancy_peer

    args = parse()
    quiet_logs()
    # Warnings only, like every other side (its default logger is at DEBUG and logs a line per job).
    log = logging.getLogger("chancy")
    log.setLevel(logging.WARNING)
    async with Chancy(args.dsn, log=log) as chancy:
        if args.command == "setup":
            await chancy.migrate()
        elif args.command == "seed":
            await chancy.declare(Queue(QUEUE, concurrency=args.concurrency, executor=Chancy.Executor.Async,
                                       polling_interval=1, eager_polling=True), upsert=True)
            async for _ in chancy.push_many([chancy_peer.noop] * args.count, batch_size=5000):
                pass
        elif args.command == "produce":
            async def one() -> str:
                return (await chancy.push(chancy_peer.noop)).identifier

            await paced(args.count, args.rate, one)
        else:
            worker = Worker(chancy)  # installs its own SIGTERM/SIGINT handlers (graceful stop)
            await worker.start()
            await worker.wait_for_shutdown()


if __name__ == "__main__":
    asyncio.run(main())
