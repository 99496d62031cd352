"""Background duties share one skeleton: they count their rounds, keep their last error,
survive failures, and do their one thing."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from app.daemon.duties.base import Service
from app.daemon.duties.rescuer import Rescuer
from tests.unit.fakes import FakeJobStore

pytestmark = pytest.mark.unit


class Flaky(Service):
    name = "flaky"

    def __init__(self, failures: list[BaseException]) -> None:
        super().__init__(0.001)
        self.failures = failures
        self.done = asyncio.Event()

    async def run_once(self) -> int:
        if self.failures:
            raise self.failures.pop(0)
        self.done.set()
        return 0


def test_service__survives_database_and_other_errors_and_clears_the_error_after() -> None:
    async def go() -> Flaky:
        duty = Flaky([psycopg.OperationalError("server closed the connection"), ValueError("bug")])
        task = asyncio.create_task(duty.run())
        await asyncio.wait_for(duty.done.wait(), 5)
        task.cancel()
        return duty

    duty = asyncio.run(go())
    assert duty.failures == [] and duty.runs >= 1 and duty.last_error is None


def test_service__refuses_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="flaky: interval must be positive, got 0"):
        Service.__init__(Flaky([]), 0)


def test_rescuer__wakes_the_poller_only_when_it_rescued_something() -> None:
    store, woken = FakeJobStore(), []
    rescuer = Rescuer(store, lambda: woken.append(1))  # type: ignore[arg-type]
    assert asyncio.run(rescuer.run_once()) == 0 and woken == []
    store.expired = 3
    assert asyncio.run(rescuer.run_once()) == 3 and woken == [1]
