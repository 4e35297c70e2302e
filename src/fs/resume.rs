//! Uploads that survive a cut: a reset, a dropped control or data
//! connection, a timeout or a server restart ends the transfer, and it goes
//! on over a new session from the size the server holds, as often as it
//! takes until `retry_time` passes without progress (see `retry`).
//!
//! After a cut: `SIZE` says where the server is; the upload continues there
//! with `REST n` + `STOR` where the server's probe allows it (in place or
//! truncating: either writes the end of the file), else with `APPE`. The
//! bytes from that size on are sent again from the source (the spool, the
//! remote file being copied, or the window of recent bytes of a streaming
//! upload), so there is never a gap and never a range twice; the size is
//! checked once more at the end (`verify`). A server that holds more than
//! was sent, or refuses both ways of resuming, gets the upload again from
//! zero, once; a streaming upload whose server lost more than its window
//! fails, as any cut upload failed before.
//!
//! The digest of what is sent is computed here too, as the bytes go out
//! (`Tracked`): no second read of the local data.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::retry::Backoff;
use super::streamer::BATCH;
use crate::store::path::{shown, split};
use crate::store::{
    self, DigestAlgorithm, ErrorKind, Hasher, RemoteStore, StoreAtOffset, UploadStream,
};

/// Counters of what uploads went through, for `FsStats`.
#[derive(Debug, Default)]
pub(super) struct UploadCounters {
    /// Cut uploads continued from the server's size.
    pub resumed: AtomicU64,
    /// Uploads sent again from zero (resuming was refused, or the server
    /// held more than was sent, or a check failed).
    pub restarted: AtomicU64,
    pub verified_by_size: AtomicU64,
    pub verified_by_digest: AtomicU64,
    /// Checks that found the server's copy different from what was sent.
    pub mismatches: AtomicU64,
}

/// A cut is what resuming is for: a lost connection, a timeout, a server
/// gone for a while. A refusal or a full disk is not resumed.
fn is_cut(err: &store::Error) -> bool {
    err.kind == ErrorKind::Unavailable
}

/// A refusal of a way to resume (REST + STOR, or APPE), as opposed to a
/// failure of this attempt.
fn is_refusal(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Unsupported | ErrorKind::PermissionDenied)
}

/// What becomes of a cut upload: where it continues.
pub(super) enum Reopened {
    /// Send from this offset on this new stream.
    At(u64, Box<dyn UploadStream>),
    /// The server already holds every byte: only the final reply was lost.
    Complete,
}

/// Finds where a cut upload of one path can go on, and opens it there.
pub(super) struct Resume {
    store: Arc<dyn RemoteStore>,
    path: Vec<u8>,
    backoff: Backoff,
    /// APPE may be used (the server has not refused it).
    append_ok: bool,
    restarted: bool,
    /// The server's size at the last cut, to tell progress.
    last_size: u64,
    /// The server's size as asked after the last cut, if nothing was sent
    /// since (the final check need not ask again).
    known_size: Option<u64>,
    /// Whether the upload was cut and went on: its size must be checked.
    resumed: bool,
    counters: Arc<UploadCounters>,
    /// Set when the upload is abandoned: stop resuming.
    abort: Option<Arc<AtomicBool>>,
}

impl Resume {
    pub fn new(
        store: Arc<dyn RemoteStore>,
        path: &[u8],
        retry_time: Duration,
        append_ok: bool,
        counters: Arc<UploadCounters>,
    ) -> Resume {
        Resume {
            store,
            path: path.to_vec(),
            backoff: Backoff::new(retry_time),
            append_ok,
            restarted: false,
            last_size: 0,
            known_size: None,
            resumed: false,
            counters,
            abort: None,
        }
    }

    /// Opens the upload from byte 0; an attempt that meets a cut is tried
    /// again with backoff.
    pub fn open(&mut self) -> store::Result<Box<dyn UploadStream>> {
        loop {
            match self.store.upload(&self.path) {
                Err(e) if is_cut(&e) => self.backoff.wait(e)?,
                other => return other,
            }
        }
    }

    /// The upload broke with `err` when `sent` bytes had been given to it
    /// (all of them, when `finishing`); the source can send again the bytes
    /// from `oldest` on. Waits, asks the server's size and opens an upload
    /// that continues there.
    pub fn reopen(
        &mut self,
        err: store::Error,
        sent: u64,
        oldest: u64,
        finishing: bool,
    ) -> store::Result<Reopened> {
        if !is_cut(&err) {
            return Err(err);
        }
        let path = shown(&self.path).to_string();
        log::info!("{path}: upload cut after {sent} bytes ({err}); resuming");
        self.resumed = true;
        self.known_size = None;
        let mut err = err;
        loop {
            self.backoff.wait(err)?;
            if self
                .abort
                .as_ref()
                .is_some_and(|a| a.load(Ordering::Relaxed))
            {
                return Err(store::Error::new(ErrorKind::Failed, "upload abandoned"));
            }
            let size = match self.store.size(&self.path) {
                Ok(size) => size,
                // The cut came before the server created the file.
                Err(e) if e.kind == ErrorKind::NotFound => 0,
                Err(e) if is_cut(&e) => {
                    err = e;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if size > self.last_size {
                self.backoff.progressed();
                self.last_size = size;
            }
            if size > sent {
                log::warn!("{path}: the server holds {size} bytes, more than the {sent} sent");
                return self.restart(oldest);
            }
            if finishing && size == sent {
                self.known_size = Some(size);
                return Ok(Reopened::Complete);
            }
            if size < oldest {
                return Err(store::Error::new(
                    ErrorKind::Failed,
                    format!(
                        "{path}: after a cut the server holds {size} bytes, and only the bytes \
                         from {oldest} to {sent} were still held to send again"
                    ),
                ));
            }
            // At 0 too (the cut came before any byte arrived): REST 0 +
            // STOR is a STOR, and APPE to an empty file writes it whole.
            match self.open_at(size) {
                Ok(up) => {
                    log::info!("{path}: upload resumed at byte {size}");
                    self.counters.resumed.fetch_add(1, Ordering::Relaxed);
                    return Ok(Reopened::At(size, up));
                }
                Err(e) if is_cut(&e) => err = e,
                Err(e) if is_refusal(e.kind) => {
                    log::warn!("{path}: the server refuses to resume the upload ({e})");
                    return self.restart(oldest);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Continues at `size`: REST + STOR where the server writes from an
    /// offset at all (at the end of the file, in place and truncating are
    /// the same), else APPE.
    fn open_at(&self, size: u64) -> store::Result<Box<dyn UploadStream>> {
        let (dir, _) = split(&self.path);
        let by_rest = matches!(
            self.store.store_at_offset(dir),
            StoreAtOffset::InPlace | StoreAtOffset::Truncates
        );
        if by_rest {
            match self.store.upload_at(&self.path, size) {
                Err(e) if is_refusal(e.kind) && self.append_ok => {}
                other => return other,
            }
        }
        if self.append_ok {
            return self.store.append(&self.path);
        }
        Err(store::Error::new(
            ErrorKind::Unsupported,
            "the server allows neither REST + STOR nor APPE",
        ))
    }

    /// Sends the upload again from zero, once, rather than risk a wrong
    /// file; not possible when the source no longer holds its start.
    fn restart(&mut self, oldest: u64) -> store::Result<Reopened> {
        if self.restarted || oldest > 0 {
            return Err(store::Error::new(
                ErrorKind::Failed,
                format!(
                    "{}: a cut upload could not be resumed, nor started again",
                    shown(&self.path)
                ),
            ));
        }
        self.restarted = true;
        self.last_size = 0;
        self.counters.restarted.fetch_add(1, Ordering::Relaxed);
        log::warn!("{}: uploading it again from zero", shown(&self.path));
        Ok(Reopened::At(0, self.open()?))
    }
}

/// The bytes of an upload that can be sent again after a cut.
pub(super) trait Source {
    /// The first byte still held (0 for a whole local copy).
    fn oldest(&self) -> u64;
    /// Reads from `offset` (at or after `oldest`); 0 only past the end.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> store::Result<usize>;
}

/// A digest of an upload, computed as its bytes are sent. A cut upload
/// sends some bytes twice (those after the server's size, before the cut):
/// each byte is hashed once, the first time, so the digest is of the file,
/// in order, whichever attempt sent what. Resuming never starts beyond what
/// was sent, so nothing is ever missing from it.
pub(super) struct Tracked {
    hasher: Hasher,
    /// Bytes hashed so far: the file's `[0, upto)`.
    upto: u64,
}

impl Tracked {
    pub fn new(algorithm: DigestAlgorithm) -> Option<Tracked> {
        Some(Tracked {
            hasher: algorithm.hasher()?,
            upto: 0,
        })
    }

    pub fn feed(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        if offset <= self.upto && end > self.upto {
            // Below `data.len()`, so it fits.
            let skip = (self.upto - offset) as usize;
            self.hasher.update(&data[skip..]);
            self.upto = end;
        }
    }

    /// The digest of the first `len` bytes, if that is what was hashed.
    pub fn finish(self, len: u64) -> Option<(DigestAlgorithm, Vec<u8>)> {
        (self.upto == len).then(|| (self.hasher.algorithm(), self.hasher.finish()))
    }
}

/// What an upload sent, for checking it (`verify`).
pub(super) struct Sent {
    pub len: u64,
    /// It was cut and resumed: its size must be checked, whatever `--verify`.
    pub resumed: bool,
    /// The server's size, when asked after the last cut with nothing sent
    /// since (no need to ask again).
    pub size_known: Option<u64>,
    pub digest: Option<(DigestAlgorithm, Vec<u8>)>,
}

/// An upload in progress that resumes after cuts: the bytes given to
/// `write` go out in order, and a cut is recovered from the source.
pub(super) struct Sending {
    /// `None` in unit tests of the streamer: a cut is not resumed.
    resume: Option<Resume>,
    up: Option<Box<dyn UploadStream>>,
    /// The file's offset of the next byte to send.
    sent: u64,
    hash: Option<Tracked>,
    buf: Vec<u8>,
}

impl Sending {
    /// Opens the upload (cuts while opening are tried again).
    pub fn open(mut resume: Resume, hash: Option<Tracked>) -> store::Result<Sending> {
        let up = resume.open()?;
        Ok(Sending::with_stream(resume, up, hash))
    }

    /// Stops resuming once `abort` is set.
    pub fn abort_on(&mut self, abort: Arc<AtomicBool>) {
        if let Some(resume) = &mut self.resume {
            resume.abort = Some(abort);
        }
    }

    /// Takes over an upload already opened from byte 0.
    pub fn with_stream(
        resume: Resume,
        up: Box<dyn UploadStream>,
        hash: Option<Tracked>,
    ) -> Sending {
        Sending {
            resume: Some(resume),
            up: Some(up),
            sent: 0,
            hash,
            buf: vec![0u8; BATCH],
        }
    }

    /// An upload that fails at its first cut.
    #[cfg(test)]
    pub fn unresumable(up: Box<dyn UploadStream>) -> Sending {
        Sending {
            resume: None,
            up: Some(up),
            sent: 0,
            hash: None,
            buf: vec![0u8; BATCH],
        }
    }

    /// Sends the source's bytes from `sent()` up to `end`. The bytes of a
    /// write that fails count as sent (part of them may have reached the
    /// server): the resume sends again what the server does not have.
    pub fn send_to(&mut self, end: u64, src: &mut dyn Source) -> store::Result<()> {
        while self.sent < end {
            let want = ((end - self.sent) as usize).min(self.buf.len());
            let n = src.read_at(self.sent, &mut self.buf[..want])?;
            if n == 0 {
                return Err(store::Error::new(
                    ErrorKind::Failed,
                    format!(
                        "the data to upload ended at byte {}, before {end}",
                        self.sent
                    ),
                ));
            }
            let data = &self.buf[..n];
            let result = match self.up.as_mut() {
                Some(up) => up.write(data),
                None => Err(store::Error::new(
                    ErrorKind::Failed,
                    "the upload failed before",
                )),
            };
            if let Some(hash) = &mut self.hash {
                hash.feed(self.sent, data);
            }
            self.sent += n as u64;
            if let Err(e) = result {
                self.up = None;
                self.recover(e, src, false)?;
            }
        }
        Ok(())
    }

    /// Ends the upload: the server has confirmed every byte.
    pub fn finish(mut self, src: &mut dyn Source) -> store::Result<Sent> {
        loop {
            let result = match self.up.take() {
                Some(up) => up.finish(),
                None => Err(store::Error::new(
                    ErrorKind::Failed,
                    "the upload failed before",
                )),
            };
            match result {
                Ok(()) => {
                    if let Some(resume) = &mut self.resume {
                        resume.known_size = None;
                    }
                    break;
                }
                Err(e) => {
                    if self.recover(e, src, true)? {
                        break;
                    }
                }
            }
        }
        Ok(Sent {
            len: self.sent,
            resumed: self.resume.as_ref().is_some_and(|r| r.resumed),
            size_known: self.resume.as_ref().and_then(|r| r.known_size),
            digest: self.hash.and_then(|h| h.finish(self.sent)),
        })
    }

    /// After a cut: a new stream, at `sent`, with the bytes between the
    /// server's size and `sent` sent again. `Ok(true)`: the server already
    /// has everything (only when `finishing`).
    fn recover(
        &mut self,
        err: store::Error,
        src: &mut dyn Source,
        finishing: bool,
    ) -> store::Result<bool> {
        let Some(resume) = self.resume.as_mut() else {
            return Err(err);
        };
        let mut err = err;
        loop {
            match resume.reopen(err, self.sent, src.oldest(), finishing)? {
                Reopened::Complete => return Ok(true),
                Reopened::At(at, mut up) => match resend(&mut *up, src, at, self.sent) {
                    Ok(()) => {
                        self.up = Some(up);
                        return Ok(false);
                    }
                    Err(e) => err = e,
                },
            }
        }
    }
}

/// Sends the source's `[from, to)` on `up`.
fn resend(
    up: &mut dyn UploadStream,
    src: &mut dyn Source,
    from: u64,
    to: u64,
) -> store::Result<()> {
    let mut buf = vec![0u8; BATCH];
    let mut offset = from;
    while offset < to {
        let want = ((to - offset) as usize).min(buf.len());
        let n = src.read_at(offset, &mut buf[..want])?;
        if n == 0 {
            return Err(store::Error::new(
                ErrorKind::Failed,
                format!("the bytes to send again ended at {offset}, before {to}"),
            ));
        }
        up.write(&buf[..n])?;
        offset += n as u64;
    }
    Ok(())
}

/// The most recent bytes of a streaming upload, kept so that a cut can be
/// resumed: what the server may not have yet is at most what sits in the
/// socket and TLS buffers on both sides, a few MiB. At least `limit` bytes
/// are kept (whole batches, so up to one batch more).
pub(super) struct Window {
    chunks: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
    limit: usize,
    /// The offset after the last byte kept.
    end: u64,
}

impl Window {
    pub fn new(limit: usize) -> Window {
        Window {
            chunks: VecDeque::new(),
            bytes: 0,
            limit,
            end: 0,
        }
    }

    /// The offset after the last byte kept.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Keeps `chunk`, the bytes at the end of the window.
    pub fn push(&mut self, chunk: Vec<u8>) {
        let offset = self.end;
        self.end += chunk.len() as u64;
        self.bytes += chunk.len();
        self.chunks.push_back((offset, chunk));
        while let Some((_, front)) = self.chunks.front() {
            if self.bytes - front.len() < self.limit {
                break;
            }
            self.bytes -= front.len();
            self.chunks.pop_front();
        }
    }
}

impl Source for Window {
    fn oldest(&self) -> u64 {
        self.chunks.front().map(|(o, _)| *o).unwrap_or(self.end)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> store::Result<usize> {
        if offset < self.oldest() {
            return Err(store::Error::new(
                ErrorKind::Failed,
                format!("byte {offset} is no longer held"),
            ));
        }
        for (start, chunk) in &self.chunks {
            let end = start + chunk.len() as u64;
            if offset < end {
                // Below `chunk.len()`, so it fits.
                let from = (offset - start) as usize;
                let n = (chunk.len() - from).min(buf.len());
                buf[..n].copy_from_slice(&chunk[from..from + n]);
                return Ok(n);
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_over_resent_bytes_is_of_the_file() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut t = Tracked::new(DigestAlgorithm::Sha256).unwrap();
        t.feed(0, &data[..600]);
        // Cut: the server had 400; 400.. is sent again, and on.
        t.feed(400, &data[400..700]);
        t.feed(700, &data[700..]);
        let (a, d) = t.finish(1000).unwrap();
        assert_eq!(a, DigestAlgorithm::Sha256);
        assert_eq!(d, DigestAlgorithm::Sha256.digest(&data).unwrap());
        let mut t = Tracked::new(DigestAlgorithm::Crc32).unwrap();
        t.feed(0, &data[..10]);
        assert!(t.finish(1000).is_none(), "not all of it");
    }

    #[test]
    fn the_window_keeps_the_last_bytes() {
        let mut w = Window::new(10);
        for i in 0..5u8 {
            w.push(vec![i; 4]);
        }
        assert_eq!(w.oldest(), 8, "12 bytes kept: at least 10, whole chunks");
        let mut buf = [0u8; 6];
        assert_eq!(w.read_at(9, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], &[2, 2, 2]);
        assert_eq!(w.read_at(12, &mut buf).unwrap(), 4);
        assert_eq!(w.read_at(20, &mut buf).unwrap(), 0);
        assert!(w.read_at(7, &mut buf).is_err());
    }
}
