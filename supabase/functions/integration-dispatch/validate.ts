// The POST body, checked field by field with the daemon's rules (app/api.py DispatchRequest),
// so a request the function accepts is one the SQL function accepts, and an error names the
// field and says what to send. What JSON allows but Postgres cannot store (NUL, lone
// surrogates) and what JavaScript would silently change (integers beyond 2^53, numbers that
// overflow to Infinity) are refused here, never left to fail in the driver.

import type { DispatchRequest } from "shared/types.ts";

export const KIND_PATTERN = /^[a-z][a-z0-9_.-]{0,62}$/;
export const MAX_JSON_DEPTH = 64;
const EARLIEST = Date.UTC(1970, 0, 1);
const LATEST = Date.UTC(9000, 0, 1);
// RFC 3339 with a mandatory offset (an instant, not a wall-clock time).
const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))$/;

const FIELDS = [
  "integration_id",
  "kind",
  "payload",
  "scheduled_for",
  "idempotency_key",
  "priority",
  "max_attempts",
  "run_after",
] as const;

export interface FieldError {
  field: string;
  message: string;
}

export class ValidationError extends Error {
  constructor(readonly code: "invalid_json" | "invalid_field", message: string, readonly details: FieldError[] = []) {
    super(message);
    this.name = "ValidationError";
  }
}

const typeName = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

/** The body as JSON; ValidationError(invalid_json) when it is not. */
export function parseBody(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ValidationError("invalid_json", "the body is not valid UTF-8");
  }
  if (!text.trim()) throw new ValidationError("invalid_json", "the body is empty: send a JSON object");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ValidationError("invalid_json", `the body is not valid JSON: ${(e as Error).message.slice(0, 200)}`);
  }
}

/** The first thing in `value` Postgres cannot store or JavaScript has changed, or null. */
export function unstorable(value: unknown, path: string, depth = 0): FieldError | null {
  const field = path || "(body)";
  if (depth > MAX_JSON_DEPTH) return { field, message: `nested more than ${MAX_JSON_DEPTH} levels deep` };
  if (typeof value === "string") {
    if (value.includes("\u0000")) {
      return {
        field,
        message:
          "contains a NUL character (\\u0000), which PostgreSQL cannot store in text or jsonb; remove it or encode the value (e.g. base64)",
      };
    }
    if (!value.isWellFormed()) {
      return {
        field,
        message:
          "contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which is not valid Unicode; send the character itself or a correct pair",
      };
    }
  } else if (typeof value === "number") {
    if (!Number.isFinite(value)) return { field, message: "is a number too large to represent; send it as a string" };
    if (Number.isInteger(value) && !Number.isSafeInteger(value)) {
      return { field, message: "is an integer beyond ±2^53, which would lose precision; send it as a string" };
    }
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = unstorable(value[i], `${path}[${i}]`, depth + 1);
      if (bad) return bad;
    }
  } else if (typeof value === "object" && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      const keyBad = unstorable(key, `${field} (a key)`, MAX_JSON_DEPTH);
      if (keyBad) return keyBad;
      const bad = unstorable(item, path ? `${path}.${key}` : key, depth + 1);
      if (bad) return bad;
    }
  }
  return null;
}

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** A timestamptz literal Postgres accepts for the same instant, or an error message. */
export function checkTimestamp(value: unknown): { ok: string } | { error: string } {
  if (typeof value !== "string") return { error: `must be an RFC 3339 timestamp string, not ${typeName(value)}` };
  const m = TIMESTAMP.exec(value);
  if (!m) {
    return {
      error: "must be an RFC 3339 timestamp with an offset, e.g. 2026-12-01T09:30:00Z or 2026-12-01T10:30:00+01:00",
    };
  }
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0));
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || second > 59) {
    return { error: `'${value}' is not a real date and time` };
  }
  const offsetHours = m[9] ? Number(m[10]) : 0;
  const offsetMinutes = m[9] ? Number(m[11]) : 0;
  if (offsetHours > 23 || offsetMinutes > 59) return { error: `'${value}' has an impossible UTC offset` };
  const instant = Date.parse(
    `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6] ?? "00"}${(m[7] ?? "").slice(0, 4)}${
      m[8] ? "Z" : `${m[9]}${m[10]}:${m[11]}`
    }`,
  );
  if (!(instant >= EARLIEST && instant < LATEST)) return { error: "must be between 1970-01-01 and 9000-01-01" };
  // Postgres refuses offsets beyond ±15:59 that RFC 3339 allows: send those as UTC (ms precision).
  return { ok: offsetHours <= 15 ? value : new Date(instant).toISOString() };
}

function checkInt(value: unknown, min: number, max: number): string | null {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    return `must be an integer, not ${Number.isFinite(value as number) ? "a fraction" : typeName(value)}`;
  }
  if (value < min || value > max) return `must be between ${min} and ${max}`;
  return null;
}

/** The request, or ValidationError listing every problem (the message names the first). */
export function validateDispatch(data: unknown): DispatchRequest {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ValidationError("invalid_json", `the body must be a JSON object, not ${typeName(data)}`);
  }
  const body = data as Record<string, unknown>;
  const bad = unstorable(body, "");
  if (bad) throw new ValidationError("invalid_field", `${bad.field}: ${bad.message}`, [bad]);

  const errors: FieldError[] = [];
  const fail = (field: string, message: string) => errors.push({ field, message });
  for (const key of Object.keys(body)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      fail(key.slice(0, 64), `unknown field; the fields are ${FIELDS.join(", ")}`);
    }
  }

  const id = body.integration_id;
  if (id === undefined) fail("integration_id", "is required: the id (slug) of an integration in dispatch.integrations");
  else if (typeof id !== "string") fail("integration_id", `must be a string, not ${typeName(id)}`);
  else if (id.length < 1 || id.length > 63) fail("integration_id", "must be 1 to 63 characters");

  const kind = body.kind;
  if (kind === undefined) fail("kind", "is required, e.g. sync or export");
  else if (typeof kind !== "string") fail("kind", `must be a string, not ${typeName(kind)}`);
  else if (!KIND_PATTERN.test(kind)) fail("kind", "must match ^[a-z][a-z0-9_.-]{0,62}$, e.g. sync or export");

  const payload = body.payload;
  if (payload !== undefined && payload !== null && (typeof payload !== "object" || Array.isArray(payload))) {
    fail("payload", `must be a JSON object handed to the adapter, not ${typeName(payload)}`);
  }

  const key = body.idempotency_key;
  if (key !== undefined && key !== null) {
    if (typeof key !== "string") fail("idempotency_key", `must be a string, not ${typeName(key)}`);
    else if (key.length < 1 || key.length > 512) fail("idempotency_key", "must be 1 to 512 characters");
  }

  for (const [field, min, max] of [["priority", -32768, 32767], ["max_attempts", 1, 1000]] as const) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    const problem = checkInt(value, min, max);
    if (problem) fail(field, problem);
  }

  const times: Record<string, string | null> = { scheduled_for: null, run_after: null };
  for (const field of ["scheduled_for", "run_after"] as const) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    const checked = checkTimestamp(value);
    if ("error" in checked) fail(field, checked.error);
    else times[field] = checked.ok;
  }

  if (errors.length) throw new ValidationError("invalid_field", `${errors[0].field}: ${errors[0].message}`, errors);
  return {
    integration_id: id as string,
    kind: kind as string,
    payload: (payload ?? {}) as Record<string, unknown>,
    scheduled_for: times.scheduled_for,
    idempotency_key: (key as string | null | undefined) ?? null,
    priority: (body.priority as number | null | undefined) ?? null,
    max_attempts: (body.max_attempts as number | null | undefined) ?? null,
    run_after: times.run_after,
  };
}
