#!/usr/bin/env bash
# Update test (root): signed bundles are refused or installed, and a bad slot falls back — with the real
# gateway-update and the real boot loader (systemd-boot in OVMF), on the image images/build.sh made.
#
#   tests/image/update-test.sh [--out DIR] [--timeout SECONDS] [--keep]
#
# Needs a built x86_64 image in --out (default images/out/qemu-x86_64; run images/build.sh
# hw/qemu-x86_64.toml or tests/image/boot-test.sh first), the build cache's development signing key, and
# the gateway-update the build made ($GATEWAY_FW_TARGET_DIR as for images/build.sh, or $GATEWAY_UPDATE).
#
# 1. refused: a bundle signed by another key, for another arch, for another profile, not newer — exit 2,
#    and nothing is written.
# 2. good update: `gateway-update install` (the same code the box runs) writes slot b of a copy of the
#    disk (ESP extracted with mtools, no mounts); QEMU boots it: slot b runs, the self-test marks it good
#    (loader entry gateway-b+3.conf -> gateway-b.conf, read back from the disk).
# 3. fallback: a slot b whose root filesystem is broken after install (as a bad firmware would be): the
#    box tries b three times (each try panics and reboots), then boots a again; the entry ends as
#    gateway-b+0-3.conf and `gateway-update status` reports the fallback.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT="$REPO/images/out/qemu-x86_64" TIMEOUT=1500 KEEP=0
CACHE=${GATEWAY_IMAGE_CACHE:-/var/cache/gateway-images}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "update-test: unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=tests/image/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
test_init update-test "qemu, image files owned by root"
RUN=$(mktemp -d /tmp/gateway-update-test.XXXXXX)
QEMU_PID="" WATCHDOG_PID=""
PASSED=0 FAILED=0
cleanup() {
  local rc=$?
  set +e
  [ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID" 2>/dev/null
  stop_qemu
  if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then log "run directory kept: $RUN"; else rm -rf "$RUN"; fi
  exit "$rc"
}
stop_qemu() {
  if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill "$QEMU_PID" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$QEMU_PID" 2>/dev/null || true
  fi
  QEMU_PID=""
}
trap cleanup EXIT
trap 'log "TIMEOUT: overall limit of ${TIMEOUT}s reached"; exit 124' USR1
trap 'exit 130' INT TERM
# The watchdog kills its own sleep when cleanup ends it, and keeps off our stdout: an orphaned sleep
# would otherwise hold test-images.sh's log pipe (and its tee) open for the whole TIMEOUT.
( trap 'kill "$s" 2>/dev/null; exit 0' TERM; sleep "$TIMEOUT" & s=$!; wait "$s" && kill -USR1 $$ ) >/dev/null 2>&1 &
WATCHDOG_PID=$!
setup_fail() { log "SETUP FAILED: $*"; exit 2; }
pass() { PASSED=$((PASSED + 1)); log "PASS  $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL  $*"; }

for t in qemu-system-x86_64 mcopy mdir mtype mkfs.vfat sfdisk python3; do
  command -v "$t" >/dev/null || setup_fail "$t not found (apt-get install qemu-system-x86 mtools dosfstools fdisk python3)"
done
DISK="$OUT/gateway-qemu-x86_64.img"
[ -f "$DISK" ] || setup_fail "no image $DISK: run images/build.sh hw/qemu-x86_64.toml first"
BUNDLE=$(ls "$OUT"/gateway-qemu-x86_64-*.gwb 2>/dev/null | head -n1)
[ -n "$BUNDLE" ] || setup_fail "no bundle in $OUT"
KEY="$CACHE/dev-signing.key"
[ -f "$KEY" ] || setup_fail "no development signing key $KEY (the image was built with --signing-key?)"
# the gateway-update images/build.sh built (GATEWAY_FW_TARGET_DIR, as there), or GATEWAY_UPDATE
FW_TARGET_DIR=${GATEWAY_FW_TARGET_DIR:-/work/target-fw}
GU=${GATEWAY_UPDATE:-$FW_TARGET_DIR/x86_64-unknown-linux-gnu/release/gateway-update}
[ -x "$GU" ] || GU=$FW_TARGET_DIR/release/gateway-update
[ -x "$GU" ] || setup_fail "no gateway-update binary (cargo build --release -p gateway-firmware)"
PUB="$OUT/update-signing.pub"
export MTOOLS_SKIP_CHECK=1

# --- the running firmware (as slot a of the factory image) and the bundle's parts ------------------------
# the factory slot a's version, from its loader entry
part_start() { sfdisk --dump "$1" | awk -v n="name=\"$2\"" 'index($0, n) { sub(/.*start= */, ""); sub(/,.*/, ""); print }'; }
ESP_OFF=$(( $(part_start "$DISK" esp) * 512 ))
VERSION=$(mtype -i "$DISK@@$ESP_OFF" ::/loader/entries/gateway-a.conf | awk '$1 == "version" { print $2 }')
[[ "$VERSION" =~ ^[0-9]+$ ]] || setup_fail "cannot read slot a's version from the image's ESP"
printf 'GATEWAY_FIRMWARE_VERSION=%s\nGATEWAY_PROFILE=qemu-x86_64\nGATEWAY_ARCH=x86_64\n' "$VERSION" > "$RUN/release"
ROOTFS="$OUT/rootfs.squashfs"
# kernel and initrd: from the factory ESP (slot a)
mkdir -p "$RUN/parts"
mcopy -i "$DISK@@$ESP_OFF" -n ::/gateway/a/vmlinuz ::/gateway/a/initrd.img "$RUN/parts/" || setup_fail "reading the ESP"
mk_bundle() {  # <out> <key> <arch> <profile> <version>
  "$GU" bundle create --key "$2" --arch "$3" --profile "$4" --version "$5" --rootfs "$ROOTFS" \
    --kernel "$RUN/parts/vmlinuz" --initrd "$RUN/parts/initrd.img" \
    --cmdline "rootfstype=squashfs ro console=tty0 console=ttyS0 panic=10 systemd.show_status=1" --out "$1" >/dev/null
}
refused() {  # <what> <bundle>: install must exit 2 and write nothing
  local esp="$RUN/esp-refuse" dev="$RUN/refused-slot.img" rc=0
  rm -rf "$esp" "$dev"; mkdir -p "$esp"
  "$GU" install "$2" --pubkey "$PUB" --release "$RUN/release" --esp "$esp" --booted-slot a --device "$dev" \
    >"$RUN/refuse.out" 2>&1 || rc=$?
  if [ "$rc" = 2 ] && [ ! -e "$dev" ] && [ -z "$(ls -A "$esp")" ]; then
    pass "$1 refused before writing: $(tail -n1 "$RUN/refuse.out" | cut -c1-150)"
  else
    fail "$1: exit $rc, slot written: $([ -e "$dev" ] && echo yes || echo no): $(cat "$RUN/refuse.out")"
  fi
}

# --- 1. refused bundles ---------------------------------------------------------------------------
log "1. bundles that must be refused"
"$GU" keygen --out "$RUN/other.key" >/dev/null 2>&1
mk_bundle "$RUN/other-key.gwb" "$RUN/other.key" x86_64 qemu-x86_64 $((VERSION + 1))
refused "a bundle signed by another key" "$RUN/other-key.gwb"
mk_bundle "$RUN/arm.gwb" "$KEY" aarch64 qemu-x86_64 $((VERSION + 1))
refused "a bundle for aarch64" "$RUN/arm.gwb"
mk_bundle "$RUN/profile.gwb" "$KEY" x86_64 minipc-i226-x86_64 $((VERSION + 1))
refused "a bundle for another profile" "$RUN/profile.gwb"
refused "a bundle not newer than the running firmware" "$BUNDLE"
mk_bundle "$RUN/tampered.gwb" "$KEY" x86_64 qemu-x86_64 $((VERSION + 1))
python3 - "$RUN/tampered.gwb" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0xFF  # inside the payload
open(p, "wb").write(b)
EOF
refused "a bundle whose payload was changed after signing" "$RUN/tampered.gwb"

# --- helpers: install into slot b of a copy of the disk, boot it ------------------------------------------
install_into_copy() {  # <bundle> <disk copy>: gateway-update install on the extracted ESP + slot b file
  local bundle=$1 disk=$2 esp="$RUN/esp" slot="$RUN/root-b.img"
  cp --sparse=always "$DISK" "$disk"
  rm -rf "$esp" "$slot"; mkdir -p "$esp"
  mcopy -i "$disk@@$ESP_OFF" -s -n -m ::/ "$esp/" || return 1
  "$GU" install "$bundle" --pubkey "$PUB" --release "$RUN/release" --esp "$esp" --booted-slot a --device "$slot" || return 1
  # write back: the slot into root-b, the ESP as a fresh FAT image into esp
  dd if="$slot" of="$disk" bs=512 seek="$(part_start "$disk" root-b)" conv=notrunc status=none
  local sectors; sectors=$(sfdisk --dump "$disk" | awk 'index($0, "name=\"esp\"") { sub(/.*size= */, ""); sub(/,.*/, ""); print }')
  rm -f "$RUN/esp.img"
  mkfs.vfat -C -F 32 -n ESP "$RUN/esp.img" $((sectors / 2)) >/dev/null
  mcopy -i "$RUN/esp.img" -s -m "$esp"/* ::/
  dd if="$RUN/esp.img" of="$disk" bs=512 seek="$(part_start "$disk" esp)" conv=notrunc status=none
}
entries_of() { mdir -i "$1@@$ESP_OFF" -b ::/loader/entries 2>/dev/null | sed 's|.*/||' | tr '\n' ' '; }
boot() {  # <disk> <serial log>; reboots allowed (the boot loader counts tries)
  cp /usr/share/OVMF/OVMF_VARS_4M.fd "$RUN/vars.fd"
  local accel=tcg
  if [ -w /dev/kvm ] && grep -qE 'vmx|svm' /proc/cpuinfo; then accel=kvm; fi
  qemu-system-x86_64 -machine q35 -accel "$accel" -cpu max -smp 1 -m 1024 -nodefaults -display none \
    -serial "file:$2" -monitor none \
    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive "if=pflash,format=raw,unit=1,file=$RUN/vars.fd" \
    -drive "if=none,id=disk0,format=raw,file=$1" -device virtio-blk-pci,drive=disk0,addr=0x6 \
    -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,addr=0x3 \
    -netdev user,id=n1,restrict=on -device virtio-net-pci,netdev=n1,addr=0x4 \
    -netdev user,id=n2,restrict=on -device virtio-net-pci,netdev=n2,addr=0x5 \
    -pidfile "$RUN/qemu.pid" -daemonize || setup_fail "qemu did not start"
  QEMU_PID=$(cat "$RUN/qemu.pid")
}
wait_serial() {  # <log> <regex> <seconds>
  local deadline=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    grep -aqE "$2" "$1" 2>/dev/null && return 0
    sleep 2
  done
  return 1
}

# --- 2. a good update switches slots -------------------------------------------------------------------
log "2. a good update: install into slot b, boot, self-test marks it good"
mk_bundle "$RUN/good.gwb" "$KEY" x86_64 qemu-x86_64 $((VERSION + 1))
install_into_copy "$RUN/good.gwb" "$RUN/good.img" || setup_fail "installing the good bundle"
log "entries after install: $(entries_of "$RUN/good.img")"
boot "$RUN/good.img" "$RUN/good-serial.log"
if wait_serial "$RUN/good-serial.log" 'gateway-health: (OK|FAILED)' 600; then :; fi
sleep 3; stop_qemu
if grep -aq "firmware $VERSION (qemu-x86_64, x86_64), slot b" "$RUN/good-serial.log"; then
  pass "the box booted slot b"
else
  fail "the box did not boot slot b: $(grep -a 'firstboot.*slot' "$RUN/good-serial.log" | tail -n1)"
fi
e=$(entries_of "$RUN/good.img")
case "$e" in
  *gateway-b.conf*) pass "slot b marked good by the self-test (entries: $e)" ;;
  *) fail "slot b not marked good (entries: $e; self-test: $(grep -a 'gateway-health' "$RUN/good-serial.log" | tail -n2 | tr '\n' ' '))" ;;
esac

# --- 3. a bad slot falls back ---------------------------------------------------------------------------
log "3. fallback: slot b broken after install; three tries, then slot a again"
install_into_copy "$RUN/good.gwb" "$RUN/bad.img" || setup_fail "installing into the fallback disk"
# ruin slot b's root filesystem (the superblock): the initrd cannot mount it, panics, reboots (panic=10)
dd if=/dev/zero of="$RUN/bad.img" bs=512 seek="$(part_start "$RUN/bad.img" root-b)" count=8 conv=notrunc status=none
boot "$RUN/bad.img" "$RUN/bad-serial.log"
wait_serial "$RUN/bad-serial.log" 'firstboot.*slot a' 900 || true
wait_serial "$RUN/bad-serial.log" 'gateway-health: (OK|FAILED)' 300 || true
sleep 3; stop_qemu
tries=$(grep -ac 'Rebooting automatically due to panic' "$RUN/bad-serial.log" || true)
if [ "$tries" = 3 ] && grep -aq 'slot a' "$RUN/bad-serial.log"; then
  pass "slot b was tried 3 times (each panicked and rebooted), then slot a booted"
else
  fail "expected 3 failed tries of slot b then slot a (saw $tries panics; slot a booted: $(grep -aq 'firstboot.*slot a' "$RUN/bad-serial.log" && echo yes || echo no))"
fi
e=$(entries_of "$RUN/bad.img")
case "$e" in
  *gateway-b+0-3.conf*) pass "slot b's entry has no tries left (entries: $e)" ;;
  *) fail "unexpected entries after the fallback: $e" ;;
esac
rm -rf "$RUN/esp"; mkdir -p "$RUN/esp"
mcopy -i "$RUN/bad.img@@$ESP_OFF" -s -n ::/loader "$RUN/esp/"
st=$("$GU" status --esp "$RUN/esp" --booted-slot a)
if grep -q 'FELL BACK' <<<"$st"; then pass "gateway-update status reports the fallback: $(grep 'FELL BACK' <<<"$st")"; else fail "status does not report the fallback: $st"; fi

log "whole test $(( $(date +%s) - T0 ))s"
echo "update-test: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
