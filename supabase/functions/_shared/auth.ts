// Caller verification, in code (config.toml has verify_jwt = false; the reason is written there).
//
// A request is let in when one of these holds, checked before the body is read:
//   1. the `apikey` header, or the `Authorization: Bearer` token, equals one of the configured
//      keys: an `sb_secret_...` key from SUPABASE_SECRET_KEYS, or the legacy
//      SUPABASE_SERVICE_ROLE_KEY. Compared in constant time (SHA-256 of both, then a
//      branch-free byte comparison), so neither content nor length leaks through timing.
//   2. `Authorization: Bearer <jwt>` verifies and carries role = DISPATCH_REQUIRED_ROLE
//      (default service_role): HS256 with DISPATCH_JWT_SECRET / SUPABASE_JWT_SECRET, or ES256/RS256 with a key from
//      SUPABASE_JWKS chosen by `kid`. The algorithm is bound to the key type, never taken
//      from the token alone (no alg confusion, no `none`); `exp` is required.
// Publishable keys are refused with 403: they are meant for browsers, and this function
// enqueues work. Only WebCrypto is used: no npm import on this path.

import type { Caller, CallerVerifier } from "./types.ts";
import type { FunctionConfig } from "./credential-provider.ts";

export const LEEWAY_SECONDS = 10;
const REALM = "integration-dispatch";

export class AuthFailure extends Error {
  constructor(readonly status: 401 | 403, readonly code: string, message: string) {
    super(message);
    this.name = "AuthFailure";
  }

  /** RFC 6750 §3: a bare challenge when nothing came, the error otherwise. */
  headers(): Record<string, string> {
    if (this.code === "missing_credentials") return { "WWW-Authenticate": `Bearer realm="${REALM}"` };
    const error = this.status === 403 ? "insufficient_scope" : "invalid_token";
    return { "WWW-Authenticate": `Bearer realm="${REALM}", error="${error}"` };
  }
}

const encoder = new TextEncoder();

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** Constant-time equality of two strings (of any lengths). */
export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([sha256(a), sha256(b)]);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}

function base64urlDecode(part: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) throw new Error("not base64url");
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function decodeJsonPart(part: string): Record<string, unknown> {
  const value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(base64urlDecode(part)));
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not an object");
  return value as Record<string, unknown>;
}

const unauthorized = (code: string, message: string) => new AuthFailure(401, code, message);

function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

interface AsymmetricKey {
  alg: "ES256" | "RS256";
  key: CryptoKey;
}

export class Verifier implements CallerVerifier {
  private hmacKey: Promise<CryptoKey> | null;
  private readonly jwks = new Map<string, Promise<AsymmetricKey | null>>();

  constructor(private readonly config: Pick<FunctionConfig, "keys" | "jwtSecret" | "jwks" | "requiredRole">) {
    this.hmacKey = config.jwtSecret
      ? crypto.subtle.importKey("raw", encoder.encode(config.jwtSecret), { name: "HMAC", hash: "SHA-256" }, false, [
        "verify",
      ])
      : null;
    for (const jwk of config.jwks) {
      const kid = (jwk as { kid?: unknown }).kid;
      if (typeof kid === "string") this.jwks.set(kid, importPublicKey(jwk));
    }
  }

  async verify(headers: Headers): Promise<Caller> {
    const apikey = headers.get("apikey")?.trim() || null;
    const authorization = headers.get("authorization")?.trim() || null;
    let bearer: string | null = null;
    if (authorization) {
      const [scheme, ...rest] = authorization.split(/\s+/);
      bearer = scheme.toLowerCase() === "bearer" && rest.length === 1 ? rest[0] : null;
      if (bearer === null) {
        throw unauthorized("malformed_credentials", "the Authorization header must be 'Bearer <token>'");
      }
    }
    if (!apikey && !bearer) {
      throw unauthorized(
        "missing_credentials",
        "no credentials: send a secret key in the 'apikey' header, or 'Authorization: Bearer <service_role JWT>'",
      );
    }
    // 1. An exact key, in either header. Every configured key is compared, whichever matches.
    for (const presented of [apikey, bearer]) {
      if (!presented) continue;
      let match: string | null = null;
      for (const [name, key] of this.config.keys) {
        if (await constantTimeEqual(presented, key) && match === null) match = name;
      }
      if (match !== null) {
        return { method: match === "service_role" ? "service_role_key" : "secret_key", label: match };
      }
    }
    // 2. A JWT in Authorization.
    if (bearer && looksLikeJwt(bearer)) return await this.verifyJwt(bearer);
    const sent = bearer ?? apikey ?? "";
    if (sent.startsWith("sb_publishable_")) {
      throw new AuthFailure(
        403,
        "publishable_key",
        "a publishable key cannot enqueue jobs: use a secret key (sb_secret_...)",
      );
    }
    if (sent.startsWith("sb_secret_")) {
      throw unauthorized("invalid_api_key", "the secret key is not one of this project's (SUPABASE_SECRET_KEYS)");
    }
    throw unauthorized("invalid_credentials", "the credentials are neither a known secret key nor a JWT");
  }

  private async verifyJwt(token: string): Promise<Caller> {
    const [h, p, s] = token.split(".");
    let header: Record<string, unknown>, claims: Record<string, unknown>, signature: Uint8Array;
    try {
      header = decodeJsonPart(h);
      claims = decodeJsonPart(p);
      signature = base64urlDecode(s);
    } catch {
      throw unauthorized("malformed_token", "the bearer token is not a readable JWT");
    }
    const alg = header.alg;
    const data = encoder.encode(`${h}.${p}`);
    let ok = false;
    if (alg === "HS256") {
      if (!this.hmacKey) {
        throw unauthorized(
          "unsupported_algorithm",
          "HS256 tokens are not accepted here: DISPATCH_JWT_SECRET is not set",
        );
      }
      ok = await crypto.subtle.verify("HMAC", await this.hmacKey, signature, data);
    } else if (alg === "ES256" || alg === "RS256") {
      const kid = header.kid;
      if (typeof kid !== "string") {
        throw unauthorized("malformed_token", `the ${alg} token names no signing key ('kid')`);
      }
      const entry = await (this.jwks.get(kid) ?? Promise.resolve(null));
      if (!entry) throw unauthorized("unknown_key", `no key '${kid.slice(0, 64)}' in SUPABASE_JWKS`);
      if (entry.alg !== alg) {
        throw unauthorized("invalid_token", `key '${kid.slice(0, 64)}' verifies ${entry.alg}, not ${alg}`);
      }
      const params = alg === "ES256" ? { name: "ECDSA", hash: "SHA-256" } : { name: "RSASSA-PKCS1-v1_5" };
      ok = await crypto.subtle.verify(params, entry.key, signature, data);
    } else {
      throw unauthorized(
        "unsupported_algorithm",
        `token algorithm '${String(alg).slice(0, 16)}' is not accepted (HS256, ES256, RS256)`,
      );
    }
    if (!ok) throw unauthorized("invalid_signature", "the token's signature does not verify");
    const now = Date.now() / 1000;
    if (typeof claims.exp !== "number") {
      throw unauthorized("invalid_token", "the token has no 'exp' claim; tokens must expire");
    }
    if (claims.exp + LEEWAY_SECONDS < now) throw unauthorized("expired_token", "the token has expired");
    if (typeof claims.nbf === "number" && claims.nbf - LEEWAY_SECONDS > now) {
      throw unauthorized("invalid_token", "the token is not valid yet ('nbf')");
    }
    if (claims.role !== this.config.requiredRole) {
      const shown = typeof claims.role === "string" ? `'${claims.role.slice(0, 40)}'` : "no role";
      throw new AuthFailure(
        403,
        "wrong_role",
        `this function needs role '${this.config.requiredRole}'; the token has ${shown}`,
      );
    }
    return { method: "jwt", label: String(claims.role) };
  }
}

async function importPublicKey(jwk: JsonWebKey): Promise<AsymmetricKey | null> {
  // A private member in the set is a misconfiguration; use only the public parts.
  try {
    if (jwk.kty === "EC" && jwk.crv === "P-256") {
      const pub = { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y };
      return {
        alg: "ES256",
        key: await crypto.subtle.importKey("jwk", pub, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]),
      };
    }
    if (jwk.kty === "RSA") {
      const pub = { kty: "RSA", n: jwk.n, e: jwk.e };
      return {
        alg: "RS256",
        key: await crypto.subtle.importKey("jwk", pub, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, [
          "verify",
        ]),
      };
    }
  } catch {
    return null;
  }
  return null;
}
