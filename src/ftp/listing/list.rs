//! LIST lines, which have no standard: Unix `ls -l` style (vsftpd, ProFTPD,
//! Pure-FTPd, FileZilla Server) and DOS style (IIS).
//!
//! LIST times are in the server's zone, which the client can't know; they are
//! taken as UTC, and they are only to the minute (to the day for old files), so
//! `modified_exact` is always false: whoever needs the exact time asks MDTM.
use std::time::SystemTime;

use super::{Entry, EntryKind};
use crate::ftp::time::{parse_decimal, system_time_from_unix, unix_seconds_floor, CivilDateTime};

/// Entries of a LIST body; blank, `total N`, `.`, `..` and unparsable lines are
/// left out. `now` places `Mon DD HH:MM` dates, which have no year.
pub fn parse_list(body: &[u8], now: SystemTime) -> Vec<Entry> {
    body.split(|&byte| byte == b'\n')
        .filter_map(|line| parse_list_line(line, now))
        .collect()
}

/// One LIST line, Unix or DOS style; None for `.`, `..` and anything unparsable.
pub fn parse_list_line(line: &[u8], now: SystemTime) -> Option<Entry> {
    let line = strip_line_end(line);
    let entry = parse_unix_line(line, now).or_else(|| parse_dos_line(line))?;
    if entry.name == b"." || entry.name == b".." {
        return None;
    }
    Some(entry)
}

/// Enough leading columns for permissions, links, owner, group, a device's
/// `major, minor`, and the three date columns.
const UNIX_COLUMNS_BEFORE_NAME: usize = 10;
/// Where the size column may be: after permissions, then owner, optionally
/// preceded by the link count and followed by the group.
const UNIX_SIZE_COLUMNS: std::ops::RangeInclusive<usize> = 2..=4;
/// A `Mon DD HH:MM` date may be up to this far ahead of `now` (clock skew, zones).
const YEARLESS_DATE_TOLERANCE_SECONDS: i64 = 86_400;
/// How many years back a yearless `Feb 29` may be looked for.
const YEARLESS_DATE_YEARS_BACK: i64 = 8;

// ---------------------------------------------------------------- Unix style

/// `drwxr-xr-x 2 user group 4096 Jan 15 10:30 name`
fn parse_unix_line(line: &[u8], now: SystemTime) -> Option<Entry> {
    let columns = leading_columns(line, UNIX_COLUMNS_BEFORE_NAME);
    let (file_type, mode) = parse_permissions(columns.first()?.text)?;
    let layout = find_size_and_date(&columns, file_type)?;
    let (name, kind) = name_and_kind(line.get(layout.name_start..)?, file_type);
    if name.is_empty() {
        return None;
    }
    let modified = layout
        .date
        .unix_seconds(now)
        .and_then(|seconds| system_time_from_unix(seconds, 0));
    Some(Entry {
        name: name.to_vec(),
        kind,
        size: layout.size,
        modified,
        modified_exact: false,
        mode: Some(mode),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnixFileType {
    File,
    Dir,
    Symlink,
    Device,
    Other,
}

/// `drwxr-sr-t+`: the type letter, nine permission letters, an optional ACL or
/// extended-attribute marker.
fn parse_permissions(column: &[u8]) -> Option<(UnixFileType, u32)> {
    let (&type_letter, rest) = column.split_first()?;
    let letters = match rest {
        [letters @ .., b'+' | b'@' | b'.'] if letters.len() == 9 => letters,
        letters => letters,
    };
    let [ur, uw, ux, gr, gw, gx, or, ow, ox] = *letters else {
        return None;
    };
    let file_type = match type_letter {
        b'-' => UnixFileType::File,
        b'd' => UnixFileType::Dir,
        b'l' => UnixFileType::Symlink,
        b'b' | b'c' => UnixFileType::Device,
        b'p' | b's' | b'D' => UnixFileType::Other,
        _ => return None,
    };
    let mode = permission_bit(ur, b'r', 0o400)?
        | permission_bit(uw, b'w', 0o200)?
        | execute_bits(ux, 0o100, b's', 0o4000)?
        | permission_bit(gr, b'r', 0o040)?
        | permission_bit(gw, b'w', 0o020)?
        | execute_bits(gx, 0o010, b's', 0o2000)?
        | permission_bit(or, b'r', 0o004)?
        | permission_bit(ow, b'w', 0o002)?
        | execute_bits(ox, 0o001, b't', 0o1000)?;
    Some((file_type, mode))
}

fn permission_bit(letter: u8, granted: u8, bit: u32) -> Option<u32> {
    match letter {
        b'-' => Some(0),
        _ if letter == granted => Some(bit),
        _ => None,
    }
}

/// `x`, or the special bit: lowercase (`s`, `t`) with execute, uppercase without.
fn execute_bits(letter: u8, execute: u32, special_letter: u8, special: u32) -> Option<u32> {
    match letter {
        b'-' => Some(0),
        b'x' => Some(execute),
        _ if letter == special_letter => Some(execute | special),
        _ if letter == special_letter.to_ascii_uppercase() => Some(special),
        _ => None,
    }
}

struct UnixLayout {
    size: Option<u64>,
    date: ListDate,
    name_start: usize,
}

/// Finds the size column followed by a date. The right-most candidate wins: an
/// owner or group may look like a month, but the name never starts soon enough
/// to hold a date whose size column is one of the first few columns.
fn find_size_and_date(columns: &[Column<'_>], file_type: UnixFileType) -> Option<UnixLayout> {
    (1..columns.len()).rev().find_map(|month_at| {
        let date = parse_unix_date(columns.get(month_at..)?)?;
        let (size_at, size) = size_before(columns, month_at, file_type)?;
        if !UNIX_SIZE_COLUMNS.contains(&size_at) {
            return None;
        }
        let last_date_column = columns.get(month_at + 2)?;
        Some(UnixLayout {
            size,
            date,
            name_start: last_date_column.end + 1,
        })
    })
}

/// The column where the size starts, and the size; a device has `major, minor`
/// (one or two columns) and no size.
fn size_before(
    columns: &[Column<'_>],
    month_at: usize,
    file_type: UnixFileType,
) -> Option<(usize, Option<u64>)> {
    let last = columns.get(month_at.checked_sub(1)?)?.text;
    if file_type != UnixFileType::Device {
        return Some((month_at - 1, Some(parse_decimal(last)?)));
    }
    let major = month_at
        .checked_sub(2)
        .and_then(|at| columns.get(at))
        .and_then(|column| column.text.strip_suffix(b","));
    if major.and_then(parse_decimal).is_some() && parse_decimal(last).is_some() {
        return Some((month_at - 2, None));
    }
    if is_major_minor(last) || parse_decimal(last).is_some() {
        return Some((month_at - 1, None));
    }
    None
}

/// `8,1` in one column.
fn is_major_minor(column: &[u8]) -> bool {
    match split_once(column, b',') {
        Some((major, minor)) => parse_decimal(major).is_some() && parse_decimal(minor).is_some(),
        None => false,
    }
}

/// `Jan 15 10:30` or `Jan 15 2023` at the start of `columns`.
fn parse_unix_date(columns: &[Column<'_>]) -> Option<ListDate> {
    let [month, day, time_or_year, ..] = columns else {
        return None;
    };
    let month = month_number(month.text)?;
    let day = u32::try_from(parse_decimal(day.text)?).ok()?;
    if !(1..=31).contains(&day) {
        return None;
    }
    if let Some((hour, minute)) = parse_hour_minute(time_or_year.text) {
        return Some(ListDate::Yearless {
            month,
            day,
            hour,
            minute,
        });
    }
    let year = parse_four_digit_year(time_or_year.text)?;
    Some(ListDate::Full(CivilDateTime::date(year, month, day)))
}

fn month_number(name: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let position = MONTHS
        .iter()
        .position(|month| month.eq_ignore_ascii_case(name))?;
    u32::try_from(position + 1).ok()
}

/// A symlink's `name -> target` is split at the first ` -> `; other names are
/// kept whole even when they hold ` -> `.
fn name_and_kind(name: &[u8], file_type: UnixFileType) -> (&[u8], EntryKind) {
    match file_type {
        UnixFileType::File => (name, EntryKind::File),
        UnixFileType::Dir => (name, EntryKind::Dir),
        UnixFileType::Device | UnixFileType::Other => (name, EntryKind::Other),
        UnixFileType::Symlink => match find(name, b" -> ") {
            Some(arrow) => {
                let target = name.get(arrow + 4..).filter(|target| !target.is_empty());
                let name = name.get(..arrow).unwrap_or(name);
                let target = target.map(<[u8]>::to_vec);
                (name, EntryKind::Symlink { target })
            }
            None => (name, EntryKind::Symlink { target: None }),
        },
    }
}

// ---------------------------------------------------------------- dates

enum ListDate {
    Full(CivilDateTime),
    /// `Mon DD HH:MM`: this year or last, whichever is the most recent not
    /// (much) in the future.
    Yearless {
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
    },
}

impl ListDate {
    fn unix_seconds(&self, now: SystemTime) -> Option<i64> {
        match *self {
            ListDate::Full(civil) => civil.unix_seconds(),
            ListDate::Yearless {
                month,
                day,
                hour,
                minute,
            } => {
                let now = unix_seconds_floor(now);
                let latest = now.saturating_add(YEARLESS_DATE_TOLERANCE_SECONDS);
                let this_year = CivilDateTime::from_unix_seconds(now).year;
                let years = (this_year - YEARLESS_DATE_YEARS_BACK..=this_year + 1).rev();
                years
                    .filter_map(|year| {
                        CivilDateTime::date_time(year, month, day, hour, minute).unix_seconds()
                    })
                    .find(|&seconds| seconds <= latest)
            }
        }
    }
}

/// `10:30`, `9:05`
fn parse_hour_minute(text: &[u8]) -> Option<(u32, u32)> {
    let (hour, minute) = split_once(text, b':')?;
    if !(1..=2).contains(&hour.len()) || minute.len() != 2 {
        return None;
    }
    let hour = u32::try_from(parse_decimal(hour)?).ok()?;
    let minute = u32::try_from(parse_decimal(minute)?).ok()?;
    (hour <= 23 && minute <= 59).then_some((hour, minute))
}

fn parse_four_digit_year(text: &[u8]) -> Option<i64> {
    if text.len() != 4 {
        return None;
    }
    i64::try_from(parse_decimal(text)?).ok()
}

// ---------------------------------------------------------------- DOS style

/// `01-15-24  10:30AM       <DIR>          name` or
/// `01-15-2024  22:30  1234567 name with spaces`
fn parse_dos_line(line: &[u8]) -> Option<Entry> {
    let columns = leading_columns(line, 3);
    let [date, time, size_or_dir] = columns.as_slice() else {
        return None;
    };
    let (year, month, day) = parse_dos_date(date.text)?;
    let (hour, minute) = parse_dos_time(time.text)?;
    let after_size = line.get(size_or_dir.end..)?;
    let (kind, size, name) = if size_or_dir.text.eq_ignore_ascii_case(b"<DIR>") {
        // IIS pads `<DIR>` to the name column, so the padding is not part of the name.
        let name = after_size.trim_ascii_start();
        (EntryKind::Dir, None, name)
    } else {
        let size = parse_decimal(size_or_dir.text)?;
        (EntryKind::File, Some(size), after_size.get(1..)?)
    };
    if name.is_empty() {
        return None;
    }
    let modified = CivilDateTime::date_time(year, month, day, hour, minute)
        .unix_seconds()
        .and_then(|seconds| system_time_from_unix(seconds, 0));
    Some(Entry {
        name: name.to_vec(),
        kind,
        size,
        modified,
        modified_exact: false,
        mode: None,
    })
}

/// `MM-DD-YY` or `MM-DD-YYYY`; two-digit years 70–99 are 19xx, the rest 20xx.
fn parse_dos_date(text: &[u8]) -> Option<(i64, u32, u32)> {
    let mut parts = text.split(|&byte| byte == b'-');
    let (month, day, year) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let year = match year.len() {
        2 => match i64::try_from(parse_decimal(year)?).ok()? {
            short @ 70..=99 => 1900 + short,
            short => 2000 + short,
        },
        4 => i64::try_from(parse_decimal(year)?).ok()?,
        _ => return None,
    };
    let month = u32::try_from(parse_decimal(month)?).ok()?;
    let day = u32::try_from(parse_decimal(day)?).ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some((year, month, day))
}

/// `10:30AM`, `12:05am`, `22:30`
fn parse_dos_time(text: &[u8]) -> Option<(u32, u32)> {
    let (clock, half_day) = split_am_pm(text);
    let (hour, minute) = parse_hour_minute(clock)?;
    match half_day {
        None => Some((hour, minute)),
        Some(offset) if (1..=12).contains(&hour) => Some((hour % 12 + offset, minute)),
        Some(_) => None,
    }
}

/// The clock part and, for a 12-hour time, the hours its `AM`/`PM` adds.
fn split_am_pm(text: &[u8]) -> (&[u8], Option<u32>) {
    match text.split_at_checked(text.len().saturating_sub(2)) {
        Some((clock, suffix)) if suffix.eq_ignore_ascii_case(b"AM") => (clock, Some(0)),
        Some((clock, suffix)) if suffix.eq_ignore_ascii_case(b"PM") => (clock, Some(12)),
        _ => (text, None),
    }
}

// ---------------------------------------------------------------- bytes

/// A space-separated column and the offset just past it.
struct Column<'a> {
    text: &'a [u8],
    end: usize,
}

/// The first `max` space-separated columns of `line`.
fn leading_columns(line: &[u8], max: usize) -> Vec<Column<'_>> {
    let mut columns = Vec::with_capacity(max);
    let mut at = 0;
    while columns.len() < max {
        let Some(start) = line
            .get(at..)
            .and_then(|rest| rest.iter().position(|&b| b != b' '))
        else {
            break;
        };
        let start = at + start;
        let rest = line.get(start..).unwrap_or_default();
        let end = start + rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        columns.push(Column {
            text: line.get(start..end).unwrap_or_default(),
            end,
        });
        at = end;
    }
    columns
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&byte| byte == separator)?;
    Some((bytes.get(..at)?, bytes.get(at + 1..)?))
}

fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Option<SystemTime> {
        system_time_from_unix(seconds, 0)
    }

    /// 2024-06-01 12:00:00 UTC
    fn june_2024() -> SystemTime {
        at(1_717_243_200).unwrap()
    }

    fn unix(line: &[u8]) -> Entry {
        parse_list_line(line, june_2024()).unwrap()
    }

    #[test]
    fn permissions_to_mode() {
        let mode = |perms: &[u8]| parse_permissions(perms).map(|(_, mode)| mode);
        assert_eq!(mode(b"-rw-r--r--"), Some(0o644));
        assert_eq!(mode(b"drwxr-xr-x"), Some(0o755));
        assert_eq!(mode(b"-rwsr-xr-x"), Some(0o4755));
        assert_eq!(mode(b"-rwSr--r--"), Some(0o4644));
        assert_eq!(mode(b"drwxr-sr-x"), Some(0o2755));
        assert_eq!(mode(b"-rw-r-Sr--"), Some(0o2644));
        assert_eq!(mode(b"drwxrwxrwt"), Some(0o1777));
        assert_eq!(mode(b"drwxrwxrwT"), Some(0o1776));
        assert_eq!(mode(b"drwxr-xr-x+"), Some(0o755));
        assert_eq!(mode(b"-rw-r--r--@"), Some(0o644));
        assert_eq!(mode(b"-rw-r--r--."), Some(0o644));
        assert_eq!(mode(b"----------"), Some(0));
        for bad in [
            &b"-rw-r--r-"[..],
            b"-rw-r--r--x",
            b"-rw-r--r--++",
            b"xrw-r--r--",
            b"-rwxr-xr-s",
            b"-rtxr-xr-x",
            b"total",
            b"",
        ] {
            assert_eq!(mode(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn columns_with_and_without_links_and_group() {
        for line in [
            &b"-rw-r--r--    1 1000     1000         1234 Jan 15 10:30 f"[..],
            b"-rw-r--r--    1 owner        1234 Jan 15 10:30 f",
            b"-rw-r--r-- owner group 1234 Jan 15 10:30 f",
            b"-rw-r--r-- owner 1234 Jan 15 10:30 f",
        ] {
            let entry = unix(line);
            assert_eq!(entry.name, b"f", "{:?}", line);
            assert_eq!(entry.size, Some(1234), "{:?}", line);
            assert_eq!(entry.modified, at(1_705_314_600), "{:?}", line);
        }
    }

    #[test]
    fn owner_or_group_that_looks_like_a_date() {
        let entry = unix(b"-rw-r--r-- 1 May 1 1234 Jan 15 10:30 f");
        assert_eq!((entry.name.as_slice(), entry.size), (&b"f"[..], Some(1234)));
        let entry = unix(b"-rw-r--r-- 1 5 Jan 15 2020 Feb 3 10:00 x");
        assert_eq!(entry.name, b"Feb 3 10:00 x");
        assert_eq!(entry.size, Some(5));
    }

    #[test]
    fn name_that_looks_like_a_listing_tail() {
        let entry = unix(b"-rw-r--r-- 1 u g 5 Jan 15 10:30 7 Jan 1 2020 x");
        assert_eq!(entry.name, b"7 Jan 1 2020 x");
        assert_eq!(entry.size, Some(5));
    }

    #[test]
    fn devices_are_other_without_size() {
        for line in [
            &b"crw-rw-rw-    1 0        0          1,   3 Jan 15 10:30 null"[..],
            b"brw-rw----    1 0        6          8,1 Jan 15 10:30 sda1",
            b"crw-rw-rw-    1 0        0            0 Jan 15 10:30 zero",
        ] {
            let entry = unix(line);
            assert_eq!(
                (entry.kind, entry.size),
                (EntryKind::Other, None),
                "{:?}",
                line
            );
        }
        assert_eq!(
            unix(b"crw-rw-rw-    1 0        0          1,   3 Jan 15 10:30 null").name,
            b"null"
        );
    }

    #[test]
    fn pipes_and_sockets_are_other() {
        assert_eq!(
            unix(b"prw-r--r-- 1 u g 0 Jan 15 10:30 fifo").kind,
            EntryKind::Other
        );
        assert_eq!(
            unix(b"srwxrwxrwx 1 u g 0 Jan 15 10:30 sock").kind,
            EntryKind::Other
        );
    }

    #[test]
    fn symlink_split_at_the_first_arrow() {
        let entry = unix(b"lrwxrwxrwx 1 u g 7 Jan 15 10:30 a -> b -> c");
        assert_eq!(entry.name, b"a");
        assert_eq!(
            entry.kind,
            EntryKind::Symlink {
                target: Some(b"b -> c".to_vec())
            }
        );
        let entry = unix(b"lrwxrwxrwx 1 u g 7 Jan 15 10:30 dangling");
        assert_eq!(entry.kind, EntryKind::Symlink { target: None });
        assert_eq!(
            parse_list_line(b"lrwxrwxrwx 1 u g 7 Jan 15 10:30  -> x", june_2024()),
            None
        );
        let entry = unix(b"lrwxrwxrwx 1 u g 7 Jan 15 10:30 empty -> ");
        assert_eq!(
            (entry.name.as_slice(), entry.kind),
            (&b"empty"[..], EntryKind::Symlink { target: None })
        );
    }

    #[test]
    fn yearless_dates_pick_the_most_recent_past_year() {
        // now = 2024-06-01 12:00 UTC
        let modified = |line: &[u8]| unix(line).modified;
        let when = |y, m, d, h, min| {
            at(CivilDateTime::date_time(y, m, d, h, min)
                .unix_seconds()
                .unwrap())
        };
        assert_eq!(
            modified(b"-rw-r--r-- 1 u g 1 Jun 02 11:59 f"),
            when(2024, 6, 2, 11, 59)
        );
        assert_eq!(
            modified(b"-rw-r--r-- 1 u g 1 Jun 02 12:01 f"),
            when(2023, 6, 2, 12, 1)
        );
        assert_eq!(
            modified(b"-rw-r--r-- 1 u g 1 Dec 31 23:59 f"),
            when(2023, 12, 31, 23, 59)
        );
        assert_eq!(
            modified(b"-rw-r--r-- 1 u g 1 Feb 29 10:00 f"),
            when(2024, 2, 29, 10, 0)
        );
        assert_eq!(modified(b"-rw-r--r-- 1 u g 1 Feb 30 10:00 f"), None);
    }

    #[test]
    fn yearless_feb_29_after_a_non_leap_new_year() {
        // now = 2025-01-02 00:00 UTC: the latest Feb 29 is 2024's.
        let now = at(1_735_776_000).unwrap();
        let entry = parse_list_line(b"-rw-r--r-- 1 u g 1 Feb 29 10:00 f", now).unwrap();
        assert_eq!(entry.modified, at(1_709_200_800));
    }

    #[test]
    fn dates_with_a_year_and_odd_spacing() {
        let entry = unix(b"-rw-r--r-- 1 u g 1 jan  5  1999 f");
        assert_eq!(entry.modified, at(915_494_400));
        let entry = unix(b"-rw-r--r-- 1 u g 1 Jan 5 9:05 f");
        assert_eq!(entry.modified, at(1_704_445_500));
    }

    #[test]
    fn rejects_malformed_unix_lines() {
        for line in [
            &b"total 123"[..],
            b"drwxr-xr-x 2 u g 4096 Jan 15 10:30",
            b"drwxr-xr-x 2 u g 4096 Jan 15 10:30 ",
            b"drwxr-xr-x 2 u g 4096 Foo 15 10:30 name",
            b"drwxr-xr-x 2 u g 4096 Jan 32 10:30 name",
            b"drwxr-xr-x 2 u g 4096 Jan 15 24:00 name",
            b"drwxr-xr-x 2 u g 4096 Jan 15 10:3 name",
            b"drwxr-xr-x 2 u g 4096 Jan 15 20233 name",
            b"drwxr-xr-x 2 u g -1 Jan 15 10:30 name",
            b"drwxr-xr-x 2 u g 99999999999999999999 Jan 15 10:30 name",
            b"drwxr-xr-x Jan 15 10:30 name",
            b"-rw-r--r-- 1 u g 5 Jan 15 10:30 .",
            b"drwxr-xr-x 1 u g 5 Jan 15 10:30 ..",
        ] {
            assert_eq!(parse_list_line(line, june_2024()), None, "{:?}", line);
        }
    }

    #[test]
    fn dos_times() {
        assert_eq!(parse_dos_time(b"12:00AM"), Some((0, 0)));
        assert_eq!(parse_dos_time(b"12:30PM"), Some((12, 30)));
        assert_eq!(parse_dos_time(b"01:05pm"), Some((13, 5)));
        assert_eq!(parse_dos_time(b"13:05"), Some((13, 5)));
        assert_eq!(parse_dos_time(b"13:05PM"), None);
        assert_eq!(parse_dos_time(b"00:05AM"), None);
        assert_eq!(parse_dos_time(b"PM"), None);
        assert_eq!(parse_dos_time(b""), None);
    }

    #[test]
    fn dos_two_digit_year_pivot() {
        assert_eq!(parse_dos_date(b"01-15-70"), Some((1970, 1, 15)));
        assert_eq!(parse_dos_date(b"01-15-99"), Some((1999, 1, 15)));
        assert_eq!(parse_dos_date(b"01-15-00"), Some((2000, 1, 15)));
        assert_eq!(parse_dos_date(b"01-15-69"), Some((2069, 1, 15)));
        assert_eq!(parse_dos_date(b"01-15-2024"), Some((2024, 1, 15)));
        assert_eq!(parse_dos_date(b"1-15-2024"), None);
        assert_eq!(parse_dos_date(b"01-15-024"), None);
        assert_eq!(parse_dos_date(b"01-15-24-1"), None);
    }

    #[test]
    fn dos_lines() {
        let entry = parse_dos_line(b"01-15-24  10:30AM       <DIR>          my dir").unwrap();
        assert_eq!(
            (entry.name.as_slice(), entry.kind, entry.size),
            (&b"my dir"[..], EntryKind::Dir, None)
        );
        assert_eq!(entry.modified, at(1_705_314_600));
        let entry =
            parse_dos_line(b"01-15-2024  10:30PM              1234567  two  spaces ").unwrap();
        assert_eq!(entry.name, b" two  spaces ");
        assert_eq!(entry.size, Some(1_234_567));
        assert_eq!(entry.modified, at(1_705_357_800));
        for bad in [
            &b"01-15-24  10:30AM       <DIR>          "[..],
            b"01-15-24  10:30AM       1234",
            b"01-15-24  10:30AM       1234 ",
            b"13-15-24  10:30AM       1234 f",
            b"01-32-24  10:30AM       1234 f",
            b"01-15-24  10:30XM       1234 f",
            b"01-15-24  10:30AM       12a4 f",
            b"01-15-24  10:30AM       <FILE> f",
        ] {
            assert_eq!(parse_dos_line(bad), None, "{:?}", bad);
        }
        let entry = parse_dos_line(b"02-30-24  10:30AM       1 f").unwrap();
        assert_eq!(entry.modified, None);
    }
}
