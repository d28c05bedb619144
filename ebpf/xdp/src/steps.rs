//! The name inspections, each a program of its own reached by a tail call from `gateway`: a DNS
//! query (step 2a), a TLS ClientHello (2b), a DNS response (every role, last). Together with the
//! verdict code they exceed the verifier's one-million-instruction budget of kernel 6.1 (the
//! firmware image's); apart, each program is verified on its own budget, and the entry program
//! carries none of the name parsing. A tail call does not return: the step program finishes the
//! packet (stats, flow, drop event, action) with the same exit as `gateway`.
//!
//! The judgement so far and the parsed packet travel in `PENDING`, a per-CPU cell: XDP runs with
//! preemption disabled, so nothing else runs on this CPU between the hand-over and the step. The
//! step reads the packet's bytes again through `parse::load_bytes`, which checks every read
//! against the frame, so offsets from the cell need no trust.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use gateway_common::{
    Reason,
    maps::{STEP_DNS_RESPONSE, STEP_PROGRAMS},
};

use crate::{Judgement, exit, maps, parse::Packet, policy, policy::Decision};

/// `Judgement::step` of a final judgement.
pub const NONE: u32 = u32::MAX;

#[map]
static NAME_STEPS: ProgramArray = ProgramArray::with_max_entries(STEP_PROGRAMS.len() as u32, 0);

/// What the entry program knew when it handed the packet over.
#[derive(Clone, Copy)]
pub struct Pending {
    pkt: Packet,
    j: Judgement,
}

#[map]
static PENDING: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

/// Stores the judgement and tail-calls its step. Returns only if the call failed.
#[inline(always)]
pub fn hand_over(ctx: &XdpContext, pkt: &Packet, j: &Judgement) {
    let Some(p) = PENDING.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's cell (see the module docs).
    unsafe {
        (*p).pkt = *pkt;
        (*p).j = *j;
    }
    call(ctx, j.step);
}

#[inline(always)]
fn call(ctx: &XdpContext, step: u32) {
    // SAFETY: every program in NAME_STEPS is an XDP program of this object taking the same context.
    let _ = unsafe { NAME_STEPS.tail_call(ctx, step) };
}

/// The pending packet, or `None` (an array cell always exists; the verifier wants the check).
#[inline(always)]
fn pending() -> Option<&'static mut Pending> {
    // SAFETY: this CPU's cell (see the module docs); the reference does not outlive the program run.
    PENDING.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// 2a: a DNS query from the lan, then the lan steps after it and, for a response-shaped query
/// (UDP from port 53), the response step.
#[xdp]
pub fn dns_query(ctx: XdpContext) -> u32 {
    let Some(p) = pending() else {
        return xdp_action::XDP_DROP;
    };
    judge_dns_query(&ctx, p);
    if p.j.step == STEP_DNS_RESPONSE {
        call(&ctx, STEP_DNS_RESPONSE);
        // As in `gateway`: only reached if the tail call failed.
        p.j.decision = Decision::plain(Reason::Malformed);
    }
    exit::<true>(&ctx, &p.pkt, &p.j)
}

/// The judging part of each step program is a function of its own (a BPF subprogram), as `judge`
/// is in `gateway`: inlined, its frame and the exit's would exceed the 512-byte BPF stack.
#[inline(never)]
fn judge_dns_query(ctx: &XdpContext, p: &mut Pending) {
    p.j.step = NONE;
    let Some(settings) = maps::settings(p.j.slot) else {
        p.j.decision = Decision::plain(Reason::NoPolicy);
        return;
    };
    p.j.decision = policy::dns_query(ctx, p.j.slot, settings, &p.pkt);
    if p.j.decision.reason == Reason::Pass && policy::response_step(settings, &p.pkt) {
        p.j.step = STEP_DNS_RESPONSE;
    }
}

/// 2b: a TLS ClientHello from the lan, then the lan steps after it.
#[xdp]
pub fn tls_hello(ctx: XdpContext) -> u32 {
    let Some(p) = pending() else {
        return xdp_action::XDP_DROP;
    };
    judge_tls_hello(&ctx, p);
    exit::<false>(&ctx, &p.pkt, &p.j)
}

#[inline(never)]
fn judge_tls_hello(ctx: &XdpContext, p: &mut Pending) {
    p.j.step = NONE;
    p.j.decision = match maps::settings(p.j.slot) {
        Some(settings) => policy::tls_hello(ctx, p.j.slot, settings, &p.pkt),
        None => Decision::plain(Reason::NoPolicy),
    };
}

/// Every role, last: a DNS response the role's steps passed.
#[xdp]
pub fn dns_response(ctx: XdpContext) -> u32 {
    let Some(p) = pending() else {
        return xdp_action::XDP_DROP;
    };
    judge_dns_response(&ctx, p);
    exit::<false>(&ctx, &p.pkt, &p.j)
}

#[inline(never)]
fn judge_dns_response(ctx: &XdpContext, p: &mut Pending) {
    p.j.step = NONE;
    p.j.decision = match maps::settings(p.j.slot) {
        Some(settings) => policy::dns_response(ctx, p.j.slot, settings, &p.pkt, p.j.decision),
        None => Decision::plain(Reason::NoPolicy),
    };
}
