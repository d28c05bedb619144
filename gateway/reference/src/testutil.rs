//! Minimal frame assembly for the unit tests. Checksums are left zero: the data path never checks
//! them. (The full builder with checksums and corruption knobs is `gateway_tests::corpus`.)

use std::net::{Ipv4Addr, Ipv6Addr};

pub const C4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
pub const S4: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 9);
pub const C6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 5);
pub const S6: Ipv6Addr = Ipv6Addr::new(0xfd20, 0, 0, 0, 0, 0, 0, 9);

/// Ethernet header, VLAN tags `(tpid, vid)` and payload.
pub fn eth(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    let mut types: Vec<u16> = tags.iter().map(|t| t.0).collect();
    types.push(ethertype);
    f.extend_from_slice(&types[0].to_be_bytes());
    for (i, (_, vid)) in tags.iter().enumerate() {
        f.extend_from_slice(&vid.to_be_bytes());
        f.extend_from_slice(&types[i + 1].to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

/// IPv4 header with options (a multiple of 4 bytes) and payload.
pub fn v4_opts(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "IPv4 options are whole words");
    let hlen = 20 + options.len();
    let total = u16::try_from(hlen + payload.len()).expect("fits an IPv4 packet");
    let mut p = vec![0x40 | (hlen / 4) as u8, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    p
}

pub fn v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    v4_opts(src, dst, proto, &[], payload)
}

pub fn v4_tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    v4(
        src,
        dst,
        gateway_common::maps::IPPROTO_TCP,
        &tcp(sport, dport, 5, 0),
    )
}

/// Sets the MF flag and the fragment offset (8-byte units) of an IPv4 header.
pub fn set_v4_frag(l3: &mut [u8], more: bool, offset: u16) {
    let v = (u16::from(more) << 13) | (offset & 0x1fff);
    l3[6..8].copy_from_slice(&v.to_be_bytes());
}

/// A TCP segment: 20 header bytes with data offset `doff`, then `extra` zero bytes.
pub fn tcp(sport: u16, dport: u16, doff: u8, extra: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + extra);
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&[0; 8]);
    s.extend_from_slice(&[doff << 4, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    s.resize(20 + extra, 0);
    s
}

/// A UDP datagram with `payload` zero bytes and a consistent length field.
pub fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let len = u16::try_from(8 + payload).expect("fits a UDP datagram");
    let mut s = Vec::with_capacity(8 + payload);
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&len.to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.resize(8 + payload, 0);
    s
}

/// IPv6 header (payload length = payload) with next header `next`.
pub fn v6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("fits an IPv6 payload");
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// An IPv6 extension header.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    /// Options-style header (hop-by-hop, routing, destination options) of kind and hdr_ext_len.
    Opts(u8, u8),
    /// Fragment header: offset (8-byte units), more fragments.
    Frag(u16, bool),
}

/// IPv6 with a chain of extension headers, then `proto` and its payload.
pub fn v6_ext(src: Ipv6Addr, dst: Ipv6Addr, exts: &[Ext], proto: u8, payload: &[u8]) -> Vec<u8> {
    let kind = |e: &Ext| match e {
        Ext::Opts(k, _) => *k,
        Ext::Frag(..) => crate::parse::IPV6_FRAGMENT,
    };
    let mut body = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, kind);
        match *e {
            Ext::Opts(_, len) => {
                let total = (usize::from(len) + 1) * 8;
                body.extend_from_slice(&[next, len]);
                // One PadN option filling the rest.
                body.extend_from_slice(&[1, (total - 4) as u8]);
                body.resize(body.len() + total - 4, 0);
            }
            Ext::Frag(offset, more) => {
                let v = (offset << 3) | u16::from(more);
                body.extend_from_slice(&[next, 0]);
                body.extend_from_slice(&v.to_be_bytes());
                body.extend_from_slice(&[0, 0, 0, 7]);
            }
        }
    }
    body.extend_from_slice(payload);
    v6(src, dst, exts.first().map_or(proto, kind), &body)
}
