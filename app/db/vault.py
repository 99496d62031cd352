"""Credentials from Supabase Vault (or its local stand-in), through ``dispatch.integration_secret``.

The daemon's role may execute that one SECURITY DEFINER function and nothing in ``vault``; the
function decides which secret an integration may have. Until the accessor enforces it in SQL
(see docs/security.md), :func:`check_secret_name` applies the ownership rule here first:

- an integration's own ``secret_name`` must be its id, or its id followed by one of ``- _ . / :``
  and more (``acme`` may use ``acme``, ``acme-creds``, ``acme/xledger``), where no longer
  integration id claims the name first (``acme-prod-key`` belongs to ``acme-prod``), and no other
  integration's ``secret_name`` is the same; or be listed in the ``shared_secret_names`` setting
  (comma-separated, in ``dispatch.settings``);
- the default name (``VAULT_SECRET_NAME``, for integrations without a ``secret_name``) is used
  only when it equals the ``default_secret_name`` setting, and not when it is another
  integration's (by the rule above) unless listed as shared. Values are cached per integration for a
short TTL and wrapped in :class:`~app.core.secret.Secret` at once, so they never reach a repr, a log
line or an exception message. The secret travels only as a result value; the integration id and
default name are bound parameters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import psycopg
from psycopg import errors as pgerrors

from app.core.errors import MissingSecret, PermanentError
from app.core.secret import Secret
from app.db.errors import translate
from app.db.queries import query

ConnectionFactory = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


class CredentialProvider(Protocol):
    """Where adapters' credentials come from. The daemon calls :meth:`invalidate` after a 401."""

    async def get(self, integration_id: str, secret_name_default: str | None = None) -> Secret: ...

    def invalidate(self, integration_id: str) -> None: ...


class VaultCredentials:
    """Reads ``dispatch.integration_secret(id, default)``; caches each answer for ``ttl`` seconds.

    ``source`` is a ``psycopg_pool.AsyncConnectionPool`` (anything with ``.connection()``) or an
    async factory returning a new connection, which is closed after use.
    """

    def __init__(self, source: Any, ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl < 0:
            raise ValueError("ttl must be >= 0")
        self._source = source
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, str | None], tuple[float, Secret]] = {}
        self._locks: dict[tuple[str, str | None], asyncio.Lock] = {}

    async def get(self, integration_id: str, secret_name_default: str | None = None) -> Secret:
        key = (integration_id, secret_name_default)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one read per integration, however many jobs start at once
            cached = self._cache.get(key)
            if cached is not None and cached[0] > self._clock():
                return cached[1]
            secret = await self._read(integration_id, secret_name_default)
            self._cache[key] = (self._clock() + self._ttl, secret)
            return secret

    def invalidate(self, integration_id: str) -> None:
        """Forget the integration's cached secret: the next :meth:`get` reads the vault again."""
        for key in [k for k in self._cache if k[0] == integration_id]:
            del self._cache[key]

    async def _read(self, integration_id: str, default_name: str | None) -> Secret:
        params = {"integration_id": integration_id, "default_name": default_name}
        try:
            value = await self._fetch(params)
        except SecretRefused:
            raise
        except pgerrors.NoDataFound as exc:
            raise MissingSecret(_explain(exc)) from None
        except (pgerrors.InvalidParameterValue, pgerrors.InsufficientPrivilege,
                pgerrors.UndefinedFunction, pgerrors.DataException) as exc:
            raise PermanentError(_explain(exc, integration_id)) from None
        if value is None:
            raise MissingSecret(f'the vault returned no secret for integration "{integration_id}"')
        return Secret(value)

    async def _fetch(self, params: dict[str, str | None]) -> str | None:
        if hasattr(self._source, "connection"):  # a pool: borrow, and give back
            async with self._source.connection() as conn:
                return await _query(conn, params)
        conn = await self._source()  # a factory: ours to close
        async with conn:
            return await _query(conn, params)


class SecretRefused(PermanentError):
    """The integration may not have the secret its configuration names (another's, or not its own)."""


SEPARATORS = "-_./:"


def _claims(integration_id: str, name: str) -> int:
    """How strongly an integration id claims a vault name: the id's length when the name is the
    id or starts with it and a separator, else 0."""
    if name == integration_id or (name.startswith(integration_id) and name[len(integration_id):][:1] in SEPARATORS
                                  and len(name) > len(integration_id) + 1):
        return len(integration_id)
    return 0


def check_secret_name(integration_id: str, own_name: str | None, default_name: str | None,
                      setting_default: str | None, shared: set[str], others: list[str]) -> None:
    """Raise :class:`SecretRefused` unless the integration may read the name it would get.
    ``others``: the other integrations that reference or claim that name (the guard query)."""
    own = own_name or None
    name = own or default_name or None
    if name is None:
        return  # the accessor says "no secret name"
    if own is None and name != setting_default:
        raise SecretRefused(f'integration "{integration_id}" has no secret_name, and the default name is not the '
                            "default_secret_name setting: set the integration's secret_name, or INSERT INTO "
                            "dispatch.settings (key, value) VALUES ('default_secret_name', <name>)")
    if name in shared:
        return
    contenders = [other for other in others if _claims(other, name) > _claims(integration_id, name)]
    # Without a claim by name (the default, or a name owned by nobody), anyone else naming it wins.
    referencing = [other for other in others if _claims(other, name) == 0] if _claims(integration_id, name) == 0 else []
    if own is not None and _claims(integration_id, name) == 0:
        raise SecretRefused(f'integration "{integration_id}" names the vault secret "{name}", which is not its own: '
                            f"secret names must be the integration id or start with it and one of '{SEPARATORS}' "
                            "(or be listed in the shared_secret_names setting)")
    if contenders or referencing:
        owner = (contenders or referencing)[0]
        raise SecretRefused(f'the vault secret "{name}" belongs to or is used by integration "{owner}": '
                            f'integration "{integration_id}" may not have it (list it in the shared_secret_names '
                            "setting to share it)")


async def _guard(conn: psycopg.AsyncConnection[Any], params: dict[str, str | None]) -> None:
    row = await (await conn.execute(query("integration_secret_guard"), params)).fetchone()
    if row is None:
        return  # unknown integration: the accessor says so
    own, setting_default, shared_text, others = row
    shared = {n.strip() for n in (shared_text or "").replace("\n", ",").split(",") if n.strip()}
    check_secret_name(str(params["integration_id"]), own, params["default_name"], setting_default, shared,
                      list(others or []))


async def _query(conn: psycopg.AsyncConnection[Any], params: dict[str, str | None]) -> str | None:
    await _guard(conn, params)
    row = await (await conn.execute(query("integration_secret"), params)).fetchone()
    if row is None or row[0] is None:
        return None
    return str(row[0])


def _explain(exc: psycopg.Error, integration_id: str | None = None) -> str:
    """The server's message and hint (the accessor never puts a value in them), nothing else."""
    refusal = translate(exc)
    message = refusal.message
    if isinstance(exc, pgerrors.UndefinedFunction):
        message = "dispatch.integration_secret() is missing: run the migrations"
    elif isinstance(exc, pgerrors.DataException):
        message = (f'the vault secret of integration "{integration_id}" cannot be decrypted '
                   "(wrong root key, or the row was altered): store it again")
    elif refusal.kind == "forbidden" and "permission denied" in message:
        message += (": the database role needs EXECUTE on dispatch.integration_secret "
                    "(grant it dispatch_worker)")
    return f"{message} ({refusal.hint})" if refusal.hint else message
