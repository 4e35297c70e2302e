//! A `RemoteStore` wrapper that injects the faults of networks and servers
//! having a bad moment, around any store: a call that fails (once, or until
//! told to stop), a call that answers late, an upload or a download whose
//! connection breaks after some bytes.
//!
//! A fault hits before the call reaches the inner store, so a failed call
//! changes nothing there (a refused STOR truncates nothing); a broken
//! transfer is the exception, as on a real server: the bytes before the break
//! did reach it, and the partial file stays.
//!
//! It counts the calls it gets, failed ones included, as `MemoryStore` counts
//! the calls that reach it: the difference is what the faults swallowed.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ftpsfs::store::path::shown;
use ftpsfs::store::{
    Capabilities, DigestAlgorithm, DirEntry, Error, ErrorKind, Metadata, ReadStream, RemoteStore,
    Result, StoreAtOffset, UploadStream,
};
use parking_lot::Mutex;

use crate::ops::{Op, OpCounts};

pub struct FaultyStore<S: RemoteStore> {
    inner: S,
    faults: Mutex<Faults>,
    /// Shared with the streams, which count their bytes.
    counts: Arc<Mutex<OpCounts>>,
    /// Download streams alive (each gives its seat back on drop).
    seats: Arc<Seats>,
}

/// The download streams alive, and a wait for one to close: the sessions of
/// the FTPS store's pool, which a download holds for its whole length.
#[derive(Default)]
struct Seats {
    taken: Mutex<usize>,
    freed: parking_lot::Condvar,
}

impl Seats {
    fn give_back(&self) {
        *self.taken.lock() -= 1;
        self.freed.notify_one();
    }
}

#[derive(Default)]
struct Faults {
    /// One failure each, in the order they were armed.
    next: Vec<(Op, ErrorKind)>,
    always: HashMap<Op, ErrorKind>,
    delays: HashMap<Op, Duration>,
    upload_after: Option<u64>,
    /// A break for the next upload to this path only.
    upload_to: Option<(Vec<u8>, u64)>,
    lag: u64,
    corrupt: Vec<Corruption>,
    read_after: Option<u64>,
    read_rate: Option<u64>,
    total_read_rate: Option<Arc<Pace>>,
    read_sessions: Option<usize>,
    /// Downloads at once, and how long an `open_read` beyond them waits.
    read_pool: Option<(usize, Duration)>,
}

/// Paces bytes to a rate: each read waits until the bytes so far would
/// have taken that long at the rate (a link's cap, a shaper's).
struct Pace {
    rate: u64,
    state: Mutex<(Instant, u64)>,
}

impl Pace {
    fn new(rate: u64) -> Pace {
        Pace {
            rate: rate.max(1),
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Counts `n` bytes and waits as long as the rate wants.
    fn pass(&self, n: usize) {
        let due = {
            let mut state = self.state.lock();
            state.1 += n as u64;
            state.0 + Duration::from_secs_f64(state.1 as f64 / self.rate as f64)
        };
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// How a server stores an upload wrongly while answering that it is fine
/// (a full disk it does not notice, a bad cache, a bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The last byte is not stored.
    DropLast,
    /// The first byte is stored inverted (the size is right).
    FlipFirst,
    /// Stored right, but the final reply is lost: `finish` fails with
    /// `Unavailable` after the server has every byte.
    LoseReply,
    /// At an injected break (`fail_upload_after`), the server also stores
    /// this many bytes of garbage after what it received, so it holds more
    /// than the client sent.
    GarbageOnBreak(u32),
}

impl<S: RemoteStore> FaultyStore<S> {
    /// No fault armed: every call goes to `inner` as it is.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            faults: Mutex::new(Faults::default()),
            counts: Arc::new(Mutex::new(OpCounts::default())),
            seats: Arc::default(),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The next call of `op` fails with `kind` (queue: several calls queue
    /// several failures).
    pub fn fail_next(&self, op: Op, kind: ErrorKind) {
        self.faults.lock().next.push((op, kind));
    }

    /// Every call of `op` fails with `kind` until `stop_failing(op)` (once
    /// the failures queued by `fail_next` for `op` are used up).
    pub fn fail_always(&self, op: Op, kind: ErrorKind) {
        self.faults.lock().always.insert(op, kind);
    }

    /// Calls of `op` fail no more: undoes `fail_always` and drops the
    /// failures queued for `op`.
    pub fn stop_failing(&self, op: Op) {
        let mut faults = self.faults.lock();
        faults.always.remove(&op);
        faults.next.retain(|&(o, _)| o != op);
    }

    /// Every call of `op` waits `delay` before anything else (failing
    /// included): a server behind a stalled network. `Duration::ZERO`
    /// removes the delay.
    pub fn set_delay(&self, op: Op, delay: Duration) {
        let mut faults = self.faults.lock();
        if delay.is_zero() {
            faults.delays.remove(&op);
        } else {
            faults.delays.insert(op, delay);
        }
    }

    /// The next upload or append stream fails with `Unavailable` (connection
    /// lost) once `bytes` bytes have been written through it; the bytes
    /// before that reach the inner store (so the server keeps a partial
    /// file, as vsftpd does). Later writes and `finish` fail the same way.
    pub fn fail_upload_after(&self, bytes: u64) {
        self.faults.lock().upload_after = Some(bytes);
    }

    /// The next upload or append stream to `path` (only) breaks as
    /// `fail_upload_after` says.
    pub fn fail_upload_to_after(&self, path: &[u8], bytes: u64) {
        self.faults.lock().upload_to = Some((path.to_vec(), bytes));
    }

    /// Upload streams opened from now on hold the last `bytes` written
    /// through them back from the server until more come or they finish,
    /// as socket and TLS buffers do: a break loses what they hold, so the
    /// server then has less than the client gave the stream. 0: none.
    pub fn set_upload_lag(&self, bytes: u64) {
        self.faults.lock().lag = bytes;
    }

    /// The next upload streams, one each in the order given, store their
    /// bytes wrongly and still finish with success.
    pub fn corrupt_next_uploads(&self, corruptions: &[Corruption]) {
        self.faults.lock().corrupt.extend_from_slice(corruptions);
    }

    /// The next download stream fails with `Unavailable` after returning
    /// `bytes` bytes: every read after those fails, even at the end of the
    /// file (the transfer was not confirmed).
    pub fn fail_read_after(&self, bytes: u64) {
        self.faults.lock().read_after = Some(bytes);
    }

    /// Download streams opened from now on each give at most `bytes_per_sec`
    /// (a per-connection cap); `None` removes the cap for later streams.
    pub fn set_read_rate(&self, bytes_per_sec: Option<u64>) {
        self.faults.lock().read_rate = bytes_per_sec;
    }

    /// All download streams opened from now on share `bytes_per_sec` (a
    /// link's total cap); `None` removes it for later streams.
    pub fn set_total_read_rate(&self, bytes_per_sec: Option<u64>) {
        self.faults.lock().total_read_rate = bytes_per_sec.map(|r| Arc::new(Pace::new(r)));
    }

    /// At most `sessions` download streams may be open at once; an
    /// `open_read` beyond them fails with `Unavailable`, as a server at its
    /// session cap answers 421 (`None`: no cap).
    pub fn set_read_sessions(&self, sessions: Option<usize>) {
        self.faults.lock().read_sessions = sessions;
    }

    /// At most `sessions` download streams may be open at once; an
    /// `open_read` beyond them waits up to `checkout` for one to close, as
    /// the FTPS store waits for a pooled session, and then fails with
    /// `Unavailable` (`None`: no limit).
    pub fn set_read_pool(&self, sessions: Option<usize>, checkout: Duration) {
        self.faults.lock().read_pool = sessions.map(|n| (n, checkout));
    }

    /// Drops every fault not yet triggered, delays included: a healthy
    /// server again. A stream that already carries its fault keeps it.
    pub fn clear_faults(&self) {
        *self.faults.lock() = Faults::default();
    }

    /// The calls this wrapper got (failed ones included), and the bytes
    /// that went through its streams to or from the inner store.
    pub fn counters(&self) -> OpCounts {
        *self.counts.lock()
    }

    pub fn reset_counters(&self) {
        *self.counts.lock() = OpCounts::default();
    }

    /// Counts the call, waits its delay, and fails it if a fault says so.
    fn enter(&self, op: Op) -> Result<()> {
        self.counts.lock().bump(op);
        let delay = self.faults.lock().delays.get(&op).copied();
        if let Some(delay) = delay {
            // Not under the lock: other calls go on meanwhile.
            std::thread::sleep(delay);
        }
        let mut faults = self.faults.lock();
        let queued = faults.next.iter().position(|&(o, _)| o == op);
        let kind = match queued {
            Some(i) => Some(faults.next.remove(i).1),
            None => faults.always.get(&op).copied(),
        };
        match kind {
            Some(kind) => Err(Error::new(kind, format!("injected failure of {op:?}"))),
            None => Ok(()),
        }
    }

    /// A download, as the FTPS store opens one: waiting for a free session
    /// (`set_read_pool`), or `None` when `wait` is false and none is free.
    fn open_download(
        &self,
        path: &[u8],
        offset: u64,
        wait: bool,
    ) -> Result<Option<Box<dyn ReadStream>>> {
        self.enter(Op::OpenRead)?;
        let (cap, pool) = {
            let faults = self.faults.lock();
            (faults.read_sessions, faults.read_pool)
        };
        {
            let mut taken = self.seats.taken.lock();
            if cap.is_some_and(|cap| *taken >= cap) {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "injected 421: too many sessions",
                ));
            }
            if let Some((sessions, checkout)) = pool {
                let deadline = Instant::now() + checkout;
                while *taken >= sessions {
                    if !wait {
                        return Ok(None);
                    }
                    if self
                        .seats
                        .freed
                        .wait_until(&mut taken, deadline)
                        .timed_out()
                    {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            format!("no free session after {checkout:?} ({sessions} in use)"),
                        ));
                    }
                }
            }
            *taken += 1;
        }
        let inner = match self.inner.open_read(path, offset) {
            Ok(inner) => inner,
            Err(e) => {
                self.seats.give_back();
                return Err(e);
            }
        };
        // Armed only now, so a download that did not open leaves it for
        // the next one.
        let mut faults = self.faults.lock();
        Ok(Some(Box::new(FaultyReader {
            seats: Arc::clone(&self.seats),
            inner,
            path: path.to_vec(),
            fail_after: faults.read_after.take(),
            returned: 0,
            counts: Arc::clone(&self.counts),
            pace: faults.read_rate.map(Pace::new),
            total_pace: faults.total_read_rate.clone(),
        })))
    }

    fn wrap_upload(&self, path: &[u8], inner: Box<dyn UploadStream>) -> Box<dyn UploadStream> {
        let mut faults = self.faults.lock();
        let mut fail_after = faults.upload_after.take();
        if faults.upload_to.as_ref().is_some_and(|(p, _)| p == path) {
            fail_after = faults.upload_to.take().map(|(_, n)| n);
        }
        let corrupt = (!faults.corrupt.is_empty()).then(|| faults.corrupt.remove(0));
        Box::new(FaultyUpload {
            inner: Some(inner),
            path: path.to_vec(),
            fail_after,
            written: 0,
            lag: faults
                .lag
                .max(u64::from(corrupt == Some(Corruption::DropLast))),
            held: Vec::new(),
            corrupt,
            failed: None,
            counts: Arc::clone(&self.counts),
        })
    }
}

impl<S: RemoteStore> RemoteStore for FaultyStore<S> {
    fn list(&self, dir: &[u8]) -> Result<Vec<DirEntry>> {
        self.enter(Op::List)?;
        self.inner.list(dir)
    }

    fn stat(&self, path: &[u8]) -> Result<Metadata> {
        self.enter(Op::Stat)?;
        self.inner.stat(path)
    }

    fn exact_mtime(&self, path: &[u8]) -> Result<SystemTime> {
        self.enter(Op::ExactMtime)?;
        self.inner.exact_mtime(path)
    }

    fn open_read(&self, path: &[u8], offset: u64) -> Result<Box<dyn ReadStream>> {
        self.open_download(path, offset, true)?
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "no session (never when waiting)"))
    }

    fn open_read_now(&self, path: &[u8], offset: u64) -> Result<Option<Box<dyn ReadStream>>> {
        self.open_download(path, offset, false)
    }

    fn upload(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        self.enter(Op::Upload)?;
        let inner = self.inner.upload(path)?;
        Ok(self.wrap_upload(path, inner))
    }

    fn append(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        self.enter(Op::Append)?;
        let inner = self.inner.append(path)?;
        Ok(self.wrap_upload(path, inner))
    }

    fn upload_at(&self, path: &[u8], offset: u64) -> Result<Box<dyn UploadStream>> {
        self.enter(Op::UploadAt)?;
        let inner = self.inner.upload_at(path, offset)?;
        Ok(self.wrap_upload(path, inner))
    }

    fn size(&self, path: &[u8]) -> Result<u64> {
        self.enter(Op::Size)?;
        self.inner.size(path)
    }

    fn digest(
        &self,
        path: &[u8],
        algorithm: DigestAlgorithm,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>> {
        self.enter(Op::Digest)?;
        self.inner.digest(path, algorithm, range)
    }

    /// The inner store's answer, never counted, delayed or failed: the FTPS
    /// store probes once for the store's life, and a failed probe is
    /// `Unknown` (set that on the inner memory store to test it).
    fn store_at_offset(&self, dir: &[u8]) -> StoreAtOffset {
        self.inner.store_at_offset(dir)
    }

    fn probe_store_at_offset(&self, dir: &[u8]) {
        self.inner.probe_store_at_offset(dir)
    }

    fn delete(&self, path: &[u8]) -> Result<()> {
        self.enter(Op::Delete)?;
        self.inner.delete(path)
    }

    fn mkdir(&self, path: &[u8]) -> Result<()> {
        self.enter(Op::Mkdir)?;
        self.inner.mkdir(path)
    }

    fn rmdir(&self, path: &[u8]) -> Result<()> {
        self.enter(Op::Rmdir)?;
        self.inner.rmdir(path)
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        self.enter(Op::Rename)?;
        self.inner.rename(from, to)
    }

    fn chmod(&self, path: &[u8], mode: u32) -> Result<()> {
        self.enter(Op::Chmod)?;
        self.inner.chmod(path, mode)
    }

    fn set_mtime(&self, path: &[u8], mtime: SystemTime) -> Result<()> {
        self.enter(Op::SetMtime)?;
        self.inner.set_mtime(path, mtime)
    }

    /// Not a call to the server (the FTPS store reads FEAT once): never
    /// counted, delayed or failed.
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// A fault armed for it makes the answer "unknown", as a failed AVBL.
    fn free_space(&self) -> Option<u64> {
        match self.enter(Op::FreeSpace) {
            Ok(()) => self.inner.free_space(),
            Err(_) => None,
        }
    }
}

struct FaultyReader {
    inner: Box<dyn ReadStream>,
    path: Vec<u8>,
    fail_after: Option<u64>,
    returned: u64,
    counts: Arc<Mutex<OpCounts>>,
    pace: Option<Pace>,
    total_pace: Option<Arc<Pace>>,
    seats: Arc<Seats>,
}

impl Drop for FaultyReader {
    fn drop(&mut self) {
        self.seats.give_back();
    }
}

impl ReadStream for FaultyReader {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut buf = buf;
        if let Some(limit) = self.fail_after {
            let allowed = limit.saturating_sub(self.returned);
            if allowed == 0 && !buf.is_empty() {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("reading {}: injected broken connection", shown(&self.path)),
                ));
            }
            let len = (buf.len() as u64).min(allowed) as usize;
            buf = &mut buf[..len];
        }
        if self.pace.is_some() || self.total_pace.is_some() {
            // Paced in small pieces, as a capped link delivers them.
            let len = buf.len().min(64 * 1024);
            buf = &mut buf[..len];
        }
        let n = self.inner.read(buf)?;
        self.returned += n as u64;
        self.counts.lock().bytes_read += n as u64;
        for pace in [self.pace.as_ref(), self.total_pace.as_deref()]
            .into_iter()
            .flatten()
        {
            pace.pass(n);
        }
        Ok(n)
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }
}

struct FaultyUpload {
    /// Dropped (the upload abandoned) when the injected break happens.
    inner: Option<Box<dyn UploadStream>>,
    path: Vec<u8>,
    fail_after: Option<u64>,
    /// Bytes taken from the client (passed on, or held).
    written: u64,
    /// Bytes held back from the inner store (see `set_upload_lag`).
    lag: u64,
    held: Vec<u8>,
    corrupt: Option<Corruption>,
    /// Once the injected break happened, every later call fails the same way.
    failed: Option<Error>,
    counts: Arc<Mutex<OpCounts>>,
}

impl FaultyUpload {
    fn pass(&mut self, data: &[u8]) -> Result<()> {
        self.written += data.len() as u64;
        self.held.extend_from_slice(data);
        let over = self.held.len().saturating_sub(self.lag as usize);
        if over > 0 {
            let out: Vec<u8> = self.held.drain(..over).collect();
            self.send(out)?;
        }
        Ok(())
    }

    fn send(&mut self, mut out: Vec<u8>) -> Result<()> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(Error::new(
                ErrorKind::Failed,
                format!("uploading {}: the upload was abandoned", shown(&self.path)),
            ));
        };
        if self.corrupt == Some(Corruption::FlipFirst) && !out.is_empty() {
            out[0] = !out[0];
            self.corrupt = None;
        }
        inner.write(&out)?;
        self.counts.lock().bytes_uploaded += out.len() as u64;
        Ok(())
    }
}

impl UploadStream for FaultyUpload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let allowed = self
            .fail_after
            .map(|limit| limit.saturating_sub(self.written));
        match allowed {
            Some(allowed) if allowed < data.len() as u64 => {
                // `allowed` is below `data.len()`, so it fits in usize.
                self.pass(&data[..allowed as usize])?;
                if let Some(Corruption::GarbageOnBreak(n)) = self.corrupt {
                    let held = std::mem::take(&mut self.held);
                    self.send(held)?;
                    self.send(vec![0xEE; n as usize])?;
                }
                self.inner = None;
                let err = Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "uploading {}: injected broken connection",
                        shown(&self.path)
                    ),
                );
                self.failed = Some(err.clone());
                Err(err)
            }
            _ => self.pass(data),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let mut held = std::mem::take(&mut self.held);
        if self.corrupt == Some(Corruption::DropLast) {
            held.pop();
        }
        if !held.is_empty() {
            self.send(held)?;
        }
        match self.inner {
            Some(inner) if self.corrupt == Some(Corruption::LoseReply) => {
                inner.finish()?;
                Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "uploading {}: injected loss of the final reply",
                        shown(&self.path)
                    ),
                ))
            }
            Some(inner) => inner.finish(),
            None => Err(Error::new(
                ErrorKind::Failed,
                format!("uploading {}: the upload was abandoned", shown(&self.path)),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, UNIX_EPOCH};

    use super::*;
    use crate::MemoryStore;

    fn kind<T>(result: Result<T>) -> ErrorKind {
        match result {
            Ok(_) => panic!("should fail"),
            Err(e) => e.kind,
        }
    }

    fn read_all(store: &dyn RemoteStore, path: &[u8], offset: u64) -> Vec<u8> {
        let mut stream = store.open_read(path, offset).expect("open_read");
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = stream.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    fn write(store: &dyn RemoteStore, path: &[u8], bytes: &[u8]) {
        let mut up = store.upload(path).expect("upload");
        up.write(bytes).expect("write");
        up.finish().expect("finish");
    }

    #[test]
    fn injected_failures_hit_the_next_call_only() {
        let store = FaultyStore::new(MemoryStore::new());
        store.inner().put_file(b"f", b"x");
        store.fail_next(Op::Stat, ErrorKind::Unavailable);
        store.fail_next(Op::Stat, ErrorKind::PermissionDenied);
        store.fail_next(Op::Upload, ErrorKind::NoSpace);
        store.list(b"").unwrap();
        assert_eq!(kind(store.stat(b"f")), ErrorKind::Unavailable);
        assert_eq!(kind(store.stat(b"f")), ErrorKind::PermissionDenied);
        store.stat(b"f").unwrap();
        assert_eq!(kind(store.upload(b"f")), ErrorKind::NoSpace);
        assert_eq!(
            store.inner().file(b"f").unwrap(),
            b"x",
            "a failed STOR did nothing"
        );
        assert_eq!(store.counters().stat, 3);
        assert_eq!(store.inner().counters().stat, 1, "failures never reach it");
        for op in Op::ALL {
            store.fail_next(op, ErrorKind::Failed);
        }
        assert_eq!(kind(store.list(b"")), ErrorKind::Failed);
        assert_eq!(kind(store.exact_mtime(b"f")), ErrorKind::Failed);
        assert_eq!(kind(store.open_read(b"f", 0)), ErrorKind::Failed);
        assert_eq!(kind(store.append(b"f")), ErrorKind::Failed);
        assert_eq!(kind(store.delete(b"f")), ErrorKind::Failed);
        assert_eq!(kind(store.rename(b"f", b"g")), ErrorKind::Failed);
        assert_eq!(kind(store.chmod(b"f", 0o600)), ErrorKind::Failed);
        assert_eq!(kind(store.set_mtime(b"f", UNIX_EPOCH)), ErrorKind::Failed);
        assert_eq!(kind(store.stat(b"f")), ErrorKind::Failed);
        assert_eq!(kind(store.upload(b"f")), ErrorKind::Failed);
        assert_eq!(kind(store.mkdir(b"d")), ErrorKind::Failed);
        assert_eq!(kind(store.rmdir(b"d")), ErrorKind::Failed);
        assert_eq!(kind(store.upload_at(b"f", 1)), ErrorKind::Failed);
        assert_eq!(kind(store.size(b"f")), ErrorKind::Failed);
        assert_eq!(
            kind(store.digest(b"f", DigestAlgorithm::Sha256, None)),
            ErrorKind::Failed
        );
        assert_eq!(store.inner().file(b"f").unwrap(), b"x");
        assert_eq!(store.inner().paths(), vec![b"f".to_vec()]);
        store.delete(b"f").unwrap();
        assert!(store.inner().paths().is_empty());
    }

    #[test]
    fn persistent_failures_until_stopped() {
        let store = FaultyStore::new(MemoryStore::new());
        store.inner().put_file(b"f", b"x");
        store.fail_always(Op::OpenRead, ErrorKind::Unavailable);
        store.fail_next(Op::OpenRead, ErrorKind::NotFound);
        assert_eq!(
            kind(store.open_read(b"f", 0)),
            ErrorKind::NotFound,
            "the queued failure first"
        );
        for _ in 0..3 {
            assert_eq!(kind(store.open_read(b"f", 0)), ErrorKind::Unavailable);
        }
        store.stat(b"f").unwrap();
        store.fail_next(Op::OpenRead, ErrorKind::Failed);
        store.stop_failing(Op::OpenRead);
        assert_eq!(read_all(&store, b"f", 0), b"x", "queued ones dropped too");
        assert_eq!(store.counters().open_read, 5);
        assert_eq!(store.inner().counters().open_read, 1);
    }

    #[test]
    fn delays_hold_a_call_before_it_fails_or_goes_through() {
        let store = FaultyStore::new(MemoryStore::new());
        store.inner().put_file(b"f", b"x");
        let delay = Duration::from_millis(150);
        store.set_delay(Op::OpenRead, delay);
        let started = Instant::now();
        store.fail_next(Op::OpenRead, ErrorKind::Unavailable);
        assert_eq!(kind(store.open_read(b"f", 0)), ErrorKind::Unavailable);
        assert!(started.elapsed() >= delay, "the failure comes late");
        let started = Instant::now();
        assert_eq!(read_all(&store, b"f", 0), b"x");
        assert!(started.elapsed() >= delay);
        let started = Instant::now();
        store.stat(b"f").unwrap();
        assert!(
            started.elapsed() < delay,
            "other operations are not delayed"
        );
        store.set_delay(Op::OpenRead, Duration::ZERO);
        let started = Instant::now();
        store.open_read(b"f", 0).unwrap();
        assert!(started.elapsed() < delay);
    }

    #[test]
    fn an_upload_can_break_after_some_bytes() {
        let store = FaultyStore::new(MemoryStore::new());
        store.fail_upload_after(5);
        let mut up = store.upload(b"f").unwrap();
        up.write(b"abc").unwrap();
        let err = up.write(b"defg").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(
            store.inner().file(b"f").unwrap(),
            b"abcde",
            "the partial file stays"
        );
        assert_eq!(kind(up.write(b"h")), ErrorKind::Unavailable);
        assert_eq!(kind(up.finish()), ErrorKind::Unavailable);
        assert_eq!(store.counters().bytes_uploaded, 5);
        assert_eq!(store.inner().counters().bytes_uploaded, 5);
        // Only the next upload.
        write(&store, b"g", b"0123456789");

        store.fail_upload_after(0);
        let mut up = store.append(b"g").unwrap();
        up.write(b"").unwrap();
        assert_eq!(kind(up.write(b"x")), ErrorKind::Unavailable);
        assert_eq!(store.inner().file(b"g").unwrap(), b"0123456789");
    }

    #[test]
    fn a_break_waits_for_an_upload_that_opens() {
        let store = FaultyStore::new(MemoryStore::new());
        store.fail_upload_after(1);
        assert_eq!(kind(store.upload(b"no/dir")), ErrorKind::NotFound);
        let mut up = store.append(b"f").unwrap();
        assert_eq!(kind(up.write(b"ab")), ErrorKind::Unavailable);
        assert_eq!(store.inner().file(b"f").unwrap(), b"a");
    }

    #[test]
    fn the_new_operations_pass_through_and_break_as_uploads_do() {
        let store = FaultyStore::new(MemoryStore::new());
        store.inner().put_file(b"f", b"0123456789");
        store
            .inner()
            .set_digests(ftpsfs::store::DigestSet::of(&[DigestAlgorithm::Crc32]));
        assert_eq!(store.size(b"f").unwrap(), 10);
        assert_eq!(
            store
                .digest(b"f", DigestAlgorithm::Crc32, Some((0, 10)))
                .unwrap(),
            DigestAlgorithm::Crc32.digest(b"0123456789").unwrap()
        );
        assert_eq!(store.store_at_offset(b""), StoreAtOffset::InPlace);
        store.inner().set_store_at_offset(StoreAtOffset::Refused);
        assert_eq!(store.store_at_offset(b""), StoreAtOffset::Refused);
        assert_eq!(kind(store.upload_at(b"f", 3)), ErrorKind::Unsupported);
        store.inner().set_store_at_offset(StoreAtOffset::InPlace);
        store.fail_upload_after(1);
        let mut up = store.upload_at(b"f", 3).unwrap();
        assert_eq!(kind(up.write(b"XY")), ErrorKind::Unavailable);
        assert_eq!(kind(up.finish()), ErrorKind::Unavailable);
        assert_eq!(
            store.inner().file(b"f").unwrap(),
            b"012X456789",
            "the byte before the break"
        );
        store.fail_next(Op::Size, ErrorKind::Unavailable);
        assert_eq!(kind(store.size(b"f")), ErrorKind::Unavailable);
        let counts = store.counters();
        assert_eq!((counts.size, counts.digest, counts.upload_at), (2, 1, 2));
        assert_eq!(store.inner().counters().size, 1);
        assert_eq!(counts.bytes_uploaded, 1);
    }

    #[test]
    fn uploads_can_lag_break_by_path_and_be_stored_wrongly() {
        let store = FaultyStore::new(MemoryStore::new());
        store.set_upload_lag(3);
        store.fail_upload_after(8);
        let mut up = store.upload(b"f").unwrap();
        up.write(b"0123456").unwrap();
        assert_eq!(
            store.inner().file(b"f").unwrap(),
            b"0123",
            "3 bytes in flight"
        );
        assert_eq!(kind(up.write(b"789")), ErrorKind::Unavailable);
        assert_eq!(
            store.inner().file(b"f").unwrap(),
            b"01234",
            "a break loses what was in flight"
        );
        store.set_upload_lag(0);
        store.fail_upload_to_after(b"g", 1);
        write(&store, b"h", b"whole");
        let mut up = store.upload(b"g").unwrap();
        assert_eq!(kind(up.write(b"ab")), ErrorKind::Unavailable);
        store.corrupt_next_uploads(&[
            Corruption::DropLast,
            Corruption::FlipFirst,
            Corruption::LoseReply,
        ]);
        write(&store, b"a", b"abc");
        write(&store, b"b", b"abc");
        let mut up = store.upload(b"c").unwrap();
        up.write(b"abc").unwrap();
        assert_eq!(kind(up.finish()), ErrorKind::Unavailable);
        assert_eq!(store.inner().file(b"a").unwrap(), b"ab");
        assert_eq!(store.inner().file(b"b").unwrap(), b"\x9ebc");
        assert_eq!(store.inner().file(b"c").unwrap(), b"abc");
        write(&store, b"d", b"abc");
        assert_eq!(store.inner().file(b"d").unwrap(), b"abc", "only those");
    }

    #[test]
    fn a_download_can_break_after_some_bytes() {
        let store = FaultyStore::new(MemoryStore::new());
        store.inner().put_file(b"f", b"0123456789");
        store.fail_read_after(4);
        let mut stream = store.open_read(b"f", 2).unwrap();
        let mut buf = [0u8; 3];
        assert_eq!(stream.read(&mut buf).unwrap(), 3);
        assert_eq!(stream.read(&mut buf).unwrap(), 1);
        assert_eq!(kind(stream.read(&mut buf)), ErrorKind::Unavailable);
        assert_eq!(
            stream.read(&mut []).unwrap(),
            0,
            "an empty read asks nothing"
        );
        assert_eq!(stream.position(), 6);
        assert_eq!(
            read_all(&store, b"f", 0),
            b"0123456789",
            "only the next one"
        );
        assert_eq!(store.counters().bytes_read, 14);
    }

    #[test]
    fn clear_faults_drops_what_was_not_triggered() {
        let store = FaultyStore::new(MemoryStore::new());
        store.inner().put_file(b"f", b"0123456789");
        store.fail_next(Op::Mkdir, ErrorKind::Failed);
        store.fail_always(Op::Stat, ErrorKind::Unavailable);
        store.set_delay(Op::List, Duration::from_secs(60));
        store.fail_read_after(1);
        store.fail_upload_after(1);
        let mut armed = store.open_read(b"f", 0).unwrap();
        store.clear_faults();
        store.mkdir(b"d").unwrap();
        store.stat(b"f").unwrap();
        store.list(b"").unwrap();
        assert_eq!(read_all(&store, b"f", 0), b"0123456789");
        write(&store, b"g", b"whole");
        assert_eq!(store.inner().file(b"g").unwrap(), b"whole");
        let mut buf = [0u8; 4];
        assert_eq!(armed.read(&mut buf).unwrap(), 1);
        assert_eq!(
            kind(armed.read(&mut buf)),
            ErrorKind::Unavailable,
            "a stream already opened keeps its fault"
        );
    }

    #[test]
    fn wraps_a_shared_server_and_errors_of_the_server_pass_through() {
        let server = Arc::new(MemoryStore::new());
        let store = FaultyStore::new(Arc::clone(&server));
        server.set_quota(Some(3));
        let mut up = store.upload(b"f").unwrap();
        assert_eq!(kind(up.write(b"abcd")), ErrorKind::NoSpace);
        assert_eq!(kind(up.finish()), ErrorKind::NoSpace);
        assert_eq!(server.file(b"f").unwrap(), b"abc");
        assert_eq!(kind(store.rmdir(b"f")), ErrorKind::PermissionDenied);
        assert_eq!(store.capabilities(), server.capabilities());
        assert_eq!(server.counters().total(), 2);
        assert_eq!(store.counters().total(), 2);
        assert!(Arc::ptr_eq(store.inner(), &server));
    }

    #[test]
    fn store_and_streams_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<FaultyStore<MemoryStore>>();
        send::<FaultyReader>();
        send::<FaultyUpload>();
        let _: Arc<dyn RemoteStore> = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    }
}
