//! Drop events from the ring buffer `EVENTS`, read asynchronously under tokio, and the kernel's
//! event counters (sent, suppressed by the rate limit, lost because the buffer was full).
//!
//! Timestamps are the kernel's CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`); turning them into
//! wall-clock time is the caller's business.
use std::os::fd::{AsFd as _, BorrowedFd};

use aya::maps::{HashMap, IterableMap as _, MapData, PerCpuArray, RingBuf};
use gateway_common::{
    event::{
        AlertKey, AlertState, DnsDetail, DropEvent, EVENT_STAT_EMITTED, EVENT_STAT_LOST,
        EVENT_STAT_SUPPRESSED,
    },
    maps as names,
};
use tokio::io::unix::AsyncFd;

use crate::{
    Dataplane, DataplaneError,
    flows::{dup, map_err},
    stats::sum_per_cpu,
};

/// One record of the ring buffer: the drop event, and for a DNS query dropped (or answered) as
/// `domain` the query name and the listed suffix behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropRecord {
    pub event: DropEvent,
    pub dns: Option<DnsDetail>,
}

/// The kernel's event counters, summed over CPUs, since the maps were created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Events written to the ring buffer.
    pub emitted: u64,
    /// Drops not reported because their (source, reason) had used up its burst.
    pub suppressed: u64,
    /// Events lost because the ring buffer was full (the reader did not keep up).
    pub lost: u64,
}

/// The event maps as `Dataplane::load` takes them from the object.
pub(crate) struct EventMaps {
    /// Until a reader takes it.
    ring: Option<RingBuf<MapData>>,
    /// Kept for its fd (memory accounting, and the reader's wake-ups need nothing else).
    ring_fd: std::os::fd::OwnedFd,
    stats: PerCpuArray<MapData, u64>,
    limit: HashMap<MapData, AlertKey, AlertState>,
}

impl EventMaps {
    pub(crate) fn take(ebpf: &mut aya::Ebpf) -> Result<Self, DataplaneError> {
        let ring: RingBuf<MapData> = crate::slots::take(ebpf, names::EVENTS)?;
        let ring_fd =
            ring.as_fd()
                .try_clone_to_owned()
                .map_err(|io_error| DataplaneError::Map {
                    name: names::EVENTS,
                    source: aya::sys::SyscallError {
                        call: "dup",
                        io_error,
                    }
                    .into(),
                })?;
        Ok(EventMaps {
            ring: Some(ring),
            ring_fd,
            stats: crate::slots::take(ebpf, names::EVENT_STATS)?,
            limit: crate::slots::take(ebpf, names::ALERT_LIMIT)?,
        })
    }

    pub(crate) fn fds(&self) -> Vec<(&'static str, BorrowedFd<'_>)> {
        vec![
            (names::EVENTS, self.ring_fd.as_fd()),
            (names::EVENT_STATS, self.stats.map().fd().as_fd()),
            (names::ALERT_LIMIT, self.limit.map().fd().as_fd()),
        ]
    }

    fn stats(&self) -> Result<EventStats, DataplaneError> {
        read_stats(&self.stats)
    }
}

fn read_stats(map: &PerCpuArray<MapData, u64>) -> Result<EventStats, DataplaneError> {
    let sum = |i| sum_per_cpu(map, i, names::EVENT_STATS);
    Ok(EventStats {
        emitted: sum(EVENT_STAT_EMITTED)?,
        suppressed: sum(EVENT_STAT_SUPPRESSED)?,
        lost: sum(EVENT_STAT_LOST)?,
    })
}

/// Reads drop events as the kernel writes them. There is one reader per data path (the ring
/// buffer has a single consumer position); it lives apart from the `Dataplane`.
pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
    /// Records of a kind this build does not know (newer program), skipped.
    skipped: u64,
}

impl Dataplane {
    /// The event reader. Only one can exist: a second call fails with `EventsTaken`. Must be
    /// called inside a tokio runtime (the reader registers the ring buffer's fd with its reactor).
    pub fn event_reader(&mut self) -> Result<EventReader, DataplaneError> {
        // AsyncFd panics outside a runtime; say so instead.
        tokio::runtime::Handle::try_current()
            .map_err(|e| DataplaneError::EventReader(std::io::Error::other(e)))?;
        let ev = &mut self.telemetry.events;
        let stats = PerCpuArray::try_from(dup(ev.stats.map(), names::EVENT_STATS)?)
            .map_err(map_err(names::EVENT_STATS))?;
        let ring = ev.ring.take().ok_or(DataplaneError::EventsTaken)?;
        // SAFETY: the ring buffer owns its map fd, which stays open, and is the fd `as_raw_fd`
        // returns, for as long as the RingBuf (and so the AsyncFd) lives.
        match unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) } {
            Ok(ring) => Ok(EventReader {
                ring,
                stats,
                skipped: 0,
            }),
            Err(e) => {
                let (ring, error) = e.into_parts();
                ev.ring = Some(ring);
                Err(DataplaneError::EventReader(error))
            }
        }
    }

    /// The kernel's event counters.
    pub fn event_stats(&self) -> Result<EventStats, DataplaneError> {
        self.telemetry.events.stats()
    }
}

impl EventReader {
    /// The next event, waiting until there is one.
    pub async fn next(&mut self) -> Result<DropRecord, DataplaneError> {
        loop {
            if let Some(ev) = self.try_next() {
                return Ok(ev);
            }
            let mut guard = self
                .ring
                .readable_mut()
                .await
                .map_err(DataplaneError::EventReader)?;
            // Only clear readiness when the buffer is really empty, or a wake-up could be lost
            // between our last read and the kernel's next write.
            if let Some(ev) = next_event(guard.get_inner_mut(), &mut self.skipped) {
                return Ok(ev);
            }
            guard.clear_ready();
        }
    }

    /// The next event if one is waiting, without blocking.
    pub fn try_next(&mut self) -> Option<DropRecord> {
        next_event(self.ring.get_mut(), &mut self.skipped)
    }

    /// Events waiting now, appended to `out` (at most `max`); returns how many. Never blocks.
    pub fn drain(&mut self, out: &mut Vec<DropRecord>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.try_next() {
                Some(ev) => {
                    out.push(ev);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// The kernel's event counters.
    pub fn stats(&self) -> Result<EventStats, DataplaneError> {
        read_stats(&self.stats)
    }

    /// Records of an unknown kind skipped so far (a newer program's events).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

fn next_event(ring: &mut RingBuf<MapData>, skipped: &mut u64) -> Option<DropRecord> {
    loop {
        let item = ring.next()?;
        match DropEvent::from_bytes(&item) {
            Some(event) => {
                return Some(DropRecord {
                    event,
                    dns: DnsDetail::from_bytes(&item),
                });
            }
            None => *skipped += 1,
        }
    }
}
