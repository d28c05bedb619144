//! Records for the unit tests: every family, TCP/UDP/ICMP/ICMPv6/other, forwarded and dropped.
use std::net::IpAddr;

use gateway_common::Reason;

use crate::{EndReason, FlowRecord};

fn record(src: &str, dst: &str, proto: u8, sport: u16, dport: u16, reason: Reason) -> FlowRecord {
    let src: IpAddr = src.parse().expect("test address");
    let dst: IpAddr = dst.parse().expect("test address");
    let mut r = FlowRecord {
        src,
        dst,
        proto,
        sport,
        dport,
        ingress_ifindex: 3,
        egress_ifindex: if reason == Reason::Pass { 4 } else { 0 },
        packets: 10,
        octets: 1500,
        start_ms: 1_790_000_000_123,
        end_ms: 1_790_000_004_567,
        tcp_flags: if proto == 6 { 0x1b } else { 0 },
        reason,
        rule: match reason {
            Reason::Blocklist => "feed:spamhaus-drop".to_owned(),
            Reason::Pass => "system:npdb".to_owned(),
            r => r.as_str().to_owned(),
        },
        end_reason: EndReason::IdleTimeout,
        community_id: String::new(),
    };
    r.community_id = r.compute_community_id();
    r
}

pub(crate) fn tcp_v4() -> FlowRecord {
    record("10.10.0.2", "10.200.1.10", 6, 40000, 443, Reason::Pass)
}

pub(crate) fn sample_records() -> Vec<FlowRecord> {
    let mut v = vec![
        tcp_v4(),
        record("10.10.0.2", "203.0.113.66", 6, 40001, 80, Reason::Blocklist),
        record("fd00:10::2", "2001:db8:200::10", 17, 5353, 53, Reason::Pass),
        record("10.10.0.2", "198.51.100.80", 1, 0, 0x0800, Reason::Pass),
        record(
            "fd00:10::2",
            "2001:db8::66",
            58,
            0,
            0x8000,
            Reason::Blocklist,
        ),
        record("198.51.100.9", "10.10.0.2", 17, 123, 123, Reason::Spoofed),
        record("10.10.0.3", "203.0.113.10", 47, 0, 0, Reason::Isolated),
        record(
            "2001:db8::1",
            "fd00:10::2",
            6,
            443,
            50000,
            Reason::Malformed,
        ),
    ];
    v[2].end_reason = EndReason::ActiveTimeout;
    v[3].end_reason = EndReason::EndOfFlow;
    v[4].packets = u64::from(u32::MAX) + 7;
    v[4].octets = u64::MAX - 1;
    v
}
