"""Shared command line of the peer programs (run inside .local/peers-venv, not the project's venv).

Every peer program has the same subcommands, driven by scripts/bench_peers.py:

    setup    --dsn URL                         install the peer's schema in its own database
    seed     --dsn URL --count N [--concurrency C]   queue N no-op jobs (C: for peers that store it)
    worker   --dsn URL --concurrency C         one worker process consuming the no-op task; SIGTERM stops it
    produce  --dsn URL --count N --rate R      enqueue one job at a time at R/s; prints JSON
                                               {"<job id>": <time.time() just before the enqueue call>}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["setup", "seed", "worker", "produce"])
    p.add_argument("--dsn", required=True)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--rate", type=float, default=20.0)
    return p.parse_args(argv)


def quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


async def paced(count: int, rate: float, enqueue: Callable[[], Awaitable[Any]]) -> None:
    """Enqueue `count` jobs at a fixed rate; the clock is read just before each enqueue call."""
    sent: dict[str, float] = {}
    start = time.time()
    for i in range(count):
        delay = start + i / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        t = time.time()
        job_id = await enqueue()
        sent[str(job_id)] = t
    json.dump(sent, sys.stdout)
    sys.stdout.flush()


def stop_on_sigterm(stop: Callable[[], Any]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
