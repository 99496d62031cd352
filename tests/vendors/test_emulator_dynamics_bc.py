"""The Entra + Business Central emulator speaks the protocol of vendor-apis.md §2.10."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from vendor_harness import Vendor

from app.devkit.emulators.dynamics_bc import DEFAULT_COMPANY_ID, SCOPE
from tests.support import wait_for

pytestmark = pytest.mark.integration


def token(bc: Vendor, **overrides: str) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": bc.credentials["client_id"],
            "client_secret": bc.credentials["client_secret"], "scope": SCOPE, **overrides}
    return httpx.post(f"{bc.url}/{bc.credentials['tenant_id']}/oauth2/v2.0/token", data=form)


def api(bc: Vendor, method: str, path: str, **kwargs: Any) -> httpx.Response:
    bearer = token(bc).json()["access_token"]
    headers = {"Authorization": f"Bearer {bearer}", **kwargs.pop("headers", {})}
    root = f"{bc.url}/v2.0/{bc.credentials['tenant_id']}/production/api/v2.0"
    return httpx.request(method, root + path, headers=headers, **kwargs)


def test_token__client_credentials(bc: Vendor) -> None:
    body = token(bc).json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599


@pytest.mark.parametrize(("override", "status", "code"), [
    ({"client_secret": "wrong"}, 401, 7000215),
    ({"client_id": "nobody"}, 400, 700016),
    ({"scope": "https://example.com/.default"}, 400, 70011),
])
def test_token__aadsts_errors(bc: Vendor, override: dict[str, str], status: int, code: int) -> None:
    response = token(bc, **override)
    assert response.status_code == status and response.json()["error_codes"] == [code]


def test_api__missing_or_expired_token__401_envelope(bc: Vendor) -> None:
    root = f"{bc.url}/v2.0/{bc.credentials['tenant_id']}/production/api/v2.0/companies"
    response = httpx.get(root)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Authentication_InvalidCredentials"
    bearer = token(bc).json()["access_token"]
    bc.emulator.expire_tokens()
    assert httpx.get(root, headers={"Authorization": f"Bearer {bearer}"}).status_code == 401


def test_companies__top_and_select(bc: Vendor) -> None:
    body = api(bc, "GET", "/companies", params={"$top": "1", "$select": "id"}).json()
    assert [set(c) for c in body["value"]] == [{"@odata.etag", "id"}]


def test_paging__maxpagesize_and_next_link(bc: Vendor) -> None:
    bc.emulator.seed(5)
    path = f"/companies({DEFAULT_COMPANY_ID})/generalLedgerEntries"
    first = api(bc, "GET", path, headers={"Prefer": "odata.maxpagesize=3"}).json()
    assert len(first["value"]) == 3
    rest = httpx.get(first["@odata.nextLink"],
                     headers={"Authorization": f"Bearer {token(bc).json()['access_token']}",
                              "Prefer": "odata.maxpagesize=3"}).json()
    assert len(rest["value"]) == 2 and "@odata.nextLink" not in rest


def test_filter__eq_on_document_number(bc: Vendor) -> None:
    bc.emulator.seed(5)
    path = f"/companies({DEFAULT_COMPANY_ID})/generalLedgerEntries"
    body = api(bc, "GET", path, params={"$filter": "documentNumber eq 'SEED-3'"}).json()
    assert [e["documentNumber"] for e in body["value"]] == ["SEED-3"]


def test_batch__snapshot_rolls_back_on_a_failure_and_post_moves_lines(bc: Vendor) -> None:
    company = f"companies({DEFAULT_COMPANY_ID})"
    journal = api(bc, "POST", f"/{company}/journals", json={"code": "T"}).json()
    url = f"{company}/journals({journal['id']})/journalLines"

    def batch(account: str) -> dict[str, Any]:
        lines = [{"accountNumber": "10100", "amount": 5, "documentNumber": "D1"},
                 {"accountNumber": account, "amount": -5, "documentNumber": "D1"}]
        requests = [{"id": str(i), "method": "POST", "url": url, "body": b}
                    for i, b in enumerate(lines)]
        return dict(api(bc, "POST", "/$batch", json={"requests": requests},
                        headers={"Isolation": "snapshot"}).json())

    assert batch("9999")["responses"][1]["status"] == 400
    assert bc.emulator.documents() == {}
    assert [r["status"] for r in batch("10700")["responses"]] == [201, 201]
    posted = api(bc, "POST", f"/{company}/journals({journal['id']})/Microsoft.NAV.post")
    assert posted.status_code == 204
    assert bc.emulator.documents() == {"D1": {"lines": 0, "entries": 2}}


@pytest.mark.parametrize(("status", "retry_after"), [(429, None), (429, 2), (503, 5)])
def test_faults__status_with_and_without_retry_after(
    bc: Vendor, status: int, retry_after: int | None
) -> None:
    bc.emulator.faults.push(status=status, retry_after=retry_after, match="probe")
    response = api(bc, "GET", "/companies")
    assert response.status_code == status
    assert response.headers.get("retry-after") == (None if retry_after is None
                                                   else str(retry_after))
    assert "code" in response.json()["error"]


def test_faults__slow_answer_is_logged_with_its_duration(bc: Vendor) -> None:
    bc.emulator.faults.push(delay=0.3, match="probe")
    assert api(bc, "GET", "/companies").status_code == 200
    assert bc.emulator.log.entries("probe")[0].duration >= 0.3


def test_control__settings_and_expire_tokens_over_http(bc: Vendor) -> None:
    assert httpx.post(bc.url + "/_emulator/settings", json={"token_ttl": 5}).status_code == 204
    assert token(bc).json()["expires_in"] == 5
    assert httpx.post(bc.url + "/_emulator/settings", json={"nope": 1}).status_code == 400
    assert httpx.post(bc.url + "/_emulator/expire-tokens").status_code == 204


def _bearer(bc: Vendor) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(bc).json()['access_token']}"}


def _concurrently(bc: Vendor, n: int) -> list[httpx.Response]:
    headers = _bearer(bc)
    root = f"{bc.url}/v2.0/{bc.credentials['tenant_id']}/production/api/v2.0/companies"

    async def many() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as http:
            return list(await asyncio.gather(*(http.get(root, headers=headers) for _ in range(n))))

    return asyncio.run(many())


def test_request_limit__five_at_once_the_rest_queue_then_429(bc: Vendor) -> None:
    bc.emulator.processing_time, bc.emulator.queue_size = 1.0, 4
    statuses = sorted(r.status_code for r in _concurrently(bc, 12))
    assert statuses == [200] * 9 + [429] * 3  # 5 processed + 4 queued, 3 beyond the queue
    assert bc.emulator.max_active_seen == 5
    assert bc.emulator.active == bc.emulator.queued == 0


def test_request_limit__queued_too_long__503_with_retry_after(bc: Vendor) -> None:
    bc.emulator.processing_time, bc.emulator.queue_timeout = 1.0, 0.2
    answers = _concurrently(bc, 7)
    refused = [r for r in answers if r.status_code == 503]
    assert len(refused) == 2 and all(r.headers["retry-after"] == "5" for r in refused)
    assert refused[0].json()["error"]["code"] == "Internal_ServiceUnavailable"


def _journal_with_lines(bc: Vendor, account: str, posting_date: str = "2026-02-01") -> str:
    company = f"companies({DEFAULT_COMPANY_ID})"
    journal = api(bc, "POST", f"/{company}/journals", json={"code": "T1", "displayName": "t"}).json()
    for acct, amount in ((account, 5), ("10100", -5)):
        line = {"accountNumber": acct, "amount": amount, "documentNumber": "D1", "postingDate": posting_date}
        assert api(bc, "POST", f"/{company}/journals({journal['id']})/journalLines", json=line).status_code == 201
    return f"/{company}/journals({journal['id']})"


def test_post_time_validation__blocked_account_fails_the_whole_post(bc: Vendor) -> None:
    bc.emulator.blocked_accounts = {"10700"}
    journal = _journal_with_lines(bc, "10700")  # lines are accepted ...
    posted = api(bc, "POST", journal + "/Microsoft.NAV.post")  # ... the post is not
    assert posted.status_code == 400 and posted.json()["error"]["code"] == "Application_DialogException"
    assert "Blocked must be equal to 'No'" in posted.json()["error"]["message"]
    assert bc.emulator.documents() == {"D1": {"lines": 2, "entries": 0}}


def test_post_time_validation__closed_period(bc: Vendor) -> None:
    bc.emulator.allow_posting_from = "2026-03-01"
    journal = _journal_with_lines(bc, "10700", posting_date="2026-02-01")
    posted = api(bc, "POST", journal + "/Microsoft.NAV.post")
    assert posted.status_code == 400 and "allowed posting dates" in posted.json()["error"]["message"]


def test_journals__code10_and_delete(bc: Vendor) -> None:
    company = f"/companies({DEFAULT_COMPANY_ID})"
    too_long = api(bc, "POST", company + "/journals", json={"code": "ELEVENCHARS"})
    assert too_long.json()["error"]["code"] == "Application_StringExceededLength"
    journal = _journal_with_lines(bc, "10700")
    assert api(bc, "DELETE", journal, headers={"If-Match": "*"}).status_code == 204
    assert bc.emulator.journals == {} and bc.emulator.documents() == {}
    assert api(bc, "GET", journal + "/journalLines").status_code == 404


def test_late_fault__batch_accepted_unanswered_applied_later(bc: Vendor) -> None:
    company = f"companies({DEFAULT_COMPANY_ID})"
    journal = api(bc, "POST", f"/{company}/journals", json={"code": "T"}).json()
    lines = [{"accountNumber": "10100", "amount": a, "documentNumber": "D1"} for a in (5, -5)]
    requests = [{"id": str(i), "method": "POST", "url": f"{company}/journals({journal['id']})/journalLines",
                 "body": b} for i, b in enumerate(lines)]
    bc.emulator.faults.push(match="batch", late=0.5)
    with pytest.raises(httpx.RemoteProtocolError):
        api(bc, "POST", "/$batch", json={"requests": requests}, headers={"Isolation": "snapshot"})
    assert bc.emulator.documents() == {}
    bc.emulator.wait_late_applied(1, timeout=5)
    assert bc.emulator.documents() == {"D1": {"lines": 2, "entries": 0}}


def test_late_committed_rows__invisible_until_committed(bc: Vendor) -> None:
    bc.emulator.seed(3)
    bc.emulator.commit_late(2, visible_in=0.4, stamp_age=60)
    path = f"/companies({DEFAULT_COMPANY_ID})/generalLedgerEntries"
    assert len(api(bc, "GET", path).json()["value"]) == 3
    wait_for(lambda: len(api(bc, "GET", path).json()["value"]) == 5, 5, interval=0.1, message="late rows")
    stamps = [e["lastModifiedDateTime"] for e in api(bc, "GET", path).json()["value"]]
    assert stamps[-1] < stamps[0]  # committed last, stamped first
