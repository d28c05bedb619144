//! What a [`FlowRecord`] says in the standard fields both formats carry: forwarding status
//! (RFC 7270), firewall event and the ICMP type/code element.
//!
//! Only the standard code points are used, so any collector shows something sensible; the exact
//! reason word travels beside them in the IPFIX enterprise element `gatewayDropReason`.
use gateway_common::{Reason, Verdict};

use crate::{EndReason, FlowRecord};

/// forwardingStatus (IE 89, one octet): two status bits, six reason bits (RFC 7270 §4.12 and the
/// IANA "forwardingStatus" sub-registry).
pub mod forwarding_status {
    /// Forwarded, no reason given.
    pub const FORWARDED: u8 = 0b01 << 6;
    /// Dropped, no standard reason fits.
    pub const DROPPED: u8 = 0b10 << 6;
    /// Dropped: ACL deny.
    pub const DROPPED_ACL_DENY: u8 = DROPPED | 1;
    /// Dropped: bad header length.
    pub const DROPPED_BAD_HEADER_LENGTH: u8 = DROPPED | 8;
    /// Dropped: unicast reverse path forwarding (the source is not one that may enter this port).
    pub const DROPPED_RPF: u8 = DROPPED | 12;
}

/// firewallEvent (IE 233) values (IANA "firewallEvent" sub-registry).
pub mod firewall_event {
    /// The flow ended (idle timeout, FIN/RST, forced end, table full): this is its last record.
    pub const FLOW_DELETED: u8 = 2;
    /// The flow was dropped by the gateway.
    pub const FLOW_DENIED: u8 = 3;
    /// The flow is still active (active timeout): this record carries its counters since the last one.
    pub const FLOW_UPDATE: u8 = 5;
}

/// The forwarding status of a record: pass ⇒ forwarded; every drop ⇒ dropped with the closest
/// standard reason:
///
/// - `malformed` → bad header length (the data path drops truncated or inconsistent headers);
/// - `spoofed`, `dedicated_foreign` → RPF (the source address may not enter by that port);
/// - every other drop (blocklists, isolation, shared-system rules, cross-network, fail-closed
///   `no_policy`/`unknown_port`, `fragment`, `domain`) → ACL deny: the policy said no.
pub const fn forwarding_status(reason: Reason) -> u8 {
    use forwarding_status::*;
    match reason {
        Reason::Pass | Reason::NonIp => FORWARDED,
        Reason::Malformed => DROPPED_BAD_HEADER_LENGTH,
        Reason::Spoofed | Reason::DedicatedForeign => DROPPED_RPF,
        Reason::Blocklist
        | Reason::BlocklistIn
        | Reason::Domain
        | Reason::Isolated
        | Reason::NotAllowed
        | Reason::SharedViaInternet
        | Reason::CrossNetwork
        | Reason::NoPolicy
        | Reason::UnknownPort
        | Reason::Fragment => DROPPED_ACL_DENY,
    }
}

/// The firewall event of a record: dropped ⇒ flow denied; forwarded and still active (active
/// timeout) ⇒ flow update; forwarded and ended ⇒ flow deleted. "Flow created" (1) is never sent: the
/// gateway reports a flow when its record is due, never at its first packet.
pub const fn firewall_event(reason: Reason, end: EndReason) -> u8 {
    use firewall_event::*;
    match (reason.verdict(), end) {
        (Verdict::Drop, _) => FLOW_DENIED,
        (Verdict::Pass, EndReason::ActiveTimeout) => FLOW_UPDATE,
        (Verdict::Pass, _) => FLOW_DELETED,
    }
}

/// `type << 8 | code` for ICMP/ICMPv6 flows (icmpTypeCodeIPv4/IPv6, NetFlow v9 ICMP_TYPE), else 0.
pub fn icmp_type_code(record: &FlowRecord) -> u16 {
    record
        .icmp_type_code()
        .map_or(0, |(ty, code)| u16::from_be_bytes([ty, code]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_is_dropped_and_every_pass_forwarded() {
        for r in Reason::ALL {
            let status = forwarding_status(r) >> 6;
            match r.verdict() {
                Verdict::Pass => assert_eq!(status, 0b01, "{r:?}"),
                Verdict::Drop => assert_eq!(status, 0b10, "{r:?}"),
            }
            let ev = firewall_event(r, EndReason::IdleTimeout);
            assert_eq!(
                ev == firewall_event::FLOW_DENIED,
                r.verdict() == Verdict::Drop
            );
        }
        assert_eq!(forwarding_status(Reason::Malformed), 136);
        assert_eq!(forwarding_status(Reason::Blocklist), 129);
        assert_eq!(forwarding_status(Reason::Spoofed), 140);
        assert_eq!(
            firewall_event(Reason::Pass, EndReason::ActiveTimeout),
            firewall_event::FLOW_UPDATE
        );
    }
}
