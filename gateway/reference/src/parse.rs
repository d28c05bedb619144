//! Frame parsing, spec §1, on top of `smoltcp::wire`.
//!
//! smoltcp's checked constructors are used where their checks are exactly the spec's, and the spec's
//! own checks are added where smoltcp is looser or stricter:
//! - Ethernet: `EthernetFrame::new_checked` (14 bytes) is the spec. VLAN tags are parsed by hand
//!   (smoltcp has no VLAN support).
//! - IPv4: `Ipv4Packet::new_checked` checks 20 bytes, ihl*4 bytes, total_length ≥ ihl*4 and
//!   total_length ≤ buffer; the spec adds version == 4 and ihl ≥ 5 (smoltcp accepts ihl < 5 when the
//!   total length allows it). The checksum is not verified (neither does smoltcp's constructor).
//! - IPv6: `Ipv6Packet::new_checked` checks 40 bytes and 40 + payload_length ≤ buffer; the spec adds
//!   version == 6 and payload_length != 0 (no jumbograms).
//! - Hop-by-hop / routing / destination options: `Ipv6ExtHeader::new_checked` checks 8 bytes and
//!   (hdr_ext_len + 1) * 8 bytes; since that length is never below 8 this is exactly the spec's "need 2
//!   bytes, then the whole header within the region". The type-specific wrappers
//!   (`Ipv6RoutingHeader` checks routing-type-specific lengths) are not used: the spec does not look
//!   inside these headers.
//! - Fragment header: 8 bytes checked by hand (its second byte is reserved, not a length, so the
//!   generic extension-header check would misread it), then `Ipv6FragmentHeader` on bytes 2..8.
//! - TCP: `TcpPacket::new_checked` checks 20 bytes, data offset ≥ 5 and doff*4 ≤ buffer: the spec.
//! - UDP: 8 bytes by hand; `UdpPacket::new_checked` would also reject a UDP length field larger than
//!   the buffer or below 8, which the spec does not look at.
//! - ICMP / ICMPv6: 4 bytes by hand; smoltcp's checked constructors want 8 bytes or more (per type).

use std::net::IpAddr;

use gateway_common::maps::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use smoltcp::wire::{
    EthernetFrame, Ipv4Packet, Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Packet, TcpPacket, UdpPacket,
};

/// Length of the Ethernet header (two MACs and the ethertype).
pub const ETH_HLEN: usize = 14;
/// Length of one VLAN tag (TCI and the inner ethertype).
pub const VLAN_HLEN: usize = 4;
/// Most VLAN tags the data path accepts; a third is malformed.
pub const MAX_VLAN_TAGS: usize = 2;
/// Most IPv6 extension headers the data path walks; a seventh is malformed.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;

/// IPv6 extension headers the data path walks.
pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_ROUTING: u8 = 43;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_DEST_OPTS: u8 = 60;

const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const IPV6_FRAG_HLEN: usize = 8;
const UDP_HLEN: usize = 8;
const ICMP_MIN_LEN: usize = 4;

/// What the verdict needs from an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The upper-layer protocol (for a non-first fragment: the protocol it carries).
    pub proto: u8,
    /// TCP/UDP ports; `None` for other protocols and for non-first fragments.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// A non-first fragment (fragment offset != 0): no L4 header was looked at.
    pub fragment: bool,
    /// UDP and TCP: where the payload lies in the frame, `(offset, length)` (UDP: up to the UDP
    /// length field, cut to the IP payload; TCP: the rest of the IP payload). `(0, 0)` otherwise.
    pub payload: (usize, usize),
}

/// The outcome of parsing a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Parsed {
    /// Not IPv4/IPv6 (ARP, LLDP, …): passes.
    NonIp,
    /// Truncated or malformed L2/L3/L4 headers: drops.
    Malformed,
    Ip(Packet),
}

/// A parse failure: the frame is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Malformed;

impl From<smoltcp::wire::Error> for Malformed {
    fn from(_: smoltcp::wire::Error) -> Self {
        Malformed
    }
}

/// Parses a raw Ethernet frame per the spec.
pub fn parse(frame: &[u8]) -> Parsed {
    match parse_frame(frame) {
        Ok(parsed) => parsed,
        Err(Malformed) => Parsed::Malformed,
    }
}

/// The TCP or UDP payload of a well-formed first fragment (issue 6: ClientHello and DNS response
/// inspection); empty for other packets. [`Packet::payload`] as a slice of `frame`.
pub fn l4_payload(frame: &[u8]) -> &[u8] {
    match parse(frame) {
        Parsed::Ip(Packet {
            payload: (at, len), ..
        }) => &frame[at..at + len],
        _ => &[],
    }
}

fn parse_frame(frame: &[u8]) -> Result<Parsed, Malformed> {
    let (ethertype, l3) = parse_l2(frame)?;
    let ip = &frame[l3..];
    let mut pkt = match ethertype {
        ETH_P_IP => parse_ipv4(ip)?,
        ETH_P_IPV6 => parse_ipv6(ip)?,
        _ => return Ok(Parsed::NonIp),
    };
    // parse_ipv4/6 give the payload's offset from the IP header.
    pkt.payload.0 += l3;
    Ok(Parsed::Ip(pkt))
}

/// Ethernet and up to two VLAN tags: the inner ethertype and the offset of the L3 header.
fn parse_l2(frame: &[u8]) -> Result<(u16, usize), Malformed> {
    let eth = EthernetFrame::new_checked(frame)?;
    let mut ethertype = u16::from(eth.ethertype());
    let mut l3 = ETH_HLEN;
    let mut tags = 0;
    while ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        if tags == MAX_VLAN_TAGS {
            return Err(Malformed);
        }
        let tag = frame.get(l3..l3 + VLAN_HLEN).ok_or(Malformed)?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        l3 += VLAN_HLEN;
        tags += 1;
    }
    Ok((ethertype, l3))
}

fn parse_ipv4(ip: &[u8]) -> Result<Packet, Malformed> {
    let pkt = Ipv4Packet::new_checked(ip)?;
    if pkt.version() != 4 || usize::from(pkt.header_len()) < IPV4_MIN_HLEN {
        return Err(Malformed);
    }
    let src = IpAddr::V4(pkt.src_addr());
    let dst = IpAddr::V4(pkt.dst_addr());
    let proto = u8::from(pkt.next_header());
    // frag_offset() is in bytes; zero exactly when the 13-bit offset field is zero.
    if pkt.frag_offset() != 0 {
        return Ok(non_first_fragment(src, dst, proto));
    }
    let l4 = &ip[usize::from(pkt.header_len())..usize::from(pkt.total_len())];
    let (sport, dport, (at, len)) = parse_l4(proto, l4, IPPROTO_ICMP)?;
    Ok(Packet {
        src,
        dst,
        proto,
        sport,
        dport,
        fragment: false,
        payload: (usize::from(pkt.header_len()) + at, len),
    })
}

fn parse_ipv6(ip: &[u8]) -> Result<Packet, Malformed> {
    let pkt = Ipv6Packet::new_checked(ip)?;
    if pkt.version() != 6 || pkt.payload_len() == 0 {
        return Err(Malformed);
    }
    let src = IpAddr::V6(pkt.src_addr());
    let dst = IpAddr::V6(pkt.dst_addr());
    // The L4 region: everything after the fixed header up to the payload length.
    let region = &ip[IPV6_HLEN..IPV6_HLEN + usize::from(pkt.payload_len())];
    let mut next = u8::from(pkt.next_header());
    let mut off = 0;
    let mut count = 0;
    loop {
        match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                count += 1;
                if count > MAX_IPV6_EXT_HEADERS {
                    return Err(Malformed);
                }
                let hdr = Ipv6ExtHeader::new_checked(&region[off..])?;
                next = u8::from(hdr.next_header());
                off += (usize::from(hdr.header_len()) + 1) * 8;
            }
            IPV6_FRAGMENT => {
                count += 1;
                if count > MAX_IPV6_EXT_HEADERS {
                    return Err(Malformed);
                }
                let bytes = region.get(off..off + IPV6_FRAG_HLEN).ok_or(Malformed)?;
                // smoltcp's fragment header starts after the next-header and reserved bytes.
                let frag = Ipv6FragmentHeader::new_checked(&bytes[2..])?;
                next = bytes[0];
                if frag.frag_offset() != 0 {
                    return Ok(non_first_fragment(src, dst, next));
                }
                off += IPV6_FRAG_HLEN;
            }
            _ => break,
        }
    }
    let (sport, dport, (at, len)) = parse_l4(next, &region[off..], IPPROTO_ICMPV6)?;
    Ok(Packet {
        src,
        dst,
        proto: next,
        sport,
        dport,
        fragment: false,
        payload: (IPV6_HLEN + off + at, len),
    })
}

fn non_first_fragment(src: IpAddr, dst: IpAddr, proto: u8) -> Packet {
    Packet {
        src,
        dst,
        proto,
        sport: None,
        dport: None,
        fragment: true,
        payload: (0, 0),
    }
}

/// Ports and where the payload lies in `l4`, `(offset, length)`.
type L4Info = (Option<u16>, Option<u16>, (usize, usize));

/// Checks the L4 header in `l4` (the region up to the end of the IP payload) and returns the ports
/// and the payload's place. `icmp` is the ICMP protocol of the packet's family; the other family's
/// ICMP is not checked.
fn parse_l4(proto: u8, l4: &[u8], icmp: u8) -> Result<L4Info, Malformed> {
    match proto {
        IPPROTO_TCP => {
            let tcp = TcpPacket::new_checked(l4)?;
            let hlen = usize::from(tcp.header_len());
            Ok((
                Some(tcp.src_port()),
                Some(tcp.dst_port()),
                (hlen, l4.len() - hlen),
            ))
        }
        IPPROTO_UDP => {
            if l4.len() < UDP_HLEN {
                return Err(Malformed);
            }
            let udp = UdpPacket::new_unchecked(l4);
            // The length field, cut to the IP payload; below the header: no payload.
            let len = usize::from(udp.len())
                .min(l4.len())
                .saturating_sub(UDP_HLEN);
            Ok((Some(udp.src_port()), Some(udp.dst_port()), (UDP_HLEN, len)))
        }
        p if p == icmp => {
            if l4.len() < ICMP_MIN_LEN {
                return Err(Malformed);
            }
            Ok((None, None, (0, 0)))
        }
        _ => Ok((None, None, (0, 0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn ip(p: Parsed) -> Packet {
        match p {
            Parsed::Ip(p) => p,
            other => panic!("expected an IP packet, got {other:?}"),
        }
    }

    #[test]
    fn ethernet_needs_14_bytes() {
        assert_eq!(parse(&[]), Parsed::Malformed);
        assert_eq!(parse(&[0u8; 13]), Parsed::Malformed);
        assert_eq!(parse(&eth(&[], 0x0806, &[])), Parsed::NonIp);
    }

    #[test]
    fn non_ip_passes() {
        assert_eq!(parse(&eth(&[], 0x0806, &[0u8; 28])), Parsed::NonIp);
        assert_eq!(parse(&eth(&[], 0x88CC, &[0u8; 20])), Parsed::NonIp);
        assert_eq!(
            parse(&eth(&[(0x8100, 5)], 0x0806, &[0u8; 28])),
            Parsed::NonIp
        );
        // A VLAN-tagged frame whose inner ethertype is not IP.
        assert_eq!(
            parse(&eth(&[(0x88A8, 5), (0x8100, 6)], 0x1234, &[])),
            Parsed::NonIp
        );
    }

    #[test]
    fn vlan_tags() {
        let l3 = v4_tcp(C4, S4, 1000, 443);
        for tags in [
            &[][..],
            &[(0x8100, 10)],
            &[(0x88A8, 10)],
            &[(0x88A8, 10), (0x8100, 20)],
            &[(0x8100, 10), (0x8100, 20)],
        ] {
            let p = ip(parse(&eth(tags, ETH_P_IP, &l3)));
            assert_eq!(
                (p.proto, p.dport),
                (IPPROTO_TCP, Some(443)),
                "tags {tags:?}"
            );
        }
        // A third tag.
        let three = eth(&[(0x8100, 1), (0x8100, 2), (0x8100, 3)], ETH_P_IP, &l3);
        assert_eq!(parse(&three), Parsed::Malformed);
        let three_ad = eth(&[(0x88A8, 1), (0x88A8, 2), (0x8100, 3)], 0x0806, &[0u8; 28]);
        assert_eq!(parse(&three_ad), Parsed::Malformed);
        // A tag cut short: the frame ends inside the 4 tag bytes.
        let mut cut = eth(&[], 0x8100, &[0, 5, 0x08]);
        assert_eq!(parse(&cut), Parsed::Malformed);
        cut.push(0x00); // now exactly one complete tag, inner ethertype IPv4, no IP header.
        assert_eq!(parse(&cut), Parsed::Malformed);
        let mut arp = eth(&[], 0x8100, &[0, 5, 0x08, 0x06]);
        assert_eq!(parse(&arp), Parsed::NonIp);
        arp.truncate(ETH_HLEN);
        assert_eq!(parse(&arp), Parsed::Malformed);
    }

    #[test]
    fn ipv4_basic_and_ports() {
        let p = ip(parse(&eth(&[], ETH_P_IP, &v4_tcp(C4, S4, 1000, 443))));
        assert_eq!(
            p,
            Packet {
                src: C4.into(),
                dst: S4.into(),
                proto: IPPROTO_TCP,
                sport: Some(1000),
                dport: Some(443),
                fragment: false,
                payload: (ETH_HLEN + 20 + 20, 0),
            }
        );
        let p = ip(parse(&eth(
            &[],
            ETH_P_IP,
            &v4(C4, S4, IPPROTO_UDP, &udp(53, 5353, 0)),
        )));
        assert_eq!((p.sport, p.dport), (Some(53), Some(5353)));
        let p = ip(parse(&eth(
            &[],
            ETH_P_IP,
            &v4(C4, S4, IPPROTO_ICMP, &[8, 0, 0, 0]),
        )));
        assert_eq!((p.proto, p.sport, p.dport), (IPPROTO_ICMP, None, None));
        let p = ip(parse(&eth(&[], ETH_P_IP, &v4(C4, S4, 47, &[]))));
        assert_eq!((p.proto, p.sport, p.dport), (47, None, None));
    }

    #[test]
    fn ipv4_header_checks() {
        let good = v4_tcp(C4, S4, 1000, 443);
        let f = |l3: &[u8]| parse(&eth(&[], ETH_P_IP, l3));
        assert!(matches!(f(&good), Parsed::Ip(_)));
        // Fewer than 20 bytes.
        assert_eq!(f(&good[..19]), Parsed::Malformed);
        assert_eq!(f(&[]), Parsed::Malformed);
        // Version.
        let mut bad = good.clone();
        bad[0] = 0x65;
        assert_eq!(f(&bad), Parsed::Malformed);
        // ihl < 5 even though total_length would allow it.
        for ihl in 0..5u8 {
            let mut bad = good.clone();
            bad[0] = 0x40 | ihl;
            assert_eq!(f(&bad), Parsed::Malformed, "ihl {ihl}");
        }
        // ihl*4 bytes not present.
        let mut bad = good[..20].to_vec();
        bad[0] = 0x46;
        bad[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(f(&bad), Parsed::Malformed);
        // total_length < ihl*4.
        let mut bad = good.clone();
        bad[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(f(&bad), Parsed::Malformed);
        // total_length beyond the frame.
        let mut bad = good.clone();
        bad[2..4].copy_from_slice(&(good.len() as u16 + 1).to_be_bytes());
        assert_eq!(f(&bad), Parsed::Malformed);
        // Truncated at every byte.
        for n in 0..good.len() {
            assert_eq!(f(&good[..n]), Parsed::Malformed, "cut at {n}");
        }
        // Trailing padding beyond total_length is fine; the bogus checksum is not looked at.
        let mut padded = good.clone();
        padded[10] ^= 0xff;
        padded.extend_from_slice(&[0u8; 18]);
        assert!(matches!(f(&padded), Parsed::Ip(_)));
    }

    #[test]
    fn ipv4_options_move_l4() {
        let l3 = v4_opts(C4, S4, IPPROTO_TCP, &[1, 1, 1, 0], &tcp(7, 8, 5, 0));
        let p = ip(parse(&eth(&[], ETH_P_IP, &l3)));
        assert_eq!((p.sport, p.dport), (Some(7), Some(8)));
    }

    #[test]
    fn ipv4_l4_bounded_by_total_length() {
        // TCP needs 20 bytes within total_length: the padding after it does not count.
        let mut l3 = v4(C4, S4, IPPROTO_TCP, &tcp(7, 8, 5, 0)[..12]);
        l3.extend_from_slice(&[0u8; 30]);
        assert_eq!(parse(&eth(&[], ETH_P_IP, &l3)), Parsed::Malformed);
    }

    #[test]
    fn ipv4_fragments() {
        // First fragment (MF, offset 0): L4 parsed.
        let mut first = v4_tcp(C4, S4, 1000, 443);
        set_v4_frag(&mut first, true, 0);
        let p = ip(parse(&eth(&[], ETH_P_IP, &first)));
        assert_eq!((p.fragment, p.dport), (false, Some(443)));
        // Tiny first fragment: 8 bytes of TCP.
        let mut tiny = v4(C4, S4, IPPROTO_TCP, &tcp(1, 2, 5, 0)[..8]);
        set_v4_frag(&mut tiny, true, 0);
        assert_eq!(parse(&eth(&[], ETH_P_IP, &tiny)), Parsed::Malformed);
        // Non-first fragment: no L4 check, no ports, even with 1 byte of payload.
        for more in [true, false] {
            let mut nf = v4(C4, S4, IPPROTO_TCP, &[0xee]);
            set_v4_frag(&mut nf, more, 185);
            let p = ip(parse(&eth(&[], ETH_P_IP, &nf)));
            assert_eq!(
                (p.fragment, p.proto, p.sport, p.dport),
                (true, IPPROTO_TCP, None, None)
            );
        }
        // DF alone is not a fragment.
        let mut df = v4_tcp(C4, S4, 1000, 443);
        df[6] = 0x40;
        assert!(!ip(parse(&eth(&[], ETH_P_IP, &df))).fragment);
    }

    #[test]
    fn tcp_checks() {
        let f = |seg: &[u8]| parse(&eth(&[], ETH_P_IP, &v4(C4, S4, IPPROTO_TCP, seg)));
        for n in 0..20 {
            assert_eq!(f(&tcp(1, 2, 5, 0)[..n]), Parsed::Malformed, "{n} bytes");
        }
        for doff in 0..5 {
            assert_eq!(f(&tcp(1, 2, doff, 0)), Parsed::Malformed, "doff {doff}");
        }
        // doff*4 within the region: 24 bytes header with 4 bytes of options.
        assert!(matches!(f(&tcp(1, 2, 6, 4)), Parsed::Ip(_)));
        assert_eq!(f(&tcp(1, 2, 6, 3)), Parsed::Malformed);
        assert_eq!(f(&tcp(1, 2, 15, 39)), Parsed::Malformed);
        assert!(matches!(f(&tcp(1, 2, 15, 40)), Parsed::Ip(_)));
    }

    #[test]
    fn udp_and_icmp_checks() {
        let f = |proto, seg: &[u8]| parse(&eth(&[], ETH_P_IP, &v4(C4, S4, proto, seg)));
        for n in 0..8 {
            assert_eq!(
                f(IPPROTO_UDP, &udp(1, 2, 0)[..n]),
                Parsed::Malformed,
                "{n} bytes"
            );
        }
        // A bogus UDP length field is not the data path's business (smoltcp would refuse it).
        let mut bogus = udp(1, 2, 0);
        bogus[4..6].copy_from_slice(&999u16.to_be_bytes());
        assert!(matches!(f(IPPROTO_UDP, &bogus), Parsed::Ip(_)));
        bogus[4..6].copy_from_slice(&0u16.to_be_bytes());
        assert!(matches!(f(IPPROTO_UDP, &bogus), Parsed::Ip(_)));
        // ICMP needs 4 bytes (smoltcp would want 8).
        assert_eq!(f(IPPROTO_ICMP, &[8, 0, 0]), Parsed::Malformed);
        assert!(matches!(f(IPPROTO_ICMP, &[8, 0, 0, 0]), Parsed::Ip(_)));
        // ICMPv6 in IPv4 is just another protocol.
        assert!(matches!(f(IPPROTO_ICMPV6, &[]), Parsed::Ip(_)));
    }

    #[test]
    fn ipv6_basic() {
        let p = ip(parse(&eth(
            &[],
            ETH_P_IPV6,
            &v6(C6, S6, IPPROTO_TCP, &tcp(1000, 443, 5, 0)),
        )));
        assert_eq!(
            p,
            Packet {
                src: C6.into(),
                dst: S6.into(),
                proto: IPPROTO_TCP,
                sport: Some(1000),
                dport: Some(443),
                fragment: false,
                payload: (ETH_HLEN + 40 + 20, 0),
            }
        );
        let f = |proto, seg: &[u8]| parse(&eth(&[], ETH_P_IPV6, &v6(C6, S6, proto, seg)));
        assert_eq!(f(IPPROTO_ICMPV6, &[128, 0, 0]), Parsed::Malformed);
        assert!(matches!(f(IPPROTO_ICMPV6, &[128, 0, 0, 0]), Parsed::Ip(_)));
        // ICMP (v4) in IPv6 is just another protocol; so is "no next header".
        assert!(matches!(f(IPPROTO_ICMP, &[1]), Parsed::Ip(_)));
        assert!(matches!(f(59, &[0]), Parsed::Ip(_)));
        assert_eq!(f(IPPROTO_UDP, &[0; 7]), Parsed::Malformed);
    }

    #[test]
    fn ipv6_header_checks() {
        let good = v6(C6, S6, IPPROTO_UDP, &udp(1, 2, 4));
        let f = |l3: &[u8]| parse(&eth(&[], ETH_P_IPV6, l3));
        assert!(matches!(f(&good), Parsed::Ip(_)));
        for n in 0..good.len() {
            assert_eq!(f(&good[..n]), Parsed::Malformed, "cut at {n}");
        }
        let mut bad = good.clone();
        bad[0] = 0x40;
        assert_eq!(f(&bad), Parsed::Malformed, "version");
        // Jumbogram (payload length 0) even with a hop-by-hop header.
        let mut jumbo = good.clone();
        jumbo[4..6].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(f(&jumbo), Parsed::Malformed);
        // payload_length beyond the frame.
        let mut bad = good.clone();
        bad[4..6].copy_from_slice(&13u16.to_be_bytes());
        assert_eq!(f(&bad), Parsed::Malformed);
        // payload_length short of the UDP header: the L4 region ends there.
        let mut bad = good.clone();
        bad[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(f(&bad), Parsed::Malformed);
        // Trailing bytes beyond the payload length are fine.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 10]);
        assert!(matches!(f(&padded), Parsed::Ip(_)));
    }

    #[test]
    fn ipv6_extension_headers() {
        let seg = tcp(1000, 443, 5, 0);
        let chain = |exts: &[Ext]| {
            parse(&eth(
                &[],
                ETH_P_IPV6,
                &v6_ext(C6, S6, exts, IPPROTO_TCP, &seg),
            ))
        };
        let hbh = Ext::Opts(IPV6_HOP_BY_HOP, 0);
        let rt = Ext::Opts(IPV6_ROUTING, 1);
        let dst = Ext::Opts(IPV6_DEST_OPTS, 2);
        let frag0 = Ext::Frag(0, true);
        let p = ip(chain(&[hbh, rt, dst, frag0, dst]));
        assert_eq!(
            (p.proto, p.dport, p.fragment),
            (IPPROTO_TCP, Some(443), false)
        );
        // Six headers are fine, a seventh is malformed.
        assert!(matches!(
            chain(&[hbh, dst, dst, dst, dst, dst]),
            Parsed::Ip(_)
        ));
        assert_eq!(
            chain(&[hbh, dst, dst, dst, dst, dst, dst]),
            Parsed::Malformed
        );
        assert_eq!(
            chain(&[hbh, dst, dst, dst, dst, dst, frag0]),
            Parsed::Malformed
        );
        assert_eq!(
            chain(&[hbh, dst, dst, dst, dst, dst, Ext::Frag(3, false)]),
            Parsed::Malformed
        );
        // A non-first fragment as the sixth header stops the walk before the count is exceeded.
        let p = ip(chain(&[hbh, dst, dst, dst, dst, Ext::Frag(3, false)]));
        assert_eq!(
            (p.proto, p.sport, p.dport, p.fragment),
            (IPPROTO_TCP, None, None, true)
        );
    }

    #[test]
    fn ipv6_extension_header_lengths() {
        // Options header claiming more than the region holds.
        let mut l3 = v6_ext(
            C6,
            S6,
            &[Ext::Opts(IPV6_DEST_OPTS, 0)],
            IPPROTO_UDP,
            &udp(1, 2, 0),
        );
        l3[40 + 1] = 3; // 32 bytes claimed, 16 present
        assert_eq!(parse(&eth(&[], ETH_P_IPV6, &l3)), Parsed::Malformed);
        l3[40 + 1] = 1; // 16 bytes claimed: the header swallows the UDP header, leaving 0 bytes.
        assert_eq!(parse(&eth(&[], ETH_P_IPV6, &l3)), Parsed::Malformed);
        // Region with 1 byte left for an options header (region ends by payload_length).
        for kind in [IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_DEST_OPTS, IPV6_FRAGMENT] {
            for len in 1..8u16 {
                let mut l3 = v6(C6, S6, kind, &[59, 0, 0, 0, 0, 0, 0, 0]);
                l3[4..6].copy_from_slice(&len.to_be_bytes());
                assert_eq!(
                    parse(&eth(&[], ETH_P_IPV6, &l3)),
                    Parsed::Malformed,
                    "{kind} {len}"
                );
            }
            let l3 = v6(C6, S6, kind, &[59, 0, 0, 0, 0, 0, 0, 0]);
            let p = ip(parse(&eth(&[], ETH_P_IPV6, &l3)));
            assert_eq!(p.proto, 59, "{kind}");
        }
        // The fragment header's reserved byte is not a length.
        let mut l3 = v6_ext(C6, S6, &[Ext::Frag(0, false)], IPPROTO_UDP, &udp(1, 2, 0));
        l3[40 + 1] = 0xff;
        assert!(matches!(parse(&eth(&[], ETH_P_IPV6, &l3)), Parsed::Ip(_)));
        // The walk is bounded by payload_length, not the frame: trailing bytes do not help.
        let mut l3 = v6_ext(C6, S6, &[Ext::Opts(IPV6_HOP_BY_HOP, 0)], IPPROTO_UDP, &[]);
        l3.extend_from_slice(&udp(1, 2, 0));
        assert_eq!(parse(&eth(&[], ETH_P_IPV6, &l3)), Parsed::Malformed);
    }

    #[test]
    fn ipv6_fragments() {
        let seg = tcp(1000, 443, 5, 0);
        // Tiny first fragment: TCP header cut by the L4 region.
        let l3 = v6_ext(C6, S6, &[Ext::Frag(0, true)], IPPROTO_TCP, &seg[..10]);
        assert_eq!(parse(&eth(&[], ETH_P_IPV6, &l3)), Parsed::Malformed);
        // Non-first fragment: protocol from its next header, no L4 check.
        let l3 = v6_ext(
            C6,
            S6,
            &[Ext::Opts(IPV6_HOP_BY_HOP, 0), Ext::Frag(100, true)],
            IPPROTO_UDP,
            &[1],
        );
        let p = ip(parse(&eth(&[], ETH_P_IPV6, &l3)));
        assert_eq!(
            (p.proto, p.sport, p.dport, p.fragment),
            (IPPROTO_UDP, None, None, true)
        );
        // A non-first fragment whose next header is another extension header: that is its protocol.
        let l3 = v6_ext(C6, S6, &[Ext::Frag(1, false)], IPV6_DEST_OPTS, &[]);
        let p = ip(parse(&eth(&[], ETH_P_IPV6, &l3)));
        assert_eq!((p.proto, p.fragment), (IPV6_DEST_OPTS, true));
        // A fragment header needs 8 bytes in the region.
        let l3 = v6(C6, S6, IPV6_FRAGMENT, &[6, 0, 0, 8]);
        assert_eq!(parse(&eth(&[], ETH_P_IPV6, &l3)), Parsed::Malformed);
    }
}
