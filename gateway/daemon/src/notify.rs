//! systemd's service notification protocol (`sd_notify`), through the `sd-notify` crate: READY=1
//! once the first policy is in force and the control socket answers, WATCHDOG=1 from the main loop
//! while the engine is healthy, STATUS= lines, STOPPING=1. Without `NOTIFY_SOCKET` (not started by
//! systemd with Type=notify, or a test) every call does nothing.
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// What the main loop needs to speak to systemd.
#[derive(Debug)]
pub struct Notifier {
    /// Half of `WATCHDOG_USEC` (systemd's advice): the ping interval; `None` without a watchdog.
    interval: Option<Duration>,
    /// Since when the engine has been busy (an apply holds it), for the watchdog's patience.
    busy_since: Option<Instant>,
    /// The last STATUS= sent (an unchanged status is not sent again).
    status: String,
}

/// An apply holds the engine while the main loop ticks; the loop keeps pinging for this long, so a
/// large feed does not get the daemon killed, but a hung apply does.
pub const MAX_BUSY: Duration = Duration::from_secs(120);

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (left in the environment).
    pub fn from_env() -> Notifier {
        let mut usec = 0u64;
        // sd_watchdog_enabled(3): WATCHDOG_PID names the process the watchdog is for; when it is
        // unset, the watchdog is ours. The crate's check insists on WATCHDOG_PID, so that case is
        // read here.
        let usec = if sd_notify::watchdog_enabled(false, &mut usec) {
            Some(usec)
        } else if std::env::var_os("WATCHDOG_PID").is_none() {
            std::env::var("WATCHDOG_USEC")
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
        } else {
            None
        };
        let interval = usec
            .map(|u| Duration::from_micros(u / 2))
            .filter(|d| !d.is_zero());
        Notifier {
            interval,
            busy_since: None,
            status: String::new(),
        }
    }

    /// How often [`Notifier::watchdog`] must be called; `None` when systemd set no watchdog.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    pub fn ready(&mut self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
        status.clone_into(&mut self.status);
    }

    /// STATUS=, when it changed since the last one.
    pub fn status(&mut self, status: &str) {
        if self.status != status {
            send(&[NotifyState::Status(status)]);
            status.clone_into(&mut self.status);
        }
    }

    /// One watchdog beat. `health`: `Some(true)` healthy, `Some(false)` unhealthy (no ping: systemd
    /// restarts the daemon when the watchdog runs out), `None` busy (an apply holds the engine:
    /// pinged for up to [`MAX_BUSY`]).
    pub fn watchdog(&mut self, health: Option<bool>) {
        let ping = match health {
            Some(healthy) => {
                self.busy_since = None;
                healthy
            }
            None => self.busy_since.get_or_insert_with(Instant::now).elapsed() < MAX_BUSY,
        };
        if ping {
            send(&[NotifyState::Watchdog]);
        } else {
            tracing::error!(?health, "engine unhealthy: watchdog pings withheld");
        }
    }

    pub fn stopping(&self) {
        send(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping; enforcement stays pinned"),
        ]);
    }
}

/// A failed notification is logged, never fatal: systemd's watchdog notices a silent daemon anyway.
fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
