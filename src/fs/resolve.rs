//! Where metadata answers come from: a file changed here first, then the
//! cache, then the server (see the module comment of `fs` for the rules).
use std::sync::atomic::Ordering;

use std::time::Instant;

use super::cache::{Cached, Source};
use super::lister::offline_answer;

use super::{replace, Error, ErrorKind, Fs, Ino, Result, STAT_MISSES};
use crate::store::path::{join, shown, split};
use crate::store::{FileKind, Metadata};

impl Fs {
    /// Whether `parent/name` is a file that exists only here so far.
    pub(super) fn pending(&self, parent: Ino, name: &[u8]) -> bool {
        let ino = self.inodes.lock().find(parent, name);
        ino.and_then(|i| self.open_file(i))
            .is_some_and(|f| f.local_metadata().is_some())
    }

    /// Names of files in directory `dir` that exist only here so far.
    pub(super) fn pending_children(&self, dir: Ino) -> Vec<Vec<u8>> {
        let files = self.files.lock().all();
        let mut names = match self.inodes.lock().path(dir) {
            Some(path) => self.write_back_children(&path),
            None => Vec::new(),
        };
        for file in files {
            if file.local_metadata().is_none() {
                continue;
            }
            let location = self.inodes.lock().location(file.ino);
            if let Some((parent, name)) = location {
                if parent == dir {
                    names.push(name);
                }
            }
        }
        names
    }

    /// ENOTEMPTY when a directory is known to have entries.
    pub(super) fn check_empty(&self, ino: Option<Ino>, path: &[u8]) -> Result<()> {
        let pending = ino.is_some_and(|i| !self.pending_children(i).is_empty());
        if pending || self.cache.has_children(path) == Some(true) {
            return Err(Error::new(
                ErrorKind::Store(crate::store::ErrorKind::NotEmpty),
                format!("{}: directory not empty", shown(path)),
            ));
        }
        Ok(())
    }

    /// The metadata of `parent/name`: a file changed here first, then the
    /// cache, then the server.
    pub(super) fn child_meta(
        &self,
        parent: Ino,
        ppath: &[u8],
        name: &[u8],
    ) -> Result<Option<(Metadata, Source)>> {
        let ino = self.inodes.lock().find(parent, name);
        if let Some(file) = ino.and_then(|i| self.open_file(i)) {
            if let Some(meta) = file.local_metadata() {
                return Ok(Some((meta, Source::Single)));
            }
        }
        if replace::is_temp_name(name) {
            return Ok(None);
        }
        self.resolve(&join(ppath, name))
    }

    /// The metadata of `path` from the cache or the server.
    pub(super) fn resolve(&self, path: &[u8]) -> Result<Option<(Metadata, Source)>> {
        if let Some(meta) = self.write_back_metadata(path) {
            return Ok(Some((meta, Source::Single)));
        }
        match self.cache.get(path) {
            Cached::Present(meta, source) => return Ok(Some((meta, source))),
            Cached::Absent => return Ok(None),
            Cached::Unknown => {}
        }
        if !path.is_empty() {
            let parent = split(path).0;
            let list = !self.store.capabilities().exact_listing_mtime
                || self.cache.note_miss(parent) > STAT_MISSES;
            if list {
                let name = split(path).1;
                return match self.fetch_listing(parent, false) {
                    Ok(entries) => Ok(entries
                        .into_iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, m)| (m, Source::Listing))),
                    Err(e) if e.is_not_found() => {
                        self.cache.fill(path, None, Instant::now());
                        Ok(None)
                    }
                    Err(e) => Err(e),
                };
            }
        }
        if self.cache.recently_unreachable() {
            if let Some(meta) = self.cache.stale(path) {
                return Ok(Some((meta, Source::Single)));
            }
        }
        let started = Instant::now();
        match self.store.stat(path) {
            Ok(meta) => {
                self.cache.offline(false);
                Ok(self
                    .cache
                    .fill(path, Some(meta), started)
                    .map(|m| (m, Source::Single)))
            }
            Err(e) if e.kind == crate::store::ErrorKind::NotFound => {
                self.cache.fill(path, None, started);
                Ok(None)
            }
            Err(e) => match offline_answer(&self.cache, &e, || self.cache.stale(path)) {
                Some(meta) => Ok(Some((meta, Source::Single))),
                None => Err(e.into()),
            },
        }
    }

    pub(super) fn fetch_listing(&self, dir: &[u8], scan: bool) -> Result<Vec<(Vec<u8>, Metadata)>> {
        self.lister.fetch(dir, scan)
    }

    /// The file's exact modification time where the listing rounded it
    /// (one MDTM, remembered).
    pub(super) fn with_exact_mtime(&self, path: &[u8], mut meta: Metadata) -> Metadata {
        if meta.kind != FileKind::File
            || meta.mtime_exact
            || self.no_mdtm.load(Ordering::Relaxed)
            || self.cache.recently_unreachable()
        {
            return meta;
        }
        match self.store.exact_mtime(path) {
            Ok(t) => {
                self.cache.set_exact_mtime(path, meta.size, t);
                meta.mtime = Some(t);
                meta.mtime_exact = true;
            }
            Err(e) => {
                if e.kind == crate::store::ErrorKind::Unsupported {
                    self.no_mdtm.store(true, Ordering::Relaxed);
                }
                log::debug!("exact time of {}: {e}", shown(path));
            }
        }
        meta
    }

    /// What the server says of a file now, for an open with close-to-open
    /// consistency: one MLST where the server has it; elsewhere SIZE and
    /// MDTM (two commands, no data connection, where a stat would list the
    /// whole directory), over what the cache knows of the file's kind and
    /// mode. The answer replaces what the cache held, the parent's listing
    /// included; a change is logged.
    pub(super) fn revalidate(&self, path: &[u8]) -> Result<Option<Metadata>> {
        let cached = match self.cache.get(path) {
            Cached::Present(meta, _) => Some(meta),
            _ => None,
        };
        let asked = match (&cached, self.store.capabilities().exact_listing_mtime) {
            (Some(known), false) if known.kind == FileKind::File => {
                self.size_and_time(path, known.clone())
            }
            _ => self.store.stat(path).map_err(Error::from),
        };
        let fresh = match asked {
            Ok(meta) => meta,
            Err(e) if e.is_not_found() => {
                self.cache.remove(path);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if let Some(old) = &cached {
            if (old.size, old.mtime) != (fresh.size, fresh.mtime) {
                log::debug!(
                    "{}: changed on the server since it was cached ({} -> {} bytes)",
                    shown(path),
                    old.size,
                    fresh.size
                );
            }
        }
        self.cache.update(path, fresh.clone());
        Ok(Some(fresh))
    }

    /// `known` with the size and exact time the server gives now (SIZE,
    /// MDTM).
    fn size_and_time(&self, path: &[u8], mut known: Metadata) -> Result<Metadata> {
        known.size = self.store.size(path)?;
        known.mtime_exact = false;
        Ok(self.with_exact_mtime(path, known))
    }
}
