"""XledgerAdapter against the Xledger emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from vendor_harness import Vendor, with_client

from app.adapters._vendor_http import external_reference
from app.adapters.xledger import XledgerAdapter
from app.core.errors import AuthError, PermanentError, RetryableError
from app.devkit.emulators.xledger import ERR_BURST, ERR_CONCURRENCY, ERR_CREDITS
from tests.support import wait_for

pytestmark = pytest.mark.integration

KEY = "acme:export:2026-02-01T00:00:00Z"
VOUCHER = {
    "posting_date": "2026-02-01",
    "period": "2026-01",
    "description": "January sales",
    "lines": [
        {"account": "1500", "amount": "125.50", "description": "Receivables"},
        {"account": "3000", "amount": "-100.40", "description": "Sales"},
        {"account": "2400", "amount": "-25.10", "description": "VAT"},
    ],
}


def run(vendor: Vendor, kind: str, payload: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return with_client(lambda http: XledgerAdapter().run(vendor.job(http, kind, payload, **kw)))


def test_export__imports_one_voucher_tagged_with_the_external_reference(xledger: Vendor) -> None:
    result = run(xledger, "export", VOUCHER)
    ref = external_reference(KEY)
    assert result["already_exported"] is False and result["external_reference"] == ref
    assert xledger.writes.calls == [("before_write", ref), ("confirmed", ref)]
    assert xledger.emulator.documents() == {ref: {"lines": 3, "dbIds": result["db_ids"]}}
    assert xledger.emulator.log.count("write") == 1


def test_export__repeated_job_finds_the_voucher_and_writes_nothing(xledger: Vendor) -> None:
    first = run(xledger, "export", VOUCHER)
    again = run(xledger, "export", VOUCHER)
    assert again["already_exported"] is True and again["db_ids"] == first["db_ids"]
    assert len(xledger.emulator.documents()) == 1
    assert xledger.emulator.log.count("write") == 1
    assert xledger.emulator.log.count("lookup") == 2


def test_export__lost_response_then_rescue__exactly_one_document(xledger: Vendor) -> None:
    # The import happens, the connection drops before the answer: an ambiguous write.
    xledger.emulator.faults.push(match="write", reset=True, after=True)
    with pytest.raises(RetryableError, match="may have happened"):
        run(xledger, "export", VOUCHER)
    assert run(xledger, "export", VOUCHER)["already_exported"] is True
    assert [d["lines"] for d in xledger.emulator.documents().values()] == [3]
    assert xledger.emulator.log.count("write") == 1


def test_export__different_keys_are_different_documents(xledger: Vendor) -> None:
    run(xledger, "export", VOUCHER, key="acme:export:a")
    run(xledger, "export", VOUCHER, key="acme:export:b")
    assert len(xledger.emulator.documents()) == 2


def test_sync__pages_through_everything_and_returns_the_newest_cursor(xledger: Vendor) -> None:
    xledger.emulator.seed(25)
    result = run(xledger, "sync", {})
    assert (result["records"], result["pages"]) == (25, 3)
    assert xledger.emulator.log.count("read", "transactions") == 3
    newest_cet = datetime.fromisoformat(xledger.emulator.transactions[-1]["modifiedAt"])
    expected = newest_cet.replace(tzinfo=ZoneInfo("CET")).astimezone(UTC)
    assert datetime.fromisoformat(result["cursor"]) == expected


def test_sync__since_filters_with_the_cet_safety_margin(xledger: Vendor) -> None:
    xledger.emulator.seed(60)  # one per minute over the last hour
    since = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    result = run(xledger, "sync", {"since": since, "page_size": 100})
    # 30 minutes plus the 15-minute margin, give or take the minute boundary.
    assert 44 <= result["records"] <= 46


@pytest.mark.parametrize(
    ("code", "reset_in", "wait"),
    [(ERR_BURST, None, 5.0), (ERR_CONCURRENCY, None, 1.0), (ERR_CREDITS, None, 1200.0),
     (ERR_CREDITS, 120, 120.0)],
)
def test_limit_codes__retryable_with_the_documented_wait(
    xledger: Vendor, code: str, reset_in: int | None, wait: float
) -> None:
    reset_at = (datetime.now(UTC) + timedelta(seconds=reset_in)).isoformat() if reset_in else None
    xledger.emulator.faults.push(code=code, reset_at=reset_at)
    with pytest.raises(RetryableError) as caught:
        run(xledger, "export", VOUCHER)
    assert caught.value.retry_after == pytest.approx(wait, abs=2)
    assert caught.value.park  # refused before it ran: the job waits, no attempt spent
    assert xledger.emulator.log.entries()[0].fault == code
    assert xledger.emulator.log.count("write") == 0


def test_burst_limit__from_the_emulators_own_counter(xledger: Vendor) -> None:
    xledger.emulator.burst_limit = 1  # the lookup passes, the import is throttled
    with pytest.raises(RetryableError) as caught:
        run(xledger, "export", VOUCHER)
    assert caught.value.retry_after == 5.0 and caught.value.park
    assert xledger.emulator.documents() == {}


def test_limit_code_on_the_import__not_sent_is_reported(xledger: Vendor) -> None:
    xledger.writes = type(xledger.writes)(window=300.0)
    xledger.emulator.faults.push(match="write", code=ERR_CREDITS,
                                 reset_at=(datetime.now(UTC) + timedelta(seconds=30)).isoformat())
    with pytest.raises(RetryableError) as caught:
        run(xledger, "export", VOUCHER)
    assert caught.value.park and caught.value.retry_after == pytest.approx(30, abs=2)
    ref = external_reference(KEY)
    assert xledger.writes.calls == [("before_write", ref), ("not_sent", ref)]
    assert run(xledger, "export", VOUCHER)["already_exported"] is False  # no window to wait out


def test_concurrency_limit__a_second_request_in_flight_parks_for_a_second(xledger: Vendor) -> None:
    xledger.emulator.processing_time = 0.8

    async def both(http: httpx.AsyncClient) -> list[Any]:
        jobs = [XledgerAdapter().run(xledger.job(http, "export", VOUCHER, key=f"acme:export:{n}"))
                for n in range(2)]
        return list(await asyncio.gather(*jobs, return_exceptions=True))

    outcomes = with_client(both)
    refused = [o for o in outcomes if isinstance(o, RetryableError)]
    assert len(refused) == 1 and refused[0].park and refused[0].retry_after == 1.0, outcomes
    assert ERR_CONCURRENCY in str(refused[0])
    assert len(xledger.emulator.documents()) == 1


def test_export__late_import__the_retry_waits_the_window_then_finds_it(xledger: Vendor) -> None:
    xledger.writes.window = 30.0
    xledger.config["timeout_seconds"] = 0.3
    xledger.emulator.faults.push(match="write", kind="late:1", delay=0.6)
    with pytest.raises(RetryableError, match="may have happened"):
        run(xledger, "export", VOUCHER)
    assert xledger.emulator.documents() == {}  # a plain lookup-then-write would import twice
    with pytest.raises(RetryableError) as parked:
        run(xledger, "export", VOUCHER)
    assert parked.value.park and 25 < (parked.value.retry_after or 0) <= 30
    xledger.emulator.wait_late_applied()
    again = run(xledger, "export", VOUCHER)
    assert again["already_exported"] is True
    assert [d["lines"] for d in xledger.emulator.documents().values()] == [3]
    assert xledger.emulator.log.count("write") == 1
    ref = external_reference(KEY)
    assert xledger.writes.intents[ref].confirmed == {"db_ids": again["db_ids"]}


def test_export__window_passed_and_nothing_found__sent_again(xledger: Vendor) -> None:
    xledger.writes.window = 0.5
    xledger.emulator.faults.push(match="write", status=500)  # lost: never applied
    with pytest.raises(RetryableError):
        run(xledger, "export", VOUCHER)
    with pytest.raises(RetryableError) as parked:
        run(xledger, "export", VOUCHER)
    assert parked.value.park
    wait_for(lambda: time.monotonic() - xledger.writes.intents[external_reference(KEY)].last_sent_at > 0.5,
             5, message="the window passed")
    assert run(xledger, "export", VOUCHER)["already_exported"] is False
    assert xledger.writes.intents[external_reference(KEY)].sends == 2
    assert len(xledger.emulator.documents()) == 1


def test_http_503_with_retry_after__retryable(xledger: Vendor) -> None:
    xledger.emulator.faults.push(status=503, retry_after=7)
    with pytest.raises(RetryableError) as caught:
        run(xledger, "sync", {})
    assert caught.value.retry_after == 7.0
    assert xledger.emulator.log.entries()[0].status == 503


def test_slow_answer_beyond_the_timeout__retryable(xledger: Vendor) -> None:
    xledger.config["timeout_seconds"] = 0.2
    xledger.emulator.faults.push(delay=1.0)
    with pytest.raises(RetryableError, match="ReadTimeout"):
        run(xledger, "sync", {})


def test_bad_payload__permanent_and_names_the_field(xledger: Vendor) -> None:
    payload = {**VOUCHER, "lines": [{"account": "1500", "amount": "ten"}]}
    with pytest.raises(PermanentError, match=r"lines\.0\.amount"):
        run(xledger, "export", payload)
    with pytest.raises(PermanentError, match="posting_date"):
        run(xledger, "export", {"lines": VOUCHER["lines"]})
    assert xledger.emulator.log.count() == 0


def test_unbalanced_voucher__permanent(xledger: Vendor) -> None:
    payload = {**VOUCHER, "lines": VOUCHER["lines"][:2]}
    with pytest.raises(PermanentError, match="must balance"):
        run(xledger, "export", payload)


def test_unknown_account__permanent_with_xledgers_message(xledger: Vendor) -> None:
    lines = [{"account": "9999", "amount": "1.00"}, {"account": "3000", "amount": "-1.00"}]
    with pytest.raises(PermanentError, match=r"account\.code: No value matching .* '9999'"):
        run(xledger, "export", {**VOUCHER, "lines": lines})


def test_bad_token__auth_error_without_the_token(xledger: Vendor) -> None:
    with pytest.raises(AuthError) as caught:
        run(xledger, "sync", {}, credentials={"token": "not-the-token-s3cr3t"})
    assert "s3cr3t" not in str(caught.value)


def test_missing_credentials__permanent(xledger: Vendor) -> None:
    with pytest.raises(PermanentError, match="token"):
        run(xledger, "sync", {}, credentials={"user": "x"})


def test_probe__one_cheap_typename_call(xledger: Vendor) -> None:
    with_client(lambda http: XledgerAdapter().probe(xledger.probe_ctx(http)))
    assert [(e.kind, e.operation) for e in xledger.emulator.log.entries()] == [
        ("probe", "__typename")
    ]


def test_warm_up__sends_no_billed_request(xledger: Vendor) -> None:
    with_client(lambda http: XledgerAdapter().warm_up(xledger.probe_ctx(http)))
    assert xledger.emulator.log.count() == 0


def test_unreachable_vendor__retryable() -> None:
    vendor = Vendor(None, "", {"base_url": "http://127.0.0.1:9"}, {"token": "t"})
    with pytest.raises(RetryableError, match="unreachable"):
        with_client(lambda http: XledgerAdapter().run(vendor.job(http, "sync", {})))


def test_unknown_kind__permanent(xledger: Vendor) -> None:
    with pytest.raises(PermanentError, match="no job kind"):
        run(xledger, "refund", {})


def test_http_client_is_the_injected_one(xledger: Vendor) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.headers["authorization"].split()[0])

    async def work(http: httpx.AsyncClient) -> None:
        http.event_hooks["request"].append(hook)
        await XledgerAdapter().probe(xledger.probe_ctx(http))

    with_client(work)
    assert seen == ["token"]  # Xledger's scheme, not Bearer
