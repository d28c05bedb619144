//! The one list of metric families: name, type, labels and help. The renderer, the collector's
//! descriptors and the table in METRICS.md all come from here, so they cannot disagree.
//!
//! Naming: one `gateway_` prefix, `_total` on counters, base units (`_bytes`, `_seconds`), `_info`
//! gauges (value 1) for identifying text. Labels only ever take values from fixed enums (role,
//! reason, verdict, format, transport, kind, XDP mode) or from names in the configuration
//! (collectors, sinks, feeds, ports, the policy) — never addresses or anything a packet decides.

/// The Prometheus type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    /// Label names, in the order the renderer passes their values.
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const VERDICT_LABELS: &[&str] = &["role", "reason", "verdict"];
const COLLECTOR_LABELS: &[&str] = &["collector", "format", "transport"];
const FEED_LABELS: &[&str] = &["feed", "kind"];

pub const PACKETS: Family = Family {
    name: "gateway_packets_total",
    kind: Kind::Counter,
    labels: VERDICT_LABELS,
    help: "Packets the XDP data path judged, by role of the port they arrived on (lan, dedicated, \
           internet; unknown = a port without a role) and reason of the verdict. verdict=\"pass\" \
           packets were let through (reasons pass and non_ip); every other reason is a drop.",
};

pub const PACKET_BYTES: Family = Family {
    name: "gateway_packet_bytes_total",
    kind: Kind::Counter,
    labels: VERDICT_LABELS,
    help: "Bytes (whole Ethernet frames as received) of the packets in gateway_packets_total, \
           with the same labels.",
};

pub const FLOW_TABLE_ENTRIES: Family = Family {
    name: "gateway_flow_table_entries",
    kind: Kind::Gauge,
    labels: &[],
    help: "Flows the kernel flow table tracks now.",
};

pub const FLOW_TABLE_CAPACITY: Family = Family {
    name: "gateway_flow_table_capacity",
    kind: Kind::Gauge,
    labels: &[],
    help: "Most flows the kernel flow table can hold; compare with gateway_flow_table_entries.",
};

pub const FLOWS_CREATED: Family = Family {
    name: "gateway_flows_created_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Flows the data path started tracking (first packet of a flow not in the table).",
};

pub const FLOW_EVICTIONS: Family = Family {
    name: "gateway_flow_evictions_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Flows pushed out of the full flow table to make room for new ones. A rising value means \
           the table is too small for the traffic and flow records are incomplete.",
};

pub const FLOW_INSERT_FAILURES: Family = Family {
    name: "gateway_flow_table_insert_failures_total",
    kind: Kind::Counter,
    labels: &[],
    help: "New flows the data path could not add to the flow table. Their packets still got a \
           verdict and are counted in gateway_packets_total, but no flow record shows them.",
};

pub const COLLECTOR_UP: Family = Family {
    name: "gateway_flow_collector_up",
    kind: Kind::Gauge,
    labels: COLLECTOR_LABELS,
    help: "1 if the flow exporter can reach this collector (TCP/TLS: connected; UDP: last send \
           succeeded), 0 if not; while 0, records go to the disk spool.",
};

pub const COLLECTOR_RECORDS: Family = Family {
    name: "gateway_flow_collector_records_total",
    kind: Kind::Counter,
    labels: COLLECTOR_LABELS,
    help: "Flow records sent to this collector.",
};

pub const COLLECTOR_BYTES: Family = Family {
    name: "gateway_flow_collector_sent_bytes_total",
    kind: Kind::Counter,
    labels: COLLECTOR_LABELS,
    help: "Bytes of IPFIX / NetFlow v9 messages sent to this collector (without UDP, TCP or TLS \
           overhead).",
};

pub const COLLECTOR_MESSAGES: Family = Family {
    name: "gateway_flow_collector_messages_total",
    kind: Kind::Counter,
    labels: COLLECTOR_LABELS,
    help: "IPFIX / NetFlow v9 messages sent to this collector (one UDP datagram or one message on \
           the stream each).",
};

pub const COLLECTOR_ERRORS: Family = Family {
    name: "gateway_flow_collector_errors_total",
    kind: Kind::Counter,
    labels: COLLECTOR_LABELS,
    help: "Failed connection attempts and failed sends towards this collector.",
};

pub const COLLECTOR_LOST: Family = Family {
    name: "gateway_flow_collector_lost_records_total",
    kind: Kind::Counter,
    labels: COLLECTOR_LABELS,
    help: "Flow records that will never reach this collector (queue and disk spool were full). \
           Any increase is a gap in the SOC's flow data.",
};

pub const COLLECTOR_SPOOLED_RECORDS: Family = Family {
    name: "gateway_flow_collector_spooled_records",
    kind: Kind::Gauge,
    labels: COLLECTOR_LABELS,
    help: "Flow records waiting in the disk spool for this collector; they are sent once it is \
           reachable again.",
};

pub const COLLECTOR_SPOOLED_BYTES: Family = Family {
    name: "gateway_flow_collector_spooled_bytes",
    kind: Kind::Gauge,
    labels: COLLECTOR_LABELS,
    help: "Disk space the spool for this collector uses.",
};

pub const ALERT_EVENTS: Family = Family {
    name: "gateway_alert_events_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Drop events the data path handed to the alert pipeline (at most one per source and \
           reason per rate-limit window).",
};

pub const ALERT_EVENTS_SUPPRESSED: Family = Family {
    name: "gateway_alert_events_suppressed_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Drop events the data path's rate limit folded into a later alert; that alert carries \
           them as its suppressed count, so they are summarised, not lost.",
};

pub const ALERT_EVENTS_LOST: Family = Family {
    name: "gateway_alert_events_lost_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Drop events lost in the kernel because the event ring buffer was full: drops that \
           raised no alert (they are still counted in gateway_packets_total).",
};

pub const SINK_UP: Family = Family {
    name: "gateway_alert_sink_up",
    kind: Kind::Gauge,
    labels: &["sink"],
    help: "1 if this alert sink (syslog server or file) accepts alerts now, 0 if not.",
};

pub const SINK_SENT: Family = Family {
    name: "gateway_alert_sink_sent_total",
    kind: Kind::Counter,
    labels: &["sink"],
    help: "Alerts delivered to this sink.",
};

pub const SINK_LOST: Family = Family {
    name: "gateway_alert_sink_lost_total",
    kind: Kind::Counter,
    labels: &["sink"],
    help: "Alerts dropped for this sink because its queue was full. Any increase is a gap in the \
           SOC's alert stream.",
};

pub const SINK_QUEUED: Family = Family {
    name: "gateway_alert_sink_queued",
    kind: Kind::Gauge,
    labels: &["sink"],
    help: "Alerts waiting to be sent to this sink.",
};

pub const POLICY_LOADED: Family = Family {
    name: "gateway_policy_loaded",
    kind: Kind::Gauge,
    labels: &[],
    help: "1 if a policy is in force; 0 means the data path drops all traffic as no_policy (fail \
           closed).",
};

pub const POLICY_INFO: Family = Family {
    name: "gateway_policy_info",
    kind: Kind::Gauge,
    labels: &["policy", "version", "hash"],
    help: "The policy in force (value always 1): name, declared version and SHA-256 of the \
           compiled rules. A hash change nobody announced deserves a look.",
};

pub const POLICY_GENERATION: Family = Family {
    name: "gateway_policy_generation",
    kind: Kind::Gauge,
    labels: &[],
    help: "Generation of the policy in force; every apply or reload increases it.",
};

pub const POLICY_APPLIED_AT: Family = Family {
    name: "gateway_policy_last_apply_timestamp_seconds",
    kind: Kind::Gauge,
    labels: &[],
    help: "When the policy in force was applied (Unix time).",
};

pub const POLICY_APPLY_DURATION: Family = Family {
    name: "gateway_policy_last_apply_duration_seconds",
    kind: Kind::Gauge,
    labels: &[],
    help: "How long writing the policy in force into the data path and switching to it took.",
};

pub const POLICY_COMPILE_DURATION: Family = Family {
    name: "gateway_policy_compile_duration_seconds",
    kind: Kind::Gauge,
    labels: &[],
    help: "How long compiling the policy in force, feeds included, took.",
};

pub const FEED_ENTRIES: Family = Family {
    name: "gateway_feed_entries",
    kind: Kind::Gauge,
    labels: FEED_LABELS,
    help: "Entries this threat-intelligence feed contributed to the policy in force (addresses \
           and prefixes for kind=\"ip\", names for kind=\"domain\").",
};

pub const FEED_AGE: Family = Family {
    name: "gateway_feed_age_seconds",
    kind: Kind::Gauge,
    labels: FEED_LABELS,
    help: "Time since this feed's file last changed (a remote feed: since its last good \
           download). A value that keeps growing means the feed is no longer being refreshed.",
};

pub const FEED_LAST_SUCCESS: Family = Family {
    name: "gateway_feed_last_success_timestamp_seconds",
    kind: Kind::Gauge,
    labels: &["feed"],
    help: "Remote feeds: Unix time of the last good download (the list in force came from it). \
           Left out until the first one.",
};

pub const FEED_LAST_FETCH_OK: Family = Family {
    name: "gateway_feed_last_fetch_ok",
    kind: Kind::Gauge,
    labels: &["feed"],
    help: "Remote feeds: 1 if the last download attempt gave a usable list (new, unchanged or \
           304), 0 if it failed (the last good list stays in force).",
};

pub const FEED_FETCH_FAILURES: Family = Family {
    name: "gateway_feed_fetch_failures_total",
    kind: Kind::Counter,
    labels: &["feed", "reason"],
    help: "Remote feeds: download attempts refused, by reason (dns, connect, tls, timeout, \
           http_status, truncated, too_large, empty, malformed, too_few_entries, store). None of \
           them changes what is enforced.",
};

pub const PORT_INFO: Family = Family {
    name: "gateway_port_info",
    kind: Kind::Gauge,
    labels: &["port", "role", "ifname", "xdp_mode"],
    help: "The gateway's ports (value always 1): name, role, network device and XDP mode \
           (native or generic, from the hardware profile).",
};

pub const PORT_ATTACHED: Family = Family {
    name: "gateway_port_xdp_attached",
    kind: Kind::Gauge,
    labels: &["port"],
    help: "1 if the data path is attached to this port, 0 if not: traffic on a port with 0 is not \
           inspected by the gateway.",
};

pub const BUILD_INFO: Family = Family {
    name: "gateway_build_info",
    kind: Kind::Gauge,
    labels: &["version", "commit"],
    help: "The running firmware (value always 1): version and git commit (\"unknown\" when the \
           build did not record one).",
};

/// Every family, in the order METRICS.md lists them.
pub const DOMAIN_EVENTS: Family = Family {
    name: "gateway_domain_beyond_events_total",
    kind: Kind::Counter,
    labels: &["event"],
    help: "Domain blocking beyond DNS queries (issue 6): sni_checked = TLS ClientHellos inspected \
           on an SNI port, sni_blocked = of them blocked by server_name, sni_malformed / sni_split \
           = unreadable (broken framing / server_name beyond the first segment; the policy's \
           malformed setting decided), learn_responses = DNS responses for a blocked name \
           (dropped), learn_inserts = addresses learnt from them, learn_hits = lan packets \
           dropped for going to a learnt address, learn_stale = hits on an entry whose name the \
           policy in force no longer blocks (passed), learn_expired = entries found expired by a \
           packet, learn_swept = expired entries gatewayd deleted.",
};

pub const DOMAIN_LEARNT_ENTRIES: Family = Family {
    name: "gateway_domain_learnt_entries",
    kind: Kind::Gauge,
    labels: &["family"],
    help: "Live (unexpired) addresses learnt from DNS answers for blocked names; lan packets to \
           them are dropped as reason domain.",
};

pub const DOMAIN_LEARNT_CAPACITY: Family = Family {
    name: "gateway_domain_learnt_capacity",
    kind: Kind::Gauge,
    labels: &["family"],
    help: "Most learnt addresses each map holds (LRU: beyond it the oldest are evicted).",
};

pub const FAMILIES: &[Family] = &[
    PACKETS,
    PACKET_BYTES,
    FLOW_TABLE_ENTRIES,
    FLOW_TABLE_CAPACITY,
    FLOWS_CREATED,
    FLOW_EVICTIONS,
    FLOW_INSERT_FAILURES,
    COLLECTOR_UP,
    COLLECTOR_RECORDS,
    COLLECTOR_BYTES,
    COLLECTOR_MESSAGES,
    COLLECTOR_ERRORS,
    COLLECTOR_LOST,
    COLLECTOR_SPOOLED_RECORDS,
    COLLECTOR_SPOOLED_BYTES,
    ALERT_EVENTS,
    ALERT_EVENTS_SUPPRESSED,
    ALERT_EVENTS_LOST,
    SINK_UP,
    SINK_SENT,
    SINK_LOST,
    SINK_QUEUED,
    POLICY_LOADED,
    POLICY_INFO,
    POLICY_GENERATION,
    POLICY_APPLIED_AT,
    POLICY_APPLY_DURATION,
    POLICY_COMPILE_DURATION,
    FEED_ENTRIES,
    FEED_AGE,
    FEED_LAST_SUCCESS,
    FEED_LAST_FETCH_OK,
    FEED_FETCH_FAILURES,
    PORT_INFO,
    PORT_ATTACHED,
    BUILD_INFO,
    DOMAIN_EVENTS,
    DOMAIN_LEARNT_ENTRIES,
    DOMAIN_LEARNT_CAPACITY,
];

/// The markdown table of every family (METRICS.md embeds it; a test keeps the two identical).
pub fn markdown_table() -> String {
    let mut out = String::from("| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n");
    for f in FAMILIES {
        let labels = if f.labels.is_empty() {
            "—".to_owned()
        } else {
            f.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.name,
            f.kind.as_str(),
            labels,
            f.help.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// METRICS.md carries the table between two markers; `UPDATE_METRICS_MD=1 cargo test -p
    /// gateway-metrics` rewrites it after a catalogue change.
    #[test]
    fn metrics_md_has_the_current_table() {
        const START: &str = "<!-- catalogue:start -->\n";
        const END: &str = "<!-- catalogue:end -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/METRICS.md");
        let text = std::fs::read_to_string(path).expect("METRICS.md");
        let (head, rest) = text.split_once(START).expect("start marker");
        let (table, tail) = rest.split_once(END).expect("end marker");
        let expected = markdown_table();
        if table != expected {
            if std::env::var_os("UPDATE_METRICS_MD").is_some() {
                std::fs::write(path, format!("{head}{START}{expected}{END}{tail}"))
                    .expect("write METRICS.md");
            } else {
                panic!(
                    "METRICS.md is out of date; run UPDATE_METRICS_MD=1 cargo test -p \
                     gateway-metrics, or paste:\n{expected}"
                );
            }
        }
    }

    #[test]
    fn names_follow_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for f in FAMILIES {
            assert!(seen.insert(f.name), "{} listed twice", f.name);
            assert!(f.name.starts_with("gateway_"), "{}", f.name);
            assert!(
                !f.name["gateway_".len()..].contains("gateway_"),
                "{}",
                f.name
            );
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}: _total exactly on counters",
                f.name
            );
            assert!(!f.help.is_empty() && f.help.ends_with('.'), "{}", f.name);
            for unit in ["_ms", "_milliseconds", "_kb", "_kilobytes", "_minutes"] {
                assert!(!f.name.contains(unit), "{}: base units only", f.name);
            }
        }
    }
}
