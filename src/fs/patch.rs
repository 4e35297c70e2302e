//! Patching in place: a small change inside a big file sends only the
//! changed ranges (`REST n` + `STOR`), where the server writes them in
//! place, instead of uploading the whole file again.
//!
//! The rule, decided at each save (flush, fsync, last close) of a staged
//! file; anything else replaces the file whole through a temporary name
//! and a rename, as before:
//! - patching is on (`--patch auto`, the default), and the local copy was
//!   fetched from the server and changed since only in a few ranges
//!   (`changes`: at most `MAX_RANGES`, never shrunk below the size fetched);
//! - the file is at least `PATCH_MIN_SIZE` (1 MiB; `FsConfig::patch_min_size`) and the bytes to send are
//!   at most an eighth of it: below that, a whole upload is cheap and, unlike
//!   a patch, atomic;
//! - the server writes `REST n` + `STOR` in place (probed once per mount,
//!   in the background as the mount comes up, see `probe_ahead`; on first
//!   need where that could not tell): every range is sent. Where it truncates at the end of
//!   what was written (Pure-FTPd), one range from the first changed byte to
//!   the end is sent instead, which the same share limit then allows only
//!   for a change near the end (an appended tail, say); where it refuses
//!   (ProFTPD without `AllowStoreRestart`), or the probe could not tell,
//!   the file is replaced;
//! - the first byte is not changed: `REST 0` + `STOR` is a plain `STOR`,
//!   which cuts the file, so a change from byte 0 replaces the file;
//! - the server still has the file as fetched: its size (SIZE, one command)
//!   and, where listings give exact times (MLST), its time are what they
//!   were. Another client changed it: it is replaced, and the log says so.
//!
//! A big file written inside but never fetched (`overlay`, the state
//! `Patching`) comes here too (`patch_overlay`): its writes were admitted
//! by the same limits as they came, so only the server's side is checked
//! again (REST + STOR in place, its copy unchanged since the first write).
//! Where it is not patched, `save` fetches the file, puts the writes over
//! it and replaces it whole.
//!
//! After the ranges are sent, the server's size must be the local size
//! (whatever `--verify`: this is the patch's check, asked once, and counted
//! as a check by size, see `verify`); if not, the file is replaced whole
//! from the local copy. A digest is never compared after a patch: only the
//! ranges went through here, not the whole file.
//!
//! A patch is not atomic. A range cut halfway leaves the server's file
//! with old and new bytes mixed in that range (its size unchanged, or
//! between the old and the new end); it is sent again from the range's
//! start on a new session, with the shared backoff (`retry`), until
//! `retry_time` has passed without a range finished.
//! A refusal or any other failure falls back to replacing the file whole
//! (which the local copy can always do). If the retries run out, or the
//! mount dies (crash, kill -9) during a patch, the server's file is that
//! mix: the retries ending fail the save with EIO and keep the local copy
//! in the spool directory (the log says where); after a crash, the
//! program's last writes are lost, as for any unsaved file. `--patch never`
//! always replaces atomically.
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::changes::ServerCopy;
use super::open_file::LocalCopy;
use super::overlay::Overlay;
use super::resume::Sent;
use super::retry::Backoff;
use super::spool::Spool;
use super::streamer::BATCH;
use super::verify::Checked;
use super::{Fs, Result};
use crate::store::path::split;
use crate::store::{self, Metadata, StoreAtOffset, StorePath};

/// Smaller files are always replaced whole (cheap, and atomic).
pub(super) const PATCH_MIN_SIZE: u64 = 1024 * 1024;
/// A patch sends at most 1/PATCH_MAX_SHARE of the file.
pub(super) const PATCH_MAX_SHARE: u64 = 8;

/// What became of a patch.
pub(super) enum Patched {
    /// The server has the whole file.
    Done,
    /// Not patched (see the rule): replace the file whole.
    Replace,
}

impl Fs {
    /// Once the mount is up: finds out on a thread of its own what REST +
    /// STOR does on the server, in the mount's root, so that the first
    /// patch of the mount does not wait for the probe (see the store's
    /// `probe_store_at_offset`; where it could not tell, the first patch
    /// probes in its file's directory). Not where nothing is written in
    /// place: `--patch never` (resumed uploads then probe when cut), a
    /// read-only mount. The thread, to wait for it (tests).
    pub fn probe_ahead(&self) -> Option<std::thread::JoinHandle<()>> {
        if !self.config.patch_in_place || self.config.read_only {
            log::debug!("REST + STOR: no probe ahead (--patch never, or read-only)");
            return None;
        }
        let store = Arc::clone(&self.store);
        std::thread::Builder::new()
            .name("ftpsfs-probe".into())
            .spawn(move || {
                store.probe_store_at_offset(b"");
                log::debug!("REST + STOR: the probe ahead is over");
            })
            .inspect_err(|e| log::debug!("REST + STOR: no probe ahead ({e})"))
            .ok()
    }

    /// The time of the server's copy of a file about to be fetched, where
    /// it may be patched later and the server tells exact times; asked
    /// before the fetch, so a change during it shows at the save.
    pub(super) fn patch_base_mtime(&self, path: &StorePath, size: u64) -> Option<SystemTime> {
        self.patch_base_stat(path, size)
            .filter(|meta| meta.mtime_exact)
            .and_then(|meta| meta.mtime)
    }

    /// The server's metadata of a file of `size` bytes that may be patched,
    /// where the server tells exact times (one MLST); None elsewhere.
    pub(super) fn patch_base_stat(&self, path: &StorePath, size: u64) -> Option<Metadata> {
        if !self.config.patch_in_place
            || size < self.config.patch_min_size
            || !self.store.capabilities().exact_listing_mtime
        {
            return None;
        }
        self.store
            .stat(path)
            .inspect_err(|e| log::debug!("{path}: time before writing: {e}"))
            .ok()
    }

    /// Uploads a local copy: only its changed ranges where the rule allows
    /// (see the module comment), else whole. On a failure after a patch
    /// began, the local copy is kept in the spool directory.
    pub(super) fn patch_or_replace(&self, copy: &LocalCopy, path: &StorePath) -> Result<()> {
        match self.patch(copy, path) {
            Ok(Patched::Done) => Ok(()),
            Ok(Patched::Replace) => {
                self.upload_staged(copy, path)?;
                self.staged.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                log::error!("{path}: a patch in place could not be finished: the server's file may mix old and new bytes");
                // At shutdown `save` keeps it, as any upload that failed.
                if !self.shutting_down.load(Ordering::SeqCst) {
                    self.keep_locally(&copy.spool, path);
                }
                Err(e)
            }
        }
    }

    fn patch(&self, copy: &LocalCopy, path: &StorePath) -> Result<Patched> {
        if !self.config.patch_in_place || !copy.replaces {
            return Ok(Patched::Replace);
        }
        let Some((base, ranges)) = copy.changes.since() else {
            log::debug!("{path}: replaced whole: not a copy of the server's with a few changes");
            return Ok(Patched::Replace);
        };
        let len = copy.spool.len();
        let limit = len / PATCH_MAX_SHARE;
        if len < self.config.patch_min_size || len < base.size || sent(ranges) > limit {
            log::debug!(
                "{path}: replaced whole: {} of {len} bytes changed",
                sent(ranges)
            );
            return Ok(Patched::Replace);
        }
        let plan = match self.store.store_at_offset(split(path).0) {
            StoreAtOffset::InPlace => ranges.to_vec(),
            StoreAtOffset::Truncates => ranges.first().map(|r| r.start..len).into_iter().collect(),
            mode @ (StoreAtOffset::Refused | StoreAtOffset::Unknown) => {
                log::debug!("{path}: replaced whole: REST + STOR on this server: {mode:?}");
                return Ok(Patched::Replace);
            }
        };
        if sent(&plan) > limit {
            log::debug!("{path}: replaced whole: the server truncates after REST + STOR");
            return Ok(Patched::Replace);
        }
        // `REST 0` + `STOR` is a plain STOR: it would cut the file there.
        if plan.first().is_some_and(|r| r.start == 0) {
            log::debug!("{path}: replaced whole: its first byte changed");
            return Ok(Patched::Replace);
        }
        self.send_patch(path, &copy.spool, base, &plan, len)
    }

    /// Sends the writes held over a big file that was not fetched
    /// (`overlay`): its ranges as they are (they were admitted by the same
    /// limits as they came), unless the server does not write REST + STOR
    /// in place (any more: a probe that could not tell) or its copy changed.
    pub(super) fn patch_overlay(&self, o: &Overlay, path: &StorePath) -> Result<Patched> {
        match self.store.store_at_offset(split(path).0) {
            StoreAtOffset::InPlace => {}
            mode => {
                log::debug!("{path}: replaced whole: REST + STOR on this server: {mode:?}");
                return Ok(Patched::Replace);
            }
        }
        self.send_patch(path, &o.spool, o.base, &o.written, o.base.size)
    }

    /// Sends `plan`, ranges of `spool` (the file's bytes at their offsets),
    /// into the server's file of `len` bytes after the patch, if the server
    /// still has `base`; then checks its size.
    fn send_patch(
        &self,
        path: &StorePath,
        spool: &Spool,
        base: ServerCopy,
        plan: &[Range<u64>],
        len: u64,
    ) -> Result<Patched> {
        match self.server_unchanged(path, base.size, base.mtime) {
            Ok(true) => {}
            Ok(false) => {
                log::info!("{path}: changed on the server since it was fetched: replaced whole, not patched");
                return Ok(Patched::Replace);
            }
            Err(e) => {
                log::debug!("{path}: replaced whole: its size could not be asked: {e}");
                return Ok(Patched::Replace);
            }
        }
        let mut retry = Backoff::new(self.config.retry_time);
        for range in plan {
            loop {
                match self.send_range(spool, path, range) {
                    Ok(()) => {
                        retry.progressed();
                        break;
                    }
                    Err(e) if e.kind == store::ErrorKind::Unavailable => {
                        log::info!("{path}: patch of {range:?} cut ({e}); sending it again");
                        retry.wait(e)?;
                    }
                    Err(e) => {
                        log::warn!(
                            "{path}: patch of {range:?} failed ({e}); replacing the file whole"
                        );
                        return Ok(Patched::Replace);
                    }
                }
            }
        }
        // The one size check after a patch (with backoff while the server
        // cannot be reached); `resumed` makes it happen whatever `--verify`.
        let expected = Sent {
            len,
            resumed: true,
            size_known: None,
            digest: None,
        };
        match self.check_upload(path.as_bytes(), &expected) {
            Ok(Checked::Match) => {}
            Ok(Checked::Mismatch(why)) => {
                log::warn!("{path}: after a patch {why}; replacing the file whole");
                return Ok(Patched::Replace);
            }
            Err(e) if e.store_kind() == Some(store::ErrorKind::Unavailable) => return Err(e),
            Err(e) => {
                log::warn!("{path}: size after a patch: {e}; replacing the file whole");
                return Ok(Patched::Replace);
            }
        }
        log::debug!(
            "{path}: patched in place: {} bytes in {} range(s)",
            sent(plan),
            plan.len()
        );
        self.patched.fetch_add(1, Ordering::Relaxed);
        self.bytes_patched.fetch_add(sent(plan), Ordering::Relaxed);
        Ok(Patched::Done)
    }

    /// Whether the server's file still has `size` bytes and, when given,
    /// the time `mtime`: one command (MLST where times are exact, else SIZE).
    fn server_unchanged(
        &self,
        path: &StorePath,
        size: u64,
        mtime: Option<SystemTime>,
    ) -> store::Result<bool> {
        if mtime.is_some() {
            let meta = self.store.stat(path)?;
            return Ok(meta.size == size && (!meta.mtime_exact || meta.mtime == mtime));
        }
        Ok(self.store.size(path)? == size)
    }

    /// One `REST start` + `STOR` of the local bytes of `range`.
    fn send_range(&self, spool: &Spool, path: &StorePath, range: &Range<u64>) -> store::Result<()> {
        let mut up = self.store.upload_at(path, range.start)?;
        let mut buf = vec![0u8; BATCH.min((range.end - range.start) as usize).max(1)];
        let mut offset = range.start;
        while offset < range.end {
            let want = buf.len().min((range.end - offset) as usize);
            let n = spool.read_at(offset, &mut buf[..want]).map_err(|e| {
                store::Error::new(store::ErrorKind::Failed, format!("reading the spool: {e}"))
            })?;
            if n == 0 {
                return Err(store::Error::new(
                    store::ErrorKind::Failed,
                    format!("the spool ended at {offset}, inside the range to patch"),
                ));
            }
            up.write(&buf[..n])?;
            offset += n as u64;
        }
        up.finish()
    }
}

/// The bytes a plan sends.
pub(super) fn sent(ranges: &[Range<u64>]) -> u64 {
    ranges.iter().map(|r| r.end - r.start).sum()
}
