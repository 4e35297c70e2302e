//! An upload fed while the program writes: it runs on its own thread so that
//! a write returns once its bytes are queued, and the queue is bounded so
//! memory stays small however large the file. Writes that arrive a little
//! out of order (the kernel's write-back threads) are held until the gap
//! before them is filled. The thread keeps the last bytes it sent (a
//! window, `FsConfig::upload_window`), from which a cut upload is resumed
//! (see `resume`); a server that lost more than that fails the upload.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use parking_lot::Mutex;

use super::resume::{Sending, Sent, Window};
use crate::store::{self, ErrorKind};

/// Bytes handed to the upload at once.
pub(super) const BATCH: usize = 256 * 1024;
/// Batches queued for the upload thread (a batch is at least `BATCH`
/// bytes, or one whole write of the kernel: up to 1 MiB).
const QUEUE: usize = 4;
/// Bytes of out-of-order writes held while waiting for the gap before them.
const AHEAD_LIMIT: usize = 4 * 1024 * 1024;

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
    worker: Option<JoinHandle<store::Result<Sent>>>,
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
    /// Starts the thread that feeds `sending`, keeping the last `window`
    /// bytes sent to resume from.
    pub fn start(sending: Sending, dest: Dest, window: usize) -> std::io::Result<Streamer> {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let abort = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let (abort2, failure2) = (Arc::clone(&abort), Arc::clone(&failure));
        let worker = thread::Builder::new()
            .name("ftpsfs-upload".into())
            .spawn(move || {
                let mut upload = sending;
                // Abandoning the stream also stops a resume in progress.
                upload.abort_on(Arc::clone(&abort2));
                let mut window = Window::new(window);
                for batch in rx {
                    if abort2.load(Ordering::Relaxed) {
                        break;
                    }
                    window.push(batch);
                    if let Err(e) = upload.send_to(window.end(), &mut window) {
                        *failure2.lock() = Some(e.clone());
                        return Err(e);
                    }
                }
                if abort2.load(Ordering::Relaxed) {
                    return Err(store::Error::new(ErrorKind::Failed, "upload abandoned"));
                }
                let result = upload.finish(&mut window);
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
    pub fn finish(mut self) -> store::Result<Sent> {
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
    use crate::store::UploadStream;

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
        let mut s = Streamer::start(Sending::unresumable(up), dest(), 1024).unwrap();
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
        let mut s = Streamer::start(Sending::unresumable(up), dest(), 1024).unwrap();
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
        let mut s = Streamer::start(Sending::unresumable(up), dest(), 1024).unwrap();
        s.write(0, b"abc").unwrap();
        s.abandon();
        assert!(!finished.load(Ordering::Relaxed));
    }
}
