"""Settings from the environment, and from an env file only when one is named.

The env file is read from an explicit place — ``--env-file PATH`` or ``DISPATCH_ENV_FILE`` —
never from whatever directory a command happens to run in. Documented in ``.env.example``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

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
    dispatch_http_port: int = Field(8787, ge=0, le=65535)
    dispatch_concurrency: int = Field(10, ge=1, le=1000)
    dispatch_listen: bool = True
    # synchronous_commit for the daemon's own transitions (claims, completions, leases), set per
    # session (see app/db/pool.py); "off" is faster, and a crash is recovered by leases and the ledger.
    dispatch_worker_synchronous_commit: Literal["on", "off", "local", "remote_write", "remote_apply"] = "on"
    dispatch_poll_interval: float = Field(5.0, gt=0)
    dispatch_lease_seconds: float = Field(30.0, gt=0)
    dispatch_shutdown_grace: float = Field(20.0, ge=0)
    dispatch_rescue_interval: float = Field(10.0, gt=0)
    dispatch_retry_base: float = Field(2.0, gt=0)
    dispatch_retry_cap: float = Field(600.0, gt=0)
    dispatch_credential_ttl: float = Field(60.0, ge=0)
    # Seconds between active health probes of a healthy integration (doubling after failures, max 240 min).
    dispatch_probe_interval: float = Field(900.0, gt=0)
    # Seconds between the health duty's rounds (probes due, circuits to half-open).
    dispatch_health_interval: float = Field(30.0, gt=0)
    # The watchdog ticks in pg_cron's place when pg_cron has not ticked for this long.
    dispatch_stall_after: float = Field(120.0, gt=0)
    dispatch_watchdog_interval: float = Field(30.0, gt=0)
    dispatch_required_role: str = "service_role"
    # A scrape credential: GET /metrics (only) also accepts a token with this role claim; empty: none.
    dispatch_metrics_role: str = "metrics"
    # The audience Auth-issued tokens must carry (default "authenticated"); when set, required of every token.
    dispatch_jwt_audience: str | None = None
    # Accepted `iss` values, comma-separated; default: $SUPABASE_URL/auth/v1 and, for HS256, "supabase".
    dispatch_jwt_issuer: str | None = None
    # Seconds cached JWKS keys keep verifying while refreshing them fails; then 503 until a fetch works.
    dispatch_jwks_max_stale: float = Field(3600.0, ge=0)
    # The HTTP surface against slow and idle clients (uvicorn): connections and requests at once
    # (the oldest idle connection is closed for a new one), seconds a connection may sit idle
    # (before its first request too), and the listen backlog.
    dispatch_http_limit_concurrency: int = Field(128, ge=8, le=100_000)
    dispatch_http_keep_alive: float = Field(5.0, gt=0, le=120)
    dispatch_http_backlog: int = Field(128, ge=1, le=65535)
    # Outbound targets (webhook URLs): loopback is refused unless this is true (development,
    # emulators and local receivers only). Private, link-local and metadata addresses are always refused.
    dispatch_allow_loopback_targets: bool = False
    # Bytes read at most from an outbound response (webhook receivers, the JWKS document).
    dispatch_max_response_bytes: int = Field(1_048_576, ge=1024)
    dispatch_max_body_bytes: int = Field(1_048_576, ge=1024)
    dispatch_log_level: str = "INFO"
    alert_webhook_url: str | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    env_file = os.environ.get("DISPATCH_ENV_FILE") or None
    if env_file and not Path(env_file).is_file():
        raise ConfigError(f"DISPATCH_ENV_FILE names {env_file!r}, which is not a readable file: "
                          "fix the path or unset it")
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).upper() if err["loc"] else "?"
        raise ConfigError(f"setting {name} is invalid: {err['msg']} (check the environment and the env file)") from None
