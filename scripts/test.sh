#!/usr/bin/env bash
# README command two: the whole test suite, from a fresh machine. Needs root (network namespaces, XDP,
# BPF_PROG_TEST_RUN); root-only tests fail loudly without it, they never skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The workspace's default members: everything but ebpf/xdp, which only builds for the BPF target
# (gateway/dataplane's build.rs builds and embeds it).
cargo build --release --locked --bins
# Labs left behind by a killed run (namespaces, bpffs mounts) would only waste memory; remove them.
target/release/gateway-lab cleanup || true
export GATEWAYD="$PWD/target/release/gatewayd" GATEWAYCTL="$PWD/target/release/gatewayctl"
cargo test --release --locked "$@"
