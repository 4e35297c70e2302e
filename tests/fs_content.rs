//! The content cache on the read path, against the in-memory store: what
//! a re-read costs (downloads counted at the store), what a remount keeps,
//! and that a changed, rewritten or damaged file is never served stale.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::core::{self, MIB, RDWR, READ};
use ftpsfs::fs::{ContentCache, Fs, FsConfig, Ino, OpenFlags, ROOT_INO};
use ftpsfs_testkit::MemoryStore;

struct Mount {
    store: Arc<MemoryStore>,
    fs: Fs,
    _spool: tempfile::TempDir,
}

fn mount(store: &Arc<MemoryStore>, cache_dir: &Path, limit: u64, ttl: u64) -> Mount {
    let spool = tempfile::tempdir().expect("temp dir");
    let cache = ContentCache::open(cache_dir, b"user@memory:21/", limit).expect("cache");
    let fs = Fs::new(
        store.clone(),
        FsConfig {
            attr_ttl: Duration::from_secs(ttl),
            dir_ttl: Duration::from_secs(ttl),
            spool_dir: spool.path().join("spool"),
            read_ahead: 2 * MIB,
            ..FsConfig::default()
        },
    )
    .with_content_cache(Arc::new(cache));
    Mount {
        store: Arc::clone(store),
        fs,
        _spool: spool,
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 2654435761) >> 13) as u8 ^ seed)
        .collect()
}

impl Mount {
    fn ino(&self, name: &str) -> Ino {
        core::ino(&self.fs, name)
    }

    fn read(&self, ino: Ino, offset: u64, size: usize) -> Vec<u8> {
        let fh = self.fs.open(ino, READ).expect("open");
        let data = self.fs.read(fh, offset, size as u32).expect("read");
        self.fs.release(fh).expect("release");
        data
    }

    fn cat(&self, name: &str) -> Vec<u8> {
        core::cat(&self.fs, self.ino(name))
    }

    fn downloads(&self) -> (u64, u64) {
        let c = self.store.counters();
        (c.open_read, c.bytes_read)
    }
}

#[test]
fn a_reread_costs_no_download_and_survives_a_remount() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = pattern(5 * MIB + 123, 1);
    store.put_file(b"big", &data);
    {
        let m = mount(&store, dir.path(), 1 << 30, 60);
        assert_eq!(m.cat("big"), data);
        let cold = m.downloads();
        assert_eq!(cold.1, data.len() as u64, "read once");
        assert_eq!(m.cat("big"), data);
        assert_eq!(m.downloads(), cold, "the second read came from the cache");
        let usage = m.fs.content_usage().unwrap();
        assert_eq!((usage.blocks, usage.bytes), (6, data.len() as u64));
    }
    store.reset_counters();
    let m = mount(&store, dir.path(), 1 << 30, 60);
    assert_eq!(m.cat("big"), data);
    assert_eq!(
        m.downloads(),
        (0, 0),
        "a new mount reads the blocks kept on disk"
    );
}

#[test]
fn a_random_read_fetches_around_it_not_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = pattern(64 * MIB, 2);
    store.put_file(b"big", &data);
    let m = mount(&store, dir.path(), 1 << 30, 60);
    let ino = m.ino("big");
    let at = 40 * MIB as u64 + 5000;
    assert_eq!(
        m.read(ino, at, 4096),
        &data[at as usize..at as usize + 4096]
    );
    // The download is let go on its own thread, which completes the block
    // the read was in and stores it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while m.fs.content_usage().unwrap().blocks == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, fetched) = m.downloads();
    assert!(
        fetched <= 4 * MIB as u64,
        "{fetched} bytes fetched for a 4 KiB read of a 64 MiB file"
    );
    // Its block is cached now: the same read again costs nothing.
    let before = m.downloads();
    assert_eq!(
        m.read(ino, at, 4096),
        &data[at as usize..at as usize + 4096]
    );
    assert_eq!(m.downloads(), before);
}

#[test]
fn a_file_rewritten_by_another_client_is_read_anew() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    store.put_file(b"f", &pattern(2 * MIB, 3));
    // No metadata cache: each open sees the server's size and time.
    let m = mount(&store, dir.path(), 1 << 30, 0);
    assert_eq!(m.cat("f"), pattern(2 * MIB, 3));
    std::thread::sleep(Duration::from_millis(5));
    store.put_file(b"f", &pattern(2 * MIB, 4));
    assert_eq!(
        m.cat("f"),
        pattern(2 * MIB, 4),
        "same size, new time: new bytes"
    );
}

#[test]
fn a_file_written_through_the_mount_is_not_served_from_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    store.put_file(b"f", &pattern(MIB, 5));
    let m = mount(&store, dir.path(), 1 << 30, 60);
    assert_eq!(m.cat("f"), pattern(MIB, 5));
    let write = OpenFlags {
        write: true,
        truncate: true,
        ..READ
    };
    let fh = m.fs.open(m.ino("f"), write).expect("open for writing");
    m.fs.write(fh, 0, &pattern(MIB, 6)).expect("write");
    m.fs.release(fh).expect("close");
    assert_eq!(
        m.fs.content_usage().unwrap().blocks,
        0,
        "forgotten at upload"
    );
    assert_eq!(m.cat("f"), pattern(MIB, 6));
}

#[test]
fn a_damaged_block_is_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = pattern(MIB + 10, 7);
    store.put_file(b"f", &data);
    let m = mount(&store, dir.path(), 1 << 30, 60);
    assert_eq!(m.cat("f"), data);
    // Flip one byte in the middle of every block file on disk.
    for block in walk(dir.path()) {
        let mut bytes = std::fs::read(&block).unwrap();
        let middle = bytes.len() - 5;
        bytes[middle] ^= 0xff;
        std::fs::write(&block, bytes).unwrap();
    }
    let before = m.downloads();
    assert_eq!(m.cat("f"), data, "never the damaged bytes");
    assert!(m.downloads().0 > before.0, "fetched again");
    assert!(m.fs.content_usage().unwrap().damaged >= 1);
}

#[test]
fn the_limit_holds_when_more_is_read_than_fits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let limit = 8 * MIB as u64;
    for i in 0..6u8 {
        store.put_file(format!("f{i}").as_bytes(), &pattern(3 * MIB, i));
    }
    let m = mount(&store, dir.path(), limit, 60);
    for i in 0..6u8 {
        assert_eq!(m.cat(&format!("f{i}")), pattern(3 * MIB, i));
        assert!(m.fs.content_usage().unwrap().bytes <= limit);
    }
    let on_disk: u64 = walk(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= limit + 16 * 4096, "{on_disk} bytes on disk");
    // The most recent file is still whole in the cache.
    let before = m.downloads();
    assert_eq!(m.cat("f5"), pattern(3 * MIB, 5));
    assert_eq!(m.downloads(), before);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn cached_files_stay_readable_while_the_server_is_unreachable() {
    use ftpsfs::store::ErrorKind;
    use ftpsfs_testkit::{FaultyStore, Op};
    let dir = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = pattern(3 * MIB, 9);
    store.put_file(b"kept", &data);
    store.put_file(b"never-read", b"x");
    let faults = Arc::new(FaultyStore::new(Arc::clone(&store)));
    let cache = ContentCache::open(dir.path(), b"offline", 1 << 30).unwrap();
    let fs = Fs::new(
        faults.clone(),
        FsConfig {
            // Everything cached expires at once: only the offline rule
            // can answer.
            attr_ttl: Duration::ZERO,
            dir_ttl: Duration::ZERO,
            spool_dir: spool.path().join("spool"),
            retry_time: Duration::from_millis(100),
            ..FsConfig::default()
        },
    )
    .with_content_cache(Arc::new(cache));
    let m = Mount {
        store: Arc::clone(&store),
        fs,
        _spool: spool,
    };
    assert_eq!(m.cat("kept"), data);
    assert_eq!(m.fs.readdir(ROOT_INO).unwrap().len(), 2);

    for op in Op::ALL {
        faults.fail_always(op, ErrorKind::Unavailable);
    }
    assert!(m.cat("kept") == data, "read offline from the cache");
    let names: Vec<Vec<u8>> =
        m.fs.readdir(ROOT_INO)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
    assert!(names.contains(&b"kept".to_vec()), "the last listing");
    let fh =
        m.fs.open(m.ino("never-read"), READ)
            .expect("open from the stale listing");
    let err =
        m.fs.read(fh, 0, 10)
            .expect_err("its contents were never cached");
    assert_eq!(err.errno(), libc::ETIMEDOUT);
    m.fs.release(fh).unwrap();
    let write = OpenFlags {
        write: true,
        truncate: true,
        ..READ
    };
    // Writing fails at once, with the server's state (not a local guess).
    let err =
        m.fs.create(ROOT_INO, b"new", 0o644, write)
            .expect_err("no new file while the server is unreachable");
    assert_eq!(err.errno(), libc::ETIMEDOUT, "{err:?}");
    let fh =
        m.fs.open(m.ino("kept"), write)
            .expect("opened from the cache");
    m.fs.write(fh, 0, b"changed offline").unwrap();
    let err = m.fs.flush(fh).expect_err("the upload cannot happen");
    assert!(
        matches!(err.errno(), libc::EIO | libc::ETIMEDOUT),
        "{err:?}"
    );
    let _ = m.fs.release(fh);
    assert!(
        store.file(b"kept").unwrap() == data,
        "the server's copy untouched"
    );
    assert!(!store.exists(b"new"), "not uploaded while unreachable");

    // Back online: fresh answers again.
    faults.clear_faults();
    store.put_file(b"later", b"y");
    assert!(m.fs.lookup(ROOT_INO, b"later").is_ok());
}

/// A big file written inside without being fetched (SEMANTICS §3) reads
/// the server's bytes from the cache, the written ones from the write:
/// no download; after its patch the old blocks are not served.
#[test]
fn a_file_patched_without_fetching_reads_cached_blocks_under_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = pattern(4 * MIB, 5);
    store.put_file(b"big", &data);
    let m = mount(&store, dir.path(), 1 << 30, 60);
    assert_eq!(m.cat("big"), data);
    store.reset_counters();
    let fh = m.fs.open(m.ino("big"), RDWR).expect("open");
    let at = MIB + 100;
    m.fs.write(fh, at as u64, b"written").expect("write");
    let mut expected = data.clone();
    expected[at..at + 7].copy_from_slice(b"written");
    let got = m.fs.read(fh, MIB as u64, 4096).expect("read");
    assert_eq!(got, expected[MIB..MIB + 4096]);
    assert_eq!(m.downloads(), (0, 0), "from the cache and the write");
    m.fs.release(fh).expect("release");
    assert_eq!(store.counters().upload_at, 1, "patched");
    assert!(store.file(b"big") == Some(expected.clone()));
    assert!(m.cat("big") == expected, "not the old blocks");
}
