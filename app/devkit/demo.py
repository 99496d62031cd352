"""``integration-dispatch dev``: the whole product on the embedded local default.

Starts (or reuses) the throwaway cluster, migrates it (pg_cron ticks it every minute), serves
both vendor emulators on loopback, seeds two integrations with vault-held credentials and
per-minute export schedules, starts the daemon, and shows a live view until Ctrl-C or
``--minutes``. It stops everything it started.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Any

import psycopg

from app.db.migrate import upgrade
from app.db.queries import query
from app.devkit.cluster import LocalCluster, free_port, local_dir


def export_payload(cost_account: str, payable_account: str) -> dict[str, Any]:
    """A small balanced voucher in the vendor's chart of accounts (the emulators check them)."""
    return {"posting_date": "2026-11-30", "description": "integration-dispatch demo export",
            "lines": [{"account": cost_account, "amount": "125.00", "description": "demo cost"},
                      {"account": payable_account, "amount": "-125.00", "description": "demo payable"}]}


EXPORT_PAYLOAD = export_payload("60100", "20100")  # Business Central's demo chart
XLEDGER_EXPORT_PAYLOAD = export_payload("6300", "2400")


def seed(url: str, xledger_url: str, bc_url: str) -> None:
    from app.devkit.emulators.dynamics_bc import (
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        DEFAULT_COMPANY_ID,
        DEFAULT_TENANT,
    )
    from app.devkit.emulators.xledger import DEFAULT_TOKEN

    integrations = [
        ("demo-xledger", "xledger", {"base_url": xledger_url}, {"token": DEFAULT_TOKEN}, XLEDGER_EXPORT_PAYLOAD),
        ("demo-bc", "dynamics_bc", {"base_url": bc_url, "login_url": bc_url, "company_id": DEFAULT_COMPANY_ID},
         {"tenant_id": DEFAULT_TENANT, "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET},
         EXPORT_PAYLOAD),
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        for slug, adapter, config, credentials, payload in integrations:
            conn.execute(query("dev_seed_integration"), {"id": slug, "adapter": adapter, "config": json.dumps(config)})
            put_secret(conn, slug, json.dumps(credentials))
            conn.execute(query("dev_seed_schedule"), {"id": slug, "payload": json.dumps(payload)})
        conn.execute(query("tick"))  # the first slots now, not at pg_cron's next minute


def put_secret(conn: psycopg.Connection[Any], name: str, value: str) -> None:
    """Create or update a vault secret by name; the value only ever travels as a parameter."""
    row = conn.execute(query("secret_id"), {"name": name}).fetchone()
    if row:
        conn.execute(query("secret_update"), {"id": row[0], "value": value, "description": None})
    else:
        conn.execute(query("secret_create"), {"value": value, "name": name, "description": ""})


def view(conn: psycopg.Connection[Any], emulators: dict[str, Any]) -> str:
    states = conn.execute(query("dev_jobs_by_state")).fetchall()
    drift = conn.execute(query("dev_drift")).fetchone()
    alerts = conn.execute(query("dev_open_alerts")).fetchall()
    lines = [time.strftime("%H:%M:%S") + "  integration-dispatch dev  (Ctrl-C stops)", "", "jobs by state:"]
    lines += [f"  {i:<14} {s:<10} {n}" for i, s, n in states] or ["  (none yet: the first slot is at the next minute)"]
    started, p50, worst = drift or (0, 0, 0)
    lines += ["", f"drift: {started} started, p50 {p50} ms, max {worst} ms", "", "documents at the vendors:"]
    lines += [f"  {name:<10} {len(emu.documents())}" for name, emu in emulators.items()]
    lines += ["", "open alerts:"] + ([f"  {k:<18} {s}: {m[:80]}" for k, s, m in alerts] or ["  none"])
    return "\n".join(lines)


def run(minutes: float | None = None, refresh: float = 2.0) -> int:
    from app.devkit.emulators import BusinessCentralEmulator, XledgerEmulator, serve
    from app.web.auth import mint_token

    cluster = LocalCluster.default()
    was_running = cluster.running()
    url = cluster.ensure()
    upgrade(url)
    emulators = {"xledger": XledgerEmulator(), "dynamics_bc": BusinessCentralEmulator()}
    jwt_secret = secrets.token_urlsafe(32)
    port = free_port()
    with ExitStack() as stack:
        if not was_running:
            stack.callback(cluster.stop)
        served = {name: stack.enter_context(serve(emu)) for name, emu in emulators.items()}
        seed(url, served["xledger"].url, served["dynamics_bc"].url)
        env = {**os.environ, "DATABASE_URL": url, "SUPABASE_JWT_SECRET": jwt_secret,
               "SUPABASE_SERVICE_ROLE_KEY": mint_token(jwt_secret), "DISPATCH_LOG_LEVEL": "WARNING"}
        log_path = local_dir() / "dev-daemon.log"
        log = stack.enter_context(open(log_path, "ab"))
        daemon = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], env=env,
                                  stdout=log, stderr=log)
        stack.callback(_stop, daemon)
        print(f"daemon on http://127.0.0.1:{port} (log: {log_path}); database {url}", flush=True)
        return _watch(url, emulators, daemon, minutes, refresh)


def _watch(url: str, emulators: dict[str, Any], daemon: subprocess.Popen[bytes], minutes: float | None,
           refresh: float) -> int:
    deadline = time.monotonic() + minutes * 60 if minutes else None
    tty = sys.stdout.isatty()
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            while deadline is None or time.monotonic() < deadline:
                if daemon.poll() is not None:
                    print(f"the daemon exited; see {local_dir() / 'dev-daemon.log'}", file=sys.stderr)
                    return 1
                print(("\033[2J\033[H" if tty else "\n") + view(conn, emulators), flush=True)
                time.sleep(refresh)
        except KeyboardInterrupt:
            pass
    return 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
