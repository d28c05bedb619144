//! The gateway's XDP program. Entry points only: parsing, policy, routing, stats, flow accounting and
//! drop events live in their own modules. One entry shape, one exit: `judge` computes a [`Reason`]
//! (with its attribution), the exit counts it, accounts the flow, reports a drop and turns it into an
//! XDP action; nothing fails open.
#![no_std]
#![no_main]
// Atomic read-modify-write on shared map values (see atomic.rs): the nested eBPF build runs with
// RUSTC_BOOTSTRAP already (for -Z build-std).
#![allow(internal_features)]
#![feature(core_intrinsics)]
// An empty register move in bound.rs keeps LLVM from deleting masks the 6.1 verifier needs.
#![feature(asm_experimental_arch)]

mod atomic;
mod bound;
mod dns;
mod events;
mod flows;
mod learn;
mod maps;
mod mem;
mod parse;
mod policy;
mod route;
mod sni;
mod stats;
mod steps;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};
use gateway_common::{
    Reason, Role, Verdict,
    event::DNS_DROPPED,
    maps::{IPPROTO_TCP, STEP_DNS_RESPONSE},
    values::{
        ALERT_BURST_DEFAULT, ALERT_WINDOW_MS_DEFAULT, SETTING_DNS_NXDOMAIN, SETTING_DROP_FRAGMENTS,
    },
};

use crate::{
    events::{Dropped, Limit},
    parse::{Packet, Parsed},
    policy::{Decision, Lan},
};

/// Load-time options, set by the loader with `EbpfLoader::set_global`.
#[unsafe(no_mangle)]
static DATAPATH_CONFIG: gateway_common::values::DatapathConfig =
    gateway_common::values::DatapathConfig::DEFAULT;

/// The data path attached to every gateway port. A packet that needs a name inspection (a DNS
/// query, a TLS ClientHello, a DNS response) leaves it by a tail call (steps.rs) and is finished by
/// that program; everything else is judged and finished here.
#[xdp]
pub fn gateway(ctx: XdpContext) -> u32 {
    let mut pkt = Packet::EMPTY;
    let mut j = judge(&ctx, &mut pkt);
    if j.step != steps::NONE {
        steps::hand_over(&ctx, &pkt, &j);
        // Only reached if the tail call failed, which the loader rules out (every step program is
        // in NAME_STEPS before a port is attached). Fail closed all the same.
        j.decision = Decision::plain(Reason::Malformed);
    }
    exit::<false>(&ctx, &pkt, &j)
}

/// Counts the verdict, accounts the flow, reports a drop and turns the verdict into an XDP action.
/// `ANSWER`: the program can have blocked a DNS query (only `dns_query` can), which may be answered
/// in place (`[domains] action = "nxdomain"/"sinkhole"`): still a drop for the counters and the
/// flow, but the frame leaves by the port it came in on. SNI, learnt-address and DNS-response
/// drops are plain drops; without `ANSWER` the answer code is not in the program at all.
#[inline(always)]
fn exit<const ANSWER: bool>(ctx: &XdpContext, pkt: &Packet, j: &Judgement) -> u32 {
    let bytes = ctx.data_end() - ctx.data();
    let reason = j.decision.reason;
    stats::record(j.row, reason, bytes);
    let verdict = reason.verdict();
    let answer = ANSWER && reason == Reason::Domain && j.answer && dns::answerable();
    if answer {
        dns::answer(
            ctx,
            j.slot,
            &dns::Place {
                l3: pkt.l3 as u32,
                l4: pkt.l4 as u32,
                v6: matches!(pkt.addrs, parse::Addrs::V6 { .. }),
                tcp: pkt.proto == IPPROTO_TCP,
            },
        );
    }
    if j.flow || verdict == Verdict::Drop {
        telemetry(ctx.ingress_ifindex() as u32, pkt, j, bytes as u32);
    }
    if answer && dns::answered() != DNS_DROPPED {
        return xdp_action::XDP_TX;
    }
    action(verdict)
}

/// Flow accounting and the drop event of one judged packet. A function of its own (a BPF
/// subprogram), like `judge`, so the two stack frames are never stacked on each other.
#[inline(never)]
fn telemetry(ingress: u32, pkt: &Packet, j: &Judgement, bytes: u32) {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut room = core::mem::MaybeUninit::uninit();
    let key = if j.ip {
        Some(flows::key(&mut room, ingress, pkt))
    } else {
        None
    };
    if let (true, Some(key)) = (j.flow, key) {
        flows::account(now, key, pkt, &j.decision, bytes as u64);
    }
    if j.decision.reason.verdict() == Verdict::Drop {
        events::dropped(&Dropped {
            now,
            key,
            ingress,
            row: j.row,
            decision: j.decision,
            tcp_flags: pkt.tcp_flags,
            bytes,
            limit: j.limit,
        });
    }
}

#[inline(always)]
fn action(verdict: Verdict) -> u32 {
    match verdict {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
    }
}

/// The baseline the benchmark measures beside `gateway`: passes everything, touches nothing.
#[xdp]
pub fn pass_only(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// A verdict and what the exit needs to count it, account its flow and report a drop; or, with
/// `step`, a packet handed to a name inspection (which completes `decision`).
#[derive(Clone, Copy)]
struct Judgement {
    /// Stats row: the ingress role, or `Role::UNKNOWN_ROW`.
    row: u32,
    decision: Decision,
    /// The frame parsed as IP (the packet was written to the caller's `Packet`).
    ip: bool,
    /// The packet belongs in the flow table: IP, on one of our ports, judged by a policy.
    flow: bool,
    /// The drop-event rate limit of the policy in force (defaults without one).
    limit: Limit,
    /// The policy slot in force (meaningful once a policy was found).
    slot: u8,
    /// A `domain` drop is to be answered in place (`SETTING_DNS_NXDOMAIN`).
    answer: bool,
    /// The name inspection still to run (`maps::STEP_*`), or `steps::NONE`: the judgement is final.
    step: u32,
}

/// Parsing, pre-checks, then the verdict order of the ingress role (see `Reason`'s documentation).
/// The frame is parsed first (so a drop event for an unknown port or a missing policy can still
/// name the addresses), but the reasons keep the spec's order: port, policy, then parsing. A
/// function of its own (a BPF subprogram): with flow accounting and drop events beside it, one
/// inlined frame would exceed the 512-byte BPF stack.
#[inline(never)]
fn judge(ctx: &XdpContext, pkt: &mut Packet) -> Judgement {
    let parsed = parse::parse(ctx, pkt);
    let mut j = Judgement {
        row: Role::UNKNOWN_ROW,
        decision: Decision::plain(Reason::UnknownPort),
        ip: parsed == Parsed::Ip,
        flow: false,
        limit: Limit {
            burst: ALERT_BURST_DEFAULT,
            window_ms: ALERT_WINDOW_MS_DEFAULT,
        },
        slot: 0,
        answer: false,
        step: steps::NONE,
    };
    let Some(role) = maps::port_role(ctx.ingress_ifindex() as u32) else {
        return j;
    };
    j.row = role as u32;
    let slot = maps::active_slot();
    j.slot = slot;
    let Some(settings) = maps::settings(slot) else {
        j.decision = Decision::plain(Reason::NoPolicy);
        return j;
    };
    j.limit = Limit {
        burst: settings.alert_burst,
        window_ms: settings.alert_window_ms,
    };
    match parsed {
        Parsed::NonIp => {
            j.decision = Decision::plain(Reason::NonIp);
            return j;
        }
        Parsed::Malformed => {
            j.decision = Decision::plain(Reason::Malformed);
            return j;
        }
        Parsed::Ip => {}
    }
    let pkt = &*pkt;
    j.flow = true;
    j.answer = settings.flags & SETTING_DNS_NXDOMAIN != 0;
    if pkt.later_fragment && settings.flags & SETTING_DROP_FRAGMENTS != 0 {
        j.decision = Decision::plain(Reason::Fragment);
        return j;
    }
    j.decision = match role {
        Role::Lan => match policy::lan_ingress(ctx, slot, settings, pkt) {
            Lan::Decided(d) => d,
            Lan::Inspect(step) => {
                j.step = step;
                return j;
            }
        },
        Role::Dedicated => policy::dedicated_ingress(ctx, pkt, slot),
        Role::Internet => policy::internet_ingress(ctx, slot, pkt),
    };
    if j.decision.reason == Reason::Pass && policy::response_step(settings, pkt) {
        j.step = STEP_DNS_RESPONSE;
    }
    j
}

fn config_flags() -> u32 {
    // SAFETY: DATAPATH_CONFIG is a plain static the loader may rewrite before load; a volatile read
    // keeps the compiler from folding the default in.
    unsafe { core::ptr::read_volatile(&DATAPATH_CONFIG.flags) }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
