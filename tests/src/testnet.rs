//! A private network namespace holding the gateway's three ports (veth pairs) and the lab's routes, for
//! `BPF_PROG_TEST_RUN`: the program looks its ingress port up in `PORTS` and asks `bpf_fib_lookup`
//! where a packet would go, so both need real interfaces and routes in the caller's namespace.
//!
//! The addressing plan is data ([`PLAN`]): the kernel is configured from it and the reference model's
//! route oracle is built from it, so the two cannot drift apart.
use std::{
    net::IpAddr,
    os::fd::{AsRawFd as _, OwnedFd},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};
use gateway_common::Role;
use ipnet::IpNet;

/// One port of the gateway: its role, its name, its own addresses (with their prefixes).
pub struct PortPlan {
    pub role: Role,
    pub name: &'static str,
    pub addrs: &'static [&'static str],
}

/// A route: destination, the port it leaves by (None = blackhole) and the next hop.
pub struct RoutePlan {
    pub dst: &'static str,
    pub port: Option<&'static str>,
    pub via: Option<&'static str>,
}

pub struct Plan {
    pub ports: &'static [PortPlan],
    pub routes: &'static [RoutePlan],
}

/// The lab's addressing, seen from the gateway.
pub const PLAN: Plan = Plan {
    ports: &[
        PortPlan { role: Role::Lan, name: "lan0", addrs: &["10.10.0.1/24", "fd00:10::1/64"] },
        PortPlan {
            role: Role::Dedicated,
            name: "ded0",
            addrs: &["172.16.0.1/24", "fd00:200:ffff::1/64"],
        },
        PortPlan {
            role: Role::Internet,
            name: "inet0",
            addrs: &["198.51.100.1/24", "2001:db8:100::1/64"],
        },
    ],
    routes: &[
        RoutePlan { dst: "10.200.0.0/16", port: Some("ded0"), via: Some("172.16.0.2") },
        RoutePlan { dst: "fd00:200::/32", port: Some("ded0"), via: Some("fd00:200:ffff::2") },
        RoutePlan { dst: "0.0.0.0/0", port: Some("inet0"), via: Some("198.51.100.2") },
        RoutePlan { dst: "::/0", port: Some("inet0"), via: Some("2001:db8:100::2") },
        RoutePlan { dst: "192.0.2.0/24", port: None, via: None },
        RoutePlan { dst: "2001:db8:dead::/48", port: None, via: None },
    ],
};

/// A namespace built from [`PLAN`]; deleted on drop.
pub struct TestNet {
    pub name: String,
    /// (role, port name, ifindex) of each port.
    pub ports: Vec<(Role, &'static str, u32)>,
    ns: OwnedFd,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails loudly (never skips) when not root: these tests must run, and in CI they do.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (network namespaces, BPF); run it as root — CI does");
    }
    Ok(())
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl TestNet {
    pub fn create() -> anyhow::Result<TestNet> {
        require_root("this test")?;
        let name = format!("gwtn-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        run(&["ip", "netns", "add", &name])?;
        // From here on, Drop removes the namespace even if the set-up fails half-way.
        let ns = std::fs::File::open(format!("/run/netns/{name}"))
            .with_context(|| format!("opening /run/netns/{name}"))?
            .into();
        let mut net = TestNet { name, ports: Vec::new(), ns };
        net.configure()?;
        Ok(net)
    }

    fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    fn configure(&mut self) -> anyhow::Result<()> {
        let ns = self.name.clone();
        for key in ["net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1"] {
            run(&["ip", "netns", "exec", &ns, "sysctl", "-q", "-w", key])?;
        }
        self.ip(&["link", "set", "lo", "up"])?;
        for p in PLAN.ports {
            let peer = format!("{}p", p.name);
            self.ip(&["link", "add", p.name, "type", "veth", "peer", "name", &peer])?;
            for dev in [p.name, peer.as_str()] {
                self.ip(&["link", "set", dev, "up"])?;
            }
            for a in p.addrs {
                let family = if a.contains(':') { "-6" } else { "-4" };
                self.ip(&[family, "addr", "add", a, "dev", p.name, "nodad"])?;
            }
            // /sys/class/net shows the caller's namespace, not this one: ask ip.
            let ifindex = self.ifindex(p.name)?;
            self.ports.push((p.role, p.name, ifindex));
        }
        for r in PLAN.routes {
            let family = if r.dst.contains(':') { "-6" } else { "-4" };
            match (r.port, r.via) {
                (Some(dev), Some(via)) => {
                    self.ip(&[family, "route", "add", r.dst, "via", via, "dev", dev, "onlink"])?
                }
                (Some(dev), None) => self.ip(&[family, "route", "add", r.dst, "dev", dev])?,
                (None, _) => self.ip(&[family, "route", "add", "blackhole", r.dst])?,
            }
        }
        Ok(())
    }

    fn ifindex(&self, dev: &str) -> anyhow::Result<u32> {
        let out = Command::new("ip").args(["-n", &self.name, "-o", "link", "show", dev]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no ifindex for {dev} in {text:?}"))
    }

    pub fn ifindex_of(&self, role: Role) -> u32 {
        self.ports.iter().find(|(r, _, _)| *r == role).map(|(_, _, i)| *i).unwrap_or(0)
    }

    /// Moves the calling thread into the namespace (BPF_PROG_TEST_RUN and the FIB use the caller's).
    pub fn enter(&self) -> anyhow::Result<()> {
        // SAFETY: `ns` is an open /run/netns file; setns only changes this thread's namespace.
        let rc = unsafe { libc::setns(self.ns.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            bail!("setns into {}: {}", self.name, std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The gateway's own addresses (packets to them are delivered locally).
    pub fn local_addrs() -> Vec<IpAddr> {
        PLAN.ports
            .iter()
            .flat_map(|p| p.addrs.iter())
            .filter_map(|a| a.parse::<IpNet>().ok())
            .map(|n| n.addr())
            .collect()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
