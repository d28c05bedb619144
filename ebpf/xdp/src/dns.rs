//! DNS queries for listed names (issue 6, verdict step 2.2 on lan ingress). Keep identical to the
//! reference model (`gateway-reference`'s `dns`) and `gateway_policy::domains::DomainSet::decide`.
//!
//! A UDP datagram to port 53 is a query we judge when its header says QR = 0, OPCODE = 0 and
//! QDCOUNT = 1; anything else (responses, updates, several questions) is left to the later steps.
//! The question must be walkable: label lengths 1–63 up to the root byte, no compression pointer or
//! reserved label type, at most 255 bytes of name, QTYPE and QCLASS present. A query that breaks
//! one of these is *malformed DNS* — counted as `malformed` and dropped, or passed on when the
//! policy says `[domains] malformed = "pass"` — because a name we cannot read might be a blocked one.
//!
//! The name is walked once to record where each label starts, then hashed label by label from the
//! top-level domain down (`gateway_common::dname`): after each label the state is that suffix's
//! hash, looked up in `DOMAINS`; the last node with something to say decides (`dname::node_say`).
//! The bytes are copied into per-CPU scratch first, so the walk is plain bounded array indexing.

use aya_ebpf::programs::XdpContext;
use gateway_common::dname::{self, MAX_LABELS, MAX_WIRE_LEN, Say};

use gateway_common::{
    event::{
        DNS_DROPPED, DNS_EVENT_NAME, DNS_NXDOMAIN, DNS_SINKHOLE, DNS_VIA_LEARNT, DNS_VIA_QUERY,
        DnsDetail,
    },
    maps::IPPROTO_TCP,
    values::{SETTING_DNS_SINKHOLE_V4, SETTING_DNS_SINKHOLE_V6},
};

use crate::{bound::masked, maps, parse};

/// DNS header bytes.
pub(crate) const HEADER: usize = 12;
/// Header, the longest name and QTYPE/QCLASS: all of a question we ever need.
pub(crate) const QUESTION_MAX: usize = HEADER + MAX_WIRE_LEN + 4;
/// Scratch size: a power of two above `QUESTION_MAX`, so a mask proves every index in bounds.
pub(crate) const BUF: usize = 512;
pub(crate) const BUF_MASK: usize = BUF - 1;
/// Label-offset slots: a power of two ≥ `MAX_LABELS`.
const OFFS: usize = 128;
const OFFS_MASK: usize = OFFS - 1;
const _: () = assert!(QUESTION_MAX <= BUF && MAX_LABELS <= OFFS);

/// Per-CPU working memory (value of `maps::DNS_SCRATCH`).
#[repr(C)]
pub struct Scratch {
    /// The L4 header of an answer built in place, right before `msg` (repr(C), byte arrays, no
    /// padding), so header and message are one contiguous run for the checksum and the store: a
    /// UDP header in the last 8 bytes, or a TCP header and the message's two-byte length in the
    /// last 22.
    head: [u8; HEAD],
    /// The start of the DNS message: header and question (then the answer built over it).
    msg: [u8; BUF],
    /// Offset of each label's length byte, relative to the name's start (≤ 254: fits a byte).
    offs: [u8; OFFS],
    /// Loop state, kept in map memory on purpose (see [`Cell`]).
    pos: Cell,
    labels: Cell,
    at: Cell,
    rem: Cell,
    hash: Cell,
    decided: Cell,
    /// Wire length of the question's name with its root byte, once the walk found the root.
    qlen: Cell,
    /// Offset in the name and hash of the listed suffix behind a block (for the drop event, and
    /// for the learnt-address set of learn.rs, which re-checks that node on every hit).
    match_off: Cell,
    match_hash: Cell,
    /// What [`answer`] did with the query (`DNS_*` of gateway_common::event), reset by every
    /// inspection. Handed over through map memory rather than a return value on purpose: the
    /// verifier then walks the drop-event and flow code once, not once per possible outcome.
    answered: Cell,
    /// Which step made the last `domain` decision of this run (`DNS_VIA_*` of
    /// gateway_common::event), set by [`mark`].
    via: Cell,
}

impl Scratch {
    /// The message buffer, for the other users of `judge_question` (sni.rs, learn.rs).
    #[inline(always)]
    pub(crate) fn msg_mut(&mut self) -> &mut [u8; BUF] {
        &mut self.msg
    }

    /// Offset of the question name's root byte from the name's start, after a `judge_question`
    /// that did not return `MALFORMED`.
    #[inline(always)]
    pub(crate) fn root_pos(&self) -> usize {
        self.pos.get() as usize
    }

    /// `(hash, whole)` of the node that blocked, after `judge_question` returned `BLOCK`: the
    /// listed suffix starts at offset 0 exactly when it is the whole name (label offsets grow).
    #[inline(always)]
    pub(crate) fn blocking_node(&self) -> (u64, bool) {
        (self.match_hash.get(), self.match_off.get() == 0)
    }
}

/// A loop variable the verifier cannot follow. In registers, every value a path gives it (a label
/// position, a remaining length) is a distinct verifier state, so the paths through 255 iterations
/// multiply past the verifier's budget; read back from map memory it is an unknown number each
/// iteration, the states at the loop head are equal and the verifier prunes them. Volatile so LLVM
/// keeps the loads and stores. Every use is bounded by a check or a mask, as it must be anyway.
#[repr(transparent)]
pub(crate) struct Cell(u64);

impl Cell {
    #[inline(always)]
    pub(crate) fn get(&self) -> u64 {
        // SAFETY: a plain aligned field of the scratch value.
        unsafe { core::ptr::read_volatile(&self.0) }
    }

    #[inline(always)]
    pub(crate) fn set(&mut self, v: u64) {
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&mut self.0, v) }
    }
}

/// What the inspection found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dns {
    /// Not a query we judge, or no listed name says to block it.
    Pass,
    /// A listed name blocks it; the domain feed to attribute it to.
    Block(u32),
    /// A query whose question cannot be walked.
    Malformed,
}

pub(crate) const PASS: u64 = 0;
pub(crate) const MALFORMED: u64 = 1 << 32;
pub(crate) const BLOCK: u64 = 2 << 32;

/// Judges a UDP datagram or a TCP segment with data to port 53 (the caller checked protocol, port
/// and, for TCP, that the segment carries data). A function of its own (a BPF subprogram): its
/// loops and locals stay out of the verdict code's stack frame.
///
/// Over TCP (RFC 1035 §4.2.2) the segment's payload starts with the message's two-byte length; the
/// message must lie whole in this segment, else the query is malformed (judged per policy): we do
/// not reassemble streams, and a name we cannot read might be a blocked one. Every data segment
/// to port 53 is read this way, so a client that splits the length from the message or a message
/// across segments is treated as malformed too.
#[inline(always)]
pub fn inspect(ctx: &XdpContext, pkt: &parse::Packet, slot: u8, seed: u64) -> Dns {
    let (off, len) = if pkt.proto == IPPROTO_TCP {
        let mut prefix = [0u8; 2];
        if pkt.payload_len < 2 || !parse::load_bytes(ctx, pkt.payload as usize, &mut prefix, 2) {
            return Dns::Malformed;
        }
        let msg = u16::from_be_bytes(prefix) as u32;
        if msg > pkt.payload_len as u32 - 2 {
            return Dns::Malformed;
        }
        (pkt.payload as u32 + 2, msg)
    } else {
        (pkt.payload as u32, pkt.payload_len as u32)
    };
    let r = inspect_raw(ctx, off, len, slot, seed);
    match r & !0xffff_ffff {
        MALFORMED => Dns::Malformed,
        BLOCK => Dns::Block(r as u32),
        _ => Dns::Pass,
    }
}

/// `PASS`, `MALFORMED` or `BLOCK | feed` (a plain integer: one register across the call).
#[inline(never)]
fn inspect_raw(ctx: &XdpContext, off: u32, len: u32, slot: u8, seed: u64) -> u64 {
    let Some(s) = maps::DNS_SCRATCH.get_ptr_mut(0) else {
        return PASS;
    };
    // SAFETY: this CPU's scratch cell; XDP runs with preemption disabled and nothing else uses it.
    let s = unsafe { &mut *s };
    let len = len as usize;
    if len < HEADER {
        return MALFORMED;
    }
    let copy = if len > QUESTION_MAX {
        QUESTION_MAX
    } else {
        len
    };
    if !parse::load_bytes(ctx, off as usize, &mut s.msg, copy) {
        return MALFORMED;
    }
    let m = &s.msg;
    let qr = m[2] & 0x80 != 0;
    let opcode = (m[2] >> 3) & 0x0f;
    let qdcount = u16::from_be_bytes([m[4], m[5]]);
    if qr || opcode != 0 || qdcount != 1 {
        return PASS;
    }
    judge_question(s, copy, slot, seed)
}

/// Judges the question name at `msg[HEADER..copy]` (QTYPE/QCLASS must follow it): `PASS`,
/// `MALFORMED` or `BLOCK | feed`. Shared with sni.rs (a server_name written there in wire format)
/// and learn.rs (the question of a response).
#[inline(always)]
pub(crate) fn judge_question(s: &mut Scratch, copy: usize, slot: u8, seed: u64) -> u64 {
    // 1. Where each label starts; the name must end with the root byte within 255 bytes.
    s.qlen.set(0);
    s.answered.set(DNS_DROPPED as u64);
    s.match_off.set(0);
    s.match_hash.set(0);
    s.pos.set(0);
    s.labels.set(0);
    s.rem.set(copy as u64); // the walk's bound: bytes copied
    s.decided.set(MALFORMED); // until the walk finds the root
    let mut ctx = LoopCtx { slot: slot as u64 };
    // SAFETY: `walk_step` has the callback signature bpf_loop expects; `ctx` outlives the call.
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            MAX_LABELS as u32 + 1,
            walk_step as *mut core::ffi::c_void,
            (&mut ctx as *mut LoopCtx).cast(),
            0,
        )
    };
    if s.decided.get() != PASS {
        return MALFORMED;
    }

    // 2. Suffix hashes from the top-level domain down, one lookup per label. One step per byte of
    //    the name (at most 254 besides the root), switching label when one is used up.
    s.hash.set(dname::start(seed));
    s.at.set(0);
    s.rem.set(0);
    // SAFETY: as above.
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            MAX_WIRE_LEN as u32,
            hash_step as *mut core::ffi::c_void,
            (&mut ctx as *mut LoopCtx).cast(),
            0,
        )
    };
    s.decided.get()
}

/// What the loop callbacks need besides the scratch.
#[repr(C)]
struct LoopCtx {
    slot: u64,
}

/// One label of the walk (a `bpf_loop` callback: verified once, not once per iteration). Returns 1
/// to stop. Leaves `decided` = `PASS` when the root byte was found with QTYPE/QCLASS after it.
#[inline(never)]
extern "C" fn walk_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = maps::DNS_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch cell, as in `inspect_raw`.
    let s = unsafe { &mut *s };
    let copy = s.rem.get() as usize;
    let pos = s.pos.get() as usize;
    if pos >= MAX_WIRE_LEN || HEADER + pos >= copy {
        return 1; // truncated: stays MALFORMED
    }
    let l = s.msg[masked(HEADER + pos, BUF_MASK)] as usize;
    if l == 0 {
        if HEADER + pos + 1 + 4 <= copy {
            s.decided.set(PASS);
            s.qlen.set(pos as u64 + 1);
        }
        return 1; // the root; QTYPE/QCLASS must follow
    }
    if l & 0xc0 != 0 {
        return 1; // compression pointer or reserved label type
    }
    let labels = s.labels.get() as usize;
    if labels >= MAX_LABELS {
        return 1;
    }
    s.offs[masked(labels, OFFS_MASK)] = pos as u8;
    s.labels.set(labels as u64 + 1);
    let next = pos + 1 + l;
    if next >= MAX_WIRE_LEN {
        return 1; // with the root byte, longer than 255 bytes
    }
    s.pos.set(next as u64);
    0
}

/// One byte of the name, right to left by label (a `bpf_loop` callback). Returns 1 when done.
#[inline(never)]
extern "C" fn hash_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = maps::DNS_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch cell, as in `inspect_raw`.
    let s = unsafe { &mut *s };
    // SAFETY: `ctx` is the caller's `LoopCtx`, alive for the whole bpf_loop call.
    let slot = unsafe { (*ctx.cast::<LoopCtx>()).slot } as u8;
    let mut h = s.hash.get();
    let mut j = s.labels.get() as usize;
    let mut at = s.at.get() as usize;
    let mut rem = s.rem.get() as usize;
    if rem == 0 {
        if j == 0 {
            return 1;
        }
        j -= 1;
        s.labels.set(j as u64);
        at = HEADER + s.offs[masked(j, OFFS_MASK)] as usize;
        let l = s.msg[masked(at, BUF_MASK)];
        h = dname::step_len(h, l);
        rem = l as usize;
    } else {
        h = dname::step_byte(h, s.msg[masked(at, BUF_MASK)]);
        rem -= 1;
    }
    s.hash.set(h);
    s.at.set(at as u64 + 1);
    s.rem.set(rem as u64);
    if rem == 0
        && let Some(v) = maps::domain(slot, h)
    {
        match dname::node_say(v.flags, j == 0) {
            Say::Nothing => {}
            Say::Block => {
                s.decided.set(BLOCK | v.feed as u64);
                s.match_off.set(s.offs[masked(j, OFFS_MASK)] as u64);
                s.match_hash.set(h);
            }
            Say::Pass => s.decided.set(PASS),
        }
    }
    0
}

/// Records which step made this run's `domain` decision (before the exit reads [`named`] and
/// [`answerable`]). The scratch is per CPU and per run: every `domain` decision marks it.
#[inline(always)]
pub fn mark(via: u8) {
    if let Some(s) = maps::DNS_SCRATCH.get_ptr_mut(0) {
        // SAFETY: this CPU's scratch cell, as in `inspect_raw`.
        unsafe { (*s).via.set(via as u64) };
    }
}

#[inline(always)]
fn via() -> u64 {
    match maps::DNS_SCRATCH.get_ptr(0) {
        // SAFETY: this CPU's scratch cell, as in `inspect_raw`.
        Some(s) => unsafe { (*s).via.get() },
        None => DNS_VIA_LEARNT as u64,
    }
}

/// The `domain` drop of this run was a DNS query: [`answer`] may turn it into its answer.
#[inline(always)]
pub fn answerable() -> bool {
    via() == DNS_VIA_QUERY as u64
}

/// The `domain` drop of this run has a name in the scratch for [`detail`] (all but a learnt
/// address: that packet carries no name, and the scratch holds an earlier packet's).
#[inline(always)]
pub fn named() -> bool {
    via() != DNS_VIA_LEARNT as u64
}

/// Fills the DNS part of the drop event of the query [`inspect`] just blocked on this CPU (the
/// scratch still holds its question: same program run, no preemption).
#[inline(always)]
pub fn detail(out: &mut DnsDetail) {
    let Some(s) = maps::DNS_SCRATCH.get_ptr(0) else {
        return;
    };
    // SAFETY: this CPU's scratch cell, as in `inspect_raw`.
    let s = unsafe { &*s };
    let qlen = s.qlen.get() as usize & 0xff;
    out.matched_hash = s.match_hash.get();
    out.qtype = u16::from_be_bytes([
        s.msg[masked(HEADER + qlen, BUF_MASK)],
        s.msg[masked(HEADER + qlen + 1, BUF_MASK)],
    ]);
    out.name_len = qlen as u8;
    out.match_off = s.match_off.get() as u8;
    out.answer = s.answered.get() as u8;
    out.via = s.via.get() as u8;
    // A fixed-size copy (LLVM expands it into plain loads and stores); the reader uses only the
    // first `name_len` bytes.
    let mut name = [0u8; DNS_EVENT_NAME];
    name.copy_from_slice(&s.msg[HEADER..HEADER + DNS_EVENT_NAME]);
    out.name = name;
}

/// Where the answer goes: offsets of the IP and UDP/TCP headers in the frame.
#[derive(Clone, Copy)]
pub struct Place {
    pub l3: u32,
    pub l4: u32,
    pub v6: bool,
    pub tcp: bool,
}

/// Room before the message in the scratch: the longest L4 prefix of an answer.
const HEAD: usize = 24;
/// UDP header; TCP header without options and the message length.
const UDP_HEAD: usize = 8;
const TCP_HEAD: usize = 22;
const _: () = assert!(UDP_HEAD <= HEAD && TCP_HEAD <= HEAD);

/// TTL / hop limit of the answer.
const ANSWER_TTL: u8 = 64;
/// Longest answer: header, question, one record with an IPv6 address. A mask-friendly bound.
const ANSWER_MAX: usize = QUESTION_MAX + 12 + 16;
const _: () = assert!(ANSWER_MAX + 3 < BUF);

/// Turns the query [`inspect`] just blocked into its answer, in the same frame, for `XDP_TX`
/// out of the port it came in on: Ethernet addresses, IP addresses and UDP ports swapped (VLAN
/// tags untouched), the DNS header made a response (QR, RD copied, RA set, CD copied, RCODE
/// NXDOMAIN or NOERROR), the question kept and everything after it (EDNS OPT, other records)
/// cut, for a sinkhole one answer record appended (name = compression pointer to the question),
/// the frame trimmed or grown to fit, IP lengths, IPv4 header checksum and UDP checksum computed
/// afresh. Over TCP the answer continues the client's stream: sequence number = the client's
/// acknowledgement number, acknowledgement number = its sequence number + the segment's data,
/// PSH|ACK, no options, then the length-prefixed message (the resolver, which saw the handshake
/// but not the query, drops the connection on its own timeouts). Leaves `DNS_NXDOMAIN` /
/// `DNS_SINKHOLE` for [`answered`] when the frame now holds the
/// answer, else `DNS_DROPPED` (the caller drops): IPv4 options, IPv6 extension headers or an IPv4 fragment are
/// not answered, they are rare for DNS and answering them right is not worth the code.
#[inline(always)]
pub fn answer(ctx: &XdpContext, slot: u8, at: &Place) {
    let kind = at.v6 as u32 | (at.tcp as u32) << 1;
    let r = answer_raw(ctx, slot as u32, at.l3, at.l4, kind);
    if let Some(s) = maps::DNS_SCRATCH.get_ptr_mut(0) {
        // SAFETY: this CPU's scratch cell, as in `inspect_raw`.
        unsafe { (*s).answered.set(r as u64) };
    }
}

/// What [`answer`] did with the query of this run, once [`inspect`] blocked it.
#[inline(always)]
pub fn answered() -> u8 {
    match maps::DNS_SCRATCH.get_ptr(0) {
        // SAFETY: this CPU's scratch cell, as in `inspect_raw`.
        Some(s) => unsafe { (*s).answered.get() as u8 },
        None => DNS_DROPPED,
    }
}

#[inline(never)]
fn answer_raw(ctx: &XdpContext, slot: u32, l3: u32, l4: u32, kind: u32) -> u8 {
    let (l3, l4, v6, tcp) = (l3 as usize, l4 as usize, kind & 1 != 0, kind & 2 != 0);
    let Some(settings) = maps::settings(slot as u8) else {
        return DNS_DROPPED;
    };
    let Some(s) = maps::DNS_SCRATCH.get_ptr_mut(0) else {
        return DNS_DROPPED;
    };
    // SAFETY: this CPU's scratch cell, as in `inspect_raw`.
    let s = unsafe { &mut *s };
    if l4 != l3 + if v6 { 40 } else { 20 } || l3 > 64 {
        return DNS_DROPPED; // IPv4 options or IPv6 extension headers
    }
    let mut ip = [0u8; 40];
    let iplen = if v6 { 40 } else { 20 };
    if !parse::load_bytes(ctx, l3, &mut ip, iplen) {
        return DNS_DROPPED;
    }
    if !v6 && (ip[6] & 0x3f != 0 || ip[7] != 0) {
        return DNS_DROPPED; // a fragment: the query is not whole in this frame
    }
    let mut eth = [0u8; 12];
    // The UDP header and the DNS header after it, or the TCP header: 20 bytes either way.
    let mut q = [0u8; 20];
    if !parse::load_bytes(ctx, 0, &mut eth, 12) || !parse::load_bytes(ctx, l4, &mut q, 20) {
        return DNS_DROPPED;
    }
    // TCP: the client's segment must acknowledge the server's SYN (it does, once established):
    // its acknowledgement number is the sequence number of our answer.
    if tcp && q[13] & 0x10 == 0 {
        return DNS_DROPPED;
    }
    let qlen = s.qlen.get() as usize;
    if qlen == 0 || qlen > MAX_WIRE_LEN {
        return DNS_DROPPED;
    }
    let qend = HEADER + qlen + 4;
    let m = &mut s.msg;
    let qtype = u16::from_be_bytes([
        m[masked(HEADER + qlen, BUF_MASK)],
        m[masked(HEADER + qlen + 1, BUF_MASK)],
    ]);
    let class_in =
        m[masked(HEADER + qlen + 2, BUF_MASK)] == 0 && m[masked(HEADER + qlen + 3, BUF_MASK)] == 1;
    let flags = settings.flags;
    let rdlen: usize = if class_in && qtype == 1 && flags & SETTING_DNS_SINKHOLE_V4 != 0 {
        4
    } else if class_in && qtype == 28 && flags & SETTING_DNS_SINKHOLE_V6 != 0 {
        16
    } else {
        0
    };

    // DNS header: a response to this query, from a resolver (RA) that is not authoritative.
    m[2] = 0x80 | (m[2] & 0x01); // QR, OPCODE 0 (only those are judged), RD copied
    m[3] = 0x80 | (m[3] & 0x10) | if rdlen == 0 { 3 } else { 0 }; // RA, CD copied, RCODE
    m[4] = 0;
    m[5] = 1;
    m[6] = 0;
    m[7] = (rdlen != 0) as u8;
    m[8] = 0;
    m[9] = 0;
    m[10] = 0;
    m[11] = 0;
    let mut dlen = qend;
    if rdlen != 0 {
        // NAME = pointer to offset 12 (the question's name), TYPE and CLASS as asked, TTL, RDATA.
        let ttl = settings.sinkhole_ttl.to_be_bytes();
        let rec = [
            0xc0,
            0x0c,
            (qtype >> 8) as u8,
            qtype as u8,
            0,
            1,
            ttl[0],
            ttl[1],
            ttl[2],
            ttl[3],
            0,
            rdlen as u8,
        ];
        for (i, b) in rec.iter().enumerate() {
            m[masked(qend + i, BUF_MASK)] = *b;
        }
        let at = qend + 12;
        if rdlen == 4 {
            for i in 0..4 {
                m[masked(at + i, BUF_MASK)] = settings.sinkhole_v4[i];
            }
        } else {
            for i in 0..16 {
                m[masked(at + i, BUF_MASK)] = settings.sinkhole_v6[i];
            }
        }
        dlen = at + rdlen;
    }
    // Zeros up to a multiple of four after the message: bpf_csum_diff sums whole 32-bit words.
    for i in 0..3 {
        m[masked(dlen + i, BUF_MASK)] = 0;
    }
    let hlen = if tcp { TCP_HEAD } else { UDP_HEAD };
    let l4_len = hlen + dlen;

    // The frame's new size, then the writes (offsets only: the resize invalidates pointers).
    // The length as a helper returns it: `data_end - data` would be pointer arithmetic the
    // verifier refuses once LLVM folds it into the subtraction below.
    // SAFETY: plain helper call on the live context.
    let old = unsafe { aya_ebpf::helpers::generated::bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    let new = l4 + l4_len;
    // SAFETY: plain helper call on the live context; the kernel refuses a size it cannot give.
    if unsafe {
        aya_ebpf::helpers::generated::bpf_xdp_adjust_tail(ctx.ctx, new as i32 - old as i32)
    } != 0
    {
        return DNS_DROPPED;
    }

    // Ethernet: back to the sender.
    let mut eth_out = [0u8; 12];
    eth_out[..6].copy_from_slice(&eth[6..12]);
    eth_out[6..].copy_from_slice(&eth[..6]);
    // IP: addresses swapped, lengths of the answer, a fresh TTL; the pseudo-header sum.
    let proto: u64 = if tcp { 6 } else { 17 };
    // The client's data in its segment (TCP): what our acknowledgement number adds to its sequence.
    let ip_payload = if v6 {
        u16::from_be_bytes([ip[4], ip[5]]) as usize
    } else {
        (u16::from_be_bytes([ip[2], ip[3]]) as usize).saturating_sub(20)
    };
    let seg_data = ip_payload.saturating_sub(((q[12] >> 4) as usize) * 4) as u32;
    let mut pseudo: u64 = proto + l4_len as u64;
    if v6 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&ip[8..24]);
        let src = ip;
        ip[8..24].copy_from_slice(&src[24..40]);
        ip[24..40].copy_from_slice(&a);
        ip[4] = (l4_len >> 8) as u8;
        ip[5] = l4_len as u8;
        ip[7] = ANSWER_TTL;
        pseudo += sum16(&ip[8..40]);
    } else {
        let total = 20 + l4_len;
        let mut a = [0u8; 4];
        a.copy_from_slice(&ip[12..16]);
        let src = ip;
        ip[12..16].copy_from_slice(&src[16..20]);
        ip[16..20].copy_from_slice(&a);
        ip[2] = (total >> 8) as u8;
        ip[3] = total as u8;
        ip[8] = ANSWER_TTL;
        ip[10] = 0;
        ip[11] = 0;
        let c = !fold(sum16(&ip[..20]));
        ip[10] = (c >> 8) as u8;
        ip[11] = c as u8;
        pseudo += sum16(&ip[12..20]);
    }
    // L4: ports swapped. UDP: the length. TCP: sequence number = the client's acknowledgement
    // number, acknowledgement number = the client's sequence number + its data, PSH|ACK, no
    // options (the client's timestamps would be wrong coming from us), then the message length.
    let at = HEAD - hlen;
    if tcp {
        let seq = [q[8], q[9], q[10], q[11]];
        let ack = u32::from_be_bytes([q[4], q[5], q[6], q[7]])
            .wrapping_add(seg_data)
            .to_be_bytes();
        let h = [
            q[2],
            q[3],
            q[0],
            q[1],
            seq[0],
            seq[1],
            seq[2],
            seq[3],
            ack[0],
            ack[1],
            ack[2],
            ack[3],
            0x50,
            0x18,
            0xff,
            0xff,
            0,
            0,
            0,
            0,
            (dlen >> 8) as u8,
            dlen as u8,
        ];
        for (i, b) in h.iter().enumerate() {
            s.head[HEAD - TCP_HEAD + i] = *b;
        }
    } else {
        let h = [
            q[2],
            q[3],
            q[0],
            q[1],
            (l4_len >> 8) as u8,
            l4_len as u8,
            0,
            0,
        ];
        for (i, b) in h.iter().enumerate() {
            s.head[HEAD - UDP_HEAD + i] = *b;
        }
    }
    let words = (l4_len + 3) & !3;
    if words > TCP_HEAD + ANSWER_MAX + 3 {
        return DNS_DROPPED;
    }
    // SAFETY: the run from `head[at]` through `msg` is `words` ≤ HEAD + BUF bytes of this map
    // value (bounded just above); bpf_csum_diff only reads them.
    let partial = unsafe {
        aya_ebpf::helpers::generated::bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            s.head.as_mut_ptr().add(at).cast(),
            words as u32,
            0,
        )
    };
    if partial < 0 {
        return DNS_DROPPED;
    }
    // bpf_csum_diff sums 16-bit words as loaded from memory (native order); byte-swap the
    // big-endian pseudo-header sum into that order before adding, and store the result the same way.
    let native = fold(partial as u32 as u64 + u64::from(fold(pseudo).swap_bytes()));
    let mut csum = !native;
    if csum == 0 && !tcp {
        csum = 0xffff; // 0 means "no checksum" in UDP
    }
    let c = csum.to_ne_bytes();
    // The checksum field: bytes 6–7 of a UDP header, 16–17 of a TCP header.
    let field = if tcp {
        HEAD - TCP_HEAD + 16
    } else {
        HEAD - UDP_HEAD + 6
    };
    s.head[field] = c[0];
    s.head[field + 1] = c[1];

    // SAFETY: `at` < HEAD: the pointer stays inside the scratch value.
    let from = unsafe { s.head.as_ptr().add(at) };
    if !store(ctx, 0, eth_out.as_ptr(), 12)
        || !store(ctx, l3, ip.as_ptr(), iplen)
        || !store(ctx, l4, from, l4_len)
    {
        return DNS_DROPPED;
    }
    if rdlen == 0 {
        DNS_NXDOMAIN
    } else {
        DNS_SINKHOLE
    }
}

/// Writes `len` bytes (1–`TCP_HEAD + ANSWER_MAX`) at `off` of the frame; `false` when they do
/// not fit.
#[inline(always)]
fn store(ctx: &XdpContext, off: usize, from: *const u8, len: usize) -> bool {
    if len == 0 || len > TCP_HEAD + ANSWER_MAX || off > 2048 {
        return false;
    }
    // SAFETY: `from` points at `len` readable bytes (a local array or the scratch's head+msg run);
    // the helper checks `off + len` against the frame.
    unsafe {
        aya_ebpf::helpers::generated::bpf_xdp_store_bytes(
            ctx.ctx,
            off as u32,
            from as *mut core::ffi::c_void,
            len as u32,
        ) == 0
    }
}

/// Sum of big-endian 16-bit words (an even number of bytes), not folded.
#[inline(always)]
fn sum16(b: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i + 1 < b.len() {
        sum += u64::from(u16::from_be_bytes([b[i], b[i + 1]]));
        i += 2;
    }
    sum
}

/// Ones'-complement fold to 16 bits.
#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}
