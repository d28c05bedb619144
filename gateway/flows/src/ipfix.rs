//! IPFIX (RFC 7011) encoder: one template for IPv4 flows, one for IPv6, data sets in record order,
//! messages bounded by a maximum size.
//!
//! Besides the IANA elements listed in [`FIELDS_V4`], every record carries three enterprise elements
//! under [`PEN`]: `gatewayDropReason` (the reason word, `pass` for forwarded flows),
//! `gatewayPolicyRule` and `gatewayCommunityId`, as variable-length strings.
//!
//! [`PEN`] is 32473, the Private Enterprise Number RFC 5612 reserves for documentation. An operator
//! with a PEN of its own changes that constant (and tells its collector the three element ids below);
//! collectors that do not know the elements skip them, as RFC 7011 requires.
//!
//! Sequence numbers count data records sent in this session from this observation domain (RFC 7011
//! §3.1); template sets carry none.
use std::{
    net::IpAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{
    FlowRecord, fields,
    format::{self, Encoded, Layout, SET_HEADER_LEN},
};

pub const VERSION: u16 = 10;
pub const HEADER_LEN: usize = 16;
pub const TEMPLATE_SET_ID: u16 = 2;
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;
/// Field length announcing a variable-length element (RFC 7011 §7).
pub const VARLEN: u16 = 0xFFFF;
/// Private Enterprise Number of the gateway's own elements: RFC 5612's documentation PEN. Operators
/// with their own PEN change it here.
pub const PEN: u32 = 32473;
/// Longest string element, in octets (longer rule names are cut at a character boundary). Keeps every
/// length prefix to one octet and every record well inside a 1400-octet datagram.
pub const MAX_STRING: usize = 254;
/// Default maximum message size for UDP: fits a 1500-octet MTU with IP/UDP headers and a tunnel.
pub const UDP_MAX_MESSAGE: usize = 1400;

/// IANA information element ids.
pub mod ie {
    pub const OCTET_DELTA_COUNT: u16 = 1;
    pub const PACKET_DELTA_COUNT: u16 = 2;
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const TCP_CONTROL_BITS: u16 = 6;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    pub const INGRESS_INTERFACE: u16 = 10;
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    pub const EGRESS_INTERFACE: u16 = 14;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    pub const ICMP_TYPE_CODE_IPV4: u16 = 32;
    pub const FORWARDING_STATUS: u16 = 89;
    pub const FLOW_END_REASON: u16 = 136;
    pub const ICMP_TYPE_CODE_IPV6: u16 = 139;
    pub const FLOW_START_MILLISECONDS: u16 = 152;
    pub const FLOW_END_MILLISECONDS: u16 = 153;
    pub const FIREWALL_EVENT: u16 = 233;
}

/// The gateway's enterprise element ids (under [`PEN`]); all are variable-length strings.
pub mod gateway_ie {
    /// The verdict reason word (`gateway_common::Reason::as_str`).
    pub const DROP_REASON: u16 = 1;
    /// The rule that decided (`feed:<name>`, `system:<name>`, …).
    pub const POLICY_RULE: u16 = 2;
    /// Community ID v1 of the flow.
    pub const COMMUNITY_ID: u16 = 3;
}

/// One field specifier of a template. `pen` 0 = an IANA element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    pub id: u16,
    pub len: u16,
    pub pen: u32,
}

const fn iana(id: u16, len: u16) -> FieldSpec {
    FieldSpec { id, len, pen: 0 }
}

const fn gateway(id: u16) -> FieldSpec {
    FieldSpec {
        id,
        len: VARLEN,
        pen: PEN,
    }
}

/// Both templates: the address elements differ, the rest is identical (and in this order on the
/// wire). tcpControlBits is two octets as RFC 7125 defines it.
const fn fields(src: FieldSpec, dst: FieldSpec, icmp: u16) -> [FieldSpec; 19] {
    [
        src,
        dst,
        iana(ie::PROTOCOL_IDENTIFIER, 1),
        iana(ie::SOURCE_TRANSPORT_PORT, 2),
        iana(ie::DESTINATION_TRANSPORT_PORT, 2),
        iana(icmp, 2),
        iana(ie::OCTET_DELTA_COUNT, 8),
        iana(ie::PACKET_DELTA_COUNT, 8),
        iana(ie::FLOW_START_MILLISECONDS, 8),
        iana(ie::FLOW_END_MILLISECONDS, 8),
        iana(ie::TCP_CONTROL_BITS, 2),
        iana(ie::INGRESS_INTERFACE, 4),
        iana(ie::EGRESS_INTERFACE, 4),
        iana(ie::FORWARDING_STATUS, 1),
        iana(ie::FIREWALL_EVENT, 1),
        iana(ie::FLOW_END_REASON, 1),
        gateway(gateway_ie::DROP_REASON),
        gateway(gateway_ie::POLICY_RULE),
        gateway(gateway_ie::COMMUNITY_ID),
    ]
}

pub const FIELDS_V4: [FieldSpec; 19] = fields(
    iana(ie::SOURCE_IPV4_ADDRESS, 4),
    iana(ie::DESTINATION_IPV4_ADDRESS, 4),
    ie::ICMP_TYPE_CODE_IPV4,
);
pub const FIELDS_V6: [FieldSpec; 19] = fields(
    iana(ie::SOURCE_IPV6_ADDRESS, 16),
    iana(ie::DESTINATION_IPV6_ADDRESS, 16),
    ie::ICMP_TYPE_CODE_IPV6,
);

/// Fixed-length part of a record (everything but the three strings).
const fn fixed_len(addr: usize) -> usize {
    2 * addr + 1 + 2 + 2 + 2 + 8 + 8 + 8 + 8 + 2 + 4 + 4 + 1 + 1 + 1
}
const MAX_RECORD: usize = fixed_len(16) + 3 * (1 + MAX_STRING);
const TEMPLATE_LEN: usize = 4 + 4 * 16 + 8 * 3;
const TEMPLATE_SET_LEN: usize = SET_HEADER_LEN + 2 * TEMPLATE_LEN;
/// The smallest message size accepted: the templates or one largest record always fit.
pub const MIN_MESSAGE: usize = HEADER_LEN + SET_HEADER_LEN + MAX_RECORD;
const _: () = assert!(MIN_MESSAGE <= UDP_MAX_MESSAGE && TEMPLATE_SET_LEN <= MAX_RECORD);

/// The IPFIX encoder of one observation domain on one transport session.
#[derive(Clone, Debug)]
pub struct IpfixEncoder {
    domain: u32,
    /// Data records sent so far in this session (mod 2^32).
    sequence: u32,
    max_message: usize,
}

impl IpfixEncoder {
    /// `max_message` is clamped to [`MIN_MESSAGE`]..=65535 (the 16-bit message length).
    pub fn new(observation_domain: u32, max_message: usize) -> IpfixEncoder {
        IpfixEncoder {
            domain: observation_domain,
            sequence: 0,
            max_message: max_message.clamp(MIN_MESSAGE, usize::from(u16::MAX)),
        }
    }

    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    pub fn restart_session(&mut self) {
        self.sequence = 0;
    }

    /// Appends a message holding the template set (both templates).
    pub fn encode_templates(&mut self, now: SystemTime, out: &mut Encoded) {
        let (domain, sequence) = (self.domain, self.sequence);
        format::push_message(out, |buf| {
            let start = buf.len();
            buf.resize(start + HEADER_LEN, 0);
            buf.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
            buf.extend_from_slice(&(TEMPLATE_SET_LEN as u16).to_be_bytes());
            for (id, fields) in [(TEMPLATE_V4, &FIELDS_V4), (TEMPLATE_V6, &FIELDS_V6)] {
                buf.extend_from_slice(&id.to_be_bytes());
                buf.extend_from_slice(&(fields.len() as u16).to_be_bytes());
                for f in fields {
                    if f.pen == 0 {
                        buf.extend_from_slice(&f.id.to_be_bytes());
                        buf.extend_from_slice(&f.len.to_be_bytes());
                    } else {
                        buf.extend_from_slice(&(f.id | 0x8000).to_be_bytes());
                        buf.extend_from_slice(&f.len.to_be_bytes());
                        buf.extend_from_slice(&f.pen.to_be_bytes());
                    }
                }
            }
            write_header(&mut buf[start..], export_secs(now), sequence, domain);
        });
    }

    /// Appends the messages carrying `records`, in order.
    pub fn encode(&mut self, records: &[FlowRecord], now: SystemTime, out: &mut Encoded) {
        let secs = export_secs(now);
        let domain = self.domain;
        let sequence = &mut self.sequence;
        format::assemble(&Ipfix, records, self.max_message, out, |msg, n| {
            write_header(msg, secs, *sequence, domain);
            *sequence = sequence.wrapping_add(n);
        });
    }
}

fn export_secs(now: SystemTime) -> u32 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

fn write_header(msg: &mut [u8], export_secs: u32, sequence: u32, domain: u32) {
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    msg[0..2].copy_from_slice(&VERSION.to_be_bytes());
    msg[2..4].copy_from_slice(&len.to_be_bytes());
    msg[4..8].copy_from_slice(&export_secs.to_be_bytes());
    msg[8..12].copy_from_slice(&sequence.to_be_bytes());
    msg[12..16].copy_from_slice(&domain.to_be_bytes());
}

/// A string cut to [`MAX_STRING`] octets at a character boundary.
pub(crate) fn clip(s: &str) -> &str {
    if s.len() <= MAX_STRING {
        return s;
    }
    let mut end = MAX_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Both endpoints as IPv4 when both are, else both as IPv6 (IPv4-mapped if one is IPv4).
pub(crate) enum Endpoints {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

pub(crate) fn endpoints(r: &FlowRecord) -> Endpoints {
    let v6 = |a: IpAddr| match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    match (r.src, r.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Endpoints::V4(s.octets(), d.octets()),
        (s, d) => Endpoints::V6(v6(s), v6(d)),
    }
}

struct Ipfix;

impl Layout for Ipfix {
    const HEADER_LEN: usize = HEADER_LEN;
    const PAD_SETS: bool = false;

    fn set_id(&self, r: &FlowRecord) -> u16 {
        match endpoints(r) {
            Endpoints::V4(..) => TEMPLATE_V4,
            Endpoints::V6(..) => TEMPLATE_V6,
        }
    }

    fn record_len(&self, r: &FlowRecord) -> usize {
        let addr = match endpoints(r) {
            Endpoints::V4(..) => 4,
            Endpoints::V6(..) => 16,
        };
        fixed_len(addr)
            + 3
            + clip(r.reason.as_str()).len()
            + clip(&r.rule).len()
            + clip(&r.community_id).len()
    }

    fn write_record(&self, buf: &mut Vec<u8>, r: &FlowRecord) {
        match endpoints(r) {
            Endpoints::V4(s, d) => {
                buf.extend_from_slice(&s);
                buf.extend_from_slice(&d);
            }
            Endpoints::V6(s, d) => {
                buf.extend_from_slice(&s);
                buf.extend_from_slice(&d);
            }
        }
        buf.push(r.proto);
        buf.extend_from_slice(&r.sport.to_be_bytes());
        buf.extend_from_slice(&r.dport.to_be_bytes());
        buf.extend_from_slice(&fields::icmp_type_code(r).to_be_bytes());
        buf.extend_from_slice(&r.octets.to_be_bytes());
        buf.extend_from_slice(&r.packets.to_be_bytes());
        buf.extend_from_slice(&r.start_ms.to_be_bytes());
        buf.extend_from_slice(&r.end_ms.to_be_bytes());
        buf.extend_from_slice(&u16::from(r.tcp_flags).to_be_bytes());
        buf.extend_from_slice(&r.ingress_ifindex.to_be_bytes());
        buf.extend_from_slice(&r.egress_ifindex.to_be_bytes());
        buf.push(fields::forwarding_status(r.reason));
        buf.push(fields::firewall_event(r.reason, r.end_reason));
        buf.push(r.end_reason.code());
        for s in [r.reason.as_str(), &r.rule, &r.community_id] {
            let s = clip(s);
            // MAX_STRING < 255: the one-octet length form of RFC 7011 §7 always applies.
            buf.push(s.len() as u8);
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::Decoder,
        test_records::{sample_records, tcp_v4},
    };

    #[test]
    fn template_lengths_match_the_constants() {
        let mut out = Encoded::new();
        IpfixEncoder::new(7, UDP_MAX_MESSAGE).encode_templates(SystemTime::now(), &mut out);
        let m = out.messages().next().expect("one message");
        assert_eq!(m.bytes.len(), HEADER_LEN + TEMPLATE_SET_LEN);
    }

    #[test]
    fn round_trips_through_the_decoder_with_sequence_numbers() {
        let records = sample_records();
        let mut enc = IpfixEncoder::new(42, UDP_MAX_MESSAGE);
        let mut out = Encoded::new();
        let now = SystemTime::now();
        enc.encode_templates(now, &mut out);
        enc.encode(&records, now, &mut out);
        enc.encode(&records, now, &mut out);
        let mut dec = Decoder::new();
        let mut got = Vec::new();
        let mut expected_seq = 0u32;
        for m in out.messages() {
            let msg = dec.decode(m.bytes).expect("decode");
            assert_eq!(msg.version, VERSION);
            assert_eq!(msg.domain, 42);
            assert_eq!(
                msg.sequence, expected_seq,
                "sequence = data records sent before"
            );
            assert_eq!(msg.flows.len() as u32, m.records);
            expected_seq += m.records;
            assert!(m.bytes.len() <= UDP_MAX_MESSAGE);
            got.extend(
                msg.flows
                    .iter()
                    .map(|f| f.to_record().expect("complete record")),
            );
        }
        let want: Vec<_> = records.iter().chain(&records).cloned().collect();
        assert_eq!(got, want);
        assert_eq!(enc.sequence(), 2 * records.len() as u32);
    }

    #[test]
    fn messages_stay_under_the_bound_and_long_strings_are_clipped() {
        let mut r = tcp_v4();
        r.rule = "é".repeat(400);
        let records = vec![r.clone(); 50];
        let mut enc = IpfixEncoder::new(1, UDP_MAX_MESSAGE);
        let mut out = Encoded::new();
        enc.encode(&records, SystemTime::now(), &mut out);
        assert!(out.message_count() > 1);
        assert_eq!(out.record_count(), 50);
        let mut dec = Decoder::new();
        let mut t = Encoded::new();
        enc.encode_templates(SystemTime::now(), &mut t);
        dec.decode(t.bytes()).expect("templates");
        for m in out.messages() {
            assert!(m.bytes.len() <= UDP_MAX_MESSAGE, "{}", m.bytes.len());
            for f in dec.decode(m.bytes).expect("decode").flows {
                let rule = f.rule.expect("rule");
                assert_eq!(rule.len(), MAX_STRING, "cut at a char boundary below 255");
                assert!(r.rule.starts_with(&rule));
            }
        }
    }
}
