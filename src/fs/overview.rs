//! What the mount's control socket asks of the core (`ftpsfs status`,
//! `refresh`, `sync`): pending changes, cache use, forgetting cached
//! metadata, and uploading everything now.
use super::cache::CacheUsage;
use super::content::ContentUsage;
use super::inode::Ino;
use super::{Error, Fs, Result};

/// Open files with changes the server does not have yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingUploads {
    pub files: usize,
    pub bytes: u64,
}

impl Fs {
    pub fn pending_uploads(&self) -> PendingUploads {
        let mut pending = PendingUploads::default();
        for file in self.files.lock().all() {
            let state = file.state();
            if state.has_changes() {
                pending.files += 1;
                pending.bytes += state.local_len().unwrap_or(0);
            }
        }
        let queued = self.write_back_counts();
        pending.files += queued.files;
        pending.bytes += queued.bytes;
        pending
    }

    pub fn cache_usage(&self) -> CacheUsage {
        self.cache.usage()
    }

    /// What the content cache holds and served (None: it is off).
    pub fn content_usage(&self) -> Option<ContentUsage> {
        self.content.as_ref().map(|c| c.usage())
    }

    /// The size of the file at `path` as the mount shows it, when it is
    /// open (for the transfers `ftpsfs status` lists).
    pub fn open_file_size(&self, path: &[u8]) -> Option<u64> {
        let ino = self.inodes.lock().find_path(path)?;
        let file = self.files.lock().get(ino)?;
        let size = file.view().size;
        Some(size)
    }

    /// Forgets cached listings and attributes under `path` (relative to
    /// the mount's root; empty: all). Returns how many cache entries went,
    /// and the inodes under `path` whose attributes the kernel may hold.
    /// Open files keep what they show: their content is theirs until closed.
    pub fn refresh(&self, path: &[u8]) -> (usize, Vec<Ino>) {
        let forgotten = self.cache.forget_under(path);
        let inodes = self.inodes.lock().attached_under(path);
        (forgotten, inodes)
    }

    /// Uploads the changes of every open file now (what `fsync` does for
    /// one), telling `progress` (done, total) after each. Returns how many
    /// files were uploaded, or an error naming each that failed.
    pub fn sync_all(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<usize> {
        let files: Vec<_> = self
            .files
            .lock()
            .all()
            .into_iter()
            .filter(|f| f.state().has_changes())
            .collect();
        let total = files.len();
        let mut failures: Vec<Error> = Vec::new();
        for (done, file) in files.iter().enumerate() {
            if let Err(mut e) = self.save(file) {
                // Store errors name the remote path; the core's own may not.
                if let Some(path) = self.inodes.lock().path(file.ino) {
                    if !e.message.contains(&path.to_string()) {
                        e.message = format!("{path}: {}", e.message);
                    }
                }
                failures.push(e);
            }
            progress(done + 1, total);
        }
        if let Err(e) = self.wait_write_back(progress) {
            failures.push(e);
        }
        match failures.first() {
            None => Ok(total),
            Some(first) => Err(Error::new(
                first.kind,
                format!(
                    "{} of {total} file(s) could not be uploaded: {}",
                    failures.len(),
                    failures
                        .iter()
                        .map(|e| e.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )),
        }
    }
}
