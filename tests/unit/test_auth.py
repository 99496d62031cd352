"""JWT verification: every way a token can be refused, and the ways it is accepted.

Asymmetric keys come from a JWKS served by a real Starlette app over loopback HTTP, so the
fetch, the cache and the refetch on an unknown kid are exercised as in production.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.core.settings import Settings
from app.devkit.emulators.server import serve
from app.web.auth import JWKS_PATH, AuthConfig, AuthFailure, JwksCache, Verifier, mint_token, parse_jwks

pytestmark = pytest.mark.unit

SECRET = "a-test-jwt-secret-that-is-at-least-32-bytes-long"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def refused(verifier: Verifier, header: str | None) -> AuthFailure:
    with pytest.raises(AuthFailure) as info:
        run(verifier.verify(header))
    return info.value


def bearer(token: str) -> str:
    return f"Bearer {token}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed_hs256(claims: dict[str, Any], key: bytes, **header: Any) -> str:
    """An HS256 token signed with any bytes as the key (PyJWT refuses PEM keys as HMAC secrets)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", **header}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def claims(role: str = "service_role", ttl: int = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"role": role, "iat": now, "exp": now + ttl, "iss": "supabase", **extra}


@pytest.fixture
def hs() -> Verifier:
    return Verifier(AuthConfig(jwt_secret=SECRET))


# -- the JWKS server
@dataclass
class Keys:
    rsa: Any = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ec: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    published: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0
    issuer: str = ""  # $SUPABASE_URL/auth/v1 of the JWKS server: what Supabase Auth writes into `iss`

    def jwk(self, kind: str, kid: str) -> dict[str, Any]:
        key = self.rsa if kind == "rsa" else self.ec
        algorithm = RSAAlgorithm if kind == "rsa" else ECAlgorithm
        return {**algorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}

    def sign(self, kind: str, kid: str, body: dict[str, Any]) -> str:
        key, alg = (self.rsa, "RS256") if kind == "rsa" else (self.ec, "ES256")
        # Auth-issued: its issuer and audience, unless the test says otherwise.
        body = {**body, "iss": self.issuer, "aud": "authenticated"} if body.get("iss") == "supabase" else body
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})

    def rsa_public_pem(self) -> bytes:
        return bytes(self.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))

    async def endpoint(self, request: Request) -> JSONResponse:
        self.fetches += 1
        return JSONResponse({"keys": self.published})


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def jwks_server(keys: Keys) -> Iterator[str]:
    app = Starlette(routes=[Route(JWKS_PATH, keys.endpoint)])
    with serve(app) as served:
        keys.issuer = served.url + "/auth/v1"
        yield served.url


@pytest.fixture
def published(keys: Keys, jwks_server: str) -> Keys:
    keys.published[:] = [keys.jwk("rsa", "rsa-1"), keys.jwk("ec", "ec-1")]
    keys.fetches = 0
    return keys


def asymmetric(url: str, min_interval: float = 30.0, secret: str | None = None) -> Verifier:
    config = AuthConfig(jwt_secret=secret, supabase_url=url)
    assert config.jwks_url is not None
    return Verifier(config, JwksCache(config.jwks_url, min_interval=min_interval))


# -- refusals
def test_verify__missing_header_is_401_with_a_bare_challenge(hs: Verifier) -> None:
    for header in (None, "", "   "):
        failure = refused(hs, header)
        assert (failure.status, failure.code) == (401, "missing_token")
        assert failure.headers() == {"WWW-Authenticate": 'Bearer realm="integration-dispatch"'}


@pytest.mark.parametrize("header", [
    "Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "bearer not-a-jwt", "Bearer a.b", "Bearer a.b.c",
    "Bearer !!!.???.###", "Token " + mint_token(SECRET), "Bearer " + mint_token(SECRET) + " extra",
])
def test_verify__malformed_header_or_token_is_401(hs: Verifier, header: str) -> None:
    failure = refused(hs, header)
    assert (failure.status, failure.code) == (401, "malformed_token")
    assert 'error="invalid_token"' in failure.headers()["WWW-Authenticate"]


def test_verify__expired_token_is_401_beyond_the_leeway(hs: Verifier) -> None:
    failure = refused(hs, bearer(mint_token(SECRET, ttl=-60)))
    assert (failure.status, failure.code) == (401, "expired_token")
    assert run(hs.verify(bearer(mint_token(SECRET, ttl=-3))))["role"] == "service_role"  # within 10 s leeway


def test_verify__token_without_exp_is_401(hs: Verifier) -> None:
    token = jwt.encode({"role": "service_role"}, SECRET, algorithm="HS256")
    failure = refused(hs, bearer(token))
    assert (failure.status, failure.code) == (401, "invalid_token")
    assert "exp" in failure.message


def test_verify__wrong_signature_is_401(hs: Verifier) -> None:
    failure = refused(hs, bearer(mint_token("another-secret-that-is-also-32-bytes-or-more")))
    assert (failure.status, failure.code) == (401, "invalid_signature")


def test_verify__tampered_payload_is_401(hs: Verifier) -> None:
    head, _, sig = mint_token(SECRET, role="anon").split(".")
    forged = f"{head}.{_b64(json.dumps(claims()).encode())}.{sig}"
    assert refused(hs, bearer(forged)).code == "invalid_signature"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS512", "RS384", "EdDSA", ""])
def test_verify__alg_none_and_unlisted_algorithms_are_401(hs: Verifier, alg: str) -> None:
    head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    token = f"{head}.{_b64(json.dumps(claims()).encode())}."
    failure = refused(hs, bearer(token))
    assert failure.status == 401 and failure.code in {"unsupported_algorithm", "malformed_token"}


def test_verify__alg_none_from_pyjwt_is_401(hs: Verifier) -> None:
    token = jwt.encode(claims(), None, algorithm="none")
    assert refused(hs, bearer(token)).code == "unsupported_algorithm"


def test_verify__hs256_signed_with_the_rsa_public_key_is_refused(published: Keys, jwks_server: str) -> None:
    # The classic confusion: the attacker knows the public key and signs HS256 with its PEM.
    token = hand_signed_hs256(claims(), published.rsa_public_pem(), kid="rsa-1")
    with_secret = refused(asymmetric(jwks_server, secret=SECRET), bearer(token))
    assert (with_secret.status, with_secret.code) == (401, "invalid_signature")
    without_secret = refused(asymmetric(jwks_server), bearer(token))
    assert (without_secret.status, without_secret.code) == (401, "unsupported_algorithm")


def test_verify__rs256_token_is_never_checked_with_the_hs_secret(published: Keys) -> None:
    token = published.sign("rsa", "rsa-1", claims())
    failure = refused(Verifier(AuthConfig(jwt_secret=SECRET)), bearer(token))
    assert (failure.status, failure.code) == (401, "unsupported_algorithm")


def test_verify__token_whose_alg_does_not_match_its_keys_type_is_401(published: Keys, jwks_server: str) -> None:
    # Signed with the RSA key but naming the EC key's kid.
    token = published.sign("rsa", "ec-1", claims())
    assert refused(asymmetric(jwks_server), bearer(token)).code == "invalid_token"


def test_verify__asymmetric_token_without_kid_is_401(published: Keys, jwks_server: str) -> None:
    token = jwt.encode(claims(), published.rsa, algorithm="RS256")
    assert refused(asymmetric(jwks_server), bearer(token)).code == "malformed_token"


def test_verify__wrong_role_is_403(hs: Verifier) -> None:
    failure = refused(hs, bearer(mint_token(SECRET, role="anon")))
    assert (failure.status, failure.code) == (403, "wrong_role")
    assert "service_role" in failure.message and "'anon'" in failure.message
    assert 'error="insufficient_scope"' in failure.headers()["WWW-Authenticate"]
    no_role = jwt.encode({"exp": int(time.time()) + 60, "iss": "supabase"}, SECRET, algorithm="HS256")
    assert refused(hs, bearer(no_role)).status == 403


def test_verify__required_role_is_configurable() -> None:
    verifier = Verifier(AuthConfig(jwt_secret=SECRET, required_role="dispatcher"))
    assert run(verifier.verify(bearer(mint_token(SECRET, role="dispatcher"))))["role"] == "dispatcher"
    assert refused(verifier, bearer(mint_token(SECRET))).status == 403


def test_verify__wrong_audience_is_401_when_an_audience_is_configured() -> None:
    verifier = Verifier(AuthConfig(jwt_secret=SECRET, audience="dispatch"))
    assert refused(verifier, bearer(mint_token(SECRET, aud="authenticated"))).code == "invalid_audience"
    assert refused(verifier, bearer(mint_token(SECRET))).status == 401  # no aud at all
    assert run(verifier.verify(bearer(mint_token(SECRET, aud="dispatch"))))["aud"] == "dispatch"


def test_verify__audience_is_not_checked_when_none_is_configured(hs: Verifier) -> None:
    assert run(hs.verify(bearer(mint_token(SECRET, aud="authenticated"))))["aud"] == "authenticated"


def test_verify__unconfigured_auth_is_503_and_says_what_to_set() -> None:
    failure = refused(Verifier(AuthConfig()), bearer(mint_token(SECRET)))
    assert (failure.status, failure.code) == (503, "auth_not_configured")
    assert "SUPABASE_JWT_SECRET" in failure.message and "SUPABASE_URL" in failure.message
    assert failure.headers() == {}


def test_verify__unreachable_jwks_with_no_cached_keys_is_503(keys: Keys) -> None:
    token = keys.sign("ec", "ec-1", claims())
    failure = refused(asymmetric("http://127.0.0.1:9"), bearer(token))  # discard port: connection refused
    assert (failure.status, failure.code) == (503, "jwks_unavailable")


# -- acceptance
def test_verify__valid_hs256_token_returns_its_claims(hs: Verifier) -> None:
    assert run(hs.verify(bearer(mint_token(SECRET, sub="ci"))))["sub"] == "ci"
    assert run(hs.verify("bearer  " + mint_token(SECRET)))["role"] == "service_role"  # scheme is case-insensitive


@pytest.mark.parametrize(("kind", "kid"), [("rsa", "rsa-1"), ("ec", "ec-1")])
def test_verify__valid_asymmetric_token_verifies_through_the_jwks(published: Keys, jwks_server: str,
                                                                  kind: str, kid: str) -> None:
    verifier = asymmetric(jwks_server)

    async def twice() -> list[dict[str, Any]]:
        return [await verifier.verify(bearer(published.sign(kind, kid, claims(sub=str(i))))) for i in range(2)]

    assert [c["sub"] for c in run(twice())] == ["0", "1"]
    assert published.fetches == 1  # cached


def test_verify__both_configured_accepts_hs256_and_asymmetric(published: Keys, jwks_server: str) -> None:
    verifier = asymmetric(jwks_server, secret=SECRET)

    async def both() -> None:
        await verifier.verify(bearer(mint_token(SECRET)))
        await verifier.verify(bearer(published.sign("ec", "ec-1", claims())))

    run(both())


def test_jwks__unknown_kid_triggers_one_refetch(published: Keys, jwks_server: str) -> None:
    verifier = asymmetric(jwks_server, min_interval=0)

    async def scenario() -> None:
        await verifier.verify(bearer(published.sign("rsa", "rsa-1", claims())))
        assert published.fetches == 1
        published.published.append(published.jwk("rsa", "rsa-2"))  # the project rotated its keys
        await verifier.verify(bearer(published.sign("rsa", "rsa-2", claims())))
        assert published.fetches == 2
        with pytest.raises(AuthFailure) as info:
            await verifier.verify(bearer(published.sign("rsa", "rsa-9", claims())))
        assert info.value.code == "unknown_key" and published.fetches == 3

    run(scenario())


def test_jwks__refetches_on_unknown_kids_are_rate_limited(published: Keys, jwks_server: str) -> None:
    verifier = asymmetric(jwks_server, min_interval=60)

    async def flood() -> None:
        await verifier.verify(bearer(published.sign("ec", "ec-1", claims())))
        for i in range(20):
            with pytest.raises(AuthFailure):
                await verifier.verify(bearer(published.sign("ec", f"made-up-{i}", claims())))

    run(flood())
    assert published.fetches == 1


def test_parse_jwks__ignores_symmetric_and_unusable_keys(keys: Keys) -> None:
    document = {"keys": [
        {"kty": "oct", "kid": "shared", "k": _b64(SECRET.encode()), "alg": "HS256"},
        {**keys.jwk("rsa", "mislabelled"), "alg": "ES256"},
        {**keys.jwk("rsa", "no-kid"), "kid": None},
        {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA"},
        "not a key",
        keys.jwk("ec", "good"),
    ]}
    assert list(parse_jwks(document)) == ["good"]
    with pytest.raises(ValueError):
        parse_jwks({"nope": []})


# -- configuration and minting
def test_auth_config__from_settings() -> None:
    settings = Settings(supabase_jwt_secret=SECRET, supabase_url="https://ref.supabase.co/",
                        dispatch_required_role="service_role")
    config = AuthConfig.from_settings(settings)
    assert config.jwt_secret == SECRET and config.configured
    assert config.jwks_url == "https://ref.supabase.co/auth/v1/.well-known/jwks.json"
    assert not AuthConfig.from_settings(Settings(supabase_jwt_secret="", supabase_url="")).configured


def test_mint_token__makes_an_hs256_service_role_token_that_expires() -> None:
    token = mint_token(SECRET, ttl=120)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    body = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert body["role"] == "service_role" and 110 <= body["exp"] - time.time() <= 121
