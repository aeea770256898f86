#!/bin/bash
# The guide's stress loop: runs test-tunnel N times (default 10) against
# one session with -cmd "echo Test <i>", checks each answer, and fails on
# the first iteration that does not work.
#
# usage: loop_test.sh SESSION_ID [N] [PAUSE_SECONDS (default 0)]
# environment: PICO_API, PICO_TOKEN, TEST_TUNNEL (as test_complete.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
API=${PICO_API:-http://localhost:8080}
TOKEN=${PICO_TOKEN:-}
TEST_TUNNEL=${TEST_TUNNEL:-$ROOT/bin/test-tunnel}
SESSION_ID=${1:?usage: loop_test.sh SESSION_ID [N] [PAUSE_SECONDS]}
N=${2:-10}
PAUSE=${3:-0}

tt_auth=()
[ -n "$TOKEN" ] && tt_auth=(-token "$TOKEN")

for i in $(seq "$N"); do
    echo "Test iteration $i"
    out=$("$TEST_TUNNEL" -api "$API" -session "$SESSION_ID" "${tt_auth[@]}" \
        -cmd "echo Test $i")
    if ! grep -qx "Test $i" <<<"$out"; then
        echo "❌ iteration $i: output lacks \"Test $i\""
        exit 1
    fi
    [ "$PAUSE" = 0 ] || sleep "$PAUSE"
done
echo "🎉 $N iterations passed"
