//! Reading an open file: from its local copy when it has one, otherwise
//! from a download kept open per handle (see `read_ahead`).
//!
//! The kernel sends several read requests of one file at once; they queue
//! on the handle's download slot. When the download fails, the requests
//! that were waiting get its error instead of each opening a new download
//! and waiting for its own timeouts.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::content::{ContentCache, Filling, Version, BLOCK_SIZE};
use super::handles::Handle;
use super::open_file::FileState;
use super::read_ahead::ReadAhead;
use super::segmented::SegmentedStream;
use super::spool::Spool;
use super::{Error, ErrorKind, Fs, Result};
use crate::store::{ReadStream, StorePath};

impl Fs {
    pub(super) fn read_handle(&self, h: &Handle, offset: u64, size: u32) -> Result<Vec<u8>> {
        let file = &h.file;
        // Bytes written over the server's copy (`Patching`), put over what
        // is read from it.
        let mut held: Vec<(u64, Vec<u8>)> = Vec::new();
        let server = {
            let mut state = file.state();
            if matches!(&*state, FileState::Streaming(_)) {
                self.unstream(file, &mut state)?;
            }
            if let FileState::Appending(a) = &*state {
                if offset >= a.base {
                    return read_spool(&a.tail, offset - a.base, size);
                }
                // Before the end the server had: all of it is needed here
                // now (a read of an appended file is rare; `>>` never reads).
                self.stage(file, &mut state)?;
            }
            if let Some(spool) = state.spool() {
                return read_spool(spool, offset, size);
            }
            if matches!(&*state, FileState::SavedEmpty | FileState::NotOnServer) {
                return Ok(Vec::new());
            }
            match &*state {
                FileState::Patching(o) => {
                    let end = (offset + u64::from(size)).min(o.base.size);
                    let pieces = o.pieces(offset..end);
                    if offset >= end || pieces.first() == Some(&(offset..end)) {
                        return read_spool(&o.spool, offset, (end.max(offset) - offset) as u32);
                    }
                    for piece in pieces {
                        let len = (piece.end - piece.start) as u32;
                        held.push((piece.start, read_spool(&o.spool, piece.start, len)?));
                    }
                    ServerView {
                        size: o.base.size,
                        mtime: o.server_mtime,
                        mtime_exact: o.server_mtime_exact,
                    }
                }
                _ => {
                    let view = file.view();
                    ServerView {
                        size: view.size,
                        mtime: view.mtime,
                        mtime_exact: view.mtime_exact,
                    }
                }
            }
        };
        let mut data = self.read_remote(h, offset, size, &server)?;
        for (at, bytes) in held {
            let from = (at - offset) as usize;
            if data.len() < from + bytes.len() {
                // The server's copy is shorter now than when written.
                data.resize(from + bytes.len(), 0);
            }
            data[from..from + bytes.len()].copy_from_slice(&bytes);
        }
        Ok(data)
    }

    /// `size` bytes at `offset` of the server's copy of an open file, which
    /// is `server` (through the content cache and the handle's download).
    fn read_remote(
        &self,
        h: &Handle,
        offset: u64,
        size: u32,
        server: &ServerView,
    ) -> Result<Vec<u8>> {
        let file = &h.file;
        let path = self
            .path(file.ino)
            .map_err(|_| vanished(&format!("inode {}", file.ino)))?;
        if let Some(read) = self.read_write_back(&path, offset, size) {
            // Closed, and waiting for its upload: the spool is the content.
            return read;
        }
        let content = self.content.as_ref().and_then(|cache| {
            let version = Version {
                size: server.size,
                mtime: Some(server.mtime),
            };
            // A rounded time (a LIST server without MDTM) cannot tell a
            // rewrite of the same size apart: such files are not cached.
            server.mtime_exact.then_some((cache, version))
        });
        if let Some((cache, version)) = &content {
            if offset >= version.size {
                // The end of the file as opened (the kernel asks no further).
                return Ok(Vec::new());
            }
            if let Some(data) = read_cached(cache, &path, version, offset, size) {
                return Ok(data);
            }
        }
        let version = file.version();
        let file_size = server.size;
        let failures_before = h.read_failures.load(Ordering::SeqCst);
        let mut slot = h.reader.lock();
        if h.read_failures.load(Ordering::SeqCst) != failures_before {
            if let Some(e) = &slot.last_error {
                return Err(e.clone());
            }
        }
        if let Some((v, r)) = &slot.current {
            if *v != version || !r.covers(offset) {
                slot.current = None;
            }
        }
        let reader = match &mut slot.current {
            Some((_, r)) => r,
            None => match self.start_download(&path, offset, file_size, content) {
                Ok(r) => &mut slot.current.insert((version, r)).1,
                Err(e) => {
                    let e = self.vanished_if_gone(e, &path);
                    slot.fail(&h.read_failures, &e);
                    return Err(e);
                }
            },
        };
        match reader.read(offset, size as usize) {
            Ok(data) => Ok(data),
            Err(e) => {
                let e = self.vanished_if_gone(Error::from(e), &path);
                slot.fail(&h.read_failures, &e);
                Err(e)
            }
        }
    }

    /// A download of an open file that the server no longer has: the
    /// file vanished while open (ESTALE), and the cache forgets it.
    fn vanished_if_gone(&self, e: Error, path: &StorePath) -> Error {
        if !e.is_not_found() {
            return e;
        }
        self.cache.invalidate(path);
        vanished(&path.to_string())
    }

    /// A download from `offset`; with the content cache, from the start of
    /// `offset`'s block, so that the block can be stored whole. A file large
    /// enough for segments gets a stream that may fetch ahead on several
    /// sessions once it is read in order (`segmented`); the content cache
    /// stores what it hands out, in order, as from one stream.
    fn start_download(
        &self,
        path: &[u8],
        offset: u64,
        size: u64,
        content: Option<(&Arc<ContentCache>, Version)>,
    ) -> Result<ReadAhead> {
        let start = match &content {
            Some(_) => offset - offset % BLOCK_SIZE,
            None => offset,
        };
        let stream = self.store.open_read(path, start)?;
        let settings = self.segments.settings;
        let (stream, progress) = if settings.extra_streams > 0
            && size.saturating_sub(start) >= 2 * settings.segment_size
        {
            let progress = Arc::new(AtomicU64::new(start));
            let segmented = SegmentedStream::new(
                &self.segments,
                Arc::clone(&self.store),
                path,
                size,
                stream,
                offset,
                Arc::clone(&progress),
            );
            (Box::new(segmented) as Box<dyn ReadStream>, Some(progress))
        } else {
            (stream, None)
        };
        let stream = match content {
            Some((cache, version)) => {
                Box::new(Filling::new(stream, Arc::clone(cache), path, version))
                    as Box<dyn ReadStream>
            }
            None => stream,
        };
        ReadAhead::start(stream, self.config.read_ahead, progress)
            .map_err(|e| Error::local(&e, "starting a download thread"))
    }
}

/// `size` bytes at `offset` from the content cache, if every block they
/// touch is there (fewer at the end of the file).
fn read_cached(
    cache: &ContentCache,
    path: &[u8],
    version: &Version,
    offset: u64,
    size: u32,
) -> Option<Vec<u8>> {
    let end = (offset + u64::from(size)).min(version.size);
    if offset >= end {
        return None;
    }
    let mut out = Vec::with_capacity((end - offset) as usize);
    let mut at = offset;
    while at < end {
        let index = at / BLOCK_SIZE;
        let block_start = index * BLOCK_SIZE;
        let from = (at - block_start) as usize;
        let to = ((end - block_start).min(BLOCK_SIZE)) as usize;
        let data = cache.read(path, version, index, from, to)?;
        if data.len() != to - from {
            // A block shorter than the version says: not this version's.
            return None;
        }
        at += data.len() as u64;
        out.extend_from_slice(&data);
    }
    Some(out)
}

/// The server's copy of an open file, as the mount knows it.
struct ServerView {
    size: u64,
    mtime: std::time::SystemTime,
    mtime_exact: bool,
}

fn read_spool(spool: &Spool, offset: u64, size: u32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    let n = spool
        .read_at(offset, &mut buf)
        .map_err(|e| Error::local(&e, "reading the write spool"))?;
    buf.truncate(n);
    Ok(buf)
}

fn vanished(what: &str) -> Error {
    Error::new(
        ErrorKind::Vanished,
        format!("{what}: removed from the server while open"),
    )
}
