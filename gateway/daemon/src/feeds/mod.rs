//! Remote feeds (`[[feed]] url = "https://…"`): one tokio task per feed downloads it on its
//! schedule; a download is parsed with the same parser as local feeds BEFORE it is used, and only a
//! complete, parsed list of at least `min_entries` entries replaces the last good copy (stored
//! atomically, see [`store`]). The engine then recompiles and applies the running policy the way
//! SIGHUP does. A failed download of any kind changes nothing that is enforced: it raises an
//! alert, shows in metrics and `gatewayctl status`, and is retried with backoff ([`schedule`]).
//!
//! Tasks tell the engine what happened through a channel ([`FeedEvent`]); gatewayd runs
//! [`serve_events`], which hands each event to [`crate::engine::Engine::on_feed_event`] (the
//! engine is locked only there, never by a download).
pub mod http;
pub mod notice;
pub mod schedule;
pub mod store;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use gateway_metrics::snapshot::FeedFailure;
use gateway_policy::remote::RemoteFeed;
use tokio::sync::{Notify, mpsc};

use self::{
    http::{Answer, FetchError, Get},
    schedule::{AlertKind, FeedState, Outcome},
    store::{Meta, Store},
};

/// What a feed task reports to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEvent {
    pub feed: String,
    pub url: String,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A new good list is stored: recompile and apply.
    Updated { entries: u64 },
    /// A download was refused; `kept` = entries of the last good copy still in force (`None`:
    /// there is none, the feed blocks nothing yet).
    Failed {
        error: FetchError,
        kept: Option<u64>,
    },
    /// Good again after `after` failed attempts.
    Recovered { after: u32 },
}

/// What the engine shows of one remote feed.
#[derive(Clone, Debug)]
pub struct RemoteStatus {
    pub url: String,
    pub state: FeedState,
}

type SharedStatus = Arc<Mutex<BTreeMap<String, RemoteStatus>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Running {
    config: RemoteFeed,
    kick: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// The fetch tasks of the policy in force.
pub struct FeedManager {
    store: Store,
    runtime: tokio::runtime::Handle,
    events: mpsc::UnboundedSender<FeedEvent>,
    running: BTreeMap<String, Running>,
    status: SharedStatus,
}

impl FeedManager {
    /// Last good copies live in `dir`. Must be called inside the tokio runtime.
    pub fn new(dir: PathBuf) -> (FeedManager, mpsc::UnboundedReceiver<FeedEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let manager = FeedManager {
            store: Store::new(dir),
            runtime: tokio::runtime::Handle::current(),
            events,
            running: BTreeMap::new(),
            status: Arc::default(),
        };
        (manager, rx)
    }

    /// Where the compiler finds the last good copies.
    pub fn store_dir(&self) -> &Path {
        self.store.dir()
    }

    /// Runs one task per feed of `feeds`: unchanged feeds keep their task (and schedule), changed
    /// ones restart (fetching at once), removed ones stop. Their stored copies stay on disk.
    pub fn reconfigure(&mut self, feeds: &[RemoteFeed]) {
        let keep: Vec<&str> = feeds.iter().map(|f| f.name.as_str()).collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| !keep.contains(&name.as_str()) || !feeds.contains(&r.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = self.running.remove(&name) {
                r.task.abort();
                lock(&self.status).remove(&name);
                tracing::info!(feed = %name, "feed fetcher stopped (feed removed or changed)");
            }
        }
        for feed in feeds {
            if self.running.contains_key(&feed.name) {
                continue;
            }
            let meta = self.store.load(feed);
            let fetched_at = meta.as_ref().map(Meta::fetched_at).or_else(|| {
                std::fs::metadata(self.store.data_path(feed))
                    .and_then(|m| m.modified())
                    .ok()
            });
            let entries = meta.as_ref().map(|m| m.entries);
            if !self.store.has_copy(feed) {
                tracing::warn!(feed = %feed.name, url = %feed.url.url, "remote feed has no good copy yet: it blocks nothing until a download succeeds");
            }
            lock(&self.status).insert(
                feed.name.clone(),
                RemoteStatus {
                    url: feed.url.url.clone(),
                    state: FeedState::from_copy(entries, fetched_at),
                },
            );
            let kick = Arc::new(Notify::new());
            let task = self.runtime.spawn(run(
                feed.clone(),
                self.store.clone(),
                Arc::clone(&self.status),
                self.events.clone(),
                Arc::clone(&kick),
            ));
            tracing::info!(feed = %feed.name, url = %feed.url.url, refresh_s = feed.refresh.as_secs(), "feed fetcher started");
            self.running.insert(
                feed.name.clone(),
                Running {
                    config: feed.clone(),
                    kick,
                    task,
                },
            );
        }
    }

    /// Every feed fetches now (SIGHUP), whatever its schedule.
    pub fn fetch_now(&self) {
        for r in self.running.values() {
            r.kick.notify_one();
        }
    }

    /// The new copy of `feed` could not be applied: put the previous one back (see
    /// [`Store::restore_previous`]) so later compiles use a list that was in force.
    pub fn reject_new_copy(&self, feed: &str) {
        let Some(r) = self.running.get(feed) else {
            return;
        };
        match self.store.restore_previous(&r.config) {
            Ok(()) => tracing::warn!(
                feed,
                "new list rejected; the previous copy is the last good one again"
            ),
            Err(e) => tracing::error!(feed, error = %e, "could not put the previous copy back"),
        }
    }

    pub fn status(&self, feed: &str) -> Option<RemoteStatus> {
        lock(&self.status).get(feed).cloned()
    }
}

impl Drop for FeedManager {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.task.abort();
        }
    }
}

/// One feed, forever: attempt, decide, report, wait (or be kicked).
async fn run(
    feed: RemoteFeed,
    store: Store,
    status: SharedStatus,
    events: mpsc::UnboundedSender<FeedEvent>,
    kick: Arc<Notify>,
) {
    loop {
        let outcome = attempt(&feed, &store).await;
        match &outcome {
            Outcome::Failed(e) => {
                tracing::warn!(feed = %feed.name, url = %feed.url.url, reason = e.reason.as_str(), error = %e, "feed download refused; the last good list stays in force")
            }
            Outcome::New { entries } => {
                tracing::info!(feed = %feed.name, entries, "feed downloaded: new list")
            }
            Outcome::Same { .. } | Outcome::NotModified => {
                tracing::debug!(feed = %feed.name, "feed unchanged")
            }
        }
        let (decision, kept) = {
            let mut st = lock(&status);
            let Some(s) = st.get_mut(&feed.name) else {
                return; // stopped by reconfigure
            };
            let d = s.state.on_outcome(outcome, SystemTime::now(), feed.refresh);
            (d, s.state.entries)
        };
        let send = |kind| {
            let _ = events.send(FeedEvent {
                feed: feed.name.clone(),
                url: feed.url.url.clone(),
                kind,
            });
        };
        if let Some(alert) = decision.alert {
            send(match alert {
                AlertKind::Failed(error) => EventKind::Failed { error, kept },
                AlertKind::Recovered { after } => EventKind::Recovered { after },
            });
        }
        if decision.apply {
            send(EventKind::Updated {
                entries: kept.unwrap_or(0),
            });
        }
        tokio::select! {
            () = tokio::time::sleep(decision.next) => {}
            () = kick.notified() => {}
        }
    }
}

/// One download, validated and (when new) stored: what a feed task does at each attempt.
pub async fn attempt(feed: &RemoteFeed, store: &Store) -> Outcome {
    let current = {
        let (copy, store) = (feed.clone(), store.clone());
        tokio::task::spawn_blocking(move || store.load(&copy))
            .await
            .ok()
            .flatten()
            // Validators of a copy from another URL say nothing about this one.
            .filter(|m| m.url == feed.url.url)
    };
    let tls = match gateway_tls::https_client_config(feed.ca.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Failed(FetchError::new(FeedFailure::Tls, crate::engine::chain(&e)));
        }
    };
    let answer = http::get(Get {
        url: &feed.url,
        tls,
        etag: current.as_ref().and_then(|m| m.etag.as_deref()),
        last_modified: current.as_ref().and_then(|m| m.last_modified.as_deref()),
        max_bytes: feed.max_bytes,
        timeout: feed.timeout,
    })
    .await;
    let (feed, store) = (feed.clone(), store.clone());
    let done = tokio::task::spawn_blocking(move || match answer {
        Err(e) => Outcome::Failed(e),
        Ok(Answer::NotModified) => {
            if let Some(mut meta) = current {
                meta.fetched_at = store::unix_now();
                if let Err(e) = store.save_meta(&feed, &meta) {
                    tracing::warn!(feed = %feed.name, error = %e, "feed metadata not updated");
                }
            }
            Outcome::NotModified
        }
        Ok(Answer::Body {
            bytes,
            etag,
            last_modified,
        }) => accept(&feed, &store, &bytes, etag, last_modified, current.as_ref()),
    })
    .await;
    done.unwrap_or_else(|e| {
        Outcome::Failed(FetchError::new(
            FeedFailure::Store,
            format!("validation task failed: {e}"),
        ))
    })
}

/// A downloaded body becomes the last good copy only if it parses whole into enough entries.
fn accept(
    feed: &RemoteFeed,
    store: &Store,
    bytes: &[u8],
    etag: Option<String>,
    last_modified: Option<String>,
    current: Option<&Meta>,
) -> Outcome {
    let fail = |reason, detail: String| Outcome::Failed(FetchError::new(reason, detail));
    if bytes.is_empty() {
        return fail(FeedFailure::Empty, "empty body".into());
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                FeedFailure::Malformed,
                format!("not UTF-8 text (byte {})", e.valid_up_to()),
            );
        }
    };
    // Errors name the URL and the line: `https://…/list.txt:12: entry: "x" is not …`.
    let parsed = match gateway_policy::parse_feed(text, Path::new(&feed.url.url), feed.format) {
        Ok(p) => p,
        Err(e) => return fail(FeedFailure::Malformed, e.to_string()),
    };
    let entries = parsed.len() as u64;
    drop(parsed);
    if entries == 0 {
        return fail(FeedFailure::Empty, "no entries".into());
    }
    if entries < feed.min_entries {
        return fail(
            FeedFailure::TooFewEntries,
            format!("{entries} entries; min_entries is {}", feed.min_entries),
        );
    }
    let meta = Meta {
        url: feed.url.url.clone(),
        fetched_at: store::unix_now(),
        etag,
        last_modified,
        sha256: store::sha256_hex(bytes),
        entries,
        bytes: bytes.len() as u64,
    };
    if current.is_some_and(|c| c.sha256 == meta.sha256) {
        if let Err(e) = store.save_meta(feed, &meta) {
            tracing::warn!(feed = %feed.name, error = %e, "feed metadata not updated");
        }
        return Outcome::Same { entries };
    }
    match store.save(feed, bytes, &meta) {
        Ok(()) => Outcome::New { entries },
        Err(e) => fail(
            FeedFailure::Store,
            format!("{}: {e}", store.data_path(feed).display()),
        ),
    }
}

/// Hands every feed event to the engine (gatewayd runs this beside the control socket).
pub async fn serve_events(
    engine: crate::backend::SharedEngine,
    mut events: mpsc::UnboundedReceiver<FeedEvent>,
) {
    while let Some(event) = events.recv().await {
        let engine = engine.clone();
        // The engine may be busy with an apply: wait on a blocking thread, not on the runtime.
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(e) = crate::backend::lock(&engine).as_mut() {
                e.on_feed_event(event);
            }
        })
        .await;
    }
}

/// Age of a feed's list for metrics: since its last good download.
pub fn age(state: &FeedState, now: SystemTime) -> Option<Duration> {
    state.last_success.and_then(|t| now.duration_since(t).ok())
}
