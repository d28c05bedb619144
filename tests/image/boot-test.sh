#!/usr/bin/env bash
# Image boot test (root): build the x86_64 firmware image for hw/qemu-x86_64.toml, boot it in
# qemu-system-x86_64 (OVMF/UEFI, KVM when available, else TCG) with three virtio-net NICs at PCI 03.0 /
# 04.0 / 05.0 whose host ends are tap devices moved into namespaces of this test, and check from the
# outside that the gateway enforces configs/ward-office.toml and serves the SOC its telemetry.
#
#   tests/image/boot-test.sh [--image DISK.img] [--out DIR] [--bin-dir DIR] [--timeout SECONDS] [--keep]
#
#   --image    boot this image instead of building one (images/build.sh hw/qemu-x86_64.toml)
#   --out      build output directory (default images/out/qemu-x86_64)
#   --bin-dir  where the build takes gatewayd/gatewayctl from (images/build.sh --bin-dir)
#   --timeout  overall limit, build included (default 1500 s)
#   --keep     keep the run directory (serial log, qcow2 overlay) for inspection
#
# Topology (the namespace lab's addresses, tests/src/lab/topology.rs):
#   ns gbt-lan-*  10.10.0.2      --tap-- lan0  10.10.0.1     [gateway VM]
#   ns gbt-ded-*  172.16.0.2, lo 10.200.1.10 (shared system)  --tap-- ded0 172.16.0.1
#                 (also the SOC: scrapes http://172.16.0.1:9100/metrics, nfcapd on 172.16.0.2:4739)
#   ns gbt-inet-* 198.51.100.2, lo 203.0.113.10 (server), 203.0.113.66 (blocklisted) --tap-- inet0
#
# Host tools (scripts/setup-images.sh installs them; a missing one fails the setup, exit 2): qemu, OVMF,
# ssh + ssh-keygen + debugfs (certificate-only management), curl, promtool (prometheus), nfcapd + nfdump.
#
# Exit: 0 all checks passed, 1 a check failed, 2 setup failed. Namespaces, taps, servers and qemu (by pid)
# are removed on every exit path, timeout included.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PROFILE="$REPO/hw/qemu-x86_64.toml"
IMAGE="" OUT="$REPO/images/out/qemu-x86_64" TIMEOUT=1500 KEEP=0 BUILD_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --image) IMAGE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --bin-dir) BUILD_ARGS+=(--bin-dir "$2"); shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "boot-test: unknown argument $1" >&2; exit 2 ;;
  esac
done

# shellcheck source=tests/image/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
test_init boot-test "namespaces, taps, image build"

ID=$$
NS_LAN=gbt-lan-$ID NS_DED=gbt-ded-$ID NS_INET=gbt-inet-$ID
TAP_LAN=gbtl$ID TAP_DED=gbtd$ID TAP_INET=gbti$ID
RUN=$(mktemp -d /tmp/gateway-boot-test.XXXXXX)
SERIAL="$RUN/serial.log"
QEMU_PID="" SERVER_PIDS=() WATCHDOG_PID="" NFCAPD_PID=""
PASSED=0 FAILED=0

cleanup() {
  local rc=$?
  set +e
  [ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID" 2>/dev/null
  if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill "$QEMU_PID" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$QEMU_PID" 2>/dev/null
  fi
  for p in "${SERVER_PIDS[@]}" $NFCAPD_PID; do kill "$p" 2>/dev/null; done
  for ns in "$NS_LAN" "$NS_DED" "$NS_INET"; do ip netns del "$ns" 2>/dev/null; done
  for t in "$TAP_LAN" "$TAP_DED" "$TAP_INET"; do ip link del "$t" 2>/dev/null; done
  if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
    log "run directory kept: $RUN (serial log: $SERIAL)"
  else
    rm -rf "$RUN"
  fi
  exit "$rc"
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

declare -A TOOL_PKG=([qemu-system-x86_64]=qemu-system-x86 [sfdisk]=fdisk [ip]=iproute2 [python3]=python3 [openssl]=openssl
  [ssh]=openssh-client [ssh-keygen]=openssh-client [debugfs]=e2fsprogs [curl]=curl [promtool]=prometheus
  [nfcapd]=nfdump [nfdump]=nfdump [dig]=bind9-dnsutils)
for t in "${!TOOL_PKG[@]}"; do
  command -v "$t" >/dev/null || setup_fail "$t not found (apt-get install ${TOOL_PKG[$t]}, or run scripts/setup-images.sh)"
done
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -f "$OVMF_CODE" ] || setup_fail "$OVMF_CODE not found (apt-get install ovmf)"

# --- 1. the image ---------------------------------------------------------------------------------------
if [ -z "$IMAGE" ]; then
  log "building the image: images/build.sh hw/qemu-x86_64.toml --out $OUT"
  B0=$(date +%s)
  "$REPO/images/build.sh" "$PROFILE" --out "$OUT" "${BUILD_ARGS[@]}" || setup_fail "images/build.sh failed"
  log "image built in $(( $(date +%s) - B0 ))s"
  IMAGE="$OUT/gateway-qemu-x86_64.img"
fi
[ -f "$IMAGE" ] || setup_fail "no image $IMAGE"
# boot a sparse copy: the boot loader writes the ESP (boot counting), the image stays pristine
cp --sparse=always "$IMAGE" "$RUN/disk.img" || setup_fail "copying the image"
cp "$OVMF_VARS" "$RUN/vars.fd"

# provision SSH the way an operator would (R6: management only with certificates): a user CA, a
# certificate for root, and the "enabled" flag, written into the data partition without mounting it
ssh-keygen -q -t ed25519 -N '' -C boot-test-ca -f "$RUN/ca"
ssh-keygen -q -t ed25519 -N '' -C boot-test-admin -f "$RUN/admin"
ssh-keygen -q -s "$RUN/ca" -I boot-test-admin -n root -V +2h "$RUN/admin.pub"
ssh-keygen -q -t ed25519 -N '' -C boot-test-nocert -f "$RUN/nocert"
echo root > "$RUN/principals-root"; : > "$RUN/enabled"
chmod 0644 "$RUN/ca.pub" "$RUN/principals-root" "$RUN/enabled"
start=$(sfdisk --dump "$RUN/disk.img" | awk 'index($0, "name=\"gwdata\"") { sub(/.*start= */, ""); sub(/,.*/, ""); print }')
size=$(sfdisk --dump "$RUN/disk.img" | awk 'index($0, "name=\"gwdata\"") { sub(/.*size= */, ""); sub(/,.*/, ""); print }')
[ -n "$start" ] && [ -n "$size" ] || setup_fail "no gwdata partition in $IMAGE"
dd if="$RUN/disk.img" of="$RUN/data.img" bs=512 skip="$start" count="$size" status=none
printf '%s\n' "mkdir /config/ssh/principals" "write $RUN/ca.pub /config/ssh/user_ca.pub" \
  "write $RUN/principals-root /config/ssh/principals/root" "write $RUN/enabled /config/ssh/enabled" \
  | debugfs -w -f - "$RUN/data.img" >"$RUN/debugfs.log" 2>&1 || setup_fail "debugfs on the data partition"
dd if="$RUN/data.img" of="$RUN/disk.img" bs=512 seek="$start" conv=notrunc status=none
log "ssh provisioned on /data: user CA, certificate principal root, enabled"

# --- 2. namespaces and taps -------------------------------------------------------------------------------
for ns in "$NS_LAN" "$NS_DED" "$NS_INET"; do ip netns add "$ns" || setup_fail "ip netns add $ns"; done
for t in "$TAP_LAN" "$TAP_DED" "$TAP_INET"; do ip tuntap add dev "$t" mode tap || setup_fail "ip tuntap add $t"; done

# --- 3. boot --------------------------------------------------------------------------------------------
ACCEL=tcg
if [ -w /dev/kvm ] && grep -qE 'vmx|svm' /proc/cpuinfo; then ACCEL=kvm; fi
log "booting in qemu-system-x86_64 ($ACCEL), serial log $SERIAL"
qemu-system-x86_64 -machine q35 -accel "$ACCEL" -cpu max -smp 1 -m 1024 \
  -nodefaults -display none -no-reboot -serial "file:$SERIAL" -monitor none \
  -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE" \
  -drive "if=pflash,format=raw,unit=1,file=$RUN/vars.fd" \
  -drive "if=none,id=disk0,format=raw,file=$RUN/disk.img" -device virtio-blk-pci,drive=disk0,addr=0x6 \
  -netdev "tap,id=n0,ifname=$TAP_LAN,script=no,downscript=no" -device virtio-net-pci,netdev=n0,addr=0x3,mac=52:54:00:67:77:01 \
  -netdev "tap,id=n1,ifname=$TAP_DED,script=no,downscript=no" -device virtio-net-pci,netdev=n1,addr=0x4,mac=52:54:00:67:77:02 \
  -netdev "tap,id=n2,ifname=$TAP_INET,script=no,downscript=no" -device virtio-net-pci,netdev=n2,addr=0x5,mac=52:54:00:67:77:03 \
  -pidfile "$RUN/qemu.pid" -daemonize || setup_fail "qemu did not start"
QEMU_PID=$(cat "$RUN/qemu.pid")
BOOT0=$(date +%s)

# the taps are attached now: move their host ends into the namespaces and wire the lab there
ip link set "$TAP_LAN" netns "$NS_LAN" && ip link set "$TAP_DED" netns "$NS_DED" && ip link set "$TAP_INET" netns "$NS_INET" \
  || setup_fail "moving the taps into the namespaces"
nsx() { ip netns exec "$@"; }
ip -n "$NS_LAN" -b - <<EOF || setup_fail "lan namespace"
link set lo up
link set $TAP_LAN name eth0
addr add 10.10.0.2/24 dev eth0
link set eth0 up
route add default via 10.10.0.1
EOF
ip -n "$NS_DED" -b - <<EOF || setup_fail "dedicated namespace"
link set lo up
link set $TAP_DED name eth0
addr add 10.200.1.10/32 dev lo
addr add 172.16.0.2/24 dev eth0
link set eth0 up
route add 10.10.0.0/24 via 172.16.0.1
route add 198.51.100.0/24 via 172.16.0.1
route add 203.0.113.0/24 via 172.16.0.1
EOF
ip -n "$NS_INET" -b - <<EOF || setup_fail "internet namespace"
link set lo up
link set $TAP_INET name eth0
addr add 203.0.113.10/32 dev lo
addr add 203.0.113.66/32 dev lo
addr add 198.51.100.2/24 dev eth0
link set eth0 up
route add 10.10.0.0/24 via 198.51.100.1
route add 10.200.0.0/16 via 198.51.100.1
route add 172.16.0.0/24 via 198.51.100.1
EOF
for ns in "$NS_LAN" "$NS_DED" "$NS_INET"; do nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0; done

# servers: each answers with its own name and logs who connected (the witness that a packet arrived).
# Started with `ip netns exec` itself (it execs the command), so $! is the server's pid and cleanup
# stops the server, not a subshell around it.
server() {  # <ns> <addr> <port> <name>
  mkdir -p "$RUN/www-$4"; echo "$4" > "$RUN/www-$4/index.html"
  ip netns exec "$1" python3 -m http.server "$3" --bind "$2" --directory "$RUN/www-$4" >"$RUN/server-$4.log" 2>&1 &
  SERVER_PIDS+=($!)
}
server "$NS_DED" 10.200.1.10 443 shared
server "$NS_INET" 203.0.113.10 80 internet
server "$NS_INET" 203.0.113.66 80 blocked
# the SOC's IPFIX collector (the example policy's soc-ipfix); it writes its file when stopped
mkdir -p "$RUN/flows"
ip netns exec "$NS_DED" nfcapd -b 172.16.0.2 -p 4739 -t 3600 -w "$RUN/flows" >"$RUN/nfcapd.log" 2>&1 &
NFCAPD_PID=$!

# --- 4. wait for the box ---------------------------------------------------------------------------------
wait_serial() {  # <regex> <seconds> : 0 when the serial log matches
  local deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    grep -aqE "$1" "$SERIAL" 2>/dev/null && return 0
    kill -0 "$QEMU_PID" 2>/dev/null || { log "qemu exited"; return 1; }
    sleep 2
  done
  return 1
}
BOOT_LIMIT=$(( TIMEOUT - ($(date +%s) - T0) - 120 ))
[ "$BOOT_LIMIT" -gt 60 ] || BOOT_LIMIT=60
if wait_serial 'gateway-health: (OK|FAILED)|Reached target.*Multi-User|Kernel panic|emergency mode' "$BOOT_LIMIT"; then
  log "booted to userspace in $(( $(date +%s) - BOOT0 ))s"
else
  tail -n 40 "$SERIAL" >&2 || true
  fail "the box did not finish booting within ${BOOT_LIMIT}s"
  exit 1
fi
# gatewayd may still be coming up behind multi-user: give the self-test time to finish
wait_serial 'gateway-health: (OK|FAILED)' 180 || true
BOOTED=$(( $(date +%s) - BOOT0 ))

# --- 5. checks from the outside ------------------------------------------------------------------------
grep -aq 'Kernel panic' "$SERIAL" && fail "kernel panic on the serial console"
if grep -aqE 'gateway identity: ED25519 SHA256:[A-Za-z0-9+/]{43}' "$SERIAL"; then
  pass "first boot printed the device identity: $(grep -aoE 'SHA256:[A-Za-z0-9+/]{43}' "$SERIAL" | head -n1)"
else
  fail "no device identity fingerprint on the console"
fi
if grep -aqE 'login:' "$SERIAL"; then fail "a login prompt is offered on the serial console"; else pass "no login prompt on the serial console"; fi
if grep -aq 'gateway-health: OK' "$SERIAL"; then
  pass "boot self-test OK (gatewayd ready, ruleset loaded, ports present, slot marked good)"
else
  fail "boot self-test did not pass: $(grep -a 'gateway-health' "$SERIAL" | tail -n 3 | tr '\n' ' ')"
fi
if grep -aq 'gateway-health: gatewayctl status:' "$SERIAL"; then
  pass "gatewayctl status on the console: $(grep -a 'health-check.*XDP MODE' -A3 "$SERIAL" | sed 's/.*health-check[^:]*: *//' | tr -d '\r' | tr -s ' ' | paste -sd'|' | cut -c1-200)"
else
  fail "no gatewayctl status output on the console"
fi

tcp_get() {  # <ns> <addr> <port> : prints the body, fails on timeout/refusal
  nsx "$1" timeout 8 python3 - "$2" "$3" <<'EOF'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=6)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
data = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    data += b
print(data.split(b"\r\n\r\n", 1)[-1].decode().strip())
EOF
}
retry() {  # <tries> <cmd...>: networkd/gatewayd may still be settling at the first try
  local n=$1; shift
  for _ in $(seq "$n"); do "$@" && return 0; sleep 3; done
  return 1
}
if retry 10 nsx "$NS_LAN" ping -c1 -W2 10.10.0.1 >/dev/null; then pass "lan client reaches the gateway (10.10.0.1)"; else fail "lan client cannot ping the gateway"; fi

body=$(retry 5 tcp_get "$NS_LAN" 10.200.1.10 443 2>/dev/null || true)
if [ "$body" = shared ]; then pass "shared system 10.200.1.10:443 reachable from the lan"; else fail "shared system 10.200.1.10:443 not reachable from the lan (got '$body')"; fi
if grep -q '^10\.10\.0\.2 ' "$RUN/server-shared.log"; then
  pass "the shared system saw the lan client itself (10.10.0.2) arrive on the dedicated port"
else
  fail "the shared system's server did not log the lan client: $(tail -n 2 "$RUN/server-shared.log" | tr '\n' ' ')"
fi
if nsx "$NS_LAN" ping -c1 -W3 10.200.1.10 >/dev/null; then pass "ICMP to the shared system allowed (policy: reachability checks)"; else fail "ping to the shared system dropped"; fi
if nsx "$NS_LAN" timeout 6 python3 -c 'import socket; socket.create_connection(("10.200.1.10", 22), timeout=4)' 2>/dev/null; then
  fail "shared system port 22 (not allowed by the policy) was reachable"
else
  pass "shared system on a port the policy does not allow: no connection"
fi

body=$(retry 3 tcp_get "$NS_LAN" 203.0.113.10 80 2>/dev/null || true)
if [ "$body" = internet ]; then pass "ordinary internet server 203.0.113.10 reachable (control)"; else fail "internet server 203.0.113.10 not reachable (got '$body')"; fi

# The SOC scrapes the metrics endpoint from the dedicated network (the example policy's
# [telemetry.metrics] listen). The first scrape, before the blocked probe, is the baseline of the
# blocklist drop counter; gatewayd starts serving after its first snapshot, so give it a few tries.
METRICS_URL=http://172.16.0.1:9100/metrics
scrape() {  # <file>
  nsx "$NS_DED" curl -sS --fail --max-time 10 -o "$1" "$METRICS_URL" 2>"$1.err"
}
metric_sum() {  # <file> <family> [label="value"...]: sum of the family's series having all the labels, or "absent"
  local file=$1 family=$2; shift 2
  awk -v fam="$family" -v want="$*" '
    BEGIN { n = split(want, w, " ") }
    index($0, fam "{") == 1 || index($0, fam " ") == 1 {
      for (i = 1; i <= n; i++) if (index($0, w[i]) == 0) next
      sum += $NF; found = 1
    }
    END { if (found) printf "%.0f\n", sum; else print "absent" }' "$file"
}
BLOCK_DROPS=(gateway_packets_total 'role="lan"' 'reason="blocklist"' 'verdict="drop"')
if retry 10 scrape "$RUN/metrics-before.txt"; then
  DROPS_BEFORE=$(metric_sum "$RUN/metrics-before.txt" "${BLOCK_DROPS[@]}")
else
  DROPS_BEFORE=unreachable
fi
log "lan/blocklist drop counter before the blocked probe: $DROPS_BEFORE"

BLOCKED_PROBE_AT=$(date +%s)
body=$(tcp_get "$NS_LAN" 203.0.113.66 80 2>/dev/null || true)
if [ -z "$body" ] && ! grep -q '"GET ' "$RUN/server-blocked.log"; then
  pass "blocklisted 203.0.113.66 dropped: no answer, and nothing reached it"
else
  fail "blocklisted 203.0.113.66 was reached (got '$body'; server log: $(head -c 200 "$RUN/server-blocked.log"))"
fi

# Domain blocking on the image's kernel (the DNS step is a tail-called XDP program): a query for a name of
# the SOC's feed is answered by the box itself with NXDOMAIN (XDP_TX out of the lan port). Nothing on the
# Internet side serves DNS, so only the gateway can have answered. (UDP only: TCP would need a resolver
# there to complete the handshake; the namespace lab's lab_dns.rs covers TCP.)
out=$(nsx "$NS_LAN" dig +notcp +time=3 +tries=2 @203.0.113.10 www.evil.example.net A 2>&1 || true)
if grep -q 'status: NXDOMAIN' <<<"$out"; then
  pass "blocked name www.evil.example.net: NXDOMAIN answered by the gateway itself"
else
  fail "blocked name www.evil.example.net: no NXDOMAIN ($(tr '\n' '|' <<<"$out" | head -c 300))"
fi

# --- metrics: what the SOC sees --------------------------------------------------------------------------
if retry 3 scrape "$RUN/metrics.txt"; then
  pass "metrics served to the dedicated network at $METRICS_URL ($(grep -c '^gateway_' "$RUN/metrics.txt") series)"
  if promtool check metrics <"$RUN/metrics.txt" >"$RUN/promtool.out" 2>&1 && [ ! -s "$RUN/promtool.out" ]; then
    pass "promtool check metrics accepts the exposition"
  else
    fail "promtool check metrics refused the exposition: $(head -c 800 "$RUN/promtool.out")"
  fi
  if grep -qx 'gateway_policy_loaded 1' "$RUN/metrics.txt"; then
    pass "gateway_policy_loaded 1"
  else
    fail "policy not loaded according to the metrics: $(grep '^gateway_policy_loaded' "$RUN/metrics.txt" || echo 'no gateway_policy_loaded')"
  fi
  info=$(grep -E '^gateway_policy_info\{([^}]*,)?policy="ward-office"' "$RUN/metrics.txt" | head -n1)
  if [ -n "$info" ]; then pass "$info"; else fail "no gateway_policy_info{policy=\"ward-office\"}: $(grep '^gateway_policy_info' "$RUN/metrics.txt")"; fi
  # the snapshot is refreshed every second: a few scrapes at most until the probe's drops show
  drops=absent
  for _ in 1 2 3 4 5; do
    drops=$(metric_sum "$RUN/metrics.txt" "${BLOCK_DROPS[@]}")
    if [ "$drops" != absent ] && [ "$drops" -gt 0 ] && { ! [[ "$DROPS_BEFORE" =~ ^[0-9]+$ ]] || [ "$drops" -gt "$DROPS_BEFORE" ]; }; then
      break
    fi
    drops="$drops (unchanged)"; sleep 2; scrape "$RUN/metrics.txt" || break
  done
  if [[ "$drops" =~ ^[0-9]+$ ]]; then
    pass "gateway_packets_total{role=\"lan\",reason=\"blocklist\",verdict=\"drop\"} moved with the blocked probe: $DROPS_BEFORE -> $drops"
  else
    fail "the lan/blocklist drop counter did not move with the blocked probe: before $DROPS_BEFORE, after $drops; $(grep '^gateway_packets_total{' "$RUN/metrics.txt" | grep -c .) series of gateway_packets_total"
  fi
else
  fail "no metrics at $METRICS_URL from the dedicated network: $(cat "$RUN/metrics.txt.err")"
fi
# the endpoint is for the dedicated network only: never from the internet port (neither at the
# listen address nor at the port's own), and not from the lan either
no_metrics() {  # <ns> <url> <what>
  local rc=0
  nsx "$1" curl -sS --fail --max-time 6 -o /dev/null "$2" 2>/dev/null || rc=$?
  if [ "$rc" = 0 ]; then fail "metrics reachable $3 ($2)"; else pass "metrics not reachable $3 ($2: curl exit $rc$([ "$rc" = 28 ] && echo ', dropped'))"; fi
}
no_metrics "$NS_INET" "$METRICS_URL" "from the internet port"
no_metrics "$NS_INET" http://198.51.100.1:9100/metrics "from the internet port"
no_metrics "$NS_LAN" "$METRICS_URL" "from the lan port"

if nsx "$NS_INET" timeout 6 python3 -c 'import socket; socket.create_connection(("10.200.1.10", 443), timeout=4)' 2>/dev/null; then
  fail "the internet side reached the shared system (cross_network)"
else
  pass "the shared system is not reachable from the internet port"
fi
if nsx "$NS_INET" timeout 6 python3 -c 'import socket; socket.create_connection(("10.10.0.1", 22), timeout=4)' 2>/dev/null; then
  fail "the gateway's management port answers on the internet port"
else
  pass "no management service answers on the internet port"
fi
# management over SSH: certificates only, and then the counters as the SOC would read them
SSH_OPTS=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=8 -o LogLevel=ERROR)
if retry 10 nsx "$NS_LAN" ssh "${SSH_OPTS[@]}" -i "$RUN/admin" root@10.10.0.1 true 2>"$RUN/ssh.err"; then
  pass "ssh from the lan with a certificate signed by the provisioned user CA"
  if nsx "$NS_LAN" ssh "${SSH_OPTS[@]}" -i "$RUN/admin" root@10.10.0.1 gatewayctl stats --json >"$RUN/stats.json" 2>>"$RUN/ssh.err" \
    && python3 "$REPO/tests/image/lib/stats-blocklist.py" "$RUN/stats.json" >"$RUN/stats.txt"; then
    pass "gatewayctl stats over ssh: $(cat "$RUN/stats.txt")"
  else
    fail "gatewayctl stats over ssh: no lan/blocklist drop counted ($(head -c 300 "$RUN/stats.json") $(cat "$RUN/ssh.err"))"
  fi
else
  fail "ssh with a valid certificate refused: $(cat "$RUN/ssh.err")"
fi
if nsx "$NS_LAN" ssh "${SSH_OPTS[@]}" -o IdentitiesOnly=yes -i "$RUN/nocert" root@10.10.0.1 true 2>/dev/null; then
  fail "ssh with a plain key (no certificate) was accepted"
else
  pass "ssh with a plain key (no certificate) refused"
fi
msg=$(nsx "$NS_LAN" ssh "${SSH_OPTS[@]}" -o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive root@10.10.0.1 true 2>&1 || true)
case "$msg" in
  *"Permission denied (publickey)"*) pass "no password login: the server offers publickey only" ;;
  *) fail "ssh without a key: unexpected answer '$msg'" ;;
esac
if nsx "$NS_INET" timeout 10 ssh "${SSH_OPTS[@]}" -o ConnectTimeout=5 -i "$RUN/admin" root@198.51.100.1 true 2>/dev/null; then
  fail "ssh reachable from the internet port"
else
  pass "ssh not reachable from the internet port, even with a valid certificate"
fi

# --- flows: the SOC's IPFIX collector got the test's traffic ---------------------------------------------
# The example policy reports a flow 15 s after its last packet (idle timeout), the sweep runs every few
# seconds: wait until 30 s after the blocked probe, then stop nfcapd (it writes its file) and read it.
wait_s=$(( BLOCKED_PROBE_AT + 30 - $(date +%s) ))
[ "$wait_s" -gt 0 ] && { log "waiting ${wait_s}s for the flows to be exported (idle timeout 15 s)"; sleep "$wait_s"; }
kill "$NFCAPD_PID" 2>/dev/null || true; wait "$NFCAPD_PID" 2>/dev/null || true; NFCAPD_PID=""
ls "$RUN"/flows/nfcapd.2* >/dev/null 2>&1 || log "nfcapd left no closed file: $(ls "$RUN/flows" | tr '\n' ' ')"
flows() {  # <nfdump filter>: "packets src -> dst:port" of the matching records (nfdump says "No matching flows" on stdout)
  nfdump -R "$RUN/flows" -q -N -o 'fmt:%pkt %sa -> %da:%dp' "$1" 2>>"$RUN/nfdump.err" | grep -- '->' | tr -s ' ' | sed 's/^ //; s/: /:/'
}
f=$(flows 'src ip 10.10.0.2 and dst ip 203.0.113.66 and dst port 80' | head -n1)
if [ -n "$f" ]; then pass "IPFIX collector on the dedicated network got the blocked flow: $f"; else fail "no IPFIX record of 10.10.0.2 -> 203.0.113.66:80 at nfcapd (files: $(ls "$RUN/flows" | tr '\n' ' '); $(tail -n 3 "$RUN/nfcapd.log" "$RUN/nfdump.err" 2>/dev/null | tr '\n' ' '))"; fi
f=$(flows 'src ip 10.10.0.2 and dst ip 10.200.1.10 and dst port 443' | head -n1)
if [ -n "$f" ]; then pass "IPFIX collector got the flow to the shared system: $f"; else fail "no IPFIX record of 10.10.0.2 -> 10.200.1.10:443 at nfcapd"; fi

# --- 6. the management API, provisioned over SSH as an operator does it ---------------------------------
# The box makes its key and request (gatewayctl identity csr); the README's mint block (the fleet's CAs,
# an admin and a SOC analyst) signs the request with the device CA here; the box installs the
# certificate with the admin CA and gatewayd restarts with the API. Then the admin drives the box from
# the lan with the host's gatewayctl over mutual TLS.
API0=$(date +%s)
CTL=${GATEWAYCTL:-${CARGO_TARGET_DIR:-$REPO/target}/release/gatewayctl}
on_box() { nsx "$NS_LAN" ssh "${SSH_OPTS[@]}" -i "$RUN/admin" root@10.10.0.1 "$@"; }
if grep -aq 'gateway: management API off: no certificate installed' "$SERIAL"; then
  pass "without a certificate the box runs without the API and says so on the console"
else
  fail "no 'management API off' line on the console before provisioning"
fi
PKI="$RUN/pki"; mkdir -p "$PKI"
if on_box gatewayctl identity csr --ip 10.10.0.1 >"$PKI/gw-ward7.csr" 2>"$RUN/api.err" \
  && openssl req -in "$PKI/gw-ward7.csr" -noout -verify >/dev/null 2>&1; then
  pass "gatewayctl identity csr on the box: $(openssl req -in "$PKI/gw-ward7.csr" -noout -subject) $(openssl req -in "$PKI/gw-ward7.csr" -noout -text | grep -A1 'Subject Alternative Name' | tail -n1 | tr -s ' ')"
else
  fail "gatewayctl identity csr: $(cat "$RUN/api.err")"
fi
# the README's block between the mint markers, run as written (as gateway/api/tests/openssl.rs does)
awk '/<!-- mint:begin -->/ { on = 1; next } /<!-- mint:end -->/ { on = 0 } on && !/^```/' "$REPO/README.md" >"$PKI/mint.sh"
if (cd "$PKI" && bash -euo pipefail mint.sh) >"$PKI/mint.log" 2>&1 && [ -s "$PKI/gw-ward7.pem" ]; then
  pass "README's mint block signed the box's request with the device CA ($(openssl x509 -in "$PKI/gw-ward7.pem" -noout -ext extendedKeyUsage | tail -n1 | sed 's/^ *//'))"
else
  fail "README's mint block: $(tail -n 5 "$PKI/mint.log")"
fi
on_box 'mkdir -p /run/provision && cat > /run/provision/gw-ward7.pem' <"$PKI/gw-ward7.pem"
on_box 'cat > /run/provision/admin-ca.pem' <"$PKI/admin-ca.pem"
on_box 'cat > /run/provision/alice.pem' <"$PKI/alice.pem"
rc=0; msg=$(on_box gatewayctl identity install --cert /run/provision/alice.pem --client-ca /run/provision/admin-ca.pem 2>&1) || rc=$?
if [ "$rc" = 2 ] && [[ "$msg" == *"is not for this box's API key"* ]] && ! on_box test -e /data/identity/api; then
  pass "install refuses a certificate for another key, nothing installed: ${msg#gatewayctl: }"
else
  fail "install of a person's certificate: exit $rc: $msg"
fi
if on_box gatewayctl identity install --cert /run/provision/gw-ward7.pem --client-ca /run/provision/admin-ca.pem >"$RUN/install.out" 2>&1; then
  pass "gatewayctl identity install: $(head -n1 "$RUN/install.out")"
else
  fail "gatewayctl identity install: $(cat "$RUN/install.out")"
fi
R0=$(date +%s)
if on_box systemctl restart gatewayd 2>"$RUN/api.err" && on_box journalctl -b -u gatewayd -o cat | grep -q 'gateway: management API on port 8443'; then
  pass "gatewayd restarted with the API in $(( $(date +%s) - R0 ))s ($(on_box journalctl -b -u gatewayd -o cat | grep 'management API on port' | tail -n1))"
else
  fail "gatewayd restart with the API: $(cat "$RUN/api.err"; on_box journalctl -b -u gatewayd -o cat -n 5)"
fi
R=(--remote 10.10.0.1:8443 --ca "$PKI/device-ca.pem")
ADMIN=("${R[@]}" --cert "$PKI/alice.pem" --key "$PKI/alice.key")
ctl() { nsx "$NS_LAN" "$CTL" "$@"; }
if retry 5 ctl "${ADMIN[@]}" status >"$RUN/api-status.txt" 2>&1; then
  pass "gatewayctl --remote status from the lan: $(head -n1 "$RUN/api-status.txt" | tr -s ' ')"
else
  fail "gatewayctl --remote status: $(head -c 400 "$RUN/api-status.txt")"
fi
# the policy to push: the example with one more blocked host and one more management prefix
mkdir -p "$RUN/push"
cp -r "$REPO/configs/feeds" "$RUN/push/feeds"
sed -e 's|^  "203.0.113.66/32",.*|&\n  "203.0.113.77/32",|' -e 's|^  "10.10.0.0/28",.*|&\n  "10.10.0.96/28",|' \
  "$REPO/configs/ward-office.toml" >"$RUN/push/ward.toml"
if ctl "${ADMIN[@]}" validate "$RUN/push/ward.toml" >"$RUN/api-validate.txt" 2>&1 && grep -q '10.10.0.96/28' "$RUN/api-validate.txt"; then
  pass "validate over mTLS shows the diff: $(grep -E '^ *[+]|203.0.113.77|10.10.0.96' "$RUN/api-validate.txt" | tr -s ' ' | paste -sd'|' | cut -c1-160)"
else
  fail "validate over mTLS: $(head -c 600 "$RUN/api-validate.txt")"
fi
if ctl "${ADMIN[@]}" apply "$RUN/push/ward.toml" --confirm-within 120 >"$RUN/api-apply.txt" 2>&1 \
  && ctl "${ADMIN[@]}" confirm >"$RUN/api-confirm.txt" 2>&1; then
  pass "apply with commit-confirm, then confirm: $(head -n1 "$RUN/api-confirm.txt" | tr -s ' ')"
else
  fail "apply/confirm over mTLS: $(cat "$RUN/api-apply.txt" "$RUN/api-confirm.txt" 2>/dev/null | head -c 600)"
fi
if ctl "${ADMIN[@]}" rollback --to 1 >"$RUN/api-rollback.txt" 2>&1 && ctl "${ADMIN[@]}" history >"$RUN/api-history.txt" 2>&1 \
  && [ "$(grep -cE '^ *[0-9]+' "$RUN/api-history.txt")" -ge 3 ]; then
  pass "rollback to generation 1; history: $(grep -E '^ *[0-9]+' "$RUN/api-history.txt" | awk '{print $1, $5, $6}' | paste -sd'|')"
else
  fail "rollback/history: $(cat "$RUN/api-rollback.txt" "$RUN/api-history.txt" 2>/dev/null | head -c 600)"
fi
if ctl "${ADMIN[@]}" audit --limit 20 >"$RUN/api-audit.txt" 2>&1 && grep -q 'alice' "$RUN/api-audit.txt" \
  && grep -q 'policy.apply' "$RUN/api-audit.txt" && grep -q 'policy.confirm' "$RUN/api-audit.txt" && grep -q 'policy.rollback' "$RUN/api-audit.txt"; then
  pass "audit names the admin's actions: $(grep -c alice "$RUN/api-audit.txt") records by alice (apply, confirm, rollback)"
else
  fail "audit: $(head -c 600 "$RUN/api-audit.txt")"
fi
rc=0; nsx "$NS_LAN" curl -sS --max-time 8 --cacert "$PKI/device-ca.pem" -o /dev/null https://10.10.0.1:8443/v1/status 2>"$RUN/api-nocert.txt" || rc=$?
if [ "$rc" != 0 ]; then pass "a request without a client certificate is refused in the handshake (curl exit $rc)"; else fail "a request without a client certificate was answered"; fi
rc=0; ctl "${R[@]}" --cert "$PKI/soc.pem" --key "$PKI/soc.key" apply "$RUN/push/ward.toml" >"$RUN/api-soc.txt" 2>&1 || rc=$?
if [ "$rc" = 2 ]; then pass "the soc role may not push: $(head -n1 "$RUN/api-soc.txt" | cut -c1-160)"; else fail "soc push: exit $rc: $(head -c 300 "$RUN/api-soc.txt")"; fi
api_from_internet=""
for a in 198.51.100.1 10.10.0.1; do
  nsx "$NS_INET" timeout 6 python3 -c "import socket; socket.create_connection(('$a', 8443), timeout=4)" 2>/dev/null && api_from_internet="$api_from_internet $a"
done
if [ -z "$api_from_internet" ]; then pass "the API port does not answer from the internet side (198.51.100.1, 10.10.0.1)"; else fail "the API answers from the internet side at$api_from_internet"; fi
log "management API provisioning and checks: $(( $(date +%s) - API0 ))s"

log "build+boot: booted and settled in ${BOOTED}s; whole test $(( $(date +%s) - T0 ))s"
echo "boot-test: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ] || { log "serial log tail:"; tail -n 30 "$SERIAL" | tr -d '\r' >&2; exit 1; }
