#!/usr/bin/env python3
"""Read a hardware profile (hw/*.toml) for the image builder.

The typed, strict validation of profiles lives in Rust (gatewayd reads them too); this helper only
extracts what the image needs and refuses a profile it cannot use, with a clear message.

  profile.py env   <profile.toml>           shell assignments (PROFILE_NAME, PROFILE_ARCH, ...)
  profile.py links <profile.toml> <dir>     systemd .link files naming each port (pci ports)
  profile.py nft   <profile.toml>           nftables `define`s of the ports by role
  profile.py units <profile.toml>           systemd drop-in: gatewayd waits for every port's device
  profile.py runtime <profile.toml>         the profile gatewayd gets in the image (ports by ifname)
  profile.py network <profile.toml> <srcdir> <dir>
                                            per-role .network templates (@PORT@) -> one file per port
  profile.py metrics <policy.toml> <gateway-services.nft> <dedicated.network>
                                            the policy's metrics endpoint is on a port the image's
                                            nftables opens (exit 1 if not); warns when its address is
                                            not one the dedicated port's network config sets
"""
import ipaddress
import json
import os
import re
import shlex
import sys
import tomllib

ROLES = ("lan", "dedicated", "internet")
ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,14}$")  # a Linux interface name (IFNAMSIZ 16)
PCI_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def die(msg):
    print(f"profile.py: {msg}", file=sys.stderr)
    sys.exit(2)


def load(path):
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        die(f"{path}: {e.strerror}")
    except tomllib.TOMLDecodeError as e:
        die(f"{path}: {e}")
    prof = doc.get("profile")
    if not isinstance(prof, dict):
        die(f"{path}: missing [profile] table")
    for key in ("name", "arch"):
        if not isinstance(prof.get(key), str):
            die(f"{path}: [profile] {key} must be a string")
    if prof["arch"] not in ARCHES:
        die(f"{path}: [profile] arch {prof['arch']!r} is not one of {', '.join(ARCHES)}")
    if not re.match(r"^[A-Za-z0-9._-]+$", prof["name"]):
        die(f"{path}: [profile] name {prof['name']!r} must be [A-Za-z0-9._-]")
    ports = doc.get("port")
    if not isinstance(ports, list) or not ports:
        die(f"{path}: no [[port]] entries")
    seen = set()
    for i, p in enumerate(ports):
        where = f"{path}: port #{i + 1}"
        name = p.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            die(f"{where}: name {name!r} is not a valid interface name")
        if name in seen:
            die(f"{where}: duplicate port name {name!r}")
        seen.add(name)
        if p.get("role") not in ROLES:
            die(f"{where} ({name}): role {p.get('role')!r} is not one of {', '.join(ROLES)}")
        if "pci" in p and not PCI_RE.match(str(p["pci"]).lower()):
            die(f"{where} ({name}): pci {p['pci']!r} is not a PCI address like 0000:00:03.0")
    return prof, ports


def cmd_env(path):
    prof, ports = load(path)
    out = {
        "PROFILE_NAME": prof["name"],
        "PROFILE_ARCH": prof["arch"],
        "PROFILE_DEB_ARCH": ARCHES[prof["arch"]],
        "PROFILE_CONSOLE": prof.get("console", ""),
        "PROFILE_DESCRIPTION": prof.get("description", ""),
        "PROFILE_PORTS": " ".join(p["name"] for p in ports),
    }
    for role in ROLES:
        out[f"PROFILE_{role.upper()}_PORTS"] = " ".join(p["name"] for p in ports if p["role"] == role)
    for k, v in out.items():
        print(f"{k}={shlex.quote(v)}")


def cmd_links(path, outdir):
    _, ports = load(path)
    os.makedirs(outdir, exist_ok=True)
    for p in ports:
        if "pci" in p:
            match = f"Path=pci-{p['pci'].lower()}"
        elif "driver" in p:
            # A .link file cannot select "the Nth port of driver X": with one such port, match the driver;
            # with several, the ports must be named by PCI path in the profile.
            same = [q for q in ports if q.get("driver") == p["driver"]]
            if len(same) > 1:
                print(f"profile.py: warning: port {p['name']}: several ports use driver {p['driver']}; "
                      "the image cannot name them by index (give them a pci address)", file=sys.stderr)
                continue
            match = f"Driver={p['driver']}"
        else:
            continue  # named by ifname: the kernel/udev name is already right
        with open(os.path.join(outdir, f"10-gateway-{p['name']}.link"), "w") as f:
            f.write(f"# Generated from the hardware profile: port {p['name']} (role {p['role']}).\n"
                    f"[Match]\n{match}\n\n[Link]\nName={p['name']}\nNamePolicy=\n")


def cmd_nft(path):
    _, ports = load(path)
    print("# Generated from the hardware profile by images/build.sh: the ports by role.")
    for role in ROLES:
        names = [p["name"] for p in ports if p["role"] == role]
        # an empty set is not valid nft syntax; a name that cannot exist keeps rules well-formed
        body = ", ".join(f'"{n}"' for n in names) or '"gw-none"'
        print(f"define {role.upper()}_PORTS = {{ {body} }}")


def cmd_units(path):
    _, ports = load(path)
    print("# Generated from the hardware profile: gatewayd starts once every port exists.")
    print("[Unit]")
    for p in ports:
        escaped = p["name"].replace("-", "\\x2d")  # systemd unit-name escaping
        dev = f"sys-subsystem-net-devices-{escaped}.device"
        print(f"Wants={dev}\nAfter={dev}")


def cmd_network(path, srcdir, outdir):
    _, ports = load(path)
    os.makedirs(outdir, exist_ok=True)
    for i, p in enumerate(ports):
        tmpl = os.path.join(srcdir, f"{p['role']}.network")
        if not os.path.exists(tmpl):
            die(f"{tmpl}: no network template for role {p['role']} (port {p['name']})")
        with open(tmpl) as f:
            text = f.read().replace("@PORT@", p["name"])
        with open(os.path.join(outdir, f"{20 + i}-gateway-{p['name']}.network"), "w") as f:
            f.write(text)


def named_by_image(p, ports):
    """True when the image's .link files give this port its profile name (see cmd_links)."""
    if "pci" in p:
        return True
    if "driver" in p:
        return len([q for q in ports if q.get("driver") == p["driver"]]) == 1
    return False


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string for what profiles hold
    die(f"cannot render {v!r} in the runtime profile")


def cmd_runtime(path):
    """The profile gatewayd gets in the image: udev (.link files) already named the ports it could, so
    those ports are given by ifname; the others keep their pci/driver match."""
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    _, ports = load(path)
    print(f"# Runtime profile generated by images/build.sh from {os.path.basename(path)}")
    print("# (the original is /usr/share/gateway/profile.hw.toml). Ports that udev names from their PCI path")
    print("# or driver (/usr/lib/systemd/network/10-gateway-*.link) are given by ifname here.\n")
    print("[profile]")
    for k, v in doc["profile"].items():
        print(f"{k} = {toml_value(v)}")
    for p in ports:
        print("\n[[port]]")
        by_name = named_by_image(p, ports)
        for k, v in p.items():
            if by_name and k in ("pci", "driver", "index"):
                continue
            print(f"{k} = {toml_value(v)}")
        if by_name:
            print(f"ifname = {toml_value(p['name'])}")
    for k in doc:
        if k not in ("profile", "port"):
            die(f"{path}: top-level [{k}] is not known to the image builder")


def cmd_metrics(policy_path, services_path, dedicated_network):
    with open(policy_path, "rb") as f:
        policy = tomllib.load(f)
    listen = policy.get("telemetry", {}).get("metrics", {}).get("listen")
    if listen is None:
        print(f"      {os.path.basename(policy_path)}: no [telemetry.metrics]: the box serves no metrics")
        return
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([0-9.]+):(\d+)", listen.strip())
    if not m:
        die(f"{policy_path}: telemetry.metrics.listen {listen!r} is not ADDRESS:PORT")
    addr = ipaddress.ip_address(m.group(1) or m.group(3))
    port = int(m.group(2) or m.group(4))
    with open(services_path) as f:
        opened = re.search(r"^define METRICS_TCP_PORTS = \{([^}]*)\}", f.read(), re.M)
    if not opened:
        die(f"{services_path}: no `define METRICS_TCP_PORTS = {{ ... }}`")
    ports = {int(p) for p in opened.group(1).replace(",", " ").split()}
    if port not in ports:
        print(f"profile.py: {policy_path}: the metrics endpoint listens on {listen} but the image's nftables "
              f"opens TCP {sorted(ports)} for metrics ({services_path}, METRICS_TCP_PORTS): the SOC could not "
              "scrape it. Change one of them.", file=sys.stderr)
        sys.exit(1)
    configured = []
    if os.path.exists(dedicated_network):
        with open(dedicated_network) as f:
            for line in f:
                if line.strip().startswith("Address="):
                    configured.append(ipaddress.ip_interface(line.split("=", 1)[1].strip()).ip)
    if addr.is_unspecified or addr in configured:
        print(f"      metrics endpoint {listen}: TCP {port} is open on the dedicated ports")
    else:
        print(f"      !!! metrics endpoint {listen}: {addr} is not an address the image gives the dedicated "
              f"port ({dedicated_network}: {', '.join(map(str, configured)) or 'DHCP'}); gatewayd can only "
              "serve metrics once the site's network config puts it there")


def main(argv):
    cmds = {"env": (cmd_env, 1), "links": (cmd_links, 2), "nft": (cmd_nft, 1), "units": (cmd_units, 1),
            "network": (cmd_network, 3), "runtime": (cmd_runtime, 1), "metrics": (cmd_metrics, 3)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    fn, _ = cmds[argv[1]]
    fn(*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
