//! When local changes go to the server: starting a streaming upload,
//! falling back to staging, the upload at flush, and what happens after it
//! succeeded (times and modes applied, cache updated) or failed (changes
//! dropped, handles told).
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::handle::{Data, OpenFile};
use super::rescue;
use super::spool::Spool;
use super::writer::{self, Dest, Streamer};
use super::{show, Error, ErrorKind, Fs, Result, FETCH_CHUNK};
use crate::store::{join, split_parent, FileKind, Metadata};

impl Fs {
    pub(super) fn dest_path(&self, dest: &Dest) -> Result<Vec<u8>> {
        let dir = self.inodes.lock().path(dest.parent).ok_or_else(|| {
            Error::new(
                ErrorKind::Store(crate::store::ErrorKind::NotFound),
                "the directory of an upload in progress was removed",
            )
        })?;
        Ok(join(&dir, &dest.name))
    }

    /// Stops a streaming upload and deletes what it left.
    pub(super) fn abandon_stream(&self, s: Streamer) {
        self.drop_stream(s, true);
    }

    pub(super) fn drop_stream(&self, s: Streamer, delete: bool) {
        let dest = s.dest.clone();
        s.abandon();
        if delete {
            if let Ok(path) = self.dest_path(&dest) {
                writer::delete_quietly(&*self.store, &path);
            }
        }
        self.inodes.lock().unpin(dest.parent);
    }

    /// Moves a staged file, written in order from its start, to a streaming
    /// upload. If the upload cannot start for a reason that may pass, the
    /// file stays staged (and is uploaded at flush).
    pub(super) fn start_stream(&self, file: &OpenFile, d: &mut Data) -> Result<()> {
        let location = self.inodes.lock().location(file.ino);
        let Some((parent, name)) = location else {
            return Ok(());
        };
        let Ok(dir) = self.path(parent) else {
            return Ok(());
        };
        let temp = file.meta.lock().on_server && !self.renames_refused.load(Ordering::Relaxed);
        let dest = Dest {
            parent,
            name: if temp { writer::temp_name(&name) } else { name },
            temp,
        };
        let up_path = join(&dir, &dest.name);
        let upload = match self.store.upload(&up_path) {
            Ok(u) => u,
            Err(e) => {
                file.meta.lock().sequential = false;
                if matches!(
                    e.kind,
                    crate::store::ErrorKind::PermissionDenied | crate::store::ErrorKind::NoSpace
                ) {
                    return Err(Error::from(e).into_upload());
                }
                log::debug!("{}: staying staged: {e}", show(&up_path));
                return Ok(());
            }
        };
        let mut s = match Streamer::start(upload, dest) {
            Ok(s) => s,
            Err(e) => {
                file.meta.lock().sequential = false;
                writer::delete_quietly(&*self.store, &up_path);
                log::debug!("{}: staying staged: {e}", show(&up_path));
                return Ok(());
            }
        };
        self.inodes.lock().pin(parent);
        let Data::Staged(spool) = std::mem::replace(d, Data::Remote) else {
            return Ok(());
        };
        let mut buf = vec![0u8; FETCH_CHUNK];
        let mut offset = 0;
        while offset < spool.len() {
            let n = match spool.read_at(offset, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    self.abandon_stream(s);
                    *d = Data::Staged(spool);
                    return Err(Error::local(&e, "reading the write spool"));
                }
            };
            if n == 0 {
                break;
            }
            match s.write(offset, &buf[..n]) {
                Ok(_) => {}
                Err(e) => {
                    *d = Data::Streaming(s);
                    return Err(self.stream_failed(file, d, e.into()));
                }
            }
            offset += n as u64;
        }
        *d = Data::Streaming(s);
        Ok(())
    }

    /// A streaming upload broke: its bytes are lost. The file is what the
    /// server has again; returns the error to report.
    pub(super) fn stream_failed(&self, file: &OpenFile, d: &mut Data, err: Error) -> Error {
        if let Data::Streaming(s) = std::mem::replace(d, Data::Remote) {
            self.abandon_stream(s);
        }
        let err = err.into_upload();
        let path = self.inodes.lock().path(file.ino);
        log::warn!(
            "upload of {} failed: {err}",
            path.as_deref().map(show).unwrap_or_default()
        );
        self.drop_local_changes(file, path.as_deref());
        err
    }

    /// Back from streaming to staging: finishes the upload, fetches what it
    /// stored, and adds the writes held ahead of it.
    pub(super) fn unstream(&self, file: &OpenFile, d: &mut Data) -> Result<()> {
        let Data::Streaming(mut s) = std::mem::replace(d, Data::Remote) else {
            return Ok(());
        };
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        let ahead = s.take_ahead();
        let dest = s.dest.clone();
        let dest_path = match self.dest_path(&dest) {
            Ok(p) => p,
            Err(e) => {
                *d = Data::Streaming(s);
                return Err(self.stream_failed(file, d, e));
            }
        };
        self.inodes.lock().unpin(dest.parent);
        let fetched = s.finish().map_err(Error::from).and_then(|()| {
            let mut spool = self.fetch(&dest_path)?;
            for (off, chunk) in &ahead {
                spool
                    .write_at(*off, chunk)
                    .map_err(|e| Error::local(&e, "writing the spool"))?;
            }
            Ok(spool)
        });
        let current = self.inodes.lock().path(file.ino);
        match fetched {
            Ok(spool) => {
                if dest.temp || current.as_deref() != Some(&dest_path[..]) {
                    writer::delete_quietly(&*self.store, &dest_path);
                } else {
                    // A new file's partial upload is there now: replace it
                    // through a temporary name from here on.
                    file.meta.lock().on_server = true;
                }
                let mut m = file.meta.lock();
                m.size = spool.len();
                m.sequential = false;
                *d = Data::Staged(spool);
                Ok(())
            }
            Err(e) => {
                writer::delete_quietly(&*self.store, &dest_path);
                let err = e.into_upload();
                log::warn!("upload of {} failed: {err}", show(&dest_path));
                self.drop_local_changes(file, current.as_deref());
                Err(err)
            }
        }
    }

    /// Uploads the file's local changes, if any; on failure they are
    /// dropped, every writing handle of the file is told, and the error is
    /// returned.
    pub(super) fn save(&self, file: &Arc<OpenFile>) -> Result<()> {
        let mut d = file.data.lock();
        let (dirty, unlinked) = {
            let m = file.meta.lock();
            (m.dirty, m.unlinked)
        };
        if unlinked {
            if let Data::Streaming(s) = std::mem::replace(&mut *d, Data::Remote) {
                self.abandon_stream(s);
            }
            return Ok(());
        }
        if !dirty {
            return Ok(());
        }
        let Some(path) = self.inodes.lock().path(file.ino) else {
            return Ok(());
        };
        if matches!(&*d, Data::Streaming(s) if s.has_ahead()) {
            self.unstream(file, &mut d)?;
        }
        let result = match std::mem::replace(&mut *d, Data::Remote) {
            Data::Remote => Ok(()),
            Data::Streaming(s) => self.finish_stream(s, &path),
            Data::Staged(spool) => {
                let r = self.upload_staged(file, &spool, &path);
                if r.is_ok() {
                    self.staged.fetch_add(1, Ordering::Relaxed);
                    // Shells and dd open a new file, dup2 it and close the
                    // first descriptor: a flush before any data is written.
                    // Keep the known (empty) content, so that the writes
                    // which follow can still stream instead of fetching the
                    // empty file back and uploading it whole at close.
                    if spool.len() == 0 && file.writers.load(Ordering::SeqCst) > 0 {
                        *d = Data::Staged(spool);
                        file.meta.lock().sequential = true;
                    }
                } else if self.shutting_down.load(Ordering::SeqCst) {
                    self.keep_locally(&spool, &path);
                }
                r
            }
        };
        match result {
            Ok(()) => {
                self.saved(file, &path);
                Ok(())
            }
            Err(e) => {
                let e = e.into_upload();
                log::warn!("upload of {} failed: {e}", show(&path));
                self.drop_local_changes(file, Some(&path));
                for h in self.handles.lock().values() {
                    if Arc::ptr_eq(&h.file, file) && h.flags.write {
                        h.fail(&e);
                    }
                }
                Err(e)
            }
        }
    }

    /// The mount is ending and `path` could not be uploaded: its content
    /// goes to the spool directory rather than away with the spool.
    fn keep_locally(&self, spool: &Spool, path: &[u8]) {
        match rescue::keep(spool, &self.config.spool_dir, path) {
            Ok(kept) => log::error!(
                "{} was not uploaded; its content is kept in {}",
                show(path),
                kept.display()
            ),
            Err(e) => log::error!(
                "{} was not uploaded, and keeping its content locally failed too: {e}",
                show(path)
            ),
        }
    }

    pub(super) fn finish_stream(&self, s: Streamer, path: &[u8]) -> Result<()> {
        let dest = s.dest.clone();
        let dest_path = self.dest_path(&dest);
        self.inodes.lock().unpin(dest.parent);
        let dest_path = match dest_path {
            Ok(p) => p,
            Err(e) => {
                s.abandon();
                return Err(e);
            }
        };
        if let Err(e) = s.finish() {
            writer::delete_quietly(&*self.store, &dest_path);
            return Err(e.into());
        }
        if dest.temp {
            writer::commit(&*self.store, &dest_path, path, &self.renames_refused)?;
        } else if dest_path != path {
            if let Err(e) = writer::rename_replacing(&*self.store, &dest_path, path) {
                writer::delete_quietly(&*self.store, &dest_path);
                return Err(e.into());
            }
        }
        self.streamed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn upload_staged(&self, file: &OpenFile, spool: &Spool, path: &[u8]) -> Result<()> {
        let on_server = file.meta.lock().on_server;
        if on_server && !self.renames_refused.load(Ordering::Relaxed) {
            let (dir, name) = split_parent(path);
            let temp = join(dir, &writer::temp_name(name));
            writer::upload_spool(&*self.store, &temp, spool)?;
            writer::commit(&*self.store, &temp, path, &self.renames_refused)?;
        } else {
            writer::upload_spool(&*self.store, path, spool)?;
        }
        Ok(())
    }

    /// After a successful upload: the file is what the server has; times and
    /// modes set meanwhile are applied now.
    pub(super) fn saved(&self, file: &OpenFile, path: &[u8]) {
        let (size, mode, pending_mode, pending_mtime) = {
            let mut m = file.meta.lock();
            m.dirty = false;
            m.on_server = true;
            (
                m.size,
                m.mode,
                m.pending_mode.take(),
                m.pending_mtime.take(),
            )
        };
        file.version.fetch_add(1, Ordering::SeqCst);
        self.cache.forget_exact_mtime(path);
        let mut meta = Metadata {
            kind: FileKind::File,
            size,
            mtime: Some(SystemTime::now()),
            mtime_exact: true,
            mode,
            symlink_target: None,
        };
        if let Some(mode) = pending_mode {
            match self.apply_chmod(path, mode) {
                Ok(true) => {}
                Ok(false) => meta.mode = None,
                Err(e) => {
                    meta.mode = None;
                    log::warn!("setting the mode of {}: {e}", show(path));
                }
            }
        }
        let mut exact = None;
        if let Some(t) = pending_mtime {
            match self.apply_mtime(path, t) {
                Ok(true) => exact = Some(t),
                Ok(false) => {}
                Err(e) => log::warn!("setting the time of {}: {e}", show(path)),
            }
        }
        if let Some(t) = exact {
            meta.mtime = Some(t);
        }
        file.meta.lock().mtime = meta.mtime.unwrap_or(self.mounted_at);
        self.cache.update(path, meta);
        if let Some(t) = exact {
            self.cache.set_exact_mtime(path, size, t);
        }
    }

    /// Forgets the local changes of a file after a failed upload: from now
    /// on it is what the server has.
    pub(super) fn drop_local_changes(&self, file: &OpenFile, path: Option<&[u8]>) {
        file.version.fetch_add(1, Ordering::SeqCst);
        let server = match path {
            Some(p) => {
                self.cache.invalidate(p);
                self.resolve(p).ok().flatten()
            }
            None => None,
        };
        let mut m = file.meta.lock();
        m.dirty = false;
        m.pending_mode = None;
        m.pending_mtime = None;
        m.sequential = false;
        match server {
            Some((meta, _)) => {
                m.size = meta.size;
                m.mtime = meta.mtime.unwrap_or(self.mounted_at);
                m.mode = meta.mode;
                m.on_server = true;
            }
            None => {
                m.size = 0;
                m.on_server = false;
            }
        }
    }
}
