#!/usr/bin/env bash
# Smoke test: `serve` against a throwaway local cluster of its own (destroyed on exit); GET /health and a signed POST /dispatch must
# both answer 200 with JSON, and the dispatched job must complete. Exits non-zero on failure.
# Against a deployed daemon instead: SMOKE_URL=https://... SUPABASE_SERVICE_ROLE_KEY=<jwt>
# SMOKE_INTEGRATION=<an integration with a noop-safe kind> scripts/smoke-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || scripts/bootstrap >/dev/null

fail() { echo "smoke: FAIL: $*" >&2; [ -f "$log" ] && tail -20 "$log" >&2; exit 1; }
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

work=$(mktemp -d); log="$work/daemon.log"
chmod 755 "$work"  # the cluster's server runs as postgres when we are root
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ -n "${SMOKE_URL:-}" ] || DISPATCH_LOCAL_DIR="$work/local" "$PY" -m app.devkit.cluster destroy >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

integration=${SMOKE_INTEGRATION:-smoke}
if [ -n "${SMOKE_URL:-}" ]; then
  # A deployed daemon: the service_role key is the bearer token, as the CLI and clients send it.
  base=${SMOKE_URL%/}
  token=${SUPABASE_SERVICE_ROLE_KEY:?set SUPABASE_SERVICE_ROLE_KEY to smoke-test $SMOKE_URL}
else
  export DISPATCH_LOCAL_DIR="$work/local"  # private: not the demo's cluster, whatever it holds
  url=$("$PY" -m app.devkit.cluster start)
  "$PY" -m app --database-url "$url" db upgrade >/dev/null
  psql_exec() { "$PY" -c "import psycopg,sys; psycopg.connect(sys.argv[1], autocommit=True).execute(sys.argv[2])" "$url" "$1"; }
  psql_exec "INSERT INTO dispatch.integrations (id, adapter, max_concurrency) VALUES ('smoke', 'noop', 5) ON CONFLICT (id) DO UPDATE SET enabled = true, circuit = 'closed'"
  export DATABASE_URL="$url"
  # Locally, as `dev` does, the service_role key is minted from a throwaway JWT secret.
  export SUPABASE_JWT_SECRET; SUPABASE_JWT_SECRET=$("$PY" -c "import secrets; print(secrets.token_urlsafe(32))")
  token=$("$PY" -c "from app.web.auth import mint_token; import os; print(mint_token(os.environ['SUPABASE_JWT_SECRET']))")
  port=$("$PY" -c "from app.devkit.cluster import free_port; print(free_port())")
  base="http://127.0.0.1:$port"
  "$PY" -m app serve --port "$port" >"$log" 2>&1 & pid=$!
fi
for _ in $(seq 1 300); do
  code=$(curl -s -o "$work/health.json" -w '%{http_code}' "$base/health" || true)
  # 200 "degraded" while the listener connects: wait for "ok".
  [ "$code" = 200 ] && [ "$(json "d['status']" < "$work/health.json")" = ok ] && break
  [ -z "${pid:-}" ] || kill -0 "$pid" 2>/dev/null || fail "the daemon exited"
  sleep 0.1
done
[ "$code" = 200 ] || fail "GET /health answered $code"
[ "$(json "d['status']" < "$work/health.json")" = ok ] || fail "GET /health body is not the expected JSON"
echo "smoke: GET /health 200 $(cat "$work/health.json")"

key="smoke-$(date +%s%N)"
code=$(curl -s -o "$work/dispatch.json" -w '%{http_code}' -X POST "$base/dispatch" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "{\"integration_id\": \"$integration\", \"kind\": \"sync\", \"payload\": {}, \"idempotency_key\": \"$key\"}")
[ "$code" = 200 ] || fail "POST /dispatch answered $code: $(cat "$work/dispatch.json")"
job=$(json "d['job_id']" < "$work/dispatch.json") || fail "POST /dispatch body is not JSON with job_id"
echo "smoke: POST /dispatch 200 $(cat "$work/dispatch.json")"

for _ in $(seq 1 300); do
  status=$(curl -s -H "Authorization: Bearer $token" "$base/jobs/$job" | json "d['status']" 2>/dev/null || true)
  [ "$status" = succeeded ] && break
  sleep 0.1
done
[ "$status" = succeeded ] || fail "job $job did not succeed (status: ${status:-unknown})"
echo "smoke: job $job succeeded"
echo "smoke: OK"
