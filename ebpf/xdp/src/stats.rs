//! Per-CPU counters by (row, reason). The kernel is the only writer; per-CPU cells need no atomics.

use gateway_common::{Reason, role::stats_index};

use crate::maps::STATS;

#[inline(always)]
pub fn record(row: u32, reason: Reason, bytes: usize) {
    if let Some(cell) = STATS.get_ptr_mut(stats_index(row, reason)) {
        // SAFETY: the pointer is this CPU's cell of a per-CPU array; XDP runs with preemption
        // disabled, so nothing else writes it concurrently.
        unsafe {
            (*cell).packets += 1;
            (*cell).bytes += bytes as u64;
        }
    }
}
