# Sourced by scripts/bench.sh (its helpers and variables: $bin, $work, $port, $duration, $sections); not run alone.
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
wait_for_health "http://127.0.0.1:$((port + 1))"
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
