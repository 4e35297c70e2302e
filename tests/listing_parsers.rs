//! The listing parsers against captured-style listings of vsftpd, ProFTPD,
//! Pure-FTPd, FileZilla Server and IIS (tests/fixtures/listings, CRLF), the
//! awkward names a mount meets, and properties over arbitrary bytes.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ftpsfs::ftp::listing::list::{parse_list, parse_list_line};
use ftpsfs::ftp::listing::mlsd::{parse_mlsd, parse_mlsd_line, parse_mlst_fact_line};
use ftpsfs::ftp::listing::{Entry, EntryKind};
use ftpsfs::ftp::time::{format_ftp_timestamp, parse_ftp_timestamp};
use proptest::prelude::*;

// ------------------------------------------------------------------ helpers

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/listings/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(body.ends_with(b"\r\n"), "{name} must end with CRLF");
    let bare_lf = body
        .windows(2)
        .filter(|pair| pair[1] == b'\n' && pair[0] != b'\r')
        .count();
    assert_eq!(bare_lf, 0, "{name} must use CRLF line endings");
    body
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// A UTC instant, computed independently of the crate's calendar code.
fn utc_ms(
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    ms: u64,
) -> SystemTime {
    const DAYS: [u64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let year_days: u64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let month_days: u64 = (1..month)
        .map(|m| DAYS[m as usize - 1] + u64::from(m == 2 && is_leap(year)))
        .sum();
    let days = year_days + month_days + day - 1;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(ms)
}

fn utc(year: u64, month: u64, day: u64, hour: u64, minute: u64, second: u64) -> SystemTime {
    utc_ms(year, month, day, hour, minute, second, 0)
}

/// Every fixture's LIST is read at 2024-06-01 12:00:00 UTC.
fn june_first_2024() -> SystemTime {
    utc(2024, 6, 1, 12, 0, 0)
}

fn entry(name: impl AsRef<[u8]>, kind: EntryKind) -> Entry {
    Entry {
        name: name.as_ref().to_vec(),
        kind,
        size: None,
        modified: None,
        modified_exact: false,
        mode: None,
    }
}

fn file(name: impl AsRef<[u8]>) -> Entry {
    entry(name, EntryKind::File)
}

fn dir(name: impl AsRef<[u8]>) -> Entry {
    entry(name, EntryKind::Dir)
}

fn symlink(name: &str, target: Option<&str>) -> Entry {
    let target = target.map(|t| t.as_bytes().to_vec());
    entry(name, EntryKind::Symlink { target })
}

trait Build {
    fn size(self, size: u64) -> Self;
    fn listed_at(self, at: SystemTime) -> Self;
    fn exactly_at(self, at: SystemTime) -> Self;
    fn mode(self, mode: u32) -> Self;
}

impl Build for Entry {
    fn size(self, size: u64) -> Self {
        Entry {
            size: Some(size),
            ..self
        }
    }
    fn listed_at(self, at: SystemTime) -> Self {
        Entry {
            modified: Some(at),
            modified_exact: false,
            ..self
        }
    }
    fn exactly_at(self, at: SystemTime) -> Self {
        Entry {
            modified: Some(at),
            modified_exact: true,
            ..self
        }
    }
    fn mode(self, mode: u32) -> Self {
        Entry {
            mode: Some(mode),
            ..self
        }
    }
}

fn assert_entries(actual: Vec<Entry>, expected: Vec<Entry>) {
    for (index, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_eq!(
            a,
            e,
            "entry {index} ({:?})",
            String::from_utf8_lossy(&e.name)
        );
    }
    assert_eq!(actual.len(), expected.len(), "{actual:#?}");
}

const FIVE_GIB: u64 = 5 * 1024 * 1024 * 1024;
const SIX_GIB: u64 = 6 * 1024 * 1024 * 1024;
const TEN_GIB: u64 = 10 * 1024 * 1024 * 1024;
const FOUR_GIB: u64 = 4 * 1024 * 1024 * 1024;

// ------------------------------------------------------------------ vsftpd

#[test]
fn vsftpd_list() {
    let listed = parse_list(&fixture("vsftpd-list.txt"), june_first_2024());
    assert_entries(
        listed,
        vec![
            dir("docs")
                .size(4096)
                .listed_at(utc(2024, 1, 15, 10, 30, 0))
                .mode(0o755),
            file("report.txt")
                .size(1234)
                .listed_at(utc(2024, 1, 15, 10, 30, 0))
                .mode(0o644),
            file("backup.tar")
                .size(FIVE_GIB)
                .listed_at(utc(2024, 3, 2, 8, 5, 0))
                .mode(0o644),
            file("old notes.txt")
                .size(0)
                .listed_at(utc(2022, 11, 30, 0, 0, 0))
                .mode(0o600),
            file("old.txt")
                .size(512)
                .listed_at(utc(2023, 1, 15, 0, 0, 0))
                .mode(0o644),
            symlink("latest", Some("report.txt"))
                .size(10)
                .listed_at(utc(2024, 5, 31, 23, 59, 0))
                .mode(0o777),
            file("setuid-tool")
                .size(16384)
                .listed_at(utc(2024, 2, 29, 13, 0, 0))
                .mode(0o4755),
            dir("tmp")
                .size(4096)
                .listed_at(utc(2024, 4, 1, 0, 0, 0))
                .mode(0o1777),
            // Half an hour ahead of `now`: clock skew, still this year.
            file(".hidden")
                .size(42)
                .listed_at(utc(2024, 6, 1, 12, 30, 0))
                .mode(0o644),
            // More than a day ahead: last year.
            file("future.txt")
                .size(77)
                .listed_at(utc(2023, 6, 2, 15, 0, 0))
                .mode(0o644),
            file("naïve café.txt")
                .size(12)
                .listed_at(utc(2024, 5, 20, 9, 15, 0))
                .mode(0o644),
            file("  two leading spaces")
                .size(3)
                .listed_at(utc(2024, 5, 20, 9, 15, 0))
                .mode(0o644),
            file("a -> b.txt")
                .size(3)
                .listed_at(utc(2024, 5, 20, 9, 15, 0))
                .mode(0o644),
        ],
    );
}

// ------------------------------------------------------------------ ProFTPD

#[test]
fn proftpd_mlsd() {
    let listed = parse_mlsd(&fixture("proftpd-mlsd.txt"));
    assert_entries(
        listed,
        vec![
            file("report.txt")
                .size(1234)
                .exactly_at(utc(2024, 1, 15, 10, 30, 0))
                .mode(0o644),
            dir("photos 2024")
                .exactly_at(utc(2024, 1, 10, 9, 15, 0))
                .mode(0o755),
            file("disk image.iso")
                .size(SIX_GIB)
                .exactly_at(utc(2024, 3, 1, 23, 59, 59))
                .mode(0o600),
            symlink("latest", None)
                .size(10)
                .exactly_at(utc(2024, 1, 2, 3, 4, 5))
                .mode(0o777),
            file(".bashrc")
                .size(220)
                .exactly_at(utc(2023, 12, 24, 18, 0, 0))
                .mode(0o640),
            file("name; with; semicolons=and=equals")
                .size(5)
                .exactly_at(utc(2024, 2, 1, 12, 0, 0))
                .mode(0o644),
            file("suid-helper")
                .size(16384)
                .exactly_at(utc(2024, 2, 1, 12, 0, 0))
                .mode(0o4755),
            file("arrow -> not a link")
                .size(3)
                .exactly_at(utc(2024, 2, 1, 12, 0, 0))
                .mode(0o644),
            dir("shared")
                .exactly_at(utc(2024, 2, 1, 12, 0, 0))
                .mode(0o1777),
            file("Ünïcödé 文件.txt")
                .size(1)
                .exactly_at(utc(1999, 12, 31, 23, 59, 59))
                .mode(0o644),
        ],
    );
}

#[test]
fn proftpd_list() {
    let listed = parse_list(&fixture("proftpd-list.txt"), june_first_2024());
    assert_entries(
        listed,
        vec![
            dir("photos 2024")
                .size(4096)
                .listed_at(utc(2024, 1, 10, 9, 15, 0))
                .mode(0o755),
            file("report.txt")
                .size(1234)
                .listed_at(utc(2024, 1, 15, 10, 30, 0))
                .mode(0o644),
            file("disk image.iso")
                .size(SIX_GIB)
                .listed_at(utc(2024, 3, 1, 23, 59, 0))
                .mode(0o600),
            symlink("latest", Some("report.txt"))
                .size(10)
                .listed_at(utc(2024, 1, 2, 3, 4, 0))
                .mode(0o777),
            file(".bashrc")
                .size(220)
                .listed_at(utc(2023, 12, 24, 18, 0, 0))
                .mode(0o640),
            file("suid-helper")
                .size(16384)
                .listed_at(utc(2024, 2, 1, 12, 0, 0))
                .mode(0o4755),
            dir("shared")
                .size(4096)
                .listed_at(utc(2024, 2, 1, 12, 0, 0))
                .mode(0o1777),
            file("Ünïcödé 文件.txt")
                .size(1)
                .listed_at(utc(1999, 12, 31, 0, 0, 0))
                .mode(0o644),
            file("name; with; semicolons=and=equals")
                .size(5)
                .listed_at(utc(2024, 2, 1, 12, 0, 0))
                .mode(0o644),
        ],
    );
}

// ------------------------------------------------------------------ Pure-FTPd

#[test]
fn pureftpd_mlsd() {
    let listed = parse_mlsd(&fixture("pureftpd-mlsd.txt"));
    assert_entries(
        listed,
        vec![
            file("report.txt")
                .size(1234)
                .exactly_at(utc(2024, 1, 15, 10, 30, 0))
                .mode(0o644),
            dir("photos 2024")
                .size(4096)
                .exactly_at(utc(2024, 1, 10, 9, 15, 0))
                .mode(0o755),
            symlink("latest", Some("report.txt"))
                .size(10)
                .exactly_at(utc(2024, 1, 2, 3, 4, 5))
                .mode(0o777),
            symlink("photos-link", Some("/srv/ftp/photos 2024"))
                .size(20)
                .exactly_at(utc(2024, 1, 2, 3, 4, 5))
                .mode(0o777),
            file("exactly 4 GiB.bin")
                .size(FOUR_GIB)
                .exactly_at(utc(2024, 5, 20, 9, 15, 0))
                .mode(0o644),
            file(" leading space.txt")
                .size(0)
                .exactly_at(utc(2024, 5, 20, 9, 15, 0))
                .mode(0o644),
            entry("fifo", EntryKind::Other)
                .size(0)
                .exactly_at(utc(2024, 5, 20, 9, 15, 0))
                .mode(0o644),
        ],
    );
}

/// For a logged-in (non-guest) user Pure-FTPd prints `slink:` without the target
/// and adds UNIX.uid/UNIX.gid.
#[test]
fn pureftpd_mlsd_of_a_logged_in_user() {
    let line = b"type=OS.unix=slink:;size=10;modify=20240102030405;UNIX.mode=0777;UNIX.uid=1000;UNIX.gid=1000;unique=803g2a0005; latest\r\n";
    assert_eq!(
        parse_mlsd_line(line),
        Some(
            symlink("latest", None)
                .size(10)
                .exactly_at(utc(2024, 1, 2, 3, 4, 5))
                .mode(0o777)
        )
    );
}

#[test]
fn pureftpd_list() {
    let listed = parse_list(&fixture("pureftpd-list.txt"), june_first_2024());
    assert_entries(
        listed,
        vec![
            file("report.txt")
                .size(1234)
                .listed_at(utc(2024, 1, 15, 10, 30, 0))
                .mode(0o644),
            dir("photos 2024")
                .size(4096)
                .listed_at(utc(2024, 1, 10, 9, 15, 0))
                .mode(0o755),
            symlink("latest", Some("report.txt"))
                .size(10)
                .listed_at(utc(2024, 1, 2, 3, 4, 0))
                .mode(0o777),
            file("exactly 4 GiB.bin")
                .size(FOUR_GIB)
                .listed_at(utc(2024, 5, 20, 9, 15, 0))
                .mode(0o644),
            file(" leading space.txt")
                .size(0)
                .listed_at(utc(2024, 5, 20, 9, 15, 0))
                .mode(0o644),
            // Latin-1 on disk: not UTF-8, handed on as the bytes it is.
            file(b"caf\xe9.txt")
                .size(7)
                .listed_at(utc(2024, 5, 20, 9, 15, 0))
                .mode(0o644),
        ],
    );
}

// ------------------------------------------------------------------ FileZilla Server

#[test]
fn filezilla_server_mlsd() {
    let listed = parse_mlsd(&fixture("filezilla-mlsd.txt"));
    assert_entries(
        listed,
        vec![
            dir("photos 2024").exactly_at(utc_ms(2024, 1, 10, 9, 15, 0, 250)),
            file("report.txt")
                .size(1234)
                .exactly_at(utc_ms(2024, 1, 15, 10, 30, 0, 123)),
            file("video 10GB.mkv")
                .size(TEN_GIB)
                .exactly_at(utc(2024, 3, 1, 8, 0, 0)),
            file("Ünïcödé.txt")
                .size(42)
                .exactly_at(utc_ms(2024, 5, 20, 9, 15, 0, 999)),
            file("semi;colon file")
                .size(7)
                .exactly_at(utc_ms(2024, 5, 20, 9, 15, 0, 500)),
        ],
    );
}

#[test]
fn filezilla_server_list() {
    let listed = parse_list(&fixture("filezilla-list.txt"), june_first_2024());
    assert_entries(
        listed,
        vec![
            dir("photos 2024")
                .size(0)
                .listed_at(utc(2024, 1, 10, 9, 15, 0))
                .mode(0o755),
            file("report.txt")
                .size(1234)
                .listed_at(utc(2024, 1, 15, 10, 30, 0))
                .mode(0o644),
            file("video 10GB.mkv")
                .size(TEN_GIB)
                .listed_at(utc(2024, 3, 1, 8, 0, 0))
                .mode(0o644),
            file("Ünïcödé.txt")
                .size(42)
                .listed_at(utc(2024, 5, 20, 9, 15, 0))
                .mode(0o644),
            file("old.log")
                .size(100)
                .listed_at(utc(2023, 1, 15, 0, 0, 0))
                .mode(0o644),
            file("semi;colon file")
                .size(7)
                .listed_at(utc(2024, 5, 20, 9, 15, 0))
                .mode(0o644),
        ],
    );
}

// ------------------------------------------------------------------ IIS

#[test]
fn iis_list() {
    let listed = parse_list(&fixture("iis-list.txt"), june_first_2024());
    assert_entries(
        listed,
        vec![
            dir("photos 2024").listed_at(utc(2024, 1, 10, 9, 15, 0)),
            file("report.txt")
                .size(1234)
                .listed_at(utc(2024, 1, 15, 10, 30, 0)),
            file("video 10GB.mkv")
                .size(TEN_GIB)
                .listed_at(utc(2024, 3, 1, 20, 0, 0)),
            file("Ünïcödé.txt")
                .size(42)
                .listed_at(utc(2024, 5, 20, 0, 5, 0)),
            file("y2k.log")
                .size(100)
                .listed_at(utc(1999, 12, 31, 23, 59, 0)),
            dir("y2k dir").listed_at(utc(2000, 1, 1, 12, 0, 0)),
            file("a  b   c.txt")
                .size(7)
                .listed_at(utc(2024, 6, 1, 12, 30, 0)),
        ],
    );
}

#[test]
fn iis_mlsd() {
    let listed = parse_mlsd(&fixture("iis-mlsd.txt"));
    assert_entries(
        listed,
        vec![
            dir("photos 2024").exactly_at(utc_ms(2024, 1, 10, 9, 15, 0, 250)),
            file("report.txt")
                .size(1234)
                .exactly_at(utc_ms(2024, 1, 15, 10, 30, 0, 456)),
            file("video 10GB.mkv")
                .size(TEN_GIB)
                .exactly_at(utc(2024, 3, 1, 20, 0, 0)),
            file("Ünïcödé.txt")
                .size(42)
                .exactly_at(utc_ms(2024, 5, 20, 0, 5, 0, 789)),
            file("a  b   c.txt")
                .size(7)
                .exactly_at(utc(2024, 6, 1, 12, 30, 0)),
        ],
    );
}

#[test]
fn iis_four_digit_years_and_24_hour_clock() {
    let body = b"01-15-2024  13:05       <DIR>          logs\r\n01-15-2024  00:00              1234567 name with spaces\r\n";
    assert_entries(
        parse_list(body, june_first_2024()),
        vec![
            dir("logs").listed_at(utc(2024, 1, 15, 13, 5, 0)),
            file("name with spaces")
                .size(1_234_567)
                .listed_at(utc(2024, 1, 15, 0, 0, 0)),
        ],
    );
}

// ------------------------------------------------------------------ awkward names and lines

#[test]
fn list_names_keep_every_byte_after_the_date() {
    let now = june_first_2024();
    let name = |line: &[u8]| parse_list_line(line, now).map(|e| e.name);
    assert_eq!(
        name(b"-rw-r--r-- 1 u g 1 Jan 15 10:30 a  b   c"),
        Some(b"a  b   c".to_vec())
    );
    assert_eq!(
        name(b"-rw-r--r-- 1 u g 1 Jan 15 10:30  lead"),
        Some(b" lead".to_vec())
    );
    assert_eq!(
        name(b"-rw-r--r-- 1 u g 1 Jan 15 10:30 trail  \r\n"),
        Some(b"trail  ".to_vec())
    );
    assert_eq!(
        name(b"-rw-r--r-- 1 u g 1 Jan 15 10:30 .dotfile"),
        Some(b".dotfile".to_vec())
    );
    assert_eq!(
        name(b"-rw-r--r-- 1 u g 1 Jan 15 10:30 ..."),
        Some(b"...".to_vec())
    );
    assert_eq!(
        name(b"-rw-r--r-- 1 u g 1 Jan 15 10:30 \xff\xfe\x80"),
        Some(b"\xff\xfe\x80".to_vec())
    );
    assert_eq!(
        name("-rw-r--r-- 1 u g 1 Jan 15 10:30 日本語 ファイル".as_bytes()),
        Some("日本語 ファイル".as_bytes().to_vec())
    );
    assert_eq!(
        name(b"drwxr-xr-x 1 u g 1 Jan 15 10:30 x -> y"),
        Some(b"x -> y".to_vec())
    );
}

#[test]
fn mlsd_names_keep_every_byte_after_the_facts() {
    let name = |line: &[u8]| parse_mlsd_line(line).map(|e| e.name);
    assert_eq!(name(b"type=file; a  b   c"), Some(b"a  b   c".to_vec()));
    assert_eq!(name(b"type=file;  lead"), Some(b" lead".to_vec()));
    assert_eq!(name(b"type=file; .dotfile"), Some(b".dotfile".to_vec()));
    assert_eq!(
        name(b"type=file; \xff\xfe\x80"),
        Some(b"\xff\xfe\x80".to_vec())
    );
    assert_eq!(
        name("type=file; 日本語 ファイル".as_bytes()),
        Some("日本語 ファイル".as_bytes().to_vec())
    );
    assert_eq!(name(b"type=file; x -> y"), Some(b"x -> y".to_vec()));
}

#[test]
fn sizes_beyond_four_gib() {
    let now = june_first_2024();
    let size = |line: &[u8]| parse_list_line(line, now).and_then(|e| e.size);
    assert_eq!(
        size(b"-rw-r--r-- 1 u g 4294967296 Jan 15 10:30 f"),
        Some(FOUR_GIB)
    );
    assert_eq!(
        size(b"-rw-r--r-- 1 u g 18446744073709551615 Jan 15 10:30 f"),
        Some(u64::MAX)
    );
    assert_eq!(
        size(b"01-15-24  10:30AM  9007199254740993 f"),
        Some(9_007_199_254_740_993)
    );
    let mlsd = parse_mlsd_line(b"type=file;size=1099511627776; f").and_then(|e| e.size);
    assert_eq!(mlsd, Some(1 << 40));
}

#[test]
fn year_inference_around_new_year() {
    let january_second = utc(2025, 1, 2, 0, 0, 0);
    let modified = |line: &[u8]| parse_list_line(line, january_second).and_then(|e| e.modified);
    assert_eq!(
        modified(b"-rw-r--r-- 1 u g 1 Dec 31 23:59 f"),
        Some(utc(2024, 12, 31, 23, 59, 0))
    );
    assert_eq!(
        modified(b"-rw-r--r-- 1 u g 1 Jan 01 00:30 f"),
        Some(utc(2025, 1, 1, 0, 30, 0))
    );
    assert_eq!(
        modified(b"-rw-r--r-- 1 u g 1 Jan 02 23:00 f"),
        Some(utc(2025, 1, 2, 23, 0, 0))
    );
    assert_eq!(
        modified(b"-rw-r--r-- 1 u g 1 Jan 03 01:00 f"),
        Some(utc(2024, 1, 3, 1, 0, 0))
    );

    // A server a few hours ahead lists a file from "next year" on Dec 31.
    let new_years_eve = utc(2024, 12, 31, 22, 0, 0);
    let entry = parse_list_line(b"-rw-r--r-- 1 u g 1 Jan  1 03:00 f", new_years_eve);
    assert_eq!(
        entry.and_then(|e| e.modified),
        Some(utc(2025, 1, 1, 3, 0, 0))
    );
}

#[test]
fn total_and_blank_lines_are_skipped() {
    let body = b"total 24\r\n\r\n-rw-r--r-- 1 u g 1 Jan 15 10:30 f\r\n   \r\n";
    let names: Vec<_> = parse_list(body, june_first_2024())
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![b"f".to_vec()]);
}

#[test]
fn mlst_reply_fact_lines() {
    let entry = parse_mlst_fact_line(b" modify=20240115103000;perm=flcdmpe;type=cdir;unique=FD00U2A0001;UNIX.mode=0755; /home/alice\r\n");
    assert_eq!(
        entry,
        Some(
            dir("/home/alice")
                .exactly_at(utc(2024, 1, 15, 10, 30, 0))
                .mode(0o755)
        )
    );
    let entry =
        parse_mlst_fact_line(b" Type=file;Size=1234;Modify=20240115103000.456; /report.txt");
    assert_eq!(
        entry,
        Some(
            file("/report.txt")
                .size(1234)
                .exactly_at(utc_ms(2024, 1, 15, 10, 30, 0, 456))
        )
    );
    assert_eq!(parse_mlst_fact_line(b"250-Listing /report.txt"), None);
}

#[test]
fn timestamps_of_mdtm_replies() {
    assert_eq!(
        parse_ftp_timestamp(b"20240115103000"),
        Some(utc(2024, 1, 15, 10, 30, 0))
    );
    assert_eq!(
        parse_ftp_timestamp(b"20240115103000.456"),
        Some(utc_ms(2024, 1, 15, 10, 30, 0, 456))
    );
    assert_eq!(
        format_ftp_timestamp(utc_ms(2024, 1, 15, 10, 30, 0, 456)),
        "20240115103000"
    );
    assert_eq!(
        parse_ftp_timestamp(b"19690720201800"),
        UNIX_EPOCH.checked_sub(Duration::from_secs(14_182_920))
    );
}

// ------------------------------------------------------------------ properties

/// Unix LIST lines close to what servers send, to reach deep into the parser.
fn unix_like_line() -> impl Strategy<Value = Vec<u8>> {
    let perms = "[-dlcbps][-r][-w][-xsS][-r][-w][-xsS][-r][-w][-xtT][+@.]?";
    let date = "(Jan|Feb|Dec|jun|Xyz) {1,2}[0-9]{1,2} {1,2}([0-9]{1,2}:[0-9]{2}|[0-9]{4})";
    let pattern = format!(
        "{perms}( +[0-9]{{1,3}})?( +[a-zA-Z0-9]{{1,6}}){{0,2}} +([0-9]{{1,12}}|[0-9]+, *[0-9]+) +{date} .{{0,20}}"
    );
    (
        proptest::string::string_regex(&pattern).expect("valid regex"),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(line, tail)| {
            let mut bytes = line.into_bytes();
            bytes.extend(tail);
            bytes
        })
}

fn mlsd_like_line() -> impl Strategy<Value = Vec<u8>> {
    let fact = "(type|Type|size|sizd|modify|UNIX.mode|perm|OS.unix)=([a-zA-Z0-9.:=/ ]{0,16}|file|dir|cdir|OS.unix=slink:[a-z/ ]{0,8}|[0-9]{14}(\\.[0-9]{1,4})?)";
    let pattern = format!("({fact};){{0,5}} ?.{{0,12}}");
    (
        proptest::string::string_regex(&pattern).expect("valid regex"),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(line, tail)| {
            let mut bytes = line.into_bytes();
            bytes.extend(tail);
            bytes
        })
}

fn any_instant() -> impl Strategy<Value = SystemTime> {
    (any::<i64>(), 0u32..1_000_000_000).prop_map(|(seconds, nanos)| {
        let whole = Duration::from_secs(seconds.unsigned_abs());
        let at = if seconds >= 0 {
            UNIX_EPOCH.checked_add(whole)
        } else {
            UNIX_EPOCH.checked_sub(whole)
        };
        at.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
            .unwrap_or(UNIX_EPOCH)
    })
}

fn without_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Seconds from 1970-01-01 to 2200-01-01.
const SECONDS_1970_TO_2200: u64 = 7_258_118_400;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mlsd_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        for entry in parse_mlsd(&body) {
            prop_assert!(!entry.name.is_empty());
        }
    }

    #[test]
    fn list_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), now in any_instant()) {
        for entry in parse_list(&body, now) {
            prop_assert!(!entry.name.is_empty());
        }
    }

    #[test]
    fn single_lines_never_panic(line in proptest::collection::vec(any::<u8>(), 0..160), now in any_instant()) {
        let _ = parse_list_line(&line, now);
        let _ = parse_mlsd_line(&line);
        let _ = parse_mlst_fact_line(&line);
        let _ = parse_ftp_timestamp(&line);
    }

    #[test]
    fn format_never_panics(t in any_instant()) {
        let _ = format_ftp_timestamp(t);
    }

    #[test]
    fn near_valid_unix_lines_give_names_that_end_the_line(line in unix_like_line(), now in any_instant()) {
        if let Some(entry) = parse_list_line(&line, now) {
            let shown = match &entry.kind {
                EntryKind::Symlink { target: Some(target) } => [entry.name.as_slice(), b" -> ", target].concat(),
                _ => entry.name.clone(),
            };
            prop_assert!(without_line_end(&line).ends_with(&shown));
            prop_assert!(!entry.modified_exact);
        }
    }

    #[test]
    fn near_valid_mlsd_lines_give_names_that_end_the_line(line in mlsd_like_line()) {
        if let Some(entry) = parse_mlsd_line(&line) {
            prop_assert!(without_line_end(&line).ends_with(&entry.name));
            prop_assert_eq!(entry.modified_exact, entry.modified.is_some());
        }
        let _ = parse_mlst_fact_line(&line);
    }

    #[test]
    fn format_then_parse_round_trips(seconds in 0..SECONDS_1970_TO_2200, nanos in 0u32..1_000_000_000) {
        let whole = UNIX_EPOCH + Duration::from_secs(seconds);
        let formatted = format_ftp_timestamp(whole + Duration::from_nanos(u64::from(nanos)));
        prop_assert_eq!(formatted.len(), 14);
        prop_assert_eq!(parse_ftp_timestamp(formatted.as_bytes()), Some(whole));
    }

    #[test]
    fn parse_then_format_round_trips(
        year in 1970u64..2200, month in 1u64..=12, day in 1u64..=28,
        hour in 0u64..24, minute in 0u64..60, second in 0u64..60, ms in 0u64..1000,
    ) {
        let text = format!("{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}");
        let with_fraction = format!("{text}.{ms:03}");
        let parsed = parse_ftp_timestamp(with_fraction.as_bytes());
        prop_assert_eq!(parsed, Some(utc_ms(year, month, day, hour, minute, second, ms)));
        prop_assert_eq!(format_ftp_timestamp(parsed.unwrap_or(UNIX_EPOCH)), text);
    }
}
