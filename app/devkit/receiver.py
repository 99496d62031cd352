"""A slow webhook receiver for load runs and benchmarks: ``python -m app.devkit.receiver``.

Answers every POST with 200 after a random pause (``--delay-ms LO HI``), as a vendor on the far
side of a network would, and counts deliveries per ``Idempotency-Key`` header (the webhook
adapter sends the job's key), so a run can check that every job arrived exactly once. Raw
HTTP/1.1 on asyncio (keep-alive, Content-Length bodies only: what httpx sends), so that the
receiver costs little of the machine it shares with the daemons it measures.

    GET  /_receiver/keys    {"key": deliveries, ...}
    POST /_receiver/reset   forget every delivery

Prints one JSON line, ``{"url": "http://127.0.0.1:<port>"}``, once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
from collections import Counter


class Receiver:
    def __init__(self, delay_ms: tuple[float, float]) -> None:
        self.delay_ms = delay_ms
        self.deliveries: Counter[str] = Counter()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path, headers = _parse(head)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, answer = await self.answer(method, path, headers, body)
                writer.write(b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (status, len(answer), answer))
                await writer.drain()
        writer.close()

    async def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if path == "/_receiver/keys":
            return 200, json.dumps(self.deliveries).encode()
        if path == "/_receiver/reset":
            self.deliveries.clear()
            return 200, b"{}"
        # Counted on arrival: a daemon that dies before reading the answer has still delivered.
        key = headers.get("idempotency-key", "")
        self.deliveries[key] += 1
        await asyncio.sleep(random.uniform(*self.delay_ms) / 1000)
        return 200, b'{"duplicate": %s}' % (b"true" if self.deliveries[key] > 1 else b"false")


def _parse(head: bytes) -> tuple[str, str, dict[str, str]]:
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


async def serve(receiver: Receiver, port: int) -> None:
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", port, backlog=1024)
    print(json.dumps({"url": f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.devkit.receiver", description=__doc__.split("\n")[0])
    parser.add_argument("--delay-ms", type=float, nargs=2, default=(50.0, 100.0), metavar=("LO", "HI"))
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    args = parser.parse_args(argv)
    try:
        from uvloop import new_event_loop as loop_factory
    except ImportError:  # uvloop is a runtime dependency on POSIX; plain asyncio elsewhere
        loop_factory = None  # type: ignore[assignment]
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(Receiver((args.delay_ms[0], args.delay_ms[1])), args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
