//! TLS ClientHello server_name (issue 6 item 3, lan verdict step 2.2b). Keep identical to the
//! reference model (`gateway-reference`'s `sni`).
//!
//! A TCP segment from the lan to one of the policy's SNI ports (`[domains] sni_ports`, default 443)
//! whose payload starts a TLS handshake record (type 22, version major 3) holding a ClientHello
//! (handshake type 1) is read as far as the segment goes: legacy version and random, session id
//! (≤ 32), cipher suites (even, non-zero length), compression methods, then the extensions, walked
//! with a bounded loop to server_name (type 0). Its first entry must be a host_name (type 0) of
//! 1–253 bytes (one trailing dot is dropped). The name is written in DNS wire format into the DNS
//! scratch and judged by `dns::judge_question`: the same suffix lookups, case folding and precedence
//! as a DNS query. Any other payload (application data, a non-TLS protocol on 443) is not ours.
//!
//! Outcomes besides pass/block: lengths that do not add up, a bad server_name or more than
//! `TLS_MAX_EXTENSIONS` extensions are *malformed*; a ClientHello whose server_name lies beyond this
//! segment (or whose handshake spans several records) is *split*. Both follow `[domains] malformed`
//! (drop as `malformed`, or pass) and are counted apart in `DOMAIN_STATS`, because a name we cannot
//! see might be a blocked one. A ClientHello without server_name passes (nothing to judge).

use aya_ebpf::programs::XdpContext;
use gateway_common::dname::{MAX_LABEL_LEN, MAX_TEXT_LEN};
use gateway_common::learn::{
    STAT_SNI_BLOCKED, STAT_SNI_CHECKED, STAT_SNI_MALFORMED, STAT_SNI_SPLIT, TLS_CLIENT_HELLO,
    TLS_EXT_SERVER_NAME, TLS_HANDSHAKE, TLS_MAX_EXTENSIONS, TLS_SNI_HOST_NAME,
};

use crate::{
    bound::{masked, opaque},
    dns::{self, Cell},
    maps, parse,
};

/// Bytes of the segment we look at: more than one MSS, so a whole first segment fits.
const BUF: usize = 2048;
const MASK: usize = BUF - 1;

/// Per-CPU working memory (value of `maps::SNI_SCRATCH`). Loop state lives here for the reason
/// `dns::Cell` gives.
#[repr(C)]
pub struct Scratch {
    buf: [u8; BUF],
    /// Bytes copied into `buf`.
    len: Cell,
    /// Extension walk: cursor and end of the extensions block (may lie beyond `len`).
    off: Cell,
    end: Cell,
    /// Walk result (`W_*`); then the server_name extension's data offset and length.
    state: Cell,
    found: Cell,
    found_len: Cell,
    /// Name conversion: where the host_name starts in `buf`, where the current label starts in
    /// the name, and whether a label broke the rules.
    name_off: Cell,
    label_start: Cell,
    bad: Cell,
}

/// What the inspection found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sni {
    /// Not a ClientHello, no server_name, or a name no listed name blocks.
    Pass,
    /// A listed name blocks the server_name; the domain feed.
    Block(u32),
    /// Malformed or split (counted apart); the policy's `malformed` setting decides.
    Unreadable,
}

const SPLIT: u64 = 3 << 32;

// Extension-walk results.
const W_TOO_MANY: u64 = 0;
const W_NONE: u64 = 1;
const W_FOUND: u64 = 2;
const W_MALFORMED: u64 = 3;
const W_SPLIT: u64 = 4;

/// Judges a TCP segment to an SNI port (the caller checked protocol, port and a non-empty payload).
#[inline(always)]
pub fn inspect(ctx: &XdpContext, pkt: &parse::Packet, slot: u8, seed: u64) -> Sni {
    let r = inspect_raw(ctx, pkt.payload as u32, pkt.payload_len as u32, slot, seed);
    match r & !0xffff_ffff {
        dns::PASS => Sni::Pass,
        dns::BLOCK => {
            maps::count(&maps::DOMAIN_STATS, STAT_SNI_BLOCKED);
            Sni::Block(r as u32)
        }
        SPLIT => {
            maps::count(&maps::DOMAIN_STATS, STAT_SNI_SPLIT);
            Sni::Unreadable
        }
        _ => {
            maps::count(&maps::DOMAIN_STATS, STAT_SNI_MALFORMED);
            Sni::Unreadable
        }
    }
}

/// Whether a field ending at `upto` is cut: beyond the ClientHello (`MALFORMED`) or beyond this
/// segment (`SPLIT`).
#[inline(always)]
fn short(upto: usize, hello_end: usize, copy: usize) -> Option<u64> {
    if upto > hello_end {
        Some(dns::MALFORMED)
    } else if upto > copy {
        Some(SPLIT)
    } else {
        None
    }
}

#[inline(always)]
fn be16(b: &[u8; BUF], at: usize) -> usize {
    let at = opaque(at);
    ((b[at & MASK] as usize) << 8) | b[(at + 1) & MASK] as usize
}

/// `PASS`, `MALFORMED`, `SPLIT` or `BLOCK | feed` (one register across the call).
#[inline(never)]
fn inspect_raw(ctx: &XdpContext, off: u32, len: u32, slot: u8, seed: u64) -> u64 {
    let Some(s) = maps::SNI_SCRATCH.get_ptr_mut(0) else {
        return dns::PASS;
    };
    // SAFETY: this CPU's scratch cell; XDP runs with preemption disabled and nothing else uses it.
    let s = unsafe { &mut *s };
    let len = len as usize;
    if len == 0 {
        return dns::PASS; // an empty payload: nothing to judge
    }
    let copy = if len > BUF { BUF } else { len };
    // The same number, written so the verifier sees it is never zero.
    let copy = 1 + ((copy - 1) & MASK);
    if !parse::load_bytes(ctx, off as usize, &mut s.buf, copy) {
        return dns::PASS;
    }
    let b = &s.buf;
    // Record header (type, version, length) and handshake header (type, 24-bit length).
    if b[0] != TLS_HANDSHAKE {
        return dns::PASS;
    }
    if copy < 6 {
        return SPLIT; // a handshake record cut before its type: cannot tell
    }
    if b[1] != 3 || b[5] != TLS_CLIENT_HELLO {
        return dns::PASS; // not TLS, or another handshake message
    }
    maps::count(&maps::DOMAIN_STATS, STAT_SNI_CHECKED);
    if copy < 9 {
        return SPLIT;
    }
    let record = be16(b, 3);
    let hello = ((b[6] as usize) << 16) | be16(b, 7);
    if hello + 4 > record {
        return SPLIT; // the ClientHello continues in another record
    }
    // Offsets from here are into the stream; every field is checked against the end of the
    // ClientHello first (malformed), then against what this segment holds (split).
    let hello_end = 9 + hello;
    let mut p = 9 + 2 + 32; // legacy_version, random
    if let Some(r) = short(p + 1, hello_end, copy) {
        return r;
    }
    let sid = b[masked(p, MASK)] as usize;
    if sid > 32 {
        return dns::MALFORMED;
    }
    p += 1 + sid;
    if let Some(r) = short(p + 2, hello_end, copy) {
        return r;
    }
    let suites = be16(b, p);
    if suites == 0 || suites & 1 != 0 {
        return dns::MALFORMED;
    }
    p += 2 + suites;
    if let Some(r) = short(p + 1, hello_end, copy) {
        return r;
    }
    let methods = b[masked(p, MASK)] as usize;
    if methods == 0 {
        return dns::MALFORMED;
    }
    p += 1 + methods;
    if p == hello_end {
        return dns::PASS; // no extensions, so no server_name
    }
    if let Some(r) = short(p + 2, hello_end, copy) {
        return r;
    }
    let ext_len = be16(b, p);
    p += 2;
    if p + ext_len != hello_end {
        return dns::MALFORMED;
    }

    // The extensions, one per loop step.
    s.len.set(copy as u64);
    s.off.set(p as u64);
    s.end.set(hello_end as u64);
    s.state.set(W_TOO_MANY);
    // SAFETY: `ext_step` has the callback signature bpf_loop expects; it takes no context.
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            TLS_MAX_EXTENSIONS,
            ext_step as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    match s.state.get() {
        W_FOUND => {}
        W_NONE => return dns::PASS,
        W_SPLIT => return SPLIT,
        _ => return dns::MALFORMED,
    }

    // server_name: list length, then the first entry (type, length, name).
    let f = s.found.get() as usize;
    let flen = s.found_len.get() as usize;
    let b = &s.buf;
    if flen < 5 {
        return dns::MALFORMED;
    }
    if f + 5 > copy {
        return SPLIT;
    }
    let list = be16(b, f);
    if list + 2 != flen || b[masked(f + 2, MASK)] != TLS_SNI_HOST_NAME {
        return dns::MALFORMED;
    }
    let mut name_len = be16(b, f + 3);
    if 5 + name_len > flen {
        return dns::MALFORMED;
    }
    let name = f + 5;
    if name + name_len > copy {
        return SPLIT;
    }
    if name_len > 0 && b[masked(name + name_len - 1, MASK)] == b'.' {
        name_len -= 1;
    }
    if name_len == 0 || name_len > MAX_TEXT_LEN {
        return dns::MALFORMED;
    }
    to_wire(s, name, name_len, slot, seed)
}

/// Writes the dotted name at `buf[name..name + len]` into the DNS scratch in wire format (labels
/// of 1–63 bytes) and judges it like a query's question.
#[inline(always)]
fn to_wire(s: &mut Scratch, name: usize, len: usize, slot: u8, seed: u64) -> u64 {
    let Some(d) = maps::DNS_SCRATCH.get_ptr_mut(0) else {
        return dns::PASS;
    };
    // SAFETY: this CPU's DNS scratch; the DNS query inspection does not run for this packet.
    let d = unsafe { &mut *d };
    s.name_off.set(name as u64);
    s.label_start.set(0);
    s.bad.set(0);
    // SAFETY: as for `ext_step`.
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            len as u32,
            wire_step as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    let last = len - s.label_start.get() as usize;
    if s.bad.get() != 0 || last == 0 || last > MAX_LABEL_LEN {
        return dns::MALFORMED;
    }
    let msg = d.msg_mut();
    msg[masked(dns::HEADER + s.label_start.get() as usize, dns::BUF_MASK)] = last as u8;
    // Root byte, then a zero QTYPE/QCLASS so the question is complete.
    let root = dns::HEADER + len + 1;
    for i in 0..5 {
        msg[masked(root + i, dns::BUF_MASK)] = 0;
    }
    dns::judge_question(d, root + 5, slot, seed)
}

/// One extension (a `bpf_loop` callback). Returns 1 to stop with `state` set.
#[inline(never)]
extern "C" fn ext_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = maps::SNI_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch cell, as in `inspect_raw`.
    let s = unsafe { &mut *s };
    let off = s.off.get() as usize;
    let end = s.end.get() as usize;
    let copy = s.len.get() as usize;
    if off == end {
        s.state.set(W_NONE);
        return 1;
    }
    if off + 4 > end {
        s.state.set(W_MALFORMED);
        return 1;
    }
    if off + 4 > copy {
        s.state.set(W_SPLIT);
        return 1;
    }
    let typ = be16(&s.buf, off);
    let l = be16(&s.buf, off + 2);
    if off + 4 + l > end {
        s.state.set(W_MALFORMED);
        return 1;
    }
    if typ == TLS_EXT_SERVER_NAME as usize {
        s.found.set(off as u64 + 4);
        s.found_len.set(l as u64);
        s.state.set(W_FOUND);
        return 1;
    }
    s.off.set((off + 4 + l) as u64);
    0
}

/// One byte of the host_name (a `bpf_loop` callback): a dot ends a label (its length byte goes
/// where the label started), any other byte is copied one place to the right of its text offset.
#[inline(never)]
extern "C" fn wire_step(index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let (Some(s), Some(d)) = (
        maps::SNI_SCRATCH.get_ptr_mut(0),
        maps::DNS_SCRATCH.get_ptr_mut(0),
    ) else {
        return 1;
    };
    // SAFETY: this CPU's scratch cells, as in `inspect_raw` and `to_wire`.
    let (s, d) = unsafe { (&mut *s, &mut *d) };
    let i = (index as usize) & 0xff; // < MAX_TEXT_LEN: the loop count
    let c = s.buf[masked(s.name_off.get() as usize + i, MASK)];
    let msg = d.msg_mut();
    if c == b'.' {
        let start = s.label_start.get() as usize;
        if i <= start || i - start > MAX_LABEL_LEN {
            s.bad.set(1);
            return 1;
        }
        msg[masked(dns::HEADER + start, dns::BUF_MASK)] = (i - start) as u8;
        s.label_start.set(i as u64 + 1);
    } else {
        msg[masked(dns::HEADER + i + 1, dns::BUF_MASK)] = c;
    }
    0
}
