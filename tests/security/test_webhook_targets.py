"""Webhook targets (issue 15): private, link-local, metadata and loopback addresses refused after
DNS resolution, the checked address pinned for the request, refusals' bodies bounded and redacted.

No packet leaves the machine: refusals are judged by the guard before any connection (a stub
resolver, and a transport that records every request it is asked to send); end to end only
against a loopback receiver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.adapters.base import Integration, JobContext
from app.adapters.webhook import EXCERPT_CHARS, TargetGuard, TargetRefused, WebhookAdapter, WebhookConfig, judge
from app.core.errors import PermanentError
from app.core.secret import Secret
from app.devkit.emulators.server import serve


def stub(answers: dict[str, list[str]]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return answers[host]
    return resolve


class Recorder(httpx.AsyncBaseTransport):
    """A transport that opens nothing: it records what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(200)


def ctx(http: httpx.AsyncClient, url: str, secret: str | None = None, key: str = "k-1") -> JobContext:
    return JobContext(job_id=1, integration=Integration("hook", "webhook", {"url": url}), kind="notify",
                      payload={}, idempotency_key=key, attempt=1, scheduled_for=datetime.now(UTC),
                      credentials=Secret(secret) if secret else None, http=http,
                      config=WebhookConfig.model_validate({"url": url}))


REFUSED = ["169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "10.0.0.5", "172.16.3.4",
           "192.168.1.1", "100.64.0.1", "fe80::1", "fe80::1%eth0", "fc00::1", "0.0.0.0", "::", "224.0.0.1",
           "240.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "2002:a9fe:a9fe::1", "127.0.0.1",
           "127.5.5.5", "::1", "::ffff:127.0.0.1"]


@pytest.mark.parametrize("address", REFUSED)
def test_judge__refuses_private_link_local_metadata_and_loopback(address: str) -> None:
    assert judge(ipaddress.ip_address(address.split("%")[0])) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"])
def test_judge__allows_public_addresses(address: str) -> None:
    assert judge(ipaddress.ip_address(address)) is None


def test_judge__loopback_only_with_the_development_setting() -> None:
    assert judge(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert judge(ipaddress.ip_address("::1"), allow_loopback=True) is None
    # The setting opens loopback only: metadata and private stay shut.
    assert judge(ipaddress.ip_address("169.254.169.254"), allow_loopback=True) is not None
    assert judge(ipaddress.ip_address("10.0.0.1"), allow_loopback=True) is not None


@pytest.mark.parametrize(("url", "answers"), [
    ("http://169.254.169.254/latest/meta-data/", {}),                     # a literal
    ("http://metadata.example/x", {"metadata.example": ["169.254.169.254"]}),
    ("https://rebind.example/x", {"rebind.example": ["93.184.216.34", "10.0.0.7"]}),  # one bad answer is enough
    ("http://localhost:8080/x", {"localhost": ["127.0.0.1", "::1"]}),
    ("http://[fe80::1]/x", {}),
    ("http://[::ffff:169.254.169.254]/x", {}),
])
def test_guard__refuses_before_any_request_is_sent(url: str, answers: dict[str, list[str]]) -> None:
    recorder = Recorder()
    adapter = WebhookAdapter(TargetGuard(allow_loopback=False, resolver=stub(answers)))

    async def go() -> None:
        async with httpx.AsyncClient(transport=recorder) as http:
            await adapter.run(ctx(http, url))

    with pytest.raises(TargetRefused) as info:
        asyncio.run(go())
    assert recorder.sent == []
    assert isinstance(info.value, PermanentError) and "refused" in str(info.value)


def test_guard__pins_the_checked_address_and_keeps_the_host_name() -> None:
    recorder = Recorder()
    adapter = WebhookAdapter(TargetGuard(allow_loopback=False, resolver=stub({"hooks.example": ["93.184.216.34"]})))

    async def go() -> None:
        async with httpx.AsyncClient(transport=recorder) as http:
            await adapter.run(ctx(http, "https://hooks.example:8443/in"))

    asyncio.run(go())
    (sent,) = recorder.sent
    assert sent.url.host == "93.184.216.34" and sent.url.port == 8443  # connects where it checked
    assert sent.headers["host"] == "hooks.example:8443"
    assert sent.extensions["sni_hostname"] == "hooks.example"  # TLS and the certificate: the name


def test_end_to_end__a_loopback_receiver_through_a_pinned_name_needs_the_setting() -> None:
    hits: list[str] = []

    async def hook(request: Request) -> Response:
        hits.append(request.headers["host"])
        return Response(status_code=204)

    with serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as served:
        port = served.url.rsplit(":", 1)[1]
        # "receiver.test" resolves nowhere for real: reaching the receiver proves the pinned address was used.
        url = f"http://receiver.test:{port}/hook"
        resolver = stub({"receiver.test": ["127.0.0.1"]})

        async def go(allow: bool) -> dict[str, Any]:
            async with httpx.AsyncClient() as http:
                return await WebhookAdapter(TargetGuard(allow_loopback=allow, resolver=resolver)).run(ctx(http, url))

        with pytest.raises(TargetRefused):
            asyncio.run(go(False))
        assert hits == []
        assert asyncio.run(go(True)) == {"status": 204}
    assert hits == [f"receiver.test:{port}"]


def _run_against(app: Starlette, path: str, secret: str | None = None, key: str = "k-1") -> Any:
    with serve(app) as served:
        async def go() -> Any:
            async with httpx.AsyncClient() as http:
                return await WebhookAdapter(TargetGuard(allow_loopback=True)).run(
                    ctx(http, served.url + path, secret, key))
        return asyncio.run(go())


def test_refusal_body__only_a_short_printable_redacted_excerpt_lands_in_last_error() -> None:
    secret = "whsec-planted-0123456789abcdef"

    async def hook(request: Request) -> Response:
        text = (f"bad request\x00\x1b[31m signed with {secret} Authorization: Bearer eyJabc.def.ghi "
                + "x" * 5000)
        return Response(text, status_code=400)

    with pytest.raises(PermanentError) as info:
        _run_against(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), "/hook", secret)
    message = str(info.value)
    assert message.startswith("webhook refused the job with HTTP 400")
    assert len(message) <= len("webhook refused the job with HTTP 400: ") + EXCERPT_CHARS + 3
    assert secret not in message and "eyJabc" not in message
    assert message.isascii() and message.isprintable()


def test_refusal_body__a_100_mib_answer_is_not_read_whole() -> None:
    async def hook(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(100 * 1024):  # 100 MiB at ~10 MiB/s: reading it whole takes 10 s
                if i % 1024 == 0:
                    await asyncio.sleep(0.1)
                yield b"y" * 1024
        return StreamingResponse(chunks(), status_code=400)

    started = time.monotonic()
    with pytest.raises(PermanentError):
        _run_against(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), "/hook")
    assert time.monotonic() - started < 3


def test_idempotency_key__a_non_ascii_key_is_sent_percent_encoded() -> None:
    seen: list[str] = []

    async def hook(request: Request) -> Response:
        seen.append(request.headers["idempotency-key"])
        return Response(status_code=200)

    assert _run_against(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), "/hook",
                        key="rechnung-ä-2026") == {"status": 200}
    assert seen == ["rechnung-%C3%A4-2026"]
