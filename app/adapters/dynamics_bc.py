"""Microsoft Dynamics 365 Business Central, API v2.0 (reference/vendor-apis.md §2).

Exports write one balanced voucher as journal lines into a journal batch of the job's own
(its name derived from the idempotency key), all in one ``$batch`` with ``Isolation:
snapshot`` (all or nothing), then post that batch and delete it. Posting a batch posts every
line in it, so a batch per job means a post never books another job's lines, and lines that
fail at post time (closed period, blocked account) block only their own job. Every line
carries ``documentNumber`` = the job's external reference; posted G/L entries keep it.

The write-ahead protocol (app.adapters.base.Writes) wraps the lines: look up (the job's
journal lines first, then posted entries: a post moves lines into entries, so this order
cannot miss a post that commits between the two reads); record the intent; send; confirm.
BC queues a request up to 8 minutes and runs it up to 10 (§2.6), so a send whose answer was
lost may land up to ``write_window`` (20 min) later: a retry that finds nothing waits that out
before it writes again. Creating the batch (its name is BC's key) and posting it (only the
job's own lines are in it) are idempotent by construction and need no intent.

Syncs page ``generalLedgerEntries`` changed since a cursor, re-reading an overlap behind it
(rows commit late, replicas lag) and counting each entry id once. The Entra ID token is
cached in ``ctx.state`` (shared per integration) and refreshed shortly before expiry or once
on a 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.adapters._vendor_http import (
    ExportPayload,
    LedgerLine,
    Refused,
    SyncPayload,
    credentials_json,
    external_reference,
    json_body,
    same_origin,
    send,
    status_error,
    timeout,
    validate,
    vendor_url,
)
from app.adapters.base import JobContext, ProbeContext
from app.core.errors import AuthError, DispatchError, PermanentError, RetryableError
from app.core.secret import Secret

VENDOR = "Business Central"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
CREDENTIAL_FIELDS = ("tenant_id", "client_id", "client_secret")
MAX_BATCH = 100  # operations per $batch (§2.5): the most lines one atomic export can hold
TOKEN_KEY, LOCK_KEY = "dynamics_bc.token", "dynamics_bc.token_lock"
#: Up to 8 min queued + 10 min executing (§2.6): how long BC may still apply a write whose
#: answer the client never got.
WRITE_WINDOW_S = 8 * 60 + 10 * 60.0
JOURNAL_CODE_LEN = 10  # Gen. Journal Batch Name is Code[10]
_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class DynamicsBCConfig(BaseModel):
    """``integrations.config`` for BC. The vault holds {"tenant_id","client_id","client_secret"}."""

    model_config = ConfigDict(extra="forbid")

    company_id: Annotated[str, Field(min_length=1)]
    environment: Annotated[str, Field(min_length=1)] = "production"
    base_url: str = "https://api.businesscentral.dynamics.com"
    login_url: str = "https://login.microsoftonline.com"
    #: Each export gets its own journal batch, ``<prefix><hash of its key>`` (Code[10]); the
    #: template's batches must not use a No. Series (§2.8).
    journal_prefix: Annotated[str, Field(min_length=1, max_length=4, pattern=r"^[A-Z0-9]+$")] = "DX"
    post_journal: bool = True
    #: Delete the job's batch once it is posted (BC keeps empty batches otherwise).
    delete_posted_journals: bool = True
    page_size: Annotated[int, Field(ge=1, le=20_000)] = 1000
    #: A sync re-reads this far behind its cursor: rows commit late with earlier timestamps,
    #: and reads go to a replica (Data-Access-Intent: ReadOnly). Ids are counted once.
    sync_overlap_seconds: Annotated[float, Field(ge=0, le=86_400)] = 900.0
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    #: Posting can take minutes; BC itself gives up after 8-10 (§4.2).
    post_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 540.0
    #: Overrides the adapter's ``write_window`` (1200 s: BC's 8 min queue + 10 min execution):
    #: how long a retry waits, since the last send, before it writes the lines again when
    #: the lookup finds nothing. Lower it only where BC's behaviour is known (on-premises
    #: without queueing, say); tests use a few seconds.
    write_window_seconds: float | None = Field(None, ge=0)

    @field_validator("base_url", "login_url")
    @classmethod
    def _https(cls, value: str, info: ValidationInfo) -> str:
        return vendor_url(value, str(info.field_name))

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
    write_window: ClassVar[float] = WRITE_WINDOW_S

    def job_timeout(self, config: DynamicsBCConfig) -> float:
        """The longest an export can take, so the post's own timeout can apply: the token,
        the lookups, the batch create, the lines and the delete at ``timeout_seconds`` each,
        the post and its re-check at ``post_timeout_seconds``, and margin."""
        return 7 * config.timeout_seconds + config.post_timeout_seconds + 30.0

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
        code = journal_code(config.journal_prefix, ctx.idempotency_key)
        result = {"document_number": ref, "lines": len(payload.lines), "journal": code}
        found = await self._find(ctx, code, ref)
        if found == "posted":  # an earlier attempt (perhaps applied late) got this far
            await ctx.writes.confirmed(ref, {"journal": code, "posted": True})
            await self._tidy(ctx, code, ctx.state.get(_journal_key(ctx, code)))  # its post's answer was lost
            return {**result, "already_exported": True, "posted": True}
        if found is None:
            journal_id = await self._journal_id(ctx, code, ref, create=True)
            assert journal_id is not None  # created, or found when the create lost a race
            await ctx.writes.before_write(ref)
            try:
                await self._write_lines(ctx, journal_id, ref, payload)
            except Refused:  # throttled or queue timeout: the batch never ran
                await ctx.writes.not_sent(ref)
                raise
        await ctx.writes.confirmed(ref, {"journal": code, "posted": False})
        if config.post_journal:
            await self._post(ctx, code, ref)
        return {**result, "already_exported": found is not None, "posted": config.post_journal}

    async def _find(self, ctx: JobContext, code: str, ref: str) -> str | None:
        """"lines" (unposted, in the job's batch), "posted" (G/L entries) or None. Lines
        first: a post moves them into entries atomically, so no post can slip between."""
        journal_id = await self._journal_id(ctx, code, ref, create=False)
        if journal_id is not None and await self._has_lines(ctx, code, ref, journal_id):
            return "lines"
        return "posted" if await self._posted(ctx, ref) else None

    async def _posted(self, ctx: JobContext, ref: str) -> bool:
        params = {"$filter": f"documentNumber eq '{ref}'", "$top": "1", "$select": "id"}
        body = await self._get(ctx, _company(ctx) + "/generalLedgerEntries", params,
                               what="the posted-entries lookup")
        return bool(body.get("value"))

    async def _has_lines(self, ctx: JobContext, code: str, ref: str, journal_id: str) -> bool:
        params = {"$filter": f"documentNumber eq '{ref}'", "$top": "1", "$select": "id"}
        try:
            body = await self._get(ctx, f"{_company(ctx)}/journals({journal_id})/journalLines",
                                   params, what="the journal-line lookup")
        except NotFound:  # the batch went away (posted and deleted, or by hand): look it up anew
            self._forget_journal(ctx, code)
            again = await self._journal_id(ctx, code, ref, create=False)
            if again is None:
                return False
            body = await self._get(ctx, f"{_company(ctx)}/journals({again})/journalLines",
                                   params, what="the journal-line lookup")
        return bool(body.get("value"))

    async def _journal_id(self, ctx: JobContext, code: str, ref: str, *, create: bool) -> str | None:
        """The job's own journal batch (cached per integration), created when asked. BC's key
        is the name: a concurrent create (a rescued job's other attempt) loses with
        ``Internal_EntityWithSameKeyExists`` and the winner's batch is looked up."""
        key = _journal_key(ctx, code)
        if key in ctx.state:
            return str(ctx.state[key])
        found = await self._lookup_journal(ctx, code, ref)
        if found is None and create:
            found = await self._create_journal(ctx, code, ref)
        if found is not None:
            ctx.state[key] = found
        return found

    async def _lookup_journal(self, ctx: JobContext, code: str, ref: str) -> str | None:
        params = {"$filter": f"code eq '{code}'", "$select": "id,code,displayName"}
        rows = (await self._get(ctx, _company(ctx) + "/journals", params,
                                what="the journal lookup")).get("value") or []
        if not rows:
            return None
        if ref not in str(rows[0].get("displayName", "")):
            raise PermanentError(f"Business Central journal batch {code} exists but is not this export's "
                                 f"(its name does not carry {ref}): rename that batch, or set another "
                                 "journal_prefix for the integration")
        return str(rows[0]["id"])

    async def _create_journal(self, ctx: JobContext, code: str, ref: str) -> str:
        body = {"code": code, "displayName": f"integration-dispatch {ref}"}
        try:
            response = await self._call(ctx, "POST", _company(ctx) + "/journals", write=True,
                                        what=f"creating journal {code}", json=body)
        except PermanentError as exc:
            found = await self._lookup_journal(ctx, code, ref)  # created meanwhile elsewhere
            if found is None:
                raise exc from None
            return found
        return str(response.json()["id"])

    def _forget_journal(self, ctx: JobContext, code: str) -> None:
        ctx.state.pop(_journal_key(ctx, code), None)

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

    async def _post(self, ctx: JobContext, code: str, ref: str) -> None:
        """Post the job's batch. Only its own lines are in it, so posting again after a lost
        answer books nothing twice: BC finds nothing left, and the entries say it was posted."""
        config = _config(ctx)
        journal_id = await self._journal_id(ctx, code, ref, create=False)
        try:
            if journal_id is None:
                raise NotFound(f"Business Central journal batch {code} is gone")
            await self._call(ctx, "POST", f"{_company(ctx)}/journals({journal_id})/Microsoft.NAV.post",
                             write=True, what=f"posting journal {code}",
                             timeout=timeout(config.post_timeout_seconds))
        except PermanentError:
            self._forget_journal(ctx, code)
            if await self._posted(ctx, ref):  # an earlier post, applied late, took the lines
                return
            raise
        await self._tidy(ctx, code, journal_id)

    async def _tidy(self, ctx: JobContext, code: str, journal_id: str | None) -> None:
        """Delete the job's posted (so empty) batch. Tidying only: one left behind is harmless."""
        if journal_id is None or not _config(ctx).delete_posted_journals:
            return
        self._forget_journal(ctx, code)
        with contextlib.suppress(RetryableError, PermanentError):
            await self._call(ctx, "DELETE", f"{_company(ctx)}/journals({journal_id})", write=True,
                             what=f"deleting posted journal {code}", headers={"If-Match": "*"})

    # -- sync ----------------------------------------------------------------------------
    async def _sync(self, ctx: JobContext, payload: SyncPayload) -> dict[str, Any]:
        since, config = payload.since_utc(), _config(ctx)
        params = {"$select": "id,entryNumber,documentNumber,lastModifiedDateTime"}
        if since is not None:
            # Re-read an overlap: a row committed late (or a lagging replica) can carry a
            # timestamp older than the newest one the last sync saw.
            behind = since - timedelta(seconds=config.sync_overlap_seconds)
            params["$filter"] = f"lastModifiedDateTime gt {_odata_datetime(behind)}"
        size = payload.page_size or config.page_size
        headers = {"Prefer": f"odata.maxpagesize={size}", "Data-Access-Intent": "ReadOnly"}
        url: str | None = _company(ctx) + "/generalLedgerEntries"
        query: dict[str, str] | None = params
        seen: set[str] = set()
        pages, repeated, newest = 0, 0, since
        while url is not None:
            body = await self._get(ctx, url, query, what="the sync", headers=headers)
            rows = body.get("value") or []
            pages += 1
            for row in rows:
                ident = str(row.get("id"))
                repeated += ident in seen
                seen.add(ident)
                stamp = _parse_odata_datetime(row.get("lastModifiedDateTime"))
                if stamp is not None and (newest is None or stamp > newest):
                    newest = stamp
            next_link = body.get("@odata.nextLink")
            if next_link is not None and next_link == url:
                raise RetryableError("Business Central repeated the same page link during the sync")
            if next_link is not None and not same_origin(next_link, config.base_url):
                # The bearer token goes with every page: never to another host.
                raise PermanentError("Business Central's @odata.nextLink points away from the configured base_url; "
                                     "refusing to send the token there (check base_url and the environment)")
            # Follow the link verbatim: it carries every option (params=None, because httpx
            # would replace the link's query string with an empty params dict).
            url, query = next_link, None
        # The cursor never moves back: the overlap is re-read from it, not from the re-read rows.
        cursor = _odata_datetime(newest) if newest is not None else None
        return {"entity": "generalLedgerEntries", "records": len(seen), "pages": pages,
                "repeated": repeated, "overlap_seconds": config.sync_overlap_seconds if since else 0,
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
    if response.status_code == 404:
        return NotFound(f"Business Central found nothing for {what}: {detail}")
    if code == "Internal_TenantUnavailable":
        return RetryableError(f"Business Central is unavailable for {what}: {detail}")
    return PermanentError(f"Business Central rejected {what}: {detail}")


class NotFound(PermanentError):
    """Business Central has no such record (404): e.g. a cached journal batch was deleted."""


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


def journal_code(prefix: str, idempotency_key: str) -> str:
    """The job's journal batch name: ``prefix`` + base 36 of the key's SHA-256, Code[10] in
    all (with "DX", 8 characters = 41 bits; a clash is detected by the batch's displayName)."""
    number = int.from_bytes(hashlib.sha256(idempotency_key.encode()).digest()[:8], "big")
    digits = []
    for _ in range(JOURNAL_CODE_LEN - len(prefix)):
        number, digit = divmod(number, 36)
        digits.append(_BASE36[digit])
    return prefix + "".join(digits)


def _journal_key(ctx: Context, code: str) -> str:
    return f"dynamics_bc.journal:{_config(ctx).company_id}:{code}"


def _company(ctx: Context) -> str:
    return f"/companies({_config(ctx).company_id})"


def _odata_datetime(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_odata_datetime(value: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
