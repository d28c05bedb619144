//! The gateway's XDP program. Entry points only: parsing, policy, routing and stats live in their own
//! modules. One entry shape, one exit: `judge` computes a [`Reason`], the exit counts it and turns it
//! into an XDP action; nothing fails open.
#![no_std]
#![no_main]

mod maps;
mod parse;
mod policy;
mod route;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use gateway_common::{Reason, Role, Verdict, values::SETTING_DROP_FRAGMENTS};

use crate::parse::Parsed;

/// Load-time options, set by the loader with `EbpfLoader::set_global`.
#[unsafe(no_mangle)]
static DATAPATH_CONFIG: gateway_common::values::DatapathConfig =
    gateway_common::values::DatapathConfig::DEFAULT;

/// The data path attached to every gateway port.
#[xdp]
pub fn gateway(ctx: XdpContext) -> u32 {
    let (row, reason) = judge(&ctx);
    stats::record(row, reason, ctx.data_end() - ctx.data());
    match reason.verdict() {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
    }
}

/// The baseline the benchmark measures beside `gateway`: passes everything, touches nothing.
#[xdp]
pub fn pass_only(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Pre-checks, parsing, then the verdict order of the ingress role (see `Reason`'s documentation).
/// Returns the stats row (role, or unknown) with the reason.
#[inline(always)]
fn judge(ctx: &XdpContext) -> (u32, Reason) {
    let Some(role) = maps::port_role(ctx.ingress_ifindex() as u32) else {
        return (Role::UNKNOWN_ROW, Reason::UnknownPort);
    };
    let row = role as u32;
    let slot = maps::active_slot();
    let Some(settings) = maps::settings(slot) else {
        return (row, Reason::NoPolicy);
    };
    let pkt = match parse::parse(ctx) {
        Parsed::NonIp => return (row, Reason::NonIp),
        Parsed::Malformed => return (row, Reason::Malformed),
        Parsed::Ip(pkt) => pkt,
    };
    if pkt.later_fragment && settings.flags & SETTING_DROP_FRAGMENTS != 0 {
        return (row, Reason::Fragment);
    }
    let reason = match role {
        Role::Lan => policy::lan_ingress(ctx, slot, &pkt),
        Role::Dedicated => policy::dedicated_ingress(ctx, &pkt, slot),
        Role::Internet => policy::internet_ingress(ctx, slot, &pkt),
    };
    (row, reason)
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
