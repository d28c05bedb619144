#!/usr/bin/env bash
# Completes the initrd of the kernel in a root tree with the kernel modules of initramfs-tools'
# MODULES=most, using the build host's own tools (kmod, cpio, zstd) instead of the tree's.
#
#   images/lib/initrd-modules.sh <root>      (images/build.sh runs it as an mmdebstrap customize hook)
#
# Why: for a foreign architecture (aarch64 on an x86_64 builder) every program of the tree runs under
# qemu-user, and mkinitramfs with MODULES=most spawns several programs per module (modprobe, modinfo,
# realpath, mkdir, cp — for ~900 modules): about 10 minutes per initrd, and dpkg builds it twice. So the
# builder has initramfs-tools build the initrd with MODULES=list (init, scripts, hooks and the binaries
# they copy: ~20 s under emulation) and this script adds what MODULES=most would have added:
#   - the module names come from the tree's own hook-functions (auto_add_modules with its default
#     classes, then hidden_dep_add_modules), run by the host's sh with a manual_add_modules that lists;
#   - kmod resolves them against the tree's modules.dep and modprobe.d (modprobe -d/-S/-C
#     --show-depends, with and without --ignore-install, as manual_add_modules does), and lists the
#     firmware they name (modinfo), copied when the tree has it;
#   - depmod -b over the result, modules.*map removed, and the archive repacked as mkinitramfs packs it
#     (newc cpio of the sorted tree, times clamped to SOURCE_DATE_EPOCH, zstd -9).
# Native x86_64 images take the same path, so the x86_64 boot tests check it.
set -euo pipefail

die() { printf 'initrd-modules.sh: ERROR: %s\n' "$*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 <root>"
ROOT=$(realpath "$1")
KVER=$(ls "$ROOT/lib/modules" 2>/dev/null | sort -V | tail -n1)
[ -n "$KVER" ] || die "no kernel modules in $ROOT/lib/modules"
MODDIR="$ROOT/lib/modules/$KVER"
INITRD="$ROOT/boot/initrd.img-$KVER"
HOOK_FUNCTIONS="$ROOT/usr/share/initramfs-tools/hook-functions"
[ -f "$INITRD" ] || die "no $INITRD (initramfs-tools did not build it)"
[ -f "$HOOK_FUNCTIONS" ] || die "no $HOOK_FUNCTIONS (package initramfs-tools-core)"
for t in modprobe modinfo depmod cpio zstd realpath; do
  command -v "$t" >/dev/null || die "$t not found on the build host (apt-get install kmod cpio zstd coreutils)"
done
# The archive must be the one mkinitramfs writes with COMPRESS=zstd and no early (uncompressed) part.
magic=$(head -c4 "$INITRD" | od -An -tx1 | tr -d ' \n')
[ "$magic" = 28b52ffd ] || die "$INITRD is not a zstd archive (magic $magic): COMPRESS=zstd and no early cpio expected"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/initrd-modules.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
D="$WORK/initrd"
mkdir -p "$D"
zstd -q -dc "$INITRD" | (cd "$D" && cpio -idm --quiet --no-absolute-filenames) || die "cannot unpack $INITRD"
before=$(find "$D/usr/lib/modules/$KVER" -name '*.ko*' | wc -l)

# hook-functions is a library (functions only): run one of its module pickers, listing the names
pick() {  # <function>: the module names it would add
  MODULESDIR="$MODDIR" version="$KVER" DESTDIR="$D" verbose=n sh -c '
    . "$1"
    manual_add_modules() { for m in "$@"; do echo "$m"; done; }
    "$2"' sh "$HOOK_FUNCTIONS" "$1"
}
MODPROBE=(modprobe -d "$ROOT" -S "$KVER" -C "$ROOT/etc/modprobe.d" -C "$ROOT/lib/modprobe.d" --all --quiet --show-depends)
add_modules() {  # <name>...: each module, its dependencies and their firmware, into the initrd
  [ $# -gt 0 ] || return 0
  # names that do not exist for this kernel are skipped, as mkinitramfs skips them
  { "${MODPROBE[@]}" --ignore-install "$@" || true; "${MODPROBE[@]}" "$@" || true; } \
    | awk '$1 == "insmod" { print $2 }' | sort -u > "$WORK/paths"
  [ -s "$WORK/paths" ] || return 0
  local src rel
  xargs -d '\n' realpath -e < "$WORK/paths" > "$WORK/canonical" || die "modprobe named modules that do not exist"
  while IFS= read -r src; do
    rel=${src#"$ROOT"}
    [ "$rel" != "$src" ] || die "module $src is outside $ROOT"
    [ -e "$D$rel" ] && continue
    mkdir -p "$(dirname "$D$rel")"
    cp -p "$src" "$D$rel"
  done < "$WORK/canonical"
  xargs -d '\n' modinfo -k "$KVER" -F firmware < "$WORK/canonical" | sort -u > "$WORK/firmware" || true
  local fw loc
  while IFS= read -r fw; do
    [ -n "$fw" ] || continue
    for loc in "lib/firmware/updates/$KVER/$fw" "lib/firmware/updates/$fw" "lib/firmware/$KVER/$fw" "lib/firmware/$fw"; do
      [ -e "$D/$loc" ] && break
      if [ -e "$ROOT/$loc" ]; then
        src=$(realpath "$ROOT/$loc"); rel=${src#"$ROOT"}
        mkdir -p "$(dirname "$D$rel")"; cp -p "$src" "$D$rel"
        break
      fi
    done   # firmware the tree does not have is left out, as mkinitramfs leaves it out
  done < "$WORK/firmware"
}

mapfile -t most < <(pick auto_add_modules)
[ ${#most[@]} -gt 100 ] || die "auto_add_modules named only ${#most[@]} modules: hook-functions changed?"
add_modules "${most[@]}"
mapfile -t hidden < <(pick hidden_dep_add_modules)
add_modules "${hidden[@]}"

# as mkinitramfs: modules uncompressed, dependencies for the initrd's own module set, no *map files
find "$D/usr/lib/modules/$KVER" -name '*.ko.xz' -exec xz -d {} + 2>/dev/null || true
find "$D/usr/lib/modules/$KVER" -name '*.ko.zst' -exec zstd -q -d --rm {} + 2>/dev/null || true
depmod -a -b "$D" "$KVER" || die "depmod -b $D $KVER failed"
rm -f "$D/usr/lib/modules/$KVER"/modules.*map
after=$(find "$D/usr/lib/modules/$KVER" -name '*.ko' | wc -l)

if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  find "$D" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch --no-dereference --date="@$SOURCE_DATE_EPOCH"
fi
(cd "$D" && find . | LC_ALL=C sort | cpio --quiet --reproducible -o -H newc) > "$WORK/initrd.cpio" \
  || die "cpio failed"
zstd -q -9 -c "$WORK/initrd.cpio" > "$WORK/initrd.img" || die "zstd failed"
chmod --reference="$INITRD" "$WORK/initrd.img"
touch --reference="$INITRD" "$WORK/initrd.img"
mv "$WORK/initrd.img" "$INITRD"
printf 'initrd-modules.sh: %s: %d modules from initramfs-tools (MODULES=list) + %d of MODULES=most = %d; %s\n' \
  "$(basename "$INITRD")" "$before" "$((after - before))" "$after" "$(du -h "$INITRD" | cut -f1)" >&2
