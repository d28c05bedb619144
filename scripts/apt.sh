# Sourced by the setup scripts: install the Debian packages given that are not installed yet.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || { printf 'must run as root to install: %s\n' "${missing[*]}" >&2; return 1; }
  printf '[setup] installing Debian packages: %s\n' "${missing[*]}" >&2
  # Packages such as prometheus and rsyslog ship services: we want their tools, not running daemons
  # we did not start. policy-rc.d (exit 101) tells their install scripts not to start anything.
  local guard=/usr/sbin/policy-rc.d ours=0
  if [ ! -e "$guard" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod 755 "$guard" && ours=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
  [ "$rc" = 0 ] && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || rc=$?; }
  [ "$ours" = 1 ] && rm -f "$guard"
  return $rc
}
