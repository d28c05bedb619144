//! Kernel records → what the SOC receives: flow reports become IPFIX/NetFlow records, drop events
//! become alerts. Names come from [`Names`], times from [`Clock`].
use gateway_alerts::Alert;
use gateway_common::{
    Reason,
    event::{DnsDetail, DropEvent},
};
use gateway_flows::FlowRecord;

use super::{clock::Clock, flow_sweep::Report, names::Names};

/// A flow record, or `None` for a key that holds no address (never written by the data path).
pub fn flow_record(report: &Report, names: &Names, clock: &Clock) -> Option<FlowRecord> {
    let key = &report.key;
    let (src, dst) = (key.src_addr()?, key.dst_addr()?);
    let reason = report.value.reason()?;
    let mut record = FlowRecord {
        src,
        dst,
        proto: key.proto,
        sport: key.sport(),
        dport: key.dport(),
        ingress_ifindex: key.ifindex,
        egress_ifindex: report.value.egress_ifindex,
        packets: report.packets,
        octets: report.bytes,
        start_ms: clock.unix_ms(report.start_ns),
        end_ms: clock.unix_ms(report.end_ns),
        tcp_flags: report.value.tcp_flags as u8,
        reason,
        rule: names.rule(reason, report.value.rule),
        end_reason: report.end,
        community_id: String::new(),
    };
    record.community_id = record.compute_community_id();
    Some(record)
}

/// Who and what an alert is about beyond the event itself.
#[derive(Clone, Debug)]
pub struct AlertContext<'a> {
    pub host: &'a str,
    pub policy: &'a str,
    pub generation: u64,
}

/// An alert, or `None` for a record whose reason or role byte is not one we know (a data path
/// newer than this daemon); the caller counts those.
pub fn alert(
    ev: &DropEvent,
    dns: Option<&DnsDetail>,
    names: &Names,
    clock: &Clock,
    ctx: &AlertContext<'_>,
) -> Option<Alert> {
    let reason = ev.reason()?;
    let role = ev.role()?;
    let (src, dst) = (ev.src_addr(), ev.dst_addr());
    let community_id = match (src, dst) {
        (Some(s), Some(d)) => Some(gateway_flows::community_id(
            s,
            d,
            ev.proto,
            ev.sport(),
            ev.dport(),
            0,
        )),
        _ => None,
    };
    Some(Alert {
        time: clock.wall(ev.ts_ns),
        host: ctx.host.to_owned(),
        reason,
        role,
        ingress: names
            .port(ev.ifindex)
            .map_or_else(|| format!("ifindex {}", ev.ifindex), str::to_owned),
        egress: names.port(ev.egress_ifindex).map(str::to_owned),
        family: ev.family,
        src,
        dst,
        proto: ev.proto,
        sport: ev.sport(),
        dport: ev.dport(),
        bytes: ev.bytes,
        tcp_flags: ev.tcp_flags,
        rule: names.rule(reason, ev.rule),
        community_id,
        suppressed: ev.suppressed,
        policy: ctx.policy.to_owned(),
        generation: ctx.generation,
        // A name longer than the event carries shows as its hash: still something to grep for.
        domain: dns.filter(|_| reason == Reason::Domain).map(|d| {
            d.name()
                .unwrap_or_else(|| format!("(name of {} bytes, cut)", d.name_len))
        }),
        domain_match: dns.filter(|_| reason == Reason::Domain).map(|d| {
            d.matched()
                .unwrap_or_else(|| format!("hash {:016x}", d.matched_hash))
        }),
        domain_via: dns
            .filter(|_| reason == Reason::Domain)
            .and_then(|d| d.via_word())
            .map(str::to_owned),
    })
}
