//! Map names (as the program declares them and userspace looks them up), capacities and protocol
//! numbers. Capacities count both generation slots: a policy of N entries needs room for 2N while the
//! next one is built beside it.

pub const ACTIVE: &str = "ACTIVE";
pub const SETTINGS: &str = "SETTINGS";
pub const PORTS: &str = "PORTS";
pub const STATS: &str = "STATS";
pub const BLOCK4_EXACT: &str = "BLOCK4_EXACT";
pub const BLOCK4_LPM: &str = "BLOCK4_LPM";
pub const BLOCK6_EXACT: &str = "BLOCK6_EXACT";
pub const BLOCK6_LPM: &str = "BLOCK6_LPM";
pub const ISOLATED4: &str = "ISOLATED4";
pub const ISOLATED6: &str = "ISOLATED6";
pub const SHARED4: &str = "SHARED4";
pub const SHARED6: &str = "SHARED6";
pub const GOVNET4: &str = "GOVNET4";
pub const GOVNET6: &str = "GOVNET6";
pub const ALLOW4: &str = "ALLOW4";
pub const ALLOW6: &str = "ALLOW6";
/// Telemetry (see `flow` and `event`): soft state the kernel writes, userspace reads.
pub const FLOWS: &str = "FLOWS";
pub const FLOW_STATS: &str = "FLOW_STATS";
pub const EVENTS: &str = "EVENTS";
pub const EVENT_STATS: &str = "EVENT_STATS";
pub const ALERT_LIMIT: &str = "ALERT_LIMIT";
/// Domain blocking (issue 6): (slot, name hash) → `values::DomainValue`.
pub const DOMAINS: &str = "DOMAINS";
/// SNI and learnt addresses (issue 6, `crate::learn`): runtime state, no slot in the key.
pub const LEARNT_V4: &str = "LEARNT_V4";
pub const LEARNT_V6: &str = "LEARNT_V6";
pub const DOMAIN_STATS: &str = "DOMAIN_STATS";

/// The tail-called name inspections (`NAME_STEPS`, a program array, and `PENDING`, the per-CPU
/// hand-over): per program object, never pinned — a new program brings its own.
pub const NAME_STEPS: &str = "NAME_STEPS";
/// `NAME_STEPS` index and program name of each inspection. The entry program judges everything
/// else and hands a packet over only when it needs one of these; each is verified on its own, with
/// its own instruction budget (kernel 6.1's verifier cannot take them all in one program).
pub const STEP_DNS_QUERY: u32 = 0;
pub const STEP_TLS_HELLO: u32 = 1;
pub const STEP_DNS_RESPONSE: u32 = 2;
pub const STEP_PROGRAMS: [(u32, &str); 3] = [
    (STEP_DNS_QUERY, "dns_query"),
    (STEP_TLS_HELLO, "tls_hello"),
    (STEP_DNS_RESPONSE, "dns_response"),
];

/// Every map, for pinning and adoption.
pub const ALL: [&str; 25] = [
    ACTIVE,
    SETTINGS,
    PORTS,
    STATS,
    BLOCK4_EXACT,
    BLOCK4_LPM,
    BLOCK6_EXACT,
    BLOCK6_LPM,
    ISOLATED4,
    ISOLATED6,
    SHARED4,
    SHARED6,
    GOVNET4,
    GOVNET6,
    ALLOW4,
    ALLOW6,
    DOMAINS,
    FLOWS,
    FLOW_STATS,
    EVENTS,
    EVENT_STATS,
    ALERT_LIMIT,
    LEARNT_V4,
    LEARNT_V6,
    DOMAIN_STATS,
];

/// The telemetry maps among [`ALL`]: counters and records only, no policy. A pinned one whose shape
/// no longer matches what the program declares (e.g. the profile changed the flow table size) can be
/// replaced by a fresh one without touching enforcement.
pub const TELEMETRY: [&str; 8] = [
    FLOWS,
    FLOW_STATS,
    EVENTS,
    EVENT_STATS,
    ALERT_LIMIT,
    LEARNT_V4,
    LEARNT_V6,
    DOMAIN_STATS,
];

/// Generation slots.
pub const SLOTS: u32 = 2;
pub const MAX_PORTS: u32 = 64;
pub const STATS_LEN: u32 = crate::Role::STATS_ROWS * crate::Reason::COUNT;

/// Per-slot capacities (the maps hold twice this). Exact addresses and prefixes are separate budgets;
/// together the blocklists hold well over 1,000,000 entries per policy. Hash maps allocate a bucket
/// array of the next power of two of their capacity even when empty (16 bytes a bucket), so their
/// capacities are powers of two: 2 × 2^20 exact IPv4 entries cost 32 MiB of buckets, not 64.
pub const BLOCK4_EXACT_PER_SLOT: u32 = 1 << 20;
pub const BLOCK4_LPM_PER_SLOT: u32 = 1_200_000;
pub const BLOCK6_EXACT_PER_SLOT: u32 = 1 << 18;
pub const BLOCK6_LPM_PER_SLOT: u32 = 262_144;
pub const SMALL_PER_SLOT: u32 = 16_384;
/// Listed domain names (issue 6): a million-name feed must load. A power of two, as for the other
/// hash maps.
pub const DOMAINS_PER_SLOT: u32 = 1 << 20;

/// Flow table entries unless the hardware profile says otherwise (`flow::FLOW_ENTRIES_*`); the
/// loader overrides the declared size with `EbpfLoader::map_max_entries`.
pub const FLOWS_DEFAULT_ENTRIES: u32 = crate::flow::FLOW_ENTRIES_DEFAULT;
/// Event ring buffer: 1 MiB holds over 13,000 drop events (72 bytes + an 8-byte header each).
pub const EVENTS_BYTES: u32 = 1 << 20;
/// Rate-limit state: one entry per (family, reason, source) recently dropped; LRU, so a flood of
/// random sources evicts old keys rather than failing (each new key then gets its burst: a
/// random-source flood is bounded by the ring buffer, not by this map). 16,384 entries: ~1.8 MiB.
pub const ALERT_LIMIT_ENTRIES: u32 = 16_384;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
