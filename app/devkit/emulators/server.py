"""Serve an ASGI app with uvicorn on loopback in a background thread (tests and the demo)."""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    """uvicorn's server, telling a waiting thread when it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class ServedApp:
    """``with ServedApp(app) as served: httpx.get(served.url + "/...")``.

    The socket is bound before the thread starts, so the port is known at once; entering
    waits until uvicorn has started (or died), never a fixed time.
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn.Config(app, log_level=log_level, lifespan="off", access_log=False)
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
            name=f"emulator-{self.port}",
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ServedApp:
        self._thread.start()
        # Wake when ready or when the thread died during startup, whichever comes first.
        while not self._server.ready.wait(0.05):
            if not self._thread.is_alive() or (timeout := timeout - 0.05) <= 0:
                self.stop()
                raise RuntimeError(f"emulator on {self.url} did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ServedApp:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(app: Any, port: int = 0, log_level: str = "warning") -> ServedApp:
    """A started-on-enter server for ``app``: ``with serve(XledgerEmulator()) as s: s.url``."""
    return ServedApp(app, port=port, log_level=log_level)
