//! What could not be uploaded when the mount ends (SIGTERM with the server
//! unreachable, say) is copied to a private local directory instead of being
//! dropped with the spool, and the log says where: the program was told its
//! writes succeeded, so losing them silently is not an option.
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::spool::Spool;

/// Copies `spool`, the content of `remote`, to
/// `dir/unsaved-SECONDS/REMOTE_PATH` (directories 0700, the file 0600) and
/// returns the file's path.
pub(super) fn keep(spool: &Spool, dir: &Path, remote: &[u8]) -> io::Result<PathBuf> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut target = dir.join(format!("unsaved-{stamp}"));
    for part in remote.split(|&b| b == b'/') {
        // Names in the inode table are checked, but a path outside `dir`
        // must be impossible whatever they hold.
        let part: &[u8] = match part {
            b"" | b"." | b".." => b"_",
            other => other,
        };
        target.push(std::ffi::OsStr::from_bytes(part));
    }
    if let Some(parent) = target.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&target)?;
    let mut buf = vec![0u8; 1024 * 1024];
    let mut offset = 0;
    while offset < spool.len() {
        let n = spool.read_at(offset, &mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the spool ended early",
            ));
        }
        out.write_all(&buf[..n])?;
        offset += n as u64;
    }
    out.sync_all()?;
    Ok(target)
}

/// The files that earlier mounts kept in `dir` (by [`keep`]), so that a new
/// mount can remind the user of them: they exist because an upload failed,
/// and nobody else will ever look in the spool directory.
pub(super) fn kept_earlier(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        if entry.file_name().as_bytes().starts_with(b"unsaved-") {
            collect_files(&entry.path(), &mut found);
        }
    }
    found.sort();
    found
}

fn collect_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // file_type() does not follow symlinks: nothing outside `dir` is listed.
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&entry.path(), found),
            Ok(t) if t.is_file() => found.push(entry.path()),
            _ => {}
        }
    }
}
