//! The fixed lab topology: four namespaces, three veth pairs, the addresses every test talks about.
//!
//! ```text
//!                      lan0 10.10.0.1            ded0 172.16.0.1
//!  client eth0 ───────────────── [ gw ] ────────────────────────── eth0 ded
//!  10.10.0.2 (office host)          │ inet0 198.51.100.1              172.16.0.2
//!  10.10.0.3 (isolated host)        │                                 lo: 10.200.1.10, 10.200.2.10 (shared)
//!                                   │                                     192.0.2.77 (foreign source)
//!                                 eth0 inet 198.51.100.2
//!                                 lo: 203.0.113.10 (server), 203.0.113.66 (blocklisted),
//!                                     10.200.9.9 (spoofs a dedicated-network address)
//! ```
//! IPv6 mirrors it: lan fd00:10::/64, dedicated fd00:200:ffff::/64 with shared fd00:200:1::10,
//! internet 2001:db8:100::/64 with server 2001:db8:200::10 and blocklisted 2001:db8:bad::66.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::netns;

/// Addresses of the lab, named by what they stand for.
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// An ordinary office host (lan).
    pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
    pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 2);
    /// The isolated (state-secret, R11) host on the same lan.
    pub const ISOLATED_V4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);
    pub const ISOLATED_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 3);
    /// The gateway's own lan address.
    pub const GW_LAN_V4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
    pub const GW_LAN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 1);

    /// Shared system "national-population-db-api", in the dedicated network.
    pub const SHARED_NPDB_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 10);
    pub const SHARED_NPDB_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 0x10);
    /// Shared system "ward-document-system".
    pub const SHARED_DOCS_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 10);
    /// The dedicated-network router's link address.
    pub const DED_LINK_V4: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
    pub const DED_LINK_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0xffff, 0, 0, 0, 0, 2);
    /// A source on the dedicated side that is neither a shared system nor a dedicated prefix.
    pub const DED_FOREIGN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

    /// An ordinary Internet server.
    pub const INET_SERVER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    pub const INET_SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0x10);
    /// A blocklisted Internet host.
    pub const BLOCKED_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
    pub const BLOCKED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 0x66);
    /// An Internet source claiming an address of the dedicated network.
    pub const SPOOFED_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 9, 9);
    /// The ISP router's link address.
    pub const INET_LINK_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    pub const INET_LINK_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);

    /// What an address of the lab stands for, for people ("office host", "blocklisted host", …).
    pub fn describe(ip: std::net::IpAddr) -> &'static str {
        use std::net::IpAddr::{V4, V6};
        match ip {
            V4(CLIENT_V4) | V6(CLIENT_V6) => "office host",
            V4(ISOLATED_V4) | V6(ISOLATED_V6) => "isolated host",
            V4(GW_LAN_V4) | V6(GW_LAN_V6) => "gateway",
            V4(SHARED_NPDB_V4) | V6(SHARED_NPDB_V6) => "shared system",
            V4(SHARED_DOCS_V4) => "2nd shared system",
            V4(DED_LINK_V4) | V6(DED_LINK_V6) => "dedicated router",
            V4(DED_FOREIGN_V4) => "foreign source on dedicated",
            V4(INET_SERVER_V4) | V6(INET_SERVER_V6) => "internet server",
            V4(BLOCKED_V4) | V6(BLOCKED_V6) => "blocklisted host",
            V4(SPOOFED_V4) => "spoofed dedicated address",
            V4(INET_LINK_V4) | V6(INET_LINK_V6) => "ISP router",
            _ => "elsewhere",
        }
    }
}

/// One namespace of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The gateway: runs gatewayd, XDP on lan0, ded0, inet0.
    Gw,
    /// The office lan (one host with an ordinary and an isolated address).
    Client,
    /// The dedicated government network with its shared systems.
    Ded,
    /// The Internet.
    Inet,
}

impl Side {
    /// The three namespaces around the gateway, each with one interface `eth0` facing it.
    pub const LEAVES: [Side; 3] = [Side::Client, Side::Ded, Side::Inet];
    pub const ALL: [Side; 4] = [Side::Gw, Side::Client, Side::Ded, Side::Inet];

    pub const fn suffix(self) -> &'static str {
        match self {
            Side::Gw => "gw",
            Side::Client => "client",
            Side::Ded => "ded",
            Side::Inet => "inet",
        }
    }

    /// The gateway port facing this leaf.
    pub const fn gateway_port(self) -> Option<&'static str> {
        match self {
            Side::Gw => None,
            Side::Client => Some("lan0"),
            Side::Ded => Some("ded0"),
            Side::Inet => Some("inet0"),
        }
    }

    /// The addresses this leaf's servers listen on (and that it may use as sources).
    pub fn service_addresses(self) -> Vec<IpAddr> {
        use addr::*;
        let v4: &[Ipv4Addr] = match self {
            Side::Gw => &[],
            Side::Client => &[CLIENT_V4, ISOLATED_V4],
            Side::Ded => &[DED_LINK_V4, SHARED_NPDB_V4, SHARED_DOCS_V4, DED_FOREIGN_V4],
            Side::Inet => &[INET_LINK_V4, INET_SERVER_V4, BLOCKED_V4, SPOOFED_V4],
        };
        let v6: &[Ipv6Addr] = match self {
            Side::Gw => &[],
            Side::Client => &[CLIENT_V6, ISOLATED_V6],
            Side::Ded => &[DED_LINK_V6, SHARED_NPDB_V6],
            Side::Inet => &[INET_LINK_V6, INET_SERVER_V6, BLOCKED_V6],
        };
        v4.iter()
            .map(|a| IpAddr::V4(*a))
            .chain(v6.iter().map(|a| IpAddr::V6(*a)))
            .collect()
    }
}

/// Kernel settings of every lab namespace. IPv4 `conf/all` is inherited from the host when a namespace
/// is made, so everything that matters is set explicitly. rp_filter is off so that what the gateway
/// drops is dropped by the gateway, not by the stack's reverse-path check; DAD is off so addresses work
/// at once.
const COMMON_SYSCTLS: [(&str, &str); 6] = [
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
    ("net.ipv6.conf.all.accept_ra", "0"),
    ("net.ipv6.conf.default.accept_ra", "0"),
];

fn forwarding(on: bool) -> [(&'static str, &'static str); 2] {
    let v = if on { "1" } else { "0" };
    [
        ("net.ipv4.ip_forward", v),
        ("net.ipv6.conf.all.forwarding", v),
    ]
}

/// The `ip -batch` script of the gateway namespace. It also creates the three veth pairs, the leaf
/// ends directly inside the leaf namespaces (nothing is ever created in the host namespace).
fn gateway_script(ns: impl Fn(Side) -> String) -> String {
    format!(
        "link set lo up
link add lan0 type veth peer name eth0 netns {client}
link add ded0 type veth peer name eth0 netns {ded}
link add inet0 type veth peer name eth0 netns {inet}
addr add 10.10.0.1/24 dev lan0
addr add fd00:10::1/64 dev lan0 nodad
addr add 172.16.0.1/24 dev ded0
addr add fd00:200:ffff::1/64 dev ded0 nodad
addr add 198.51.100.1/24 dev inet0
addr add 2001:db8:100::1/64 dev inet0 nodad
link set lan0 up
link set ded0 up
link set inet0 up
route add 10.200.0.0/16 via 172.16.0.2
route add fd00:200::/32 via fd00:200:ffff::2
route add default via 198.51.100.2
route add ::/0 via 2001:db8:100::2
",
        client = ns(Side::Client),
        ded = ns(Side::Ded),
        inet = ns(Side::Inet),
    )
}

const CLIENT_SCRIPT: &str = "link set lo up
addr add 10.10.0.2/24 dev eth0
addr add 10.10.0.3/24 dev eth0
addr add fd00:10::2/64 dev eth0 nodad
addr add fd00:10::3/64 dev eth0 nodad
link set eth0 up
route add default via 10.10.0.1
route add ::/0 via fd00:10::1
";

const DED_SCRIPT: &str = "link set lo up
addr add 10.200.1.10/32 dev lo
addr add 10.200.2.10/32 dev lo
addr add fd00:200:1::10/128 dev lo nodad
addr add 192.0.2.77/32 dev lo
addr add 172.16.0.2/24 dev eth0
addr add fd00:200:ffff::2/64 dev eth0 nodad
link set eth0 up
route add 10.10.0.0/24 via 172.16.0.1
route add 198.51.100.0/24 via 172.16.0.1
route add 203.0.113.0/24 via 172.16.0.1
route add fd00:10::/64 via fd00:200:ffff::1
route add 2001:db8::/32 via fd00:200:ffff::1
";

const INET_SCRIPT: &str = "link set lo up
addr add 203.0.113.10/32 dev lo
addr add 203.0.113.66/32 dev lo
addr add 2001:db8:200::10/128 dev lo nodad
addr add 2001:db8:bad::66/128 dev lo nodad
addr add 10.200.9.9/32 dev lo
addr add 198.51.100.2/24 dev eth0
addr add 2001:db8:100::2/64 dev eth0 nodad
link set eth0 up
route add 10.10.0.0/24 via 198.51.100.1
route add 10.200.0.0/16 via 198.51.100.1
route add 172.16.0.0/24 via 198.51.100.1
route add fd00:10::/64 via 2001:db8:100::1
route add fd00::/8 via 2001:db8:100::1
";

/// Creates the four namespaces (each recorded through `created` as soon as it exists, so a failure
/// half-way still tears down what was made), wires them and waits until every link is up.
pub fn build(ns: impl Fn(Side) -> String, mut created: impl FnMut(Side)) -> Result<()> {
    for side in Side::ALL {
        netns::ip(&["netns", "add", &ns(side)])?;
        created(side);
    }
    for side in Side::ALL {
        netns::sysctl_in(&ns(side), &COMMON_SYSCTLS)?;
        netns::sysctl_in(&ns(side), &forwarding(side == Side::Gw))?;
    }
    netns::ip_batch(&ns(Side::Gw), &gateway_script(&ns))?;
    netns::ip_batch(&ns(Side::Client), CLIENT_SCRIPT)?;
    netns::ip_batch(&ns(Side::Ded), DED_SCRIPT)?;
    netns::ip_batch(&ns(Side::Inet), INET_SCRIPT)?;
    for leaf in Side::LEAVES {
        wait_link_up(&ns(leaf), "eth0")?;
        if let Some(port) = leaf.gateway_port() {
            wait_link_up(&ns(Side::Gw), port)?;
        }
    }
    Ok(())
}

/// Polls until the interface has carrier (LOWER_UP), for at most 5 s.
fn wait_link_up(ns: &str, dev: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = netns::ip_in(ns, &["-o", "link", "show", "dev", dev])?;
        if out.contains("LOWER_UP") && !out.contains("state DOWN") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{dev} in {ns} did not come up within 5 s: {out}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The more specific routes that send the shared system's prefix out of the Internet uplink (an
/// operator's mistake, or an attack on routing) — the situation R1 must survive.
pub const SHARED_VIA_INTERNET_ROUTES: [&str; 2] = [
    "10.200.1.0/24 via 198.51.100.2",
    "fd00:200:1::/48 via 2001:db8:100::2",
];
