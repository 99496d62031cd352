// deno test for the integration-dispatch handler: real HTTP semantics (Request/Response),
// real WebCrypto, a fake database (the real one is exercised by
// scripts/test-edge-function-local.sh against Postgres).
//
//   scripts/deno test --config supabase/functions/integration-dispatch/deno.json supabase/functions/tests/

import { handle, misconfigured, routeOf } from "../integration-dispatch/handler.ts";
import { checkTimestamp, validateDispatch, ValidationError } from "../integration-dispatch/validate.ts";
import { classify } from "../integration-dispatch/db.ts";
import { constantTimeEqual, Verifier } from "../_shared/auth.ts";
import { ConfigError, loadConfig } from "../_shared/credential-provider.ts";
import { allowedAdapters, BUILTIN_ADAPTERS } from "../_shared/adapter-registry.ts";
import type { Db, Deps, DispatchRequest, DispatchResult } from "../_shared/types.ts";
import { DbError } from "../_shared/types.ts";

// ------------------------------------------------------------------ tiny assertion helpers
function assertEquals(actual: unknown, expected: unknown, msg = ""): void {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${msg}\nexpected ${e}\n     got ${a}`);
}
function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}
async function assertRejects(fn: () => Promise<unknown> | unknown, match: RegExp): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    assert(match.test((e as Error).message), `error '${(e as Error).message}' does not match ${match}`);
    return e as Error;
  }
  throw new Error(`expected an error matching ${match}`);
}

// ------------------------------------------------------------------ fixtures
const SECRET_KEY = "sb_secret_" + "k".repeat(32);
const SERVICE_ROLE_KEY = "legacy.service-role.key-" + "x".repeat(20);
const JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long";

class FakeDb implements Db {
  integrations = new Map<string, string>([["acme-noop", "noop"], ["acme-legacy", "carrier_pigeon"]]);
  calls: DispatchRequest[] = [];
  keys = new Map<string, number>();
  failWith: DbError | null = null;
  next = 41;

  adapterOf(id: string): Promise<string | null> {
    if (this.failWith) return Promise.reject(this.failWith);
    return Promise.resolve(this.integrations.get(id) ?? null);
  }
  enqueue(r: DispatchRequest): Promise<DispatchResult> {
    if (this.failWith) return Promise.reject(this.failWith);
    this.calls.push(r);
    if (r.idempotency_key && this.keys.has(r.idempotency_key)) {
      return Promise.resolve({ job_id: this.keys.get(r.idempotency_key)!, status: "running", duplicate: true });
    }
    const id = ++this.next;
    if (r.idempotency_key) this.keys.set(r.idempotency_key, id);
    return Promise.resolve({ job_id: id, status: "queued", duplicate: false });
  }
}

interface Setup {
  deps: Deps;
  db: FakeDb;
  logs: Record<string, unknown>[];
}

function setup(jwks: JsonWebKey[] = []): Setup {
  const db = new FakeDb();
  const logs: Record<string, unknown>[] = [];
  const deps: Deps = {
    db,
    auth: new Verifier({
      keys: new Map([["default", SECRET_KEY], ["service_role", SERVICE_ROLE_KEY]]),
      jwtSecret: JWT_SECRET,
      jwks,
      requiredRole: "service_role",
    }),
    adapters: allowedAdapters(undefined),
    maxBodyBytes: 4096,
    log: (e) => logs.push(e),
  };
  return { deps, db, logs };
}

const URL_BASE = "http://127.0.0.1/integration-dispatch";

function post(body: unknown, headers: Record<string, string> = { apikey: SECRET_KEY }, path = ""): Request {
  return new Request(URL_BASE + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

const b64url = (bytes: Uint8Array) =>
  btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const b64json = (v: unknown) => b64url(new TextEncoder().encode(JSON.stringify(v)));

async function hs256(
  claims: Record<string, unknown>,
  secret = JWT_SECRET,
  header: Record<string, unknown> = { alg: "HS256", typ: "JWT" },
) {
  const input = `${b64json(header)}.${b64json(claims)}`;
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return `${input}.${b64url(new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input))))}`;
}

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;
const valid = { integration_id: "acme-noop", kind: "sync", payload: { since: "2026-11-30" } };

// deno-lint-ignore no-explicit-any -- response bodies are read field by field in assertions
async function bodyOf(res: Response): Promise<Record<string, any>> {
  assertEquals(res.headers.get("content-type"), "application/json");
  return await res.json();
}

// ------------------------------------------------------------------ health and routes
Deno.test("GET health answers 200 JSON with no secrets and needs no credentials", async () => {
  const { deps } = setup();
  for (
    const path of ["/health", "/health/", "/functions/v1/integration-dispatch/health", "/integration-dispatch/health"]
  ) {
    const res = await handle(
      new Request("http://127.0.0.1" + (path.startsWith("/health") ? "/integration-dispatch" + path : path)),
      deps,
    );
    assertEquals(res.status, 200, path);
    const body = await bodyOf(res);
    assertEquals(body, { status: "ok", function: "integration-dispatch", version: "0.1.0" });
    assert(!JSON.stringify(body).includes(SECRET_KEY));
  }
});

Deno.test("routes: the platform prefix is stripped; unknown routes and wrong methods are JSON errors", async () => {
  assertEquals(routeOf("/integration-dispatch"), "/");
  assertEquals(routeOf("/integration-dispatch/"), "/");
  assertEquals(routeOf("/functions/v1/integration-dispatch/health"), "/health");
  assertEquals(routeOf("/health"), "/health");
  const { deps } = setup();
  const notFound = await handle(new Request(URL_BASE + "/nope"), deps);
  assertEquals(notFound.status, 404);
  assertEquals((await bodyOf(notFound)).error.code, "not_found");
  const get = await handle(new Request(URL_BASE), deps);
  assertEquals(get.status, 405);
  assertEquals(get.headers.get("allow"), "POST");
  const postHealth = await handle(new Request(URL_BASE + "/health", { method: "POST" }), deps);
  assertEquals(postHealth.status, 405);
});

// ------------------------------------------------------------------ enqueue
Deno.test("POST enqueues and answers {job_id, status, duplicate}; a repeated key is the first job", async () => {
  const { deps, db, logs } = setup();
  const res = await handle(
    post({ ...valid, idempotency_key: "inv-1", priority: -3, max_attempts: 2, run_after: "2026-12-01T10:00:00+01:00" }),
    deps,
  );
  assertEquals(res.status, 200);
  assertEquals(await bodyOf(res), { job_id: 42, status: "queued", duplicate: false });
  assertEquals(db.calls[0], {
    integration_id: "acme-noop",
    kind: "sync",
    payload: { since: "2026-11-30" },
    scheduled_for: null,
    idempotency_key: "inv-1",
    priority: -3,
    max_attempts: 2,
    run_after: "2026-12-01T10:00:00+01:00",
  });
  const again = await handle(post({ ...valid, idempotency_key: "inv-1" }), deps);
  assertEquals(await bodyOf(again), { job_id: 42, status: "running", duplicate: true });
  assert(!JSON.stringify(logs).includes("since"), "the payload is never logged");
  assert(!JSON.stringify(logs).includes(SECRET_KEY), "keys are never logged");
  // POST /dispatch (the daemon's path) is the same route.
  assertEquals((await handle(post(valid, undefined, "/dispatch"), deps)).status, 200);
});

Deno.test("payload defaults to {}", async () => {
  const { deps, db } = setup();
  assertEquals((await handle(post({ integration_id: "acme-noop", kind: "sync" }), deps)).status, 200);
  assertEquals(db.calls[0].payload, {});
});

// ------------------------------------------------------------------ credentials
Deno.test("credentials: none, wrong, publishable and malformed are refused before the body is read", async () => {
  const { deps, db } = setup();
  const cases: [Record<string, string>, number, string][] = [
    [{}, 401, "missing_credentials"],
    [{ apikey: "sb_secret_" + "z".repeat(32) }, 401, "invalid_api_key"],
    [{ apikey: "sb_publishable_abc" }, 403, "publishable_key"],
    [{ Authorization: "Basic dXNlcjpwYXNz" }, 401, "malformed_credentials"],
    [{ Authorization: "Bearer not-a-jwt" }, 401, "invalid_credentials"],
    [{ Authorization: `Bearer ${SECRET_KEY}x` }, 401, "invalid_api_key"],
  ];
  for (const [headers, status, code] of cases) {
    const res = await handle(post("{not json", headers), deps);
    assertEquals(res.status, status, JSON.stringify(headers));
    const body = await bodyOf(res);
    assertEquals(body.error.code, code, JSON.stringify(headers));
    assert(res.headers.get("www-authenticate")?.startsWith("Bearer realm="), "a challenge is sent");
    assert(!JSON.stringify(body).includes(SECRET_KEY));
  }
  assertEquals(db.calls.length, 0);
});

Deno.test("credentials: a secret key (apikey or Bearer) and the legacy service_role key are accepted", async () => {
  const { deps } = setup();
  const accepted: Record<string, string>[] = [{ apikey: SECRET_KEY }, { Authorization: `Bearer ${SECRET_KEY}` }, {
    Authorization: `Bearer ${SERVICE_ROLE_KEY}`,
  }, { apikey: "sb_publishable_x", Authorization: `Bearer ${SECRET_KEY}` }];
  for (const headers of accepted) {
    assertEquals((await handle(post(valid, headers), deps)).status, 200, JSON.stringify(Object.keys(headers)));
  }
});

Deno.test("credentials: HS256 JWTs need role service_role, a valid signature, exp, and no alg tricks", async () => {
  const { deps } = setup();
  const ok = await hs256({ role: "service_role", exp: inAnHour() });
  assertEquals((await handle(post(valid, { Authorization: `Bearer ${ok}` }), deps)).status, 200);
  const cases: [string, number, string][] = [
    [await hs256({ role: "anon", exp: inAnHour() }), 403, "wrong_role"],
    [
      await hs256({ role: "service_role", exp: inAnHour() }, "another-secret-another-secret-another-secret"),
      401,
      "invalid_signature",
    ],
    [await hs256({ role: "service_role", exp: Math.floor(Date.now() / 1000) - 60 }), 401, "expired_token"],
    [await hs256({ role: "service_role" }), 401, "invalid_token"],
    [
      `${b64json({ alg: "none" })}.${b64json({ role: "service_role", exp: inAnHour() })}.`,
      401,
      "unsupported_algorithm",
    ],
    [
      await hs256({ role: "service_role", exp: inAnHour() }, JWT_SECRET, { alg: "ES256", kid: "k1" }),
      401,
      "unknown_key",
    ],
  ];
  for (const [token, status, code] of cases) {
    const res = await handle(post(valid, { Authorization: `Bearer ${token}` }), deps);
    assertEquals([res.status, (await bodyOf(res)).error.code], [status, code]);
  }
});

Deno.test("credentials: ES256 JWTs verify against SUPABASE_JWKS by kid; an HS256 token cannot pose as one", async () => {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const jwk = { ...(await crypto.subtle.exportKey("jwk", pair.publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  const { deps } = setup([jwk]);
  const sign = async (claims: Record<string, unknown>, kid = "k1") => {
    const input = `${b64json({ alg: "ES256", kid, typ: "JWT" })}.${b64json(claims)}`;
    const sig = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      pair.privateKey,
      new TextEncoder().encode(input),
    );
    return `${input}.${b64url(new Uint8Array(sig))}`;
  };
  const ok = await sign({ role: "service_role", exp: inAnHour() });
  assertEquals((await handle(post(valid, { Authorization: `Bearer ${ok}` }), deps)).status, 200);
  const user = await sign({ role: "authenticated", exp: inAnHour() });
  assertEquals((await handle(post(valid, { Authorization: `Bearer ${user}` }), deps)).status, 403);
  const tampered = ok.slice(0, ok.lastIndexOf(".") - 2) + (ok.at(-1) === "A" ? "BB" : "AA") +
    ok.slice(ok.lastIndexOf("."));
  assertEquals((await handle(post(valid, { Authorization: `Bearer ${tampered}` }), deps)).status, 401);
  // alg confusion: an HS256 token whose HMAC key would be the public JWK text.
  const confused = await hs256({ role: "service_role", exp: inAnHour() }, JSON.stringify(jwk), {
    alg: "HS256",
    kid: "k1",
  });
  assertEquals((await handle(post(valid, { Authorization: `Bearer ${confused}` }), deps)).status, 401);
});

Deno.test("constantTimeEqual compares any lengths", async () => {
  assert(await constantTimeEqual("abc", "abc"));
  assert(!(await constantTimeEqual("abc", "abd")));
  assert(!(await constantTimeEqual("abc", "abcd")));
  assert(!(await constantTimeEqual("", "a")));
});

// ------------------------------------------------------------------ validation
Deno.test("validation: every problem names its field and says what to send", async () => {
  const { deps, db } = setup();
  const cases: [unknown, string, RegExp][] = [
    [{ kind: "sync" }, "integration_id", /is required/],
    [{ integration_id: "acme-noop" }, "kind", /is required/],
    [{ ...valid, kind: "Sync!" }, "kind", /must match/],
    [{ ...valid, payload: [1, 2] }, "payload", /JSON object/],
    [{ ...valid, payload: "x" }, "payload", /not string/],
    [{ ...valid, priority: true }, "priority", /integer/],
    [{ ...valid, priority: 1.5 }, "priority", /integer/],
    [{ ...valid, priority: 40000 }, "priority", /between -32768 and 32767/],
    [{ ...valid, max_attempts: 0 }, "max_attempts", /between 1 and 1000/],
    [{ ...valid, run_after: "tomorrow" }, "run_after", /RFC 3339/],
    [{ ...valid, run_after: "2026-12-01T10:00:00" }, "run_after", /offset/],
    [{ ...valid, scheduled_for: "2026-02-30T00:00:00Z" }, "scheduled_for", /not a real date/],
    [{ ...valid, scheduled_for: "9999-01-01T00:00:00Z" }, "scheduled_for", /between 1970/],
    [{ ...valid, idempotency_key: "" }, "idempotency_key", /1 to 512/],
    [{ ...valid, integration_id: "x".repeat(64) }, "integration_id", /1 to 63/],
    [{ ...valid, extra: 1 }, "extra", /unknown field/],
    [{ ...valid, payload: { a: "nul\u0000" } }, "payload.a", /NUL/],
    [{ ...valid, payload: { a: "\ud800" } }, "payload.a", /surrogate/],
    [{ ...valid, payload: { n: 2 ** 60 } }, "payload.n", /2\^53/],
  ];
  for (const [body, field, message] of cases) {
    const res = await handle(post(body), deps);
    const out = await bodyOf(res);
    assertEquals([res.status, out.error.code, out.error.field], [422, "invalid_field", field], JSON.stringify(body));
    assert(message.test(out.error.message), `${out.error.message} !~ ${message}`);
  }
  assertEquals(db.calls.length, 0);
});

Deno.test("validation: a huge number that JSON.parse turns into Infinity is refused", async () => {
  const { deps } = setup();
  const res = await handle(post('{"integration_id":"acme-noop","kind":"sync","payload":{"x":1e400}}'), deps);
  assertEquals(res.status, 422);
  assert(/too large/.test((await bodyOf(res)).error.message));
});

Deno.test("validation: not JSON, not an object, too large, wrong content type", async () => {
  const { deps } = setup();
  const notJson = await handle(post("{nope"), deps);
  assertEquals([notJson.status, (await bodyOf(notJson)).error.code], [422, "invalid_json"]);
  const array = await handle(post("[1]"), deps);
  assertEquals([array.status, (await bodyOf(array)).error.message], [422, "the body must be a JSON object, not array"]);
  const empty = await handle(post(""), deps);
  assertEquals((await bodyOf(empty)).error.message, "the body is empty: send a JSON object");
  const big = await handle(post({ ...valid, payload: { blob: "x".repeat(5000) } }), deps);
  assertEquals([big.status, (await bodyOf(big)).error.code], [413, "body_too_large"]);
  const form = await handle(
    new Request(URL_BASE, {
      method: "POST",
      headers: { apikey: SECRET_KEY, "Content-Type": "text/plain" },
      body: "{}",
    }),
    deps,
  );
  assertEquals([form.status, (await bodyOf(form)).error.code], [415, "unsupported_media_type"]);
});

Deno.test("checkTimestamp keeps Postgres-safe offsets and converts the rest to UTC", () => {
  assertEquals(checkTimestamp("2026-12-01T10:00:00.123456+01:00"), { ok: "2026-12-01T10:00:00.123456+01:00" });
  assertEquals(checkTimestamp("2026-12-01T23:30:00+20:00"), { ok: "2026-12-01T03:30:00.000Z" });
  assert("error" in checkTimestamp(1733040000));
});

Deno.test("validateDispatch throws ValidationError with every problem in details", async () => {
  const e = await assertRejects(() => validateDispatch({ kind: 1, priority: "x" }), /integration_id: is required/);
  assert(e instanceof ValidationError);
  assertEquals(e.details.map((d) => d.field), ["integration_id", "kind", "priority"]);
});

// ------------------------------------------------------------------ the database's answers
Deno.test("unknown integration 404, unknown adapter 422, both saying what to fix", async () => {
  const { deps } = setup();
  const missing = await handle(post({ ...valid, integration_id: "nobody" }), deps);
  const m = await bodyOf(missing);
  assertEquals([missing.status, m.error.code, m.error.field], [404, "unknown_integration", "integration_id"]);
  assert(/integrations add/.test(m.error.hint));
  const legacy = await handle(post({ ...valid, integration_id: "acme-legacy" }), deps);
  const l = await bodyOf(legacy);
  assertEquals([legacy.status, l.error.code], [422, "unknown_adapter"]);
  assert(l.error.message.includes("carrier_pigeon") && l.error.message.includes("noop"));
  const extra: Deps = { ...deps, adapters: allowedAdapters("carrier_pigeon") };
  assertEquals((await handle(post({ ...valid, integration_id: "acme-legacy" }), extra)).status, 200);
});

Deno.test("database errors: unavailable 503 with Retry-After, rejected 422 with Postgres' message and hint, internal 500 without details", async () => {
  const { deps, db, logs } = setup();
  db.failWith = new DbError("unavailable", "connect ECONNREFUSED 127.0.0.1:5432");
  const down = await handle(post(valid), deps);
  assertEquals([down.status, down.headers.get("retry-after"), (await bodyOf(down)).error.code], [
    503,
    "1",
    "database_unavailable",
  ]);
  db.failWith = new DbError("rejected", "idempotency key namespace is reserved", "use your own prefix", "P0001");
  const rejected = await bodyOf(await handle(post(valid), deps));
  assertEquals(rejected.error, {
    code: "rejected_by_database",
    message: "idempotency key namespace is reserved",
    hint: "use your own prefix",
  });
  db.failWith = new DbError("internal", "relation dispatch.jobs does not exist", undefined, "42P01");
  const internal = await handle(post(valid), deps);
  const i = await bodyOf(internal);
  assertEquals(internal.status, 500);
  assert(!i.error.message.includes("dispatch.jobs"), "internals stay in the log");
  assert(logs.some((l) => l.sqlstate === "42P01"));
});

Deno.test("classify maps driver errors once", () => {
  assertEquals(classify({ name: "PostgresError", code: "23503", message: "fk" }).kind, "foreign_key");
  assertEquals(classify({ name: "PostgresError", code: "22P02", message: "bad" }).kind, "rejected");
  assertEquals(classify({ name: "PostgresError", code: "P0001", message: "raise", hint: "h" }).hint, "h");
  assertEquals(classify({ name: "PostgresError", code: "57P01", message: "admin shutdown" }).kind, "unavailable");
  assertEquals(classify({ code: "ECONNREFUSED", message: "refused" }).kind, "unavailable");
  assertEquals(classify(new TypeError("boom")).kind, "internal");
});

// ------------------------------------------------------------------ configuration
function env(vars: Record<string, string>) {
  return { get: (name: string) => vars[name] };
}
const DB_URL = "postgresql://postgres:hunter2-db-password@127.0.0.1:5432/postgres";

Deno.test("loadConfig fails closed with one line naming the variable, never a value", async () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ SUPABASE_SERVICE_ROLE_KEY: SERVICE_ROLE_KEY }, /^SUPABASE_DB_URL is not set/],
    [
      { SUPABASE_DB_URL: "mysql://x:hunter2-db-password@h/db", SUPABASE_SERVICE_ROLE_KEY: SERVICE_ROLE_KEY },
      /^SUPABASE_DB_URL is not a postgres/,
    ],
    [{ SUPABASE_DB_URL: DB_URL }, /^SUPABASE_SERVICE_ROLE_KEY is not set/],
    [
      { SUPABASE_DB_URL: DB_URL, SUPABASE_SECRET_KEYS: "sb_secret_not_json" },
      /^SUPABASE_SECRET_KEYS is not valid JSON/,
    ],
    [{ SUPABASE_DB_URL: DB_URL, SUPABASE_JWT_SECRET: "short" }, /^SUPABASE_JWT_SECRET is shorter/],
    [{ SUPABASE_DB_URL: DB_URL, SUPABASE_JWKS: "[]" }, /^SUPABASE_JWKS must be/],
    [{ SUPABASE_DB_URL: DB_URL, DISPATCH_JWT_SECRET: "short" }, /^DISPATCH_JWT_SECRET is shorter/],
    [
      { DISPATCH_DB_URL: "http://hunter2-db-password@h", SUPABASE_JWT_SECRET: JWT_SECRET },
      /^DISPATCH_DB_URL is not a postgres/,
    ],
    [
      { SUPABASE_DB_URL: DB_URL, SUPABASE_SERVICE_ROLE_KEY: SERVICE_ROLE_KEY, SUPABASE_URL: "ftp://x" },
      /^SUPABASE_URL is not/,
    ],
  ];
  for (const [vars, message] of cases) {
    const e = await assertRejects(() => loadConfig(env(vars)), message);
    assert(e instanceof ConfigError);
    assert(!e.message.includes("\n"), "one line");
    assert(!e.message.includes("hunter2") && !e.message.includes("sb_secret_not_json"), "no value in the message");
  }
});

Deno.test("loadConfig collects secret keys, the legacy key, the JWT secret and the JWKS", () => {
  const config = loadConfig(env({
    SUPABASE_DB_URL: DB_URL,
    SUPABASE_URL: "https://abcdefghijklmnop.supabase.co",
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: SECRET_KEY }),
    SUPABASE_SERVICE_ROLE_KEY: SERVICE_ROLE_KEY,
    SUPABASE_JWT_SECRET: JWT_SECRET,
    SUPABASE_JWKS: '{"keys":[]}',
  }));
  assertEquals([...config.keys.keys()], ["default", "service_role"]);
  assertEquals(config.dbUrl, DB_URL);
  const pooled = loadConfig(env({
    SUPABASE_DB_URL: DB_URL,
    DISPATCH_DB_URL: "postgresql://postgres.ref:pw@pooler.example:6543/postgres",
    DISPATCH_JWT_SECRET: JWT_SECRET,
  }));
  assertEquals([pooled.dbUrl.endsWith(":6543/postgres"), pooled.jwtSecret], [true, JWT_SECRET]);
  assertEquals([config.requiredRole, config.maxBodyBytes, config.jwtSecret === JWT_SECRET], [
    "service_role",
    1048576,
    true,
  ]);
});

Deno.test("a misconfigured function answers 503 everywhere and logs the reason once", async () => {
  const lines: string[] = [];
  const serve = misconfigured("SUPABASE_DB_URL is not set", (l) => lines.push(l));
  const health = serve(new Request(URL_BASE + "/health"));
  assertEquals([health.status, (await health.json()).status], [503, "misconfigured"]);
  const res = serve(post(valid));
  assertEquals([res.status, (await res.json()).error.code], [503, "misconfigured"]);
  assertEquals(lines, ["integration-dispatch: configuration error: SUPABASE_DB_URL is not set"]);
});

Deno.test("adapter registry: the built-in names, plus DISPATCH_EXTRA_ADAPTERS", async () => {
  assertEquals([...BUILTIN_ADAPTERS], ["dynamics_bc", "noop", "webhook", "xledger"]);
  assertEquals([...allowedAdapters(" acme_erp , ")].sort(), ["acme_erp", "dynamics_bc", "noop", "webhook", "xledger"]);
  await assertRejects(() => allowedAdapters("Bad Name"), /^DISPATCH_EXTRA_ADAPTERS/);
});
