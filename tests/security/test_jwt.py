"""JWT findings (issue 15): iss unchecked, aud off, short HMAC secrets, alg/kid echoed into
WWW-Authenticate, stale JWKS keys trusted for ever, JWKS read whole. Unit level, against
loopback HTTP only."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.core.errors import ConfigError
from app.core.settings import Settings
from app.devkit.emulators.server import serve
from app.web.auth import JWKS_PATH, AuthConfig, AuthFailure, JwksCache, Verifier, mint_token

SECRET = "a-security-test-jwt-secret-of-at-least-32-bytes"


def refused(verifier: Verifier, token: str) -> AuthFailure:
    with pytest.raises(AuthFailure) as info:
        asyncio.run(verifier.verify(f"Bearer {token}"))
    return info.value


def body(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"role": "service_role", "iat": now, "exp": now + 300, **extra}


# -- iss
def test_iss__a_token_from_another_issuer_is_refused_even_when_correctly_signed() -> None:
    verifier = Verifier(AuthConfig(jwt_secret=SECRET, supabase_url="https://ref.supabase.co"))
    for iss in ("https://evil.example/auth/v1", "https://other-ref.supabase.co/auth/v1", None):
        claims = body(aud="authenticated") | ({"iss": iss} if iss else {})
        failure = refused(verifier, jwt.encode(claims, SECRET, algorithm="HS256"))
        assert (failure.status, failure.code) == (401, "invalid_issuer"), iss
    ok = jwt.encode(body(iss="https://ref.supabase.co/auth/v1", aud="authenticated"), SECRET, algorithm="HS256")
    assert asyncio.run(verifier.verify(f"Bearer {ok}"))["role"] == "service_role"
    # The project's legacy service_role key: iss "supabase", no aud, HS256.
    assert asyncio.run(verifier.verify(f"Bearer {mint_token(SECRET)}"))["iss"] == "supabase"


def test_iss__is_configurable() -> None:
    settings = Settings(supabase_jwt_secret=SECRET, dispatch_jwt_issuer="https://issuer.example, other")
    verifier = Verifier(AuthConfig.from_settings(settings))
    assert refused(verifier, mint_token(SECRET)).code == "invalid_issuer"  # "supabase" is not listed now
    assert asyncio.run(verifier.verify(f"Bearer {mint_token(SECRET, iss='other')}"))["iss"] == "other"


# -- aud
def test_aud__auth_issued_tokens_need_the_authenticated_audience_by_default() -> None:
    verifier = Verifier(AuthConfig(jwt_secret=SECRET, supabase_url="https://ref.supabase.co"))
    iss = "https://ref.supabase.co/auth/v1"
    for aud in (None, "anon", ["x", "y"]):
        claims = body(iss=iss) | ({"aud": aud} if aud else {})
        assert refused(verifier, jwt.encode(claims, SECRET, algorithm="HS256")).code == "invalid_audience", aud
    both = jwt.encode(body(iss=iss, aud=["x", "authenticated"]), SECRET, algorithm="HS256")
    assert asyncio.run(verifier.verify(f"Bearer {both}"))


def test_aud__when_configured_every_token_must_carry_it() -> None:
    verifier = Verifier(AuthConfig(jwt_secret=SECRET, audience="dispatch"))
    assert refused(verifier, mint_token(SECRET)).code == "invalid_audience"  # missing
    assert refused(verifier, mint_token(SECRET, aud="authenticated")).code == "invalid_audience"
    assert asyncio.run(verifier.verify(f"Bearer {mint_token(SECRET, aud='dispatch')}"))["aud"] == "dispatch"


# -- short HMAC secrets
def test_short_secret__is_refused_at_start_with_one_line_naming_the_setting() -> None:
    with pytest.raises(ConfigError) as info:
        Verifier(AuthConfig(jwt_secret="0123456789abcdef"))  # 16 bytes
    message = str(info.value)
    assert "SUPABASE_JWT_SECRET" in message and "\n" not in message and "16 bytes" in message
    Verifier(AuthConfig(jwt_secret="x" * 32))  # 32 is enough


# -- WWW-Authenticate
def _forged_header_token(header: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body()).encode())}.c2ln"


@pytest.mark.parametrize("header", [{"alg": "HS256\u2603"}, {"alg": "RS256", "kid": "k\u00ff\u4e2d\"\\"},
                                    {"alg": "\u0100" * 500}, {"alg": "ES256", "kid": "\r\nSet-Cookie: a=b"}])
def test_www_authenticate__never_carries_the_tokens_alg_or_kid(header: dict[str, Any],
                                                               flaky: tuple[FlakyJwks, str]) -> None:
    # A JWKS without the token's kid: the refusal used to quote the kid into the header.
    config = AuthConfig(jwt_secret=SECRET, supabase_url=flaky[1])
    verifier = Verifier(config, JwksCache(config.jwks_url or ""))
    failure = refused(verifier, _forged_header_token(header))
    value = failure.headers()["WWW-Authenticate"]
    value.encode("latin-1")  # what Starlette does with a header; non-Latin-1 was an unauthenticated 500
    assert value.isascii() and "\r" not in value and "\n" not in value
    for part in filter(None, [header.get("alg"), header.get("kid")]):
        assert part not in value


def test_www_authenticate__over_http_a_non_latin1_alg_is_a_401_not_a_500() -> None:
    import httpx

    from app.web.api import Api

    class NoPool:
        pass

    api = Api(Settings(supabase_jwt_secret=SECRET, supabase_url=""), NoPool())  # type: ignore[arg-type]
    with serve(Starlette(routes=api.routes())) as served:
        token = _forged_header_token({"alg": "HS256☃"})
        r = httpx.get(served.url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unsupported_algorithm"
    assert "☃" not in r.headers["www-authenticate"]


# -- JWKS: bounded staleness, bounded size
class FlakyJwks:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.up = True
        self.fetches = 0

    async def endpoint(self, request: Request) -> Response:
        self.fetches += 1
        if not self.up:
            return Response("down", status_code=503)
        jwk = {**ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True), "kid": "k1"}
        return JSONResponse({"keys": [jwk]})


@pytest.fixture
def flaky() -> Iterator[tuple[FlakyJwks, str]]:
    jwks = FlakyJwks()
    with serve(Starlette(routes=[Route(JWKS_PATH, jwks.endpoint)])) as served:
        yield jwks, served.url


def test_jwks__stale_keys_stop_verifying_after_max_stale_while_refresh_fails(flaky: tuple[FlakyJwks, str]) -> None:
    jwks, url = flaky
    config = AuthConfig(supabase_url=url)
    cache = JwksCache(config.jwks_url or "", ttl=0.2, min_interval=0, max_stale=0.6)
    verifier = Verifier(config, cache)
    token = jwt.encode(body(iss=url + "/auth/v1", aud="authenticated"), jwks.key, algorithm="ES256",
                       headers={"kid": "k1"})

    async def scenario() -> list[str]:
        seen = [str((await verifier.verify(f"Bearer {token}"))["role"])]
        jwks.up = False
        await asyncio.sleep(0.4)  # past the ttl, within max stale: the cached key still verifies
        seen.append(str((await verifier.verify(f"Bearer {token}"))["role"]))
        await asyncio.sleep(0.6)  # past ttl + max stale: no longer
        try:
            await verifier.verify(f"Bearer {token}")
        except AuthFailure as exc:
            seen.append(f"{exc.status} {exc.code}")
        jwks.up = True  # the auth server is back: verifying works again
        seen.append(str((await verifier.verify(f"Bearer {token}"))["role"]))
        return seen

    assert asyncio.run(scenario()) == ["service_role", "service_role", "503 jwks_unavailable", "service_role"]


def test_jwks__a_huge_document_is_cut_at_the_cap_not_read_whole() -> None:
    sent = [0]

    async def endless(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"keys": ["'
            for i in range(100 * 1024):  # 100 MiB at ~10 MiB/s: reading it whole takes 10 s
                sent[0] += 1024
                if i % 1024 == 0:
                    await asyncio.sleep(0.1)
                yield b"a" * 1024
        return StreamingResponse(chunks(), media_type="application/json")

    with serve(Starlette(routes=[Route(JWKS_PATH, endless)])) as served:
        cache = JwksCache(served.url + JWKS_PATH, max_bytes=64 * 1024)
        started = time.monotonic()
        with pytest.raises(AuthFailure) as info:
            asyncio.run(cache.get("k1"))
        elapsed = time.monotonic() - started
    assert info.value.status == 503 and "larger than 65536 bytes" in info.value.message
    assert elapsed < 3  # stopped at the cap, not after 100 MiB
