#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks formatting, builds, and runs every test (unit tests, the
# ../shared/conformance corpora over HTTP on loopback, process-level crash and connection tests), then a bounded
# schemathesis run of the operator API against its OpenAPI document, the dashboard in headless Chromium (Selenium), and
# a libFuzzer run over the device-input path. The contract suites run against a real PostgreSQL started here.
# Each step prints its duration.
# Extra arguments go to `swift test` (e.g. --filter). ECOWATT_FUZZ_SECONDS (default 90; 0 skips) bounds the fuzz run.
set -euo pipefail
cd "$(dirname "$0")/.."

suite_start=$SECONDS
step() {  # step NAME COMMAND...
    local name=$1 start=$SECONDS
    shift
    echo "==> $name"
    "$@"
    echo "==> $name: $((SECONDS - start)) s"
}

step "install dependencies" scripts/install-deps.sh haproxy openssl libjs-chart.js postgresql python3

# One PostgreSQL cluster for the whole run (the tests make a database each); stopped however the run ends.
postgres_dir=$(mktemp -d /tmp/ecowatt-test-pg.XXXXXX)
chmod 755 "$postgres_dir"
trap 'scripts/postgres.sh stop "$postgres_dir/cluster"; rm -rf "$postgres_dir"' EXIT
postgres_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
postgres_start=$SECONDS
echo "==> start PostgreSQL"
ECOWATT_TEST_POSTGRES_URL=$(scripts/postgres.sh start "$postgres_dir/cluster" "$postgres_port")
export ECOWATT_TEST_POSTGRES_URL ECOWATT_REQUIRE_POSTGRES=1
echo "==> start PostgreSQL: $((SECONDS - postgres_start)) s ($ECOWATT_TEST_POSTGRES_URL)"

if [ ! -d ../shared/conformance ] && [ -z "${ECOWATT_CONFORMANCE_DIR:-}" ]; then
    echo "error: ../shared/conformance not found (set ECOWATT_CONFORMANCE_DIR to the corpus directory)" >&2
    exit 1
fi

step "swift format lint" swift format lint --strict --recursive --parallel Sources Tests Package.swift
step "storage seam: GRDB only in EcoWattSQLite" scripts/check-imports.sh
# Piped: SwiftPM adds -color-diagnostics on a terminal, and a build from a terminal after one from a log recompiles all.
# The build log is checked for `await` on a call that is not async: with GRDB that is its blocking overload (a
# non-Sendable result), which once deadlocked the cooperative thread pool and stopped the server under load.
step "swift build --build-tests" bash -c "set -eo pipefail; mkdir -p .build; swift build --build-tests 2>&1 | tee .build/build.log
    ! grep -E 'Sources/.*warning: no .async. operations occur within .await. expression' .build/build.log"
step "swift test" swift test --skip-build "$@"
step "schemathesis: the operator API against its OpenAPI document" scripts/schemathesis.sh .build/debug/ecowatt
step "the dashboard in Chromium (Selenium)" scripts/browser-test.sh .build/debug/ecowatt
fuzz_seconds="${ECOWATT_FUZZ_SECONDS:-90}"
if [ "$fuzz_seconds" -gt 0 ]; then
    step "fuzz the device-input path (${fuzz_seconds} s)" scripts/fuzz.sh "$fuzz_seconds"
fi
echo "==> all tests passed in $((SECONDS - suite_start)) s"
