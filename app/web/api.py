"""The HTTP API: ``POST /dispatch``, ``GET /jobs/{job_id}``, ``GET /metrics``, ``GET /openapi.json``.

Which routes need a token is declared once, in :data:`ROUTES`: a route is protected unless
its entry gives a ``public_reason``. :meth:`Api.check` refuses to start a daemon whose app
serves a route the table does not declare.

Requests are checked in the order that costs an attacker most and us least: the token
first (before a body byte is read), then the size, then the JSON, then the fields. What
PostgreSQL cannot store (NUL characters, lone UTF-16 surrogates, non-finite numbers) is
refused here with the field named, never left to fail in the driver as a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app import __version__
from app.core import tracing
from app.db.errors import translate
from app.db.queries import query
from app.web.auth import AuthConfig, AuthFailure, Verifier
from app.web.server import error_response

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool
    from starlette.applications import Starlette

    from app.core.settings import Settings
    from app.web.dispatch_body import DispatchRequest
    from app.web.metrics import DatabaseGauges

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 64
KIND_PATTERN = r"^[a-z][a-z0-9_.-]{0,62}$"


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    summary: str
    public_reason: str | None = None  # None: a verified JWT with the required role is needed
    scrape: bool = False  # True: a token with the metrics role (DISPATCH_METRICS_ROLE) is accepted too


ROUTES: dict[str, RouteSpec] = {
    "health": RouteSpec("GET", "/health", "Combined health of this daemon (compatible; prefer the two probes)",
                        public_reason=(
        "a probe for load balancers and orchestrators, which carry no credentials; it reveals only "
        "booleans, counts, status words and the version (no error text, host, pid or worker id)")),
    "live": RouteSpec("GET", "/health/live", "Liveness: the process and its event loop turn", public_reason=(
        "the orchestrator's liveness probe carries no credentials; it reveals the status word and the version")),
    "ready": RouteSpec("GET", "/health/ready", "Readiness: database, LISTEN, not stopping", public_reason=(
        "the orchestrator's readiness probe carries no credentials; it reveals a status word, generic "
        "reason codes and the version")),
    "health_details": RouteSpec("GET", "/health/details",
                                "Health with its details: errors, duties, the worker id"),
    "openapi": RouteSpec("GET", "/openapi.json", "This API's OpenAPI 3.1 document", public_reason=(
        "it describes the shape of the API, which docs/api.md publishes anyway; it holds no data, "
        "settings or secrets, and client generators and fuzzers can read it without a token")),
    "dispatch": RouteSpec("POST", "/dispatch", "Enqueue a job through dispatch.enqueue_job"),
    "job": RouteSpec("GET", "/jobs/{job_id}", "One job: its state, timestamps, drift and last error"),
    "metrics": RouteSpec("GET", "/metrics", "Prometheus metrics", scrape=True),
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> JSONResponse:
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return error_response(self.status, self.code, self.message, headers=headers, **self.extra)


# -- body parsing
async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the request body is larger than {limit} bytes (DISPATCH_MAX_BODY_BYTES)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ApiError(422, "invalid_json", "the body is empty: send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(422, "invalid_json", f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(422, "invalid_json", "the body is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {exc}") from None


def check_storable(value: Any, path: str = "", depth: int = 0) -> None:
    """Refuse what PostgreSQL cannot store in text or jsonb, naming the first offending field."""
    if depth > MAX_JSON_DEPTH:
        raise _field_error(path, f"nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            _check_text(key, f"{path or '(body)'} (a key)")
            check_storable(item, child, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_storable(item, f"{path}[{i}]", depth + 1)


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise _field_error(path, "contains a NUL character (\\u0000), which PostgreSQL cannot store in text or "
                                 "jsonb; remove it or encode the value (e.g. base64)")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _field_error(path, "contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which is "
                                     "not valid Unicode; send the character itself or a correct pair") from None


def _field_error(path: str, message: str) -> ApiError:
    field = path or "(body)"
    return ApiError(422, "invalid_field", f"{field}: {message}", field=field)


def validate_dispatch(data: Any) -> DispatchRequest:
    from pydantic import ValidationError

    from app.web.dispatch_body import DispatchRequest

    if not isinstance(data, dict):
        raise ApiError(422, "invalid_json", f"the body must be a JSON object, not {type(data).__name__}")
    check_storable(data)
    try:
        return DispatchRequest.model_validate(data)
    except ValidationError as exc:
        details = [{"field": _loc(err["loc"]), "message": err["msg"]} for err in exc.errors()]
        first = details[0]
        raise ApiError(422, "invalid_field", f"{first['field']}: {first['message']}", field=first["field"],
                       details=details) from None


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(body)"


# -- database errors
_API_ERRORS = {"unavailable": (503, "database_unavailable"), "unknown_reference": (404, "unknown_integration"),
               "conflict": (409, "conflict"), "rejected": (422, "rejected_by_database")}


def database_error(exc: psycopg.Error) -> ApiError:
    """Driver errors as API errors, through the one translation (app/db/errors.py)."""
    refusal = translate(exc)
    if refusal.kind not in _API_ERRORS:
        raise exc
    status, code = _API_ERRORS[refusal.kind]
    return ApiError(status, code, refusal.message, **({"hint": refusal.hint} if refusal.hint else {}))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


class Api:
    def __init__(self, settings: Settings, pool: AsyncConnectionPool[Any], worker: Any = None,
                 verifier: Verifier | None = None) -> None:
        self.pool = pool
        self.verifier = verifier or Verifier(AuthConfig.from_settings(settings))
        self.max_body = settings.dispatch_max_body_bytes if settings is not None else MAX_BODY_BYTES
        self._gauges: DatabaseGauges | None = None
        self._worker = worker
        self._openapi: dict[str, Any] | None = None

    def routes(self) -> list[BaseRoute]:
        """Every route but the public probes, which app/web/server.py serves."""
        handlers = {"openapi": self.openapi, "dispatch": self.dispatch, "job": self.job, "metrics": self.metrics,
                    "health_details": self.health_details}
        return [Route(ROUTES[name].path, self._guard(ROUTES[name], handler), methods=[ROUTES[name].method])
                for name, handler in handlers.items()]

    @staticmethod
    def check(app: Starlette) -> None:
        """Refuse to serve a route that :data:`ROUTES` does not declare."""
        declared = {(spec.method, spec.path) for spec in ROUTES.values()}
        for route in app.routes:
            if isinstance(route, Route):
                for method in (route.methods or set()) - {"HEAD"}:
                    if (method, route.path) not in declared:
                        raise RuntimeError(f"{method} {route.path} is not declared in app.web.api.ROUTES")

    def _guard(self, spec: RouteSpec, handler: Callable[[Request], Awaitable[Response]]) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                if spec.public_reason is None:
                    request.state.claims = await self.verifier.verify(
                        request.headers.get("authorization"), self.verifier.config.roles_for(spec.scrape))
                return await handler(request)
            except AuthFailure as exc:
                return error_response(exc.status, exc.code, exc.message, headers=exc.headers())
            except ApiError as exc:
                return exc.response()
            except psycopg.Error as exc:
                return database_error(exc).response()

        endpoint.__name__ = handler.__name__
        return endpoint

    # -- routes
    async def dispatch(self, request: Request) -> Response:
        # A well-formed W3C traceparent is continued; anything else is ignored, never refused.
        incoming = tracing.valid_traceparent(request.headers.get("traceparent"))
        with tracing.span("dispatch.enqueue", parent=incoming, server=True,
                          attributes={"http.request.method": "POST", "http.route": "/dispatch"}) as current:
            job = validate_dispatch(parse_json(await read_body(request, self.max_body)))
            # Tracing on: the job's run continues this span; off: the caller's trace, if it sent one.
            job_id, duplicate = await self._enqueue(job, tracing.traceparent() or incoming)
            tracing.annotate(current, job_id=job_id, duplicate=duplicate, integration=job.integration_id,
                             kind=job.kind)
            status = await self._status(job_id) if duplicate else "queued"
        return JSONResponse({"job_id": job_id, "status": status, "duplicate": duplicate})

    async def _enqueue(self, job: DispatchRequest, trace_context: str | None = None) -> tuple[int, bool]:
        from psycopg.types.json import Jsonb

        params = {**job.model_dump(), "payload": Jsonb(job.payload or {}), "source": "api"}
        async with self.pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(query("enqueue_job"), params)).fetchone()
            assert row is not None  # the function always returns one row
            job_id, duplicate = int(row[0]), bool(row[1])
            if trace_context and not duplicate:  # a duplicate's run belongs to the first request's trace
                await conn.execute(query("job_set_trace_context"), {"id": job_id, "trace_context": trace_context})
        return job_id, duplicate

    async def _status(self, job_id: int | None) -> str:
        row = await self._job_row(job_id) if job_id is not None else None
        # The idempotency ledger outlives pruned jobs: the key is still spent.
        return str(row["status"]) if row else "pruned"

    async def _job_row(self, job_id: int) -> dict[str, Any] | None:
        from psycopg.rows import dict_row

        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query("get_job"), {"id": job_id})
            row: dict[str, Any] | None = await cur.fetchone()
        return row

    async def job(self, request: Request) -> Response:
        raw = request.path_params["job_id"]
        job_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else 0
        if not 0 < job_id < 2**63:
            raise ApiError(422, "invalid_field", f"job_id: must be a positive integer, got '{raw[:40]}'",
                           field="job_id")
        row = await self._job_row(job_id)
        if row is None:
            raise ApiError(404, "job_not_found", f"no job {job_id} (it may have been pruned by retention)")
        return JSONResponse({key: _jsonable(value) for key, value in row.items()})

    async def metrics(self, request: Request) -> Response:
        from app.core import metrics

        if self._gauges is None:
            from app.web.metrics import DatabaseGauges

            self._gauges = DatabaseGauges(self.pool)
            if self._worker is not None:
                worker = self._worker
                metrics.bind_in_flight(lambda: [job.integration_id for job in list(worker.jobs.values())])
        await self._gauges.refresh()
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    async def health_details(self, request: Request) -> Response:
        health = getattr(request.app.state, "health", None)
        if health is None:
            raise ApiError(503, "health_unavailable", "this server has no health view")
        status, body = health.details()
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    async def openapi(self, request: Request) -> Response:
        if self._openapi is None:
            self._openapi = openapi_document(self.max_body)
        return JSONResponse(self._openapi)


# -- the OpenAPI document
_ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "stable, machine-readable"},
            "message": {"type": "string", "description": "what went wrong and what to do"},
            "field": {"type": "string", "description": "the offending field, for invalid_field"},
            "hint": {"type": "string", "description": "PostgreSQL's hint, for errors the database raised"},
            "details": {"type": "array", "items": {"type": "object", "properties": {
                "field": {"type": "string"}, "message": {"type": "string"}}}},
        }}},
}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_JOB_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"}, "integration_id": {"type": "string"}, "kind": {"type": "string"},
        "payload": {"type": "object"},
        "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "priority": {"type": "integer"}, "scheduled_for": _TIME, "run_after": _TIME, "enqueued_at": _TIME,
        "started_at": _TIME, "finished_at": _TIME, "lease_expires_at": _TIME,
        "attempts": {"type": "integer"}, "max_attempts": {"type": "integer"},
        "worker_id": {"type": ["string", "null"]}, "last_error": {"type": ["string", "null"]},
        "result": {"type": ["object", "null"]}, "idempotency_key": {"type": "string"},
        "source": {"type": "string"}, "schedule_id": {"type": ["integer", "null"]},
        "drift_seconds": {"type": ["number", "null"], "description": "started_at - scheduled_for"},
        "events": {"type": "array", "description": "the job's history, oldest first (dispatch.job_events)",
                   "items": {"type": "object"}},
    },
}
_DISPATCH_RESPONSE = {
    "type": "object", "required": ["job_id", "status", "duplicate"],
    "properties": {
        "job_id": {"type": "integer"},
        "status": {"type": "string", "description": "queued for a new job; a duplicate's current status, "
                                                    "or pruned when retention removed it"},
        "duplicate": {"type": "boolean", "description": "true when the idempotency key was already used"},
    },
}
_HEALTH_SCHEMA: dict[str, Any] = {"type": "object", "required": ["status"], "properties": {
    "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]}, "database": {"type": "boolean"},
    "listener": {"type": "string"}, "in_flight": {"type": "integer"}, "version": {"type": "string"},
    "duties": {"type": "object", "additionalProperties": {"type": "object", "properties": {
        "runs": {"type": "integer"}, "failing": {"type": "boolean"}}}},
    "reasons": {"type": "array", "items": {"type": "string"}}}}
_PROBE_SCHEMA = {"type": "object", "required": ["status", "version"], "properties": {
    "status": {"type": "string", "enum": ["alive", "ready", "not_ready"]}, "version": {"type": "string"},
    "reasons": {"type": "array", "items": {"type": "string", "enum": [
        "database_unavailable", "listener_disconnected", "stopping"]}}}}
_DETAILS_SCHEMA = {"type": "object", "properties": {
    **_HEALTH_SCHEMA["properties"], "ready": {"type": "boolean"}, "worker_id": {"type": "string"},
    "database_error": {"type": ["string", "null"]}, "listener_error": {"type": ["string", "null"]},
    "duties": {"type": "object", "additionalProperties": {"type": "object", "properties": {
        "runs": {"type": "integer"}, "last_error": {"type": ["string", "null"]}}}}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {401: "missing, malformed, expired or wrongly signed token", 403: "the token's role is not allowed",
            404: "not found", 409: "conflict", 413: "body over the size limit",
            422: "invalid JSON or fields (the field is named)", 503: "database unavailable or auth not configured"}
    return {str(s): _json({"$ref": "#/components/schemas/Error"}, text[s]) for s in statuses}


def _operations(max_body: int) -> dict[str, dict[str, Any]]:
    ref = "#/components/schemas/"
    return {
        "health": {"responses": {"200": _json({"$ref": ref + "Health"}, "healthy"),
                                 "503": _json({"$ref": ref + "Health"}, "not ready; reasons say why")}},
        "live": {"responses": {"200": _json({"$ref": ref + "Probe"}, "alive")}},
        "ready": {"responses": {"200": _json({"$ref": ref + "Probe"}, "ready"),
                                "503": _json({"$ref": ref + "Probe"}, "not ready; reason codes say why")}},
        "health_details": {"responses": {"200": _json({"$ref": ref + "HealthDetails"}, "healthy"),
                                         "503": _json({"$ref": ref + "HealthDetails"}, "not ready"),
                                         **_errors(401, 403)}},
        "openapi": {"responses": {"200": _json({"type": "object"}, "this document")}},
        "dispatch": {
            "parameters": [{"name": "traceparent", "in": "header", "required": False,
                            "description": "W3C trace-context (version 00): the job's run joins this trace; "
                                           "a malformed value is ignored",
                            "schema": {"type": "string", "maxLength": 55}}],
            "requestBody": {"required": True, "description": f"at most {max_body} bytes",
                            "content": {"application/json": {"schema": {"$ref": ref + "DispatchRequest"}}}},
            "responses": {"200": _json({"$ref": ref + "DispatchResponse"}, "enqueued, or the duplicate's job"),
                          **_errors(401, 403, 404, 409, 413, 422, 503)}},
        "job": {
            "parameters": [{"name": "job_id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}],
            "responses": {"200": _json({"$ref": ref + "Job"}, "the job"), **_errors(401, 403, 404, 422, 503)}},
        "metrics": {"responses": {
            "200": {"description": "Prometheus text format 0.0.4", "content": {"text/plain": {"schema": {
                "type": "string"}}}}, **_errors(401, 403, 503)}},
    }


def openapi_document(max_body: int = MAX_BODY_BYTES) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for name, operation in _operations(max_body).items():
        spec = ROUTES[name]
        operation = {"operationId": name, "summary": spec.summary, **operation}
        if spec.public_reason:
            operation |= {"security": [], "description": f"Public: {spec.public_reason}."}
        elif spec.scrape:
            operation |= {"description": "A token with the required role, or one with the metrics role "
                                         "(DISPATCH_METRICS_ROLE, default metrics): a scrape credential that opens "
                                         "this route only."}
        paths.setdefault(spec.path, {})[spec.method.lower()] = operation
    from app.web.dispatch_body import DispatchRequest

    request_schema = DispatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    return {
        "openapi": "3.1.0",
        "info": {"title": "integration-dispatch", "version": __version__,
                 "description": "Enqueue and inspect jobs; see docs/api.md."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                           "description": "a JWT whose role claim is the required role"}},
            "schemas": {"DispatchRequest": request_schema, "DispatchResponse": _DISPATCH_RESPONSE,
                        "Job": _JOB_SCHEMA, "Error": _ERROR_SCHEMA, "Health": _HEALTH_SCHEMA,
                        "Probe": _PROBE_SCHEMA, "HealthDetails": _DETAILS_SCHEMA},
        },
        "security": [{"bearer": []}],
    }
