#!/usr/bin/env bash
# Rollout benchmark (issue 21), recorded in BENCHMARKS.md: a simulated fleet (`ecowatt simulate`, default 1 000
# devices at 10x real time) rolled out in 4 waves (1, 10, 50, 100 %) of a 64 KiB image, success = one decoded upload
# on the new version. Prints the rollout's progress every 5 s, then the wall time from creation to completion, the
# server's CPU time over it, and GET /health on the same server. Bounded: 15 minutes at most.
# Usage: scripts/bench-rollout.sh [devices]   (ECOWATT_BENCH_BINARY=path to use another build)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
scripts/install-deps.sh wrk
bin="${ECOWATT_BENCH_BINARY:-.build/release/ecowatt}"
[ -n "${ECOWATT_BENCH_BINARY:-}" ] || scripts/build-release.sh
devices="${1:-1000}"
work=$(mktemp -d)
port=5317
url="http://127.0.0.1:$port"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

ECOWATT_MQTT_ENABLED=false "$bin" serve --host 127.0.0.1 --port $port --data-dir "$work/data" --keys-dir "$work/keys" \
    --firmware-dir "$work/fw" --diagnostics-dir "$work/diag" --log-level error \
    --limit max_connections_per_address=1000000 &   # every simulated device shares the loopback address
server=$!
wait_for_health "$url"
token="$work/keys/operator_token"
H="Authorization: Bearer $(cat "$token")"
head -c 65536 /dev/urandom > "$work/image.bin"
printf '\xe9' | dd of="$work/image.bin" bs=1 count=1 conv=notrunc 2>/dev/null
"$bin" firmware upload "$work/image.bin" --version 2.0.0 --url "$url" --token-file "$token" > /dev/null

echo "## machine"
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$bin" simulate --url "$url" --devices "$devices" --duration 900 --speed 10 --ramp-up 5 --upload-interval 60 \
    --ota-interval 60 --keys-dir "$work/keys" > "$work/simulate.log" 2>&1 &
for _ in $(seq 120); do
    known=$(curl -sf -H "$H" "$url/api/v1/fleet/summary" | python3 -c 'import json, sys; print(json.load(sys.stdin)["devices"])')
    [ "$known" -ge "$devices" ] && break
    sleep 1
done
echo "devices registered: $known"

cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
ticks=$(getconf CLK_TCK)
cpu_before=$(cpu)
start=$(date +%s.%N)
rollout=$(curl -sf -H "$H" -H "Content-Type: application/json" "$url/api/v1/rollouts" -d \
    '{"version":"2.0.0","all":true,"settings":{"waves":[1,10,50,100],"health_uploads":1,"min_finished":5,"max_concurrent_downloads":200,"max_new_downloads_per_minute":1200}}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "## rollout $rollout of 2.0.0 to $devices devices, waves 1/10/50/100 %"
status=active
for _ in $(seq 180); do
    sleep 5
    line=$(curl -sf --retry 3 --retry-all-errors -H "$H" "$url/api/v1/rollouts/$rollout" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(r["status"], "wave %d/%d" % (r["current_wave"], r["wave_count"]), json.dumps(r.get("counts", {}), sort_keys=True))')
    echo "$(python3 -c "print('%6.1f s' % ($(date +%s.%N) - $start))")  $line"
    status=${line%% *}
    [ "$status" = active ] || break
done
end=$(date +%s.%N)
cpu_after=$(cpu)
echo "## result"
echo "status: $status"
echo "wall time: $(python3 -c "print('%.1f' % ($end - $start))") s"
echo "server CPU: $(python3 -c "print('%.1f' % (($cpu_after - $cpu_before) / $ticks))") s over it"
curl -sf -H "$H" "$url/api/v1/rollouts/$rollout" | python3 -c '
import json, sys
r = json.load(sys.stdin)
for w in r["waves"]: print("wave %d: %d devices %s" % (w["wave"], w["targeted"], json.dumps(w["counts"], sort_keys=True)))'
echo "GET /health on the same server (fleet still running): $(wrk -t2 -c16 -d5s "$url/health" | awk '/Requests\/sec/ {print $2}') req/s"
