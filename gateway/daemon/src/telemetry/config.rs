//! The policy's `[telemetry]` section → the configurations of the exporters, alert sinks and the
//! metrics endpoint. Files the daemon writes itself (spools, the alert log) live in its state dir.
use std::path::Path;

use gateway_alerts::{AlertsConfig, JsonlConfig, SyslogConfig, SyslogTransport, syslog::Facility};
use gateway_flows::{CollectorConfig, Format, SpoolConfig, Transport};
use gateway_metrics::{Limits, MetricsConfig, MetricsTls};
use gateway_policy::telemetry::{
    ClientTls, ClientTransport, Collector, FlowFormat, MetricsEndpoint, SyslogTarget,
};
use gateway_tls::Identity;

/// The local alert log: every alert as a JSON line, rotated at this size, this many old files kept.
pub const ALERT_LOG: &str = "alerts.jsonl";
pub const ALERT_LOG_MAX_BYTES: u64 = 16 << 20;
pub const ALERT_LOG_KEEP: usize = 4;
/// The local log's name in metrics (the policy refuses it for a syslog target).
pub const ALERT_LOG_SINK: &str = gateway_policy::telemetry::LOCAL_ALERT_LOG;

fn identity(tls: &ClientTls) -> Option<Identity> {
    tls.identity.as_ref().map(|(cert, key)| Identity {
        cert: cert.clone(),
        key: key.clone(),
    })
}

/// An exporter's configuration. TCP/TLS collectors spool to `<state>/spool/<name>` while down.
pub fn collector(c: &Collector, state_dir: &Path, observation_domain: u32) -> CollectorConfig {
    let transport = match &c.transport {
        ClientTransport::Udp => Transport::Udp,
        ClientTransport::Tcp => Transport::Tcp,
        ClientTransport::Tls(tls) => Transport::Tls {
            ca: tls.ca.clone(),
            identity: identity(tls),
            server_name: tls.server_name.clone(),
        },
    };
    let spool = (!matches!(c.transport, ClientTransport::Udp)).then(|| SpoolConfig {
        dir: state_dir.join("spool").join(&c.name),
        max_bytes: c.spool_max_bytes,
    });
    CollectorConfig {
        name: c.name.clone(),
        format: match c.format {
            FlowFormat::Ipfix => Format::Ipfix,
            FlowFormat::NetflowV9 => Format::NetflowV9,
        },
        transport,
        addr: c.address,
        template_refresh: c.template_refresh,
        observation_domain,
        spool,
    }
}

/// The alert sinks: the local JSON-lines log always, and every syslog target.
pub fn alerts(targets: &[SyslogTarget], state_dir: &Path) -> AlertsConfig {
    AlertsConfig {
        jsonl: vec![JsonlConfig {
            path: state_dir.join(ALERT_LOG),
            max_bytes: ALERT_LOG_MAX_BYTES,
            keep: ALERT_LOG_KEEP,
        }],
        syslog: targets
            .iter()
            .map(|t| {
                let transport = match &t.transport {
                    ClientTransport::Tls(tls) => SyslogTransport::Tls {
                        ca: tls.ca.clone(),
                        identity: identity(tls),
                        server_name: tls.server_name.clone(),
                    },
                    // The policy refuses UDP for syslog.
                    ClientTransport::Tcp | ClientTransport::Udp => SyslogTransport::Tcp,
                };
                let mut config = SyslogConfig::new(&t.name, t.address.to_string(), transport);
                config.facility = Facility::ALL
                    .into_iter()
                    .find(|f| *f as u8 == t.facility)
                    .unwrap_or_default();
                config
            })
            .collect(),
    }
}

pub fn metrics(m: &MetricsEndpoint) -> MetricsConfig {
    MetricsConfig {
        listen: m.listen,
        tls: m.tls.as_ref().map(|t| MetricsTls {
            identity: Identity {
                cert: t.cert.clone(),
                key: t.key.clone(),
            },
            client_ca: t.client_ca.clone(),
        }),
        limits: Limits::default(),
    }
}
