"""An emulator of Xledger's GraphQL API (reference/vendor-apis.md §1.8).

Not a GraphQL server: it finds the root fields of a query and their arguments with a small
scanner, which is enough for the adapter's own queries. Anything else gets a GraphQL error.
Errors arrive the Xledger way: HTTP 200 with ``errors[].code`` at the top level of each error.

Limits like Xledger's (§1.3, §1.4): ``max_in_flight`` requests per token at once (1: a second
request while one is processed gets ``CONCURRENCY_LIMIT_REACHED``), ``burst_limit`` per 5 s,
``credits`` with ``resetAt``. Each request takes ``processing_time`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter, deque
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from app.devkit.emulators.common import EmulatorApp, Fault

DEFAULT_TOKEN = "xledger-test-token"
DEFAULT_ACCOUNTS = frozenset({"1010", "1500", "1920", "2400", "3000", "4000", "6300"})
OWNER_DB_ID = 42365431
MAX_PAGE = 10_000
MAX_MUTATION_NODES = 500
BURST_WINDOW_S = 5.0
# Xledger stores modifiedAt in CET without an offset (§1.5).
XLEDGER_TZ = ZoneInfo("CET")

BAD_HEADER = 'Bad format for API Token. Expected header: "Authorization: token <your-token>"'
ERR_BURST = "BAD_REQUEST.BURST_RATE_LIMIT_REACHED"
ERR_CONCURRENCY = "BAD_REQUEST.CONCURRENCY_LIMIT_REACHED"
ERR_CREDITS = "BAD_REQUEST.INSUFFICIENT_CREDITS"
DEFAULT_MESSAGES = {
    ERR_BURST: "Too many requests in the last 5 seconds. Please wait and retry.",
    ERR_CONCURRENCY: "Too many concurrent requests.",
    ERR_CREDITS: "Insufficient credits.",
}

_AUTH_RE = re.compile(r"^token (\S+)$")
_PROBE_RE = re.compile(r"^\s*(query\s*)?\{\s*__typename\s*\}\s*$")
_NAME_RE = re.compile(r"[_A-Za-z]\w*")
_VALUE = r'\$\w+|"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|\{[^{}]*\}|\[[^\]]*\]|\w+'
_ARG_RE = re.compile(rf"(\w+)\s*:\s*({_VALUE})")
_ITEM_RE = re.compile(_VALUE)
_CONNECTIONS = ("glImportItems", "transactions", "accounts")


def gql_error(
    message: str, code: str | None = None, extensions: dict[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message}
    if code:
        error["code"] = code
    if extensions:
        error["extensions"] = extensions
    return error


def errors_response(*errors: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({"errors": list(errors)}, status_code=status)


def cet_now() -> str:
    return datetime.now(XLEDGER_TZ).strftime("%Y-%m-%dT%H:%M:%S")


# -- a scanner for the root fields of a GraphQL document -------------------------------
def _closing(text: str, start: int, opening: str, closing: str) -> int:
    depth = 0
    for i in range(start, len(text)):
        depth += (text[i] == opening) - (text[i] == closing)
        if depth == 0:
            return i
    return len(text) - 1


def root_fields(query: str) -> list[tuple[str, str]]:
    """(name, argument text) of each field in the operation's top-level selection."""
    fields: list[tuple[str, str]] = []
    depth, i = 0, query.find("{")
    while 0 <= i < len(query):
        char = query[i]
        if char in "{}":
            depth += 1 if char == "{" else -1
        elif char == "(":
            end = _closing(query, i, "(", ")")
            if depth == 1 and fields:
                fields[-1] = (fields[-1][0], query[i + 1 : end])
            i = end
        elif depth == 1 and (match := _NAME_RE.match(query, i)):
            fields.append((match.group(), ""))
            i = match.end() - 1
        i += 1
    return fields


def parse_value(text: str, variables: dict[str, Any]) -> Any:
    if text.startswith("$"):
        return variables.get(text[1:])
    if text.startswith('"'):
        return json.loads(text)
    if text.startswith("{"):
        return parse_args(text[1:-1], variables)
    if text.startswith("["):
        return [parse_value(m.group(), variables) for m in _ITEM_RE.finditer(text[1:-1])]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"null": None, "true": True, "false": False}.get(text, text)


def parse_args(text: str, variables: dict[str, Any]) -> dict[str, Any]:
    return {m.group(1): parse_value(m.group(2), variables) for m in _ARG_RE.finditer(text)}


def _matches_filter(node: dict[str, Any], flt: dict[str, Any]) -> bool:
    for key, wanted in flt.items():
        if wanted is None:
            continue
        if key.endswith("_in"):
            if node.get(key[:-3]) not in wanted:
                return False
        elif key.endswith("_gte"):
            if str(node.get(key[:-4], "")) < str(wanted):
                return False
        elif node.get(key) != wanted:
            return False
    return True


def connection(rows: list[dict[str, Any]], args: dict[str, Any]) -> dict[str, Any]:
    """A Relay connection over rows sorted by dbId; the cursor is the dbId (as in Xledger)."""
    first = args.get("first") or MAX_PAGE
    after = args.get("after")
    rows = [r for r in rows if _matches_filter(r, args.get("filter") or {})]
    if after is not None:
        rows = [r for r in rows if r["dbId"] > int(after)]
    page = rows[:first]
    edges = [{"cursor": str(r["dbId"]), "node": r} for r in page]
    return {
        "edges": edges,
        "pageInfo": {
            "hasNextPage": len(rows) > first,
            "hasPreviousPage": after is not None,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


class GraphQLFailure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


class XledgerEmulator(EmulatorApp):
    """``POST /graphql`` with token auth, GL import, Relay paging and Xledger's limit errors."""

    def __init__(
        self,
        tokens: tuple[str, ...] = (DEFAULT_TOKEN,),
        accounts: frozenset[str] = DEFAULT_ACCOUNTS,
        burst_limit: int | None = None,
        credits: int | None = None,
        credits_reset_s: float = 1200.0,
        max_in_flight: int | None = 1,
    ) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.accounts = set(accounts)
        #: At most this many requests per token in 5 s (None: unlimited).
        self.burst_limit = burst_limit
        #: Requests left before INSUFFICIENT_CREDITS (None: unlimited).
        self.credits = credits
        self.credits_reset_s = credits_reset_s
        #: Requests per token processed at once (None: unlimited); the rest are refused.
        self.max_in_flight = max_in_flight
        self.processing_time = 0.0
        self.in_flight: Counter[str] = Counter()
        self.requests_per_token: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self.reset_data()

    def reset_data(self) -> None:
        with self._lock:
            self.items: list[dict[str, Any]] = []
            self.transactions: list[dict[str, Any]] = []
            self.requests_per_token.clear()
            self.in_flight = Counter()
            self._recent = {}
            self._next_db_id = 1000

    # -- classification and faults -----------------------------------------------------
    def classify(self, request: Request, body: bytes) -> tuple[str, str]:
        query = _load(body).get("query", "")
        if request.url.path != "/graphql" or not isinstance(query, str):
            return "unknown", "unknown"
        if _PROBE_RE.match(query):
            return "probe", "__typename"
        names = [name for name, _ in root_fields(query)]
        operation = names[0] if names else "unknown"
        if query.lstrip().startswith("mutation"):
            return "write", operation
        return ("lookup" if "extIdentifier" in query else "read"), operation

    def fault_response(self, fault: Fault) -> Response | None:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        if fault.code or fault.message:
            extensions = {"resetAt": fault.reset_at} if fault.reset_at else None
            message = fault.message or DEFAULT_MESSAGES.get(fault.code or "", fault.code or "")
            error = gql_error(message, fault.code, extensions)
            return JSONResponse({"errors": [error]}, fault.status or 200, headers=headers)
        if fault.status:
            html = f"<html><body><h1>{fault.status}</h1></body></html>"
            return PlainTextResponse(html, fault.status, headers=headers, media_type="text/html")
        return None

    # -- requests --------------------------------------------------------------------
    async def handle(self, request: Request, body: bytes, operation: str) -> Response:
        if request.url.path != "/graphql" or request.method != "POST":
            return PlainTextResponse("Not Found", 404)
        match = _AUTH_RE.match(request.headers.get("authorization", ""))
        if match is None:
            return errors_response(gql_error(BAD_HEADER))
        token = match.group(1)
        if token not in self.tokens:
            return errors_response(gql_error("The API token is not valid.", "UNAUTHENTICATED"))
        with self._lock:
            limited = self._limit(token)
            if limited is not None:
                return errors_response(limited)
            if self.max_in_flight is not None and self.in_flight[token] >= self.max_in_flight:
                return errors_response(gql_error(DEFAULT_MESSAGES[ERR_CONCURRENCY], ERR_CONCURRENCY))
            self.in_flight[token] += 1
        try:
            if self.processing_time > 0:
                await asyncio.sleep(self.processing_time)
            with self._lock:
                return self._execute(_load(body))
        finally:
            with self._lock:
                self.in_flight[token] -= 1

    def _limit(self, token: str) -> dict[str, Any] | None:
        self.requests_per_token[token] += 1
        now = time.monotonic()
        recent = self._recent.setdefault(token, deque())
        recent.append(now)
        while recent and recent[0] < now - BURST_WINDOW_S:
            recent.popleft()
        if self.burst_limit is not None and len(recent) > self.burst_limit:
            return gql_error(DEFAULT_MESSAGES[ERR_BURST], ERR_BURST)
        if self.credits is None:
            return None
        if self.credits <= 0:
            reset_at = datetime.now(XLEDGER_TZ) + timedelta(seconds=self.credits_reset_s)
            extensions = {"resetAt": reset_at.isoformat()}
            return gql_error(DEFAULT_MESSAGES[ERR_CREDITS], ERR_CREDITS, extensions)
        self.credits -= 1
        return None

    def _execute(self, request: dict[str, Any]) -> Response:
        query = request.get("query")
        variables = request.get("variables") or {}
        if not isinstance(query, str) or not query.strip():
            return errors_response(gql_error("Must provide a query string."), status=400)
        if _PROBE_RE.match(query):
            return JSONResponse({"data": {"__typename": "Query"}})
        is_mutation = query.lstrip().startswith("mutation")
        try:
            data = {
                name: self._resolve(name, parse_args(args, variables), is_mutation)
                for name, args in root_fields(query)
            }
        except GraphQLFailure as failure:
            return JSONResponse({"data": None, "errors": [failure.error]})
        return JSONResponse({"data": data})

    def _resolve(self, name: str, args: dict[str, Any], is_mutation: bool) -> Any:
        if is_mutation and name == "addGLImportItems":
            return self._add_gl_import_items(args.get("inputs") or [])
        if not is_mutation and name in _CONNECTIONS:
            if (args.get("first") or 0) > MAX_PAGE:
                raise GraphQLFailure(gql_error(f"Argument first must be at most {MAX_PAGE}."))
            return connection(self._rows(name), args)
        if name == "__typename":
            return "Mutation" if is_mutation else "Query"
        parent = "Mutation" if is_mutation else "Query"
        message = f'Cannot query field "{name}" on type "{parent}".'
        raise GraphQLFailure(gql_error(message, None, {"code": "GRAPHQL_VALIDATION_FAILED"}))

    def _rows(self, name: str) -> list[dict[str, Any]]:
        if name == "accounts":
            codes = sorted(self.accounts)
            return [{"dbId": i + 1, "code": c, "description": c} for i, c in enumerate(codes)]
        if name == "glImportItems":
            return list(self.items)
        # The emulator "processes" imports at once: imported items are also transactions.
        return sorted(self.transactions + self.items, key=lambda r: int(r["dbId"]))

    # -- the GL import mutation ----------------------------------------------------------
    def _add_gl_import_items(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if len(inputs) > MAX_MUTATION_NODES:
            message = f"At most {MAX_MUTATION_NODES} inputs are allowed in one mutation."
            raise GraphQLFailure(gql_error(message, None, {"code": "INVALID_VALUE"}))
        nodes = [self._validated_node(item.get("node") or {}) for item in inputs]
        _check_balanced(nodes)
        edges = []
        for item, node in zip(inputs, nodes, strict=True):
            stored = self._store(node)
            edges.append({"clientId": item.get("clientId"), "node": {"dbId": stored["dbId"]}})
        return {"edges": edges}

    def _validated_node(self, node: dict[str, Any]) -> dict[str, Any]:
        code = str((node.get("account") or {}).get("code", ""))
        if code not in self.accounts:
            message = f"account.code: No value matching owner {OWNER_DB_ID}, code '{code}'."
            raise GraphQLFailure(gql_error(message, None, {"code": "INVALID_VALUE"}))
        try:
            Decimal(str(node.get("amount")))
        except InvalidOperation:
            error = gql_error("amount: Invalid money value.", None, {"code": "INVALID_VALUE"})
            raise GraphQLFailure(error) from None
        return node

    def _store(self, node: dict[str, Any]) -> dict[str, Any]:
        self._next_db_id += 1
        stored = {
            "dbId": self._next_db_id,
            "extIdentifier": node.get("extIdentifier"),
            "trRegNumber": node.get("trRegNumber"),
            "postedDate": node.get("postedDate"),
            "account": {"code": node["account"]["code"]},
            "amount": str(node.get("amount")),
            "text": node.get("text"),
            "invoiceNumber": node.get("invoiceNumber"),
            "modifiedAt": cet_now(),
        }
        self.items.append(stored)
        return stored

    # -- test helpers ----------------------------------------------------------------
    def seed(self, count: int) -> None:
        """Add ``count`` posted transactions, one minute apart, ending now (CET)."""
        with self._lock:
            start = datetime.now(XLEDGER_TZ) - timedelta(minutes=count)
            for i in range(count):
                self._next_db_id += 1
                modified = (start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S")
                self.transactions.append(
                    {"dbId": self._next_db_id, "extIdentifier": None, "amount": "0.00",
                     "account": {"code": "1920"}, "text": f"seed {i}", "modifiedAt": modified}
                )

    def documents(self) -> dict[str, Any]:
        """Imported GL lines grouped by extIdentifier: one entry per exported voucher."""
        with self._lock:
            docs: dict[str, Any] = {}
            for item in self.items:
                doc = docs.setdefault(str(item["extIdentifier"]), {"lines": 0, "dbIds": []})
                doc["lines"] += 1
                doc["dbIds"].append(item["dbId"])
            return docs


def _check_balanced(nodes: list[dict[str, Any]]) -> None:
    totals: dict[str, Decimal] = {}
    for node in nodes:
        key = str(node.get("trRegNumber"))
        totals[key] = totals.get(key, Decimal(0)) + Decimal(str(node.get("amount")))
    for key, total in totals.items():
        if total != 0:
            message = f"trRegNumber {key}: the lines do not balance (difference {total})."
            raise GraphQLFailure(gql_error(message, None, {"code": "INVALID_VALUE"}))


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
