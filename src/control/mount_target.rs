//! The control socket's view of a live mount: the filesystem core, the FTPS
//! store and its session pool, and the kernel's caches.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::status::{CacheUse, ContentUse, Sessions, Status, Transfer, Uploads};
use super::target::Target;
use crate::fs::Fs;
use crate::fuse::KernelCache;
use crate::store::ftps::{FtpsStore, ProbeStatus};
use crate::store::path::shown;
use crate::store::StoreAtOffset;

pub struct MountTarget {
    pub fs: Arc<Fs>,
    pub store: Arc<FtpsStore>,
    pub kernel: KernelCache,
    /// host:port/path, as the status shows it.
    pub server: String,
    pub mountpoint: PathBuf,
    pub started: Instant,
}

/// What the status says of REST + STOR on the server.
fn rest_stor(probe: ProbeStatus) -> &'static str {
    match probe {
        ProbeStatus::NotProbed => "not probed",
        ProbeStatus::Probing => "probing",
        ProbeStatus::Found(StoreAtOffset::InPlace) => "in place",
        ProbeStatus::Found(StoreAtOffset::Truncates) => "truncates",
        ProbeStatus::Found(StoreAtOffset::Refused) => "refused",
        ProbeStatus::Found(StoreAtOffset::Unknown) => "unknown",
    }
}

impl Target for MountTarget {
    fn status(&self) -> Status {
        let pool = self.store.pool();
        let stats = pool.connector().stats();
        let counts = stats.snapshot();
        let open = pool.open_sessions();
        let pending = self.fs.pending_uploads();
        let fs_stats = self.fs.stats();
        let cache = self.fs.cache_usage();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            server: self.server.clone(),
            mountpoint: self.mountpoint.display().to_string(),
            pid: std::process::id(),
            uptime: self.started.elapsed(),
            sessions: Sessions {
                open,
                busy: open.saturating_sub(pool.idle_sessions()),
                limit: pool.session_limit(),
                tls: stats.tls_version(),
                logins: counts.logins,
                commands: counts.commands,
                data_connections: counts.data_connections,
                resumed_handshakes: counts.resumed_handshakes,
                full_handshakes: counts.full_handshakes,
            },
            transfers: self
                .store
                .transfers()
                .into_iter()
                .map(|t| Transfer {
                    direction: t.direction,
                    size: self.fs.open_file_size(&t.path),
                    path: shown(&t.path).to_string(),
                    done: t.offset + t.bytes,
                    elapsed: t.elapsed,
                })
                .collect(),
            uploads: Uploads {
                pending_files: pending.files,
                pending_bytes: pending.bytes,
                failed: self
                    .fs
                    .kept_by_earlier_mounts()
                    .iter()
                    .chain(&self.fs.failed_write_backs())
                    .map(|p| p.display().to_string())
                    .collect(),
                streamed: fs_stats.streamed_uploads,
                staged: fs_stats.staged_uploads,
                appended: fs_stats.appends,
                patched: fs_stats.patches,
                rest_stor: rest_stor(self.store.probe_status()).to_string(),
            },
            cache: CacheUse {
                entries: cache.entries,
                listings: cache.listings,
                hits: cache.hits,
                misses: cache.misses,
                content: self.fs.content_usage().map(|c| ContentUse {
                    bytes: c.bytes,
                    limit: c.limit,
                    blocks: c.blocks,
                    hits: c.hits,
                    misses: c.misses,
                    damaged: c.damaged,
                }),
            },
        }
    }

    fn refresh(&self, path: &[u8]) -> Result<String, String> {
        let (forgotten, inodes) = self.fs.refresh(path);
        for &ino in &inodes {
            self.kernel.forget(ino);
        }
        let what = if path.is_empty() {
            "the whole mount".to_string()
        } else {
            shown(path).to_string()
        };
        Ok(format!(
            "refreshed {what}: {forgotten} cached entries and listings forgotten, \
             {} inodes' attributes dropped from the kernel",
            inodes.len()
        ))
    }

    fn sync(&self, progress: &mut dyn FnMut(&str)) -> Result<String, String> {
        let uploaded = self
            .fs
            .sync_all(&mut |done, total| progress(&format!("uploaded {done} of {total} file(s)")))
            .map_err(|e| e.message)?;
        Ok(match uploaded {
            0 => "nothing was pending".to_string(),
            n => format!("{n} file(s) uploaded"),
        })
    }
}
