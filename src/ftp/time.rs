//! FTP timestamps (RFC 3659 `time-val`): `YYYYMMDDHHMMSS[.fraction]`, always UTC,
//! as sent in MDTM replies and MLSD `modify=` facts, and as sent back by MFMT and
//! the two-argument `MDTM time path`.
//!
//! The calendar arithmetic is written here (proleptic Gregorian, Howard Hinnant's
//! `days_from_civil`) so that the protocol layer needs no date crate.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: i64 = 86_400;
const WHOLE_SECONDS_DIGITS: usize = 14;
const NANOSECOND_DIGITS: usize = 9;

/// Parses `YYYYMMDDHHMMSS` with an optional `.f`–`.fffffffff…` fraction (UTC).
/// Digits past nanoseconds are accepted and ignored.
pub fn parse_ftp_timestamp(s: &[u8]) -> Option<SystemTime> {
    let whole = s.get(..WHOLE_SECONDS_DIGITS)?;
    let nanos = parse_fraction_nanos(s.get(WHOLE_SECONDS_DIGITS..)?)?;
    let seconds = parse_whole_seconds(whole)?.unix_seconds()?;
    system_time_from_unix(seconds, nanos)
}

/// Formats `t` as `YYYYMMDDHHMMSS` in UTC; the sub-second part is dropped.
pub fn format_ftp_timestamp(t: SystemTime) -> String {
    let c = CivilDateTime::from_unix_seconds(unix_seconds_floor(t));
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// A UTC calendar date and time of day, before validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CivilDateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    /// 60 is allowed for a leap second; it counts as the next minute's 00.
    pub second: u32,
}

impl CivilDateTime {
    pub(crate) fn date(year: i64, month: u32, day: u32) -> Self {
        Self::date_time(year, month, day, 0, 0)
    }

    pub(crate) fn date_time(year: i64, month: u32, day: u32, hour: u32, minute: u32) -> Self {
        CivilDateTime {
            year,
            month,
            day,
            hour,
            minute,
            second: 0,
        }
    }

    /// Seconds since the Unix epoch, or None when a field is out of range
    /// (years are those of four-digit timestamps: 0–9999).
    pub(crate) fn unix_seconds(&self) -> Option<i64> {
        if !self.is_valid() {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let time_of_day = i64::from(self.hour * 3600 + self.minute * 60 + self.second);
        days.checked_mul(SECONDS_PER_DAY)?.checked_add(time_of_day)
    }

    pub(crate) fn from_unix_seconds(seconds: i64) -> Self {
        let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
        let time_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
        CivilDateTime {
            year,
            month,
            day,
            hour: (time_of_day / 3600) as u32,
            minute: (time_of_day % 3600 / 60) as u32,
            second: (time_of_day % 60) as u32,
        }
    }

    fn is_valid(&self) -> bool {
        (0..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour <= 23
            && self.minute <= 59
            && self.second <= 60
    }
}

pub(crate) fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1–12) of `year`; 0 for a month out of range.
pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a valid proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days.saturating_add(719_468);
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400;
    (if month <= 2 { year + 1 } else { year }, month, day)
}

/// Whole seconds since the epoch, rounded towards the past.
pub(crate) fn unix_seconds_floor(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            let partial = i64::from(before.subsec_nanos() > 0);
            (-whole).saturating_sub(partial)
        }
    }
}

/// The instant `seconds` + `nanos` after the epoch (seconds may be negative).
pub(crate) fn system_time_from_unix(seconds: i64, nanos: u32) -> Option<SystemTime> {
    let whole = Duration::from_secs(seconds.unsigned_abs());
    let at_whole_second = if seconds >= 0 {
        UNIX_EPOCH.checked_add(whole)?
    } else {
        UNIX_EPOCH.checked_sub(whole)?
    };
    at_whole_second.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// A non-empty run of ASCII digits as a number; None on anything else or overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        let digit = char::from(byte).to_digit(10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn parse_whole_seconds(digits: &[u8]) -> Option<CivilDateTime> {
    let field = |range: std::ops::Range<usize>| -> Option<u32> {
        u32::try_from(parse_decimal(digits.get(range)?)?).ok()
    };
    Some(CivilDateTime {
        year: i64::from(field(0..4)?),
        month: field(4..6)?,
        day: field(6..8)?,
        hour: field(8..10)?,
        minute: field(10..12)?,
        second: field(12..14)?,
    })
}

/// Nanoseconds of `.fff…`, or 0 for an empty suffix; None for anything else.
fn parse_fraction_nanos(suffix: &[u8]) -> Option<u32> {
    if suffix.is_empty() {
        return Some(0);
    }
    let digits = suffix.strip_prefix(b".")?;
    parse_decimal(digits)?;
    let significant = digits.get(..NANOSECOND_DIGITS).unwrap_or(digits);
    let value = parse_decimal(significant)?;
    let scale = 10u64.pow((NANOSECOND_DIGITS - significant.len()) as u32);
    u32::try_from(value * scale).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, nanos: u32) -> SystemTime {
        system_time_from_unix(seconds, nanos).unwrap()
    }

    #[test]
    fn parses_whole_seconds() {
        assert_eq!(
            parse_ftp_timestamp(b"20240115103000"),
            Some(at(1_705_314_600, 0))
        );
        assert_eq!(parse_ftp_timestamp(b"19700101000000"), Some(UNIX_EPOCH));
    }

    #[test]
    fn parses_fractions_of_any_length() {
        assert_eq!(
            parse_ftp_timestamp(b"20240115103000.5"),
            Some(at(1_705_314_600, 500_000_000))
        );
        assert_eq!(
            parse_ftp_timestamp(b"20240115103000.123"),
            Some(at(1_705_314_600, 123_000_000))
        );
        assert_eq!(
            parse_ftp_timestamp(b"20240115103000.123456789999"),
            Some(at(1_705_314_600, 123_456_789))
        );
    }

    #[test]
    fn parses_years_before_1970() {
        assert_eq!(parse_ftp_timestamp(b"19691231235959"), Some(at(-1, 0)));
        assert_eq!(
            parse_ftp_timestamp(b"19000101000000"),
            Some(at(-2_208_988_800, 0))
        );
    }

    #[test]
    fn accepts_a_leap_second_and_february_29_of_leap_years() {
        assert_eq!(
            parse_ftp_timestamp(b"20161231235960"),
            Some(at(1_483_228_800, 0))
        );
        assert!(parse_ftp_timestamp(b"20240229120000").is_some());
        assert!(parse_ftp_timestamp(b"20000229120000").is_some());
    }

    #[test]
    fn rejects_out_of_range_fields() {
        for bad in [
            &b"20230229120000"[..],
            b"19000229120000",
            b"20241301000000",
            b"20240001000000",
            b"20240100000000",
            b"20240431000000",
            b"20240115240000",
            b"20240115236000",
            b"20240115235961",
        ] {
            assert_eq!(parse_ftp_timestamp(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b""[..],
            b"2024011510300",
            b"202401151030000",
            b"20240115103000.",
            b"20240115103000.12a",
            b"20240115103000,5",
            b"2024-01-15 10:30",
            b"+2024011510300",
            b"20240115103000 ",
            b" 20240115103000",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_ftp_timestamp(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn formats_utc_and_drops_fractions() {
        assert_eq!(
            format_ftp_timestamp(at(1_705_314_600, 999_999_999)),
            "20240115103000"
        );
        assert_eq!(format_ftp_timestamp(UNIX_EPOCH), "19700101000000");
        assert_eq!(format_ftp_timestamp(at(-1, 500)), "19691231235959");
        assert_eq!(format_ftp_timestamp(at(951_782_400, 0)), "20000229000000");
    }

    #[test]
    fn civil_days_round_trip_across_eras() {
        for days in (-800_000..800_000).step_by(97) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
            assert!((1..=days_in_month(year, month)).contains(&day));
        }
    }

    #[test]
    fn known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_737), (2024, 1, 15));
    }

    #[test]
    fn decimal_rejects_signs_and_overflow() {
        assert_eq!(parse_decimal(b"0042"), Some(42));
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
    }
}
