//! File contents kept on local disk between opens and across remounts, in
//! blocks (`BLOCK_SIZE`), under the cache directory.
//!
//! - **Keys.** A mount's blocks live in a directory of their own, named by
//!   a hash of the server, port, user and mounted directory (`identity`),
//!   so mounts of different servers or paths never share or confuse
//!   entries. Within it, one directory per file (a hash of its path) holds
//!   that file's blocks, each named by the file's version (a hash of its
//!   size and modification time) and the block's number. A file whose size
//!   or time changed has a new version: its old blocks are never read for
//!   it, and are deleted the first time the new version is stored.
//! - **Integrity.** Each block carries a SHA-256 of each 16 KiB of its
//!   data, checked at every read of that part (`block_file`); a damaged
//!   block is deleted and fetched again, never served. A block is written to a temporary name and
//!   renamed into place, so after `kill -9` a block is there whole or not
//!   at all (temporary files are removed at the next start); after a power
//!   cut the checksum catches what the disk did not finish.
//! - **Size.** The blocks' total stays within the limit: the least
//!   recently used go first (`index`). Use is tracked in memory; at start
//!   the order is rebuilt from the blocks' modification times (when they
//!   were stored).
use std::fs;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use lru::LruCache;
use parking_lot::Mutex;
use ring::digest::{digest, SHA256};

mod block_file;
mod filler;
mod index;

pub use filler::Filling;

use block_file::{BlockId, OpenBlock};
use index::Index;

/// Bytes per block: big enough that a block costs one file and one read,
/// small enough that a random read of a few KiB fetches little around it.
pub const BLOCK_SIZE: u64 = 1024 * 1024;

/// Which version of a file blocks belong to: what the server says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

impl Version {
    fn hash(&self) -> u64 {
        let nanos = self
            .mtime
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(u128::MAX, |d| d.as_nanos());
        let mut bytes = self.size.to_le_bytes().to_vec();
        bytes.extend_from_slice(&nanos.to_le_bytes());
        hash64(&bytes)
    }
}

/// How much the cache holds and how it served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentUsage {
    pub bytes: u64,
    pub blocks: usize,
    pub limit: u64,
    pub hits: u64,
    pub misses: u64,
    /// Blocks refused at a read because they did not match their checksum.
    pub damaged: u64,
}

pub struct ContentCache {
    dir: PathBuf,
    limit: u64,
    index: Mutex<Index>,
    hits: AtomicU64,
    misses: AtomicU64,
    damaged: AtomicU64,
    /// Block files kept open, their headers checked (`OPEN_BLOCKS`).
    open: Mutex<LruCache<BlockId, Arc<OpenBlock>>>,
}

/// Block files kept open: 64 descriptors, 2 KiB of digests each.
const OPEN_BLOCKS: usize = 64;

static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

impl ContentCache {
    /// The default limit: a gigabyte holds the files a session re-reads
    /// (what rsync, a build or an editor read twice) and the blocks of a
    /// few large ones, and fits the disk of the smallest machine that
    /// mounts a server; larger working sets ask for more (`--cache-size`).
    pub const DEFAULT_LIMIT: u64 = 1 << 30;

    /// Opens (or creates) the cache of the mount named by `identity` under
    /// `cache_dir`, keeping at most `limit` bytes of blocks. Blocks left by
    /// earlier mounts are kept when whole; temporary files are removed.
    pub fn open(cache_dir: &Path, identity: &[u8], limit: u64) -> io::Result<ContentCache> {
        let dir = cache_dir
            .join("content")
            .join(format!("{:016x}", hash64(identity)));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let cache = ContentCache {
            dir,
            limit,
            index: Mutex::new(Index::new(limit)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            damaged: AtomicU64::new(0),
            open: Mutex::new(LruCache::new(
                NonZeroUsize::new(OPEN_BLOCKS).unwrap_or(NonZeroUsize::MIN),
            )),
        };
        cache.load()?;
        Ok(cache)
    }

    /// Bytes `[start, end)` of block `index` of the file at `path` in
    /// `version` (cut to the block's length), if the block is cached and
    /// the chunks read are whole.
    pub fn read(
        &self,
        path: &[u8],
        version: &Version,
        index: u64,
        start: usize,
        end: usize,
    ) -> Option<Vec<u8>> {
        let id = block_id(path, version, index);
        if !self.index.lock().touch(&id) {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let file = self.block_path(&id);
        let read = self
            .open_block(&id, &file)
            .and_then(|b| b.read_range(start, end));
        match read {
            Ok(data) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(data)
            }
            Err(why) => {
                log::warn!(
                    "cached block {} is damaged or gone ({why}): fetching it again",
                    file.display()
                );
                self.damaged.fetch_add(1, Ordering::Relaxed);
                self.misses.fetch_add(1, Ordering::Relaxed);
                self.delete(&[id]);
                None
            }
        }
    }

    /// The whole block, if cached and whole.
    pub fn get(&self, path: &[u8], version: &Version, index: u64) -> Option<Vec<u8>> {
        self.read(path, version, index, 0, BLOCK_SIZE as usize)
    }

    /// Stores block `index` of `path` in `version`. Blocks of other
    /// versions of the file go; so do the least recently used blocks of
    /// any file, as far as the limit needs. A block that cannot be written
    /// (a full disk) is only logged: the cache is an optimisation.
    pub fn put(&self, path: &[u8], version: &Version, index: u64, data: &[u8]) {
        if data.len() as u64 > self.limit {
            return;
        }
        let id = block_id(path, version, index);
        let stale = self
            .index
            .lock()
            .blocks_of_path_except(id.path, Some(id.version));
        self.delete(&stale);
        if let Err(e) = self.write_block(&id, data) {
            log::debug!("content cache: block not stored: {e}");
            return;
        }
        // A file of this block kept open is the one just replaced.
        self.open.lock().pop(&id);
        let evicted = self.index.lock().insert(id, data.len() as u64);
        self.delete(&evicted);
    }

    /// Drops every block of `path` (the mount changed the file).
    pub fn forget(&self, path: &[u8]) {
        let blocks = self.index.lock().blocks_of_path_except(hash64(path), None);
        self.delete(&blocks);
    }

    pub fn usage(&self) -> ContentUsage {
        let index = self.index.lock();
        ContentUsage {
            bytes: index.bytes(),
            blocks: index.len(),
            limit: self.limit,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            damaged: self.damaged.load(Ordering::Relaxed),
        }
    }

    fn delete(&self, blocks: &[BlockId]) {
        for id in blocks {
            self.index.lock().remove(id);
            self.open.lock().pop(id);
            let _ = fs::remove_file(self.block_path(id));
        }
    }

    /// The block's file, opened and its header checked: from the blocks
    /// kept open (a random reader returns to the same blocks), or opened now.
    fn open_block(&self, id: &BlockId, file: &Path) -> io::Result<Arc<OpenBlock>> {
        if let Some(open) = self.open.lock().get(id) {
            return Ok(Arc::clone(open));
        }
        let block = Arc::new(OpenBlock::open(fs::File::open(file)?, id)?);
        self.open.lock().put(*id, Arc::clone(&block));
        Ok(block)
    }

    fn file_dir(&self, path_hash: u64) -> PathBuf {
        self.dir.join(format!("{path_hash:016x}"))
    }

    fn block_path(&self, id: &BlockId) -> PathBuf {
        self.file_dir(id.path)
            .join(format!("{:016x}-{}", id.version, id.index))
    }

    fn write_block(&self, id: &BlockId, data: &[u8]) -> io::Result<()> {
        let dir = self.file_dir(id.path);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let temp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut f| f.write_all(&block_file::encode(id, data)))
            .and_then(|()| fs::rename(&temp, self.block_path(id)));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// Rebuilds the index from the blocks on disk, oldest first, so that
    /// the limit (perhaps lowered since) holds and the most recently stored
    /// stay. Contents are checked when read, not here: a start does not
    /// read gigabytes.
    fn load(&self) -> io::Result<()> {
        let mut found: Vec<(SystemTime, BlockId, u64)> = Vec::new();
        for file_dir in fs::read_dir(&self.dir)? {
            let file_dir = file_dir?.path();
            let Some(path) = hex_name(&file_dir) else {
                continue;
            };
            let Ok(entries) = fs::read_dir(&file_dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let parsed = name.split_once('-').and_then(|(version, index)| {
                    Some((
                        u64::from_str_radix(version, 16).ok()?,
                        index.parse::<u64>().ok()?,
                    ))
                });
                let meta = entry.metadata();
                match (parsed, meta) {
                    (Some((version, index)), Ok(meta)) if meta.is_file() => {
                        let len = meta.len().saturating_sub(block_file::HEADER_LEN as u64);
                        let stored = meta.modified().unwrap_or(UNIX_EPOCH);
                        let id = BlockId {
                            path,
                            version,
                            index,
                        };
                        found.push((stored, id, len));
                    }
                    // A temporary file of a write that never finished, or
                    // something that is not ours to serve.
                    _ => {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
        }
        found.sort_by_key(|(stored, _, _)| *stored);
        for (_, id, len) in found {
            let evicted = self.index.lock().insert(id, len);
            self.delete(&evicted);
        }
        Ok(())
    }
}

fn block_id(path: &[u8], version: &Version, index: u64) -> BlockId {
    BlockId {
        path: hash64(path),
        version: version.hash(),
        index,
    }
}

/// The first 64 bits of a SHA-256: names on disk. Two paths of one mount
/// share a name with a chance of about n²/2⁶⁵ (one in 10¹⁰ for a million
/// cached files), and then still need the same version hash to be confused.
fn hash64(bytes: &[u8]) -> u64 {
    let d = digest(&SHA256, bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(first)
}

fn hex_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    (name.len() == 16)
        .then(|| u64::from_str_radix(name, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn version(size: u64, secs: u64) -> Version {
        Version {
            size,
            mtime: Some(UNIX_EPOCH + Duration::from_secs(secs)),
        }
    }

    fn block(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn a_stored_block_is_read_back_for_the_same_version_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ContentCache::open(dir.path(), b"ftp.example:21/a", 1 << 30).unwrap();
        let v1 = version(100, 1);
        cache.put(b"f", &v1, 0, &block(1, 100));
        assert_eq!(cache.get(b"f", &v1, 0), Some(block(1, 100)));
        assert_eq!(cache.get(b"f", &v1, 1), None);
        assert_eq!(cache.get(b"g", &v1, 0), None, "another path");
        assert_eq!(cache.get(b"f", &version(100, 2), 0), None, "a new time");
        assert_eq!(cache.get(b"f", &version(101, 1), 0), None, "a new size");
        let usage = cache.usage();
        assert_eq!((usage.hits, usage.misses, usage.blocks), (1, 4, 1));
    }

    #[test]
    fn mounts_of_other_servers_or_paths_do_not_share_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let a = ContentCache::open(dir.path(), b"one:21/x", 1 << 30).unwrap();
        let b = ContentCache::open(dir.path(), b"one:21/y", 1 << 30).unwrap();
        let v = version(3, 1);
        a.put(b"f", &v, 0, b"aaa");
        assert_eq!(b.get(b"f", &v, 0), None);
        b.put(b"f", &v, 0, b"bbb");
        assert_eq!(a.get(b"f", &v, 0).as_deref(), Some(&b"aaa"[..]));
    }

    #[test]
    fn blocks_survive_a_restart_and_the_limit_holds_across_it() {
        let dir = tempfile::tempdir().unwrap();
        let v = version(10, 1);
        {
            let cache = ContentCache::open(dir.path(), b"s", 1 << 30).unwrap();
            for i in 0..10 {
                cache.put(b"f", &v, i, &block(i as u8, 1000));
                // Distinct store times for the order at the next start.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let cache = ContentCache::open(dir.path(), b"s", 1 << 30).unwrap();
        assert_eq!(cache.usage().blocks, 10);
        assert_eq!(cache.get(b"f", &v, 7), Some(block(7, 1000)));
        drop(cache);
        // Reopened with a lower limit: the oldest blocks go.
        let cache = ContentCache::open(dir.path(), b"s", 4 * 1000).unwrap();
        assert_eq!(cache.usage().blocks, 4);
        assert_eq!(cache.get(b"f", &v, 0), None);
        assert_eq!(cache.get(b"f", &v, 9), Some(block(9, 1000)));
        let files = fs::read_dir(cache.file_dir(hash64(b"f"))).unwrap().count();
        assert_eq!(files, 4, "evicted blocks are deleted from disk");
    }

    #[test]
    fn the_limit_holds_under_a_workload_larger_than_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ContentCache::open(dir.path(), b"s", 64 * 1024).unwrap();
        for f in 0..20u8 {
            for i in 0..4 {
                cache.put(&[b'f', f], &version(1, 1), i, &block(f, 4096));
                assert!(cache.usage().bytes <= 64 * 1024);
            }
        }
        assert_eq!(cache.usage().blocks, 16);
        let on_disk: u64 = walk(dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len() - block_file::HEADER_LEN as u64)
            .sum();
        assert_eq!(on_disk, cache.usage().bytes);
    }

    #[test]
    fn a_damaged_block_is_refused_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ContentCache::open(dir.path(), b"s", 1 << 30).unwrap();
        let v = version(5, 1);
        cache.put(b"f", &v, 0, b"hello");
        let id = block_id(b"f", &v, 0);
        let mut bytes = fs::read(cache.block_path(&id)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        assert_eq!(cache.read(b"f", &v, 0, 1, 3).as_deref(), Some(&b"el"[..]));
        fs::write(cache.block_path(&id), bytes).unwrap();
        assert_eq!(cache.get(b"f", &v, 0), None);
        assert_eq!(cache.usage().damaged, 1);
        assert!(!cache.block_path(&id).exists());
        cache.put(b"f", &v, 0, b"hello");
        assert_eq!(cache.get(b"f", &v, 0).as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn a_half_written_block_is_never_served_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let v = version(5, 1);
        let block_dir;
        {
            let cache = ContentCache::open(dir.path(), b"s", 1 << 30).unwrap();
            cache.put(b"f", &v, 0, b"whole");
            block_dir = cache.file_dir(hash64(b"f"));
        }
        // What kill -9 in the middle of a write leaves: a temporary file,
        // and (after a power cut) a renamed block cut short.
        fs::write(block_dir.join(".tmp-1-1"), b"partial").unwrap();
        let id = block_id(b"f", &v, 1);
        let encoded = block_file::encode(&id, b"second block");
        fs::write(
            block_dir.join(format!("{:016x}-1", id.version)),
            &encoded[..encoded.len() - 3],
        )
        .unwrap();
        let cache = ContentCache::open(dir.path(), b"s", 1 << 30).unwrap();
        assert!(!block_dir.join(".tmp-1-1").exists());
        assert_eq!(cache.get(b"f", &v, 1), None);
        assert_eq!(cache.get(b"f", &v, 0).as_deref(), Some(&b"whole"[..]));
    }

    #[test]
    fn a_new_version_replaces_the_old_ones_blocks_and_forget_drops_all() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ContentCache::open(dir.path(), b"s", 1 << 30).unwrap();
        cache.put(b"f", &version(3, 1), 0, b"old");
        cache.put(b"f", &version(3, 1), 1, b"old");
        cache.put(b"f", &version(3, 2), 0, b"new");
        assert_eq!(cache.usage().blocks, 1);
        assert_eq!(cache.get(b"f", &version(3, 1), 1), None);
        cache.forget(b"f");
        assert_eq!(cache.usage().blocks, 0);
        assert_eq!(walk(dir.path()).len(), 0);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
