//! The fetch state machine of one remote feed, without I/O: what an attempt's outcome changes,
//! what it tells the engine and the SOC, and when the next attempt is.
//!
//! ```text
//!            New list ──────────► apply (recompile + atomic swap), next in `refresh`
//!  attempt ─ Same / NotModified ─► nothing to apply,                next in `refresh`
//!            Failed ────────────► keep the last good list, alert,   next in backoff
//! ```
//! Backoff after the n-th failure in a row: 30 s × 2^(n-1), never more than `refresh`. The
//! first good answer after failures raises a recovery alert. Nothing here can make the list in
//! force smaller: only [`Outcome::New`] (a complete, parsed list of at least `min_entries`)
//! leads to an apply.
use std::time::{Duration, SystemTime};

use gateway_metrics::snapshot::FeedFailure;

use super::http::FetchError;

/// First retry delay after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(30);

/// What one attempt gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A good list that differs from the last good copy (now stored).
    New {
        entries: u64,
    },
    /// A good list identical to the last good copy (same sha256).
    Same {
        entries: u64,
    },
    /// 304 Not Modified.
    NotModified,
    Failed(FetchError),
}

/// What the task must do after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Recompile and apply the running policy (a new list is stored).
    pub apply: bool,
    pub alert: Option<AlertKind>,
    /// Delay before the next attempt.
    pub next: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertKind {
    Failed(FetchError),
    /// Good again after this many failed attempts.
    Recovered {
        after: u32,
    },
}

/// What is known of one feed (what metrics and `gatewayctl status` show).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedState {
    /// Entries of the last good copy (`None`: no copy yet, the feed blocks nothing).
    pub entries: Option<u64>,
    /// When the last good copy was downloaded (or confirmed unchanged).
    pub last_success: Option<SystemTime>,
    /// The last attempt's error, until an attempt succeeds.
    pub last_error: Option<FetchError>,
    /// Whether the last attempt succeeded (`None` before the first attempt).
    pub last_ok: Option<bool>,
    pub consecutive_failures: u32,
    /// Failed attempts by reason, in `FeedFailure::ALL` order.
    pub failures: [u64; FeedFailure::ALL.len()],
}

impl FeedState {
    /// The state at start: what the last good copy on disk says.
    pub fn from_copy(entries: Option<u64>, fetched_at: Option<SystemTime>) -> FeedState {
        FeedState {
            entries,
            last_success: fetched_at,
            ..FeedState::default()
        }
    }

    /// Takes an attempt's outcome at `now`.
    pub fn on_outcome(&mut self, outcome: Outcome, now: SystemTime, refresh: Duration) -> Decision {
        let (apply, entries) = match outcome {
            Outcome::Failed(e) => {
                self.failures[e.reason.index()] += 1;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_ok = Some(false);
                self.last_error = Some(e.clone());
                return Decision {
                    apply: false,
                    alert: Some(AlertKind::Failed(e)),
                    next: backoff(self.consecutive_failures, refresh),
                };
            }
            Outcome::New { entries } => (true, Some(entries)),
            Outcome::Same { entries } => (false, Some(entries)),
            Outcome::NotModified => (false, None),
        };
        let after = std::mem::take(&mut self.consecutive_failures);
        if let Some(n) = entries {
            self.entries = Some(n);
        }
        self.last_success = Some(now);
        self.last_ok = Some(true);
        self.last_error = None;
        Decision {
            apply,
            alert: (after > 0).then_some(AlertKind::Recovered { after }),
            next: refresh,
        }
    }
}

/// Delay after the `n`-th failure in a row (n ≥ 1).
pub fn backoff(n: u32, refresh: Duration) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(refresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFRESH: Duration = Duration::from_secs(3600);

    fn fail(reason: FeedFailure) -> Outcome {
        Outcome::Failed(FetchError::new(reason, "x"))
    }

    #[test]
    fn backoff_doubles_up_to_refresh() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n, REFRESH).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(40, REFRESH), REFRESH);
        assert_eq!(backoff(1, Duration::from_secs(20)).as_secs(), 20);
    }

    #[test]
    fn failures_keep_the_list_and_alert_each_time_then_recover_once() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut s = FeedState::from_copy(Some(5), Some(t0));
        let d = s.on_outcome(fail(FeedFailure::Timeout), t0, REFRESH);
        assert!(!d.apply);
        assert!(
            matches!(d.alert, Some(AlertKind::Failed(ref e)) if e.reason == FeedFailure::Timeout)
        );
        assert_eq!(d.next.as_secs(), 30);
        let d = s.on_outcome(fail(FeedFailure::Truncated), t0, REFRESH);
        assert_eq!(d.next.as_secs(), 60);
        assert_eq!(s.entries, Some(5), "a failure never changes the list");
        assert_eq!(s.last_success, Some(t0));
        assert_eq!(s.last_ok, Some(false));
        assert_eq!(s.failures[FeedFailure::Timeout.index()], 1);
        assert_eq!(s.failures[FeedFailure::Truncated.index()], 1);
        assert_eq!(
            s.last_error.as_ref().map(|e| e.reason),
            Some(FeedFailure::Truncated)
        );

        let t1 = t0 + Duration::from_secs(90);
        let d = s.on_outcome(Outcome::NotModified, t1, REFRESH);
        assert_eq!(
            d,
            Decision {
                apply: false,
                alert: Some(AlertKind::Recovered { after: 2 }),
                next: REFRESH
            }
        );
        assert_eq!(
            (s.entries, s.last_success, s.last_ok),
            (Some(5), Some(t1), Some(true))
        );
        assert_eq!(s.last_error, None);
        // Only the first good answer after failures is a recovery.
        let d = s.on_outcome(Outcome::Same { entries: 5 }, t1, REFRESH);
        assert_eq!(d.alert, None);
        assert!(!d.apply);
        assert_eq!(
            s.failures.iter().sum::<u64>(),
            2,
            "failure counters never go down"
        );
    }

    #[test]
    fn only_a_new_good_list_applies() {
        let now = SystemTime::UNIX_EPOCH;
        let mut s = FeedState::from_copy(None, None);
        assert_eq!(s.last_ok, None);
        let d = s.on_outcome(fail(FeedFailure::Dns), now, REFRESH);
        assert!(!d.apply);
        assert_eq!(s.entries, None, "no copy yet: still none");
        let d = s.on_outcome(Outcome::New { entries: 7 }, now, REFRESH);
        assert!(d.apply);
        assert_eq!(d.alert, Some(AlertKind::Recovered { after: 1 }));
        assert_eq!(s.entries, Some(7));
        let d = s.on_outcome(Outcome::New { entries: 9 }, now, REFRESH);
        assert_eq!((d.apply, d.alert), (true, None));
        assert_eq!(s.entries, Some(9));
    }
}
