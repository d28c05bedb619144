//! The data path stamps packets with `bpf_ktime_get_ns` (CLOCK_MONOTONIC); the SOC wants wall-clock
//! time. One reading of both clocks converts the one into the other.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_MONOTONIC now, ns.
    pub mono_ns: u64,
    /// Unix time now, ns.
    unix_ns: u64,
}

impl Clock {
    pub fn now() -> Clock {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a valid pointer; CLOCK_MONOTONIC always
        // exists on Linux, so it cannot fail.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let mono_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        let unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Clock { mono_ns, unix_ns }
    }

    /// The wall-clock time of a monotonic stamp.
    pub fn wall(&self, mono_ns: u64) -> SystemTime {
        let unix = (self.unix_ns as i128 - self.mono_ns as i128 + mono_ns as i128).max(0);
        UNIX_EPOCH + Duration::from_nanos(unix as u64)
    }

    /// Unix milliseconds of a monotonic stamp.
    pub fn unix_ms(&self, mono_ns: u64) -> u64 {
        self.wall(mono_ns)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_stamps_become_wall_time() {
        let c = Clock::now();
        let now_ms = c.unix_ms(c.mono_ns);
        assert_eq!(c.unix_ms(c.mono_ns - 1_500_000_000), now_ms - 1500);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        assert!(wall.abs_diff(now_ms) < 5_000, "{wall} vs {now_ms}");
    }
}
