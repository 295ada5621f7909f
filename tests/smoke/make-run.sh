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
  if ! kill -0 "$pid" 2>/dev/null; then echo "make run exited:"; cat "$log"; exit 1; fi
  sleep 0.5
done
grep -q "Canopy listening on http://127.0.0.1:$port" "$log" || { echo "no URL printed:"; cat "$log"; exit 1; }
base="http://127.0.0.1:$port"

fail() { echo "smoke test failed: $*"; cat "$log"; exit 1; }

# The README's tour, verbatim in spirit: create, session, queue, read.
curl -fsS "$base/healthz" | grep -q '"ok"' || fail healthz
curl -fsS "$base/readyz" | grep -q '"ready"' || fail readyz
feature=$(curl -fsS -X POST "$base/api/features" -H 'content-type: application/json' \
  -d '{"title":"Add OAuth login","description":"GitHub and Google sign-in"}')
fid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["feature_id"])' <<<"$feature")
[[ "$fid" == ftr_* ]] || fail "feature id $fid"
session=$(curl -fsS -X POST "$base/api/features/$fid/sessions" -H 'content-type: application/json' \
  -d '{"title":"research auth patterns"}')
sid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["session_id"])' <<<"$session")
curl -fsS -X POST "$base/api/features/$fid/queue" -H 'content-type: application/json' \
  -d "{\"session_id\":\"$sid\",\"text\":\"Survey OAuth libraries\"}" | grep -q '"queued"' || fail queue
curl -fsS "$base/api/features/$fid" | grep -q 'Survey OAuth libraries' || fail snapshot
curl -fsS "$base/api/features" | grep -q "$fid" || fail list
curl -fsS "$base/metrics" | grep -q 'canopy_http_requests_total' || fail metrics
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/api/features/ftr_doesnotexist")
[[ "$code" == 404 ]] || fail "unknown feature gave $code"
echo "make run smoke test: ok ($base)"
