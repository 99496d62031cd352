"""An emulator of Entra ID client credentials + Business Central API v2.0 (vendor-apis.md §2.10).

Serves ``POST /{tenant}/oauth2/v2.0/token`` and ``/v2.0/{tenant}/{env}/api/v2.0/...`` with
companies, journals, journalLines, ``Microsoft.NAV.post``, generalLedgerEntries and ``$batch``;
OData paging (``@odata.nextLink``, ``Prefer: odata.maxpagesize``), ``$top``, ``$select`` and a
minimal ``$filter``. Errors use the OData envelope ``{"error": {"code", "message"}}``.

Behaving like BC online (§2.6): at most ``max_concurrent`` (5) API requests are processed at
once per principal; the rest queue (up to ``queue_size``, then 429) and give up with 503 +
Retry-After after ``queue_timeout`` (8 min online; scale it down in tests). Each request takes
``processing_time`` seconds. Posting validates what the lines could not: blocked accounts
and the allowed posting period (``blocked_accounts``, ``allow_posting_from``), and fails the
whole post. ``commit_late`` adds G/L entries stamped now that only become visible later, as
rows of a long transaction (or a lagging replica) do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.devkit.emulators.common import EmulatorApp, Fault

DEFAULT_TENANT = "00000000-0000-0000-0000-0000000000aa"
DEFAULT_CLIENT_ID = "bc-test-client"
DEFAULT_CLIENT_SECRET = "bc-test-secret"
DEFAULT_ENVIRONMENT = "production"
DEFAULT_COMPANY_ID = "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1"
DEFAULT_ACCOUNTS = frozenset({"10100", "10700", "20100", "40100", "60100", "61300"})
SCOPE = "https://api.businesscentral.dynamics.com/.default"
MAX_PAGE = 20_000
MAX_BATCH = 100
MAX_CONCURRENT = 5     # per user / principal; the rest queue (§2.6)
QUEUE_SIZE = 95        # queued requests per user; beyond: 429
QUEUE_TIMEOUT_S = 480  # a queued request gives up after 8 min: 503 with Retry-After
JOURNAL_CODE_LEN = 10  # Gen. Journal Batch Name is Code[10]
# BC's field lengths: Document No. is Code[20], External Document No. is Code[35].
DOCUMENT_NUMBER_LEN = 20
EXTERNAL_DOCUMENT_NUMBER_LEN = 35

_API_RE = re.compile(r"^/v2\.0/(?P<tenant>[^/]+)/(?P<env>[^/]+)/api/v2\.0/(?P<rest>.*)$")
_TOKEN_RE = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")
_SEGMENT_RE = re.compile(r"^(?P<name>[\w.$]+)(?:\((?P<key>[^)]*)\))?$")
_CLAUSE_RE = re.compile(r"^\s*(\w+)\s+(eq|ne|gt|ge|lt|le)\s+('(?:[^']|'')*'|\S+)\s*$", re.I)
_DEFAULT_STATUS_CODES = {
    400: "BadRequest",
    401: "Authentication_InvalidCredentials",
    403: "Authorization_InsufficientPermissions",
    404: "BadRequest_NotFound",
    408: "RequestTimeout",
    429: "Application_TooManyRequests",
    500: "Internal_ServerError",
    502: "BadGateway",
    503: "Internal_ServiceUnavailable",
    504: "GatewayTimeout",
}
_DEFAULT_MESSAGES = {
    401: "The server has rejected the client credentials.",
    429: "Too many requests reached. Actual (101). Maximum (100).",
    503: "The service is temporarily unavailable.",
}


class ODataError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def odata_error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": f"{message}  CorrelationId:  {uuid.uuid4()}."}}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def with_etag(entity: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha1(json.dumps(entity, sort_keys=True).encode()).hexdigest()[:20]
    return {"@odata.etag": f'W/"J{digest}"', **entity}


# -- OData query options ------------------------------------------------------------------
def parse_filter(text: str) -> list[tuple[str, str, str]]:
    clauses = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.I):
        match = _CLAUSE_RE.match(part)
        if match is None:
            raise ODataError(400, "BadRequest", "Bad Request - Error in query syntax.")
        field, op, raw = match.groups()
        value = raw[1:-1].replace("''", "'") if raw.startswith("'") else raw
        clauses.append((field, op.lower(), value))
    return clauses


def _compare(actual: Any, op: str, wanted: str) -> bool:
    left: Any = "" if actual is None else str(actual)
    right: Any = wanted
    with contextlib.suppress(ArithmeticError):  # numbers compare as numbers, the rest as text
        left, right = Decimal(left), Decimal(right)
    results = {"eq": left == right, "ne": left != right, "gt": left > right,
               "ge": left >= right, "lt": left < right, "le": left <= right}
    return bool(results[op])


def apply_filter(rows: list[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    if not text:
        return rows
    clauses = parse_filter(text)
    return [r for r in rows if all(_compare(r.get(f), op, v) for f, op, v in clauses)]


def page_size(prefer: str, top: int | None) -> int:
    match = re.search(r"odata\.maxpagesize=(\d+)", prefer)
    size = min(int(match.group(1)), MAX_PAGE) if match else MAX_PAGE
    return min(size, top) if top is not None else size


class BusinessCentralEmulator(EmulatorApp):
    """Entra token endpoint + BC API v2.0 for one tenant, environment and company."""

    def __init__(
        self,
        tenant_id: str = DEFAULT_TENANT,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        environment: str = DEFAULT_ENVIRONMENT,
        company_id: str = DEFAULT_COMPANY_ID,
        accounts: frozenset[str] = DEFAULT_ACCOUNTS,
        token_ttl: float = 3599.0,
    ) -> None:
        super().__init__()
        self.tenant_id, self.environment, self.company_id = tenant_id, environment, company_id
        self.clients = {client_id: client_secret}
        self.accounts = set(accounts)
        #: Lifetime of issued tokens in seconds; make it short to exercise refresh.
        self.token_ttl = token_ttl
        #: The request limiter (None: no limit) and each API request's processing time.
        self.max_concurrent: int | None = MAX_CONCURRENT
        self.queue_size = QUEUE_SIZE
        self.queue_timeout = float(QUEUE_TIMEOUT_S)
        self.processing_time = 0.0
        self._lock = threading.RLock()
        self.reset_data()

    def reset_data(self) -> None:
        with self._lock:
            self.tokens: dict[str, float] = {}
            self.journals: dict[str, dict[str, Any]] = {}
            self.lines: list[dict[str, Any]] = []
            self.gl_entries: list[dict[str, Any]] = []
            #: Post-time validation: accounts blocked for posting, the first allowed date.
            self.blocked_accounts: set[str] = set()
            #: G/L entry id -> when (monotonic) a late-committed entry becomes visible.
            self._visible_at: dict[str, float] = {}
            self.allow_posting_from: str | None = None
            self.active = self.queued = self.max_active_seen = 0

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens = {token: 0.0 for token in self.tokens}

    # -- classification and faults -----------------------------------------------------
    def classify(self, request: Request, body: bytes) -> tuple[str, str]:
        path = request.url.path
        if _TOKEN_RE.match(path):
            return "token", "token"
        match = _API_RE.match(path)
        if match is None:
            return "unknown", "unknown"
        operation = _operation(request.method, match["rest"])
        if operation == "companies.list":
            return "probe", operation
        if request.method != "GET":
            return "write", operation
        return ("lookup" if "$filter" in request.query_params else "read"), operation

    def fault_response(self, fault: Fault) -> Response | None:
        if not fault.status:
            return None
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        code = fault.code or _DEFAULT_STATUS_CODES.get(fault.status, "Unknown")
        message = fault.message or _DEFAULT_MESSAGES.get(fault.status, f"HTTP {fault.status}.")
        body = odata_error(fault.status, code, message)
        return JSONResponse(body, fault.status, headers=headers)

    # -- requests --------------------------------------------------------------------
    async def handle(self, request: Request, body: bytes, operation: str) -> Response:
        if token_match := _TOKEN_RE.match(request.url.path):
            return self._issue_token(token_match["tenant"], request, body)
        match = _API_RE.match(request.url.path)
        if match is None:
            return JSONResponse(odata_error(404, "BadRequest_NotFound", "Not found."), 404)
        if not self._authorized(request.headers.get("authorization", "")):
            return self.fault_response(Fault(status=401)) or Response(status_code=401)
        if (match["tenant"], match["env"]) != (self.tenant_id, self.environment):
            message = f"Environment {match['env']} does not exist."
            return JSONResponse(odata_error(404, "BadRequest_ResourceNotFound", message), 404)
        refused = await self._admit()
        if refused is not None:
            return refused
        try:
            if self.processing_time > 0:
                await asyncio.sleep(self.processing_time)
            root = str(request.url).split("/api/v2.0/")[0] + "/api/v2.0/"
            params = dict(request.query_params)
            status, payload = self.api(request.method, match["rest"], params, _json(body),
                                       request.headers, root)
        finally:
            with self._lock:
                self.active -= 1
        if payload is None:
            return Response(status_code=status)
        return JSONResponse(payload, status)

    async def _admit(self) -> Response | None:
        """Take a processing slot, queueing like BC online: None when admitted (the caller
        releases ``active``), else the 429 (queue full) or 503 (queued too long) answer."""
        with self._lock:
            if self.max_concurrent is None or self.active < self.max_concurrent:
                self._start()
                return None
            if self.queued >= self.queue_size:
                message = (f"Too many requests reached. Actual ({self.active + self.queued + 1}). "
                           f"Maximum ({self.max_concurrent + self.queue_size}).")
                return JSONResponse(odata_error(429, "Application_TooManyRequests", message), 429)
            self.queued += 1
        deadline = time.monotonic() + self.queue_timeout
        try:
            while True:
                await asyncio.sleep(0.005)
                with self._lock:
                    if self.max_concurrent is None or self.active < self.max_concurrent:
                        self._start()
                        return None
                if time.monotonic() >= deadline:
                    body = odata_error(503, "Internal_ServiceUnavailable",
                                       "The request waited too long in the queue and was not processed.")
                    return JSONResponse(body, 503, headers={"Retry-After": "5"})
        finally:
            with self._lock:
                self.queued -= 1

    def _start(self) -> None:
        self.active += 1
        self.max_active_seen = max(self.max_active_seen, self.active)

    def _authorized(self, header: str) -> bool:
        if not header.startswith("Bearer "):
            return False
        with self._lock:
            expires_at = self.tokens.get(header[len("Bearer "):])
        return expires_at is not None and expires_at > time.monotonic()

    # -- Entra token endpoint --------------------------------------------------------
    def _issue_token(self, tenant: str, request: Request, body: bytes) -> Response:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        form.update(_basic_auth(request.headers.get("authorization", "")))
        error = self._token_error(tenant, form)
        if error is not None:
            status, code, aadsts, text = error
            return JSONResponse(_aad_error(code, aadsts, text), status)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = time.monotonic() + float(self.token_ttl)
        ttl = int(self.token_ttl)
        return JSONResponse({"token_type": "Bearer", "expires_in": ttl,
                             "ext_expires_in": ttl, "access_token": token})

    def _token_error(self, tenant: str, form: dict[str, str]) -> tuple[int, str, int, str] | None:
        client_id = form.get("client_id", "")
        if tenant != self.tenant_id:
            return 400, "invalid_request", 90002, f"Tenant '{tenant}' not found."
        if form.get("grant_type") != "client_credentials":
            return 400, "unsupported_grant_type", 70003, "The grant type is not supported."
        if form.get("scope") != SCOPE:
            return 400, "invalid_scope", 70011, "The provided value for 'scope' is not valid."
        if client_id not in self.clients:
            text = f"Application with identifier '{client_id}' was not found in the directory."
            return 400, "unauthorized_client", 700016, text
        if form.get("client_secret") != self.clients[client_id]:
            return 401, "invalid_client", 7000215, "Invalid client secret provided."
        return None

    # -- API dispatch (shared by plain requests and $batch) -------------------------------
    def api(self, method: str, rest: str, params: dict[str, str], body: Any,
            headers: Any, root: str) -> tuple[int, Any]:
        try:
            with self._lock:
                return self._dispatch(method, rest, params, body, headers, root)
        except ODataError as exc:
            return exc.status, odata_error(exc.status, exc.code, exc.message)

    def _dispatch(self, method: str, rest: str, params: dict[str, str], body: Any,
                  headers: Any, root: str) -> tuple[int, Any]:
        segments = _segments(rest)
        names = [name for name, _ in segments]
        if names == ["$batch"] and method == "POST":
            return self._batch(body, headers, root)
        if names == ["companies"] and method == "GET":
            return 200, self._collection(self._companies(), params, headers, root, rest)
        company = self._company(segments[0][1] if segments else None)
        handler = _ROUTES.get((method, tuple(names[1:])))
        if names[:1] != ["companies"] or handler is None:
            raise ODataError(404, "BadRequest_NotFound", f"No resource at '{rest}'.")
        status, payload = handler(self, company, segments, params, body, headers, root, rest)
        return int(status), payload

    def _company(self, key: str | None) -> str:
        if key != self.company_id:
            raise ODataError(404, "Internal_CompanyNotFound", "The company does not exist.")
        return key

    def _companies(self) -> list[dict[str, Any]]:
        return [{"id": self.company_id, "systemVersion": "24.0", "name": "CRONUS USA, Inc.",
                 "displayName": "CRONUS USA, Inc.", "businessProfileId": ""}]

    def _collection(self, rows: list[dict[str, Any]], params: dict[str, str], headers: Any,
                    root: str, rest: str) -> dict[str, Any]:
        rows = apply_filter(rows, params.get("$filter"))
        top = int(params["$top"]) if "$top" in params else None
        skip = int(params.get("$skiptoken", "0"))
        size = page_size(headers.get("prefer", ""), top)
        page = rows[skip : skip + size]
        if "$select" in params:
            keep = {f.strip() for f in params["$select"].split(",")}
            page = [{k: v for k, v in r.items() if k in keep} for r in page]
        result: dict[str, Any] = {"@odata.context": f"{root}$metadata#{rest}",
                                  "value": [with_etag(r) for r in page]}
        if top is None and skip + size < len(rows):
            next_params = {**params, "$skiptoken": str(skip + size)}
            result["@odata.nextLink"] = f"{root}{rest}?{urlencode(next_params)}"
        return result

    def _journal(self, segments: list[tuple[str, str | None]]) -> dict[str, Any]:
        journal = self.journals.get(segments[1][1] or "")
        if journal is None:
            raise ODataError(404, "Internal_RecordNotFound", "The journal does not exist.")
        return journal

    # -- entity handlers ---------------------------------------------------------------
    def _list_journals(self, company: str, segments: Any, params: dict[str, str], body: Any,
                       headers: Any, root: str, rest: str) -> tuple[int, Any]:
        rows = list(self.journals.values())
        return 200, self._collection(rows, params, headers, root, rest)

    def _create_journal(self, company: str, segments: Any, params: dict[str, str], body: Any,
                        headers: Any, root: str, rest: str) -> tuple[int, Any]:
        code = str((body or {}).get("code", "")).upper()
        _check_length(code, JOURNAL_CODE_LEN)
        if not code or any(j["code"] == code for j in self.journals.values()):
            message = f"The record in table Gen. Journal Batch already exists. Name='{code}'"
            raise ODataError(400, "Internal_EntityWithSameKeyExists", message)
        journal = {"id": str(uuid.uuid4()), "code": code,
                   "displayName": (body or {}).get("displayName", code),
                   "templateDisplayName": "GENERAL", "lastModifiedDateTime": now_iso()}
        self.journals[journal["id"]] = journal
        return 201, with_etag(journal)

    def _delete_journal(self, company: str, segments: Any, params: dict[str, str], body: Any,
                        headers: Any, root: str, rest: str) -> tuple[int, Any]:
        journal = self._journal(segments)
        del self.journals[journal["id"]]
        self.lines = [line for line in self.lines if line["journalId"] != journal["id"]]
        return 204, None

    def _list_lines(self, company: str, segments: Any, params: dict[str, str], body: Any,
                    headers: Any, root: str, rest: str) -> tuple[int, Any]:
        journal = self._journal(segments)
        rows = [line for line in self.lines if line["journalId"] == journal["id"]]
        return 200, self._collection(rows, params, headers, root, rest)

    def _create_line(self, company: str, segments: Any, params: dict[str, str], body: Any,
                     headers: Any, root: str, rest: str) -> tuple[int, Any]:
        journal = self._journal(segments)
        line = self._validated_line(journal, body or {})
        self.lines.append(line)
        return 201, with_etag(line)

    def _validated_line(self, journal: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        account = str(body.get("accountNumber", ""))
        if account not in self.accounts:
            message = (f"The G/L Account does not exist. Identification fields and values: "
                       f"No.='{account}'")
            raise ODataError(400, "Internal_RecordNotFound", message)
        for field, limit in (("documentNumber", DOCUMENT_NUMBER_LEN),
                             ("externalDocumentNumber", EXTERNAL_DOCUMENT_NUMBER_LEN)):
            _check_length(str(body.get(field, "")), limit)
        mine = [x["lineNumber"] for x in self.lines if x["journalId"] == journal["id"]]
        return {
            "id": str(uuid.uuid4()), "journalId": journal["id"],
            "journalDisplayName": journal["code"],
            "lineNumber": body.get("lineNumber") or max(mine, default=0) + 10000,
            "accountType": body.get("accountType", "G/L Account"), "accountNumber": account,
            "postingDate": body.get("postingDate", ""),
            "documentNumber": str(body.get("documentNumber", "")).upper(),
            "externalDocumentNumber": str(body.get("externalDocumentNumber", "")),
            "amount": float(body.get("amount", 0)), "description": body.get("description", ""),
            "comment": body.get("comment", ""), "lastModifiedDateTime": now_iso(),
        }

    def _post_journal(self, company: str, segments: Any, params: dict[str, str], body: Any,
                      headers: Any, root: str, rest: str) -> tuple[int, Any]:
        journal = self._journal(segments)
        lines = [line for line in self.lines if line["journalId"] == journal["id"]]
        if not lines:
            raise ODataError(400, "Application_DialogException", "There is nothing to post.")
        _check_documents_balance(lines)
        self._check_postable(lines)
        for line in lines:
            self._post_line(line)
        self.lines = [line for line in self.lines if line["journalId"] != journal["id"]]
        return 204, None

    def _check_postable(self, lines: list[dict[str, Any]]) -> None:
        """What BC checks only when posting; one failing line fails the whole post."""
        for line in lines:
            if line["accountNumber"] in self.blocked_accounts:
                message = (f"Blocked must be equal to 'No' in G/L Account: No.={line['accountNumber']}. "
                           "Current value is 'Yes'.")
                raise ODataError(400, "Application_DialogException", message)
            if self.allow_posting_from and str(line["postingDate"]) < self.allow_posting_from:
                message = (f"Posting Date {line['postingDate']} is not within your range of allowed posting "
                           f"dates in Gen. Journal Line Journal Batch Name='{line['journalDisplayName']}'.")
                raise ODataError(400, "Application_DialogException", message)

    def _post_line(self, line: dict[str, Any]) -> None:
        amount = Decimal(str(line["amount"]))
        self.gl_entries.append({
            "id": str(uuid.uuid4()), "entryNumber": len(self.gl_entries) + 1,
            "postingDate": line["postingDate"], "documentNumber": line["documentNumber"],
            "documentType": " ", "accountId": str(uuid.uuid5(uuid.NAMESPACE_OID,
                                                             line["accountNumber"])),
            "accountNumber": line["accountNumber"], "description": line["description"],
            "debitAmount": float(max(amount, Decimal(0))),
            "creditAmount": float(max(-amount, Decimal(0))),
            "lastModifiedDateTime": now_iso(),
        })

    def _list_entries(self, company: str, segments: Any, params: dict[str, str], body: Any,
                      headers: Any, root: str, rest: str) -> tuple[int, Any]:
        now = time.monotonic()
        visible = [e for e in self.gl_entries if self._visible_at.get(e["id"], 0.0) <= now]
        return 200, self._collection(visible, params, headers, root, rest)

    # -- $batch --------------------------------------------------------------------------
    def _batch(self, body: Any, headers: Any, root: str) -> tuple[int, Any]:
        requests = (body or {}).get("requests") or []
        if len(requests) > MAX_BATCH:
            message = f"The batch has {len(requests)} operations; at most {MAX_BATCH} are allowed."
            raise ODataError(400, "BadRequest", message)
        snapshot = self._snapshot()
        responses = [self._batch_one(item, root) for item in requests]
        atomic = str(headers.get("isolation", "")).lower() == "snapshot"
        if atomic and any(r["status"] >= 400 for r in responses):
            self._restore(snapshot)  # one failure rolls back the whole batch
        return 200, {"responses": responses}

    def _batch_one(self, item: dict[str, Any], root: str) -> dict[str, Any]:
        rest, _, query = str(item.get("url", "")).lstrip("/").partition("?")
        params = {k: v[0] for k, v in parse_qs(query).items()}
        inner_headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
        try:
            status, payload = self._dispatch(item.get("method", "GET").upper(), rest, params,
                                             item.get("body"), inner_headers, root)
        except ODataError as exc:
            status, payload = exc.status, odata_error(exc.status, exc.code, exc.message)
        headers = {"content-type": "application/json; odata.metadata=minimal",
                   "odata-version": "4.0"}
        return {"id": item.get("id"), "status": status, "headers": headers, "body": payload}

    def _snapshot(self) -> tuple[Any, ...]:
        return copy.deepcopy((self.journals, self.lines, self.gl_entries))

    def _restore(self, snapshot: tuple[Any, ...]) -> None:
        self.journals, self.lines, self.gl_entries = snapshot

    # -- test helpers ----------------------------------------------------------------
    def seed(self, count: int) -> None:
        """Add ``count`` posted G/L entries (document SEED-n), one second apart, ending now."""
        with self._lock:
            start = datetime.now(UTC) - timedelta(seconds=count)
            for i in range(count):
                self._post_line({"postingDate": start.date().isoformat(),
                                 "documentNumber": f"SEED-{i}", "accountNumber": "10100",
                                 "description": f"seed {i}", "amount": 0})
                stamp = (start + timedelta(seconds=i)).isoformat(timespec="milliseconds")
                self.gl_entries[-1]["lastModifiedDateTime"] = stamp.replace("+00:00", "Z")

    def commit_late(self, count: int, visible_in: float, stamp_age: float = 1.0) -> list[str]:
        """Add ``count`` G/L entries stamped ``stamp_age`` s ago that readers see only after
        ``visible_in`` s: a long transaction's rows, stamped at their write and visible at
        its commit (or a replica catching up). Returns their ids."""
        with self._lock:
            stamp = (datetime.now(UTC) - timedelta(seconds=stamp_age)).isoformat(timespec="milliseconds")
            ids = []
            for i in range(count):
                self._post_line({"postingDate": stamp[:10], "documentNumber": f"SEED-LATE-{len(self.gl_entries)}",
                                 "accountNumber": "10100", "description": f"late {i}", "amount": 0})
                entry = self.gl_entries[-1]
                entry["lastModifiedDateTime"] = stamp.replace("+00:00", "Z")
                self._visible_at[entry["id"]] = time.monotonic() + visible_in
                ids.append(entry["id"])
            return ids

    def documents(self) -> dict[str, Any]:
        """Journal lines (unposted) and G/L entries (posted) per documentNumber."""
        with self._lock:
            docs: dict[str, Any] = {}
            for line in self.lines:
                doc = docs.setdefault(line["documentNumber"], {"lines": 0, "entries": 0})
                doc["lines"] += 1
            for entry in self.gl_entries:
                if not entry["documentNumber"].startswith("SEED-"):
                    doc = docs.setdefault(entry["documentNumber"], {"lines": 0, "entries": 0})
                    doc["entries"] += 1
            return docs


_ROUTES: dict[tuple[str, tuple[str, ...]], Any] = {
    ("GET", ("journals",)): BusinessCentralEmulator._list_journals,
    ("POST", ("journals",)): BusinessCentralEmulator._create_journal,
    ("DELETE", ("journals",)): BusinessCentralEmulator._delete_journal,
    ("GET", ("journals", "journalLines")): BusinessCentralEmulator._list_lines,
    ("POST", ("journals", "journalLines")): BusinessCentralEmulator._create_line,
    ("POST", ("journals", "Microsoft.NAV.post")): BusinessCentralEmulator._post_journal,
    ("GET", ("generalLedgerEntries",)): BusinessCentralEmulator._list_entries,
}


def _operation(method: str, rest: str) -> str:
    names = [name for name, _ in _segments(rest)]
    if names == ["$batch"]:
        return "batch"
    if names == ["companies"]:
        return "companies.list"
    last = names[-1] if names else "unknown"
    if last == "Microsoft.NAV.post":
        return "journal.post"
    verb = {"GET": "list", "DELETE": "delete", "PATCH": "update"}.get(method, "create")
    return f"{last}.{verb}"


def _segments(rest: str) -> list[tuple[str, str | None]]:
    segments: list[tuple[str, str | None]] = []
    for part in rest.strip("/").split("/"):
        match = _SEGMENT_RE.match(part)
        if match is None:
            raise ODataError(400, "BadRequest_InvalidRequestUrl", f"Invalid URL segment '{part}'.")
        segments.append((match["name"], match["key"]))
    return segments


def _check_length(value: str, limit: int) -> None:
    if len(value) > limit:
        message = (f"The length of the string is {len(value)}, but it must be less than or "
                   f"equal to {limit} characters. Value: {value}")
        raise ODataError(400, "Application_StringExceededLength", message)


def _check_documents_balance(lines: list[dict[str, Any]]) -> None:
    totals: dict[str, Decimal] = {}
    for line in lines:
        doc = line["documentNumber"]
        totals[doc] = totals.get(doc, Decimal(0)) + Decimal(str(line["amount"]))
    for doc, total in totals.items():
        if total != 0:
            message = f"Document No. {doc} is out of balance by {total}."
            raise ODataError(400, "Application_DialogException", message)


def _basic_auth(header: str) -> dict[str, str]:
    """RFC 6749 §2.3.1: the client may authenticate with HTTP Basic instead of the form."""
    if not header.startswith("Basic "):
        return {}
    client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
    return {"client_id": client_id, "client_secret": secret}


def _aad_error(code: str, aadsts: int, text: str) -> dict[str, Any]:
    trace = str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return {"error": code, "error_description": f"AADSTS{aadsts}: {text}\r\nTrace ID: {trace}",
            "error_codes": [aadsts], "timestamp": stamp, "trace_id": trace,
            "correlation_id": str(uuid.uuid4())}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
