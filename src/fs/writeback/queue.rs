//! The files waiting for their upload, in the order their close() returned,
//! and everything that waits on them: the uploaders (for work), close()
//! (for spool space), fsync and the ordering barriers (for one path or a
//! tree), unmount (for all).
//!
//! Each entry goes Queued → Uploading → done (removed), or back to Queued
//! after a transient failure, or to Failed (a permanent refusal: kept in
//! the spool, listed, and no longer waited for). Two entries of one path
//! are uploaded in order, never at once.
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use super::journal::{Base, Entry};
use crate::store::path::{is_under, split};
use crate::store::{FileKind, Metadata};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Queued,
    Uploading,
    Failed(String),
}

pub struct Pending {
    pub entry: Entry,
    pub file: Arc<File>,
    /// Found in the journal at mount: the server may have changed since.
    pub recovered: bool,
    pub status: Status,
    /// No uploader begins it before then (`HOLD`), unless someone waits
    /// for it.
    pub ready_at: Instant,
}

/// How long a file just closed waits before an idle uploader begins it:
/// what a program does right after the close (rsync: chmod, then rename
/// into place) then finds it not begun, and goes with the queued entry
/// instead of waiting for its upload. Anyone waiting for the file (fsync,
/// a barrier, sync, unmount, a full spool) ends the wait at once.
const HOLD: Duration = Duration::from_millis(30);

/// What an uploader takes from the queue.
pub struct Job {
    pub entry: Entry,
    pub file: Arc<File>,
    pub recovered: bool,
}

/// How an upload attempt ended.
pub enum Outcome {
    Done,
    /// Try again later (after a backoff).
    Retry,
    Failed(String),
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<u64, Pending>,
    /// Bytes of spool files not yet uploaded (failed ones not counted).
    used: u64,
    closed: bool,
}

impl Inner {
    fn waiting(&self, wanted: impl Fn(&[u8]) -> bool) -> bool {
        self.entries
            .values()
            .any(|p| !p.failed() && wanted(&p.entry.path))
    }
}

impl Pending {
    fn failed(&self) -> bool {
        matches!(self.status, Status::Failed(_))
    }
}

pub struct Queue {
    inner: Mutex<Inner>,
    changed: Condvar,
    limit: u64,
}

/// Files and bytes waiting, and the files that failed for good.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub files: usize,
    pub bytes: u64,
    pub failed: Vec<(Vec<u8>, u64, String)>,
}

impl Queue {
    pub fn new(limit: u64) -> Queue {
        Queue {
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
            limit,
        }
    }

    /// Waits until `size` more bytes fit in the spool (backpressure), and
    /// takes them. A file bigger than the whole limit waits for an empty
    /// spool.
    pub fn reserve(&self, size: u64) {
        let mut inner = self.inner.lock();
        while inner.used > 0 && inner.used + size > self.limit && !inner.closed {
            Self::hurry(&mut inner, |_| true);
            self.changed.notify_all();
            self.changed.wait(&mut inner);
        }
        inner.used += size;
    }

    /// Gives back a reservation that was not used (the spool file could not
    /// be written).
    pub fn unreserve(&self, size: u64) {
        let mut inner = self.inner.lock();
        inner.used = inner.used.saturating_sub(size);
        self.changed.notify_all();
    }

    /// Adds a file whose space was reserved (or, at mount, found).
    /// A file just closed (`reserved`) is held for `HOLD`; one found at
    /// mount is not.
    pub fn push(&self, mut pending: Pending, reserved: bool) {
        let mut inner = self.inner.lock();
        if !reserved {
            inner.used += pending.entry.size;
        }
        pending.ready_at = Instant::now() + if reserved { HOLD } else { Duration::ZERO };
        inner.entries.insert(pending.entry.seq, pending);
        self.changed.notify_all();
    }

    /// The next upload to run: the oldest queued entry whose path has no
    /// older entry waiting. None once the queue is closed.
    pub fn next_job(&self) -> Option<Job> {
        let mut inner = self.inner.lock();
        loop {
            if inner.closed {
                return None;
            }
            let now = Instant::now();
            let mut busy: Vec<&[u8]> = Vec::new();
            let mut found = None;
            let mut held_until: Option<Instant> = None;
            for (seq, p) in &inner.entries {
                if p.failed() {
                    continue;
                }
                if p.status == Status::Queued && !busy.contains(&&p.entry.path[..]) {
                    if p.ready_at <= now {
                        found = Some(*seq);
                        break;
                    }
                    held_until = Some(held_until.map_or(p.ready_at, |t| t.min(p.ready_at)));
                }
                busy.push(&p.entry.path);
            }
            if let Some(p) = found.and_then(|seq| inner.entries.get_mut(&seq)) {
                p.status = Status::Uploading;
                return Some(Job {
                    entry: p.entry.clone(),
                    file: Arc::clone(&p.file),
                    recovered: p.recovered,
                });
            }
            match held_until {
                Some(t) => {
                    self.changed.wait_until(&mut inner, t);
                }
                None => self.changed.wait(&mut inner),
            }
        }
    }

    /// Ends the hold of the entries `wanted` picks: someone waits for them.
    fn hurry(inner: &mut Inner, wanted: impl Fn(&[u8]) -> bool) {
        let now = Instant::now();
        for p in inner.entries.values_mut() {
            if p.ready_at > now && wanted(&p.entry.path) {
                p.ready_at = now;
            }
        }
    }

    /// A new mode or time (`attrs`, applied after the upload) for the file
    /// at `path` whose upload has not begun: it goes with its entry,
    /// recorded by `record` (the journal) first, and nothing waits. Only
    /// for a single queued entry of `path`; false otherwise (the caller
    /// waits for the upload and sets them on the server).
    pub fn set_attrs(
        &self,
        path: &[u8],
        mode: Option<u32>,
        mtime: Option<SystemTime>,
        record: impl FnOnce(&Entry) -> std::io::Result<()>,
    ) -> bool {
        let mut inner = self.inner.lock();
        if inner.closed {
            return false;
        }
        let mut of_path = inner
            .entries
            .values_mut()
            .filter(|p| !p.failed() && p.entry.path == path);
        let (Some(p), None) = (of_path.next(), of_path.next()) else {
            return false;
        };
        if p.status != Status::Queued {
            return false;
        }
        let mut changed = p.entry.clone();
        if let Some(mode) = mode {
            changed.attrs.mode = Some(mode);
            changed.shown_mode = Some(mode);
        }
        if mtime.is_some() {
            changed.attrs.mtime = mtime;
        }
        if let Err(e) = record(&changed) {
            log::warn!(
                "write-back: cannot record a mode or time in the journal ({e}); \
                 waiting for the upload instead"
            );
            return false;
        }
        p.entry = changed;
        true
    }

    /// A rename of `from` to `to` before `from`'s upload began: the entry
    /// goes to `to` (against `base`, what the server has there), recorded
    /// by `record` (the journal) first, so no request reaches the server
    /// now and the upload goes straight to the new name. Only for a single
    /// queued entry of a file new on the server, and only while nothing
    /// waits at or below `to` (whose order against it would change); false
    /// otherwise, and the caller waits for the upload and renames on the
    /// server. Checked and done under the lock: no uploader can start the
    /// upload meanwhile.
    pub fn rename(
        &self,
        from: &[u8],
        to: &[u8],
        base: Base,
        record: impl FnOnce(&Entry) -> std::io::Result<()>,
    ) -> bool {
        let mut inner = self.inner.lock();
        if inner.closed {
            return false;
        }
        let mut found = None;
        for (seq, p) in &inner.entries {
            if p.failed() {
                continue;
            }
            if p.entry.path == to || is_under(&p.entry.path, to) {
                return false;
            }
            if p.entry.path == from {
                if found.is_some() || p.status != Status::Queued || p.entry.base != Base::New {
                    return false;
                }
                found = Some(*seq);
            }
        }
        let Some(p) = found.and_then(|seq| inner.entries.get_mut(&seq)) else {
            return false;
        };
        let mut moved = p.entry.clone();
        moved.path = to.to_vec();
        moved.base = base;
        if let Err(e) = record(&moved) {
            log::warn!(
                "write-back: cannot record a rename in the journal ({e}); \
                 waiting for the upload instead"
            );
            return false;
        }
        p.entry = moved;
        self.changed.notify_all();
        true
    }

    pub fn finish(&self, seq: u64, outcome: Outcome) {
        let mut inner = self.inner.lock();
        match outcome {
            Outcome::Done => {
                if let Some(p) = inner.entries.remove(&seq) {
                    inner.used = inner.used.saturating_sub(p.entry.size);
                }
            }
            Outcome::Retry => {
                if let Some(p) = inner.entries.get_mut(&seq) {
                    p.status = Status::Queued;
                }
            }
            Outcome::Failed(why) => {
                let mut freed = 0;
                if let Some(p) = inner.entries.get_mut(&seq) {
                    p.status = Status::Failed(why);
                    freed = p.entry.size;
                }
                inner.used = inner.used.saturating_sub(freed);
            }
        }
        self.changed.notify_all();
    }

    /// Waits until nothing at `path` or below it waits for an upload.
    /// Returns the reason of a failed upload of `path` itself, if any.
    pub fn wait_for(&self, path: &[u8]) -> Option<String> {
        let wanted = |p: &[u8]| p == path || is_under(p, path);
        let mut inner = self.inner.lock();
        Self::hurry(&mut inner, wanted);
        self.changed.notify_all();
        while inner.waiting(wanted) && !inner.closed {
            self.changed.wait(&mut inner);
        }
        inner
            .entries
            .values()
            .rev()
            .find(|p| p.entry.path == path)
            .and_then(|p| match &p.status {
                Status::Failed(why) => Some(why.clone()),
                _ => None,
            })
    }

    /// Every entry the journal must keep (waiting, under way, or refused:
    /// refused ones are tried again at the next mount) but `done`, whose
    /// upload just ended.
    pub fn entries_except(&self, done: u64) -> Vec<Entry> {
        let inner = self.inner.lock();
        inner
            .entries
            .values()
            .filter(|p| p.entry.seq != done)
            .map(|p| p.entry.clone())
            .collect()
    }

    /// The first upload refused for good at `dir` or below it, with why.
    pub fn failed_within(&self, dir: &[u8]) -> Option<(Vec<u8>, String)> {
        let inner = self.inner.lock();
        inner.entries.values().find_map(|p| match &p.status {
            Status::Failed(why) if p.entry.path == dir || is_under(&p.entry.path, dir) => {
                Some((p.entry.path.clone(), why.clone()))
            }
            _ => None,
        })
    }

    /// Waits at most `timeout` for the uploads to end; returns how many
    /// still wait.
    pub fn wait_all(&self, timeout: Duration) -> usize {
        let mut inner = self.inner.lock();
        if inner.waiting(|_| true) {
            Self::hurry(&mut inner, |_| true);
            self.changed.notify_all();
            self.changed.wait_for(&mut inner, timeout);
        }
        inner.entries.values().filter(|p| !p.failed()).count()
    }

    /// What the mount shows of `path` while its upload waits.
    pub fn metadata(&self, path: &[u8]) -> Option<Metadata> {
        let inner = self.inner.lock();
        let p = inner
            .entries
            .values()
            .rev()
            .find(|p| !p.failed() && p.entry.path == path)?;
        Some(Metadata {
            kind: FileKind::File,
            size: p.entry.size,
            mtime: Some(shown_time(&p.entry)),
            mtime_exact: true,
            mode: p.entry.shown_mode,
            symlink_target: None,
        })
    }

    /// The spool file holding what `path` will be once uploaded.
    pub fn content(&self, path: &[u8]) -> Option<(Arc<File>, u64)> {
        let inner = self.inner.lock();
        inner
            .entries
            .values()
            .rev()
            .find(|p| !p.failed() && p.entry.path == path)
            .map(|p| (Arc::clone(&p.file), p.entry.size))
    }

    /// Names of files waiting in directory `dir`.
    pub fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let inner = self.inner.lock();
        inner
            .entries
            .values()
            .filter(|p| !p.failed() && split(&p.entry.path).0 == dir)
            .map(|p| split(&p.entry.path).1.to_vec())
            .collect()
    }

    pub fn counts(&self) -> QueueCounts {
        let inner = self.inner.lock();
        let mut counts = QueueCounts::default();
        for p in inner.entries.values() {
            match &p.status {
                Status::Failed(why) => {
                    counts
                        .failed
                        .push((p.entry.path.clone(), p.entry.seq, why.clone()))
                }
                _ => {
                    counts.files += 1;
                    counts.bytes += p.entry.size;
                }
            }
        }
        counts
    }

    /// The mount is going away: uploaders stop, waiters return.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.changed.notify_all();
    }
}

/// Shown while a file waits: its own time, or the time set on it.
pub fn shown_time(entry: &Entry) -> SystemTime {
    entry.attrs.mtime.unwrap_or(entry.shown_mtime)
}
