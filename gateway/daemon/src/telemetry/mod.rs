//! Telemetry for the SOC: flow records (IPFIX / NetFlow v9) from the kernel's flow table, alerts
//! (JSON lines + RFC 5424 syslog) from the drop-event ring buffer, and the Prometheus endpoint.
//!
//! The daemon's loop drives it: [`Telemetry::tick`] every second sweeps the flow table when due and
//! refreshes the metrics snapshot; [`Telemetry::alert`] handles each drop event; a policy apply
//! calls [`Telemetry::reconfigure`]; shutdown reports every flow as ended and flushes the queues.
//! Nothing here can stop enforcement: an exporter or endpoint that fails to start is logged and
//! shows in the metrics, the data path goes on.
mod clock;
pub mod config;
mod convert;
pub mod flow_sweep;
pub mod names;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use std::{path::PathBuf, sync::PoisonError};

use gateway_alerts::Alerter;
use gateway_dataplane::{FlowEntry, FlowTable};
use gateway_flows::{Exporter, FlowRecord};
use gateway_metrics::{MetricsServer, Snapshot, snapshot as ms};
use gateway_policy::telemetry::{Collector, MetricsEndpoint, Telemetry as Settings};

use self::{clock::Clock, convert::AlertContext, flow_sweep::FlowTracker, names::Names};

/// How often the flow table is swept at most / at least.
const SWEEP_MIN: Duration = Duration::from_secs(1);
const SWEEP_MAX: Duration = Duration::from_secs(5);
/// How long shutdown waits for exporters and syslog to flush.
const FLUSH_GRACE: Duration = Duration::from_secs(3);

struct RunningCollector {
    config: Collector,
    exporter: Exporter,
}

struct MetricsTask {
    config: MetricsEndpoint,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// The snapshot the metrics endpoint serves; the daemon's loop refreshes it.
type SharedSnapshot = Arc<Mutex<Option<Snapshot>>>;

pub struct Telemetry {
    settings: Settings,
    state_dir: PathBuf,
    host: String,
    observation_domain: u32,
    flows: FlowTable,
    tracker: FlowTracker,
    entries: Vec<FlowEntry>,
    kernel_entries: u64,
    last_sweep: Instant,
    collectors: Vec<RunningCollector>,
    alerter: Alerter,
    metrics: Option<MetricsTask>,
    /// The endpoint of the settings in force is to be started at the next publish (so it never
    /// serves before there is a snapshot).
    metrics_pending: bool,
    snapshot: SharedSnapshot,
    /// Events the daemon could not turn into alerts (reason or role byte unknown to it).
    unattributed: u64,
}

/// The gateway's name in alerts: the kernel's hostname.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".to_owned())
}

/// A stable IPFIX observation domain per box: the first bytes of the hostname's SHA-256.
fn observation_domain(host: &str) -> u32 {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(host.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn sweep_interval(s: &Settings) -> Duration {
    (s.flows.idle_timeout / 4).clamp(SWEEP_MIN, SWEEP_MAX)
}

impl Telemetry {
    /// Starts exporters, alert sinks and the metrics endpoint of `settings`. Must run inside the
    /// tokio runtime.
    pub fn start(settings: Settings, flows: FlowTable, state_dir: PathBuf) -> Telemetry {
        let host = hostname();
        let tracker = FlowTracker::new(settings.flows.active_timeout, settings.flows.idle_timeout);
        let alerter = start_alerter(&settings, &state_dir);
        let mut t = Telemetry {
            observation_domain: observation_domain(&host),
            host,
            state_dir,
            flows,
            tracker,
            entries: Vec::new(),
            kernel_entries: 0,
            last_sweep: Instant::now(),
            collectors: Vec::new(),
            alerter,
            metrics: None,
            metrics_pending: false,
            snapshot: Arc::new(Mutex::new(None)),
            unattributed: 0,
            settings: Settings::default(),
        };
        t.reconfigure(settings);
        t
    }

    /// Takes the `[telemetry]` of a newly applied policy: collectors and syslog targets that
    /// changed are restarted (their spools stay on disk), the endpoint is re-bound if it moved.
    pub fn reconfigure(&mut self, settings: Settings) {
        self.tracker
            .set_timeouts(settings.flows.active_timeout, settings.flows.idle_timeout);

        let mut kept = Vec::new();
        for running in std::mem::take(&mut self.collectors) {
            if settings.collectors.contains(&running.config) {
                kept.push(running);
            } else {
                tracing::info!(collector = %running.config.name, "collector removed or changed; stopping its exporter");
                tokio::spawn(running.exporter.shutdown());
            }
        }
        for c in &settings.collectors {
            if kept.iter().any(|k| &k.config == c) {
                continue;
            }
            match Exporter::spawn(config::collector(
                c,
                &self.state_dir,
                self.observation_domain,
            )) {
                Ok(exporter) => {
                    tracing::info!(collector = %c.name, address = %c.address, format = c.format.as_str(), transport = c.transport.as_str(), "flow exporter started");
                    kept.push(RunningCollector {
                        config: c.clone(),
                        exporter,
                    });
                }
                Err(e) => {
                    tracing::error!(collector = %c.name, error = %crate::engine::chain(&e), "flow exporter not started")
                }
            }
        }
        self.collectors = kept;

        if settings.syslog != self.settings.syslog {
            let old =
                std::mem::replace(&mut self.alerter, start_alerter(&settings, &self.state_dir));
            tokio::spawn(old.close(FLUSH_GRACE));
        }

        if self.metrics.as_ref().map(|m| &m.config) != settings.metrics.as_ref() {
            if let Some(old) = self.metrics.take() {
                let _ = old.stop.send(());
                old.task.abort();
            }
            self.metrics_pending = settings.metrics.is_some();
        }
        self.settings = settings;
    }

    /// Once a second: sweeps the flow table when it is due.
    pub fn tick(&mut self, names: &Names) {
        if self.last_sweep.elapsed() >= sweep_interval(&self.settings) {
            self.sweep(names);
        }
    }

    fn sweep(&mut self, names: &Names) {
        self.last_sweep = Instant::now();
        // The created counter first: every flow it counts may then be among the entries.
        let created = match self.flows.stats() {
            Ok(s) => s.created,
            Err(e) => {
                tracing::warn!(error = %crate::engine::chain(&e), "flow counters unreadable");
                return;
            }
        };
        let mut entries = std::mem::take(&mut self.entries);
        if let Err(e) = self.flows.read(&mut entries) {
            tracing::warn!(error = %crate::engine::chain(&e), "flow table unreadable; sweep skipped");
            self.entries = entries;
            return;
        }
        self.kernel_entries = entries.len() as u64;
        let clock = Clock::now();
        let sweep = self.tracker.sweep(
            clock.mono_ns,
            created,
            entries.iter().map(|e| (e.key, e.value)),
        );
        self.entries = entries;
        self.export(&sweep, names, &clock);
    }

    fn export(&mut self, sweep: &flow_sweep::Sweep, names: &Names, clock: &Clock) {
        if !sweep.delete.is_empty()
            && let Err(e) = self.flows.delete(&sweep.delete)
        {
            tracing::warn!(error = %crate::engine::chain(&e), "ended flows not deleted; they will be reported again when they end");
        }
        let records: Vec<FlowRecord> = sweep
            .reports
            .iter()
            .filter_map(|r| convert::flow_record(r, names, clock))
            .collect();
        if records.is_empty() {
            return;
        }
        let batch: Arc<[FlowRecord]> = records.into();
        for c in &self.collectors {
            // A full queue is counted by the exporter (records lost), never waited for.
            c.exporter.send(Arc::clone(&batch));
        }
    }

    /// One drop event → an alert to every sink.
    pub fn alert(
        &mut self,
        ev: &gateway_dataplane::DropRecord,
        names: &Names,
        policy: &str,
        generation: u64,
    ) {
        let ctx = AlertContext {
            host: &self.host,
            policy,
            generation,
        };
        match convert::alert(&ev.event, ev.dns.as_ref(), names, &Clock::now(), &ctx) {
            Some(alert) => self.alerter.send(&alert),
            None => self.unattributed += 1,
        }
    }

    /// A control-plane notice (feed failure/recovery, audit record) to every alert sink.
    pub fn notify(&self, notice: &gateway_alerts::Notice) {
        self.alerter.notify(notice);
    }

    /// The gateway's name in alerts.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Replaces what the metrics endpoint serves (and starts the endpoint the first time).
    pub fn publish(&mut self, snapshot: Snapshot) {
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
        if self.metrics_pending
            && let Some(endpoint) = &self.settings.metrics
        {
            self.metrics_pending = false;
            self.metrics = Some(start_metrics(endpoint, Arc::clone(&self.snapshot)));
        }
    }

    /// The telemetry part of a metrics snapshot.
    pub fn flow_table_metrics(&self) -> ms::FlowTable {
        let stats = self.flows.stats().unwrap_or_default();
        ms::FlowTable {
            entries: self.kernel_entries,
            capacity: u64::from(self.flows.capacity()),
            flows_created: stats.created,
            evictions: self.tracker.evictions(),
            insert_failures: stats.insert_failed,
        }
    }

    pub fn collector_metrics(&self) -> Vec<ms::FlowCollector> {
        self.collectors
            .iter()
            .map(|c| {
                let s = c.exporter.stats();
                ms::FlowCollector {
                    name: c.config.name.clone(),
                    format: match c.config.format {
                        gateway_policy::telemetry::FlowFormat::Ipfix => ms::FlowFormat::Ipfix,
                        gateway_policy::telemetry::FlowFormat::NetflowV9 => {
                            ms::FlowFormat::NetflowV9
                        }
                    },
                    transport: match c.config.transport.as_str() {
                        "udp" => ms::Transport::Udp,
                        "tcp" => ms::Transport::Tcp,
                        _ => ms::Transport::Tls,
                    },
                    records: s.records_sent,
                    bytes: s.bytes_sent,
                    messages: s.messages_sent,
                    errors: s.errors,
                    records_lost: s.records_lost(),
                    spooled_records: s.spooled_records,
                    spooled_bytes: s.spooled_bytes,
                    up: s.connected,
                }
            })
            .collect()
    }

    pub fn sink_metrics(&self) -> Vec<ms::AlertSink> {
        self.alerter
            .stats()
            .into_iter()
            .map(|s| ms::AlertSink {
                // The local log is named by its role, not its path (a label value is for people).
                name: match s.kind {
                    gateway_alerts::SinkKind::Jsonl => config::ALERT_LOG_SINK.to_owned(),
                    _ => s.name,
                },
                sent: s.sent,
                lost: s.lost,
                queued: s.queued as u64,
                up: s.connected,
            })
            .collect()
    }

    /// Events the daemon received but could not attribute (counted with the kernel's losses).
    pub fn unattributed(&self) -> u64 {
        self.unattributed
    }

    /// Shutdown: every flow is reported (forced end) and deleted, exporters and sinks flush.
    pub async fn shutdown(mut self, names: &Names) {
        let mut entries = std::mem::take(&mut self.entries);
        match self.flows.read(&mut entries) {
            Ok(()) => {
                let clock = Clock::now();
                let sweep = self
                    .tracker
                    .finish(entries.iter().map(|e| (e.key, e.value)));
                self.export(&sweep, names, &clock);
            }
            Err(e) => {
                tracing::warn!(error = %crate::engine::chain(&e), "flow table unreadable at shutdown")
            }
        }
        if let Some(m) = self.metrics.take() {
            let _ = m.stop.send(());
            m.task.abort();
        }
        let flush = async {
            for c in self.collectors {
                c.exporter.shutdown().await;
            }
            self.alerter.close(FLUSH_GRACE).await;
        };
        if tokio::time::timeout(FLUSH_GRACE * 2, flush).await.is_err() {
            tracing::warn!("telemetry did not flush in time; what was queued is counted lost");
        }
    }
}

fn start_alerter(settings: &Settings, state_dir: &std::path::Path) -> Alerter {
    match Alerter::start(&config::alerts(&settings.syslog, state_dir)) {
        Ok(a) => a,
        Err(e) => {
            // Only the local file can fail to open here; alerts still go to syslog.
            tracing::error!(error = %crate::engine::chain(&e), "alert sinks: falling back to syslog only");
            let syslog = config::alerts(&settings.syslog, state_dir);
            Alerter::start(&gateway_alerts::AlertsConfig {
                jsonl: Vec::new(),
                syslog: syslog.syslog,
            })
            .unwrap_or_else(|_| Alerter::new(Vec::new(), Vec::new()))
        }
    }
}

fn start_metrics(endpoint: &MetricsEndpoint, snapshot: SharedSnapshot) -> MetricsTask {
    let config = config::metrics(endpoint);
    // Binding is async only in name (the listener is created at once); doing it here lets a bad
    // address or certificate be reported now rather than at the first scrape.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listen = endpoint.listen;
    let task = tokio::spawn(async move {
        let server = match MetricsServer::bind(&config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%listen, error = %crate::engine::chain(&e), "metrics endpoint not started");
                return;
            }
        };
        tracing::info!(%listen, tls = config.tls.is_some(), "metrics endpoint serving /metrics");
        // Started only after the first publish, so there is always a snapshot to serve.
        let Some(first) = snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        let source: gateway_metrics::SnapshotSource = Arc::new(move || {
            snapshot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| first.clone())
        });
        if let Err(e) = server
            .serve(source, async {
                let _ = stopped.await;
            })
            .await
        {
            tracing::error!(%listen, error = %crate::engine::chain(&e), "metrics endpoint failed");
        }
    });
    MetricsTask {
        config: endpoint.clone(),
        stop,
        task,
    }
}
