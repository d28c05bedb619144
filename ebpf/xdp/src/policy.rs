//! The verdict order by ingress role. Keep these steps identical to `gateway_common::Reason`'s
//! documentation, the compiler and the reference model. Besides the reason, each step says what
//! decided it (feed or shared system) and where the FIB would send the packet, for flow records and
//! drop events; neither changes the verdict.

use aya_ebpf::programs::XdpContext;
use gateway_common::{
    Reason, Role,
    event::{DNS_VIA_LEARNT, DNS_VIA_QUERY, DNS_VIA_RESPONSE, DNS_VIA_SNI},
    flow::NO_RULE,
    maps::{IPPROTO_TCP, IPPROTO_UDP, STEP_DNS_QUERY, STEP_TLS_HELLO},
    values::{SETTING_DNS_INSPECT, SETTING_DNS_MALFORMED_PASS, Settings},
};

use crate::{
    dns::{self, Dns},
    learn, maps,
    parse::{Addrs, Packet},
    route::{self, Egress},
    sni::{self, Sni},
};

/// A reason with its attribution.
#[derive(Clone, Copy)]
pub struct Decision {
    pub reason: Reason,
    /// Feed id (blocklists), domain-feed id (`domain`), shared-system id (packets to a shared system), else `NO_RULE`.
    pub rule: u32,
    /// Egress ifindex of the last FIB lookup; 0 when none was made or it found no port.
    pub egress: u32,
}

impl Decision {
    #[inline(always)]
    pub const fn new(reason: Reason, rule: u32, egress: u32) -> Decision {
        Decision {
            reason,
            rule,
            egress,
        }
    }

    /// A decision of the pre-checks: no rule, no route.
    #[inline(always)]
    pub const fn plain(reason: Reason) -> Decision {
        Decision::new(reason, NO_RULE, 0)
    }
}

/// What the `lan` steps decided before the name inspections.
pub enum Lan {
    Decided(Decision),
    /// Steps 2a/2b apply: the packet goes to that tail-called program (`maps::STEP_*`), which
    /// judges it from step 2 on.
    Inspect(u32),
}

/// `lan` ingress: 1 blocklist, 2 domain (2a DNS query, 2b TLS ClientHello SNI, 2c learnt
/// address), 3 isolated, 4 shared system, 5 pass. Every role, last: a DNS response for a blocked
/// name is dropped and learnt ([`dns_response`]). Steps 2a and 2b run in their own programs
/// (main.rs, steps.rs): this one stops before them.
#[inline(always)]
pub fn lan_ingress(ctx: &XdpContext, slot: u8, settings: &Settings, pkt: &Packet) -> Lan {
    // 1. Destination in a blocklist.
    let blocked = match pkt.addrs {
        Addrs::V4 { dst, .. } => maps::blocked4(slot, dst),
        Addrs::V6 { dst, .. } => maps::blocked6(slot, dst),
    };
    if let Some(feed) = blocked {
        return Lan::Decided(Decision::new(Reason::Blocklist, feed, 0));
    }
    match name_step(settings, pkt) {
        Some(step) => Lan::Inspect(step),
        None => Lan::Decided(lan_after_names(ctx, slot, settings, pkt)),
    }
}

/// Which name inspection a `lan` packet needs, when the policy has domain feeds: a DNS query (UDP,
/// or a TCP segment with data, to port 53), else a TCP segment with data to an SNI port (the
/// compiler keeps 53 out of `sni_ports`).
#[inline(always)]
fn name_step(settings: &Settings, pkt: &Packet) -> Option<u32> {
    if settings.flags & SETTING_DNS_INSPECT == 0 || !pkt.has_ports {
        return None;
    }
    let data = pkt.payload_len != 0;
    if pkt.dport == 53 && (pkt.proto == IPPROTO_UDP || (pkt.proto == IPPROTO_TCP && data)) {
        return Some(STEP_DNS_QUERY);
    }
    if pkt.proto == IPPROTO_TCP && data && sni_port(settings, pkt.dport) {
        return Some(STEP_TLS_HELLO);
    }
    None
}

/// 2a, in the `dns_query` program: a DNS query for a listed name; then the steps after it.
#[inline(always)]
pub fn dns_query(ctx: &XdpContext, slot: u8, settings: &Settings, pkt: &Packet) -> Decision {
    match dns::inspect(ctx, pkt, slot, settings.domain_seed) {
        Dns::Block(feed) => {
            dns::mark(DNS_VIA_QUERY);
            Decision::new(Reason::Domain, feed, 0)
        }
        Dns::Malformed if settings.flags & SETTING_DNS_MALFORMED_PASS == 0 => {
            Decision::plain(Reason::Malformed)
        }
        Dns::Malformed | Dns::Pass => lan_after_names(ctx, slot, settings, pkt),
    }
}

/// 2b, in the `tls_hello` program: a TLS ClientHello whose server_name is listed; then the steps
/// after it.
#[inline(always)]
pub fn tls_hello(ctx: &XdpContext, slot: u8, settings: &Settings, pkt: &Packet) -> Decision {
    match sni::inspect(ctx, pkt, slot, settings.domain_seed) {
        Sni::Block(feed) => {
            dns::mark(DNS_VIA_SNI);
            Decision::new(Reason::Domain, feed, 0)
        }
        Sni::Unreadable if settings.flags & SETTING_DNS_MALFORMED_PASS == 0 => {
            Decision::plain(Reason::Malformed)
        }
        Sni::Unreadable | Sni::Pass => lan_after_names(ctx, slot, settings, pkt),
    }
}

/// `lan` steps 2c to 5.
#[inline(always)]
pub fn lan_after_names(ctx: &XdpContext, slot: u8, settings: &Settings, pkt: &Packet) -> Decision {
    // 2c. The destination was answered for a name the active policy blocks.
    if settings.flags & SETTING_DNS_INSPECT != 0
        && settings.learn_ttl_max_secs != 0
        && let Some(feed) = learn::learnt_dst(pkt, slot, settings)
    {
        dns::mark(DNS_VIA_LEARNT);
        return Decision::new(Reason::Domain, feed, 0);
    }
    let mut egress = 0;
    // 3. An isolated host may only talk to the gateway itself or leave by the dedicated port towards
    //    the dedicated network (R11).
    let (isolated, dst_govnet) = match pkt.addrs {
        Addrs::V4 { src, dst } => (maps::isolated4(slot, src), maps::govnet4(slot, dst)),
        Addrs::V6 { src, dst } => (maps::isolated6(slot, src), maps::govnet6(slot, dst)),
    };
    if isolated {
        let route = route::egress(ctx, pkt);
        egress = route.ifindex();
        let ok = match route {
            Egress::Local => true,
            e => dst_govnet && e.role() == Some(Role::Dedicated),
        };
        if !ok {
            return Decision::new(Reason::Isolated, NO_RULE, egress);
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
            return Decision::new(Reason::NotAllowed, system, egress);
        };
        if !admits(allow, pkt) {
            return Decision::new(Reason::NotAllowed, system, egress);
        }
        let route = route::egress(ctx, pkt);
        if route.role() != Some(Role::Dedicated) {
            return Decision::new(Reason::SharedViaInternet, system, route.ifindex());
        }
        return Decision::new(Reason::Pass, system, route.ifindex());
    }
    // 5.
    Decision::new(Reason::Pass, NO_RULE, egress)
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
pub fn dedicated_ingress(ctx: &XdpContext, pkt: &Packet, slot: u8) -> Decision {
    let (known, link_scope) = match pkt.addrs {
        Addrs::V4 { src, .. } => (maps::govnet4(slot, src), false),
        Addrs::V6 { src, .. } => (maps::govnet6(slot, src), link_scope_v6(&src)),
    };
    if !known {
        // Neighbour discovery and MLD from the upstream router carry a link-local (or, for DAD, the
        // unspecified) source. A router never forwards such packets, so they can only be for the
        // gateway itself: let exactly those through, or IPv6 on the dedicated link cannot work.
        if link_scope {
            let route = route::egress(ctx, pkt);
            if matches!(route, Egress::Local) {
                return Decision::new(Reason::Pass, NO_RULE, 0);
            }
            return Decision::new(Reason::DedicatedForeign, NO_RULE, route.ifindex());
        }
        return Decision::plain(Reason::DedicatedForeign);
    }
    let route = route::egress(ctx, pkt);
    let reason = match route {
        Egress::Local => Reason::Pass,
        ref e if e.role() == Some(Role::Lan) => Reason::Pass,
        _ => Reason::CrossNetwork,
    };
    Decision::new(reason, NO_RULE, route.ifindex())
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
pub fn internet_ingress(ctx: &XdpContext, slot: u8, pkt: &Packet) -> Decision {
    let (blocked, spoofed) = match pkt.addrs {
        Addrs::V4 { src, .. } => (maps::blocked4(slot, src), maps::govnet4(slot, src)),
        Addrs::V6 { src, .. } => (maps::blocked6(slot, src), maps::govnet6(slot, src)),
    };
    if let Some(feed) = blocked {
        return Decision::new(Reason::BlocklistIn, feed, 0);
    }
    if spoofed {
        return Decision::plain(Reason::Spoofed);
    }
    let route = route::egress(ctx, pkt);
    if route.role() == Some(Role::Dedicated) {
        return Decision::new(Reason::CrossNetwork, NO_RULE, route.ifindex());
    }
    Decision::new(Reason::Pass, NO_RULE, route.ifindex())
}

/// Whether TCP port `port` is one of the policy's SNI ports.
#[inline(always)]
fn sni_port(settings: &Settings, port: u16) -> bool {
    let mut hit = false;
    for p in settings.sni_ports {
        hit |= p != 0 && p == port;
    }
    hit
}

/// Every role, after its own steps passed the packet: whether it is a DNS response (UDP from port
/// 53) for the `dns_response` program, when the policy has domain feeds.
#[inline(always)]
pub fn response_step(settings: &Settings, pkt: &Packet) -> bool {
    settings.flags & SETTING_DNS_INSPECT != 0
        && pkt.proto == IPPROTO_UDP
        && pkt.has_ports
        && pkt.sport == 53
}

/// In the `dns_response` program: a DNS response whose question a listed name blocks is dropped as
/// `domain` and its A/AAAA answers learnt (learn.rs). Only a packet that would pass gets here, so a
/// response from a blocked, spoofed or foreign source teaches nothing.
#[inline(always)]
pub fn dns_response(
    ctx: &XdpContext,
    slot: u8,
    settings: &Settings,
    pkt: &Packet,
    pass: Decision,
) -> Decision {
    if let Some(feed) = learn::response(ctx, pkt, slot, settings) {
        dns::mark(DNS_VIA_RESPONSE);
        return Decision::new(Reason::Domain, feed, pass.egress);
    }
    pass
}
