#!/usr/bin/env bash
# The data path on the image's kernel (root): boots the firmware image's own kernel (Debian 12's 6.1) in
# QEMU with a bare initramfs whose /init is gateway-verify, which loads the XDP programs there and prints,
# per program, the instructions the verifier processed against its 1,000,000 limit. A program the
# image's kernel would refuse ("BPF program is too large", an unknown helper…) fails here in a minute,
# with the verifier's last lines, instead of in the image boot test.
#
#   tests/image/verify-6.1.sh [--arch x86_64|aarch64] [--bin PATH] [--kernel VMLINUZ] [--timeout SECONDS] [--keep]
#
#   --arch     the image's architecture (default x86_64). aarch64: the arm64 kernel of the aarch64 image in
#              qemu-system-aarch64, a gateway-verify cross-built for aarch64-unknown-linux-gnu (default
#              $CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/gateway-verify), its libraries from the
#              cross toolchain (/usr/aarch64-linux-gnu/lib); the arm64 JIT is what runs the tail calls there
#   --bin      gateway-verify to run (default $CARGO_TARGET_DIR/release/gateway-verify, CARGO_TARGET_DIR
#              defaulting to target/; build it with cargo build --release -p gateway-dataplane --bin gateway-verify)
#   --kernel   boot this kernel instead of the image's. Default: ./boot/vmlinuz-* of the newest
#              $GATEWAY_IMAGE_CACHE/base-bookworm-amd64-*.tar (default cache /var/cache/gateway-images),
#              which images/build.sh creates; else of the kernel .deb in that cache; else (cold machine)
#              of the kernel package apt-get downloads from bookworm, as the image build would install it
#   --timeout  limit on QEMU (default 300 s; TCG takes ~30 s): a hang fails loudly
#   --keep     keep the run directory (initramfs, serial log)
#
# No disk image, no network: the VM has no NIC at all. The initramfs holds gateway-verify as /init, the
# shared libraries ldd names and /dev/console; gateway-verify mounts /proc and /sys, then powers the VM off.
#
# Exit: 0 every program loaded, 1 the kernel refused a program (its last log lines are printed),
# 2 setup failed (no kernel, no binary, no verdict from the VM, timeout).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN="" ARCH=x86_64
KERNEL="" TIMEOUT=300 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --kernel) KERNEL=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "verify-6.1: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
TD=${CARGO_TARGET_DIR:-$REPO/target}
case "$ARCH" in
  x86_64) DEB_ARCH=amd64 QEMU=qemu-system-x86_64 CONSOLE=ttyS0 BIN=${BIN:-$TD/release/gateway-verify}
    MACHINE=(-machine q35 -cpu max) ;;
  aarch64) DEB_ARCH=arm64 QEMU=qemu-system-aarch64 CONSOLE=ttyAMA0
    BIN=${BIN:-$TD/aarch64-unknown-linux-gnu/release/gateway-verify} MACHINE=(-machine virt -cpu cortex-a72) ;;
  *) echo "verify-6.1: --arch is x86_64 or aarch64, not $ARCH" >&2; exit 2 ;;
esac

# shellcheck source=tests/image/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
test_init verify-6.1 "mknod of the initramfs' /dev/console"

RUN=$(mktemp -d /tmp/gateway-verify-6.1.XXXXXX)
SERIAL="$RUN/serial.log"
cleanup() {
  local rc=$?
  if [ "$KEEP" = 1 ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
setup_fail() { log "SETUP FAILED: $*"; exit 2; }

for t in "$QEMU" cpio ldd timeout dpkg-deb; do
  command -v "$t" >/dev/null || setup_fail "$t not found (scripts/setup-images.sh installs qemu-system-x86 and cpio)"
done
[ -x "$BIN" ] || setup_fail "no $BIN (cargo build --release -p gateway-dataplane --bin gateway-verify, or --bin)"

# --- 1. the image's kernel ------------------------------------------------------------------------------
# Where images/build.sh leaves it, first to last: the base root filesystem (its ./boot), the .deb cache
# beside it (kept when a new package list invalidates the base), and on a cold machine the same package
# from Debian's bookworm suite, which is what build.sh's mmdebstrap installs (not bookworm-security).
CACHE=${GATEWAY_IMAGE_CACHE:-/var/cache/gateway-images}
kernel_from_deb() {  # <linux-image-*.deb>: extracts its ./boot/vmlinuz-* into $RUN
  dpkg-deb --fsys-tarfile "$1" | tar -x -C "$RUN" --wildcards './boot/vmlinuz-*'
}
if [ -z "$KERNEL" ]; then
  # shellcheck disable=SC2012 # names are ours: base-<suite>-<arch>-<hex>.tar, linux-image-<abi>-amd64_<ver>_amd64.deb
  BASE_TAR=$(ls -t "$CACHE"/base-bookworm-$DEB_ARCH-*.tar 2>/dev/null | head -n1 || true)
  # shellcheck disable=SC2012
  KERNEL_DEB=$(ls "$CACHE"/debs-bookworm-$DEB_ARCH/linux-image-[0-9]*-${DEB_ARCH}_*.deb 2>/dev/null | sort -V | tail -n1 || true)
  if [ -n "$BASE_TAR" ]; then
    tar -xf "$BASE_TAR" -C "$RUN" --wildcards './boot/vmlinuz-*' || setup_fail "no ./boot/vmlinuz-* in $BASE_TAR"
    FROM=$(basename "$BASE_TAR")
  elif [ -n "$KERNEL_DEB" ]; then
    kernel_from_deb "$KERNEL_DEB" || setup_fail "no ./boot/vmlinuz-* in $KERNEL_DEB"
    FROM=$(basename "$KERNEL_DEB")
  else
    log "no base-bookworm-$DEB_ARCH-*.tar in $CACHE (images/build.sh creates it):" \
      "downloading the kernel package from bookworm with apt-get"
    ( cd "$RUN" && apt-get download -q "linux-image-$DEB_ARCH:$DEB_ARCH/bookworm" ) >&2 \
      || setup_fail "apt-get download linux-image-$DEB_ARCH/bookworm failed; build the base with images/build.sh or pass --kernel"
    # the metapackage depends on exactly one linux-image-<abi>-<arch> (= version)
    DEP=$(dpkg-deb -f "$RUN"/linux-image-${DEB_ARCH}_*.deb Depends | grep -oE "linux-image-[0-9][^ ,]*-$DEB_ARCH \(= [^)]+\)" | head -n1)
    [ -n "$DEP" ] || setup_fail "linux-image-$DEB_ARCH names no kernel package"
    PKG=${DEP%% *} VER=${DEP##*= }; VER=${VER%)}
    ( cd "$RUN" && apt-get download -q "$PKG:$DEB_ARCH=$VER" ) >&2 || setup_fail "apt-get download $PKG=$VER failed"
    kernel_from_deb "$RUN/${PKG}_${VER}_$DEB_ARCH.deb" || setup_fail "no ./boot/vmlinuz-* in $PKG"
    FROM="$PKG $VER (apt-get download)"
  fi
  # shellcheck disable=SC2012 # kernel file names: vmlinuz-<release>
  KERNEL=$(ls "$RUN"/boot/vmlinuz-* | sort -V | tail -n1)
  log "kernel $(basename "$KERNEL") from $FROM"
fi
[ -f "$KERNEL" ] || setup_fail "no kernel $KERNEL"
# Debian's arm64 vmlinuz may be gzip-compressed; QEMU's -kernel wants the Image (as images/build.sh does).
if [ "$(head -c2 "$KERNEL" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
  gzip -dc "$KERNEL" > "$RUN/Image"
  KERNEL="$RUN/Image"
fi

# --- 2. the initramfs: /init, its libraries, /dev/console ------------------------------------------------
ROOT="$RUN/root"
mkdir -p "$ROOT/dev"
cp "$BIN" "$ROOT/init"
# ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the dynamic loader; the vDSO has
# no path. Copy each to the same path, symlinks resolved.
# A cross-built aarch64 binary: its NEEDED libraries from the cross toolchain, into the paths the
# aarch64 loader searches.
if [ "$ARCH" = x86_64 ]; then
  LIBS=$(ldd "$BIN" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }')
  for lib in $LIBS; do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
  done
else
  command -v aarch64-linux-gnu-readelf >/dev/null || setup_fail "aarch64-linux-gnu-readelf not found (scripts/setup-images.sh installs the cross toolchain)"
  SYSROOT=/usr/aarch64-linux-gnu/lib
  LIBS=$(aarch64-linux-gnu-readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  mkdir -p "$ROOT/lib/aarch64-linux-gnu"
  for lib in $LIBS; do
    cp -L "$SYSROOT/$lib" "$ROOT/lib/aarch64-linux-gnu/" || setup_fail "no $SYSROOT/$lib"
  done
  cp -L "$SYSROOT/ld-linux-aarch64.so.1" "$ROOT/lib/" || setup_fail "no $SYSROOT/ld-linux-aarch64.so.1"
  LIBS="$LIBS ld-linux-aarch64.so.1"
fi
mknod "$ROOT/dev/console" c 5 1
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) > "$RUN/initramfs.cpio" \
  || setup_fail "cpio"
log "initramfs: $(du -k "$RUN/initramfs.cpio" | cut -f1) KiB (/init + $(echo "$LIBS" | wc -w) libraries)"

# --- 3. boot -------------------------------------------------------------------------------------------------
ACCEL=tcg
if [ "$ARCH" = x86_64 ] && [ -w /dev/kvm ] && grep -qE 'vmx|svm' /proc/cpuinfo; then ACCEL=kvm; fi
log "booting $(basename "$KERNEL") in $QEMU ($ACCEL, limit ${TIMEOUT}s)"
B0=$(date +%s)
QEMU_RC=0
# -nodefaults: no NIC, no VGA; the serial port is the only device we read. panic=-1 + -no-reboot end
# QEMU even if /init dies before powering off.
timeout --kill-after=10 "$TIMEOUT" "$QEMU" -nodefaults "${MACHINE[@]}" -accel "$ACCEL" \
  -smp 1 -m 1024 -display none -nic none -no-reboot \
  -serial "file:$SERIAL" -kernel "$KERNEL" -initrd "$RUN/initramfs.cpio" \
  -append "console=$CONSOLE panic=-1 quiet loglevel=3" </dev/null || QEMU_RC=$?
log "VM ran for $(( $(date +%s) - B0 ))s"

# --- 4. the verdict -----------------------------------------------------------------------------------------
tr -d '\r' < "$SERIAL" > "$RUN/serial.txt"
REPORT=$(sed -n '/^gateway-verify: kernel /,/^gateway-verify: \(PASS\|FAIL\|ERROR\)/p' "$RUN/serial.txt")
if [ "$QEMU_RC" = 124 ] || [ "$QEMU_RC" = 137 ]; then
  [ -n "$REPORT" ] && printf '%s\n' "$REPORT"
  log "TIMEOUT: the VM did not power off within ${TIMEOUT}s; last serial lines:"
  tail -n 30 "$RUN/serial.txt" >&2
  exit 2
fi
[ "$QEMU_RC" = 0 ] || log "qemu exited with $QEMU_RC"
printf '%s\n' "$REPORT"
case "$(printf '%s\n' "$REPORT" | tail -n1)" in
  "gateway-verify: PASS"*) log "PASS  every program loaded on the image's kernel"; exit 0 ;;
  "gateway-verify: FAIL"*) log "FAIL  the image's kernel refused the data path (see the lines above)"; exit 1 ;;
  *)
    log "SETUP FAILED: no verdict from gateway-verify in the serial output; its last lines:"
    tail -n 30 "$RUN/serial.txt" >&2
    exit 2 ;;
esac
