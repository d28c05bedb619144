//! Beyond the first packet (issue 6, item 3): TLS ClientHello SNI and the learnt blocked-address
//! set. Shared by the data path, the loader, gatewayd and the reference model.
//!
//! A DNS response for a blocked name that reaches the gateway (the query escaped inspection) has its
//! A/AAAA answers learnt into `LEARNT_V4`/`LEARNT_V6` (LRU, runtime state of no policy slot) until
//! `expires_ns`; a lan packet to such an address is dropped as `domain` while the entry lives *and*
//! the name's deciding node still blocks in the active slot (re-checked on every hit: one lookup),
//! so a policy swap that unblocks the name stops the blocking at once.

/// Value of the learnt-address maps (key: the address's bytes, `[u8; 4]` / `[u8; 16]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LearntValue {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) after which the entry is dead.
    pub expires_ns: u64,
    /// `crate::dname` hash of the node (listed name) that blocked the question.
    pub hash: u64,
    /// The seed that hash was made with; a slot hashing with another seed cannot re-check it.
    pub seed: u64,
    /// Domain feed of the block when learnt (the hit reports the active slot's feed).
    pub feed: u32,
    /// 1: the node is the question name itself (APEX bits decide); 0: a parent (BELOW bits).
    pub whole: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<LearntValue>() == 32);

/// Entries of each learnt-address map. LRU: a flood of answers evicts the oldest addresses, it
/// cannot grow memory (~100 bytes an entry with the kernel's overhead: ~1.6 MiB per map).
pub const LEARNT_ENTRIES: u32 = 16_384;

/// Indices of the per-CPU counters in `DOMAIN_STATS` (kernel-written).
pub const STAT_SNI_CHECKED: u32 = 0;
/// ClientHellos whose server_name blocked the connection.
pub const STAT_SNI_BLOCKED: u32 = 1;
/// ClientHellos that broke the TLS framing (lengths that do not add up, bad server_name).
pub const STAT_SNI_MALFORMED: u32 = 2;
/// ClientHellos whose server_name lies beyond the first segment (split ClientHello).
pub const STAT_SNI_SPLIT: u32 = 3;
/// DNS responses for a blocked name (dropped, answers learnt).
pub const STAT_LEARN_RESPONSES: u32 = 4;
/// Addresses written into the learnt maps.
pub const STAT_LEARN_INSERTS: u32 = 5;
/// Learnt entries found expired on a hit (and deleted).
pub const STAT_LEARN_EXPIRED: u32 = 6;
/// Lan packets dropped because their destination is a learnt address.
pub const STAT_LEARN_HITS: u32 = 7;
/// Hits on a live entry whose name the active policy no longer blocks (passed).
pub const STAT_LEARN_STALE: u32 = 8;
pub const DOMAIN_STATS_LEN: u32 = 9;

/// Metric/CLI names of the `DOMAIN_STATS` counters, in index order.
pub const DOMAIN_STAT_NAMES: [&str; DOMAIN_STATS_LEN as usize] = [
    "sni_checked",
    "sni_blocked",
    "sni_malformed",
    "sni_split",
    "learn_responses",
    "learn_inserts",
    "learn_expired",
    "learn_hits",
    "learn_stale",
];

/// Most destination ports SNI inspection covers (`[domains] sni_ports`); unused slots are 0.
pub const MAX_SNI_PORTS: usize = 4;
/// SNI ports unless the policy says otherwise.
pub const SNI_PORTS_DEFAULT: [u16; MAX_SNI_PORTS] = [443, 0, 0, 0];
/// Cap on a learnt entry's lifetime unless the policy says otherwise (`learn_ttl_max_secs`).
pub const LEARN_TTL_MAX_DEFAULT: u32 = 300;

/// TLS: record type handshake, handshake type ClientHello, extension server_name, name type host_name.
pub const TLS_HANDSHAKE: u8 = 22;
pub const TLS_CLIENT_HELLO: u8 = 1;
pub const TLS_EXT_SERVER_NAME: u16 = 0;
pub const TLS_SNI_HOST_NAME: u8 = 0;
/// Most extensions walked looking for server_name (browsers send ~20, GREASE included).
pub const TLS_MAX_EXTENSIONS: u32 = 64;
/// Most answer records read from one DNS response.
pub const DNS_MAX_ANSWERS: u32 = 32;

// SAFETY: #[repr(C)], Copy, integers and integer arrays only, every padding byte an explicit field
// (size asserted above): any bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for LearntValue {}
