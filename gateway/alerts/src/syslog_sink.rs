//! Sending alerts to one syslog receiver: a bounded in-memory queue filled by the caller (never
//! blocked: a full queue counts the alert lost) and drained by one task that keeps a connection
//! up, reconnecting with backoff.
//!
//! Delivery is at least once, as far as TCP can tell: a written batch stays counted in the queue
//! until the receiver's TCP has acknowledged all of it (see [`crate::transport`]); when the
//! connection fails, what was not acknowledged goes back to the head of the queue, in order, and
//! is sent again on the next connection (the receiver may see a few alerts twice). A message that
//! was on [`MAX_ATTEMPTS`] failed connections in a row is dropped and counted lost, so one message
//! that makes the receiver hang up cannot block the queue for ever.
use std::{
    collections::VecDeque,
    io,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    sync::Notify,
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use crate::{
    Alert, AlertsError, SinkKind, SinkStats,
    config::{Backoff, SyslogConfig},
    syslog::{self, Facility},
    transport::{Connection, Connector},
};

/// Failed connections a message may be in flight on before it is dropped.
pub const MAX_ATTEMPTS: u8 = 8;
/// Largest batch written at once (one write, one flush).
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// A connection attempt (TCP and TLS handshake) that takes longer has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A batch the receiver does not take within this time means the receiver is stuck: reconnect.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often to ask the kernel what the receiver acknowledged while batches are in flight.
const ACK_POLL: Duration = Duration::from_millis(100);

/// Why a connection ended (kept as text in the stats).
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("connect to {addr}: no connection within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout { addr: String },
    #[error("write: {0}")]
    Write(#[source] io::Error),
    #[error("write: the receiver took nothing for {WRITE_TIMEOUT:?}")]
    WriteStalled,
    #[error("read: {0}")]
    Read(#[source] io::Error),
    #[error("the receiver closed the connection")]
    Closed,
}

/// One framed message and the failed connections it was in flight on.
struct Message {
    frame: Vec<u8>,
    attempts: u8,
}

/// Messages written in one go; acknowledged once the receiver's TCP acknowledged byte `end`.
struct Flight {
    end: u64,
    messages: Vec<Message>,
}

struct Queue {
    pending: VecDeque<Message>,
    /// Taken by the task and not yet acknowledged; counts against `capacity` so a failed
    /// connection can always put them back.
    in_flight: usize,
    capacity: usize,
}

/// What the caller and the task share.
struct Shared {
    queue: Mutex<Queue>,
    wake: Notify,
    sent: AtomicU64,
    lost: AtomicU64,
    connected: AtomicBool,
    closing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// A poisoned lock only means another thread panicked while holding it; every critical section
/// here leaves the data consistent, so keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn push(&self, frame: Vec<u8>) -> bool {
        let mut q = lock(&self.queue);
        if q.pending.len() + q.in_flight >= q.capacity {
            drop(q);
            self.lost.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        q.pending.push_back(Message { frame, attempts: 0 });
        drop(q);
        self.wake.notify_one();
        true
    }

    /// Moves up to [`MAX_BATCH_BYTES`] (at least one message, if any) from pending to in flight.
    fn take_batch(&self) -> Vec<Message> {
        let mut q = lock(&self.queue);
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(front) = q.pending.front() {
            if !batch.is_empty() && bytes + front.frame.len() > MAX_BATCH_BYTES {
                break;
            }
            bytes += front.frame.len();
            if let Some(m) = q.pending.pop_front() {
                batch.push(m);
            }
        }
        q.in_flight += batch.len();
        batch
    }

    fn acknowledge(&self, n: usize) {
        let mut q = lock(&self.queue);
        q.in_flight = q.in_flight.saturating_sub(n);
        drop(q);
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Puts unacknowledged flights back at the head of the queue, oldest first.
    fn requeue(&self, flights: VecDeque<Flight>) {
        let mut dropped = 0;
        let mut q = lock(&self.queue);
        for flight in flights.into_iter().rev() {
            for mut m in flight.messages.into_iter().rev() {
                q.in_flight = q.in_flight.saturating_sub(1);
                m.attempts = m.attempts.saturating_add(1);
                if m.attempts >= MAX_ATTEMPTS {
                    dropped += 1;
                } else {
                    q.pending.push_front(m);
                }
            }
        }
        drop(q);
        if dropped > 0 {
            self.lost.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    fn is_empty(&self) -> bool {
        let q = lock(&self.queue);
        q.pending.is_empty() && q.in_flight == 0
    }

    /// Counts everything still held as lost (the sink is closing).
    fn abandon(&self) {
        let mut q = lock(&self.queue);
        let n = q.pending.len() + q.in_flight;
        q.pending.clear();
        q.in_flight = 0;
        drop(q);
        self.lost.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn set_error(&self, e: &LinkError) {
        *lock(&self.last_error) = Some(e.to_string());
    }
}

/// Alerts to one syslog receiver over TCP or TLS; see the module documentation.
pub struct SyslogSink {
    name: String,
    facility: Facility,
    procid: u32,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SyslogSink {
    /// Starts the destination's task on the current tokio runtime. Fails on a bad configuration
    /// (unreadable TLS files, bad server name, empty queue), never because the receiver is down.
    pub fn start(config: SyslogConfig) -> Result<SyslogSink, AlertsError> {
        if config.queue == 0 {
            return Err(AlertsError::ZeroQueue { name: config.name });
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|source| AlertsError::NoRuntime {
                name: config.name.clone(),
                source,
            })?;
        let connector = Connector::new(&config.transport, &config.name)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                in_flight: 0,
                capacity: config.queue,
            }),
            wake: Notify::new(),
            sent: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            last_error: Mutex::new(None),
        });
        let task = runtime.spawn(run(
            Arc::clone(&shared),
            connector,
            config.name.clone(),
            config.addr,
            config.backoff,
        ));
        Ok(SyslogSink {
            name: config.name,
            facility: config.facility,
            procid: std::process::id(),
            shared,
            task: Some(task),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues the alert; `false` (and counted lost) if the queue is full. Never waits.
    pub fn send(&self, alert: &Alert) -> bool {
        let message = syslog::format_rfc5424(alert, self.facility, self.procid);
        self.shared.push(syslog::frame(message.as_bytes()))
    }

    /// Queues a control-plane notice (MSGID = its kind); `false` (and counted lost) if the queue
    /// is full. Never waits.
    pub fn send_notice(&self, notice: &crate::Notice) -> bool {
        let message = notice.to_rfc5424(self.facility, self.procid);
        self.shared.push(syslog::frame(message.as_bytes()))
    }

    pub fn stats(&self) -> SinkStats {
        let queued = {
            let q = lock(&self.shared.queue);
            q.pending.len() + q.in_flight
        };
        SinkStats {
            name: self.name.clone(),
            kind: SinkKind::Syslog,
            sent: self.shared.sent.load(Ordering::Relaxed),
            lost: self.shared.lost.load(Ordering::Relaxed),
            queued,
            connected: self.shared.connected.load(Ordering::Relaxed),
            last_error: lock(&self.shared.last_error).clone(),
        }
    }

    /// Sends what is queued for up to `grace` (until the receiver acknowledged it), then closes
    /// the connection; whatever is still held then is counted lost. Returns the final stats.
    pub async fn close(self, grace: Duration) -> SinkStats {
        self.begin_close();
        self.finish_close(tokio::time::Instant::now() + grace).await
    }

    /// Tells the task to deliver what it holds and stop; see [`SyslogSink::close`].
    pub(crate) fn begin_close(&self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    /// Waits for the task until `deadline`, then stops it and counts what is left as lost.
    pub(crate) async fn finish_close(mut self, deadline: tokio::time::Instant) -> SinkStats {
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout_at(deadline, &mut task).await.is_err()
        {
            task.abort();
            // Wait for the abort to land so the task no longer touches the queue.
            let _ = task.await;
        }
        self.shared.abandon();
        self.shared.connected.store(false, Ordering::Relaxed);
        self.stats()
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The destination's task: connect, pump, and after a failure wait and reconnect.
async fn run(
    shared: Arc<Shared>,
    connector: Connector,
    name: String,
    addr: String,
    backoff: Backoff,
) {
    let mut delay = backoff.initial;
    let mut failures_in_a_row = 0u32;
    loop {
        let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(&addr)).await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(source)) => Err(LinkError::Connect {
                addr: addr.clone(),
                source,
            }),
            Err(_) => Err(LinkError::ConnectTimeout { addr: addr.clone() }),
        };
        match connection {
            Ok(mut conn) => {
                info!(sink = %name, %addr, "syslog receiver connected");
                shared.connected.store(true, Ordering::Relaxed);
                delay = backoff.initial;
                failures_in_a_row = 0;
                let outcome = pump(&shared, &mut conn).await;
                shared.connected.store(false, Ordering::Relaxed);
                match outcome {
                    Ok(()) => {
                        info!(sink = %name, "syslog sink closed");
                        return;
                    }
                    Err(e) => {
                        warn!(sink = %name, error = %e, "syslog connection lost");
                        shared.set_error(&e);
                    }
                }
            }
            Err(e) => {
                // Say it once loudly, then quietly while the receiver stays away.
                if failures_in_a_row == 0 {
                    warn!(sink = %name, error = %e, "syslog receiver unreachable");
                } else {
                    debug!(sink = %name, error = %e, "syslog receiver still unreachable");
                }
                failures_in_a_row += 1;
                shared.set_error(&e);
            }
        }
        // Wait out the backoff. New alerts do not cut it short (that would turn a flood of
        // alerts into a flood of connection attempts); closing with nothing to deliver does.
        let retry_at = tokio::time::Instant::now() + delay;
        loop {
            if shared.closing.load(Ordering::Relaxed) && shared.is_empty() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(retry_at) => break,
                () = shared.wake.notified() => {}
            }
        }
        delay = (delay * 2).min(backoff.max);
    }
}

/// Writes batches while the connection holds. `Ok` once closing and everything is acknowledged;
/// on a failure the unacknowledged messages are back in the queue.
async fn pump(shared: &Shared, conn: &mut Connection) -> Result<(), LinkError> {
    let mut flights: VecDeque<Flight> = VecDeque::new();
    // Receivers send nothing; reading only notices that they hung up.
    let mut scratch = [0u8; 256];
    let result = loop {
        settle(shared, conn, &mut flights);
        let batch = shared.take_batch();
        if batch.is_empty() {
            if shared.closing.load(Ordering::Relaxed) && flights.is_empty() {
                // close_notify for TLS, FIN for both; the data is already acknowledged.
                let _ = conn.shutdown().await;
                break Ok(());
            }
            tokio::select! {
                () = shared.wake.notified() => {}
                read = conn.read(&mut scratch) => match read {
                    Ok(0) => break Err(LinkError::Closed),
                    Ok(_) => {}
                    Err(e) => break Err(LinkError::Read(e)),
                },
                () = tokio::time::sleep(ACK_POLL), if !flights.is_empty() => {}
            }
            continue;
        }
        let mut bytes = Vec::with_capacity(batch.iter().map(|m| m.frame.len()).sum());
        for m in &batch {
            bytes.extend_from_slice(&m.frame);
        }
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            conn.write_all(&bytes).await?;
            conn.flush().await
        })
        .await;
        let outcome = match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(LinkError::Write(e)),
            Err(_) => Err(LinkError::WriteStalled),
        };
        // A batch written only in part is never acknowledged (end = MAX): its bytes that did go
        // out end before the ones that did not.
        let end = if outcome.is_ok() {
            conn.written()
        } else {
            u64::MAX
        };
        flights.push_back(Flight {
            end,
            messages: batch,
        });
        if let Err(e) = outcome {
            break Err(e);
        }
    };
    if result.is_err() {
        settle(shared, conn, &mut flights);
        shared.requeue(flights);
    }
    result
}

/// Retires the flights the receiver's TCP has acknowledged entirely.
fn settle(shared: &Shared, conn: &Connection, flights: &mut VecDeque<Flight>) {
    let Some(acknowledged) = conn.acknowledged() else {
        return;
    };
    let mut n = 0;
    while let Some(front) = flights.front() {
        if front.end > acknowledged {
            break;
        }
        n += front.messages.len();
        flights.pop_front();
    }
    if n > 0 {
        shared.acknowledge(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(capacity: usize) -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                in_flight: 0,
                capacity,
            }),
            wake: Notify::new(),
            sent: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }

    fn frames(s: &Shared) -> Vec<Vec<u8>> {
        lock(&s.queue)
            .pending
            .iter()
            .map(|m| m.frame.clone())
            .collect()
    }

    #[test]
    fn in_flight_counts_against_the_bound_and_requeues_in_order() {
        let s = shared(3);
        assert!(s.push(b"a".to_vec()));
        assert!(s.push(b"b".to_vec()));
        let batch = s.take_batch();
        assert_eq!(batch.len(), 2);
        assert!(s.push(b"c".to_vec()));
        // a, b in flight + c waiting = 3: full.
        assert!(!s.push(b"d".to_vec()));
        assert_eq!(s.lost.load(Ordering::Relaxed), 1);
        s.requeue(VecDeque::from([Flight {
            end: 0,
            messages: batch,
        }]));
        assert_eq!(frames(&s), [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(lock(&s.queue).in_flight, 0);
        let batch = s.take_batch();
        assert_eq!(batch.len(), 3);
        s.acknowledge(3);
        assert_eq!(s.sent.load(Ordering::Relaxed), 3);
        assert!(s.push(b"e".to_vec()));
    }

    #[test]
    fn a_message_failing_too_often_is_dropped_and_counted() {
        let s = shared(10);
        assert!(s.push(b"poison".to_vec()));
        for attempt in 1..=MAX_ATTEMPTS {
            let batch = s.take_batch();
            assert_eq!(batch.len(), 1, "attempt {attempt}");
            s.requeue(VecDeque::from([Flight {
                end: u64::MAX,
                messages: batch,
            }]));
        }
        assert!(frames(&s).is_empty());
        assert_eq!(s.lost.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn batches_are_bounded_in_bytes() {
        let s = shared(1000);
        for _ in 0..100 {
            assert!(s.push(vec![b'x'; 1000]));
        }
        let batch = s.take_batch();
        assert_eq!(batch.len(), MAX_BATCH_BYTES / 1000);
        // A message larger than the limit still goes, alone.
        let s = shared(10);
        assert!(s.push(vec![b'x'; MAX_BATCH_BYTES + 1]));
        assert!(s.push(b"y".to_vec()));
        assert_eq!(s.take_batch().len(), 1);
    }
}
