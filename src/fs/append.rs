//! Appending: a file written at its end (`>>`, O_APPEND, a log) sends only
//! the new bytes, with APPE, instead of downloading and uploading it whole.
//!
//! Before appending, the server's size is asked afresh (SIZE: one command,
//! where a listing would cost a data connection; a listing where the server
//! has no SIZE): if it is not what the mount appended to (another client
//! changed the file), nothing is appended blindly; the file is staged and
//! replaced whole, as before. A
//! server that refuses APPE (500/502/504, or "denied") is remembered, and
//! its files are staged from then on.
//!
//! An append cut by a lost connection, a timeout or a server restart is
//! resumed from the size the server holds, on a new session, with backoff,
//! until `retry_time` has passed: never a gap, never a range twice. Only
//! then it fails (EIO); the server's file then ends with part of the
//! appended bytes, which the mount shows from then on.
//!
//! An append is checked by the server's size afterwards (`verify`; a
//! resumed one even with `--verify none`), never by digest: the server's
//! digest is of the whole file, and only the new end passes through here.
use std::sync::atomic::Ordering;

use super::open_file::Appending;
use super::resume::Sent;
use super::retry::Backoff;
use super::streamer::BATCH;
use super::verify::Checked;
use super::{Error, ErrorKind, Fs, Result};
use crate::store::{self, StorePath};

/// What became of an append.
pub(super) enum Appended {
    /// The server has the whole file.
    Done,
    /// Not appended (the server's copy changed, or APPE is refused): stage
    /// the file and replace it whole.
    Replace(&'static str),
}

impl Fs {
    pub(super) fn appends_allowed(&self) -> bool {
        self.store.capabilities().append && !self.appends_refused.load(Ordering::Relaxed)
    }

    /// Sends what was appended to `path`, resuming it if cut.
    pub(super) fn send_appended(&self, path: &StorePath, a: &Appending) -> Result<Appended> {
        let end = a.base + a.tail.len();
        let mut retry = Backoff::new(self.config.retry_time);
        // Where the server is, which is where the next attempt starts.
        let mut server_size = None;
        let mut attempt = 0u32;
        // The server's size when the last attempt ended, if asked since.
        let mut known = None;
        loop {
            let size = match server_size {
                Some(size) => size,
                None => match self.store.size(path) {
                    Ok(size) => size,
                    Err(e) if e.kind == store::ErrorKind::Unavailable => {
                        retry.wait(e)?;
                        continue;
                    }
                    Err(e) if attempt == 0 => {
                        log::debug!("{path}: size before appending: {e}");
                        return Ok(Appended::Replace("its size could not be asked"));
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            if attempt == 0 && size != a.base {
                return Ok(Appended::Replace("the server's copy changed"));
            }
            if size < a.base || size > end {
                return Err(Error::new(
                    ErrorKind::Store(store::ErrorKind::Failed),
                    format!(
                        "{path}: after a cut append the server holds {size} bytes, \
                         outside the {}..{end} being appended",
                        a.base
                    ),
                ));
            }
            if attempt > 0 && size == end {
                // The last attempt got everything there (its reply was lost).
                known = Some(size);
                break;
            }
            attempt += 1;
            match self.append_from(path, a, size - a.base) {
                Ok(()) => break,
                Err(e) if attempt == 1 && is_refusal(e.kind) => {
                    log::info!("{path}: the server refuses APPE ({e}); files are replaced whole");
                    self.appends_refused.store(true, Ordering::Relaxed);
                    return Ok(Appended::Replace("the server refuses APPE"));
                }
                Err(e) if e.kind == store::ErrorKind::Unavailable => {
                    log::info!("{path}: append cut ({e}); resuming");
                    retry.wait(e)?;
                    server_size = None;
                }
                Err(e) => return Err(e.into()),
            }
        }
        // The server must hold exactly the file (see `verify`): a resumed
        // append always, others unless `--verify none`.
        let sent = Sent {
            len: end,
            resumed: attempt > 1,
            size_known: known,
            digest: None,
        };
        if let Checked::Mismatch(why) = self.check_upload(path.as_bytes(), &sent)? {
            return Err(Error::new(
                ErrorKind::Unverified,
                format!("{path}: after appending, {why}"),
            ));
        }
        self.appended.fetch_add(1, Ordering::Relaxed);
        Ok(Appended::Done)
    }

    /// One APPE of the appended bytes from `from` on.
    fn append_from(&self, path: &StorePath, a: &Appending, from: u64) -> store::Result<()> {
        let mut up = self.store.append(path)?;
        let mut buf = vec![0u8; BATCH];
        let mut offset = from;
        while offset < a.tail.len() {
            let n = a.tail.read_at(offset, &mut buf).map_err(|e| {
                store::Error::new(store::ErrorKind::Failed, format!("reading the spool: {e}"))
            })?;
            if n == 0 {
                break;
            }
            up.write(&buf[..n])?;
            offset += n as u64;
        }
        up.finish()
    }
}

/// A refusal of APPE itself, as opposed to a failure of this attempt.
fn is_refusal(kind: store::ErrorKind) -> bool {
    matches!(
        kind,
        store::ErrorKind::Unsupported | store::ErrorKind::PermissionDenied
    )
}
