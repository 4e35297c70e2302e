//! Putting a finished upload in place: hidden temporary names, renaming
//! over the old file, and the fallbacks for servers that will not rename.
//!
//! An upload that replaces a file on the server goes to a hidden temporary
//! name beside it (`.<name>.ftpsfs-<unique>.part`) and is renamed over the
//! file once complete, so a failed upload leaves the old file as it was. If
//! the server refuses the rename even after the old file is removed (some
//! servers forbid renames), the finished temporary file is copied to the
//! target through a download piped into an upload (`Fs::copy_checked`:
//! resumed and checked as any upload), and later uploads go to
//! the target directly. A file that did not exist before (created through
//! the mount) is uploaded under its own name: there is nothing to protect,
//! and it saves a RNFR/RNTO per file when copying many small files; a cut
//! upload is resumed (see `resume`), and if it fails for good, what it
//! left is deleted.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Error, Result};
use crate::store::path::shown;
use crate::store::{self, ErrorKind, RemoteStore};

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
                shown(path)
            );
        }
    }
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
                // Nothing there (a new file's upload, or the target went
                // meanwhile): the refusal had another cause, perhaps
                // passing; the rename is tried once more before the caller
                // concludes that the server refuses renames.
                Err(e) if e.kind == ErrorKind::NotFound => {}
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
/// `copy` (a download piped into an upload) when the server refuses renames
/// (and remembers that in `renames_refused`). On failure the temporary file
/// is deleted.
pub fn commit(
    store: &dyn RemoteStore,
    temp: &[u8],
    target: &[u8],
    renames_refused: &AtomicBool,
    copy: impl FnOnce(&[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let result = match rename_replacing(store, temp, target) {
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::PermissionDenied | ErrorKind::Unsupported | ErrorKind::Failed
            ) =>
        {
            log::info!(
                "the server refused to rename {} ({e}); uploading in place from now on",
                shown(temp)
            );
            renames_refused.store(true, Ordering::Relaxed);
            copy(temp, target)
        }
        other => other.map_err(Error::from),
    };
    match result {
        // The rename consumed the temporary file; a copy leaves it behind.
        Ok(()) if renames_refused.load(Ordering::Relaxed) => delete_quietly(store, temp),
        Ok(()) => {}
        Err(_) => delete_quietly(store, temp),
    }
    result
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
}
