//! The learnt blocked-address set seen from gatewayd (issue 6 item 3): expired entries are swept
//! every tick (counted), the SOC sees counts and counters in `/metrics`, and `gatewayctl domains
//! learnt` lists the live entries with the listed name that blocks them (by hash: the kernel keeps
//! no names) and the domain feed.
use gateway_common::learn::DOMAIN_STAT_NAMES;
use gateway_dataplane::{DataplaneError, LearntTable, monotonic_ns};
use gateway_metrics::snapshot::DomainBeyond;
use gateway_policy::image::MapImage;

use crate::control::{LearntEntryJson, LearntReport};

/// The learnt maps and what gatewayd did to them.
pub struct LearntBook {
    table: LearntTable,
    /// Expired entries this process deleted.
    swept: u64,
}

impl LearntBook {
    pub fn new(table: LearntTable) -> Self {
        LearntBook { table, swept: 0 }
    }

    /// Deletes expired entries (their slots go back to the LRU; nothing they did changes).
    pub fn sweep(&mut self) {
        match self.table.sweep(monotonic_ns()) {
            Ok(n) => self.swept += n as u64,
            Err(e) => tracing::warn!(error = %e, "learnt-address sweep failed"),
        }
    }

    /// The `/metrics` part: kernel counters, `learn_swept`, live entries per family.
    pub fn metrics(&self) -> Result<DomainBeyond, DataplaneError> {
        let stats = self.table.stats()?;
        let mut events: Vec<(&'static str, u64)> = stats.named().collect();
        events.push(("learn_swept", self.swept));
        let now = monotonic_ns();
        let (mut v4, mut v6) = (0, 0);
        for e in self.table.entries()? {
            if e.value.expires_ns > now {
                if e.addr.is_ipv4() {
                    v4 += 1;
                } else {
                    v6 += 1;
                }
            }
        }
        Ok(DomainBeyond {
            events,
            learnt_v4: v4,
            learnt_v6: v6,
            capacity: u64::from(self.table.capacity()),
        })
    }

    /// `gatewayctl domains learnt`: the live entries, soonest to expire first, with whether the
    /// policy in force (`image`) still blocks their name and the feed it names.
    pub fn report(&self, image: &MapImage) -> Result<LearntReport, DataplaneError> {
        let now = monotonic_ns();
        let stats = self.table.stats()?;
        let mut entries: Vec<LearntEntryJson> = self
            .table
            .entries()?
            .into_iter()
            .filter(|e| e.value.expires_ns > now)
            .map(|e| {
                let v = e.value;
                let node = (v.seed == image.domain_seed)
                    .then(|| image.domains.get(&v.hash))
                    .flatten();
                let blocks = node.is_some_and(|d| {
                    gateway_common::dname::node_say(d.flags, v.whole != 0)
                        == gateway_common::dname::Say::Block
                });
                let feed = node
                    .and_then(|d| image.domain_feeds.get(d.feed as usize))
                    .map(|f| f.name.clone());
                LearntEntryJson {
                    address: e.addr.to_string(),
                    expires_in_secs: (v.expires_ns - now) / 1_000_000_000,
                    name_hash: format!("{:016x}", v.hash),
                    subtree: v.whole == 0,
                    blocking: blocks,
                    feed,
                }
            })
            .collect();
        entries.sort_by_key(|e| e.expires_in_secs);
        let mut counters: Vec<(String, u64)> = DOMAIN_STAT_NAMES
            .iter()
            .map(|n| (*n).to_owned())
            .zip(stats.0)
            .collect();
        counters.push(("learn_swept".to_owned(), self.swept));
        Ok(LearntReport {
            capacity: self.table.capacity(),
            entries,
            counters,
        })
    }
}
