#!/usr/bin/env bash
# Installs what the firmware images need (images/build.sh, tests/image/*): Debian bootstrap and
# filesystem tools, QEMU with UEFI firmware for the boot tests, and the aarch64 cross toolchain.
# Separate from setup.sh because the data-path tests need none of it. Idempotent. Needs root.
set -euo pipefail
log() { printf '[setup-images] %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
PACKAGES=(mmdebstrap squashfs-tools dosfstools mtools e2fsprogs fdisk zstd arch-test python3
          qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross
          qemu-system-x86 qemu-system-arm qemu-utils ovmf qemu-efi-aarch64 openssh-client)
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
