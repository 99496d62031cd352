"""Vendor faults from the emulators: throttling, outages, timeouts, resets, slowness, expired
tokens, late processing. Every export still lands exactly once, and the waits the vendor
asked for are honoured.

Each case gets its own emulator and integration (one export job), so the emulator's request
log reads as that job's story; all cases of a group run at once through one daemon. Every
ambiguous write has a *late* twin (accepted, never answered, applied seconds later), not only
the variant that applies the write before the delay. Cases whose write was refused (429)
need a second send after the write window: they are a group of their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from app.adapters._vendor_http import external_reference
from app.devkit.demo import EXPORT_PAYLOAD, XLEDGER_EXPORT_PAYLOAD, put_secret
from app.devkit.emulators import BusinessCentralEmulator, XledgerEmulator, serve
from app.devkit.emulators.common import EmulatorApp, LogEntry
from app.devkit.emulators.dynamics_bc import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_COMPANY_ID,
    DEFAULT_TENANT,
)
from app.devkit.emulators.xledger import DEFAULT_TOKEN, ERR_BURST, ERR_CONCURRENCY
from tests.chaos.conftest import assert_ledger, record_figure, wait_settled
from tests.support import DaemonProcess

pytestmark = pytest.mark.chaos

TIMEOUT_S = 1.0  # the adapters' timeout_seconds for these integrations: a 2.5 s delay is a timeout
WINDOW_S = 4.0   # the integrations' write_window_seconds: longer than any late apply below
TOLERANCE_S = 0.05  # clock granularity between the emulator's log and the daemon's run_after


@dataclass
class Case:
    name: str
    vendor: str  # xledger | bc
    faults: list[dict[str, Any]]
    jobs: int = 1
    min_wait: float | None = None  # seconds the vendor asked for after the faulted answer
    max_concurrency: int = 1
    expect: dict[str, Any] = field(default_factory=dict)
    resends: bool = False  # the write is sent twice (refused, then resent after the window)


CASES = [
    Case("x-429-retry-after", "xledger", [{"match": "write", "status": 429, "retry_after": 2}], min_wait=2.0,
         resends=True),
    Case("x-503-burst-no-hint", "xledger", [{"match": "lookup", "status": 503, "times": 2}],
         expect={"attempts": 3}),
    Case("x-burst-limit-code", "xledger", [{"match": "lookup", "code": ERR_BURST}], min_wait=5.0),
    Case("x-timeout-after-write", "xledger", [{"match": "write", "delay": 2.5, "after": True}],
         expect={"writes": 1, "already_exported": True}),
    Case("x-late-write", "xledger", [{"match": "write", "late": 2.0, "delay": 1.5}],
         expect={"writes": 1, "already_exported": True, "waited_window": True}),
    Case("x-timeout-lookup", "xledger", [{"match": "lookup", "delay": 2.5}], expect={"attempts": 2}),
    Case("x-reset-after-write", "xledger", [{"match": "write", "reset": True, "after": True}],
         expect={"writes": 1, "already_exported": True}),
    Case("x-reset-before-lookup", "xledger", [{"match": "lookup", "reset": True}], expect={"attempts": 2}),
    Case("x-slow", "xledger", [{"delay": 0.4, "times": 2}], expect={"attempts": 1}),
    Case("x-429-storm-10-jobs", "xledger", [{"match": "write", "status": 429, "retry_after": 1, "times": 8}],
         jobs=10, max_concurrency=5, resends=True),
    Case("x-concurrency-limit-code", "xledger", [{"match": "lookup", "code": ERR_CONCURRENCY}], min_wait=1.0,
         expect={"attempts": 1}),
    Case("bc-429-retry-after", "bc", [{"match": "batch", "status": 429, "retry_after": 2}], min_wait=2.0,
         resends=True),
    Case("bc-503-burst-no-hint", "bc", [{"match": "lookup", "status": 503, "times": 2}], expect={"attempts": 3}),
    Case("bc-expired-token", "bc", [{"match": "batch", "expire_token": True}],
         expect={"attempts": 1, "tokens_at_least": 2}),
    Case("bc-timeout-after-post", "bc", [{"match": "journal.post", "delay": 2.5, "after": True}],
         expect={"posts": 1}),
    Case("bc-late-post", "bc", [{"match": "journal.post", "late": 2.0, "delay": 1.5}], expect={"batches": 1}),
    Case("bc-reset-after-batch", "bc", [{"match": "batch", "reset": True, "after": True}], expect={"batches": 1}),
    Case("bc-late-batch", "bc", [{"match": "batch", "late": 2.0, "delay": 1.5}],
         expect={"batches": 1, "already_exported": True, "waited_window": True}),
    Case("bc-slow", "bc", [{"delay": 0.4, "times": 2, "match": "lookup"}], expect={"attempts": 1}),
]


@pytest.fixture
def vendors(conn: psycopg.Connection, request: pytest.FixtureRequest) -> Iterator[dict[str, EmulatorApp]]:
    emulators: dict[str, EmulatorApp] = {}
    with ExitStack() as stack:
        for case in request.param:
            emulator: EmulatorApp = XledgerEmulator() if case.vendor == "xledger" else BusinessCentralEmulator()
            url = stack.enter_context(serve(emulator)).url
            if case.vendor == "xledger":
                config: dict[str, Any] = {"base_url": url, "timeout_seconds": TIMEOUT_S,
                                          "write_window_seconds": WINDOW_S}
                secret = {"token": DEFAULT_TOKEN}
                adapter = "xledger"
            else:
                config = {"base_url": url, "login_url": url, "company_id": DEFAULT_COMPANY_ID,
                          "timeout_seconds": TIMEOUT_S, "post_timeout_seconds": TIMEOUT_S,
                          "write_window_seconds": WINDOW_S}
                secret = {"tenant_id": DEFAULT_TENANT, "client_id": DEFAULT_CLIENT_ID,
                          "client_secret": DEFAULT_CLIENT_SECRET}
                adapter = "dynamics_bc"
            conn.execute("INSERT INTO dispatch.integrations (id, adapter, config, secret_name, max_concurrency) "
                         "VALUES (%s, %s, %s, %s, %s)",
                         [case.name, adapter, json.dumps(config), case.name + "-secret", case.max_concurrency])
            put_secret(conn, case.name + "-secret", json.dumps(secret))
            for fault in case.faults:
                emulator.faults.push(**fault)
            emulators[case.name] = emulator
        yield emulators


def _waits_after(log: list[LogEntry], faulted: Callable[[LogEntry], bool]) -> list[float]:
    """For each faulted answer, the pause until the next request to that vendor."""
    ordered = sorted(log, key=lambda e: e.time)
    waits = []
    for i, entry in enumerate(ordered[:-1]):
        if faulted(entry):
            waits.append(ordered[i + 1].time - (entry.time + entry.duration))
    return waits


ONE_SEND = [c for c in CASES if not c.resends]
RESENDS = [c for c in CASES if c.resends]


@pytest.mark.parametrize("vendors", [ONE_SEND], indirect=True, ids=["one-send"])
def test_vendor_faults__every_export_lands_once_and_hints_are_honoured(
        conn: psycopg.Connection, vendors: dict[str, EmulatorApp], daemons: Callable[..., DaemonProcess]) -> None:
    _run_cases(conn, vendors, daemons, ONE_SEND)


@pytest.mark.parametrize("vendors", [RESENDS], indirect=True, ids=["resends"])
def test_vendor_faults__refused_writes_are_sent_again_after_the_window(
        conn: psycopg.Connection, vendors: dict[str, EmulatorApp], daemons: Callable[..., DaemonProcess]) -> None:
    _run_cases(conn, vendors, daemons, RESENDS)


def _run_cases(conn: psycopg.Connection, vendors: dict[str, EmulatorApp], daemons: Callable[..., DaemonProcess],
               cases: list[Case]) -> None:
    daemons(concurrency=20, DISPATCH_RETRY_BASE="0.3", DISPATCH_RETRY_CAP="2", DISPATCH_PROBE_INTERVAL="1",
            DISPATCH_HEALTH_INTERVAL="0.3", DISPATCH_LEASE_SECONDS="10", DISPATCH_RESCUE_INTERVAL="0.5")
    for case in cases:
        payload = XLEDGER_EXPORT_PAYLOAD if case.vendor == "xledger" else EXPORT_PAYLOAD
        for n in range(case.jobs):
            # Keys of our own: "<integration>:<kind>:..." is reserved for the schedules.
            conn.execute("SELECT dispatch.enqueue(%s, 'export', %s, idempotency_key => %s, max_attempts => 10)",
                         [case.name, json.dumps(payload), f"manual:{case.name}:{n}"])
    wait_settled(conn, 80)
    figures = []
    for case in cases:
        emulator = vendors[case.name]
        where = f"integration_id = '{case.name}'"
        lines = len(XLEDGER_EXPORT_PAYLOAD["lines"] if case.vendor == "xledger" else EXPORT_PAYLOAD["lines"])
        doc_ok = ((lambda d, n=lines: d["lines"] == n) if case.vendor == "xledger"
                  else (lambda d, n=lines: d == {"lines": 0, "entries": n}))
        ledger = assert_ledger(conn, case.jobs, where=where, documents=emulator.documents(), doc_check=doc_ok,
                               ref_of=external_reference)
        assert not emulator.faults.pending(), f"{case.name}: a fault was never served"
        job = conn.execute(f"SELECT attempts, result FROM dispatch.jobs WHERE {where} ORDER BY id LIMIT 1").fetchone()
        assert job is not None
        attempts, result = job
        # The job's own requests: the health monitor's probes (every second here) are not retries.
        log = [e for e in emulator.log.entries() if e.kind != "probe"]
        if case.min_wait is not None:
            waits = _waits_after(log, lambda e: e.fault is not None and e.status not in (0,))
            story = [(round(e.time - log[0].time, 2), e.operation, e.status, e.fault) for e in log]
            assert waits and min(waits) >= case.min_wait - TOLERANCE_S, f"{case.name}: waited only {waits}: {story}"
            figures.append(f"{case.name} waited {min(waits):.2f} s (asked {case.min_wait:g})")
        exp = case.expect
        if "attempts" in exp:
            assert attempts == exp["attempts"], f"{case.name}: {attempts} attempts"
        if "already_exported" in exp:
            assert result.get("already_exported") is exp["already_exported"], f"{case.name}: {result}"
        if "writes" in exp:
            assert emulator.log.count("write") == exp["writes"], f"{case.name}: {emulator.log.count('write')} writes"
        if "posts" in exp:
            assert emulator.log.count(operation="journal.post") == exp["posts"]
        if "batches" in exp:
            assert emulator.log.count(operation="batch") == exp["batches"]
        if "tokens_at_least" in exp:
            assert emulator.log.count("token") >= exp["tokens_at_least"]
        if exp.get("waited_window"):
            # The safety property: no write is sent again within the window of the late one. (When
            # the retry looks up only after the vendor applied it, it finds it and waits for nothing.)
            late = [e for e in log if e.fault and "late" in e.fault]
            later_writes = [e for e in log if e.kind == "write" and late and e.time > late[0].time]
            assert late, f"{case.name}: the late write never arrived"
            assert all(e.time - late[0].time >= WINDOW_S - TOLERANCE_S for e in later_writes), \
                f"{case.name}: resent within the window"
            last = max(e.time for e in log)
            figures.append(f"{case.name}: found the late write {last - late[0].time:.2f} s after sending it")
        if case.vendor == "bc":
            assert isinstance(emulator, BusinessCentralEmulator)
            assert emulator.lines == [] and emulator.journals == {}, f"{case.name}: stray lines or batches"
        if case.jobs > 1:
            figures.append(f"{case.name}: {ledger.summary()}")
    record_figure("vendor faults", f"{len(cases)} cases, {sum(c.jobs for c in cases)} exports, one document each; "
                  + "; ".join(figures))
