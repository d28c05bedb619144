//! Plain configuration structs; the daemon fills them from its own configuration file.
use std::{path::PathBuf, time::Duration};

use gateway_tls::Identity;

use crate::syslog::Facility;

/// Every sink of the gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertsConfig {
    pub jsonl: Vec<JsonlConfig>,
    pub syslog: Vec<SyslogConfig>,
}

/// A file of JSON lines, rotated by size: `path` is renamed `path.1` (and `path.1` → `path.2`, …)
/// once the next line would take it past `max_bytes`; `keep` old files are kept (0: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonlConfig {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub keep: usize,
}

/// One syslog receiver (a SOC collector).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogConfig {
    /// Names the destination in stats and logs.
    pub name: String,
    /// `host:port`, resolved again at every connection attempt.
    pub addr: String,
    pub transport: SyslogTransport,
    pub facility: Facility,
    /// Alerts held in memory for this receiver, waiting or written but not yet acknowledged by
    /// its TCP. One more is counted lost.
    pub queue: usize,
    pub backoff: Backoff,
}

impl SyslogConfig {
    /// Facility `local0`, a queue of 10,000 alerts (a few MB) and the default backoff.
    pub fn new(
        name: impl Into<String>,
        addr: impl Into<String>,
        transport: SyslogTransport,
    ) -> Self {
        SyslogConfig {
            name: name.into(),
            addr: addr.into(),
            transport,
            facility: Facility::Local0,
            queue: 10_000,
            backoff: Backoff::default(),
        }
    }
}

/// How the messages travel. Both use RFC 6587 octet-counting frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogTransport {
    /// Plain TCP (RFC 6587).
    Tcp,
    /// TLS (RFC 5425): the receiver's certificate must chain to `ca` and name `server_name`;
    /// `identity` is presented when the receiver asks for a client certificate.
    Tls {
        ca: PathBuf,
        identity: Option<Identity>,
        server_name: String,
    },
}

/// Delay between connection attempts: doubles from `initial` up to `max`, back to `initial` once
/// a connection succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}
