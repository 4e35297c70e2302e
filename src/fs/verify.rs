//! Checking that the server stored what was sent: after each upload its
//! size must be the bytes sent, and where the server computes a digest this
//! mount can compute too (`HASH`, `XSHA256`, `XSHA1`, `XCRC`), a file of at
//! least 1 MiB must have the digest of the bytes sent (computed while they
//! were sent, see `resume::Tracked`). A reply that is no size or no digest
//! of the algorithm asked is never taken as a match.
//!
//! A staged upload that does not match is sent once more from the start;
//! if that does not match either, it fails (EIO) and its content is kept in
//! the spool directory (`rescue`), the log says where. A streaming upload
//! keeps only its last bytes, so a mismatch fails it at once (EIO), and the
//! file under its real name is left as it was.
//!
//! The size asked after a cut upload's last resume is the size checked (no
//! second SIZE); a cut upload's size is checked even with `--verify none`.
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::replace;
use super::resume::{Resume, Sending, Sent, Source, Tracked};
use super::retry::Backoff;
use super::spool::Spool;
use super::{Error, ErrorKind, Fs, Result};
use crate::digest::to_hex;
use crate::store::path::shown;
use crate::store::{self, ReadStream, RemoteStore};

/// Files at least this big are compared by digest too.
pub(super) const DIGEST_FROM: u64 = 1024 * 1024;

/// How uploads are checked (`--verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Not at all (a resumed upload's size is still checked).
    None,
    /// The server's size must be the bytes sent.
    Size,
    /// The size, and the digest of files of 1 MiB or more where the server
    /// offers an algorithm computed here too.
    #[default]
    Digest,
}

impl FromStr for Verify {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Verify, String> {
        match s {
            "none" => Ok(Verify::None),
            "size" => Ok(Verify::Size),
            "digest" => Ok(Verify::Digest),
            other => Err(format!(
                "{other:?} is not a way to verify uploads (none, size or digest)"
            )),
        }
    }
}

impl std::fmt::Display for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verify::None => "none",
            Verify::Size => "size",
            Verify::Digest => "digest",
        })
    }
}

/// The outcome of a check.
pub(super) enum Checked {
    Match,
    /// What differs, for the log and the error.
    Mismatch(String),
}

/// A whole local copy, as a source to send (again) from any offset.
struct SpoolSource<'a>(&'a Spool);

impl Source for SpoolSource<'_> {
    fn oldest(&self) -> u64 {
        0
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> store::Result<usize> {
        self.0.read_at(offset, buf).map_err(|e| {
            store::Error::new(
                store::ErrorKind::Failed,
                format!("reading the write spool: {e}"),
            )
        })
    }
}

/// A file on the server, read to be copied; reopened where asked (after a
/// cut of the copy, or of the download itself).
struct RemoteSource<'a> {
    store: &'a dyn RemoteStore,
    path: &'a [u8],
    stream: Option<Box<dyn ReadStream>>,
}

impl Source for RemoteSource<'_> {
    fn oldest(&self) -> u64 {
        0
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> store::Result<usize> {
        if self.stream.as_ref().map(|s| s.position()) != Some(offset) {
            self.stream = Some(self.store.open_read(self.path, offset)?);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(0);
        };
        let read = stream.read(buf);
        if read.is_err() {
            self.stream = None;
        }
        read
    }
}

impl Fs {
    /// What resuming an upload to `path` needs.
    pub(super) fn resume_for(&self, path: &[u8]) -> Resume {
        Resume::new(
            Arc::clone(&self.store),
            path,
            self.config.retry_time,
            self.appends_allowed(),
            Arc::clone(&self.uploads),
        )
    }

    /// A digest to compute while sending an upload of `len` bytes (`None`:
    /// not known yet, as for a stream), if it is to be checked by one.
    pub(super) fn upload_digest(&self, len: Option<u64>) -> Option<Tracked> {
        if self.config.verify != Verify::Digest || len.is_some_and(|n| n < DIGEST_FROM) {
            return None;
        }
        Tracked::new(self.store.capabilities().digests.best_local()?)
    }

    /// Uploads the whole spool to `path`, resuming cuts, and checks what the
    /// server holds; a mismatch is sent once more from the start, and then
    /// fails with the content kept locally, under the name of `target`
    /// (the file it is for). On failure, what the upload left at `path` is
    /// deleted.
    pub(super) fn upload_checked(&self, path: &[u8], spool: &Spool, target: &[u8]) -> Result<()> {
        let result = self.send_checked(path, &mut SpoolSource(spool), spool.len());
        match result {
            Err(e) if e.kind == ErrorKind::Unverified => {
                replace::delete_quietly(&*self.store, path);
                self.keep_locally(spool, target);
                Err(e)
            }
            Err(e) => {
                replace::delete_quietly(&*self.store, path);
                Err(e)
            }
            ok => ok,
        }
    }

    /// Copies `from` to `to` on the server, through a download piped into
    /// an upload (for servers that will not rename), resumed and checked as
    /// any upload.
    pub(super) fn copy_checked(&self, from: &[u8], to: &[u8]) -> Result<()> {
        let len = self.store.size(from)?;
        let mut src = RemoteSource {
            store: &*self.store,
            path: from,
            stream: None,
        };
        self.send_checked(to, &mut src, len)
    }

    /// Sends `len` bytes of `src` to `path` and checks them; once more from
    /// the start if they do not match.
    fn send_checked(&self, path: &[u8], src: &mut dyn Source, len: u64) -> Result<()> {
        let mut why = String::new();
        for attempt in 0..2 {
            if attempt > 0 {
                self.uploads.restarted.fetch_add(1, Ordering::Relaxed);
            }
            let sent = send_all(
                self.resume_for(path),
                self.upload_digest(Some(len)),
                src,
                len,
            )?;
            match self.check_upload(path, &sent)? {
                Checked::Match => return Ok(()),
                Checked::Mismatch(w) => {
                    log::warn!(
                        "{}: {w}; {}",
                        shown(path),
                        if attempt == 0 {
                            "uploading it again from the start"
                        } else {
                            "giving up"
                        }
                    );
                    why = w;
                }
            }
        }
        Err(Error::new(
            ErrorKind::Unverified,
            format!(
                "{}: the server does not hold what was uploaded, twice ({why})",
                shown(path)
            ),
        ))
    }

    /// Checks what the server holds at `path` after an upload (see the
    /// module comment).
    pub(super) fn check_upload(&self, path: &[u8], sent: &Sent) -> Result<Checked> {
        if self.config.verify == Verify::None && !sent.resumed {
            return Ok(Checked::Match);
        }
        let size = match sent.size_known {
            Some(size) => Ok(size),
            None => self.ask(|| self.store.size(path)),
        };
        let size = match size {
            Ok(size) => size,
            // A reply that is no size (garbage, a sign, a fraction) is no
            // proof of the upload.
            Err(e) if e.store_kind() == Some(store::ErrorKind::Failed) => {
                self.uploads.mismatches.fetch_add(1, Ordering::Relaxed);
                return Ok(Checked::Mismatch(format!("no usable size: {e}")));
            }
            Err(e) => return Err(e),
        };
        if size != sent.len {
            self.uploads.mismatches.fetch_add(1, Ordering::Relaxed);
            return Ok(Checked::Mismatch(format!(
                "the server holds {size} bytes, not the {} sent",
                sent.len
            )));
        }
        self.uploads
            .verified_by_size
            .fetch_add(1, Ordering::Relaxed);
        let Some((algorithm, want)) = &sent.digest else {
            return Ok(Checked::Match);
        };
        if self.config.verify != Verify::Digest {
            return Ok(Checked::Match);
        }
        let got = match self.ask(|| self.store.digest(path, *algorithm, None)) {
            Ok(got) => got,
            Err(e) if e.store_kind() == Some(store::ErrorKind::Unsupported) => {
                // Offered, but not for this path (spaces for XSHA256 and
                // its kin): the size has to do.
                log::debug!("{}: no {algorithm} digest: {e}", shown(path));
                return Ok(Checked::Match);
            }
            Err(e) if e.store_kind() == Some(store::ErrorKind::Failed) => {
                self.uploads.mismatches.fetch_add(1, Ordering::Relaxed);
                return Ok(Checked::Mismatch(format!(
                    "no usable {algorithm} digest: {e}"
                )));
            }
            Err(e) => return Err(e),
        };
        if got != *want {
            self.uploads.mismatches.fetch_add(1, Ordering::Relaxed);
            return Ok(Checked::Mismatch(format!(
                "its {algorithm} is {}, not {} as sent",
                to_hex(&got),
                to_hex(want)
            )));
        }
        log::debug!(
            "{}: the server's {algorithm} matches what was sent",
            shown(path)
        );
        self.uploads
            .verified_by_digest
            .fetch_add(1, Ordering::Relaxed);
        Ok(Checked::Match)
    }

    /// Asks the server something about an upload just made, with backoff
    /// while it cannot be reached.
    fn ask<T>(&self, mut call: impl FnMut() -> store::Result<T>) -> Result<T> {
        let mut backoff = Backoff::new(self.config.retry_time);
        loop {
            match call() {
                Err(e) if e.kind == store::ErrorKind::Unavailable => backoff.wait(e)?,
                other => return Ok(other?),
            }
        }
    }
}

/// Sends the `len` bytes of `src`, resuming cuts.
fn send_all(
    resume: Resume,
    digest: Option<Tracked>,
    src: &mut dyn Source,
    len: u64,
) -> store::Result<Sent> {
    let mut sending = Sending::open(resume, digest)?;
    sending.send_to(len, src)?;
    sending.finish(src)
}
