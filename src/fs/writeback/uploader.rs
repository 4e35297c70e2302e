//! The background uploads of async write-back. Each uploader takes the next
//! file from the queue and sends it the way sync mode sends a staged file
//! (temporary name and rename, resume of a cut, verify): after checking
//! that the spool file still holds what the journal says (a corrupt one is
//! never uploaded).
//!
//! Failures: a server that cannot be reached is tried again, after a
//! backoff, for as long as it takes (nothing is dropped); a refusal
//! (552 quota, 553 permission, a missing directory) keeps the file in the
//! spool, logged and listed as failed; other errors are tried a few times,
//! then count as refusals.
//!
//! Conflicts: an entry found in the journal at mount was written against
//! the server's copy as the earlier mount saw it. If the server's copy has
//! changed since (another client), both are kept: the entry is uploaded as
//! `NAME.ftpsfs-conflict-<unix time>` beside it, and that is logged. A
//! server copy that already holds the entry's bytes (the earlier mount died
//! after its upload, before the journal said so) is left as it is; one that
//! holds the first bytes of a new file's entry (the earlier mount died
//! during its upload) is that upload, cut, and is replaced.
//!
//! Names: a new file of up to 1 MiB goes straight to its name with one
//! STOR, as in sync mode (a rename would cost two round trips more per
//! file); bigger files and files that replace another go through a
//! temporary name and a rename.
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::super::changes::Changes;
use super::super::open_file::LocalCopy;
use super::super::spool::Spool;
use super::journal::{Base, Entry};
use super::queue::{Job, Outcome, Queue};
use super::{digest_of, sha256_of, Fs};
use crate::fs::{Error, ErrorKind, STREAM_AFTER};
use crate::store::path::{join, shown, split};
use crate::store::{self, Metadata, StorePath};

/// Tries of an upload failing with an error that is neither a refusal nor
/// an unreachable server, before it counts as refused.
const TRIES: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_millis(200);
const MAX_WAIT: Duration = Duration::from_secs(30);

/// One uploader: runs until the queue closes or the mount is gone.
pub(super) fn run(fs: Weak<Fs>, queue: Arc<Queue>) {
    let mut tries: HashMap<u64, u32> = HashMap::new();
    while let Some(job) = queue.next_job() {
        let seq = job.entry.seq;
        let Some(mount) = fs.upgrade() else {
            queue.finish(seq, Outcome::Retry);
            return;
        };
        let outcome = mount.upload_pending(&job, tries.get(&seq).copied().unwrap_or(0));
        match outcome {
            Outcome::Done => {
                if let Some(wb) = &mount.write_back {
                    wb.done(seq, &job.entry.path);
                }
                tries.remove(&seq);
                queue.finish(seq, Outcome::Done);
            }
            Outcome::Failed(why) => {
                tries.remove(&seq);
                queue.finish(seq, Outcome::Failed(why));
            }
            Outcome::Retry => {
                // The mount may go while this waits: it holds no reference.
                drop(mount);
                let n = tries.entry(seq).or_insert(0);
                *n += 1;
                let wait = FIRST_WAIT
                    .saturating_mul(1 << (*n - 1).min(8))
                    .min(MAX_WAIT);
                std::thread::sleep(wait);
                queue.finish(seq, Outcome::Retry);
            }
        }
    }
}

/// What a failed attempt means for the entry.
fn outcome_of(err: &Error, tries: u32) -> Outcome {
    let kind = match err.kind {
        ErrorKind::Store(k) | ErrorKind::Upload(k) => Some(k),
        ErrorKind::Unverified => None,
        _ => return Outcome::Failed(err.message.clone()),
    };
    match kind {
        Some(store::ErrorKind::Unavailable) => Outcome::Retry,
        Some(
            store::ErrorKind::NoSpace
            | store::ErrorKind::PermissionDenied
            | store::ErrorKind::NotFound
            | store::ErrorKind::InvalidInput,
        ) => Outcome::Failed(err.message.clone()),
        _ if tries + 1 >= TRIES => Outcome::Failed(err.message.clone()),
        _ => Outcome::Retry,
    }
}

fn conflict_name(path: &[u8]) -> StorePath {
    let (dir, name) = split(path);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut conflict = name.to_vec();
    conflict.extend_from_slice(format!(".ftpsfs-conflict-{now}").as_bytes());
    join(dir, &conflict)
}

/// Whether the server's copy is still the one the entry was written against.
fn unchanged(base: Base, server: &Metadata) -> bool {
    match base {
        Base::New => false,
        Base::File { size, mtime } => {
            let server_secs = server
                .mtime
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            // Listings may round times to the minute.
            size == server.size
                && match (mtime, server_secs) {
                    (Some(a), Some(b)) => a.abs_diff(b) < 60,
                    _ => true,
                }
        }
    }
}

/// A new file of up to 1 MiB: uploaded under its own name (sync mode does
/// the same with files it does not stream).
fn goes_straight_to_its_name(entry: &Entry) -> bool {
    matches!(entry.base, Base::New) && entry.size <= STREAM_AFTER as u64
}

/// Where a recovered entry goes.
enum Target {
    Path(StorePath),
    AlreadyThere,
}

impl Fs {
    /// One attempt at uploading a waiting file.
    fn upload_pending(&self, job: &Job, tries: u32) -> Outcome {
        let entry = &job.entry;
        let path = StorePath::from(entry.path.clone());
        match digest_of(&job.file, entry.size) {
            Ok(d) if d == entry.digest => {}
            Ok(_) => {
                log::error!(
                    "write-back: the spool file of {path} does not hold what its journal entry \
                     says (corrupt); it is NOT uploaded, and stays in the spool"
                );
                return Outcome::Failed("the spool file is corrupt; not uploaded".into());
            }
            Err(e) => {
                log::error!("write-back: cannot read the spool file of {path}: {e}");
                return Outcome::Failed(format!("cannot read the spool file: {e}"));
            }
        }
        let attempt = self.target_of(job, &path).and_then(|target| match target {
            Target::AlreadyThere => Ok(None),
            Target::Path(target) => self.send_spooled(job, &target).map(|()| Some(target)),
        });
        match attempt {
            Ok(None) => {
                log::info!("write-back: {path} was on the server already");
                Outcome::Done
            }
            Ok(Some(target)) => {
                self.server_has(&target, entry.size, entry.shown_mode, entry.attrs);
                log::debug!("write-back: {target} uploaded ({} bytes)", entry.size);
                Outcome::Done
            }
            Err(e) => {
                let outcome = outcome_of(&e, tries);
                match &outcome {
                    Outcome::Failed(why) => log::error!(
                        "write-back: the upload of {path} was refused ({why}); its content is \
                         kept in the spool and the next mount tries again"
                    ),
                    _ => log::warn!("write-back: the upload of {path} failed ({e}); trying again"),
                }
                outcome
            }
        }
    }

    fn target_of(&self, job: &Job, path: &StorePath) -> Result<Target, Error> {
        let ours = self
            .write_back
            .as_ref()
            .is_some_and(|wb| wb.uploaded.lock().contains(path.as_bytes()));
        if !job.recovered || ours {
            // The server's copy is this mount's own upload (or the one it
            // saw when the file was changed): in a running mount, the last
            // close wins, as in sync mode.
            return Ok(Target::Path(path.clone()));
        }
        let server = match self.store.stat(path) {
            Ok(meta) => meta,
            Err(e) if e.kind == store::ErrorKind::NotFound => {
                return Ok(Target::Path(path.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        if server.size == job.entry.size && self.server_holds(path, &job.entry)? {
            return Ok(Target::AlreadyThere);
        }
        if unchanged(job.entry.base, &server) || self.cut_upload_of(path, job, &server)? {
            return Ok(Target::Path(path.clone()));
        }
        let conflict = conflict_name(path);
        log::warn!(
            "write-back: {} changed on the server since the earlier mount wrote it; \
             both are kept: the earlier mount's version goes to {}",
            shown(path),
            conflict
        );
        Ok(Target::Path(conflict))
    }

    /// Whether the server's file at `path` holds the entry's bytes.
    fn server_holds(&self, path: &[u8], entry: &Entry) -> Result<bool, Error> {
        let copy = self.fetch(path)?;
        let digest = sha256_of(copy.len(), |offset, buf| copy.read_at(offset, buf))
            .map_err(|e| Error::local(&e, "reading the spool"))?;
        Ok(digest == entry.digest)
    }

    /// Whether the server's file at `path` is a cut upload of the entry,
    /// a new file that goes straight to its name: a start of its bytes.
    fn cut_upload_of(&self, path: &[u8], job: &Job, server: &Metadata) -> Result<bool, Error> {
        if !(goes_straight_to_its_name(&job.entry) && server.size < job.entry.size) {
            return Ok(false);
        }
        let copy = self.fetch(path)?;
        let len = copy.len() as usize;
        let mut theirs = vec![0u8; len];
        let mut ours = vec![0u8; len];
        copy.read_at(0, &mut theirs)
            .and_then(|_| job.file.read_exact_at(&mut ours, 0))
            .map_err(|e| Error::local(&e, "reading the spool"))?;
        Ok(theirs == ours)
    }

    /// Sends the spool file as sync mode sends a staged file: through a
    /// temporary name, but for a new file small enough to go straight to
    /// its name.
    fn send_spooled(&self, job: &Job, target: &[u8]) -> Result<(), Error> {
        let file = job
            .file
            .try_clone()
            .map_err(|e| Error::local(&e, "opening a write-back spool file"))?;
        let copy = LocalCopy {
            spool: Spool::from_file(file, job.entry.size, Arc::clone(&self.spool_stats)),
            replaces: !goes_straight_to_its_name(&job.entry),
            pending: job.entry.attrs,
            changes: Changes::Whole,
        };
        self.upload_staged(&copy, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_fail_and_outages_retry() {
        let e = |k| Error::new(ErrorKind::Upload(k), "x");
        assert!(matches!(
            outcome_of(&e(store::ErrorKind::NoSpace), 0),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            outcome_of(&e(store::ErrorKind::PermissionDenied), 0),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            outcome_of(&e(store::ErrorKind::Unavailable), 99),
            Outcome::Retry
        ));
        assert!(matches!(
            outcome_of(&e(store::ErrorKind::Failed), 0),
            Outcome::Retry
        ));
        assert!(matches!(
            outcome_of(&e(store::ErrorKind::Failed), TRIES),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn a_base_is_unchanged_only_with_the_same_size_and_time() {
        let meta = |size, secs| Metadata {
            kind: store::FileKind::File,
            size,
            mtime: Some(UNIX_EPOCH + Duration::from_secs(secs)),
            mtime_exact: false,
            mode: None,
            symlink_target: None,
        };
        let base = Base::File {
            size: 3,
            mtime: Some(1000),
        };
        assert!(unchanged(base, &meta(3, 1030)));
        assert!(!unchanged(base, &meta(4, 1000)));
        assert!(!unchanged(base, &meta(3, 5000)));
        assert!(!unchanged(Base::New, &meta(3, 1000)));
    }
}
