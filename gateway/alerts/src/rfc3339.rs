//! RFC 3339 timestamps in UTC with milliseconds (`2025-01-02T03:04:05.678Z`): the one time format of
//! the JSON lines and of the RFC 5424 TIMESTAMP field. Written by hand (civil-from-days, Howard
//! Hinnant's algorithm) because the crate needs nothing else from a date library.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `time` as `YYYY-MM-DDThh:mm:ss.mmmZ`. Times before 1970 (a broken clock) print as the epoch:
/// an alert keeps a well-formed timestamp whatever the clock says.
pub fn format(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The inverse of [`format`]: `YYYY-MM-DDThh:mm:ss[.fraction]Z` (UTC only, as this crate writes
/// it; fractions beyond nanoseconds are cut). `None` for anything else.
pub fn parse(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    // The fixed part: 19 characters up to the seconds, then an optional fraction, then 'Z'.
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if year < 1970 || !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let rest = &b[19..];
    let (fraction, zone) = match rest.first() {
        Some(b'.') => {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            (&rest[1..=n], &rest[n + 1..])
        }
        _ => (&rest[..0], rest),
    };
    if zone != b"Z" {
        return None;
    }
    let mut nanos = 0u32;
    for i in 0..9 {
        nanos = nanos * 10 + fraction.get(i).map_or(0, |c| u32::from(c - b'0'));
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

fn digits(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
    })
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) of the day `days` after 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift to an era starting on 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to (year, month, day); `year >= 1970`.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
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
            "2025-01-01T00:00:00.Z",
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
