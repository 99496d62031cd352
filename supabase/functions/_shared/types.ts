// Types shared by the integration-dispatch Edge Function and its tests.
//
// The request body mirrors the daemon's `POST /dispatch` (app/api.py DispatchRequest), which
// mirrors the SQL function it calls: dispatch.enqueue_job(integration_id, kind, payload,
// scheduled_for, idempotency_key, priority, max_attempts, run_after, source).

export const FUNCTION_NAME = "integration-dispatch";
export const FUNCTION_VERSION = "0.1.0";

/** A validated `POST` body. Times are strings Postgres parses as timestamptz. */
export interface DispatchRequest {
  integration_id: string;
  kind: string;
  payload: Record<string, unknown>;
  scheduled_for: string | null;
  idempotency_key: string | null;
  priority: number | null;
  max_attempts: number | null;
  run_after: string | null;
}

/** What `POST` answers with 200. */
export interface DispatchResult {
  job_id: number;
  /** `queued` for a new job; a duplicate's current status (or `pruned`). */
  status: string;
  /** true when the idempotency key was already spent: job_id is the first job's. */
  duplicate: boolean;
}

/** Every error the function sends: `{"error": {"code", "message", ...}}`. */
export interface ErrorBody {
  error: {
    code: string;
    message: string;
    field?: string;
    hint?: string;
    details?: { field: string; message: string }[];
  };
}

/** Failures of the database seam, classified once (db.ts) so the handler never sees a driver. */
export type DbErrorKind =
  | "unavailable" // cannot reach or use the database: 503, try again
  | "foreign_key" // the integration vanished between lookup and insert: 404
  | "unique" // a unique constraint other than the idempotency ledger: 409
  | "rejected" // a check, a trigger's RAISE, a data error: 422 with Postgres' message
  | "internal"; // anything else: 500, details only in the log

export class DbError extends Error {
  constructor(
    readonly kind: DbErrorKind,
    message: string,
    readonly hint?: string,
    readonly sqlstate?: string,
  ) {
    super(message);
    this.name = "DbError";
  }
}

/** The database, as the handler needs it. db.ts implements it with npm:postgres; tests fake it. */
export interface Db {
  /** The integration's adapter name, or null when no such integration exists. */
  adapterOf(integrationId: string): Promise<string | null>;
  /** dispatch.enqueue_job(...) with source 'edge_function'; status is looked up for duplicates. */
  enqueue(request: DispatchRequest): Promise<DispatchResult>;
}

/** Who the caller is, once verified. */
export interface Caller {
  method: "secret_key" | "service_role_key" | "jwt";
  /** For keys: the key's name in SUPABASE_SECRET_KEYS (never the key). For JWTs: the role. */
  label: string;
}

export interface CallerVerifier {
  verify(headers: Headers): Promise<Caller>;
}

/** One structured log line; never carries a body, a header or a secret. */
export type Log = (event: Record<string, unknown>) => void;

export interface Deps {
  db: Db;
  auth: CallerVerifier;
  /** Adapter names a caller may target (adapter-registry.ts). */
  adapters: ReadonlySet<string>;
  maxBodyBytes: number;
  log: Log;
}
