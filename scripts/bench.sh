#!/usr/bin/env bash
# Benchmarks recorded in BENCHMARKS.md:
#   1. CPU cost of verify + decode per upload (no HTTP, no storage).
#   2. Secured ingest over HTTP on loopback: wrk, 2 threads, 16 connections, pre-signed uploads from many devices,
#      with durability normal and full; and bare GET /health as the ceiling of this stack on this machine.
#   3. OTA: chunk requests over HTTP (wrk), and 200 emulated devices downloading a 1 MiB image at once.
#   4. MQTT: ingest with the feed enabled vs disabled, and the outbox drain rate to a local mosquitto.
#   5. Simulated fleets (ecowatt simulate) next to GET /health on the same server, and every codec's CPU cost.
#   5a.–5d. live in scripts/bench/targets.sh and scripts/bench/memory.sh, 8. in scripts/bench/postgres.sh (sourced).
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
. scripts/lib.sh
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
    wait_for_health "http://127.0.0.1:$port"
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

. scripts/bench/targets.sh

. scripts/bench/memory.sh

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

. scripts/bench/postgres.sh

echo
echo "## ceiling: GET /health (wrk -t2 -c16 -d${duration}s)"
run_server normal
wrk -t2 -c16 -d"${duration}s" --latency "http://127.0.0.1:$port/health" | grep -E "Requests/sec|Latency|99%"
stop_server
