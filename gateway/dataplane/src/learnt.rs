//! The learnt blocked-address set and the SNI/learning counters seen from userspace (issue 6 item 3,
//! `gateway_common::learn`): list the live entries, sweep expired ones, read the counters.
//!
//! The kernel writes these maps; userspace only reads them and deletes entries that expired (an
//! expired entry no longer blocks anything, the sweep just frees its slot and makes the count
//! exact). A [`LearntTable`] holds its own file descriptors, like the flow table.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use gateway_common::{
    learn::{DOMAIN_STAT_NAMES, DOMAIN_STATS_LEN, LearntValue},
    maps as names,
};

use crate::{
    Dataplane, DataplaneError,
    flows::{dup, map_err},
    stats::sum_per_cpu,
};

/// One learnt address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearntEntry {
    pub addr: IpAddr,
    pub value: LearntValue,
}

/// `DOMAIN_STATS` summed over CPUs, in `DOMAIN_STAT_NAMES` order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainStats(pub [u64; DOMAIN_STATS_LEN as usize]);

impl DomainStats {
    /// `(name, value)` pairs, for metrics and the CLI.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DOMAIN_STAT_NAMES
            .iter()
            .copied()
            .zip(self.0.iter().copied())
    }

    pub fn get(&self, index: u32) -> u64 {
        self.0[index as usize]
    }
}

/// Handles on `LEARNT_V4`, `LEARNT_V6` and `DOMAIN_STATS`.
pub struct LearntTable {
    v4: HashMap<MapData, [u8; 4], LearntValue>,
    v6: HashMap<MapData, [u8; 16], LearntValue>,
    stats: PerCpuArray<MapData, u64>,
}

impl Dataplane {
    /// A handle on the learnt-address maps (its own file descriptors; the maps stay in the
    /// loaded object, so nothing else in `Dataplane` changes).
    pub fn learnt_table(&self) -> Result<LearntTable, DataplaneError> {
        Ok(LearntTable {
            v4: self.typed_dup(names::LEARNT_V4)?,
            v6: self.typed_dup(names::LEARNT_V6)?,
            stats: self.typed_dup(names::DOMAIN_STATS)?,
        })
    }

    fn typed_dup<T: TryFrom<Map, Error = aya::maps::MapError>>(
        &self,
        name: &'static str,
    ) -> Result<T, DataplaneError> {
        let data = match self.ebpf.map(name) {
            Some(Map::LruHashMap(d) | Map::PerCpuArray(d)) => d,
            Some(_) | None => return Err(DataplaneError::MissingMap(name)),
        };
        T::try_from(dup(data, name)?).map_err(map_err(name))
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns` and of `expires_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl LearntTable {
    /// Every entry, live or expired (compare `value.expires_ns` with [`monotonic_ns`]), IPv4 first.
    pub fn entries(&self) -> Result<Vec<LearntEntry>, DataplaneError> {
        let mut out = Vec::new();
        for item in self.v4.iter() {
            let (k, v) = item.map_err(map_err(names::LEARNT_V4))?;
            out.push(LearntEntry {
                addr: IpAddr::V4(Ipv4Addr::from(k)),
                value: v,
            });
        }
        for item in self.v6.iter() {
            let (k, v) = item.map_err(map_err(names::LEARNT_V6))?;
            out.push(LearntEntry {
                addr: IpAddr::V6(Ipv6Addr::from(k)),
                value: v,
            });
        }
        Ok(out)
    }

    /// Deletes the entries expired at `now_ns`; returns how many. An entry the kernel refreshed
    /// between the read and the delete is lost early (it is re-learnt by the next answer).
    pub fn sweep(&mut self, now_ns: u64) -> Result<usize, DataplaneError> {
        let mut deleted = 0;
        for e in self.entries()? {
            if e.value.expires_ns > now_ns {
                continue;
            }
            let gone = match e.addr {
                IpAddr::V4(a) => self.v4.remove(&a.octets()),
                IpAddr::V6(a) => self.v6.remove(&a.octets()),
            };
            if gone.is_ok() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// The kernel's SNI and learning counters since the maps were created.
    pub fn stats(&self) -> Result<DomainStats, DataplaneError> {
        let mut out = DomainStats::default();
        for (i, cell) in out.0.iter_mut().enumerate() {
            *cell = sum_per_cpu(&self.stats, i as u32, names::DOMAIN_STATS)?;
        }
        Ok(out)
    }

    /// Capacity of each of the two maps.
    pub fn capacity(&self) -> u32 {
        gateway_common::learn::LEARNT_ENTRIES
    }
}
