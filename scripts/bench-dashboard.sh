#!/usr/bin/env bash
# Dashboard benchmark (issue 20), recorded in BENCHMARKS.md: 10 000 devices in the store (10 of them with a week of
# 5 s samples), the fleet page's first render and a device's one-week chart in headless Chromium, next to GET /health
# on the same server. Usage: scripts/bench-dashboard.sh   (ECOWATT_BENCH_BINARY=path to use another build)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
scripts/install-deps.sh wrk chromium chromium-driver libjs-chart.js python3 python3-venv
bin="${ECOWATT_BENCH_BINARY:-.build/release/ecowatt}"
[ -n "${ECOWATT_BENCH_BINARY:-}" ] || scripts/build-release.sh
venv=.build/browser-venv
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q --disable-pip-version-check selenium==4.25.0; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "## machine"
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$bin" bench history --data-dir "$work/data" --devices 10 --days 7 | tail -1
"$bin" bench seed --data-dir "$work/data" --devices 9990 --commands 1 | tail -1
port=5312
ECOWATT_MQTT_ENABLED=false "$bin" serve --host 127.0.0.1 --port $port --data-dir "$work/data" --keys-dir "$work/keys" \
    --firmware-dir "$work/fw" --diagnostics-dir "$work/diag" --log-level warning 2> "$work/server.log" &
wait_for_health "http://127.0.0.1:$port"
token=$(cat "$work/keys/operator_token")
curl -sf -o /dev/null -H "Authorization: Bearer $token" -H "Content-Type: application/json" "http://127.0.0.1:$port/api/v1/users" \
    -d '{"name":"timing","role":"operator","password":"dashboard bench passphrase"}'
echo "devices in the store: $(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/fleet/summary")"
ECOWATT_URL="http://127.0.0.1:$port" ECOWATT_PASSWORD="dashboard bench passphrase" ECOWATT_OPERATOR=timing \
    ECOWATT_SCREENSHOTS="$work" ECOWATT_DEVICE_PREFIX=HIST- ECOWATT_DEVICES=10 ECOWATT_XSS_DEVICE=none ECOWATT_BENCH_DEVICE=HIST-0 \
    "$venv/bin/python" Tests/Browser/dashboard_bench.py
echo "GET /health on the same server: $(wrk -t2 -c16 -d5s "http://127.0.0.1:$port/health" | awk '/Requests\/sec/ {print $2}') req/s"
