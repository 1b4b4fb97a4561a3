#!/usr/bin/env bash
# Issue 17's retention benchmark: ingest p99 while the maintenance job prunes expired telemetry, next to a run without
# anything to prune, and GET /health of the same server after each.
#   1. `ecowatt bench history --devices 20 --days 7` fills a database (806 400 uploads arriving over 7 days);
#   2. each run copies it, starts the server with retention_raw_days=$KEEP_DAYS (3650: nothing to prune) or 2 (5 days of
#      data expire; the job drops them 30 s into the run), replays 600 000 pre-signed uploads of 6 000 other devices with
#      wrk for 75 s, then measures GET /health for 5 s.
# Usage: scripts/bench-retention.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
scripts/install-deps.sh wrk
scripts/build-release.sh
bin=.build/release/ecowatt
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
$bin bench history --data-dir "$work/base" --devices 20 --days 7
$bin bench make-uploads --devices 6000 --rounds 100 --out "$work/uploads.tsv" >&2
port=5743
for days in 3650 2; do
    rm -rf "$work/run" && cp -r "$work/base" "$work/run"
    ECOWATT_MQTT_ENABLED=false $bin serve --host 127.0.0.1 --port $port --data-dir "$work/run" --keys-dir "$work/keys" \
        --log-level info --limit max_connections_per_address=1000000 --limit retention_raw_days=$days 2> "$work/server.log" &
    server=$!
    wait_for_health "http://127.0.0.1:$port"
    echo "== retention_raw_days=$days"
    UPLOADS="$work/uploads.tsv" WRK_THREADS=2 wrk -t2 -c16 -d75s --latency -s scripts/wrk-uploads.lua "http://127.0.0.1:$port" \
        | grep -E "Requests/sec|  50%|  99%|Latency  "
    echo "GET /health:"
    wrk -t2 -c16 -d5s --latency "http://127.0.0.1:$port/health" | grep -E "Requests/sec|  99%"
    curl -s -H "Authorization: Bearer $(cat "$work/keys/operator_token")" "http://127.0.0.1:$port/metrics" \
        | grep -E "^ecowatt_telemetry_pruned_total|^ecowatt_rollup_refreshes_total" || true
    grep "telemetry past retention dropped" "$work/server.log" || true
    kill -TERM $server; wait $server || true
done
