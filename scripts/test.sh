#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests
# need (Prometheus, promtool, nats-server, etcd, protoc and docker-compose from Debian's packages, a Python venv with
# prometheus_client, maturin, pytest, mypy), then checks formatting and lints,
# runs the Rust unit, integration and doc tests and the benchmarks in test
# mode, builds the Python package and runs its pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian package prometheus: promtool checks our exposition output and every
# Prometheus config, and the Prometheus server answers the dashboards' queries
# in the end-to-end test; nats-server (Debian package nats-server) carries the
# cross-process tests; etcd (Debian package etcd-server) holds discovery in
# the etcd tests; protoc (Debian package protobuf-compiler) is needed to build
# the etcd client crate; docker-compose (Debian package, v1) validates the
# compose file without a Docker daemon.
missing=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
promtool --version | head -n 1
prometheus --version 2>&1 | head -n 1
nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
"$nats_server" --version
etcd --version | head -n 1
protoc --version

# Disk: a cold build of everything below takes about 8 GiB of target/.
df -h . | tail -n 1
if [ -n "${CI:-}" ]; then
    # Incremental caches only pay off on a second build, which CI never does.
    export CARGO_INCREMENTAL=0
fi

VENV="${DYN_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating the Python virtual environment $VENV"
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-test.txt
export DYN_TEST_PYTHON="$PWD/$VENV/bin/python"
# PyO3's build script (clippy, cargo doc) builds against the venv's Python.
export PYO3_PYTHON="$DYN_TEST_PYTHON"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -q -- -D warnings

log "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q

log "benchmarks in test mode (each runs once)"
cargo test --workspace --benches -q

log "cargo test (unit, integration, doc tests)"
cargo test --workspace

log "building the Python package dynamo into $VENV (maturin develop --release)"
(cd lib/bindings/python && VIRTUAL_ENV="$PWD/../../../$VENV" "../../../$VENV/bin/maturin" develop --release -q)

log "mypy --strict on the Python examples and benches"
"$VENV/bin/python" -m mypy --strict examples/python examples/engines/toy_engine.py benches/python_metrics.py benches/streaming_cpu.py lib/llm/tests/python

log "Python bench and the streaming CPU bench (smoke runs)"
"$VENV/bin/python" benches/python_metrics.py --quick
"$VENV/bin/python" benches/streaming_cpu.py --quick --binary target/debug/dynamo

log "pytest (the Python API, and the openai client against dynamo serve)"
"$VENV/bin/python" -m pytest -q lib/bindings/python/tests lib/llm/tests/python
