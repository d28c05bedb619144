//! Community ID v1 (<https://github.com/corelight/community-id-spec>): a direction-free flow hash that
//! Zeek, Suricata, Arkime, Elastic and Wireshark compute too, so the SOC can join our flow records with
//! their logs by plain string comparison.
//!
//! `1:` + base64(SHA-1(seed · addr_a · addr_b · proto · 0 · port_a · port_b)), network order, where
//! the endpoint with the smaller (address, port) comes first. ICMP and ICMPv6 use Zeek's mapping of
//! type/code to a port pair (a request and its reply get the same ID; one-way messages keep their
//! direction). Protocols without ports hash no port bytes at all.
use std::net::IpAddr;

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// The Community ID v1 of a flow tuple.
///
/// Ports are host order, as in [`crate::FlowRecord`]: for ICMP (protocol 1) and ICMPv6 (58) `sport` is
/// ignored and `dport` is `type << 8 | code`. Mixed address families (never produced by the data path)
/// hash the IPv4 address in its IPv4-mapped IPv6 form.
pub fn community_id(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    seed: u16,
) -> String {
    let (src, dst) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V6(d)) => (IpAddr::V6(s.to_ipv6_mapped()), IpAddr::V6(d)),
        (IpAddr::V6(s), IpAddr::V4(d)) => (IpAddr::V6(s), IpAddr::V6(d.to_ipv6_mapped())),
        same => same,
    };
    let (a, b) = (octets(src), octets(dst));
    let ports = match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => Some((sport, dport, false)),
        PROTO_ICMP | PROTO_ICMPV6 => {
            let [ty, code] = dport.to_be_bytes();
            Some(icmp_ports(proto, ty, code))
        }
        _ => None,
    };
    let mut hasher = Sha1::new();
    hasher.update(seed.to_be_bytes());
    match ports {
        Some((sp, dp, one_way)) => {
            // One-way ICMP messages keep their direction: there is no reply to fold them onto.
            let keep = one_way || (a.as_slice(), sp) < (b.as_slice(), dp);
            let ((a, sp), (b, dp)) = if keep {
                ((&a, sp), (&b, dp))
            } else {
                ((&b, dp), (&a, sp))
            };
            hasher.update(a);
            hasher.update(b);
            hasher.update([proto, 0]);
            hasher.update(sp.to_be_bytes());
            hasher.update(dp.to_be_bytes());
        }
        None => {
            let (a, b) = if a <= b { (&a, &b) } else { (&b, &a) };
            hasher.update(a);
            hasher.update(b);
            hasher.update([proto, 0]);
        }
    }
    let digest = hasher.finalize();
    format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn octets(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Zeek's ICMP "port" pair: (type, counterpart type) for request/reply kinds, else (type, code) and
/// one-way. Returns (sport, dport, one_way).
fn icmp_ports(proto: u8, ty: u8, code: u8) -> (u16, u16, bool) {
    let counterpart = if proto == PROTO_ICMP {
        match ty {
            8 => Some(0),   // echo request → reply
            0 => Some(8),   // echo reply → request
            13 => Some(14), // timestamp
            14 => Some(13),
            15 => Some(16), // information
            16 => Some(15),
            10 => Some(9), // router solicitation → advertisement
            9 => Some(10),
            17 => Some(18), // address mask
            18 => Some(17),
            _ => None,
        }
    } else {
        match ty {
            128 => Some(129), // echo request → reply
            129 => Some(128),
            133 => Some(134), // router solicitation → advertisement
            134 => Some(133),
            135 => Some(136), // neighbour solicitation → advertisement
            136 => Some(135),
            130 => Some(131), // MLD query → report
            131 => Some(130),
            139 => Some(140), // node information ("who are you") query → reply
            140 => Some(139),
            144 => Some(145), // home agent address discovery request → reply
            145 => Some(144),
            _ => None,
        }
    };
    match counterpart {
        Some(c) => (u16::from(ty), c, false),
        None => (u16::from(ty), u16::from(code), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn icmp(ty: u8, code: u8) -> u16 {
        u16::from_be_bytes([ty, code])
    }

    /// The spec's baseline tables (baseline/README.md), default seed and seed 1. ICMP rows give
    /// type/code, which our API takes as `dport = type << 8 | code`.
    #[test]
    fn spec_baseline_tables() {
        let (s4, d4) = (ip("1.2.3.4"), ip("5.6.7.8"));
        let (s6, d6) = (
            ip("fe80:0001:0203:0405:0607:0809:0A0B:0C0D"),
            ip("fe80:1011:1213:1415:1617:1819:1A1B:1C1D"),
        );
        let rows: &[(IpAddr, IpAddr, u8, u16, u16, &str, &str)] = &[
            (
                s4,
                d4,
                6,
                1122,
                3344,
                "1:wCb3OG7yAFWelaUydu0D+125CLM=",
                "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=",
            ),
            (
                d4,
                s4,
                6,
                3344,
                1122,
                "1:wCb3OG7yAFWelaUydu0D+125CLM=",
                "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=",
            ),
            (
                s4,
                d4,
                17,
                1122,
                3344,
                "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=",
                "1:OShq+iKDAMVouh/4bMxB9Sz4amw=",
            ),
            (
                d4,
                s4,
                17,
                3344,
                1122,
                "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=",
                "1:OShq+iKDAMVouh/4bMxB9Sz4amw=",
            ),
            (
                s4,
                d4,
                132,
                1122,
                3344,
                "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=",
                "1:uitchpn5MMGAQKBJh7bIr/bAr7s=",
            ),
            (
                d4,
                s4,
                132,
                3344,
                1122,
                "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=",
                "1:uitchpn5MMGAQKBJh7bIr/bAr7s=",
            ),
            (
                s4,
                d4,
                1,
                0,
                icmp(8, 0),
                "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=",
                "1:9pr4ZGTICiuZoIh90RRYE2RyXpU=",
            ),
        ];
        for (i, &(s, d, p, sp, dp, deflt, seed1)) in rows.iter().enumerate() {
            assert_eq!(community_id(s, d, p, sp, dp, 0), deflt, "row {i} seed 0");
            assert_eq!(community_id(s, d, p, sp, dp, 1), seed1, "row {i} seed 1");
        }
        let deflt: &[(IpAddr, IpAddr, u8, u16, &str)] = &[
            (d4, s4, 1, icmp(0, 0), "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),
            (s4, d4, 1, icmp(11, 0), "1:f/YiSyWqczrTgfUCZlBUnvHRcPk="),
            (s6, d6, 58, icmp(128, 0), "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="),
            (d6, s6, 58, icmp(129, 0), "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="),
            (s6, d6, 58, icmp(146, 0), "1:fYC8+pz24E+EhANP1EZhpX0Dw10="),
            (s4, d4, 46, 0, "1:ikv3kmf89luf73WPz1jOs49S768="),
            (d4, s4, 46, 0, "1:ikv3kmf89luf73WPz1jOs49S768="),
            (s6, d6, 46, 0, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0="),
            (d6, s6, 46, 0, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0="),
        ];
        for (i, &(s, d, p, dp, want)) in deflt.iter().enumerate() {
            assert_eq!(community_id(s, d, p, 0, dp, 0), want, "row {i}");
        }
    }

    /// Rows of the spec's baseline_deflt.json (computed from its pcaps). The JSON lists ICMP tuples
    /// after the type→port mapping; the ones below are request/reply or one-way kinds whose code is 0
    /// or given, so type and code can be read back.
    #[test]
    fn spec_baseline_json() {
        let rows: &[(&str, &str, u8, u16, u16, &str)] = &[
            (
                "2001:470:e5bf:dead:4957:2174:e82c:4887",
                "2607:f8b0:400c:c03::1a",
                6,
                63943,
                25,
                "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            ),
            (
                "2607:f8b0:400c:c03::1a",
                "2001:470:e5bf:dead:4957:2174:e82c:4887",
                6,
                25,
                63943,
                "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            ),
            (
                "192.168.170.8",
                "192.168.170.56",
                132,
                7,
                7,
                "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            ),
            (
                "192.168.170.56",
                "192.168.170.8",
                132,
                7,
                7,
                "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            ),
            (
                "128.232.110.120",
                "66.35.250.204",
                6,
                34855,
                80,
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                "66.35.250.204",
                "128.232.110.120",
                6,
                80,
                34855,
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                "192.168.1.52",
                "8.8.8.8",
                17,
                54585,
                53,
                "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            ),
            (
                "8.8.8.8",
                "192.168.1.52",
                17,
                53,
                54585,
                "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            ),
            (
                "10.1.12.1",
                "10.1.12.2",
                46,
                0,
                0,
                "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
            ),
            (
                "10.1.12.2",
                "10.1.12.1",
                46,
                0,
                0,
                "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
            ),
            // ICMP echo request and its reply.
            (
                "192.168.0.89",
                "192.168.0.1",
                1,
                0,
                0x0800,
                "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            ),
            (
                "192.168.0.1",
                "192.168.0.89",
                1,
                0,
                0x0000,
                "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            ),
            // ICMP time exceeded (one-way).
            (
                "10.0.0.1",
                "10.0.0.2",
                1,
                0,
                0x0b00,
                "1:YHxtAirCG//0OzkcVAukqKQN9xM=",
            ),
            // ICMPv6 neighbour solicitation/advertisement.
            (
                "fe80::200:86ff:fe05:80da",
                "fe80::260:97ff:fe07:69ea",
                58,
                0,
                0x8700,
                "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            ),
            (
                "fe80::260:97ff:fe07:69ea",
                "fe80::200:86ff:fe05:80da",
                58,
                0,
                0x8800,
                "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            ),
            // ICMPv6 time exceeded (type 3, code 0) and destination unreachable (type 1, code 4).
            (
                "3ffe:501:1800:2345::2",
                "3ffe:507:0:1:200:86ff:fe05:80da",
                58,
                0,
                0x0300,
                "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=",
            ),
            (
                "3ffe:501:410:0:2c0:dfff:fe47:33e",
                "3ffe:507:0:1:200:86ff:fe05:80da",
                58,
                0,
                0x0104,
                "1:hLZd0XGWojozrvxqE0dWB1iM6R0=",
            ),
            // ICMPv6 echo request/reply.
            (
                "3ffe:507:0:1:200:86ff:fe05:80da",
                "3ffe:501:0:1001::2",
                58,
                0,
                0x8000,
                "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            ),
            (
                "3ffe:501:0:1001::2",
                "3ffe:507:0:1:200:86ff:fe05:80da",
                58,
                0,
                0x8100,
                "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            ),
            // Router solicitation / advertisement to multicast groups.
            (
                "fe80::200:86ff:fe05:80da",
                "ff02::2",
                58,
                0,
                0x8500,
                "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=",
            ),
            (
                "fe80::260:97ff:fe07:69ea",
                "ff02::1",
                58,
                0,
                0x8600,
                "1:pkvHqCL88/tg1k4cPigmZXUtL00=",
            ),
        ];
        for (i, &(s, d, p, sp, dp, want)) in rows.iter().enumerate() {
            assert_eq!(
                community_id(ip(s), ip(d), p, sp, dp, 0),
                want,
                "row {i}: {s} -> {d}"
            );
        }
    }
}
