//! Flow accounting: every IP packet that got a verdict from a policy adds to its flow's entry in
//! `FLOWS`, keyed by (ingress port, family, protocol, ports, addresses).
//!
//! Entries are shared between CPUs (one flow's packets may be spread over several receive queues),
//! so counters are added atomically; `last_ns`, the reason, the egress port and the rule are stores
//! of the latest packet's values (a racing CPU's equally recent value is as good).

use core::mem::MaybeUninit;

use aya_ebpf::bindings::BPF_NOEXIST;
use gateway_common::flow::{
    FAMILY_V4, FAMILY_V6, FLOW_STAT_CREATED, FLOW_STAT_INSERT_FAILED, FlowKey, FlowValue,
};

use crate::{
    atomic,
    maps::{FLOW_STATS, FLOWS, count},
    mem,
    parse::{Addrs, Packet},
    policy::Decision,
};

const EEXIST: i32 = 17;

/// The flow key of a parsed packet on `ingress`, built in `out`.
#[inline(always)]
pub fn key<'a>(out: &'a mut MaybeUninit<FlowKey>, ingress: u32, pkt: &Packet) -> &'a FlowKey {
    // SAFETY: FlowKey is integers and byte arrays; all-zero is valid.
    let key = unsafe { mem::zero(out) };
    key.ifindex = ingress;
    key.proto = pkt.proto;
    match pkt.addrs {
        Addrs::V4 { src, dst } => {
            key.family = FAMILY_V4;
            key.src[..4].copy_from_slice(&src);
            key.dst[..4].copy_from_slice(&dst);
        }
        Addrs::V6 { src, dst } => {
            key.family = FAMILY_V6;
            key.src = src;
            key.dst = dst;
        }
    }
    key.sport = pkt.sport.to_be_bytes();
    key.dport = if pkt.has_ports {
        pkt.dport.to_be_bytes()
    } else {
        // ICMP type and code (zero for every other protocol without ports).
        pkt.icmp
    };
    key
}

/// Adds one packet of `bytes` frame bytes, judged `decision` at `now`, to its flow. A function of
/// its own (a BPF subprogram), so its stack frame is not added to the verdict's.
#[inline(never)]
pub fn account(now: u64, key: &FlowKey, pkt: &Packet, decision: &Decision, bytes: u64) {
    if let Some(v) = FLOWS.get_ptr_mut(key) {
        update(v, now, pkt, decision, bytes);
        return;
    }
    let mut fresh = MaybeUninit::<FlowValue>::uninit();
    // SAFETY: FlowValue is integers and byte arrays; all-zero is valid.
    let value = unsafe { mem::zero(&mut fresh) };
    value.packets = 1;
    value.bytes = bytes;
    value.first_ns = now;
    value.last_ns = now;
    value.egress_ifindex = decision.egress;
    value.rule = decision.rule;
    value.tcp_flags = pkt.tcp_flags as u32;
    value.reason = decision.reason as u8;
    match FLOWS.insert(key, &*value, BPF_NOEXIST as u64) {
        Ok(()) => count(&FLOW_STATS, FLOW_STAT_CREATED),
        // Another CPU created the entry between our lookup and insert: add to it instead.
        Err(e) if e == -EEXIST => match FLOWS.get_ptr_mut(key) {
            Some(v) => update(v, now, pkt, decision, bytes),
            None => count(&FLOW_STATS, FLOW_STAT_INSERT_FAILED),
        },
        Err(_) => count(&FLOW_STATS, FLOW_STAT_INSERT_FAILED),
    }
}

// The locked OR works on 8 bytes: `tcp_flags` must start an aligned word whose upper half (reason,
// padding) the OR leaves alone, which holds on little-endian BPF with flags < 2^32.
const _: () = assert!(core::mem::offset_of!(FlowValue, tcp_flags) % 8 == 0);

#[inline(always)]
fn update(v: *mut FlowValue, now: u64, pkt: &Packet, decision: &Decision, bytes: u64) {
    // SAFETY: `v` comes from a successful lookup in FLOWS and points at a live, 8-byte aligned
    // FlowValue that other CPUs may update at the same time: counters are added with locked
    // instructions, the other fields are single aligned loads and stores.
    unsafe {
        atomic::add(&raw mut (*v).packets, 1);
        atomic::add(&raw mut (*v).bytes, bytes);
        let flags = pkt.tcp_flags as u32;
        // Flags rarely add a new bit after the first packets: skip the locked operation then.
        if atomic::load(&raw const (*v).tcp_flags) & flags != flags {
            atomic::or((&raw mut (*v).tcp_flags).cast::<u64>(), flags as u64);
        }
        atomic::store(&raw mut (*v).last_ns, now);
        atomic::store(&raw mut (*v).egress_ifindex, decision.egress);
        atomic::store(&raw mut (*v).rule, decision.rule);
        atomic::store(&raw mut (*v).reason, decision.reason as u8);
    }
}
