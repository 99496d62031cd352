"""Settings from the environment, and from an env file only when one is named.

The env file is read from an explicit place — ``--env-file PATH`` or ``DISPATCH_ENV_FILE`` —
never from whatever directory a command happens to run in. Documented in ``.env.example``.

Read with the standard library, not pydantic-settings: this runs before the daemon's first
claim, and pydantic's model machinery cost the cold start about 65 ms and 10 MB (measured with
``python -X importtime``; the daemon imports pydantic only for adapters and API bodies that use
it). The rules are pydantic's: names are the field names, any case; the environment wins over
the env file; booleans accept 1/0, true/false, yes/no, on/off, t/f, y/n; numbers have bounds;
keyword arguments (tests, tools) win over both. A bad value fails with one line naming the
variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from app.core.errors import ConfigError

_TRUE, _FALSE = {"1", "true", "yes", "on", "t", "y"}, {"0", "false", "no", "off", "f", "n"}


class SecretStr:
    """A value that never shows in a repr, a log line or an exception."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "SecretStr('**********')" if self._value else "SecretStr('')"

    __str__ = __repr__


def _bounded(default: float, **bounds: float) -> Any:
    """A numeric field with pydantic-style bounds: ge, gt, le."""
    return field(default=default, metadata=bounds)


@dataclass(init=False)
class Settings:
    database_url: str | None = None
    # A direct or session-mode URL for LISTEN; defaults to DATABASE_URL. Leave it unset
    # and set DISPATCH_LISTEN=false when DATABASE_URL is a transaction pooler.
    listen_database_url: str | None = None
    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    supabase_jwt_secret: SecretStr | None = None
    vault_secret_name: str | None = None

    # The daemon's own HTTP port (health probes, /dispatch, /metrics). Optional: where callers
    # enqueue through SQL or the Edge Function and nothing probes it, turn it off.
    dispatch_http_enabled: bool = True
    dispatch_http_host: str = "127.0.0.1"
    dispatch_http_port: int = _bounded(8787, ge=0, le=65535)
    dispatch_concurrency: int = _bounded(10, ge=1, le=1000)
    dispatch_listen: bool = True
    # synchronous_commit for the daemon's own transitions (claims, completions, leases), set per
    # session (see app/db/pool.py); "off" is faster, and a crash is recovered by leases and the ledger.
    dispatch_worker_synchronous_commit: Literal["on", "off", "local", "remote_write", "remote_apply"] = "on"
    dispatch_poll_interval: float = _bounded(5.0, gt=0)
    dispatch_lease_seconds: float = _bounded(30.0, gt=0)
    dispatch_shutdown_grace: float = _bounded(20.0, ge=0)
    dispatch_rescue_interval: float = _bounded(10.0, gt=0)
    dispatch_retry_base: float = _bounded(2.0, gt=0)
    dispatch_retry_cap: float = _bounded(600.0, gt=0)
    dispatch_credential_ttl: float = _bounded(60.0, ge=0)
    # Seconds between active health probes of a healthy integration (doubling after failures, max 240 min).
    dispatch_probe_interval: float = _bounded(900.0, gt=0)
    # Seconds between the health duty's rounds (probes due, circuits to half-open).
    dispatch_health_interval: float = _bounded(30.0, gt=0)
    # The watchdog ticks in pg_cron's place when pg_cron has not ticked for this long.
    dispatch_stall_after: float = _bounded(120.0, gt=0)
    dispatch_watchdog_interval: float = _bounded(30.0, gt=0)
    dispatch_required_role: str = "service_role"
    # A scrape credential: GET /metrics (only) also accepts a token with this role claim; empty: none.
    dispatch_metrics_role: str = "metrics"
    # The audience Auth-issued tokens must carry (default "authenticated"); when set, required of every token.
    dispatch_jwt_audience: str | None = None
    # Accepted `iss` values, comma-separated; default: $SUPABASE_URL/auth/v1 and, for HS256, "supabase".
    dispatch_jwt_issuer: str | None = None
    # Seconds cached JWKS keys keep verifying while refreshing them fails; then 503 until a fetch works.
    dispatch_jwks_max_stale: float = _bounded(3600.0, ge=0)
    # The HTTP surface against slow and idle clients (uvicorn): connections and requests at once
    # (the oldest idle connection is closed for a new one), seconds a connection may sit idle
    # (before its first request too), and the listen backlog.
    dispatch_http_limit_concurrency: int = _bounded(128, ge=8, le=100_000)
    dispatch_http_keep_alive: float = _bounded(5.0, gt=0, le=120)
    dispatch_http_backlog: int = _bounded(128, ge=1, le=65535)
    # Outbound targets (webhook URLs): loopback is refused unless this is true (development,
    # emulators and local receivers only). Private, link-local and metadata addresses are always refused.
    dispatch_allow_loopback_targets: bool = False
    # Bytes read at most from an outbound response (webhook receivers, the JWKS document).
    dispatch_max_response_bytes: int = _bounded(1_048_576, ge=1024)
    dispatch_max_body_bytes: int = _bounded(1_048_576, ge=1024)
    dispatch_log_level: str = "INFO"
    alert_webhook_url: str | None = None

    def __init__(self, _env_file: str | None = None, _environ: dict[str, str] | None = None,
                 **overrides: Any) -> None:
        """The environment (then ``_env_file``), with ``overrides`` on top; extra names are ignored."""
        known = {f.name: f for f in fields(self)}
        unknown = set(overrides) - set(known)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        source: dict[str, str] = {}
        if _env_file:
            from dotenv import dotenv_values  # only when a file is named

            source.update({k.lower(): v for k, v in dotenv_values(_env_file).items() if v is not None})
        source.update({k.lower(): v for k, v in (os.environ if _environ is None else _environ).items()})
        for name, f in known.items():
            if name in overrides:
                value = overrides[name]
            elif name in source:
                value = source[name]
            else:
                value = f.default
            setattr(self, name, _coerce(name, f.type, value, f.metadata))


def _coerce(name: str, kind: Any, value: Any, bounds: Any) -> Any:
    """One value as its field's type, or a ConfigError naming the variable and what is wrong."""
    optional = "None" in str(kind)
    if value is None:
        if optional:
            return None
        _invalid(name, "Input should not be empty")
    base = str(kind).replace(" | None", "")
    if base == "SecretStr":
        return value if isinstance(value, SecretStr) else SecretStr(str(value))
    if base == "str":
        return str(value)
    if base == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        _invalid(name, f"Input should be a valid boolean (true/false, 1/0, yes/no, on/off), got {value!r}")
    if base.startswith("Literal"):
        choices = _literal_choices(base)
        if value in choices:
            return value
        _invalid(name, f"Input should be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    number: float
    try:
        number = int(str(value).strip()) if base == "int" else float(str(value).strip())
    except ValueError:
        article = "an integer" if base == "int" else "a number"
        _invalid(name, f"Input should be {article}, got {value!r}")
    for op, limit in dict(bounds).items():
        ok = {"ge": number >= limit, "gt": number > limit, "le": number <= limit}[op]
        if not ok:
            words = {"ge": "greater than or equal to", "gt": "greater than", "le": "less than or equal to"}[op]
            _invalid(name, f"Input should be {words} {limit:g}, got {value!r}")
    return number


def _literal_choices(annotation: str) -> tuple[str, ...]:
    # 'Literal["on", "off", ...]': annotations are strings here (postponed evaluation)
    return tuple(part.strip().strip("'\"") for part in annotation[len("Literal["):-1].split(","))


def _invalid(name: str, message: str) -> Any:
    raise ConfigError(f"setting {name.upper()} is invalid: {message} (check the environment and the env file)")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    env_file = os.environ.get("DISPATCH_ENV_FILE") or None
    if env_file and not Path(env_file).is_file():
        raise ConfigError(f"DISPATCH_ENV_FILE names {env_file!r}, which is not a readable file: "
                          "fix the path or unset it")
    return Settings(_env_file=env_file)
