#!/usr/bin/env bash
# Builds (release) and starts the EcoWatt Cloud server with embedded defaults:
# 0.0.0.0:5001, SQLite in ./data, operator token generated into ./keys on first start.
# Extra arguments are passed to `ecowatt serve` (see `ecowatt serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "==> swift build -c release --product ecowatt" >&2
swift build -c release --product ecowatt

exec .build/release/ecowatt serve "$@"
