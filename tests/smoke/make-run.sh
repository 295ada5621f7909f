#!/usr/bin/env bash
# Acceptance 7: `make run` on a fresh data dir starts the server and prints
# its URL, and the curl commands in README.md work against it.
set -euo pipefail
cd "$(dirname "$0")/../.."

data=$(mktemp -d)
log=$(mktemp)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
cleanup() {
  # make and the server share a process group (setsid): stop them both.
  if [[ -n "${pid:-}" ]]; then kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$data" "$log"
}
trap cleanup EXIT

setsid make --no-print-directory run DATA_DIR="$data" LISTEN="127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
# `make smoke` builds the release binary first; allow a slow, cold machine.
for _ in $(seq 1 1200); do
  if grep -q "Canopy listening on http://127.0.0.1:$port" "$log"; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then cat "$log"; echo "smoke test failed: make run exited"; exit 1; fi
  sleep 0.5
done
grep -q "Canopy listening on http://127.0.0.1:$port" "$log" || { cat "$log"; echo "smoke test failed: make run printed no URL"; exit 1; }
base="http://127.0.0.1:$port"

# The log first and the reason last: CI shows the tail of the output.
fail() { echo "--- make run's output:"; cat "$log"; echo "smoke test failed: $*"; exit 1; }
# `expect WHAT PATTERN CURL-ARGS…`: the response contains PATTERN. The body is
# read whole before matching: `curl | grep -q` fails at random under
# pipefail when grep exits early and curl's next write gets EPIPE.
expect() {
  local what=$1 pattern=$2 body
  shift 2
  body=$(curl -fsS "$@") || fail "$what: the request failed"
  grep -q -- "$pattern" <<<"$body" || fail "$what: no '$pattern' in: ${body:0:400}"
}

# The first start printed the first user's token once; the README says to
# copy it into CANOPY_TOKEN.
token=$(grep -o 'canopy_[a-z2-7]\{20\}_[A-Za-z0-9_-]\{43\}' "$log" | head -1)
[[ -n "$token" ]] || fail "no API token printed on first start"
auth=(-H "Authorization: Bearer $token")

# The README's tour, verbatim in spirit: create, session, queue, read.
expect healthz '"ok"' "$base/healthz"
expect readyz '"ready"' "$base/readyz"
# The web client, built by `make run`, at the root and on client routes.
expect "the web client at /" '<div id="root">' "$base/"
expect "a client-side route" '<div id="root">' "$base/f/ftr_x"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/api/features")
[[ "$code" == 401 ]] || fail "no token gave $code"
expect me '"handle":"admin"' "${auth[@]}" "$base/api/me"
feature=$(curl -fsS "${auth[@]}" -X POST "$base/api/features" -H 'content-type: application/json' \
  -d '{"title":"Add OAuth login","description":"GitHub and Google sign-in"}')
fid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["feature_id"])' <<<"$feature")
[[ "$fid" == ftr_* ]] || fail "feature id $fid"
session=$(curl -fsS "${auth[@]}" -X POST "$base/api/features/$fid/sessions" -H 'content-type: application/json' \
  -d '{"title":"research auth patterns"}')
sid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["session_id"])' <<<"$session")
expect queue '"queued"' "${auth[@]}" -X POST "$base/api/features/$fid/queue" -H 'content-type: application/json' \
  -d "{\"session_id\":\"$sid\",\"text\":\"Survey OAuth libraries\"}"
expect snapshot 'Survey OAuth libraries' "${auth[@]}" "$base/api/features/$fid"
expect list "$fid" "${auth[@]}" "$base/api/features"
expect ticket '"ticket"' "${auth[@]}" -X POST "$base/api/sync-ticket"
expect metrics 'canopy_http_requests_total' "$base/metrics"
code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$base/api/features/ftr_doesnotexist")
[[ "$code" == 404 ]] || fail "unknown feature gave $code"

# A second user, made with the CLI while the server runs, cannot see the
# first user's feature.
out=$(cargo run --quiet --release --bin canopy -- user add bob --name Bob --email bob@example.com --data-dir "$data" 2>&1) \
  || fail "user add: $out"
bob=$(grep -o 'canopy_[a-z2-7]\{20\}_[A-Za-z0-9_-]\{43\}' <<<"$out" | head -1)
[[ -n "$bob" ]] || fail "user add printed no token: $out"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $bob" "$base/api/features/$fid")
[[ "$code" == 404 ]] || fail "a non-member got $code for someone else's feature"
# Agents: the offline scripted model (no API key here) does the work in a
# local sandbox, and the result is visible over the API.
expect "agent info does not say offline" '"offline":true' "${auth[@]}" "$base/api/agent"
grep -q "OFFLINE MODE" "$log" || fail "the log does not say the model is offline"
entry=$(curl -fsS "${auth[@]}" -X POST "$base/api/features/$fid/queue" -H 'content-type: application/json' \
  -d "{\"session_id\":\"$sid\",\"text\":\"write hello.txt: hi from make run\"}")
eid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$entry")
status=""
for _ in $(seq 1 600); do
  # The entry settles first; the session is idle again once the run's
  # commit is recorded.
  status=$(curl -fsS "${auth[@]}" "$base/api/features/$fid" | python3 -c '
import json, sys
doc = json.load(sys.stdin)["document"]
entry = next(e for e in doc["queue"] if e["id"] == sys.argv[1])
session = doc["sessions"][entry["session_id"]]
print(entry["status"] if session["status"] != "running" else "wrapping-up")' "$eid")
  [[ "$status" == done || "$status" == failed || "$status" == rejected ]] && break
  sleep 0.5
done
[[ "$status" == done ]] || fail "the prompt ended $status"
[[ "$(cat "$data/sandboxes/$sid/workspace/hello.txt")" == "hi from make run" ]] || fail "hello.txt not written"
expect "files_changed" '"files_changed":\["hello.txt"\]' "${auth[@]}" "$base/api/features/$fid"
# The sandbox's sidecar committed it as the person who asked.
gitlog=$(git -C "$data/sandboxes/$sid/workspace" log --format='%an|%s|%(trailers:key=Canopy-Queue-Entry,valueonly,separator=)' 2>&1) \
  || fail "git log: $gitlog"
grep -q "|write hello.txt: hi from make run|$eid" <<<"$gitlog" || fail "no attributed commit: $gitlog"
expect "commit on the entry" '"commit":"[0-9a-f]\{40\}"' "${auth[@]}" "$base/api/features/$fid"
echo "make run smoke test: ok ($base)"
