//! RFC 3339 timestamps in UTC with milliseconds (`2025-01-02T03:04:05.678Z`): the one time format of
//! the JSON lines, of the RFC 5424 TIMESTAMP field and of the management API's history and audit log
//! (`gateway_api::clock` uses these too).
use std::time::{SystemTime, UNIX_EPOCH};

/// `time` as `YYYY-MM-DDThh:mm:ss.mmmZ` (sub-milliseconds cut). Times before 1970 (a broken clock)
/// print as the epoch: a record keeps a well-formed timestamp whatever the clock says.
pub fn format(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time.max(UNIX_EPOCH)).to_string()
}

/// The inverse of [`format`]: `YYYY-MM-DDThh:mm:ss[.fraction]Z`, UTC only, not before 1970.
/// `None` for anything else.
pub fn parse(text: &str) -> Option<SystemTime> {
    if !text.ends_with('Z') {
        return None;
    }
    humantime::parse_rfc3339(text).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, millis: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, millis * 1_000_000)
    }

    #[test]
    fn known_instants() {
        assert_eq!(format(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // date -u -d @1735787045 → Thu Jan  2 03:04:05 UTC 2025
        assert_eq!(format(at(1_735_787_045, 678)), "2025-01-02T03:04:05.678Z");
        // A leap day and the last millisecond of a leap year.
        assert_eq!(format(at(951_782_400, 1)), "2000-02-29T00:00:00.001Z");
        assert_eq!(format(at(1_735_689_599, 999)), "2024-12-31T23:59:59.999Z");
        // Sub-millisecond digits are cut, never rounded up into the next second.
        assert_eq!(
            format(UNIX_EPOCH + Duration::new(59, 999_999_999)),
            "1970-01-01T00:00:59.999Z"
        );
        assert_eq!(
            format(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn round_trips_every_day_of_several_centuries() {
        // One instant per day from 1970 to 2400 (covers 2000 and 2100, 2400 leap rules).
        let mut days = 0u64;
        while days < 157_000 {
            let t = at(days * 86_400 + 45_296, 789);
            let text = format(t);
            assert_eq!(parse(&text), Some(t), "{text}");
            days += 1;
        }
    }

    #[test]
    fn parse_refuses_what_is_not_ours() {
        for bad in [
            "",
            "2025-01-02T03:04:05.678",
            "2025-01-02T03:04:05.678+01:00",
            "2025-01-02 03:04:05Z",
            "2025-02-30T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "2025-01-0xT00:00:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse("2025-01-02T03:04:05Z"), Some(at(1_735_787_045, 0)));
        assert_eq!(
            parse("2025-01-02T03:04:05.1234567891Z"),
            Some(UNIX_EPOCH + Duration::new(1_735_787_045, 123_456_789))
        );
    }
}
