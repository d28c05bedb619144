//! Wall-clock stamps for the history and the audit log: Unix milliseconds for machines and RFC 3339
//! UTC for people (an inspector reads the audit log as text).
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; a clock set before 1970 reads as 0 rather than failing a write.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `2026-03-01T08:15:02.123Z` (the format of the alerts too: `gateway_alerts::rfc3339`).
pub fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(from_unix_ms(unix_ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @951782400` → Tue Feb 29 00:00:00 UTC 2000 (a leap day of a century year).
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        // `date -u -d @1772352902.123` → 2026-03-01 08:15:02.123.
        assert_eq!(rfc3339(1_772_352_902_123), "2026-03-01T08:15:02.123Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
