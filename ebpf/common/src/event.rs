//! Events the data path sends to userspace through the ring buffer [`crate::maps::EVENTS`], their
//! rate limit ([`crate::maps::ALERT_LIMIT`]) and counters ([`crate::maps::EVENT_STATS`]).
//!
//! Every dropped packet is offered as a [`DropEvent`]. Per (family, reason, source address) at most
//! `Settings::alert_burst` events leave per `Settings::alert_window_ms`; the rest are counted as
//! suppressed, in the key's state (carried by the next event sent for that key) and in
//! `EVENT_STATS`.
//!
//! When one source's drops run on several CPUs at once the per-key state is approximate: the
//! program has only locked add (no compare-and-swap or fetch on the BPF cpu it is built for), so
//! CPUs admitting at the same instant may send a few events more than the burst, and a drop
//! suppressed in the instant another CPU hands the key's count to its event may be left out of
//! that count. `EVENT_STATS` (per CPU) is exact.

/// [`DropEvent::kind`] of a dropped packet. Every event starts with `ts_ns: u64, kind: u8`.
pub const EVENT_DROP: u8 = 1;
/// [`DropEvent::kind`] of a DNS query dropped (or answered in place) as `domain`: the record is a
/// [`DnsDropEvent`], the drop event followed by the query name.
pub const EVENT_DROP_DNS: u8 = 2;

/// Bytes of the query name (wire form) a [`DnsDetail`] carries: enough for nearly every real name
/// while the record stays at 200 bytes. A longer name is cut; `name_len` says so.
pub const DNS_EVENT_NAME: usize = 112;

/// A dropped packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// [`EVENT_DROP`].
    pub kind: u8,
    /// A [`crate::Reason`] discriminant.
    pub reason: u8,
    /// 4, 6, or 0 = not IP / malformed (then addresses, ports and protocol are zero).
    pub family: u8,
    pub proto: u8,
    pub ifindex: u32,
    /// 0 = unknown (no FIB lookup was needed, or the route was local or unusable).
    pub egress_ifindex: u32,
    /// As [`crate::flow::FlowValue::rule`].
    pub rule: u32,
    /// Events of this (source, reason) suppressed since the last one sent.
    pub suppressed: u32,
    /// Frame length.
    pub bytes: u32,
    pub tcp_flags: u8,
    /// The stats row of the ingress port: a [`crate::Role`] discriminant or
    /// [`crate::Role::UNKNOWN_ROW`].
    pub role: u8,
    pub _pad: [u8; 2],
    /// Wire order, as in [`crate::flow::FlowKey`] (ICMP: `dport = [type, code]`).
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub src: [u8; 16],
    pub dst: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<DropEvent>() == 72);

/// What a `domain` drop event adds: the query and the listed suffix that blocked it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsDetail {
    /// `crate::dname` hash of the listed suffix that decided (a `DOMAINS` key).
    pub matched_hash: u64,
    /// QTYPE of the question, host order.
    pub qtype: u16,
    /// Wire length of the query name with its root byte (≤ 255).
    pub name_len: u8,
    /// Offset in the name of the listed suffix that matched (0: the whole name).
    pub match_off: u8,
    /// How the query was dealt with: one of `DNS_DROPPED`, `DNS_NXDOMAIN`, `DNS_SINKHOLE`.
    pub answer: u8,
    /// Which check found the name: one of `DNS_VIA_QUERY`, `DNS_VIA_SNI`, `DNS_VIA_RESPONSE`.
    pub via: u8,
    pub _pad: [u8; 2],
    /// The first `min(name_len, DNS_EVENT_NAME)` bytes of the name in wire form (length-prefixed
    /// labels); the bytes after that are unspecified.
    pub name: [u8; DNS_EVENT_NAME],
}
const _: () = assert!(core::mem::size_of::<DnsDetail>() == 128);

/// [`DnsDetail::answer`]: dropped silently (action `drop`, or a frame not answered: IP options,
/// extension headers, fragments, no room).
pub const DNS_DROPPED: u8 = 0;
/// Answered in place with NXDOMAIN.
pub const DNS_NXDOMAIN: u8 = 1;
/// Answered in place with the sinkhole address.
pub const DNS_SINKHOLE: u8 = 2;

/// [`DnsDetail::via`]: a DNS query (lan step 2.2a); the name is its question.
pub const DNS_VIA_QUERY: u8 = 0;
/// A TLS ClientHello (lan step 2.2b); the name is its server_name, QTYPE is 0.
pub const DNS_VIA_SNI: u8 = 1;
/// A DNS response for a blocked name (every role, last step); the name is its question.
pub const DNS_VIA_RESPONSE: u8 = 2;
/// A packet to a learnt address (lan step 2.2c): it carries no name, so its drop event is a plain
/// [`DropEvent`]; the data path's own marker, never in a [`DnsDetail`].
pub const DNS_VIA_LEARNT: u8 = 3;

/// A record of kind [`EVENT_DROP_DNS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsDropEvent {
    pub drop: DropEvent,
    pub dns: DnsDetail,
}
const _: () = assert!(core::mem::size_of::<DnsDropEvent>() == 200);

/// Key of the rate limit: the source of the drops and why they were dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AlertKey {
    pub family: u8,
    pub reason: u8,
    pub _pad: [u8; 2],
    pub src: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<AlertKey>() == 20);

/// Rate-limit state of one [`AlertKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AlertState {
    /// Start of the current window (`bpf_ktime_get_ns`).
    pub window_start_ns: u64,
    /// Events sent in the current window.
    pub count: u64,
    /// Events suppressed since the last one sent.
    pub suppressed: u64,
}
const _: () = assert!(core::mem::size_of::<AlertState>() == 24);

/// [`crate::maps::EVENT_STATS`] indices: per-CPU `u64` counters.
pub const EVENT_STAT_EMITTED: u32 = 0;
pub const EVENT_STAT_SUPPRESSED: u32 = 1;
/// The ring buffer was full (userspace did not keep up).
pub const EVENT_STAT_LOST: u32 = 2;
pub const EVENT_STATS_LEN: u32 = 3;

#[cfg(feature = "user")]
mod user {
    use core::net::IpAddr;
    use std::{format, string::String};

    use super::{
        AlertKey, AlertState, DNS_EVENT_NAME, DNS_VIA_QUERY, DNS_VIA_RESPONSE, DNS_VIA_SNI,
        DnsDetail, DnsDropEvent, DropEvent, EVENT_DROP, EVENT_DROP_DNS,
    };

    // SAFETY: #[repr(C)], Copy, made only of integers and byte arrays with every padding byte an
    // explicit field (size asserted above), so any bit pattern is a valid value.
    unsafe impl aya::Pod for DropEvent {}
    // SAFETY: as for DropEvent.
    unsafe impl aya::Pod for AlertKey {}
    // SAFETY: as for DropEvent.
    unsafe impl aya::Pod for AlertState {}
    // SAFETY: as for DropEvent.
    unsafe impl aya::Pod for DnsDetail {}
    // SAFETY: as for DropEvent.
    unsafe impl aya::Pod for DnsDropEvent {}

    impl DnsDetail {
        /// The DNS part of a ring-buffer record of kind [`EVENT_DROP_DNS`]; `None` for other
        /// records.
        pub fn from_bytes(record: &[u8]) -> Option<DnsDetail> {
            if record.len() < core::mem::size_of::<DnsDropEvent>() || record[8] != EVENT_DROP_DNS {
                return None;
            }
            // SAFETY: the record holds a whole DnsDropEvent (checked above), plain data valid for
            // any bit pattern; read_unaligned makes no alignment assumption.
            let ev = unsafe { core::ptr::read_unaligned(record.as_ptr().cast::<DnsDropEvent>()) };
            Some(ev.dns)
        }

        /// The name's labels from `offset` on, as text (`None` where the carried bytes end
        /// before the name does, or the labels do not walk). Bytes outside printable ASCII and
        /// the dot are escaped as `\DDD` (RFC 1035 presentation form) so a crafted name cannot
        /// forge log lines.
        pub fn name_from(&self, offset: usize) -> Option<String> {
            let carried = usize::from(self.name_len).min(DNS_EVENT_NAME);
            let mut out = String::new();
            let mut at = offset;
            loop {
                let len = usize::from(*self.name.get(at).filter(|_| at < carried)?);
                if len == 0 {
                    break;
                }
                let label = self
                    .name
                    .get(at + 1..at + 1 + len)
                    .filter(|_| at + 1 + len <= carried)?;
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                        out.push(char::from(b));
                    } else {
                        out.push_str(&format!("\\{b:03}"));
                    }
                }
                at += 1 + len;
            }
            Some(if out.is_empty() { ".".into() } else { out })
        }

        /// [`DnsDetail::via`] as the word alerts carry (`domain_via`); `None` for a value this
        /// daemon does not know (a newer data path).
        pub fn via_word(&self) -> Option<&'static str> {
            match self.via {
                DNS_VIA_QUERY => Some("dns_query"),
                DNS_VIA_SNI => Some("tls_sni"),
                DNS_VIA_RESPONSE => Some("dns_response"),
                _ => None,
            }
        }

        /// The query name, or `None` when it was longer than the record carries.
        pub fn name(&self) -> Option<String> {
            self.name_from(0)
        }

        /// The listed suffix that matched, `*.`-prefixed when it matched a name below it.
        pub fn matched(&self) -> Option<String> {
            let suffix = self.name_from(usize::from(self.match_off))?;
            Some(if self.match_off == 0 {
                suffix
            } else {
                format!("*.{suffix}")
            })
        }
    }

    impl DropEvent {
        /// Reads an event from a ring-buffer record (of kind [`EVENT_DROP`], or the head of an
        /// [`EVENT_DROP_DNS`] record); `None` if the record is of another kind or too short.
        pub fn from_bytes(record: &[u8]) -> Option<DropEvent> {
            if record.len() < core::mem::size_of::<DropEvent>()
                || (record[8] != EVENT_DROP && record[8] != EVENT_DROP_DNS)
            {
                return None;
            }
            // SAFETY: the record holds at least size_of::<DropEvent>() bytes (checked above) and
            // DropEvent is plain data valid for any bit pattern; read_unaligned makes no alignment
            // assumption about the record.
            Some(unsafe { core::ptr::read_unaligned(record.as_ptr().cast::<DropEvent>()) })
        }

        pub fn reason(&self) -> Option<crate::Reason> {
            crate::Reason::from_index(u32::from(self.reason))
        }

        pub fn role(&self) -> Option<crate::Role> {
            crate::Role::from_u32(u32::from(self.role))
        }

        pub fn src_addr(&self) -> Option<IpAddr> {
            crate::flow::user_addr(self.family, &self.src)
        }

        pub fn dst_addr(&self) -> Option<IpAddr> {
            crate::flow::user_addr(self.family, &self.dst)
        }

        /// Source port, host order (0 without ports).
        pub fn sport(&self) -> u16 {
            u16::from_be_bytes(self.sport)
        }

        /// Destination port, host order; ICMP/ICMPv6 `type << 8 | code`.
        pub fn dport(&self) -> u16 {
            u16::from_be_bytes(self.dport)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn records_read_back_and_other_kinds_are_refused() {
            let ev = DropEvent {
                ts_ns: 7,
                kind: EVENT_DROP,
                reason: crate::Reason::Spoofed as u8,
                family: 6,
                proto: 17,
                ifindex: 3,
                egress_ifindex: 4,
                rule: crate::flow::NO_RULE,
                suppressed: 9,
                bytes: 90,
                tcp_flags: 0,
                role: crate::Role::Internet as u8,
                _pad: [0; 2],
                sport: [0, 53],
                dport: [0x9c, 0x40],
                src: [0xfd; 16],
                dst: [1; 16],
            };
            // SAFETY: DropEvent is plain data of exactly this many bytes.
            let bytes: [u8; core::mem::size_of::<DropEvent>()] =
                unsafe { core::mem::transmute(ev) };
            assert_eq!(DropEvent::from_bytes(&bytes), Some(ev));
            assert_eq!(ev.reason(), Some(crate::Reason::Spoofed));
            assert_eq!(ev.role(), Some(crate::Role::Internet));
            assert_eq!((ev.sport(), ev.dport()), (53, 40000));
            assert_eq!(
                ev.src_addr(),
                Some(IpAddr::V6(core::net::Ipv6Addr::from([0xfd; 16])))
            );
            assert_eq!(DropEvent::from_bytes(&bytes[..71]), None);
            let mut other = bytes;
            other[8] = 3;
            assert_eq!(DropEvent::from_bytes(&other), None);
            // A plain drop record has no DNS part.
            assert_eq!(DnsDetail::from_bytes(&bytes), None);
        }

        fn dns_record(name: &[u8], match_off: u8) -> DnsDropEvent {
            let mut n = [0u8; DNS_EVENT_NAME];
            let len = name.len().min(DNS_EVENT_NAME);
            n[..len].copy_from_slice(&name[..len]);
            DnsDropEvent {
                drop: DropEvent {
                    ts_ns: 1,
                    kind: EVENT_DROP_DNS,
                    reason: crate::Reason::Domain as u8,
                    family: 4,
                    proto: 17,
                    ifindex: 2,
                    egress_ifindex: 0,
                    rule: 0,
                    suppressed: 0,
                    bytes: 80,
                    tcp_flags: 0,
                    role: crate::Role::Lan as u8,
                    _pad: [0; 2],
                    sport: [0x9c, 0x40],
                    dport: [0, 53],
                    src: [0; 16],
                    dst: [0; 16],
                },
                dns: DnsDetail {
                    matched_hash: 0x1234,
                    qtype: 1,
                    name_len: name.len() as u8,
                    match_off,
                    answer: super::super::DNS_NXDOMAIN,
                    via: 0,
                    _pad: [0; 2],
                    name: n,
                },
            }
        }

        fn bytes_of(ev: DnsDropEvent) -> [u8; core::mem::size_of::<DnsDropEvent>()] {
            // SAFETY: DnsDropEvent is plain data of exactly this many bytes.
            unsafe { core::mem::transmute(ev) }
        }

        #[test]
        fn dns_records_name_the_query_and_the_match() {
            let rec = bytes_of(dns_record(b"\x03www\x04evil\x07example\x00", 4));
            let ev = DropEvent::from_bytes(&rec).expect("head");
            assert_eq!(ev.reason(), Some(crate::Reason::Domain));
            let d = DnsDetail::from_bytes(&rec).expect("dns part");
            assert_eq!(d.name().as_deref(), Some("www.evil.example"));
            assert_eq!(d.matched().as_deref(), Some("*.evil.example"));
            assert_eq!(DnsDetail::from_bytes(&rec[..199]), None);

            let exact = DnsDetail::from_bytes(&bytes_of(dns_record(b"\x04evil\x07example\x00", 0)))
                .expect("dns part");
            assert_eq!(exact.matched().as_deref(), Some("evil.example"));

            // Bytes a log line must not carry raw are escaped.
            let odd = DnsDetail::from_bytes(&bytes_of(dns_record(b"\x03a\nb\x03c.d\x00", 0)))
                .expect("dns part");
            assert_eq!(odd.name().as_deref(), Some("a\\010b.c\\046d"));

            // A name longer than the record carries cannot be shown in full.
            let mut long = std::vec::Vec::new();
            for _ in 0..4 {
                long.push(40u8);
                long.extend_from_slice(&[b'x'; 40]);
            }
            long.push(0);
            let cut = DnsDetail::from_bytes(&bytes_of(dns_record(&long, 123))).expect("dns part");
            assert_eq!(cut.name(), None);
            assert_eq!(cut.matched(), None);
        }
    }
}
