//! The write-back journal: one line per event, appended and fsync'd before
//! the close() it records returns, so that a mount killed at any moment
//! (kill -9, a power cut) leaves a journal the next mount can finish.
//!
//! Lines (fields separated by one space, the path in hex so any bytes fit):
//!
//! ```text
//! P <seq> <path-hex> <size> <sha256-hex> <base> <mode> <mtime> <shown-mode> <shown-mtime> <check>
//! R <seq> <path-hex> <base> <check>
//!                         <seq> was renamed before its upload started: it
//!                         goes to this path, against this base
//! D <seq> <check>        the upload of <seq> is done (its spool file may go)
//! ```
//!
//! `base` is `new` (no file on the server when the mount last saw it) or
//! `<size>:<mtime-secs>` (`-` for an unknown time); `mode`/`mtime` are
//! attributes still to apply after the upload (`-`: none); `check` is the
//! first 16 hex digits of the SHA-256 of the line before it. A line whose
//! check does not match, or that was cut (no newline at the end of the
//! file), is skipped with a log message: its spool file is never uploaded
//! on its word.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::digest::{from_hex, to_hex, DigestAlgorithm};
use crate::store::path::shown;

use super::super::open_file::PendingAttrs;

/// What the server had at the path when the mount last saw it, before the
/// change this entry uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    New,
    File { size: u64, mtime: Option<u64> },
}

/// One file whose content waits in the spool for its upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub path: Vec<u8>,
    pub size: u64,
    /// SHA-256 of the spool file's content.
    pub digest: Vec<u8>,
    pub base: Base,
    /// Set while the file was changed; applied after the upload.
    pub attrs: PendingAttrs,
    /// What the mount shows until the upload is done.
    pub shown_mode: Option<u32>,
    pub shown_mtime: SystemTime,
}

pub struct Journal {
    file: File,
    path: PathBuf,
    /// Lines in the file now.
    lines: usize,
}

const NAME: &str = "journal";

/// A journal this long is rewritten while mounted, with only the entries
/// still live, when those are under a quarter of its lines: a mount that
/// runs for weeks does not grow it without bound, and the rewrite costs
/// one fsync'd file of live entries now and then.
const COMPACT_AFTER_LINES: usize = 4096;

/// Writes `live` as the whole journal in `dir`, crash-safe: a new file,
/// fsync'd, renamed over the old one, the directory fsync'd. A crash
/// before the rename leaves the old journal (and a `journal.new` that the
/// next rewrite replaces); after it, the new one. Returns the journal,
/// open for appending.
fn rewrite(dir: &Path, live: &[Entry]) -> io::Result<File> {
    let path = dir.join(NAME);
    let fresh = dir.join(format!("{NAME}.new"));
    {
        let mut f = File::create(&fresh)?;
        for e in live {
            f.write_all(e.line().as_bytes())?;
        }
        f.sync_all()?;
    }
    fs::rename(&fresh, &path)?;
    sync_dir(dir)?;
    OpenOptions::new().append(true).open(&path)
}

fn check(body: &str) -> String {
    let digest = DigestAlgorithm::Sha256
        .digest(body.as_bytes())
        .unwrap_or_default();
    to_hex(&digest[..8.min(digest.len())])
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn from_nanos(n: u128) -> SystemTime {
    let secs = (n / 1_000_000_000) as u64;
    let sub = (n % 1_000_000_000) as u32;
    UNIX_EPOCH + Duration::new(secs, sub)
}

impl Base {
    fn field(self) -> String {
        match self {
            Base::New => "new".to_string(),
            Base::File { size, mtime } => format!("{size}:{}", opt(mtime)),
        }
    }

    fn parse(field: &str) -> Option<Base> {
        if field == "new" {
            return Some(Base::New);
        }
        let (size, mtime) = field.split_once(':')?;
        Some(Base::File {
            size: size.parse().ok()?,
            mtime: match mtime {
                "-" => None,
                m => Some(m.parse().ok()?),
            },
        })
    }
}

impl Entry {
    fn line(&self) -> String {
        let base = self.base.field();
        let body = format!(
            "P {} {} {} {} {base} {} {} {} {}",
            self.seq,
            to_hex(&self.path),
            self.size,
            to_hex(&self.digest),
            opt(self.attrs.mode),
            opt(self.attrs.mtime.map(nanos)),
            opt(self.shown_mode),
            nanos(self.shown_mtime),
        );
        format!("{body} {}\n", check(&body))
    }

    fn parse(fields: &[&str]) -> Option<Entry> {
        let [_, seq, path, size, digest, base, mode, mtime, shown_mode, shown_mtime] = fields
        else {
            return None;
        };
        let num = |s: &str| -> Option<Option<u64>> {
            match s {
                "-" => Some(None),
                s => s.parse().ok().map(Some),
            }
        };
        let base = Base::parse(base)?;
        let mtime = match *mtime {
            "-" => None,
            m => Some(from_nanos(m.parse().ok()?)),
        };
        Some(Entry {
            seq: seq.parse().ok()?,
            path: from_hex(path)?,
            size: size.parse().ok()?,
            digest: from_hex(digest)?,
            base,
            attrs: PendingAttrs {
                mode: num(mode)?.map(|m| m as u32),
                mtime,
            },
            shown_mode: num(shown_mode)?.map(|m| m as u32),
            shown_mtime: from_nanos(shown_mtime.parse().ok()?),
        })
    }
}

/// The line that moves entry `seq` to `path`, against `base` there.
fn renamed_line(seq: u64, path: &[u8], base: Base) -> String {
    let body = format!("R {seq} {} {}", to_hex(path), base.field());
    format!("{body} {}\n", check(&body))
}

fn done_line(seq: u64) -> String {
    let body = format!("D {seq}");
    format!("{body} {}\n", check(&body))
}

/// Entries not marked done, in order, from the journal's text. Cut or
/// corrupt lines are logged and skipped.
pub fn live_entries(text: &str, journal: &Path) -> Vec<Entry> {
    let mut entries: std::collections::BTreeMap<u64, Entry> = Default::default();
    let complete = text.ends_with('\n') || text.is_empty();
    let lines: Vec<&str> = text.split('\n').collect();
    let last = lines.len().saturating_sub(1);
    for (n, line) in lines.iter().enumerate() {
        if n == last {
            if !complete {
                log::error!(
                    "{}: the last line was cut (the mount died while writing it); skipped: \
                     the close() it would record had not returned",
                    journal.display()
                );
            }
            break;
        }
        let Some((body, sum)) = line.rsplit_once(' ') else {
            log::error!(
                "{}: line {} is not a journal entry; skipped",
                journal.display(),
                n + 1
            );
            continue;
        };
        if check(body) != sum {
            log::error!(
                "{}: line {} is corrupt (its checksum does not match); skipped, \
                 and its spool file is not uploaded",
                journal.display(),
                n + 1
            );
            continue;
        }
        let fields: Vec<&str> = body.split(' ').collect();
        match fields.first().copied() {
            Some("P") => match Entry::parse(&fields) {
                Some(e) => {
                    entries.insert(e.seq, e);
                }
                None => log::error!(
                    "{}: line {} cannot be read; skipped",
                    journal.display(),
                    n + 1
                ),
            },
            Some("R") => {
                let moved = match fields.as_slice() {
                    [_, seq, path, base] => seq
                        .parse::<u64>()
                        .ok()
                        .zip(from_hex(path))
                        .zip(Base::parse(base)),
                    _ => None,
                };
                match moved {
                    Some(((seq, path), base)) => {
                        if let Some(e) = entries.get_mut(&seq) {
                            e.path = path;
                            e.base = base;
                        }
                    }
                    None => log::error!(
                        "{}: line {} cannot be read; skipped",
                        journal.display(),
                        n + 1
                    ),
                }
            }
            Some("D") => {
                if let Some(seq) = fields.get(1).and_then(|s| s.parse::<u64>().ok()) {
                    entries.remove(&seq);
                }
            }
            _ => log::error!(
                "{}: line {} is of an unknown kind; skipped",
                journal.display(),
                n + 1
            ),
        }
    }
    entries.into_values().collect()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Journal {
    /// Opens the journal in `dir`: returns the entries earlier mounts left
    /// undone, and a journal that holds just them (rewritten, so it does
    /// not grow across mounts).
    pub fn open(dir: &Path) -> io::Result<(Journal, Vec<Entry>)> {
        let path = dir.join(NAME);
        let text = match fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let live = live_entries(&text, &path);
        let file = rewrite(dir, &live)?;
        for e in &live {
            log::info!(
                "write-back journal: {} ({} bytes) was not uploaded yet; uploading it",
                shown(&e.path),
                e.size
            );
        }
        let lines = live.len();
        Ok((Journal { file, path, lines }, live))
    }

    fn append(&mut self, line: &str) -> io::Result<()> {
        self.file.write_all(line.as_bytes())?;
        self.lines += 1;
        self.file.sync_data()
    }

    /// Whether the journal is long enough, and mostly done lines, to be
    /// rewritten (`compact`) with `live` entries.
    pub fn needs_compaction(&self, live: usize) -> bool {
        self.lines >= COMPACT_AFTER_LINES && live < self.lines / 4
    }

    /// Rewrites the journal with just `live`, the entries not done (see
    /// `rewrite`). The caller holds what keeps them from changing: no
    /// entry is added, renamed or done meanwhile.
    pub fn compact(&mut self, live: &[Entry]) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.file = rewrite(dir, live)?;
        self.lines = live.len();
        log::debug!(
            "write-back journal rewritten with its {} live entries",
            live.len()
        );
        Ok(())
    }

    pub fn pending(&mut self, entry: &Entry) -> io::Result<()> {
        self.append(&entry.line())
    }

    /// Entry `seq` goes to `path` now (renamed before its upload began).
    pub fn renamed(&mut self, seq: u64, path: &[u8], base: Base) -> io::Result<()> {
        self.append(&renamed_line(seq, path, base))
    }

    pub fn done(&mut self, seq: u64) -> io::Result<()> {
        self.append(&done_line(seq))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Entry {
        Entry {
            seq,
            path: b"dir/a b\n".to_vec(),
            size: 5,
            digest: vec![1, 2, 3],
            base: Base::File {
                size: 3,
                mtime: Some(7),
            },
            attrs: PendingAttrs {
                mode: Some(0o755),
                mtime: Some(UNIX_EPOCH + Duration::new(9, 5)),
            },
            shown_mode: None,
            shown_mtime: UNIX_EPOCH + Duration::new(11, 1),
        }
    }

    #[test]
    fn entries_round_trip_and_done_ones_go() {
        let text = format!("{}{}{}", entry(1).line(), entry(2).line(), done_line(1));
        assert_eq!(live_entries(&text, Path::new("j")), vec![entry(2)]);
    }

    #[test]
    fn a_renamed_entry_is_found_at_its_new_path() {
        let moved = Base::File {
            size: 4,
            mtime: None,
        };
        let text = format!(
            "{}{}{}",
            entry(1).line(),
            entry(2).line(),
            renamed_line(2, b"to", moved)
        );
        let mut want = entry(2);
        want.path = b"to".to_vec();
        want.base = moved;
        assert_eq!(live_entries(&text, Path::new("j")), vec![entry(1), want]);
        // A rename of an entry already done changes nothing.
        let text = format!(
            "{}{}{}",
            entry(1).line(),
            done_line(1),
            renamed_line(1, b"x", Base::New)
        );
        assert_eq!(live_entries(&text, Path::new("j")), vec![]);
    }

    #[test]
    fn compaction_keeps_the_live_entries_and_a_crash_before_its_rename_the_old_journal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut journal, live) = Journal::open(dir.path()).expect("open");
        assert!(live.is_empty());
        for seq in 1..=COMPACT_AFTER_LINES as u64 {
            journal.pending(&entry(seq)).expect("P");
            if seq % 100 != 0 {
                journal.done(seq).expect("D");
            }
        }
        let read = || {
            let text = fs::read_to_string(dir.path().join(NAME)).expect("read");
            live_entries(&text, Path::new("j"))
        };
        let live = read();
        assert_eq!(live.len(), COMPACT_AFTER_LINES / 100);
        assert!(journal.needs_compaction(live.len()));
        // A crash while writing the new file (before its rename) leaves
        // the old journal whole, and the next rewrite replaces that file.
        fs::write(dir.path().join("journal.new"), "P 1 cut").expect("write");
        assert_eq!(read(), live);
        journal.compact(&live).expect("compact");
        assert_eq!(read(), live);
        assert!(!journal.needs_compaction(live.len()));
        // It goes on appending to the new file.
        journal.done(100).expect("D");
        assert_eq!(read(), live[1..].to_vec());
        drop(journal);
        let (_, reopened) = Journal::open(dir.path()).expect("reopen");
        assert_eq!(reopened, live[1..].to_vec());
    }

    #[test]
    fn cut_and_corrupt_lines_are_skipped() {
        let good = entry(1).line();
        let mut bad = entry(2).line();
        bad.replace_range(10..11, "f");
        let cut = entry(3).line();
        let text = format!("{good}{bad}{}", &cut[..cut.len() - 4]);
        assert_eq!(live_entries(&text, Path::new("j")), vec![entry(1)]);
    }
}
