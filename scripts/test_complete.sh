#!/bin/bash
# The complete tunnel check of the user's guide: health, create a session,
# wait until it runs, run test-tunnel against it, delete it.
#
# environment: PICO_API (default http://localhost:8080), PICO_TOKEN (bearer
# token when auth is on), TEST_TUNNEL (default bin/test-tunnel of this
# checkout), READY_TIMEOUT (seconds, default 60). Exits non-zero on any
# failure, and deletes the session it created even then.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
API=${PICO_API:-http://localhost:8080}
TOKEN=${PICO_TOKEN:-}
TEST_TUNNEL=${TEST_TUNNEL:-$ROOT/bin/test-tunnel}
READY_TIMEOUT=${READY_TIMEOUT:-60}
SESSION_ID=""

auth=()
tt_auth=()
if [ -n "$TOKEN" ]; then
    auth=(-H "Authorization: Bearer $TOKEN")
    tt_auth=(-token "$TOKEN")
fi

# api METHOD PATH [BODY]: prints the body, then the status on its own line.
api() {
    local body=${3:-}
    if [ -n "$body" ]; then
        curl -sS -X "$1" "${auth[@]}" -H "Content-Type: application/json" \
            -d "$body" -w '\n%{http_code}' "$API$2"
    else
        curl -sS -X "$1" "${auth[@]}" -w '\n%{http_code}' "$API$2"
    fi
}

cleanup() {
    if [ -n "$SESSION_ID" ]; then
        curl -sS -o /dev/null -X DELETE "${auth[@]}" \
            "$API/v1/sessions/$SESSION_ID" || true
    fi
}
trap cleanup EXIT

echo "========================================="
echo "完整 Tunnel 测试流程"
echo "========================================="

echo -e "\n[1/5] 检查 pico-apiserver..."
if curl -sf -o /dev/null "$API/health"; then
    echo "✅ pico-apiserver 运行中"
else
    echo "❌ pico-apiserver 未运行 ($API)"
    echo "请先运行: make run"
    exit 1
fi

echo -e "\n[2/5] 创建 sandbox session..."
out=$(api POST /v1/sessions '{"ttl": 3600, "image": "sandbox:latest"}')
status=${out##*$'\n'}
RESPONSE=${out%$'\n'*}
if [ "$status" != 201 ]; then
    echo "❌ 创建失败 (HTTP $status): $RESPONSE"
    exit 1
fi
SESSION_ID=$(jq -er '.session_id' <<<"$RESPONSE")
echo "✅ Session 创建成功: $SESSION_ID"

echo -e "\n[3/5] 等待 sandbox 就绪..."
deadline=$((SECONDS + READY_TIMEOUT))
while :; do
    out=$(api GET "/v1/sessions/$SESSION_ID")
    state=$(jq -r '.status // empty' <<<"${out%$'\n'*}" 2>/dev/null || true)
    [ "$state" = running ] && break
    if [ "$state" = failed ] || [ "$SECONDS" -ge "$deadline" ]; then
        echo "❌ Sandbox 未就绪 (status: ${state:-unknown})"
        exit 1
    fi
    sleep 0.2
done
echo "✅ Sandbox 就绪"

echo -e "\n[4/5] 运行 tunnel 测试..."
"$TEST_TUNNEL" -api "$API" -session "$SESSION_ID" "${tt_auth[@]}"
echo "✅ Tunnel 测试成功"

echo -e "\n[5/5] 清理资源..."
out=$(api DELETE "/v1/sessions/$SESSION_ID")
status=${out##*$'\n'}
case $status in
2??) SESSION_ID="" ;;
*)
    echo "❌ 删除失败 (HTTP $status)"
    exit 1
    ;;
esac
echo "✅ Session 已删除"

echo -e "\n========================================="
echo "🎉 所有测试完成！"
echo "========================================="
