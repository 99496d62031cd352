"""The Xledger emulator speaks the protocol of reference/vendor-apis.md §1.8."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
from vendor_harness import Vendor

from app.devkit.emulators import XledgerEmulator, serve
from app.devkit.emulators.xledger import DEFAULT_TOKEN, ERR_CONCURRENCY, ERR_CREDITS

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"token {DEFAULT_TOKEN}"}
IMPORT = ("mutation ($inputs: [AddGLImportItemsInput!]!) "
          "{ addGLImportItems(inputs: $inputs) { edges { clientId node { dbId } } } }")
PAGE = ("query ($after: String) { transactions(first: 10, after: $after) "
        "{ edges { cursor node { dbId } } pageInfo { hasNextPage endCursor } } }")


def gql(vendor: Vendor, query: str, variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"query": query, "variables": variables or {}}
    response = httpx.post(vendor.url + "/graphql", json=body, headers=AUTH if headers is None
                          else headers)
    return dict(response.json())


def node(account: str, amount: str, ref: str = "R1") -> dict[str, Any]:
    return {"clientId": account, "node": {"trRegNumber": 7, "account": {"code": account},
                                          "amount": amount, "extIdentifier": ref}}


def test_probe__typename(xledger: Vendor) -> None:
    assert gql(xledger, "query { __typename }") == {"data": {"__typename": "Query"}}
    assert xledger.emulator.log.entries()[0].kind == "probe"


def test_auth__bad_header_and_unknown_token_are_graphql_errors(xledger: Vendor) -> None:
    bad = gql(xledger, "{ __typename }", headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"})
    assert bad["errors"][0]["message"].startswith("Bad format for API Token.")
    unknown = gql(xledger, "{ __typename }", headers={"Authorization": "token nope"})
    assert "token" in unknown["errors"][0]["message"]


def test_unknown_field__graphql_error(xledger: Vendor) -> None:
    answer = gql(xledger, "query { vouchers { edges { node { dbId } } } }")
    assert answer["errors"][0]["message"] == 'Cannot query field "vouchers" on type "Query".'


def test_import__stores_lines_and_echoes_client_ids(xledger: Vendor) -> None:
    answer = gql(xledger, IMPORT, {"inputs": [node("1010", "101.00"), node("1920", "-101.00")]})
    edges = answer["data"]["addGLImportItems"]["edges"]
    assert [e["clientId"] for e in edges] == ["1010", "1920"]
    assert xledger.emulator.documents()["R1"]["lines"] == 2


@pytest.mark.parametrize(
    ("inputs", "message"),
    [([node("1010", "1"), node("1920", "-2")], "do not balance"),
     ([node("9999", "1"), node("1920", "-1")], "account.code: No value matching owner"),
     ([node("1010", "0")] * 501, "At most 500")],
)
def test_import__rules_reject_the_whole_mutation(
    xledger: Vendor, inputs: list[dict[str, Any]], message: str
) -> None:
    answer = gql(xledger, IMPORT, {"inputs": inputs})
    assert message in answer["errors"][0]["message"]
    assert xledger.emulator.documents() == {}


def test_relay_paging__edges_page_info_and_cursors(xledger: Vendor) -> None:
    xledger.emulator.seed(15)
    first = gql(xledger, PAGE)["data"]["transactions"]
    assert len(first["edges"]) == 10 and first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]
    rest = gql(xledger, PAGE, {"after": first["pageInfo"]["endCursor"]})["data"]["transactions"]
    assert len(rest["edges"]) == 5 and rest["pageInfo"]["hasNextPage"] is False


def test_page_size_over_10000__error(xledger: Vendor) -> None:
    answer = gql(xledger, "query { transactions(first: 10001) { edges { cursor } } }")
    assert "at most 10000" in answer["errors"][0]["message"]


def test_credits__exhausted_with_reset_at(xledger: Vendor) -> None:
    xledger.emulator.credits = 1
    assert "data" in gql(xledger, "{ __typename }")
    error = gql(xledger, "{ __typename }")["errors"][0]
    assert error["code"] == ERR_CREDITS and "resetAt" in error["extensions"]
    assert xledger.emulator.requests_per_token[DEFAULT_TOKEN] == 2


def test_control_endpoints__fault_log_documents_reset(xledger: Vendor) -> None:
    pushed = httpx.post(xledger.url + "/_emulator/faults",
                        json={"status": 503, "retry_after": 3, "times": 2})
    assert pushed.status_code == 201
    answers = [httpx.post(xledger.url + "/graphql", json={"query": "{ __typename }"},
                          headers=AUTH) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].headers["retry-after"] == "3"
    log = httpx.get(xledger.url + "/_emulator/log").json()
    assert [e["status"] for e in log] == [503, 503, 200]
    assert httpx.get(xledger.url + "/_emulator/documents").json() == {}
    httpx.post(xledger.url + "/_emulator/reset")
    assert httpx.get(xledger.url + "/_emulator/log").json() == []


def test_connection_reset_fault(xledger: Vendor) -> None:
    xledger.emulator.faults.push(reset=True)
    with pytest.raises(httpx.RemoteProtocolError):
        gql(xledger, "{ __typename }")
    assert xledger.emulator.log.entries()[0].status == 0


def test_server__port_closed_after_exit() -> None:
    with serve(XledgerEmulator()) as served:
        url = served.url
        assert httpx.post(url + "/graphql", json={}).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.post(url + "/graphql", json={})


def test_main__prints_urls_and_stops_on_sigterm() -> None:
    command = [sys.executable, "-m", "app.devkit.emulators"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            urls = json.loads(process.stdout.readline())
            probe = httpx.post(urls["xledger"] + "/graphql", json={"query": "{ __typename }"},
                               headers=AUTH)
            assert probe.json() == {"data": {"__typename": "Query"}}
            assert httpx.get(urls["dynamics_bc"] + "/_emulator/log").json() == []
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0


def test_concurrency_limit__one_in_flight_per_token(xledger: Vendor) -> None:
    xledger.emulator.processing_time = 0.8

    async def two() -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as http:
            calls = [http.post(xledger.url + "/graphql", json={"query": "{ __typename }"}, headers=AUTH)
                     for _ in range(2)]
            return [r.json() for r in await asyncio.gather(*calls)]

    answers = asyncio.run(two())
    codes = sorted(str(a.get("errors", [{}])[0].get("code")) for a in answers)
    assert codes == [ERR_CONCURRENCY, "None"]  # one answered, one refused at once
    assert xledger.emulator.in_flight[DEFAULT_TOKEN] == 0
    xledger.emulator.max_in_flight = None
    assert "errors" not in asyncio.run(two())[1]


def test_late_fault__accepted_unanswered_applied_later(xledger: Vendor) -> None:
    pushed = httpx.post(xledger.url + "/_emulator/faults", json={"match": "write", "kind": "late:0.5"})
    assert pushed.status_code == 201 and pushed.json()["late"] == 0.5
    assert httpx.post(xledger.url + "/_emulator/faults", json={"kind": "soon"}).status_code == 400
    with pytest.raises(httpx.RemoteProtocolError):
        gql(xledger, IMPORT, {"inputs": [node("1010", "101.00"), node("1920", "-101.00")]})
    assert xledger.emulator.documents() == {} and xledger.emulator.late_pending == 1
    xledger.emulator.wait_late_applied(1, timeout=5)
    assert xledger.emulator.documents()["R1"]["lines"] == 2
    entry = xledger.emulator.log.entries("write")[0]
    assert entry.status == 0 and entry.fault == "late=0.5"


def test_late_fault__held_until_the_clients_read_times_out(xledger: Vendor) -> None:
    xledger.emulator.faults.push(match="write", late=0.4, delay=1.0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(xledger.url + "/graphql", headers=AUTH, timeout=0.2,
                   json={"query": IMPORT, "variables": {"inputs": [node("1010", "1"), node("1920", "-1")]}})
    xledger.emulator.wait_late_applied(1, timeout=5)
    assert xledger.emulator.documents()["R1"]["lines"] == 2
