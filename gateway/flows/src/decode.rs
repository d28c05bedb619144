//! A small decoder for the messages this crate writes, so tests, the export benchmark and a curious
//! operator can read them back. It follows the templates it is sent, IPFIX and NetFlow v9 alike, but it
//! is no collector: options templates are skipped and only the elements the gateway exports are
//! interpreted. The integration tests check the encoders against real collectors (nfdump, tshark),
//! not against this.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use gateway_common::Reason;

use crate::{
    EndReason, FlowRecord,
    ipfix::{self, FieldSpec, PEN, gateway_ie, ie},
    netflow9::{self, field},
};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: {what} needs {need} octets, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("version {0} is neither IPFIX (10) nor NetFlow v9")]
    Version(u16),
    #[error("the header says {field} octets, the message has {actual}")]
    Length { field: usize, actual: usize },
    #[error("set {id}: length {len} is shorter than its header or runs past the message")]
    SetLength { id: u16, len: usize },
    #[error("data set {id} of domain {domain} arrived before its template")]
    UnknownTemplate { id: u16, domain: u32 },
}

/// One decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedMessage {
    pub version: u16,
    /// IPFIX: data records sent before this message; v9: packets sent before this one.
    pub sequence: u32,
    /// Observation domain (IPFIX) or source id (v9).
    pub domain: u32,
    pub export_secs: u32,
    /// v9 only.
    pub sys_uptime_ms: Option<u32>,
    /// v9 only: the header's record count (templates included).
    pub count: Option<u16>,
    /// Templates defined by this message.
    pub templates: usize,
    pub flows: Vec<DecodedFlow>,
}

/// The fields of one data record, as far as its template had them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodedFlow {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub proto: Option<u8>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_type_code: Option<u16>,
    pub octets: Option<u64>,
    pub packets: Option<u64>,
    /// Unix epoch ms (v9: computed from uptime like a collector does).
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub tcp_flags: Option<u16>,
    pub ingress: Option<u32>,
    pub egress: Option<u32>,
    pub forwarding_status: Option<u8>,
    pub firewall_event: Option<u8>,
    pub end_reason: Option<u8>,
    pub drop_reason: Option<String>,
    pub rule: Option<String>,
    pub community_id: Option<String>,
}

impl DecodedFlow {
    /// The [`FlowRecord`] back, when every field is there (IPFIX with the gateway's templates).
    pub fn to_record(&self) -> Option<FlowRecord> {
        Some(FlowRecord {
            src: self.src?,
            dst: self.dst?,
            proto: self.proto?,
            sport: self.sport?,
            dport: self.dport?,
            ingress_ifindex: self.ingress?,
            egress_ifindex: self.egress?,
            packets: self.packets?,
            octets: self.octets?,
            start_ms: self.start_ms?,
            end_ms: self.end_ms?,
            tcp_flags: u8::try_from(self.tcp_flags?).ok()?,
            reason: Reason::from_str_name(self.drop_reason.as_deref()?)?,
            rule: self.rule.clone()?,
            end_reason: EndReason::from_code(self.end_reason?)?,
            community_id: self.community_id.clone()?,
        })
    }
}

/// The length of the IPFIX message starting at `buf` (from its header), once 4 octets are there: how
/// a stream collector frames IPFIX over TCP.
pub fn ipfix_message_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= 4).then(|| usize::from(u16::from_be_bytes([buf[2], buf[3]])))
}

/// Decodes messages, remembering the templates they define (per version, domain and template id).
#[derive(Debug, Default)]
pub struct Decoder {
    templates: HashMap<(u16, u32, u16), Vec<FieldSpec>>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let have = self.buf.len() - self.pos;
        if n > have {
            return Err(DecodeError::Truncated {
                what,
                need: n,
                have,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
}

fn uint(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes one IPFIX message or NetFlow v9 packet.
    pub fn decode(&mut self, msg: &[u8]) -> Result<DecodedMessage, DecodeError> {
        let mut c = Cursor { buf: msg, pos: 0 };
        let version = c.u16("version")?;
        match version {
            ipfix::VERSION => self.decode_ipfix(c),
            netflow9::VERSION => self.decode_v9(c),
            v => Err(DecodeError::Version(v)),
        }
    }

    fn decode_ipfix(&mut self, mut c: Cursor<'_>) -> Result<DecodedMessage, DecodeError> {
        let len = usize::from(c.u16("length")?);
        if len != c.buf.len() {
            return Err(DecodeError::Length {
                field: len,
                actual: c.buf.len(),
            });
        }
        let mut m = DecodedMessage {
            version: ipfix::VERSION,
            export_secs: c.u32("export time")?,
            sequence: c.u32("sequence")?,
            domain: c.u32("observation domain")?,
            sys_uptime_ms: None,
            count: None,
            templates: 0,
            flows: Vec::new(),
        };
        while c.left() > 0 {
            let (id, body) = set(&mut c)?;
            let mut s = Cursor { buf: body, pos: 0 };
            match id {
                ipfix::TEMPLATE_SET_ID => {
                    while s.left() >= 4 {
                        let tid = s.u16("template id")?;
                        let n = s.u16("field count")?;
                        let mut fields = Vec::with_capacity(usize::from(n));
                        for _ in 0..n {
                            let raw = s.u16("element id")?;
                            let len = s.u16("field length")?;
                            let pen = if raw & 0x8000 != 0 {
                                s.u32("enterprise number")?
                            } else {
                                0
                            };
                            fields.push(FieldSpec {
                                id: raw & 0x7fff,
                                len,
                                pen,
                            });
                        }
                        self.templates
                            .insert((ipfix::VERSION, m.domain, tid), fields);
                        m.templates += 1;
                    }
                }
                0..=255 => {} // options templates and reserved ids: not ours
                tid => {
                    let fields = self.templates.get(&(ipfix::VERSION, m.domain, tid)).ok_or(
                        DecodeError::UnknownTemplate {
                            id: tid,
                            domain: m.domain,
                        },
                    )?;
                    let min: usize = fields
                        .iter()
                        .map(|f| {
                            if f.len == ipfix::VARLEN {
                                1
                            } else {
                                usize::from(f.len)
                            }
                        })
                        .sum();
                    while s.left() >= min.max(1) {
                        let mut flow = DecodedFlow::default();
                        for f in fields {
                            let len = if f.len == ipfix::VARLEN {
                                match s.take(1, "variable length")?[0] {
                                    255 => usize::from(s.u16("long variable length")?),
                                    n => usize::from(n),
                                }
                            } else {
                                usize::from(f.len)
                            };
                            let v = s.take(len, "field value")?;
                            apply_ipfix(&mut flow, *f, v);
                        }
                        m.flows.push(flow);
                    }
                }
            }
        }
        Ok(m)
    }

    fn decode_v9(&mut self, mut c: Cursor<'_>) -> Result<DecodedMessage, DecodeError> {
        let count = c.u16("count")?;
        let uptime = c.u32("sysUptime")?;
        let secs = c.u32("unix_secs")?;
        let mut m = DecodedMessage {
            version: netflow9::VERSION,
            sequence: c.u32("sequence")?,
            domain: c.u32("source id")?,
            export_secs: secs,
            sys_uptime_ms: Some(uptime),
            count: Some(count),
            templates: 0,
            flows: Vec::new(),
        };
        // The collector's view of the boot time (what nfdump computes too).
        let boot = (u64::from(secs) * 1000).wrapping_sub(u64::from(uptime));
        while c.left() >= 4 {
            let (id, body) = set(&mut c)?;
            let mut s = Cursor { buf: body, pos: 0 };
            match id {
                netflow9::TEMPLATE_FLOWSET_ID => {
                    while s.left() >= 4 {
                        let tid = s.u16("template id")?;
                        let n = s.u16("field count")?;
                        let mut fields = Vec::with_capacity(usize::from(n));
                        for _ in 0..n {
                            let ty = s.u16("field type")?;
                            let len = s.u16("field length")?;
                            fields.push(FieldSpec {
                                id: ty,
                                len,
                                pen: 0,
                            });
                        }
                        self.templates
                            .insert((netflow9::VERSION, m.domain, tid), fields);
                        m.templates += 1;
                    }
                }
                1..=255 => {}
                tid => {
                    let fields = self
                        .templates
                        .get(&(netflow9::VERSION, m.domain, tid))
                        .ok_or(DecodeError::UnknownTemplate {
                            id: tid,
                            domain: m.domain,
                        })?;
                    let len: usize = fields.iter().map(|f| usize::from(f.len)).sum();
                    // What is left after the last record is padding.
                    while s.left() >= len.max(1) {
                        let mut flow = DecodedFlow::default();
                        let (mut first, mut last) = (None, None);
                        for f in fields {
                            let v = s.take(usize::from(f.len), "field value")?;
                            match f.id {
                                field::FIRST_SWITCHED => first = Some(uint(v)),
                                field::LAST_SWITCHED => last = Some(uint(v)),
                                field::ICMP_TYPE => flow.icmp_type_code = Some(uint(v) as u16),
                                _ => apply_ipfix(&mut flow, *f, v),
                            }
                        }
                        if let (Some(first), Some(last)) = (first, last) {
                            // A flow that straddles the 32-bit wrap starts in the previous epoch.
                            let start = if first > last {
                                (boot + first).wrapping_sub(1 << 32)
                            } else {
                                boot + first
                            };
                            flow.start_ms = Some(start);
                            flow.end_ms = Some(boot + last);
                        }
                        m.flows.push(flow);
                    }
                }
            }
        }
        Ok(m)
    }
}

/// The next set/FlowSet: its id and body.
fn set<'a>(c: &mut Cursor<'a>) -> Result<(u16, &'a [u8]), DecodeError> {
    let id = c.u16("set id")?;
    let len = usize::from(c.u16("set length")?);
    if len < 4 || len - 4 > c.left() {
        return Err(DecodeError::SetLength { id, len });
    }
    Ok((id, c.take(len - 4, "set body")?))
}

fn addr(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(v);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

/// Fills the flow field an element stands for (IPFIX element ids; v9 shares them for these fields).
fn apply_ipfix(flow: &mut DecodedFlow, f: FieldSpec, v: &[u8]) {
    let n = uint(v);
    if f.pen == PEN {
        let s = Some(String::from_utf8_lossy(v).into_owned());
        match f.id {
            gateway_ie::DROP_REASON => flow.drop_reason = s,
            gateway_ie::POLICY_RULE => flow.rule = s,
            gateway_ie::COMMUNITY_ID => flow.community_id = s,
            _ => {}
        }
        return;
    }
    if f.pen != 0 {
        return;
    }
    // Narrowing casts below are reduced-size encodings (RFC 7011 §6.2) read back.
    match f.id {
        ie::SOURCE_IPV4_ADDRESS | ie::SOURCE_IPV6_ADDRESS => flow.src = addr(v),
        ie::DESTINATION_IPV4_ADDRESS | ie::DESTINATION_IPV6_ADDRESS => flow.dst = addr(v),
        ie::PROTOCOL_IDENTIFIER => flow.proto = Some(n as u8),
        ie::SOURCE_TRANSPORT_PORT => flow.sport = Some(n as u16),
        ie::DESTINATION_TRANSPORT_PORT => flow.dport = Some(n as u16),
        ie::ICMP_TYPE_CODE_IPV4 | ie::ICMP_TYPE_CODE_IPV6 => flow.icmp_type_code = Some(n as u16),
        ie::OCTET_DELTA_COUNT => flow.octets = Some(n),
        ie::PACKET_DELTA_COUNT => flow.packets = Some(n),
        ie::FLOW_START_MILLISECONDS => flow.start_ms = Some(n),
        ie::FLOW_END_MILLISECONDS => flow.end_ms = Some(n),
        ie::TCP_CONTROL_BITS => flow.tcp_flags = Some(n as u16),
        ie::INGRESS_INTERFACE => flow.ingress = Some(n as u32),
        ie::EGRESS_INTERFACE => flow.egress = Some(n as u32),
        ie::FORWARDING_STATUS => flow.forwarding_status = Some(n as u8),
        ie::FIREWALL_EVENT => flow.firewall_event = Some(n as u8),
        ie::FLOW_END_REASON => flow.end_reason = Some(n as u8),
        _ => {}
    }
}
