#!/usr/bin/env bash
# Installs what the firmware images need (images/build.sh, tests/image/*, scripts/test-images.sh):
# Debian bootstrap and filesystem tools, QEMU with UEFI firmware for the boot tests, qemu-user for the
# aarch64 root filesystem (images/build.sh registers it with binfmt_misc itself), the aarch64 cross
# toolchain, and the tools the boot test meets the box with. Separate from setup.sh because the
# data-path tests need none of it. Idempotent. Needs root.
set -euo pipefail
log() { printf '[setup-images] %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
PACKAGES=(
  # images/build.sh: bootstrap, initrd completion (kmod, cpio), filesystems, disk, ruleset check
  mmdebstrap arch-test squashfs-tools dosfstools mtools e2fsprogs fdisk zstd cpio kmod python3 nftables
  # aarch64 images on another arch: maintainer scripts under qemu-user, cross-compiled binaries
  qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  # boot, update and arm64 smoke tests: QEMU with UEFI firmware (OVMF, AAVMF)
  qemu-system-x86 qemu-system-arm qemu-utils ovmf qemu-efi-aarch64
  # the boot test's outside view: namespaces, ssh certificates, the SOC's scrape, promtool, IPFIX collector
  iproute2 openssh-client curl prometheus nfdump
)
# qemu-utils is listed with qemu-system-*: they must come from the same release, or a newer
# qemu-utils from backports is removed to make room.
# shellcheck source=scripts/apt.sh
. "$(dirname "$0")/apt.sh"
apt_ensure "${PACKAGES[@]}"
TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
if ! rustup target list --installed --toolchain "$TOOLCHAIN" | grep -q '^aarch64-unknown-linux-gnu$'; then
  log "adding the aarch64-unknown-linux-gnu target to $TOOLCHAIN"
  rustup target add aarch64-unknown-linux-gnu --toolchain "$TOOLCHAIN"
fi
log "ready"
