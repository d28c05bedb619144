#!/usr/bin/env bash
# The benchmark: ns/packet through the real XDP program at 1k/100k/1M blocklist entries beside a
# pass-only program, and compile/apply times of a 1M-entry policy. Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p gateway-tests --bin gateway-bench
exec target/release/gateway-bench "$@"
