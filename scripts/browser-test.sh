#!/usr/bin/env bash
# The dashboard in a real browser (issue 20): Debian's Chromium and chromedriver, Selenium from a pinned venv, a live
# server fed by `ecowatt simulate`, users of each role. Screenshots go to ECOWATT_SCREENSHOTS (default
# .build/browser-screenshots; not committed). Bounded: the simulator runs 240 s at most, each wait 20-100 s.
# Usage: scripts/browser-test.sh [path to the ecowatt binary, default .build/debug/ecowatt]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
bin="${1:-.build/debug/ecowatt}"
selenium=4.25.0   # pinned

scripts/install-deps.sh chromium chromium-driver python3 python3-venv
venv=.build/browser-venv
if ! "$venv/bin/python" -c "import selenium, sys; sys.exit(selenium.__version__ != '$selenium')" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "selenium==$selenium"
fi
shots="${ECOWATT_SCREENSHOTS:-.build/browser-screenshots}"
mkdir -p "$shots"

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ECOWATT_MQTT_ENABLED=false "$bin" serve --host 127.0.0.1 --port "$port" --data-dir "$work/data" --keys-dir "$work/keys" \
    --firmware-dir "$work/fw" --diagnostics-dir "$work/diag" --log-level error &
server=$!
trap 'kill -TERM $server ${simulator:-} 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
wait_for_health "http://127.0.0.1:$port"
token=$(cat "$work/keys/operator_token")
api() { curl -sf -o /dev/null -H "Authorization: Bearer $token" -H "Content-Type: application/json" "$@"; }
password="browser test passphrase"
for user in olga:operator vic:viewer ada:admin; do
    api -X POST "http://127.0.0.1:$port/api/v1/users" -d "{\"name\":\"${user%%:*}\",\"role\":\"${user##*:}\",\"password\":\"$password\"}"
done
api -X POST "http://127.0.0.1:$port/api/v1/devices" \
    -d '{"device_id":"XSS-1","device_name":"<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>","location":"<b>roof</b><img src=x onerror=\"window.__xss=7\">"}'
# A command result made of markup, from a device bound by one signed upload (commands go only to a bound device's
# address): queued, fetched and answered as the device would.
"$bin" bench make-uploads --devices 1 --rounds 1 --out "$work/upload.tsv" > /dev/null
IFS=$'\t' read -r upload_path upload_body < "$work/upload.tsv"
curl -sf -o /dev/null -H "Content-Type: application/json" "http://127.0.0.1:$port$upload_path" -d "$upload_body"
result_device=${upload_path##*/}
api -X POST "http://127.0.0.1:$port/api/v1/devices/$result_device/commands" -d '{"action":"get_power_stats"}'
command=$(curl -sf "http://127.0.0.1:$port/commands/$result_device/poll" | python3 -c 'import json, sys; print(json.load(sys.stdin)["commands"][0]["command_id"])')
curl -sf -o /dev/null -H "Content-Type: application/json" "http://127.0.0.1:$port/commands/$result_device/result" \
    -d "{\"command_result\":{\"command_id\":\"$command\",\"status\":\"failed\",\"executed_at\":\"2026-12-06T00:00:00Z\",\"error_message\":\"<img src=x onerror=\\\"window.__xss=6\\\">\"}}"
# What a device sends is shown as text too: a diagnostics entry and a fault report full of markup (XSS-1 has no
# binding yet, so its reports are accepted from here).
curl -sf -o /dev/null -H "Content-Type: application/json" "http://127.0.0.1:$port/diagnostics/XSS-1" \
    -d '{"note":"<img src=x onerror=\"window.__xss=3\">"}'
curl -sf -o /dev/null -H "Content-Type: application/json" "http://127.0.0.1:$port/fault/recovery" \
    -d '{"device_id":"XSS-1","timestamp":1764300000,"fault_type":"<b>crc</b>","recovery_action":"retry","success":true,"details":"<img src=x onerror=\"window.__xss=4\">","retry_count":1}'

# Five simulated devices: uploads every 5 s, commands polled every 2 s (device seconds, real time).
"$bin" simulate --url "http://127.0.0.1:$port" --devices 5 --id-prefix BROWSER- --duration 240 --upload-interval 5 \
    --command-interval 2 --ota-interval 5 --keys-dir "$work/keys" > "$work/simulate.log" 2>&1 &
simulator=$!
for _ in $(seq 100); do
    [ "$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/devices/BROWSER-005/telemetry/latest" -o /dev/null -w '%{http_code}')" = 200 ] && break
    sleep 0.3
done

head -c 65536 /dev/urandom > "$work/image.bin"
printf '\xe9' | dd of="$work/image.bin" bs=1 count=1 conv=notrunc 2>/dev/null
ECOWATT_URL="http://127.0.0.1:$port" ECOWATT_PASSWORD="$password" ECOWATT_OPERATOR=olga ECOWATT_VIEWER=vic ECOWATT_ADMIN=ada \
    ECOWATT_IMAGE="$work/image.bin" ECOWATT_TOKEN="$token" \
    ECOWATT_XSS_DEVICE=XSS-1 ECOWATT_RESULT_DEVICE="$result_device" ECOWATT_SCREENSHOTS="$shots" ECOWATT_DEVICE_PREFIX=BROWSER- ECOWATT_DEVICES=5 \
    timeout 300 "$venv/bin/python" Tests/Browser/dashboard_test.py
echo "screenshots in $shots"
