#!/usr/bin/env bash
# README command two: the whole test suite, from a fresh machine. Needs root (network namespaces, XDP,
# BPF_PROG_TEST_RUN, QEMU taps); root-only tests fail loudly without it, they never skip.
#
#   scripts/test.sh [--no-images] [CARGO TEST ARGS...]
#
# The cargo tests, then the firmware images (scripts/test-images.sh: both images built, the x86_64 one
# booted and updated in QEMU, the aarch64 one booted). --no-images, or any cargo test arguments (a
# filter), runs the cargo tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=1
if [ "${1:-}" = --no-images ]; then IMAGES=0; shift; fi
[ $# = 0 ] || IMAGES=0
bash scripts/setup.sh
# The workspace's default members: everything but ebpf/xdp, which only builds for the BPF target
# (gateway/dataplane's build.rs builds and embeds it).
cargo build --release --locked --bins
# Labs left behind by a killed run (namespaces, bpffs mounts) would only waste memory; remove them.
target/release/gateway-lab cleanup || true
export GATEWAYD="$PWD/target/release/gatewayd" GATEWAYCTL="$PWD/target/release/gatewayctl"
cargo test --release --locked "$@"
[ "$IMAGES" = 0 ] || bash scripts/test-images.sh
