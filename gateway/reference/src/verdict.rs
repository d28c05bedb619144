//! The verdict (spec §0 and §3).

use std::net::IpAddr;

use gateway_common::maps::{IPPROTO_TCP, IPPROTO_UDP};
use gateway_common::role::stats_index as stats_cell;
use gateway_common::values::{
    SETTING_DNS_INSPECT, SETTING_DNS_MALFORMED_PASS, SETTING_DROP_FRAGMENTS,
};
use gateway_common::{Reason, Role};
use gateway_policy::image::MapImage;

use crate::dns::{self, Dns};
use crate::lookup;
use crate::parse::{Packet, Parsed, parse};
use crate::routes::{Egress, Ports, Routes};

/// The reason the data path gives `frame`, arriving on `ingress_ifindex`, under `image` (the active
/// generation slot; `settings_loaded` is its `Settings.loaded != 0`).
///
/// The verdict order (identical in the XDP program, the compiler and the reference model):
/// 1. Parse Ethernet (0–2 VLAN tags), IPv4/IPv6, TCP/UDP/ICMP. Non-IP passes (`non_ip`).
///    A truncated or malformed IP packet drops (`malformed`).
/// 2. `lan` ingress:
///    1. destination in a blocklist → `blocklist`
///    2. domain (only with domain feeds; a name that cannot be read → `malformed` unless the policy
///       passes it):
///       - (a) a DNS query (UDP, or TCP with data, to port 53; QR=0, OPCODE=0, QDCOUNT=1) for a
///         listed name → `domain` (answered in place per policy)
///       - (b) a TLS ClientHello (TCP to a policy SNI port, default 443) whose server_name is
///         listed → `domain`; a split ClientHello counts as unreadable
///       - (c) destination is a learnt address (answered for a blocked name, not expired) whose
///         name the active policy still blocks → `domain`
///    3. source is an isolated host and the packet does not leave by the dedicated port towards the
///       dedicated network (and is not for the gateway itself) → `isolated`
///    4. destination is a shared system: the source/protocol/port must be allowed → else `not_allowed`;
///       the route must leave by the dedicated port → else `shared_via_internet`
///    5. otherwise pass.
/// 3. `dedicated` ingress: source not a shared system nor a dedicated prefix → `dedicated_foreign`
///    (except an IPv6 link-local or unspecified source — neighbour discovery, MLD — addressed to the
///    gateway itself); forwarded anywhere but a `lan` port → `cross_network`.
/// 4. `internet` ingress: source in a blocklist → `blocklist_in`; source claims a shared-system or
///    dedicated prefix → `spoofed`; forwarded to the dedicated port → `cross_network`; else pass.
/// 5. Every role, last, for a packet that would pass: a DNS response (UDP from port 53) whose
///    question is a listed name → `domain`; its A/AAAA answers are learnt (step 2.2c).
/// 6. Before all of this: a packet on a port without a role → `unknown_port`; no policy loaded in the
///    active slot → `no_policy`; a non-first fragment when the policy drops fragments → `fragment`.
pub fn evaluate(
    image: &MapImage,
    settings_loaded: bool,
    ports: &Ports,
    routes: &dyn Routes,
    ingress_ifindex: u32,
    frame: &[u8],
) -> Reason {
    // Pre-checks, in the spec's order: port first, then policy, then the frame.
    let Some(role) = ports.role(ingress_ifindex) else {
        return Reason::UnknownPort;
    };
    if !settings_loaded {
        return Reason::NoPolicy;
    }
    let pkt = match parse(frame) {
        Parsed::NonIp => return Reason::NonIp,
        Parsed::Malformed => return Reason::Malformed,
        Parsed::Ip(pkt) => pkt,
    };
    if pkt.fragment && image.settings_flags & SETTING_DROP_FRAGMENTS != 0 {
        return Reason::Fragment;
    }
    let judge = Judge {
        image,
        ports,
        routes,
        ingress_ifindex,
        pkt,
        frame,
    };
    match role {
        Role::Lan => judge.lan(),
        Role::Dedicated => judge.dedicated(),
        Role::Internet => judge.internet(),
    }
}

/// The per-CPU stats cell a packet is counted in (+1 packet, +frame length bytes): the ingress role's
/// row, or `Role::UNKNOWN_ROW` for a port missing from the port map, and the reason's column.
pub fn stats_index(ports: &Ports, ingress_ifindex: u32, reason: Reason) -> u32 {
    let row = ports
        .role(ingress_ifindex)
        .map_or(Role::UNKNOWN_ROW, |r| r as u32);
    stats_cell(row, reason)
}

/// One parsed IP packet being judged.
struct Judge<'a> {
    image: &'a MapImage,
    ports: &'a Ports,
    routes: &'a dyn Routes,
    ingress_ifindex: u32,
    pkt: Packet,
    frame: &'a [u8],
}

impl Judge<'_> {
    fn route(&self) -> Egress {
        self.routes
            .egress(self.ingress_ifindex, self.pkt.src, self.pkt.dst)
    }

    fn egress_role(&self) -> Option<Role> {
        self.ports.egress_role(self.route())
    }

    fn in_govnet(&self, addr: IpAddr) -> bool {
        lookup::govnet(self.image, addr).is_some()
    }

    fn lan(&self) -> Reason {
        let (image, pkt) = (self.image, &self.pkt);
        // 1. Destination blocked.
        if lookup::blocked(image, pkt.dst).is_some() {
            return Reason::Blocklist;
        }
        // 2. A DNS query (UDP, or a TCP segment with data, to port 53) for a listed name, when the
        //    policy has domain feeds.
        if image.settings_flags & SETTING_DNS_INSPECT != 0
            && pkt.dport == Some(53)
            && (pkt.proto == IPPROTO_UDP || (pkt.proto == IPPROTO_TCP && pkt.payload.1 != 0))
        {
            let (at, len) = pkt.payload;
            match dns::inspect(image, pkt.proto, &self.frame[at..at + len]) {
                Dns::Block(_) => return Reason::Domain,
                Dns::Malformed if image.settings_flags & SETTING_DNS_MALFORMED_PASS == 0 => {
                    return Reason::Malformed;
                }
                Dns::Malformed | Dns::Pass => {}
            }
        }
        // 2.2b SNI and 2.2c learnt addresses are stateful: `crate::beyond::evaluate_beyond` wraps
        //     this function with them.
        // 3. Isolated source: only to the gateway itself, or out of the dedicated port into govnet.
        if lookup::isolated(image, pkt.src) {
            let egress = self.route();
            let dedicated = self.ports.egress_role(egress) == Some(Role::Dedicated);
            if !(egress == Egress::Local || (dedicated && self.in_govnet(pkt.dst))) {
                return Reason::Isolated;
            }
        }
        // 4. Shared system: the source must be allowed, and the route must use the dedicated port.
        if let Some(system) = lookup::shared(image, pkt.dst) {
            let Some(rules) = lookup::allow(image, system, pkt.src) else {
                return Reason::NotAllowed;
            };
            if !rules.iter().any(|r| r.admits(pkt.proto, pkt.dport)) {
                return Reason::NotAllowed;
            }
            return if self.egress_role() == Some(Role::Dedicated) {
                Reason::Pass
            } else {
                Reason::SharedViaInternet
            };
        }
        // 5.
        Reason::Pass
    }

    fn dedicated(&self) -> Reason {
        // 1. The source must belong to the dedicated network (a shared system or a dedicated prefix),
        //    or be link-scope control traffic for the gateway itself (a router never forwards it).
        if !self.in_govnet(self.pkt.src) {
            let link_scope = matches!(self.pkt.src, IpAddr::V6(a) if a.is_unspecified() || a.is_unicast_link_local());
            return if link_scope && self.route() == Egress::Local {
                Reason::Pass
            } else {
                Reason::DedicatedForeign
            };
        }
        // 2. Only to the gateway itself or towards the lan.
        let egress = self.route();
        if egress == Egress::Local || self.ports.egress_role(egress) == Some(Role::Lan) {
            Reason::Pass
        } else {
            Reason::CrossNetwork
        }
    }

    fn internet(&self) -> Reason {
        // 1. Source blocked.
        if lookup::blocked(self.image, self.pkt.src).is_some() {
            return Reason::BlocklistIn;
        }
        // 2. Source claims the dedicated network.
        if self.in_govnet(self.pkt.src) {
            return Reason::Spoofed;
        }
        // 3. Never straight into the dedicated network.
        if self.egress_role() == Some(Role::Dedicated) {
            Reason::CrossNetwork
        } else {
            Reason::Pass
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{ETH_P_IP, ETH_P_IPV6, IPV6_HOP_BY_HOP};
    use crate::routes::StaticRoutes;
    use crate::testutil::*;
    use gateway_common::maps::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
    use gateway_common::values::{GOVNET_DEDICATED, GOVNET_SHARED, PortRule};
    use ipnet::{IpNet, Ipv4Net, Ipv6Net};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LAN: u32 = 2;
    const DED: u32 = 3;
    const INET: u32 = 4;
    const OTHER: u32 = 5; // a port outside the port map

    // Topology: lan 10.0.0.0/24 (fd00::/64), dedicated 10.20.0.0/16 (fd20::/32), the rest internet;
    // 192.0.2.0/24 is unreachable; 10.0.0.1 / fd00::1 are the gateway.
    const LOCAL4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const ISO4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 66);
    const LANHOST4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 77);
    const DEDHOST4: Ipv4Addr = Ipv4Addr::new(10, 20, 5, 5); // dedicated prefix, not shared
    const INET4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const BLOCK4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
    const BLOCKNET4: Ipv4Addr = Ipv4Addr::new(100, 64, 3, 3); // in 100.64.0.0/16
    const SHARED_INET4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99); // shared system routed via internet
    const SHARED_UNROUTABLE4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
    const ISO6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x66);
    const INET6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 10);
    const BLOCK6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 1);

    fn n(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }
    fn n4(s: &str) -> Ipv4Net {
        s.parse().expect("test prefix")
    }
    fn n6(s: &str) -> Ipv6Net {
        s.parse().expect("test prefix")
    }

    fn ports() -> Ports {
        Ports::new()
            .with(LAN, Role::Lan)
            .with(DED, Role::Dedicated)
            .with(INET, Role::Internet)
    }

    fn routes() -> StaticRoutes {
        StaticRoutes::new(Egress::Port(INET))
            .route(n("10.0.0.0/24"), Egress::Port(LAN))
            .route(n("10.0.0.1/32"), Egress::Local)
            .route(n("10.20.0.0/16"), Egress::Port(DED))
            .route(n("192.0.2.0/24"), Egress::Unroutable)
            .route(n("fd00::/64"), Egress::Port(LAN))
            .route(n("fd00::1/128"), Egress::Local)
            .route(n("fd20::/32"), Egress::Port(DED))
            .route(n("10.30.0.0/16"), Egress::Port(OTHER))
    }

    /// System 0 "records" = 10.20.0.9 (S4) and fd20::9 (S6); system 1 = SHARED_INET4 and
    /// SHARED_UNROUTABLE4 and 10.0.0.200 (lan) and the gateway itself (10.0.0.1 is not shared: the
    /// Local case uses 10.0.0.1 only as a destination of isolated hosts).
    fn image() -> MapImage {
        let mut i = MapImage::default();
        i.block4_exact.insert(BLOCK4, 0);
        i.block4_prefixes.insert(n4("100.64.0.0/16"), 0);
        i.block6_exact.insert(BLOCK6, 0);
        i.block6_prefixes.insert(n6("2001:db8:dead::/48"), 0);
        i.isolated4.insert(n4("10.0.0.64/28"));
        i.isolated6.insert(n6("fd00::66/128"));
        for (net, sys) in [
            ("10.20.0.9/32", 0),
            ("198.51.100.99/32", 1),
            ("192.0.2.9/32", 1),
            ("10.0.0.200/32", 1),
            ("10.30.0.1/32", 1),
        ] {
            i.shared4.insert(n4(net), sys);
            i.govnet4.insert(n4(net), GOVNET_SHARED);
        }
        i.shared6.insert(n6("fd20::9/128"), 0);
        i.govnet6.insert(n6("fd20::9/128"), GOVNET_SHARED);
        i.govnet4.insert(n4("10.20.0.0/16"), GOVNET_DEDICATED);
        i.govnet6.insert(n6("fd20::/32"), GOVNET_DEDICATED);
        let tcp443 = PortRule::new(IPPROTO_TCP, 443, 443);
        let udp53 = PortRule::new(IPPROTO_UDP, 53, 53);
        let icmp = PortRule::new(IPPROTO_ICMP, 0, 0);
        i.allow4.insert((0, n4("10.0.0.0/24")), vec![tcp443]);
        i.allow4
            .insert((0, n4("10.0.0.5/32")), vec![tcp443, udp53, icmp]);
        i.allow4
            .insert((1, n4("10.0.0.0/24")), vec![PortRule::new(0, 0, u16::MAX)]);
        i.allow6.insert(
            (0, n6("fd00::/64")),
            vec![tcp443, PortRule::new(IPPROTO_ICMPV6, 0, 0)],
        );
        i
    }

    fn eval_with(image: &MapImage, ingress: u32, frame: &[u8]) -> Reason {
        evaluate(image, true, &ports(), &routes(), ingress, frame)
    }

    fn eval(ingress: u32, frame: &[u8]) -> Reason {
        eval_with(&image(), ingress, frame)
    }

    fn tcp4(src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
        eth(&[], ETH_P_IP, &v4_tcp(src, dst, 40000, dport))
    }
    fn udp4(src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
        eth(
            &[],
            ETH_P_IP,
            &v4(src, dst, IPPROTO_UDP, &udp(40000, dport, 4)),
        )
    }
    fn icmp4(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        eth(
            &[],
            ETH_P_IP,
            &v4(src, dst, IPPROTO_ICMP, &[8, 0, 0, 0, 0, 1, 0, 1]),
        )
    }
    fn frag4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Vec<u8> {
        let mut l3 = v4(src, dst, proto, &[0; 16]);
        set_v4_frag(&mut l3, false, 10);
        eth(&[], ETH_P_IP, &l3)
    }
    fn tcp6(src: Ipv6Addr, dst: Ipv6Addr, dport: u16) -> Vec<u8> {
        eth(
            &[],
            ETH_P_IPV6,
            &v6(src, dst, IPPROTO_TCP, &tcp(40000, dport, 5, 0)),
        )
    }

    #[test]
    fn unknown_port_comes_first() {
        assert_eq!(eval(OTHER, &tcp4(C4, INET4, 443)), Reason::UnknownPort);
        assert_eq!(eval(OTHER, &[0u8; 3]), Reason::UnknownPort);
        let r = evaluate(&image(), false, &ports(), &routes(), OTHER, &[0u8; 3]);
        assert_eq!(r, Reason::UnknownPort);
    }

    #[test]
    fn no_policy_before_parsing() {
        for ingress in [LAN, DED, INET] {
            for frame in [
                tcp4(C4, INET4, 443),
                vec![0u8; 5],
                eth(&[], 0x0806, &[0; 28]),
            ] {
                let r = evaluate(&image(), false, &ports(), &routes(), ingress, &frame);
                assert_eq!(r, Reason::NoPolicy);
            }
        }
    }

    #[test]
    fn non_ip_and_malformed_on_every_role() {
        for ingress in [LAN, DED, INET] {
            assert_eq!(eval(ingress, &eth(&[], 0x0806, &[0; 28])), Reason::NonIp);
            assert_eq!(
                eval(ingress, &eth(&[], ETH_P_IP, &[0x45; 19])),
                Reason::Malformed
            );
            assert_eq!(eval(ingress, &[0u8; 13]), Reason::Malformed);
        }
    }

    #[test]
    fn fragment_setting() {
        let mut img = image();
        let frame = frag4(C4, INET4, IPPROTO_TCP);
        assert_eq!(eval_with(&img, LAN, &frame), Reason::Pass);
        img.settings_flags |= SETTING_DROP_FRAGMENTS;
        for ingress in [LAN, DED, INET] {
            assert_eq!(eval_with(&img, ingress, &frame), Reason::Fragment);
        }
        // Pre-checks and parsing come before the fragment rule; first fragments are not affected.
        assert_eq!(
            evaluate(&img, true, &ports(), &routes(), OTHER, &frame),
            Reason::UnknownPort
        );
        assert_eq!(
            evaluate(&img, false, &ports(), &routes(), LAN, &frame),
            Reason::NoPolicy
        );
        let mut first = v4_tcp(C4, INET4, 1, 443);
        set_v4_frag(&mut first, true, 0);
        assert_eq!(
            eval_with(&img, LAN, &eth(&[], ETH_P_IP, &first)),
            Reason::Pass
        );
        let frame6 = eth(
            &[],
            ETH_P_IPV6,
            &v6_ext(C6, INET6, &[Ext::Frag(9, true)], IPPROTO_UDP, &[0; 8]),
        );
        assert_eq!(eval_with(&img, LAN, &frame6), Reason::Fragment);
    }

    #[test]
    fn lan_blocklist() {
        assert_eq!(eval(LAN, &tcp4(C4, BLOCK4, 443)), Reason::Blocklist);
        assert_eq!(eval(LAN, &udp4(C4, BLOCKNET4, 53)), Reason::Blocklist);
        assert_eq!(eval(LAN, &tcp6(C6, BLOCK6, 443)), Reason::Blocklist);
        let p6: Ipv6Addr = "2001:db8:dead:1::1".parse().expect("addr");
        assert_eq!(eval(LAN, &tcp6(C6, p6, 443)), Reason::Blocklist);
        // Before isolation; a blocked source is not the lan's concern.
        assert_eq!(eval(LAN, &tcp4(ISO4, BLOCK4, 443)), Reason::Blocklist);
        assert_eq!(eval(LAN, &tcp4(BLOCK4, INET4, 443)), Reason::Pass);
        // Non-first fragments are judged on addresses.
        assert_eq!(
            eval(LAN, &frag4(C4, BLOCK4, IPPROTO_TCP)),
            Reason::Blocklist
        );
    }

    #[test]
    fn lan_isolated() {
        assert_eq!(eval(LAN, &tcp4(ISO4, INET4, 443)), Reason::Isolated);
        assert_eq!(eval(LAN, &tcp4(ISO4, LANHOST4, 443)), Reason::Isolated);
        assert_eq!(eval(LAN, &tcp6(ISO6, INET6, 443)), Reason::Isolated);
        // To the gateway itself.
        assert_eq!(eval(LAN, &tcp4(ISO4, LOCAL4, 22)), Reason::Pass);
        // Out of the dedicated port into govnet: a dedicated host, an allowed shared system.
        assert_eq!(eval(LAN, &tcp4(ISO4, DEDHOST4, 22)), Reason::Pass);
        assert_eq!(eval(LAN, &tcp4(ISO4, S4, 443)), Reason::Pass);
        let ded6: Ipv6Addr = "fd20::5:5".parse().expect("addr");
        assert_eq!(eval(LAN, &tcp6(ISO6, ded6, 22)), Reason::Pass);
        // Then the shared-system rules still apply.
        assert_eq!(eval(LAN, &tcp4(ISO4, S4, 80)), Reason::NotAllowed);
        // A shared system not reached via the dedicated port: isolated comes first.
        assert_eq!(eval(LAN, &tcp4(ISO4, SHARED_INET4, 443)), Reason::Isolated);
        // Dedicated port but not govnet: a route towards the dedicated port for a non-govnet address.
        let r = routes().route(n("198.51.100.0/24"), Egress::Port(DED));
        let frame = tcp4(ISO4, INET4, 443);
        assert_eq!(
            evaluate(&image(), true, &ports(), &r, LAN, &frame),
            Reason::Isolated
        );
        // Unroutable.
        assert_eq!(
            eval(LAN, &tcp4(ISO4, Ipv4Addr::new(192, 0, 2, 1), 443)),
            Reason::Isolated
        );
    }

    #[test]
    fn lan_shared_allow_rules() {
        // 10.0.0.5 (C4) has the folded /32 entry: tcp 443, udp 53, icmp.
        assert_eq!(eval(LAN, &tcp4(C4, S4, 443)), Reason::Pass);
        assert_eq!(eval(LAN, &udp4(C4, S4, 53)), Reason::Pass);
        assert_eq!(eval(LAN, &icmp4(C4, S4)), Reason::Pass);
        assert_eq!(eval(LAN, &tcp4(C4, S4, 444)), Reason::NotAllowed);
        assert_eq!(eval(LAN, &udp4(C4, S4, 443)), Reason::NotAllowed);
        // Another lan host gets the /24 entry only.
        assert_eq!(eval(LAN, &tcp4(LANHOST4, S4, 443)), Reason::Pass);
        assert_eq!(eval(LAN, &udp4(LANHOST4, S4, 53)), Reason::NotAllowed);
        assert_eq!(eval(LAN, &icmp4(LANHOST4, S4)), Reason::NotAllowed);
        // A source without any entry for the system.
        assert_eq!(
            eval(LAN, &tcp4(Ipv4Addr::new(10, 9, 9, 9), S4, 443)),
            Reason::NotAllowed
        );
        // A non-first fragment has no port: only full-range or ICMP rules admit it.
        assert_eq!(eval(LAN, &frag4(C4, S4, IPPROTO_TCP)), Reason::NotAllowed);
        assert_eq!(eval(LAN, &frag4(C4, S4, IPPROTO_ICMP)), Reason::Pass);
        // An entry with no rules admits nothing.
        let mut img = image();
        img.allow4.insert((0, n4("10.0.0.5/32")), Vec::new());
        assert_eq!(eval_with(&img, LAN, &tcp4(C4, S4, 443)), Reason::NotAllowed);
        // v6: /64 entry with tcp 443 and ICMPv6.
        assert_eq!(eval(LAN, &tcp6(C6, S6, 443)), Reason::Pass);
        assert_eq!(eval(LAN, &tcp6(C6, S6, 22)), Reason::NotAllowed);
        let echo6 = eth(
            &[],
            ETH_P_IPV6,
            &v6(C6, S6, IPPROTO_ICMPV6, &[128, 0, 0, 0]),
        );
        assert_eq!(eval(LAN, &echo6), Reason::Pass);
        // The shared check uses the system of the longest prefix.
        let mut img = image();
        img.shared4.insert(n4("10.20.0.0/24"), 1);
        assert_eq!(
            eval_with(&img, LAN, &tcp4(LANHOST4, Ipv4Addr::new(10, 20, 0, 8), 80)),
            Reason::Pass
        );
        assert_eq!(
            eval_with(&img, LAN, &tcp4(LANHOST4, S4, 80)),
            Reason::NotAllowed
        );
    }

    #[test]
    fn lan_shared_route_must_be_dedicated() {
        // System 1 admits everything from the lan: only the route decides.
        let cases = [
            (SHARED_INET4, Reason::SharedViaInternet), // internet port
            (SHARED_UNROUTABLE4, Reason::SharedViaInternet), // unroutable
            (Ipv4Addr::new(10, 0, 0, 200), Reason::SharedViaInternet), // lan port
            (Ipv4Addr::new(10, 30, 0, 1), Reason::SharedViaInternet), // a port outside the map
        ];
        for (dst, want) in cases {
            assert_eq!(eval(LAN, &tcp4(C4, dst, 80)), want, "{dst}");
        }
        // Local: make the gateway's address a shared system.
        let mut img = image();
        img.shared4.insert(n4("10.0.0.1/32"), 1);
        assert_eq!(
            eval_with(&img, LAN, &tcp4(C4, LOCAL4, 80)),
            Reason::SharedViaInternet
        );
        // Via the dedicated port.
        img.shared4.insert(n4("10.20.7.7/32"), 1);
        assert_eq!(
            eval_with(&img, LAN, &tcp4(C4, Ipv4Addr::new(10, 20, 7, 7), 80)),
            Reason::Pass
        );
    }

    #[test]
    fn lan_pass() {
        assert_eq!(eval(LAN, &tcp4(C4, INET4, 443)), Reason::Pass);
        assert_eq!(eval(LAN, &tcp4(C4, DEDHOST4, 22)), Reason::Pass);
        assert_eq!(eval(LAN, &tcp6(C6, INET6, 443)), Reason::Pass);
        let hbh = eth(
            &[(0x8100, 3)],
            ETH_P_IPV6,
            &v6_ext(C6, INET6, &[Ext::Opts(IPV6_HOP_BY_HOP, 0)], 47, &[]),
        );
        assert_eq!(eval(LAN, &hbh), Reason::Pass);
    }

    #[test]
    fn dedicated_ingress() {
        assert_eq!(eval(DED, &tcp4(DEDHOST4, C4, 443)), Reason::Pass);
        assert_eq!(eval(DED, &tcp4(S4, C4, 443)), Reason::Pass);
        assert_eq!(eval(DED, &tcp4(S4, LOCAL4, 22)), Reason::Pass);
        assert_eq!(eval(DED, &tcp4(INET4, C4, 443)), Reason::DedicatedForeign);
        assert_eq!(eval(DED, &tcp4(C4, C4, 443)), Reason::DedicatedForeign);
        assert_eq!(eval(DED, &tcp4(DEDHOST4, INET4, 443)), Reason::CrossNetwork);
        assert_eq!(eval(DED, &tcp4(DEDHOST4, S4, 443)), Reason::CrossNetwork);
        assert_eq!(
            eval(DED, &tcp4(DEDHOST4, SHARED_UNROUTABLE4, 443)),
            Reason::CrossNetwork
        );
        assert_eq!(
            eval(DED, &tcp4(DEDHOST4, Ipv4Addr::new(10, 30, 0, 9), 443)),
            Reason::CrossNetwork
        );
        let ded6: Ipv6Addr = "fd20::5:5".parse().expect("addr");
        assert_eq!(eval(DED, &tcp6(ded6, C6, 443)), Reason::Pass);
        assert_eq!(eval(DED, &tcp6(INET6, C6, 443)), Reason::DedicatedForeign);
        assert_eq!(eval(DED, &tcp6(ded6, INET6, 443)), Reason::CrossNetwork);
        // Blocklists and isolation are not looked at on this port.
        assert_eq!(eval(DED, &tcp4(DEDHOST4, ISO4, 443)), Reason::Pass);
    }

    #[test]
    fn internet_ingress() {
        assert_eq!(eval(INET, &tcp4(INET4, C4, 443)), Reason::Pass);
        assert_eq!(eval(INET, &tcp4(INET4, LOCAL4, 443)), Reason::Pass);
        assert_eq!(eval(INET, &tcp4(BLOCK4, C4, 443)), Reason::BlocklistIn);
        assert_eq!(eval(INET, &tcp4(BLOCKNET4, C4, 443)), Reason::BlocklistIn);
        assert_eq!(eval(INET, &tcp6(BLOCK6, C6, 443)), Reason::BlocklistIn);
        assert_eq!(eval(INET, &tcp4(S4, C4, 443)), Reason::Spoofed);
        assert_eq!(eval(INET, &tcp4(DEDHOST4, C4, 443)), Reason::Spoofed);
        assert_eq!(eval(INET, &tcp4(SHARED_INET4, C4, 443)), Reason::Spoofed);
        assert_eq!(
            eval(INET, &tcp4(INET4, DEDHOST4, 443)),
            Reason::CrossNetwork
        );
        assert_eq!(eval(INET, &tcp4(INET4, S4, 443)), Reason::CrossNetwork);
        assert_eq!(
            eval(INET, &tcp6(INET6, "fd20::1".parse().expect("addr"), 443)),
            Reason::CrossNetwork
        );
        // A blocked destination is the lan's concern only.
        assert_eq!(eval(INET, &tcp4(INET4, BLOCK4, 443)), Reason::Pass);
        // Internet to internet (hairpin) and unroutable pass to the stack.
        assert_eq!(eval(INET, &tcp4(INET4, INET4, 443)), Reason::Pass);
        assert_eq!(
            eval(INET, &tcp4(INET4, SHARED_UNROUTABLE4, 443)),
            Reason::Pass
        );
    }

    #[test]
    fn stats_rows() {
        let p = ports();
        assert_eq!(stats_index(&p, LAN, Reason::Pass), 0);
        assert_eq!(stats_index(&p, DED, Reason::Malformed), Reason::COUNT + 2);
        assert_eq!(
            stats_index(&p, INET, Reason::Spoofed),
            2 * Reason::COUNT + 11
        );
        assert_eq!(
            stats_index(&p, OTHER, Reason::UnknownPort),
            3 * Reason::COUNT + 13
        );
    }
}
