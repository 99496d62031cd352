"""Test helpers shared by the tiers: waiting on conditions and the daemon as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from app.devkit.cluster import free_port

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
             message: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class DaemonProcess:
    """``integration-dispatch serve`` as a real subprocess, its logs in a file."""

    def __init__(self, database_url: str, log_dir: Path, concurrency: int = 10,
                 command: list[str] | None = None, cwd: Path = ROOT, **env: Any) -> None:
        self.command = command or [sys.executable, "-m", "app"]  # e.g. an installed wheel's console script
        self.cwd = cwd
        self.port = free_port()
        self.log_path = log_dir / f"daemon-{self.port}.log"
        # Tests' receivers and emulators listen on loopback, which the daemon refuses by default.
        self.env = {**os.environ, "DATABASE_URL": database_url, "DISPATCH_LOG_LEVEL": "INFO",
                    "DISPATCH_ALLOW_LOOPBACK_TARGETS": "true",
                    "DISPATCH_POLL_INTERVAL": "1", **{k.upper(): str(v) for k, v in env.items()}}
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> DaemonProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.command, "serve", "--port", str(self.port), "--concurrency", str(self.concurrency)],
            cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_healthy()
        return self

    def health(self) -> httpx.Response | None:
        try:
            return httpx.get(self.url + "/health", timeout=1)
        except httpx.HTTPError:
            return None

    def wait_healthy(self, timeout: float = 20) -> None:
        def ok() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"daemon exited:\n{self.logs()[-3000:]}"
            r = self.health()
            # "ok", not just 200: a daemon still connecting its listener answers 200 "degraded".
            return r is not None and r.status_code == 200 and r.json().get("status") == "ok"

        wait_for(ok, timeout, message="daemon /health 200 ok")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.close()

    def close(self) -> None:
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

    @property
    def worker_id(self) -> str:
        """This daemon's id (public /health no longer shows it), from the registry it writes itself."""
        import psycopg

        assert self.proc is not None
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            row = wait_for(lambda: conn.execute("SELECT id FROM dispatch.workers WHERE pid = %s "
                                                "ORDER BY started_at DESC LIMIT 1", [self.proc.pid]).fetchone(),
                           10, message="the daemon registered in dispatch.workers")
        return str(row[0])

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if name is None or data.get("event") == name:
                out.append(data)
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.close()
