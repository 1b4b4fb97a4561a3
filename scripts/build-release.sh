#!/usr/bin/env bash
# Builds .build/release/ecowatt only when a source changed since the last build, always with the same flags, and
# records the git commit beside it (read by `ecowatt --version`).
#
# Why: SwiftPM adds -color-diagnostics to every compiler command line when its output is a terminal, so a build from a
# terminal after one from a log (or the reverse) recompiles almost everything. The build's output therefore always goes
# through a pipe. And a restart with no change must not need the toolchain at all: when no file under Sources/ or
# Package.swift is newer than the binary, nothing runs.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=.build/release/ecowatt
if [ -x "$binary" ] && [ -z "$(find Package.swift Sources -newer "$binary" -print -quit)" ]; then
    echo "==> $binary is up to date" >&2
else
    echo "==> swift build -c release --product ecowatt" >&2
    start=$(date +%s)
    swift build -c release --product ecowatt 2>&1 | cat >&2
    touch "$binary"  # an unchanged relink keeps the old time; the check above compares against this one
    echo "==> built in $(($(date +%s) - start)) s" >&2
fi

if git rev-parse --git-dir >/dev/null 2>&1; then
    commit=$(git rev-parse --short=12 HEAD)
    git diff --quiet HEAD -- Package.swift Sources 2>/dev/null || commit="$commit-modified"
    [ "$(cat .build/release/ecowatt.commit 2>/dev/null)" = "$commit" ] || echo "$commit" > .build/release/ecowatt.commit
fi
