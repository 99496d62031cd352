"""DynamicsBCAdapter against the Entra + Business Central emulator over loopback HTTP."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from vendor_harness import Vendor, with_client

from app.adapters._vendor_http import external_reference
from app.adapters.dynamics_bc import TOKEN_KEY, DynamicsBCAdapter, journal_code
from app.core.errors import AuthError, PermanentError, RetryableError
from tests.support import wait_for

pytestmark = pytest.mark.integration

KEY = "acme:export:2026-02-01T00:00:00Z"
REF = external_reference(KEY)
JOURNAL = journal_code("DX", KEY)
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
    assert result == {"document_number": REF, "lines": 3, "journal": JOURNAL,
                      "already_exported": False, "posted": True}
    assert bc.emulator.documents() == {REF: {"lines": 0, "entries": 3}}
    assert bc.emulator.log.count(operation="batch") == 1
    assert bc.emulator.log.count(operation="journal.post") == 1
    assert bc.emulator.journals == {}  # the job's batch, posted, is deleted
    assert bc.writes.calls == [("before_write", REF), ("confirmed", REF)]


def test_journal_code__deterministic_code10_per_key() -> None:
    codes = {journal_code("DX", f"acme:export:{n}") for n in range(1000)}
    assert len(codes) == 1000 and all(len(c) == 10 and c.startswith("DX") and c.isalnum() for c in codes)
    assert journal_code("DX", KEY) == JOURNAL
    assert len(journal_code("ABCD", KEY)) == 10


def test_export__one_journal_per_job__a_failed_post_blocks_only_its_own(bc: Vendor) -> None:
    bc.emulator.blocked_accounts = {"20100"}  # accepted as a line, refused when posting
    with pytest.raises(PermanentError, match="Blocked must be equal to 'No'") as caught:
        run(bc, "export", VOUCHER, key="acme:export:a")
    assert "journal DX" in str(caught.value)
    other = {**VOUCHER, "lines": VOUCHER["lines"][:1] + [{"account": "40100", "amount": "-125.50"}]}
    assert run(bc, "export", other, key="acme:export:b")["posted"] is True
    ref_a, ref_b = external_reference("acme:export:a"), external_reference("acme:export:b")
    # b's post never touched a's lines, and a's lines never blocked b.
    assert bc.emulator.documents() == {ref_a: {"lines": 3, "entries": 0}, ref_b: {"lines": 0, "entries": 2}}
    assert [j["code"] for j in bc.emulator.journals.values()] == [journal_code("DX", "acme:export:a")]
    bc.emulator.blocked_accounts = set()  # an operator unblocks the account; the job is retried
    again = run(bc, "export", VOUCHER, key="acme:export:a")
    assert again["already_exported"] is True and again["posted"] is True
    assert bc.emulator.documents()[ref_a] == {"lines": 0, "entries": 3}
    assert bc.emulator.log.count(operation="batch") == 2  # a's lines were never written twice


def test_export__lookups_run_lines_first_then_posted_entries(bc: Vendor) -> None:
    bc.config["post_journal"] = False
    run(bc, "export", VOUCHER)
    bc.emulator.log.clear()
    assert run(bc, "export", VOUCHER)["already_exported"] is True
    reads = [e.operation for e in bc.emulator.log.entries() if e.kind == "lookup"]
    assert reads == ["journalLines.list"]  # the batch id is cached; found in it: no entry read
    bc.config["post_journal"] = True
    run(bc, "export", VOUCHER)  # posts and deletes the batch
    bc.emulator.log.clear()
    bc.state.clear()
    assert run(bc, "export", VOUCHER)["already_exported"] is True
    reads = [e.operation for e in bc.emulator.log.entries() if e.kind == "lookup"]
    assert reads == ["journals.list", "generalLedgerEntries.list"]


def test_export__late_lines__the_retry_waits_the_window_then_finds_them(bc: Vendor) -> None:
    bc.writes.window = 30.0
    bc.config["timeout_seconds"] = 0.3
    bc.emulator.faults.push(match="batch", late=1.0, delay=0.6)  # accepted, answered never, applied at 1 s
    with pytest.raises(RetryableError, match="may have happened"):
        run(bc, "export", VOUCHER)
    assert bc.emulator.documents() == {}  # not applied yet: a plain lookup would write again
    with pytest.raises(RetryableError) as parked:
        run(bc, "export", VOUCHER)
    assert parked.value.park and 25 < (parked.value.retry_after or 0) <= 30
    bc.emulator.wait_late_applied()
    result = run(bc, "export", VOUCHER)
    assert result["already_exported"] is True and result["posted"] is True
    assert bc.emulator.documents() == {REF: {"lines": 0, "entries": 3}}
    assert bc.emulator.log.count(operation="batch") == 1
    assert bc.writes.intents[REF].confirmed is not None and bc.writes.intents[REF].sends == 1


def test_export__late_post__posting_again_books_nothing_twice(bc: Vendor) -> None:
    bc.config["post_timeout_seconds"] = 0.3
    bc.emulator.faults.push(match="journal.post", late=1.0, delay=0.6)
    with pytest.raises(RetryableError):
        run(bc, "export", VOUCHER)
    assert run(bc, "export", VOUCHER)["already_exported"] is True  # the lines, posted by this retry
    bc.emulator.wait_late_applied()  # the first post lands on a batch already posted and deleted
    assert bc.emulator.documents() == {REF: {"lines": 0, "entries": 3}}


def test_export__throttled_batch__not_sent_is_reported(bc: Vendor) -> None:
    bc.writes = type(bc.writes)(window=30.0)
    bc.emulator.faults.push(match="batch", status=429, retry_after=1)
    with pytest.raises(RetryableError) as caught:
        run(bc, "export", VOUCHER)
    assert caught.value.retry_after == 1.0 and not caught.value.park
    assert ("not_sent", REF) in bc.writes.calls and REF not in bc.writes.intents
    assert run(bc, "export", VOUCHER)["posted"] is True  # no window to wait out: it never ran


def test_export__journal_created_meanwhile__the_create_conflict_is_resolved_by_lookup(bc: Vendor) -> None:
    # A stalled attempt's create, queued at BC, lands between this attempt's lookup and create.
    company = f"companies({bc.config['company_id']})"

    async def other_attempt_lands_first(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path.endswith("/journals"):
            body = {"code": JOURNAL, "displayName": f"integration-dispatch {REF}"}
            assert bc.emulator.api("POST", f"{company}/journals", {}, body, {}, "/")[0] == 201

    async def work(http: httpx.AsyncClient) -> dict[str, Any]:
        http.event_hooks["request"].append(other_attempt_lands_first)
        return await DynamicsBCAdapter().run(bc.job(http, "export", VOUCHER))

    assert with_client(work)["posted"] is True
    assert [e.status for e in bc.emulator.log.entries(operation="journals.create")] == [400]
    assert bc.emulator.documents() == {REF: {"lines": 0, "entries": 3}}


def test_export__cached_journal_gone__looked_up_again(bc: Vendor) -> None:
    bc.config["post_journal"] = False
    run(bc, "export", VOUCHER)
    with bc.emulator._lock:  # someone recreated the batch: same name, new id
        journal = bc.emulator.journals.pop(next(iter(bc.emulator.journals)))
        journal["id"] = "11111111-2222-3333-4444-555555555555"
        bc.emulator.journals[journal["id"]] = journal
        for line in bc.emulator.lines:
            line["journalId"] = journal["id"]
    assert run(bc, "export", VOUCHER)["already_exported"] is True
    assert [e.status for e in bc.emulator.log.entries(operation="journalLines.list")] == [404, 200]
    assert bc.emulator.log.count(operation="batch") == 1


def test_export__foreign_batch_with_the_jobs_name__permanent(bc: Vendor) -> None:
    with bc.emulator._lock:
        bc.emulator.journals["j1"] = {"id": "j1", "code": JOURNAL, "displayName": "someone else's"}
    with pytest.raises(PermanentError, match="is not this export's"):
        run(bc, "export", VOUCHER)
    assert bc.emulator.log.count(operation="batch") == 0


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
    assert bc.writes.intents[REF].confirmed is None  # sent, unanswered
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
    bc.config["sync_overlap_seconds"] = 0
    bc.emulator.seed(25)
    result = run(bc, "sync", {})
    assert (result["records"], result["pages"]) == (25, 3)
    assert result["cursor"] == bc.emulator.gl_entries[-1]["lastModifiedDateTime"]
    assert bc.emulator.log.count(operation="generalLedgerEntries.list") == 3
    assert run(bc, "sync", {"since": result["cursor"]})["records"] == 0


def test_sync__since_filters_on_last_modified(bc: Vendor) -> None:
    bc.config["sync_overlap_seconds"] = 0
    bc.emulator.seed(20)  # one a second, ending now
    since = bc.emulator.gl_entries[14]["lastModifiedDateTime"]
    assert run(bc, "sync", {"since": since})["records"] == 5


def test_sync__overlap_finds_rows_committed_late_with_older_stamps(bc: Vendor) -> None:
    bc.emulator.seed(5)
    late = bc.emulator.commit_late(2, visible_in=0.3, stamp_age=30)  # stamped before the cursor
    first = run(bc, "sync", {})
    assert first["records"] == 5
    wait_for(lambda: len(bc.emulator.api("GET", f"companies({bc.config['company_id']})/generalLedgerEntries",
                                         {}, None, {}, "/")[1]["value"]) == 7, 5, message="late rows visible")
    bc.config["sync_overlap_seconds"] = 0
    assert run(bc, "sync", {"since": first["cursor"]})["records"] == 0  # no overlap: missed for good
    bc.config["sync_overlap_seconds"] = 60
    again = run(bc, "sync", {"since": first["cursor"]})
    assert again["records"] == 7 and again["cursor"] == first["cursor"]  # the re-read never moves it back
    assert again["overlap_seconds"] == 60 and set(late) <= {e["id"] for e in bc.emulator.gl_entries}


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


def test_config__vendor_urls_must_be_https_except_to_loopback() -> None:
    import pydantic

    from app.adapters.dynamics_bc import DynamicsBCConfig
    from app.adapters.xledger import XledgerConfig

    for bad in ("http://api.businesscentral.dynamics.com", "ftp://x", "http://10.0.0.5"):
        with pytest.raises(pydantic.ValidationError, match="must be an https:// URL"):
            DynamicsBCConfig(company_id="c", base_url=bad)
        with pytest.raises(pydantic.ValidationError, match="must be an https:// URL"):
            XledgerConfig(base_url=bad)
    assert DynamicsBCConfig(company_id="c", login_url="http://127.0.0.1:9").login_url == "http://127.0.0.1:9"


def test_sync__a_next_link_to_another_host_is_not_followed_with_the_token() -> None:
    from app.adapters._vendor_http import same_origin

    base = "https://api.businesscentral.dynamics.com"
    assert same_origin(base + "/v2.0/t/production/api/v2.0/companies(c)/generalLedgerEntries?$skiptoken=1", base)
    assert not same_origin("https://evil.example/v2.0/x", base)
    assert not same_origin("http://api.businesscentral.dynamics.com/x", base)
