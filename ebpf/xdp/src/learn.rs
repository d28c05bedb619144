//! The learnt blocked-address set (issue 6 item 3). Keep identical to the reference model
//! (`gateway-reference`'s `learn`).
//!
//! *Learning* (every role, last step, only for a packet that would otherwise pass): a UDP datagram
//! from port 53 that is a response (QR = 1, OPCODE = 0, QDCOUNT = 1) whose question a listed name
//! blocks — the query escaped inspection: sent before the name was listed, by the gateway itself,
//! on the dedicated side, over TCP… — is dropped as `domain`, and when its RCODE is NOERROR every
//! A and AAAA record of its answer section (class IN; at most `DNS_MAX_ANSWERS` records) is learnt:
//! `LEARNT_V4`/`LEARNT_V6` map the address to the blocking node (hash, seed, apex or parent) and
//! an expiry of now + min(record TTL, `[domains] learn_ttl_max_secs`), at least one second. Every
//! address answering a blocked question is learnt whatever its owner name, so the targets of a
//! CNAME chain are caught too. Owner names are skipped, never followed: a compression pointer
//! simply ends one. A response whose question cannot be walked passes untouched (answers are not
//! what the query check guards).
//!
//! *Checking* (lan step 2.2c): a packet to a learnt address whose entry has not expired and whose
//! node still blocks in the active slot (same seed, the node's APEX or BELOW bits say block) drops
//! as `domain`, attributed to the feed the active slot names. An expired entry is deleted; a live
//! one the active policy no longer blocks passes and stays until it expires.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use gateway_common::{
    dname::{self, Say},
    learn::{
        DNS_MAX_ANSWERS, LearntValue, STAT_LEARN_EXPIRED, STAT_LEARN_HITS, STAT_LEARN_INSERTS,
        STAT_LEARN_RESPONSES, STAT_LEARN_STALE,
    },
    values::Settings,
};

use crate::{
    bound::{masked, opaque},
    dns::{self, Cell},
    maps,
    parse::{self, Addrs},
};

/// The whole message we read answers from: above the 1232-byte EDNS size resolvers use.
const BUF: usize = 2048;
const MASK: usize = BUF - 1;
/// Loop steps: one per label of an owner name or per record body.
const STEPS: u32 = DNS_MAX_ANSWERS * (dname::MAX_LABELS as u32 + 2);

/// Per-CPU working memory (value of `maps::LEARN_SCRATCH`).
#[repr(C)]
pub struct Scratch {
    msg: [u8; BUF],
    len: Cell,
    off: Cell,
    /// Records still to read.
    left: Cell,
    /// 1 while skipping an owner name; its labels so far.
    in_name: Cell,
    hops: Cell,
    /// What every learnt entry gets.
    now: Cell,
    ttl_max: Cell,
    hash: Cell,
    seed: Cell,
    feed: Cell,
    whole: Cell,
    /// The entry being inserted, built here rather than on the stack: the callback runs three
    /// calls deep under the verdict code, and the BPF stack budget (512 bytes) is for the chain.
    key4: [u8; 4],
    key6: [u8; 16],
    value: LearntValue,
}

/// Learns from a UDP datagram from port 53 (the caller checked protocol and port): the domain feed
/// when it is a response for a blocked name (drop it), else `None`.
#[inline(always)]
pub fn response(
    ctx: &XdpContext,
    pkt: &parse::Packet,
    slot: u8,
    settings: &Settings,
) -> Option<u32> {
    // BPF calls take at most five arguments: slot and cap share one.
    let r = response_raw(
        ctx,
        pkt.payload as u32,
        pkt.payload_len as u32,
        ((settings.learn_ttl_max_secs as u64) << 8) | slot as u64,
        settings.domain_seed,
    );
    if r & !0xffff_ffff == dns::BLOCK {
        maps::count(&maps::DOMAIN_STATS, STAT_LEARN_RESPONSES);
        Some(r as u32)
    } else {
        None
    }
}

/// `PASS` or `BLOCK | feed`. `slot_ttl`: the slot in the low byte, the TTL cap above it.
#[inline(never)]
fn response_raw(ctx: &XdpContext, off: u32, len: u32, slot_ttl: u64, seed: u64) -> u64 {
    let slot = slot_ttl as u8;
    let ttl_max = slot_ttl >> 8;
    let Some(d) = maps::DNS_SCRATCH.get_ptr_mut(0) else {
        return dns::PASS;
    };
    // SAFETY: this CPU's DNS scratch; the query inspection is done with this packet.
    let d = unsafe { &mut *d };
    let len = len as usize;
    if len < dns::HEADER {
        return dns::PASS;
    }
    let copy = if len > dns::QUESTION_MAX {
        dns::QUESTION_MAX
    } else {
        len
    };
    if !parse::load_bytes(ctx, off as usize, d.msg_mut(), copy) {
        return dns::PASS;
    }
    let m = d.msg_mut();
    let qr = m[2] & 0x80 != 0;
    let opcode = (m[2] >> 3) & 0x0f;
    let rcode = m[3] & 0x0f;
    let qdcount = u16::from_be_bytes([m[4], m[5]]);
    let ancount = u16::from_be_bytes([m[6], m[7]]) as u64;
    if !qr || opcode != 0 || qdcount != 1 {
        return dns::PASS;
    }
    let r = dns::judge_question(d, copy, slot, seed);
    if r & !0xffff_ffff != dns::BLOCK {
        return dns::PASS;
    }
    if rcode != 0 || ancount == 0 || ttl_max == 0 {
        return r;
    }
    let (hash, whole) = d.blocking_node();
    let answers = dns::HEADER + d.root_pos() + 1 + 4;

    let Some(s) = maps::LEARN_SCRATCH.get_ptr_mut(0) else {
        return r;
    };
    // SAFETY: this CPU's scratch cell; XDP runs with preemption disabled and nothing else uses it.
    let s = unsafe { &mut *s };
    let copy = if len > BUF { BUF } else { len };
    // The same number (len ≥ HEADER here), written so the verifier sees it is never zero.
    let copy = 1 + ((copy - 1) & MASK);
    if !parse::load_bytes(ctx, off as usize, &mut s.msg, copy) {
        return r;
    }
    s.len.set(copy as u64);
    s.off.set(answers as u64);
    s.left.set(if ancount > DNS_MAX_ANSWERS as u64 {
        DNS_MAX_ANSWERS as u64
    } else {
        ancount
    });
    s.in_name.set(1);
    s.hops.set(0);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    s.now.set(unsafe { bpf_ktime_get_ns() });
    s.ttl_max.set(ttl_max);
    s.hash.set(hash);
    s.seed.set(seed);
    s.feed.set(r & 0xffff_ffff);
    s.whole.set(whole as u64);
    // SAFETY: `answer_step` has the callback signature bpf_loop expects; it takes no context.
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            STEPS,
            answer_step as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    r
}

#[inline(always)]
fn be16(m: &[u8; BUF], at: usize) -> usize {
    let at = opaque(at);
    ((m[at & MASK] as usize) << 8) | m[(at + 1) & MASK] as usize
}

/// One label of an owner name, or one record's fixed part and data (a `bpf_loop` callback).
/// Returns 1 to stop: all records read, or the message ends or breaks (what was learnt stays).
#[inline(never)]
extern "C" fn answer_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = maps::LEARN_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch cell, as in `response_raw`.
    let s = unsafe { &mut *s };
    let left = s.left.get();
    if left == 0 {
        return 1;
    }
    let off = s.off.get() as usize;
    let len = s.len.get() as usize;
    if s.in_name.get() != 0 {
        if off >= len {
            return 1;
        }
        let l = s.msg[masked(off, MASK)] as usize;
        if l == 0 {
            s.off.set(off as u64 + 1);
            s.in_name.set(0);
        } else if l & 0xc0 == 0xc0 {
            s.off.set(off as u64 + 2); // a pointer ends the name; it is not followed
            s.in_name.set(0);
        } else if l & 0xc0 != 0 {
            return 1; // reserved label type
        } else {
            let hops = s.hops.get() + 1;
            if hops > dname::MAX_LABELS as u64 {
                return 1;
            }
            s.hops.set(hops);
            s.off.set((off + 1 + l) as u64);
        }
        return 0;
    }
    // TYPE, CLASS, TTL, RDLENGTH, RDATA.
    if off + 10 > len {
        return 1;
    }
    let typ = be16(&s.msg, off);
    let class = be16(&s.msg, off + 2);
    let ttl = ((be16(&s.msg, off + 4) as u64) << 16) | be16(&s.msg, off + 6) as u64;
    let rdlen = be16(&s.msg, off + 8);
    let rd = off + 10;
    if rd + rdlen > len {
        return 1;
    }
    if class == 1 && ((typ == 1 && rdlen == 4) || (typ == 28 && rdlen == 16)) {
        let cap = s.ttl_max.get();
        let secs = if ttl < cap { ttl } else { cap };
        let secs = if secs == 0 { 1 } else { secs };
        s.value = LearntValue {
            expires_ns: s.now.get() + secs * 1_000_000_000,
            hash: s.hash.get(),
            seed: s.seed.get(),
            feed: s.feed.get() as u32,
            whole: s.whole.get() as u8,
            _pad: [0; 3],
        };
        let ok = if typ == 1 {
            for i in 0..4 {
                s.key4[i] = s.msg[masked(rd + i, MASK)];
            }
            maps::LEARNT_V4.insert(&s.key4, &s.value, 0).is_ok()
        } else {
            for i in 0..16 {
                s.key6[i] = s.msg[masked(rd + i, MASK)];
            }
            maps::LEARNT_V6.insert(&s.key6, &s.value, 0).is_ok()
        };
        if ok {
            maps::count(&maps::DOMAIN_STATS, STAT_LEARN_INSERTS);
        }
    }
    s.off.set((rd + rdlen) as u64);
    s.left.set(left - 1);
    s.in_name.set(1);
    s.hops.set(0);
    0
}

/// Lan step 2.2c: the domain feed when the destination is a live learnt address whose name the
/// active slot still blocks.
#[inline(always)]
pub fn learnt_dst(pkt: &parse::Packet, slot: u8, settings: &Settings) -> Option<u32> {
    let r = match pkt.addrs {
        Addrs::V4 { dst, .. } => learnt4(u32::from_ne_bytes(dst), slot, settings.domain_seed),
        Addrs::V6 { dst, .. } => learnt6(&dst, slot, settings.domain_seed),
    };
    if r & !0xffff_ffff == dns::BLOCK {
        Some(r as u32)
    } else {
        None
    }
}

/// `PASS` or `BLOCK | feed` (subprograms: the entry copy stays out of the verdict code's frame).
#[inline(never)]
fn learnt4(dst: u32, slot: u8, seed: u64) -> u64 {
    let key = dst.to_ne_bytes();
    let Some(v) = maps::LEARNT_V4.get_ptr(&key) else {
        return dns::PASS;
    };
    // SAFETY: the pointer comes from a successful lookup and points at a LearntValue.
    let v = unsafe { &*v };
    if expired(v) {
        let _ = maps::LEARNT_V4.remove(&key);
        return dns::PASS;
    }
    recheck(v, slot, seed)
}

#[inline(never)]
fn learnt6(dst: &[u8; 16], slot: u8, seed: u64) -> u64 {
    let Some(v) = maps::LEARNT_V6.get_ptr(dst) else {
        return dns::PASS;
    };
    // SAFETY: the pointer comes from a successful lookup and points at a LearntValue.
    let v = unsafe { &*v };
    if expired(v) {
        let _ = maps::LEARNT_V6.remove(dst);
        return dns::PASS;
    }
    recheck(v, slot, seed)
}

/// Whether the entry is past its expiry (counted; the caller deletes it).
#[inline(always)]
fn expired(v: &LearntValue) -> bool {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    if unsafe { bpf_ktime_get_ns() } >= v.expires_ns {
        maps::count(&maps::DOMAIN_STATS, STAT_LEARN_EXPIRED);
        return true;
    }
    false
}

/// Whether the entry's node still blocks in `slot`: one lookup.
#[inline(always)]
fn recheck(v: &LearntValue, slot: u8, seed: u64) -> u64 {
    if v.seed == seed
        && let Some(d) = maps::domain(slot, v.hash)
        && dname::node_say(d.flags, v.whole != 0) == Say::Block
    {
        maps::count(&maps::DOMAIN_STATS, STAT_LEARN_HITS);
        return dns::BLOCK | d.feed as u64;
    }
    maps::count(&maps::DOMAIN_STATS, STAT_LEARN_STALE);
    dns::PASS
}
