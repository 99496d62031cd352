"""Integration health, the circuit and vendor exports, with the daemon as a real process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from urllib.parse import unquote_plus

import psycopg
import pytest

from app.devkit.demo import EXPORT_PAYLOAD, put_secret
from app.devkit.emulators import BusinessCentralEmulator, serve
from app.devkit.emulators.dynamics_bc import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_COMPANY_ID,
    DEFAULT_TENANT,
)
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.acceptance

BC_CREDENTIALS = {"tenant_id": DEFAULT_TENANT, "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}


@pytest.fixture
def bc(conn: psycopg.Connection) -> Iterator[BusinessCentralEmulator]:
    emulator = BusinessCentralEmulator()
    with serve(emulator) as served:
        config = {"base_url": served.url, "login_url": served.url, "company_id": DEFAULT_COMPANY_ID}
        conn.execute("INSERT INTO dispatch.integrations (id, adapter, config, secret_name) "
                     "VALUES ('bc', 'dynamics_bc', %s, 'bc-credentials')", [json.dumps(config)])
        put_secret(conn, "bc-credentials", json.dumps(BC_CREDENTIALS))
        yield emulator


def _duty_runs(daemon: DaemonProcess, name: str) -> int:
    r = daemon.health()
    return int(r.json().get("duties", {}).get(name, {}).get("runs", 0)) if r is not None else 0


def test_probes__at_most_one_per_interval_across_restarts_and_daemons(
        bc: BusinessCentralEmulator, daemon_factory: Callable[..., DaemonProcess]) -> None:
    fast_rounds = {"DISPATCH_HEALTH_INTERVAL": "0.2"}
    first = daemon_factory(**fast_rounds)
    wait_for(lambda: bc.log.count("probe") == 1, 15, message="the first probe")
    second = daemon_factory(**fast_rounds)
    first.kill()
    third = daemon_factory(**fast_rounds)
    wait_for(lambda: _duty_runs(second, "health") >= 5 and _duty_runs(third, "health") >= 5, 20,
             message="several health rounds on the other daemons")
    assert bc.log.count("probe") == 1
    assert [e.operation for e in bc.log.entries("probe")] == ["companies.list"]


def test_export__lands_once_at_the_vendor_and_the_ledger_says_so(
        conn: psycopg.Connection, bc: BusinessCentralEmulator, daemon_factory: Callable[..., DaemonProcess]) -> None:
    daemon_factory()
    job = conn.execute("SELECT dispatch.enqueue('bc', 'export', %s, idempotency_key => 'ledger:bc:export:2026-11')",
                       [json.dumps(EXPORT_PAYLOAD)]).fetchone()
    assert job is not None
    wait_for(lambda: conn.execute("SELECT status::text FROM dispatch.jobs").fetchone() == ("succeeded",), 20,
             message="export succeeded")
    assert len(bc.documents()) == 1
    state = conn.execute("SELECT state FROM dispatch.idempotency_keys WHERE key = 'ledger:bc:export:2026-11'")
    assert state.fetchone() == ("succeeded",)


def test_circuit__opens_parks_jobs_unspent_and_closes_after_a_trial(
        conn: psycopg.Connection, daemon_factory: Callable[..., DaemonProcess]) -> None:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('p', 'noop')")
    daemon = daemon_factory(DISPATCH_HEALTH_INTERVAL="0.2", DISPATCH_PROBE_INTERVAL="1")
    # One job failing for good on a vendor error is enough (passive mode).
    conn.execute("INSERT INTO dispatch.jobs (integration_id, kind, payload, max_attempts) "
                 "VALUES ('p', 'sync', '{\"fail\": true}', 1)")
    wait_for(lambda: conn.execute("SELECT circuit FROM dispatch.integrations WHERE id = 'p'").fetchone()
             in (("open",), ("half_open",)), 15, message="circuit opened")
    assert conn.execute("SELECT kind FROM dispatch.open_alerts WHERE kind = 'integration_unhealthy'").fetchone()
    # Parked: while the circuit is open, new jobs wait without spending attempts.
    with conn.transaction():
        conn.execute("UPDATE dispatch.integrations SET health_next_probe_at = now() + interval '1 hour' WHERE id = 'p'")
        conn.execute("UPDATE dispatch.integrations SET circuit = 'open' WHERE id = 'p'")
    conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) SELECT 'p', 'sync' FROM generate_series(1, 4)")
    wait_for(lambda: _duty_runs(daemon, "health") >= 3, 10, message="health rounds")
    queued = conn.execute("SELECT count(*), max(attempts) FROM dispatch.jobs WHERE status = 'queued'").fetchone()
    assert queued == (4, 0)
    # The wait is over: one trial job half-opens the circuit, its success closes it, the rest drain.
    conn.execute("UPDATE dispatch.integrations SET health_next_probe_at = now() WHERE id = 'p'")
    wait_for(lambda: conn.execute("SELECT count(*) FROM dispatch.jobs WHERE status = 'succeeded'").fetchone() == (4,),
             20, message="parked jobs drained")
    assert conn.execute("SELECT circuit, health_status FROM dispatch.integrations WHERE id = 'p'").fetchone() \
        == ("closed", "healthy")
    assert conn.execute("SELECT max(attempts) FROM dispatch.jobs WHERE status = 'succeeded'").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM dispatch.open_alerts WHERE kind = 'integration_unhealthy'").fetchone() \
        == (0,)


def test_export__a_daemon_killed_after_the_vendor_write_leaves_one_document(
        conn: psycopg.Connection, bc: BusinessCentralEmulator, daemon_factory: Callable[..., DaemonProcess]) -> None:
    # The write lands at the vendor, then the answer hangs: the daemon dies before it can
    # record the completion. The rescue's lookup-before-write must find the document.
    bc.faults.push(match="batch", after=True, delay=60)  # the journal lines' $batch write
    fast_lease = {"DISPATCH_LEASE_SECONDS": "1.5", "DISPATCH_RESCUE_INTERVAL": "0.3"}
    victim = daemon_factory(**fast_lease)
    conn.execute("SELECT dispatch.enqueue('bc', 'export', %s, idempotency_key => 'ledger:bc:export:crash')",
                 [json.dumps(EXPORT_PAYLOAD)])
    wait_for(lambda: bc.log.count(operation="batch") >= 1, 20, message="the vendor write")
    victim.kill()
    daemon_factory(**fast_lease)
    wait_for(lambda: conn.execute("SELECT status::text FROM dispatch.jobs").fetchone() == ("succeeded",), 30,
             message="the rescued export succeeded")
    assert len(bc.documents()) == 1 and bc.log.count(operation="batch") == 1  # written once, never again
    result = conn.execute("SELECT attempts, result FROM dispatch.jobs").fetchone()
    assert result is not None and result[0] == 2 and result[1].get("already_exported") is True


def test_sync__continues_from_the_last_successful_sync(
        conn: psycopg.Connection, bc: BusinessCentralEmulator, daemon_factory: Callable[..., DaemonProcess]) -> None:
    bc.seed(5)
    # Without the re-read overlap (default 900 s, for rows that commit late), so that "nothing
    # changed" reads as zero records; the overlap has its own tests in tests/vendors.
    conn.execute("UPDATE dispatch.integrations SET config = config || '{\"sync_overlap_seconds\": 0}' WHERE id = 'bc'")
    daemon_factory()
    for n in (1, 2):
        conn.execute("INSERT INTO dispatch.jobs (integration_id, kind) VALUES ('bc', 'sync')")
        wait_for(lambda n=n: conn.execute("SELECT count(*) FROM dispatch.jobs WHERE status = 'succeeded'")
                 .fetchone() == (n,), 20, message=f"sync {n}")
    first, second = conn.execute("SELECT result FROM dispatch.jobs ORDER BY id").fetchall()
    assert first[0]["records"] == 5 and first[0]["cursor"]
    assert second[0]["records"] == 0  # nothing changed since the first sync's cursor
    # The emulator logs a filtered list as a "lookup": the second sync asked only for what changed.
    listed = [unquote_plus(e.query) for e in bc.log.entries(operation="generalLedgerEntries.list")
              if "lastModifiedDateTime" in e.query]
    assert "lastModifiedDateTime gt" not in listed[0]
    assert f"lastModifiedDateTime gt {first[0]['cursor'][:19]}" in listed[-1], listed
