# Sourced by scripts/bench.sh (its helpers and variables: $bin, $work, $port, $duration, $sections); not run alone.
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
wait_for_health "http://127.0.0.1:$port"
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
