#!/usr/bin/env bash
# The integration-dispatch Edge Function, end to end on this machine, without Docker:
#
#   1. deno fmt --check, lint, check and test on supabase/functions (pinned Deno via scripts/deno);
#   2. a throwaway database: DATABASE_URL when set (migrated in place, left in place), else a
#      private cluster (app.devkit.cluster under a temporary DISPATCH_LOCAL_DIR, destroyed on
#      exit; or app.localdb before the layered-package move), migrated with
#      `integration-dispatch db upgrade --no-pg-cron`;
#   3. the function served by plain Deno on a free loopback port (`supabase functions serve`
#      needs Docker), with network permission for 127.0.0.1 only and modules from the cache;
#   4. GET /health -> 200 JSON; POST without a key -> 401; with a wrong key -> 401;
#      a minimal valid POST (a noop integration inserted first) -> 200 with a job_id; a repeated
#      idempotency key -> the first job; an unreachable database -> 503 with Retry-After;
#   5. the daemon started against the same database; waits (deadline, no bare sleeps as
#      sync) until that job is `succeeded` in dispatch.jobs;
#   6. the cold start figure (scripts/bench-edge-function, median of 10 runs).
# Every process it starts is stopped on exit. Keys are random per run and never printed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export RUST_BACKTRACE=0 NO_COLOR=1

say() { printf 'edge-function: %s\n' "$*" >&2; }
fail() { printf 'edge-function: FAIL: %s\n' "$*" >&2; exit 1; }

[ -x .venv/bin/python ] || fail ".venv is missing: run scripts/bootstrap first"
for tool in psql curl; do command -v "$tool" >/dev/null || fail "$tool is not installed (apt-get install postgresql-client curl)"; done
py=.venv/bin/python
cli=.venv/bin/integration-dispatch
config=supabase/functions/integration-dispatch/deno.json
entry=supabase/functions/integration-dispatch/index.ts
workdir=$(mktemp -d -t edge-function-XXXXXX)
deno_pid="" daemon_pid="" down_pid="" scratch_db="" admin_url="" started_cluster="" cluster_mod="" cluster_dir=""

free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

stop_pid() {  # SIGTERM, wait up to 25 s (the daemon's grace is 20 s), then SIGKILL
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 250); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  stop_pid "$deno_pid"
  stop_pid "$down_pid"
  stop_pid "$daemon_pid"
  if [ -n "$scratch_db" ] && [ -n "$admin_url" ]; then
    psql "$admin_url" -XqAt -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$scratch_db\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ -n "$started_cluster" ]; then
    "$py" -m "$cluster_mod" "$started_cluster" >/dev/null 2>&1 || true
    [ -n "$cluster_dir" ] && rm -rf "$cluster_dir"
  fi
  if [ $rc -ne 0 ]; then
    for log in "$workdir"/*.log; do [ -f "$log" ] && { say "--- tail of $(basename "$log")"; tail -n 30 "$log" >&2; }; done
  fi
  rm -rf "$workdir"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for DESCRIPTION SECONDS COMMAND...: run COMMAND until it succeeds or the deadline passes.
wait_for() {
  local what=$1 seconds=$2; shift 2
  local deadline=$(( $(date +%s%N) + seconds * 1000000000 ))
  until "$@"; do
    [ "$(date +%s%N)" -lt "$deadline" ] || fail "timed out after ${seconds}s waiting for $what"
    sleep 0.05
  done
}

# ------------------------------------------------------------------ 1. deno check + deno test
scripts/deno --version | head -1 >&2
say "deno fmt --check, deno lint, deno check"
scripts/deno fmt --check --quiet --config "$config" supabase/functions/_shared supabase/functions/integration-dispatch supabase/functions/tests
scripts/deno lint --quiet --config "$config" supabase/functions
scripts/deno check --quiet --config "$config" "$entry" supabase/functions/tests/*.ts
say "deno test"
scripts/deno test --quiet --config "$config" --no-prompt supabase/functions/tests/ >"$workdir/deno-test.log" 2>&1 \
  || { cat "$workdir/deno-test.log" >&2; fail "deno test failed"; }
grep -E '^(ok|FAILED) \|' "$workdir/deno-test.log" >&2
rm -f "$workdir/deno-test.log"

# ------------------------------------------------------------------ 2. a throwaway database
if [ -n "${DATABASE_URL:-}" ]; then
  db_url=$DATABASE_URL
  say "database: DATABASE_URL (migrated in place, kept)"
else
  if "$py" -c 'import app.devkit.cluster' 2>/dev/null; then
    # A private cluster of our own (the default one is shared by every checkout on this host):
    # created here, destroyed on exit. 0755: the server runs as postgres when we are root.
    cluster_mod=app.devkit.cluster
    cluster_dir=$(mktemp -d -t edge-function-pg-XXXXXX)
    chmod 755 "$cluster_dir"
    export DISPATCH_LOCAL_DIR="$cluster_dir"
    started_cluster=destroy
  else
    # Before the layered-package move: the checkout's own .local/pg; stopped again only if we started it.
    cluster_mod=app.localdb
    "$py" -m "$cluster_mod" status >/dev/null 2>&1 || started_cluster=stop
  fi
  base_url=$("$py" -m "$cluster_mod" start | tail -n 1)
  case $base_url in postgres://* | postgresql://*) ;; *) fail "python -m $cluster_mod start printed no URL";; esac
  admin_url="${base_url%/*}/postgres"
  scratch_db="edge_fn_$$_$(date +%s)"
  psql "$admin_url" -XqAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$scratch_db\"" >/dev/null
  db_url="${base_url%/*}/$scratch_db"
  say "database: scratch database $scratch_db on a local cluster ($cluster_mod${cluster_dir:+, private in $cluster_dir})"
fi
"$cli" --database-url "$db_url" db upgrade --no-pg-cron >"$workdir/migrate.log" 2>&1 \
  || { cat "$workdir/migrate.log" >&2; fail "db upgrade failed"; }
integration="edge-smoke-$$"
# q URL ID SQL: run SQL with :'id' bound to ID by psql (variables need stdin, not -c).
q() { psql "$1" -XqAt -v ON_ERROR_STOP=1 -v id="$2" <<<"$3"; }
q "$db_url" "$integration" "INSERT INTO dispatch.integrations (id, adapter) VALUES (:'id', 'noop')" >/dev/null

# ------------------------------------------------------------------ 3. serve the function
secret_key="sb_secret_$("$py" -c 'import secrets; print(secrets.token_hex(20))')"
fn_port=$(free_port)
# Only what the platform would inject, nothing inherited: no SUPABASE_* or DISPATCH_* leaks in.
env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
  DENO_DIR="${DENO_DIR:-$root/.local/deno/cache}" \
  INTEGRATION_DISPATCH_PORT="$fn_port" \
  SUPABASE_URL="http://127.0.0.1:$fn_port" \
  SUPABASE_DB_URL="$db_url" \
  SUPABASE_SECRET_KEYS="{\"default\":\"$secret_key\"}" \
  scripts/deno run --cached-only --no-prompt --config "$config" \
    --allow-net=127.0.0.1 --allow-env --allow-read --allow-sys "$entry" >"$workdir/function.log" 2>&1 &
deno_pid=$!
fn="http://127.0.0.1:$fn_port/integration-dispatch"

health_ok() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$fn/health")" = 200 ]; }
wait_for "the function's /health" 20 health_ok

# ------------------------------------------------------------------ 4. the HTTP contract
# check NAME EXPECTED_STATUS CURL_ARGS...: asserts the status and a JSON body; prints the body.
check() {
  local name=$1 want=$2; shift 2
  local out="$workdir/resp.json" code
  code=$(curl -s -o "$out" -w '%{http_code}' --max-time 10 "$@") || fail "$name: curl failed"
  [ "$code" = "$want" ] || fail "$name: HTTP $code, expected $want: $(head -c 300 "$out")"
  "$py" -c 'import json, sys; json.load(open(sys.argv[1]))' "$out" || fail "$name: the body is not JSON"
  say "ok: $name -> $code $(head -c 200 "$out")"
  cat "$out"
}

body=$(check "GET /health" 200 "$fn/health")
"$py" - "$body" "$secret_key" <<'PY' || fail "GET /health: unexpected body"
import json, sys
body, key = json.loads(sys.argv[1]), sys.argv[2]
assert body["status"] == "ok", body
assert key not in sys.argv[1] and "postgres" not in sys.argv[1], "health leaks configuration"
PY

minimal="{\"integration_id\": \"$integration\", \"kind\": \"sync\", \"payload\": {\"from\": \"edge-function-test\"}}"
body=$(check "POST without a key" 401 -X POST -H 'Content-Type: application/json' -d "$minimal" "$fn")
body=$(check "POST with a wrong key" 401 -X POST -H 'Content-Type: application/json' \
  -H "apikey: sb_secret_0000000000000000000000000000000000000000" -d "$minimal" "$fn")
body=$(check "POST with an invalid body" 422 -X POST -H 'Content-Type: application/json' \
  -H "apikey: $secret_key" -d '{"integration_id": "x"}' "$fn")
body=$(check "POST for an unknown integration" 404 -X POST -H 'Content-Type: application/json' \
  -H "apikey: $secret_key" -d '{"integration_id": "nobody-here", "kind": "sync"}' "$fn")
body=$(check "POST, minimal valid request" 200 -X POST -H 'Content-Type: application/json' \
  -H "apikey: $secret_key" -d "$minimal" "$fn")
job_id=$("$py" -c 'import json, sys; b = json.loads(sys.argv[1]); assert b["status"] == "queued" and b["duplicate"] is False, b; print(int(b["job_id"]))' "$body") \
  || fail "POST: unexpected body $body"
keyed="{\"integration_id\": \"$integration\", \"kind\": \"sync\", \"idempotency_key\": \"edge-test-$$\"}"
first=$(check "POST with an idempotency key" 200 -X POST -H 'Content-Type: application/json' -H "apikey: $secret_key" -d "$keyed" "$fn")
again=$(check "POST with the same key again" 200 -X POST -H 'Content-Type: application/json' -H "apikey: $secret_key" -d "$keyed" "$fn")
"$py" -c 'import json, sys; a, b = map(json.loads, sys.argv[1:]); assert b["duplicate"] and a["job_id"] == b["job_id"], (a, b)' "$first" "$again" \
  || fail "a repeated idempotency key must return the first job"
row=$(q "$db_url" "$job_id" "SELECT source || ' ' || status FROM dispatch.jobs WHERE id = :'id'")
[ "$row" = "edge_function queued" ] || fail "job $job_id in dispatch.jobs: '$row', expected 'edge_function queued'"
say "ok: job $job_id is in dispatch.jobs (source edge_function, queued)"

# A second instance whose database is unreachable (a closed loopback port): 503, Retry-After.
down_port=$(free_port) closed_port=$(free_port)
env -i PATH="$PATH" HOME="${HOME:-/tmp}" DENO_DIR="${DENO_DIR:-$root/.local/deno/cache}" \
  INTEGRATION_DISPATCH_PORT="$down_port" SUPABASE_DB_URL="postgresql://nobody@127.0.0.1:$closed_port/none" \
  SUPABASE_SECRET_KEYS="{\"default\":\"$secret_key\"}" \
  scripts/deno run --cached-only --no-prompt --config "$config" \
    --allow-net=127.0.0.1 --allow-env --allow-read --allow-sys "$entry" >"$workdir/function-db-down.log" 2>&1 &
down_pid=$!
down_ok() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$down_port/integration-dispatch/health")" = 200 ]; }
wait_for "the second function's /health" 20 down_ok
retry_after=$(curl -s -o /dev/null -D - --max-time 15 -X POST -H 'Content-Type: application/json' -H "apikey: $secret_key" \
  -d "$minimal" "http://127.0.0.1:$down_port/integration-dispatch" | tr -d '\r' | awk -F': ' 'tolower($1) == "retry-after" {print $2}')
body=$(check "POST while the database is unreachable" 503 -X POST -H 'Content-Type: application/json' \
  -H "apikey: $secret_key" -d "$minimal" "http://127.0.0.1:$down_port/integration-dispatch")
[ "$retry_after" = 1 ] || fail "a 503 must carry Retry-After: 1 (got '$retry_after')"
stop_pid "$down_pid"

# ------------------------------------------------------------------ 5. the daemon runs it
daemon_port=$(free_port)
env -u SUPABASE_JWT_SECRET -u SUPABASE_URL DISPATCH_POLL_INTERVAL=1 \
  "$cli" --database-url "$db_url" serve --port "$daemon_port" >"$workdir/daemon.log" 2>&1 &
daemon_pid=$!
job_done() {
  kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited early"
  [ "$(q "$db_url" "$job_id" "SELECT status FROM dispatch.jobs WHERE id = :'id'")" = succeeded ]
}
wait_for "job $job_id to succeed" 60 job_done
say "ok: the daemon ran job $job_id: succeeded"
stop_pid "$daemon_pid"; daemon_pid=""
stop_pid "$deno_pid"; deno_pid=""
grep -q "$secret_key" "$workdir"/*.log && fail "a key appeared in a log"

# ------------------------------------------------------------------ 6. cold start
scripts/bench-edge-function --runs "${EDGE_BENCH_RUNS:-10}" --database-url "$db_url" --integration "$integration"
say "PASS"
