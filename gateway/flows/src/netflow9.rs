//! NetFlow version 9 (RFC 3954) encoder: the same standard fields as the IPFIX templates, in v9's own
//! terms. No enterprise fields: v9 has no way to scope a field id to an enterprise, so the reason word,
//! the rule and the Community ID are IPFIX-only; the forwarding status (field 89) and the firewall
//! event (233, as Cisco's NSEL uses it) still tell forwarded from dropped.
//!
//! Times are FIRST_SWITCHED/LAST_SWITCHED in milliseconds of system uptime, as v9 requires. The
//! header's sysUptime is taken at the same instant as its whole-second unix_secs, so a collector that
//! derives the boot time as `unix_secs * 1000 − sysUptime` (nfdump does) gets it to the millisecond.
//! Uptime is a 32-bit millisecond counter that wraps every 49.7 days; collectors handle a flow that
//! straddles the wrap (first > last), not one exported more than 49.7 days after it ended.
//!
//! Sequence numbers count export packets (RFC 3954 §5.1), templates included.
use std::time::SystemTime;

use crate::{
    FlowRecord, fields,
    format::{self, Encoded, Layout, SET_HEADER_LEN, epoch_ms},
    ipfix::{Endpoints, endpoints},
};

pub const VERSION: u16 = 9;
pub const HEADER_LEN: usize = 20;
pub const TEMPLATE_FLOWSET_ID: u16 = 0;
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;

/// RFC 3954 field types (and the IANA numbers v9 collectors share for 89, 136 and 233).
pub mod field {
    pub const IN_BYTES: u16 = 1;
    pub const IN_PKTS: u16 = 2;
    pub const PROTOCOL: u16 = 4;
    pub const TCP_FLAGS: u16 = 6;
    pub const L4_SRC_PORT: u16 = 7;
    pub const IPV4_SRC_ADDR: u16 = 8;
    pub const INPUT_SNMP: u16 = 10;
    pub const L4_DST_PORT: u16 = 11;
    pub const IPV4_DST_ADDR: u16 = 12;
    pub const OUTPUT_SNMP: u16 = 14;
    pub const LAST_SWITCHED: u16 = 21;
    pub const FIRST_SWITCHED: u16 = 22;
    pub const IPV6_SRC_ADDR: u16 = 27;
    pub const IPV6_DST_ADDR: u16 = 28;
    /// `type * 256 + code`, for both ICMP and ICMPv6 (v9 has one field).
    pub const ICMP_TYPE: u16 = 32;
    pub const FORWARDING_STATUS: u16 = 89;
    pub const FLOW_END_REASON: u16 = 136;
    pub const FW_EVENT: u16 = 233;
}

const fn fields(src: (u16, u16), dst: (u16, u16)) -> [(u16, u16); 16] {
    use field::*;
    [
        src,
        dst,
        (PROTOCOL, 1),
        (L4_SRC_PORT, 2),
        (L4_DST_PORT, 2),
        (ICMP_TYPE, 2),
        (IN_BYTES, 8),
        (IN_PKTS, 8),
        (FIRST_SWITCHED, 4),
        (LAST_SWITCHED, 4),
        (TCP_FLAGS, 1),
        (INPUT_SNMP, 4),
        (OUTPUT_SNMP, 4),
        (FORWARDING_STATUS, 1),
        (FW_EVENT, 1),
        (FLOW_END_REASON, 1),
    ]
}

/// (field type, length) of both templates, in wire order.
pub const FIELDS_V4: [(u16, u16); 16] =
    fields((field::IPV4_SRC_ADDR, 4), (field::IPV4_DST_ADDR, 4));
pub const FIELDS_V6: [(u16, u16); 16] =
    fields((field::IPV6_SRC_ADDR, 16), (field::IPV6_DST_ADDR, 16));

const fn record_len(addr: usize) -> usize {
    2 * addr + 1 + 2 + 2 + 2 + 8 + 8 + 4 + 4 + 1 + 4 + 4 + 1 + 1 + 1
}
const TEMPLATE_FLOWSET_LEN: usize = SET_HEADER_LEN + 2 * (4 + 4 * 16);
/// The smallest message size accepted (the templates always fit).
pub const MIN_MESSAGE: usize = HEADER_LEN + TEMPLATE_FLOWSET_LEN;

/// The NetFlow v9 encoder of one source id.
#[derive(Clone, Debug)]
pub struct NetflowV9Encoder {
    source_id: u32,
    /// Export packets sent so far in this session (mod 2^32).
    sequence: u32,
    max_message: usize,
    boot_ms: u64,
}

impl NetflowV9Encoder {
    /// `boot_ms`: the Unix-epoch milliseconds uptime counts from — the system's boot
    /// ([`system_boot_ms`]), so every flow the kernel measured starts after it. `max_message` is
    /// clamped to [`MIN_MESSAGE`]..=65535.
    pub fn new(source_id: u32, max_message: usize, boot_ms: u64) -> NetflowV9Encoder {
        NetflowV9Encoder {
            source_id,
            sequence: 0,
            max_message: max_message.clamp(MIN_MESSAGE, usize::from(u16::MAX)),
            boot_ms,
        }
    }

    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    pub fn boot_ms(&self) -> u64 {
        self.boot_ms
    }

    pub fn restart_session(&mut self) {
        self.sequence = 0;
    }

    /// Appends a packet holding both templates.
    pub fn encode_templates(&mut self, now: SystemTime, out: &mut Encoded) {
        let header = self.header_fields(now);
        let sequence = self.sequence;
        self.sequence = self.sequence.wrapping_add(1);
        format::push_message(out, |buf| {
            let start = buf.len();
            buf.resize(start + HEADER_LEN, 0);
            buf.extend_from_slice(&TEMPLATE_FLOWSET_ID.to_be_bytes());
            buf.extend_from_slice(&(TEMPLATE_FLOWSET_LEN as u16).to_be_bytes());
            for (id, fields) in [(TEMPLATE_V4, &FIELDS_V4), (TEMPLATE_V6, &FIELDS_V6)] {
                buf.extend_from_slice(&id.to_be_bytes());
                buf.extend_from_slice(&(fields.len() as u16).to_be_bytes());
                for (ty, len) in fields {
                    buf.extend_from_slice(&ty.to_be_bytes());
                    buf.extend_from_slice(&len.to_be_bytes());
                }
            }
            write_header(&mut buf[start..], 2, header, sequence);
        });
    }

    /// Appends the packets carrying `records`, in order.
    pub fn encode(&mut self, records: &[FlowRecord], now: SystemTime, out: &mut Encoded) {
        let header = self.header_fields(now);
        let sequence = &mut self.sequence;
        let layout = V9 {
            boot_ms: self.boot_ms,
        };
        format::assemble(&layout, records, self.max_message, out, |msg, n| {
            write_header(msg, n, header, *sequence);
            *sequence = sequence.wrapping_add(1);
        });
    }

    /// (sysUptime, unix_secs, source id) for packets sent at `now`.
    fn header_fields(&self, now: SystemTime) -> (u32, u32, u32) {
        let secs = epoch_ms(now) / 1000;
        let uptime = uptime_ms(secs * 1000, self.boot_ms);
        (
            uptime,
            u32::try_from(secs).unwrap_or(u32::MAX),
            self.source_id,
        )
    }
}

/// Milliseconds of uptime at `t_ms` on the 32-bit wrapping counter.
fn uptime_ms(t_ms: u64, boot_ms: u64) -> u32 {
    // Truncation is the point: v9 uptime is a wrapping 32-bit counter.
    t_ms.wrapping_sub(boot_ms) as u32
}

fn write_header(msg: &mut [u8], count: u32, (uptime, secs, source): (u32, u32, u32), seq: u32) {
    let count = u16::try_from(count).unwrap_or(u16::MAX);
    msg[0..2].copy_from_slice(&VERSION.to_be_bytes());
    msg[2..4].copy_from_slice(&count.to_be_bytes());
    msg[4..8].copy_from_slice(&uptime.to_be_bytes());
    msg[8..12].copy_from_slice(&secs.to_be_bytes());
    msg[12..16].copy_from_slice(&seq.to_be_bytes());
    msg[16..20].copy_from_slice(&source.to_be_bytes());
}

/// The Unix-epoch milliseconds of the system's boot (now − /proc/uptime), or `now` if it cannot be
/// read (then flows that started before the exporter get wrapped uptime values).
pub fn system_boot_ms(now: SystemTime) -> u64 {
    let now_ms = epoch_ms(now);
    let uptime_ms = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .and_then(|s| s.parse::<f64>().ok())
        .map(|secs| (secs * 1000.0) as u64);
    match uptime_ms {
        Some(up) => now_ms.saturating_sub(up),
        None => {
            tracing::warn!("cannot read /proc/uptime: NetFlow v9 uptime counts from now");
            now_ms
        }
    }
}

/// v9 records depend on the boot time (IPFIX ones carry absolute times).
struct V9 {
    boot_ms: u64,
}

impl Layout for V9 {
    const HEADER_LEN: usize = HEADER_LEN;
    const PAD_SETS: bool = true;

    fn set_id(&self, r: &FlowRecord) -> u16 {
        match endpoints(r) {
            Endpoints::V4(..) => TEMPLATE_V4,
            Endpoints::V6(..) => TEMPLATE_V6,
        }
    }

    fn record_len(&self, r: &FlowRecord) -> usize {
        match endpoints(r) {
            Endpoints::V4(..) => record_len(4),
            Endpoints::V6(..) => record_len(16),
        }
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
        let boot = self.boot_ms;
        buf.push(r.proto);
        buf.extend_from_slice(&r.sport.to_be_bytes());
        buf.extend_from_slice(&r.dport.to_be_bytes());
        buf.extend_from_slice(&fields::icmp_type_code(r).to_be_bytes());
        buf.extend_from_slice(&r.octets.to_be_bytes());
        buf.extend_from_slice(&r.packets.to_be_bytes());
        buf.extend_from_slice(&uptime_ms(r.start_ms, boot).to_be_bytes());
        buf.extend_from_slice(&uptime_ms(r.end_ms, boot).to_be_bytes());
        buf.push(r.tcp_flags);
        buf.extend_from_slice(&r.ingress_ifindex.to_be_bytes());
        buf.extend_from_slice(&r.egress_ifindex.to_be_bytes());
        buf.push(fields::forwarding_status(r.reason));
        buf.push(fields::firewall_event(r.reason, r.end_reason));
        buf.push(r.end_reason.code());
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::{decode::Decoder, ipfix::UDP_MAX_MESSAGE, test_records::sample_records};

    #[test]
    fn round_trips_with_padding_counts_and_uptime_times() {
        let records = sample_records();
        let now = UNIX_EPOCH + Duration::from_millis(1_790_000_100_456);
        let boot = 1_789_000_000_000;
        let mut enc = NetflowV9Encoder::new(9, UDP_MAX_MESSAGE, boot);
        let mut out = Encoded::new();
        enc.encode_templates(now, &mut out);
        let many: Vec<_> = records.iter().cycle().take(100).cloned().collect();
        enc.encode(&many, now, &mut out);
        assert!(out.message_count() > 2);
        let mut dec = Decoder::new();
        let mut flows = Vec::new();
        for (i, m) in out.messages().enumerate() {
            assert!(m.bytes.len() <= UDP_MAX_MESSAGE);
            let msg = dec.decode(m.bytes).expect("decode");
            assert_eq!(msg.sequence, i as u32, "one per packet");
            assert_eq!(msg.domain, 9);
            assert_eq!(
                usize::from(msg.count.expect("count")),
                msg.flows.len() + msg.templates
            );
            // Collectors derive the boot time from the header: it must come out exact.
            let up = u64::from(msg.sys_uptime_ms.expect("uptime"));
            assert_eq!(u64::from(msg.export_secs) * 1000 - up, boot);
            let mut pos = HEADER_LEN;
            while pos < m.bytes.len() {
                let len = usize::from(u16::from_be_bytes([m.bytes[pos + 2], m.bytes[pos + 3]]));
                assert_eq!(len % 4, 0, "FlowSets are padded to 32 bits");
                pos += len;
            }
            flows.extend(msg.flows);
        }
        assert_eq!(flows.len(), 100);
        for (f, r) in flows.iter().zip(&many) {
            assert_eq!(f.src, Some(r.src));
            assert_eq!(f.dst, Some(r.dst));
            assert_eq!(f.proto, Some(r.proto));
            assert_eq!((f.sport, f.dport), (Some(r.sport), Some(r.dport)));
            assert_eq!(f.icmp_type_code, Some(fields::icmp_type_code(r)));
            assert_eq!((f.packets, f.octets), (Some(r.packets), Some(r.octets)));
            assert_eq!((f.start_ms, f.end_ms), (Some(r.start_ms), Some(r.end_ms)));
            assert_eq!(
                f.forwarding_status,
                Some(fields::forwarding_status(r.reason))
            );
            assert_eq!(
                f.firewall_event,
                Some(fields::firewall_event(r.reason, r.end_reason))
            );
            assert_eq!(
                (f.ingress, f.egress),
                (Some(r.ingress_ifindex), Some(r.egress_ifindex))
            );
            assert_eq!(f.drop_reason, None, "no enterprise fields in v9");
        }
    }

    #[test]
    fn a_flow_across_the_uptime_wrap_keeps_its_times() {
        let mut r = sample_records().remove(0);
        let boot = 1_700_000_000_000;
        let wrap = boot + (1u64 << 32);
        r.start_ms = wrap - 1500;
        r.end_ms = wrap + 2500;
        let now = UNIX_EPOCH + Duration::from_millis(wrap + 60_000);
        let mut enc = NetflowV9Encoder::new(1, UDP_MAX_MESSAGE, boot);
        let mut out = Encoded::new();
        enc.encode_templates(now, &mut out);
        enc.encode(std::slice::from_ref(&r), now, &mut out);
        let mut dec = Decoder::new();
        let flows: Vec<_> = out
            .messages()
            .flat_map(|m| dec.decode(m.bytes).expect("decode").flows)
            .collect();
        assert_eq!(flows[0].start_ms, Some(r.start_ms));
        assert_eq!(flows[0].end_ms, Some(r.end_ms));
    }
}
