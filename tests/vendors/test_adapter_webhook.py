"""The webhook adapter against a real loopback receiver: signature, key, status mapping."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from vendor_harness import with_client

from app.adapters.base import Integration, JobContext
from app.adapters.webhook import WebhookAdapter
from app.core.errors import PermanentError, RetryableError
from app.core.secret import Secret
from app.devkit.emulators import serve

pytestmark = pytest.mark.integration
SECRET = "webhook-signing-secret"


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answer: tuple[int, dict[str, str]] = (200, {})
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), await request.body()))
        status, headers = self.answer
        return JSONResponse({"ok": status < 300}, status_code=status, headers=headers)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    r = Receiver()
    with serve(r.app) as served:
        yield r, served.url + "/hook"


def _ctx(http: httpx.AsyncClient, url: str, secret: str | None = SECRET) -> JobContext:
    return JobContext(job_id=7, integration=Integration("hooky", "webhook", {"url": url}), kind="export",
                      payload={"period": "2026-11"}, idempotency_key="hooky:export:2026-11-30T00:00:00Z", attempt=1,
                      scheduled_for=datetime(2026, 11, 30, tzinfo=UTC),
                      credentials=Secret(secret) if secret else None, http=http)


def _run(url: str, secret: str | None = SECRET) -> dict[str, Any]:
    return with_client(lambda http: WebhookAdapter().run(_ctx(http, url, secret)))


def test_webhook__signs_the_body_and_sends_the_idempotency_key(receiver: tuple[Receiver, str]) -> None:
    r, url = receiver
    r.answer = (200, {})
    assert _run(url) == {"status": 200}
    headers, body = r.requests[-1]
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-dispatch-signature"] == f"sha256={expected}"
    assert headers["idempotency-key"] == "hooky:export:2026-11-30T00:00:00Z"
    assert json.loads(body)["payload"] == {"period": "2026-11"}


@pytest.mark.parametrize(("status", "headers", "error", "retry_after"), [
    (429, {"Retry-After": "7"}, RetryableError, 7.0),
    (503, {}, RetryableError, None),
    (400, {}, PermanentError, None),
])
def test_webhook__maps_statuses(receiver: tuple[Receiver, str], status: int, headers: dict[str, str],
                                error: type[Exception], retry_after: float | None) -> None:
    r, url = receiver
    r.answer = (status, headers)
    with pytest.raises(error) as caught:
        _run(url)
    assert getattr(caught.value, "retry_after", None) == retry_after


def test_webhook__an_unreachable_receiver_is_retried() -> None:
    with pytest.raises(RetryableError, match="unreachable"):
        _run("http://127.0.0.1:9/hook")
