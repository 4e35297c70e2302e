//! Async write-back (`--write-back async`): close() returns once the file's
//! bytes are durable in a spool file on local disk with a journal entry;
//! uploads run in the background, several at once.
//!
//! - `journal`: the durable record (what waits, what is done), read at the
//!   next mount of the same server, user and directory to finish the work;
//! - `queue`: the files waiting, and everyone waiting on them;
//! - `uploader`: the background uploads (the sync mode's upload path:
//!   temporary name, resume, verify), retries, and the conflict policy of
//!   a recovered entry.
//!
//! Ordering is kept simple: a request that touches a waiting path or a
//! directory above one (rename, unlink, rmdir, setattr, an open for
//! writing, a fetch of the file's content) first waits for those uploads
//! (`barrier`). One exception, for write-then-rename: a rename of a new
//! file whose upload has not begun moves the upload to the new name
//! (`rename_queued`, a journal line), with no request to the server, and
//! a mode or time set on it goes with its entry (`set_queued_attrs`); a
//! file just closed is held briefly before an idle uploader begins it, so
//! that rsync's chmod and rename find it not begun (`queue::HOLD`). mkdir is synchronous, so files made inside a new directory
//! upload into a directory that exists.
mod journal;
mod queue;
mod uploader;

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::open_file::{FileState, OpenFile, PendingAttrs};
use super::spool::Spool;
use super::{Error, ErrorKind, Fs, Result, FETCH_CHUNK};
use crate::digest::DigestAlgorithm;
use crate::store::path::shown;
use crate::store::Metadata;
use journal::{Base, Entry, Journal};
pub use queue::QueueCounts;
use queue::{Pending, Queue, Status};

/// How async write-back is set up (`Fs::with_write_back`).
#[derive(Debug, Clone)]
pub struct WriteBackConfig {
    /// This server's, user's and directory's own directory (the journal and
    /// the spool files), so that the next mount of the same URL finds it.
    pub dir: PathBuf,
    /// Bytes of spool files waiting; close() waits beyond it.
    pub spool_limit: u64,
    /// Uploads at once.
    pub uploaders: usize,
}

/// Default `--write-back-spool-size`.
pub const DEFAULT_SPOOL_LIMIT: u64 = 4 * 1024 * 1024 * 1024;

/// A file closed with changes, as it goes into the write-back spool.
struct Closed<'a> {
    path: &'a [u8],
    spool: &'a Spool,
    base: Base,
    attrs: PendingAttrs,
    shown_mode: Option<u32>,
    shown_mtime: SystemTime,
}

/// The journal, the queue and the spool files of one mount.
pub struct WriteBack {
    config: WriteBackConfig,
    journal: Mutex<Journal>,
    queue: Arc<Queue>,
    next_seq: AtomicU64,
    /// Paths this mount uploaded from the queue: a later entry of one of
    /// them is based on the mount's own upload, not on another client's.
    uploaded: Mutex<std::collections::HashSet<Vec<u8>>>,
    /// Held for the life of the mount: two mounts never share a journal.
    _lock: File,
}

impl Drop for WriteBack {
    fn drop(&mut self) {
        self.queue.close();
    }
}

fn spool_dir(dir: &Path) -> PathBuf {
    dir.join("spool")
}

fn spool_path(dir: &Path, seq: u64) -> PathBuf {
    spool_dir(dir).join(seq.to_string())
}

fn local(e: &io::Error, what: &str) -> Error {
    Error::local(e, what)
}

impl WriteBack {
    /// Opens (or creates) the write-back directory: the journal's undone
    /// entries are queued again, their spool files checked.
    fn open(config: WriteBackConfig) -> io::Result<WriteBack> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(spool_dir(&config.dir))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(config.dir.join("lock"))?;
        if lock.try_lock().is_err() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is in use by another mount of the same server and directory",
                    config.dir.display()
                ),
            ));
        }
        let (journal, live) = Journal::open(&config.dir)?;
        let queue = Arc::new(Queue::new(config.spool_limit));
        let mut next = 1;
        let mut keep = std::collections::HashSet::new();
        for entry in live {
            next = next.max(entry.seq + 1);
            let path = spool_path(&config.dir, entry.seq);
            match File::open(&path) {
                Ok(file) => {
                    keep.insert(entry.seq.to_string());
                    queue.push(
                        Pending {
                            entry,
                            file: Arc::new(file),
                            recovered: true,
                            status: Status::Queued,
                            ready_at: Instant::now(),
                        },
                        false,
                    );
                }
                Err(e) => log::error!(
                    "write-back: the spool file of {} ({}) cannot be read ({e}); \
                     it is not uploaded",
                    shown(&entry.path),
                    path.display()
                ),
            }
        }
        // Spool files of entries done, or of closes that never returned.
        if let Ok(dir) = std::fs::read_dir(spool_dir(&config.dir)) {
            for f in dir.flatten() {
                if !keep.contains(&*f.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        Ok(WriteBack {
            config,
            journal: Mutex::new(journal),
            queue,
            next_seq: AtomicU64::new(next),
            uploaded: Mutex::default(),
            _lock: lock,
        })
    }

    /// Copies the closed file's content into a new spool file, fsyncs it
    /// and records it in the journal: from then on the content survives
    /// the mount's death. Waits first while the spool is full.
    fn add(&self, closed: &Closed) -> Result<()> {
        let size = closed.spool.len();
        self.queue.reserve(size);
        let added = self.write_entry(closed);
        if added.is_err() {
            self.queue.unreserve(size);
        }
        added
    }

    fn write_entry(&self, closed: &Closed) -> Result<()> {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let file_path = spool_path(&self.config.dir, seq);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file_path)
            .map_err(|e| local(&e, "creating a write-back spool file"))?;
        let digest = copy_and_digest(closed.spool, &file).and_then(|d| {
            file.sync_all()?;
            File::open(spool_dir(&self.config.dir))?.sync_all()?;
            Ok(d)
        });
        let digest = match digest {
            Ok(d) => d,
            Err(e) => {
                let _ = std::fs::remove_file(&file_path);
                return Err(local(&e, "writing a write-back spool file"));
            }
        };
        let entry = Entry {
            seq,
            path: closed.path.to_vec(),
            size: closed.spool.len(),
            digest,
            base: closed.base,
            attrs: closed.attrs,
            shown_mode: closed.shown_mode,
            shown_mtime: closed.shown_mtime,
        };
        // Held until the entry is queued: a compaction of the journal
        // (`done`) writes what the queue holds, so it must not run between.
        let mut journal = self.journal.lock();
        if let Err(e) = journal.pending(&entry) {
            let _ = std::fs::remove_file(&file_path);
            return Err(local(&e, "writing the write-back journal"));
        }
        self.queue.push(
            Pending {
                entry,
                file: Arc::new(file),
                recovered: false,
                status: Status::Queued,
                ready_at: Instant::now(),
            },
            true,
        );
        drop(journal);
        Ok(())
    }

    /// The upload of `seq` (of `path`) is done: the journal says so (and
    /// is rewritten with the live entries only, once long enough), the
    /// spool file goes. Locks: the journal, then the queue, as everywhere.
    fn done(&self, seq: u64, path: &[u8]) {
        self.uploaded.lock().insert(path.to_vec());
        let mut journal = self.journal.lock();
        if let Err(e) = journal.done(seq) {
            // The next mount uploads it again: harmless, the same bytes.
            log::warn!(
                "write-back: cannot write to {} ({e}); the next mount may upload a file again",
                journal.path().display()
            );
        }
        let live = self.queue.entries_except(seq);
        if journal.needs_compaction(live.len()) {
            if let Err(e) = journal.compact(&live) {
                // The old journal is whole (the rewrite is renamed into
                // place only once written): it just goes on growing.
                log::warn!(
                    "write-back: cannot rewrite {} ({e}); it is left as it is",
                    journal.path().display()
                );
            }
        }
        drop(journal);
        let _ = std::fs::remove_file(spool_path(&self.config.dir, seq));
    }
}

/// Copies the spool into `file`, returning the SHA-256 of the content.
fn copy_and_digest(spool: &Spool, file: &File) -> io::Result<Vec<u8>> {
    let mut hasher = DigestAlgorithm::Sha256
        .hasher()
        .ok_or_else(|| io::Error::other("no SHA-256"))?;
    let mut buf = vec![0u8; FETCH_CHUNK];
    let mut offset = 0;
    while offset < spool.len() {
        let n = spool.read_at(offset, &mut buf)?;
        if n == 0 {
            break;
        }
        file.write_all_at(&buf[..n], offset)?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hasher.finish())
}

/// The SHA-256 of the first `len` bytes of `file`.
fn digest_of(file: &File, len: u64) -> io::Result<Vec<u8>> {
    sha256_of(len, |offset, buf| file.read_at(buf, offset))
}

/// The SHA-256 of `len` bytes read through `read_at`.
fn sha256_of(
    len: u64,
    mut read_at: impl FnMut(u64, &mut [u8]) -> io::Result<usize>,
) -> io::Result<Vec<u8>> {
    let mut hasher = DigestAlgorithm::Sha256
        .hasher()
        .ok_or_else(|| io::Error::other("no SHA-256"))?;
    let mut buf = vec![0u8; FETCH_CHUNK];
    let mut offset = 0;
    while offset < len {
        let want = (len - offset).min(buf.len() as u64) as usize;
        let n = read_at(offset, &mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than its journal entry says",
            ));
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hasher.finish())
}

fn secs(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

impl Fs {
    /// Turns on async write-back: returns the mount, shared, with its
    /// uploaders running (they hold it weakly: dropping the last `Arc`
    /// stops them, as a killed mount would).
    pub fn with_write_back(mut self, config: WriteBackConfig) -> io::Result<Arc<Fs>> {
        let uploaders = config.uploaders.max(1);
        let write_back = WriteBack::open(config)?;
        let queue = Arc::clone(&write_back.queue);
        self.write_back = Some(write_back);
        let fs = Arc::new(self);
        for n in 0..uploaders {
            let weak: Weak<Fs> = Arc::downgrade(&fs);
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("ftpsfs-upload-{n}"))
                .spawn(move || uploader::run(weak, queue))?;
        }
        Ok(fs)
    }

    /// Async mode's save: the file's changes go to the spool and journal,
    /// and the upload is queued. The file is then what the server will
    /// have: reads and attributes come from the queue until it does.
    pub(super) fn save_to_spool(&self, file: &Arc<OpenFile>) -> Result<()> {
        let Some(wb) = &self.write_back else {
            return Ok(());
        };
        let mut state = file.state();
        if !state.has_changes() {
            return Ok(());
        }
        let Some(path) = self.inodes.lock().path(file.ino) else {
            return Ok(());
        };
        if matches!(&*state, FileState::Appending(_) | FileState::Patching(_)) {
            self.stage(file, &mut state)?;
        }
        if matches!(&*state, FileState::Streaming(_)) {
            self.unstream(file, &mut state)?;
        }
        let (FileState::Filling(copy) | FileState::Staged(copy)) = &*state else {
            return Ok(());
        };
        let base = match (copy.replaces, self.cache.stale(&path)) {
            (false, _) => Base::New,
            (true, Some(meta)) => Base::File {
                size: meta.size,
                mtime: secs(meta.mtime),
            },
            (true, None) => Base::File {
                size: 0,
                mtime: None,
            },
        };
        let (shown_mode, shown_mtime) = {
            let view = state.view();
            (view.mode, view.mtime)
        };
        wb.add(&Closed {
            path: &path,
            spool: &copy.spool,
            base,
            attrs: copy.pending,
            shown_mode,
            shown_mtime,
        })?;
        let size = copy.spool.len();
        let empty_and_open = size == 0 && self.files.lock().writers(file.ino) > 0;
        *state = if empty_and_open {
            FileState::SavedEmpty
        } else {
            FileState::Remote
        };
        file.bump_version();
        self.forget_content(&path);
        if let Some(meta) = wb.queue.metadata(&path) {
            self.cache.update(&path, meta);
        }
        Ok(())
    }

    /// Renames a file whose upload waits and has not begun: its upload
    /// goes to `to` instead (see `Queue::rename`), without a request to the
    /// server now. `replaced`: what the server has at `to`, as this mount
    /// knows it (None: nothing). False when that does not apply.
    pub(super) fn rename_queued(
        &self,
        from: &[u8],
        to: &[u8],
        replaced: Option<&Metadata>,
    ) -> bool {
        let Some(wb) = &self.write_back else {
            return false;
        };
        let base = match replaced {
            None => Base::New,
            Some(meta) => Base::File {
                size: meta.size,
                mtime: secs(meta.mtime),
            },
        };
        // The journal first, then the queue (the order `done` takes them).
        let mut journal = wb.journal.lock();
        wb.queue.rename(from, to, base, |moved| {
            journal.renamed(moved.seq, &moved.path, moved.base)
        })
    }

    /// A new mode and/or time of a file whose upload waits and has not
    /// begun: they go with its queued entry, applied after its upload
    /// (see `Queue::set_attrs`). False when that does not apply.
    pub(super) fn set_queued_attrs(
        &self,
        path: &[u8],
        mode: Option<u32>,
        mtime: Option<SystemTime>,
    ) -> bool {
        let Some(wb) = &self.write_back else {
            return false;
        };
        // The journal first, then the queue (the order `done` takes them).
        let mut journal = wb.journal.lock();
        wb.queue
            .set_attrs(path, mode, mtime, |changed| journal.pending(changed))
    }

    /// Whether `path` has an upload waiting (async mode).
    pub(super) fn is_queued(&self, path: &[u8]) -> bool {
        self.write_back_metadata(path).is_some()
    }

    /// Waits until no upload of `path` or of anything below it waits (see
    /// the module comment); returns at once in sync mode.
    pub(super) fn barrier(&self, path: &[u8]) {
        if let Some(wb) = &self.write_back {
            wb.queue.wait_for(path);
        }
    }

    /// `barrier` for the path of `ino`, if it still has one (a file
    /// unlinked while open has none, and nothing of it is queued).
    pub(super) fn barrier_ino(&self, ino: super::Ino) {
        let path = self.inodes.lock().path(ino);
        if let Some(path) = path {
            self.barrier(&path);
        }
    }

    /// fsync in async mode: the file's upload is done, or its error.
    pub(super) fn wait_uploaded(&self, file: &OpenFile) -> Result<()> {
        let Some(wb) = &self.write_back else {
            return Ok(());
        };
        let Some(path) = self.inodes.lock().path(file.ino) else {
            return Ok(());
        };
        match wb.queue.wait_for(&path) {
            None => Ok(()),
            Some(why) => Err(Error::new(
                ErrorKind::Upload(crate::store::ErrorKind::Failed),
                format!("{path}: {why}"),
            )),
        }
    }

    /// fsync of a directory in async mode (`sync DIR`; the kernel does not
    /// pass syncfs on to a FUSE filesystem): the uploads of everything
    /// below it (the mount root: all) are done, or the error of one
    /// refused for good.
    pub(super) fn wait_uploaded_under(&self, dir: &[u8]) -> Result<()> {
        let Some(wb) = &self.write_back else {
            return Ok(());
        };
        wb.queue.wait_for(dir);
        match wb.queue.failed_within(dir) {
            None => Ok(()),
            Some((path, why)) => Err(Error::new(
                ErrorKind::Upload(crate::store::ErrorKind::Failed),
                format!(
                    "{}: {why} (its content is kept in the write-back spool)",
                    shown(&path)
                ),
            )),
        }
    }

    /// Waits for every queued upload, logging progress; gives up after
    /// `retry_time` without one finishing (the journal keeps the rest for
    /// the next mount). Ok with the number uploaded.
    pub(super) fn wait_write_back(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<usize> {
        let Some(wb) = &self.write_back else {
            return Ok(0);
        };
        let total = wb.queue.counts().files;
        let mut left = total;
        let mut last_change = Instant::now();
        let mut last_log = Instant::now();
        if total > 0 {
            log::info!("write-back: waiting for {total} upload(s)");
        }
        while left > 0 {
            let now_left = wb.queue.wait_all(Duration::from_millis(500));
            if now_left < left {
                last_change = Instant::now();
                progress(total.saturating_sub(now_left), total);
            }
            left = now_left;
            if left > 0 && last_log.elapsed() >= Duration::from_secs(2) {
                log::info!(
                    "write-back: {} of {total} upload(s) done, {left} to go",
                    total - left
                );
                last_log = Instant::now();
            }
            if left > 0 && last_change.elapsed() > self.config.retry_time {
                return Err(Error::new(
                    ErrorKind::Upload(crate::store::ErrorKind::Unavailable),
                    format!(
                        "{left} upload(s) made no progress for {:?}; they stay in the \
                         write-back journal and the next mount of this server uploads them",
                        self.config.retry_time
                    ),
                ));
            }
        }
        let failed = wb.queue.counts().failed;
        if let Some((path, _, why)) = failed.first() {
            return Err(Error::new(
                ErrorKind::Upload(crate::store::ErrorKind::Failed),
                format!(
                    "{} upload(s) were refused and are kept in the spool, first {}: {why}",
                    failed.len(),
                    shown(path)
                ),
            ));
        }
        Ok(total)
    }

    /// Metadata of a file whose upload waits (what close() left).
    pub(super) fn write_back_metadata(&self, path: &[u8]) -> Option<Metadata> {
        self.write_back.as_ref()?.queue.metadata(path)
    }

    /// Names of waiting files in directory `dir`.
    pub(super) fn write_back_children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        self.write_back
            .as_ref()
            .map(|wb| wb.queue.children(dir))
            .unwrap_or_default()
    }

    /// Reads from the spool file of a waiting upload of `path`.
    pub(super) fn read_write_back(
        &self,
        path: &[u8],
        offset: u64,
        size: u32,
    ) -> Option<Result<Vec<u8>>> {
        let (file, len) = self.write_back.as_ref()?.queue.content(path)?;
        if offset >= len {
            return Some(Ok(Vec::new()));
        }
        let n = (len - offset).min(u64::from(size)) as usize;
        let mut buf = vec![0u8; n];
        Some(
            file.read_exact_at(&mut buf, offset)
                .map(|()| buf)
                .map_err(|e| local(&e, "reading a write-back spool file")),
        )
    }

    /// Files and bytes waiting, and those refused for good (async mode).
    pub fn write_back_counts(&self) -> QueueCounts {
        self.write_back
            .as_ref()
            .map(|wb| wb.queue.counts())
            .unwrap_or_default()
    }

    /// Where the spool files of refused uploads are kept, for `ftpsfs status`.
    pub fn failed_write_backs(&self) -> Vec<PathBuf> {
        let Some(wb) = &self.write_back else {
            return Vec::new();
        };
        wb.queue
            .counts()
            .failed
            .iter()
            .map(|(_, seq, _)| spool_path(&wb.config.dir, *seq))
            .collect()
    }

    pub(super) fn is_write_back(&self) -> bool {
        self.write_back.is_some()
    }
}
