//! What the filesystem core needs from a remote server, and nothing more.
//!
//! `fs` talks only to `RemoteStore`; the FTPS implementation sits behind it.
//! The tests' stand-ins (an in-memory server, a fault-injecting wrapper) live
//! in the dev-only `ftpsfs-testkit` crate (`testkit/`), so the product does
//! not carry them. Paths are bytes, relative to the mounted directory: `b""`
//! is the mount's root, `b"dir/file"` a file in it; never a leading or
//! trailing slash (see `path`).
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

pub mod ftps;
pub mod path;
pub mod transfers;

pub use crate::digest::{DigestAlgorithm, DigestSet, Hasher};
pub use path::StorePath;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: FileKind,
    pub size: u64,
    pub mtime: Option<SystemTime>,
    /// False when `mtime` is only as precise as a LIST line (minutes, or days
    /// for old files); the core may ask `exact_mtime` when precision matters.
    pub mtime_exact: bool,
    /// Permission bits (0o7777) when the server tells.
    pub mode: Option<u32>,
    /// The target of a symbolic link, when the listing gave it.
    pub symlink_target: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub meta: Metadata,
}

/// What a server can do beyond reading and writing whole files, as far as
/// it says so at login (cheap to ask, asked often). How it treats `REST` +
/// `STOR` needs a probe and is asked separately (`store_at_offset`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub set_mtime: bool,
    pub chmod: bool,
    /// Listings give exact modification times (MLSD).
    pub exact_listing_mtime: bool,
    /// `append` works (APPE: a base command of RFC 959, assumed of every
    /// FTP server; a test store can turn it off).
    pub append: bool,
    /// The algorithms `digest` can ask the server for (from FEAT: `HASH
    /// SHA-256;SHA-1;MD5;CRC32`, `XSHA256`, `XSHA1`, `XMD5`, `XCRC`). A
    /// range, or a path the older commands cannot carry (spaces), may still
    /// be Unsupported; MD5 is listed when offered but cannot be computed
    /// locally (`DigestSet::best_local` picks one that can).
    pub digests: DigestSet,
}

/// What the server does with `upload_at` (`REST n` + `STOR`): a property of
/// the server, found by a probe (see `RemoteStore::store_at_offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreAtOffset {
    /// Not known (yet): not probed, or the probe failed for a reason that
    /// may pass (a dropped connection, a timeout, a directory where the
    /// probe could not write).
    #[default]
    Unknown,
    /// Writes from the offset and keeps the bytes after the written range:
    /// `REST 3` + `STOR XY` into `0123456789` gives `012XY56789` (vsftpd).
    InPlace,
    /// Writes from the offset and the file ends where the write ended:
    /// `012XY`.
    Truncates,
    /// Refuses `REST` before `STOR` (ProFTPD without `AllowStoreRestart
    /// on`), or does something else with it that cannot be used.
    Refused,
}

/// A download in progress from some offset; reads continue where the last
/// one stopped. Dropping it abandons the download.
pub trait ReadStream: Send {
    /// Reads up to `buf.len()` bytes; 0 at the end of the file.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize>;
    /// Offset in the file of the next byte `read` returns.
    fn position(&self) -> u64;
    /// Where the stream ends short of the end of the file: a range the
    /// server ends (see `RemoteStore::open_read_segment`).
    fn range_end(&self) -> Option<u64> {
        None
    }
}

/// An upload in progress. Only `finish` returning `Ok` means the server holds
/// every byte; dropping it without `finish` abandons the upload.
pub trait UploadStream: Send {
    fn write(&mut self, data: &[u8]) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<()>;
}

pub trait RemoteStore: Send + Sync {
    /// The entries of a directory (without `.` and `..`).
    fn list(&self, dir: &[u8]) -> Result<Vec<DirEntry>>;
    /// Metadata of one path.
    fn stat(&self, path: &[u8]) -> Result<Metadata>;
    /// The exact modification time (MDTM), for servers whose listings round it.
    fn exact_mtime(&self, path: &[u8]) -> Result<SystemTime>;
    fn open_read(&self, path: &[u8], offset: u64) -> Result<Box<dyn ReadStream>>;
    /// `open_read` only if a session is free now (`None` when all are in
    /// use), and a stream that, when it breaks, resumes only on a session
    /// free then. For extra work (a segment fetched ahead of a download),
    /// which must never wait for a session that the download it speeds up
    /// may need. A store without sessions opens as `open_read` does.
    fn open_read_now(&self, path: &[u8], offset: u64) -> Result<Option<Box<dyn ReadStream>>> {
        self.open_read(path, offset).map(Some)
    }
    /// Opens a read of the segment of `path` from `start` to `end` (within
    /// the file; `None`: to the end of the file), on a session free now
    /// unless `wait` (`None`: none is free). A store that can have the
    /// server end the transfer at `end` does (FTPS: `RANG` where FEAT
    /// offers it), and its stream ends there; others read on past `end`,
    /// and the caller drops the stream there.
    fn open_read_segment(
        &self,
        path: &[u8],
        start: u64,
        end: Option<u64>,
        wait: bool,
    ) -> Result<Option<Box<dyn ReadStream>>> {
        let _ = end;
        if wait {
            self.open_read(path, start).map(Some)
        } else {
            self.open_read_now(path, start)
        }
    }
    /// Gets up to `streams` idle sessions ready for a download soon (their
    /// data connections set up ahead, off the caller's path), for the
    /// extra streams of a large file being read. A store without sessions
    /// has nothing to do.
    fn ready_for_reads(&self, _streams: usize) {}
    /// Starts writing `path` from its start, replacing what was there.
    fn upload(&self, path: &[u8]) -> Result<Box<dyn UploadStream>>;
    /// Starts appending to `path`.
    fn append(&self, path: &[u8]) -> Result<Box<dyn UploadStream>>;
    /// Starts writing `path` from byte `offset` (`REST offset` + `STOR`).
    /// What happens to the bytes after the written range, or whether the
    /// server allows it at all, is the server's: see `store_at_offset`,
    /// which the caller asks first. An offset past the end leaves a gap the
    /// server fills (with zeros, on a POSIX filesystem). `offset` 0 is
    /// `upload` (the file is replaced).
    fn upload_at(&self, path: &[u8], offset: u64) -> Result<Box<dyn UploadStream>>;
    /// The server's size of the file right now (`SIZE`; where the server
    /// has none, a fresh MLST or listing, never a cache). A reply that is not
    /// a size (garbage, a sign, a fraction) is an error, never a number.
    /// NotFound for a directory, as servers answer SIZE of one.
    fn size(&self, path: &[u8]) -> Result<u64>;
    /// The digest of the file as the server computes it (`HASH`, or
    /// `XSHA256` and its kin), as raw bytes; of the bytes `[start, end)` only
    /// when `range` is given (an empty range is InvalidInput). Unsupported
    /// where the server offers no command for `algorithm` (or for a range,
    /// or for this path). A reply naming another algorithm or range, of the
    /// wrong length or not hex is Failed, never a digest.
    fn digest(
        &self,
        path: &[u8],
        algorithm: DigestAlgorithm,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>>;
    /// What `upload_at` does on this server. Probed once: ahead of need
    /// (`probe_store_at_offset`), else on first need, in `dir`: on a hidden
    /// temporary name there (`.<name>.ftpsfs-<hex>.part`, which the core
    /// hides and sweeps), it uploads `0123456789`, writes `XY` at 3 and
    /// reads the file back, then deletes it. The answer is remembered for
    /// the store's life; `Unknown` when the probe could not tell (a
    /// transient failure, or `dir` not writable), and then it is tried again
    /// on the next call. A caller while a probe runs waits for that probe.
    fn store_at_offset(&self, dir: &[u8]) -> StoreAtOffset;
    /// The probe of `store_at_offset`, ahead of need, in `dir`, where the
    /// store has a session idle for it; returns without probing where the
    /// answer is known, a probe runs, or no session is idle. A probe that
    /// could not tell leaves it to `store_at_offset`. Takes a probe's time:
    /// for a thread of its own. A store that needs no probe does nothing.
    fn probe_store_at_offset(&self, dir: &[u8]) {
        let _ = dir;
    }
    fn delete(&self, path: &[u8]) -> Result<()>;
    fn mkdir(&self, path: &[u8]) -> Result<()>;
    fn rmdir(&self, path: &[u8]) -> Result<()>;
    /// Renames; whether an existing target is replaced depends on the server
    /// (the core removes it first where POSIX says it must be replaced).
    fn rename(&self, from: &[u8], to: &[u8]) -> Result<()>;
    fn chmod(&self, path: &[u8], mode: u32) -> Result<()>;
    fn set_mtime(&self, path: &[u8], mtime: SystemTime) -> Result<()>;
    fn capabilities(&self) -> Capabilities;
    /// The bytes the server says this user may still store, where it tells
    /// (AVBL; a quota in the memory store); `None` where it cannot say.
    /// Never an error: `df` falls back to "unknown" (0).
    fn free_space(&self) -> Option<u64>;
}

/// A shared store is a store, so a wrapper (a fault injector in the tests, a
/// retry or metrics layer) can take one that others hold too, and they keep
/// their handle to it.
impl<S: RemoteStore + ?Sized> RemoteStore for Arc<S> {
    fn list(&self, dir: &[u8]) -> Result<Vec<DirEntry>> {
        (**self).list(dir)
    }
    fn stat(&self, path: &[u8]) -> Result<Metadata> {
        (**self).stat(path)
    }
    fn exact_mtime(&self, path: &[u8]) -> Result<SystemTime> {
        (**self).exact_mtime(path)
    }
    fn open_read(&self, path: &[u8], offset: u64) -> Result<Box<dyn ReadStream>> {
        (**self).open_read(path, offset)
    }
    fn open_read_now(&self, path: &[u8], offset: u64) -> Result<Option<Box<dyn ReadStream>>> {
        (**self).open_read_now(path, offset)
    }
    fn open_read_segment(
        &self,
        path: &[u8],
        start: u64,
        end: Option<u64>,
        wait: bool,
    ) -> Result<Option<Box<dyn ReadStream>>> {
        (**self).open_read_segment(path, start, end, wait)
    }
    fn ready_for_reads(&self, streams: usize) {
        (**self).ready_for_reads(streams)
    }
    fn upload(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        (**self).upload(path)
    }
    fn append(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        (**self).append(path)
    }
    fn upload_at(&self, path: &[u8], offset: u64) -> Result<Box<dyn UploadStream>> {
        (**self).upload_at(path, offset)
    }
    fn size(&self, path: &[u8]) -> Result<u64> {
        (**self).size(path)
    }
    fn digest(
        &self,
        path: &[u8],
        algorithm: DigestAlgorithm,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>> {
        (**self).digest(path, algorithm, range)
    }
    fn store_at_offset(&self, dir: &[u8]) -> StoreAtOffset {
        (**self).store_at_offset(dir)
    }
    fn probe_store_at_offset(&self, dir: &[u8]) {
        (**self).probe_store_at_offset(dir)
    }
    fn delete(&self, path: &[u8]) -> Result<()> {
        (**self).delete(path)
    }
    fn mkdir(&self, path: &[u8]) -> Result<()> {
        (**self).mkdir(path)
    }
    fn rmdir(&self, path: &[u8]) -> Result<()> {
        (**self).rmdir(path)
    }
    fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        (**self).rename(from, to)
    }
    fn chmod(&self, path: &[u8], mode: u32) -> Result<()> {
        (**self).chmod(path, mode)
    }
    fn set_mtime(&self, path: &[u8], mtime: SystemTime) -> Result<()> {
        (**self).set_mtime(path, mtime)
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn free_space(&self) -> Option<u64> {
        (**self).free_space()
    }
}

/// Why a store operation failed, in the terms the core maps to errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    PermissionDenied,
    AlreadyExists,
    NotEmpty,
    NoSpace,
    /// The name cannot be sent (CR/LF) or the request is malformed.
    InvalidInput,
    /// The server does not support the operation.
    Unsupported,
    /// The server could not be reached or did not answer in time; a later
    /// attempt may work.
    Unavailable,
    /// Anything else: a protocol failure, a refusal without a clearer cause.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// What went wrong, in words for the log (never a password).
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
