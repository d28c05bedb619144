//! The flow table seen from userspace: read every entry (in batches), delete exported ones, and the
//! kernel's counters of created entries and failed inserts.
//!
//! A [`FlowTable`] holds its own file descriptors, so the exporter can own it in its own task or
//! thread while the [`Dataplane`] keeps applying policies. Evictions are not counted by the kernel:
//! `created − present − deleted by userspace` over an interval is the number evicted.
use std::os::fd::{AsFd as _, BorrowedFd};

use aya::maps::{HashMap, IterableMap as _, Map, MapData, PerCpuArray};
use gateway_common::{
    flow::{FLOW_STAT_CREATED, FLOW_STAT_INSERT_FAILED, FlowKey, FlowValue},
    maps as names,
};

use crate::{Dataplane, DataplaneError, batch, stats::sum_per_cpu};

/// One entry of the flow table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEntry {
    pub key: FlowKey,
    pub value: FlowValue,
}

/// The kernel's flow-table counters, summed over CPUs, since the maps were created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Entries the program inserted.
    pub created: u64,
    /// Inserts that failed (not counting a race with another CPU inserting the same flow).
    pub insert_failed: u64,
}

/// A handle on `FLOWS` and `FLOW_STATS`.
pub struct FlowTable {
    table: HashMap<MapData, FlowKey, FlowValue>,
    stats: PerCpuArray<MapData, u64>,
    capacity: u32,
    /// Batch lookup works on this kernel (cleared on the first EINVAL/ENOTSUPP: read key by key).
    batch: std::sync::atomic::AtomicBool,
}

/// The flow maps as `Dataplane::load` takes them from the object.
pub(crate) struct FlowMaps {
    table: HashMap<MapData, FlowKey, FlowValue>,
    stats: PerCpuArray<MapData, u64>,
}

pub(crate) fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// A second handle on a map: a duplicate of its fd, typed anew.
pub(crate) fn dup(map: &MapData, name: &'static str) -> Result<Map, DataplaneError> {
    let fd = map
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|io_error| DataplaneError::Map {
            name,
            source: aya::sys::SyscallError {
                call: "dup",
                io_error,
            }
            .into(),
        })?;
    let data = MapData::from_fd(fd).map_err(map_err(name))?;
    Map::from_map_data(data).map_err(map_err(name))
}

impl FlowMaps {
    pub(crate) fn take(ebpf: &mut aya::Ebpf) -> Result<Self, DataplaneError> {
        Ok(FlowMaps {
            table: crate::slots::take(ebpf, names::FLOWS)?,
            stats: crate::slots::take(ebpf, names::FLOW_STATS)?,
        })
    }

    pub(crate) fn fds(&self) -> Vec<(&'static str, BorrowedFd<'_>)> {
        vec![
            (names::FLOWS, self.table.map().fd().as_fd()),
            (names::FLOW_STATS, self.stats.map().fd().as_fd()),
        ]
    }

    fn table(&self) -> Result<FlowTable, DataplaneError> {
        let capacity = self
            .table
            .map()
            .info()
            .map_err(map_err(names::FLOWS))?
            .max_entries();
        Ok(FlowTable {
            table: HashMap::try_from(dup(self.table.map(), names::FLOWS)?)
                .map_err(map_err(names::FLOWS))?,
            stats: PerCpuArray::try_from(dup(self.stats.map(), names::FLOW_STATS)?)
                .map_err(map_err(names::FLOW_STATS))?,
            capacity,
            batch: std::sync::atomic::AtomicBool::new(true),
        })
    }
}

impl Dataplane {
    /// A handle on the flow table, for a reader that lives apart from the `Dataplane`.
    pub fn flow_table(&self) -> Result<FlowTable, DataplaneError> {
        self.telemetry.flows.table()
    }

    /// The flow-table counters (see [`FlowTable::stats`]).
    pub fn flow_stats(&self) -> Result<FlowStats, DataplaneError> {
        self.flow_table()?.stats()
    }
}

impl FlowTable {
    /// Entries the table holds at most (the profile's `flow_entries`); beyond that the kernel evicts
    /// the least recently used.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> Result<Vec<FlowEntry>, DataplaneError> {
        let mut out = Vec::new();
        self.read(&mut out)?;
        Ok(out)
    }

    /// Every entry into `out` (cleared first; its allocation is reused). One BPF_MAP_LOOKUP_BATCH
    /// per 4096 entries; on a kernel without batch lookup for LRU maps, key by key. Entries the
    /// kernel inserts or evicts meanwhile may or may not be seen.
    pub fn read(&self, out: &mut Vec<FlowEntry>) -> Result<(), DataplaneError> {
        use std::sync::atomic::Ordering::Relaxed;
        out.clear();
        if self.batch.load(Relaxed) {
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            match batch::lookup_all(self.table.map().fd().as_fd(), &mut keys, &mut values) {
                Ok(()) => {
                    out.extend(
                        keys.into_iter()
                            .zip(values)
                            .map(|(key, value)| FlowEntry { key, value }),
                    );
                    return Ok(());
                }
                Err(batch::LookupError::Unsupported) => {
                    tracing::info!(
                        "no batch lookup on LRU hash maps here; reading flows key by key"
                    );
                    self.batch.store(false, Relaxed);
                }
                Err(batch::LookupError::Io(io_error)) => {
                    return Err(DataplaneError::Map {
                        name: names::FLOWS,
                        source: aya::sys::SyscallError {
                            call: "bpf_map_lookup_batch",
                            io_error,
                        }
                        .into(),
                    });
                }
            }
        }
        for item in self.table.iter() {
            match item {
                Ok((key, value)) => out.push(FlowEntry { key, value }),
                // Evicted between finding its key and reading it: gone, not an error.
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => {
                    return Err(DataplaneError::Map {
                        name: names::FLOWS,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Deletes these entries (BPF_MAP_DELETE_BATCH); keys already gone (evicted, or deleted by the
    /// kernel's LRU meanwhile) are skipped. Returns how many were deleted.
    pub fn delete(&self, keys: &[FlowKey]) -> Result<usize, DataplaneError> {
        batch::delete_present(self.table.map().fd().as_fd(), keys).map_err(|io_error| {
            DataplaneError::Map {
                name: names::FLOWS,
                source: aya::sys::SyscallError {
                    call: "bpf_map_delete_batch",
                    io_error,
                }
                .into(),
            }
        })
    }

    /// The kernel's counters, summed over CPUs.
    pub fn stats(&self) -> Result<FlowStats, DataplaneError> {
        let sum = |i| sum_per_cpu(&self.stats, i, names::FLOW_STATS);
        Ok(FlowStats {
            created: sum(FLOW_STAT_CREATED)?,
            insert_failed: sum(FLOW_STAT_INSERT_FAILED)?,
        })
    }
}
