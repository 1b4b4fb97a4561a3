#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks formatting, builds, and runs every test
# (unit tests, the ../shared/conformance corpora over HTTP on loopback, and process-level crash tests).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

if [ ! -d ../shared/conformance ] && [ -z "${ECOWATT_CONFORMANCE_DIR:-}" ]; then
    echo "error: ../shared/conformance not found (set ECOWATT_CONFORMANCE_DIR to the corpus directory)" >&2
    exit 1
fi

echo "==> swift format lint"
swift format lint --strict --recursive --parallel Sources Tests Package.swift

echo "==> swift build --build-tests"
swift build --build-tests

echo "==> swift test"
swift test --skip-build "$@"
