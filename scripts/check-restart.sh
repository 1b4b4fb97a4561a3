#!/usr/bin/env bash
# Times scripts/serve.sh from its start until GET /health answers, then stops it (issue 16: a restart without source
# changes must not rebuild). Run it twice on a clean clone: the first run builds, the second must take seconds.
# Usage: scripts/check-restart.sh [port]
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-5721}
start=$(date +%s.%N)
ECOWATT_MQTT_ENABLED=false scripts/serve.sh --port "$port" --data-dir /tmp/restart-data --keys-dir /tmp/restart-keys > /tmp/restart.log 2>&1 &
pid=$!
until curl -sf "localhost:$port/health" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "serve.sh exited; see /tmp/restart.log" >&2; exit 1; }
    sleep 0.05
done
end=$(date +%s.%N)
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "serve.sh to /health: $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s ($(head -1 /tmp/restart.log))"
