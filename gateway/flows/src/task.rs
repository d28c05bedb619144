//! The exporter task: encodes the queued batches and sends them over UDP, or over a TCP/TLS
//! connection that it keeps up (reconnecting with backoff) with the spool behind it. See
//! [`crate::exporter`] for the behaviour; this is its implementation.
use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::UdpSocket,
    sync::{mpsc, oneshot},
    time::{Instant, sleep_until, timeout},
};

use crate::{
    Encoded, FlowEncoder, FlowRecord,
    exporter::{BACKOFF_MAX, BACKOFF_MIN, Counters, WRITE_TIMEOUT, add},
    spool::Spool,
    transport::{BoxStream, ConnectError, Connector},
};

/// When to try the collector again: the delay doubles per failure, from [`BACKOFF_MIN`] to
/// [`BACKOFF_MAX`], and starts over only after a connection that lasted [`BACKOFF_MAX`] (so a
/// collector that accepts and drops at once is not hammered).
#[derive(Debug)]
struct Backoff {
    delay: Duration,
    retry_at: Instant,
    /// Failed attempts since the last connection that lasted.
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            delay: BACKOFF_MIN,
            retry_at: Instant::now(),
            failures: 0,
        }
    }
}

impl Backoff {
    fn failed(&mut self) {
        self.failures += 1;
        self.retry_at = Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
    }

    /// A connection ended after `up`.
    fn lost(&mut self, up: Duration) {
        if up >= BACKOFF_MAX {
            self.delay = BACKOFF_MIN;
            self.failures = 0;
        }
        self.failed();
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<BoxStream, ConnectError>> + Send>>;

/// The state of one exporter task.
pub(crate) struct Task {
    name: String,
    addr: SocketAddr,
    encoder: FlowEncoder,
    /// Reused for every batch.
    out: Encoded,
    counters: Arc<Counters>,
    rx: mpsc::Receiver<Arc<[FlowRecord]>>,
    stop: oneshot::Receiver<()>,
    stopping: bool,
}

/// Waits on an optional future; never completes when there is none.
async fn maybe<F: Future + Unpin>(f: &mut Option<F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Reads (and discards) what the collector sends; `Ok(0)` is its close. Pending without a connection.
async fn read_from(conn: &mut Option<BoxStream>, buf: &mut [u8]) -> io::Result<usize> {
    match conn {
        Some(s) => s.read(buf).await,
        None => std::future::pending().await,
    }
}

impl Task {
    pub(crate) fn new(
        name: String,
        addr: SocketAddr,
        encoder: FlowEncoder,
        counters: Arc<Counters>,
        rx: mpsc::Receiver<Arc<[FlowRecord]>>,
        stop: oneshot::Receiver<()>,
    ) -> Task {
        Task {
            name,
            addr,
            encoder,
            out: Encoded::new(),
            counters,
            rx,
            stop,
            stopping: false,
        }
    }

    /// A stop request (or the [`Exporter`] dropped): take no more batches, finish the queued ones.
    fn begin_stop(&mut self) {
        self.stopping = true;
        self.rx.close();
    }

    fn sent(&self, bytes: usize, messages: usize, records: u64) {
        add(&self.counters.bytes_sent, bytes as u64);
        add(&self.counters.messages_sent, messages as u64);
        add(&self.counters.records_sent, records);
    }

    fn error(&self) {
        add(&self.counters.errors, 1);
    }

    // ---- UDP -------------------------------------------------------------------------------------

    pub(crate) async fn run_udp(mut self, socket: UdpSocket, refresh: Duration) {
        self.out.clear();
        self.encoder
            .encode_templates(SystemTime::now(), &mut self.out);
        self.send_datagrams(&socket).await;
        let mut next_templates = Instant::now() + refresh;
        loop {
            tokio::select! {
                batch = self.rx.recv() => match batch {
                    Some(batch) => {
                        self.out.clear();
                        self.encoder.encode(&batch, SystemTime::now(), &mut self.out);
                        self.send_datagrams(&socket).await;
                    }
                    None => break,
                },
                () = sleep_until(next_templates) => {
                    self.out.clear();
                    self.encoder.encode_templates(SystemTime::now(), &mut self.out);
                    self.send_datagrams(&socket).await;
                    next_templates = Instant::now() + refresh;
                }
                _ = &mut self.stop, if !self.stopping => self.begin_stop(),
            }
        }
        self.counters.connected.store(false, Ordering::Relaxed);
    }

    /// Sends each message of `self.out` as one datagram.
    async fn send_datagrams(&self, socket: &UdpSocket) {
        for m in self.out.messages() {
            match socket.send_to(m.bytes, self.addr).await {
                Ok(n) => self.sent(n, 1, u64::from(m.records)),
                Err(e) => {
                    self.error();
                    add(&self.counters.lost_undeliverable, u64::from(m.records));
                    tracing::warn!(collector = %self.name, "UDP send to {}: {e}", self.addr);
                }
            }
        }
    }

    // ---- TCP / TLS -------------------------------------------------------------------------------

    pub(crate) async fn run_stream(mut self, connector: Connector, mut spool: Option<Spool>) {
        let mut conn: Option<BoxStream> = None;
        let mut connecting: Option<Connecting> = None;
        let mut backoff = Backoff::default();
        let mut up_since: Option<Instant> = None;
        let mut scratch = [0u8; 256];
        loop {
            // However the connection was lost (close, write error, timeout), wait before the next try.
            if conn.is_none()
                && let Some(since) = up_since.take()
            {
                backoff.lost(since.elapsed());
            }
            let idle = conn.is_none() && connecting.is_none() && !self.stopping;
            if idle && Instant::now() >= backoff.retry_at {
                connecting = Some(Box::pin(connector.clone().connect(self.addr)));
            }
            let waiting = conn.is_none() && connecting.is_none() && !self.stopping;
            let drain = conn.is_some() && spool.as_ref().is_some_and(|s| !s.is_empty());
            // Without a spool, batches wait in the queue while a connection attempt is under way
            // instead of being lost: a collector that is just being reached gets them.
            let take = conn.is_some() || spool.is_some() || connecting.is_none();
            tokio::select! {
                batch = self.rx.recv(), if take => match batch {
                    Some(batch) => self.stream_batch(&mut conn, &mut spool, &batch).await,
                    None => break,
                },
                result = maybe(&mut connecting) => {
                    connecting = None;
                    match result {
                        Ok(stream) => {
                            conn = Some(stream);
                            if self.start_session(&mut conn).await {
                                tracing::info!(collector = %self.name, "connected to {}", self.addr);
                                up_since = Some(Instant::now());
                            } else {
                                backoff.failed();
                            }
                        }
                        Err(e) => {
                            self.error();
                            // The first failure in a row is worth a warning, the repeats are not.
                            if backoff.failures == 0 {
                                tracing::warn!(collector = %self.name, "{e}; retrying with backoff");
                            } else {
                                tracing::debug!(collector = %self.name, "{e}");
                            }
                            backoff.failed();
                        }
                    }
                }
                () = sleep_until(backoff.retry_at), if waiting => {}
                read = read_from(&mut conn, &mut scratch) => {
                    // Collectors send nothing; end of stream or an error means it is gone.
                    if !matches!(read, Ok(n) if n > 0) {
                        tracing::warn!(collector = %self.name, "collector closed the connection");
                        self.disconnect(&mut conn);
                    }
                }
                () = std::future::ready(()), if drain => {
                    if let Some(s) = spool.as_mut() {
                        self.drain_one(&mut conn, s).await;
                    }
                }
                _ = &mut self.stop, if !self.stopping => self.begin_stop(),
            }
        }
        // Stopped and the queue is empty: what the spool holds stays for the next exporter.
        if let Some(Err(e)) = spool.as_mut().map(Spool::flush) {
            self.error();
            tracing::error!(collector = %self.name, "{e}");
        }
        if let Some(mut stream) = conn.take() {
            // TLS close_notify, then FIN: the collector sees a clean end of the session.
            let _ = timeout(WRITE_TIMEOUT, stream.shutdown()).await;
        }
        self.counters.connected.store(false, Ordering::Relaxed);
    }

    fn disconnect(&self, conn: &mut Option<BoxStream>) {
        *conn = None;
        self.counters.connected.store(false, Ordering::Relaxed);
    }

    /// A new connection: sequence numbers restart and the templates go first. False (and
    /// disconnected) if that write failed.
    async fn start_session(&mut self, conn: &mut Option<BoxStream>) -> bool {
        self.encoder.restart_session();
        self.out.clear();
        self.encoder
            .encode_templates(SystemTime::now(), &mut self.out);
        if self.write_out(conn).await {
            self.counters.connected.store(true, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Writes all of `self.out`; on failure counts the error and drops the connection.
    async fn write_out(&self, conn: &mut Option<BoxStream>) -> bool {
        let Some(stream) = conn.as_mut() else {
            return false;
        };
        let bytes = self.out.bytes();
        let write = async {
            stream.write_all(bytes).await?;
            // TLS buffers records until flushed.
            stream.flush().await
        };
        let result = match timeout(WRITE_TIMEOUT, write).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "collector stopped reading",
            )),
        };
        match result {
            Ok(()) => {
                self.sent(
                    bytes.len(),
                    self.out.message_count(),
                    self.out.record_count(),
                );
                true
            }
            Err(e) => {
                self.error();
                tracing::warn!(collector = %self.name, "write to {}: {e}", self.addr);
                self.disconnect(conn);
                false
            }
        }
    }

    /// A batch from the queue: straight to the collector when connected and nothing is spooled,
    /// else into the spool (or lost without one).
    async fn stream_batch(
        &mut self,
        conn: &mut Option<BoxStream>,
        spool: &mut Option<Spool>,
        batch: &[FlowRecord],
    ) {
        let behind_spool = spool.as_ref().is_some_and(|s| !s.is_empty());
        if conn.is_some() && !behind_spool {
            self.out.clear();
            self.encoder.encode(batch, SystemTime::now(), &mut self.out);
            if self.write_out(conn).await {
                return;
            }
        }
        self.spool_or_lose(spool, batch);
    }

    fn spool_or_lose(&self, spool: &mut Option<Spool>, batch: &[FlowRecord]) {
        let Some(s) = spool.as_mut() else {
            add(&self.counters.lost_undeliverable, batch.len() as u64);
            return;
        };
        match s.push(batch) {
            Ok(dropped) => add(&self.counters.lost_spool_overflow, dropped),
            Err(e) => {
                self.error();
                add(&self.counters.lost_undeliverable, batch.len() as u64);
                tracing::error!(collector = %self.name, "{e}");
            }
        }
        self.counters.spool_level(s);
    }

    /// Sends the oldest spool segment and deletes it once written.
    async fn drain_one(&mut self, conn: &mut Option<BoxStream>, spool: &mut Spool) {
        let batch = match spool.oldest() {
            Ok(Some(batch)) => batch,
            Ok(None) => return,
            Err(e) => {
                self.error();
                tracing::error!(collector = %self.name, "{e}: dropping the segment");
                match spool.discard_oldest() {
                    Ok(n) => add(&self.counters.lost_undeliverable, n),
                    Err(e) => tracing::error!(collector = %self.name, "{e}"),
                }
                self.counters.spool_level(spool);
                return;
            }
        };
        self.out.clear();
        self.encoder
            .encode(&batch.records, SystemTime::now(), &mut self.out);
        if self.write_out(conn).await {
            if let Err(e) = spool.remove(batch.id) {
                self.error();
                tracing::error!(collector = %self.name, "{e}");
            }
            self.counters.spool_level(spool);
        }
    }
}
