"""Vendor emulators served on loopback: one server per module, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vendor_harness import Vendor

from app.devkit.emulators import BusinessCentralEmulator, XledgerEmulator, serve
from app.devkit.emulators.dynamics_bc import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_COMPANY_ID,
    DEFAULT_TENANT,
)
from app.devkit.emulators.xledger import DEFAULT_TOKEN


@pytest.fixture(scope="module")
def xledger_server() -> Iterator[tuple[XledgerEmulator, str]]:
    emulator = XledgerEmulator()
    with serve(emulator) as served:
        yield emulator, served.url


@pytest.fixture
def xledger(xledger_server: tuple[XledgerEmulator, str]) -> Vendor:
    emulator, url = xledger_server
    emulator.reset()
    emulator.burst_limit = emulator.credits = None
    emulator.max_in_flight, emulator.processing_time = 1, 0.0
    return Vendor(emulator, url, {"base_url": url, "page_size": 10}, {"token": DEFAULT_TOKEN})


@pytest.fixture(scope="module")
def bc_server() -> Iterator[tuple[BusinessCentralEmulator, str]]:
    emulator = BusinessCentralEmulator()
    with serve(emulator) as served:
        yield emulator, served.url


@pytest.fixture
def bc(bc_server: tuple[BusinessCentralEmulator, str]) -> Vendor:
    emulator, url = bc_server
    emulator.reset()
    emulator.token_ttl = 3599.0
    emulator.max_concurrent, emulator.queue_size, emulator.queue_timeout = 5, 95, 480.0
    emulator.processing_time = 0.0
    config = {"base_url": url, "login_url": url, "company_id": DEFAULT_COMPANY_ID,
              "page_size": 10}
    credentials = {"tenant_id": DEFAULT_TENANT, "client_id": DEFAULT_CLIENT_ID,
                   "client_secret": DEFAULT_CLIENT_SECRET}
    return Vendor(emulator, url, config, credentials)
