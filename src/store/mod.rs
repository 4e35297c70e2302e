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

/// What a server can do beyond reading and writing whole files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub set_mtime: bool,
    pub chmod: bool,
    /// Listings give exact modification times (MLSD).
    pub exact_listing_mtime: bool,
}

/// A download in progress from some offset; reads continue where the last
/// one stopped. Dropping it abandons the download.
pub trait ReadStream: Send {
    /// Reads up to `buf.len()` bytes; 0 at the end of the file.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize>;
    /// Offset in the file of the next byte `read` returns.
    fn position(&self) -> u64;
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
    /// Starts writing `path` from its start, replacing what was there.
    fn upload(&self, path: &[u8]) -> Result<Box<dyn UploadStream>>;
    /// Starts appending to `path`.
    fn append(&self, path: &[u8]) -> Result<Box<dyn UploadStream>>;
    fn delete(&self, path: &[u8]) -> Result<()>;
    fn mkdir(&self, path: &[u8]) -> Result<()>;
    fn rmdir(&self, path: &[u8]) -> Result<()>;
    /// Renames; whether an existing target is replaced depends on the server
    /// (the core removes it first where POSIX says it must be replaced).
    fn rename(&self, from: &[u8], to: &[u8]) -> Result<()>;
    fn chmod(&self, path: &[u8], mode: u32) -> Result<()>;
    fn set_mtime(&self, path: &[u8], mtime: SystemTime) -> Result<()>;
    fn capabilities(&self) -> Capabilities;
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
    fn upload(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        (**self).upload(path)
    }
    fn append(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        (**self).append(path)
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
