//! Reading the per-CPU counters: one row per (stats row, reason), summed over CPUs.
use gateway_common::{Reason, Role, maps as names, role::stats_index};

use crate::{Dataplane, DataplaneError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterRow {
    /// `lan`, `dedicated`, `internet`, or `unknown`.
    pub role: &'static str,
    pub reason: Reason,
    pub packets: u64,
    pub bytes: u64,
}

impl Dataplane {
    /// Every (role, reason) counter, zeros included, in a fixed order.
    pub fn counters(&self) -> Result<Vec<CounterRow>, DataplaneError> {
        let mut rows = Vec::with_capacity(names::STATS_LEN as usize);
        for row in 0..Role::STATS_ROWS {
            for reason in Reason::ALL {
                let per_cpu =
                    self.maps
                        .stats
                        .get(&stats_index(row, reason), 0)
                        .map_err(|source| DataplaneError::Map {
                            name: names::STATS,
                            source,
                        })?;
                let (packets, bytes) = per_cpu
                    .iter()
                    .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
                rows.push(CounterRow {
                    role: Role::row_name(row),
                    reason,
                    packets,
                    bytes,
                });
            }
        }
        Ok(rows)
    }
}

/// One cell of a per-CPU `u64` counter array (FLOW_STATS, EVENT_STATS), summed over CPUs.
pub(crate) fn sum_per_cpu(
    map: &aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    index: u32,
    name: &'static str,
) -> Result<u64, DataplaneError> {
    let per_cpu = map
        .get(&index, 0)
        .map_err(|source| DataplaneError::Map { name, source })?;
    Ok(per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
}
