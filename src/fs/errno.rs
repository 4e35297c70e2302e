//! The errors of the filesystem core, and THE one table that turns them into
//! errno values (the FUSE adapter only calls `Error::errno`).
//!
//! A server that cannot be reached (`store::ErrorKind::Unavailable`) is
//! ETIMEDOUT for ordinary operations: "Connection timed out" tells the user
//! what happened, while ENOTCONN ("Transport endpoint is not connected") is
//! also what a dead FUSE mount reports and would send them looking for the
//! wrong problem. Writes that did not reach the server are different: close()
//! and fsync() document EIO for lost data, and programs check for it, so an
//! upload that failed for the same reason is EIO.
use std::fmt;
use std::io;

use crate::store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A store operation failed.
    Store(store::ErrorKind),
    /// Written data did not reach the server (an upload failed).
    Upload(store::ErrorKind),
    NotDir,
    IsDir,
    /// A file handle that is not open, or not open for this kind of access.
    BadHandle,
    ReadOnly,
    NameTooLong,
    /// An invalid argument: a name with `/`, NUL, CR or LF, `.`/`..` where a
    /// name is needed, readlink of something else than a link, a directory
    /// moved into itself.
    Invalid,
    /// The inode is no longer known (forgotten or removed).
    Stale,
    /// An open file whose content is gone from the server (removed or
    /// replaced there, or unlinked through the mount before it was read):
    /// ESTALE, as NFS reports a handle whose file is gone, rather than
    /// ENOENT, which read(2) is never documented to return.
    Vanished,
    /// An upload finished, but the server does not hold what was sent
    /// (size or digest), twice (see `verify`).
    Unverified,
    /// The local write spool failed (disk full, I/O error): the raw errno.
    Local(i32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// What went wrong, for the log.
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The same failure, seen as written data that did not reach the server.
    pub fn into_upload(self) -> Error {
        match self.kind {
            ErrorKind::Store(kind) => Error::new(ErrorKind::Upload(kind), self.message),
            _ => self,
        }
    }

    pub fn local(err: &io::Error, what: &str) -> Error {
        Error::new(
            ErrorKind::Local(err.raw_os_error().unwrap_or(libc::EIO)),
            format!("{what}: {err}"),
        )
    }

    pub fn store_kind(&self) -> Option<store::ErrorKind> {
        match self.kind {
            ErrorKind::Store(kind) | ErrorKind::Upload(kind) => Some(kind),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.store_kind() == Some(store::ErrorKind::NotFound)
    }

    /// The errno a program sees for this error.
    pub fn errno(&self) -> i32 {
        use store::ErrorKind as S;
        match self.kind {
            ErrorKind::Upload(S::Unavailable) => libc::EIO,
            ErrorKind::Store(kind) | ErrorKind::Upload(kind) => match kind {
                S::NotFound => libc::ENOENT,
                S::PermissionDenied => libc::EACCES,
                S::AlreadyExists => libc::EEXIST,
                S::NotEmpty => libc::ENOTEMPTY,
                S::NoSpace => libc::ENOSPC,
                S::InvalidInput => libc::EINVAL,
                S::Unsupported => libc::EOPNOTSUPP,
                S::Unavailable => libc::ETIMEDOUT,
                S::Failed => libc::EIO,
            },
            ErrorKind::NotDir => libc::ENOTDIR,
            ErrorKind::IsDir => libc::EISDIR,
            ErrorKind::BadHandle => libc::EBADF,
            ErrorKind::ReadOnly => libc::EROFS,
            ErrorKind::NameTooLong => libc::ENAMETOOLONG,
            ErrorKind::Invalid => libc::EINVAL,
            ErrorKind::Stale => libc::ENOENT,
            ErrorKind::Vanished => libc::ESTALE,
            ErrorKind::Unverified => libc::EIO,
            ErrorKind::Local(errno) => errno,
        }
    }
}

impl From<store::Error> for Error {
    fn from(err: store::Error) -> Error {
        Error::new(ErrorKind::Store(err.kind), err.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use store::ErrorKind as S;

    fn errno(kind: ErrorKind) -> i32 {
        Error::new(kind, "x").errno()
    }

    #[test]
    fn store_errors_map_to_what_tools_expect() {
        assert_eq!(errno(ErrorKind::Store(S::NotFound)), libc::ENOENT);
        assert_eq!(errno(ErrorKind::Store(S::PermissionDenied)), libc::EACCES);
        assert_eq!(errno(ErrorKind::Store(S::AlreadyExists)), libc::EEXIST);
        assert_eq!(errno(ErrorKind::Store(S::NotEmpty)), libc::ENOTEMPTY);
        assert_eq!(errno(ErrorKind::Store(S::NoSpace)), libc::ENOSPC);
        assert_eq!(errno(ErrorKind::Store(S::InvalidInput)), libc::EINVAL);
        assert_eq!(errno(ErrorKind::Store(S::Unsupported)), libc::EOPNOTSUPP);
        assert_eq!(errno(ErrorKind::Store(S::Unavailable)), libc::ETIMEDOUT);
        assert_eq!(errno(ErrorKind::Store(S::Failed)), libc::EIO);
    }

    #[test]
    fn lost_writes_are_eio_enospc_or_eacces() {
        let up = |k| Error::from(store::Error::new(k, "x")).into_upload().errno();
        assert_eq!(up(S::Unavailable), libc::EIO);
        assert_eq!(up(S::Failed), libc::EIO);
        assert_eq!(up(S::NoSpace), libc::ENOSPC);
        assert_eq!(up(S::PermissionDenied), libc::EACCES);
    }

    #[test]
    fn core_errors() {
        assert_eq!(errno(ErrorKind::NotDir), libc::ENOTDIR);
        assert_eq!(errno(ErrorKind::IsDir), libc::EISDIR);
        assert_eq!(errno(ErrorKind::BadHandle), libc::EBADF);
        assert_eq!(errno(ErrorKind::ReadOnly), libc::EROFS);
        assert_eq!(errno(ErrorKind::NameTooLong), libc::ENAMETOOLONG);
        assert_eq!(errno(ErrorKind::Invalid), libc::EINVAL);
        assert_eq!(errno(ErrorKind::Stale), libc::ENOENT);
        assert_eq!(errno(ErrorKind::Vanished), libc::ESTALE);
        assert_eq!(errno(ErrorKind::Unverified), libc::EIO);
        let disk_full = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(Error::local(&disk_full, "spool").errno(), libc::ENOSPC);
    }
}
