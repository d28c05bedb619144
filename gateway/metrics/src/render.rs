//! From a [`Snapshot`] to the Prometheus text exposition: a custom `prometheus` collector turns the
//! snapshot the daemon hands over at scrape time into metric families; a registry gathers (and
//! sorts) them; the text encoder writes them out.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use gateway_common::{Reason, Role, reason::Verdict};
use prometheus::{
    Registry, TextEncoder,
    core::{Collector, Desc},
    proto::{self, LabelPair, Metric, MetricFamily, MetricType},
};

use crate::{
    MetricsError,
    catalogue::{self as c, FAMILIES, Family, Kind},
    snapshot::{Snapshot, Traffic},
};

/// The daemon's callback: gathers a fresh snapshot. Called once per scrape, on the runtime
/// thread that serves the request, so it must be quick (reading maps and counters, no I/O waits).
pub type SnapshotSource = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// The content type of [`Exposition::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Samples of one family, built in catalogue label order.
struct FamilyBuilder {
    family: &'static Family,
    metrics: Vec<Metric>,
}

impl FamilyBuilder {
    fn new(family: &'static Family) -> Self {
        FamilyBuilder {
            family,
            metrics: Vec::new(),
        }
    }

    fn sample(&mut self, label_values: &[&str], value: f64) {
        debug_assert_eq!(
            label_values.len(),
            self.family.labels.len(),
            "{}: label values do not match the catalogue",
            self.family.name
        );
        let labels = self
            .family
            .labels
            .iter()
            .zip(label_values)
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect();
        let mut metric = Metric::from_label(labels);
        match self.family.kind {
            Kind::Counter => {
                let mut counter = proto::Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            }
            Kind::Gauge => {
                let mut gauge = proto::Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
        }
        self.metrics.push(metric);
    }

    fn finish(self) -> MetricFamily {
        let mut family = MetricFamily::default();
        family.set_name(self.family.name.to_owned());
        family.set_help(self.family.help.to_owned());
        family.set_field_type(match self.family.kind {
            Kind::Counter => MetricType::COUNTER,
            Kind::Gauge => MetricType::GAUGE,
        });
        family.set_metric(self.metrics);
        family
    }
}

/// Label and metric values are f64 in the exposition format; counters past 2^53 lose their last
/// digits, which no rate() notices.
fn num(v: u64) -> f64 {
    v as f64
}

fn flag(v: bool) -> f64 {
    if v { 1.0 } else { 0.0 }
}

fn role_label(role: Option<Role>) -> &'static str {
    match role {
        Some(role) => role.as_str(),
        None => Role::row_name(Role::UNKNOWN_ROW),
    }
}

fn verdict_label(reason: Reason) -> &'static str {
    match reason.verdict() {
        Verdict::Pass => "pass",
        Verdict::Drop => "drop",
    }
}

/// Every family of the catalogue for this snapshot, in catalogue order. A family with no samples
/// (no collectors configured, no policy yet) is returned empty; the registry leaves it out.
pub fn families(s: &Snapshot) -> Vec<MetricFamily> {
    let mut out = Vec::with_capacity(FAMILIES.len());

    let mut packets = FamilyBuilder::new(&c::PACKETS);
    let mut bytes = FamilyBuilder::new(&c::PACKET_BYTES);
    for (role, reason, traffic) in s.verdicts.iter() {
        // Packets on a port without a role can only be `unknown_port`; the other 14 cells of that
        // row would be zeros forever, so they are shown only if one ever is not.
        if role.is_none() && reason != Reason::UnknownPort && traffic == Traffic::default() {
            continue;
        }
        let labels = [role_label(role), reason.as_str(), verdict_label(reason)];
        packets.sample(&labels, num(traffic.packets));
        bytes.sample(&labels, num(traffic.bytes));
    }
    out.extend([packets.finish(), bytes.finish()]);

    let table = &s.flow_table;
    for (family, value) in [
        (&c::FLOW_TABLE_ENTRIES, table.entries),
        (&c::FLOW_TABLE_CAPACITY, table.capacity),
        (&c::FLOWS_CREATED, table.flows_created),
        (&c::FLOW_EVICTIONS, table.evictions),
        (&c::FLOW_INSERT_FAILURES, table.insert_failures),
    ] {
        let mut b = FamilyBuilder::new(family);
        b.sample(&[], num(value));
        out.push(b.finish());
    }

    let beyond = &s.domain_beyond;
    let mut events = FamilyBuilder::new(&c::DOMAIN_EVENTS);
    for (event, value) in &beyond.events {
        events.sample(&[event], num(*value));
    }
    let mut learnt = FamilyBuilder::new(&c::DOMAIN_LEARNT_ENTRIES);
    let mut capacity = FamilyBuilder::new(&c::DOMAIN_LEARNT_CAPACITY);
    for (family, value) in [("ipv4", beyond.learnt_v4), ("ipv6", beyond.learnt_v6)] {
        learnt.sample(&[family], num(value));
        capacity.sample(&[family], num(beyond.capacity));
    }
    out.extend([events.finish(), learnt.finish(), capacity.finish()]);

    type CollectorField = fn(&crate::snapshot::FlowCollector) -> f64;
    let collector_fields: [(&'static Family, CollectorField); 8] = [
        (&c::COLLECTOR_UP, |x| flag(x.up)),
        (&c::COLLECTOR_RECORDS, |x| num(x.records)),
        (&c::COLLECTOR_BYTES, |x| num(x.bytes)),
        (&c::COLLECTOR_MESSAGES, |x| num(x.messages)),
        (&c::COLLECTOR_ERRORS, |x| num(x.errors)),
        (&c::COLLECTOR_LOST, |x| num(x.records_lost)),
        (&c::COLLECTOR_SPOOLED_RECORDS, |x| num(x.spooled_records)),
        (&c::COLLECTOR_SPOOLED_BYTES, |x| num(x.spooled_bytes)),
    ];
    for (family, field) in collector_fields {
        let mut b = FamilyBuilder::new(family);
        for x in &s.collectors {
            b.sample(
                &[&x.name, x.format.as_str(), x.transport.as_str()],
                field(x),
            );
        }
        out.push(b.finish());
    }

    let events = &s.alert_events;
    for (family, value) in [
        (&c::ALERT_EVENTS, events.emitted),
        (&c::ALERT_EVENTS_SUPPRESSED, events.suppressed),
        (&c::ALERT_EVENTS_LOST, events.lost),
    ] {
        let mut b = FamilyBuilder::new(family);
        b.sample(&[], num(value));
        out.push(b.finish());
    }

    type SinkField = fn(&crate::snapshot::AlertSink) -> f64;
    let sink_fields: [(&'static Family, SinkField); 4] = [
        (&c::SINK_UP, |x| flag(x.up)),
        (&c::SINK_SENT, |x| num(x.sent)),
        (&c::SINK_LOST, |x| num(x.lost)),
        (&c::SINK_QUEUED, |x| num(x.queued)),
    ];
    for (family, field) in sink_fields {
        let mut b = FamilyBuilder::new(family);
        for x in &s.alert_sinks {
            b.sample(&[&x.name], field(x));
        }
        out.push(b.finish());
    }

    let mut loaded = FamilyBuilder::new(&c::POLICY_LOADED);
    loaded.sample(&[], flag(s.policy.is_some()));
    out.push(loaded.finish());
    let mut info = FamilyBuilder::new(&c::POLICY_INFO);
    let mut generation = FamilyBuilder::new(&c::POLICY_GENERATION);
    let mut applied_at = FamilyBuilder::new(&c::POLICY_APPLIED_AT);
    let mut apply = FamilyBuilder::new(&c::POLICY_APPLY_DURATION);
    let mut compile = FamilyBuilder::new(&c::POLICY_COMPILE_DURATION);
    if let Some(p) = &s.policy {
        info.sample(&[&p.name, &p.version, &p.hash], 1.0);
        generation.sample(&[], num(p.generation));
        applied_at.sample(&[], unix_seconds(p.applied_at));
        apply.sample(&[], p.last_apply.as_secs_f64());
        compile.sample(&[], p.compile.as_secs_f64());
    }
    out.extend([info, generation, applied_at, apply, compile].map(FamilyBuilder::finish));

    let mut entries = FamilyBuilder::new(&c::FEED_ENTRIES);
    let mut age = FamilyBuilder::new(&c::FEED_AGE);
    for f in &s.feeds {
        let labels = [f.name.as_str(), f.kind.as_str()];
        entries.sample(&labels, num(f.entries));
        if let Some(a) = f.age {
            age.sample(&labels, a.as_secs_f64());
        }
    }
    let mut last_success = FamilyBuilder::new(&c::FEED_LAST_SUCCESS);
    let mut last_ok = FamilyBuilder::new(&c::FEED_LAST_FETCH_OK);
    let mut failures = FamilyBuilder::new(&c::FEED_FETCH_FAILURES);
    for f in &s.feeds {
        let Some(r) = &f.remote else { continue };
        if let Some(t) = r.last_success {
            last_success.sample(&[&f.name], unix_seconds(t));
        }
        last_ok.sample(&[&f.name], flag(r.last_ok));
        for reason in crate::snapshot::FeedFailure::ALL {
            failures.sample(&[&f.name, reason.as_str()], num(r.failures[reason.index()]));
        }
    }
    out.extend([
        entries.finish(),
        age.finish(),
        last_success.finish(),
        last_ok.finish(),
        failures.finish(),
    ]);

    let mut ports = FamilyBuilder::new(&c::PORT_INFO);
    let mut attached = FamilyBuilder::new(&c::PORT_ATTACHED);
    for p in &s.ports {
        ports.sample(
            &[&p.name, p.role.as_str(), &p.ifname, p.xdp_mode.as_str()],
            1.0,
        );
        attached.sample(&[&p.name], flag(p.attached));
    }
    out.extend([ports.finish(), attached.finish()]);

    let mut build = FamilyBuilder::new(&c::BUILD_INFO);
    build.sample(
        &[
            &s.build.version,
            s.build.commit.as_deref().unwrap_or("unknown"),
        ],
        1.0,
    );
    out.push(build.finish());

    out
}

/// A clock set before 1970 shows as 0 rather than failing the scrape.
fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The `prometheus` collector over a [`SnapshotSource`]: describes every catalogue family once,
/// and asks the source for a fresh snapshot on every collect.
pub struct SnapshotCollector {
    source: SnapshotSource,
    descs: Vec<Desc>,
}

impl SnapshotCollector {
    pub fn new(source: SnapshotSource) -> Result<Self, MetricsError> {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                Desc::new(
                    f.name.to_owned(),
                    f.help.to_owned(),
                    f.labels.iter().map(|l| (*l).to_owned()).collect(),
                    HashMap::new(),
                )
                .map_err(|source| MetricsError::Describe {
                    name: f.name,
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(SnapshotCollector { source, descs })
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        families(&(self.source)())
    }
}

/// A registry holding the snapshot collector: what `/metrics` renders.
#[derive(Clone, Debug)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new(source: SnapshotSource) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        registry
            .register(Box::new(SnapshotCollector::new(source)?))
            .map_err(MetricsError::Register)?;
        Ok(Exposition { registry })
    }

    /// A fresh snapshot in the text exposition format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> Result<String, MetricsError> {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .map_err(MetricsError::Encode)
    }
}

/// The exposition of one snapshot (for tests, examples and one-off dumps).
pub fn render(snapshot: &Snapshot) -> Result<String, MetricsError> {
    let snapshot = snapshot.clone();
    Exposition::new(Arc::new(move || snapshot.clone()))?.render()
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use super::*;
    use crate::{example, snapshot::PortStatus};

    /// `series → value` of every sample line of an exposition.
    fn samples(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("sample line");
                (series.to_owned(), value.to_owned())
            })
            .collect()
    }

    fn value(samples: &BTreeMap<String, String>, series: &str) -> String {
        samples
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing from {samples:#?}"))
            .clone()
    }

    #[test]
    fn every_family_of_the_catalogue_is_rendered_with_help_and_type() {
        let text = render(&example()).expect("render");
        for f in FAMILIES {
            assert!(
                text.contains(&format!("# HELP {} ", f.name)),
                "{} has no HELP",
                f.name
            );
            assert!(
                text.contains(&format!("# TYPE {} {}\n", f.name, f.kind.as_str())),
                "{} has no TYPE",
                f.name
            );
            assert!(
                text.lines()
                    .any(|l| l.starts_with(f.name) && !l.starts_with('#')),
                "{} has no sample",
                f.name
            );
        }
        let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(families, FAMILIES.len());
    }

    #[test]
    fn values_and_labels_come_from_the_snapshot() {
        let s = samples(&render(&example()).expect("render"));
        for (series, expected) in [
            (
                r#"gateway_packets_total{role="lan",reason="blocklist",verdict="drop"}"#,
                "1822",
            ),
            (
                r#"gateway_packet_bytes_total{role="lan",reason="blocklist",verdict="drop"}"#,
                "131000",
            ),
            (
                r#"gateway_packets_total{role="internet",reason="pass",verdict="pass"}"#,
                "51003114",
            ),
            (
                r#"gateway_packets_total{role="lan",reason="non_ip",verdict="pass"}"#,
                "120334",
            ),
            (
                r#"gateway_packets_total{role="dedicated",reason="fragment",verdict="drop"}"#,
                "0",
            ),
            (
                r#"gateway_packets_total{role="unknown",reason="unknown_port",verdict="drop"}"#,
                "0",
            ),
            ("gateway_flow_table_entries", "18204"),
            ("gateway_flow_table_capacity", "262144"),
            ("gateway_flows_created_total", "9120448"),
            ("gateway_flow_evictions_total", "0"),
            ("gateway_flow_table_insert_failures_total", "0"),
            (
                r#"gateway_flow_collector_up{collector="soc-national",format="netflow_v9",transport="udp"}"#,
                "0",
            ),
            (
                r#"gateway_flow_collector_up{collector="soc-province",format="ipfix",transport="tls"}"#,
                "1",
            ),
            (
                r#"gateway_flow_collector_records_total{collector="soc-province",format="ipfix",transport="tls"}"#,
                "9101337",
            ),
            (
                r#"gateway_flow_collector_sent_bytes_total{collector="soc-province",format="ipfix",transport="tls"}"#,
                "1019349744",
            ),
            (
                r#"gateway_flow_collector_messages_total{collector="soc-national",format="netflow_v9",transport="udp"}"#,
                "606534",
            ),
            (
                r#"gateway_flow_collector_errors_total{collector="soc-province",format="ipfix",transport="tls"}"#,
                "3",
            ),
            (
                r#"gateway_flow_collector_lost_records_total{collector="soc-national",format="netflow_v9",transport="udp"}"#,
                "1200",
            ),
            (
                r#"gateway_flow_collector_spooled_records{collector="soc-national",format="netflow_v9",transport="udp"}"#,
                "4096",
            ),
            (
                r#"gateway_flow_collector_spooled_bytes{collector="soc-national",format="netflow_v9",transport="udp"}"#,
                "458752",
            ),
            ("gateway_alert_events_total", "61004"),
            ("gateway_alert_events_suppressed_total", "29411"),
            ("gateway_alert_events_lost_total", "0"),
            (
                r#"gateway_alert_sink_sent_total{sink="soc-syslog"}"#,
                "61000",
            ),
            (r#"gateway_alert_sink_queued{sink="soc-syslog"}"#, "4"),
            (r#"gateway_alert_sink_lost_total{sink="local-file"}"#, "0"),
            (r#"gateway_alert_sink_up{sink="local-file"}"#, "1"),
            ("gateway_policy_loaded", "1"),
            (
                r#"gateway_policy_info{policy="ward-office",version="2026.07.1",hash="9f2c4e1a7b3d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"}"#,
                "1",
            ),
            ("gateway_policy_generation", "14"),
            ("gateway_policy_last_apply_timestamp_seconds", "1784012400"),
            ("gateway_policy_last_apply_duration_seconds", "0.836"),
            ("gateway_policy_compile_duration_seconds", "0.109"),
            (
                r#"gateway_feed_entries{feed="spamhaus-drop",kind="ip"}"#,
                "1398",
            ),
            (
                r#"gateway_feed_age_seconds{feed="spamhaus-drop",kind="ip"}"#,
                "90000",
            ),
            (
                r#"gateway_port_info{port="ded0",role="dedicated",ifname="enp2s0",xdp_mode="native"}"#,
                "1",
            ),
            (r#"gateway_port_xdp_attached{port="inet0"}"#, "1"),
            (
                r#"gateway_build_info{version="0.1.0",commit="2360ab3"}"#,
                "1",
            ),
        ] {
            assert_eq!(value(&s, series), expected, "{series}");
        }
    }

    #[test]
    fn every_role_reason_pair_is_a_series_and_the_unknown_row_only_when_it_can_move() {
        let mut snapshot = example();
        let text = render(&snapshot).expect("render");
        let count = |text: &str| {
            samples(text)
                .keys()
                .filter(|k| k.starts_with("gateway_packets_total{"))
                .count()
        };
        // Three roles × every reason, plus unknown/unknown_port.
        assert_eq!(count(&text), 3 * Reason::COUNT as usize + 1);
        snapshot.verdicts.set(
            None,
            Reason::Malformed,
            Traffic {
                packets: 1,
                bytes: 64,
            },
        );
        let text = render(&snapshot).expect("render");
        assert_eq!(count(&text), 3 * Reason::COUNT as usize + 2);
        assert_eq!(
            value(
                &samples(&text),
                r#"gateway_packets_total{role="unknown",reason="malformed",verdict="drop"}"#
            ),
            "1"
        );
    }

    #[test]
    fn without_a_policy_only_the_loaded_gauge_says_so() {
        let mut snapshot = example();
        snapshot.policy = None;
        snapshot.collectors.clear();
        snapshot.build.commit = None;
        let text = render(&snapshot).expect("render");
        let s = samples(&text);
        assert_eq!(value(&s, "gateway_policy_loaded"), "0");
        assert!(!text.contains("gateway_policy_info"), "{text}");
        assert!(!text.contains("gateway_policy_generation"), "{text}");
        assert!(!text.contains("gateway_flow_collector_"), "{text}");
        assert_eq!(
            value(
                &s,
                r#"gateway_build_info{version="0.1.0",commit="unknown"}"#
            ),
            "1"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut snapshot = example();
        snapshot.ports = vec![PortStatus {
            name: "lan\"0\\\nx".to_owned(),
            ifname: "é-ü".to_owned(),
            ..snapshot.ports[0].clone()
        }];
        let text = render(&snapshot).expect("render");
        assert!(
            text.contains(
                r#"gateway_port_info{port="lan\"0\\\nx",role="lan",ifname="é-ü",xdp_mode="native"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"gateway_port_xdp_attached{port="lan\"0\\\nx"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn each_render_takes_a_fresh_snapshot() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let exposition = Exposition::new(Arc::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) as u64;
            let mut s = example();
            s.flow_table.entries = n;
            s
        }))
        .expect("exposition");
        let first = exposition.render().expect("render");
        let second = exposition.render().expect("render");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(value(&samples(&first), "gateway_flow_table_entries"), "0");
        assert_eq!(value(&samples(&second), "gateway_flow_table_entries"), "1");
    }
}
