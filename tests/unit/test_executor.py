"""The executor decides a job's outcome from what its adapter did; it never raises."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from app.adapters import Registry
from app.adapters.base import Capabilities, JobContext
from app.core.errors import AuthError, PermanentError, RetryableError
from app.core.job import Status
from app.core.retry import RetryPolicy
from app.daemon.executor import Executor, HttpClients
from app.daemon.writes import Fence
from tests.unit.fakes import FakeCredentials, claimed

pytestmark = pytest.mark.unit


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: str


class Fake:
    """An adapter whose behaviour is set per test through ``script``."""

    name: ClassVar[str] = "fake"
    config_model: ClassVar[Any] = None
    default_health_mode: ClassVar[str] = "passive"
    uses_http: ClassVar[bool] = False
    script: ClassVar[list[Any]] = []
    seen: ClassVar[list[JobContext]] = []

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        Fake.seen.append(ctx)
        step = Fake.script.pop(0) if Fake.script else {"ok": True}
        if isinstance(step, BaseException):
            raise step
        if step == "hang":
            await asyncio.sleep(60)
        return step  # type: ignore[no-any-return]

    async def probe(self, ctx: Any) -> None:
        return None

    async def warm_up(self, ctx: Any) -> None:
        return None


class Typed(Fake):
    name: ClassVar[str] = "typed"
    config_model: ClassVar[Any] = Config


@pytest.fixture
def executor() -> Executor:
    Fake.script, Fake.seen = [], []
    registry = Registry(builtin={})
    registry.register("fake", Fake)
    registry.register("typed", Typed)
    return Executor(registry, FakeCredentials(), HttpClients(), retry=RetryPolicy(base=1, cap=1), job_timeout=0.2)


def run(executor: Executor, **job: Any) -> Any:
    return asyncio.run(executor.execute(claimed(**job)))


def test_execute__success_returns_the_result(executor: Executor) -> None:
    Fake.script = [{"document": "V-1"}]
    outcome = run(executor)
    assert outcome.status is Status.SUCCEEDED and outcome.result == {"document": "V-1"}


def test_execute__permanent_error_fails_at_once_with_its_message(executor: Executor) -> None:
    Fake.script = [PermanentError("posting date is in a closed period")]
    outcome = run(executor, attempts=1)
    assert outcome.status is Status.FAILED and outcome.error == "posting date is in a closed period"


def test_execute__retryable_error_honours_the_vendors_wait(executor: Executor) -> None:
    Fake.script = [RetryableError("429", retry_after=7.5)]
    outcome = run(executor)
    assert outcome.status is Status.RETRY and outcome.delay == 7.5 and outcome.vendor_fault


def test_execute__last_attempt_fails_and_says_so(executor: Executor) -> None:
    Fake.script = [RetryableError("503")]
    outcome = run(executor, attempts=3, max_attempts=3)
    assert outcome.status is Status.FAILED and outcome.error == "503 (attempt 3 of 3; giving up)"


def test_execute__auth_error_rereads_the_credentials_once(executor: Executor) -> None:
    Fake.script = [AuthError("401"), {"ok": True}]
    outcome = run(executor)
    assert outcome.status is Status.SUCCEEDED
    creds = executor.credentials
    assert isinstance(creds, FakeCredentials) and creds.invalidated == ["acme"] and creds.reads == 2


def test_execute__unreadable_payload_fails_the_job_without_running_it(executor: Executor) -> None:
    outcome = run(executor, unreadable="9000 bytes nested too deeply to read")
    assert outcome.status is Status.FAILED and "unreadable (9000 bytes" in (outcome.error or "")
    assert Fake.seen == []


def test_execute__config_is_validated_once_into_the_adapters_model(executor: Executor) -> None:
    bad = run(executor, adapter="typed", config={"acount": "x"})
    assert bad.status is Status.FAILED and "invalid config: account: Field required" in (bad.error or "")
    good = run(executor, adapter="typed", config={"account": "1920"})
    assert good.status is Status.SUCCEEDED and Fake.seen[-1].config == Config(account="1920")


def test_execute__adapter_bug_is_retried_not_raised(executor: Executor) -> None:
    Fake.script = [ZeroDivisionError("division by zero")]
    outcome = run(executor)
    assert outcome.status is Status.RETRY and outcome.error == "unexpected ZeroDivisionError: division by zero"


def test_execute__a_hung_adapter_times_out_as_a_retry(executor: Executor) -> None:
    Fake.script = ["hang"]
    outcome = run(executor)
    assert outcome.status is Status.RETRY and "did not finish within 0.2 s" in (outcome.error or "")


def test_execute__a_call_stopped_at_its_fence_parks_even_when_the_timer_fired_early(
        executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Event-loop timers may fire a fraction of a millisecond before their deadline, when the
    clock still says the fence has not expired: the stop is told by the deadline the timer was
    set to (the fence's, before the job's own limit), not by reading the clock afterwards."""
    monkeypatch.setattr(Fence, "expired", lambda self: False)  # the clock a hair short of the deadline
    Fake.script = ["hang"]

    async def go() -> Any:
        fence = Fence(asyncio.get_running_loop().time() + 0.05)  # well before the 0.2 s job limit
        return await executor.execute(claimed(), fence)

    outcome = asyncio.run(go())
    assert outcome.status is Status.PARK and "lease" in (outcome.error or ""), outcome


def test_execute__a_renewal_after_the_call_ended_extends_the_fence_without_error(executor: Executor) -> None:
    """A finished job stays leased until its completion is written; a renewal in between extends
    its fence, which must not touch the call's finished timer (it raised RuntimeError and failed
    the whole renewal round)."""
    async def go() -> Any:
        loop = asyncio.get_running_loop()
        fence = Fence(loop.time() + 5)
        outcome = await executor.execute(claimed(), fence)
        fence.extend(loop.time() + 10)
        return outcome, fence.deadline - loop.time()

    outcome, left = asyncio.run(go())
    assert outcome.status is Status.SUCCEEDED and left > 9


def test_execute__the_secret_never_reaches_the_error(executor: Executor) -> None:
    Fake.script = [RetryableError("vendor echoed t0ps3cret-token back")]
    outcome = run(executor)
    assert "t0ps3cret-token" not in (outcome.error or "") and "[redacted]" in (outcome.error or "")


def test_capabilities__declared_on_the_class_with_defaults() -> None:
    assert Capabilities.of(Fake) == Capabilities(uses_http=False, uses_credentials=True, resumes_sync=False)
    assert Capabilities.of(Fake()) is Capabilities.of(Fake)  # read once per class
