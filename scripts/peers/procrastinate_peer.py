"""Procrastinate peer for scripts/bench peers (PsycopgConnector with its default pool; async task).

Concurrency C: run_worker_async(concurrency=C), LISTEN/NOTIFY on (its default). Started = the
'started' row in procrastinate_events (at = now() of the fetching transaction); finished = jobs with
status 'succeeded' (jobs are kept: delete_jobs is left at its default, never).
"""

from __future__ import annotations

import asyncio

from _common import paced, parse, quiet_logs
from procrastinate import App, PsycopgConnector


def make_app(dsn: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    return app


async def main() -> None:
    args = parse()
    quiet_logs()
    app = make_app(args.dsn)
    noop = app.tasks["noop"]
    async with app.open_async():
        if args.command == "setup":
            await app.schema_manager.apply_schema_async()
        elif args.command == "seed":
            for start in range(0, args.count, 5000):
                await noop.batch_defer_async(*({} for _ in range(min(5000, args.count - start))))
        elif args.command == "produce":
            await paced(args.count, args.rate, noop.defer_async)
        else:
            # Procrastinate installs its own SIGTERM/SIGINT handlers (graceful stop).
            await app.run_worker_async(concurrency=args.concurrency)


if __name__ == "__main__":
    asyncio.run(main())
