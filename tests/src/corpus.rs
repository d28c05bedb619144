//! The packet corpus: a builder of raw Ethernet frames and a named set of frames whose expected
//! reasons were worked out by hand from `briefs/datapath-spec.md`, against a fixed image
//! ([`corpus_image`]), port map ([`corpus_ports`]) and route table ([`corpus_routes`]).
//!
//! The expected reasons are written down, never computed by the reference model, so the corpus checks
//! the reference model too. The packet tests run every case through the real XDP program with
//! `BPF_PROG_TEST_RUN` and demand the same reasons.
//!
//! Frames are assembled byte by byte with correct IPv4 header, TCP, UDP and ICMP checksums (the data
//! path ignores checksums, but the kernel stack would not); the corruption knobs break exactly the
//! field they name.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, bail, ensure};
use gateway_common::maps::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use gateway_common::values::{GOVNET_DEDICATED, GOVNET_SHARED, PortRule};
use gateway_common::{Reason, Role};
use gateway_policy::image::{FeedInfo, MapImage, SystemInfo};
use gateway_reference::{Egress, Ports, StaticRoutes};
use ipnet::IpNet;

/// Smallest frame `BPF_PROG_TEST_RUN` accepts for XDP: shorter data is refused with `EINVAL`, so every
/// corpus and generated frame has at least the Ethernet header; truncations happen after it.
pub const FRAME_MIN_LEN: usize = 14;

/// See [`FRAME_MIN_LEN`].
pub const fn frame_min_len() -> usize {
    FRAME_MIN_LEN
}

pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88A8;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_LLDP: u16 = 0x88CC;

pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_ROUTING: u8 = 43;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_NO_NEXT: u8 = 59;
pub const IPV6_DEST_OPTS: u8 = 60;
pub const IPPROTO_GRE: u8 = 47;

// ---------------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------------

/// An Ethernet frame to assemble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// VLAN tags, outermost first: (TPID, TCI).
    pub vlans: Vec<(u16, u16)>,
    pub l3: L3,
    /// Zero bytes after the L3 packet (Ethernet padding; not counted by any IP length).
    pub trailer: usize,
    /// Cut the assembled frame to this many bytes.
    pub truncate: Option<usize>,
}

/// What follows the Ethernet header (and VLAN tags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L3 {
    V4(Ipv4),
    V6(Ipv6),
    /// Any other ethertype with raw payload (ARP, LLDP, …).
    Other {
        ethertype: u16,
        payload: Vec<u8>,
    },
}

/// An IPv4 header and its payload. The `Option` fields override computed values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub ident: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units (13 bits).
    pub frag_offset: u16,
    /// Options; zero-padded to a multiple of 4 bytes.
    pub options: Vec<u8>,
    /// Version nibble (4 unless corrupted).
    pub version: u8,
    /// IHL override (header length in 32-bit words); the bytes emitted stay 20 + options.
    pub ihl: Option<u8>,
    /// Total length override.
    pub total_len: Option<u16>,
    /// Protocol override (default: the protocol of `l4`).
    pub proto: Option<u8>,
    /// Corrupt the header checksum.
    pub bad_checksum: bool,
    pub l4: L4,
    /// Carry only the first N bytes of the L4 segment (the IP lengths follow, unless overridden).
    pub l4_cut: Option<usize>,
}

/// An IPv6 header, its extension headers and payload. The `Option` fields override computed values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// Version nibble (6 unless corrupted).
    pub version: u8,
    pub ext: Vec<Ext>,
    /// Payload length override (0 = a jumbogram without the jumbo option).
    pub payload_len: Option<u16>,
    pub l4: L4,
    /// Carry only the first N bytes of the L4 segment (the payload length follows, unless overridden).
    pub l4_cut: Option<usize>,
}

/// An IPv6 extension header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop (0), routing (43) or destination options (60): (hdr_ext_len + 1) * 8 bytes, filled
    /// with a PadN option (routing: type 253 (experimental), segments left 0, then zeros).
    /// `claimed` overrides the length byte written (the bytes emitted stay (hdr_ext_len + 1) * 8).
    Opts {
        kind: u8,
        hdr_ext_len: u8,
        claimed: Option<u8>,
    },
    /// Fragment header: offset in 8-byte units, more-fragments flag, identification, reserved byte.
    Fragment {
        offset: u16,
        more: bool,
        ident: u32,
        reserved: u8,
    },
    /// Any header announced as `kind`: the next-header byte, then `bytes` verbatim (length byte
    /// included), for headers the other variants cannot express.
    Raw { kind: u8, bytes: Vec<u8> },
}

impl Ext {
    pub const fn hop_by_hop() -> Ext {
        Ext::Opts {
            kind: IPV6_HOP_BY_HOP,
            hdr_ext_len: 0,
            claimed: None,
        }
    }
    pub const fn routing() -> Ext {
        Ext::Opts {
            kind: IPV6_ROUTING,
            hdr_ext_len: 0,
            claimed: None,
        }
    }
    pub const fn dest_opts() -> Ext {
        Ext::Opts {
            kind: IPV6_DEST_OPTS,
            hdr_ext_len: 0,
            claimed: None,
        }
    }
    pub const fn opts(kind: u8, hdr_ext_len: u8) -> Ext {
        Ext::Opts {
            kind,
            hdr_ext_len,
            claimed: None,
        }
    }
    pub const fn fragment(offset: u16, more: bool) -> Ext {
        Ext::Fragment {
            offset,
            more,
            ident: 0x1234_5678,
            reserved: 0,
        }
    }

    /// The next-header value that announces this header.
    pub const fn kind(&self) -> u8 {
        match self {
            Ext::Opts { kind, .. } | Ext::Raw { kind, .. } => *kind,
            Ext::Fragment { .. } => IPV6_FRAGMENT,
        }
    }

    fn emit(&self, next: u8, out: &mut Vec<u8>) {
        match *self {
            Ext::Raw { ref bytes, .. } => {
                out.push(next);
                out.extend_from_slice(bytes);
            }
            Ext::Opts {
                kind,
                hdr_ext_len,
                claimed,
            } => {
                let total = (usize::from(hdr_ext_len) + 1) * 8;
                let start = out.len();
                out.extend_from_slice(&[next, claimed.unwrap_or(hdr_ext_len)]);
                if kind == IPV6_ROUTING {
                    out.extend_from_slice(&[253, 0]);
                } else {
                    // PadN covering the rest of the header: type 1, length, zeros.
                    out.extend_from_slice(&[1, (total - 4) as u8]);
                }
                out.resize(start + total, 0);
            }
            Ext::Fragment {
                offset,
                more,
                ident,
                reserved,
            } => {
                let v = ((offset & 0x1fff) << 3) | u16::from(more);
                out.extend_from_slice(&[next, reserved]);
                out.extend_from_slice(&v.to_be_bytes());
                out.extend_from_slice(&ident.to_be_bytes());
            }
        }
    }
}

/// The upper-layer part of a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp(Tcp),
    Udp(Udp),
    /// ICMP echo request: type 8 in IPv4, ICMPv6 type 128 in IPv6.
    Echo {
        id: u16,
        seq: u16,
        data: Vec<u8>,
    },
    /// Any ICMP (IPv4) / ICMPv6 (IPv6) message: type, code, and the bytes after the checksum.
    Icmp {
        ty: u8,
        code: u8,
        rest: Vec<u8>,
    },
    /// Any protocol, raw bytes, no checksum.
    Raw {
        proto: u8,
        bytes: Vec<u8>,
    },
}

impl L4 {
    pub fn tcp(sport: u16, dport: u16) -> L4 {
        L4::Tcp(Tcp::new(sport, dport))
    }
    pub fn udp(sport: u16, dport: u16) -> L4 {
        L4::Udp(Udp::new(sport, dport))
    }
    pub fn echo() -> L4 {
        L4::Echo {
            id: 0x4242,
            seq: 1,
            data: b"corpus-ping".to_vec(),
        }
    }
    pub fn raw(proto: u8, bytes: &[u8]) -> L4 {
        L4::Raw {
            proto,
            bytes: bytes.to_vec(),
        }
    }

    /// The protocol number in the given family.
    pub fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::Tcp(_) => IPPROTO_TCP,
            L4::Udp(_) => IPPROTO_UDP,
            L4::Echo { .. } | L4::Icmp { .. } => {
                if v6 {
                    IPPROTO_ICMPV6
                } else {
                    IPPROTO_ICMP
                }
            }
            L4::Raw { proto, .. } => *proto,
        }
    }

    /// The segment bytes with its checksum, given the pseudo-header (v4: no pseudo-header for ICMP).
    fn emit(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let v6 = src.is_ipv6();
        let proto = self.proto(v6);
        let (mut seg, csum_at) = match self {
            L4::Tcp(t) => (t.emit(), Some(16)),
            L4::Udp(u) => (u.emit(), Some(6)),
            L4::Echo { id, seq, data } => {
                let mut s = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
                s.extend_from_slice(&id.to_be_bytes());
                s.extend_from_slice(&seq.to_be_bytes());
                s.extend_from_slice(data);
                (s, Some(2))
            }
            L4::Icmp { ty, code, rest } => {
                let mut s = vec![*ty, *code, 0, 0];
                s.extend_from_slice(rest);
                (s, Some(2))
            }
            L4::Raw { bytes, .. } => (bytes.clone(), None),
        };
        if let Some(at) = csum_at {
            let with_pseudo = proto != IPPROTO_ICMP;
            let mut data = if with_pseudo {
                pseudo_header(src, dst, proto, seg.len())
            } else {
                Vec::new()
            };
            data.extend_from_slice(&seg);
            let mut sum = internet_checksum(&data);
            if proto == IPPROTO_UDP && sum == 0 {
                sum = 0xffff; // 0 means "no checksum" in UDP
            }
            seg[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        seg
    }
}

/// A TCP segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub flags: u8,
    /// Options; padded with NOPs to a multiple of 4 bytes.
    pub options: Vec<u8>,
    /// Data offset override (32-bit words).
    pub doff: Option<u8>,
    pub payload: Vec<u8>,
}

impl Tcp {
    pub const SYN: u8 = 0x02;

    pub fn new(sport: u16, dport: u16) -> Tcp {
        Tcp {
            sport,
            dport,
            seq: 1,
            flags: Tcp::SYN,
            options: Vec::new(),
            doff: None,
            payload: Vec::new(),
        }
    }

    fn emit(&self) -> Vec<u8> {
        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(1); // NOP
        }
        let doff = self.doff.unwrap_or(((20 + opts.len()) / 4) as u8);
        let mut s = Vec::with_capacity(20 + opts.len() + self.payload.len());
        s.extend_from_slice(&self.sport.to_be_bytes());
        s.extend_from_slice(&self.dport.to_be_bytes());
        s.extend_from_slice(&self.seq.to_be_bytes());
        s.extend_from_slice(&0u32.to_be_bytes());
        s.extend_from_slice(&[doff << 4, self.flags, 0xff, 0xff, 0, 0, 0, 0]);
        s.extend_from_slice(&opts);
        s.extend_from_slice(&self.payload);
        s
    }
}

impl From<Tcp> for L4 {
    fn from(t: Tcp) -> L4 {
        L4::Tcp(t)
    }
}

/// A UDP datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Udp {
    pub sport: u16,
    pub dport: u16,
    /// Length field override.
    pub len: Option<u16>,
    pub payload: Vec<u8>,
}

impl Udp {
    pub fn new(sport: u16, dport: u16) -> Udp {
        Udp {
            sport,
            dport,
            len: None,
            payload: b"corpus".to_vec(),
        }
    }

    fn emit(&self) -> Vec<u8> {
        let len = self.len.unwrap_or((8 + self.payload.len()) as u16);
        let mut s = Vec::with_capacity(8 + self.payload.len());
        s.extend_from_slice(&self.sport.to_be_bytes());
        s.extend_from_slice(&self.dport.to_be_bytes());
        s.extend_from_slice(&len.to_be_bytes());
        s.extend_from_slice(&[0, 0]);
        s.extend_from_slice(&self.payload);
        s
    }
}

impl From<Udp> for L4 {
    fn from(u: Udp) -> L4 {
        L4::Udp(u)
    }
}

impl Ipv4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, l4: impl Into<L4>) -> Ipv4 {
        Ipv4 {
            src,
            dst,
            ttl: 64,
            ident: 0x1c46,
            dont_fragment: false,
            more_fragments: false,
            frag_offset: 0,
            options: Vec::new(),
            version: 4,
            ihl: None,
            total_len: None,
            proto: None,
            bad_checksum: false,
            l4: l4.into(),
            l4_cut: None,
        }
    }

    pub fn frame(self) -> Frame {
        Frame::new(L3::V4(self))
    }

    fn emit(&self) -> Vec<u8> {
        let mut opts = self.options.clone();
        opts.resize(opts.len().div_ceil(4) * 4, 0);
        let hlen = 20 + opts.len();
        let mut l4 = self.l4.emit(IpAddr::V4(self.src), IpAddr::V4(self.dst));
        if let Some(n) = self.l4_cut {
            l4.truncate(n);
        }
        let ihl = self.ihl.unwrap_or((hlen / 4) as u8);
        let total = self.total_len.unwrap_or((hlen + l4.len()) as u16);
        let flags = (u16::from(self.dont_fragment) << 14) | (u16::from(self.more_fragments) << 13);
        let mut p = Vec::with_capacity(hlen + l4.len());
        p.push((self.version << 4) | (ihl & 0x0f));
        p.push(0);
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&self.ident.to_be_bytes());
        p.extend_from_slice(&(flags | (self.frag_offset & 0x1fff)).to_be_bytes());
        p.push(self.ttl);
        p.push(self.proto.unwrap_or_else(|| self.l4.proto(false)));
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.extend_from_slice(&opts);
        let mut sum = internet_checksum(&p[..hlen]);
        if self.bad_checksum {
            sum ^= 0x5a5a;
        }
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(&l4);
        p
    }
}

impl Ipv6 {
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, l4: impl Into<L4>) -> Ipv6 {
        Ipv6 {
            src,
            dst,
            hop_limit: 64,
            version: 6,
            ext: Vec::new(),
            payload_len: None,
            l4: l4.into(),
            l4_cut: None,
        }
    }

    /// Appends an extension header, builder style.
    #[must_use]
    pub fn ext(mut self, e: Ext) -> Ipv6 {
        self.ext.push(e);
        self
    }

    pub fn frame(self) -> Frame {
        Frame::new(L3::V6(self))
    }

    fn emit(&self) -> Vec<u8> {
        let proto = self.l4.proto(true);
        let mut body = Vec::new();
        for (i, e) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(proto, Ext::kind);
            e.emit(next, &mut body);
        }
        let mut l4 = self.l4.emit(IpAddr::V6(self.src), IpAddr::V6(self.dst));
        if let Some(n) = self.l4_cut {
            l4.truncate(n);
        }
        body.extend_from_slice(&l4);
        let payload_len = self.payload_len.unwrap_or(body.len() as u16);
        let first = self.ext.first().map_or(proto, Ext::kind);
        let mut p = Vec::with_capacity(40 + body.len());
        p.extend_from_slice(&[self.version << 4, 0, 0, 0]);
        p.extend_from_slice(&payload_len.to_be_bytes());
        p.extend_from_slice(&[first, self.hop_limit]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        p.extend_from_slice(&body);
        p
    }
}

impl Frame {
    pub const DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    pub const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

    pub fn new(l3: L3) -> Frame {
        Frame {
            dst_mac: Self::DST_MAC,
            src_mac: Self::SRC_MAC,
            vlans: Vec::new(),
            l3,
            trailer: 0,
            truncate: None,
        }
    }

    /// An IPv4 or IPv6 packet, by the family of the addresses.
    ///
    /// # Panics
    /// If `src` and `dst` are of different families (a bug in the calling test).
    pub fn ip(src: IpAddr, dst: IpAddr, l4: impl Into<L4>) -> Frame {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4::new(s, d, l4).frame(),
            (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6::new(s, d, l4).frame(),
            _ => panic!("mixed address families: {src} -> {dst}"),
        }
    }

    /// An ARP request (who has `target`? tell `sender`).
    pub fn arp(sender: Ipv4Addr, target: Ipv4Addr) -> Frame {
        let mut p = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
        p.extend_from_slice(&Self::SRC_MAC);
        p.extend_from_slice(&sender.octets());
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&target.octets());
        let mut f = Frame::new(L3::Other {
            ethertype: ETHERTYPE_ARP,
            payload: p,
        });
        f.dst_mac = [0xff; 6];
        f
    }

    /// An LLDP frame: chassis id, port id, TTL, end.
    pub fn lldp() -> Frame {
        let mut p = vec![0x02, 0x07, 0x04];
        p.extend_from_slice(&Self::SRC_MAC);
        p.extend_from_slice(&[0x04, 0x03, 0x07, b'p', b'1']); // port id, locally assigned
        p.extend_from_slice(&[0x06, 0x02, 0x00, 0x78]); // TTL 120
        p.extend_from_slice(&[0x00, 0x00]); // end
        let mut f = Frame::new(L3::Other {
            ethertype: ETHERTYPE_LLDP,
            payload: p,
        });
        f.dst_mac = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];
        f
    }

    /// Adds a VLAN tag inside the existing ones, builder style.
    #[must_use]
    pub fn vlan(mut self, tpid: u16, vid: u16) -> Frame {
        self.vlans.push((tpid, vid & 0x0fff));
        self
    }

    /// Cuts the frame to `len` bytes.
    #[must_use]
    pub fn truncate(mut self, len: usize) -> Frame {
        self.truncate = Some(len);
        self
    }

    /// Appends `n` zero bytes after the L3 packet.
    #[must_use]
    pub fn pad(mut self, n: usize) -> Frame {
        self.trailer = n;
        self
    }

    /// Makes the packet a fragment: IPv4 sets the offset and MF; IPv6 appends a fragment header.
    #[must_use]
    pub fn fragment(mut self, offset: u16, more: bool) -> Frame {
        match &mut self.l3 {
            L3::V4(h) => {
                h.frag_offset = offset;
                h.more_fragments = more;
            }
            L3::V6(h) => h.ext.push(Ext::fragment(offset, more)),
            L3::Other { .. } => {}
        }
        self
    }

    /// Carries only the first `n` bytes of the L4 segment (IP lengths stay consistent).
    #[must_use]
    pub fn cut_l4(mut self, n: usize) -> Frame {
        match &mut self.l3 {
            L3::V4(h) => h.l4_cut = Some(n),
            L3::V6(h) => h.l4_cut = Some(n),
            L3::Other { .. } => {}
        }
        self
    }

    /// Edits the IPv4 header.
    ///
    /// # Panics
    /// If the frame is not IPv4 (a bug in the calling test).
    #[must_use]
    pub fn v4(mut self, edit: impl FnOnce(&mut Ipv4)) -> Frame {
        match &mut self.l3 {
            L3::V4(h) => edit(h),
            other => panic!("IPv4 knob on a non-IPv4 frame: {other:?}"),
        }
        self
    }

    /// Edits the IPv6 header.
    ///
    /// # Panics
    /// If the frame is not IPv6 (a bug in the calling test).
    #[must_use]
    pub fn v6(mut self, edit: impl FnOnce(&mut Ipv6)) -> Frame {
        match &mut self.l3 {
            L3::V6(h) => edit(h),
            other => panic!("IPv6 knob on a non-IPv6 frame: {other:?}"),
        }
        self
    }

    /// Edits the L4 part (no-op for non-IP frames).
    #[must_use]
    pub fn l4(mut self, edit: impl FnOnce(&mut L4)) -> Frame {
        match &mut self.l3 {
            L3::V4(h) => edit(&mut h.l4),
            L3::V6(h) => edit(&mut h.l4),
            L3::Other { .. } => {}
        }
        self
    }

    /// Edits the TCP header (no-op unless the L4 part is TCP).
    #[must_use]
    pub fn tcp(self, edit: impl FnOnce(&mut Tcp)) -> Frame {
        self.l4(|l4| {
            if let L4::Tcp(t) = l4 {
                edit(t);
            }
        })
    }

    /// Length of the Ethernet header and VLAN tags: where L3 starts.
    pub fn l2_len(&self) -> usize {
        14 + 4 * self.vlans.len()
    }

    pub fn ethertype(&self) -> u16 {
        match &self.l3 {
            L3::V4(_) => ETHERTYPE_IPV4,
            L3::V6(_) => ETHERTYPE_IPV6,
            L3::Other { ethertype, .. } => *ethertype,
        }
    }

    /// The assembled frame.
    pub fn bytes(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(128);
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        let mut types: Vec<u16> = self.vlans.iter().map(|v| v.0).collect();
        types.push(self.ethertype());
        f.extend_from_slice(&types[0].to_be_bytes());
        for (i, (_, tci)) in self.vlans.iter().enumerate() {
            f.extend_from_slice(&tci.to_be_bytes());
            f.extend_from_slice(&types[i + 1].to_be_bytes());
        }
        match &self.l3 {
            L3::V4(h) => f.extend_from_slice(&h.emit()),
            L3::V6(h) => f.extend_from_slice(&h.emit()),
            L3::Other { payload, .. } => f.extend_from_slice(payload),
        }
        f.resize(f.len() + self.trailer, 0);
        if let Some(n) = self.truncate {
            f.truncate(n);
        }
        f
    }
}

/// The RFC 1071 checksum of `data` (an odd last byte is padded with zero).
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], chunk.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            p.extend_from_slice(&ip_octets(src));
            p.extend_from_slice(&ip_octets(dst));
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    p
}

fn ip_octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------------
// Topology, image and routes of the corpus
// ---------------------------------------------------------------------------------------------------

/// The addresses of one family a corpus topology uses. Every field is of that family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    /// The lan subnet (connected on the lan port) and the gateway's address on it (local).
    pub lan_net: IpNet,
    pub gateway: IpAddr,
    /// A lan host with its own, wider allow entry for the shared systems.
    pub client: IpAddr,
    /// Another lan host: only the lan-wide allow entries.
    pub lan_host: IpAddr,
    /// An isolated (R11) lan host.
    pub isolated: IpAddr,
    /// A shared system on the lan subnet (its route leaves by the lan port).
    pub shared_lan: IpAddr,

    /// The dedicated subnet, routed out of the dedicated port, and the gateway's address on it (local;
    /// the corpus image lists it as a shared system to reach a shared system via `Local`).
    pub dedicated_net: IpNet,
    pub gateway_dedicated: IpAddr,
    /// The policy's dedicated-network prefix (govnet, dedicated), inside `dedicated_net`.
    pub govnet_dedicated: IpNet,
    /// A host of `govnet_dedicated` that is not a shared system.
    pub dedicated_host: IpAddr,
    /// An address routed out of the dedicated port but outside every govnet prefix.
    pub dedicated_stray: IpAddr,
    /// Shared system "records" (a single address in `govnet_dedicated`).
    pub shared: IpAddr,
    /// Shared system "gis": a prefix in `govnet_dedicated`, and an address in it outside `shared_longer_net`.
    pub shared_net: IpNet,
    pub shared_net_host: IpAddr,
    /// Shared system "gis-admin": a longer prefix inside `shared_net`, and an address in it.
    pub shared_longer_net: IpNet,
    pub shared_longer_host: IpAddr,

    /// An Internet server (routed by the default route, out of the internet port).
    pub internet: IpAddr,
    /// A shared system whose route leaves by the internet port.
    pub shared_internet: IpAddr,
    /// A prefix with an `unreachable` route, and a shared system in it.
    pub unroutable_net: IpNet,
    pub shared_unroutable: IpAddr,

    /// A blocked exact address, a blocked prefix and an address in it (all routed to the internet).
    pub blocked_exact: IpAddr,
    pub blocked_net: IpNet,
    pub blocked_in_net: IpAddr,
}

/// The ports and addresses of the topology the corpus is written for. The packet tests fill it in
/// from their real topology (start from [`CorpusAddrs::example`]) and program the kernel's routes to
/// match [`corpus_routes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusAddrs {
    pub lan_if: u32,
    pub dedicated_if: u32,
    pub internet_if: u32,
    /// An ifindex that is not in the port map.
    pub unknown_if: u32,
    pub v4: Family,
    pub v6: Family,
}

fn a(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("corpus address {s}: {e}"))
}

fn net(s: &str) -> IpNet {
    s.parse()
        .unwrap_or_else(|e| panic!("corpus prefix {s}: {e}"))
}

impl CorpusAddrs {
    /// An example topology (documentation addresses; ifindexes 2, 3, 4; 99 is unknown).
    pub fn example() -> CorpusAddrs {
        CorpusAddrs {
            lan_if: 2,
            dedicated_if: 3,
            internet_if: 4,
            unknown_if: 99,
            v4: Family {
                lan_net: net("192.168.10.0/24"),
                gateway: a("192.168.10.1"),
                client: a("192.168.10.10"),
                lan_host: a("192.168.10.11"),
                isolated: a("192.168.10.66"),
                shared_lan: a("192.168.10.200"),
                dedicated_net: net("10.20.0.0/16"),
                gateway_dedicated: a("10.20.0.1"),
                govnet_dedicated: net("10.20.0.0/17"),
                dedicated_host: a("10.20.3.3"),
                dedicated_stray: a("10.20.200.1"),
                shared: a("10.20.1.10"),
                shared_net: net("10.20.2.0/24"),
                shared_net_host: a("10.20.2.5"),
                shared_longer_net: net("10.20.2.128/25"),
                shared_longer_host: a("10.20.2.200"),
                internet: a("198.51.100.10"),
                shared_internet: a("198.51.100.99"),
                unroutable_net: net("192.0.2.0/24"),
                shared_unroutable: a("192.0.2.9"),
                blocked_exact: a("203.0.113.7"),
                blocked_net: net("100.64.0.0/16"),
                blocked_in_net: a("100.64.3.3"),
            },
            v6: Family {
                lan_net: net("fd00:10::/64"),
                gateway: a("fd00:10::1"),
                client: a("fd00:10::10"),
                lan_host: a("fd00:10::11"),
                isolated: a("fd00:10::66"),
                shared_lan: a("fd00:10::200"),
                dedicated_net: net("fd20::/48"),
                gateway_dedicated: a("fd20::1"),
                govnet_dedicated: net("fd20::/49"),
                dedicated_host: a("fd20:0:0:3::3"),
                dedicated_stray: a("fd20:0:0:8000::1"),
                shared: a("fd20:0:0:1::10"),
                shared_net: net("fd20:0:0:2::/64"),
                shared_net_host: a("fd20:0:0:2::5"),
                shared_longer_net: net("fd20:0:0:2:8000::/65"),
                shared_longer_host: a("fd20:0:0:2:8000::200"),
                internet: a("2001:db8:1::10"),
                shared_internet: a("2001:db8:1::99"),
                unroutable_net: net("2001:db8:ffff::/48"),
                shared_unroutable: a("2001:db8:ffff::9"),
                blocked_exact: a("2001:db8:2::7"),
                blocked_net: net("2001:db8:bad::/48"),
                blocked_in_net: a("2001:db8:bad::1:1"),
            },
        }
    }

    /// Checks that the addresses have the relations the expected reasons rely on.
    pub fn validate(&self) -> anyhow::Result<()> {
        let ifs = [
            self.lan_if,
            self.dedicated_if,
            self.internet_if,
            self.unknown_if,
        ];
        for (i, x) in ifs.iter().enumerate() {
            ensure!(!ifs[i + 1..].contains(x), "ifindex {x} used twice");
        }
        self.v4.validate(false).context("v4")?;
        self.v6.validate(true).context("v6")
    }
}

impl Family {
    fn addrs(&self) -> [(&'static str, IpAddr); 16] {
        [
            ("gateway", self.gateway),
            ("client", self.client),
            ("lan_host", self.lan_host),
            ("isolated", self.isolated),
            ("shared_lan", self.shared_lan),
            ("gateway_dedicated", self.gateway_dedicated),
            ("dedicated_host", self.dedicated_host),
            ("dedicated_stray", self.dedicated_stray),
            ("shared", self.shared),
            ("shared_net_host", self.shared_net_host),
            ("shared_longer_host", self.shared_longer_host),
            ("internet", self.internet),
            ("shared_internet", self.shared_internet),
            ("shared_unroutable", self.shared_unroutable),
            ("blocked_exact", self.blocked_exact),
            ("blocked_in_net", self.blocked_in_net),
        ]
    }

    fn nets(&self) -> [(&'static str, IpNet); 7] {
        [
            ("lan_net", self.lan_net),
            ("dedicated_net", self.dedicated_net),
            ("govnet_dedicated", self.govnet_dedicated),
            ("shared_net", self.shared_net),
            ("shared_longer_net", self.shared_longer_net),
            ("unroutable_net", self.unroutable_net),
            ("blocked_net", self.blocked_net),
        ]
    }

    fn validate(&self, v6: bool) -> anyhow::Result<()> {
        for (name, x) in self.addrs() {
            ensure!(x.is_ipv6() == v6, "{name} {x} is of the wrong family");
        }
        for (name, n) in self.nets() {
            ensure!(
                n.addr().is_ipv6() == v6,
                "{name} {n} is of the wrong family"
            );
            ensure!(n.trunc() == n, "{name} {n} has host bits set");
        }
        let addrs = self.addrs();
        for (i, (name, x)) in addrs.iter().enumerate() {
            if let Some((other, _)) = addrs[i + 1..].iter().find(|(_, y)| y == x) {
                bail!("{name} and {other} are the same address {x}");
            }
        }
        let inside = |what: &str, x: IpAddr, n: IpNet, want: bool| -> anyhow::Result<()> {
            ensure!(
                n.contains(&x) == want,
                "{what} {x} must{} be in {n}",
                if want { "" } else { " not" }
            );
            Ok(())
        };
        for (name, x) in [
            ("gateway", self.gateway),
            ("client", self.client),
            ("lan_host", self.lan_host),
            ("isolated", self.isolated),
            ("shared_lan", self.shared_lan),
        ] {
            inside(name, x, self.lan_net, true)?;
        }
        inside(
            "gateway_dedicated",
            self.gateway_dedicated,
            self.dedicated_net,
            true,
        )?;
        ensure!(
            self.dedicated_net.contains(&self.govnet_dedicated),
            "govnet_dedicated inside dedicated_net"
        );
        for (name, x) in [
            ("dedicated_host", self.dedicated_host),
            ("shared", self.shared),
            ("shared_net_host", self.shared_net_host),
            ("shared_longer_host", self.shared_longer_host),
        ] {
            inside(name, x, self.govnet_dedicated, true)?;
        }
        inside(
            "dedicated_stray",
            self.dedicated_stray,
            self.dedicated_net,
            true,
        )?;
        inside(
            "dedicated_stray",
            self.dedicated_stray,
            self.govnet_dedicated,
            false,
        )?;
        ensure!(
            self.govnet_dedicated.contains(&self.shared_net),
            "shared_net inside govnet_dedicated"
        );
        ensure!(
            self.shared_net.contains(&self.shared_longer_net),
            "shared_longer_net inside shared_net"
        );
        ensure!(
            self.shared_net != self.shared_longer_net,
            "shared_longer_net is longer than shared_net"
        );
        inside("shared", self.shared, self.shared_net, false)?;
        inside(
            "dedicated_host",
            self.dedicated_host,
            self.shared_net,
            false,
        )?;
        inside(
            "shared_net_host",
            self.shared_net_host,
            self.shared_net,
            true,
        )?;
        inside(
            "shared_net_host",
            self.shared_net_host,
            self.shared_longer_net,
            false,
        )?;
        inside(
            "shared_longer_host",
            self.shared_longer_host,
            self.shared_longer_net,
            true,
        )?;
        inside(
            "shared_unroutable",
            self.shared_unroutable,
            self.unroutable_net,
            true,
        )?;
        inside(
            "blocked_in_net",
            self.blocked_in_net,
            self.blocked_net,
            true,
        )?;
        inside("blocked_exact", self.blocked_exact, self.blocked_net, false)?;
        // The internet side: outside every routed or policy prefix.
        for (name, x) in [
            ("internet", self.internet),
            ("shared_internet", self.shared_internet),
            ("blocked_exact", self.blocked_exact),
            ("blocked_in_net", self.blocked_in_net),
        ] {
            for n in [self.lan_net, self.dedicated_net, self.unroutable_net] {
                inside(name, x, n, false)?;
            }
        }
        let routed = [
            ("lan_net", self.lan_net),
            ("dedicated_net", self.dedicated_net),
            ("unroutable_net", self.unroutable_net),
            ("blocked_net", self.blocked_net),
        ];
        for (i, (name, n)) in routed.iter().enumerate() {
            for (other, m) in &routed[i + 1..] {
                ensure!(
                    !n.contains(m) && !m.contains(n),
                    "{name} {n} and {other} {m} overlap"
                );
            }
        }
        for x in [self.internet, self.shared_internet] {
            inside("internet", x, self.blocked_net, false)?;
        }
        Ok(())
    }
}

/// The port map of the corpus topology.
pub fn corpus_ports(addrs: &CorpusAddrs) -> Ports {
    Ports::new()
        .with(addrs.lan_if, Role::Lan)
        .with(addrs.dedicated_if, Role::Dedicated)
        .with(addrs.internet_if, Role::Internet)
}

/// The routes the corpus assumes: the lan and dedicated subnets out of their ports, the gateway's own
/// addresses local, the unroutable prefixes unreachable, everything else out of the internet port.
pub fn corpus_routes(addrs: &CorpusAddrs) -> StaticRoutes {
    let mut r = StaticRoutes::new(Egress::Port(addrs.internet_if));
    for f in [&addrs.v4, &addrs.v6] {
        r.insert(f.lan_net, Egress::Port(addrs.lan_if));
        r.insert(host(f.gateway), Egress::Local);
        r.insert(f.dedicated_net, Egress::Port(addrs.dedicated_if));
        r.insert(host(f.gateway_dedicated), Egress::Local);
        r.insert(f.unroutable_net, Egress::Unroutable);
    }
    r
}

/// Shared systems of the corpus image, by id.
pub const SYS_RECORDS: u32 = 0;
pub const SYS_GIS: u32 = 1;
pub const SYS_GIS_ADMIN: u32 = 2;
pub const SYS_ELSEWHERE: u32 = 3;

/// Ports of the corpus allow rules.
pub const PORT_HTTPS: u16 = 443;
pub const PORT_SSH: u16 = 22;
pub const PORT_DNS: u16 = 53;
pub const PORT_APP_LO: u16 = 8000;
pub const PORT_APP_HI: u16 = 8099;

fn host(x: IpAddr) -> IpNet {
    IpNet::from(x)
}

/// An address of `unroutable_net` that is neither its network address nor `shared_unroutable`.
fn unroutable_host(f: &Family) -> IpAddr {
    let net = f.unroutable_net;
    net.hosts()
        .find(|h| *h != net.network() && *h != f.shared_unroutable)
        .unwrap_or(f.shared_unroutable)
}

/// The fixed image the corpus's expected reasons are written against (`settings_flags` 0; the packet
/// tests also run it with `SETTING_DROP_FRAGMENTS` and compare with `Case::expected_drop_fragments`).
///
/// - blocklist: `blocked_exact` (feed 1), `blocked_net` (feed 1);
/// - isolated: `isolated`;
/// - shared: records = `shared`; gis = `shared_net`; gis-admin = `shared_longer_net`; elsewhere =
///   `shared_internet`, `shared_lan`, `shared_unroutable`, `gateway_dedicated`;
/// - govnet: `govnet_dedicated` (dedicated) and every shared prefix (shared);
/// - allow (folded): records: lan → tcp/443; client → icmp, tcp/443, tcp/8000-8099, udp/53.
///   gis: lan → anything. gis-admin: client → tcp/22. elsewhere: lan → anything.
pub fn corpus_image(addrs: &CorpusAddrs) -> MapImage {
    let mut img = MapImage {
        feeds: vec![
            FeedInfo {
                name: "inline".into(),
                entries: 0,
            },
            FeedInfo {
                name: "corpus-feed".into(),
                entries: 4,
            },
        ],
        systems: ["records", "gis", "gis-admin", "elsewhere"]
            .into_iter()
            .map(|n| SystemInfo { name: n.into() })
            .collect(),
        ..MapImage::default()
    };
    let any = PortRule::new(PortRule::ANY_PROTO, 0, u16::MAX);
    let tcp = |lo, hi| PortRule::new(IPPROTO_TCP, lo, hi);
    let udp = |p| PortRule::new(IPPROTO_UDP, p, p);
    for (f, icmp) in [(&addrs.v4, IPPROTO_ICMP), (&addrs.v6, IPPROTO_ICMPV6)] {
        let shared: [(IpNet, u32); 7] = [
            (host(f.shared), SYS_RECORDS),
            (f.shared_net, SYS_GIS),
            (f.shared_longer_net, SYS_GIS_ADMIN),
            (host(f.shared_internet), SYS_ELSEWHERE),
            (host(f.shared_lan), SYS_ELSEWHERE),
            (host(f.shared_unroutable), SYS_ELSEWHERE),
            (host(f.gateway_dedicated), SYS_ELSEWHERE),
        ];
        let mut records_client = vec![
            PortRule::new(icmp, 0, 0),
            tcp(PORT_HTTPS, PORT_HTTPS),
            tcp(PORT_APP_LO, PORT_APP_HI),
            udp(PORT_DNS),
        ];
        records_client.sort();
        let allow: [(u32, IpNet, Vec<PortRule>); 5] = [
            (SYS_RECORDS, f.lan_net, vec![tcp(PORT_HTTPS, PORT_HTTPS)]),
            (SYS_RECORDS, host(f.client), records_client),
            (SYS_GIS, f.lan_net, vec![any]),
            (SYS_GIS_ADMIN, host(f.client), vec![tcp(PORT_SSH, PORT_SSH)]),
            (SYS_ELSEWHERE, f.lan_net, vec![any]),
        ];
        match (f.blocked_exact, f.blocked_net, f.isolated) {
            (IpAddr::V4(x), IpNet::V4(n), IpAddr::V4(iso)) => {
                img.block4_exact.insert(x, 1);
                img.block4_prefixes.insert(n, 1);
                img.isolated4.insert(iso.into());
                img.govnet4
                    .insert(v4net(f.govnet_dedicated), GOVNET_DEDICATED);
                for (n, s) in shared {
                    img.shared4.insert(v4net(n), s);
                    img.govnet4.insert(v4net(n), GOVNET_SHARED);
                }
                for (s, n, rules) in allow {
                    img.allow4.insert((s, v4net(n)), rules);
                }
            }
            (IpAddr::V6(x), IpNet::V6(n), IpAddr::V6(iso)) => {
                img.block6_exact.insert(x, 1);
                img.block6_prefixes.insert(n, 1);
                img.isolated6.insert(iso.into());
                img.govnet6
                    .insert(v6net(f.govnet_dedicated), GOVNET_DEDICATED);
                for (n, s) in shared {
                    img.shared6.insert(v6net(n), s);
                    img.govnet6.insert(v6net(n), GOVNET_SHARED);
                }
                for (s, n, rules) in allow {
                    img.allow6.insert((s, v6net(n)), rules);
                }
            }
            _ => panic!("corpus addresses of mixed families (CorpusAddrs::validate says which)"),
        }
    }
    img
}

fn v4net(n: IpNet) -> ipnet::Ipv4Net {
    match n {
        IpNet::V4(n) => n,
        IpNet::V6(n) => panic!("{n} in the v4 family (CorpusAddrs::validate says which)"),
    }
}

fn v6net(n: IpNet) -> ipnet::Ipv6Net {
    match n {
        IpNet::V6(n) => n,
        IpNet::V4(n) => panic!("{n} in the v6 family (CorpusAddrs::validate says which)"),
    }
}

// ---------------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------------

/// One corpus frame and the reasons the spec gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// `ingress/family/what`, unique.
    pub name: String,
    pub ingress: u32,
    pub frame: Vec<u8>,
    /// The reason under [`corpus_image`] as it is (fragments judged on their addresses).
    pub expected: Reason,
    /// The reason under [`corpus_image`] with `SETTING_DROP_FRAGMENTS` set.
    pub expected_drop_fragments: Reason,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (ifindex {}, {} bytes) -> {}",
            self.name,
            self.ingress,
            self.frame.len(),
            self.expected.as_str()
        )
    }
}

struct Corpus {
    cases: Vec<Case>,
}

impl Corpus {
    /// A case whose reason does not depend on the fragment setting.
    fn add(&mut self, name: impl Into<String>, ingress: u32, frame: Frame, expected: Reason) {
        self.add_frag(name, ingress, frame, expected, expected);
    }

    /// A case with a different reason when the policy drops fragments.
    fn add_frag(
        &mut self,
        name: impl Into<String>,
        ingress: u32,
        frame: Frame,
        expected: Reason,
        drop: Reason,
    ) {
        let frame = frame.bytes();
        self.cases.push(Case {
            name: name.into(),
            ingress,
            frame,
            expected,
            expected_drop_fragments: drop,
        });
    }
}

/// The named corpus for the topology `addrs` (see [`corpus_image`] and [`corpus_routes`]). Check the
/// addresses with [`CorpusAddrs::validate`] first: the expected reasons rely on their relations.
pub fn corpus(addrs: &CorpusAddrs) -> Vec<Case> {
    use Reason::*;
    let mut c = Corpus { cases: Vec::new() };
    let (lan, ded, inet, unknown) = (
        addrs.lan_if,
        addrs.dedicated_if,
        addrs.internet_if,
        addrs.unknown_if,
    );
    let tcp = |s: IpAddr, d: IpAddr, dport: u16| Frame::ip(s, d, L4::tcp(40000, dport));
    let udp = |s: IpAddr, d: IpAddr, dport: u16| Frame::ip(s, d, L4::udp(40001, dport));
    let echo = |s: IpAddr, d: IpAddr| Frame::ip(s, d, L4::echo());
    // A non-first fragment (offset 185 * 8 bytes) of a TCP/UDP datagram: 16 bytes of payload data.
    let frag = |s: IpAddr, d: IpAddr, proto: u8| {
        Frame::ip(s, d, L4::raw(proto, &[0xab; 16])).fragment(185, false)
    };

    for (fam, f) in [("v4", &addrs.v4), ("v6", &addrs.v6)] {
        let n = |role: &str, what: &str| format!("{role}/{fam}/{what}");

        // --- lan ingress: ordinary traffic ---
        c.add(
            n("lan", "tcp-client-to-internet"),
            lan,
            tcp(f.client, f.internet, 443),
            Pass,
        );
        c.add(
            n("lan", "udp-client-to-internet"),
            lan,
            udp(f.client, f.internet, 53),
            Pass,
        );
        c.add(
            n("lan", "icmp-client-to-internet"),
            lan,
            echo(f.client, f.internet),
            Pass,
        );
        c.add(
            n("lan", "tcp-vlan-8021q"),
            lan,
            tcp(f.client, f.internet, 443).vlan(TPID_8021Q, 10),
            Pass,
        );
        c.add(
            n("lan", "tcp-vlan-8021ad-8021q"),
            lan,
            tcp(f.client, f.internet, 443)
                .vlan(TPID_8021AD, 100)
                .vlan(TPID_8021Q, 10),
            Pass,
        );
        c.add(
            n("lan", "udp-vlan-8021q-8021q"),
            lan,
            udp(f.client, f.internet, 53)
                .vlan(TPID_8021Q, 100)
                .vlan(TPID_8021Q, 10),
            Pass,
        );
        c.add(
            n("lan", "icmp-with-ethernet-padding"),
            lan,
            echo(f.client, f.internet).pad(20),
            Pass,
        );
        c.add(
            n("lan", "tcp-to-gateway"),
            lan,
            tcp(f.client, f.gateway, 22),
            Pass,
        );
        c.add(
            n("lan", "tcp-to-dedicated-host"),
            lan,
            tcp(f.client, f.dedicated_host, 22),
            Pass,
        );
        c.add(
            n("lan", "tcp-to-dedicated-stray"),
            lan,
            tcp(f.client, f.dedicated_stray, 22),
            Pass,
        );
        c.add(
            n("lan", "gre-to-internet"),
            lan,
            Frame::ip(f.client, f.internet, L4::raw(IPPROTO_GRE, &[0; 4])),
            Pass,
        );
        c.add(
            n("lan", "first-fragment-to-internet"),
            lan,
            tcp(f.client, f.internet, 443).fragment(0, true),
            Pass,
        );
        c.add_frag(
            n("lan", "non-first-fragment-to-internet"),
            lan,
            frag(f.client, f.internet, IPPROTO_UDP),
            Pass,
            Fragment,
        );
        c.add_frag(
            n("lan", "non-first-fragment-vlan-to-internet"),
            lan,
            frag(f.client, f.internet, IPPROTO_TCP).vlan(TPID_8021Q, 7),
            Pass,
            Fragment,
        );

        // --- lan ingress: blocklist ---
        c.add(
            n("lan", "blocked-exact"),
            lan,
            tcp(f.client, f.blocked_exact, 443),
            Blocklist,
        );
        c.add(
            n("lan", "blocked-prefix"),
            lan,
            udp(f.client, f.blocked_in_net, 53),
            Blocklist,
        );
        c.add(
            n("lan", "blocked-prefix-vlan2"),
            lan,
            echo(f.client, f.blocked_in_net)
                .vlan(TPID_8021AD, 1)
                .vlan(TPID_8021Q, 2),
            Blocklist,
        );
        c.add_frag(
            n("lan", "blocked-non-first-fragment"),
            lan,
            frag(f.client, f.blocked_exact, IPPROTO_TCP),
            Blocklist,
            Fragment,
        );
        c.add(
            n("lan", "blocked-before-isolated"),
            lan,
            tcp(f.isolated, f.blocked_exact, 443),
            Blocklist,
        );
        c.add(
            n("lan", "blocked-source-is-not-checked"),
            lan,
            tcp(f.blocked_exact, f.internet, 443),
            Pass,
        );

        // --- lan ingress: isolated host ---
        c.add(
            n("lan", "isolated-to-internet"),
            lan,
            tcp(f.isolated, f.internet, 443),
            Isolated,
        );
        c.add(
            n("lan", "isolated-to-lan-host"),
            lan,
            tcp(f.isolated, f.lan_host, 445),
            Isolated,
        );
        c.add(
            n("lan", "isolated-to-dedicated-stray"),
            lan,
            tcp(f.isolated, f.dedicated_stray, 443),
            Isolated,
        );
        c.add(
            n("lan", "isolated-to-unroutable"),
            lan,
            udp(f.isolated, unroutable_host(f), 53),
            Isolated,
        );
        c.add(
            n("lan", "isolated-to-shared-via-internet"),
            lan,
            tcp(f.isolated, f.shared_internet, 443),
            Isolated,
        );
        c.add(
            n("lan", "isolated-to-gateway"),
            lan,
            udp(f.isolated, f.gateway, 53),
            Pass,
        );
        c.add(
            n("lan", "isolated-to-dedicated-host"),
            lan,
            tcp(f.isolated, f.dedicated_host, 22),
            Pass,
        );
        c.add(
            n("lan", "isolated-to-shared-allowed"),
            lan,
            tcp(f.isolated, f.shared, PORT_HTTPS),
            Pass,
        );
        c.add(
            n("lan", "isolated-to-shared-not-allowed"),
            lan,
            tcp(f.isolated, f.shared, 80),
            NotAllowed,
        );
        c.add_frag(
            n("lan", "isolated-non-first-fragment-to-internet"),
            lan,
            frag(f.isolated, f.internet, IPPROTO_UDP),
            Isolated,
            Fragment,
        );

        // --- lan ingress: shared systems, allow rules ---
        c.add(
            n("lan", "shared-client-tcp-443"),
            lan,
            tcp(f.client, f.shared, PORT_HTTPS),
            Pass,
        );
        c.add(
            n("lan", "shared-client-tcp-8050"),
            lan,
            tcp(f.client, f.shared, 8050),
            Pass,
        );
        c.add(
            n("lan", "shared-client-tcp-8100"),
            lan,
            tcp(f.client, f.shared, PORT_APP_HI + 1),
            NotAllowed,
        );
        c.add(
            n("lan", "shared-client-udp-53"),
            lan,
            udp(f.client, f.shared, PORT_DNS),
            Pass,
        );
        c.add(
            n("lan", "shared-client-udp-443"),
            lan,
            udp(f.client, f.shared, PORT_HTTPS),
            NotAllowed,
        );
        c.add(
            n("lan", "shared-client-icmp"),
            lan,
            echo(f.client, f.shared),
            Pass,
        );
        c.add(
            n("lan", "shared-client-gre"),
            lan,
            Frame::ip(f.client, f.shared, L4::raw(IPPROTO_GRE, &[0; 4])),
            NotAllowed,
        );
        c.add(
            n("lan", "shared-lan-host-tcp-443"),
            lan,
            tcp(f.lan_host, f.shared, PORT_HTTPS),
            Pass,
        );
        c.add(
            n("lan", "shared-lan-host-udp-53"),
            lan,
            udp(f.lan_host, f.shared, PORT_DNS),
            NotAllowed,
        );
        c.add(
            n("lan", "shared-lan-host-icmp"),
            lan,
            echo(f.lan_host, f.shared),
            NotAllowed,
        );
        c.add(
            n("lan", "shared-foreign-source"),
            lan,
            tcp(f.internet, f.shared, PORT_HTTPS),
            NotAllowed,
        );
        c.add_frag(
            n("lan", "shared-non-first-fragment-tcp"),
            lan,
            frag(f.client, f.shared, IPPROTO_TCP),
            NotAllowed,
            Fragment,
        );
        let icmp = if f.client.is_ipv6() {
            IPPROTO_ICMPV6
        } else {
            IPPROTO_ICMP
        };
        c.add_frag(
            n("lan", "shared-non-first-fragment-icmp"),
            lan,
            frag(f.client, f.shared, icmp),
            Pass,
            Fragment,
        );
        c.add(
            n("lan", "shared-tcp-443-vlan2"),
            lan,
            tcp(f.client, f.shared, PORT_HTTPS)
                .vlan(TPID_8021AD, 5)
                .vlan(TPID_8021Q, 6),
            Pass,
        );
        c.add(
            n("lan", "shared-prefix-any-port"),
            lan,
            udp(f.lan_host, f.shared_net_host, 9999),
            Pass,
        );
        c.add_frag(
            n("lan", "shared-prefix-non-first-fragment"),
            lan,
            frag(f.lan_host, f.shared_net_host, IPPROTO_TCP),
            Pass,
            Fragment,
        );
        c.add(
            n("lan", "shared-longer-prefix-client-ssh"),
            lan,
            tcp(f.client, f.shared_longer_host, PORT_SSH),
            Pass,
        );
        c.add(
            n("lan", "shared-longer-prefix-client-https"),
            lan,
            tcp(f.client, f.shared_longer_host, PORT_HTTPS),
            NotAllowed,
        );
        c.add(
            n("lan", "shared-longer-prefix-lan-host"),
            lan,
            tcp(f.lan_host, f.shared_longer_host, PORT_SSH),
            NotAllowed,
        );

        // --- lan ingress: shared systems, route ---
        c.add(
            n("lan", "shared-via-internet"),
            lan,
            tcp(f.client, f.shared_internet, 443),
            SharedViaInternet,
        );
        c.add(
            n("lan", "shared-via-lan"),
            lan,
            tcp(f.client, f.shared_lan, 443),
            SharedViaInternet,
        );
        c.add(
            n("lan", "shared-via-unroutable"),
            lan,
            tcp(f.client, f.shared_unroutable, 443),
            SharedViaInternet,
        );
        c.add(
            n("lan", "shared-via-local"),
            lan,
            tcp(f.client, f.gateway_dedicated, 443),
            SharedViaInternet,
        );
        c.add(
            n("lan", "shared-via-internet-not-allowed-first"),
            lan,
            tcp(f.dedicated_host, f.shared_internet, 443),
            NotAllowed,
        );

        // --- dedicated ingress ---
        c.add(
            n("ded", "tcp-dedicated-host-to-client"),
            ded,
            tcp(f.dedicated_host, f.client, 40000),
            Pass,
        );
        c.add(
            n("ded", "udp-shared-to-client"),
            ded,
            udp(f.shared, f.client, 40001),
            Pass,
        );
        c.add(
            n("ded", "icmp-shared-prefix-to-client"),
            ded,
            echo(f.shared_net_host, f.client),
            Pass,
        );
        c.add(
            n("ded", "tcp-to-gateway"),
            ded,
            tcp(f.dedicated_host, f.gateway_dedicated, 22),
            Pass,
        );
        c.add(
            n("ded", "tcp-vlan-8021q"),
            ded,
            tcp(f.dedicated_host, f.client, 40000).vlan(TPID_8021Q, 20),
            Pass,
        );
        c.add(
            n("ded", "foreign-internet-source"),
            ded,
            tcp(f.internet, f.client, 443),
            DedicatedForeign,
        );
        c.add(
            n("ded", "foreign-stray-source"),
            ded,
            tcp(f.dedicated_stray, f.client, 443),
            DedicatedForeign,
        );
        c.add(
            n("ded", "foreign-lan-source"),
            ded,
            tcp(f.client, f.lan_host, 443),
            DedicatedForeign,
        );
        c.add(
            n("ded", "cross-to-internet"),
            ded,
            tcp(f.dedicated_host, f.internet, 443),
            CrossNetwork,
        );
        c.add(
            n("ded", "cross-to-blocked"),
            ded,
            tcp(f.shared, f.blocked_exact, 443),
            CrossNetwork,
        );
        c.add(
            n("ded", "cross-hairpin-dedicated"),
            ded,
            tcp(f.dedicated_host, f.dedicated_stray, 443),
            CrossNetwork,
        );
        c.add(
            n("ded", "cross-to-unroutable"),
            ded,
            tcp(f.dedicated_host, f.shared_unroutable, 443),
            CrossNetwork,
        );
        c.add_frag(
            n("ded", "non-first-fragment-to-client"),
            ded,
            frag(f.dedicated_host, f.client, IPPROTO_UDP),
            Pass,
            Fragment,
        );
        c.add_frag(
            n("ded", "non-first-fragment-foreign"),
            ded,
            frag(f.internet, f.client, IPPROTO_UDP),
            DedicatedForeign,
            Fragment,
        );

        // --- internet ingress ---
        c.add(
            n("inet", "tcp-internet-to-client"),
            inet,
            tcp(f.internet, f.client, 40000),
            Pass,
        );
        c.add(
            n("inet", "udp-internet-to-client"),
            inet,
            udp(f.internet, f.client, 40001),
            Pass,
        );
        c.add(
            n("inet", "icmp-internet-to-gateway"),
            inet,
            echo(f.internet, f.gateway),
            Pass,
        );
        c.add(
            n("inet", "tcp-vlan-8021ad"),
            inet,
            tcp(f.internet, f.client, 40000).vlan(TPID_8021AD, 300),
            Pass,
        );
        c.add(
            n("inet", "hairpin-to-blocked"),
            inet,
            tcp(f.internet, f.blocked_exact, 443),
            Pass,
        );
        c.add(
            n("inet", "to-unroutable"),
            inet,
            tcp(f.internet, f.shared_unroutable, 443),
            Pass,
        );
        c.add(
            n("inet", "blocked-exact-source"),
            inet,
            tcp(f.blocked_exact, f.client, 40000),
            BlocklistIn,
        );
        c.add(
            n("inet", "blocked-prefix-source"),
            inet,
            udp(f.blocked_in_net, f.client, 40001),
            BlocklistIn,
        );
        c.add(
            n("inet", "spoofed-shared"),
            inet,
            tcp(f.shared, f.client, 40000),
            Spoofed,
        );
        c.add(
            n("inet", "spoofed-dedicated"),
            inet,
            tcp(f.dedicated_host, f.client, 40000),
            Spoofed,
        );
        c.add(
            n("inet", "spoofed-shared-internet"),
            inet,
            tcp(f.shared_internet, f.client, 40000),
            Spoofed,
        );
        c.add(
            n("inet", "cross-to-dedicated-host"),
            inet,
            tcp(f.internet, f.dedicated_host, 22),
            CrossNetwork,
        );
        c.add(
            n("inet", "cross-to-shared"),
            inet,
            tcp(f.internet, f.shared, 443),
            CrossNetwork,
        );
        c.add(
            n("inet", "cross-to-dedicated-stray"),
            inet,
            tcp(f.internet, f.dedicated_stray, 22),
            CrossNetwork,
        );
        c.add_frag(
            n("inet", "blocked-non-first-fragment"),
            inet,
            frag(f.blocked_in_net, f.client, IPPROTO_TCP),
            BlocklistIn,
            Fragment,
        );
        c.add_frag(
            n("inet", "non-first-fragment-to-client"),
            inet,
            frag(f.internet, f.client, IPPROTO_UDP),
            Pass,
            Fragment,
        );

        // --- a port outside the port map ---
        c.add(
            n("unknown", "tcp"),
            unknown,
            tcp(f.client, f.internet, 443),
            UnknownPort,
        );
        c.add(
            n("unknown", "malformed"),
            unknown,
            tcp(f.client, f.internet, 443).cut_l4(4),
            UnknownPort,
        );

        // --- malformed, both families, spread over the roles ---
        let l2 = 14;
        c.add(
            n("lan", "truncated-ip-header"),
            lan,
            tcp(f.client, f.internet, 443).truncate(l2 + 10),
            Malformed,
        );
        c.add(
            n("ded", "truncated-ip-header-vlan"),
            ded,
            tcp(f.dedicated_host, f.client, 443)
                .vlan(TPID_8021Q, 3)
                .truncate(l2 + 4 + 19),
            Malformed,
        );
        let ip_hlen = if f.client.is_ipv6() { 40 } else { 20 };
        c.add(
            n("inet", "truncated-in-tcp-header"),
            inet,
            tcp(f.internet, f.client, 443).truncate(l2 + ip_hlen + 10),
            Malformed,
        );
        c.add(
            n("lan", "truncated-in-payload"),
            lan,
            udp(f.client, f.internet, 53).truncate(l2 + ip_hlen + 9),
            Malformed,
        );
        c.add(
            n("lan", "tcp-cut-at-12"),
            lan,
            tcp(f.client, f.internet, 443).cut_l4(12),
            Malformed,
        );
        c.add(
            n("ded", "tcp-doff-4"),
            ded,
            tcp(f.dedicated_host, f.client, 443).tcp(|t| t.doff = Some(4)),
            Malformed,
        );
        c.add(
            n("inet", "tcp-doff-0"),
            inet,
            tcp(f.internet, f.client, 443).tcp(|t| t.doff = Some(0)),
            Malformed,
        );
        c.add(
            n("lan", "tcp-doff-15"),
            lan,
            tcp(f.client, f.internet, 443).tcp(|t| t.doff = Some(15)),
            Malformed,
        );
        c.add(
            n("lan", "tcp-doff-6-with-options"),
            lan,
            tcp(f.client, f.internet, 443).tcp(|t| t.options = vec![2, 4, 0x05, 0xb4]),
            Pass,
        );
        c.add(
            n("lan", "udp-cut-at-7"),
            lan,
            udp(f.client, f.internet, 53).cut_l4(7),
            Malformed,
        );
        c.add(
            n("lan", "udp-bogus-length-field"),
            lan,
            udp(f.client, f.internet, 53).l4(|l4| {
                if let L4::Udp(u) = l4 {
                    u.len = Some(999);
                }
            }),
            Pass,
        );
        c.add(
            n("inet", "icmp-cut-at-3"),
            inet,
            echo(f.internet, f.client).cut_l4(3),
            Malformed,
        );
        c.add(
            n("inet", "icmp-cut-at-4"),
            inet,
            echo(f.internet, f.client).cut_l4(4),
            Pass,
        );
        c.add(
            n("lan", "tiny-first-fragment"),
            lan,
            tcp(f.client, f.internet, 443).fragment(0, true).cut_l4(8),
            Malformed,
        );
        c.add(
            n("lan", "tiny-first-fragment-to-shared"),
            lan,
            tcp(f.client, f.shared, 443).fragment(0, true).cut_l4(8),
            Malformed,
        );
    }

    // --- IPv4 only ---
    let f = &addrs.v4;
    let tcp4 = || tcp(f.client, f.internet, 443);
    c.add(
        "lan/v4/options-nop-eol",
        lan,
        tcp4().v4(|h| h.options = vec![1, 1, 1, 0]),
        Pass,
    );
    c.add(
        "lan/v4/options-record-route-40",
        lan,
        tcp4().v4(|h| {
            h.options = vec![7, 39, 4];
            h.options.resize(40, 0);
        }),
        Pass,
    );
    c.add(
        "lan/v4/options-shared-allowed",
        lan,
        tcp(f.client, f.shared, PORT_HTTPS).v4(|h| h.options = vec![0x94, 4, 0, 0]),
        Pass,
    );
    c.add(
        "lan/v4/dont-fragment",
        lan,
        tcp4().v4(|h| h.dont_fragment = true),
        Pass,
    );
    c.add(
        "lan/v4/bad-header-checksum",
        lan,
        tcp4().v4(|h| h.bad_checksum = true),
        Pass,
    );
    c.add(
        "lan/v4/ihl-4",
        lan,
        tcp4().v4(|h| h.ihl = Some(4)),
        Malformed,
    );
    c.add(
        "lan/v4/ihl-0",
        lan,
        tcp4().v4(|h| h.ihl = Some(0)),
        Malformed,
    );
    c.add(
        "ded/v4/ihl-15-short",
        ded,
        tcp(f.dedicated_host, f.client, 443).v4(|h| h.ihl = Some(15)),
        Malformed,
    );
    c.add(
        "lan/v4/ihl-15-header-cut-by-frame",
        lan,
        Frame::ip(f.client, f.internet, L4::raw(IPPROTO_GRE, &[])).v4(|h| {
            h.ihl = Some(15);
            h.total_len = Some(60);
        }),
        Malformed,
    );
    c.add(
        "lan/v4/total-len-below-ihl",
        lan,
        tcp4().v4(|h| h.total_len = Some(19)),
        Malformed,
    );
    c.add(
        "lan/v4/total-len-0",
        lan,
        tcp4().v4(|h| h.total_len = Some(0)),
        Malformed,
    );
    c.add(
        "inet/v4/total-len-beyond-frame",
        inet,
        tcp(f.internet, f.client, 443).v4(|h| h.total_len = Some(61)),
        Malformed,
    );
    c.add(
        "lan/v4/total-len-cuts-tcp",
        lan,
        tcp4().v4(|h| h.total_len = Some(30)),
        Malformed,
    );
    c.add(
        "lan/v4/version-5",
        lan,
        tcp4().v4(|h| h.version = 5),
        Malformed,
    );
    c.add(
        "lan/v4/version-6-in-ipv4-ethertype",
        lan,
        tcp4().v4(|h| h.version = 6),
        Malformed,
    );
    c.add(
        "lan/v4/icmpv6-proto-unchecked",
        lan,
        Frame::ip(f.client, f.internet, L4::raw(IPPROTO_ICMPV6, &[0x80])),
        Pass,
    );
    c.add_frag(
        "lan/v4/non-first-fragment-more",
        lan,
        Frame::ip(f.client, f.internet, L4::raw(IPPROTO_TCP, &[1])).fragment(1, true),
        Pass,
        Fragment,
    );
    c.add_frag(
        "lan/v4/non-first-fragment-max-offset",
        lan,
        Frame::ip(f.client, f.internet, L4::raw(IPPROTO_UDP, &[1])).fragment(0x1fff, false),
        Pass,
        Fragment,
    );
    c.add_frag(
        "inet/v4/non-first-fragment-tiny-spoofed",
        inet,
        Frame::ip(f.shared, f.client, L4::raw(IPPROTO_TCP, &[])).fragment(1, false),
        Spoofed,
        Fragment,
    );

    // --- IPv6 only ---
    let f = &addrs.v6;
    let tcp6 = |d: IpAddr, p: u16| tcp(f.client, d, p);
    let ext = |frame: Frame, exts: &[Ext]| {
        frame.v6(|h| {
            let mut all = exts.to_vec();
            all.append(&mut h.ext);
            h.ext = all;
        })
    };
    use Ext as E;
    let chain4 = [
        E::hop_by_hop(),
        E::opts(IPV6_ROUTING, 1),
        E::opts(IPV6_DEST_OPTS, 2),
        E::fragment(0, true),
    ];
    c.add(
        "lan/v6/ext-hbh-rt-dst-frag0",
        lan,
        ext(tcp6(f.internet, 443), &chain4),
        Pass,
    );
    c.add(
        "lan/v6/ext-chain-shared-allowed",
        lan,
        ext(tcp6(f.shared, PORT_HTTPS), &chain4),
        Pass,
    );
    c.add(
        "lan/v6/ext-chain-shared-not-allowed",
        lan,
        ext(tcp6(f.shared, 80), &chain4),
        NotAllowed,
    );
    c.add(
        "lan/v6/ext-chain-blocked",
        lan,
        ext(tcp6(f.blocked_exact, 443), &[E::hop_by_hop()]),
        Blocklist,
    );
    c.add(
        "ded/v6/ext-dest-opts",
        ded,
        ext(tcp(f.dedicated_host, f.client, 443), &[E::dest_opts()]).vlan(TPID_8021Q, 9),
        Pass,
    );
    c.add(
        "inet/v6/ext-routing",
        inet,
        ext(tcp(f.internet, f.client, 443), &[E::routing()]),
        Pass,
    );
    let six = [
        E::hop_by_hop(),
        E::dest_opts(),
        E::routing(),
        E::fragment(0, false),
        E::dest_opts(),
        E::dest_opts(),
    ];
    c.add(
        "lan/v6/ext-6-headers",
        lan,
        ext(tcp6(f.internet, 443), &six),
        Pass,
    );
    let mut seven = six.to_vec();
    seven.push(E::dest_opts());
    c.add(
        "lan/v6/ext-7-headers",
        lan,
        ext(tcp6(f.internet, 443), &seven),
        Malformed,
    );
    c.add(
        "inet/v6/ext-7-headers",
        inet,
        ext(tcp(f.internet, f.client, 443), &seven),
        Malformed,
    );
    c.add_frag(
        "lan/v6/ext-6th-is-non-first-fragment",
        lan,
        ext(
            Frame::ip(f.client, f.internet, L4::raw(IPPROTO_UDP, &[0; 8])),
            &six[..5],
        )
        .fragment(3, true),
        Pass,
        Fragment,
    );
    c.add(
        "lan/v6/ext-7th-is-non-first-fragment",
        lan,
        ext(
            Frame::ip(f.client, f.internet, L4::raw(IPPROTO_UDP, &[0; 8])),
            &six,
        )
        .fragment(3, true),
        Malformed,
    );
    c.add(
        "lan/v6/ext-length-beyond-payload",
        lan,
        ext(
            tcp6(f.internet, 443),
            &[E::Opts {
                kind: IPV6_DEST_OPTS,
                hdr_ext_len: 0,
                claimed: Some(20),
            }],
        ),
        Malformed,
    );
    c.add(
        "lan/v6/ext-swallows-tcp",
        lan,
        ext(
            tcp6(f.internet, 443),
            &[E::Opts {
                kind: IPV6_HOP_BY_HOP,
                hdr_ext_len: 0,
                claimed: Some(2),
            }],
        ),
        Malformed,
    );
    c.add(
        "lan/v6/ext-header-cut-by-payload-len",
        lan,
        ext(
            Frame::ip(f.client, f.internet, L4::raw(IPV6_NO_NEXT, &[])),
            &[E::hop_by_hop()],
        )
        .v6(|h| h.payload_len = Some(4)),
        Malformed,
    );
    c.add(
        "lan/v6/fragment-header-cut-by-payload-len",
        lan,
        Frame::ip(f.client, f.internet, L4::raw(IPPROTO_UDP, &[]))
            .fragment(0, false)
            .v6(|h| h.payload_len = Some(6)),
        Malformed,
    );
    c.add(
        "lan/v6/fragment-reserved-byte-set",
        lan,
        ext(
            tcp6(f.internet, 443),
            &[E::Fragment {
                offset: 0,
                more: false,
                ident: 9,
                reserved: 0xff,
            }],
        ),
        Pass,
    );
    c.add(
        "lan/v6/routing-type-2-short",
        lan,
        // Type 2 (home address) needs 24 bytes by RFC 6275 and smoltcp; the data path does not look.
        ext(
            tcp6(f.internet, 443),
            &[E::Raw {
                kind: IPV6_ROUTING,
                bytes: vec![0, 2, 1, 0, 0, 0, 0],
            }],
        ),
        Pass,
    );
    c.add(
        "lan/v6/no-next-header",
        lan,
        Frame::ip(f.client, f.internet, L4::raw(IPV6_NO_NEXT, &[0; 8])),
        Pass,
    );
    c.add(
        "lan/v6/icmpv4-proto-unchecked",
        lan,
        Frame::ip(f.client, f.internet, L4::raw(IPPROTO_ICMP, &[8])),
        Pass,
    );
    c.add(
        "lan/v6/jumbo-payload-len-0",
        lan,
        tcp6(f.internet, 443).v6(|h| h.payload_len = Some(0)),
        Malformed,
    );
    c.add(
        "lan/v6/jumbo-with-hop-by-hop",
        lan,
        ext(tcp6(f.internet, 443), &[E::hop_by_hop()]).v6(|h| h.payload_len = Some(0)),
        Malformed,
    );
    c.add(
        "inet/v6/payload-len-beyond-frame",
        inet,
        tcp(f.internet, f.client, 443).v6(|h| h.payload_len = Some(21)),
        Malformed,
    );
    c.add(
        "lan/v6/payload-len-cuts-tcp",
        lan,
        tcp6(f.internet, 443).v6(|h| h.payload_len = Some(19)),
        Malformed,
    );
    c.add(
        "lan/v6/trailing-padding",
        lan,
        tcp6(f.internet, 443).pad(30),
        Pass,
    );
    c.add(
        "lan/v6/version-4",
        lan,
        tcp6(f.internet, 443).v6(|h| h.version = 4),
        Malformed,
    );
    c.add(
        "lan/v6/truncated-in-ext-header",
        lan,
        ext(tcp6(f.internet, 443), &chain4).truncate(14 + 40 + 12),
        Malformed,
    );
    c.add_frag(
        "lan/v6/non-first-fragment-after-hbh",
        lan,
        ext(
            Frame::ip(f.client, f.shared, L4::raw(IPPROTO_TCP, &[1])),
            &[E::hop_by_hop()],
        )
        .fragment(100, false),
        NotAllowed,
        Fragment,
    );
    c.add_frag(
        "lan/v6/non-first-fragment-of-dest-opts",
        lan,
        Frame::ip(f.client, f.internet, L4::raw(IPV6_DEST_OPTS, &[])).fragment(1, false),
        Pass,
        Fragment,
    );

    // --- non-IP and L2 ---
    let (c4, g4) = match (addrs.v4.client, addrs.v4.gateway) {
        (IpAddr::V4(c4), IpAddr::V4(g4)) => (c4, g4),
        _ => (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)),
    };
    for (role, ifindex) in [("lan", lan), ("ded", ded), ("inet", inet)] {
        c.add(format!("{role}/l2/arp"), ifindex, Frame::arp(c4, g4), NonIp);
        c.add(format!("{role}/l2/lldp"), ifindex, Frame::lldp(), NonIp);
        c.add(
            format!("{role}/l2/three-vlan-tags"),
            ifindex,
            tcp(addrs.v4.client, addrs.v4.internet, 443)
                .vlan(TPID_8021AD, 1)
                .vlan(TPID_8021Q, 2)
                .vlan(TPID_8021Q, 3),
            Malformed,
        );
    }
    c.add(
        "lan/l2/arp-vlan",
        lan,
        Frame::arp(c4, g4).vlan(TPID_8021Q, 10),
        NonIp,
    );
    c.add(
        "lan/l2/lldp-vlan2",
        lan,
        Frame::lldp().vlan(TPID_8021AD, 10).vlan(TPID_8021Q, 11),
        NonIp,
    );
    c.add(
        "lan/l2/unknown-ethertype",
        lan,
        Frame::new(L3::Other {
            ethertype: 0x1234,
            payload: vec![0; 46],
        }),
        NonIp,
    );
    c.add(
        "lan/l2/ethernet-header-only",
        lan,
        Frame::new(L3::Other {
            ethertype: 0x0800,
            payload: Vec::new(),
        }),
        Malformed,
    );
    c.add(
        "lan/l2/ipv6-ethertype-header-only",
        lan,
        Frame::new(L3::Other {
            ethertype: 0x86DD,
            payload: Vec::new(),
        }),
        Malformed,
    );
    c.add(
        "lan/l2/vlan-tag-cut",
        lan,
        Frame::new(L3::Other {
            ethertype: 0x8100,
            payload: vec![0, 10],
        }),
        Malformed,
    );
    c.add(
        "lan/l2/vlan-tag-only",
        lan,
        Frame::new(L3::Other {
            ethertype: 0x8100,
            payload: vec![0, 10, 0x08, 0x00],
        }),
        Malformed,
    );
    c.add(
        "lan/l2/second-vlan-tag-cut",
        lan,
        Frame::new(L3::Other {
            ethertype: 0x88A8,
            payload: vec![0, 10, 0x81, 0x00, 0],
        }),
        Malformed,
    );
    c.add(
        "lan/l2/three-vlan-tags-arp",
        lan,
        Frame::arp(c4, g4)
            .vlan(TPID_8021Q, 1)
            .vlan(TPID_8021Q, 2)
            .vlan(TPID_8021Q, 3),
        Malformed,
    );
    c.add("unknown/l2/arp", unknown, Frame::arp(c4, g4), UnknownPort);

    c.cases
}

/// The corpus as (name, ingress ifindex, frame) triples.
pub fn corpus_frames(addrs: &CorpusAddrs) -> Vec<(String, u32, Vec<u8>)> {
    corpus(addrs)
        .into_iter()
        .map(|c| (c.name, c.ingress, c.frame))
        .collect()
}

/// How many corpus cases expect each reason (for coverage reports).
pub fn reason_counts(cases: &[Case]) -> BTreeMap<Reason, usize> {
    let mut m = BTreeMap::new();
    for c in cases {
        *m.entry(c.expected).or_insert(0) += 1;
    }
    m
}

// --- DNS (issue 6) -------------------------------------------------------------------------------

/// `\x03www\x07example\x03com\x00` for `www.example.com`.
pub fn dns_wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

/// A DNS message: header (id, `flags`, QDCOUNT `qd`, ARCOUNT `ar`) and the question bytes.
pub fn dns_message(flags: u16, qd: u16, ar: u16, question: &[u8]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34];
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&qd.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&ar.to_be_bytes());
    m.extend_from_slice(question);
    m
}

/// A standard query (RD) for `name`, type A, class IN.
pub fn dns_query(name: &str) -> Vec<u8> {
    let mut q = dns_wire(name);
    q.extend_from_slice(&[0, 1, 0, 1]);
    dns_message(0x0100, 1, 0, &q)
}

/// [`corpus_image`] with two domain feeds: `threats` lists `blocked.example` (and everything
/// below it), `exact` lists `exact.example` alone; `ok.blocked.example` is an exception.
pub fn dns_image(addrs: &CorpusAddrs) -> MapImage {
    use gateway_common::dname::{BLOCK_APEX, BLOCK_BELOW, PASS_APEX, PASS_BELOW, hash_dotted};
    use gateway_common::values::{DomainValue, SETTING_DNS_INSPECT};
    let mut img = corpus_image(addrs);
    img.domain_feeds = vec![
        FeedInfo {
            name: "threats".into(),
            entries: 2,
        },
        FeedInfo {
            name: "exact".into(),
            entries: 1,
        },
    ];
    let h = |n: &str| hash_dotted(img.domain_seed, n.as_bytes());
    img.domains = [
        (
            h("blocked.example"),
            DomainValue::new(BLOCK_APEX | BLOCK_BELOW, 0),
        ),
        (
            h("ok.blocked.example"),
            DomainValue::new(PASS_APEX | PASS_BELOW, 0),
        ),
        (h("exact.example"), DomainValue::new(BLOCK_APEX, 1)),
    ]
    .into_iter()
    .collect();
    img.settings_flags |= SETTING_DNS_INSPECT;
    img
}

/// DNS queries under [`dns_image`] (`expected`; `expected_drop_fragments` is the same, the cases
/// have no fragments), both families: what the data path judges, what it leaves alone, and every
/// way a question can be unreadable.
pub fn dns_corpus(addrs: &CorpusAddrs) -> Vec<Case> {
    use Reason::*;
    let mut c = Corpus { cases: Vec::new() };
    let deep = format!("{}blocked.example", "l.".repeat(20));
    let mut long_label = vec![64u8];
    long_label.extend_from_slice(&[b'x'; 64]);
    long_label.extend_from_slice(&[0, 0, 1, 0, 1]);
    let blocked = dns_query("www.blocked.example");
    // A compression loop: the name is a pointer to itself.
    let mut looped = vec![0xc0, 12];
    looped.extend_from_slice(&[0, 1, 0, 1]);
    let mut edns = blocked.clone();
    edns[11] = 1;
    edns.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let mut two = dns_wire("ok.example");
    two.extend_from_slice(&[0, 1, 0, 1]);
    two.extend_from_slice(&blocked[12..]);
    let udp_cases: Vec<(&str, Vec<u8>, Reason)> = vec![
        ("allowed", dns_query("www.example.org"), Pass),
        ("listed", dns_query("blocked.example"), Domain),
        ("below-listed", blocked.clone(), Domain),
        ("upper-case", dns_query("WWW.Blocked.EXAMPLE"), Domain),
        ("deep-22-labels", dns_query(&deep), Domain),
        ("exception", dns_query("x.ok.blocked.example"), Pass),
        ("exact-only", dns_query("exact.example"), Domain),
        ("below-exact-only", dns_query("www.exact.example"), Pass),
        ("edns-opt", edns, Domain),
        (
            "compressed",
            dns_message(0x0100, 1, 0, &[0xc0, 0x0c, 0, 1, 0, 1]),
            Malformed,
        ),
        (
            "compression-loop",
            dns_message(0x0100, 1, 0, &looped),
            Malformed,
        ),
        (
            "label-64",
            dns_message(0x0100, 1, 0, &long_label),
            Malformed,
        ),
        ("truncated-name", blocked[..20].to_vec(), Malformed),
        ("no-qtype", blocked[..blocked.len() - 4].to_vec(), Malformed),
        ("short-header", blocked[..8].to_vec(), Malformed),
        ("two-questions", dns_message(0x0100, 2, 0, &two), Pass),
        ("response", dns_message(0x8180, 1, 0, &blocked[12..]), Pass),
    ];
    let fams = [
        ("v4", addrs.v4.client, addrs.v4.internet),
        ("v6", addrs.v6.client, addrs.v6.internet),
    ];
    for (fam, src, dst) in fams {
        for (what, msg, want) in &udp_cases {
            let l4 = L4::Udp(Udp {
                payload: msg.clone(),
                ..Udp::new(40000, 53)
            });
            c.add(
                format!("lan/{fam}/dns-udp-{what}"),
                addrs.lan_if,
                Frame::ip(src, dst, l4),
                *want,
            );
        }
        let framed = |m: &[u8]| {
            let mut p = (m.len() as u16).to_be_bytes().to_vec();
            p.extend_from_slice(m);
            p
        };
        let tcp = |payload: Vec<u8>| {
            L4::Tcp(Tcp {
                flags: 0x18,
                payload,
                ..Tcp::new(40000, 53)
            })
        };
        for (what, payload, want) in [
            ("listed", framed(&blocked), Domain),
            ("allowed", framed(&dns_query("www.example.org")), Pass),
            (
                "longer-than-segment",
                framed(&blocked)[..16].to_vec(),
                Malformed,
            ),
            ("syn", Vec::new(), Pass),
        ] {
            let l4 = if payload.is_empty() {
                L4::Tcp(Tcp::new(40000, 53))
            } else {
                tcp(payload)
            };
            c.add(
                format!("lan/{fam}/dns-tcp-{what}"),
                addrs.lan_if,
                Frame::ip(src, dst, l4),
                want,
            );
        }
        // Not inspected: another port, and a query arriving on the internet port.
        let other = L4::Udp(Udp {
            payload: blocked.clone(),
            ..Udp::new(40000, 5353)
        });
        c.add(
            format!("lan/{fam}/dns-udp-port-5353"),
            addrs.lan_if,
            Frame::ip(src, dst, other),
            Pass,
        );
        let inbound = L4::Udp(Udp {
            payload: blocked.clone(),
            ..Udp::new(40000, 53)
        });
        c.add(
            format!("internet/{fam}/dns-udp-query-inbound"),
            addrs.internet_if,
            Frame::ip(dst, src, inbound),
            Pass,
        );
    }
    c.cases
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_common::values::SETTING_DROP_FRAGMENTS;
    use gateway_reference::{Parsed, evaluate, parse};
    use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};
    use std::collections::BTreeSet;

    fn addrs() -> CorpusAddrs {
        CorpusAddrs::example()
    }

    #[test]
    fn example_topology_is_consistent() {
        addrs().validate().expect("example addresses");
        let mut bad = addrs();
        bad.v4.isolated = bad.v4.internet;
        assert!(bad.validate().is_err());
        let mut bad = addrs();
        bad.v6.client = a("10.0.0.1");
        assert!(bad.validate().is_err());
        let mut bad = addrs();
        bad.v4.dedicated_stray = a("10.20.0.7");
        assert!(bad.validate().is_err());
    }

    #[test]
    fn corpus_is_large_named_and_runnable() {
        let cases = corpus(&addrs());
        assert!(cases.len() >= 80, "only {} cases", cases.len());
        let names: BTreeSet<_> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.len(), cases.len(), "case names are unique");
        for c in &cases {
            assert!(
                c.frame.len() >= frame_min_len(),
                "{c}: shorter than BPF_PROG_TEST_RUN accepts"
            );
            assert!(
                c.frame.len() <= 1514,
                "{c}: longer than an untagged MTU-sized frame"
            );
        }
        assert_eq!(corpus_frames(&addrs()).len(), cases.len());
    }

    #[test]
    fn corpus_covers_every_reason() {
        let cases = corpus(&addrs());
        let counts = reason_counts(&cases);
        for r in Reason::ALL {
            // `domain` does not exist yet; `no_policy` is the slot's state, not the frame's.
            if matches!(r, Reason::Domain | Reason::NoPolicy | Reason::Fragment) {
                continue;
            }
            assert!(
                counts.contains_key(&r),
                "no corpus case expects {}",
                r.as_str()
            );
        }
        assert!(
            cases
                .iter()
                .any(|c| c.expected_drop_fragments == Reason::Fragment)
        );
    }

    /// The corpus checks the reference model: the hand-written reasons must be what it computes.
    #[test]
    fn reference_model_agrees_with_the_corpus() {
        let addrs = addrs();
        let ports = corpus_ports(&addrs);
        let routes = corpus_routes(&addrs);
        let image = corpus_image(&addrs);
        let mut dropping = image.clone();
        dropping.settings_flags |= SETTING_DROP_FRAGMENTS;
        let mut wrong = Vec::new();
        for c in corpus(&addrs) {
            let got = evaluate(&image, true, &ports, &routes, c.ingress, &c.frame);
            if got != c.expected {
                wrong.push(format!("{c}: reference says {}", got.as_str()));
            }
            let got = evaluate(&dropping, true, &ports, &routes, c.ingress, &c.frame);
            if got != c.expected_drop_fragments {
                wrong.push(format!(
                    "{} with drop_fragments: expected {}, reference says {}",
                    c.name,
                    c.expected_drop_fragments.as_str(),
                    got.as_str()
                ));
            }
            let expect_no_policy = if ports.role(c.ingress).is_some() {
                Reason::NoPolicy
            } else {
                Reason::UnknownPort
            };
            assert_eq!(
                evaluate(&image, false, &ports, &routes, c.ingress, &c.frame),
                expect_no_policy,
                "{c}"
            );
        }
        assert!(
            wrong.is_empty(),
            "{} disagreements:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }

    /// Each case parses to the class its reason implies.
    #[test]
    fn cases_parse_to_their_class() {
        for c in corpus(&addrs()) {
            let parsed = parse(&c.frame);
            match c.expected {
                Reason::Malformed => assert_eq!(parsed, Parsed::Malformed, "{c}"),
                Reason::NonIp => assert_eq!(parsed, Parsed::NonIp, "{c}"),
                Reason::UnknownPort => {}
                _ => assert!(matches!(parsed, Parsed::Ip(_)), "{c}: {parsed:?}"),
            }
            if c.expected_drop_fragments == Reason::Fragment && c.expected != Reason::Fragment {
                assert!(
                    matches!(parsed, Parsed::Ip(p) if p.fragment),
                    "{c}: a non-first fragment"
                );
            }
        }
    }

    #[test]
    fn checksums_verify_with_smoltcp() {
        let f = addrs().v4;
        let (IpAddr::V4(s4), IpAddr::V4(d4)) = (f.client, f.internet) else {
            panic!("v4 family")
        };
        for l4 in [L4::tcp(1, 2), L4::udp(3, 4), L4::echo()] {
            let frame = Ipv4::new(s4, d4, l4.clone())
                .frame()
                .vlan(TPID_8021Q, 5)
                .bytes();
            let ip = Ipv4Packet::new_checked(&frame[18..]).expect("ipv4");
            assert!(ip.verify_checksum(), "{l4:?}: header checksum");
            let (src, dst) = (IpAddress::Ipv4(s4), IpAddress::Ipv4(d4));
            match l4 {
                L4::Tcp(_) => {
                    assert!(
                        TcpPacket::new_checked(ip.payload())
                            .expect("tcp")
                            .verify_checksum(&src, &dst)
                    )
                }
                L4::Udp(_) => {
                    assert!(
                        UdpPacket::new_checked(ip.payload())
                            .expect("udp")
                            .verify_checksum(&src, &dst)
                    )
                }
                _ => assert_eq!(internet_checksum(ip.payload()), 0, "icmp checksum"),
            }
        }
        let f = addrs().v6;
        let (IpAddr::V6(s6), IpAddr::V6(d6)) = (f.client, f.internet) else {
            panic!("v6 family")
        };
        let (src, dst) = (IpAddress::Ipv6(s6), IpAddress::Ipv6(d6));
        let frame = Ipv6::new(s6, d6, L4::tcp(1, 2)).frame().bytes();
        let ip = Ipv6Packet::new_checked(&frame[14..]).expect("ipv6");
        assert!(
            TcpPacket::new_checked(ip.payload())
                .expect("tcp")
                .verify_checksum(&src, &dst)
        );
        let frame = Ipv6::new(s6, d6, L4::udp(1, 2))
            .ext(Ext::hop_by_hop())
            .frame()
            .bytes();
        let ip = Ipv6Packet::new_checked(&frame[14..]).expect("ipv6");
        assert!(
            UdpPacket::new_checked(&ip.payload()[8..])
                .expect("udp")
                .verify_checksum(&src, &dst)
        );
        // ICMPv6: the pseudo-header is included.
        let frame = Ipv6::new(s6, d6, L4::echo()).frame().bytes();
        let mut data = pseudo_header(f.client, f.internet, IPPROTO_ICMPV6, frame.len() - 54);
        data.extend_from_slice(&frame[54..]);
        assert_eq!(internet_checksum(&data), 0);
    }

    #[test]
    fn builder_layout() {
        let f = addrs().v4;
        let frame = Frame::ip(f.client, f.internet, L4::tcp(1, 2))
            .vlan(TPID_8021AD, 1)
            .vlan(TPID_8021Q, 2);
        assert_eq!(frame.l2_len(), 22);
        let b = frame.bytes();
        assert_eq!(&b[12..14], &[0x88, 0xa8]);
        assert_eq!(&b[16..18], &[0x81, 0x00]);
        assert_eq!(&b[20..22], &[0x08, 0x00]);
        assert_eq!(b.len(), 22 + 20 + 20);
        // Options are padded to whole words and counted by the IHL.
        let b = Frame::ip(f.client, f.internet, L4::tcp(1, 2))
            .v4(|h| h.options = vec![1])
            .bytes();
        assert_eq!(b[14], 0x46);
        // Fragment knob: v4 sets offset and MF; v6 adds a fragment header.
        let b = Frame::ip(f.client, f.internet, L4::tcp(1, 2))
            .fragment(185, true)
            .bytes();
        assert_eq!(u16::from_be_bytes([b[20], b[21]]), 0x2000 | 185);
        let v6 = addrs().v6;
        let b = Frame::ip(v6.client, v6.internet, L4::udp(1, 2))
            .fragment(2, false)
            .bytes();
        assert_eq!(b[14 + 6], IPV6_FRAGMENT);
        assert_eq!(b[14 + 40], IPPROTO_UDP);
        assert_eq!(u16::from_be_bytes([b[14 + 42], b[14 + 43]]), 2 << 3);
        // Extension-header chain: each header names the next.
        let b = Ipv6::new(
            "fd00::1".parse().expect("addr"),
            "fd00::2".parse().expect("addr"),
            L4::tcp(1, 2),
        )
        .ext(Ext::hop_by_hop())
        .ext(Ext::opts(IPV6_ROUTING, 1))
        .frame()
        .bytes();
        assert_eq!(b[14 + 6], IPV6_HOP_BY_HOP);
        assert_eq!((b[54], b[55]), (IPV6_ROUTING, 0));
        assert_eq!((b[62], b[63]), (IPPROTO_TCP, 1));
        assert_eq!(u16::from_be_bytes([b[18], b[19]]), 8 + 16 + 20);
        // Truncation and padding.
        let b = Frame::lldp().pad(10).truncate(20).bytes();
        assert_eq!(b.len(), 20);
    }
}
