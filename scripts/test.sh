#!/usr/bin/env bash
# Runs Shoal's whole test suite: unit tests, the storage conformance suite and the multi-process
# end-to-end tests (which start their own containerd, registry and coordinators under temp dirs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --locked --workspace --bins
cargo test --locked --workspace --no-fail-fast -- --test-threads=2
