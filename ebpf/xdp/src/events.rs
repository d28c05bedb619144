//! Drop events: every dropped packet is offered to the ring buffer `EVENTS`, rate-limited per
//! (family, reason, source address) by `ALERT_LIMIT` (see `gateway_common::event`).

use aya_ebpf::bindings::BPF_NOEXIST;
use gateway_common::{
    Reason,
    event::{
        AlertKey, AlertState, DnsDropEvent, DropEvent, EVENT_DROP, EVENT_DROP_DNS,
        EVENT_STAT_EMITTED, EVENT_STAT_LOST, EVENT_STAT_SUPPRESSED,
    },
    flow::FlowKey,
};

use crate::{
    atomic, dns,
    maps::{ALERT_LIMIT, EVENT_STATS, EVENTS, count},
    mem,
    policy::Decision,
};

/// The rate limit in force: events per window, window length.
#[derive(Clone, Copy)]
pub struct Limit {
    pub burst: u32,
    pub window_ms: u32,
}

/// The key of a packet without an IP header: zeros (a read-only global, not a stack copy).
static NO_KEY: FlowKey = FlowKey {
    ifindex: 0,
    family: 0,
    proto: 0,
    sport: [0; 2],
    dport: [0; 2],
    _pad: [0; 2],
    src: [0; 16],
    dst: [0; 16],
};

/// What a drop event says about the packet.
pub struct Dropped<'a> {
    pub now: u64,
    /// The packet's flow key when it was IP (ingress port, addresses, protocol, ports), else `None`.
    pub key: Option<&'a FlowKey>,
    pub ingress: u32,
    pub row: u32,
    pub decision: Decision,
    pub tcp_flags: u8,
    pub bytes: u32,
    pub limit: Limit,
}

/// Sends the event of a dropped packet, unless its source has used up its burst. A function of its
/// own (a BPF subprogram), so its stack frame is not added to the verdict's.
#[inline(never)]
pub fn dropped(d: &Dropped) {
    let limit = d.limit;
    // Without an IP header (malformed, not IP) the addresses and ports stay zero.
    let k: &FlowKey = d.key.unwrap_or(&NO_KEY);
    let akey = AlertKey {
        family: k.family,
        reason: d.decision.reason as u8,
        _pad: [0, 0],
        src: k.src,
    };
    let Some(carried) = admit(&akey, d.now, limit) else {
        return;
    };
    if d.decision.reason == Reason::Domain && dns::named() {
        // The name (DNS question or TLS server_name) rides along: a record of its own kind, so
        // other drops (and learnt-address drops, which have no name) stay 72 bytes.
        let Some(mut entry) = EVENTS.reserve::<DnsDropEvent>(0) else {
            lost(&akey, carried);
            return;
        };
        // SAFETY: DnsDropEvent is integers and byte arrays; all-zero is valid.
        let ev = unsafe { mem::zero(&mut *entry) };
        fill(&mut ev.drop, d, k, carried, EVENT_DROP_DNS);
        dns::detail(&mut ev.dns);
        entry.submit(0); // flags 0: see below
    } else {
        let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
            lost(&akey, carried);
            return;
        };
        // Written in place: the event never takes room on the stack.
        // SAFETY: DropEvent is integers and byte arrays; all-zero is valid.
        let ev = unsafe { mem::zero(&mut *entry) };
        fill(ev, d, k, carried, EVENT_DROP);
        // Flags 0: the kernel wakes the reader only when it has caught up, so a burst of events
        // costs one wake-up, not one each.
        entry.submit(0);
    }
    count(&EVENT_STATS, EVENT_STAT_EMITTED);
}

/// Userspace is behind: keep the suppressed count for the next event of this key.
#[inline(always)]
fn lost(akey: &AlertKey, carried: u32) {
    give_back(akey, carried);
    count(&EVENT_STATS, EVENT_STAT_LOST);
}

/// The common part of every drop event.
#[inline(always)]
fn fill(ev: &mut DropEvent, d: &Dropped, k: &FlowKey, carried: u32, kind: u8) {
    ev.ts_ns = d.now;
    ev.kind = kind;
    ev.reason = d.decision.reason as u8;
    ev.family = k.family;
    ev.proto = k.proto;
    ev.ifindex = d.ingress;
    ev.egress_ifindex = d.decision.egress;
    ev.rule = d.decision.rule;
    ev.suppressed = carried;
    ev.bytes = d.bytes;
    ev.tcp_flags = d.tcp_flags;
    ev.role = d.row as u8;
    ev.sport = k.sport;
    ev.dport = k.dport;
    // Through locals: copying straight from the map value into the ring entry, LLVM cannot rule
    // out an overlap and calls a byte-wise `memmove`.
    let (src, dst) = (k.src, k.dst);
    ev.src = src;
    ev.dst = dst;
}

/// Counts one drop against its key's burst. `Some(suppressed since the last event)` when an event
/// may be sent, `None` when it is suppressed (and counted as such).
#[inline(always)]
fn admit(key: &AlertKey, now: u64, limit: Limit) -> Option<u32> {
    if limit.burst == 0 {
        count(&EVENT_STATS, EVENT_STAT_SUPPRESSED);
        return None;
    }
    let Some(st) = ALERT_LIMIT.get_ptr_mut(key) else {
        let fresh = AlertState {
            window_start_ns: now,
            count: 1,
            suppressed: 0,
        };
        // A failed insert (another CPU just created the key, or no memory) still sends this event:
        // at worst one more than the burst.
        let _ = ALERT_LIMIT.insert(key, &fresh, BPF_NOEXIST as u64);
        return Some(0);
    };
    let window_ns = limit.window_ms as u64 * 1_000_000;
    // SAFETY: `st` comes from a successful lookup and points at a live, 8-byte aligned AlertState
    // that other CPUs may update at the same time: increments are locked instructions, the rest
    // single aligned loads and stores (see the module docs of gateway_common::event for the races).
    unsafe {
        let counted = &raw mut (*st).count;
        let suppressed = &raw mut (*st).suppressed;
        let start = &raw mut (*st).window_start_ns;
        if now.wrapping_sub(atomic::load(start)) >= window_ns {
            atomic::store(start, now);
            atomic::store(counted, 0);
        }
        // Only admitted events are counted, so the count stays near the burst and never wraps
        // however long the flood.
        if atomic::load(counted) < limit.burst as u64 {
            atomic::add(counted, 1);
            let carried = atomic::load(suppressed);
            if carried != 0 {
                atomic::store(suppressed, 0);
            }
            return Some(carried.min(u32::MAX as u64) as u32);
        }
        atomic::add(suppressed, 1);
    }
    count(&EVENT_STATS, EVENT_STAT_SUPPRESSED);
    None
}

/// Returns a taken suppressed count to its key after the event carrying it could not be sent.
#[inline(always)]
fn give_back(key: &AlertKey, carried: u32) {
    if carried == 0 {
        return;
    }
    if let Some(st) = ALERT_LIMIT.get_ptr_mut(key) {
        // SAFETY: as in `admit`.
        unsafe { atomic::add(&raw mut (*st).suppressed, carried as u64) };
    }
}
