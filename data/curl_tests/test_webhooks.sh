#!/usr/bin/env bash
# Send the classic payloads to a running nethook and print each status.
#   data/curl_tests/test_webhooks.sh [URL]        (default http://127.0.0.1:8000)
# The token comes from $NETHOOK_TOKEN, else from nethook.token in the folder the server
# was started in ($NETHOOK_TOKEN_FILE, default ./nethook.token).
set -u
URL=${1:-${NETHOOK_URL:-http://127.0.0.1:8000}}
HERE=$(cd "$(dirname "$0")/.." && pwd)
TOKEN=${NETHOOK_TOKEN:-}
if [ -z "$TOKEN" ]; then
  TOKEN_FILE=${NETHOOK_TOKEN_FILE:-./nethook.token}
  if [ ! -r "$TOKEN_FILE" ]; then
    echo "no token: set NETHOOK_TOKEN or run from the folder where 'nethook serve' created nethook.token" >&2
    exit 2
  fi
  TOKEN=$(tr -d '[:space:]' < "$TOKEN_FILE")
fi

fail=0
send() {  # name, file, expected status
  local name=$1 file=$2 want=$3 out status
  out=$(curl -s -o /tmp/nethook-curl.$$ -w '%{http_code}' -X POST "$URL/events" \
        -H 'Content-Type: application/json' -H "X-Webhook-Token: $TOKEN" \
        --data-binary @"$file")
  status=$out
  printf '%-22s %s (want %s)  %s\n' "$name" "$status" "$want" "$(head -c 200 /tmp/nethook-curl.$$)"
  [ "$status" = "$want" ] || fail=1
}

send joke_request    "$HERE/webhook_payloads/joke_request.json" 202
send card_draw       "$HERE/webhook_payloads/card_draw.json" 202
send device_check    "$HERE/webhook_payloads/network_device_check.json" 202
send malformed_body  "$HERE/webhook_payloads/malformed.json" 400

status=$(curl -s -o /tmp/nethook-curl.$$ -w '%{http_code}' "$URL/health")
printf '%-22s %s (want 200)  %s\n' health "$status" "$(head -c 200 /tmp/nethook-curl.$$)"
[ "$status" = 200 ] || fail=1
rm -f /tmp/nethook-curl.$$
exit $fail
