//! The ruleset as a pure function of [`NftInput`]: same input, same JSON, byte for byte.
//!
//! Both rulesets (the boot-time default deny and the operational one) live in the one table
//! `inet gateway` and replace it whole: every batch starts with `add table` (so the next command
//! cannot fail on a fresh box), `delete table`, `add table`, then adds the sets, chains and rules.
//! `nft -j -f` sends the batch to the kernel as one netlink transaction, so a packet sees either the
//! old table or the new one — never an empty or half-built one — and a batch the kernel refuses
//! changes nothing. Other tables on the box are not touched: a packet must be accepted by the base
//! chains of every table on a hook, so no other table can open what this one drops.
//!
//! The operational ruleset (`nft list table inet gateway` shows it with these comments):
//!
//! ```text
//! input   (policy drop)  lo accept; ct invalid drop; ct established,related accept;
//!                        IPv6 neighbour discovery (hop limit 255) and MLD (link-local) on every port;
//!                        DHCPv4/DHCPv6 client replies on internet and dedicated ports (the image runs
//!                        DHCP clients there); internet ports: counter drop — nothing on the gateway is
//!                        served to the Internet, management never; lan/dedicated ports: ping
//!                        (rate-limited), management TCP ports (API, SSH) from the management
//!                        prefixes only; dedicated ports: the metrics endpoint (as at boot);
//!                        DHCP/DNS for the lan only if `lan_services` says the gateway serves them;
//!                        counter drop.
//! forward (policy drop)  dedicated <-> internet: counter drop, before anything else, even replies (R1);
//!                        ct invalid drop; ct established,related accept; new: lan -> internet,
//!                        lan -> dedicated, lan -> lan from lan prefixes, dedicated -> lan from dedicated
//!                        prefixes (the XDP program has already applied blocklists, shared-system and
//!                        isolation rules); internet: counter drop; counter drop.
//! output  (policy accept)
//! postrouting (nat)      masquerade IPv4 (and the listed IPv6 sources) out of internet ports.
//! ```

use std::net::Ipv6Addr;

use gateway_common::Role;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nftables::batch::Batch;
use nftables::expr::{Expression, MetaKey};
use nftables::schema::{NfListObject, Nftables, SetType, Table};
use nftables::types::{NfChainPolicy, NfChainType, NfHook};

use crate::exprs::{
    FAMILY, Stmts, TABLE, accept, anon_set, base_chain, counter, ct_state, drop, eq, iifname_in,
    limit_per_second, masquerade, meta, named_set, net, oifname_in, payload, rule, set_ref, string,
};
use crate::input::{BootInput, NftInput};

/// Chain names in `inet gateway`.
pub mod chain {
    pub const INPUT: &str = "input";
    pub const FORWARD: &str = "forward";
    pub const OUTPUT: &str = "output";
    pub const POSTROUTING: &str = "postrouting";
}

/// Named sets of the operational ruleset.
pub mod set {
    pub const LAN_PORTS: &str = "lan_ports";
    pub const DEDICATED_PORTS: &str = "dedicated_ports";
    pub const INTERNET_PORTS: &str = "internet_ports";
    /// lan and dedicated ports: where the gateway itself may be reached from.
    pub const INSIDE_PORTS: &str = "inside_ports";
    pub const LAN_V4: &str = "lan_v4";
    pub const LAN_V6: &str = "lan_v6";
    pub const DEDICATED_V4: &str = "dedicated_v4";
    pub const DEDICATED_V6: &str = "dedicated_v6";
    pub const MGMT_V4: &str = "mgmt_v4";
    pub const MGMT_V6: &str = "mgmt_v6";
    pub const MGMT_TCP: &str = "mgmt_tcp";
    pub const NAT66_V6: &str = "nat66_v6";
}

/// Rule comments other code looks rules up by (tests read their counters).
pub mod comment {
    pub const INPUT_INTERNET_DROP: &str =
        "internet: nothing on the gateway is served to the Internet, management never";
    pub const INPUT_MGMT_V4: &str =
        "management ports from the management prefixes (IPv4), lan/dedicated ports only";
    pub const INPUT_MGMT_V6: &str =
        "management ports from the management prefixes (IPv6), lan/dedicated ports only";
    /// The same rule (and comment) as the boot ruleset's.
    pub const INPUT_METRICS: &str = "metrics, for the SOC on the dedicated network";
    pub const INPUT_REST_DROP: &str = "input: anything else";
    pub const FORWARD_DEDICATED_TO_INTERNET: &str =
        "R1: never dedicated -> internet (replies neither)";
    pub const FORWARD_INTERNET_TO_DEDICATED: &str =
        "R1: never internet -> dedicated (replies neither)";
    pub const FORWARD_INTERNET_NEW_DROP: &str =
        "internet: only replies come in, new connections never";
    pub const FORWARD_REST_DROP: &str = "forward: anything else";
}

/// Ping rate the gateway answers per address family (beyond it: dropped, not queued).
const PING_PER_SECOND: u32 = 10;

const PRIO_FILTER: i32 = 0;
const PRIO_SRCNAT: i32 = 100;

/// The operational ruleset for `input`, as one batch that replaces `inet gateway` atomically.
pub fn render(input: &NftInput) -> Nftables<'static> {
    let mut b = Batch::new();
    replace_table(&mut b);

    let sets = Sets::of(input);
    sets.add_to(&mut b, input);

    for c in filter_chains() {
        b.add(c);
    }
    b.add(base_chain(
        chain::POSTROUTING,
        NfChainType::NAT,
        NfHook::Postrouting,
        PRIO_SRCNAT,
        NfChainPolicy::Accept,
    ));
    for r in input_rules(input, &sets)
        .into_iter()
        .chain(forward_rules(&sets))
        .chain(postrouting_rules(input, &sets))
    {
        b.add(r);
    }
    b.to_nftables()
}

/// The boot-time ruleset: default deny. Loaded before any interface is configured and before
/// gatewayd runs; it stays in force if gatewayd never gets as far as applying [`render`]'s ruleset,
/// so the box fails closed. Nothing is forwarded; the gateway accepts only loopback, IPv6
/// neighbour discovery (link-local, routes nothing, and without it the links cannot come up) and the
/// metrics endpoint from the dedicated ports (the SOC sees a box stuck here: `gateway_policy_loaded 0`).
/// DHCP clients still get their first lease: they use packet sockets, which netfilter does not see.
/// The firmware image's `gateway-boot.nft` is this ruleset written by hand (a test compares them).
pub fn render_boot(input: &BootInput) -> Nftables<'static> {
    let mut b = Batch::new();
    replace_table(&mut b);
    for c in filter_chains() {
        b.add(c);
    }
    b.add(loopback_rule());
    b.add(neighbour_discovery_rule());
    if !input.dedicated_ifnames.is_empty() && !input.metrics_tcp_ports.is_empty() {
        b.add(rule(
            chain::INPUT,
            comment::INPUT_METRICS,
            vec![
                eq(
                    meta(MetaKey::Iifname),
                    anon_set(input.dedicated_ifnames.iter().cloned().map(string)),
                ),
                eq(
                    payload("tcp", "dport"),
                    anon_set(
                        input
                            .metrics_tcp_ports
                            .iter()
                            .map(|p| Expression::Number(u32::from(*p))),
                    ),
                ),
                accept(),
            ],
        ));
    }
    b.to_nftables()
}

/// input and forward drop what no rule accepts; the gateway's own traffic leaves freely (its replies
/// come back as established).
fn filter_chains() -> [NfListObject<'static>; 3] {
    [
        (chain::INPUT, NfHook::Input, NfChainPolicy::Drop),
        (chain::FORWARD, NfHook::Forward, NfChainPolicy::Drop),
        (chain::OUTPUT, NfHook::Output, NfChainPolicy::Accept),
    ]
    .map(|(name, hook, policy)| base_chain(name, NfChainType::Filter, hook, PRIO_FILTER, policy))
}

/// `add table` (creates it on a fresh box, a no-op otherwise), `delete table` (chains, rules and sets
/// of the old one go), `add table`: the rest of the batch builds the new one.
fn replace_table(b: &mut Batch<'static>) {
    let table = || {
        NfListObject::Table(Table {
            family: FAMILY,
            name: TABLE.into(),
            handle: None,
        })
    };
    b.add(table());
    b.delete(table());
    b.add(table());
}

/// The contents of the named sets, normalised: interface names sorted and de-duplicated, prefixes
/// aggregated (sorted, overlaps and neighbours merged — interval sets refuse overlapping elements).
struct Sets {
    lan_v4: Vec<Ipv4Net>,
    lan_v6: Vec<Ipv6Net>,
    dedicated_v4: Vec<Ipv4Net>,
    dedicated_v6: Vec<Ipv6Net>,
    mgmt_v4: Vec<Ipv4Net>,
    mgmt_v6: Vec<Ipv6Net>,
    mgmt_tcp: Vec<u16>,
    nat66_v6: Vec<Ipv6Net>,
}

impl Sets {
    fn of(input: &NftInput) -> Sets {
        let (lan_v4, lan_v6) = split(&input.lan_prefixes);
        let (dedicated_v4, dedicated_v6) = split(&input.dedicated_prefixes);
        let (mgmt_v4, mgmt_v6) = split(&input.management.prefixes);
        Sets {
            lan_v4,
            lan_v6,
            dedicated_v4,
            dedicated_v6,
            mgmt_v4,
            mgmt_v6,
            mgmt_tcp: input.management.tcp_ports(),
            nat66_v6: Ipv6Net::aggregate(&input.masquerade_v6),
        }
    }

    fn add_to(&self, b: &mut Batch<'static>, input: &NftInput) {
        let ifnames = |names: Vec<String>| names.into_iter().map(string).collect::<Vec<_>>();
        let mut inside = input.ifnames(Role::Lan);
        inside.extend(input.ifnames(Role::Dedicated));
        inside.sort();
        inside.dedup();
        let v4 = |nets: &[Ipv4Net]| nets.iter().map(|n| net(&IpNet::V4(*n))).collect();
        let v6 = |nets: &[Ipv6Net]| nets.iter().map(|n| net(&IpNet::V6(*n))).collect();
        let sets = [
            (
                set::LAN_PORTS,
                SetType::Ifname,
                ifnames(input.ifnames(Role::Lan)),
                "ports with role lan",
            ),
            (
                set::DEDICATED_PORTS,
                SetType::Ifname,
                ifnames(input.ifnames(Role::Dedicated)),
                "ports with role dedicated",
            ),
            (
                set::INTERNET_PORTS,
                SetType::Ifname,
                ifnames(input.ifnames(Role::Internet)),
                "ports with role internet",
            ),
            (
                set::INSIDE_PORTS,
                SetType::Ifname,
                ifnames(inside),
                "lan and dedicated ports: the gateway itself is reached only through these",
            ),
            (
                set::LAN_V4,
                SetType::Ipv4Addr,
                v4(&self.lan_v4),
                "office networks (policy zones.lan)",
            ),
            (
                set::LAN_V6,
                SetType::Ipv6Addr,
                v6(&self.lan_v6),
                "office networks (policy zones.lan)",
            ),
            (
                set::DEDICATED_V4,
                SetType::Ipv4Addr,
                v4(&self.dedicated_v4),
                "dedicated network and shared systems",
            ),
            (
                set::DEDICATED_V6,
                SetType::Ipv6Addr,
                v6(&self.dedicated_v6),
                "dedicated network and shared systems",
            ),
            (
                set::MGMT_V4,
                SetType::Ipv4Addr,
                v4(&self.mgmt_v4),
                "management prefixes",
            ),
            (
                set::MGMT_V6,
                SetType::Ipv6Addr,
                v6(&self.mgmt_v6),
                "management prefixes",
            ),
            (
                set::MGMT_TCP,
                SetType::InetService,
                self.mgmt_tcp
                    .iter()
                    .map(|p| Expression::Number(u32::from(*p)))
                    .collect(),
                "management TCP ports: API, SSH",
            ),
            (
                set::NAT66_V6,
                SetType::Ipv6Addr,
                v6(&self.nat66_v6),
                "IPv6 sources masqueraded on the internet ports",
            ),
        ];
        for (name, kind, elems, comment) in sets {
            b.add(named_set(name, kind, elems, comment));
        }
    }
}

/// Split by family and aggregate each.
fn split(nets: &[IpNet]) -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for n in nets {
        match n.trunc() {
            IpNet::V4(n) => v4.push(n),
            IpNet::V6(n) => v6.push(n),
        }
    }
    (Ipv4Net::aggregate(&v4), Ipv6Net::aggregate(&v6))
}

fn loopback_rule() -> NfListObject<'static> {
    rule(
        chain::INPUT,
        "loopback",
        vec![eq(meta(MetaKey::Iif), string("lo")), accept()],
    )
}

/// Neighbour discovery is link-local by construction (hop limit 255 cannot have been routed); every
/// port needs it, the internet port included (router advertisements of the ISP).
fn neighbour_discovery_rule() -> NfListObject<'static> {
    rule(
        chain::INPUT,
        "IPv6 neighbour discovery (link-local: hop limit 255)",
        vec![
            eq(
                payload("icmpv6", "type"),
                anon_set(
                    [
                        "nd-router-advert",
                        "nd-neighbor-solicit",
                        "nd-neighbor-advert",
                    ]
                    .map(string),
                ),
            ),
            eq(payload("ip6", "hoplimit"), Expression::Number(255)),
            accept(),
        ],
    )
}

/// fe80::/10.
const LINK_LOCAL: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10);

fn link_local_source() -> Stmts {
    vec![eq(payload("ip6", "saddr"), net(&IpNet::V6(LINK_LOCAL)))]
}

fn input_rules(input: &NftInput, sets: &Sets) -> Vec<NfListObject<'static>> {
    let mut rules = vec![
        loopback_rule(),
        rule(
            chain::INPUT,
            "conntrack: invalid",
            vec![ct_state(&["invalid"]), counter(), drop()],
        ),
        rule(
            chain::INPUT,
            "conntrack: replies and related ICMP errors",
            vec![ct_state(&["established", "related"]), accept()],
        ),
        neighbour_discovery_rule(),
        rule(
            chain::INPUT,
            "IPv6 multicast listener discovery (link-local)",
            [
                link_local_source(),
                vec![
                    eq(
                        payload("icmpv6", "type"),
                        anon_set(
                            [
                                "mld-listener-query",
                                "mld-listener-report",
                                "mld-listener-done",
                                "mld2-listener-report",
                            ]
                            .map(string),
                        ),
                    ),
                    accept(),
                ],
            ]
            .concat(),
        ),
    ];
    for ports in [set::INTERNET_PORTS, set::DEDICATED_PORTS] {
        rules.push(rule(
            chain::INPUT,
            "DHCPv4 client: server replies on the uplinks",
            vec![
                iifname_in(ports),
                eq(payload("udp", "sport"), Expression::Number(67)),
                eq(payload("udp", "dport"), Expression::Number(68)),
                accept(),
            ],
        ));
        rules.push(rule(
            chain::INPUT,
            "DHCPv6 client: server replies on the uplinks",
            [
                vec![iifname_in(ports)],
                link_local_source(),
                vec![
                    eq(payload("udp", "sport"), Expression::Number(547)),
                    eq(payload("udp", "dport"), Expression::Number(546)),
                    accept(),
                ],
            ]
            .concat(),
        ));
    }
    rules.push(rule(
        chain::INPUT,
        comment::INPUT_INTERNET_DROP,
        vec![iifname_in(set::INTERNET_PORTS), counter(), drop()],
    ));
    for (proto, what) in [("icmp", "ping (IPv4)"), ("icmpv6", "ping (IPv6)")] {
        rules.push(rule(
            chain::INPUT,
            &format!("{what} from lan/dedicated ports, rate-limited"),
            vec![
                iifname_in(set::INSIDE_PORTS),
                eq(payload(proto, "type"), string("echo-request")),
                limit_per_second(PING_PER_SECOND),
                accept(),
            ],
        ));
    }
    if !sets.mgmt_tcp.is_empty() {
        if !sets.mgmt_v4.is_empty() {
            rules.push(rule(
                chain::INPUT,
                comment::INPUT_MGMT_V4,
                vec![
                    iifname_in(set::INSIDE_PORTS),
                    eq(payload("ip", "saddr"), set_ref(set::MGMT_V4)),
                    eq(payload("tcp", "dport"), set_ref(set::MGMT_TCP)),
                    accept(),
                ],
            ));
        }
        if !sets.mgmt_v6.is_empty() {
            rules.push(rule(
                chain::INPUT,
                comment::INPUT_MGMT_V6,
                vec![
                    iifname_in(set::INSIDE_PORTS),
                    eq(payload("ip6", "saddr"), set_ref(set::MGMT_V6)),
                    eq(payload("tcp", "dport"), set_ref(set::MGMT_TCP)),
                    accept(),
                ],
            ));
        }
    }
    // Metrics from the dedicated ports, any source there: what the boot ruleset opens (the SOC
    // scrapes from the government network, R3), so starting gatewayd neither opens nor closes it.
    if let Some(port) = input.management.metrics_port
        && !input.ifnames(Role::Dedicated).is_empty()
    {
        rules.push(rule(
            chain::INPUT,
            comment::INPUT_METRICS,
            vec![
                iifname_in(set::DEDICATED_PORTS),
                eq(payload("tcp", "dport"), Expression::Number(u32::from(port))),
                accept(),
            ],
        ));
    }
    if input.lan_services.dhcp {
        rules.push(rule(
            chain::INPUT,
            "DHCPv4 server for the lan (requests come from 0.0.0.0)",
            vec![
                iifname_in(set::LAN_PORTS),
                eq(payload("udp", "dport"), Expression::Number(67)),
                accept(),
            ],
        ));
    }
    if input.lan_services.dns {
        for (proto, lan) in [("ip", set::LAN_V4), ("ip6", set::LAN_V6)] {
            rules.push(rule(
                chain::INPUT,
                "DNS resolver for the lan",
                vec![
                    iifname_in(set::LAN_PORTS),
                    eq(payload(proto, "saddr"), set_ref(lan)),
                    eq(meta(MetaKey::L4proto), anon_set(["tcp", "udp"].map(string))),
                    eq(payload("th", "dport"), Expression::Number(53)),
                    accept(),
                ],
            ));
        }
    }
    rules.push(rule(
        chain::INPUT,
        comment::INPUT_REST_DROP,
        vec![counter(), drop()],
    ));
    rules
}

fn forward_rules(sets: &Sets) -> Vec<NfListObject<'static>> {
    let mut rules = vec![
        rule(
            chain::FORWARD,
            comment::FORWARD_DEDICATED_TO_INTERNET,
            vec![
                iifname_in(set::DEDICATED_PORTS),
                oifname_in(set::INTERNET_PORTS),
                counter(),
                drop(),
            ],
        ),
        rule(
            chain::FORWARD,
            comment::FORWARD_INTERNET_TO_DEDICATED,
            vec![
                iifname_in(set::INTERNET_PORTS),
                oifname_in(set::DEDICATED_PORTS),
                counter(),
                drop(),
            ],
        ),
        rule(
            chain::FORWARD,
            "conntrack: invalid",
            vec![ct_state(&["invalid"]), counter(), drop()],
        ),
        rule(
            chain::FORWARD,
            "conntrack: replies and related ICMP errors",
            vec![ct_state(&["established", "related"]), accept()],
        ),
    ];
    // New connections, by (ingress role, egress role, sources admitted).
    let paths = [
        (
            set::LAN_PORTS,
            set::INTERNET_PORTS,
            "lan -> internet",
            Src::Lan,
        ),
        (
            set::LAN_PORTS,
            set::DEDICATED_PORTS,
            "lan -> dedicated",
            Src::Lan,
        ),
        (
            set::LAN_PORTS,
            set::LAN_PORTS,
            "lan -> lan (between lan ports)",
            Src::Lan,
        ),
        (
            set::DEDICATED_PORTS,
            set::LAN_PORTS,
            "dedicated -> lan",
            Src::Dedicated,
        ),
    ];
    for (from, to, what, src) in paths {
        for v6 in [false, true] {
            let (proto, name, present) = match (src, v6) {
                (Src::Lan, false) => ("ip", set::LAN_V4, !sets.lan_v4.is_empty()),
                (Src::Lan, true) => ("ip6", set::LAN_V6, !sets.lan_v6.is_empty()),
                (Src::Dedicated, false) => ("ip", set::DEDICATED_V4, !sets.dedicated_v4.is_empty()),
                (Src::Dedicated, true) => ("ip6", set::DEDICATED_V6, !sets.dedicated_v6.is_empty()),
            };
            if !present {
                continue;
            }
            rules.push(rule(
                chain::FORWARD,
                &format!("{what}, new, from {name}"),
                vec![
                    iifname_in(from),
                    oifname_in(to),
                    eq(payload(proto, "saddr"), set_ref(name)),
                    accept(),
                ],
            ));
        }
    }
    rules.push(rule(
        chain::FORWARD,
        comment::FORWARD_INTERNET_NEW_DROP,
        vec![iifname_in(set::INTERNET_PORTS), counter(), drop()],
    ));
    rules.push(rule(
        chain::FORWARD,
        comment::FORWARD_REST_DROP,
        vec![counter(), drop()],
    ));
    rules
}

#[derive(Clone, Copy)]
enum Src {
    Lan,
    Dedicated,
}

fn postrouting_rules(input: &NftInput, sets: &Sets) -> Vec<NfListObject<'static>> {
    let mut rules = Vec::new();
    if input.masquerade {
        rules.push(rule(
            chain::POSTROUTING,
            "masquerade IPv4 out of the internet ports",
            vec![
                oifname_in(set::INTERNET_PORTS),
                eq(meta(MetaKey::Nfproto), string("ipv4")),
                masquerade(),
            ],
        ));
    }
    if !sets.nat66_v6.is_empty() {
        rules.push(rule(
            chain::POSTROUTING,
            "masquerade the listed IPv6 sources out of the internet ports",
            vec![
                oifname_in(set::INTERNET_PORTS),
                eq(payload("ip6", "saddr"), set_ref(set::NAT66_V6)),
                masquerade(),
            ],
        ));
    }
    rules
}
