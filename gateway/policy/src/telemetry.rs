//! The policy's `[telemetry]` section: where the SOC receives flows and alerts, and how the metrics
//! endpoint is served. Plain validated data; the daemon turns it into exporters, sinks and servers.
//!
//! ```toml
//! [telemetry.flows]
//! active_timeout_secs = 60      # a long flow is reported at least this often
//! idle_timeout_secs = 15        # a flow without packets for this long has ended
//!
//! [[telemetry.collector]]       # any number; each gets every flow
//! name = "soc-nfcapd"
//! address = "172.16.0.2:2055"
//! format = "ipfix"              # or "netflow9"
//! transport = "udp"             # or "tcp", "tls" (then ca = …, optional cert/key, server_name)
//!
//! [telemetry.alerts]
//! burst = 20                    # alerts per (source, reason) and window; the rest are counted
//! window_ms = 1000
//!
//! [[telemetry.syslog]]          # RFC 5424 over TCP or TLS
//! name = "soc-siem"
//! address = "172.16.0.2:6514"
//! transport = "tls"
//! ca = "/data/soc/ca.pem"
//!
//! [telemetry.metrics]
//! listen = "172.16.0.1:9100"    # tls: cert, key, optional client_ca (mutual TLS)
//! ```
//! Relative file paths are resolved against the policy file's directory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{PolicyError, SourceText};

/// The validated `[telemetry]` section (defaults when absent: no collectors, no syslog, no metrics
/// endpoint, default timeouts and alert limits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Telemetry {
    pub flows: FlowSettings,
    pub collectors: Vec<Collector>,
    pub alerts: AlertSettings,
    pub syslog: Vec<SyslogTarget>,
    pub metrics: Option<MetricsEndpoint>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSettings {
    pub active_timeout: Duration,
    pub idle_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertSettings {
    /// Alerts per (source address, reason) in one window; the data path counts the rest.
    pub burst: u32,
    pub window_ms: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowFormat {
    Ipfix,
    NetflowV9,
}

impl FlowFormat {
    pub const fn as_str(self) -> &'static str {
        match self {
            FlowFormat::Ipfix => "ipfix",
            FlowFormat::NetflowV9 => "netflow9",
        }
    }
}

/// How a client reaches a SOC service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientTransport {
    Udp,
    Tcp,
    Tls(ClientTls),
}

impl ClientTransport {
    pub const fn as_str(&self) -> &'static str {
        match self {
            ClientTransport::Udp => "udp",
            ClientTransport::Tcp => "tcp",
            ClientTransport::Tls(_) => "tls",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// CA bundle the server's certificate must chain to.
    pub ca: PathBuf,
    /// Our certificate and key, when the server demands one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Name checked against the server's certificate (default: the address's IP).
    pub server_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collector {
    pub name: String,
    pub line: u32,
    pub address: SocketAddr,
    pub format: FlowFormat,
    pub transport: ClientTransport,
    /// UDP: templates are re-sent this often (collectors that start late learn them).
    pub template_refresh: Duration,
    /// TCP/TLS: bytes of records kept on disk while the collector is unreachable.
    pub spool_max_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogTarget {
    pub name: String,
    pub line: u32,
    pub address: SocketAddr,
    /// `Tcp` or `Tls` (syslog over UDP loses alerts silently, so it is not offered).
    pub transport: ClientTransport,
    /// RFC 5424 facility number.
    pub facility: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsEndpoint {
    pub listen: SocketAddr,
    pub tls: Option<ServerTls>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With a client CA, scrapers must present a certificate from it (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// The name the daemon's own alert log goes by in metrics; no collector or syslog target may take it.
pub const LOCAL_ALERT_LOG: &str = "local-log";

pub const DEFAULT_ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_ALERTS: AlertSettings = AlertSettings {
    burst: 20,
    window_ms: 1000,
};
pub const DEFAULT_TEMPLATE_REFRESH: Duration = Duration::from_secs(60);
pub const DEFAULT_SPOOL_BYTES: u64 = 64 << 20;

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            flows: FlowSettings {
                active_timeout: DEFAULT_ACTIVE_TIMEOUT,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
            },
            collectors: Vec::new(),
            alerts: DEFAULT_ALERTS,
            syslog: Vec::new(),
            metrics: None,
        }
    }
}

// --- The TOML schema --------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    flows: Option<RawFlows>,
    #[serde(default)]
    collector: Vec<RawCollector>,
    alerts: Option<RawAlerts>,
    #[serde(default)]
    syslog: Vec<RawSyslog>,
    metrics: Option<RawMetrics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlows {
    active_timeout_secs: Option<Spanned<i64>>,
    idle_timeout_secs: Option<Spanned<i64>>,
}

/// The TLS fields of a collector or syslog target (written inline in both).
struct RawClientTls {
    ca: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    name: Spanned<String>,
    address: Spanned<String>,
    format: Spanned<String>,
    transport: Spanned<String>,
    template_refresh_secs: Option<Spanned<i64>>,
    spool_max_bytes: Option<Spanned<i64>>,
    ca: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    burst: Option<Spanned<i64>>,
    window_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSyslog {
    name: Spanned<String>,
    address: Spanned<String>,
    transport: Spanned<String>,
    facility: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
}

// --- Validation -------------------------------------------------------------------------------------

/// Validate the section; `base` is the policy file's directory (for relative paths).
pub(crate) fn validate(
    src: &SourceText<'_>,
    raw: Option<RawTelemetry>,
    base: &Path,
) -> Result<Telemetry, PolicyError> {
    let Some(raw) = raw else {
        return Ok(Telemetry::default());
    };
    let v = Check { src, base };
    let flows = v.flows(raw.flows)?;
    let alerts = v.alerts(raw.alerts)?;
    let mut names: HashMap<String, u32> = HashMap::new();
    let mut collectors = Vec::new();
    for c in raw.collector {
        let name = v.unique_name(&c.name, "telemetry.collector.name", &mut names)?;
        collectors.push(v.collector(name, c)?);
    }
    let mut syslog = Vec::new();
    for s in raw.syslog {
        let name = v.unique_name(&s.name, "telemetry.syslog.name", &mut names)?;
        syslog.push(v.syslog(name, s)?);
    }
    let metrics = raw.metrics.map(|m| v.metrics(m)).transpose()?;
    Ok(Telemetry {
        flows,
        collectors,
        alerts,
        syslog,
        metrics,
    })
}

struct Check<'s, 't> {
    src: &'s SourceText<'t>,
    base: &'s Path,
}

impl Check<'_, '_> {
    fn err(&self, span: &Range<usize>, field: &str, msg: impl Into<String>) -> PolicyError {
        self.src.invalid(span, field, msg)
    }

    fn int(
        &self,
        value: &Option<Spanned<i64>>,
        field: &str,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
    ) -> Result<i64, PolicyError> {
        match value {
            None => Ok(default),
            Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref()),
            Some(v) => Err(self.err(
                &v.span(),
                field,
                format!(
                    "{} is out of range; expected {}..={}",
                    v.get_ref(),
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    fn flows(&self, raw: Option<RawFlows>) -> Result<FlowSettings, PolicyError> {
        let Some(raw) = raw else {
            return Ok(Telemetry::default().flows);
        };
        let active = self.int(
            &raw.active_timeout_secs,
            "telemetry.flows.active_timeout_secs",
            1..=86_400,
            DEFAULT_ACTIVE_TIMEOUT.as_secs() as i64,
        )?;
        let idle = self.int(
            &raw.idle_timeout_secs,
            "telemetry.flows.idle_timeout_secs",
            1..=3_600,
            DEFAULT_IDLE_TIMEOUT.as_secs() as i64,
        )?;
        if idle > active
            && let Some(span) = raw.idle_timeout_secs.as_ref().map(Spanned::span)
        {
            return Err(self.err(
                &span,
                "telemetry.flows.idle_timeout_secs",
                format!("{idle} s is longer than the active timeout ({active} s)"),
            ));
        }
        Ok(FlowSettings {
            active_timeout: Duration::from_secs(active as u64),
            idle_timeout: Duration::from_secs(idle.min(active) as u64),
        })
    }

    fn alerts(&self, raw: Option<RawAlerts>) -> Result<AlertSettings, PolicyError> {
        let Some(raw) = raw else {
            return Ok(DEFAULT_ALERTS);
        };
        Ok(AlertSettings {
            burst: self.int(
                &raw.burst,
                "telemetry.alerts.burst",
                1..=10_000,
                i64::from(DEFAULT_ALERTS.burst),
            )? as u32,
            window_ms: self.int(
                &raw.window_ms,
                "telemetry.alerts.window_ms",
                100..=3_600_000,
                i64::from(DEFAULT_ALERTS.window_ms),
            )? as u32,
        })
    }

    fn unique_name(
        &self,
        name: &Spanned<String>,
        field: &str,
        seen: &mut HashMap<String, u32>,
    ) -> Result<String, PolicyError> {
        crate::profile::check_name(self.src, name, field)?;
        if name.get_ref() == LOCAL_ALERT_LOG {
            return Err(self.err(
                &name.span(),
                field,
                format!("{LOCAL_ALERT_LOG:?} is the name of the gateway's own alert log"),
            ));
        }
        let line = self.src.line_of_span(&name.span());
        if let Some(first) = seen.insert(name.get_ref().clone(), line) {
            return Err(self.err(
                &name.span(),
                field,
                format!(
                    "{:?} already names a collector or syslog target (line {first})",
                    name.get_ref()
                ),
            ));
        }
        Ok(name.get_ref().clone())
    }

    fn address(&self, s: &Spanned<String>, field: &str) -> Result<SocketAddr, PolicyError> {
        let addr: SocketAddr = s.get_ref().trim().parse().map_err(|_| {
            self.err(
                &s.span(),
                field,
                format!(
                    "{:?} is not an IP address with a port (\"192.0.2.1:2055\", \"[2001:db8::1]:4739\"); names are not resolved",
                    s.get_ref()
                ),
            )
        })?;
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(self.err(
                &s.span(),
                field,
                format!("{addr} cannot be a destination (port 0, unspecified or multicast)"),
            ));
        }
        Ok(addr)
    }

    fn path(&self, s: &Spanned<String>, field: &str) -> Result<PathBuf, PolicyError> {
        let text = s.get_ref().trim();
        if text.is_empty() {
            return Err(self.err(&s.span(), field, "empty path"));
        }
        Ok(self.base.join(text))
    }

    /// `udp` (when allowed), `tcp` or `tls` with its settings.
    fn transport(
        &self,
        word: &Spanned<String>,
        tls: RawClientTls,
        section: &str,
        address: SocketAddr,
        udp_allowed: bool,
    ) -> Result<ClientTransport, PolicyError> {
        let field = format!("{section}.transport");
        let transport = match word.get_ref().as_str() {
            "udp" if udp_allowed => ClientTransport::Udp,
            "tcp" => ClientTransport::Tcp,
            "tls" => {
                let Some(ca) = &tls.ca else {
                    return Err(self.err(
                        &word.span(),
                        &format!("{section}.ca"),
                        "transport \"tls\" needs `ca`, the CA bundle the server's certificate chains to",
                    ));
                };
                let identity = match (&tls.cert, &tls.key) {
                    (Some(c), Some(k)) => Some((
                        self.path(c, &format!("{section}.cert"))?,
                        self.path(k, &format!("{section}.key"))?,
                    )),
                    (None, None) => None,
                    (Some(s), None) | (None, Some(s)) => {
                        return Err(self.err(
                            &s.span(),
                            section,
                            "`cert` and `key` go together (the client identity)",
                        ));
                    }
                };
                let server_name = match &tls.server_name {
                    Some(n) if !n.get_ref().trim().is_empty() => n.get_ref().trim().to_string(),
                    Some(n) => {
                        return Err(self.err(
                            &n.span(),
                            &format!("{section}.server_name"),
                            "empty server name",
                        ));
                    }
                    None => address.ip().to_string(),
                };
                return Ok(ClientTransport::Tls(ClientTls {
                    ca: self.path(ca, &format!("{section}.ca"))?,
                    identity,
                    server_name,
                }));
            }
            other => {
                let expected = if udp_allowed {
                    "\"udp\", \"tcp\" or \"tls\""
                } else {
                    "\"tcp\" or \"tls\" (syslog over UDP would lose alerts without a trace)"
                };
                return Err(self.err(
                    &word.span(),
                    &field,
                    format!("unknown transport {other:?}; expected {expected}"),
                ));
            }
        };
        // TLS settings without TLS are a mistake an admin would want to hear about.
        if let Some(s) = tls
            .ca
            .as_ref()
            .or(tls.cert.as_ref())
            .or(tls.key.as_ref())
            .or(tls.server_name.as_ref())
        {
            return Err(self.err(
                &s.span(),
                section,
                format!("TLS settings given but transport is {:?}", word.get_ref()),
            ));
        }
        Ok(transport)
    }

    fn collector(&self, name: String, raw: RawCollector) -> Result<Collector, PolicyError> {
        const S: &str = "telemetry.collector";
        let line = self.src.line_of_span(&raw.name.span());
        let address = self.address(&raw.address, "telemetry.collector.address")?;
        let format = match raw.format.get_ref().as_str() {
            "ipfix" => FlowFormat::Ipfix,
            "netflow9" => FlowFormat::NetflowV9,
            other => {
                return Err(self.err(
                    &raw.format.span(),
                    "telemetry.collector.format",
                    format!("unknown format {other:?}; expected \"ipfix\" or \"netflow9\""),
                ));
            }
        };
        let tls = RawClientTls {
            ca: raw.ca,
            cert: raw.cert,
            key: raw.key,
            server_name: raw.server_name,
        };
        let transport_span = raw.transport.span();
        let transport = self.transport(&raw.transport, tls, S, address, true)?;
        if format == FlowFormat::NetflowV9 && transport != ClientTransport::Udp {
            return Err(self.err(
                &transport_span,
                "telemetry.collector.transport",
                "NetFlow v9 messages carry no length and cannot be framed on a TCP or TLS stream; use format \"ipfix\" or transport \"udp\"",
            ));
        }
        let refresh = self.int(
            &raw.template_refresh_secs,
            "telemetry.collector.template_refresh_secs",
            1..=3_600,
            DEFAULT_TEMPLATE_REFRESH.as_secs() as i64,
        )?;
        let spool = self.int(
            &raw.spool_max_bytes,
            "telemetry.collector.spool_max_bytes",
            1 << 20..=16 << 30,
            DEFAULT_SPOOL_BYTES as i64,
        )?;
        Ok(Collector {
            name,
            line,
            address,
            format,
            transport,
            template_refresh: Duration::from_secs(refresh as u64),
            spool_max_bytes: spool as u64,
        })
    }

    fn syslog(&self, name: String, raw: RawSyslog) -> Result<SyslogTarget, PolicyError> {
        let line = self.src.line_of_span(&raw.name.span());
        let address = self.address(&raw.address, "telemetry.syslog.address")?;
        let tls = RawClientTls {
            ca: raw.ca,
            cert: raw.cert,
            key: raw.key,
            server_name: raw.server_name,
        };
        let transport = self.transport(&raw.transport, tls, "telemetry.syslog", address, false)?;
        let facility = match &raw.facility {
            None => FACILITIES[0].1,
            Some(f) => FACILITIES
                .iter()
                .find(|(word, _)| *word == f.get_ref().as_str())
                .map(|&(_, n)| n)
                .ok_or_else(|| {
                    let words: Vec<&str> = FACILITIES.iter().map(|(w, _)| *w).collect();
                    self.err(
                        &f.span(),
                        "telemetry.syslog.facility",
                        format!(
                            "unknown facility {:?}; expected one of {}",
                            f.get_ref(),
                            words.join(", ")
                        ),
                    )
                })?,
        };
        Ok(SyslogTarget {
            name,
            line,
            address,
            transport,
            facility,
        })
    }

    fn metrics(&self, raw: RawMetrics) -> Result<MetricsEndpoint, PolicyError> {
        let listen: SocketAddr = raw.listen.get_ref().trim().parse().map_err(|_| {
            self.err(
                &raw.listen.span(),
                "telemetry.metrics.listen",
                format!(
                    "{:?} is not an IP address with a port (\"172.16.0.1:9100\")",
                    raw.listen.get_ref()
                ),
            )
        })?;
        let tls = match (&raw.cert, &raw.key) {
            (Some(c), Some(k)) => Some(ServerTls {
                cert: self.path(c, "telemetry.metrics.cert")?,
                key: self.path(k, "telemetry.metrics.key")?,
                client_ca: raw
                    .client_ca
                    .as_ref()
                    .map(|c| self.path(c, "telemetry.metrics.client_ca"))
                    .transpose()?,
            }),
            (None, None) => {
                if let Some(c) = &raw.client_ca {
                    return Err(self.err(
                        &c.span(),
                        "telemetry.metrics.client_ca",
                        "client certificates need TLS: give `cert` and `key` too",
                    ));
                }
                None
            }
            (Some(s), None) | (None, Some(s)) => {
                return Err(self.err(
                    &s.span(),
                    "telemetry.metrics",
                    "`cert` and `key` go together (the endpoint's TLS identity)",
                ));
            }
        };
        Ok(MetricsEndpoint { listen, tls })
    }
}

/// Facilities an alert can be filed under (RFC 5424 numbers); the first is the default.
const FACILITIES: [(&str, u8); 11] = [
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
    ("security", 4),
    ("daemon", 3),
    ("user", 1),
];
