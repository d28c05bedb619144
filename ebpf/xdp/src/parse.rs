//! Packet parsing: the only module that touches packet memory. Untrusted bytes become integers here,
//! typed values in the caller. Every read goes through `bytes`, which checks the read against
//! `data_end` itself (the verifier proves each access from that check alone), and every offset is
//! bounded first so the verifier can track its range.
//!
//! Rules (identical in the reference model, see the datapath spec): Ethernet with at most two VLAN tags
//! (0x8100 / 0x88a8); IPv4 with options, total length checked against the frame; IPv6 with at most six
//! hop-by-hop / routing / destination-options / fragment headers in at most 512 bytes; TCP, UDP, ICMP,
//! ICMPv6 headers checked to lie within the IP payload. Anything that breaks a rule is `Malformed`.
//! A non-first fragment carries no L4 header: it is returned with `later_fragment` and no ports.
//! Besides what the verdict needs, the TCP flag byte and the ICMP type and code are returned for
//! flow accounting and drop events.

use aya_ebpf::{bindings::xdp_md, programs::XdpContext};
use gateway_common::maps::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const MAX_VLAN_TAGS: usize = 2;
const MAX_EXT_HEADERS: usize = 6;
const MAX_EXT_CHAIN: usize = 512;
/// No offset we compute legitimately exceeds this; clamping proves it to the verifier.
const MAX_OFFSET: usize = 2048;

/// Source and destination, as the raw bytes of the wire.
#[derive(Clone, Copy)]
pub enum Addrs {
    V4 { src: [u8; 4], dst: [u8; 4] },
    V6 { src: [u8; 16], dst: [u8; 16] },
}

/// What the policy needs of an IP packet.
#[derive(Clone, Copy)]
pub struct Packet {
    pub addrs: Addrs,
    /// Upper-layer protocol (for a non-first IPv6 fragment: the fragment header's next header).
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// `sport`/`dport` were read from a TCP or UDP header.
    pub has_ports: bool,
    /// A fragment other than the first: addresses and protocol only.
    pub later_fragment: bool,
    /// The TCP flag byte (CWR ECE URG ACK PSH RST SYN FIN); 0 for other protocols.
    pub tcp_flags: u8,
    /// ICMP/ICMPv6 `[type, code]`; zero for other protocols.
    pub icmp: [u8; 2],
    /// UDP only: offset of the payload in the frame and its length (the UDP length field's, cut
    /// to the IP payload; 0 when the field is below 8). For DNS inspection via [`load_bytes`].
    pub udp_payload: u16,
    pub udp_payload_len: u16,
    /// TCP only: offset of the segment's payload in the frame and its length (to the end of the IP
    /// payload). For TLS ClientHello inspection via [`load_bytes`] (sni.rs).
    pub tcp_payload: u16,
    pub tcp_payload_len: u16,
}

impl Packet {
    /// The destination port, when the packet has one.
    #[inline(always)]
    pub fn dport(&self) -> Option<u16> {
        if self.has_ports {
            Some(self.dport)
        } else {
            None
        }
    }
}

impl Packet {
    /// What the caller's packet holds until an IP header is parsed into it. Fully initialised, so
    /// no path leaves the verifier an unwritten register or stack slot to complain about.
    pub const EMPTY: Packet = Packet {
        addrs: Addrs::V6 {
            src: [0; 16],
            dst: [0; 16],
        },
        proto: 0,
        sport: 0,
        dport: 0,
        has_ports: false,
        later_fragment: false,
        tcp_flags: 0,
        icmp: [0; 2],
        udp_payload: 0,
        udp_payload_len: 0,
        tcp_payload: 0,
        tcp_payload_len: 0,
    };
}

/// What the frame turned out to be; for `Ip` the packet was written to the caller's [`Packet`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    NonIp,
    Malformed,
    Ip,
}

/// The frame's bounds.
struct Frame {
    md: *const xdp_md,
    start: usize,
    len: usize,
}

impl Frame {
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    /// `N` bytes at `off`, or `None` when they are not all inside the frame.
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off > MAX_OFFSET {
            return None;
        }
        let p = self.start + off;
        // The check the verifier needs before any packet access. `data_end` is re-read volatile so
        // LLVM cannot prove this check redundant from our earlier length arithmetic and drop it
        // (it would be right, but the verifier only trusts a comparison against data_end itself).
        // SAFETY: `md` is the live context of this run.
        let end = unsafe { core::ptr::read_volatile(&(*self.md).data_end) } as usize;
        if p + N > end {
            return None;
        }
        // SAFETY: [p, p + N) lies inside the packet (checked just above); read_unaligned because
        // packet offsets carry no alignment.
        Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }

    #[inline(always)]
    fn be16_at(&self, off: usize) -> Option<u16> {
        self.bytes::<2>(off).map(u16::from_be_bytes)
    }
}

/// Parses the frame; an IP packet is written to `out`, which is left alone otherwise.
#[inline(always)]
pub fn parse(ctx: &XdpContext, out: &mut Packet) -> Parsed {
    let f = Frame {
        md: ctx.ctx,
        start: ctx.data(),
        len: ctx.data_end() - ctx.data(),
    };
    match parse_frame(&f, out) {
        Some(p) => p,
        None => Parsed::Malformed,
    }
}

/// `None` means malformed.
#[inline(always)]
fn parse_frame(f: &Frame, out: &mut Packet) -> Option<Parsed> {
    let mut ethertype = f.be16_at(12)?;
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            ethertype = f.be16_at(off + 2)?;
            off += 4;
        }
    }
    match ethertype {
        ETH_P_8021Q | ETH_P_8021AD => None, // a third tag: we will not guess what is inside
        ETH_P_IP => {
            *out = parse_ipv4(f, off)?;
            Some(Parsed::Ip)
        }
        ETH_P_IPV6 => {
            *out = parse_ipv6(f, off)?;
            Some(Parsed::Ip)
        }
        _ => Some(Parsed::NonIp),
    }
}

#[inline(always)]
fn parse_ipv4(f: &Frame, l3: usize) -> Option<Packet> {
    let hdr = f.bytes::<20>(l3)?;
    if hdr[0] >> 4 != 4 {
        return None;
    }
    let ihl = ((hdr[0] & 0x0f) as usize) * 4;
    if ihl < 20 || l3 + ihl > f.len() {
        return None;
    }
    let total = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    if total < ihl || l3 + total > f.len() {
        return None;
    }
    let frag_offset = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff;
    let proto = hdr[9];
    let mut pkt = Packet {
        addrs: Addrs::V4 {
            src: [hdr[12], hdr[13], hdr[14], hdr[15]],
            dst: [hdr[16], hdr[17], hdr[18], hdr[19]],
        },
        proto,
        sport: 0,
        dport: 0,
        has_ports: false,
        later_fragment: frag_offset != 0,
        tcp_flags: 0,
        icmp: [0; 2],
        udp_payload: 0,
        udp_payload_len: 0,
        tcp_payload: 0,
        tcp_payload_len: 0,
    };
    if !pkt.later_fragment {
        parse_l4(f, &mut pkt, l3 + ihl, l3 + total, IPPROTO_ICMP)?;
    }
    Some(pkt)
}

#[inline(always)]
fn parse_ipv6(f: &Frame, l3: usize) -> Option<Packet> {
    let hdr = f.bytes::<40>(l3)?;
    if hdr[0] >> 4 != 6 {
        return None;
    }
    let payload = u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
    if payload == 0 || l3 + 40 + payload > f.len() {
        return None; // jumbograms (payload 0) are not supported
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&hdr[8..24]);
    dst.copy_from_slice(&hdr[24..40]);
    let mut pkt = Packet {
        addrs: Addrs::V6 { src, dst },
        proto: hdr[6],
        sport: 0,
        dport: 0,
        has_ports: false,
        later_fragment: false,
        tcp_flags: 0,
        icmp: [0; 2],
        udp_payload: 0,
        udp_payload_len: 0,
        tcp_payload: 0,
        tcp_payload_len: 0,
    };
    let base = l3 + 40;
    let end = base + payload;
    let mut off = base;
    let mut ext = 0;
    // One extra round so a seventh extension header is seen (and refused) rather than taken for L4.
    for _ in 0..=MAX_EXT_HEADERS {
        match pkt.proto {
            0 | 43 | 60 => {
                if ext == MAX_EXT_HEADERS || off + 2 > end {
                    return None;
                }
                let h = f.bytes::<2>(off)?;
                let len = (h[1] as usize + 1) * 8;
                if off + len > end {
                    return None;
                }
                pkt.proto = h[0];
                off += len;
            }
            44 => {
                if ext == MAX_EXT_HEADERS || off + 8 > end {
                    return None;
                }
                let h = f.bytes::<8>(off)?;
                let frag_offset = u16::from_be_bytes([h[2], h[3]]) >> 3;
                pkt.proto = h[0];
                off += 8;
                if frag_offset != 0 {
                    pkt.later_fragment = true;
                    return if off - base > MAX_EXT_CHAIN {
                        None
                    } else {
                        Some(pkt)
                    };
                }
            }
            _ => break,
        }
        ext += 1;
        if off - base > MAX_EXT_CHAIN {
            return None;
        }
    }
    parse_l4(f, &mut pkt, off, end, IPPROTO_ICMPV6)?;
    Some(pkt)
}

/// Checks the upper-layer header lies within `[l4, end)` and reads the ports. `None` = malformed.
#[inline(always)]
fn parse_l4(f: &Frame, pkt: &mut Packet, l4: usize, end: usize, icmp: u8) -> Option<()> {
    match pkt.proto {
        IPPROTO_TCP => {
            if l4 + 20 > end {
                return None;
            }
            let h = f.bytes::<20>(l4)?;
            let doff = (h[12] >> 4) as usize;
            if doff < 5 || l4 + doff * 4 > end {
                return None;
            }
            set_ports(pkt, h[0], h[1], h[2], h[3]);
            pkt.tcp_flags = h[13];
            pkt.tcp_payload = (l4 + doff * 4) as u16;
            pkt.tcp_payload_len = (end - (l4 + doff * 4)) as u16;
        }
        IPPROTO_UDP => {
            if l4 + 8 > end {
                return None;
            }
            let h = f.bytes::<8>(l4)?;
            set_ports(pkt, h[0], h[1], h[2], h[3]);
            let udp_len = u16::from_be_bytes([h[4], h[5]]) as usize;
            let room = end - l4;
            let len = if udp_len < room { udp_len } else { room };
            pkt.udp_payload = (l4 + 8) as u16;
            pkt.udp_payload_len = len.saturating_sub(8) as u16;
        }
        p if p == icmp => {
            if l4 + 4 > end {
                return None;
            }
            let h = f.bytes::<4>(l4)?;
            pkt.icmp = [h[0], h[1]];
        }
        _ => {}
    }
    Some(())
}

/// Copies `len` bytes of the frame at `off` into `buf` (`0 < len ≤ N`, checked); `false` when they
/// are not all in the packet. The kernel does the bounds check (`bpf_xdp_load_bytes`), so the
/// caller can work on its own copy with plain array indexing.
#[inline(always)]
pub fn load_bytes<const N: usize>(
    ctx: &XdpContext,
    off: usize,
    buf: &mut [u8; N],
    len: usize,
) -> bool {
    if len == 0 || len > N || off > MAX_OFFSET {
        return false;
    }
    // SAFETY: `buf` is valid for `len` ≤ N bytes of writes; the helper checks `off + len` against
    // the packet itself and fails rather than read past it.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_xdp_load_bytes(
            ctx.ctx,
            off as u32,
            buf.as_mut_ptr().cast(),
            len as u32,
        )
    };
    rc == 0
}

#[inline(always)]
fn set_ports(pkt: &mut Packet, s0: u8, s1: u8, d0: u8, d1: u8) {
    pkt.sport = u16::from_be_bytes([s0, s1]);
    pkt.dport = u16::from_be_bytes([d0, d1]);
    pkt.has_ports = true;
}
