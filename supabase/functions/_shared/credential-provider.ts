// The function's credentials, from the environment only.
//
// On a hosted project the platform injects SUPABASE_URL, SUPABASE_DB_URL,
// SUPABASE_SERVICE_ROLE_KEY (legacy), SUPABASE_SECRET_KEYS, SUPABASE_PUBLISHABLE_KEYS and
// SUPABASE_JWKS; DISPATCH_JWT_SECRET (legacy HS256), DISPATCH_DB_URL and the other DISPATCH_* are set with
// `supabase secrets set` (which skips names starting SUPABASE_). Vendor secrets are never here: they stay in Vault and only the
// Python daemon reads them (dispatch.integration_secret).
//
// Fail closed: a missing or malformed variable is a ConfigError whose one-line message names
// the variable and what to set, and never contains a value.

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export interface Env {
  get(name: string): string | undefined;
}

export interface FunctionConfig {
  /** postgres:// URL for dispatch.enqueue_job (SUPABASE_DB_URL). */
  dbUrl: string;
  /** The project's API URL, when set; the function itself talks to Postgres, not to REST. */
  supabaseUrl: string | null;
  /** Opaque keys accepted as-is: name -> key (SUPABASE_SECRET_KEYS, + legacy service_role). */
  keys: Map<string, string>;
  /** Legacy HS256 JWT secret (SUPABASE_JWT_SECRET), if set. */
  jwtSecret: string | null;
  /** Public JWKs for ES256/RS256 tokens (SUPABASE_JWKS), if set. */
  jwks: JsonWebKey[];
  requiredRole: string;
  maxBodyBytes: number;
  extraAdapters: string | undefined;
}

const MAX_BODY_DEFAULT = 1024 * 1024;

function nonEmpty(env: Env, name: string): string | null {
  const value = env.get(name);
  return value !== undefined && value.trim() !== "" ? value.trim() : null;
}

function parseJson(name: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ConfigError(`${name} is not valid JSON; set it to the value the platform injects`);
  }
}

/** Reads and checks every variable the function uses; throws ConfigError on the first problem. */
export function loadConfig(env: Env): FunctionConfig {
  // DISPATCH_DB_URL (settable with `supabase secrets set`, e.g. the transaction pooler on 6543)
  // wins over the injected SUPABASE_DB_URL.
  const dbVar = nonEmpty(env, "DISPATCH_DB_URL") ? "DISPATCH_DB_URL" : "SUPABASE_DB_URL";
  const dbUrl = nonEmpty(env, dbVar);
  if (!dbUrl) {
    throw new ConfigError(
      "SUPABASE_DB_URL is not set: the platform injects it; locally set it (or DISPATCH_DB_URL) to a postgres:// URL",
    );
  }
  let scheme = "";
  try {
    scheme = new URL(dbUrl).protocol;
  } catch { /* reported below */ }
  if (scheme !== "postgres:" && scheme !== "postgresql:") {
    throw new ConfigError(`${dbVar} is not a postgres:// or postgresql:// URL`);
  }

  const supabaseUrl = nonEmpty(env, "SUPABASE_URL");
  if (supabaseUrl && !/^https?:\/\/[^\s/]+/.test(supabaseUrl)) {
    throw new ConfigError("SUPABASE_URL is not an http(s) URL (e.g. https://<project-ref>.supabase.co)");
  }

  const keys = new Map<string, string>();
  const secretKeys = nonEmpty(env, "SUPABASE_SECRET_KEYS");
  if (secretKeys) {
    const parsed = parseJson("SUPABASE_SECRET_KEYS", secretKeys);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError('SUPABASE_SECRET_KEYS must be a JSON object {"<name>": "sb_secret_..."}');
    }
    for (const [name, key] of Object.entries(parsed)) {
      if (typeof key !== "string" || key.length < 16) {
        throw new ConfigError(`SUPABASE_SECRET_KEYS: the key named '${name.slice(0, 40)}' is not a key string`);
      }
      keys.set(name, key);
    }
  }
  const serviceRoleKey = nonEmpty(env, "SUPABASE_SERVICE_ROLE_KEY");
  if (serviceRoleKey) {
    if (serviceRoleKey.length < 16) throw new ConfigError("SUPABASE_SERVICE_ROLE_KEY is too short to be a key");
    keys.set("service_role", serviceRoleKey);
  }

  // `supabase secrets set` refuses names starting SUPABASE_, so on the platform the legacy JWT
  // secret is given as DISPATCH_JWT_SECRET; SUPABASE_JWT_SECRET is read too (local runs, parity
  // with the daemon's variable).
  const jwtVar = nonEmpty(env, "DISPATCH_JWT_SECRET") ? "DISPATCH_JWT_SECRET" : "SUPABASE_JWT_SECRET";
  const jwtSecret = nonEmpty(env, jwtVar);
  if (jwtSecret && new TextEncoder().encode(jwtSecret).length < 32) {
    throw new ConfigError(`${jwtVar} is shorter than 32 bytes; use the project's JWT secret`);
  }

  let jwks: JsonWebKey[] = [];
  const jwksText = nonEmpty(env, "SUPABASE_JWKS");
  if (jwksText) {
    const parsed = parseJson("SUPABASE_JWKS", jwksText) as { keys?: unknown };
    if (typeof parsed !== "object" || parsed === null || !Array.isArray(parsed.keys)) {
      throw new ConfigError('SUPABASE_JWKS must be a JSON Web Key Set {"keys": [...]}');
    }
    jwks = parsed.keys as JsonWebKey[];
  }

  if (keys.size === 0 && !jwtSecret && jwks.length === 0) {
    throw new ConfigError(
      "SUPABASE_SERVICE_ROLE_KEY is not set (nor SUPABASE_SECRET_KEYS, SUPABASE_JWKS or DISPATCH_JWT_SECRET): " +
        "the function cannot verify callers, so it refuses every request",
    );
  }

  const requiredRole = nonEmpty(env, "DISPATCH_REQUIRED_ROLE") ?? "service_role";
  const maxBodyText = nonEmpty(env, "DISPATCH_MAX_BODY_BYTES");
  const maxBodyBytes = maxBodyText === null ? MAX_BODY_DEFAULT : Number(maxBodyText);
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 1024) {
    throw new ConfigError("DISPATCH_MAX_BODY_BYTES must be an integer of at least 1024");
  }
  return {
    dbUrl,
    supabaseUrl,
    keys,
    jwtSecret,
    jwks,
    requiredRole,
    maxBodyBytes,
    extraAdapters: env.get("DISPATCH_EXTRA_ADAPTERS"),
  };
}
