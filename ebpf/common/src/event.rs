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

    use super::{AlertKey, AlertState, DropEvent, EVENT_DROP};

    // SAFETY: #[repr(C)], Copy, made only of integers and byte arrays with every padding byte an
    // explicit field (size asserted above), so any bit pattern is a valid value.
    unsafe impl aya::Pod for DropEvent {}
    // SAFETY: as for DropEvent.
    unsafe impl aya::Pod for AlertKey {}
    // SAFETY: as for DropEvent.
    unsafe impl aya::Pod for AlertState {}

    impl DropEvent {
        /// Reads an event from a ring-buffer record; `None` if the record is of another kind or
        /// too short.
        pub fn from_bytes(record: &[u8]) -> Option<DropEvent> {
            if record.len() < core::mem::size_of::<DropEvent>() || record[8] != EVENT_DROP {
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
            other[8] = 2;
            assert_eq!(DropEvent::from_bytes(&other), None);
        }
    }
}
