# EcoWatt Cloud tasks (install just with `pip install rust-just`). The scripts work without just.

# Build (release) and run the server with embedded defaults
serve *ARGS:
    scripts/serve.sh {{ARGS}}

# Install dependencies, lint, build and run the whole test suite
test *ARGS:
    scripts/test.sh {{ARGS}}

# Reformat all Swift sources with Hummingbird's .swift-format
format:
    swift format --in-place --recursive --parallel Sources Tests Package.swift

# Check formatting
lint:
    swift format lint --strict --recursive --parallel Sources Tests Package.swift

# Benchmarks recorded in BENCHMARKS.md
bench:
    scripts/bench.sh
