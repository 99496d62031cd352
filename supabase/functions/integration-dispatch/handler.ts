// The function's HTTP behaviour as a pure function of (request, deps): index.ts wires the
// real database and environment in; tests/ passes fakes for the database only.
//
//   GET  .../health   public liveness: {"status":"ok","function":...,"version":...}
//   POST .../         (or .../dispatch) enqueue through dispatch.enqueue_job -> {job_id, status, duplicate}
//
// Order of checks, cheapest for us and most costly for an attacker first: route and method,
// the caller's credentials (before a byte of the body is read), the content type, the size,
// the JSON, the fields, the integration and its adapter, then the insert.

import type { Deps, DispatchRequest, DispatchResult, ErrorBody } from "shared/types.ts";
import { DbError, FUNCTION_NAME, FUNCTION_VERSION } from "shared/types.ts";
import { AuthFailure } from "shared/auth.ts";
import { parseBody, validateDispatch, ValidationError } from "./validate.ts";

const BASE_HEADERS = { "Content-Type": "application/json", "Cache-Control": "no-store" };

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...BASE_HEADERS, ...headers } });
}

export function errorResponse(
  status: number,
  code: string,
  message: string,
  extra: Partial<ErrorBody["error"]> = {},
  headers: Record<string, string> = {},
): Response {
  return json(status, { error: { code, message, ...extra } }, headers);
}

/** The route inside the function: the platform passes `/integration-dispatch/<rest>`. */
export function routeOf(pathname: string): string {
  let path = pathname.replace(/\/+$/, "");
  if (path.startsWith("/functions/v1")) path = path.slice("/functions/v1".length);
  if (path === `/${FUNCTION_NAME}` || path.startsWith(`/${FUNCTION_NAME}/`)) {
    path = path.slice(FUNCTION_NAME.length + 1);
  }
  return path === "" ? "/" : path;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Partial<ErrorBody["error"]> = {},
  ) {
    super(message);
  }
}

async function readLimited(request: Request, limit: number): Promise<Uint8Array> {
  const tooLarge = () =>
    new HttpError(413, "body_too_large", `the request body is larger than ${limit} bytes (DISPATCH_MAX_BODY_BYTES)`);
  const declared = request.headers.get("content-length");
  if (declared && /^\d+$/.test(declared) && Number(declared) > limit) throw tooLarge();
  if (!request.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

function dbErrorToHttp(e: DbError): HttpError {
  const extra = e.hint ? { hint: e.hint } : {};
  switch (e.kind) {
    case "unavailable":
      return new HttpError(503, "database_unavailable", "the database is unavailable; try again shortly");
    case "foreign_key":
      return new HttpError(404, "unknown_integration", e.message, extra);
    case "unique":
      return new HttpError(409, "conflict", e.message, extra);
    case "rejected":
      return new HttpError(422, "rejected_by_database", e.message, extra);
    default:
      return new HttpError(
        500,
        "internal_error",
        "the job could not be enqueued because of an internal error; the function's log has the details",
      );
  }
}

async function dispatch(request: Request, deps: Deps): Promise<{ job: DispatchRequest; result: DispatchResult }> {
  const type = request.headers.get("content-type");
  if (type && !/^application\/(.+\+)?json\s*(;|$)/i.test(type)) {
    throw new HttpError(
      415,
      "unsupported_media_type",
      `the body must be JSON (Content-Type: application/json), not '${type.slice(0, 80)}'`,
    );
  }
  const body = validateDispatch(parseBody(await readLimited(request, deps.maxBodyBytes)));
  const adapter = await deps.db.adapterOf(body.integration_id);
  if (adapter === null) {
    throw new HttpError(
      404,
      "unknown_integration",
      `no integration '${body.integration_id}' in dispatch.integrations`,
      {
        field: "integration_id",
        hint: "add it first: `integration-dispatch integrations add` or INSERT INTO dispatch.integrations",
      },
    );
  }
  if (!deps.adapters.has(adapter)) {
    throw new HttpError(
      422,
      "unknown_adapter",
      `integration '${body.integration_id}' uses adapter '${adapter}', which this deployment does not run ` +
        `(known: ${[...deps.adapters].sort().join(", ")})`,
      {
        field: "integration_id",
        hint: "fix dispatch.integrations.adapter, or name a third-party adapter in DISPATCH_EXTRA_ADAPTERS",
      },
    );
  }
  return { job: body, result: await deps.db.enqueue(body) };
}

/** The whole function: never throws, always answers JSON. */
export async function handle(request: Request, deps: Deps): Promise<Response> {
  const started = performance.now();
  const route = routeOf(new URL(request.url).pathname);
  try {
    if (route === "/health") {
      if (request.method !== "GET" && request.method !== "HEAD") {
        return errorResponse(405, "method_not_allowed", `${request.method} ${route}: use GET`, {}, {
          Allow: "GET, HEAD",
        });
      }
      return json(200, { status: "ok", function: FUNCTION_NAME, version: FUNCTION_VERSION });
    }
    if (route !== "/" && route !== "/dispatch") {
      return errorResponse(
        404,
        "not_found",
        `no route ${route.slice(0, 100)}: use POST / to enqueue, GET /health to probe`,
      );
    }
    if (request.method !== "POST") {
      return errorResponse(405, "method_not_allowed", `${request.method} ${route}: use POST with a JSON body`, {}, {
        Allow: "POST",
      });
    }
    const caller = await deps.auth.verify(request.headers);
    const { job, result } = await dispatch(request, deps);
    deps.log({
      event: "dispatch.enqueued",
      job_id: result.job_id,
      integration_id: job.integration_id,
      kind: job.kind,
      duplicate: result.duplicate,
      caller: caller.method,
      ms: Math.round(performance.now() - started),
    });
    return json(200, result);
  } catch (e) {
    if (e instanceof AuthFailure) {
      deps.log({ event: "dispatch.refused", status: e.status, code: e.code });
      return errorResponse(e.status, e.code, e.message, {}, e.headers());
    }
    if (e instanceof ValidationError) {
      const first = e.details[0];
      const extra = first ? { field: first.field, details: e.details } : {};
      return errorResponse(422, e.code, e.message, extra);
    }
    const http = e instanceof HttpError ? e : e instanceof DbError ? dbErrorToHttp(e) : null;
    if (http) {
      if (http.status >= 500) {
        deps.log({
          event: "dispatch.failed",
          status: http.status,
          code: http.code,
          sqlstate: (e as DbError).sqlstate,
          detail: (e as Error).message.slice(0, 300),
        });
      }
      return errorResponse(
        http.status,
        http.code,
        http.message,
        http.extra,
        http.status === 503 ? { "Retry-After": "1" } : {},
      );
    }
    deps.log({
      event: "dispatch.failed",
      status: 500,
      code: "internal_error",
      detail: String((e as Error)?.name ?? e),
    });
    return errorResponse(
      500,
      "internal_error",
      "the request failed because of an internal error; the function's log has the details",
    );
  }
}

/** What the function serves when its environment is unusable: every request 503, reason in the log. */
export function misconfigured(reason: string, log: (line: string) => void): (request: Request) => Response {
  log(`${FUNCTION_NAME}: configuration error: ${reason}`);
  return (request: Request) => {
    const route = routeOf(new URL(request.url).pathname);
    const message = "the function is misconfigured; its log names the variable to set";
    if (route === "/health") {
      return json(503, { status: "misconfigured", function: FUNCTION_NAME, version: FUNCTION_VERSION });
    }
    return errorResponse(503, "misconfigured", message);
  };
}
