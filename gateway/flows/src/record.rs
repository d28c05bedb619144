//! The flow record the daemon hands to the exporters (the shape is fixed by the telemetry contract).
use std::net::IpAddr;

use gateway_common::Reason;

/// Why the metering process ended (or reported) a flow: the values of IPFIX IE 136 `flowEndReason`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// No packet for the idle timeout.
    IdleTimeout = 1,
    /// The flow is still active; this record carries the deltas since its last report.
    ActiveTimeout = 2,
    /// FIN or RST seen.
    EndOfFlow = 3,
    /// The gateway ended it (policy change, shutdown).
    ForcedEnd = 4,
    /// The flow table was full.
    LackOfResources = 5,
}

impl EndReason {
    /// The IPFIX code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The reason with this IPFIX code, if any.
    pub const fn from_code(code: u8) -> Option<EndReason> {
        match code {
            1 => Some(EndReason::IdleTimeout),
            2 => Some(EndReason::ActiveTimeout),
            3 => Some(EndReason::EndOfFlow),
            4 => Some(EndReason::ForcedEnd),
            5 => Some(EndReason::LackOfResources),
            _ => None,
        }
    }
}

/// One direction of one flow on one ingress port, with the counters since its last export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Host order. 0 when the protocol has no ports.
    pub sport: u16,
    /// Host order. ICMP and ICMPv6: `type << 8 | code` (and `sport` is 0).
    pub dport: u16,
    /// 0 = unknown.
    pub ingress_ifindex: u32,
    /// 0 = unknown (no route lookup was needed, or the packet was dropped before it).
    pub egress_ifindex: u32,
    /// Delta since the last export of this flow.
    pub packets: u64,
    /// L2 frame bytes, delta since the last export of this flow.
    pub octets: u64,
    /// Unix epoch milliseconds of the first packet counted in this record.
    pub start_ms: u64,
    /// Unix epoch milliseconds of the last packet counted in this record.
    pub end_ms: u64,
    /// OR of the TCP flags seen.
    pub tcp_flags: u8,
    /// `Reason::Pass` (and `NonIp`) ⇒ forwarded, anything else ⇒ dropped.
    pub reason: Reason,
    /// The rule that decided, e.g. `feed:spamhaus-drop`, `system:npdb`, or the reason word.
    pub rule: String,
    pub end_reason: EndReason,
    /// Community ID v1 with seed 0 (`1:…`), see [`crate::community_id()`].
    pub community_id: String,
}

impl FlowRecord {
    /// ICMP type and code when this is an ICMP flow of its family (ICMP over IPv4, ICMPv6 over IPv6).
    pub fn icmp_type_code(&self) -> Option<(u8, u8)> {
        let icmp = match self.src {
            IpAddr::V4(_) => self.proto == crate::community_id::PROTO_ICMP,
            IpAddr::V6(_) => self.proto == crate::community_id::PROTO_ICMPV6,
        };
        icmp.then(|| {
            let [ty, code] = self.dport.to_be_bytes();
            (ty, code)
        })
    }

    /// The Community ID of this record's tuple (seed 0), for filling [`FlowRecord::community_id`].
    pub fn compute_community_id(&self) -> String {
        crate::community_id(self.src, self.dst, self.proto, self.sport, self.dport, 0)
    }
}
