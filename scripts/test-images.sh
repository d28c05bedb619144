#!/usr/bin/env bash
# The firmware image tests, from a fresh Debian 12 machine (root; CI runs it after scripts/test.sh):
#
#   1. setup            scripts/setup.sh (Rust/BPF toolchain) + scripts/setup-images.sh (mmdebstrap, QEMU,
#                       OVMF/AAVMF, qemu-user + binfmt, aarch64 cross toolchain, the SOC's tools)
#   2. x86_64 binaries  cargo build --release --bins (the same command as scripts/test.sh: a no-op after it)
#   3. verifier on 6.1  tests/image/verify-6.1.sh: the data path loaded on the image's kernel in QEMU (~15 s);
#                       a program that kernel refuses fails here, before the image is built
#   4. x86_64 image     images/build.sh hw/qemu-x86_64.toml
#   5. boot test        tests/image/boot-test.sh: boots it in QEMU with three NICs in namespaces, checks
#                       the policy from outside, the metrics endpoint (promtool) and IPFIX flows
#   6. update test      tests/image/update-test.sh: bad bundles refused, good one switches slots, fallback
#   7. aarch64 binaries gatewayd, gatewayctl, gateway-update, gateway-verify cross-compiled
#   8. aarch64 image    images/build.sh hw/arm64-dualport.toml (built and assembled: disk + bundle)
#   9. arm64 verifier   tests/image/verify-6.1.sh --arch aarch64: the data path loaded on the arm64 kernel
#  10. aarch64 boot     tests/image/arm64-smoke.sh --image: that image boots in qemu-system-aarch64
#
#   scripts/test-images.sh [--cold] [--skip-setup] [--keep]
#
#   --cold        first remove images/out and the image build cache (GATEWAY_IMAGE_CACHE, default
#                 /var/cache/gateway-images: base root filesystems, downloaded .debs, development
#                 signing key): what a fresh machine does. Cargo's target dir is left alone.
#   --skip-setup  do not run the setup scripts (the machine is known to be ready)
#   --keep        keep the tests' run directories (serial logs)
#
# Environment: CARGO_TARGET_DIR (default target/, shared with scripts/test.sh so CI compiles once);
# GATEWAY_IMAGE_CACHE. Prints every step's output, its time, and a summary table; exits 1 if any step
# failed (a step whose input failed is reported as not run), 2 on bad usage.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

COLD=0 SETUP=1 KEEP_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cold) COLD=1; shift ;;
    --skip-setup) SETUP=0; shift ;;
    --keep) KEEP_ARGS=(--keep); shift ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test-images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "test-images.sh: FAILED — needs root (image builds, QEMU taps, namespaces). Nothing was tested." >&2; exit 1; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
TD=$CARGO_TARGET_DIR
CACHE=${GATEWAY_IMAGE_CACHE:-/var/cache/gateway-images}
# images/build.sh and update-test.sh build and find gateway-update there too
export GATEWAY_FW_TARGET_DIR=$TD GATEWAY_IMAGE_CACHE=$CACHE
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
OUT_X86="$REPO/images/out/qemu-x86_64" OUT_ARM="$REPO/images/out/arm64-dualport"
LOGDIR="$REPO/images/out/test-images-logs"

T_ALL=$(date +%s)
NAMES=() RESULTS=() SECONDS_TAKEN=()
declare -A STATUS=()
# Every step runs as a background job in its own process group (set -m), so an interrupt reaches all of
# it: the trap passes INT/TERM on to that group and waits while the step's own traps clean up (QEMU,
# namespaces, taps).
set -m
CHILD=""
trap 'if [ -n "$CHILD" ]; then kill -TERM -- "-$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; fi; echo "test-images.sh: interrupted" >&2; exit 130' INT TERM

# step <id> <needs id or -> <title> <command...>: runs it (output shown and kept in $LOGDIR/<id>.log),
# records ok / FAILED (exit code) / not run
step() {
  local id=$1 needs=$2 title=$3; shift 3
  NAMES+=("$id  $title")
  if [ "$needs" != - ] && [ "${STATUS[$needs]:-}" != ok ]; then
    STATUS[$id]=skipped; RESULTS+=("not run (needs $needs)"); SECONDS_TAKEN+=("-")
    printf '\n===== %s: NOT RUN (%s did not succeed)\n' "$id" "$needs" >&2
    return 0
  fi
  printf '\n===== %s: %s  [%s]\n' "$id" "$title" "$(date -u +%H:%M:%S)" >&2
  local t0 rc=0
  t0=$(date +%s)
  "$@" > >(tee "$LOGDIR/$id.log") 2>&1 &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  local dt=$(( $(date +%s) - t0 ))
  SECONDS_TAKEN+=("$dt")
  if [ "$rc" = 0 ]; then
    STATUS[$id]=ok; RESULTS+=("ok")
  else
    STATUS[$id]=failed; RESULTS+=("FAILED (exit $rc)")
  fi
  printf '===== %s: %s in %dm%02ds\n' "$id" "${RESULTS[-1]}" $((dt / 60)) $((dt % 60)) >&2
}

if [ "$COLD" = 1 ]; then
  echo "test-images.sh: --cold: removing $REPO/images/out and $CACHE" >&2
  rm -rf "$REPO/images/out" "$CACHE"
fi
mkdir -p "$LOGDIR"

setup() {
  bash scripts/setup.sh
  bash scripts/setup-images.sh
}
x86_bins() {
  cargo build --release --locked --bins
  # images/build.sh builds gateway-update for the image with an explicit --target: the same command here,
  # with all cores (build.sh uses -j1 to stay out of other builds' way), leaves it nothing to do
  cargo build --release --locked -p gateway-firmware --bin gateway-update --target x86_64-unknown-linux-gnu
}
arm_bins() {
  cargo build --release --locked -p gateway-daemon --target aarch64-unknown-linux-gnu
  cargo build --release --locked -p gateway-dataplane --bin gateway-verify --target aarch64-unknown-linux-gnu
  cargo build --release --locked -p gateway-firmware --bin gateway-update --target aarch64-unknown-linux-gnu
  cargo build --release --locked -p gateway-firmware --bin gateway-update   # the host's, to sign the bundle
}

if [ "$SETUP" = 1 ]; then step setup - "install packages and toolchains" setup; else STATUS[setup]=ok; fi
step x86-bins setup "x86_64 binaries (cargo)" x86_bins
# the release gateway-verify of x86-bins; the image is built only if its kernel takes the data path
step verify-6.1 x86-bins "verifier on kernel 6.1: tests/image/verify-6.1.sh (QEMU)" \
  tests/image/verify-6.1.sh --bin "$TD/release/gateway-verify" "${KEEP_ARGS[@]}"
step x86-image verify-6.1 "x86_64 image: images/build.sh hw/qemu-x86_64.toml" \
  images/build.sh hw/qemu-x86_64.toml --out "$OUT_X86" --bin-dir "$TD/release"
step boot-test x86-image "boot test: policy, metrics, flows from outside (QEMU)" \
  tests/image/boot-test.sh --image "$OUT_X86/gateway-qemu-x86_64.img" "${KEEP_ARGS[@]}"
step update-test x86-image "update test: signatures, slot switch, fallback (QEMU)" \
  tests/image/update-test.sh --out "$OUT_X86" "${KEEP_ARGS[@]}"
# the host's gatewayctl (x86-bins) validates the aarch64 image's policy and the host's gateway-update signs it
step arm-bins x86-bins "aarch64 binaries (cargo, cross)" arm_bins
step arm-image arm-bins "aarch64 image: images/build.sh hw/arm64-dualport.toml" \
  images/build.sh hw/arm64-dualport.toml --out "$OUT_ARM" --build-gatewayd
# the arm64 kernel comes from the base the image build left in the cache; the board's ports are absent in
# QEMU, so this is where the data path is loaded (and JIT-compiled, tail calls included) on arm64
step arm-verify arm-image "verifier on arm64 kernel 6.1: verify-6.1.sh --arch aarch64" \
  tests/image/verify-6.1.sh --arch aarch64 --bin "$TD/aarch64-unknown-linux-gnu/release/gateway-verify" "${KEEP_ARGS[@]}"
step arm-boot arm-image "aarch64 boot smoke test (qemu-system-aarch64)" \
  tests/image/arm64-smoke.sh --image "$OUT_ARM/gateway-arm64-dualport.img" "${KEEP_ARGS[@]}"

TOTAL=$(( $(date +%s) - T_ALL ))
{
  printf '\n===== test-images.sh summary (%s)\n' "$([ "$COLD" = 1 ] && echo "cold: no image cache" || echo "image cache: $CACHE")"
  printf '%-70s %-26s %s\n' "step" "result" "time"
  for i in "${!NAMES[@]}"; do
    t=${SECONDS_TAKEN[$i]}
    [ "$t" = - ] || t=$(printf '%dm%02ds' $((t / 60)) $((t % 60)))
    printf '%-70s %-26s %s\n' "${NAMES[$i]}" "${RESULTS[$i]}" "$t"
  done
  printf '%-70s %-26s %dm%02ds\n' "total" "" $((TOTAL / 60)) $((TOTAL % 60))
  printf 'logs: %s\n' "$LOGDIR"
} | tee "$LOGDIR/summary.txt" >&2
for s in "${STATUS[@]}"; do [ "$s" = ok ] || exit 1; done
exit 0
