"""``webhook``: POST the job as JSON to the integration's ``config.url``.

The body is signed with HMAC-SHA256 using the integration's secret
(``X-Dispatch-Signature: sha256=<hex>``) and carries the job's key in ``Idempotency-Key`` so
the receiver can drop repeats. 2xx succeeds; 408, 429 and 5xx retry (``Retry-After``
honoured); any other status fails the job.

Where it may send (:class:`TargetGuard`): whoever can write ``dispatch.integrations`` chooses the
URL, and the daemon sits inside someone's network, so the host is resolved first and every
address it resolves to is judged before a connection is opened. Private, link-local, cloud
metadata, multicast and reserved addresses are refused; loopback too, unless
``DISPATCH_ALLOW_LOOPBACK_TARGETS=true`` (development, emulators, local receivers). The request
then goes to the address that was checked (the host name stays in ``Host`` and in TLS SNI, so the
certificate is still checked against it): a DNS answer that changes between the check and the
connection (rebinding) cannot move the request elsewhere.

The receiver's answer is streamed and never read whole: nothing of a 2xx or a retryable one, at
most :data:`EXCERPT_BYTES` of a refusal, of which a short, printable, redacted excerpt goes into
the job's ``last_error``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, HttpUrl

from app.adapters._vendor_http import parse_retry_after
from app.adapters.base import JobContext, ProbeContext
from app.core.errors import PermanentError, RetryableError
from app.core.redaction import redact

EXCERPT_BYTES = 1024  # read at most this much of a refusal's body
EXCERPT_CHARS = 80  # and keep at most this much of it in last_error

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Instance metadata services (AWS/GCP/Azure/OpenStack, ECS task metadata, Alibaba, AWS IPv6).
METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200",
                                              "fd00:ec2::254")}


class TargetRefused(PermanentError):
    """The webhook URL resolves to an address the daemon must not send to."""


class WebhookConfig(BaseModel):
    url: HttpUrl
    timeout_seconds: float = Field(30.0, gt=0, le=300)


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (no connection is made)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def judge(address: IPAddress, allow_loopback: bool = False) -> str | None:
    """Why the daemon must not send to ``address``, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None:
            return judge(embedded, allow_loopback)
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return None if allow_loopback else "loopback (set DISPATCH_ALLOW_LOOPBACK_TARGETS=true for development)"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "an unspecified, multicast or reserved address"
    if address.is_private or not address.is_global:
        return "a private or non-public address"
    return None


def _allow_loopback_setting() -> bool:
    from app.core.settings import get_settings

    return bool(get_settings().dispatch_allow_loopback_targets)


@dataclass
class TargetGuard:
    """Resolves a URL's host, refuses it unless every address is allowed, and pins one."""

    allow_loopback: bool | None = None  # None: DISPATCH_ALLOW_LOOPBACK_TARGETS
    resolver: Resolver = system_resolver
    refused: list[str] = field(default_factory=list)  # hosts refused, for tests and metrics

    async def pin(self, url: httpx.URL) -> str:
        """The checked address to connect to for ``url``, or :class:`TargetRefused`."""
        host = url.host
        try:
            addresses = [host] if _is_literal(host) else await self.resolver(host, url.port or _default_port(url))
        except OSError as exc:
            raise RetryableError(f"webhook host {host} does not resolve: {type(exc).__name__}") from None
        if not addresses:
            raise RetryableError(f"webhook host {host} resolves to no address")
        allow = _allow_loopback_setting() if self.allow_loopback is None else self.allow_loopback
        for text in addresses:
            reason = judge(ipaddress.ip_address(text.split("%", 1)[0]), allow)
            if reason is not None:
                self.refused.append(host)
                raise TargetRefused(f"webhook URL host {host} resolves to {text}, {reason}: refused "
                                    "(webhooks go to public addresses only)")
        return addresses[0]


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def pinned_request(http: httpx.AsyncClient, url: httpx.URL, address: str, **kwargs: Any) -> httpx.Request:
    """A POST to ``address`` that still names ``url``'s host in ``Host`` and TLS SNI."""
    headers = dict(kwargs.pop("headers", {}))
    headers["Host"] = url.netloc.decode("ascii")
    extensions = {"sni_hostname": url.host} if url.scheme == "https" and not _is_literal(url.host) else {}
    return http.build_request("POST", url.copy_with(host=address), headers=headers, extensions=extensions,
                              **kwargs)


_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


def excerpt(raw: bytes, secret: Any = None) -> str:
    """A receiver's refusal as it may appear in ``last_error``: printable ASCII, whitespace
    collapsed, credentials redacted, at most :data:`EXCERPT_CHARS` characters."""
    text = " ".join(_UNPRINTABLE.sub(" ", raw.decode("utf-8", "replace")).split())
    text = redact(text, secret) or ""
    return text[:EXCERPT_CHARS] + ("..." if len(text) > EXCERPT_CHARS else "")


def _header_key(key: str) -> str:
    # A header carries ASCII only; a non-ASCII key is sent percent-encoded (UTF-8).
    return key if key.isascii() and key.isprintable() else quote(key, safe="")


class WebhookAdapter:
    name: ClassVar[str] = "webhook"
    config_model: ClassVar[type[BaseModel]] = WebhookConfig
    default_health_mode: ClassVar[str] = "passive"

    def __init__(self, guard: TargetGuard | None = None) -> None:
        self.guard = guard or TargetGuard()

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        config = ctx.config if isinstance(ctx.config, WebhookConfig) else WebhookConfig.model_validate(
            ctx.integration.config)
        body = json.dumps({
            "job_id": ctx.job_id, "integration_id": ctx.integration.id, "kind": ctx.kind,
            "payload": ctx.payload, "idempotency_key": ctx.idempotency_key, "attempt": ctx.attempt,
            "scheduled_for": ctx.scheduled_for.isoformat(),
        }, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": _header_key(ctx.idempotency_key),
                   "Accept-Encoding": "identity"}  # an excerpt is read raw, never inflated
        if ctx.credentials is not None:
            digest = hmac.new(ctx.credentials.reveal().encode(), body, hashlib.sha256).hexdigest()
            headers["X-Dispatch-Signature"] = f"sha256={digest}"
        url = httpx.URL(str(config.url))
        address = await self.guard.pin(url)
        request = pinned_request(ctx.http, url, address, content=body, headers=headers,
                                 timeout=config.timeout_seconds)
        try:
            response = await ctx.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise RetryableError(f"webhook {url.host} unreachable: {type(exc).__name__}") from None
        try:
            return await self._outcome(response, ctx.credentials)
        finally:
            await response.aclose()

    async def _outcome(self, response: httpx.Response, secret: Any = None) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            return {"status": status}
        if status in (408, 429) or status >= 500:
            raise RetryableError(f"webhook answered {status}",
                                 retry_after=parse_retry_after(response.headers.get("Retry-After")))
        raw = await _read_at_most(response, EXCERPT_BYTES)
        shown = excerpt(raw, secret)
        raise PermanentError(f"webhook refused the job with HTTP {status}" + (f": {shown}" if shown else ""))

    async def probe(self, ctx: ProbeContext) -> None:
        return None

    async def warm_up(self, ctx: ProbeContext) -> None:
        return None


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    chunks, size = [], 0
    try:
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    except httpx.HTTPError:
        pass  # the excerpt is a courtesy; the status already decided
    return b"".join(chunks)[:limit]
