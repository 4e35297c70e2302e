//! Where an upload is decided: when local changes go to the server (a
//! file filled in order starts streaming, a stream that cannot go on falls
//! back to staging, flush uploads what is left), and what follows an upload
//! that succeeded (times and modes applied, cache updated) or failed
//! (changes dropped, handles told).
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::append::Appended;
use super::changes::Changes;
use super::open_file::{FileState, LocalCopy, OpenFile, PendingAttrs, Streaming};
use super::patch::Patched;
use super::replace;
use super::rescue;
use super::resume::Sending;
use super::spool::Spool;
use super::streamer::{Dest, Streamer};
use super::verify::Checked;
use super::{Error, ErrorKind, Fs, Result, FETCH_CHUNK};
use crate::store::path::{join, shown, split};
use crate::store::{FileKind, Metadata, StorePath};

impl Fs {
    pub(super) fn dest_path(&self, dest: &Dest) -> Result<StorePath> {
        let dir = self.inodes.lock().path(dest.parent).ok_or_else(|| {
            Error::new(
                ErrorKind::Store(crate::store::ErrorKind::NotFound),
                "the directory of an upload in progress was removed",
            )
        })?;
        Ok(dir.join(&dest.name))
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
                replace::delete_quietly(&*self.store, &path);
            }
        }
        self.inodes.lock().unpin(dest.parent);
    }

    /// Filling → Streaming, once a file written in order from its start is
    /// big enough. If the upload cannot start for a reason that may pass,
    /// the file is staged instead (and uploaded at flush).
    pub(super) fn start_stream(&self, file: &OpenFile, state: &mut FileState) -> Result<()> {
        let FileState::Filling(copy) = &*state else {
            return Ok(());
        };
        if self.is_write_back() {
            // The whole file goes to the write-back spool at close.
            return Ok(());
        }
        let location = self.inodes.lock().location(file.ino);
        let Some((parent, name)) = location else {
            state.stop_filling();
            return Ok(());
        };
        let Ok(dir) = self.path(parent) else {
            state.stop_filling();
            return Ok(());
        };
        let replaces = copy.replaces;
        // New files too: while it streams, and after a crash, no partial
        // file stands under the real name.
        let temp = self.temp_names();
        let dest = Dest {
            parent,
            name: if temp {
                replace::temp_name(&name)
            } else {
                name
            },
            temp,
        };
        let up_path = dir.join(&dest.name);
        let upload = match self.store.upload(&up_path) {
            Ok(u) => u,
            Err(e) => {
                state.stop_filling();
                if matches!(
                    e.kind,
                    crate::store::ErrorKind::PermissionDenied | crate::store::ErrorKind::NoSpace
                ) {
                    // Refused, not just unreachable: the upload at close
                    // would be refused too, so it fails now, as at close.
                    let path = self.inodes.lock().path(file.ino);
                    return Err(self.upload_failed(file, state, path.as_ref(), replaces, e.into()));
                }
                log::debug!("{up_path}: staying staged: {e}");
                return Ok(());
            }
        };
        let sending = Sending::with_stream(
            self.resume_for(up_path.as_bytes()),
            upload,
            self.upload_digest(None),
        );
        let mut upload = match Streamer::start(sending, dest, self.config.upload_window) {
            Ok(s) => s,
            Err(e) => {
                state.stop_filling();
                replace::delete_quietly(&*self.store, &up_path);
                log::debug!("{up_path}: staying staged: {e}");
                return Ok(());
            }
        };
        self.inodes.lock().pin(parent);
        let FileState::Filling(copy) = state.take() else {
            return Ok(());
        };
        let mut buf = vec![0u8; FETCH_CHUNK];
        let mut offset = 0;
        while offset < copy.spool.len() {
            let n = match copy.spool.read_at(offset, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    self.abandon_stream(upload);
                    *state = FileState::Staged(copy);
                    return Err(Error::local(&e, "reading the write spool"));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = upload.write(offset, &buf[..n]) {
                *state = FileState::Streaming(Streaming {
                    upload,
                    replaces,
                    pending: copy.pending,
                });
                return Err(self.stream_failed(file, state, e.into()));
            }
            offset += n as u64;
        }
        *state = FileState::Streaming(Streaming {
            upload,
            replaces,
            pending: copy.pending,
        });
        Ok(())
    }

    /// A streaming upload broke: its bytes are lost. The file is what the
    /// server has again; returns the error to report.
    pub(super) fn stream_failed(
        &self,
        file: &OpenFile,
        state: &mut FileState,
        err: Error,
    ) -> Error {
        let had_file = match state.take() {
            FileState::Streaming(s) => {
                self.abandon_stream(s.upload);
                s.replaces
            }
            other => {
                *state = other;
                return err.into_upload();
            }
        };
        let path = self.inodes.lock().path(file.ino);
        self.upload_failed(file, state, path.as_ref(), had_file, err)
    }

    /// An upload of the file's changes failed with `err`: they are dropped
    /// (see `drop_local_changes`), and every descriptor writing the file
    /// reports the error from now on, whichever request met it (a flush,
    /// or a write, read or truncate that had to end a stream). Returns the
    /// error to report.
    fn upload_failed(
        &self,
        file: &OpenFile,
        state: &mut FileState,
        path: Option<&StorePath>,
        had_file: bool,
        err: Error,
    ) -> Error {
        let err = err.into_upload();
        log::warn!(
            "upload of {} failed: {err}",
            path.map(StorePath::to_string).unwrap_or_default()
        );
        self.drop_local_changes(file, state, path.map(|p| p.as_bytes()), had_file);
        // The handle table is never locked while a file's state is taken,
        // so taking it here, with the state held, cannot deadlock.
        for h in self.handles.lock().values() {
            if std::ptr::eq(&*h.file, file) && h.flags.write {
                h.fail(&err);
            }
        }
        err
    }

    /// Streaming → Staged: finishes the upload, fetches what it stored, and
    /// adds the writes held ahead of it.
    pub(super) fn unstream(&self, file: &OpenFile, state: &mut FileState) -> Result<()> {
        let FileState::Streaming(Streaming {
            upload: mut s,
            replaces,
            pending,
        }) = state.take()
        else {
            return Ok(());
        };
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        let ahead = s.take_ahead();
        let dest = s.dest.clone();
        let dest_path = match self.dest_path(&dest) {
            Ok(p) => p,
            Err(e) => {
                *state = FileState::Streaming(Streaming {
                    upload: s,
                    replaces,
                    pending,
                });
                return Err(self.stream_failed(file, state, e));
            }
        };
        self.inodes.lock().unpin(dest.parent);
        let fetched = s.finish().map_err(Error::from).and_then(|_| {
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
                let in_place = !dest.temp && current.as_deref() == Some(&dest_path[..]);
                if !in_place {
                    replace::delete_quietly(&*self.store, &dest_path);
                }
                // A new file's partial upload under its own name is on the
                // server now: replace it through a temporary name from here on.
                *state = FileState::Staged(LocalCopy {
                    spool,
                    replaces: replaces || in_place,
                    pending,
                    changes: Changes::Whole,
                });
                Ok(())
            }
            Err(e) => {
                replace::delete_quietly(&*self.store, &dest_path);
                Err(self.upload_failed(file, state, current.as_ref(), replaces, e))
            }
        }
    }

    /// Uploads the file's local changes, if any; on failure they are
    /// dropped, every writing handle of the file is told, and the error is
    /// returned.
    pub(super) fn save(&self, file: &Arc<OpenFile>) -> Result<()> {
        if self.is_write_back() {
            match self.save_to_spool(file) {
                // The local disk failed (full, read-only): rather than lose
                // the changes, upload them now, as sync mode does.
                Err(e) if matches!(e.kind, ErrorKind::Local(_)) => {
                    log::warn!("the write-back spool failed ({e}); uploading before close returns")
                }
                other => return other,
            }
        }
        let mut state = file.state();
        if !state.has_changes() {
            return Ok(());
        }
        let Some(path) = self.inodes.lock().path(file.ino) else {
            return Ok(());
        };
        if matches!(&*state, FileState::Streaming(s) if s.upload.has_ahead()) {
            self.unstream(file, &mut state)?;
        }
        if let FileState::Patching(o) = &*state {
            match self.patch_overlay(o, &path) {
                Ok(Patched::Done) => {
                    let (size, pending) = (o.base.size, o.pending);
                    *state = FileState::Remote;
                    self.saved(file, &path, size, pending);
                    return Ok(());
                }
                Ok(Patched::Replace) => {
                    // Refused, or the server's copy changed: the writes go
                    // over the server's copy as it is now, replaced whole.
                    if let Err(e) = self.stage(file, &mut state) {
                        return Err(self.upload_failed(file, &mut state, Some(&path), true, e));
                    }
                    if let FileState::Staged(copy) = &mut *state {
                        copy.changes = Changes::Whole;
                    }
                }
                Err(e) => {
                    log::error!("{path}: a patch in place could not be finished: the server's file may mix old and new bytes");
                    self.keep_overlay(file, &mut state, &path);
                    return Err(self.upload_failed(file, &mut state, Some(&path), true, e));
                }
            }
        }
        let size = state.local_len().unwrap_or(0);
        if let FileState::Appending(a) = &*state {
            match self.send_appended(&path, a) {
                Ok(Appended::Done) => {
                    let pending = a.pending;
                    *state = FileState::Remote;
                    self.saved(file, &path, size, pending);
                    return Ok(());
                }
                Ok(Appended::Replace(why)) => {
                    log::info!("{path}: not appended ({why}); replacing the file whole");
                    if let Err(e) = self.stage(file, &mut state) {
                        return Err(self.upload_failed(file, &mut state, Some(&path), true, e));
                    }
                }
                Err(e) => {
                    if self.shutting_down.load(Ordering::SeqCst) {
                        log::error!("{path}: what follows byte {} was appended here", a.base);
                        self.keep_locally(&a.tail, &path);
                    }
                    return Err(self.upload_failed(file, &mut state, Some(&path), true, e));
                }
            }
        }
        let (result, had_file) = match state.take() {
            FileState::Streaming(s) => (
                self.finish_stream(s.upload, &path).map(|()| s.pending),
                s.replaces,
            ),
            FileState::Filling(copy) | FileState::Staged(copy) => {
                let r = self.patch_or_replace(&copy, &path);
                if r.is_ok() {
                    // Shells and dd open a new file, dup2 it and close the
                    // first descriptor: a flush before any data is written.
                    // Keep the known (empty) content, so that the writes
                    // which follow can still stream instead of fetching the
                    // empty file back and uploading it whole at close.
                    if copy.spool.len() == 0 && self.files.lock().writers(file.ino) > 0 {
                        *state = FileState::SavedEmpty;
                    }
                } else if self.shutting_down.load(Ordering::SeqCst)
                    && !matches!(&r, Err(e) if e.kind == ErrorKind::Unverified)
                {
                    // (An unverified upload kept its content already.)
                    self.keep_locally(&copy.spool, &path);
                }
                (r.map(|()| copy.pending), copy.replaces)
            }
            other => {
                *state = other;
                return Ok(());
            }
        };
        match result {
            Ok(pending) => {
                self.saved(file, &path, size, pending);
                Ok(())
            }
            Err(e) => Err(self.upload_failed(file, &mut state, Some(&path), had_file, e)),
        }
    }

    /// A patch of writes held over the server's copy (`overlay`) could not
    /// be finished: the file is fetched, the writes put over it, and that
    /// kept in the spool directory (the server's copy, even patched in
    /// part, differs only in the written ranges).
    fn keep_overlay(&self, file: &OpenFile, state: &mut FileState, path: &StorePath) {
        let FileState::Patching(o) = &*state else {
            return;
        };
        let written = o.written.clone();
        match self.stage(file, state) {
            Ok(()) => {
                if let Some(spool) = state.spool() {
                    self.keep_locally(spool, path);
                }
            }
            Err(e) => log::error!(
                "{path}: the bytes written at {written:?} are lost: the rest of the file could not be fetched to keep them with ({e})"
            ),
        }
    }

    /// The mount is ending and `path` could not be uploaded: its content
    /// goes to the spool directory rather than away with the spool.
    pub(super) fn keep_locally(&self, spool: &Spool, path: &[u8]) {
        match rescue::keep(spool, &self.config.spool_dir, path) {
            Ok(kept) => log::error!(
                "{} was not uploaded; its content is kept in {}",
                shown(path),
                kept.display()
            ),
            Err(e) => log::error!(
                "{} was not uploaded, and keeping its content locally failed too: {e}",
                shown(path)
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
        let checked = s
            .finish()
            .map_err(Error::from)
            .and_then(|sent| self.check_upload(&dest_path, &sent));
        match checked {
            Ok(Checked::Match) => {}
            Ok(Checked::Mismatch(why)) => {
                // Its bytes are not held here beyond the window: it cannot
                // be sent again (see `verify`).
                replace::delete_quietly(&*self.store, &dest_path);
                return Err(Error::new(
                    ErrorKind::Unverified,
                    format!("{dest_path}: the server does not hold what was streamed ({why})"),
                ));
            }
            Err(e) => {
                replace::delete_quietly(&*self.store, &dest_path);
                return Err(e);
            }
        }
        if dest.temp {
            replace::commit(
                &*self.store,
                &dest_path,
                path,
                &self.renames_refused,
                |from, to| self.copy_checked(from, to),
            )?;
        } else if dest_path.as_bytes() != path {
            if let Err(e) = replace::rename_replacing(&*self.store, &dest_path, path) {
                replace::delete_quietly(&*self.store, &dest_path);
                return Err(e.into());
            }
        }
        self.streamed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether uploads go to a temporary name and are renamed into place:
    /// unless the user asked for uploads in place, or the server refused a
    /// rename.
    fn temp_names(&self) -> bool {
        !self.config.write_in_place && !self.renames_refused.load(Ordering::Relaxed)
    }

    /// Uploads a whole local copy: through a temporary name when it replaces
    /// a file on the server (and the server can rename), else in place.
    pub(super) fn upload_staged(&self, copy: &LocalCopy, path: &[u8]) -> Result<()> {
        if copy.replaces && self.temp_names() {
            let (dir, name) = split(path);
            let temp = join(dir, &replace::temp_name(name));
            self.upload_checked(&temp, &copy.spool, path)?;
            replace::commit(
                &*self.store,
                &temp,
                path,
                &self.renames_refused,
                |from, to| self.copy_checked(from, to),
            )?;
        } else {
            self.upload_checked(path, &copy.spool, path)?;
        }
        Ok(())
    }

    /// After a successful upload of `size` bytes: the file is what the
    /// server has; times and modes set meanwhile are applied now.
    fn saved(&self, file: &OpenFile, path: &[u8], size: u64, pending: PendingAttrs) {
        file.bump_version();
        let mode = file.view().mode;
        let meta = self.server_has(path, size, mode, pending);
        let mut view = file.view();
        view.size = size;
        view.mtime = meta.mtime.unwrap_or(self.mounted_at);
    }

    /// The server has `size` bytes at `path` now: attributes set meanwhile
    /// are applied, and the cache learns it. Returns what it shows.
    pub(super) fn server_has(
        &self,
        path: &[u8],
        size: u64,
        mode: Option<u32>,
        pending: PendingAttrs,
    ) -> Metadata {
        self.cache.forget_exact_mtime(path);
        self.forget_content(path);
        let mut meta = Metadata {
            kind: FileKind::File,
            size,
            mtime: Some(SystemTime::now()),
            mtime_exact: true,
            mode,
            symlink_target: None,
        };
        if let Some(mode) = pending.mode {
            match self.apply_chmod(path, mode) {
                Ok(true) => {}
                Ok(false) => meta.mode = None,
                Err(e) => {
                    meta.mode = None;
                    log::warn!("setting the mode of {}: {e}", shown(path));
                }
            }
        }
        let mut exact = None;
        if let Some(t) = pending.mtime {
            match self.apply_mtime(path, t) {
                Ok(true) => exact = Some(t),
                Ok(false) => {}
                Err(e) => log::warn!("setting the time of {}: {e}", shown(path)),
            }
        }
        if let Some(t) = exact {
            meta.mtime = Some(t);
        }
        self.cache.update(path, meta.clone());
        if let Some(t) = exact {
            self.cache.set_exact_mtime(path, size, t);
        }
        meta
    }

    /// Forgets the local changes of a file after a failed upload: from now
    /// on it is what the server has (Remote), or nothing (NotOnServer).
    /// `had_file`: the server had a file at this path before, so if the
    /// server cannot be asked now, it is still assumed there (a later write
    /// then fetches it, rather than replacing it with only the new bytes).
    pub(super) fn drop_local_changes(
        &self,
        file: &OpenFile,
        state: &mut FileState,
        path: Option<&[u8]>,
        had_file: bool,
    ) {
        file.bump_version();
        let server = match path {
            Some(p) => {
                self.cache.invalidate(p);
                self.resolve(p).map_err(|e| {
                    log::debug!("{} after a failed upload: {e}", shown(p));
                })
            }
            None => Ok(None),
        };
        let mut view = file.view();
        match server {
            Ok(Some((meta, _))) => {
                view.size = meta.size;
                view.mtime = meta.mtime.unwrap_or(self.mounted_at);
                view.mode = meta.mode;
                *state = FileState::Remote;
            }
            Err(()) if had_file => *state = FileState::Remote,
            Ok(None) | Err(()) => {
                view.size = 0;
                *state = FileState::NotOnServer;
            }
        }
    }
}
