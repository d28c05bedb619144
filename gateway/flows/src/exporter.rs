//! One exporter task per collector.
//!
//! The daemon hands each [`Exporter`] batches of records through a bounded queue; [`Exporter::send`]
//! never waits: when the queue is full the batch is dropped and counted. The task encodes the batches
//! in the collector's format and sends them:
//!
//! - **UDP**: templates at start and every `template_refresh` (RFC 7011 §8.4, RFC 3954 §9), messages
//!   of at most [`crate::ipfix::UDP_MAX_MESSAGE`] octets. No spool: UDP cannot tell that a collector
//!   is down.
//! - **TCP / TLS** (IPFIX only): templates at each connection, then the data. When the connection
//!   fails or the collector closes it, the task reconnects with exponential backoff
//!   ([`BACKOFF_MIN`]..[`BACKOFF_MAX`]). Meanwhile records go to the disk spool if one is configured
//!   (else they are counted lost), and once the spool holds anything every new batch queues behind
//!   it, so the collector receives records in the order they were handed over. Delivery is
//!   at-least-once: a message whose write failed is sent again from the spool; what the kernel had
//!   accepted before the connection died is gone (IPFIX over TCP has no acknowledgements).
//!
//! Statistics are atomics shared with every [`ExporterHandle`], read as an [`ExportStats`] snapshot.
use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use gateway_tls::Identity;
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_rustls::rustls::pki_types::{InvalidDnsNameError, ServerName};

use crate::{
    FlowEncoder, FlowRecord, Format,
    ipfix::UDP_MAX_MESSAGE,
    spool::{Spool, SpoolConfig, SpoolError},
    task::Task,
    transport::Connector,
};

/// Batches the queue holds before [`Exporter::send`] starts dropping.
pub const QUEUE_BATCHES: usize = 256;
/// Message size on TCP/TLS (fewer, larger messages; IPFIX allows up to 65535).
pub const STREAM_MAX_MESSAGE: usize = 16 * 1024;
/// First reconnect delay; doubles per failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A write that takes longer means the collector stopped reading: reconnect.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the exporter reaches its collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS over TCP, trusting only the CAs in `ca`, presenting `identity` if the collector wants a
    /// client certificate, and checking the collector's certificate against `server_name`.
    Tls {
        ca: PathBuf,
        identity: Option<Identity>,
        server_name: String,
    },
}

/// One collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectorConfig {
    /// For logs and metrics.
    pub name: String,
    pub format: Format,
    pub transport: Transport,
    pub addr: SocketAddr,
    /// UDP only: how often the templates are sent again (streams send them once per connection).
    pub template_refresh: Duration,
    /// IPFIX observation domain id / NetFlow v9 source id.
    pub observation_domain: u32,
    /// TCP/TLS only: where records wait while the collector is down.
    pub spool: Option<SpoolConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "collector {name}: NetFlow v9 messages carry no length, so they cannot be framed on a TCP or TLS stream; use IPFIX, or UDP"
    )]
    NetflowV9OverStream { name: String },
    #[error(
        "collector {name}: a spool needs a TCP or TLS collector (over UDP a collector that is down cannot be noticed)"
    )]
    SpoolOverUdp { name: String },
    #[error("collector {name}: template_refresh must be longer than zero")]
    NoTemplateRefresh { name: String },
    #[error("collector {name}: TLS: {source}")]
    Tls {
        name: String,
        #[source]
        source: gateway_tls::TlsError,
    },
    #[error("collector {name}: TLS server name {server_name:?}: {source}")]
    ServerName {
        name: String,
        server_name: String,
        #[source]
        source: InvalidDnsNameError,
    },
    #[error("collector {name}: UDP socket: {source}")]
    Socket {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("collector {name}: {source}")]
    Spool {
        name: String,
        #[source]
        source: SpoolError,
    },
    #[error("collector {name}: an exporter must be started inside a tokio runtime")]
    NoRuntime { name: String },
}

/// A snapshot of one exporter's counters (absolute values since it started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Data records written to the socket.
    pub records_sent: u64,
    pub bytes_sent: u64,
    /// Messages (datagrams, or frames on the stream), templates included.
    pub messages_sent: u64,
    /// Failed sends, connects, writes and spool operations.
    pub errors: u64,
    /// Records dropped because the queue was full (or the exporter had stopped).
    pub lost_queue_full: u64,
    /// Records dropped from the spool to stay within its bound (oldest first).
    pub lost_spool_overflow: u64,
    /// Records that could not be sent nor spooled (collector down without a spool, UDP send error,
    /// spool write error).
    pub lost_undeliverable: u64,
    /// Records in the spool now.
    pub spooled_records: u64,
    /// Size of the spool now, octets.
    pub spooled_bytes: u64,
    /// TCP/TLS: connected to the collector now. UDP: the socket is open.
    pub connected: bool,
}

impl ExportStats {
    /// Every record lost, whatever the cause.
    pub fn records_lost(&self) -> u64 {
        self.lost_queue_full + self.lost_spool_overflow + self.lost_undeliverable
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) records_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) messages_sent: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) lost_queue_full: AtomicU64,
    pub(crate) lost_spool_overflow: AtomicU64,
    pub(crate) lost_undeliverable: AtomicU64,
    pub(crate) spooled_records: AtomicU64,
    pub(crate) spooled_bytes: AtomicU64,
    pub(crate) connected: AtomicBool,
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> ExportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExportStats {
            records_sent: get(&self.records_sent),
            bytes_sent: get(&self.bytes_sent),
            messages_sent: get(&self.messages_sent),
            errors: get(&self.errors),
            lost_queue_full: get(&self.lost_queue_full),
            lost_spool_overflow: get(&self.lost_spool_overflow),
            lost_undeliverable: get(&self.lost_undeliverable),
            spooled_records: get(&self.spooled_records),
            spooled_bytes: get(&self.spooled_bytes),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn spool_level(&self, spool: &Spool) {
        self.spooled_records
            .store(spool.records(), Ordering::Relaxed);
        self.spooled_bytes.store(spool.bytes(), Ordering::Relaxed);
    }
}

/// The sending side of an exporter: cheap to clone, usable from any task.
#[derive(Clone, Debug)]
pub struct ExporterHandle {
    name: Arc<str>,
    tx: mpsc::Sender<Arc<[FlowRecord]>>,
    counters: Arc<Counters>,
}

impl ExporterHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues a batch without waiting. Returns false (and counts the records lost) when the queue
    /// is full or the exporter has stopped.
    pub fn send(&self, batch: Arc<[FlowRecord]>) -> bool {
        match self.tx.try_send(batch) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(b)) => {
                add(&self.counters.lost_queue_full, b.len() as u64);
                false
            }
            Err(mpsc::error::TrySendError::Closed(b)) => {
                add(&self.counters.lost_queue_full, b.len() as u64);
                false
            }
        }
    }

    pub fn stats(&self) -> ExportStats {
        self.counters.snapshot()
    }
}

/// A running exporter task. Dropping it stops the task too (like [`Exporter::shutdown`], without
/// waiting).
#[derive(Debug)]
pub struct Exporter {
    handle: ExporterHandle,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Exporter {
    /// Checks the configuration, opens the UDP socket or the spool, and starts the task (inside the
    /// current tokio runtime). Stream collectors are connected by the task, with retries.
    pub fn spawn(config: CollectorConfig) -> Result<Exporter, ExportError> {
        let name = config.name.clone();
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ExportError::NoRuntime { name: name.clone() })?;
        if config.template_refresh.is_zero() {
            return Err(ExportError::NoTemplateRefresh { name });
        }
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
        let (stop_tx, stop_rx) = oneshot::channel();
        let max_message = match config.transport {
            Transport::Udp => UDP_MAX_MESSAGE,
            Transport::Tcp | Transport::Tls { .. } => STREAM_MAX_MESSAGE,
        };
        let task = Task::new(
            name.clone(),
            config.addr,
            FlowEncoder::new(config.format, config.observation_domain, max_message),
            counters.clone(),
            rx,
            stop_rx,
        );
        let connector = match &config.transport {
            Transport::Udp => None,
            Transport::Tcp => Some(Connector::Tcp),
            Transport::Tls {
                ca,
                identity,
                server_name,
            } => {
                let tls = gateway_tls::client_config(ca, identity.as_ref()).map_err(|source| {
                    ExportError::Tls {
                        name: name.clone(),
                        source,
                    }
                })?;
                let sn = ServerName::try_from(server_name.clone()).map_err(|source| {
                    ExportError::ServerName {
                        name: name.clone(),
                        server_name: server_name.clone(),
                        source,
                    }
                })?;
                Some(Connector::tls(tls, sn))
            }
        };
        let join = match connector {
            None => {
                if config.spool.is_some() {
                    return Err(ExportError::SpoolOverUdp { name });
                }
                let socket = udp_socket(config.addr).map_err(|source| ExportError::Socket {
                    name: name.clone(),
                    source,
                })?;
                counters.connected.store(true, Ordering::Relaxed);
                runtime.spawn(task.run_udp(socket, config.template_refresh))
            }
            Some(connector) => {
                if config.format == Format::NetflowV9 {
                    return Err(ExportError::NetflowV9OverStream { name });
                }
                let spool =
                    config
                        .spool
                        .as_ref()
                        .map(Spool::open)
                        .transpose()
                        .map_err(|source| ExportError::Spool {
                            name: name.clone(),
                            source,
                        })?;
                if let Some(s) = &spool {
                    counters.spool_level(s);
                }
                runtime.spawn(task.run_stream(connector, spool))
            }
        };
        Ok(Exporter {
            handle: ExporterHandle {
                name: name.into(),
                tx,
                counters,
            },
            stop: Some(stop_tx),
            task: join,
        })
    }

    /// A sending handle for other tasks.
    pub fn handle(&self) -> ExporterHandle {
        self.handle.clone()
    }

    /// See [`ExporterHandle::send`].
    pub fn send(&self, batch: Arc<[FlowRecord]>) -> bool {
        self.handle.send(batch)
    }

    pub fn stats(&self) -> ExportStats {
        self.handle.stats()
    }

    /// Stops taking batches, sends or spools what is queued, closes the connection and returns the
    /// final statistics. The spool stays on disk for the next exporter.
    pub async fn shutdown(mut self) -> ExportStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::error!(collector = %self.handle.name, "exporter task failed: {e}");
        }
        self.handle.stats()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        // Dropping the sender ends the task as a stop request would (the oneshot closes).
        self.stop.take();
    }
}

fn udp_socket(collector: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match collector {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(local)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_records::sample_records;

    fn udp_config(addr: SocketAddr) -> CollectorConfig {
        CollectorConfig {
            name: "unit".to_owned(),
            format: Format::Ipfix,
            transport: Transport::Udp,
            addr,
            template_refresh: Duration::from_secs(60),
            observation_domain: 1,
            spool: None,
        }
    }

    /// On a current-thread runtime the task does not run until the test yields, so the queue fills
    /// deterministically.
    #[tokio::test]
    async fn a_full_queue_drops_whole_batches_and_counts_their_records() {
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("sink");
        let exporter =
            Exporter::spawn(udp_config(sink.local_addr().expect("addr"))).expect("exporter");
        let batch: Arc<[FlowRecord]> = Arc::from(&sample_records()[..3]);
        let accepted = (0..QUEUE_BATCHES + 10)
            .filter(|_| exporter.send(batch.clone()))
            .count();
        assert_eq!(accepted, QUEUE_BATCHES);
        assert_eq!(exporter.stats().lost_queue_full, 30);
        let stats = exporter.shutdown().await;
        assert_eq!(stats.records_sent, 3 * QUEUE_BATCHES as u64);
        assert_eq!(stats.records_lost(), 30);
        assert!(!stats.connected, "closed after shutdown");
    }

    #[tokio::test]
    async fn refuses_configurations_that_cannot_work() {
        let addr: SocketAddr = "127.0.0.1:4739".parse().expect("addr");
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Some(SpoolConfig {
            dir: dir.path().to_owned(),
            max_bytes: 1 << 20,
        });
        let v9_tcp = CollectorConfig {
            format: Format::NetflowV9,
            transport: Transport::Tcp,
            ..udp_config(addr)
        };
        assert!(matches!(
            Exporter::spawn(v9_tcp),
            Err(ExportError::NetflowV9OverStream { .. })
        ));
        let udp_spool = CollectorConfig {
            spool: spool.clone(),
            ..udp_config(addr)
        };
        assert!(matches!(
            Exporter::spawn(udp_spool),
            Err(ExportError::SpoolOverUdp { .. })
        ));
        let no_refresh = CollectorConfig {
            template_refresh: Duration::ZERO,
            ..udp_config(addr)
        };
        assert!(matches!(
            Exporter::spawn(no_refresh),
            Err(ExportError::NoTemplateRefresh { .. })
        ));
        let missing_ca = CollectorConfig {
            transport: Transport::Tls {
                ca: dir.path().join("missing.pem"),
                identity: None,
                server_name: "collector.test".to_owned(),
            },
            ..udp_config(addr)
        };
        let e = Exporter::spawn(missing_ca).expect_err("missing CA");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let tiny_spool = CollectorConfig {
            transport: Transport::Tcp,
            spool: Some(SpoolConfig {
                dir: dir.path().to_owned(),
                max_bytes: 10,
            }),
            ..udp_config(addr)
        };
        assert!(matches!(
            Exporter::spawn(tiny_spool),
            Err(ExportError::Spool { .. })
        ));
    }

    #[test]
    fn needs_a_runtime() {
        let addr: SocketAddr = "127.0.0.1:4739".parse().expect("addr");
        assert!(matches!(
            Exporter::spawn(udp_config(addr)),
            Err(ExportError::NoRuntime { .. })
        ));
    }
}
