//! Proptest strategies for the differential test: random but valid map images ([`arb_image`]) and
//! random frames, valid and corrupted ([`arb_frame`]), over one SMALL address universe, so that random
//! packets actually hit random policy entries.
//!
//! The universe is `10.0.0.0/24` and `fd00::/120`, cut into quarters the topology routes differently:
//!
//! | v4 | v6 (last byte) | route | gateway address (local) |
//! |---|---|---|---|
//! | `10.0.0.0/26` | `00–3f` | lan port | `.1` / `fd00::1` |
//! | `10.0.0.64/26` | `40–7f` | dedicated port | `.65` / `fd00::41` |
//! | `10.0.0.128/26` | `80–bf` | internet port | `.129` / `fd00::81` |
//! | `10.0.0.192/27` | `c0–df` | unreachable | |
//! | everything else (`.224/27`, outside) | | internet port (default) | |
//!
//! [`Universe::routes`] is that table; a lab programs its kernel from it. Frame addresses avoid each
//! connected subnet's network and broadcast (v6: subnet-router anycast) addresses, which the kernel's
//! FIB treats as local in ways a route table does not show.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use gateway_common::Role;
use gateway_common::maps::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use gateway_common::values::{
    GOVNET_DEDICATED, GOVNET_SHARED, MAX_ALLOW_RULES, PortRule, SETTING_DROP_FRAGMENTS,
};
use gateway_policy::image::{FeedInfo, MapImage, SystemInfo};
use gateway_reference::{Egress, Ports, StaticRoutes};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use proptest::sample::{Index, select};

use crate::corpus::{
    ETHERTYPE_ARP, ETHERTYPE_LLDP, Ext, Frame, IPPROTO_GRE, IPV6_DEST_OPTS, IPV6_HOP_BY_HOP,
    IPV6_NO_NEXT, IPV6_ROUTING, Ipv4, Ipv6, L3, L4, TPID_8021AD, TPID_8021Q, Tcp, Udp,
};

/// The ports and routes of the random tests' topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Universe {
    pub lan_if: u32,
    pub dedicated_if: u32,
    pub internet_if: u32,
    /// An ifindex that is not in the port map.
    pub unknown_if: u32,
}

/// The v4 universe, `10.0.0.0/24`.
pub const V4_BASE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 0);
/// The v6 universe, `fd00::/120`.
pub const V6_BASE: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0);
/// Addresses outside the universe (routed by the default route).
pub const OUTSIDE4: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7)];
pub const OUTSIDE6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7),
];

/// Last byte of the gateway's address on the lan, dedicated and internet subnets.
pub const GATEWAY_HOSTS: [u8; 3] = [1, 65, 129];
/// Last bytes never used as frame addresses: network and broadcast of the three connected /26s.
pub const SPECIAL_HOSTS: [u8; 6] = [0, 63, 64, 127, 128, 191];

/// The universe address with last byte `host`.
pub fn v4(host: u8) -> Ipv4Addr {
    let o = V4_BASE.octets();
    Ipv4Addr::new(o[0], o[1], o[2], host)
}

/// The universe address with last byte `host`.
pub fn v6(host: u8) -> Ipv6Addr {
    let mut o = V6_BASE.octets();
    o[15] = host;
    Ipv6Addr::from(o)
}

impl Universe {
    /// ifindexes 2 (lan), 3 (dedicated), 4 (internet); 99 is unknown.
    pub fn example() -> Universe {
        Universe {
            lan_if: 2,
            dedicated_if: 3,
            internet_if: 4,
            unknown_if: 99,
        }
    }

    pub fn ports(&self) -> Ports {
        Ports::new()
            .with(self.lan_if, Role::Lan)
            .with(self.dedicated_if, Role::Dedicated)
            .with(self.internet_if, Role::Internet)
    }

    /// The route table of the universe (see the module documentation).
    pub fn routes(&self) -> StaticRoutes {
        let mut r = StaticRoutes::new(Egress::Port(self.internet_if));
        let quarters = [
            (0u8, self.lan_if),
            (64, self.dedicated_if),
            (128, self.internet_if),
        ];
        for (start, ifindex) in quarters {
            r.insert(
                IpNet::V4(Ipv4Net::new_assert(v4(start), 26)),
                Egress::Port(ifindex),
            );
            r.insert(
                IpNet::V6(Ipv6Net::new_assert(v6(start), 122)),
                Egress::Port(ifindex),
            );
        }
        for host in GATEWAY_HOSTS {
            r.insert(IpNet::V4(Ipv4Net::new_assert(v4(host), 32)), Egress::Local);
            r.insert(IpNet::V6(Ipv6Net::new_assert(v6(host), 128)), Egress::Local);
        }
        r.insert(
            IpNet::V4(Ipv4Net::new_assert(v4(192), 27)),
            Egress::Unroutable,
        );
        r.insert(
            IpNet::V6(Ipv6Net::new_assert(v6(192), 123)),
            Egress::Unroutable,
        );
        r
    }

    fn ingress(&self) -> impl Strategy<Value = u32> + use<> {
        prop_oneof![
            6 => Just(self.lan_if),
            3 => Just(self.dedicated_if),
            3 => Just(self.internet_if),
            1 => Just(self.unknown_if),
        ]
    }
}

// ---------------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------------

/// How wide random prefixes tend to be.
#[derive(Clone, Copy, Debug)]
enum Spread {
    /// Mostly long prefixes: blocklists, which would otherwise often cover the whole universe.
    Narrow,
    /// Any length within the universe.
    Any,
    /// Mostly wide: allow-rule sources and shared systems, so that random packets hit them.
    Wide,
}

/// Host bits of a random prefix: 0–8 stay within the universe's last byte (8 = all of it); more
/// (rare) reach beyond the universe.
fn arb_host_bits(spread: Spread) -> impl Strategy<Value = u8> + Clone {
    match spread {
        Spread::Narrow => {
            prop_oneof![20 => 0u8..=4, 5 => 5u8..=7, 1 => Just(8), 1 => 9u8..=32].boxed()
        }
        Spread::Any => prop_oneof![12 => 0u8..=8, 1 => 9u8..=32].boxed(),
        Spread::Wide => prop_oneof![2 => 0u8..=4, 6 => 5u8..=8, 1 => 9u8..=32].boxed(),
    }
}

fn arb_net4(spread: Spread) -> impl Strategy<Value = Ipv4Net> + Clone {
    (any::<u8>(), arb_host_bits(spread))
        .prop_map(|(host, bits)| Ipv4Net::new_assert(v4(host), 32 - bits).trunc())
}

fn arb_net6(spread: Spread) -> impl Strategy<Value = Ipv6Net> + Clone {
    // Beyond the last byte, v6 prefixes shrink 4 bits per step to reach /0.
    let bits = arb_host_bits(spread).prop_map(|b| if b > 8 { b * 4 } else { b });
    (any::<u8>(), bits).prop_map(|(host, bits)| Ipv6Net::new_assert(v6(host), 128 - bits).trunc())
}

/// Port bounds the rules and the frames share.
const PORTS: [u16; 9] = [0, 22, 53, 80, 443, 8000, 8080, 8081, u16::MAX];

fn arb_rule() -> impl Strategy<Value = PortRule> {
    let range =
        (select(PORTS.to_vec()), select(PORTS.to_vec())).prop_map(|(a, b)| (a.min(b), a.max(b)));
    prop_oneof![
        1 => Just(PortRule::new(PortRule::ANY_PROTO, 0, u16::MAX)),
        1 => select(vec![IPPROTO_ICMP, IPPROTO_ICMPV6]).prop_map(|p| PortRule::new(p, 0, 0)),
        1 => select(vec![IPPROTO_ICMP, IPPROTO_ICMPV6]).prop_map(|p| PortRule::new(p, 0, u16::MAX)),
        5 => (select(vec![IPPROTO_TCP, IPPROTO_UDP]), range).prop_map(|(p, (lo, hi))| PortRule::new(p, lo, hi)),
        1 => select(vec![IPPROTO_TCP, IPPROTO_UDP]).prop_map(|p| PortRule::new(p, 0, u16::MAX)),
        1 => Just(PortRule::new(IPPROTO_GRE, 0, u16::MAX)),
    ]
}

/// Raw allow entries per source prefix: at most 4 rules, so that folding at most 4 covering prefixes
/// stays within `MAX_ALLOW_RULES`.
const RULES_PER_ENTRY: usize = 4;
const ENTRIES_PER_SYSTEM: usize = MAX_ALLOW_RULES / RULES_PER_ENTRY;

/// Raw allow entries of one system id: (source prefix, rules).
type RawAllow<N> = (u32, Vec<(N, Vec<PortRule>)>);

/// One family's raw policy before the image contract (dedup, folding) is applied.
#[derive(Clone, Debug)]
struct RawFamily<N, A> {
    block: Vec<(N, u32)>,
    exact: Vec<(A, u32)>,
    isolated: Vec<N>,
    shared: Vec<(N, u32)>,
    dedicated: Vec<N>,
    /// (system, source prefix, rules)
    allow: Vec<RawAllow<N>>,
}

fn arb_family<
    N: Clone + std::fmt::Debug,
    A: Clone + std::fmt::Debug,
    S: Strategy<Value = N> + Clone,
>(
    net: impl Fn(Spread) -> S,
    addr: impl Strategy<Value = A> + Clone,
) -> impl Strategy<Value = RawFamily<N, A>> {
    let id = 0u32..8;
    let allow_entry = (
        net(Spread::Wide),
        prop::collection::vec(arb_rule(), 0..=RULES_PER_ENTRY),
    );
    (
        prop::collection::vec((net(Spread::Narrow), id.clone()), 0..4),
        prop::collection::vec((addr, id.clone()), 0..6),
        prop::collection::vec(net(Spread::Any), 0..4),
        prop::collection::vec((net(Spread::Wide), id.clone()), 0..6),
        prop::collection::vec(net(Spread::Any), 0..3),
        prop::collection::vec(
            (
                id,
                prop::collection::vec(allow_entry, 0..=ENTRIES_PER_SYSTEM),
            ),
            0..5,
        ),
    )
        .prop_map(
            |(block, exact, isolated, shared, dedicated, allow)| RawFamily {
                block,
                exact,
                isolated,
                shared,
                dedicated,
                allow,
            },
        )
}

/// Random valid map images over the universe: a few feeds, exact and prefix blocklists with no prefix
/// covering another and no exact address under a prefix, isolated prefixes, shared systems (nested
/// prefixes allowed), govnet = shared ∪ dedicated prefixes, allow sets folded per the image contract
/// (≤ `MAX_ALLOW_RULES`, sorted, deduplicated), and the fragment setting.
pub fn arb_image(_universe: &Universe) -> impl Strategy<Value = MapImage> + use<> {
    let addr4 = any::<u8>().prop_map(v4);
    let addr6 = any::<u8>().prop_map(v6);
    (
        1usize..=3,
        0usize..=4,
        arb_family(arb_net4, addr4),
        arb_family(arb_net6, addr6),
        any::<bool>(),
    )
        .prop_map(|(feeds, systems, f4, f6, drop_fragments)| {
            let mut img = MapImage {
                feeds: (0..feeds)
                    .map(|i| FeedInfo {
                        name: format!("feed{i}"),
                        entries: 0,
                    })
                    .collect(),
                systems: (0..systems)
                    .map(|i| SystemInfo {
                        name: format!("system{i}"),
                    })
                    .collect(),
                settings_flags: if drop_fragments {
                    SETTING_DROP_FRAGMENTS
                } else {
                    0
                },
                ..MapImage::default()
            };
            let feed = |id: u32| id % feeds as u32;
            let system = |id: u32| (systems > 0).then(|| id % systems as u32);

            let (prefixes, exact) = dedup_blocklist(&f4.block, &f4.exact, feed);
            img.block4_prefixes = prefixes;
            img.block4_exact = exact;
            let (prefixes, exact) = dedup_blocklist(&f6.block, &f6.exact, feed);
            img.block6_prefixes = prefixes;
            img.block6_exact = exact;

            img.isolated4 = f4.isolated.iter().copied().collect();
            img.isolated6 = f6.isolated.iter().copied().collect();

            for n in &f4.dedicated {
                img.govnet4.insert(*n, GOVNET_DEDICATED);
            }
            for n in &f6.dedicated {
                img.govnet6.insert(*n, GOVNET_DEDICATED);
            }
            for (n, id) in &f4.shared {
                if let Some(s) = system(*id) {
                    img.shared4.insert(*n, s);
                    img.govnet4.insert(*n, GOVNET_SHARED);
                }
            }
            for (n, id) in &f6.shared {
                if let Some(s) = system(*id) {
                    img.shared6.insert(*n, s);
                    img.govnet6.insert(*n, GOVNET_SHARED);
                }
            }
            img.allow4 = fold_allow(&f4.allow, system);
            img.allow6 = fold_allow(&f6.allow, system);

            let mut counts = vec![0u64; feeds];
            let ids = img
                .block4_exact
                .values()
                .chain(img.block4_prefixes.values())
                .chain(img.block6_exact.values())
                .chain(img.block6_prefixes.values());
            for id in ids {
                counts[*id as usize] += 1;
            }
            for (f, n) in img.feeds.iter_mut().zip(counts) {
                f.entries = n;
            }
            img
        })
}

/// What the contract helpers need of a prefix type, for both families.
trait Prefix: Copy + Ord {
    type Addr: Copy + Ord;
    fn len(&self) -> u8;
    fn max_len() -> u8;
    fn addr(&self) -> Self::Addr;
    fn covers(&self, other: &Self) -> bool;
    fn holds(&self, addr: &Self::Addr) -> bool;
}

impl Prefix for Ipv4Net {
    type Addr = Ipv4Addr;
    fn len(&self) -> u8 {
        self.prefix_len()
    }
    fn max_len() -> u8 {
        32
    }
    fn addr(&self) -> Ipv4Addr {
        self.network()
    }
    fn covers(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn holds(&self, addr: &Self::Addr) -> bool {
        self.contains(addr)
    }
}

impl Prefix for Ipv6Net {
    type Addr = Ipv6Addr;
    fn len(&self) -> u8 {
        self.prefix_len()
    }
    fn max_len() -> u8 {
        128
    }
    fn addr(&self) -> Ipv6Addr {
        self.network()
    }
    fn covers(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn holds(&self, addr: &Self::Addr) -> bool {
        self.contains(addr)
    }
}

/// Applies the blocklist contract: host prefixes become exact entries; a prefix covered by a shorter
/// (or equal, earlier) one is dropped, so no prefix covers another; exact entries under a prefix are
/// dropped. First writer wins for the feed of duplicates.
fn dedup_blocklist<N: Prefix>(
    prefixes: &[(N, u32)],
    exact: &[(N::Addr, u32)],
    feed: impl Fn(u32) -> u32,
) -> (BTreeMap<N, u32>, BTreeMap<N::Addr, u32>) {
    let mut hosts: Vec<(N::Addr, u32)> = Vec::new();
    let mut nets: Vec<(N, u32)> = Vec::new();
    for (n, id) in prefixes {
        if n.len() == N::max_len() {
            hosts.push((n.addr(), *id));
        } else {
            nets.push((*n, *id));
        }
    }
    hosts.extend_from_slice(exact);
    nets.sort_by_key(|(n, _)| n.len());
    let mut kept: BTreeMap<N, u32> = BTreeMap::new();
    for (n, id) in nets {
        if !kept.keys().any(|k| k.covers(&n)) {
            kept.insert(n, feed(id));
        }
    }
    let mut exact_out = BTreeMap::new();
    for (a, id) in hosts {
        if !kept.keys().any(|k| k.holds(&a)) {
            exact_out.entry(a).or_insert(feed(id));
        }
    }
    (kept, exact_out)
}

/// Applies the allow contract: each (system, prefix) entry carries the union of its own rules and
/// those of every prefix of the same system covering it, sorted and deduplicated.
fn fold_allow<N: Prefix>(
    raw: &[RawAllow<N>],
    system: impl Fn(u32) -> Option<u32>,
) -> BTreeMap<(u32, N), Vec<PortRule>> {
    // Merge raw entries per system first: the same prefix may appear twice.
    let mut per_system: BTreeMap<u32, BTreeMap<N, BTreeSet<PortRule>>> = BTreeMap::new();
    for (id, entries) in raw {
        let Some(s) = system(*id) else { continue };
        for (n, rules) in entries.iter().take(ENTRIES_PER_SYSTEM) {
            per_system
                .entry(s)
                .or_default()
                .entry(*n)
                .or_default()
                .extend(rules.iter().copied());
        }
    }
    let mut out = BTreeMap::new();
    for (s, entries) in per_system {
        // At most ENTRIES_PER_SYSTEM prefixes of at most RULES_PER_ENTRY rules (raw groups of one
        // system may have been merged), so a folded set stays within MAX_ALLOW_RULES.
        let entries: Vec<(N, BTreeSet<PortRule>)> = entries
            .into_iter()
            .take(ENTRIES_PER_SYSTEM)
            .map(|(n, rules)| (n, rules.into_iter().take(RULES_PER_ENTRY).collect()))
            .collect();
        for (n, _) in &entries {
            let mut folded = BTreeSet::new();
            for (m, rules) in &entries {
                if m.covers(n) {
                    folded.extend(rules.iter().copied());
                }
            }
            let folded: Vec<PortRule> = folded.into_iter().collect();
            debug_assert!(folded.len() <= MAX_ALLOW_RULES);
            out.insert((s, *n), folded);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------------

/// One random frame on one random port.
#[derive(Clone, Debug)]
pub struct ArbFrame {
    pub ingress: u32,
    /// How the frame was built (for failure reports).
    pub spec: Frame,
    pub frame: Vec<u8>,
}

/// Frame-address host bytes: the whole universe except the special addresses.
fn arb_host() -> impl Strategy<Value = u8> {
    any::<u8>().prop_filter("network/broadcast of a connected subnet", |h| {
        !SPECIAL_HOSTS.contains(h)
    })
}

fn arb_addr4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![15 => arb_host().prop_map(v4), 1 => select(OUTSIDE4.to_vec())]
}

fn arb_addr6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![15 => arb_host().prop_map(v6), 1 => select(OUTSIDE6.to_vec())]
}

fn arb_port() -> impl Strategy<Value = u16> {
    prop_oneof![4 => select(PORTS.to_vec()), 1 => any::<u16>()]
}

fn arb_l4() -> impl Strategy<Value = L4> {
    let payload = prop::collection::vec(any::<u8>(), 0..24);
    prop_oneof![
        4 => (arb_port(), arb_port(), payload.clone()).prop_map(|(s, d, p)| L4::Tcp(Tcp { payload: p, ..Tcp::new(s, d) })),
        4 => (arb_port(), arb_port(), payload.clone()).prop_map(|(s, d, p)| L4::Udp(Udp { payload: p, ..Udp::new(s, d) })),
        2 => Just(L4::echo()),
        1 => (any::<u8>(), any::<u8>(), payload.clone()).prop_map(|(ty, code, rest)| L4::Icmp { ty, code, rest }),
        1 => (select(vec![IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPV6_NO_NEXT, 132]), payload)
            .prop_map(|(proto, bytes)| L4::Raw { proto, bytes }),
    ]
}

/// Where an IPv4 packet sits in its datagram.
fn arb_v4_fragment() -> impl Strategy<Value = (u16, bool)> {
    prop_oneof![
        6 => Just((0, false)),
        1 => Just((0, true)),
        2 => (1u16..0x2000, any::<bool>()),
    ]
}

fn arb_ipv4() -> impl Strategy<Value = Ipv4> {
    (
        arb_addr4(),
        arb_addr4(),
        arb_l4(),
        prop_oneof![4 => Just(0usize), 1 => 1usize..=40],
        arb_v4_fragment(),
        any::<bool>(),
    )
        .prop_map(|(src, dst, l4, opt_len, (offset, more), df)| {
            let mut h = Ipv4::new(src, dst, l4);
            h.options = vec![1; opt_len]; // NOPs
            h.frag_offset = offset;
            h.more_fragments = more;
            h.dont_fragment = df && offset == 0 && !more;
            h
        })
}

fn arb_ext() -> impl Strategy<Value = Ext> {
    prop_oneof![
        2 => (0u8..3).prop_map(|len| Ext::opts(IPV6_HOP_BY_HOP, len)),
        2 => (0u8..3).prop_map(|len| Ext::opts(IPV6_ROUTING, len)),
        2 => (0u8..3).prop_map(|len| Ext::opts(IPV6_DEST_OPTS, len)),
        2 => Just(Ext::fragment(0, true)),
        1 => (1u16..0x2000, any::<bool>()).prop_map(|(off, more)| Ext::fragment(off, more)),
    ]
}

fn arb_ipv6() -> impl Strategy<Value = Ipv6> {
    let exts = prop_oneof![4 => Just(Vec::new()), 3 => prop::collection::vec(arb_ext(), 1..=7)];
    (arb_addr6(), arb_addr6(), arb_l4(), exts).prop_map(|(src, dst, l4, ext)| Ipv6 {
        ext,
        ..Ipv6::new(src, dst, l4)
    })
}

/// A corruption applied to a built frame.
#[derive(Clone, Debug)]
enum Corruption {
    None,
    Truncate(Index),
    Pad(usize),
    Ihl(u8),
    TotalLen(u16),
    PayloadLen(u16),
    Version(u8),
    Doff(u8),
    CutL4(usize),
    ExtClaimed(Index, u8),
    FragReserved(u8),
    UdpLen(u16),
}

fn arb_corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        50 => Just(Corruption::None),
        4 => any::<Index>().prop_map(Corruption::Truncate),
        2 => (1usize..32).prop_map(Corruption::Pad),
        2 => (0u8..16).prop_map(Corruption::Ihl),
        2 => prop_oneof![0u16..100, any::<u16>()].prop_map(Corruption::TotalLen),
        2 => prop_oneof![Just(0u16), 0u16..100, any::<u16>()].prop_map(Corruption::PayloadLen),
        1 => (0u8..16).prop_map(Corruption::Version),
        2 => (0u8..16).prop_map(Corruption::Doff),
        2 => (0usize..24).prop_map(Corruption::CutL4),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, c)| Corruption::ExtClaimed(i, c)),
        1 => any::<u8>().prop_map(Corruption::FragReserved),
        1 => any::<u16>().prop_map(Corruption::UdpLen),
    ]
}

fn arb_vlans() -> impl Strategy<Value = Vec<(u16, u16)>> {
    let tag = (select(vec![TPID_8021Q, TPID_8021AD]), 0u16..4096);
    prop_oneof![
        10 => Just(Vec::new()),
        4 => prop::collection::vec(tag.clone(), 1..=2),
        1 => prop::collection::vec(tag, 3..=3),
    ]
}

fn arb_l3() -> impl Strategy<Value = L3> {
    let other = prop_oneof![
        Just(ETHERTYPE_ARP),
        Just(ETHERTYPE_LLDP),
        any::<u16>().prop_filter("not IP or VLAN", |t| ![
            0x0800,
            0x86DD,
            TPID_8021Q,
            TPID_8021AD
        ]
        .contains(t)),
    ];
    prop_oneof![
        10 => arb_ipv4().prop_map(L3::V4),
        10 => arb_ipv6().prop_map(L3::V6),
        2 => (other, prop::collection::vec(any::<u8>(), 0..46)).prop_map(|(ethertype, payload)| L3::Other { ethertype, payload }),
    ]
}

fn corrupt(mut f: Frame, c: &Corruption) -> Frame {
    match (c, &mut f.l3) {
        (Corruption::None, _) => {}
        (Corruption::Truncate(_), _) => {} // needs the length: applied after assembly
        (Corruption::Pad(n), _) => f.trailer = *n,
        (Corruption::Ihl(v), L3::V4(h)) => h.ihl = Some(*v),
        (Corruption::TotalLen(v), L3::V4(h)) => h.total_len = Some(*v),
        (Corruption::PayloadLen(v), L3::V6(h)) => h.payload_len = Some(*v),
        (Corruption::Version(v), L3::V4(h)) => h.version = *v,
        (Corruption::Version(v), L3::V6(h)) => h.version = *v,
        (
            Corruption::Doff(d),
            L3::V4(Ipv4 { l4: L4::Tcp(t), .. }) | L3::V6(Ipv6 { l4: L4::Tcp(t), .. }),
        ) => t.doff = Some(*d),
        (Corruption::CutL4(n), L3::V4(h)) => h.l4_cut = Some(*n),
        (Corruption::CutL4(n), L3::V6(h)) => h.l4_cut = Some(*n),
        (Corruption::ExtClaimed(i, claim), L3::V6(h)) if !h.ext.is_empty() => {
            let at = i.index(h.ext.len());
            match &mut h.ext[at] {
                Ext::Opts { claimed, .. } => *claimed = Some(*claim),
                Ext::Fragment { reserved, .. } => *reserved = *claim,
                Ext::Raw { .. } => {}
            }
        }
        (Corruption::FragReserved(r), L3::V6(h)) => {
            for e in &mut h.ext {
                if let Ext::Fragment { reserved, .. } = e {
                    *reserved = *r;
                }
            }
        }
        (
            Corruption::UdpLen(v),
            L3::V4(Ipv4 { l4: L4::Udp(u), .. }) | L3::V6(Ipv6 { l4: L4::Udp(u), .. }),
        ) => u.len = Some(*v),
        _ => {}
    }
    f
}

/// Random frames with addresses from the universe, on a random port (mostly a known one): IPv4 with
/// options and fragments, IPv6 with extension-header chains (up to 7), 0–3 VLAN tags, non-IP, and
/// corrupted variants (truncation after the Ethernet header, bogus IHL / total length / payload length
/// / version / data offset / header lengths). Every frame has at least [`crate::corpus::FRAME_MIN_LEN`]
/// bytes.
pub fn arb_frame(universe: &Universe) -> impl Strategy<Value = ArbFrame> + use<> {
    (universe.ingress(), arb_vlans(), arb_l3(), arb_corruption()).prop_map(
        |(ingress, vlans, l3, corruption)| {
            let mut spec = Frame::new(l3);
            spec.vlans = vlans;
            let mut spec = corrupt(spec, &corruption);
            if let Corruption::Truncate(at) = &corruption {
                let full = spec.bytes().len();
                let min = crate::corpus::FRAME_MIN_LEN;
                spec.truncate = Some(min + at.index(full - min + 1));
            }
            let frame = spec.bytes();
            ArbFrame {
                ingress,
                spec,
                frame,
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_common::Reason;
    use gateway_reference::{Parsed, evaluate, parse};
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    use std::net::IpAddr;

    fn runner() -> TestRunner {
        let seed = [7u8; 32];
        TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
        )
    }

    fn check_image(img: &MapImage) {
        for n in img.block4_prefixes.keys() {
            assert!(n.prefix_len() < 32);
            for m in img.block4_prefixes.keys() {
                assert!(n == m || !n.contains(m), "{n} covers {m}");
            }
            assert!(
                img.block4_exact.keys().all(|a| !n.contains(a)),
                "{n} covers an exact entry"
            );
        }
        for n in img.block6_prefixes.keys() {
            for m in img.block6_prefixes.keys() {
                assert!(n == m || !n.contains(m), "{n} covers {m}");
            }
            assert!(
                img.block6_exact.keys().all(|a| !n.contains(a)),
                "{n} covers an exact entry"
            );
        }
        let ids = img
            .block4_exact
            .values()
            .chain(img.block4_prefixes.values());
        assert!(
            ids.chain(img.block6_exact.values())
                .all(|f| (*f as usize) < img.feeds.len())
        );
        let total: u64 = img.feeds.iter().map(|f| f.entries).sum();
        let blocked = img.block4_exact.len()
            + img.block4_prefixes.len()
            + img.block6_exact.len()
            + img.block6_prefixes.len();
        assert_eq!(total as usize, blocked);
        assert!(
            img.shared4
                .values()
                .chain(img.shared6.values())
                .all(|s| (*s as usize) < img.systems.len())
        );
        for n in img.shared4.keys() {
            assert_eq!(img.govnet4.get(n), Some(&GOVNET_SHARED));
        }
        for n in img.shared6.keys() {
            assert_eq!(img.govnet6.get(n), Some(&GOVNET_SHARED));
        }
        let nets = img
            .block4_prefixes
            .keys()
            .chain(img.shared4.keys())
            .chain(img.govnet4.keys());
        assert!(
            nets.chain(img.isolated4.iter()).all(|n| n.trunc() == *n),
            "canonical prefixes"
        );
        // Folding: an entry holds the rules of every covering entry of its system.
        for ((s, n), rules) in &img.allow4 {
            assert!(rules.len() <= MAX_ALLOW_RULES);
            assert!(
                rules.windows(2).all(|w| w[0] < w[1]),
                "sorted, deduplicated"
            );
            for ((t, m), outer) in &img.allow4 {
                if s == t && m.contains(n) {
                    assert!(
                        outer.iter().all(|r| rules.contains(r)),
                        "({s},{n}) lacks rules of {m}"
                    );
                }
            }
        }
        for ((s, n), rules) in &img.allow6 {
            assert!(rules.len() <= MAX_ALLOW_RULES);
            for ((t, m), outer) in &img.allow6 {
                if s == t && m.contains(n) {
                    assert!(
                        outer.iter().all(|r| rules.contains(r)),
                        "({s},{n}) lacks rules of {m}"
                    );
                }
            }
        }
    }

    #[test]
    fn images_meet_the_contract() {
        let u = Universe::example();
        runner()
            .run(&arb_image(&u), |img| {
                check_image(&img);
                Ok(())
            })
            .expect("image contract");
    }

    #[test]
    fn frames_are_runnable() {
        let u = Universe::example();
        runner()
            .run(&arb_frame(&u), |f| {
                prop_assert!(f.frame.len() >= crate::corpus::FRAME_MIN_LEN, "{f:?}");
                prop_assert!(f.frame.len() <= 1514, "{f:?}");
                prop_assert_eq!(&f.frame, &f.spec.bytes());
                Ok(())
            })
            .expect("frames");
    }

    #[test]
    fn universe_routes() {
        let u = Universe::example();
        let r = u.routes();
        let e = |a: Ipv4Addr| r.lookup(IpAddr::V4(a));
        assert_eq!(e(v4(10)), Egress::Port(u.lan_if));
        assert_eq!(e(v4(1)), Egress::Local);
        assert_eq!(e(v4(70)), Egress::Port(u.dedicated_if));
        assert_eq!(e(v4(65)), Egress::Local);
        assert_eq!(e(v4(130)), Egress::Port(u.internet_if));
        assert_eq!(e(v4(129)), Egress::Local);
        assert_eq!(e(v4(200)), Egress::Unroutable);
        assert_eq!(e(v4(230)), Egress::Port(u.internet_if));
        assert_eq!(e(OUTSIDE4[0]), Egress::Port(u.internet_if));
        let e6 = |a: Ipv6Addr| r.lookup(IpAddr::V6(a));
        assert_eq!(e6(v6(0x10)), Egress::Port(u.lan_if));
        assert_eq!(e6(v6(0x41)), Egress::Local);
        assert_eq!(e6(v6(0x70)), Egress::Port(u.dedicated_if));
        assert_eq!(e6(v6(0xc5)), Egress::Unroutable);
        assert_eq!(e6(v6(0xe5)), Egress::Port(u.internet_if));
        assert_eq!(e6(OUTSIDE6[1]), Egress::Port(u.internet_if));
    }

    /// Random pairs reach every reason the frame and the image decide, and every parse class — proof
    /// that the universe is small enough for packets to hit entries.
    #[test]
    fn random_pairs_cover_every_reason() {
        let u = Universe::example();
        let (ports, routes) = (u.ports(), u.routes());
        let mut seen: BTreeMap<Reason, usize> = BTreeMap::new();
        let mut classes = [0usize; 4];
        let mut runner = runner();
        let pair = (arb_image(&u), arb_frame(&u));
        for _ in 0..4000 {
            let (img, f) = pair.new_tree(&mut runner).expect("strategy").current();
            let reason = evaluate(&img, true, &ports, &routes, f.ingress, &f.frame);
            *seen.entry(reason).or_default() += 1;
            let class = match parse(&f.frame) {
                Parsed::NonIp => 0,
                Parsed::Malformed => 1,
                Parsed::Ip(p) if p.fragment => 2,
                Parsed::Ip(_) => 3,
            };
            classes[class] += 1;
        }
        eprintln!(
            "reasons: {seen:?}; parse classes (non-ip, malformed, fragment, ip): {classes:?}"
        );
        for r in Reason::ALL {
            if matches!(r, Reason::Domain | Reason::NoPolicy) {
                continue;
            }
            assert!(
                seen.get(&r).copied().unwrap_or(0) >= 5,
                "{} too rare: {seen:?}",
                r.as_str()
            );
        }
        assert!(
            classes.iter().all(|n| *n >= 50),
            "parse classes (non-ip, malformed, fragment, ip): {classes:?}"
        );
        // Most frames are well-formed IP: the interesting part is the policy, not the parser.
        assert!(classes[3] * 2 > 4000, "{classes:?}");
    }
}
