"""DynamicsBCAdapter against the Entra + Business Central emulator over loopback HTTP."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from vendor_harness import Vendor, with_client

from app.adapters._vendor_http import external_reference
from app.adapters.dynamics_bc import TOKEN_KEY, DynamicsBCAdapter
from app.core.errors import AuthError, PermanentError, RetryableError

pytestmark = pytest.mark.integration

KEY = "acme:export:2026-02-01T00:00:00Z"
REF = external_reference(KEY)
VOUCHER = {
    "posting_date": "2026-02-01",
    "description": "January sales",
    "lines": [
        {"account": "10700", "amount": "125.50"},
        {"account": "40100", "amount": "-100.40"},
        {"account": "20100", "amount": "-25.10"},
    ],
}


def run(vendor: Vendor, kind: str, payload: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return with_client(lambda http: DynamicsBCAdapter().run(vendor.job(http, kind, payload, **kw)))


def probe(vendor: Vendor, **kw: Any) -> None:
    with_client(lambda http: DynamicsBCAdapter().probe(vendor.probe_ctx(http, **kw)))


def test_export__writes_lines_in_one_batch_and_posts_them(bc: Vendor) -> None:
    result = run(bc, "export", VOUCHER)
    assert result == {"document_number": REF, "lines": 3, "journal": "DISPATCH",
                      "already_exported": False, "posted": True}
    assert bc.emulator.documents() == {REF: {"lines": 0, "entries": 3}}
    assert bc.emulator.log.count(operation="batch") == 1
    assert bc.emulator.log.count(operation="journal.post") == 1


def test_export__repeated_job_is_already_exported_and_writes_nothing(bc: Vendor) -> None:
    run(bc, "export", VOUCHER)
    again = run(bc, "export", VOUCHER)
    assert again["already_exported"] is True
    assert bc.emulator.documents() == {REF: {"lines": 0, "entries": 3}}
    assert bc.emulator.log.count(operation="batch") == 1


def test_export__lost_batch_answer_then_rescue__lines_written_once(bc: Vendor) -> None:
    bc.emulator.faults.push(match="batch", reset=True, after=True)
    with pytest.raises(RetryableError, match="may have happened"):
        run(bc, "export", VOUCHER)
    assert bc.emulator.documents() == {REF: {"lines": 3, "entries": 0}}
    rescued = run(bc, "export", VOUCHER)
    assert rescued["already_exported"] is True and rescued["posted"] is True
    assert bc.emulator.documents() == {REF: {"lines": 0, "entries": 3}}
    assert bc.emulator.log.count(operation="batch") == 1


def test_export__lost_post_answer_then_rescue__posted_once(bc: Vendor) -> None:
    bc.emulator.faults.push(match="journal.post", reset=True, after=True)
    with pytest.raises(RetryableError):
        run(bc, "export", VOUCHER)
    assert run(bc, "export", VOUCHER)["already_exported"] is True
    assert bc.emulator.documents() == {REF: {"lines": 0, "entries": 3}}
    assert bc.emulator.log.count(operation="journal.post") == 1


def test_export__without_posting_leaves_lines_in_the_journal(bc: Vendor) -> None:
    bc.config["post_journal"] = False
    assert run(bc, "export", VOUCHER)["posted"] is False
    assert run(bc, "export", VOUCHER)["already_exported"] is True
    assert bc.emulator.documents() == {REF: {"lines": 3, "entries": 0}}


def test_export__unknown_account__permanent_naming_the_line_and_nothing_written(
    bc: Vendor,
) -> None:
    lines = [{"account": "10700", "amount": "5"}, {"account": "9999", "amount": "-5"}]
    with pytest.raises(PermanentError) as caught:
        run(bc, "export", {**VOUCHER, "lines": lines})
    message = str(caught.value)
    assert message.startswith("Business Central rejected journal line 2: The G/L Account")
    assert "No.='9999'" in message and "(Internal_RecordNotFound)" in message
    assert bc.emulator.documents() == {}  # Isolation: snapshot rolled the batch back


def test_sync__follows_next_links_and_returns_the_newest_cursor(bc: Vendor) -> None:
    bc.emulator.seed(25)
    result = run(bc, "sync", {})
    assert (result["records"], result["pages"]) == (25, 3)
    assert result["cursor"] == bc.emulator.gl_entries[-1]["lastModifiedDateTime"]
    assert bc.emulator.log.count(operation="generalLedgerEntries.list") == 3
    assert run(bc, "sync", {"since": result["cursor"]})["records"] == 0


def test_sync__since_filters_on_last_modified(bc: Vendor) -> None:
    bc.emulator.seed(20)  # one a second, ending now
    since = bc.emulator.gl_entries[14]["lastModifiedDateTime"]
    assert run(bc, "sync", {"since": since})["records"] == 5


@pytest.mark.parametrize(("status", "header", "wait"),
                         [(429, 2, 2.0), (429, None, None), (503, 30, 30.0), (502, 1, 1.0)])
def test_throttling__retryable_honouring_retry_after(
    bc: Vendor, status: int, header: int | None, wait: float | None
) -> None:
    bc.emulator.faults.push(status=status, retry_after=header, match="probe")
    with pytest.raises(RetryableError) as caught:
        probe(bc)
    assert caught.value.retry_after == wait
    assert [e.status for e in bc.emulator.log.entries("probe")] == [status]


def test_retry_after_as_http_date(bc: Vendor) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    bc.emulator.faults.push(status=503, retry_after=when, match="probe")
    with pytest.raises(RetryableError) as caught:
        probe(bc)
    assert caught.value.retry_after == pytest.approx(90, abs=3)


def test_expired_token__renewed_once_and_the_call_repeated(bc: Vendor) -> None:
    probe(bc)
    bc.emulator.expire_tokens()
    probe(bc)
    log = [(e.kind, e.status) for e in bc.emulator.log.entries()]
    assert log == [("token", 200), ("probe", 200), ("probe", 401), ("token", 200),
                   ("probe", 200)]


def test_cached_token__reused_across_jobs_and_renewed_before_expiry(bc: Vendor) -> None:
    probe(bc)
    probe(bc)
    assert bc.emulator.log.count("token") == 1
    token = bc.state[TOKEN_KEY]
    bc.state[TOKEN_KEY] = dataclasses.replace(token, expires_at=0.0)  # as if time passed
    probe(bc)
    assert bc.emulator.log.count("token") == 2
    assert 401 not in [e.status for e in bc.emulator.log.entries()]


def test_still_401_after_renewal__auth_error(bc: Vendor) -> None:
    bc.emulator.faults.push(status=401, match="probe", times=2)
    with pytest.raises(AuthError):
        probe(bc)
    assert bc.emulator.log.count("token") == 2
    assert bc.emulator.log.count("probe") == 2


def test_bad_secret__auth_error_without_the_secret(bc: Vendor) -> None:
    creds = {**bc.credentials, "client_secret": "wrong-s3cr3t"}
    with pytest.raises(AuthError, match="AADSTS7000215") as caught:
        run(bc, "export", VOUCHER, credentials=creds)
    assert "s3cr3t" not in str(caught.value)
    assert bc.emulator.log.count("write") == 0


def test_bad_payload__permanent_and_names_the_field(bc: Vendor) -> None:
    with pytest.raises(PermanentError, match=r"lines\.1\.account"):
        run(bc, "export", {**VOUCHER, "lines": [{"account": "1", "amount": 1}, {"amount": -1}]})
    with pytest.raises(PermanentError, match="since"):
        run(bc, "sync", {"since": "yesterday"})
    assert bc.emulator.log.count() == 0


def test_bad_config__permanent_and_names_the_field(bc: Vendor) -> None:
    del bc.config["company_id"]
    with pytest.raises(PermanentError, match="company_id"):
        run(bc, "sync", {})


def test_slow_answer_beyond_the_timeout__retryable(bc: Vendor) -> None:
    bc.config["timeout_seconds"] = 0.2
    bc.emulator.faults.push(delay=1.0, match="probe")
    with pytest.raises(RetryableError, match="ReadTimeout"):
        probe(bc)


def test_probe__token_and_the_cheap_companies_call_only(bc: Vendor) -> None:
    probe(bc)
    calls = [(e.kind, e.operation) for e in bc.emulator.log.entries()]
    assert calls == [("token", "token"), ("probe", "companies.list")]
    query = bc.emulator.log.entries("probe")[0].query
    assert "top=1" in query and "select=id" in query


def test_warm_up__fetches_the_token_only(bc: Vendor) -> None:
    with_client(lambda http: DynamicsBCAdapter().warm_up(bc.probe_ctx(http)))
    assert [e.kind for e in bc.emulator.log.entries()] == ["token"]
    probe(bc)
    assert bc.emulator.log.count("token") == 1
