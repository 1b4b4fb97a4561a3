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

# Build release once and install the binary, a configuration file and a hardened systemd unit (as root)
install *ARGS:
    scripts/install.sh {{ARGS}}

# Check formatting
lint:
    swift format lint --strict --recursive --parallel Sources Tests Package.swift

# Benchmarks recorded in BENCHMARKS.md
bench:
    scripts/bench.sh

# Simulated devices against a running server (default: 20 devices, 10x real time, 60 s; see `ecowatt simulate --help`)
simulate *ARGS:
    scripts/build-release.sh
    .build/release/ecowatt simulate --devices 20 --speed 10 --duration 60 {{ARGS}}
