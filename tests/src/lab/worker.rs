//! A background thread living in a lab namespace (a packet tap, a set of servers): started once its
//! sockets are bound, asked to catch up with what the kernel already queued, stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::netns;

/// How long a worker sleeps in poll(2) when it has nothing to read. Bounds catch-up and stop latency.
pub const IDLE_POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Incremented each time the worker found its sockets empty.
    idle_rounds: Mutex<u64>,
    idle: Condvar,
}

/// What the body of a worker sees.
pub struct WorkerCtx {
    shared: Arc<Shared>,
    ready: Option<SyncSender<()>>,
}

impl WorkerCtx {
    /// Tells [`Worker::start`] that the sockets are bound: traffic sent from now on is seen.
    pub fn ready(&mut self) {
        if let Some(tx) = self.ready.take() {
            let _ = tx.send(());
        }
    }

    pub fn should_stop(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Records that every socket was read until empty.
    pub fn drained(&self) {
        let mut rounds = self
            .shared
            .idle_rounds
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *rounds += 1;
        self.shared.idle.notify_all();
    }
}

pub struct Worker {
    name: String,
    shared: Arc<Shared>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl Worker {
    /// Runs `body` on a thread inside `ns` and returns once it called [`WorkerCtx::ready`].
    pub fn start<F>(ns: &str, name: &str, body: F) -> Result<Worker>
    where
        F: FnOnce(WorkerCtx) -> Result<()> + Send + 'static,
    {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::sync_channel(1);
        let ctx = WorkerCtx {
            shared: Arc::clone(&shared),
            ready: Some(tx),
        };
        let handle = netns::spawn_in_netns(ns, name, move || body(ctx))?;
        let mut worker = Worker {
            name: format!("{name}@{ns}"),
            shared,
            handle: Some(handle),
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => Ok(worker),
            // The body returned (with an error, or without saying ready): report why.
            Err(RecvTimeoutError::Disconnected) => {
                let outcome = worker.join();
                Err(outcome
                    .err()
                    .unwrap_or_else(|| anyhow!("{} ended before it was ready", worker.name)))
            }
            Err(RecvTimeoutError::Timeout) => bail!("{} not ready within 10 s", worker.name),
        }
    }

    /// Waits until the worker has read everything the kernel had queued for it when this was called
    /// (two full drain rounds after the call), at most 2 s.
    pub fn catch_up(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut rounds = self
            .shared
            .idle_rounds
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let target = *rounds + 2;
        while *rounds < target {
            if self.handle.as_ref().is_none_or(|h| h.is_finished()) {
                bail!("{} is not running", self.name);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("{} did not catch up within 2 s", self.name);
            }
            rounds = self
                .shared
                .idle
                .wait_timeout(rounds, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

    /// Stops the worker and returns the error it ended with, if any.
    pub fn stop(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.handle.take() {
            None => Ok(()),
            Some(handle) => handle
                .join()
                .map_err(|_| anyhow!("{} panicked", self.name))?
                .with_context(|| self.name.clone()),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("lab: {e:#}");
        }
    }
}

/// Waits until one of `fds` is readable or [`IDLE_POLL`] passed.
pub fn poll_readable(fds: &mut [libc::pollfd]) -> Result<()> {
    for fd in fds.iter_mut() {
        fd.events = libc::POLLIN;
        fd.revents = 0;
    }
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the duration of the call and
    // its length is passed alongside.
    let rc = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            IDLE_POLL.as_millis() as i32,
        )
    };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("poll");
        }
    }
    Ok(())
}
