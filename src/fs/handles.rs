//! File handles (one per open descriptor) and the table of open files.
//!
//! Each handle has its own download (read-ahead) and its own sticky error:
//! once an upload of what a handle wrote has failed, every later write,
//! flush and release of that handle reports it, as sshfs does. The table
//! counts, per open file, its users (handles, and internal users such as a
//! truncate of a closed file) and its handles open for writing: the last
//! user closes the file, and a flush with writers left may keep an empty
//! file ready for streaming.
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::Mutex;

use super::errno::Error;
use super::inode::Ino;
use super::open_file::OpenFile;
use super::read_ahead::ReadAhead;
use super::OpenFlags;

struct Entry {
    file: Arc<OpenFile>,
    users: usize,
    writers: usize,
}

#[derive(Default)]
pub struct OpenFiles {
    map: HashMap<Ino, Entry>,
}

impl OpenFiles {
    pub fn get(&self, ino: Ino) -> Option<Arc<OpenFile>> {
        self.map.get(&ino).map(|e| Arc::clone(&e.file))
    }

    /// The open file of `ino` with one more user, if it is open.
    pub fn acquire_if_open(&mut self, ino: Ino) -> Option<Arc<OpenFile>> {
        let entry = self.map.get_mut(&ino)?;
        entry.users += 1;
        Some(Arc::clone(&entry.file))
    }

    /// The open file of `ino` with one more user, made by `open` if the
    /// file is not open.
    pub fn acquire(&mut self, ino: Ino, open: impl FnOnce() -> OpenFile) -> Arc<OpenFile> {
        let entry = self.map.entry(ino).or_insert_with(|| Entry {
            file: Arc::new(open()),
            users: 0,
            writers: 0,
        });
        entry.users += 1;
        Arc::clone(&entry.file)
    }

    /// One user less; true when it was the last (the file is closed).
    pub fn release(&mut self, file: &Arc<OpenFile>) -> bool {
        let Some(entry) = self.map.get_mut(&file.ino) else {
            return false;
        };
        if !Arc::ptr_eq(&entry.file, file) {
            return false;
        }
        entry.users = entry.users.saturating_sub(1);
        if entry.users == 0 {
            self.map.remove(&file.ino);
            return true;
        }
        false
    }

    pub fn add_writer(&mut self, ino: Ino) {
        if let Some(entry) = self.map.get_mut(&ino) {
            entry.writers += 1;
        }
    }

    pub fn remove_writer(&mut self, ino: Ino) {
        if let Some(entry) = self.map.get_mut(&ino) {
            entry.writers = entry.writers.saturating_sub(1);
        }
    }

    /// Handles open for writing on `ino`.
    pub fn writers(&self, ino: Ino) -> usize {
        self.map.get(&ino).map_or(0, |e| e.writers)
    }

    pub fn all(&self) -> Vec<Arc<OpenFile>> {
        self.map.values().map(|e| Arc::clone(&e.file)).collect()
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
