"""deploy/healthcheck.py (the image's HEALTHCHECK) against loopback HTTP servers."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.deploy.support import DEPLOY

SCRIPT = DEPLOY / "healthcheck.py"


@contextmanager
def server(status: int) -> Iterator[tuple[int, list[str]]]:
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            paths.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], paths
    finally:
        httpd.shutdown()
        httpd.server_close()


def check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DISPATCH_HTTP_PORT", "DISPATCH_HEALTHCHECK_URL") and "proxy" not in k.lower()}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env={**clean, **env}, timeout=30)


def test_healthcheck__200_on_the_liveness_path_of_the_configured_port_is_healthy() -> None:
    with server(200) as (port, paths):
        done = check(DISPATCH_HTTP_PORT=str(port))
    assert done.returncode == 0, done.stderr
    assert paths == ["/health/live"]


def test_healthcheck__any_other_answer_is_unhealthy_and_says_what_it_got() -> None:
    for status in (503, 404, 500):
        with server(status) as (port, _):
            done = check(DISPATCH_HTTP_PORT=str(port))
        assert done.returncode == 1 and f"/health/live -> {status}" in done.stderr, status


def test_healthcheck__nothing_listening_is_unhealthy() -> None:
    with server(200) as (port, _):
        pass  # closed again: the port is free now
    done = check(DISPATCH_HTTP_PORT=str(port))
    assert done.returncode == 1 and "healthcheck:" in done.stderr


def test_healthcheck__an_explicit_url_wins_and_proxies_are_ignored() -> None:
    with server(200) as (port, paths):
        url = f"http://127.0.0.1:{port}/custom"
        assert check(DISPATCH_HEALTHCHECK_URL=url, DISPATCH_HTTP_PORT="1", http_proxy="http://127.0.0.1:1",
                     HTTP_PROXY="http://127.0.0.1:1").returncode == 0
        assert check(f"http://127.0.0.1:{port}/argv").returncode == 0
    assert paths == ["/custom", "/argv"]
