//! The fan-out: every alert to every sink.
use std::time::Duration;

use crate::{Alert, AlertsError, JsonlSink, SinkStats, SyslogSink, config::AlertsConfig};

/// All sinks of the gateway. `send` never waits on the network (syslog sinks queue), only on
/// local file writes.
#[derive(Debug, Default)]
pub struct Alerter {
    jsonl: Vec<JsonlSink>,
    syslog: Vec<SyslogSink>,
}

impl Alerter {
    /// Opens every file and starts every syslog destination (on the current tokio runtime when
    /// there is any syslog destination). Fails on the first bad configuration.
    pub fn start(config: &AlertsConfig) -> Result<Alerter, AlertsError> {
        let jsonl = config
            .jsonl
            .iter()
            .map(|c| JsonlSink::open(c.clone()))
            .collect::<Result<_, _>>()?;
        let syslog = config
            .syslog
            .iter()
            .map(|c| SyslogSink::start(c.clone()))
            .collect::<Result<_, _>>()?;
        Ok(Alerter { jsonl, syslog })
    }

    /// From sinks already built.
    pub fn new(jsonl: Vec<JsonlSink>, syslog: Vec<SyslogSink>) -> Alerter {
        Alerter { jsonl, syslog }
    }

    pub fn send(&self, alert: &Alert) {
        for sink in &self.jsonl {
            sink.send(alert);
        }
        for sink in &self.syslog {
            sink.send(alert);
        }
    }

    /// A control-plane notice (feed failure or recovery, audit record) to every sink.
    pub fn notify(&self, notice: &crate::Notice) {
        for sink in &self.jsonl {
            sink.send_notice(notice);
        }
        for sink in &self.syslog {
            sink.send_notice(notice);
        }
    }

    /// One snapshot per sink: files first, then syslog destinations, in configuration order.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.jsonl
            .iter()
            .map(JsonlSink::stats)
            .chain(self.syslog.iter().map(SyslogSink::stats))
            .collect()
    }

    /// Gives the syslog destinations up to `grace` (together, not each) to deliver what they
    /// hold, then closes everything; returns the final stats.
    pub async fn close(self, grace: Duration) -> Vec<SinkStats> {
        let deadline = tokio::time::Instant::now() + grace;
        for sink in &self.syslog {
            sink.begin_close();
        }
        let mut stats: Vec<SinkStats> = self.jsonl.iter().map(JsonlSink::stats).collect();
        for sink in self.syslog {
            stats.push(sink.finish_close(deadline).await);
        }
        stats
    }
}
