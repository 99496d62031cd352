"""Microsoft Dynamics 365 Business Central, API v2.0 (reference/vendor-apis.md §2).

Exports write one balanced voucher as journal lines of the integration's own journal batch,
all in one ``$batch`` with ``Isolation: snapshot`` (all or nothing), then post the batch.
Every line carries ``documentNumber`` = the job's external reference; posted G/L entries keep
it, so the lookup-before-write finds earlier attempts whether they were posted or not.
Syncs page ``generalLedgerEntries`` changed since a cursor. The Entra ID token is cached in
``ctx.state`` (shared per integration) and refreshed shortly before expiry or once on a 401.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from app.adapters._vendor_http import (
    ExportPayload,
    LedgerLine,
    SyncPayload,
    credentials_json,
    external_reference,
    json_body,
    send,
    status_error,
    timeout,
    validate,
)
from app.adapters.base import JobContext, ProbeContext
from app.core.errors import AuthError, DispatchError, PermanentError, RetryableError
from app.core.secret import Secret

VENDOR = "Business Central"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
CREDENTIAL_FIELDS = ("tenant_id", "client_id", "client_secret")
MAX_BATCH = 100  # operations per $batch (§2.5): the most lines one atomic export can hold
TOKEN_KEY, LOCK_KEY = "dynamics_bc.token", "dynamics_bc.token_lock"


class DynamicsBCConfig(BaseModel):
    """``integrations.config`` for BC. The vault holds {"tenant_id","client_id","client_secret"}."""

    model_config = ConfigDict(extra="forbid")

    company_id: Annotated[str, Field(min_length=1)]
    environment: Annotated[str, Field(min_length=1)] = "production"
    base_url: str = "https://api.businesscentral.dynamics.com"
    login_url: str = "https://login.microsoftonline.com"
    #: A journal batch used only by this integration, without a No. Series (§2.8).
    journal_code: Annotated[str, Field(min_length=1, max_length=10)] = "DISPATCH"
    post_journal: bool = True
    page_size: Annotated[int, Field(ge=1, le=20_000)] = 1000
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    #: Posting can take minutes; BC itself gives up after 8-10 (§4.2).
    post_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 540.0

    def api_root(self, tenant_id: str) -> str:
        base = self.base_url.rstrip("/")
        return f"{base}/v2.0/{tenant_id}/{self.environment}/api/v2.0"


@dataclass(frozen=True)
class _Token:
    value: Secret
    expires_at: float  # time.monotonic()
    owner: str  # tenant/client it was issued to: a rotated credential gets its own


Context = JobContext | ProbeContext


class DynamicsBCAdapter:
    name: ClassVar[str] = "dynamics_bc"
    config_model: ClassVar[type[BaseModel] | None] = DynamicsBCConfig
    default_health_mode: ClassVar[str] = "active"
    #: a sync without `since` gets the cursor the last successful sync returned
    resumes_sync: ClassVar[bool] = True

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        if ctx.kind == "export":
            return await self._export(ctx, validate(ExportPayload, ctx.payload, "export payload"))
        if ctx.kind == "sync":
            return await self._sync(ctx, validate(SyncPayload, ctx.payload, "sync payload"))
        raise PermanentError(f"Business Central has no job kind {ctx.kind!r} (export, sync)")

    async def probe(self, ctx: ProbeContext) -> None:
        await self._get(ctx, "/companies", {"$top": "1", "$select": "id"}, what="the probe")

    async def warm_up(self, ctx: ProbeContext) -> None:
        await self._token(ctx)

    # -- export --------------------------------------------------------------------------
    async def _export(self, ctx: JobContext, payload: ExportPayload) -> dict[str, Any]:
        if len(payload.lines) > MAX_BATCH:
            raise PermanentError(f"invalid export payload: lines: at most {MAX_BATCH} lines "
                                 "fit one Business Central export")
        config, ref = _config(ctx), external_reference(ctx.idempotency_key)
        result = {"document_number": ref, "lines": len(payload.lines),
                  "journal": config.journal_code}
        if await self._posted(ctx, ref):
            return {**result, "already_exported": True, "posted": True}
        journal_id = await self._journal_id(ctx, config)
        already = await self._has_lines(ctx, journal_id, ref)
        if not already:
            await self._write_lines(ctx, journal_id, ref, payload)
        if config.post_journal:
            await self._post(ctx, journal_id)
        return {**result, "already_exported": already, "posted": config.post_journal}

    async def _posted(self, ctx: JobContext, ref: str) -> bool:
        params = {"$filter": f"documentNumber eq '{ref}'", "$top": "1", "$select": "id"}
        body = await self._get(ctx, _company(ctx) + "/generalLedgerEntries", params,
                               what="the posted-entries lookup")
        return bool(body.get("value"))

    async def _has_lines(self, ctx: JobContext, journal_id: str, ref: str) -> bool:
        params = {"$filter": f"documentNumber eq '{ref}'", "$top": "1", "$select": "id"}
        path = f"{_company(ctx)}/journals({journal_id})/journalLines"
        body = await self._get(ctx, path, params, what="the journal-line lookup")
        return bool(body.get("value"))

    async def _journal_id(self, ctx: JobContext, config: DynamicsBCConfig) -> str:
        """The integration's journal batch, created on first use; its id is cached."""
        key = f"dynamics_bc.journal:{config.company_id}:{config.journal_code}"
        if key not in ctx.state:
            ctx.state[key] = await self._find_or_create_journal(ctx, config.journal_code)
        return str(ctx.state[key])

    async def _find_or_create_journal(self, ctx: JobContext, code: str) -> str:
        params = {"$filter": f"code eq '{code}'", "$select": "id,code"}
        found = (await self._get(ctx, _company(ctx) + "/journals", params,
                                 what="the journal lookup")).get("value") or []
        if found:
            return str(found[0]["id"])
        body = {"code": code, "displayName": "integration-dispatch exports"}
        response = await self._call(ctx, "POST", _company(ctx) + "/journals", write=True,
                                    what=f"creating journal {code}", json=body)
        return str(response.json()["id"])

    async def _write_lines(self, ctx: JobContext, journal_id: str, ref: str,
                           payload: ExportPayload) -> None:
        url = f"{_company(ctx)}/journals({journal_id})/journalLines".lstrip("/")
        requests = [
            {"id": str(i + 1), "method": "POST", "url": url,
             "headers": {"Content-Type": "application/json"},
             "body": _line_body(line, payload, ref)}
            for i, line in enumerate(payload.lines)
        ]
        response = await self._call(
            ctx, "POST", "/$batch", write=True, what="the journal lines",
            json={"requests": requests}, headers={"Isolation": "snapshot"},
        )
        for number, inner in enumerate(response.json().get("responses", []), start=1):
            if int(inner.get("status", 500)) >= 400:
                raise batch_error(inner, number)

    async def _post(self, ctx: JobContext, journal_id: str) -> None:
        config = _config(ctx)
        await self._call(ctx, "POST", f"{_company(ctx)}/journals({journal_id})/Microsoft.NAV.post",
                         write=True, what="posting the journal",
                         timeout=timeout(config.post_timeout_seconds))

    # -- sync ----------------------------------------------------------------------------
    async def _sync(self, ctx: JobContext, payload: SyncPayload) -> dict[str, Any]:
        since = payload.since_utc()
        params = {"$select": "id,entryNumber,documentNumber,lastModifiedDateTime"}
        if since is not None:
            params["$filter"] = f"lastModifiedDateTime gt {_odata_datetime(since)}"
        size = payload.page_size or _config(ctx).page_size
        headers = {"Prefer": f"odata.maxpagesize={size}", "Data-Access-Intent": "ReadOnly"}
        url: str | None = _company(ctx) + "/generalLedgerEntries"
        query: dict[str, str] | None = params
        records, pages, newest = 0, 0, ""
        while url is not None:
            body = await self._get(ctx, url, query, what="the sync", headers=headers)
            rows = body.get("value") or []
            records, pages = records + len(rows), pages + 1
            newest = max([newest, *(str(r.get("lastModifiedDateTime", "")) for r in rows)])
            next_link = body.get("@odata.nextLink")
            if next_link is not None and next_link == url:
                raise RetryableError("Business Central repeated the same page link during the sync")
            # Follow the link verbatim: it carries every option (params=None, because httpx
            # would replace the link's query string with an empty params dict).
            url, query = next_link, None
        cursor = newest or (_odata_datetime(since) if since else None)
        return {"entity": "generalLedgerEntries", "records": records, "pages": pages,
                "cursor": cursor}

    # -- HTTP with the bearer token ---------------------------------------------------------
    async def _get(self, ctx: Context, path: str, params: dict[str, str] | None, *, what: str,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = await self._call(ctx, "GET", path, write=False, what=what, params=params,
                                    headers=headers or {})
        body = json_body(response)
        if not isinstance(body, dict):
            raise RetryableError(f"Business Central answered {what} without JSON")
        return body

    async def _call(self, ctx: Context, method: str, path: str, *, write: bool, what: str,
                    **kwargs: Any) -> httpx.Response:
        """One API call; on 401 the token is renewed and the call repeated once (a 401 means
        BC did not execute it, so repeating a write is safe)."""
        config = _config(ctx)
        url = path if path.startswith("http") else _root(ctx, config) + path
        kwargs.setdefault("timeout", timeout(config.timeout_seconds))
        extra = kwargs.pop("headers", {})
        for renewed in (False, True):
            token = await self._token(ctx, renew=renewed)
            headers = {**extra, "Authorization": f"Bearer {token.reveal()}",
                       "Accept": "application/json"}
            response = await send(ctx.http, method, url, vendor=VENDOR, write=write,
                                  headers=headers, **kwargs)
            if response.status_code != 401:
                break
        error = bc_error(response, what)
        if error is not None:
            raise error
        return response

    async def _token(self, ctx: Context, renew: bool = False) -> Secret:
        creds = credentials_json(ctx.credentials, VENDOR, CREDENTIAL_FIELDS)
        owner = f"{creds['tenant_id']}/{creds['client_id']}"
        lock = ctx.state.setdefault(LOCK_KEY, asyncio.Lock())
        async with lock:  # concurrent jobs of one integration fetch one token, not several
            cached = ctx.state.get(TOKEN_KEY)
            if (not renew and isinstance(cached, _Token) and cached.owner == owner
                    and cached.expires_at > time.monotonic()):
                return cached.value
            token = await self._fetch_token(ctx, creds, owner)
            ctx.state[TOKEN_KEY] = token
            return token.value

    async def _fetch_token(self, ctx: Context, creds: dict[str, str], owner: str) -> _Token:
        config = _config(ctx)
        url = f"{config.login_url.rstrip('/')}/{creds['tenant_id']}/oauth2/v2.0/token"
        form = {"grant_type": "client_credentials", "client_id": creds["client_id"],
                "client_secret": creds["client_secret"], "scope": SCOPE}
        started = time.monotonic()
        response = await send(ctx.http, "POST", url, vendor="Entra ID", write=False, data=form,
                              timeout=timeout(config.timeout_seconds))
        body = json_body(response)
        if response.status_code in (400, 401) and isinstance(body, dict):
            raise token_error(body)
        error = status_error("Entra ID", response, "the token request")
        if error is not None:
            raise error
        if not isinstance(body, dict) or "access_token" not in body:
            raise RetryableError("Entra ID answered the token request without a token")
        expires_in = float(body.get("expires_in", 3599))
        # Renew early (MSAL: 5 min); a short-lived token keeps most of its life.
        skew = min(300.0, expires_in / 10)
        return _Token(Secret(str(body["access_token"])), started + expires_in - skew, owner)


def bc_error(response: httpx.Response, what: str) -> DispatchError | None:
    """BC's status + OData error → what the daemon should do (§2.7)."""
    if response.status_code < 400:
        return None
    code, message = _odata_error(json_body(response))
    detail = f"{message} ({code})" if code else message or f"HTTP {response.status_code}"
    if response.status_code == 401:
        return AuthError(f"Business Central rejected the access token for {what}: {detail}")
    if response.status_code == 403 or code.startswith("Authorization_"):
        return PermanentError(f"Business Central denied {what}: {detail}. Check the app's "
                              "permission sets on the Microsoft Entra applications page")
    error = status_error(VENDOR, response, f"{what}: {detail}")
    if isinstance(error, RetryableError):  # throttled or unavailable, with its Retry-After
        return error
    if code == "Internal_TenantUnavailable":
        return RetryableError(f"Business Central is unavailable for {what}: {detail}")
    return PermanentError(f"Business Central rejected {what}: {detail}")


def batch_error(inner: dict[str, Any], number: int) -> DispatchError:
    """An inner $batch failure, naming the journal line (the batch was rolled back)."""
    status = int(inner.get("status", 500))
    code, message = _odata_error(inner.get("body"))
    detail = f"{message} ({code})" if code else message or f"HTTP {status}"
    if status in (408, 429) or status >= 500:
        return RetryableError(f"Business Central could not take journal line {number}: {detail}")
    return PermanentError(f"Business Central rejected journal line {number}: {detail}")


def token_error(body: dict[str, Any]) -> AuthError:
    """Entra refused the credentials; the AADSTS code says why, the description may be long."""
    codes = body.get("error_codes") or []
    aadsts = f" AADSTS{codes[0]}" if codes else ""
    return AuthError(f"Entra ID refused the Business Central credentials ({body.get('error')}"
                     f"{aadsts}): check tenant_id, client_id and client_secret")


def _odata_error(body: Any) -> tuple[str, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    message = str(error.get("message", "")).split("  CorrelationId:")[0].strip()
    return str(error.get("code", "")), message


def _line_body(line: LedgerLine, payload: ExportPayload, ref: str) -> dict[str, Any]:
    return {
        "accountType": "G/L Account", "accountNumber": line.account,
        "postingDate": payload.posting_date.isoformat(), "documentNumber": ref,
        "externalDocumentNumber": ref, "amount": float(line.amount),
        "description": line.description or payload.description,
    }


def _config(ctx: Context) -> DynamicsBCConfig:
    if isinstance(ctx.config, DynamicsBCConfig):  # validated once by the daemon
        return ctx.config
    return validate(DynamicsBCConfig, ctx.integration.config, "Business Central integration config")


def _root(ctx: Context, config: DynamicsBCConfig) -> str:
    tenant = credentials_json(ctx.credentials, VENDOR, CREDENTIAL_FIELDS)["tenant_id"]
    return config.api_root(tenant)


def _company(ctx: Context) -> str:
    return f"/companies({_config(ctx).company_id})"


def _odata_datetime(instant: datetime) -> str:
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")
