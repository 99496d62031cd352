"""Xledger over GraphQL (reference/vendor-apis.md §1).

Exports go in as GL import items (``addGLImportItems``), one voucher per job, all lines in
one mutation, tagged with ``extIdentifier`` = the job's external reference. The write-ahead
protocol (app.adapters.base.Writes) wraps the mutation: look the reference up; record the
intent; send; confirm. A mutation whose answer was lost may still be applied by Xledger
later, so a retry that finds nothing waits out ``write_window`` since the last send before it
imports again. Syncs page ``transactions`` changed since a cursor. Every request is billed,
so health is passive by default and ``warm_up`` sends nothing.

Xledger's limit codes (burst, concurrency, credits) reject a request before it runs: the job
parks until the limit lifts (``resetAt`` for credits) without spending an attempt.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.adapters._vendor_http import (
    ExportPayload,
    Refused,
    SyncPayload,
    credentials_json,
    external_reference,
    json_body,
    send,
    status_error,
    timeout,
    validate,
    vendor_url,
)
from app.adapters.base import JobContext, ProbeContext
from app.core.errors import AuthError, DispatchError, PermanentError, RetryableError

VENDOR = "Xledger"
# modifiedAt is stored in CET; the vendor's own sample re-reads 15 minutes for safety (§1.5).
XLEDGER_TZ = ZoneInfo("CET")
SINCE_MARGIN = timedelta(minutes=15)
ERR_BURST = "BAD_REQUEST.BURST_RATE_LIMIT_REACHED"
ERR_CONCURRENCY = "BAD_REQUEST.CONCURRENCY_LIMIT_REACHED"
ERR_CREDITS = "BAD_REQUEST.INSUFFICIENT_CREDITS"
#: The waits Xledger's own sample client uses for its limit codes (§1.3).
LIMIT_WAITS = {ERR_BURST: 5.0, ERR_CONCURRENCY: 1.0, ERR_CREDITS: 20 * 60.0}
#: How long Xledger may still apply a mutation after the client stopped waiting. Not
#: published (§1.10 q5): 5 minutes is an assumption, see docs/exactly-once.md.
WRITE_WINDOW_S = 300.0
AUTH_CODES = frozenset({"UNAUTHENTICATED", "UNAUTHORIZED", "FORBIDDEN"})

PROBE = "query { __typename }"
LOOKUP = """query ($refs: [String!]) {
  glImportItems(first: 500, filter: { extIdentifier_in: $refs }) { edges { node { dbId } } }
  transactions(first: 500, filter: { extIdentifier_in: $refs }) { edges { node { dbId } } }
}"""
IMPORT = """mutation ($inputs: [AddGLImportItemsInput!]!) {
  addGLImportItems(inputs: $inputs) { edges { clientId node { dbId } } }
}"""
_SYNC_FIELDS = "edges { cursor node { dbId modifiedAt } } pageInfo { hasNextPage }"
SYNC_ALL = f"""query ($first: Int!, $after: String) {{
  transactions(first: $first, after: $after) {{ {_SYNC_FIELDS} }}
}}"""
SYNC_SINCE = f"""query ($first: Int!, $after: String, $since: DateTimeString) {{
  transactions(first: $first, after: $after, filter: {{ modifiedAt_gte: $since }}) {{
    {_SYNC_FIELDS} }}
}}"""


class XledgerConfig(BaseModel):
    """``integrations.config`` for Xledger. The token lives in the vault: {"token": "..."}."""

    model_config = ConfigDict(extra="forbid")

    #: https://www.xledger.net (live) or https://demo.xledger.net (demo); /graphql is added.
    base_url: str = "https://www.xledger.net"
    page_size: Annotated[int, Field(ge=1, le=10_000)] = 1000
    transaction_source: Annotated[str, Field(min_length=1, max_length=20)] = "GL"
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    #: Overrides the adapter's ``write_window`` (300 s, an assumption): how long a retry waits,
    #: since the last send, before it imports again when the lookup finds nothing. Lower it
    #: only where Xledger's processing time is known to be shorter; tests use a few seconds.
    write_window_seconds: float | None = Field(None, ge=0)

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        return vendor_url(value, "base_url")


Context = JobContext | ProbeContext


class XledgerAdapter:
    name: ClassVar[str] = "xledger"
    config_model: ClassVar[type[BaseModel] | None] = XledgerConfig
    # Billed per request (5,000/month included): judge health from real jobs.
    default_health_mode: ClassVar[str] = "passive"
    #: a sync without `since` gets the cursor the last successful sync returned
    resumes_sync: ClassVar[bool] = True
    write_window: ClassVar[float] = WRITE_WINDOW_S

    def job_timeout(self, config: XledgerConfig) -> float:
        """The longest a job can take: the lookup and the import, one timeout each, and margin."""
        return 2 * config.timeout_seconds + 30.0

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        if ctx.kind == "export":
            return await self._export(ctx, validate(ExportPayload, ctx.payload, "export payload"))
        if ctx.kind == "sync":
            return await self._sync(ctx, validate(SyncPayload, ctx.payload, "sync payload"))
        raise PermanentError(f"Xledger adapter has no job kind {ctx.kind!r} (export, sync)")

    async def probe(self, ctx: ProbeContext) -> None:
        await self._graphql(ctx, PROBE, {}, what="the health probe", write=False)

    async def warm_up(self, ctx: ProbeContext) -> None:
        # Any request is billed and tokens never expire: only check what we hold.
        _config(ctx)
        credentials_json(ctx.credentials, VENDOR, ("token",))

    # -- export --------------------------------------------------------------------------
    async def _export(self, ctx: JobContext, payload: ExportPayload) -> dict[str, Any]:
        ref = external_reference(ctx.idempotency_key)
        existing = await self._lookup(ctx, ref)
        result = {"external_reference": ref, "lines": len(payload.lines)}
        if existing:  # written by an earlier attempt (perhaps applied late): nothing to send
            await ctx.writes.confirmed(ref, {"db_ids": existing})
            return {**result, "already_exported": True, "db_ids": existing}
        inputs = _import_inputs(payload, ref, _config(ctx).transaction_source)
        await ctx.writes.before_write(ref)
        try:
            data = await self._graphql(ctx, IMPORT, {"inputs": inputs}, what="the GL import",
                                       write=True)
        except Refused:  # a limit code or 429/503: the import never ran
            await ctx.writes.not_sent(ref)
            raise
        db_ids = [edge["node"]["dbId"] for edge in data["addGLImportItems"]["edges"]]
        await ctx.writes.confirmed(ref, {"db_ids": db_ids})
        return {**result, "already_exported": False, "db_ids": db_ids}

    async def _lookup(self, ctx: JobContext, ref: str) -> list[int]:
        """dbIds already imported (staging) or posted under this reference."""
        data = await self._graphql(ctx, LOOKUP, {"refs": [ref]}, what="the lookup", write=False)
        found: list[int] = []
        for field in ("glImportItems", "transactions"):
            found += [e["node"]["dbId"] for e in (data.get(field) or {}).get("edges", [])]
        return sorted(set(found))

    # -- sync ----------------------------------------------------------------------------
    async def _sync(self, ctx: JobContext, payload: SyncPayload) -> dict[str, Any]:
        since = payload.since_utc()
        variables: dict[str, Any] = {"first": payload.page_size or _config(ctx).page_size}
        if since is not None:
            variables["since"] = _to_cet(since - SINCE_MARGIN)
        query = SYNC_ALL if since is None else SYNC_SINCE
        records, pages, newest = 0, 0, None
        while True:
            data = await self._graphql(ctx, query, variables, what="the sync", write=False)
            page = data["transactions"]
            records, pages = records + len(page["edges"]), pages + 1
            newest = max([newest or "", *(e["node"]["modifiedAt"] for e in page["edges"])])
            if not page["pageInfo"]["hasNextPage"] or not page["edges"]:
                break
            # Clients take the last edge's cursor; pageInfo.endCursor is not relied on (§1.5).
            variables["after"] = page["edges"][-1]["cursor"]
        cursor = _from_cet(newest) if newest else (since.isoformat() if since else None)
        return {"entity": "transactions", "records": records, "pages": pages, "cursor": cursor}

    # -- the GraphQL call ------------------------------------------------------------------
    async def _graphql(
        self, ctx: Context, query: str, variables: dict[str, Any], *, what: str, write: bool
    ) -> dict[str, Any]:
        config = _config(ctx)
        token = credentials_json(ctx.credentials, VENDOR, ("token",))["token"]
        response = await send(
            ctx.http, "POST", config.base_url.rstrip("/") + "/graphql", vendor=VENDOR,
            write=write, json={"query": query, "variables": variables},
            headers={"Authorization": f"token {token}", "Accept": "application/json"},
            timeout=timeout(config.timeout_seconds),
        )
        body = json_body(response)
        # Xledger reports errors in the body, usually with HTTP 200: read them first (§1.3).
        if isinstance(body, dict) and body.get("errors"):
            raise graphql_error(body["errors"][0], what)
        error = status_error(VENDOR, response, what)
        if error is not None:
            raise error
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise RetryableError(f"Xledger answered {what} without data")
        return data


def graphql_error(error: dict[str, Any], what: str) -> DispatchError:
    """Xledger's error → what the daemon should do. The code sits at the top level (§1.3)."""
    extensions = error.get("extensions") or {}
    code = str(error.get("code") or extensions.get("code") or "")
    message = str(error.get("message") or "unknown error")
    if code in LIMIT_WAITS:
        # Refused before it ran: the job did nothing wrong. Park it until the limit lifts,
        # without spending an attempt (credits: until resetAt, else the sample's wait).
        wait = _until(extensions.get("resetAt")) if code == ERR_CREDITS else None
        retry_after = wait if wait is not None else LIMIT_WAITS[code]
        return Refused(f"Xledger limit reached ({code}) during {what}; waiting "
                       f"{retry_after:.0f} s", retry_after, park=True)
    if "timed out" in message.lower():
        return RetryableError(f"Xledger timed out during {what}")
    if code in AUTH_CODES or "api token" in message.lower():
        return AuthError(f"Xledger refused the API token: {message}")
    return PermanentError(f"Xledger rejected {what}: {message}")


def _until(reset_at: Any) -> float | None:
    """Seconds until ``resetAt``; a time without offset is read as CET, like modifiedAt."""
    try:
        when = datetime.fromisoformat(str(reset_at))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=XLEDGER_TZ)
    return max((when - datetime.now(UTC)).total_seconds(), 1.0)


def _import_inputs(payload: ExportPayload, ref: str, source: str) -> list[dict[str, Any]]:
    """All lines of the voucher in one mutation, grouped by one trRegNumber."""
    posted = payload.posting_date.isoformat()
    tr_reg_number = int(ref[-7:], 16)  # deterministic, so a resend groups the same way
    return [
        {"clientId": str(i), "node": {
            "trRegNumber": tr_reg_number, "postedDate": posted, "invoiceDate": posted,
            "transactionSource": {"code": source}, "account": {"code": line.account},
            "amount": f"{line.amount:.2f}", "invoiceAmount": f"{line.amount:.2f}",
            "text": line.description or payload.description, "invoiceNumber": ref,
            "extIdentifier": ref,
        }}
        for i, line in enumerate(payload.lines)
    ]


def _config(ctx: Context) -> XledgerConfig:
    if isinstance(ctx.config, XledgerConfig):  # validated once by the daemon
        return ctx.config
    return validate(XledgerConfig, ctx.integration.config, "Xledger integration config")


def _to_cet(instant: datetime) -> str:
    return instant.astimezone(XLEDGER_TZ).strftime("%Y-%m-%dT%H:%M:%S")


def _from_cet(value: str) -> str:
    local = datetime.fromisoformat(value)
    if local.tzinfo is None:
        local = local.replace(tzinfo=XLEDGER_TZ)
    return local.astimezone(UTC).isoformat().replace("+00:00", "Z")
