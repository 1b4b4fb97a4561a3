#!/usr/bin/env bash
# Checks the operator API against its OpenAPI document with schemathesis (issue 18): a live server seeded with
# devices, commands, configuration, firmware and a deployment; every /api/v1 operation but two with the bootstrap token; zero
# server errors, every response's status, content type and body as documented. The device protocol is covered by the
# conformance corpora instead. Bounded by ECOWATT_SCHEMATHESIS_SECONDS (default 150).
# Usage: scripts/schemathesis.sh [path to the ecowatt binary, default .build/debug/ecowatt]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

version=4.32.5   # pinned, with hypothesis: a new release may add checks or change the defaults
hypothesis=6.170.27
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
seconds="${ECOWATT_SCHEMATHESIS_SECONDS:-150}"
bin="${1:-.build/debug/ecowatt}"

scripts/install-deps.sh python3 python3-venv
venv=.build/schemathesis-venv
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version" "hypothesis==$hypothesis"
fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Few logins wait for the bcrypt thread (the rest get 429 at once): schemathesis sends logins by the hundred, and a
# correct one queued behind 16 others on a loaded 2-core machine once took longer than its 10 s read timeout.
ECOWATT_PASSWORD_MAX_QUEUED=2 ECOWATT_MQTT_ENABLED=false "$bin" serve --host 127.0.0.1 --port "$port" --data-dir "$work/data" --keys-dir "$work/keys" \
    --firmware-dir "$work/fw" --diagnostics-dir "$work/diag" --log-level error --fault-injection &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
wait_for_health "http://127.0.0.1:$port"
token=$(cat "$work/keys/operator_token")
api() { curl -sf -o /dev/null -H "Authorization: Bearer $token" -H "Content-Type: ${CONTENT_TYPE:-application/json}" "$@"; }

# Seed: devices (one with a verified upload is not possible without a device key; operator-created ones), commands,
# configuration, a firmware image and a deployment, so that list and show operations have something to return.
for id in 1 2 3; do
    api -X POST "http://127.0.0.1:$port/api/v1/devices" -d "{\"device_id\":\"SEED-$id\",\"device_name\":\"seed $id\"}"
    api -X POST "http://127.0.0.1:$port/api/v1/devices/SEED-$id/commands" -d '{"action":"set_power","value":500}'
    api -X PUT "http://127.0.0.1:$port/api/v1/devices/SEED-$id/config/pending" -d '{"config_update":{"sampling_interval":10}}'
done
head -c 65536 /dev/urandom > "$work/app.bin"
printf '\xe9' | dd of="$work/app.bin" bs=1 count=1 conv=notrunc 2>/dev/null
CONTENT_TYPE=application/octet-stream api -X POST "http://127.0.0.1:$port/api/v1/firmwares?version=1.0.0" --data-binary "@$work/app.bin"
api -X POST "http://127.0.0.1:$port/api/v1/deployments" -d '{"version":"1.0.0","device_ids":["SEED-1"]}'

# A user (issue 19), so that user operations have data. The run authenticates with the bootstrap token: an admin no
# operation can demote or disable (the stateful phase demoted a seeded admin user through another admin it had
# created, which turned the rest of the run into 403s). Left out: revoking the bootstrap token, and the dashboard's
# event stream (a stream of up to an hour, not an answer; tested in EventStreamTests and the browser test).
api -X POST "http://127.0.0.1:$port/api/v1/users" -d '{"name":"seed-operator","role":"operator","password":"seed operator passphrase"}'

# Hypothesis's target phase (schemathesis steers fuzzing toward accepted inputs with `hypothesis.target`) crashed in
# two of four runs with an IndexError inside hypothesis's own optimiser (`hill_climb`), after every request had
# passed. The run goes without that steering: `target` is a no-op, everything else as released.
run() {
    "$venv/bin/python" -c '
import sys, hypothesis
hypothesis.target = lambda *args, **kwargs: None
from schemathesis.cli import schemathesis
sys.argv[0] = "st"
sys.exit(schemathesis())
' run "http://127.0.0.1:$port/api/v1/openapi.json" \
        --url "http://127.0.0.1:$port" \
        --header "Authorization: Bearer $token" \
        --include-path-regex '^/api/v1/' \
        --exclude-operation-id revokeBootstrapToken \
        --exclude-operation-id streamEvents \
        --checks "$checks" \
        --max-time "$seconds" \
        --workers 1 \
        --max-examples 30 \
        --suppress-health-check all \
        --no-color 2>&1 | tee "$work/schemathesis.log"
}
if run; then exit 0; fi
# The tool has also crashed inside CPython's `ast.parse` (SystemError "AST constructor recursion depth mismatch", a
# CPython 3.11 fault when its threads parse at once; hence one worker). A failed check always fails the run; a run that
# stopped only on such an error of the tool itself, with no failed check, is run once more.
if grep -qE "^Failures:|FAILURES" "$work/schemathesis.log" || ! grep -q "Runtime Error" "$work/schemathesis.log"; then exit 1; fi
echo "==> schemathesis stopped on an error of its own, not of the API: running once more" >&2
run
