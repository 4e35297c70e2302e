//! The filesystem core: what a mount of a `RemoteStore` does for each kernel
//! request, in terms of inodes, file handles and bytes. It knows nothing of
//! FUSE (the adapter in `fuse.rs` calls it) and nothing of FTP (the store
//! does that); it is tested against the in-memory store.
//!
//! Every method takes `&self` and may run on many threads at once. Locks are
//! short and never held across a store call, except one file's own state
//! lock while that file is uploaded or fetched: a slow upload of one file
//! does not stop `ls` or the other files.
//!
//! This file answers the kernel's requests; the work is in modules named
//! for what they hold:
//! - names and metadata: `inode` (inode numbers and paths), `cache`
//!   (metadata LRU), `resolve` (cache or server), `lister` (each directory
//!   listed by one request at a time), `prefetch` (subdirectories listed
//!   ahead of a walk), `namespace` (mkdir, unlink, rmdir, rename), `attrs`
//!   (chmod, utimens);
//! - open files: `open_file` (THE lifecycle of an open file: its states and
//!   transitions), `handles` (descriptors and the table of open files),
//!   `local_changes` (writes, staging, truncation), `upload` (where an
//!   upload is decided, and what follows it), `streamer` (an upload fed
//!   while the program writes), `append` (only the new end sent, APPE),
//!   `changes` (the ranges a staged file changed) and `patch` (only those
//!   sent, REST + STOR), `overlay` (a big file written inside without
//!   fetching it: only the written ranges held), `replace` (temporary names and putting an
//!   upload in place), `resume` (a cut upload goes on from the server's
//!   size), `retry` (the backoff), `verify` (checking what the server
//!   stored), `spool` (local copies), `rescue` (what could not be
//!   uploaded at unmount, or not stored right), `writeback` (async mode,
//!   `--write-back async`: close() returns once the file is in a journaled
//!   spool on local disk, and uploads run in the background);
//! - reads: `download` (local copy or download), `read_ahead` (a download
//!   kept open and read ahead), `segmented` (a large file read in order
//!   fetched ahead in segments on several sessions);
//! - `errno` (the one errno table).
//!
//! Metadata (see `cache.rs`): lookups are answered from the parent's listing
//! (one `list` per directory per directory TTL) or from single entries
//! (attribute TTL), negative ones included. A cold lookup uses `stat` for
//! the first two misses in a directory and then lists the directory (LIST
//! servers always list: their `stat` lists the parent anyway), so a program
//! looking up many names in one directory costs one listing.
//!
//! Modification times: where listings round times (LIST servers), the exact
//! time of a FILE is asked (MDTM, once, then remembered) when the kernel
//! asks for that one file: `getattr`, or a `lookup` that is not answered from
//! a listing read for `readdir`. `ls -l` reads the directory and then looks
//! up every name in it, so it is answered from the listing without an MDTM
//! per file; `rsync` and `cp -p` look up single names, and get exact times.
//! Times set through the mount and times learned by MDTM are remembered (with
//! the file size) for the life of the mount and applied to later listings
//! that agree with them, so a second `rsync -a` sees the very times (to the
//! nanosecond) that the first one set, without an MDTM.
//!
//! Writes: a new or truncated file written in order from
//! its start is staged in memory up to 1 MiB (small files cost one upload at
//! close), then streamed: the upload starts and takes every further write as
//! it comes, so memory stays bounded whatever the size. Anything else
//! (random writes, O_RDWR, append, truncate to a non-zero size, writes to an
//! existing file) first fetches the file's content into the spool (memory,
//! then a private file) and uploads the whole file at flush, or only the
//! ranges changed where that is allowed (see `patch`); a small write inside
//! a big file that may be patched fetches nothing: only the written ranges
//! are held (see `overlay`). A streamed file
//! written out of order falls back to staging: the bytes already uploaded are
//! fetched back. A cut upload is resumed from the server's size (see `resume`),
//! and every upload is checked (see `verify`). An upload failure is
//! returned by that write (when streaming), by flush, fsync and release, and stays on the handle (every
//! later call on it reports it); the local changes are then dropped and the
//! file is what the server has. `fsync` uploads at once (a streaming upload
//! is finished; writing on stages the file again). A file unlinked while open
//! keeps working for its handles, from empty if nothing was staged, and is
//! never uploaded.
//!
//! chmod and utimens are sent to the server (SITE CHMOD, MFMT/MDTM); if the
//! server cannot do them, they succeed without effect (a `cp -p` or `rsync
//! -a` is not failed for it) and the mount keeps showing the server's
//! values. A new file is created on the server at its first flush (not at
//! create), with the mode chmod-ed only when it has execute bits.
mod append;
mod attrs;
mod cache;
mod changes;
mod content;
mod download;
mod errno;
mod free_space;
mod handles;
mod inode;
mod lister;
mod local_changes;
mod namespace;
mod open_file;
mod overlay;
mod overview;
mod patch;
mod prefetch;
mod read_ahead;
mod replace;
mod rescue;
mod resolve;
mod resume;
mod retry;
mod segmented;
mod spool;
mod streamer;
mod upload;
mod verify;
mod writeback;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::store::path::shown;
use crate::store::{FileKind, Metadata, RemoteStore, StorePath};
pub use cache::CacheUsage;
use cache::{Cache, Source};
pub use content::{ContentCache, ContentUsage};
pub use errno::{Error, ErrorKind, Result};
use free_space::FreeSpace;
pub use free_space::FREE_SPACE_TTL;
use handles::{Handle, OpenFiles};
use inode::InodeTable;
pub use inode::{Ino, ROOT_INO, UNKNOWN_INO};
use lister::Lister;
use open_file::OpenFile;
pub use overview::PendingUploads;
use prefetch::Prefetcher;
use resume::UploadCounters;
pub use segmented::SegmentCounts;
use spool::SpoolStats;
pub use verify::Verify;
pub use writeback::{QueueCounts, WriteBackConfig, DEFAULT_SPOOL_LIMIT};

pub type Fh = u64;

/// Longest name a directory entry may have.
const NAME_MAX: usize = 255;
/// Cold lookups in one directory answered by `stat` before it is listed.
const STAT_MISSES: u32 = 2;
/// A new file written in order is staged up to this size, then streamed.
pub(crate) const STREAM_AFTER: usize = 1024 * 1024;
/// Bytes of a streaming upload kept to resume it from: what the server
/// may not have yet sits in the socket and TLS buffers of both sides,
/// a few MiB at most.
pub const UPLOAD_WINDOW: usize = 16 * 1024 * 1024;
/// Bytes per read when fetching a file into the spool.
const FETCH_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct FsConfig {
    pub attr_ttl: Duration,
    pub dir_ttl: Duration,
    pub spool_dir: PathBuf,
    /// Bytes of one file staged in memory before it moves to a spool file.
    pub spool_memory_limit: usize,
    pub read_only: bool,
    pub uid: u32,
    pub gid: u32,
    /// Masks the permissions shown (the server's modes, or the defaults
    /// 0o644 for files and 0o755 for directories).
    pub umask: u32,
    /// Bytes read ahead of a sequential reader.
    pub read_ahead: usize,
    /// Extra streams (sessions) a large file read in order may be fetched
    /// on, in segments, besides its own download; shared by all readers
    /// (0: off). See `segmented`.
    pub read_streams: usize,
    /// Bytes per segment of a segmented read; one reader holds at most
    /// `(read_streams + 1) x segment_size` of them.
    pub segment_size: u64,
    /// Subdirectory listings fetched at once ahead of a program walking a
    /// tree (0: none). Each holds a server session while it runs.
    pub listing_prefetch: usize,
    /// How long a cut upload is resumed before it fails (EIO).
    pub retry_time: Duration,
    /// Upload every file under its own name, never through a temporary
    /// name and a rename (for servers that refuse renames; a failed or cut
    /// upload can then leave a partial file there).
    pub write_in_place: bool,
    /// Close-to-open consistency: opening a file that is not open yet asks
    /// the server for its size and time (MLST, or SIZE and MDTM), instead
    /// of trusting the cache.
    pub revalidate_on_open: bool,
    /// Send only the changed ranges of a big file changed a little, where
    /// the server writes `REST n` + `STOR` in place (see `patch`); off:
    /// every upload replaces its file whole and atomically.
    pub patch_in_place: bool,
    /// Smaller files are never patched, always replaced whole (cheap, and
    /// atomic); `patch::PATCH_MIN_SIZE` but in tests.
    pub patch_min_size: u64,
    /// How uploads are checked (see `verify`).
    pub verify: Verify,
    /// Bytes of a streaming upload kept after they are sent, so that a cut
    /// can resume (see `resume::Window`).
    pub upload_window: usize,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            attr_ttl: Duration::from_secs(60),
            dir_ttl: Duration::from_secs(60),
            spool_dir: std::env::temp_dir().join("ftpsfs-spool"),
            spool_memory_limit: 8 * 1024 * 1024,
            read_only: false,
            uid: 0,
            gid: 0,
            umask: 0,
            read_ahead: 4 * 1024 * 1024,
            // All but the reader's own of the default 4 sessions. The core
            // knows nothing of the pool (fs talks to the store only); the
            // command line computes it from --sessions (cli.rs).
            read_streams: 3,
            segment_size: 8 * 1024 * 1024,
            listing_prefetch: 0,
            write_in_place: false,
            revalidate_on_open: false,
            patch_in_place: true,
            patch_min_size: patch::PATCH_MIN_SIZE,
            verify: Verify::Digest,
            upload_window: UPLOAD_WINDOW,
            // A server restart of 30 s fits, with the backoff around it.
            retry_time: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirItem {
    /// `UNKNOWN_INO` for a name the kernel has not looked up.
    pub ino: Ino,
    pub name: Vec<u8>,
    pub kind: FileKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenFlags {
    pub read: bool,
    pub write: bool,
    pub truncate: bool,
    pub append: bool,
    pub exclusive: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
}

/// The block size `statfs` counts in.
const STATFS_BLOCK: u64 = 4096;

/// What `statfs` reports. FTP cannot tell the size of the server's disk, so
/// that is 0 (unknown), not a made-up large number; free space is what the
/// server says where it says (AVBL), shown as free blocks of a disk of that
/// size (nothing used), and 0 elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Counters for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    /// Files uploaded while being written.
    pub streamed_uploads: u64,
    /// Files whose new end was appended (APPE) instead of uploaded whole.
    pub appends: u64,
    /// Files uploaded whole from the spool.
    pub staged_uploads: u64,
    /// The most bytes any one spool held in memory.
    pub spool_peak_memory: u64,
    /// The largest any one spool grew, in memory or on disk.
    pub spool_peak_size: u64,
    /// Spools that moved to a file on disk.
    pub spool_files: u64,
    /// Streamed files that fell back to staging.
    pub stream_fallbacks: u64,
    /// Files saved by sending only their changed ranges (`patch`).
    pub patches: u64,
    /// Bytes those patches sent.
    pub bytes_patched: u64,
    /// Big files written inside without being fetched first (`overlay`):
    /// only the written ranges were held, the rest read from the server.
    pub unfetched_patches: u64,
    /// Cut uploads continued from the server's size.
    pub resumed_uploads: u64,
    /// Uploads sent again from zero (resuming refused, or a check failed).
    pub restarted_uploads: u64,
    /// Uploads whose size on the server was checked and right.
    pub verified_by_size: u64,
    /// Uploads whose digest on the server was checked and right.
    pub verified_by_digest: u64,
    /// Checks that found the server's copy different from what was sent.
    pub upload_mismatches: u64,
}

pub struct Fs {
    store: Arc<dyn RemoteStore>,
    config: FsConfig,
    mounted_at: SystemTime,
    inodes: Mutex<InodeTable>,
    cache: Arc<Cache>,
    lister: Arc<Lister>,
    /// Lists subdirectories ahead of a walk (None: off).
    prefetch: Option<Arc<Prefetcher>>,
    files: Mutex<OpenFiles>,
    handles: Mutex<HashMap<Fh, Arc<Handle>>>,
    next_fh: AtomicU64,
    renames_refused: AtomicBool,
    /// The server refused APPE: appended files are replaced whole.
    appends_refused: AtomicBool,
    no_mdtm: AtomicBool,
    spool_stats: Arc<SpoolStats>,
    streamed: AtomicU64,
    appended: AtomicU64,
    staged: AtomicU64,
    patched: AtomicU64,
    bytes_patched: AtomicU64,
    unfetched_patches: AtomicU64,
    fallbacks: AtomicU64,
    uploads: Arc<UploadCounters>,
    /// Set by `shutdown`: uploads that fail from then on keep their content
    /// locally (see `rescue`).
    shutting_down: AtomicBool,
    /// File contents kept on disk between opens (None: off).
    content: Option<Arc<ContentCache>>,
    free_space: FreeSpace,
    segments: segmented::Segments,
    /// Async write-back (None: sync mode, close() uploads); see `writeback`.
    write_back: Option<writeback::WriteBack>,
}

fn not_found(path: &[u8]) -> Error {
    Error::new(
        ErrorKind::Store(crate::store::ErrorKind::NotFound),
        format!("{}: no such file or directory", shown(path)),
    )
}

fn stale(ino: Ino) -> Error {
    Error::new(ErrorKind::Stale, format!("inode {ino} is no longer known"))
}

fn bad_handle(fh: Fh) -> Error {
    Error::new(
        ErrorKind::BadHandle,
        format!("file handle {fh} is not open"),
    )
}

fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." {
        return Err(Error::new(ErrorKind::Invalid, "not a usable name"));
    }
    if name
        .iter()
        .any(|&b| b == b'/' || b == 0 || b == b'\r' || b == b'\n')
    {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "{}: names with '/', NUL, CR or LF cannot be used on an FTP server",
                shown(name).to_string().escape_debug()
            ),
        ));
    }
    if name.len() > NAME_MAX {
        return Err(Error::new(
            ErrorKind::NameTooLong,
            format!("a name of {} bytes is too long", name.len()),
        ));
    }
    Ok(())
}

impl Fs {
    pub fn new(store: Arc<dyn RemoteStore>, config: FsConfig) -> Fs {
        let cache = Arc::new(Cache::new(config.attr_ttl, config.dir_ttl));
        let lister = Arc::new(Lister::new(Arc::clone(&store), Arc::clone(&cache)));
        let prefetch = (config.listing_prefetch > 0)
            .then(|| Prefetcher::new(Arc::clone(&lister), config.listing_prefetch));
        let segments = segmented::Segments::new(&config);
        Fs {
            cache,
            lister,
            prefetch,
            store,
            config,
            mounted_at: SystemTime::now(),
            inodes: Mutex::new(InodeTable::new()),
            files: Mutex::new(OpenFiles::default()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            renames_refused: AtomicBool::new(false),
            appends_refused: AtomicBool::new(false),
            no_mdtm: AtomicBool::new(false),
            spool_stats: Arc::new(SpoolStats::default()),
            streamed: AtomicU64::new(0),
            appended: AtomicU64::new(0),
            staged: AtomicU64::new(0),
            patched: AtomicU64::new(0),
            bytes_patched: AtomicU64::new(0),
            unfetched_patches: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            uploads: Arc::default(),
            shutting_down: AtomicBool::new(false),
            content: None,
            free_space: FreeSpace::default(),
            segments,
            write_back: None,
        }
    }

    /// Reads go through `cache`: blocks read before are served from it,
    /// blocks downloaded are stored in it.
    pub fn with_content_cache(mut self, cache: Arc<ContentCache>) -> Fs {
        self.content = Some(cache);
        self
    }

    pub fn stats(&self) -> FsStats {
        FsStats {
            streamed_uploads: self.streamed.load(Ordering::Relaxed),
            appends: self.appended.load(Ordering::Relaxed),
            staged_uploads: self.staged.load(Ordering::Relaxed),
            patches: self.patched.load(Ordering::Relaxed),
            bytes_patched: self.bytes_patched.load(Ordering::Relaxed),
            unfetched_patches: self.unfetched_patches.load(Ordering::Relaxed),
            spool_peak_memory: self.spool_stats.peak_memory.load(Ordering::Relaxed),
            spool_peak_size: self.spool_stats.peak_size.load(Ordering::Relaxed),
            spool_files: self.spool_stats.files.load(Ordering::Relaxed),
            stream_fallbacks: self.fallbacks.load(Ordering::Relaxed),
            resumed_uploads: self.uploads.resumed.load(Ordering::Relaxed),
            restarted_uploads: self.uploads.restarted.load(Ordering::Relaxed),
            verified_by_size: self.uploads.verified_by_size.load(Ordering::Relaxed),
            verified_by_digest: self.uploads.verified_by_digest.load(Ordering::Relaxed),
            upload_mismatches: self.uploads.mismatches.load(Ordering::Relaxed),
        }
    }

    // ----- metadata -----

    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        check_name(name)?;
        let ppath = self.dir_path(parent)?;
        let path = ppath.join(name);
        let (meta, source) = self
            .child_meta(parent, &ppath, name)?
            .ok_or_else(|| not_found(&path))?;
        let meta = if source == Source::Scan {
            meta
        } else {
            self.with_exact_mtime(&path, meta)
        };
        let ino = self.inodes.lock().lookup(parent, name, meta.kind);
        Ok(self.attr(ino, &meta))
    }

    pub fn forget(&self, ino: Ino, nlookup: u64) {
        self.inodes.lock().forget(ino, nlookup);
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let file = self.open_file(ino);
        if let Some(meta) = file.as_ref().and_then(|f| f.local_metadata()) {
            return Ok(self.attr(ino, &meta));
        }
        let path = self.inodes.lock().path(ino);
        let Some(path) = path else {
            // Unlinked or replaced while open: what the handle still sees.
            return match file {
                Some(f) => {
                    let meta = f.view().metadata();
                    Ok(self.attr(ino, &meta))
                }
                None => Err(stale(ino)),
            };
        };
        let (meta, _) = self.resolve(&path)?.ok_or_else(|| not_found(&path))?;
        if self.inodes.lock().kind(ino) != Some(meta.kind) {
            return Err(stale(ino));
        }
        let meta = self.with_exact_mtime(&path, meta);
        Ok(self.attr(ino, &meta))
    }

    pub fn readdir(&self, ino: Ino) -> Result<Vec<DirItem>> {
        let path = self.dir_path(ino)?;
        let entries = match self.cache.listing(&path) {
            Some(entries) => entries,
            None => self.fetch_listing(&path, true)?,
        };
        if let Some(prefetch) = &self.prefetch {
            let subdirs = entries
                .iter()
                .filter(|(_, meta)| meta.kind == FileKind::Dir)
                .map(|(name, _)| name.clone());
            prefetch.ahead(&path, subdirs);
        }
        let mut items: BTreeMap<Vec<u8>, FileKind> = entries
            .into_iter()
            .map(|(name, meta)| (name, meta.kind))
            .collect();
        for name in self.pending_children(ino) {
            items.entry(name).or_insert(FileKind::File);
        }
        let inodes = self.inodes.lock();
        Ok(items
            .into_iter()
            .map(|(name, kind)| DirItem {
                ino: inodes.find(ino, &name).unwrap_or(UNKNOWN_INO),
                name,
                kind,
            })
            .collect())
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let path = self.path(ino)?;
        let (meta, _) = self.resolve(&path)?.ok_or_else(|| not_found(&path))?;
        if meta.kind != FileKind::Symlink {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("{path}: not a symbolic link"),
            ));
        }
        if let Some(target) = meta.symlink_target {
            return Ok(target);
        }
        self.store.stat(&path)?.symlink_target.ok_or_else(|| {
            Error::new(
                ErrorKind::Store(crate::store::ErrorKind::Failed),
                format!("{path}: the server does not say where the link points"),
            )
        })
    }

    pub fn statfs(&self) -> StatFs {
        let free_blocks = self
            .free_space
            .bytes(&*self.store)
            .map_or(0, |bytes| bytes / STATFS_BLOCK);
        StatFs {
            blocks: free_blocks,
            bfree: free_blocks,
            bavail: free_blocks,
            files: 0,
            ffree: 0,
            bsize: STATFS_BLOCK as u32,
            namelen: NAME_MAX as u32,
            frsize: STATFS_BLOCK as u32,
        }
    }

    // ----- files -----

    pub fn open(&self, ino: Ino, flags: OpenFlags) -> Result<Fh> {
        if flags.write {
            self.writable()?;
        }
        match self.inodes.lock().kind(ino) {
            None => return Err(stale(ino)),
            Some(FileKind::Dir) => {
                return Err(Error::new(
                    ErrorKind::IsDir,
                    "a directory cannot be opened as a file",
                ))
            }
            Some(_) => {}
        }
        if flags.write {
            // Async write-back: changes start from what the server has.
            self.barrier_ino(ino);
        }
        let file = self.acquire(ino)?;
        if flags.write && flags.truncate {
            if let Err(e) = self.truncate_file(&file, 0) {
                self.release_file(&file);
                return Err(e);
            }
        }
        Ok(self.add_handle(file, flags))
    }

    pub fn create(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        flags: OpenFlags,
    ) -> Result<(Attr, Fh)> {
        self.writable()?;
        check_name(name)?;
        let ppath = self.dir_path(parent)?;
        let path = ppath.join(name);
        if let Some((meta, _)) = self.child_meta(parent, &ppath, name)? {
            if flags.exclusive {
                return Err(Error::new(
                    ErrorKind::Store(crate::store::ErrorKind::AlreadyExists),
                    format!("{path}: exists"),
                ));
            }
            if meta.kind == FileKind::Dir {
                return Err(Error::new(
                    ErrorKind::IsDir,
                    format!("{path}: is a directory"),
                ));
            }
            let ino = self.inodes.lock().lookup(parent, name, meta.kind);
            let opened = self
                .open(ino, flags)
                .and_then(|fh| match self.getattr(ino) {
                    Ok(attr) => Ok((attr, fh)),
                    Err(e) => {
                        let _ = self.release(fh);
                        Err(e)
                    }
                });
            if opened.is_err() {
                self.forget(ino, 1);
            }
            return opened;
        }
        let now = SystemTime::now();
        let mode = mode & 0o7777;
        let ino = self.inodes.lock().lookup(parent, name, FileKind::File);
        let spool = self.new_spool();
        let file = self
            .files
            .lock()
            .acquire(ino, || OpenFile::created(ino, spool, mode, now));
        let meta = file.view().metadata();
        self.inodes.lock().pin(ino);
        self.cache.update(&path, meta.clone());
        self.cache.dir_changed(&ppath, now);
        let fh = self.add_handle(file, flags);
        Ok((self.attr(ino, &meta), fh))
    }

    pub fn read(&self, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        let h = self.handle(fh)?;
        if !h.flags.read {
            return Err(Error::new(ErrorKind::BadHandle, "not open for reading"));
        }
        self.read_handle(&h, offset, size)
    }

    pub fn write(&self, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        self.writable()?;
        let h = self.handle(fh)?;
        if !h.flags.write {
            return Err(Error::new(ErrorKind::BadHandle, "not open for writing"));
        }
        if let Some(e) = h.sticky() {
            return Err(e);
        }
        let file = &h.file;
        let mut state = file.state();
        let offset = if h.flags.append {
            state.local_len().unwrap_or_else(|| file.view().size)
        } else {
            offset
        };
        if let Err(e) = self.write_locked(file, &mut state, offset, data) {
            if matches!(e.kind, ErrorKind::Upload(_)) {
                h.fail(&e);
            }
            return Err(e);
        }
        Ok(data.len() as u32)
    }

    pub fn flush(&self, fh: Fh) -> Result<()> {
        let h = self.handle(fh)?;
        if let Some(e) = h.sticky() {
            return Err(e);
        }
        // A read-only descriptor's close still uploads a new file that is
        // not on the server yet (`touch`).
        let wants_upload = h.flags.write || {
            let state = h.file.state();
            state.has_changes() && !state.server_has_file()
        };
        if !wants_upload {
            return Ok(());
        }
        self.save(&h.file).inspect_err(|e| h.fail(e))
    }

    pub fn fsync(&self, fh: Fh) -> Result<()> {
        let h = self.handle(fh)?;
        if let Some(e) = h.sticky() {
            return Err(e);
        }
        self.save(&h.file)
            .and_then(|()| self.wait_uploaded(&h.file))
            .inspect_err(|e| h.fail(e))
    }

    /// fsync of a directory: in async mode, waits for the uploads below it
    /// (see `wait_uploaded_under`); in sync mode every close already did.
    pub fn fsyncdir(&self, ino: Ino) -> Result<()> {
        let path = self.dir_path(ino)?;
        self.wait_uploaded_under(&path)
    }

    pub fn release(&self, fh: Fh) -> Result<()> {
        let h = self
            .handles
            .lock()
            .remove(&fh)
            .ok_or_else(|| bad_handle(fh))?;
        let mut result = match h.sticky() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        if result.is_ok() && h.flags.write {
            result = self.save(&h.file);
        }
        h.reader.lock().current = None;
        if h.flags.write {
            self.files.lock().remove_writer(h.file.ino);
        }
        self.release_file(&h.file);
        result
    }

    pub fn setattr(&self, ino: Ino, fh: Option<Fh>, changes: SetAttr) -> Result<Attr> {
        self.writable()?;
        let kind = self.inodes.lock().kind(ino).ok_or_else(|| stale(ino))?;
        let attrs_only =
            changes.size.is_none() && (changes.mode.is_some() || changes.mtime.is_some());
        if kind == FileKind::File && attrs_only && self.queued_attrs(ino, &changes) {
            return self.getattr(ino);
        }
        self.barrier_ino(ino);
        if let Some(fh) = fh {
            if let Some(e) = self.handle(fh)?.sticky() {
                return Err(e);
            }
        }
        if let Some(size) = changes.size {
            if kind == FileKind::Dir {
                return Err(Error::new(
                    ErrorKind::IsDir,
                    "a directory has no size to set",
                ));
            }
            let file = self.acquire(ino)?;
            let mut result = self.truncate_file(&file, size);
            if result.is_ok() && self.files.lock().writers(ino) == 0 {
                // No close will come to upload it: truncate(1) of a closed file.
                result = self.save(&file);
            }
            self.release_file(&file);
            result?;
        }
        if let Some(mode) = changes.mode {
            self.chmod(ino, mode & 0o7777)?;
        }
        if let Some(mtime) = changes.mtime {
            self.utimens(ino, kind, mtime)?;
        }
        self.getattr(ino)
    }

    /// Async write-back: a mode or time set on a closed file whose upload
    /// has not begun goes with its queued entry (rsync's chmod of its
    /// temporary file before the rename), with no request to the server
    /// and no wait. False when that does not apply (a file open with
    /// changes of its own keeps them in its state, see `chmod`).
    fn queued_attrs(&self, ino: Ino, changes: &SetAttr) -> bool {
        let file = self.open_file(ino);
        if file.as_ref().is_some_and(|f| f.local_metadata().is_some()) {
            return false;
        }
        let Some(path) = self.inodes.lock().path(ino) else {
            return false;
        };
        let mode = changes.mode.map(|m| m & 0o7777);
        if !self.set_queued_attrs(&path, mode, changes.mtime) {
            return false;
        }
        if let Some(f) = &file {
            let mut view = f.view();
            if mode.is_some() {
                view.mode = mode;
            }
            if let Some(t) = changes.mtime {
                view.mtime = t;
            }
        }
        if let Some(meta) = self.write_back_metadata(&path) {
            self.cache.update(&path, meta);
        }
        true
    }

    /// Files that earlier mounts with this spool directory could not upload
    /// and kept locally instead (see `rescue`), for the start-up log.
    pub fn kept_by_earlier_mounts(&self) -> Vec<std::path::PathBuf> {
        rescue::kept_earlier(&self.config.spool_dir)
    }

    /// Uploads every pending write (at unmount); says which failed.
    pub fn shutdown(&self) -> Result<()> {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.sync_all(&mut |_, _| {}).map(drop)
    }

    // ----- helpers: names, inodes, attributes -----

    /// The mount changed the file at `path`: its cached blocks are of an
    /// old version.
    fn forget_content(&self, path: &[u8]) {
        if let Some(content) = &self.content {
            content.forget(path);
        }
    }

    fn writable(&self) -> Result<()> {
        if self.config.read_only {
            return Err(Error::new(ErrorKind::ReadOnly, "the mount is read-only"));
        }
        Ok(())
    }

    fn path(&self, ino: Ino) -> Result<StorePath> {
        self.inodes.lock().path(ino).ok_or_else(|| stale(ino))
    }

    fn dir_path(&self, ino: Ino) -> Result<StorePath> {
        let inodes = self.inodes.lock();
        match inodes.kind(ino) {
            None => return Err(stale(ino)),
            Some(FileKind::Dir) => {}
            Some(_) => return Err(Error::new(ErrorKind::NotDir, "not a directory")),
        }
        inodes.path(ino).ok_or_else(|| stale(ino))
    }

    fn attr(&self, ino: Ino, meta: &Metadata) -> Attr {
        let (default, nlink) = match meta.kind {
            FileKind::File => (0o644, 1),
            FileKind::Dir => (0o755, 2),
            FileKind::Symlink => (0o777, 1),
        };
        let size = match (&meta.kind, &meta.symlink_target) {
            (FileKind::Symlink, Some(target)) => target.len() as u64,
            _ => meta.size,
        };
        Attr {
            ino,
            kind: meta.kind,
            size,
            mtime: meta.mtime.unwrap_or(self.mounted_at),
            perm: (meta.mode.unwrap_or(default) & 0o7777 & !self.config.umask) as u16,
            nlink,
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    fn open_file(&self, ino: Ino) -> Option<Arc<OpenFile>> {
        self.files.lock().get(ino)
    }

    fn delete_remote(&self, path: &[u8]) -> Result<()> {
        if let Err(e) = self.store.delete(path) {
            if e.kind == crate::store::ErrorKind::NotFound {
                self.cache.remove(path);
            }
            return Err(e.into());
        }
        Ok(())
    }

    // ----- helpers: open files -----

    fn handle(&self, fh: Fh) -> Result<Arc<Handle>> {
        self.handles
            .lock()
            .get(&fh)
            .cloned()
            .ok_or_else(|| bad_handle(fh))
    }

    fn add_handle(&self, file: Arc<OpenFile>, flags: OpenFlags) -> Fh {
        if flags.write {
            self.files.lock().add_writer(file.ino);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .insert(fh, Arc::new(Handle::new(file, flags)));
        fh
    }
}
