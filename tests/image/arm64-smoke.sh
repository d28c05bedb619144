#!/usr/bin/env bash
# aarch64 image smoke test (root): build the image for hw/arm64-dualport.toml with the serial console
# of QEMU's virt machine (ttyAMA0), boot it in qemu-system-aarch64 (AAVMF/UEFI, TCG) and check that
# systemd-boot, the kernel, the initrd, the read-only squashfs slot and first boot work (the device
# identity fingerprint appears). The board's NICs do not exist in QEMU, so gatewayd itself is expected
# to fail to find its ports: that is reported, not checked.
#
#   tests/image/arm64-smoke.sh [--timeout SECONDS] [--keep]
#
# The first build of the arm64 base root filesystem runs Debian's maintainer scripts under qemu-user and
# takes about 25 minutes here; later builds use the cache (about a minute).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
TIMEOUT=2400 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) TIMEOUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "arm64-smoke: unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=tests/image/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
test_init arm64-smoke "image build"
RUN=$(mktemp -d /tmp/gateway-arm64-smoke.XXXXXX)
QEMU_PID="" WATCHDOG_PID=""
cleanup() {
  local rc=$?
  set +e
  [ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID" 2>/dev/null
  if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill "$QEMU_PID"; sleep 1; kill -9 "$QEMU_PID" 2>/dev/null
  fi
  if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then log "run directory kept: $RUN"; else rm -rf "$RUN"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "TIMEOUT: overall limit of ${TIMEOUT}s reached"; exit 124' USR1
trap 'exit 130' INT TERM
( sleep "$TIMEOUT"; kill -USR1 $$ ) 2>/dev/null &
WATCHDOG_PID=$!

command -v qemu-system-aarch64 >/dev/null || { log "qemu-system-aarch64 not found (apt-get install qemu-system-arm)"; exit 2; }
[ -f /usr/share/AAVMF/AAVMF_CODE.fd ] || { log "no AAVMF firmware (apt-get install qemu-efi-aarch64)"; exit 2; }

BIN_ARGS=(--build-gatewayd)
[ -x /work/target-fw/aarch64-unknown-linux-gnu/release/gatewayd ] \
  && BIN_ARGS=(--bin-dir /work/target-fw/aarch64-unknown-linux-gnu/release)
log "building: images/build.sh hw/arm64-dualport.toml --console ttyAMA0 ${BIN_ARGS[*]}"
"$REPO/images/build.sh" "$REPO/hw/arm64-dualport.toml" --console ttyAMA0 --out "$RUN/out" "${BIN_ARGS[@]}" \
  || { log "FAIL: the arm64 image did not build"; exit 1; }
log "built in $(( $(date +%s) - T0 ))s"

truncate -s 64M "$RUN/code.fd" "$RUN/vars.fd"
dd if=/usr/share/AAVMF/AAVMF_CODE.fd of="$RUN/code.fd" conv=notrunc status=none
dd if=/usr/share/AAVMF/AAVMF_VARS.fd of="$RUN/vars.fd" conv=notrunc status=none
B0=$(date +%s)
qemu-system-aarch64 -machine virt -cpu cortex-a72 -smp 1 -m 1024 -nodefaults -display none -no-reboot \
  -serial "file:$RUN/serial.log" -monitor none \
  -drive "if=pflash,format=raw,unit=0,readonly=on,file=$RUN/code.fd" \
  -drive "if=pflash,format=raw,unit=1,file=$RUN/vars.fd" \
  -drive "if=none,id=d0,format=raw,file=$RUN/out/gateway-arm64-dualport.img" -device virtio-blk-pci,drive=d0 \
  -pidfile "$RUN/qemu.pid" -daemonize || { log "qemu did not start"; exit 2; }
QEMU_PID=$(cat "$RUN/qemu.pid")
ok=1
for _ in $(seq 150); do
  grep -aqE 'gateway identity: ED25519 SHA256:' "$RUN/serial.log" && { ok=0; break; }
  grep -aqE 'Kernel panic|Rebooting automatically' "$RUN/serial.log" && break
  kill -0 "$QEMU_PID" 2>/dev/null || break
  sleep 2
done
if [ "$ok" = 0 ]; then
  log "PASS  aarch64 image booted (UEFI, systemd-boot, squashfs slot a, first boot) in $(( $(date +%s) - B0 ))s: $(grep -aoE 'SHA256:[A-Za-z0-9+/]{43}' "$RUN/serial.log" | head -n1)"
  for _ in $(seq 45); do grep -aq 'gatewayd\[' "$RUN/serial.log" && break; sleep 2; done
  log "gatewayd (ports of the real board are absent in QEMU): $(grep -a 'gatewayd\[' "$RUN/serial.log" | tail -n1 | sed 's/.*gatewayd\[[0-9]*\]: //' | tr -d '\r')"
  echo "arm64-smoke: 1 passed, 0 failed"
else
  tail -n 30 "$RUN/serial.log" | tr -d '\r' >&2
  log "FAIL  the aarch64 image did not reach first boot"
  echo "arm64-smoke: 0 passed, 1 failed"
  exit 1
fi
