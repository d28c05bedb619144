#!/usr/bin/env bash
# Build a bootable gateway firmware disk image for one hardware profile, from Debian 12 packages.
#
#   images/build.sh <hw/profile.toml> [--out DIR] [--cache DIR] [--version N] [--signing-key FILE]
#                   [--bin-dir DIR] [--policy FILE] [--build-gatewayd] [--console TTY] [--keep-work]
#
# Output (in --out, default images/out/<profile name>):
#   gateway-<profile>.img        GPT disk image: ESP (systemd-boot) | root-a | root-b | gwdata
#   gateway-<profile>-<version>.gwb   signed update bundle of the same root slot (gateway-update install)
#   rootfs.squashfs, esp/, SHA256SUMS, build.log of the steps
#
# No loop devices, no mounts: every filesystem is made from a directory (mksquashfs, mkfs.ext4 -d,
# mkfs.vfat + mtools) and the disk is assembled with sfdisk + dd. Needs root (mmdebstrap's root mode and
# file ownership in the root filesystem). See images/README.md.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
IMAGES="$REPO/images"
SUITE=bookworm
MIRROR=${GATEWAY_MIRROR:-http://deb.debian.org/debian}
ESP_MB=256
SLOT_MB=1024
DATA_MB=512

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
STEP=0
STEPS=9
T0=$(date +%s)
step() { STEP=$((STEP + 1)); printf '\n[%d/%d] %s  (+%ss)\n' "$STEP" "$STEPS" "$*" "$(( $(date +%s) - T0 ))" >&2; }
info() { printf '      %s\n' "$*" >&2; }
warn() { printf '\n  !!! WARNING: %s\n\n' "$*" >&2; }
die() { printf '\nbuild.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# --- arguments -------------------------------------------------------------------------------------------
PROFILE="" OUT="" CACHE=${GATEWAY_IMAGE_CACHE:-/var/cache/gateway-images} VERSION="" SIGNING_KEY="" BIN_DIR=""
POLICY="" BUILD_GATEWAYD=0 KEEP_WORK=0 CONSOLE_OVERRIDE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --version) VERSION=$2; shift 2 ;;
    --signing-key) SIGNING_KEY=$2; shift 2 ;;
    --bin-dir) BIN_DIR=$2; shift 2 ;;
    --policy) POLICY=$2; shift 2 ;;
    --build-gatewayd) BUILD_GATEWAYD=1; shift ;;
    --console) CONSOLE_OVERRIDE=$2; shift 2 ;;  # e.g. ttyAMA0 to boot an arm64 image in qemu's virt machine
    --keep-work) KEEP_WORK=1; shift ;;
    -h|--help) usage ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$PROFILE" ] || die "only one profile, got '$PROFILE' and '$1'"; PROFILE=$1; shift ;;
  esac
done
[ -n "$PROFILE" ] || usage
[ -f "$PROFILE" ] || die "profile $PROFILE: no such file"
PROFILE=$(cd "$(dirname "$PROFILE")" && pwd)/$(basename "$PROFILE")

# --- 1. tools ----------------------------------------------------------------------------------------------
step "checking tools"
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap root mode, root-owned files in the image)"
# tool -> Debian package that provides it
declare -A TOOL_PKG=(
  [mmdebstrap]=mmdebstrap [mksquashfs]=squashfs-tools [mkfs.vfat]=dosfstools [mcopy]=mtools [mmd]=mtools
  [mkfs.ext4]=e2fsprogs [sfdisk]=fdisk [python3]=python3 [cargo]="rustup (the Rust toolchain)"
  [zstd]=zstd [depmod]=kmod [sha256sum]=coreutils [tar]=tar [gzip]=gzip [dd]=coreutils [systemctl]=systemd
  [nft]=nftables [unshare]=util-linux [cpio]=cpio [modprobe]=kmod [modinfo]=kmod
)
missing=()
for t in "${!TOOL_PKG[@]}"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t (Debian package ${TOOL_PKG[$t]})"); done
# Python 3.11+ for tomllib (Debian 12's python3 is 3.11)
python3 -c 'import tomllib' 2>/dev/null || missing+=("python3 >= 3.11 with tomllib (Debian package python3)")
[ ${#missing[@]} -eq 0 ] || die "missing tools:$(printf '\n  - %s' "${missing[@]}")
  install them with: apt-get install mmdebstrap squashfs-tools dosfstools mtools e2fsprogs fdisk zstd nftables cpio kmod"

eval "$(python3 "$IMAGES/lib/profile.py" env "$PROFILE")"
ARCH=$PROFILE_ARCH DEB_ARCH=$PROFILE_DEB_ARCH NAME=$PROFILE_NAME
info "profile $NAME ($ARCH / Debian $DEB_ARCH): ports $PROFILE_PORTS"
case "$ARCH" in
  x86_64) KERNEL_PKG=linux-image-amd64 EFI_NAME=x64 RUST_TARGET=x86_64-unknown-linux-gnu
          ROOT_TYPE=4f68bce3-e8cd-4db1-96e7-fbcaf984b709 ;;
  aarch64) KERNEL_PKG=linux-image-arm64 EFI_NAME=aa64 RUST_TARGET=aarch64-unknown-linux-gnu
           ROOT_TYPE=b921b045-1df0-41c3-af44-4c6f280d3fae ;;
esac
HOST_ARCH=$(uname -m)
if [ "$ARCH" != "$HOST_ARCH" ]; then
  # mmdebstrap runs the foreign packages' maintainer scripts through qemu-user + binfmt_misc.
  command -v "qemu-$ARCH-static" >/dev/null || command -v "qemu-$ARCH" >/dev/null \
    || die "building for $ARCH on $HOST_ARCH needs qemu-user: apt-get install qemu-user-static"
  command -v arch-test >/dev/null || die "mmdebstrap needs arch-test for a foreign architecture: apt-get install arch-test"
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
      || die "binfmt_misc is not mounted and cannot be mounted here: a foreign-arch root filesystem cannot be configured (see images/README.md, 'aarch64 without binfmt')"
  fi
  if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$ARCH" ]; then
    conf=/usr/lib/binfmt.d/qemu-$ARCH.conf
    [ -f "$conf" ] || die "no $conf: apt-get install qemu-user-static"
    cat "$conf" > /proc/sys/fs/binfmt_misc/register || die "cannot register qemu-$ARCH with binfmt_misc"
  fi
  info "foreign arch: qemu-$ARCH registered with binfmt_misc"
  command -v "${ARCH}-linux-gnu-gcc" >/dev/null \
    || die "cross-compiling the binaries needs ${ARCH}-linux-gnu-gcc: apt-get install gcc-${ARCH/_/-}-linux-gnu"
  rustup target list --installed 2>/dev/null | grep -qx "$RUST_TARGET" \
    || die "Rust target $RUST_TARGET missing: rustup target add $RUST_TARGET"
fi

OUT=${OUT:-$IMAGES/out/$NAME}
mkdir -p "$OUT" "$CACHE"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/gateway-"$NAME"-*.gwb   # one bundle per output: the one of this build
WORK="$OUT/work"
rm -rf "$WORK"; mkdir -p "$WORK"
# Reproducible-ish: every timestamp, UUID and seed below derives from the source commit and the profile.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 1700000000)}
export SOURCE_DATE_EPOCH
VERSION=${VERSION:-$SOURCE_DATE_EPOCH}
[[ "$VERSION" =~ ^[0-9]+$ ]] || die "--version must be a non-negative integer (monotonic), got '$VERSION'"
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
uuid_for() { python3 -c 'import sys,uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, "gateway-firmware:" + ":".join(sys.argv[1:])))' "$@"; }
info "version $VERSION (git $GIT_REV), SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, out $OUT, cache $CACHE"

# --- 2. base root filesystem (cached) ----------------------------------------------------------------------
step "base root filesystem: Debian $SUITE $DEB_ARCH (mmdebstrap, cached)"
PACKAGES=(
  "$KERNEL_PKG" initramfs-tools zstd systemd systemd-sysv udev dbus systemd-timesyncd kmod
  nftables iproute2 procps iputils-ping ethtool bpftool ca-certificates e2fsprogs dosfstools
  systemd-boot-efi openssh-server less
)
# The cache key covers everything that shapes the base tree: suite, arch, mirror, packages, initramfs config
# and the script that completes the initrd.
BASE_KEY=$( { echo "$SUITE $DEB_ARCH $MIRROR"; printf '%s\n' "${PACKAGES[@]}"; mmdebstrap --version;
              { find "$IMAGES/initramfs" -type f -print0; printf '%s\0' "$IMAGES/lib/initrd-modules.sh"; } \
                | sort -z | xargs -0 sha256sum | sed "s|$IMAGES/||"; } \
            | sha256sum | cut -c1-16)
BASE_TAR="$CACHE/base-$SUITE-$DEB_ARCH-$BASE_KEY.tar"
DEB_CACHE="$CACHE/debs-$SUITE-$DEB_ARCH"
if [ -s "$BASE_TAR" ]; then
  info "cached: $BASE_TAR"
else
  info "not cached: building $BASE_TAR (packages kept in $DEB_CACHE for the next rebuild)"
  mkdir -p "$DEB_CACHE"
  IFS=, ; INCLUDE="${PACKAGES[*]}"; unset IFS
  mmdebstrap --mode=root --variant=minbase --architectures="$DEB_ARCH" --include="$INCLUDE" \
    --aptopt='Acquire::Retries "3"' \
    --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
    --setup-hook="sync-in $DEB_CACHE /var/cache/apt/archives" \
    --essential-hook="mkdir -p \"\$1\"/etc/initramfs-tools" \
    --essential-hook="sync-in $IMAGES/initramfs /etc/initramfs-tools" \
    --customize-hook="sync-out /var/cache/apt/archives $DEB_CACHE" \
    --customize-hook="$IMAGES/lib/initrd-modules.sh \"\$1\"" \
    --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages "$1"/var/lib/apt/lists/*_InRelease' \
    "$SUITE" "$BASE_TAR.tmp.tar" "$MIRROR" >"$WORK/mmdebstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/mmdebstrap.log" >&2; die "mmdebstrap failed (full log: $WORK/mmdebstrap.log)"; }
  mv "$BASE_TAR.tmp.tar" "$BASE_TAR"
  # one base per suite/arch is enough: drop the ones an older package list or initramfs config made
  find "$CACHE" -maxdepth 1 -name "base-$SUITE-$DEB_ARCH-*.tar" ! -name "$(basename "$BASE_TAR")" -delete
  info "built $(du -h "$BASE_TAR" | cut -f1)"
fi

# --- 3. binaries -----------------------------------------------------------------------------------------
step "binaries: gateway-update, gatewayd, gatewayctl ($RUST_TARGET)"
FW_TARGET_DIR=${GATEWAY_FW_TARGET_DIR:-/work/target-fw}
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# Modest CPU use: the build machines are shared. Without SOURCE_DATE_EPOCH (exported above for the image):
# some build scripts (ring's, via cc) rerun when it changes, which would rebuild the TLS stack for every new
# commit and never reuse what scripts/test-images.sh or a developer built; rustc's output does not use it.
cargo_build() {  # <package> [<extra args>...]
  local pkg=$1; shift
  (cd "$REPO" && env -u SOURCE_DATE_EPOCH nice -n 10 cargo build --release -j1 --locked -p "$pkg" "$@") >>"$WORK/cargo.log" 2>&1 \
    || { tail -n 30 "$WORK/cargo.log" >&2; die "cargo build -p $pkg $* failed (log: $WORK/cargo.log)"; }
}
info "building gateway-update for $RUST_TARGET (target dir $FW_TARGET_DIR)"
CARGO_TARGET_DIR=$FW_TARGET_DIR cargo_build gateway-firmware --bin gateway-update --target "$RUST_TARGET"
UPDATE_BIN="$FW_TARGET_DIR/$RUST_TARGET/release/gateway-update"
if [ "$ARCH" = "$HOST_ARCH" ]; then
  HOST_UPDATE_BIN=$UPDATE_BIN
else
  CARGO_TARGET_DIR=$FW_TARGET_DIR cargo_build gateway-firmware --bin gateway-update
  HOST_UPDATE_BIN="$FW_TARGET_DIR/release/gateway-update"
fi
if [ "$BUILD_GATEWAYD" = 1 ]; then
  info "building gatewayd and gatewayctl for $RUST_TARGET"
  # own target dir: never blocks on (or races) a developer's build in target/
  CARGO_TARGET_DIR=$FW_TARGET_DIR cargo_build gateway-daemon --target "$RUST_TARGET"
  BIN_DIR=${BIN_DIR:-$FW_TARGET_DIR/$RUST_TARGET/release}
fi
if [ -z "$BIN_DIR" ]; then
  for d in "$REPO/target/$RUST_TARGET/release" "$REPO/target/release"; do
    if [ -x "$d/gatewayd" ]; then
      [ "$d" = "$REPO/target/release" ] && [ "$ARCH" != "$HOST_ARCH" ] && continue
      BIN_DIR=$d; break
    fi
  done
fi
HAVE_GATEWAYD=0
if [ -n "$BIN_DIR" ] && [ -x "$BIN_DIR/gatewayd" ] && [ -x "$BIN_DIR/gatewayctl" ]; then
  HAVE_GATEWAYD=1
  info "gatewayd/gatewayctl from $BIN_DIR"
else
  warn "gatewayd/gatewayctl for $ARCH not found (looked in ${BIN_DIR:-target/$RUST_TARGET/release, target/release}).
  The image is built WITHOUT the data path: gatewayd.service will not start, the default-deny boot ruleset
  stays in force (nothing is forwarded) and the boot self-test reports failure.
  Build them first (cargo build --release -p gateway-daemon [--target $RUST_TARGET]) or pass --build-gatewayd."
fi

# --- 4. customise the root filesystem ------------------------------------------------------------------
step "root filesystem: our files, units, hardening"
ROOT="$WORK/root"
mkdir -p "$ROOT"
tar -C "$ROOT" --numeric-owner -xpf "$BASE_TAR"
# our static files (units, rulesets, scripts, sshd/journald/sysctl config)
cp -a --no-preserve=ownership "$IMAGES/rootfs/." "$ROOT/"
STRIP="strip"
[ "$ARCH" = "$HOST_ARCH" ] || STRIP="${ARCH}-linux-gnu-strip"
install_bin() {  # <src> <dst>: debug info stripped (a debug build is ~80 MB otherwise)
  install -m 0755 "$1" "$2"
  if command -v "$STRIP" >/dev/null; then "$STRIP" --strip-debug "$2"; else info "no $STRIP: $2 not stripped"; fi
}
install_bin "$UPDATE_BIN" "$ROOT/usr/bin/gateway-update"
if [ "$HAVE_GATEWAYD" = 1 ]; then
  install_bin "$BIN_DIR/gatewayd" "$ROOT/usr/bin/gatewayd"
  install_bin "$BIN_DIR/gatewayctl" "$ROOT/usr/bin/gatewayctl"
fi
install -d "$ROOT/usr/share/gateway/policy" "$ROOT/etc/gateway"
# gatewayd gets a runtime profile whose udev-named ports are given by ifname (profile.py runtime); the
# hardware profile itself ships beside it
install -m 0644 "$PROFILE" "$ROOT/usr/share/gateway/profile.hw.toml"
python3 "$IMAGES/lib/profile.py" runtime "$PROFILE" > "$ROOT/usr/share/gateway/profile.toml"
POLICY=${POLICY:-$REPO/configs/ward-office.toml}
if [ -f "$POLICY" ]; then
  install -m 0644 "$POLICY" "$ROOT/usr/share/gateway/policy/example.toml"
  # feed paths in a policy are relative to its directory: ship the feeds beside it
  if [ -d "$(dirname "$POLICY")/feeds" ]; then
    cp -r "$(dirname "$POLICY")/feeds" "$ROOT/usr/share/gateway/policy/feeds"
    chmod -R u+w,go-w,a+rX "$ROOT/usr/share/gateway/policy/feeds"
  fi
  info "example policy: $POLICY (+ $(ls "$ROOT/usr/share/gateway/policy/feeds" 2>/dev/null | wc -l) feeds)"
else
  warn "example policy $POLICY not found: the image has no policy to start gatewayd with (pass --policy FILE)"
fi
# `gatewayctl validate` is offline and arch-neutral: a gatewayctl that runs here checks the image's pair
# (for a foreign arch, the host's: from CARGO_TARGET_DIR first, which scripts/test-images.sh has just built)
VALIDATOR=""
if [ "$HAVE_GATEWAYD" = 1 ] && [ "$ARCH" = "$HOST_ARCH" ]; then VALIDATOR="$BIN_DIR/gatewayctl"
else
  for c in ${CARGO_TARGET_DIR:+"$CARGO_TARGET_DIR/release/gatewayctl"} "$FW_TARGET_DIR/release/gatewayctl" \
           "$REPO/target/release/gatewayctl" "$REPO/target/debug/gatewayctl"; do
    [ -x "$c" ] && { VALIDATOR=$c; break; }
  done
fi
if [ -n "$VALIDATOR" ] && [ -f "$ROOT/usr/share/gateway/policy/example.toml" ]; then
  "$VALIDATOR" validate --profile "$ROOT/usr/share/gateway/profile.toml" \
    "$ROOT/usr/share/gateway/policy/example.toml" >"$WORK/validate.log" 2>&1 \
    || { cat "$WORK/validate.log" >&2; die "the example policy does not validate against the profile ($VALIDATOR validate; an old build refuses newer policy fields)"; }
  info "gatewayctl validate ($VALIDATOR): runtime profile + example policy OK"
else
  info "no gatewayctl runs on this host: the example policy was not validated against the profile"
fi
[ -f "$IMAGES/README.md" ] && install -D -m 0644 "$IMAGES/README.md" "$ROOT/usr/share/doc/gateway/README.images.md"
# generated from the profile: interface names, ports by role for nftables, per-port network config
python3 "$IMAGES/lib/profile.py" links "$PROFILE" "$ROOT/usr/lib/systemd/network"
python3 "$IMAGES/lib/profile.py" nft "$PROFILE" > "$ROOT/etc/nftables/gateway-ports.nft"
install -d "$ROOT/etc/systemd/system/gatewayd.service.d"
python3 "$IMAGES/lib/profile.py" units "$PROFILE" > "$ROOT/etc/systemd/system/gatewayd.service.d/ports.conf"
NETDIR="$IMAGES/network/$NAME"
[ -d "$NETDIR" ] || { NETDIR="$IMAGES/network/default"; info "no images/network/$NAME: using images/network/default"; }
python3 "$IMAGES/lib/profile.py" network "$PROFILE" "$NETDIR" "$ROOT/usr/lib/systemd/network"
info "network config: $NETDIR -> $(cd "$ROOT/usr/lib/systemd/network" && ls -- *gateway* | tr '\n' ' ')"
# The boot ruleset must load (nft -c, a dry run, in a private network namespace: nothing on this host is
# touched), and the example policy's metrics endpoint must be on the port it opens. The run ruleset is
# rendered by gatewayd from the policy (--nftables) and checked by it before it is applied.
for rs in gateway-boot.nft; do
  sed 's|"/etc/nftables/|"'"$ROOT"'/etc/nftables/|' "$ROOT/etc/nftables/$rs" > "$WORK/$rs"
  unshare --net nft -c -f "$WORK/$rs" >"$WORK/nft-check.log" 2>&1 \
    || { cat "$WORK/nft-check.log" >&2; die "images/rootfs/etc/nftables/$rs does not load with this profile's ports"; }
done
if [ -f "$ROOT/usr/share/gateway/policy/example.toml" ]; then
  python3 "$IMAGES/lib/profile.py" metrics "$ROOT/usr/share/gateway/policy/example.toml" \
    "$ROOT/etc/nftables/gateway-services.nft" "$NETDIR/dedicated.network" >&2 \
    || die "the example policy's metrics endpoint does not fit the image's nftables (see above)"
fi
info "nftables: the boot ruleset loads; metrics port open on the dedicated ports only"
cat > "$ROOT/usr/lib/gateway/firmware-release" <<EOF
GATEWAY_FIRMWARE_VERSION=$VERSION
GATEWAY_PROFILE=$NAME
GATEWAY_ARCH=$ARCH
GATEWAY_PORTS="$PROFILE_PORTS"
GATEWAY_GIT=$GIT_REV
GATEWAY_BUILD_EPOCH=$SOURCE_DATE_EPOCH
GATEWAY_HAS_DATAPATH=$HAVE_GATEWAYD
EOF
# identity and accounts: no default credentials, root locked, no password login anywhere
echo gateway > "$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tgateway\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$ROOT/etc/hosts"
: > "$ROOT/etc/machine-id"            # systemd makes a transient one at boot (read-only root)
rm -f "$ROOT/var/lib/dbus/machine-id" "$ROOT"/etc/ssh/ssh_host_*   # never ship shared host keys
sed -i -E 's/^root:[^:]*:/root:!*:/' "$ROOT/etc/shadow"
awk -F: '$2 !~ /^[!*]/ { bad = bad " " $1 } END { if (bad) { print "accounts with a usable password:" bad; exit 1 } }' \
  "$ROOT/etc/shadow" || die "the image would have a password login"
cat > "$ROOT/etc/issue" <<'EOF'
Gateway firmware \n — console login is disabled; manage with certificates only.

EOF
cat > "$ROOT/etc/fstab" <<'EOF'
# Gateway firmware. The root slot (PARTLABEL=root-a|root-b, squashfs, read-only) is mounted by the initrd,
# with /etc and /var on tmpfs overlays. Persistent state is on the data partition only.
LABEL=gwdata  /data  ext4  defaults,nodev,nosuid,noexec,x-systemd.growfs  0  2
PARTLABEL=esp /efi   vfat  noauto,x-systemd.automount,x-systemd.idle-timeout=60,umask=0077,nodev,nosuid,noexec  0  2
tmpfs         /tmp   tmpfs mode=1777,nodev,nosuid,size=25%  0  0
EOF
install -d -m 0755 "$ROOT/data" "$ROOT/efi"
# units: ours on; login prompts, ssh and the stock nftables ruleset off
SYSTEMCTL="systemctl --root=$ROOT --quiet"
# ssh.service is enabled but its drop-in keeps it off until /data/config/ssh/{enabled,user_ca.pub} exist
# (/etc is a tmpfs overlay: "systemctl enable" on the box would not survive a reboot)
$SYSTEMCTL enable gateway-nft-boot.service gateway-firstboot.service gatewayd.service gateway-health.service \
  systemd-networkd.service systemd-timesyncd.service ssh.service
$SYSTEMCTL mask getty@.service serial-getty@.service console-getty.service container-getty@.service \
  systemd-bless-boot.service nftables.service ssh.socket \
  apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service
# keep the slot small
rm -rf "$ROOT"/usr/share/doc/*/changelog* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
  "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/log/*.log
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'C*' ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true

# boot files for the ESP
KVER=$(ls "$ROOT/lib/modules" | sort -V | tail -n1)
[ -n "$KVER" ] || die "no kernel in the root filesystem (package $KERNEL_PKG)"
# kernel modules a headless gateway never loads (the initrd keeps its own copy of what boot needs):
# sound, graphics, cameras/TV, wireless, bluetooth, infiniband, staging, industrial I/O. About 40% of
# the slot, and of the build time.
MODDIR="$ROOT/lib/modules/$KVER/kernel"
for d in sound drivers/gpu drivers/media drivers/infiniband drivers/staging drivers/iio drivers/net/wireless \
         drivers/bluetooth net/bluetooth net/wireless net/mac80211 drivers/isdn drivers/input/joystick \
         drivers/input/touchscreen drivers/hid/amd-sfh-hid drivers/comedi; do
  rm -rf "${MODDIR:?}/$d"
done
depmod -b "$ROOT" "$KVER" || die "depmod failed (package kmod)"
info "kernel modules after pruning: $(du -sh "$ROOT/lib/modules/$KVER" | cut -f1)"
[ -f "$ROOT/boot/initrd.img-$KVER" ] || die "no initrd for kernel $KVER (initramfs-tools failed?)"
mkdir -p "$WORK/boot"
if [ "$(head -c2 "$ROOT/boot/vmlinuz-$KVER" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
  # arm64 Debian kernels are gzip'd Images; systemd-boot needs the bare EFI-stub Image
  gzip -dc "$ROOT/boot/vmlinuz-$KVER" > "$WORK/boot/vmlinuz"
else
  cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/boot/vmlinuz"
fi
cp "$ROOT/boot/initrd.img-$KVER" "$WORK/boot/initrd.img"
SDBOOT="$ROOT/usr/lib/systemd/boot/efi/systemd-boot$EFI_NAME.efi"
[ -f "$SDBOOT" ] || die "no $SDBOOT (package systemd-boot-efi)"
info "kernel $KVER, initrd $(du -h "$WORK/boot/initrd.img" | cut -f1)"

# --- 5. signing key ---------------------------------------------------------------------------------
step "update signing key"
if [ -z "$SIGNING_KEY" ]; then
  SIGNING_KEY="$CACHE/dev-signing.key"
  [ -f "$SIGNING_KEY" ] || "$HOST_UPDATE_BIN" keygen --out "$SIGNING_KEY" >/dev/null
  warn "no --signing-key: using the DEVELOPMENT key $SIGNING_KEY. Never ship an image signed with it."
fi
[ -f "$SIGNING_KEY.pub" ] || die "$SIGNING_KEY.pub missing (make keys with: gateway-update keygen --out FILE)"
install -m 0644 "$SIGNING_KEY.pub" "$ROOT/usr/share/gateway/update-signing.pub"
info "images trust updates signed by $(cat "$SIGNING_KEY.pub")"

# --- 6. root slot filesystem ---------------------------------------------------------------------------
step "root slot: squashfs (zstd)"
rm -f "$OUT/rootfs.squashfs"
# mksquashfs takes SOURCE_DATE_EPOCH from the environment (file times clamped to it, fixed mkfs time)
nice -n 10 mksquashfs "$ROOT" "$OUT/rootfs.squashfs" -comp zstd -Xcompression-level 6 -noappend -processors 1 -quiet -no-progress \
  >/dev/null || die "mksquashfs failed"
ROOT_BYTES=$(stat -c %s "$OUT/rootfs.squashfs")
[ "$ROOT_BYTES" -le $((SLOT_MB * 1024 * 1024)) ] || die "root filesystem ($ROOT_BYTES bytes) exceeds the slot ($SLOT_MB MiB)"
info "rootfs.squashfs $((ROOT_BYTES / 1024 / 1024)) MiB (slot $SLOT_MB MiB)"

# --- 7. ESP and data partition ------------------------------------------------------------------------
step "ESP (systemd-boot, slot a entry) and data partition (ext4, LABEL=gwdata)"
CONSOLE_ARGS="console=tty0"
[ -n "$CONSOLE_OVERRIDE" ] && { PROFILE_CONSOLE=$CONSOLE_OVERRIDE; info "console overridden: $CONSOLE_OVERRIDE"; }
[ -n "$PROFILE_CONSOLE" ] && CONSOLE_ARGS="$CONSOLE_ARGS console=$PROFILE_CONSOLE"
CMDLINE="rootfstype=squashfs ro $CONSOLE_ARGS panic=10 systemd.show_status=1"
ESP="$OUT/esp"
rm -rf "$ESP"; mkdir -p "$ESP/EFI/BOOT" "$ESP/EFI/systemd" "$ESP/loader/entries"
BOOT_EFI=$(echo "BOOT$EFI_NAME.EFI" | tr a-z A-Z)
cp "$SDBOOT" "$ESP/EFI/BOOT/$BOOT_EFI"
cp "$SDBOOT" "$ESP/EFI/systemd/systemd-boot$EFI_NAME.efi"
cat > "$ESP/loader/loader.conf" <<'EOF'
# Gateway firmware. Entries: gateway-a / gateway-b, written by gateway-update. A freshly installed slot's
# entry carries a boot counter (gateway-b+3.conf); systemd-boot counts tries down, gateway-health marks it
# good (removes the counter); an entry with no tries left sorts last, so the previous slot boots again.
timeout 0
editor no
auto-entries no
auto-firmware no
console-mode keep
EOF
"$HOST_UPDATE_BIN" boot-entry --esp "$ESP" --slot a --version "$VERSION" --profile "$NAME" \
  --kernel "$WORK/boot/vmlinuz" --initrd "$WORK/boot/initrd.img" --cmdline "$CMDLINE" >/dev/null \
  || die "gateway-update boot-entry failed"
find "$ESP" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
ESP_IMG="$WORK/esp.img"
VOLID=$(uuid_for "$NAME" esp | cut -c1-8)
mkfs.vfat -C -F 32 -n ESP -i "$VOLID" "$ESP_IMG" $((ESP_MB * 1024)) >/dev/null || die "mkfs.vfat failed"
export MTOOLS_SKIP_CHECK=1
mcopy -i "$ESP_IMG" -s -p -m -Q "$ESP"/* ::/ || die "mcopy into the ESP failed"
info "ESP: $(du -sh "$ESP" | cut -f1) used of $ESP_MB MiB; entries: $(ls "$ESP/loader/entries" | tr '\n' ' ')"

DATA="$WORK/data"
mkdir -p "$DATA"/{policy,history,spool,config/network}
install -d -m 0700 "$DATA/gateway" "$DATA/gateway/state" "$DATA/identity" "$DATA/config/ssh"
if [ -f "$ROOT/usr/share/gateway/policy/example.toml" ]; then
  install -m 0644 "$ROOT/usr/share/gateway/policy/example.toml" "$DATA/policy/active.toml"
  [ -d "$ROOT/usr/share/gateway/policy/feeds" ] && cp -r "$ROOT/usr/share/gateway/policy/feeds" "$DATA/policy/feeds"
fi
find "$DATA" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
DATA_IMG="$WORK/data.img"
DATA_UUID=$(uuid_for "$NAME" gwdata)
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L gwdata -U "$DATA_UUID" \
  -E "root_owner=0:0,hash_seed=$DATA_UUID" -d "$DATA" "$DATA_IMG" "${DATA_MB}M" >/dev/null || die "mkfs.ext4 failed"

# --- 8. GPT disk ------------------------------------------------------------------------------------------
step "GPT disk image: esp | root-a | root-b | gwdata"
DISK="$OUT/gateway-$NAME.img"
MiB=2048  # sectors of 512 bytes
ESP_START=$MiB; ROOTA_START=$((ESP_START + ESP_MB * MiB)); ROOTB_START=$((ROOTA_START + SLOT_MB * MiB))
DATA_START=$((ROOTB_START + SLOT_MB * MiB)); END=$((DATA_START + DATA_MB * MiB))
rm -f "$DISK"
truncate -s $(( (END + MiB) * 512 )) "$DISK"
sfdisk --quiet --no-reread --no-tell-kernel "$DISK" <<EOF || die "sfdisk failed"
label: gpt
label-id: $(uuid_for "$NAME" disk)
unit: sectors
first-lba: $MiB
start=$ESP_START, size=$((ESP_MB * MiB)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp", uuid=$(uuid_for "$NAME" part esp)
start=$ROOTA_START, size=$((SLOT_MB * MiB)), type=$ROOT_TYPE, name="root-a", uuid=$(uuid_for "$NAME" part root-a)
start=$ROOTB_START, size=$((SLOT_MB * MiB)), type=$ROOT_TYPE, name="root-b", uuid=$(uuid_for "$NAME" part root-b)
start=$DATA_START, size=$((DATA_MB * MiB)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="gwdata", uuid=$(uuid_for "$NAME" part gwdata)
EOF
put() { dd if="$1" of="$DISK" bs=1M seek=$(($2 / MiB)) conv=notrunc,sparse status=none || die "writing $1 into the disk failed"; }
put "$ESP_IMG" $ESP_START
put "$OUT/rootfs.squashfs" $ROOTA_START
put "$DATA_IMG" $DATA_START
sfdisk --quiet --dump "$DISK" | sed 's/^/      /' >&2

# --- 9. update bundle + checksums ---------------------------------------------------------------------------
step "signed update bundle of this root slot"
BUNDLE="$OUT/gateway-$NAME-$VERSION.gwb"
"$HOST_UPDATE_BIN" bundle create --key "$SIGNING_KEY" --arch "$ARCH" --profile "$NAME" --version "$VERSION" \
  --rootfs "$OUT/rootfs.squashfs" --kernel "$WORK/boot/vmlinuz" --initrd "$WORK/boot/initrd.img" \
  --cmdline "$CMDLINE" --out "$BUNDLE" >"$OUT/bundle-header.txt" || die "gateway-update bundle create failed"
sed 's/^/      /' "$OUT/bundle-header.txt" >&2
cp "$SIGNING_KEY.pub" "$OUT/update-signing.pub"
(cd "$OUT" && sha256sum "$(basename "$DISK")" "$(basename "$BUNDLE")" rootfs.squashfs > SHA256SUMS)
[ "$KEEP_WORK" = 1 ] || rm -rf "$WORK"
printf '\nDone in %ss: %s (%s, sparse %s)\n  bundle %s\n' "$(( $(date +%s) - T0 ))" "$DISK" \
  "$(du -h --apparent-size "$DISK" | cut -f1)" "$(du -h "$DISK" | cut -f1)" "$BUNDLE" >&2
