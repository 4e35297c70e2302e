//! chmod and utimens: sent to the server, or kept until the upload of a
//! file being written; a server that cannot do them is not an error.
use std::time::SystemTime;

use super::{Fs, Ino, Result};
use crate::store::path::shown;
use crate::store::FileKind;

impl Fs {
    pub(super) fn chmod(&self, ino: Ino, mode: u32) -> Result<()> {
        let file = self.open_file(ino);
        if let Some(f) = &file {
            let mut state = f.state();
            if let Some(pending) = state.pending_mut() {
                pending.mode = Some(mode);
                state.view().mode = Some(mode);
                return Ok(());
            }
        }
        let path = self.path(ino)?;
        if self.apply_chmod(&path, mode)? {
            if let Some((mut meta, _)) = self.resolve(&path)? {
                meta.mode = Some(mode);
                self.cache.update(&path, meta);
            }
            if let Some(f) = &file {
                f.view().mode = Some(mode);
            }
        }
        Ok(())
    }

    pub(super) fn utimens(&self, ino: Ino, kind: FileKind, mtime: SystemTime) -> Result<()> {
        let file = self.open_file(ino);
        if let Some(f) = &file {
            let mut state = f.state();
            if let Some(pending) = state.pending_mut() {
                pending.mtime = Some(mtime);
                state.view().mtime = mtime;
                return Ok(());
            }
        }
        let path = self.path(ino)?;
        if self.apply_mtime(&path, mtime)? {
            let size = match self.resolve(&path)? {
                Some((meta, _)) => meta.size,
                None => 0,
            };
            if kind == FileKind::File {
                self.cache.set_exact_mtime(&path, size, mtime);
            } else if let Some((mut meta, _)) = self.resolve(&path)? {
                meta.mtime = Some(mtime);
                self.cache.update(&path, meta);
            }
            if let Some(f) = &file {
                f.view().mtime = mtime;
            }
        }
        Ok(())
    }

    /// SITE CHMOD; Ok(false) when the server cannot.
    pub(super) fn apply_chmod(&self, path: &[u8], mode: u32) -> Result<bool> {
        if !self.store.capabilities().chmod {
            return Ok(false);
        }
        match self.store.chmod(path, mode) {
            Ok(()) => Ok(true),
            Err(e) if e.kind == crate::store::ErrorKind::Unsupported => {
                log::debug!("chmod {}: {e}", shown(path));
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// MFMT or MDTM-write; Ok(false) when the server cannot.
    pub(super) fn apply_mtime(&self, path: &[u8], mtime: SystemTime) -> Result<bool> {
        if !self.store.capabilities().set_mtime {
            return Ok(false);
        }
        match self.store.set_mtime(path, mtime) {
            Ok(()) => Ok(true),
            Err(e) if e.kind == crate::store::ErrorKind::Unsupported => {
                log::debug!("setting the time of {}: {e}", shown(path));
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}
