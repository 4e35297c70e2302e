//! Changing an open file's content: opening and closing it, writes wherever
//! its bytes are (server, spool, streaming upload), staging (fetching the
//! server's copy into a spool) and truncation. Uploads are decided in
//! `upload`.
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::changes::{Changes, ServerCopy};
use super::open_file::{Appending, FileState, LocalCopy, OpenFile};
use super::overlay::{self, Overlay};
use super::spool::Spool;
use super::{not_found, Error, ErrorKind, Fs, Ino, Result, FETCH_CHUNK, STREAM_AFTER};
use crate::store::path::split;
use crate::store::{FileKind, StoreAtOffset};

impl Fs {
    /// The open file of `ino`, opened if it is not, with one more user.
    pub(super) fn acquire(&self, ino: Ino) -> Result<Arc<OpenFile>> {
        let existing = self.files.lock().acquire_if_open(ino);
        let file = match existing {
            Some(f) => f,
            None => {
                let path = self.path(ino)?;
                let known = if self.config.revalidate_on_open {
                    self.revalidate(&path)?
                } else {
                    self.resolve(&path)?.map(|(meta, _)| meta)
                };
                let mut meta = known.ok_or_else(|| not_found(&path))?;
                if self.content.is_some()
                    && meta.kind == FileKind::File
                    && meta.size >= super::content::BLOCK_SIZE
                {
                    // Cached contents are keyed by size and time: a time
                    // rounded to the minute could not tell a rewrite apart.
                    // Not for small files: the MDTM would add a round trip
                    // to each of their downloads (they are cached where the
                    // exact time is known anyway: MLSD, a stat).
                    meta = self.with_exact_mtime(&path, meta);
                }
                if meta.kind == FileKind::Dir {
                    return Err(Error::new(
                        ErrorKind::IsDir,
                        format!("{path}: is a directory"),
                    ));
                }
                let now = SystemTime::now();
                self.files
                    .lock()
                    .acquire(ino, || OpenFile::opened(ino, &meta, now))
            }
        };
        self.inodes.lock().pin(ino);
        Ok(file)
    }

    /// One user less; the last one closes the file (uploading what is left).
    pub(super) fn release_file(&self, file: &Arc<OpenFile>) {
        let last = self.files.lock().release(file);
        if last && file.state().has_changes() {
            if let Err(e) = self.save(file) {
                log::error!("changes were lost at close: {e}");
            }
        }
        if last && matches!(*file.state(), FileState::NotOnServer) {
            // It existed only while open (created here, never stored): with
            // its last descriptor it is gone, under whatever name it has now.
            if let Some(path) = self.inodes.lock().path(file.ino) {
                self.cache.invalidate(&path);
            }
        }
        self.inodes.lock().unpin(file.ino);
    }

    pub(super) fn new_spool(&self) -> Spool {
        Spool::new(
            self.config.spool_memory_limit,
            self.config.spool_dir.clone(),
            Arc::clone(&self.spool_stats),
        )
    }

    fn empty_copy(&self, replaces: bool) -> LocalCopy {
        LocalCopy {
            spool: self.new_spool(),
            replaces,
            pending: Default::default(),
            changes: Changes::Whole,
        }
    }

    /// The file changed here now: its time is now, and a time set before is
    /// overridden.
    fn touched(file: &OpenFile, state: &mut FileState) {
        file.view().mtime = SystemTime::now();
        if let Some(pending) = state.pending_mut() {
            pending.mtime = None;
        }
    }

    /// Writes into the file's content wherever it is (state lock held).
    pub(super) fn write_locked(
        &self,
        file: &OpenFile,
        state: &mut FileState,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        let spool_error = |e: std::io::Error| Error::local(&e, "writing the spool");
        loop {
            match state {
                // Writing at the end: only the new bytes go to the server.
                FileState::Remote if self.appends_allowed() && offset == file.view().size => {
                    *state = FileState::Appending(Appending {
                        base: offset,
                        tail: self.new_spool(),
                        pending: Default::default(),
                    });
                }
                // A small write inside a big file: nothing fetched. Else
                // the server's content is the base (even when the cache
                // says it is empty: it may not be any more).
                FileState::Remote => {
                    if !self.start_patching(file, state, offset, data.len() as u64) {
                        self.stage(file, state)?;
                    }
                }
                FileState::Patching(o) => match o.admits(offset, data.len() as u64) {
                    Ok(()) => {
                        o.write(offset, data).map_err(spool_error)?;
                        Self::touched(file, state);
                        return Ok(());
                    }
                    Err(why) => {
                        log::debug!("inode {}: fetched to be written: {why}", file.ino);
                        self.stage(file, state)?;
                    }
                },
                FileState::Appending(a) if offset >= a.base => {
                    a.tail
                        .write_at(offset - a.base, data)
                        .map_err(spool_error)?;
                    Self::touched(file, state);
                    return Ok(());
                }
                FileState::Appending(_) => self.stage(file, state)?,
                FileState::NotOnServer => *state = FileState::Filling(self.empty_copy(false)),
                FileState::SavedEmpty => *state = FileState::Filling(self.empty_copy(true)),
                FileState::Orphaned(spool) => {
                    spool
                        .get_or_insert_with(|| self.new_spool())
                        .write_at(offset, data)
                        .map_err(spool_error)?;
                    Self::touched(file, state);
                    return Ok(());
                }
                FileState::Staged(copy) => {
                    let len = copy.spool.len();
                    copy.spool.write_at(offset, data).map_err(spool_error)?;
                    copy.changes.wrote(len, offset, data.len() as u64);
                    Self::touched(file, state);
                    return Ok(());
                }
                FileState::Filling(copy) => {
                    let in_order = offset == copy.spool.len();
                    copy.spool.write_at(offset, data).map_err(spool_error)?;
                    let big =
                        copy.spool.len() >= self.config.spool_memory_limit.min(STREAM_AFTER) as u64;
                    Self::touched(file, state);
                    if !in_order {
                        state.stop_filling();
                    } else if big {
                        self.start_stream(file, state)?;
                    }
                    return Ok(());
                }
                FileState::Streaming(s) => match s.upload.write(offset, data) {
                    Ok(true) => {
                        Self::touched(file, state);
                        return Ok(());
                    }
                    Ok(false) => self.unstream(file, state)?,
                    Err(e) => return Err(self.stream_failed(file, state, e.into())),
                },
            }
        }
    }

    /// Remote → Patching, for a write of `n` bytes at `offset` inside a big
    /// file that may be patched in place, on a server that writes REST +
    /// STOR in place (probed on first need): nothing is fetched (see
    /// `overlay`). Returns whether it did; if not, the file is staged.
    fn start_patching(&self, file: &OpenFile, state: &mut FileState, offset: u64, n: u64) -> bool {
        let (size, server_mtime, server_mtime_exact) = {
            let view = file.view();
            (view.size, view.mtime, view.mtime_exact)
        };
        // Async write-back uploads whole files from its spool; the server's
        // copy under the overlay may also be older than a waiting upload.
        if !self.config.patch_in_place
            || self.is_write_back()
            || size < self.config.patch_min_size
            || overlay::admits(size, &[], offset, n).is_err()
        {
            return false;
        }
        let Some(path) = self.inodes.lock().path(file.ino) else {
            return false;
        };
        if self.store.store_at_offset(split(&path).0) != StoreAtOffset::InPlace {
            return false;
        }
        // Where the server tells exact times, the time to find unchanged
        // at the save is asked now, and the size the mount shows checked.
        let mtime = if self.store.capabilities().exact_listing_mtime {
            match self.patch_base_stat(&path, size) {
                Some(meta) if meta.size == size && meta.mtime_exact => meta.mtime,
                _ => return false,
            }
        } else {
            None
        };
        *state = FileState::Patching(Overlay {
            base: ServerCopy { size, mtime },
            server_mtime,
            server_mtime_exact,
            // Straight to a file: in memory the bytes before the first
            // write would be held too (as zeros); a file is sparse.
            spool: Spool::new(
                0,
                self.config.spool_dir.clone(),
                Arc::clone(&self.spool_stats),
            ),
            written: Vec::new(),
            pending: Default::default(),
        });
        self.unfetched_patches.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Fetches the server's content of the file into a spool (state lock
    /// held): Remote → Staged. A file the server has empty, or does not
    /// have, or whose path is gone, starts from empty. An appended file
    /// gets the server's bytes before its end, then what was appended; a
    /// patched one the server's bytes with the written ranges over them.
    pub(super) fn stage(&self, file: &OpenFile, state: &mut FileState) -> Result<()> {
        let path = self.inodes.lock().path(file.ino);
        if let Some(path) = &path {
            // Async write-back: the server's copy must be the one closed last.
            self.barrier(path);
        }
        let (mut spool, mut changes) = match (&*state, path) {
            (FileState::Remote | FileState::Appending(_) | FileState::Patching(_), Some(path)) => {
                let mtime = self.patch_base_mtime(&path, file.view().size);
                let spool = self.fetch(&path)?;
                let base = ServerCopy {
                    size: spool.len(),
                    mtime,
                };
                (spool, Changes::fetched(base))
            }
            _ => (self.new_spool(), Changes::Whole),
        };
        let replaces = matches!(
            state,
            FileState::Remote
                | FileState::SavedEmpty
                | FileState::Appending(_)
                | FileState::Patching(_)
        );
        let mut pending = Default::default();
        if let FileState::Appending(a) = &*state {
            // The server's copy may have changed since (another client):
            // its first `base` bytes are what this file was appended to.
            let fetched = spool.len();
            spool
                .set_len(a.base)
                .and_then(|()| append_spool(&mut spool, &a.tail))
                .map_err(|e| Error::local(&e, "writing the spool"))?;
            changes.resized(fetched, a.base);
            changes.wrote(a.base, a.base, a.tail.len());
            pending = a.pending;
        }
        if let FileState::Patching(o) = &*state {
            // Over the server's copy as it is now (another client may have
            // changed it since the writes began).
            for range in &o.written {
                let len = spool.len();
                copy_spool(&o.spool, range.clone(), &mut spool, range.start)
                    .map_err(|e| Error::local(&e, "writing the spool"))?;
                changes.wrote(len, range.start, range.end - range.start);
            }
            pending = o.pending;
        }
        *state = FileState::Staged(LocalCopy {
            spool,
            replaces,
            pending,
            changes,
        });
        Ok(())
    }

    /// A new spool holding the server's content of `path`.
    pub(super) fn fetch(&self, path: &[u8]) -> Result<Spool> {
        let mut spool = self.new_spool();
        let mut stream = self.store.open_read(path, 0)?;
        let mut buf = vec![0u8; FETCH_CHUNK];
        let mut offset = 0;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(spool);
            }
            spool
                .write_at(offset, &buf[..n])
                .map_err(|e| Error::local(&e, "writing the spool"))?;
            offset += n as u64;
        }
    }

    pub(super) fn truncate_file(&self, file: &OpenFile, size: u64) -> Result<()> {
        let mut state = file.state();
        if let FileState::Patching(o) = &*state {
            if o.base.size == size {
                return Ok(());
            }
            self.stage(file, &mut state)?;
        }
        if let FileState::Streaming(s) = &*state {
            if s.upload.size() == size {
                return Ok(());
            }
            self.unstream(file, &mut state)?;
        }
        if matches!(&*state, FileState::Appending(a) if size < a.base) {
            self.stage(file, &mut state)?;
        }
        let server_side = matches!(
            &*state,
            FileState::Remote | FileState::NotOnServer | FileState::SavedEmpty
        );
        if server_side {
            if matches!(&*state, FileState::Remote) && size != 0 && file.view().size == size {
                return Ok(());
            }
            if size == 0 {
                let replaces = !matches!(&*state, FileState::NotOnServer);
                *state = FileState::Filling(self.empty_copy(replaces));
            } else {
                self.stage(file, &mut state)?;
            }
        }
        let (spool, size, changes) = match &mut *state {
            FileState::Appending(a) => (&mut a.tail, size - a.base, None),
            FileState::Filling(c) | FileState::Staged(c) => {
                (&mut c.spool, size, Some(&mut c.changes))
            }
            FileState::Orphaned(spool) => {
                (spool.get_or_insert_with(|| self.new_spool()), size, None)
            }
            // Every other state became one of those above.
            _ => return Ok(()),
        };
        let was = spool.len();
        spool
            .set_len(size)
            .map_err(|e| Error::local(&e, "truncating the spool"))?;
        if let Some(changes) = changes {
            changes.resized(was, size);
        }
        Self::touched(file, &mut state);
        // Cut back to nothing, or left as it was, a file being filled in
        // order can still stream; anything else is staged.
        if matches!(&*state, FileState::Filling(_)) && size != 0 && size != was {
            state.stop_filling();
        }
        Ok(())
    }
}

/// Copies all of `from` to the end of `to`.
fn append_spool(to: &mut Spool, from: &Spool) -> std::io::Result<()> {
    let at = to.len();
    copy_spool(from, 0..from.len(), to, at)
}

/// Copies the bytes of `range` in `from` into `to` at `at`.
fn copy_spool(from: &Spool, range: Range<u64>, to: &mut Spool, at: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; FETCH_CHUNK];
    let mut offset = range.start;
    while offset < range.end {
        let want = buf.len().min((range.end - offset) as usize);
        let n = from.read_at(offset, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        to.write_at(at + (offset - range.start), &buf[..n])?;
        offset += n as u64;
    }
    Ok(())
}
