"""The Entra + Business Central emulator speaks the protocol of vendor-apis.md §2.10."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from vendor_harness import Vendor

from app.devkit.emulators.dynamics_bc import DEFAULT_COMPANY_ID, SCOPE

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
