#!/usr/bin/env bash
# Benchmarks recorded in BENCHMARKS.md:
#   1. CPU cost of verify + decode per upload (no HTTP, no storage).
#   2. Secured ingest over HTTP on loopback: wrk, 2 threads, 16 connections, pre-signed uploads from many devices,
#      with durability normal and full; and bare GET /health as the ceiling of this stack on this machine.
#   3. OTA: chunk requests over HTTP (wrk), and 200 emulated devices downloading a 1 MiB image at once.
#   4. MQTT: ingest with the feed enabled vs disabled, and the outbox drain rate to a local mosquitto.
#   5. Simulated fleets (ecowatt simulate) next to GET /health on the same server, and every codec's CPU cost.
#   5a. (floor, also in targets) The HTTP stack alone (ecowatt bench stack-floor): GET /health against a POST of
#      one upload's body, the ceiling of every upload-shaped ratio; then the server's GET /health and a bad-MAC upload
#      sent the same way.
#   5b. (targets) Issue 23's ingest figures with their ratios and the server's CPU per request: keep-alive, durability
#      full, 100 000 distinct devices, and a new connection per request against GET /health under Connection: close;
#      polls that dispatch, command results, configuration acknowledgements and OTA progress against GET /health.
#   5c. (memory, not in all) RSS while DEVICES (default 1 000 000) devices upload once each; CACHE sets
#      ingest_cache_devices.
#   5d. (fleet-memory, not in all) RSS every 30 s during a 10-minute mixed simulated fleet with operator traffic.
#   6. Rejections (bad MAC, replay, malformed) next to GET /health on the same server at the default log level.
#   7. Ingest alone and during a login flood (bcrypt on its single bounded thread), next to GET /health.
#   8. (postgres, not in all) Ingest on SQLite vs PostgreSQL (one instance) vs two instances behind HAProxy on one
#      PostgreSQL, and bytes per stored sample on PostgreSQL.
# Usage: scripts/bench.sh [seconds-per-run] [all|ingest|floor|targets|memory|fleet-memory|ota|mqtt|sim|rejects|logins|postgres]   (defaults 10, all)
# ECOWATT_BENCH_BINARY=path runs another build of ecowatt (e.g. an older commit's) instead of building this one.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
sections="${2:-all}"

scripts/install-deps.sh wrk
bin="${ECOWATT_BENCH_BINARY:-.build/release/ecowatt}"
[ -n "${ECOWATT_BENCH_BINARY:-}" ] || scripts/build-release.sh
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "## machine"
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
echo
port=5311
run_server() {  # $1 = durability; a fresh data directory
    rm -rf "$work/srv"
    start_server "$1"
}
start_server() {  # $1 = durability; the data directory as it is
    ECOWATT_MQTT_ENABLED="${MQTT:-false}" $bin serve --host 127.0.0.1 --port $port --data-dir "$work/srv/data" \
        --keys-dir "$work/srv/keys" --firmware-dir "$work/srv/fw" --diagnostics-dir "$work/srv/diag" --log-level "${LOG_LEVEL:-warning}" --limit max_connections_per_address=1000000 \
        --durability "$1" 2> "$work/server.log" &
    server=$!
    wait_for_health $port
}
wait_for_health() {  # $1 = port; stops the script when nothing answers GET /health there within 10 s
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return; sleep 0.1; done
    echo "server did not start on port $1" >&2
    exit 1
}
# The `path<TAB>body` upload lines of $1 with the MAC's first hex digit replaced (the same length, a wrong MAC).
with_bad_mac() { sed -E 's/("mac":")(.)/\1f\2/; s/("mac":"f.{63}).("|$)/\1\2/' "$1"; }
stop_server() { kill -TERM $server; wait $server || true; }
ratio_to_health() {  # $1 = the target; $2 = how /health was measured (optional). Compares $rate with $health.
    awk -v r="$rate" -v h="$health" -v t="$1" -v m="${2:+ ($2)}" \
        'BEGIN { printf "  ratio to GET /health%s: %.2f (target %s)\n", m, r / h, t }'
}
rss_mb() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$server/status"; }
# The server's CPU ticks (user + system) from /proc.
server_ticks() { awk '{print $14+$15}' "/proc/$server/stat"; }
measure() {  # $1 = label; the rest: the wrk command. Prints requests/s, p99, CPU per request; sets $rate.
    local before after
    before=$(server_ticks)
    "${@:2}" > "$work/measure.txt"
    after=$(server_ticks)
    rate=$(awk '/Requests\/sec/ {print $2}' "$work/measure.txt")
    local count p99 errors
    count=$(awk '/requests in/ {print $1}' "$work/measure.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$work/measure.txt")
    errors=$(awk '/Non-2xx/ {print $NF}' "$work/measure.txt")
    awk -v l="$1" -v r="$rate" -v p="$p99" -v t="$((after - before))" -v n="$count" -v e="${errors:-0}" \
        'BEGIN { printf "%-52s %8d/s  p99 %-8s server CPU %.3f ms per request  non-2xx %d\n", l, r, p, t * 10 / n, e }'
}

# Enough pre-signed uploads that wrk never runs out (each is used once; every run starts with a fresh database).
$bin bench make-uploads --devices 4000 --rounds 60 --out "$work/uploads.tsv" >&2

if [ "$sections" = all ]; then
echo "## verify + decode per upload (ecowatt bench decode)"
$bin bench decode --iterations 20000
if [ -f ../shared/conformance/uploads.jsonl ]; then
    $bin bench decode --corpus ../shared/conformance/uploads.jsonl --iterations 50
fi
if [ -f ../shared/conformance/blobs.jsonl ]; then
    echo
    echo "## every codec, encode and decode, on the firmware's batches (ecowatt bench codecs)"
    $bin bench codecs --blobs ../shared/conformance/blobs.jsonl --iterations 2000
fi
fi

if [ "$sections" = all ] || [ "$sections" = ingest ]; then
for mode in normal full; do
    echo
    echo "## ingest over HTTP, durability=$mode (wrk -t2 -c16 -d${duration}s, keep-alive)"
    run_server "$mode"
    UPLOADS="$work/uploads.tsv" WRK_THREADS=2 wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-uploads.lua \
        "http://127.0.0.1:$port" | grep -E "Requests/sec|Latency|50%|90%|99%|requests in|Non-2xx|Socket errors"
    stored=$(curl -s -H "Authorization: Bearer $(cat "$work/srv/keys/operator_token")" \
        "http://127.0.0.1:$port/api/v1/stats/security" | sed -E 's/.*"successful_validations":([0-9]+).*/\1/')
    echo "uploads acknowledged and stored: $stored"
    stop_server
done

echo
echo "## ingest over HTTP, durability=normal, new connection per request (CLOSE=1, as the firmware does)"
run_server normal
CLOSE=1 UPLOADS="$work/uploads.tsv" WRK_THREADS=2 wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-uploads.lua \
    "http://127.0.0.1:$port" | grep -E "Requests/sec|Latency|50%|90%|99%|requests in|Non-2xx|Socket errors"
stop_server

echo
echo "## command polls, empty queues (4000 devices, wrk -t2 -c16 -d${duration}s)"
run_server normal
DEVICES=4000 WRK_THREADS=2 wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-device-requests.lua "http://127.0.0.1:$port" \
    | grep -E "Requests/sec|50%|99%|Non-2xx"
stop_server

# Polls that dispatch a command, and the other device routes that write: the targets section.
fi

if [ "$sections" = all ] || [ "$sections" = ota ]; then
echo
echo "## OTA chunks over HTTP: 1 MiB image, one device session, wrk -t2 -c16 -d${duration}s, keep-alive"
run_server normal
head -c 1048576 /dev/urandom > "$work/app.bin"
printf '\xe9' | dd of="$work/app.bin" bs=1 count=1 conv=notrunc 2>/dev/null
$bin firmware prepare "$work/app.bin" --version 9.0.0 --keys-dir "$work/srv/keys" --firmware-dir "$work/srv/fw" >&2
token=$(cat "$work/srv/keys/operator_token")
curl -sf -X POST "http://127.0.0.1:$port/ota/initiate/BENCH-CHUNKS" -d '{"firmware_version":"9.0.0"}' >/dev/null
DEVICE=BENCH-CHUNKS VERSION=9.0.0 TOTAL=513 wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-chunks.lua \
    "http://127.0.0.1:$port" | grep -E "Requests/sec|Transfer/sec|Latency|50%|99%|Non-2xx"
echo
echo "## 200 simulated devices download and verify the 1 MiB image at once (ecowatt bench ota-fleet)"
curl -sf -X POST -H "Authorization: Bearer $token" -H "Content-Type: application/json" "http://127.0.0.1:$port/api/v1/deployments" \
    -d '{"version":"9.0.0"}' >/dev/null
$bin bench ota-fleet --url "http://127.0.0.1:$port" --devices 200 --keys-dir "$work/srv/keys"
echo "sessions: $(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/stats/ota" | sed -E 's/.*"sessions_by_outcome":(\{[^}]*\}).*/\1/')"
stop_server
fi

if [ "$sections" = all ] || [ "$sections" = sim ]; then
for fleet in "1000 10" "2000 20"; do
    set -- $fleet
    echo
    echo "## simulated fleet: $1 devices at $2x real time for ${duration}s (ecowatt simulate), then GET /health on the same server"
    run_server normal
    server_cpu=$(awk '{print $14+$15}' /proc/$server/stat)
    TIMEFORMAT='%U %S'
    { time $bin simulate --url "http://127.0.0.1:$port" --devices "$1" --duration "$duration" --speed "$2" --ramp-up 1 \
        --keys-dir "$work/srv/keys" --nonce-file "$work/nonces-$1.json" > "$work/sim.txt" 2>/dev/null || true; } \
        2> "$work/sim-cpu.txt"
    sed -n '2,20p' "$work/sim.txt"
    server_cpu=$(( $(awk '{print $14+$15}' /proc/$server/stat) - server_cpu ))
    awk -v s="$server_cpu" '{ printf "CPU during the run: simulator %.1f s, server %.1f s (of %d cores x %s s)\n", $1 + $2, s / 100, 2, "'"$duration"'" }' \
        "$work/sim-cpu.txt"
    health=$(wrk -t2 -c16 -d"${duration}s" "http://127.0.0.1:$port/health" | awk '/Requests\/sec/ {print $2}')
    sim=$(sed -nE 's/.* requests in .* \(([0-9]+)\/s\)/\1/p' "$work/sim.txt")
    awk -v s="$sim" -v h="$health" 'BEGIN { printf "simulated fleet %d requests/s; GET /health %d/s in the same server; ratio %.2f\n", s, h, s / h }'
    stop_server
done
echo
echo "## firmware rollout: 300 simulated devices at 10x, a 256 KiB image deployed to all, OTA check every 60 device-s"
run_server normal
head -c 262144 /dev/urandom > "$work/rollout.bin"
printf '\xe9' | dd of="$work/rollout.bin" bs=1 count=1 conv=notrunc 2>/dev/null
$bin firmware prepare "$work/rollout.bin" --version 9.1.0 --keys-dir "$work/srv/keys" --firmware-dir "$work/srv/fw" >/dev/null 2>&1
curl -sf -X POST -H "Authorization: Bearer $(cat "$work/srv/keys/operator_token")" -H "Content-Type: application/json" "http://127.0.0.1:$port/api/v1/deployments" \
    -d '{"version":"9.1.0"}' >/dev/null
$bin simulate --url "http://127.0.0.1:$port" --devices 300 --duration "$duration" --speed 10 --ramp-up 1 --ota-interval 60 \
    --keys-dir "$work/srv/keys" --nonce-file "$work/nonces-rollout.json" 2>/dev/null | sed -n '2,22p' || true
stop_server
fi

if [ "$sections" = all ] || [ "$sections" = targets ] || [ "$sections" = floor ]; then
# The floor of every upload-shaped target: the same Hummingbird and SwiftNIO with none of EcoWatt (ecowatt bench
# stack-floor), a GET /health and a POST of one upload's body, both sent by wrk without Lua per request. Then the
# server's own GET /health and a refused upload (bad MAC) sent the same way.
echo
echo "## the HTTP stack alone (ecowatt bench stack-floor), then the server, with the same wrk requests"
head -n 1 "$work/uploads.tsv" > "$work/post.tsv"
with_bad_mac "$work/post.tsv" > "$work/post-bad-mac.tsv"
$bin bench stack-floor --port $((port + 1)) &
server=$!
wait_for_health $((port + 1))
measure "stack floor: GET /health" wrk -t2 -c16 -d"${duration}s" --latency "http://127.0.0.1:$((port + 1))/health"
health=$rate
measure "stack floor: POST of an upload's body (collected)" env POST_FILE="$work/post.tsv" \
    wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-post.lua "http://127.0.0.1:$((port + 1))"
ratio_to_health "none: the ceiling of every upload-shaped figure" "the floor's"
stop_server
run_server normal
measure "GET /health" wrk -t2 -c16 -d"${duration}s" --latency "http://127.0.0.1:$port/health"
health=$rate
measure "refused upload (bad MAC), one body" env POST_FILE="$work/post-bad-mac.tsv" \
    wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-post.lua "http://127.0.0.1:$port"
ratio_to_health 0.9
stop_server
fi

if [ "$sections" = all ] || [ "$sections" = targets ]; then
# Issue 23's ingest figures, each next to GET /health measured the same way on the same fresh server, with the
# server's CPU per request (measure).
echo
echo "## issue 23: ingest against GET /health, keep-alive and new connection per request, 100 000 distinct devices"
if [ ! -f "$work/uploads-100k.tsv" ]; then
    $bin bench make-uploads --devices 100000 --rounds 1 --out "$work/uploads-100k.tsv" >&2
fi
against_health() {  # $1 = the uploads' label, $2 = their file, $3 = the target ratio, $4 = 1 for Connection: close,
                    # $5 = durability (default normal); sets $uploads to the uploads' rate
    local mode="keep-alive" close=()
    if [ "$4" = 1 ]; then mode="Connection: close"; close=(-H "Connection: close"); fi
    run_server "${5:-normal}"
    measure "GET /health, $mode" wrk -t2 -c16 -d"${duration}s" --latency "${close[@]}" "http://127.0.0.1:$port/health"
    local health=$rate
    measure "accepted uploads, $1, $mode" env CLOSE="$4" UPLOADS="$2" WRK_THREADS=2 \
        wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-uploads.lua "http://127.0.0.1:$port"
    uploads=$rate
    ratio_to_health "$3" "$mode"
    stop_server
}
against_health "4 000 devices" "$work/uploads.tsv" 0.5 0
normal=$uploads
against_health "4 000 devices, durability=full" "$work/uploads.tsv" 0.5 0 full
awk -v f="$uploads" -v n="$normal" 'BEGIN { printf "  durability=full against normal: %.2f (target >= 0.85)\n", f / n }'
against_health "100 000 distinct devices" "$work/uploads-100k.tsv" 0.4 0
against_health "4 000 devices" "$work/uploads.tsv" 0.5 1
echo "  (wrk counts each server-side close as a read socket error; those requests were answered)"

# The other device routes that write, each on a server whose database `ecowatt bench seed` filled first (devices
# bound to 127.0.0.1, so that their unsigned requests are honoured): polls that each dispatch a command, command
# results, configuration acknowledgements, OTA progress reports.
seeded_server() {  # the arguments: `ecowatt bench seed` options
    run_server normal
    stop_server
    $bin bench seed --data-dir "$work/srv/data" "$@" >&2
    start_server normal
    measure "GET /health, keep-alive" wrk -t2 -c16 -d"${duration}s" --latency "http://127.0.0.1:$port/health"
    health=$rate
}
device_requests() {  # $1 = label; the rest: environment for scripts/wrk-device-requests.lua
    measure "$1" env WRK_THREADS=2 "${@:2}" \
        wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-device-requests.lua "http://127.0.0.1:$port"
    ratio_to_health 0.5 keep-alive
}
operator() { curl -s -H "Authorization: Bearer $(cat "$work/srv/keys/operator_token")" "http://127.0.0.1:$port/api/v1/$1"; }

seeded_server --devices 4000 --commands 40
device_requests "command polls, each dispatching a command" DEVICES=4000
echo "  $(operator stats/commands | sed -E 's/.*"dispatched":([0-9]+).*/\1/') of 160 000 queued commands dispatched"
stop_server
seeded_server --devices 4000 --commands 40 --dispatched
device_requests "command results" DEVICES=4000 ROUNDS=40 METHOD=POST PATH_TEMPLATE='/commands/BENCH-{device}/result' \
    BODY_TEMPLATE='{"command_result":{"command_id":"BENCH-{device}-{round}","status":"success","executed_at":"2026-12-06T12:00:00Z"}}'
echo "  commands by status: $(operator stats/commands)"
stop_server
seeded_server --devices 100000 --pending-configs
device_requests "configuration acknowledgements (100 000 devices, once each)" DEVICES=100000 ROUNDS=1 METHOD=POST \
    PATH_TEMPLATE='/config/BENCH-{device}/acknowledge' \
    BODY_TEMPLATE='{"status":"applied","timestamp":1765022400,"error_msg":"Configuration updated successfully","power_management":{"enabled":false,"techniques":0,"energy_poll_freq":300000000}}'
stop_server
seeded_server --devices 4000
head -c 65536 /dev/urandom > "$work/progress.bin"
printf '\xe9' | dd of="$work/progress.bin" bs=1 count=1 conv=notrunc 2>/dev/null
$bin firmware prepare "$work/progress.bin" --version 9.3.0 --keys-dir "$work/srv/keys" --firmware-dir "$work/srv/fw" >/dev/null 2>&1
WRK_THREADS=2 DEVICES=4000 ROUNDS=1 METHOD=POST PATH_TEMPLATE='/ota/initiate/BENCH-{device}' \
    BODY_TEMPLATE='{"firmware_version":"9.3.0"}' wrk -t2 -c16 -d8s -s scripts/wrk-device-requests.lua \
    "http://127.0.0.1:$port" > /dev/null   # wrk idles once every device's initiate is sent, until -d ends
echo "  OTA sessions open: $(operator stats/ota | sed -E 's/.*"active_sessions":([0-9]+).*/\1/')"
device_requests "OTA progress reports (4 000 open sessions)" DEVICES=4000 METHOD=POST PATH_TEMPLATE='/ota/BENCH-{device}/progress' \
    BODY_TEMPLATE='{"phase":"downloading","progress":{percent},"message":"Downloading chunk {round} of 33","timestamp":1765022400}'
stop_server
fi

if [ "$sections" = memory ]; then
# Issue 23's memory target: the server's RSS once DEVICES (default 1 000 000) devices have each uploaded once, every
# 30 s during the replay (about 7 minutes for a million on 2 cores; not part of `all`).
devices="${DEVICES:-1000000}"
echo
echo "## memory: RSS while $devices devices upload for the first time (ingest_cache_devices ${CACHE:-default})"
$bin bench make-uploads --devices "$devices" --rounds 1 --out "$work/uploads-memory.tsv" >&2
rm -rf "$work/srv"
ECOWATT_MQTT_ENABLED=false $bin serve --host 127.0.0.1 --port $port --data-dir "$work/srv/data" --keys-dir "$work/srv/keys" \
    --firmware-dir "$work/srv/fw" --diagnostics-dir "$work/srv/diag" --log-level warning \
    --limit max_connections_per_address=1000000 ${CACHE:+--limit ingest_cache_devices=$CACHE} 2> "$work/server.log" &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
accepted() {
    curl -s -H "Authorization: Bearer $(cat "$work/srv/keys/operator_token")" "http://127.0.0.1:$port/api/v1/stats/security" \
        | sed -E 's/.*"successful_validations":([0-9]+).*/\1/'
}
echo "RSS at start: $(rss_mb) MB"
# wrk idles once its uploads are sent instead of ending: the run ends when the server's count stops growing.
UPLOADS="$work/uploads-memory.tsv" WRK_THREADS=2 wrk -t2 -c16 -d3600s -s scripts/wrk-uploads.lua "http://127.0.0.1:$port" \
    > /dev/null &
replay=$!
started=$SECONDS
last=-1
while sleep 15; do
    count=$(accepted)
    echo "  after $((SECONDS - started)) s: $count uploads accepted, RSS $(rss_mb) MB"
    [ "$count" = "$last" ] && break
    last=$count
done
kill $replay 2>/dev/null || true
echo "RSS after $count devices uploaded once: $(rss_mb) MB; database $(du -sh "$work/srv/data" | cut -f1)"
stop_server
fi

if [ "$sections" = fleet-memory ]; then
# Issue 23's steadiness target: RSS every 30 s while a mixed simulated fleet runs for SECONDS_RUN (default 600) s:
# DEVICES (default 500) devices at 10x upload, poll commands and configuration, report energy and check for OTA (every
# 600 device-s), while an operator queues a command and an upload_interval change (15–24 s, within the safe limits)
# for a random device every 2 s, and deploys a 256 KiB image to all after a minute. Not part of `all` (10 minutes).
devices="${DEVICES:-500}"
seconds="${SECONDS_RUN:-600}"
echo
echo "## memory under a mixed fleet: $devices simulated devices at 10x for $seconds s, RSS every 30 s"
run_server normal
token=$(cat "$work/srv/keys/operator_token")
api() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" -H "Content-Type: application/json" "$@"; }
head -c 262144 /dev/urandom > "$work/fleet.bin"
printf '\xe9' | dd of="$work/fleet.bin" bs=1 count=1 conv=notrunc 2>/dev/null
$bin firmware prepare "$work/fleet.bin" --version 9.2.0 --keys-dir "$work/srv/keys" --firmware-dir "$work/srv/fw" >/dev/null 2>&1
$bin simulate --url "http://127.0.0.1:$port" --devices "$devices" --duration "$seconds" --speed 10 --ramp-up 5 \
    --ota-interval 600 --keys-dir "$work/srv/keys" --nonce-file "$work/nonces-fleet.json" > "$work/fleet.txt" 2>/dev/null &
fleet=$!
started=$SECONDS
next=0
statuses=()
while kill -0 $fleet 2>/dev/null; do
    elapsed=$((SECONDS - started))
    if [ $elapsed -ge $next ]; then
        echo "  $elapsed s: RSS $(rss_mb) MB"
        next=$((next + 30))
    fi
    if [ $elapsed -ge 60 ] && [ -z "${deployed:-}" ]; then
        deployed=$(api -X POST "http://127.0.0.1:$port/api/v1/deployments" -d '{"version":"9.2.0"}')
        echo "  deployment of 9.2.0 to all: HTTP $deployed"
    fi
    device=$(printf 'ESP32_SIM_%03d' $((RANDOM % devices + 1)))
    statuses+=("$(api -X POST "http://127.0.0.1:$port/api/v1/devices/$device/commands" -d '{"action":"get_power_stats"}')")
    statuses+=("$(api -X PUT "http://127.0.0.1:$port/api/v1/devices/$device/config/pending" \
        -d "{\"config_update\":{\"upload_interval\":$((15 + RANDOM % 10))}}")")
    sleep 2
done
wait $fleet || true
echo "  end: RSS $(rss_mb) MB"
echo "operator requests by status:$(printf '%s\n' "${statuses[@]}" | sort | uniq -c | awk '{printf " %s x%d", $2, $1}') (404: the device has not booted yet)"
sed -n '2,26p' "$work/fleet.txt"
stop_server
fi

if [ "$sections" = all ] || [ "$sections" = rejects ]; then
echo
echo "## rejections at the default log level (info): GET /health, then bad MAC / replay / malformed uploads in rotation"
LOG_LEVEL=info run_server normal
head -n 1 "$work/uploads.tsv" > "$work/valid.tsv"
cut -f1 "$work/valid.tsv" | { read -r path; curl -sf -X POST "http://127.0.0.1:$port$path" \
    --data-binary "$(cut -f2 "$work/valid.tsv")" >/dev/null; }   # accepted once: resending it is a replay
with_bad_mac "$work/valid.tsv" > "$work/bad-mac.tsv"
{
    cat "$work/valid.tsv" "$work/bad-mac.tsv"
    printf '/aggregated/BENCH-MALFORMED\t{"nonce":12,"payload":\n'
} > "$work/rejects.tsv"
measure "GET /health" wrk -t2 -c16 -d"${duration}s" --latency "http://127.0.0.1:$port/health"
health=$rate
measure "rejections (bad MAC, replay, malformed in rotation)" env REJECTS="$work/rejects.tsv" \
    wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-rejects.lua "http://127.0.0.1:$port"
ratio_to_health 0.9
# An attacker cycling through device ids: every refusal is a security event of a new id (the event log is full).
awk -v body="$(cut -f2 "$work/bad-mac.tsv")" 'BEGIN { for (i = 1; i <= 20000; i++) printf "/aggregated/FLOOD-%d\t%s\n", i, body }' \
    > "$work/flood.tsv"
measure "bad MACs under 20 000 distinct device ids" env REJECTS="$work/flood.tsv" \
    wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-rejects.lua "http://127.0.0.1:$port"
ratio_to_health 0.9
echo "server log lines written during the run: $(wc -l < "$work/server.log")"
stop_server
fi

if [ "$sections" = all ] || [ "$sections" = logins ]; then
echo
echo "## ingest alone, during a login flood (wrk -t1 -c32 on POST /api/v1/auth/login, wrong passwords), and during the"
echo "## same flood of GET /health (what any flood of cheap requests costs), and a paced flood of 400 logins/s"
echo "## (wrk -t1 -c8, 20 ms between requests on each connection); a fresh server each. logins-undelayed: the login"
echo "## flood with login_refusal_delay_ms=0 (each 429 answered at once, as before the delay)"
for run in alone logins logins-undelayed health paced; do
    if [ $run = logins-undelayed ]; then ECOWATT_LOGIN_REFUSAL_DELAY_MS=0 run_server normal; else run_server normal; fi
    health=$(wrk -t2 -c16 -d"${duration}s" "http://127.0.0.1:$port/health" | awk '/Requests\/sec/ {print $2}')
    if [ $run = logins ] || [ $run = logins-undelayed ]; then
        wrk -t1 -c32 -d"$((duration + 4))s" -s scripts/wrk-logins.lua "http://127.0.0.1:$port" > "$work/flood.txt" &
        flood=$!
        sleep 2
    elif [ $run = paced ]; then
        LOGIN_DELAY_MS=20 wrk -t1 -c8 -d"$((duration + 4))s" -s scripts/wrk-logins.lua "http://127.0.0.1:$port" > "$work/flood.txt" &
        flood=$!
        sleep 2
    elif [ $run = health ]; then
        wrk -t1 -c32 -d"$((duration + 4))s" "http://127.0.0.1:$port/health" > "$work/flood.txt" &
        flood=$!
        sleep 2
    fi
    UPLOADS="$work/uploads.tsv" WRK_THREADS=2 wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-uploads.lua \
        "http://127.0.0.1:$port" > "$work/$run.txt"
    [ $run = alone ] || wait $flood
    rate=$(awk '/Requests\/sec/ {print $2}' "$work/$run.txt")
    [ $run = alone ] && alone=$rate
    echo "ingest, $run: $rate uploads/s ($(awk -v r="$rate" -v a="$alone" 'BEGIN { printf "%d", 100 * r / a }') % of alone), p99 $(awk '$1 == "99%" {print $2}' "$work/$run.txt"), non-2xx $(awk '/Non-2xx/ {print $4}' "$work/$run.txt"); GET /health before: $health/s"
    if [ $run != alone ]; then echo "  the flood: $(awk '/Requests\/sec/ {print $2}' "$work/flood.txt") answers/s"; fi
    if [ $run != alone ] && [ $run != health ]; then
        curl -sf -H "Authorization: Bearer $(cat "$work/srv/keys/operator_token")" "http://127.0.0.1:$port/metrics" | grep '^ecowatt_logins_total'
    fi
    stop_server
done
fi

if [ "$sections" = all ] || [ "$sections" = mqtt ]; then
bport=5883
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n' $bport > "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
broker=$!
sleep 0.5
for mode in false true; do
    echo
    echo "## ingest over HTTP with the MQTT feed enabled=$mode (broker on loopback), wrk -t2 -c16 -d${duration}s"
    MQTT=$mode ECOWATT_MQTT_PORT=$bport run_server normal
    cpu_before=$(awk '{print $14+$15}' /proc/$broker/stat)
    UPLOADS="$work/uploads.tsv" WRK_THREADS=2 wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-uploads.lua \
        "http://127.0.0.1:$port" | grep -E "Requests/sec|50%|99%|Non-2xx"
    sleep 2
    echo "mqtt: $(curl -s -H "Authorization: Bearer $(cat "$work/srv/keys/operator_token")" "http://127.0.0.1:$port/api/v1/mqtt")"
    echo "broker CPU during the run: $(( ($(awk '{print $14+$15}' /proc/$broker/stat) - cpu_before) * 10 )) ms"
    stop_server
done
echo
echo "## outbox drain to the broker: 100 000 queued messages (ecowatt bench fill-outbox), time until the backlog is 0"
run_server normal
stop_server
$bin bench fill-outbox --data-dir "$work/srv/data" --messages 100000 >&2
start=$(date +%s.%N)
MQTT=true ECOWATT_MQTT_PORT=$bport $bin serve --host 127.0.0.1 --port $port --data-dir "$work/srv/data" \
    --keys-dir "$work/srv/keys" --firmware-dir "$work/srv/fw" --diagnostics-dir "$work/srv/diag" --log-level warning &
server=$!
token=$(cat "$work/srv/keys/operator_token")
while :; do
    backlog=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/mqtt" 2>/dev/null \
        | sed -nE 's/.*"backlog":([0-9]+).*/\1/p' || true)
    [ "$backlog" = 0 ] && break
    sleep 0.1
done
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "drained 100000 messages in %.2f s (server start included): %.0f messages/s\n", e - s, 100000 / (e - s) }'
stop_server
kill -9 $broker 2>/dev/null || true
fi

if [ "$sections" = postgres ]; then
scripts/install-deps.sh postgresql postgresql-client haproxy
chmod 755 "$work"
pg_port=5399
scripts/postgres.sh start "$work/pg" $pg_port >/dev/null
trap 'kill $(jobs -p) 2>/dev/null || true; scripts/postgres.sh stop "$work/pg"; rm -rf "$work"' EXIT
pg_url="postgres://ecowatt@127.0.0.1:$pg_port"
psql -V | head -1
pg_server() {  # $1 = port, $2 = database, $3 = instance directory; the instances share the keys directory
    psql -q "$pg_url/postgres" -c "CREATE DATABASE $2" 2>/dev/null || true
    ECOWATT_DATABASE_URL="$pg_url/$2?sslmode=disable" ECOWATT_MQTT_ENABLED=false $bin serve --host 127.0.0.1 --port "$1" \
        --data-dir "$3/data" --keys-dir "$work/srv/keys" --firmware-dir "$3/fw" --diagnostics-dir "$3/diag" \
        --log-level "${LOG_LEVEL:-warning}" --limit max_connections_per_address=1000000 2>> "$work/server.log" &
    for _ in $(seq 150); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return; sleep 0.1; done
    echo "server on PostgreSQL did not start" >&2
    exit 1
}
ingest() {  # $1 = port
    UPLOADS="$work/uploads.tsv" WRK_THREADS=2 wrk -t2 -c16 -d"${duration}s" --latency -s scripts/wrk-uploads.lua \
        "http://127.0.0.1:$1" | grep -E "Requests/sec|Latency|50%|99%|requests in|Non-2xx|Socket errors"
}

echo
echo "## ingest, SQLite, one instance (wrk -t2 -c16 -d${duration}s, keep-alive)"
run_server normal
ingest $port
stop_server

echo
echo "## ingest, PostgreSQL $(psql -tA "$pg_url/postgres" -c 'SHOW server_version'), one instance (same wrk)"
pg_server 5321 bench_one "$work/one"
ingest 5321
accepted=$(psql -tA "$pg_url/bench_one" -c "SELECT coalesce(sum(upload_count), 0) FROM devices")
kill -TERM $(jobs -p) 2>/dev/null; wait 2>/dev/null || true
bytes=$(psql -tA "$pg_url/bench_one" -c "SELECT pg_total_relation_size('telemetry_chunks') + pg_total_relation_size('telemetry_refs')")
echo "uploads stored: $accepted ($((accepted * 3)) samples); telemetry tables $bytes bytes with their indexes:" \
    "$(awk -v b="$bytes" -v n="$accepted" 'BEGIN { printf "%.1f", b / (n * 3) }') bytes per stored sample"

echo
echo "## ingest, two instances on one PostgreSQL behind HAProxy (round robin per request, same wrk against HAProxy)"
pg_server 5322 bench_two "$work/a"
pg_server 5323 bench_two "$work/b"
cat > "$work/haproxy.cfg" <<HAPROXY
global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend devices
    bind 127.0.0.1:5320
    option forwardfor
    default_backend ecowatt
backend ecowatt
    balance roundrobin
    server a 127.0.0.1:5322
    server b 127.0.0.1:5323
HAPROXY
haproxy -db -f "$work/haproxy.cfg" &
for _ in $(seq 50); do curl -sf "http://127.0.0.1:5320/health" >/dev/null && break; sleep 0.1; done
ingest 5320
echo "uploads stored: $(psql -tA "$pg_url/bench_two" -c "SELECT coalesce(sum(upload_count), 0) FROM devices")"
echo "GET /health through HAProxy, same instances:"
wrk -t2 -c16 -d"${duration}s" --latency "http://127.0.0.1:5320/health" | grep -E "Requests/sec|99%"
kill -TERM $(jobs -p) 2>/dev/null; wait 2>/dev/null || true
fi

echo
echo "## ceiling: GET /health (wrk -t2 -c16 -d${duration}s)"
run_server normal
wrk -t2 -c16 -d"${duration}s" --latency "http://127.0.0.1:$port/health" | grep -E "Requests/sec|Latency|99%"
stop_server
