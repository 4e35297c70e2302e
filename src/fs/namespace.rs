//! Requests on names: mkdir, unlink, rmdir, rename. FTP's MKD, DELE, RMD
//! and RNFR/RNTO are not conditional, so the checks POSIX asks for
//! (ENOTEMPTY, EISDIR, EEXIST…) are made against the cache first; an open
//! file that loses its name keeps working for its handles (`orphan`).
use std::time::SystemTime;

use super::open_file::{FileState, OpenFile, Truth};
use super::{check_name, not_found, replace, Attr, Error, ErrorKind, Fs, Ino, Result};
use crate::store::{FileKind, Metadata};

impl Fs {
    pub fn mkdir(&self, parent: Ino, name: &[u8], mode: u32) -> Result<Attr> {
        self.writable()?;
        check_name(name)?;
        let ppath = self.dir_path(parent)?;
        let path = ppath.join(name);
        if self.pending(parent, name) || self.write_back_metadata(&path).is_some() {
            return Err(Error::new(
                ErrorKind::Store(crate::store::ErrorKind::AlreadyExists),
                format!("{path}: exists"),
            ));
        }
        self.store.mkdir(&path)?;
        let mode = mode & 0o7777;
        let mut shown = None;
        if mode & 0o777 == 0o755 {
            shown = Some(mode);
        } else {
            match self.apply_chmod(&path, mode) {
                Ok(true) => shown = Some(mode),
                Ok(false) => {}
                Err(e) => log::warn!("setting the mode of {path}: {e}"),
            }
        }
        let meta = Metadata {
            kind: FileKind::Dir,
            size: 0,
            mtime: Some(SystemTime::now()),
            mtime_exact: true,
            mode: shown,
            symlink_target: None,
        };
        self.cache.update(&path, meta.clone());
        self.cache.set_empty_dir(&path);
        self.cache.dir_changed(&ppath, SystemTime::now());
        let ino = self.inodes.lock().lookup(parent, name, FileKind::Dir);
        Ok(self.attr(ino, &meta))
    }

    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        let ppath = self.dir_path(parent)?;
        let path = ppath.join(name);
        self.barrier(&path);
        let (meta, _) = self
            .child_meta(parent, &ppath, name)?
            .ok_or_else(|| not_found(&path))?;
        if meta.kind == FileKind::Dir {
            return Err(Error::new(
                ErrorKind::IsDir,
                format!("{path}: is a directory"),
            ));
        }
        let ino = self.inodes.lock().find(parent, name);
        match ino.and_then(|i| self.open_file(i)) {
            Some(file) => {
                let mut state = file.state();
                self.before_orphaning(&file, &mut state);
                if state.server_has_file() {
                    self.delete_remote(&path)?;
                }
                if let Some(stream) = state.orphan() {
                    self.abandon_stream(stream.upload);
                }
            }
            None => self.delete_remote(&path)?,
        }
        self.cache.remove(&path);
        self.forget_content(&path);
        self.cache.dir_changed(&ppath, SystemTime::now());
        self.inodes.lock().detach(parent, name);
        Ok(())
    }

    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        let ppath = self.dir_path(parent)?;
        let path = ppath.join(name);
        self.barrier(&path);
        let (meta, _) = self
            .child_meta(parent, &ppath, name)?
            .ok_or_else(|| not_found(&path))?;
        if meta.kind != FileKind::Dir {
            return Err(Error::new(
                ErrorKind::NotDir,
                format!("{path}: not a directory"),
            ));
        }
        let ino = self.inodes.lock().find(parent, name);
        self.check_empty(ino, &path)?;
        if let Err(e) = self.store.rmdir(&path) {
            if e.kind == crate::store::ErrorKind::NotFound {
                self.cache.remove(&path);
            }
            return Err(e.into());
        }
        self.cache.remove(&path);
        self.cache.dir_changed(&ppath, SystemTime::now());
        self.inodes.lock().detach(parent, name);
        Ok(())
    }

    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        no_replace: bool,
    ) -> Result<()> {
        self.writable()?;
        check_name(name)?;
        check_name(new_name)?;
        let ppath = self.dir_path(parent)?;
        let npath = self.dir_path(new_parent)?;
        let from = ppath.join(name);
        let to = npath.join(new_name);
        // A file whose upload waits may move in the queue instead (below);
        // anything else waits for the uploads of both names first.
        let queued = self.is_queued(&from);
        if !queued {
            self.barrier(&from);
            self.barrier(&to);
        }
        let (src, _) = self
            .child_meta(parent, &ppath, name)?
            .ok_or_else(|| not_found(&from))?;
        if from == to {
            return Ok(());
        }
        if src.kind == FileKind::Dir && to.is_under(&from) {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("{from} cannot move into itself"),
            ));
        }
        let dst = self.child_meta(new_parent, &npath, new_name)?;
        if let Some((d, _)) = &dst {
            if no_replace {
                return Err(Error::new(
                    ErrorKind::Store(crate::store::ErrorKind::AlreadyExists),
                    format!("{to}: exists"),
                ));
            }
            match (src.kind == FileKind::Dir, d.kind == FileKind::Dir) {
                (true, false) => {
                    return Err(Error::new(
                        ErrorKind::NotDir,
                        format!("{to}: not a directory"),
                    ))
                }
                (false, true) => {
                    return Err(Error::new(
                        ErrorKind::IsDir,
                        format!("{to}: is a directory"),
                    ))
                }
                (true, true) => {
                    let dino = self.inodes.lock().find(new_parent, new_name);
                    self.check_empty(dino, &to)?;
                }
                (false, false) => {}
            }
        }
        // Its upload not begun, it goes to the new name (write-then-rename
        // while uploads are backed up: one upload, no RNFR/RNTO); otherwise
        // the rename waits for it and is made on the server.
        let moved_in_queue = queued && self.rename_queued(&from, &to, dst.as_ref().map(|(d, _)| d));
        if queued && !moved_in_queue {
            self.barrier(&from);
            self.barrier(&to);
        }
        let src_ino = self.inodes.lock().find(parent, name);
        let src_file = src_ino.and_then(|i| self.open_file(i));
        // Held until the inode moves, so that no upload of it starts under
        // the old name meanwhile. Renames of the same names are serialized
        // by the kernel, so taking the replaced file's lock below cannot
        // deadlock with another rename.
        let src_state = src_file.as_ref().map(|f| f.state());
        // A file not yet on the server moves only here; its upload goes to
        // the new name.
        let local_only = src_state
            .as_ref()
            .is_some_and(|s| s.truth() == Truth::Local && !s.server_has_file());
        let replaced = self.inodes.lock().find(new_parent, new_name);
        let replaced_file = replaced.and_then(|i| self.open_file(i));
        let mut replaced_state = replaced_file.as_ref().map(|f| f.state());
        if let (Some(file), Some(state)) = (&replaced_file, replaced_state.as_mut()) {
            self.before_orphaning(file, state);
        }
        if moved_in_queue {
            // The upload replaces what the server has at the new name.
        } else if !local_only {
            let moved = if dst.is_some() {
                replace::rename_replacing(&*self.store, &from, &to)
            } else {
                self.store.rename(&from, &to)
            };
            if let Err(e) = moved {
                if e.kind == crate::store::ErrorKind::NotFound {
                    self.cache.invalidate(&from);
                }
                return Err(e.into());
            }
        } else if dst.is_some() {
            // The target is replaced now, as POSIX says, though what
            // replaces it reaches the server only at its upload: the old
            // file goes now, or it would be back if the new one were
            // removed before its upload.
            let target_on_server = replaced_state.as_ref().is_none_or(|s| s.server_has_file());
            if target_on_server {
                match self.store.delete(&to) {
                    Ok(()) => {}
                    Err(e) if e.kind == crate::store::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // A replaced file that is open keeps its handles, but its changes go
        // nowhere now.
        if let Some(state) = replaced_state.as_mut() {
            if let Some(stream) = state.orphan() {
                // Its upload's temporary name goes with it; one in place
                // (a server that cannot rename) now holds what replaced it,
                // which must not be deleted.
                let delete = stream.upload.dest.temp;
                self.drop_stream(stream.upload, delete);
            }
        }
        drop(replaced_state);
        self.inodes
            .lock()
            .rename(parent, name, new_parent, new_name);
        drop(src_state);
        let meta = src_file
            .as_ref()
            .and_then(|f| f.local_metadata())
            .unwrap_or(src);
        self.cache.rename(&from, &to, meta);
        // Blocks are stored by path: neither name's may serve a file that
        // later has the same size and time there.
        self.forget_content(&from);
        self.forget_content(&to);
        let now = SystemTime::now();
        self.cache.dir_changed(&ppath, now);
        self.cache.dir_changed(&npath, now);
        Ok(())
    }

    /// An appended or patched file holds only part of it here: the
    /// server's part is fetched while it is still there, so that its
    /// descriptors keep the whole file once the name is gone. If that
    /// fails, they keep nothing.
    fn before_orphaning(&self, file: &OpenFile, state: &mut FileState) {
        if matches!(state, FileState::Appending(_) | FileState::Patching(_)) {
            if let Err(e) = self.stage(file, state) {
                log::warn!("keeping a changed file that is being removed: {e}");
            }
        }
    }
}
