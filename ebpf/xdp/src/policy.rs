//! The verdict order by ingress role. Keep these steps identical to `gateway_common::Reason`'s
//! documentation, the compiler and the reference model.

use aya_ebpf::programs::XdpContext;
use gateway_common::{Reason, Role};

use crate::{
    maps,
    parse::{Addrs, Packet},
    route::{self, Egress},
};

/// `lan` ingress: 1 blocklist, 2 (domain: not yet), 3 isolated, 4 shared system, 5 pass.
#[inline(always)]
pub fn lan_ingress(ctx: &XdpContext, slot: u8, pkt: &Packet) -> Reason {
    // 1. Destination in a blocklist.
    let blocked = match pkt.addrs {
        Addrs::V4 { dst, .. } => maps::blocked4(slot, dst),
        Addrs::V6 { dst, .. } => maps::blocked6(slot, dst),
    };
    if blocked {
        return Reason::Blocklist;
    }
    // 3. An isolated host may only talk to the gateway itself or leave by the dedicated port towards
    //    the dedicated network (R11).
    let (isolated, dst_govnet) = match pkt.addrs {
        Addrs::V4 { src, dst } => (maps::isolated4(slot, src), maps::govnet4(slot, dst)),
        Addrs::V6 { src, dst } => (maps::isolated6(slot, src), maps::govnet6(slot, dst)),
    };
    if isolated {
        let ok = match route::egress(ctx, pkt) {
            Egress::Local => true,
            e => dst_govnet && e.role() == Some(Role::Dedicated),
        };
        if !ok {
            return Reason::Isolated;
        }
    }
    // 4. A shared system: the source must be allowed (R4), the route must be the dedicated one (R1).
    let system = match pkt.addrs {
        Addrs::V4 { dst, .. } => maps::shared4(slot, dst),
        Addrs::V6 { dst, .. } => maps::shared6(slot, dst),
    };
    if let Some(system) = system {
        let allow = match pkt.addrs {
            Addrs::V4 { src, .. } => maps::allow4(slot, system, src),
            Addrs::V6 { src, .. } => maps::allow6(slot, system, src),
        };
        let Some(allow) = allow else {
            return Reason::NotAllowed;
        };
        if !admits(allow, pkt) {
            return Reason::NotAllowed;
        }
        if route::egress(ctx, pkt).role() != Some(Role::Dedicated) {
            return Reason::SharedViaInternet;
        }
    }
    // 5.
    Reason::Pass
}

/// Whether any rule of the set admits the packet. The loop bound is the array size, so the verifier
/// sees a fixed trip count.
#[inline(always)]
fn admits(allow: &gateway_common::values::AllowSet, pkt: &Packet) -> bool {
    let dport = pkt.dport();
    for i in 0..gateway_common::values::MAX_ALLOW_RULES {
        if i as u32 >= allow.count {
            break;
        }
        if allow.rules[i].admits(pkt.proto, dport) {
            return true;
        }
    }
    false
}

/// `dedicated` ingress: 1 foreign source, 2 anything forwarded anywhere but the lan.
#[inline(always)]
pub fn dedicated_ingress(ctx: &XdpContext, pkt: &Packet, slot: u8) -> Reason {
    let (known, link_scope) = match pkt.addrs {
        Addrs::V4 { src, .. } => (maps::govnet4(slot, src), false),
        Addrs::V6 { src, .. } => (maps::govnet6(slot, src), link_scope_v6(&src)),
    };
    if !known {
        // Neighbour discovery and MLD from the upstream router carry a link-local (or, for DAD, the
        // unspecified) source. A router never forwards such packets, so they can only be for the
        // gateway itself: let exactly those through, or IPv6 on the dedicated link cannot work.
        if link_scope && matches!(route::egress(ctx, pkt), Egress::Local) {
            return Reason::Pass;
        }
        return Reason::DedicatedForeign;
    }
    match route::egress(ctx, pkt) {
        Egress::Local => Reason::Pass,
        e if e.role() == Some(Role::Lan) => Reason::Pass,
        _ => Reason::CrossNetwork,
    }
}

/// fe80::/10 or ::.
#[inline(always)]
fn link_scope_v6(a: &[u8; 16]) -> bool {
    let link_local = a[0] == 0xfe && a[1] & 0xc0 == 0x80;
    let mut unspecified = true;
    for b in a {
        unspecified &= *b == 0;
    }
    link_local || unspecified
}

/// `internet` ingress: 1 blocked source, 2 spoofed government source, 3 forwarded to the dedicated port.
#[inline(always)]
pub fn internet_ingress(ctx: &XdpContext, slot: u8, pkt: &Packet) -> Reason {
    let (blocked, spoofed) = match pkt.addrs {
        Addrs::V4 { src, .. } => (maps::blocked4(slot, src), maps::govnet4(slot, src)),
        Addrs::V6 { src, .. } => (maps::blocked6(slot, src), maps::govnet6(slot, src)),
    };
    if blocked {
        return Reason::BlocklistIn;
    }
    if spoofed {
        return Reason::Spoofed;
    }
    if route::egress(ctx, pkt).role() == Some(Role::Dedicated) {
        return Reason::CrossNetwork;
    }
    Reason::Pass
}
