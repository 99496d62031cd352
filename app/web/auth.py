"""JWT verification for the HTTP API, with Supabase ``verify_jwt`` semantics.

A request carries ``Authorization: Bearer <jwt>``. HS256 tokens are checked against
``SUPABASE_JWT_SECRET`` (the project's legacy JWT secret, which also signs the
``service_role`` key); ES256/RS256 tokens against the public keys published at
``$SUPABASE_URL/auth/v1/.well-known/jwks.json``. Each key type verifies exactly one
algorithm, chosen by us and never by the token: an RS/ES token is never checked with the
shared secret, nor an HS token with a public key (the classic "alg confusion" forgery), and
``alg: none`` is refused. ``exp`` is required. The ``role`` claim must equal the required
role (``DISPATCH_REQUIRED_ROLE``, default ``service_role``), or, on the routes that allow a
scrape credential (``GET /metrics``), the metrics role (``DISPATCH_METRICS_ROLE``, default
``metrics``; empty: none). The metrics role can never be one Supabase hands out to every
caller (``anon``, ``authenticated``): the daemon refuses to start with it.

``iss`` is required and checked (``DISPATCH_JWT_ISSUER``, comma-separated, overrides the
defaults): ``$SUPABASE_URL/auth/v1`` (what Supabase Auth writes into the tokens it issues,
whatever the algorithm) and, for HS256 only, ``supabase`` (what the project's legacy API keys,
the ``service_role`` key among them, carry; they are signed with the project's JWT secret).
Without SUPABASE_URL, HS256 tokens with ``iss: integration-dispatch`` (older ``dev`` keys) pass too.

``aud``: Auth-issued tokens (``iss`` = ``$SUPABASE_URL/auth/v1``) must carry the audience
``authenticated`` (Supabase Auth's), or ``DISPATCH_JWT_AUDIENCE`` when set. The API keys carry
no ``aud`` and are accepted without one unless ``DISPATCH_JWT_AUDIENCE`` is set, which then
binds every token.

A ``SUPABASE_JWT_SECRET`` under 32 bytes is refused at start-up (one line naming it): a short
HMAC secret can be brute-forced offline from one token.

Nothing from the token (``alg``, ``kid``, ``role``) goes into ``WWW-Authenticate``: the header
carries a fixed ASCII description per error code (a non-Latin-1 value there once made an
unauthenticated request a 500). The JSON body names them, escaped and truncated.

JWKS keys are refreshed every ``ttl`` seconds; while refreshing fails, the cached keys keep
verifying for at most ``DISPATCH_JWKS_MAX_STALE`` seconds past their ttl, then requests get 503
until a fetch succeeds. The document is read with a size cap.

With neither a secret nor a URL configured, protected routes answer 503 and say what to
set: the API is never open by default.

PyJWT (and through it ``cryptography``) and httpx are imported on first use, not at daemon
start, to keep cold start short.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.core import logs
from app.core.errors import ConfigError

if TYPE_CHECKING:
    from jwt import PyJWK

    from app.core.settings import Settings

REALM = "integration-dispatch"
LEEWAY_SECONDS = 10.0
# The only algorithms accepted, each bound to the key type that may verify it.
HMAC_ALGORITHM = "HS256"
ASYMMETRIC_ALGORITHMS = {"RSA": "RS256", "EC": "ES256"}  # JWK kty -> the one alg it verifies
JWKS_PATH = "/auth/v1/.well-known/jwks.json"
AUTH_PATH = "/auth/v1"
API_KEY_ISSUER = "supabase"  # the legacy anon/service_role keys' iss
PUBLIC_ROLES = frozenset({"anon", "authenticated"})  # what Supabase gives every client: never a scrape credential
AUTH_AUDIENCE = "authenticated"  # Supabase Auth's aud
MIN_SECRET_BYTES = 32
MAX_JWKS_BYTES = 256 * 1024
# RFC 6750 error_description per code: fixed ASCII, never a value taken from the token.
_DESCRIPTIONS = {
    "malformed_token": "the token is malformed", "unsupported_algorithm": "the token's algorithm is not accepted",
    "unknown_key": "the token's signing key is unknown", "invalid_token": "the token is not valid",
    "expired_token": "the token has expired", "invalid_audience": "the token's audience is not accepted",
    "invalid_issuer": "the token's issuer is not accepted", "invalid_signature": "the signature does not verify",
    "wrong_role": "the token's role is not allowed",
}


class AuthFailure(Exception):
    """A request was refused: ``status`` 401 (who are you?), 403 (not allowed) or 503 (cannot tell)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def headers(self) -> dict[str, str]:
        """RFC 6750 §3: a bare challenge when no token came, the error code otherwise."""
        if self.status == 503:
            return {}
        if self.code == "missing_token":
            return {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
        error = "insufficient_scope" if self.status == 403 else "invalid_token"
        description = _DESCRIPTIONS.get(self.code, "the token is not accepted")
        return {"WWW-Authenticate": f'Bearer realm="{REALM}", error="{error}", error_description="{description}"'}


def _unauthorized(code: str, message: str) -> AuthFailure:
    return AuthFailure(401, code, message)


@dataclass(frozen=True)
class AuthConfig:
    jwt_secret: str | None = None
    supabase_url: str | None = None
    required_role: str = "service_role"
    metrics_role: str | None = "metrics"  # None: no scrape credential, /metrics needs the required role
    audience: str | None = None
    leeway: float = LEEWAY_SECONDS
    issuers: tuple[str, ...] | None = None  # None: the defaults (see the module docstring)
    jwks_max_stale: float = 3600.0
    max_response_bytes: int = MAX_JWKS_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthConfig:
        secret = settings.supabase_jwt_secret.get_secret_value() if settings.supabase_jwt_secret else None
        issuers = tuple(i.strip() for i in (settings.dispatch_jwt_issuer or "").split(",") if i.strip())
        return cls(jwt_secret=secret or None, supabase_url=(settings.supabase_url or "").rstrip("/") or None,
                   required_role=settings.dispatch_required_role,
                   metrics_role=settings.dispatch_metrics_role.strip() or None,
                   audience=settings.dispatch_jwt_audience or None,
                   issuers=issuers or None, jwks_max_stale=settings.dispatch_jwks_max_stale,
                   max_response_bytes=min(settings.dispatch_max_response_bytes, 4 * MAX_JWKS_BYTES))

    @property
    def jwks_url(self) -> str | None:
        return self.supabase_url + JWKS_PATH if self.supabase_url else None

    @property
    def auth_issuer(self) -> str | None:
        return self.supabase_url + AUTH_PATH if self.supabase_url else None

    def accepted_issuers(self, alg: str) -> set[str]:
        if self.issuers is not None:
            return set(self.issuers)
        accepted = {self.auth_issuer} if self.auth_issuer else set()
        if alg == HMAC_ALGORITHM:
            accepted.add(API_KEY_ISSUER)
            if not self.supabase_url:
                accepted.add(REALM)
        return accepted

    def audiences_for(self, issuer: str) -> set[str] | None:
        """The audiences a token from ``issuer`` must name one of (None: no aud needed)."""
        if self.audience:
            return {self.audience}
        return {AUTH_AUDIENCE} if issuer == self.auth_issuer else None

    def check_metrics_role(self) -> None:
        if self.metrics_role in PUBLIC_ROLES:
            raise ConfigError(f"DISPATCH_METRICS_ROLE is '{self.metrics_role}', a role Supabase gives every client: "
                              "anyone could scrape /metrics; pick a dedicated role such as 'metrics' (or empty: none)")

    def roles_for(self, scrape: bool) -> tuple[str, ...]:
        """The role claims a route accepts: the required role, and the metrics role where it scrapes."""
        if scrape and self.metrics_role and self.metrics_role != self.required_role:
            return (self.required_role, self.metrics_role)
        return (self.required_role,)

    def check_secret(self) -> None:
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"SUPABASE_JWT_SECRET is {len(self.jwt_secret.encode())} bytes; at least "
                              f"{MIN_SECRET_BYTES} are needed (a short HMAC secret is brute-forced from one token): "
                              "set the project's JWT secret, or unset it and use SUPABASE_URL's signing keys")

    @property
    def configured(self) -> bool:
        return bool(self.jwt_secret or self.supabase_url)


NOT_CONFIGURED = ("JWT verification is not configured: set SUPABASE_JWT_SECRET (the project's HS256 JWT secret) "
                  "or SUPABASE_URL (its asymmetric keys are read from $SUPABASE_URL" + JWKS_PATH + "); "
                  "the API is never open without one, only /health answers")


class JwksCache:
    """The project's public signing keys, cached for ``ttl`` seconds.

    A token with an unknown ``kid`` (keys were rotated) triggers a refetch, but at most one
    per ``min_interval`` seconds: a stream of tokens with made-up kids must not turn us into
    a load generator against the auth server.
    """

    def __init__(self, url: str, ttl: float = 600.0, min_interval: float = 30.0, timeout: float = 5.0,
                 max_stale: float = 3600.0, max_bytes: int = MAX_JWKS_BYTES) -> None:
        self.url, self.ttl, self.min_interval, self.timeout = url, ttl, min_interval, timeout
        self.max_stale, self.max_bytes = max_stale, max_bytes
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -float("inf")
        self._attempted_at = -float("inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def get(self, kid: str) -> PyJWK:
        if time.monotonic() - self._fetched_at > self.ttl:
            await self._refresh()
        if kid not in self._keys:
            await self._refresh()
        self._expire_stale()
        key = self._keys.get(kid)
        if key is None:
            raise _unauthorized("unknown_key", f"no signing key with kid '{_shown(kid)}' is published at {self.url}")
        return key

    def _expire_stale(self) -> None:
        """Keys last confirmed more than ttl + max_stale ago stop verifying: a revoked key must
        not stay trusted for ever because the auth server cannot be reached."""
        if self._keys and time.monotonic() - self._fetched_at > self.ttl + self.max_stale:
            self._keys = {}
            logs.event("auth.jwks_expired", logging.ERROR, url=self.url, max_stale_s=self.max_stale)
            raise AuthFailure(503, "jwks_unavailable", f"cannot verify the token: the signing keys at {self.url} "
                              "could not be refreshed and the cached ones are too old (DISPATCH_JWKS_MAX_STALE)")

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._attempted_at < self.min_interval:
                return  # fetched (or failed) moments ago, perhaps by the request we waited for
            self._attempted_at = time.monotonic()
            try:
                self._keys = parse_jwks(await self._fetch())
                self._fetched_at = time.monotonic()
            except (OSError, ValueError) as exc:
                self._refresh_failed(exc)

    async def _fetch(self) -> Any:
        import httpx

        self.fetches += 1
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client, client.stream(
                    "GET", self.url, headers={"Accept-Encoding": "identity"}) as response:
                response.raise_for_status()
                body = await read_capped(response, self.max_bytes)
        except httpx.HTTPError as exc:
            raise OSError(f"{type(exc).__name__}: {exc}") from None
        if body is None:
            raise ValueError(f"the JWKS document is larger than {self.max_bytes} bytes")
        return json.loads(body)

    def _refresh_failed(self, exc: Exception) -> None:
        logs.event("auth.jwks_fetch_failed", logging.WARNING, url=self.url, error=str(exc)[:300],
                   cached_keys=len(self._keys))
        if not self._keys:  # stale keys still verify (up to max_stale); no keys at all means we cannot tell
            raise AuthFailure(503, "jwks_unavailable",
                              f"cannot verify the token: the signing keys at {self.url} could not be read ({exc})")


async def read_capped(response: Any, limit: int) -> bytes | None:
    """A streamed httpx response's body, or None once it passes ``limit`` bytes (reading stops
    there). Raw bytes: the request asks for no compression, and a compressed answer is never
    inflated (a small gzip bomb would pass the cap as one chunk)."""
    chunks, size = [], 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _shown(value: Any, limit: int = 40) -> str:
    """A token-supplied value as it may appear in a message: ASCII, escaped, truncated."""
    return str(value)[:limit].encode("ascii", "backslashreplace").decode("ascii").replace("'", "\\'")


def parse_jwks(document: Any) -> dict[str, PyJWK]:
    """Usable keys by kid. Symmetric (``oct``) keys are never taken from a JWKS: a shared
    secret in a public document would let anyone sign tokens."""
    from jwt import PyJWK
    from jwt.exceptions import InvalidKeyError, PyJWKError

    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document (expected {\"keys\": [...]})")
    keys: dict[str, PyJWK] = {}
    for jwk in document["keys"]:
        alg = ASYMMETRIC_ALGORITHMS.get(str(jwk.get("kty"))) if isinstance(jwk, dict) else None
        if alg is None or not isinstance(jwk.get("kid"), str) or jwk.get("alg", alg) != alg:
            continue
        if alg == "ES256" and jwk.get("crv") != "P-256":
            continue  # ES256 is defined on P-256 only
        try:
            keys[jwk["kid"]] = PyJWK(jwk, algorithm=alg)
        except (PyJWKError, InvalidKeyError):
            continue  # a key we cannot load must not hide the usable ones
    return keys


class Verifier:
    """Turns an ``Authorization`` header into verified claims, or raises :class:`AuthFailure`."""

    def __init__(self, config: AuthConfig, jwks: JwksCache | None = None) -> None:
        config.check_secret()
        config.check_metrics_role()
        self.config = config
        self.jwks = jwks or (JwksCache(config.jwks_url, max_stale=config.jwks_max_stale,
                                       max_bytes=config.max_response_bytes) if config.jwks_url else None)

    async def verify(self, authorization: str | None, roles: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The verified claims; ``roles``: the role claims accepted (default: the required role)."""
        if not self.config.configured:
            raise AuthFailure(503, "auth_not_configured", NOT_CONFIGURED)
        token = bearer_token(authorization)
        alg, kid = _unverified_header(token)
        key = await self._key_for(alg, kid)
        claims = self._decode(token, key, alg)
        self._check_issuer_and_audience(claims, alg)
        self._check_role(claims, roles or (self.config.required_role,))
        return claims

    async def _key_for(self, alg: str, kid: str | None) -> Any:
        if alg == HMAC_ALGORITHM:
            if not self.config.jwt_secret:
                raise _unauthorized("unsupported_algorithm", "HS256 tokens are not accepted here: SUPABASE_JWT_SECRET "
                                    "is not set; send a token signed with the project's signing keys")
            return self.config.jwt_secret
        if alg not in ASYMMETRIC_ALGORITHMS.values():
            raise _unauthorized("unsupported_algorithm",
                                f"token algorithm '{_shown(alg)}' is not accepted (HS256, RS256, ES256)")
        if self.jwks is None:
            raise _unauthorized("unsupported_algorithm", f"{alg} tokens are not accepted here: SUPABASE_URL is not "
                                "set, so there are no public keys to verify them with")
        if kid is None:
            raise _unauthorized("malformed_token", f"the {alg} token has no 'kid' header naming its signing key")
        key = await self.jwks.get(kid)
        if key.algorithm_name != alg:
            raise _unauthorized("invalid_token",
                                f"key '{_shown(kid)}' verifies {key.algorithm_name}, but the token says {alg}")
        return key

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        import jwt

        try:
            # iss and aud are checked after the signature, by _check_issuer_and_audience.
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], leeway=self.config.leeway,
                options={"require": ["exp"], "verify_aud": False, "verify_iss": False})
        except jwt.PyJWTError as exc:
            raise _decode_failure(exc) from None
        return claims

    def _check_issuer_and_audience(self, claims: dict[str, Any], alg: str) -> None:
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer not in self.config.accepted_issuers(alg):
            shown = f"'{_shown(issuer)}'" if isinstance(issuer, str) else "no 'iss' claim"
            raise _unauthorized("invalid_issuer", f"the token's issuer ({shown}) is not accepted here "
                                "(DISPATCH_JWT_ISSUER, default $SUPABASE_URL/auth/v1)")
        wanted = self.config.audiences_for(issuer)
        if wanted is None:
            return
        aud = claims.get("aud")
        items = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        given = {a for a in items if isinstance(a, str)}
        if not given & wanted:
            raise _unauthorized("invalid_audience", f"the token's audience is not accepted here (needs one of "
                                f"{sorted(wanted)}; DISPATCH_JWT_AUDIENCE)")

    def _check_role(self, claims: dict[str, Any], roles: tuple[str, ...]) -> None:
        role = claims.get("role")
        if role not in roles:
            shown = f"'{_shown(role)}'" if isinstance(role, str) else "no role"
            wanted = " or ".join(f"'{r}'" for r in roles)
            raise AuthFailure(403, "wrong_role", f"this route needs a token with role {wanted}; the token has {shown}")


def bearer_token(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise _unauthorized("missing_token", "no Authorization header: send 'Authorization: Bearer <jwt>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("malformed_token", "the Authorization header must be 'Bearer <jwt>'")
    if token.count(".") != 2 or any(c.isspace() for c in token):
        raise _unauthorized("malformed_token", "the bearer token is not a JWT (three base64url parts joined by dots)")
    return token


def _unverified_header(token: str) -> tuple[str, str | None]:
    import jwt

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _unauthorized("malformed_token", f"the token's header cannot be read: {_shown(exc, 120)}") from None
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str):
        raise _unauthorized("malformed_token", "the token's header names no algorithm")
    return alg, kid if isinstance(kid, str) else None


def _decode_failure(exc: Exception) -> AuthFailure:
    import jwt

    table: list[tuple[type[Exception], str, str]] = [
        (jwt.ExpiredSignatureError, "expired_token", "the token has expired"),
        (jwt.MissingRequiredClaimError, "invalid_token", "the token has no 'exp' claim; tokens must expire"),
        (jwt.InvalidAudienceError, "invalid_audience", "the token's audience is not accepted here"),
        (jwt.InvalidSignatureError, "invalid_signature", "the token's signature does not verify"),
        (jwt.InvalidKeyError, "invalid_signature", "the token's signature does not verify"),
        (jwt.DecodeError, "malformed_token", f"the token cannot be decoded: {_shown(exc, 120)}"),
    ]
    for kind, code, message in table:
        if isinstance(exc, kind):
            return _unauthorized(code, message)
    return _unauthorized("invalid_token", f"the token is not valid: {_shown(exc, 120)}")


def mint_token(secret: str, role: str = "service_role", ttl: float = 3600.0, **claims: Any) -> str:
    """An HS256 token for local development and tests (``dev`` mints SUPABASE_SERVICE_ROLE_KEY
    with it). It carries ``iss: supabase`` like the project's own keys. On a Supabase project,
    use the project's own service_role key instead."""
    import jwt

    now = int(time.time())
    body = {"iss": API_KEY_ISSUER, "role": role, "iat": now, "exp": now + int(ttl), **claims}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(body, secret, algorithm=HMAC_ALGORITHM)
