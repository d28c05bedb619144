//! The program's maps and typed lookups over them. Userspace writes every map here except `STATS`
//! and the telemetry maps.
//! Policy maps carry the generation slot as the first key byte (see gateway_common's crate docs).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
};
use gateway_common::learn::{DOMAIN_STATS_LEN, LEARNT_ENTRIES, LearntValue};
use gateway_common::{
    Role,
    event::{AlertKey, AlertState, EVENT_STATS_LEN},
    flow::{FLOW_STATS_LEN, FlowKey, FlowValue},
    keys::{self, Allow4Key, Allow6Key, DomainKey, V4Key, V6Key},
    maps as m,
    values::{AllowSet, Counter, DomainValue, PortConf, Settings},
};

use crate::dns::Scratch;

#[map]
pub static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(m::SLOTS, 0);
#[map]
pub static PORTS: HashMap<u32, PortConf> = HashMap::with_max_entries(m::MAX_PORTS, 0);
#[map]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(m::STATS_LEN, 0);

// Large maps are not preallocated: memory follows the policy, not the capacity.
const NO_PREALLOC: u32 = aya_ebpf::bindings::BPF_F_NO_PREALLOC;

#[map]
pub static BLOCK4_EXACT: HashMap<V4Key, u32> =
    HashMap::with_max_entries(m::SLOTS * m::BLOCK4_EXACT_PER_SLOT, NO_PREALLOC);
#[map]
pub static BLOCK4_LPM: LpmTrie<V4Key, u32> =
    LpmTrie::with_max_entries(m::SLOTS * m::BLOCK4_LPM_PER_SLOT, 0);
#[map]
pub static BLOCK6_EXACT: HashMap<V6Key, u32> =
    HashMap::with_max_entries(m::SLOTS * m::BLOCK6_EXACT_PER_SLOT, NO_PREALLOC);
#[map]
pub static BLOCK6_LPM: LpmTrie<V6Key, u32> =
    LpmTrie::with_max_entries(m::SLOTS * m::BLOCK6_LPM_PER_SLOT, 0);
#[map]
pub static ISOLATED4: LpmTrie<V4Key, u32> =
    LpmTrie::with_max_entries(m::SLOTS * m::SMALL_PER_SLOT, 0);
#[map]
pub static ISOLATED6: LpmTrie<V6Key, u32> =
    LpmTrie::with_max_entries(m::SLOTS * m::SMALL_PER_SLOT, 0);
#[map]
pub static SHARED4: LpmTrie<V4Key, u32> =
    LpmTrie::with_max_entries(m::SLOTS * m::SMALL_PER_SLOT, 0);
#[map]
pub static SHARED6: LpmTrie<V6Key, u32> =
    LpmTrie::with_max_entries(m::SLOTS * m::SMALL_PER_SLOT, 0);
#[map]
pub static GOVNET4: LpmTrie<V4Key, u32> =
    LpmTrie::with_max_entries(m::SLOTS * m::SMALL_PER_SLOT, 0);
#[map]
pub static GOVNET6: LpmTrie<V6Key, u32> =
    LpmTrie::with_max_entries(m::SLOTS * m::SMALL_PER_SLOT, 0);
#[map]
pub static ALLOW4: LpmTrie<Allow4Key, AllowSet> =
    LpmTrie::with_max_entries(m::SLOTS * m::SMALL_PER_SLOT, 0);
#[map]
pub static ALLOW6: LpmTrie<Allow6Key, AllowSet> =
    LpmTrie::with_max_entries(m::SLOTS * m::SMALL_PER_SLOT, 0);
#[map]
pub static DOMAINS: HashMap<DomainKey, DomainValue> =
    HashMap::with_max_entries(m::SLOTS * m::DOMAINS_PER_SLOT, NO_PREALLOC);

/// Per-CPU working memory of the DNS inspection (the question and its label offsets): far more
/// than the 512-byte BPF stack could hold beside the verdict code. Not a policy map; not pinned.
#[map]
pub static DNS_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

// Telemetry: written by the kernel, read (and for FLOWS, pruned) by userspace. The flow table is
// preallocated (LRU maps always are): its memory is fixed by the profile's `flow_entries`, which the
// loader sets in place of this declared default.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowValue> =
    LruHashMap::with_max_entries(m::FLOWS_DEFAULT_ENTRIES, 0);
#[map]
pub static FLOW_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(FLOW_STATS_LEN, 0);
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(m::EVENTS_BYTES, 0);
#[map]
pub static EVENT_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_STATS_LEN, 0);
#[map]
pub static ALERT_LIMIT: LruHashMap<AlertKey, AlertState> =
    LruHashMap::with_max_entries(m::ALERT_LIMIT_ENTRIES, 0);

// SNI and learnt addresses (issue 6 item 3; sni.rs, learn.rs). The learnt maps and their counters
// are runtime state the kernel writes (no slot in the key); gatewayd reads them.
#[map]
pub static SNI_SCRATCH: PerCpuArray<crate::sni::Scratch> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static LEARN_SCRATCH: PerCpuArray<crate::learn::Scratch> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static LEARNT_V4: LruHashMap<[u8; 4], LearntValue> =
    LruHashMap::with_max_entries(LEARNT_ENTRIES, 0);
#[map]
pub static LEARNT_V6: LruHashMap<[u8; 16], LearntValue> =
    LruHashMap::with_max_entries(LEARNT_ENTRIES, 0);
#[map]
pub static DOMAIN_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DOMAIN_STATS_LEN, 0);

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(map: &PerCpuArray<u64>, index: u32) {
    if let Some(cell) = map.get_ptr_mut(index) {
        // SAFETY: this CPU's cell of a per-CPU array; XDP runs with preemption disabled, so nothing
        // else writes it concurrently.
        unsafe { *cell += 1 };
    }
}

/// Role of the port with this ifindex, if it is one of ours.
#[inline(always)]
pub fn port_role(ifindex: u32) -> Option<Role> {
    let conf = PORTS.get_ptr(ifindex)?;
    // SAFETY: the pointer comes from a successful lookup and points at a PortConf; reading one u32.
    Role::from_u32(unsafe { (*conf).role })
}

/// The generation slot in force (0 or 1). Read once per packet, so one packet sees one policy.
#[inline(always)]
pub fn active_slot() -> u8 {
    match ACTIVE.get(0) {
        Some(v) => (*v & 1) as u8,
        None => 0,
    }
}

/// Settings of a slot holding a loaded policy.
#[inline(always)]
pub fn settings(slot: u8) -> Option<&'static Settings> {
    let s = SETTINGS.get(slot as u32)?;
    if s.loaded == 0 { None } else { Some(s) }
}

const FULL4: u32 = keys::addr_prefix_len(32);
const FULL6: u32 = keys::addr_prefix_len(128);

/// The feed blocking this address (exact entry first, then any prefix), if any.
#[inline(always)]
pub fn blocked4(slot: u8, addr: [u8; 4]) -> Option<u32> {
    let k = keys::v4_key(slot, addr);
    if let Some(feed) = BLOCK4_EXACT.get_ptr(k) {
        // SAFETY: the pointer comes from a successful lookup and points at the entry's u32.
        return Some(unsafe { *feed });
    }
    BLOCK4_LPM.get(Key::new(FULL4, k)).copied()
}

#[inline(always)]
pub fn blocked6(slot: u8, addr: [u8; 16]) -> Option<u32> {
    let k = keys::v6_key(slot, addr);
    if let Some(feed) = BLOCK6_EXACT.get_ptr(k) {
        // SAFETY: the pointer comes from a successful lookup and points at the entry's u32.
        return Some(unsafe { *feed });
    }
    BLOCK6_LPM.get(Key::new(FULL6, k)).copied()
}

#[inline(always)]
pub fn isolated4(slot: u8, addr: [u8; 4]) -> bool {
    ISOLATED4
        .get(Key::new(FULL4, keys::v4_key(slot, addr)))
        .is_some()
}

#[inline(always)]
pub fn isolated6(slot: u8, addr: [u8; 16]) -> bool {
    ISOLATED6
        .get(Key::new(FULL6, keys::v6_key(slot, addr)))
        .is_some()
}

#[inline(always)]
pub fn govnet4(slot: u8, addr: [u8; 4]) -> bool {
    GOVNET4
        .get(Key::new(FULL4, keys::v4_key(slot, addr)))
        .is_some()
}

#[inline(always)]
pub fn govnet6(slot: u8, addr: [u8; 16]) -> bool {
    GOVNET6
        .get(Key::new(FULL6, keys::v6_key(slot, addr)))
        .is_some()
}

/// The shared system a destination belongs to (longest match).
#[inline(always)]
pub fn shared4(slot: u8, addr: [u8; 4]) -> Option<u32> {
    SHARED4
        .get(Key::new(FULL4, keys::v4_key(slot, addr)))
        .copied()
}

#[inline(always)]
pub fn shared6(slot: u8, addr: [u8; 16]) -> Option<u32> {
    SHARED6
        .get(Key::new(FULL6, keys::v6_key(slot, addr)))
        .copied()
}

/// What the slot's domain map says of a name hash.
#[inline(always)]
pub fn domain(slot: u8, hash: u64) -> Option<DomainValue> {
    let v = DOMAINS.get_ptr(keys::domain_key(slot, hash))?;
    // SAFETY: the pointer comes from a successful lookup and points at a DomainValue.
    Some(unsafe { *v })
}

/// The rules admitted for `src` towards `system` (longest source-prefix match).
#[inline(always)]
pub fn allow4(slot: u8, system: u32, src: [u8; 4]) -> Option<&'static AllowSet> {
    ALLOW4.get(Key::new(
        keys::allow_prefix_len(32),
        keys::allow4_key(slot, system, src),
    ))
}

#[inline(always)]
pub fn allow6(slot: u8, system: u32, src: [u8; 16]) -> Option<&'static AllowSet> {
    ALLOW6.get(Key::new(
        keys::allow_prefix_len(128),
        keys::allow6_key(slot, system, src),
    ))
}
