#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian 12 machine (the CI machine starts with none of
# it). Idempotent: a second run only checks. Called by scripts/lab.sh, scripts/test.sh and .ci/run.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -----------------------------------------------------------------------------
# iproute2: namespaces and veth for the lab; nftables: NAT/stateful filtering; bpftool: inspection;
# iputils-ping, netcat-openbsd, socat, curl: real traffic in the lab tests. The SOC's own tools, which
# the telemetry tests point at the gateway: nfdump (nfcapd collector), tshark (IPFIX over TCP decoder),
# prometheus (promtool), rsyslog + rsyslog-openssl (syslog receiver over TCP and TLS), openssl.
# Domain blocking: bind9-dnsutils (dig, the office client), dnsmasq-base (the Internet-side resolver).
APT_PACKAGES=(iproute2 nftables bpftool iputils-ping netcat-openbsd socat procps kmod curl openssl
  nfdump tshark prometheus rsyslog rsyslog-openssl bind9-dnsutils dnsmasq-base)
# shellcheck source=scripts/apt.sh
. "$(dirname "$0")/apt.sh"
apt_ensure "${APT_PACKAGES[@]}"

# --- Rust pieces for the eBPF half -----------------------------------------------------------------
# The toolchain is pinned in rust-toolchain.toml; rust-src is needed for -Z build-std=core on the
# bpfel-unknown-none target. `components = [...]` in rust-toolchain.toml does not install it here.
TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
if ! rustup component list --installed --toolchain "$TOOLCHAIN" | grep -q '^rust-src'; then
  log "adding rust-src to $TOOLCHAIN"
  rustup component add rust-src --toolchain "$TOOLCHAIN"
fi

# bpf-linker must link the same LLVM major as rustc. Debian's LLVM 14 does not work, so we point it at
# rustc's own libLLVM through a prefix directory that must persist: bpf-linker's rpath points into it,
# so it holds the library under both names (libLLVM.so to link, the soname to run).
BPF_LINKER_VERSION=0.13.0
sysroot=$(rustc +"$TOOLCHAIN" --print sysroot)
libllvm=$(ls "$sysroot"/lib/libLLVM.so.* 2>/dev/null | head -n1)
[ -n "$libllvm" ] || { log "no libLLVM in $sysroot/lib: cannot build bpf-linker"; exit 1; }
prefix="${CARGO_HOME:-$HOME/.cargo}/llvm-for-bpf-linker"
mkdir -p "$prefix/lib"
ln -sf "$libllvm" "$prefix/lib/libLLVM.so"
ln -sf "$libllvm" "$prefix/lib/$(basename "$libllvm")"
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  major=$(basename "$libllvm" | sed -E 's/libLLVM\.so\.([0-9]+).*/\1/')
  log "building bpf-linker $BPF_LINKER_VERSION against rustc's LLVM $major (about a minute)"
  LLVM_PREFIX="$prefix" cargo +"$TOOLCHAIN" install "bpf-linker@$BPF_LINKER_VERSION" --locked \
    --no-default-features --features "llvm-$major" --quiet
fi

# --- bpffs, where gatewayd pins its objects ---------------------------------------------------------
if [ "$(id -u)" = 0 ] && ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  mount -t bpf bpf /sys/fs/bpf
fi
log "ready"
