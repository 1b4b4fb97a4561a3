# Sourced by scripts/bench.sh (its helpers and variables: $bin, $work, $port, $duration, $sections); not run alone.
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
    wait_for_health "http://127.0.0.1:$1"
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
wait_for_health "http://127.0.0.1:5320"
ingest 5320
echo "uploads stored: $(psql -tA "$pg_url/bench_two" -c "SELECT coalesce(sum(upload_count), 0) FROM devices")"
echo "GET /health through HAProxy, same instances:"
wrk -t2 -c16 -d"${duration}s" --latency "http://127.0.0.1:5320/health" | grep -E "Requests/sec|99%"
kill -TERM $(jobs -p) 2>/dev/null; wait 2>/dev/null || true
fi
