//! Open files and their handles.
//!
//! All handles open on one inode share one `OpenFile`: its content (what the
//! server has, a local staged copy, or an upload streaming) and its local
//! metadata. Each handle has its own download (read-ahead) and its own
//! sticky error: once an upload of what a handle wrote has failed, every
//! later write, flush and release of that handle reports it, as sshfs does.
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::errno::Error;
use super::inode::Ino;
use super::reader::ReadAhead;
use super::spool::Spool;
use super::writer::Streamer;
use super::OpenFlags;
use crate::store::{FileKind, Metadata};

/// Where the content of an open file is.
pub enum Data {
    /// On the server, as it is there.
    Remote,
    /// Wholly in a local spool (to be uploaded if `LocalMeta::dirty`).
    Staged(Spool),
    /// Being uploaded while the program writes.
    Streaming(Streamer),
}

pub struct LocalMeta {
    pub size: u64,
    pub mtime: SystemTime,
    pub mode: Option<u32>,
    /// The local content differs from the server's.
    pub dirty: bool,
    /// The server has a file at this file's path (so replacing it goes
    /// through a temporary name).
    pub on_server: bool,
    /// Unlinked or replaced while open: nothing is uploaded any more.
    pub unlinked: bool,
    /// Everything staged was written in order from an empty file, so the
    /// upload may start streaming.
    pub sequential: bool,
    /// Set while dirty: applied once the upload is done.
    pub pending_mtime: Option<SystemTime>,
    pub pending_mode: Option<u32>,
}

impl LocalMeta {
    pub fn from_server(meta: &Metadata, now: SystemTime) -> LocalMeta {
        LocalMeta {
            size: meta.size,
            mtime: meta.mtime.unwrap_or(now),
            mode: meta.mode,
            dirty: false,
            on_server: true,
            unlinked: false,
            sequential: false,
            pending_mtime: None,
            pending_mode: None,
        }
    }

    pub fn new_file(mode: u32, now: SystemTime) -> LocalMeta {
        LocalMeta {
            size: 0,
            mtime: now,
            mode: Some(mode),
            dirty: true,
            on_server: false,
            unlinked: false,
            sequential: true,
            pending_mtime: None,
            pending_mode: None,
        }
    }

    /// The file's metadata as the mount shows it while changed locally.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            kind: FileKind::File,
            size: self.size,
            mtime: Some(self.mtime),
            mtime_exact: true,
            mode: self.mode,
            symlink_target: None,
        }
    }

    /// Whether the local view, not the server's, is the truth about it.
    pub fn is_local(&self) -> bool {
        self.dirty || !self.on_server
    }
}

pub struct OpenFile {
    pub ino: Ino,
    /// Held across store calls for this file (uploads, fetches), never
    /// while taking another file's lock.
    pub data: Mutex<Data>,
    /// Short-held; taken after `data` when both are needed.
    pub meta: Mutex<LocalMeta>,
    /// Bumped whenever the server's content changes through us, so handles
    /// drop downloads of the old content.
    pub version: AtomicU64,
    /// Handles (and internal users such as a truncate) holding it; changed
    /// only under the core's table of open files.
    pub users: AtomicUsize,
    /// Handles open for writing.
    pub writers: AtomicUsize,
}

impl OpenFile {
    pub fn new(ino: Ino, data: Data, meta: LocalMeta) -> OpenFile {
        OpenFile {
            ino,
            data: Mutex::new(data),
            meta: Mutex::new(meta),
            version: AtomicU64::new(0),
            users: AtomicUsize::new(0),
            writers: AtomicUsize::new(0),
        }
    }

    /// The local metadata when it, not the server's, is the truth.
    pub fn local_metadata(&self) -> Option<Metadata> {
        let meta = self.meta.lock();
        (meta.is_local() && !meta.unlinked).then(|| meta.metadata())
    }
}

pub struct Handle {
    pub file: Arc<OpenFile>,
    pub flags: OpenFlags,
    pub reader: Mutex<ReadSlot>,
    /// Incremented (under the `reader` lock) each time a download of this
    /// handle fails; read before waiting for the lock, it tells a read
    /// whether the download failed while it waited.
    pub read_failures: AtomicU64,
    pub error: Mutex<Option<Error>>,
}

/// The download of a handle, and the error of its last failure.
///
/// The kernel sends several read requests of one file at once; they queue
/// here. When the download fails, the requests that were waiting get its
/// error instead of each opening a new download and waiting for its own
/// timeouts, which would multiply the time a program waits for an error
/// by the number of requests queued.
#[derive(Default)]
pub struct ReadSlot {
    /// The download, with the file version it reads.
    pub current: Option<(u64, ReadAhead)>,
    pub last_error: Option<Error>,
}

impl ReadSlot {
    /// Ends the download after it failed with `err`.
    pub fn fail(&mut self, failures: &AtomicU64, err: &Error) {
        self.current = None;
        self.last_error = Some(err.clone());
        failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Handle {
    pub fn new(file: Arc<OpenFile>, flags: OpenFlags) -> Handle {
        Handle {
            file,
            flags,
            reader: Mutex::new(ReadSlot::default()),
            read_failures: AtomicU64::new(0),
            error: Mutex::new(None),
        }
    }

    pub fn sticky(&self) -> Option<Error> {
        self.error.lock().clone()
    }

    pub fn fail(&self, err: &Error) {
        let mut e = self.error.lock();
        if e.is_none() {
            *e = Some(err.clone());
        }
    }
}
