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

use crate::{maps, parse};

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
    /// The start of the DNS message: header and question.
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
    /// The deciding node of a block: its hash and whether it is the whole name (1) or a parent
    /// (0). For the learnt-address set (learn.rs), which re-checks that node on every hit.
    decided_hash: Cell,
    decided_whole: Cell,
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

    /// `(hash, whole)` of the node that blocked, after `judge_question` returned `BLOCK`.
    #[inline(always)]
    pub(crate) fn blocking_node(&self) -> (u64, bool) {
        (self.decided_hash.get(), self.decided_whole.get() != 0)
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

/// Judges a UDP datagram to port 53 (the caller checked protocol and port). A function of its own
/// (a BPF subprogram): its loops and locals stay out of the verdict code's stack frame.
#[inline(always)]
pub fn inspect(ctx: &XdpContext, pkt: &parse::Packet, slot: u8, seed: u64) -> Dns {
    let r = inspect_raw(
        ctx,
        pkt.udp_payload as u32,
        pkt.udp_payload_len as u32,
        slot,
        seed,
    );
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
    let l = s.msg[(HEADER + pos) & BUF_MASK] as usize;
    if l == 0 {
        if HEADER + pos + 1 + 4 <= copy {
            s.decided.set(PASS);
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
    s.offs[labels & OFFS_MASK] = pos as u8;
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
        at = HEADER + s.offs[j & OFFS_MASK] as usize;
        let l = s.msg[at & BUF_MASK];
        h = dname::step_len(h, l);
        rem = l as usize;
    } else {
        h = dname::step_byte(h, s.msg[at & BUF_MASK]);
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
                s.decided_hash.set(h);
                s.decided_whole.set((j == 0) as u64);
            }
            Say::Pass => s.decided.set(PASS),
        }
    }
    0
}
