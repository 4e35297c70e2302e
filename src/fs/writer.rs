//! Getting written bytes onto the server: a whole staged file at once, or a
//! streaming upload fed while the program writes; temporary names, and
//! putting a finished upload in place of the old file.
//!
//! An upload that replaces a file on the server goes to a hidden temporary
//! name beside it (`.<name>.ftpsfs-<unique>.part`) and is renamed over the
//! file once complete, so a failed upload leaves the old file as it was. If
//! the server refuses the rename even after the old file is removed (some
//! servers forbid renames), the finished temporary file is copied to the
//! target through a download piped into an upload, and later uploads go to
//! the target directly. A file that did not exist before (created through
//! the mount) is uploaded under its own name: there is nothing to protect,
//! and it saves a RNFR/RNTO per file when copying many small files; if that
//! upload fails, what it left is deleted.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::spool::Spool;
use crate::store::{self, ErrorKind, RemoteStore, UploadStream};

/// Bytes handed to the upload at once.
const BATCH: usize = 256 * 1024;
/// Batches queued for the upload thread (a batch is at least `BATCH`
/// bytes, or one whole write of the kernel: up to 1 MiB).
const QUEUE: usize = 4;
/// Bytes of out-of-order writes held while waiting for the gap before them.
const AHEAD_LIMIT: usize = 4 * 1024 * 1024;
/// Longest original name kept in a temporary name.
const TEMP_NAME_KEEP: usize = 200;

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A hidden name beside `name` for an upload in progress.
pub fn temp_name(name: &[u8]) -> Vec<u8> {
    let mut cut = name.len().min(TEMP_NAME_KEEP);
    while cut > 0 && cut < name.len() && name[cut] & 0xc0 == 0x80 {
        cut -= 1;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let unique = format!(
        "{:x}{:x}{:x}",
        std::process::id(),
        nanos,
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    );
    let mut out = Vec::with_capacity(cut + unique.len() + 16);
    out.push(b'.');
    out.extend_from_slice(&name[..cut]);
    out.extend_from_slice(b".ftpsfs-");
    out.extend_from_slice(unique.as_bytes());
    out.extend_from_slice(b".part");
    out
}

/// Whether `name` is one of our temporary names (never shown in listings).
pub fn is_temp_name(name: &[u8]) -> bool {
    name.first() == Some(&b'.')
        && name.ends_with(b".part")
        && name.windows(8).any(|w| w == b".ftpsfs-")
}

/// A temporary upload name (see `temp_name`) older than this is left over
/// from an upload that was interrupted (crash, kill -9, lost connection
/// while cleaning up): an upload in progress keeps its file's time current,
/// and one that makes no progress fails long before this.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Whether a listed entry is a temporary upload left over (see
/// `STALE_TEMP_AGE`). An entry without a time is not judged stale.
pub fn is_stale_temp(name: &[u8], mtime: Option<SystemTime>, now: SystemTime) -> bool {
    is_temp_name(name)
        && mtime.is_some_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE_TEMP_AGE))
}

/// Deletes `path`, for cleaning up after a failure; a failure to clean up is
/// only logged.
pub fn delete_quietly(store: &dyn RemoteStore, path: &[u8]) {
    if let Err(e) = store.delete(path) {
        if e.kind != ErrorKind::NotFound {
            log::warn!(
                "could not remove {} after a failed upload: {e}",
                String::from_utf8_lossy(path)
            );
        }
    }
}

/// Uploads the whole spool to `path`. On failure, what the upload left at
/// `path` is deleted.
pub fn upload_spool(store: &dyn RemoteStore, path: &[u8], spool: &Spool) -> store::Result<()> {
    let result = (|| {
        let mut up = store.upload(path)?;
        let mut buf = vec![0u8; BATCH.min(spool.len() as usize).max(1)];
        let mut offset = 0;
        while offset < spool.len() {
            let n = spool.read_at(offset, &mut buf).map_err(|e| {
                store::Error::new(ErrorKind::Failed, format!("reading the write spool: {e}"))
            })?;
            if n == 0 {
                break;
            }
            up.write(&buf[..n])?;
            offset += n as u64;
        }
        up.finish()
    })();
    if result.is_err() {
        delete_quietly(store, path);
    }
    result
}

/// Copies a file on the server through a download piped into an upload.
fn copy_remote(store: &dyn RemoteStore, from: &[u8], to: &[u8]) -> store::Result<()> {
    let mut src = store.open_read(from, 0)?;
    let mut up = store.upload(to)?;
    let mut buf = vec![0u8; BATCH];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        up.write(&buf[..n])?;
    }
    up.finish()
}

/// Renames `from` to `to`, replacing `to`: if the server will not rename
/// over an existing file, the old file is removed first.
pub fn rename_replacing(store: &dyn RemoteStore, from: &[u8], to: &[u8]) -> store::Result<()> {
    match store.rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Unavailable) => Err(e),
        Err(first) => {
            match store.delete(to) {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotFound => return Err(first),
                Err(e) if e.kind == ErrorKind::PermissionDenied => {
                    // Perhaps a directory: rmdir then, which refuses a full one.
                    if let Err(e2) = store.rmdir(to) {
                        return Err(if e2.kind == ErrorKind::NotEmpty {
                            e2
                        } else {
                            first
                        });
                    }
                }
                Err(e) => return Err(e),
            }
            store.rename(from, to)
        }
    }
}

/// Puts the finished upload at `temp` in place of `target`; falls back to
/// copying when the server refuses renames (and remembers that in
/// `renames_refused`). On failure the temporary file is deleted.
pub fn commit(
    store: &dyn RemoteStore,
    temp: &[u8],
    target: &[u8],
    renames_refused: &AtomicBool,
) -> store::Result<()> {
    let result = match rename_replacing(store, temp, target) {
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::PermissionDenied | ErrorKind::Unsupported | ErrorKind::Failed
            ) =>
        {
            log::info!(
                "the server refused to rename {} ({e}); uploading in place from now on",
                String::from_utf8_lossy(temp)
            );
            renames_refused.store(true, Ordering::Relaxed);
            copy_remote(store, temp, target)
        }
        other => other,
    };
    match result {
        // The rename consumed the temporary file; a copy leaves it behind.
        Ok(()) if renames_refused.load(Ordering::Relaxed) => delete_quietly(store, temp),
        Ok(()) => {}
        Err(_) => delete_quietly(store, temp),
    }
    result
}

/// Where a streaming upload writes: a name in a directory known by inode,
/// so that renaming the directory meanwhile does not lose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    pub parent: u64,
    pub name: Vec<u8>,
    /// A temporary name, to be renamed over the file when finished.
    pub temp: bool,
}

/// An upload fed while the program writes, on its own thread so that a
/// write returns once its bytes are queued (a bounded queue: memory stays
/// small however large the file).
pub struct Streamer {
    pub dest: Dest,
    tx: Option<SyncSender<Vec<u8>>>,
    worker: Option<JoinHandle<store::Result<()>>>,
    abort: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<store::Error>>>,
    batch: Vec<u8>,
    /// Offset of the next byte expected in order.
    next: u64,
    /// Writes that arrived ahead of `next`.
    ahead: BTreeMap<u64, Vec<u8>>,
    ahead_bytes: usize,
}

impl Streamer {
    pub fn start(upload: Box<dyn UploadStream>, dest: Dest) -> std::io::Result<Streamer> {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let abort = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let (abort2, failure2) = (Arc::clone(&abort), Arc::clone(&failure));
        let worker = thread::Builder::new()
            .name("ftpsfs-upload".into())
            .spawn(move || {
                let mut upload = upload;
                for batch in rx {
                    if abort2.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Err(e) = upload.write(&batch) {
                        *failure2.lock() = Some(e.clone());
                        return Err(e);
                    }
                }
                if abort2.load(Ordering::Relaxed) {
                    return Err(store::Error::new(ErrorKind::Failed, "upload abandoned"));
                }
                let result = upload.finish();
                if let Err(e) = &result {
                    *failure2.lock() = Some(e.clone());
                }
                result
            })?;
        Ok(Streamer {
            dest,
            tx: Some(tx),
            worker: Some(worker),
            abort,
            failure,
            batch: Vec::with_capacity(BATCH),
            next: 0,
            ahead: BTreeMap::new(),
            ahead_bytes: 0,
        })
    }

    /// The size of the file written so far (held writes included).
    pub fn size(&self) -> u64 {
        let held = self
            .ahead
            .iter()
            .next_back()
            .map(|(off, d)| off + d.len() as u64)
            .unwrap_or(0);
        self.next.max(held)
    }

    fn failed(&self) -> store::Error {
        self.failure.lock().clone().unwrap_or_else(|| {
            store::Error::new(ErrorKind::Failed, "the upload stopped unexpectedly")
        })
    }

    fn send(&mut self, force: bool) -> store::Result<()> {
        if self.batch.is_empty() || (!force && self.batch.len() < BATCH) {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        match &self.tx {
            Some(tx) => tx.send(batch).map_err(|_| self.failed()),
            None => Err(self.failed()),
        }
    }

    /// Takes a write at `offset`. `Ok(false)`: it cannot be streamed (it
    /// goes back over sent bytes, or too far ahead); nothing was taken.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> store::Result<bool> {
        if let Some(e) = self.failure.lock().clone() {
            return Err(e);
        }
        let end = offset + data.len() as u64;
        if offset < self.next {
            return Ok(false);
        }
        if offset > self.next {
            let overlaps = self
                .ahead
                .range(..end)
                .next_back()
                .is_some_and(|(o, d)| o + d.len() as u64 > offset);
            if overlaps || self.ahead_bytes + data.len() > AHEAD_LIMIT {
                return Ok(false);
            }
            self.ahead.insert(offset, data.to_vec());
            self.ahead_bytes += data.len();
            return Ok(true);
        }
        if self.ahead.range(offset..end).next().is_some() {
            // It overlaps a write held ahead: a rewrite, which cannot stream.
            return Ok(false);
        }
        self.batch.extend_from_slice(data);
        self.next = end;
        // Held writes never overlap each other or this one, so what is left
        // after this starts beyond `next`.
        while let Some(chunk) = self.ahead.remove(&self.next) {
            self.ahead_bytes -= chunk.len();
            self.next += chunk.len() as u64;
            self.batch.extend_from_slice(&chunk);
        }
        self.send(false)?;
        Ok(true)
    }

    /// Whether writes are held ahead of a gap.
    pub fn has_ahead(&self) -> bool {
        !self.ahead.is_empty()
    }

    /// The writes held ahead of the stream (for falling back to staging).
    pub fn take_ahead(&mut self) -> BTreeMap<u64, Vec<u8>> {
        self.ahead_bytes = 0;
        std::mem::take(&mut self.ahead)
    }

    /// Sends what is left and waits until the server has every byte sent in
    /// order. Writes held ahead of a gap are not sent: take them first.
    pub fn finish(mut self) -> store::Result<()> {
        let sent = self.send(true);
        self.tx = None;
        let joined = match self.worker.take() {
            Some(worker) => worker.join().unwrap_or_else(|_| {
                Err(store::Error::new(
                    ErrorKind::Failed,
                    "the upload thread failed",
                ))
            }),
            None => Err(self.failed()),
        };
        sent.and(joined)
    }

    /// Stops the upload without finishing it (the server may keep a partial
    /// file, which the caller deletes).
    pub fn abandon(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.abort.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        if self.worker.is_some() {
            self.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_unique_and_short() {
        let a = temp_name(b"file.txt");
        let b = temp_name(b"file.txt");
        assert_ne!(a, b);
        assert!(a.starts_with(b".file.txt.ftpsfs-"));
        assert!(is_temp_name(&a));
        assert!(!is_temp_name(b".bashrc"));
        assert!(!is_temp_name(b"notes.part"));
        let long = "é".repeat(127).into_bytes();
        let t = temp_name(&long);
        assert!(t.len() <= 255);
        assert!(
            std::str::from_utf8(&t).is_ok(),
            "cut at a character boundary"
        );
    }

    struct Sink {
        got: Arc<Mutex<Vec<u8>>>,
        fail_after: Option<usize>,
        finished: Arc<AtomicBool>,
    }

    impl UploadStream for Sink {
        fn write(&mut self, data: &[u8]) -> store::Result<()> {
            let mut got = self.got.lock();
            if self.fail_after.is_some_and(|n| got.len() + data.len() > n) {
                return Err(store::Error::new(ErrorKind::NoSpace, "quota"));
            }
            got.extend_from_slice(data);
            Ok(())
        }
        fn finish(self: Box<Self>) -> store::Result<()> {
            self.finished.store(true, Ordering::Relaxed);
            Ok(())
        }
    }

    fn sink(fail_after: Option<usize>) -> (Box<Sink>, Arc<Mutex<Vec<u8>>>, Arc<AtomicBool>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let finished = Arc::new(AtomicBool::new(false));
        let s = Sink {
            got: got.clone(),
            fail_after,
            finished: finished.clone(),
        };
        (Box::new(s), got, finished)
    }

    fn dest() -> Dest {
        Dest {
            parent: 1,
            name: b"f".to_vec(),
            temp: false,
        }
    }

    #[test]
    fn streams_in_order_and_reorders_small_gaps() {
        let (up, got, finished) = sink(None);
        let mut s = Streamer::start(up, dest()).unwrap();
        assert!(s.write(0, b"abc").unwrap());
        assert!(s.write(6, b"ghi").unwrap(), "held ahead");
        assert!(s.write(3, b"def").unwrap());
        assert_eq!(s.size(), 9);
        assert!(!s.write(1, b"x").unwrap(), "going back cannot stream");
        s.finish().unwrap();
        assert_eq!(&*got.lock(), b"abcdefghi");
        assert!(finished.load(Ordering::Relaxed));
    }

    #[test]
    fn failures_reach_the_writer() {
        let (up, _, finished) = sink(Some(BATCH));
        let mut s = Streamer::start(up, dest()).unwrap();
        let chunk = vec![7u8; BATCH];
        let mut err = None;
        for i in 0..(QUEUE as u64 + 4) {
            if let Err(e) = s.write(i * BATCH as u64, &chunk) {
                err = Some(e);
                break;
            }
        }
        let err = err.or_else(|| s.finish().err()).unwrap();
        assert_eq!(err.kind, ErrorKind::NoSpace);
        assert!(!finished.load(Ordering::Relaxed));
    }

    #[test]
    fn abandoning_does_not_finish() {
        let (up, _, finished) = sink(None);
        let mut s = Streamer::start(up, dest()).unwrap();
        s.write(0, b"abc").unwrap();
        s.abandon();
        assert!(!finished.load(Ordering::Relaxed));
    }
}
