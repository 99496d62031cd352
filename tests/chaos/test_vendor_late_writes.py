"""Late writes, stalled daemons and kills against vendors that apply a write after the client
has gone: exactly one document per key, for Xledger and for Business Central.

Each case runs a real daemon process (two for the rescues) against real Postgres and an
emulator over loopback whose write is *late*: accepted, never answered (the connection is
held past the adapter's read timeout, then closed) and applied seconds later. Without the
write-ahead intent the retry's lookup runs before the vendor applied the first send, finds
nothing and writes again (issue 11, "Why" 1 and 2). With it, the retry parks until the
integration's processing window since the last send has passed, looks again, and finds the
late document.

Every case ends with the ledger check (job succeeded, idempotency key succeeded, one write
intent, sent once, confirmed) and a count of documents at the emulator: exactly one per key,
no stray journal lines, no journal batch left behind.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from app.adapters._vendor_http import external_reference
from app.devkit.demo import EXPORT_PAYLOAD, XLEDGER_EXPORT_PAYLOAD, put_secret
from app.devkit.emulators import BusinessCentralEmulator, XledgerEmulator, serve
from app.devkit.emulators.common import EmulatorApp
from app.devkit.emulators.dynamics_bc import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_COMPANY_ID,
    DEFAULT_TENANT,
)
from app.devkit.emulators.xledger import DEFAULT_TOKEN
from tests.chaos.conftest import assert_ledger, record_figure, wait_settled
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.chaos

TIMEOUT_S = 1.0   # the adapters' read timeout: a held write is a ReadTimeout
WINDOW_S = 10.0   # the integrations' write_window_seconds: longer than any late apply below
KEY = "manual:late-writes:1"
REF = external_reference(KEY)
FAST = {"DISPATCH_LEASE_SECONDS": "3", "DISPATCH_RESCUE_INTERVAL": "0.5", "DISPATCH_POLL_INTERVAL": "0.5",
        "DISPATCH_RETRY_BASE": "0.3", "DISPATCH_RETRY_CAP": "2"}


@dataclass
class Vendor:
    name: str  # the integration id
    emulator: EmulatorApp
    write: str  # the emulator operation of the document write
    payload: dict[str, Any]

    def documents(self) -> dict[str, Any]:
        return dict(self.emulator.documents())

    def doc_ok(self, doc: dict[str, Any]) -> bool:
        lines = len(self.payload["lines"])
        return doc["lines"] == lines if self.name == "xledger" else doc == {"lines": 0, "entries": lines}

    def strays(self) -> list[Any]:
        """What must not be left at the vendor: unposted lines and journal batches (BC)."""
        if isinstance(self.emulator, BusinessCentralEmulator):
            return [*self.emulator.lines, *self.emulator.journals.values()]
        return []

    def writes_received(self) -> int:
        return self.emulator.log.count(operation=self.write)


@pytest.fixture(params=["xledger", "bc"])
def vendor(request: pytest.FixtureRequest, conn: psycopg.Connection) -> Iterator[Vendor]:
    emulator: EmulatorApp = XledgerEmulator() if request.param == "xledger" else BusinessCentralEmulator()
    with serve(emulator) as served:
        if request.param == "xledger":
            adapter, write, payload = "xledger", "addGLImportItems", XLEDGER_EXPORT_PAYLOAD
            config: dict[str, Any] = {"base_url": served.url}
            secret: dict[str, str] = {"token": DEFAULT_TOKEN}
        else:
            adapter, write, payload = "dynamics_bc", "batch", EXPORT_PAYLOAD
            config = {"base_url": served.url, "login_url": served.url, "company_id": DEFAULT_COMPANY_ID,
                      "post_timeout_seconds": TIMEOUT_S}
            secret = {"tenant_id": DEFAULT_TENANT, "client_id": DEFAULT_CLIENT_ID,
                      "client_secret": DEFAULT_CLIENT_SECRET}
        config.update(timeout_seconds=TIMEOUT_S, write_window_seconds=WINDOW_S)
        conn.execute("INSERT INTO dispatch.integrations (id, adapter, config, secret_name) VALUES (%s, %s, %s, %s)",
                     [request.param, adapter, json.dumps(config), request.param + "-secret"])
        put_secret(conn, request.param + "-secret", json.dumps(secret))
        yield Vendor(request.param, emulator, write, payload)


def enqueue(conn: psycopg.Connection, vendor: Vendor) -> int:
    row = conn.execute("SELECT dispatch.enqueue(%s, 'export', %s, idempotency_key => %s, max_attempts => 10)",
                       [vendor.name, json.dumps(vendor.payload), KEY]).fetchone()
    assert row is not None
    return int(row[0])


def assert_exactly_once(conn: psycopg.Connection, vendor: Vendor) -> dict[str, Any]:
    """The ledger check plus the vendor's count: one document, sent once, confirmed, no strays."""
    wait_settled(conn, 60, where=f"integration_id = '{vendor.name}'")
    assert_ledger(conn, 1, where=f"integration_id = '{vendor.name}'", documents=vendor.documents(),
                  doc_check=vendor.doc_ok, ref_of=external_reference)
    intent = conn.execute("SELECT reference, sends, confirmed_at IS NOT NULL, document FROM dispatch.write_intents "
                          "WHERE idempotency_key = %s", [KEY]).fetchone()
    assert intent is not None and intent[:3] == (REF, 1, True), f"write intent (ref, sends, confirmed) = {intent}"
    assert vendor.writes_received() == 1, f"the vendor received {vendor.writes_received()} writes"
    assert vendor.strays() == [], f"left at the vendor: {vendor.strays()}"
    job = conn.execute("SELECT attempts, result, worker_id FROM dispatch.jobs WHERE idempotency_key = %s",
                       [KEY]).fetchone()
    assert job is not None
    assert job[1]["already_exported"] is True, job[1]  # found the late document, never wrote it again
    return {"attempts": job[0], "result": job[1], "worker_id": job[2], "document": intent[3]}


def write_arrived(vendor: Vendor) -> Callable[[], bool]:
    return lambda: vendor.writes_received() >= 1


def worker_of(daemon: DaemonProcess) -> str:
    return daemon.worker_id


def test_late_write__the_client_gave_up__one_document(
        conn: psycopg.Connection, vendor: Vendor, daemons: Callable[..., DaemonProcess]) -> None:
    # Accepted, held 2 s (the client's read times out at 1 s), applied 4 s after arrival.
    vendor.emulator.faults.push(match=vendor.write, late=4.0, delay=2.0)
    daemons(**FAST)
    t0 = time.monotonic()
    enqueue(conn, vendor)
    wait_for(write_arrived(vendor), 20, message="the vendor received the write")
    sent = time.monotonic()
    vendor.emulator.wait_late_applied(1, timeout=20)
    applied = time.monotonic()
    outcome = assert_exactly_once(conn, vendor)
    done = time.monotonic()
    assert outcome["attempts"] >= 2
    assert done - sent >= WINDOW_S - 1.0, "a retry finished before the processing window had passed"
    record_figure(f"late write ({vendor.name})",
                  f"write received {sent - t0:.1f} s after enqueue, applied {applied - sent:.1f} s later; "
                  f"job succeeded {done - sent:.1f} s after the send (window {WINDOW_S:g} s), "
                  f"{outcome['attempts']} attempts, one document")


def test_stalled_daemon__rescued_while_its_write_is_in_flight__one_document(
        conn: psycopg.Connection, vendor: Vendor, daemons: Callable[..., DaemonProcess]) -> None:
    # The first send lands 6 s after arrival: after the stalled daemon's lease (3 s) expired
    # and the rescuer's lookup found nothing.
    vendor.emulator.faults.push(match=vendor.write, late=6.0, delay=3.0)
    pool = [daemons(**FAST), daemons(**FAST)]
    workers = {worker_of(d): d for d in pool}
    job_id = enqueue(conn, vendor)
    wait_for(write_arrived(vendor), 20, message="the vendor received the write")
    owner = conn.execute("SELECT worker_id FROM dispatch.jobs WHERE idempotency_key = %s", [KEY]).fetchone()
    assert owner is not None and owner[0] in workers
    stalled = workers[owner[0]]
    stalled.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        wait_for(lambda: _rescued(conn, owner[0]), 20, interval=0.05, message="the expired lease rescued")
        rescued_after = time.monotonic() - stopped_at
        vendor.emulator.wait_late_applied(1, timeout=20)
        wait_settled(conn, 60, where=f"integration_id = '{vendor.name}'")
    finally:
        stalled.signal(signal.SIGCONT)
    # The stalled daemon wakes with its lease long gone: it must neither write nor complete.
    wait_for(lambda: (r := stalled.health()) is not None and r.status_code == 200, 20,
             message="the stalled daemon answering again")
    wait_for(lambda: _gave_up(stalled, job_id), 20, message="the stalled daemon giving its attempt up")
    outcome = assert_exactly_once(conn, vendor)
    assert outcome["worker_id"] != owner[0] and outcome["worker_id"] in workers
    record_figure(f"stalled daemon ({vendor.name})",
                  f"SIGSTOP after the vendor received the write; rescued after {rescued_after:.1f} s "
                  f"(lease 3 s); late write applied 6 s after arrival; the rescuer parked and found it; "
                  f"SIGCONT: no second write; {outcome['attempts']} attempts, one document")


def test_kill9_between_receipt_and_completion__one_document(
        conn: psycopg.Connection, vendor: Vendor, daemons: Callable[..., DaemonProcess]) -> None:
    # Applied 1.5 s after arrival, while the sender is already dead and its job not yet rescued.
    vendor.emulator.faults.push(match=vendor.write, late=1.5, delay=3.0)
    victim = daemons(**FAST)
    enqueue(conn, vendor)
    wait_for(write_arrived(vendor), 20, message="the vendor received the write")
    victim.kill()  # SIGKILL: nothing of the answer, nothing of the completion
    killed_at = time.monotonic()
    survivor = daemons(**FAST)
    outcome = assert_exactly_once(conn, vendor)
    assert outcome["worker_id"] == worker_of(survivor)
    record_figure(f"kill -9 ({vendor.name})",
                  f"SIGKILL after the vendor received the write; the survivor reconciled and finished "
                  f"{time.monotonic() - killed_at:.1f} s later; {outcome['attempts']} attempts, one document")


def _rescued(conn: psycopg.Connection, worker: str) -> bool:
    row = conn.execute("SELECT status::text <> 'running' OR worker_id IS DISTINCT FROM %s FROM dispatch.jobs "
                       "WHERE idempotency_key = %s", [worker, KEY]).fetchone()
    return bool(row and row[0])


def _gave_up(daemon: DaemonProcess, job_id: int) -> bool:
    """The woken daemon noticed its attempt is not its own any more (and wrote nothing)."""
    return any(e.get("job_id") == job_id and (e["event"] in ("job.lease_lost", "job.ownership_lost")
                                              or e.get("ownership_lost"))
               for e in daemon.events())


def test_lost_write__resent_once_after_the_window__one_document(
        conn: psycopg.Connection, vendor: Vendor, daemons: Callable[..., DaemonProcess]) -> None:
    # A 500 on the write: it may have run (it did not). The retry parks for the window, finds
    # nothing, and sends again: sends = 2, one document.
    conn.execute("UPDATE dispatch.integrations SET config = config || '{\"write_window_seconds\": 2}' WHERE id = %s",
                 [vendor.name])
    vendor.emulator.faults.push(match=vendor.write, status=500)
    daemons(**FAST)
    enqueue(conn, vendor)
    wait_settled(conn, 60, where=f"integration_id = '{vendor.name}'")
    assert_ledger(conn, 1, where=f"integration_id = '{vendor.name}'", documents=vendor.documents(),
                  doc_check=vendor.doc_ok, ref_of=external_reference)
    intent = conn.execute("SELECT sends, confirmed_at IS NOT NULL FROM dispatch.write_intents "
                          "WHERE idempotency_key = %s", [KEY]).fetchone()
    assert intent == (2, True), intent
    assert vendor.writes_received() == 2 and vendor.strays() == []
