#!/usr/bin/env bash
# Bounded libFuzzer run over the whole device-input path (envelope, inner JSON, every codec, the temporal model, time
# reconstruction): EcoWattFuzz built with -sanitize=fuzzer in its own scratch path (.build-fuzz, so the main build is not
# invalidated), seeded from ../shared/conformance and the committed corpus, then the run's corpus replayed to prove every
# codec and both clocks were reached. A crash fails the run and leaves its reproducer in the printed path: copy it into
# Tests/EcoWattFuzzingTests/Regressions/ with the fix.
# Usage: scripts/fuzz.sh [seconds] [--merge]   (default 90 s; --merge minimises the new corpus into the committed one)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-90}"
conformance="${ECOWATT_CONFORMANCE_DIR:-../shared/conformance}"

start=$SECONDS
echo "==> fuzz build (release, -sanitize=fuzzer, .build-fuzz)"
# lld: gold cannot link the instrumented objects with debug info. SwiftPM links `main` to the @main of EcoWattFuzz,
# which calls LLVMFuzzerRunDriver. ECOWATT_FUZZ_BUILD=1: Package.swift leaves out the OpenAPI generator plugin, whose
# tool SwiftPM would build in release for nothing.
ECOWATT_FUZZ_BUILD=1 swift build -c release --scratch-path .build-fuzz --product EcoWattFuzz -Xswiftc -sanitize=fuzzer \
    -Xswiftc -DECOWATT_LIBFUZZER -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld 2>&1 | grep -vE '^\[|unhandled|CMakeLists' || true
fuzzer=.build-fuzz/release/EcoWattFuzz
[ -x "$fuzzer" ] || { echo "error: fuzz build failed" >&2; exit 1; }
echo "    built in $((SECONDS - start)) s"

# The replayer is the normal build of the same harness (built by `swift build --build-tests`).
replayer=.build/debug/EcoWattFuzz
[ -x "$replayer" ] || swift build --product EcoWattFuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
"$replayer" seed --conformance "$conformance" --out "$work/seeds"

echo "==> fuzzing for ${seconds} s"
status=0
"$fuzzer" "$work/corpus" Tests/EcoWattFuzzingTests/Corpus "$work/seeds" -max_total_time="$seconds" -max_len=16384 \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" 2>&1 \
    | grep -vE '^#[0-9]+.*(NEW|REDUCE|pulse)' | tail -n 40 || status=$?
if ls "$work/artifacts/"* >/dev/null 2>&1; then
    mkdir -p .fuzz-artifacts
    cp "$work/artifacts/"* .fuzz-artifacts/
    echo "error: the fuzzer found a crash; reproducers in .fuzz-artifacts/ (replay: $replayer replay FILE)" >&2
    exit 1
fi
[ "$status" -eq 0 ] || { echo "error: fuzzer exited with $status" >&2; exit 1; }

echo "==> replaying this run's corpus ($(ls "$work/corpus" | wc -l) new inputs) with the committed corpus and the seeds"
"$replayer" replay --require-all "$work/corpus" Tests/EcoWattFuzzingTests/Corpus "$work/seeds"

if [ "${2:-}" = "--merge" ]; then
    # Keep only what the seeds (rebuilt from the conformance corpora at every run) do not already cover.
    mkdir -p "$work/merged"
    cp "$work/seeds/"* "$work/merged/"
    "$fuzzer" -merge=1 "$work/merged" Tests/EcoWattFuzzingTests/Corpus "$work/corpus" 2>&1 | grep -E "^MERGE-OUTER: [0-9]+ new" || true
    for seed in "$work/seeds/"*; do rm -f "$work/merged/$(basename "$seed")"; done
    rm -f Tests/EcoWattFuzzingTests/Corpus/*
    cp "$work/merged/"* Tests/EcoWattFuzzingTests/Corpus/ 2>/dev/null || true
    echo "committed corpus: $(ls Tests/EcoWattFuzzingTests/Corpus | wc -l) inputs beyond the seeds"
fi
echo "==> fuzz done in $((SECONDS - start)) s"
