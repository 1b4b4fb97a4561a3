#!/usr/bin/env bash
# Builds (release, only when a source changed: scripts/build-release.sh) and starts the EcoWatt Cloud server with
# embedded defaults:
# 0.0.0.0:5001, SQLite in ./data, operator token and development FOTA keys generated into ./keys on first start,
# and the MQTT feed to 127.0.0.1:1883 (a local mosquitto is started when installed and nothing listens there).
# Extra arguments are passed to `ecowatt serve` (see `ecowatt serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

scripts/build-release.sh

broker=""
mqtt_port="${ECOWATT_MQTT_PORT:-1883}"
mqtt_host="${ECOWATT_MQTT_HOST:-127.0.0.1}"
if [ "${ECOWATT_MQTT_ENABLED:-true}" = true ] && [ "$mqtt_host" = 127.0.0.1 ] \
    && ! (exec 3<>"/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null; then
    mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    if [ -x "$mosquitto_bin" ]; then
        mkdir -p data
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$mqtt_port" > data/mosquitto.conf
        echo "==> starting a local MQTT broker on 127.0.0.1:$mqtt_port (log: data/mosquitto.log)" >&2
        "$mosquitto_bin" -c data/mosquitto.conf > data/mosquitto.log 2>&1 &
        broker=$!
    fi
fi

if [ -n "$broker" ]; then
    # Run the server in the foreground of this shell; stop the broker it started when the server exits.
    trap 'kill "$broker" 2>/dev/null || true' EXIT
    trap 'kill -TERM "$server" 2>/dev/null || true' INT TERM
    .build/release/ecowatt serve "$@" &
    server=$!
    wait "$server" || wait "$server" || true
else
    exec .build/release/ecowatt serve "$@"
fi
