#!/bin/bash
# The guide's concurrency check: creates N sessions (default 5) at once,
# runs test-tunnel against all of them in parallel, waits for every one,
# deletes the sessions, and fails if any step of any session failed.
#
# usage: concurrent_sessions.sh [N]
# environment: PICO_API, PICO_TOKEN, TEST_TUNNEL (as test_complete.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
API=${PICO_API:-http://localhost:8080}
TOKEN=${PICO_TOKEN:-}
TEST_TUNNEL=${TEST_TUNNEL:-$ROOT/bin/test-tunnel}
N=${1:-5}

auth=()
tt_auth=()
if [ -n "$TOKEN" ]; then
    auth=(-H "Authorization: Bearer $TOKEN")
    tt_auth=(-token "$TOKEN")
fi

ids=()
logs=$(mktemp -d)
cleanup() {
    for id in "${ids[@]}"; do
        curl -sS -o /dev/null -X DELETE "${auth[@]}" "$API/v1/sessions/$id" ||
            true
    done
    rm -rf "$logs"
}
trap cleanup EXIT

for i in $(seq "$N"); do
    id=$(curl -sSf -X POST "${auth[@]}" -H "Content-Type: application/json" \
        -d '{"ttl": 3600}' "$API/v1/sessions" | jq -er '.session_id')
    ids+=("$id")
    echo "session $i: $id"
done

pids=()
for i in "${!ids[@]}"; do
    "$TEST_TUNNEL" -api "$API" -session "${ids[$i]}" "${tt_auth[@]}" \
        >"$logs/$i.log" 2>&1 &
    pids+=($!)
done

failed=0
for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
        echo "✅ session ${ids[$i]}"
    else
        echo "❌ session ${ids[$i]}:"
        sed 's/^/    /' "$logs/$i.log"
        failed=$((failed + 1))
    fi
done

if [ "$failed" -ne 0 ]; then
    echo "❌ $failed of $N sessions failed"
    exit 1
fi
echo "🎉 all $N sessions passed"
