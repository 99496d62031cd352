// The database seam: npm:postgres (porsager/postgres, pinned in deno.json) and nothing else
// here knows a driver. Every value is a bound parameter of a tagged template; no SQL is ever
// built from strings. Driver errors become DbError once, here.
//
// The payload goes as sql.json(...): a JSON.stringify'd string would be encoded once more by
// the driver and stored as a jsonb *string* (the database then rightly refuses it).
//
// prepare: false, because on Supabase SUPABASE_DB_URL may lead through the transaction pooler
// (Supavisor, port 6543), where a named prepared statement can land on another backend.

import postgres from "postgres";
import type { Db, DispatchRequest, DispatchResult } from "shared/types.ts";
import { DbError } from "shared/types.ts";

export const SOURCE = "edge_function";

// SQLSTATE classes / codes that mean "the database is not usable right now": try again.
const UNAVAILABLE_STATES = /^(08|53|57P0[123]|3D000|28)/;
const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
]);

export function classify(e: unknown): DbError {
  if (e instanceof DbError) return e;
  const err = e as { code?: unknown; message?: unknown; hint?: unknown; name?: unknown };
  const code = typeof err?.code === "string" ? err.code : "";
  const message = typeof err?.message === "string" ? err.message : String(e);
  const hint = typeof err?.hint === "string" ? err.hint : undefined;
  const isPostgres = err?.name === "PostgresError" || /^[0-9A-Z]{5}$/.test(code);
  if (UNAVAILABLE_CODES.has(code) || (isPostgres && UNAVAILABLE_STATES.test(code))) {
    return new DbError("unavailable", message, undefined, code);
  }
  if (isPostgres) {
    if (code === "23503") return new DbError("foreign_key", message, hint, code);
    if (code === "23505") return new DbError("unique", message, hint, code);
    if (code.startsWith("22") || code.startsWith("23") || code === "P0001") {
      return new DbError("rejected", message, hint, code);
    }
  }
  return new DbError("internal", message, undefined, code || undefined);
}

export function createDb(url: string): Db & { end(): Promise<void> } {
  const sql = postgres(url, {
    prepare: false,
    max: 2, // one isolate serves few concurrent requests; the pooler multiplexes the rest
    idle_timeout: 20,
    connect_timeout: 10,
    onnotice: () => {},
    connection: { application_name: "integration-dispatch-edge" },
  });

  async function run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      throw classify(e);
    }
  }

  return {
    adapterOf: (integrationId) =>
      run(async () => {
        const rows = await sql`SELECT adapter FROM dispatch.integrations WHERE id = ${integrationId}::text`;
        return rows.length ? String(rows[0].adapter) : null;
      }),

    enqueue: (r: DispatchRequest) =>
      run(async (): Promise<DispatchResult> => {
        const [row] = await sql`
          SELECT e.job_id, e.duplicate,
                 CASE WHEN e.duplicate
                      THEN coalesce((SELECT j.status::text FROM dispatch.jobs j WHERE j.id = e.job_id), 'pruned')
                      ELSE 'queued' END AS status
            FROM dispatch.enqueue_job(
                   ${r.integration_id}::text, ${r.kind}::text, ${sql.json(r.payload as postgres.JSONValue)}::jsonb,
                   ${r.scheduled_for}::timestamptz, ${r.idempotency_key}::text, ${r.priority}::smallint,
                   ${r.max_attempts}::integer, ${r.run_after}::timestamptz, ${SOURCE}::text) AS e`;
        const jobId = Number(row.job_id);
        if (!Number.isSafeInteger(jobId)) throw new DbError("internal", `job id ${row.job_id} is beyond 2^53`);
        return { job_id: jobId, status: String(row.status), duplicate: Boolean(row.duplicate) };
      }),

    end: () => sql.end({ timeout: 5 }),
  };
}
