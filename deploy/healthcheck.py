#!/usr/bin/env python3
"""The image's HEALTHCHECK: exit 0 when the daemon's liveness route answers 200, else 1.

    integration-dispatch-healthcheck [URL]

URL defaults to DISPATCH_HEALTHCHECK_URL, else http://127.0.0.1:$DISPATCH_HTTP_PORT/health/live
(port 8787 when unset). Liveness, not readiness: /health/live answers 200 while the process and
its event loop turn, even when the database is down, so a database outage never gets a healthy
daemon restarted (readiness, /health/ready, is for the orchestrator's traffic routing).

Stdlib only, and no proxy: the probe is loopback and must not leave the container.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 2.0


def url(argv: list[str]) -> str:
    if argv:
        return argv[0]
    explicit = os.environ.get("DISPATCH_HEALTHCHECK_URL", "").strip()
    if explicit:
        return explicit
    port = os.environ.get("DISPATCH_HTTP_PORT", "").strip() or "8787"
    return f"http://127.0.0.1:{port}/health/live"


def probe(target: str, timeout: float = TIMEOUT_S) -> tuple[bool, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(target, timeout=timeout) as response:
            return response.status == 200, f"{response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code}"
    except (OSError, ValueError) as exc:  # refused, timed out, a malformed URL
        return False, type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    target = url(sys.argv[1:] if argv is None else argv)
    ok, detail = probe(target)
    if not ok:
        print(f"healthcheck: {target} -> {detail}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
