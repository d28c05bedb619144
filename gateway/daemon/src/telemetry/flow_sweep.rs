//! The flow-table sweep: turns successive readings of the kernel's flow table (cumulative counters
//! per flow) into flow records (deltas) with the IPFIX end reasons, and decides which entries to
//! delete. Pure: the caller reads the map, converts records and deletes keys.
//!
//! A flow is reported
//! - when it ends: TCP FIN or RST seen and quiet for [`FIN_GRACE`] (end of flow), or no packet for
//!   the idle timeout (idle timeout); its entry is deleted;
//! - while it lasts, at least every active timeout (active timeout), with the packets since the last
//!   report;
//! - when the kernel's LRU evicted it before we reported it (lack of resources), with what the last
//!   sweep saw — packets after that sweep are lost and the eviction is counted;
//! - at shutdown (forced end), so the next daemon does not report the same packets again.
//!
//! Nothing is lost silently: evictions are counted, including flows created and evicted between two
//! sweeps (the kernel counts every flow it creates; a flow this sweep never saw was evicted).
use std::collections::HashMap;
use std::time::Duration;

use gateway_common::flow::{FlowKey, FlowValue};
use gateway_flows::EndReason;

/// A FIN or RST flow is over once it has been quiet this long (the last ACKs have passed).
pub const FIN_GRACE: Duration = Duration::from_secs(1);

const TCP_FIN: u32 = 0x01;
const TCP_RST: u32 = 0x04;

/// One record to export: the flow's latest state and the counts since its last record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub key: FlowKey,
    /// The flow as last read (reason, rule, egress, flags).
    pub value: FlowValue,
    pub packets: u64,
    pub bytes: u64,
    /// Monotonic ns of the first and last packet this record covers.
    pub start_ns: u64,
    pub end_ns: u64,
    pub end: EndReason,
}

/// What one sweep decided.
#[derive(Debug, Default)]
pub struct Sweep {
    pub reports: Vec<Report>,
    /// Entries to delete from the kernel table (ended flows).
    pub delete: Vec<FlowKey>,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    value: FlowValue,
    /// Counters already reported.
    reported_packets: u64,
    reported_bytes: u64,
    /// Monotonic ns of the last report (or of the first packet).
    last_report_ns: u64,
    /// Start of the next record: the first packet after the last report.
    next_start_ns: u64,
}

impl Seen {
    fn new(value: FlowValue) -> Seen {
        Seen {
            value,
            reported_packets: 0,
            reported_bytes: 0,
            last_report_ns: value.first_ns,
            next_start_ns: value.first_ns,
        }
    }

    fn unreported(&self) -> (u64, u64) {
        (
            self.value.packets.saturating_sub(self.reported_packets),
            self.value.bytes.saturating_sub(self.reported_bytes),
        )
    }

    /// A report of everything not reported yet, or `None` when there is nothing new.
    fn report(&mut self, key: FlowKey, end: EndReason) -> Option<Report> {
        let (packets, bytes) = self.unreported();
        if packets == 0 {
            return None;
        }
        let report = Report {
            key,
            value: self.value,
            packets,
            bytes,
            start_ns: self.next_start_ns,
            end_ns: self.value.last_ns,
            end,
        };
        self.reported_packets = self.value.packets;
        self.reported_bytes = self.value.bytes;
        self.last_report_ns = self.value.last_ns;
        self.next_start_ns = self.value.last_ns;
        Some(report)
    }
}

/// Flow accounting state between sweeps.
#[derive(Debug)]
pub struct FlowTracker {
    active_timeout: u64,
    idle_timeout: u64,
    seen: HashMap<FlowKey, Seen>,
    /// Kernel's flows-created counter at the first sweep, and distinct flows seen since then.
    created_base: Option<u64>,
    seen_since_base: u64,
    /// Evictions of flows a sweep had seen (they vanished without our delete).
    evicted_seen: u64,
    /// Evictions of flows no sweep saw (created − seen, never decreasing).
    evicted_unseen: u64,
}

impl FlowTracker {
    pub fn new(active_timeout: Duration, idle_timeout: Duration) -> FlowTracker {
        FlowTracker {
            active_timeout: active_timeout.as_nanos() as u64,
            idle_timeout: idle_timeout.as_nanos() as u64,
            seen: HashMap::new(),
            created_base: None,
            seen_since_base: 0,
            evicted_seen: 0,
            evicted_unseen: 0,
        }
    }

    /// New timeouts (a policy apply); flows in progress keep their counts.
    pub fn set_timeouts(&mut self, active_timeout: Duration, idle_timeout: Duration) {
        self.active_timeout = active_timeout.as_nanos() as u64;
        self.idle_timeout = idle_timeout.as_nanos() as u64;
    }

    /// Flows being tracked.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Flows the kernel evicted before they ended (LRU full), counted since the daemon started.
    pub fn evictions(&self) -> u64 {
        self.evicted_seen + self.evicted_unseen
    }

    /// One sweep over the table as read at monotonic time `now_ns`. `created` is the kernel's
    /// flows-created counter, read *before* the entries (so every flow it counts could be among them).
    pub fn sweep(
        &mut self,
        now_ns: u64,
        created: u64,
        entries: impl IntoIterator<Item = (FlowKey, FlowValue)>,
    ) -> Sweep {
        let mut out = Sweep::default();
        let mut present: HashMap<FlowKey, Seen> = HashMap::with_capacity(self.seen.len());
        let mut new_keys = 0u64;
        for (key, value) in entries {
            let mut seen = match self.seen.remove(&key) {
                // Fewer packets than before: the entry was evicted and the key came back.
                Some(old)
                    if value.packets < old.value.packets
                        || value.first_ns != old.value.first_ns =>
                {
                    self.evicted(key, old, &mut out);
                    new_keys += 1;
                    Seen::new(value)
                }
                Some(mut old) => {
                    old.value = value;
                    old
                }
                None => {
                    new_keys += 1;
                    Seen::new(value)
                }
            };
            let quiet = now_ns.saturating_sub(value.last_ns);
            let ended = if value.tcp_flags & (TCP_FIN | TCP_RST) != 0
                && quiet >= FIN_GRACE.as_nanos() as u64
            {
                Some(EndReason::EndOfFlow)
            } else if quiet >= self.idle_timeout {
                Some(EndReason::IdleTimeout)
            } else {
                None
            };
            match ended {
                Some(end) => {
                    out.reports.extend(seen.report(key, end));
                    out.delete.push(key);
                }
                None => {
                    if now_ns.saturating_sub(seen.last_report_ns) >= self.active_timeout {
                        out.reports
                            .extend(seen.report(key, EndReason::ActiveTimeout));
                        // A flow idle since its last report restarts its active clock.
                        seen.last_report_ns = now_ns;
                    }
                    present.insert(key, seen);
                }
            }
        }
        // Whatever is left was seen before and is gone now without our delete: evicted.
        for (key, old) in std::mem::take(&mut self.seen) {
            self.evicted(key, old, &mut out);
        }
        self.seen = present;
        match self.created_base {
            // First sweep: flows from before the daemon started are not ours to count.
            None => self.created_base = Some(created),
            Some(base) => {
                self.seen_since_base += new_keys;
                let never_seen = created
                    .saturating_sub(base)
                    .saturating_sub(self.seen_since_base);
                self.evicted_unseen = self.evicted_unseen.max(never_seen);
            }
        }
        out
    }

    fn evicted(&mut self, key: FlowKey, mut old: Seen, out: &mut Sweep) {
        self.evicted_seen += 1;
        out.reports
            .extend(old.report(key, EndReason::LackOfResources));
    }

    /// Shutdown: report every flow (forced end) and delete all entries, so the next daemon starts
    /// from zero counters and nothing is reported twice.
    pub fn finish(&mut self, entries: impl IntoIterator<Item = (FlowKey, FlowValue)>) -> Sweep {
        let mut out = Sweep::default();
        for (key, value) in entries {
            let mut seen = self
                .seen
                .remove(&key)
                .filter(|s| value.packets >= s.value.packets && value.first_ns == s.value.first_ns)
                .unwrap_or_else(|| Seen::new(value));
            seen.value = value;
            out.reports.extend(seen.report(key, EndReason::ForcedEnd));
            out.delete.push(key);
        }
        self.seen.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn key(n: u8) -> FlowKey {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[10, 10, 0, n]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[203, 0, 113, 10]);
        FlowKey {
            ifindex: 2,
            family: 4,
            proto: 6,
            sport: 40000u16.to_be_bytes(),
            dport: 443u16.to_be_bytes(),
            _pad: [0; 2],
            src,
            dst,
        }
    }

    fn value(packets: u64, first: u64, last: u64, flags: u32) -> FlowValue {
        FlowValue {
            packets,
            bytes: packets * 100,
            first_ns: first,
            last_ns: last,
            egress_ifindex: 0,
            rule: u32::MAX,
            tcp_flags: flags,
            reason: 0,
            _pad: [0; 3],
        }
    }

    fn tracker() -> FlowTracker {
        FlowTracker::new(Duration::from_secs(60), Duration::from_secs(15))
    }

    #[test]
    fn active_flow_reports_deltas_then_ends_idle() {
        let mut t = tracker();
        let s = t.sweep(10 * S, 1, [(key(1), value(5, S, 10 * S, 0x18))]);
        assert!(s.reports.is_empty() && s.delete.is_empty());
        // 61 s after the first packet: active timeout with everything so far.
        let s = t.sweep(61 * S, 1, [(key(1), value(50, S, 61 * S, 0x18))]);
        assert_eq!(s.reports.len(), 1);
        let r = s.reports[0];
        assert_eq!(
            (r.packets, r.bytes, r.start_ns, r.end_ns),
            (50, 5000, S, 61 * S)
        );
        assert_eq!(r.end, EndReason::ActiveTimeout);
        // Then quiet: idle timeout with the rest, and the entry goes.
        let s = t.sweep(80 * S, 1, [(key(1), value(52, S, 64 * S, 0x18))]);
        assert_eq!(s.reports.len(), 1);
        let r = s.reports[0];
        assert_eq!(
            (r.packets, r.start_ns, r.end_ns, r.end),
            (2, 61 * S, 64 * S, EndReason::IdleTimeout)
        );
        assert_eq!(s.delete, vec![key(1)]);
        assert!(t.is_empty());
        assert_eq!(t.evictions(), 0);
    }

    #[test]
    fn fin_ends_a_flow_after_the_grace() {
        let mut t = tracker();
        let s = t.sweep(5 * S, 1, [(key(1), value(4, S, 5 * S, 0x11))]);
        assert!(
            s.reports.is_empty(),
            "FIN just seen: wait for the last ACKs"
        );
        let s = t.sweep(7 * S, 1, [(key(1), value(5, S, 5 * S + 1, 0x11))]);
        assert_eq!(s.reports[0].end, EndReason::EndOfFlow);
        assert_eq!(s.reports[0].packets, 5);
        assert_eq!(s.delete, vec![key(1)]);
    }

    #[test]
    fn evictions_are_counted_and_reported() {
        let mut t = tracker();
        t.sweep(
            2 * S,
            10,
            [(key(1), value(3, S, 2 * S, 0)), (key(2), value(1, S, S, 0))],
        );
        // key 1 vanished (evicted), key 2 went on; 4 more flows were created, only 1 (key 3) seen.
        let s = t.sweep(
            3 * S,
            14,
            [
                (key(2), value(2, S, 3 * S, 0)),
                (key(3), value(1, 3 * S, 3 * S, 0)),
            ],
        );
        assert_eq!(s.reports.len(), 1);
        assert_eq!(s.reports[0].key, key(1));
        assert_eq!(s.reports[0].end, EndReason::LackOfResources);
        assert_eq!(s.reports[0].packets, 3);
        // key 1 seen-then-gone, and 3 created flows never seen (14 − 10 − 1 new key).
        assert_eq!(t.evictions(), 1 + 3);
    }

    #[test]
    fn a_key_that_came_back_is_a_new_flow() {
        let mut t = tracker();
        t.sweep(2 * S, 0, [(key(1), value(30, S, 2 * S, 0))]);
        let s = t.sweep(3 * S, 1, [(key(1), value(2, 3 * S, 3 * S, 0))]);
        assert_eq!(s.reports.len(), 1, "the old flow's 30 packets are reported");
        assert_eq!(s.reports[0].packets, 30);
        assert_eq!(t.evictions(), 1);
    }

    #[test]
    fn finish_reports_everything_once() {
        let mut t = tracker();
        t.sweep(61 * S, 0, [(key(1), value(10, S, 61 * S, 0))]);
        let s = t.finish([
            (key(1), value(12, S, 62 * S, 0)),
            (key(2), value(1, S, S, 0)),
        ]);
        let counts: Vec<u64> = s.reports.iter().map(|r| r.packets).collect();
        assert_eq!(counts, vec![2, 1]);
        assert!(s.reports.iter().all(|r| r.end == EndReason::ForcedEnd));
        assert_eq!(s.delete.len(), 2);
    }
}
