//! Flow accounting: the key and value of [`crate::maps::FLOWS`] (an LRU hash), and the per-CPU
//! counters of [`crate::maps::FLOW_STATS`].
//!
//! One entry is one direction of a flow as seen on one ingress port. The kernel creates it on the
//! first packet that got a verdict and updates it on every later one; userspace reads, exports and
//! deletes entries. When the map is full the kernel evicts the least recently used entry: userspace
//! sees evictions as `created − present − deleted`.

/// Address family byte of [`FlowKey::family`] and [`crate::event::DropEvent::family`].
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Rule id of a packet that no feed or shared system decided (see [`FlowValue::rule`]).
pub const NO_RULE: u32 = u32::MAX;

/// One direction of a flow as seen on one ingress port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Ingress port.
    pub ifindex: u32,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// IP protocol (upper layer; for later fragments the fragment's).
    pub proto: u8,
    /// Wire order; 0 when the packet has no ports.
    pub sport: [u8; 2],
    /// Wire order; ICMP/ICMPv6: `[type, code]`; 0 when the packet has no ports.
    pub dport: [u8; 2],
    pub _pad: [u8; 2],
    /// IPv4: first 4 bytes, rest zero.
    pub src: [u8; 16],
    pub dst: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 44);

/// Counters and attribution of one [`FlowKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowValue {
    pub packets: u64,
    /// L2 frame bytes as XDP sees them.
    pub bytes: u64,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the first and the last packet.
    pub first_ns: u64,
    pub last_ns: u64,
    /// 0 = unknown (no FIB lookup was needed, or the route was local or unusable).
    pub egress_ifindex: u32,
    /// Feed id for `blocklist`/`blocklist_in`, system id for packets to a shared system, else
    /// [`NO_RULE`].
    pub rule: u32,
    /// OR of every TCP flag byte seen (low 8 bits used).
    pub tcp_flags: u32,
    /// [`crate::Reason`] of the last packet.
    pub reason: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<FlowValue>() == 48);

/// [`crate::maps::FLOW_STATS`] indices: per-CPU `u64` counters.
pub const FLOW_STAT_CREATED: u32 = 0;
/// Inserts that failed for another reason than a concurrent insert of the same key.
pub const FLOW_STAT_INSERT_FAILED: u32 = 1;
pub const FLOW_STATS_LEN: u32 = 2;

/// Bounds and default of the flow table capacity (`[datapath] flow_entries` of a hardware profile).
pub const FLOW_ENTRIES_MIN: u32 = 1024;
pub const FLOW_ENTRIES_MAX: u32 = 4_194_304;
pub const FLOW_ENTRIES_DEFAULT: u32 = 131_072;

#[cfg(feature = "user")]
pub(crate) use user::addr as user_addr;

#[cfg(feature = "user")]
mod user {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::{FAMILY_V4, FAMILY_V6, FlowKey, FlowValue};

    // SAFETY: FlowKey is #[repr(C)], Copy, made only of integers and byte arrays, every padding byte
    // an explicit field (size asserted), so any bit pattern is a valid value.
    unsafe impl aya::Pod for FlowKey {}
    // SAFETY: as for FlowKey.
    unsafe impl aya::Pod for FlowValue {}

    /// The address of a `[u8; 16]` field of the given family.
    pub(crate) fn addr(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
        match family {
            FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            ))),
            FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
            _ => None,
        }
    }

    /// The `[u8; 16]` field form of an address (IPv4 in the first 4 bytes).
    fn addr_bytes(a: IpAddr) -> (u8, [u8; 16]) {
        match a {
            IpAddr::V4(v4) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v4.octets());
                (FAMILY_V4, b)
            }
            IpAddr::V6(v6) => (FAMILY_V6, v6.octets()),
        }
    }

    impl FlowKey {
        /// A key as the kernel builds it; ports in host order (ICMP: `dport = type << 8 | code`).
        pub fn new(
            ifindex: u32,
            proto: u8,
            src: IpAddr,
            sport: u16,
            dst: IpAddr,
            dport: u16,
        ) -> FlowKey {
            let (family, src) = addr_bytes(src);
            let (_, dst) = addr_bytes(dst);
            FlowKey {
                ifindex,
                family,
                proto,
                sport: sport.to_be_bytes(),
                dport: dport.to_be_bytes(),
                _pad: [0; 2],
                src,
                dst,
            }
        }

        pub fn src_addr(&self) -> Option<IpAddr> {
            addr(self.family, &self.src)
        }

        pub fn dst_addr(&self) -> Option<IpAddr> {
            addr(self.family, &self.dst)
        }

        /// Source port, host order.
        pub fn sport(&self) -> u16 {
            u16::from_be_bytes(self.sport)
        }

        /// Destination port, host order; for ICMP/ICMPv6 `type << 8 | code` (as IPFIX and Community
        /// ID expect the ICMP type and code).
        pub fn dport(&self) -> u16 {
            u16::from_be_bytes(self.dport)
        }
    }

    impl FlowValue {
        /// The reason of the last packet, if the byte names one.
        pub fn reason(&self) -> Option<crate::Reason> {
            crate::Reason::from_index(u32::from(self.reason))
        }
    }

    #[cfg(test)]
    mod tests {
        use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

        use super::*;

        #[test]
        fn key_round_trips_addresses_and_ports() {
            let src: IpAddr = "192.0.2.1"
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            let dst: IpAddr = "2001:db8::1"
                .parse()
                .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
            let k = FlowKey::new(3, 6, src, 40000, src, 443);
            assert_eq!(k.family, FAMILY_V4);
            assert_eq!(k.src[4..], [0u8; 12]);
            assert_eq!((k.src_addr(), k.dst_addr()), (Some(src), Some(src)));
            assert_eq!((k.sport(), k.dport()), (40000, 443));
            assert_eq!(k.sport, [0x9c, 0x40]);
            let k6 = FlowKey::new(3, 58, dst, 0, dst, 0x8000);
            assert_eq!(k6.family, FAMILY_V6);
            assert_eq!(k6.dst_addr(), Some(dst));
            assert_eq!(k6.dport, [128, 0]);
        }
    }
}
