//! Map values and the load-time configuration. Each map has one writer: userspace writes policy and
//! port maps, the kernel writes counters.

/// A port of the gateway: value of [`crate::maps::PORTS`], keyed by ifindex (`u32`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortConf {
    /// A [`crate::Role`] discriminant.
    pub role: u32,
    /// Reserved, zero.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<PortConf>() == 8);

/// A protocol/port range one allow rule admits. `proto` 0 = any protocol (then the range is the full
/// range). Ports are host order and inclusive; for ICMP the range is ignored.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct PortRule {
    pub proto: u8,
    pub _pad: [u8; 1],
    pub port_lo: u16,
    pub port_hi: u16,
    pub _pad2: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<PortRule>() == 8);

impl PortRule {
    pub const ANY_PROTO: u8 = 0;

    pub const fn new(proto: u8, port_lo: u16, port_hi: u16) -> Self {
        PortRule {
            proto,
            _pad: [0],
            port_lo,
            port_hi,
            _pad2: [0; 2],
        }
    }

    /// Whether a packet of `proto` to destination port `dport` matches. `dport` is `None` when the
    /// packet carries no port (ICMP, non-first fragment): then only a rule covering every port matches,
    /// except for ICMP/ICMPv6 rules, which have no ports.
    pub const fn admits(&self, proto: u8, dport: Option<u16>) -> bool {
        if self.proto != Self::ANY_PROTO && self.proto != proto {
            return false;
        }
        if self.proto == crate::maps::IPPROTO_ICMP || self.proto == crate::maps::IPPROTO_ICMPV6 {
            return true;
        }
        match dport {
            Some(p) => p >= self.port_lo && p <= self.port_hi,
            None => self.port_lo == 0 && self.port_hi == u16::MAX,
        }
    }
}

/// Most rules one (system, source prefix) pair can carry; the compiler refuses more.
pub const MAX_ALLOW_RULES: usize = 16;

/// Value of the allow-rule LPM maps: the union of the rules of every source prefix covering the key's
/// prefix (the compiler folds covering rules in, so the longest match alone decides).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowSet {
    pub count: u32,
    pub _pad: u32,
    pub rules: [PortRule; MAX_ALLOW_RULES],
}
const _: () = assert!(core::mem::size_of::<AllowSet>() == 8 + 8 * MAX_ALLOW_RULES);

impl AllowSet {
    pub const EMPTY: AllowSet = AllowSet {
        count: 0,
        _pad: 0,
        rules: [PortRule::new(0, 0, 0); MAX_ALLOW_RULES],
    };
}

/// Kind of a govnet prefix (value of the `GOVNET` maps).
pub const GOVNET_SHARED: u32 = 1;
pub const GOVNET_DEDICATED: u32 = 2;

/// Per-generation policy settings: value of [`crate::maps::SETTINGS`], indexed by generation slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// 1 once a policy has been written into this slot.
    pub loaded: u32,
    /// `SETTING_*` bits.
    pub flags: u32,
    /// The policy generation (monotonic, userspace's count of applies).
    pub generation: u64,
    /// SHA-256 of the compiled map image, for `status`.
    pub image_hash: [u8; 32],
    /// Drop events sent per (source, reason) and window; the rest are counted as suppressed.
    /// 0 sends none.
    pub alert_burst: u32,
    /// The rate-limit window in milliseconds; 0 = no limit.
    pub alert_window_ms: u32,
    /// Seed of the domain-name hash (`crate::dname::start`) the slot's `DOMAINS` keys were hashed
    /// with (issue 6).
    pub domain_seed: u64,
    /// `[domains] action = "sinkhole"`: the address an A query for a blocked name is answered
    /// with (valid with [`SETTING_DNS_SINKHOLE_V4`]).
    pub sinkhole_v4: [u8; 4],
    /// TTL in seconds of a sinkhole answer record.
    pub sinkhole_ttl: u32,
    /// The address an AAAA query is answered with (valid with [`SETTING_DNS_SINKHOLE_V6`]).
    pub sinkhole_v6: [u8; 16],
    /// TCP destination ports whose ClientHello SNI is checked (`[domains] sni_ports`; 0 = unused
    /// slot). Only with domain feeds (`SETTING_DNS_INSPECT`).
    pub sni_ports: [u16; crate::learn::MAX_SNI_PORTS],
    /// Cap in seconds on how long an address answered for a blocked name stays learnt
    /// (`[domains] learn_ttl_max_secs`); 0 = no learning and no learnt-address check.
    pub learn_ttl_max_secs: u32,
    pub _pad_learn: u32,
}
const _: () = assert!(core::mem::size_of::<Settings>() == 104);

/// The drop-event rate limit of a policy unless it says otherwise, and of a slot without a policy.
pub const ALERT_BURST_DEFAULT: u32 = 20;
pub const ALERT_WINDOW_MS_DEFAULT: u32 = 1000;

/// Drop every non-first IPv4/IPv6 fragment instead of judging it on its addresses alone.
pub const SETTING_DROP_FRAGMENTS: u32 = 1 << 0;
/// `[domains] action = "nxdomain"`: answer a blocked DNS query with NXDOMAIN in place (XDP_TX)
/// instead of dropping it (issue 6).
pub const SETTING_DNS_NXDOMAIN: u32 = 1 << 1;
/// `[domains] malformed = "pass"`: a DNS query whose question cannot be walked (compression
/// pointer, bad label length, truncated) passes instead of dropping as `malformed`.
pub const SETTING_DNS_MALFORMED_PASS: u32 = 1 << 2;
/// The policy has domain feeds: DNS queries from the lan are inspected at all. Without it (no
/// `[[domain_feed]]`) the data path does not look into UDP port 53, as before issue 6.
pub const SETTING_DNS_INSPECT: u32 = 1 << 3;
/// `[domains] action = "sinkhole"` with `sinkhole_v4`: A queries (class IN) for a blocked name are
/// answered with `Settings::sinkhole_v4` (the answer is built in place like an NXDOMAIN, so
/// [`SETTING_DNS_NXDOMAIN`] is set too; every other query type still gets NXDOMAIN).
pub const SETTING_DNS_SINKHOLE_V4: u32 = 1 << 4;
/// As [`SETTING_DNS_SINKHOLE_V4`] for AAAA queries and `Settings::sinkhole_v6`.
pub const SETTING_DNS_SINKHOLE_V6: u32 = 1 << 5;

/// Value of the [`crate::maps::DOMAINS`] map: what one listed name (keyed by its
/// `crate::dname` hash) says, and the domain feed that said it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct DomainValue {
    /// `crate::dname` `BLOCK_*`/`PASS_*` bits.
    pub flags: u8,
    pub _pad: [u8; 3],
    /// Index of the domain feed the block (else the exception) is attributed to; the `rule` of a
    /// `domain` verdict.
    pub feed: u32,
}
const _: () = assert!(core::mem::size_of::<DomainValue>() == 8);

impl DomainValue {
    pub const fn new(flags: u8, feed: u32) -> Self {
        DomainValue {
            flags,
            _pad: [0; 3],
            feed,
        }
    }
}

impl Settings {
    pub const EMPTY: Settings = Settings {
        loaded: 0,
        flags: 0,
        generation: 0,
        image_hash: [0; 32],
        alert_burst: ALERT_BURST_DEFAULT,
        alert_window_ms: ALERT_WINDOW_MS_DEFAULT,
        domain_seed: 0,
        sinkhole_v4: [0; 4],
        sinkhole_ttl: 0,
        sinkhole_v6: [0; 16],
        sni_ports: [0; crate::learn::MAX_SNI_PORTS],
        learn_ttl_max_secs: 0,
        _pad_learn: 0,
    };
}

/// One per-CPU counter cell of [`crate::maps::STATS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counter>() == 16);

/// Load-time options of the data path (`EbpfLoader::set_global("DATAPATH_CONFIG", …)`). Versioned so a
/// loader and a program of different builds notice the mismatch instead of misreading fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatapathConfig {
    pub version: u32,
    /// `CFG_*` bits.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<DatapathConfig>() == 8);

pub const DATAPATH_CONFIG_VERSION: u32 = 1;
/// Ask `bpf_fib_lookup` not to resolve the neighbour (kernel ≥ 6.3): the egress port is all we need.
pub const CFG_FIB_SKIP_NEIGH: u32 = 1 << 0;

impl DatapathConfig {
    pub const DEFAULT: DatapathConfig = DatapathConfig {
        version: DATAPATH_CONFIG_VERSION,
        flags: CFG_FIB_SKIP_NEIGH,
    };
}

// SAFETY (every impl below): each type is #[repr(C)], Copy, made only of integers and integer arrays,
// with every padding byte an explicit field (sizes asserted above), so any bit pattern is a valid value.
#[cfg(feature = "user")]
mod pod {
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::PortConf {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::PortRule {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::AllowSet {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::Settings {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::Counter {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::DatapathConfig {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for super::DomainValue {}
}
