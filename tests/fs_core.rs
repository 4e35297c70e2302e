//! The filesystem core against the in-memory store: what a user of the mount
//! would see (bytes on the server, listings, errno), and operation counters
//! proving that the cache saves round trips.
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ftpsfs::fs::{
    Fs, FsConfig, Ino, OpenFlags, SetAttr, Verify, FREE_SPACE_TTL, ROOT_INO, UNKNOWN_INO,
};
use ftpsfs::store::{
    Capabilities, DigestAlgorithm, DigestSet, ErrorKind, FileKind, RemoteStore, StoreAtOffset,
};
use ftpsfs_testkit::{Corruption, FaultyStore, MemoryStore, Op};

mod common;

use common::core::{self, list_server, KIB, MIB, RDWR, READ, WRITE};

/// The core over a server: `fs` talks to the server through `faults`, where
/// a test arms failures; `store` is the server itself, for what a test checks
/// (files, counters of the calls that reached it).
struct Mount {
    store: Arc<MemoryStore>,
    faults: Arc<FaultyStore<Arc<MemoryStore>>>,
    fs: Fs,
    spool: tempfile::TempDir,
}

fn config(spool: &tempfile::TempDir) -> FsConfig {
    FsConfig {
        attr_ttl: Duration::from_secs(60),
        dir_ttl: Duration::from_secs(60),
        spool_dir: spool.path().join("spool"),
        spool_memory_limit: 8 * MIB,
        read_only: false,
        uid: 1000,
        gid: 1000,
        umask: 0o022,
        read_ahead: 8 * MIB,
        read_streams: 3,
        segment_size: 8 * 1024 * 1024,
        listing_prefetch: 0,
        write_in_place: false,
        revalidate_on_open: false,
        patch_in_place: true,
        patch_min_size: MIB as u64,
        retry_time: Duration::from_secs(60),
        verify: Verify::Digest,
        upload_window: 16 * MIB,
    }
}

fn mount_with(store: MemoryStore, adjust: impl FnOnce(&mut FsConfig)) -> Mount {
    let spool = tempfile::tempdir().expect("temp dir");
    let mut cfg = config(&spool);
    adjust(&mut cfg);
    let store = Arc::new(store);
    let faults = Arc::new(FaultyStore::new(Arc::clone(&store)));
    let fs = Fs::new(faults.clone(), cfg);
    Mount {
        store,
        faults,
        fs,
        spool,
    }
}

fn mount() -> Mount {
    mount_with(MemoryStore::new(), |_| {})
}

/// A mount that gives up on a cut upload after a second (instead of a
/// minute), for tests of uploads that cannot be resumed.
fn impatient_mount() -> Mount {
    mount_with(MemoryStore::new(), |c| {
        c.retry_time = Duration::from_secs(1)
    })
}

impl Mount {
    /// The next upload breaks after `bytes`, and the server cannot be
    /// reached again to resume it.
    fn cut_for_good(&self, bytes: u64) {
        self.faults.fail_upload_after(bytes);
        self.faults.fail_always(Op::Size, ErrorKind::Unavailable);
    }

    /// The server answers again.
    fn reachable(&self) {
        self.faults.stop_failing(Op::Size);
        self.faults.stop_failing(Op::Upload);
    }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

impl Mount {
    fn ino(&self, path: &str) -> Ino {
        core::ino(&self.fs, path)
    }

    /// `cp` of `data` to `parent/name`: create, write in 128 KiB pieces,
    /// close. The first error, as the program would see it.
    fn cp(&self, parent: Ino, name: &str, data: &[u8]) -> Result<Ino, ftpsfs::fs::Error> {
        let flags = OpenFlags {
            truncate: true,
            ..WRITE
        };
        let (attr, fh) = self.fs.create(parent, name.as_bytes(), 0o644, flags)?;
        let result = self.write_all(fh, data);
        let flushed = self.fs.flush(fh);
        let released = self.fs.release(fh);
        result.and(flushed).and(released).map(|()| attr.ino)
    }

    /// Writes `data` from byte 0 in 128 KiB requests, as cp does; the
    /// first error stops it.
    fn write_all(&self, fh: u64, data: &[u8]) -> Result<(), ftpsfs::fs::Error> {
        for (i, chunk) in data.chunks(128 * KIB).enumerate() {
            self.fs.write(fh, (i * 128 * KIB) as u64, chunk)?;
        }
        Ok(())
    }

    fn cat(&self, ino: Ino) -> Vec<u8> {
        core::cat(&self.fs, ino)
    }

    fn count(&self, op: Op) -> u64 {
        self.store.counters().get(op)
    }

    /// Every path on the server that is an upload's temporary file.
    fn temp_files(&self) -> Vec<String> {
        self.store
            .paths()
            .into_iter()
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .filter(|p| p.contains(".ftpsfs-"))
            .collect()
    }

    /// `ls -lR`: readdir every directory, look up and stat every entry.
    fn ls_lr(&self, dir: Ino) -> usize {
        let mut seen = 0;
        for item in self.fs.readdir(dir).expect("readdir") {
            let attr = self.fs.lookup(dir, &item.name).expect("lookup");
            self.fs.getattr(attr.ino).expect("getattr");
            seen += 1;
            if attr.kind == FileKind::Dir {
                seen += self.ls_lr(attr.ino);
            }
        }
        seen
    }
}

// ----- reading and writing -----

#[test]
fn files_of_every_size_reach_the_server_and_read_back() {
    let m = mount();
    for (i, size) in [0, 1, 4095, 4096, 131073, 10 * MIB].into_iter().enumerate() {
        let data = pattern(size, i as u64);
        let name = format!("file-{size}");
        let ino = m.cp(ROOT_INO, &name, &data).expect("cp");
        assert_eq!(
            m.store.file(name.as_bytes()).as_deref(),
            Some(&data[..]),
            "{name} on the server"
        );
        assert_eq!(m.fs.getattr(ino).expect("getattr").size, size as u64);
        assert_eq!(m.cat(ino), data, "{name} read back");
    }
    assert!(m.temp_files().is_empty());
}

#[test]
fn a_fresh_mount_reads_what_another_wrote() {
    let m = mount();
    let data = pattern(300 * KIB, 9);
    m.store.put_file(b"dir/data.bin", &data);
    let ino = m.ino("dir/data.bin");
    assert_eq!(m.fs.getattr(ino).expect("getattr").size, data.len() as u64);
    assert_eq!(m.cat(ino), data);
}

#[test]
fn random_overwrites_change_only_those_bytes() {
    let m = mount();
    let mut expected = pattern(MIB, 1);
    m.store.put_file(b"disk.img", &expected);
    let ino = m.ino("disk.img");
    let fh = m.fs.open(ino, WRITE).expect("open");
    for (offset, len) in [(10usize, 100usize), (500_000, 4096), (MIB - 6, 20)] {
        let patch = pattern(len, offset as u64);
        assert_eq!(
            m.fs.write(fh, offset as u64, &patch).expect("write"),
            len as u32
        );
        if expected.len() < offset + len {
            expected.resize(offset + len, 0);
        }
        expected[offset..offset + len].copy_from_slice(&patch);
    }
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"disk.img").expect("file"), expected);
    assert_eq!(
        m.fs.getattr(ino).expect("getattr").size,
        expected.len() as u64
    );
    assert!(m.temp_files().is_empty());
}

#[test]
fn append_adds_at_the_end() {
    let m = mount();
    m.store.put_file(b"log", b"first\n");
    let ino = m.ino("log");
    let flags = OpenFlags {
        append: true,
        ..WRITE
    };
    let fh = m.fs.open(ino, flags).expect("open");
    // The kernel's idea of the offset may be stale; append goes to the end.
    m.fs.write(fh, 0, b"second\n").expect("write");
    m.fs.write(fh, 0, b"third\n").expect("write");
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(
        m.store.file(b"log").as_deref(),
        Some(&b"first\nsecond\nthird\n"[..])
    );
}

/// `>>` onto a big file sends the new bytes only: no download, one APPE.
#[test]
fn an_append_sends_only_the_new_bytes() {
    let m = mount();
    let base = pattern(MIB, 1);
    m.store.put_file(b"log", &base);
    let ino = m.ino("log");
    m.store.reset_counters();
    let flags = OpenFlags {
        append: true,
        ..WRITE
    };
    let fh = m.fs.open(ino, flags).expect("open");
    let line = pattern(10 * KIB, 2);
    m.fs.write(fh, 0, &line).expect("write");
    assert_eq!(
        m.fs.getattr(ino).expect("getattr").size,
        (MIB + 10 * KIB) as u64
    );
    m.fs.release(fh).expect("release");
    let counts = m.store.counters();
    assert_eq!((counts.open_read, counts.upload, counts.append), (0, 0, 1));
    // The size before appending and its check after: no listing, no stat.
    assert_eq!((counts.list, counts.stat, counts.size), (0, 0, 2));
    assert_eq!(counts.bytes_uploaded, line.len() as u64);
    assert_eq!(counts.bytes_read, 0);
    assert_eq!(m.store.file(b"log"), Some([base, line].concat()));
    assert_eq!(m.fs.stats().appends, 1);
}

/// An append cut by a lost connection goes on from what the server holds:
/// no gap, nothing twice.
#[test]
fn a_cut_append_is_resumed_from_the_servers_size() {
    let m = mount();
    m.store.put_file(b"log", b"head\n");
    let ino = m.ino("log");
    let fh = m.fs.open(ino, WRITE).expect("open");
    let tail = pattern(300 * KIB, 3);
    m.fs.write(fh, 5, &tail).expect("write at the end");
    m.faults.fail_upload_after(100 * KIB as u64);
    m.fs.flush(fh).expect("resumed");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"log"), Some([&b"head\n"[..], &tail].concat()));
    assert_eq!(m.count(Op::Append), 2, "cut once, resumed once");
    assert_eq!(
        m.store.counters().bytes_uploaded,
        tail.len() as u64,
        "the resumed APPE sent only what the server did not have"
    );
}

/// Resuming gives up after `retry_time`; the server keeps its file.
#[test]
fn an_append_that_cannot_be_resumed_fails_with_eio_in_the_retry_time() {
    let m = mount_with(MemoryStore::new(), |c| {
        c.retry_time = Duration::from_secs(1)
    });
    m.store.put_file(b"log", b"head\n");
    let ino = m.ino("log");
    let fh = m.fs.open(ino, WRITE).expect("open");
    m.fs.write(fh, 5, b"tail").expect("write at the end");
    m.faults.fail_always(Op::Append, ErrorKind::Unavailable);
    let err = m.fs.flush(fh).expect_err("the server stays away");
    assert_eq!(err.errno(), libc::EIO);
    assert!(m.faults.counters().append >= 3, "retried with backoff");
    m.faults.stop_failing(Op::Append);
    let _ = m.fs.release(fh);
    assert_eq!(m.store.file(b"log").as_deref(), Some(&b"head\n"[..]));
}

/// The server's copy changed since the mount began appending (another
/// client): nothing is appended blindly; the file is replaced whole.
#[test]
fn an_append_to_a_file_changed_meanwhile_replaces_it_whole() {
    let m = mount();
    m.store.put_file(b"f", b"0123456789");
    let ino = m.ino("f");
    let fh = m.fs.open(ino, WRITE).expect("open");
    m.fs.write(fh, 10, b"AB").expect("write at the end");
    m.store.put_file(b"f", b"0123456789XYZ");
    m.fs.release(fh).expect("release");
    assert_eq!(m.count(Op::Append), 0);
    assert_eq!(m.store.file(b"f").as_deref(), Some(&b"0123456789AB"[..]));
    assert!(m.temp_files().is_empty());
}

/// A server that refuses APPE gets whole files, and is not asked again.
#[test]
fn a_refused_append_replaces_the_file_and_is_remembered() {
    let m = mount();
    m.store.put_file(b"a", b"aaa");
    m.store.put_file(b"b", b"bbb");
    m.faults.fail_always(Op::Append, ErrorKind::Unsupported);
    for (name, added) in [("a", b"+1"), ("b", b"+2")] {
        let ino = m.ino(name);
        let fh = m.fs.open(ino, WRITE).expect("open");
        m.fs.write(fh, 3, added).expect("write at the end");
        m.fs.release(fh).expect("release");
    }
    assert_eq!(m.faults.counters().append, 1, "asked once");
    assert_eq!(m.store.file(b"a").as_deref(), Some(&b"aaa+1"[..]));
    assert_eq!(m.store.file(b"b").as_deref(), Some(&b"bbb+2"[..]));
}

/// Reading an appended file before its old end needs the server's part:
/// the file is fetched then, and reads see the whole.
#[test]
fn reading_an_appended_file_sees_the_server_part_and_the_new_end() {
    let m = mount();
    m.store.put_file(b"f", b"old");
    let ino = m.ino("f");
    let fh = m.fs.open(ino, RDWR).expect("open");
    m.fs.write(fh, 3, b"new").expect("write at the end");
    assert_eq!(m.fs.read(fh, 3, 10).expect("the new end"), b"new");
    assert_eq!(m.count(Op::OpenRead), 0, "the new end is here");
    assert_eq!(m.fs.read(fh, 0, 10).expect("all"), b"oldnew");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"f").as_deref(), Some(&b"oldnew"[..]));
}

#[test]
fn truncate_of_a_closed_file_reaches_the_server_at_once() {
    let m = mount();
    m.store.put_file(b"t", b"0123456789");
    let ino = m.ino("t");
    let size = |n| SetAttr {
        size: Some(n),
        ..SetAttr::default()
    };
    assert_eq!(m.fs.setattr(ino, None, size(4)).expect("shrink").size, 4);
    assert_eq!(m.store.file(b"t").as_deref(), Some(&b"0123"[..]));
    assert_eq!(m.fs.setattr(ino, None, size(6)).expect("grow").size, 6);
    assert_eq!(m.store.file(b"t").as_deref(), Some(&b"0123\0\0"[..]));
    assert_eq!(m.fs.setattr(ino, None, size(0)).expect("empty").size, 0);
    assert_eq!(m.store.file(b"t").as_deref(), Some(&b""[..]));
}

#[test]
fn ftruncate_of_an_open_file_is_uploaded_at_close() {
    let m = mount();
    m.store.put_file(b"t", b"0123456789");
    let ino = m.ino("t");
    let fh = m.fs.open(ino, RDWR).expect("open");
    let attr =
        m.fs.setattr(
            ino,
            Some(fh),
            SetAttr {
                size: Some(3),
                ..SetAttr::default()
            },
        )
        .expect("ftruncate");
    assert_eq!(attr.size, 3);
    m.fs.write(fh, 5, b"x").expect("write past the end");
    assert_eq!(m.fs.read(fh, 0, 100).expect("read"), b"012\0\0x");
    assert_eq!(
        m.store.file(b"t").as_deref(),
        Some(&b"0123456789"[..]),
        "not before close"
    );
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"t").as_deref(), Some(&b"012\0\0x"[..]));
}

#[test]
fn o_trunc_replaces_an_existing_file_and_keeps_it_until_close() {
    let m = mount();
    m.store.put_file(b"f", b"old content");
    let ino = m.ino("f");
    let fh =
        m.fs.open(
            ino,
            OpenFlags {
                truncate: true,
                ..WRITE
            },
        )
        .expect("open");
    assert_eq!(m.fs.getattr(ino).expect("getattr").size, 0);
    m.fs.write(fh, 0, b"new").expect("write");
    assert_eq!(m.store.file(b"f").as_deref(), Some(&b"old content"[..]));
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"f").as_deref(), Some(&b"new"[..]));
    assert!(m.temp_files().is_empty());
}

#[test]
fn a_file_being_written_reads_its_own_writes() {
    let m = mount();
    let (attr, fh) =
        m.fs.create(ROOT_INO, b"notes", 0o644, RDWR)
            .expect("create");
    m.fs.write(fh, 0, b"hello world").expect("write");
    assert_eq!(m.fs.read(fh, 6, 100).expect("read"), b"world");
    assert_eq!(
        m.store.file(b"notes"),
        None,
        "nothing on the server before close"
    );
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"notes").as_deref(), Some(&b"hello world"[..]));
    assert_eq!(m.fs.getattr(attr.ino).expect("getattr").size, 11);
}

#[test]
fn an_empty_new_file_is_created_at_close() {
    let m = mount();
    let (_, fh) =
        m.fs.create(ROOT_INO, b"empty", 0o644, WRITE)
            .expect("create");
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"empty").as_deref(), Some(&b""[..]));
}

#[test]
fn a_large_sequential_write_streams_with_bounded_memory() {
    let m = mount();
    let (_, fh) = m.fs.create(ROOT_INO, b"big", 0o644, WRITE).expect("create");
    let total = 64 * MIB;
    let chunk = MIB;
    for i in 0..total / chunk {
        let data = pattern(chunk, i as u64);
        m.fs.write(fh, (i * chunk) as u64, &data).expect("write");
        if i == 8 {
            assert!(
                m.store.counters().bytes_uploaded >= 4 * MIB as u64,
                "bytes go to the server while the program writes"
            );
        }
    }
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    let stats = m.fs.stats();
    assert_eq!(stats.streamed_uploads, 1);
    assert_eq!(stats.spool_files, 0, "no spool file was needed");
    assert!(
        stats.spool_peak_size <= MIB as u64,
        "spool peak {}",
        stats.spool_peak_size
    );
    let stored = m.store.file(b"big").expect("file");
    assert_eq!(stored.len(), total);
    for (i, piece) in stored.chunks(chunk).enumerate() {
        assert!(piece == pattern(chunk, i as u64).as_slice(), "chunk {i}");
    }
    assert_eq!(m.count(Op::Upload), 1);
    assert_eq!(
        m.count(Op::Rename),
        1,
        "a new file that streams is renamed into place once complete"
    );
}

/// While a new file streams, and after a crash in the middle, nothing
/// stands under its real name: only a hidden temporary name, which the
/// listing hides and sweeps once it is stale.
#[test]
fn a_new_file_streams_under_a_hidden_name_until_it_is_complete() {
    let m = mount();
    let (_, fh) = m.fs.create(ROOT_INO, b"big", 0o644, WRITE).expect("create");
    let chunk = pattern(MIB, 7);
    for i in 0..4u64 {
        m.fs.write(fh, i * MIB as u64, &chunk).expect("write");
    }
    assert_eq!(m.count(Op::Upload), 1, "streaming (the upload opened)");
    assert_eq!(m.fs.stats().streamed_uploads, 0, "not finished yet");
    assert_eq!(
        m.store.file(b"big"),
        None,
        "nothing under the real name yet"
    );
    assert_eq!(m.temp_files().len(), 1, "{:?}", m.store.paths());
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"big").map(|f| f.len()), Some(4 * MIB));
    assert!(m.temp_files().is_empty(), "{:?}", m.temp_files());
}

/// `--write-in-place`, for servers that refuse renames: no temporary
/// name, and so no rename.
#[test]
fn write_in_place_streams_under_the_real_name() {
    let m = mount_with(MemoryStore::new(), |c| c.write_in_place = true);
    m.store.put_file(b"old", b"previous");
    let ino = m.ino("old");
    let fh =
        m.fs.open(
            ino,
            OpenFlags {
                truncate: true,
                ..WRITE
            },
        )
        .expect("open");
    let chunk = pattern(MIB, 8);
    for i in 0..3u64 {
        m.fs.write(fh, i * MIB as u64, &chunk).expect("write");
    }
    // The upload opened on the file itself, which it truncated (as vsftpd
    // does), and there is no temporary name.
    assert_ne!(m.store.file(b"old").as_deref(), Some(&b"previous"[..]));
    assert!(m.temp_files().is_empty(), "{:?}", m.temp_files());
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"old").map(|f| f.len()), Some(3 * MIB));
    assert_eq!(m.count(Op::Rename), 0);
    assert!(m.temp_files().is_empty(), "{:?}", m.temp_files());
}

#[test]
fn a_flush_before_the_first_write_does_not_stop_streaming() {
    // `dd of=F` and a shell's `> F` open, dup2, and close the first
    // descriptor: a flush of the new, empty file before any data comes.
    let m = mount();
    let (_, fh) = m.fs.create(ROOT_INO, b"dd", 0o644, WRITE).expect("create");
    m.fs.flush(fh).expect("early flush");
    let total = 16 * MIB;
    for i in 0..total / MIB {
        m.fs.write(fh, (i * MIB) as u64, &pattern(MIB, i as u64))
            .expect("write");
    }
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.fs.stats().streamed_uploads, 1, "the data streamed");
    assert_eq!(
        m.count(Op::OpenRead),
        0,
        "the empty file was not fetched back"
    );
    let stored = m.store.file(b"dd").expect("file");
    assert_eq!(stored.len(), total);
    assert!(stored[..MIB] == pattern(MIB, 0)[..]);
}

#[test]
fn rewriting_an_existing_large_file_streams_through_a_temporary_name() {
    let m = mount();
    m.store.put_file(b"big", b"old");
    let ino = m.ino("big");
    let fh =
        m.fs.open(
            ino,
            OpenFlags {
                truncate: true,
                ..WRITE
            },
        )
        .expect("open");
    let data = pattern(3 * MIB, 5);
    for (i, c) in data.chunks(MIB).enumerate() {
        m.fs.write(fh, (i * MIB) as u64, c).expect("write");
    }
    assert_eq!(
        m.store.file(b"big").as_deref(),
        Some(&b"old"[..]),
        "the old file stays until done"
    );
    assert_eq!(
        m.temp_files().len(),
        1,
        "the upload runs under a temporary name"
    );
    assert!(m
        .fs
        .readdir(ROOT_INO)
        .expect("readdir")
        .iter()
        .all(|i| i.name == b"big"));
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"big").expect("file"), data);
    assert!(m.temp_files().is_empty());
    assert_eq!(m.fs.stats().streamed_uploads, 1);
}

#[test]
fn a_streamed_file_written_out_of_order_falls_back_without_losing_bytes() {
    let m = mount();
    let (_, fh) = m.fs.create(ROOT_INO, b"f", 0o644, WRITE).expect("create");
    let mut expected = pattern(3 * MIB, 2);
    for (i, c) in expected.chunks(MIB).enumerate() {
        m.fs.write(fh, (i * MIB) as u64, c).expect("write");
    }
    // Slightly out of order (held and reordered), then back over sent bytes.
    let tail_b = pattern(1000, 3);
    let tail_a = pattern(1000, 4);
    m.fs.write(fh, (3 * MIB + 1000) as u64, &tail_b)
        .expect("write ahead");
    m.fs.write(fh, (3 * MIB) as u64, &tail_a)
        .expect("fill the gap");
    expected.extend_from_slice(&tail_a);
    expected.extend_from_slice(&tail_b);
    assert_eq!(
        m.fs.stats().stream_fallbacks,
        0,
        "a small reordering still streams"
    );
    m.fs.write(fh, 100, b"patched").expect("write back");
    expected[100..107].copy_from_slice(b"patched");
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.fs.stats().stream_fallbacks, 1);
    assert_eq!(m.store.file(b"f").expect("file"), expected);
    assert!(m.temp_files().is_empty());
}

#[test]
fn sequential_reads_use_one_download_and_a_far_seek_reopens() {
    // One download's read-ahead; segments (several downloads) are
    // tests/fs_segmented.rs.
    let m = mount_with(MemoryStore::new(), |c| c.read_streams = 0);
    let data = pattern(20 * MIB, 7);
    m.store.put_file(b"movie", &data);
    let ino = m.ino("movie");
    m.store.reset_counters();
    let fh = m.fs.open(ino, READ).expect("open");
    let mut offset = 0;
    while offset < 12 * MIB {
        let got =
            m.fs.read(fh, offset as u64, 128 * KIB as u32)
                .expect("read");
        assert!(got == data[offset..offset + 128 * KIB], "at {offset}");
        offset += 128 * KIB;
    }
    // The kernel's read-ahead can deliver a request a little behind the last.
    let back =
        m.fs.read(fh, (offset - 256 * KIB) as u64, 4096)
            .expect("read behind");
    assert!(back == data[offset - 256 * KIB..offset - 256 * KIB + 4096]);
    assert_eq!(
        m.count(Op::OpenRead),
        1,
        "one download for a sequential read"
    );
    let far = m.fs.read(fh, 2 * MIB as u64, 1000).expect("seek back");
    assert!(far == data[2 * MIB..2 * MIB + 1000]);
    assert_eq!(m.count(Op::OpenRead), 2, "a seek elsewhere reopens");
    let end =
        m.fs.read(fh, (20 * MIB - 10) as u64, 100)
            .expect("near the end");
    assert!(end == data[20 * MIB - 10..]);
    assert!(m
        .fs
        .read(fh, (20 * MIB) as u64, 100)
        .expect("at the end")
        .is_empty());
    m.fs.release(fh).expect("release");
}

#[test]
fn two_handles_read_in_parallel() {
    let m = Arc::new(mount());
    let a = pattern(5 * MIB, 1);
    let b = pattern(5 * MIB, 2);
    m.store.put_file(b"a", &a);
    m.store.put_file(b"b", &b);
    let threads: Vec<_> = [("a", a), ("b", b)]
        .into_iter()
        .map(|(name, data)| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                let ino = m.ino(name);
                assert!(m.cat(ino) == data, "{name}");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("reader thread");
    }
}

#[test]
fn eight_threads_write_different_files_at_once() {
    let m = Arc::new(mount());
    let dir = m.fs.mkdir(ROOT_INO, b"par", 0o755).expect("mkdir").ino;
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                let data = pattern(2 * MIB + i * 1000, i as u64);
                m.cp(dir, &format!("f{i}"), &data).expect("cp");
                data
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let data = t.join().expect("writer thread");
        let stored = m.store.file(format!("par/f{i}").as_bytes()).expect("file");
        assert!(stored == data, "f{i}");
    }
    assert_eq!(m.fs.readdir(dir).expect("readdir").len(), 8);
}

#[test]
fn shutdown_uploads_what_is_still_open() {
    let m = mount();
    let (_, fh) =
        m.fs.create(ROOT_INO, b"pending", 0o644, WRITE)
            .expect("create");
    m.fs.write(fh, 0, b"not yet closed").expect("write");
    m.store.put_file(b"old", b"0123");
    let ino = m.ino("old");
    let fh2 = m.fs.open(ino, WRITE).expect("open");
    m.fs.write(fh2, 2, b"XY").expect("write");
    m.fs.shutdown().expect("shutdown");
    assert_eq!(
        m.store.file(b"pending").as_deref(),
        Some(&b"not yet closed"[..])
    );
    assert_eq!(m.store.file(b"old").as_deref(), Some(&b"01XY"[..]));
}

// ----- upload failures -----

#[test]
fn a_broken_upload_fails_close_with_eio_and_keeps_the_old_file() {
    let m = impatient_mount();
    m.store.put_file(b"keep", b"precious");
    let ino = m.ino("keep");
    let fh =
        m.fs.open(
            ino,
            OpenFlags {
                truncate: true,
                ..WRITE
            },
        )
        .expect("open");
    m.fs.write(fh, 0, &pattern(100 * KIB, 1))
        .expect("write (staged)");
    m.cut_for_good(10 * KIB as u64);
    let err = m.fs.flush(fh).expect_err("the upload broke");
    assert_eq!(err.errno(), libc::EIO);
    m.reachable();
    assert_eq!(m.fs.flush(fh).expect_err("sticky").errno(), libc::EIO);
    assert_eq!(
        m.fs.write(fh, 0, b"x").expect_err("sticky").errno(),
        libc::EIO
    );
    assert_eq!(m.fs.release(fh).expect_err("sticky").errno(), libc::EIO);
    assert_eq!(m.store.file(b"keep").as_deref(), Some(&b"precious"[..]));
    assert!(m.temp_files().is_empty(), "{:?}", m.temp_files());
    assert_eq!(
        m.fs.getattr(ino).expect("getattr").size,
        8,
        "the mount shows the server's file"
    );
}

/// After a failed upload the core asks the server what it has. If the
/// server cannot answer then either, a file it had must still be taken as
/// there: a descriptor that writes on (while another keeps the file open)
/// patches the server's content, not an empty file.
#[test]
fn a_failed_upload_with_the_server_unreachable_keeps_the_servers_file_as_the_base() {
    let m = impatient_mount();
    m.store.put_file(b"f", b"0123456789");
    let ino = m.ino("f");
    let keeper = m.fs.open(ino, READ).expect("open to keep it open");
    let fh = m.fs.open(ino, RDWR).expect("open");
    m.fs.write(fh, 2, b"ab").expect("write (staged)");
    m.faults.fail_always(Op::Upload, ErrorKind::Unavailable);
    for _ in 0..4 {
        m.faults.fail_next(Op::Stat, ErrorKind::Unavailable);
        m.faults.fail_next(Op::List, ErrorKind::Unavailable);
    }
    assert_eq!(m.fs.flush(fh).expect_err("upload").errno(), libc::EIO);
    m.reachable();
    let _ = m.fs.release(fh);
    let fh = m.fs.open(ino, RDWR).expect("open again");
    m.fs.write(fh, 5, b"X").expect("write");
    m.fs.release(fh).expect("upload");
    assert_eq!(m.store.file(b"f").as_deref(), Some(&b"01234X6789"[..]));
    m.fs.release(keeper).expect("release");
}

#[test]
fn a_full_server_fails_close_with_enospc() {
    let m = mount();
    m.store.put_file(b"keep", b"precious");
    m.store.set_quota(Some(50 * KIB as u64));
    let ino = m.ino("keep");
    let fh = m.fs.open(ino, WRITE).expect("open");
    m.fs.write(fh, 0, &pattern(200 * KIB, 1))
        .expect("write (staged)");
    assert_eq!(m.fs.flush(fh).expect_err("quota").errno(), libc::ENOSPC);
    assert_eq!(m.fs.release(fh).expect_err("sticky").errno(), libc::ENOSPC);
    assert_eq!(m.store.file(b"keep").as_deref(), Some(&b"precious"[..]));
    assert!(m.temp_files().is_empty());
}

#[test]
fn a_full_server_stops_a_streaming_copy_and_leaves_nothing() {
    let m = mount();
    m.store.set_quota(Some(3 * MIB as u64));
    let err = m
        .cp(ROOT_INO, "huge", &pattern(10 * MIB, 1))
        .expect_err("quota");
    assert_eq!(err.errno(), libc::ENOSPC);
    assert_eq!(m.store.file(b"huge"), None, "no partial file");
    assert!(m.store.paths().is_empty(), "{:?}", m.store.paths());
    assert_eq!(
        m.fs.lookup(ROOT_INO, b"huge").expect_err("gone").errno(),
        libc::ENOENT
    );
}

/// A stream that breaks while one descriptor writes loses what every
/// descriptor wrote: each of them reports it at close, not only the one
/// whose write met it.
#[test]
fn a_broken_stream_is_reported_by_every_writing_descriptor() {
    let m = impatient_mount();
    let (attr, writer) = m.fs.create(ROOT_INO, b"f", 0o644, WRITE).expect("create");
    let other = m.fs.open(attr.ino, WRITE).expect("second writer");
    m.cut_for_good(2 * MIB as u64);
    let chunk = pattern(256 * KIB, 1);
    let failed = (0..16u64).find_map(|i| m.fs.write(writer, i * chunk.len() as u64, &chunk).err());
    assert_eq!(failed.expect("a write meets the break").errno(), libc::EIO);
    assert_eq!(
        m.fs.release(other).expect_err("told too").errno(),
        libc::EIO
    );
    assert_eq!(m.fs.release(writer).expect_err("sticky").errno(), libc::EIO);
    assert!(m.store.paths().is_empty(), "{:?}", m.store.paths());
}

/// A server that refuses the upload when a new file starts streaming
/// refuses what was written: it is dropped, as after a refusal at close.
#[test]
fn a_stream_refused_at_its_start_drops_what_was_written() {
    let m = mount();
    m.store.put_dir(b"ro");
    m.store.deny_writes_under(b"ro");
    let dir = m.ino("ro");
    let (attr, fh) = m.fs.create(dir, b"f", 0o644, WRITE).expect("create");
    let chunk = pattern(256 * KIB, 2);
    let failed = (0..8u64).find_map(|i| m.fs.write(fh, i * chunk.len() as u64, &chunk).err());
    assert_eq!(failed.expect("refused").errno(), libc::EACCES);
    assert_eq!(m.fs.getattr(attr.ino).expect("getattr").size, 0, "dropped");
    assert_eq!(m.fs.release(fh).expect_err("sticky").errno(), libc::EACCES);
    assert!(!m.store.exists(b"ro/f"));
}

/// A new file whose first upload failed still shows while open (empty), so
/// it can be renamed like any name `ls` shows; the rename is local.
#[test]
fn a_new_file_whose_upload_failed_can_be_renamed_while_open() {
    let m = impatient_mount();
    let (attr, fh) = m.fs.create(ROOT_INO, b"a", 0o644, WRITE).expect("create");
    m.fs.write(fh, 0, b"data").expect("write");
    m.faults.fail_always(Op::Upload, ErrorKind::Unavailable);
    assert_eq!(m.fs.flush(fh).expect_err("upload").errno(), libc::EIO);
    m.reachable();
    assert_eq!(m.fs.getattr(attr.ino).expect("shown").size, 0);
    m.fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", false)
        .expect("rename of a name the mount shows");
    assert_eq!(m.fs.lookup(ROOT_INO, b"b").expect("moved").ino, attr.ino);
    let _ = m.fs.release(fh);
    assert!(m.store.paths().is_empty(), "{:?}", m.store.paths());
}

#[test]
fn a_refused_write_fails_close_with_eacces() {
    let m = mount();
    m.store.put_file(b"ro/file", b"original");
    m.store.deny_writes_under(b"ro");
    let ino = m.ino("ro/file");
    let fh = m.fs.open(ino, WRITE).expect("open");
    m.fs.write(fh, 0, b"changed").expect("write (staged)");
    assert_eq!(m.fs.flush(fh).expect_err("denied").errno(), libc::EACCES);
    assert_eq!(m.fs.release(fh).expect_err("sticky").errno(), libc::EACCES);
    assert_eq!(m.store.file(b"ro/file").as_deref(), Some(&b"original"[..]));
    let dir = m.ino("ro");
    assert_eq!(
        m.cp(dir, "new", b"data").expect_err("denied").errno(),
        libc::EACCES
    );
    assert!(!m.store.exists(b"ro/new"));
}

#[test]
fn a_connection_lost_for_good_during_a_streaming_copy_is_eio_and_cleaned_up() {
    let m = impatient_mount();
    m.cut_for_good(2 * MIB as u64);
    let err = m
        .cp(ROOT_INO, "f", &pattern(8 * MIB, 1))
        .expect_err("broken");
    assert_eq!(err.errno(), libc::EIO);
    assert!(m.store.paths().is_empty(), "{:?}", m.store.paths());
}

// ----- names and directories -----

#[test]
fn rename_replaces_an_existing_file() {
    let m = mount();
    m.store.put_file(b"a", b"new content");
    m.store.put_file(b"b", b"old");
    let a = m.ino("a");
    m.ino("b");
    m.fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", false)
        .expect("rename");
    assert_eq!(m.store.file(b"b").as_deref(), Some(&b"new content"[..]));
    assert!(!m.store.exists(b"a"));
    let b = m.fs.lookup(ROOT_INO, b"b").expect("lookup");
    assert_eq!((b.ino, b.size), (a, 11));
    assert_eq!(
        m.fs.lookup(ROOT_INO, b"a").expect_err("gone").errno(),
        libc::ENOENT
    );
    m.store.put_file(b"c", b"c");
    m.ino("c");
    let err =
        m.fs.rename(ROOT_INO, b"b", ROOT_INO, b"c", true)
            .expect_err("no replace");
    assert_eq!(err.errno(), libc::EEXIST);
}

#[test]
fn renaming_a_directory_moves_open_files_with_it() {
    let m = mount();
    m.store.put_file(b"d/old", b"0123456789");
    let d = m.ino("d");
    let (_, fh) = m.fs.create(d, b"new", 0o644, WRITE).expect("create");
    m.fs.write(fh, 0, b"written in d").expect("write");
    let old = m.ino("d/old");
    let fh2 = m.fs.open(old, WRITE).expect("open");
    m.fs.write(fh2, 0, b"AB").expect("write");
    m.fs.rename(ROOT_INO, b"d", ROOT_INO, b"e", false)
        .expect("rename");
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    m.fs.flush(fh2).expect("flush");
    m.fs.release(fh2).expect("release");
    assert_eq!(
        m.store.file(b"e/new").as_deref(),
        Some(&b"written in d"[..])
    );
    assert_eq!(m.store.file(b"e/old").as_deref(), Some(&b"AB23456789"[..]));
    assert!(!m.store.exists(b"d"));
    let names: Vec<Vec<u8>> =
        m.fs.readdir(m.ino("e"))
            .expect("readdir")
            .into_iter()
            .map(|i| i.name)
            .collect();
    assert_eq!(names, vec![b"new".to_vec(), b"old".to_vec()]);
}

#[test]
fn renaming_a_file_still_being_written_uploads_to_the_new_name() {
    let m = mount();
    let (_, fh) = m.fs.create(ROOT_INO, b"tmp", 0o644, WRITE).expect("create");
    let data = pattern(3 * MIB, 1);
    for (i, c) in data.chunks(MIB).enumerate() {
        m.fs.write(fh, (i * MIB) as u64, c).expect("write");
    }
    m.fs.rename(ROOT_INO, b"tmp", ROOT_INO, b"final", false)
        .expect("rename");
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"final").expect("final"), data);
    assert!(!m.store.exists(b"tmp"));
}

#[test]
fn rmdir_of_a_full_directory_is_enotempty() {
    let m = mount();
    m.store.put_file(b"full/x", b"x");
    m.ino("full");
    let err = m.fs.rmdir(ROOT_INO, b"full").expect_err("not empty");
    assert_eq!(err.errno(), libc::ENOTEMPTY);
    assert!(m.store.exists(b"full/x"));
    m.fs.unlink(m.ino("full"), b"x").expect("unlink");
    m.fs.rmdir(ROOT_INO, b"full").expect("rmdir");
    assert!(m.store.paths().is_empty());
    assert_eq!(
        m.fs.lookup(ROOT_INO, b"full").expect_err("gone").errno(),
        libc::ENOENT
    );
}

#[test]
fn existing_names_are_eexist() {
    let m = mount();
    m.store.put_file(b"f", b"x");
    m.store.put_dir(b"d");
    let excl = OpenFlags {
        exclusive: true,
        ..WRITE
    };
    assert_eq!(
        m.fs.create(ROOT_INO, b"f", 0o644, excl)
            .expect_err("exists")
            .errno(),
        libc::EEXIST
    );
    assert_eq!(
        m.fs.mkdir(ROOT_INO, b"d", 0o755)
            .expect_err("exists")
            .errno(),
        libc::EEXIST
    );
    // A file created here but not yet uploaded exists too.
    let (_, fh) = m.fs.create(ROOT_INO, b"p", 0o644, WRITE).expect("create");
    assert_eq!(
        m.fs.create(ROOT_INO, b"p", 0o644, excl)
            .expect_err("exists")
            .errno(),
        libc::EEXIST
    );
    m.fs.release(fh).expect("release");
}

#[test]
fn names_that_would_inject_commands_never_reach_the_server() {
    let m = mount();
    m.store.put_dir(b"d");
    let d = m.ino("d");
    m.store.reset_counters();
    for name in [&b"a\nb"[..], b"a\rb", b"a\0b", b"a/b"] {
        assert_eq!(
            m.fs.lookup(d, name).expect_err("lookup").errno(),
            libc::EINVAL
        );
        assert_eq!(
            m.fs.create(d, name, 0o644, WRITE)
                .expect_err("create")
                .errno(),
            libc::EINVAL
        );
        assert_eq!(
            m.fs.mkdir(d, name, 0o755).expect_err("mkdir").errno(),
            libc::EINVAL
        );
        assert_eq!(
            m.fs.unlink(d, name).expect_err("unlink").errno(),
            libc::EINVAL
        );
        assert_eq!(
            m.fs.rename(ROOT_INO, b"d", d, name, false)
                .expect_err("rename")
                .errno(),
            libc::EINVAL
        );
    }
    let long = vec![b'a'; 256];
    assert_eq!(
        m.fs.create(d, &long, 0o644, WRITE)
            .expect_err("long")
            .errno(),
        libc::ENAMETOOLONG
    );
    assert_eq!(m.store.counters().total(), 0);
}

#[test]
fn unicode_spaces_and_dot_files_are_listed() {
    let m = mount();
    for name in ["with space", "ünïcödé ✓", ".hidden"] {
        m.cp(ROOT_INO, name, name.as_bytes()).expect("cp");
    }
    m.store
        .put_file(b".old.ftpsfs-12ab.part", b"left by a crash");
    let m2 = Fs::new(m.store.clone(), config(&m.spool));
    let names: Vec<String> = m2
        .readdir(ROOT_INO)
        .expect("readdir")
        .into_iter()
        .map(|i| String::from_utf8_lossy(&i.name).into_owned())
        .collect();
    assert_eq!(
        names,
        vec![".hidden", "with space", "ünïcödé ✓"],
        "temporary names are hidden"
    );
}

#[test]
fn unlink_removes_from_server_and_listing() {
    let m = mount();
    m.store.put_file(b"a", b"1");
    m.store.put_file(b"b", b"2");
    assert_eq!(m.fs.readdir(ROOT_INO).expect("readdir").len(), 2);
    m.ino("a");
    m.fs.unlink(ROOT_INO, b"a").expect("unlink");
    assert!(!m.store.exists(b"a"));
    let names: Vec<Vec<u8>> =
        m.fs.readdir(ROOT_INO)
            .expect("readdir")
            .into_iter()
            .map(|i| i.name)
            .collect();
    assert_eq!(names, vec![b"b".to_vec()]);
    assert_eq!(
        m.fs.unlink(ROOT_INO, b"a").expect_err("twice").errno(),
        libc::ENOENT
    );
    let d = m.fs.mkdir(ROOT_INO, b"d", 0o755).expect("mkdir").ino;
    assert_eq!(
        m.fs.unlink(ROOT_INO, b"d").expect_err("a dir").errno(),
        libc::EISDIR
    );
    assert_eq!(
        m.fs.rmdir(ROOT_INO, b"b").expect_err("a file").errno(),
        libc::ENOTDIR
    );
    assert_eq!(
        m.fs.readdir(m.ino("b")).expect_err("a file").errno(),
        libc::ENOTDIR
    );
    assert!(m.fs.readdir(d).expect("empty").is_empty());
}

#[test]
fn read_only_mounts_refuse_every_change() {
    let m = mount_with(MemoryStore::new(), |c| c.read_only = true);
    m.store.put_file(b"f", b"x");
    let f = m.ino("f");
    let rofs = libc::EROFS;
    assert_eq!(
        m.fs.create(ROOT_INO, b"n", 0o644, WRITE)
            .expect_err("create")
            .errno(),
        rofs
    );
    assert_eq!(m.fs.open(f, WRITE).expect_err("open").errno(), rofs);
    assert_eq!(
        m.fs.mkdir(ROOT_INO, b"d", 0o755)
            .expect_err("mkdir")
            .errno(),
        rofs
    );
    assert_eq!(
        m.fs.unlink(ROOT_INO, b"f").expect_err("unlink").errno(),
        rofs
    );
    assert_eq!(
        m.fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", false)
            .expect_err("rename")
            .errno(),
        rofs
    );
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    assert_eq!(
        m.fs.setattr(f, None, chmod).expect_err("chmod").errno(),
        rofs
    );
    assert_eq!(m.cat(f), b"x", "reading works");
    assert_eq!(m.store.counters().upload + m.store.counters().delete, 0);
}

// ----- symbolic links -----

impl Mount {
    /// What the kernel does to open a path through a link: it asks for the
    /// target (readlink) and looks it up from the link's directory, component
    /// by component. The first error, as the program would see it.
    fn follow(&self, link_dir: &str, link: &str) -> Result<Ino, ftpsfs::fs::Error> {
        let dir = self.ino(link_dir);
        let attr = self.fs.lookup(dir, link.as_bytes())?;
        assert_eq!(attr.kind, FileKind::Symlink, "{link}");
        let target = self.fs.readlink(attr.ino)?;
        let mut path: Vec<&[u8]> = link_dir
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::as_bytes)
            .collect();
        for comp in target.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    path.pop();
                }
                name => path.push(name),
            }
        }
        let mut ino = ROOT_INO;
        for comp in path {
            ino = self.fs.lookup(ino, comp)?.ino;
        }
        Ok(ino)
    }
}

#[test]
fn readlink_gives_the_target_and_the_size_is_its_length() {
    for store in [MemoryStore::new(), list_server()] {
        let m = mount_with(store, |_| {});
        m.store.put_file(b"docs/report.txt", b"the final report");
        m.store.put_symlink(b"docs/latest", b"report.txt");
        m.store.put_symlink(b"docs/up", b"../data/set.csv");
        let docs = m.ino("docs");
        let items = m.fs.readdir(docs).expect("readdir");
        let kinds: Vec<(&[u8], FileKind)> =
            items.iter().map(|i| (i.name.as_slice(), i.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (&b"latest"[..], FileKind::Symlink),
                (b"report.txt", FileKind::File),
                (b"up", FileKind::Symlink),
            ]
        );
        for (name, target) in [("latest", &b"report.txt"[..]), ("up", b"../data/set.csv")] {
            let attr = m.fs.lookup(docs, name.as_bytes()).expect("lookup");
            assert_eq!(attr.kind, FileKind::Symlink, "{name}");
            assert_eq!(attr.size, target.len() as u64, "{name}: as lstat says");
            assert_eq!(m.fs.readlink(attr.ino).expect("readlink"), target);
            let again = m.fs.getattr(attr.ino).expect("getattr");
            assert_eq!((again.kind, again.size), (attr.kind, attr.size), "{name}");
        }
    }
}

#[test]
fn reading_through_a_link_gives_the_file_bytes() {
    let m = mount();
    let data = pattern(300 * KIB, 7);
    m.store.put_file(b"data/set.csv", &data);
    m.store.put_symlink(b"docs/up", b"../data/set.csv");
    m.store.put_symlink(b"docs/here", b"./up");
    let ino = m.follow("docs", "up").expect("follow");
    assert_eq!(ino, m.ino("data/set.csv"));
    assert_eq!(m.cat(ino), data);
    // A link to a link leads to the next link, which the kernel follows in
    // turn.
    let next = m.follow("docs", "here").expect("follow");
    assert_eq!(next, m.ino("docs/up"));
}

#[test]
fn a_dangling_link_is_listed_but_following_it_is_enoent() {
    let m = mount();
    m.store.put_symlink(b"gone", b"deleted.txt");
    let attr = m.fs.lookup(ROOT_INO, b"gone").expect("lookup of the link");
    assert_eq!(attr.kind, FileKind::Symlink);
    assert_eq!(m.fs.readlink(attr.ino).expect("readlink"), b"deleted.txt");
    assert_eq!(
        m.follow("", "gone").expect_err("dangling").errno(),
        libc::ENOENT
    );
    assert_eq!(
        m.fs.readdir(ROOT_INO).expect("readdir").len(),
        1,
        "ls shows it"
    );
}

#[test]
fn readlink_of_what_is_not_a_link_is_einval() {
    let m = mount();
    m.store.put_file(b"d/f", b"x");
    for path in ["d", "d/f"] {
        let ino = m.ino(path);
        assert_eq!(
            m.fs.readlink(ino).expect_err("not a link").errno(),
            libc::EINVAL,
            "{path}"
        );
    }
    assert_eq!(
        m.fs.readlink(ROOT_INO).expect_err("the root").errno(),
        libc::EINVAL
    );
}

// ----- the cache -----

#[test]
fn a_missing_name_is_asked_once() {
    let m = mount();
    m.store.put_dir(b"d");
    let d = m.ino("d");
    m.store.reset_counters();
    for _ in 0..2 {
        assert_eq!(
            m.fs.lookup(d, b"missing").expect_err("absent").errno(),
            libc::ENOENT
        );
    }
    assert_eq!(m.store.counters().total(), 1);
}

#[test]
fn many_cold_lookups_in_one_directory_cost_one_listing() {
    let m = mount();
    for i in 0..50 {
        m.store.put_file(format!("d/f{i}").as_bytes(), b"x");
    }
    let d = m.ino("d");
    m.store.reset_counters();
    for i in 0..50 {
        m.fs.lookup(d, format!("f{i}").as_bytes()).expect("lookup");
        m.fs.lookup(d, format!("g{i}").as_bytes())
            .expect_err("absent");
    }
    let c = m.store.counters();
    assert!(c.total() <= 3, "{c:?}");
}

#[test]
fn a_warm_ls_lr_sends_nothing() {
    for store in [MemoryStore::new(), list_server()] {
        let m = mount_with(store, |_| {});
        for d in 0..5 {
            for f in 0..10 {
                m.store
                    .put_file(format!("d{d}/sub/f{f}").as_bytes(), b"content");
                m.store.put_file(format!("d{d}/.dot{f}").as_bytes(), b"");
            }
        }
        assert_eq!(m.ls_lr(ROOT_INO), 5 * (1 + 1 + 10 + 10));
        let cold = m.store.counters();
        assert_eq!(cold.list, 11, "one listing per directory: {cold:?}");
        m.store.reset_counters();
        assert_eq!(m.ls_lr(ROOT_INO), 110);
        assert_eq!(m.store.counters().total(), 0, "{:?}", m.store.counters());
    }
}

#[test]
fn ls_l_of_a_list_server_sends_no_mdtm_per_file() {
    let m = mount_with(list_server(), |_| {});
    for f in 0..20 {
        m.store.put_file(format!("d/f{f}").as_bytes(), b"x");
    }
    let d = m.ino("d");
    m.store.reset_counters();
    for item in m.fs.readdir(d).expect("readdir") {
        m.fs.lookup(d, &item.name).expect("lookup");
    }
    assert_eq!(m.store.counters().total(), 1, "{:?}", m.store.counters());
}

#[test]
fn ls_right_after_cp_shows_the_size_without_asking_the_server() {
    let m = mount();
    m.store.put_dir(b"d");
    let d = m.ino("d");
    m.fs.readdir(d).expect("readdir");
    m.cp(d, "copied", &pattern(12345, 1)).expect("cp");
    m.store.reset_counters();
    let items = m.fs.readdir(d).expect("readdir");
    assert_eq!(items.len(), 1);
    assert_ne!(items[0].ino, UNKNOWN_INO, "the kernel knows it from create");
    assert_eq!(m.fs.lookup(d, b"copied").expect("lookup").size, 12345);
    assert_eq!(m.store.counters().total(), 0);
}

#[test]
fn a_file_being_written_is_listed_with_its_size() {
    let m = mount();
    let (_, fh) =
        m.fs.create(ROOT_INO, b"growing", 0o644, WRITE)
            .expect("create");
    m.fs.write(fh, 0, &pattern(5000, 1)).expect("write");
    // Even a fresh listing from the server (which lacks it) shows it.
    let other = Fs::new(m.store.clone(), config(&m.spool));
    assert!(other.readdir(ROOT_INO).expect("readdir").is_empty());
    let items = m.fs.readdir(ROOT_INO).expect("readdir");
    assert_eq!(
        items.iter().map(|i| i.name.as_slice()).collect::<Vec<_>>(),
        vec![&b"growing"[..]]
    );
    assert_eq!(
        m.fs.lookup(ROOT_INO, b"growing").expect("lookup").size,
        5000
    );
    m.fs.release(fh).expect("release");
}

// ----- times and modes -----

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

#[test]
fn cp_p_keeps_the_time_set_while_writing() {
    let m = mount();
    let (attr, fh) = m.fs.create(ROOT_INO, b"f", 0o644, WRITE).expect("create");
    m.fs.write(fh, 0, b"data").expect("write");
    let t = at(1_600_000_000, 123_456_789);
    let mtime = SetAttr {
        mtime: Some(t),
        ..SetAttr::default()
    };
    assert_eq!(
        m.fs.setattr(attr.ino, Some(fh), mtime)
            .expect("futimens")
            .mtime,
        t
    );
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.metadata(b"f").and_then(|md| md.mtime), Some(t));
    assert_eq!(m.fs.getattr(attr.ino).expect("getattr").mtime, t);
}

#[test]
fn a_second_rsync_sees_the_times_it_set_without_mdtm() {
    // A LIST server, and caches that expire at once: every lookup lists.
    let m = mount_with(list_server(), |c| {
        c.attr_ttl = Duration::ZERO;
        c.dir_ttl = Duration::ZERO;
    });
    // Listed to the minute, and (years old) to the day.
    let recent = SystemTime::now() - Duration::new(3600, 987_654_321);
    let old = at(1_500_000_000, 123_456_789);
    let times = [recent, old, recent, old, recent];
    for (i, &t) in times.iter().enumerate() {
        // rsync: write a temporary file, close it, set its time, rename it.
        let tmp = format!(".f{i}.XXXXXX");
        let ino = m.cp(ROOT_INO, &tmp, b"abc").expect("cp");
        let mtime = SetAttr {
            mtime: Some(t),
            ..SetAttr::default()
        };
        m.fs.setattr(ino, None, mtime).expect("utimens");
        let name = format!("f{i}");
        m.fs.rename(ROOT_INO, tmp.as_bytes(), ROOT_INO, name.as_bytes(), false)
            .expect("rename");
    }
    m.store.reset_counters();
    for (i, &t) in times.iter().enumerate() {
        let name = format!("f{i}");
        let attr = m.fs.lookup(ROOT_INO, name.as_bytes()).expect("lookup");
        assert_eq!(attr.mtime, t, "{name} to the nanosecond");
    }
    assert_eq!(m.count(Op::ExactMtime), 0);
}

#[test]
fn a_fresh_mount_asks_the_exact_time_of_a_single_file_once() {
    let m = mount_with(list_server(), |_| {});
    m.store.put_file(b"f", b"x");
    let t = at(1_700_000_037, 0);
    m.store
        .set_mtime(b"f", t)
        .expect("set the time on the server");
    m.store.reset_counters();
    let attr = m.fs.lookup(ROOT_INO, b"f").expect("lookup");
    assert_eq!(attr.mtime, t);
    assert_eq!(m.fs.getattr(attr.ino).expect("getattr").mtime, t);
    assert_eq!(m.count(Op::ExactMtime), 1);
}

#[test]
fn touch_d_sets_the_server_time() {
    let m = mount();
    m.store.put_file(b"f", b"x");
    let ino = m.ino("f");
    let t = at(1_000_000_000, 0);
    let attr =
        m.fs.setattr(
            ino,
            None,
            SetAttr {
                mtime: Some(t),
                ..SetAttr::default()
            },
        )
        .expect("utimens");
    assert_eq!(attr.mtime, t);
    assert_eq!(m.store.metadata(b"f").and_then(|md| md.mtime), Some(t));
}

#[test]
fn chmod_reaches_the_server_and_servers_without_it_are_not_an_error() {
    let m = mount();
    m.store.put_file(b"f", b"x");
    let ino = m.ino("f");
    let chmod = SetAttr {
        mode: Some(0o100600),
        ..SetAttr::default()
    };
    assert_eq!(m.fs.setattr(ino, None, chmod).expect("chmod").perm, 0o600);
    assert_eq!(m.store.metadata(b"f").and_then(|md| md.mode), Some(0o600));

    let no_chmod = MemoryStore::with_capabilities(Capabilities {
        set_mtime: true,
        chmod: false,
        exact_listing_mtime: true,
        append: true,
        ..Capabilities::default()
    });
    let m = mount_with(no_chmod, |_| {});
    m.store.put_file(b"f", b"x");
    let ino = m.ino("f");
    m.store.reset_counters();
    let attr =
        m.fs.setattr(ino, None, chmod)
            .expect("chmod without SITE CHMOD");
    assert_eq!(attr.perm, 0o644, "the mount shows what the server has");
    assert_eq!(m.store.counters().chmod, 0);
}

#[test]
fn an_executable_copied_in_stays_executable() {
    let m = mount();
    let (_, fh) =
        m.fs.create(ROOT_INO, b"run.sh", 0o755, WRITE)
            .expect("create");
    m.fs.write(fh, 0, b"#!/bin/sh\n").expect("write");
    m.fs.release(fh).expect("release");
    assert_eq!(
        m.store.metadata(b"run.sh").and_then(|md| md.mode),
        Some(0o755)
    );
    // A plain file costs no SITE CHMOD.
    m.store.reset_counters();
    m.cp(ROOT_INO, "plain", b"x").expect("cp");
    assert_eq!(m.store.counters().chmod, 0);
}

#[test]
fn attributes_are_what_ls_expects() {
    let m = mount_with(MemoryStore::new(), |c| c.umask = 0o027);
    m.store.put_file(b"d/f", b"12345");
    let d = m.fs.lookup(ROOT_INO, b"d").expect("lookup d");
    assert_eq!(
        (d.kind, d.perm, d.nlink, d.uid, d.gid),
        (FileKind::Dir, 0o750, 2, 1000, 1000)
    );
    let f = m.fs.lookup(d.ino, b"f").expect("lookup f");
    assert_eq!(
        (f.kind, f.size, f.perm, f.nlink),
        (FileKind::File, 5, 0o640, 1)
    );
    let root = m.fs.getattr(ROOT_INO).expect("root");
    assert_eq!(root.kind, FileKind::Dir);
    let s = m.fs.statfs();
    assert_eq!((s.bsize, s.namelen), (4096, 255));
    assert_eq!(
        (s.blocks, s.bfree, s.bavail),
        (0, 0, 0),
        "unknown, not invented"
    );
}

/// An open file whose content vanished from the server before it was read
/// (removed there by someone else, or unlinked through the mount) reads as
/// ESTALE, not ENOENT (which read(2) never returns) or EIO; the mount
/// forgets the name.
#[test]
fn a_file_gone_from_the_server_while_open_reads_as_estale() {
    let m = mount();
    m.store.put_file(b"gone", b"content");
    m.store.put_file(b"unlinked", b"content");
    let gone = m.fs.lookup(ROOT_INO, b"gone").unwrap().ino;
    let unlinked = m.fs.lookup(ROOT_INO, b"unlinked").unwrap().ino;
    let fh_gone = m.fs.open(gone, READ).unwrap();
    let fh_unlinked = m.fs.open(unlinked, READ).unwrap();
    m.store.delete(b"gone").unwrap();
    let err = m.fs.read(fh_gone, 0, 100).expect_err("gone");
    assert_eq!(err.errno(), libc::ESTALE, "{err}");
    m.fs.unlink(ROOT_INO, b"unlinked").unwrap();
    let err = m.fs.read(fh_unlinked, 0, 100).expect_err("unlinked");
    assert_eq!(err.errno(), libc::ESTALE, "{err}");
    let names: Vec<Vec<u8>> =
        m.fs.readdir(ROOT_INO)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
    assert!(!names.contains(&b"gone".to_vec()), "forgotten: {names:?}");
    m.fs.release(fh_gone).unwrap();
    m.fs.release(fh_unlinked).unwrap();
}

/// Each change of a name in a directory shows as that directory's mtime
/// at once, even while its old attributes are cached; directories whose
/// names did not change keep theirs.
#[test]
fn creating_removing_and_renaming_update_the_parent_directory_mtime() {
    let m = mount();
    let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    // One directory per change, each cached with an old time.
    for dir in ["mkdir", "rmdir", "unlink", "create", "from", "to", "other"] {
        m.store.mkdir(dir.as_bytes()).unwrap();
    }
    m.store.mkdir(b"rmdir/d").unwrap();
    m.store.put_file(b"unlink/f", b"x");
    m.store.put_file(b"from/g", b"y");
    for dir in ["mkdir", "rmdir", "unlink", "create", "from", "to", "other"] {
        m.store.set_mtime(dir.as_bytes(), old).unwrap();
    }
    let ino = |name: &str| {
        let attr = m.fs.lookup(ROOT_INO, name.as_bytes()).unwrap();
        assert_eq!(attr.mtime, old, "{name} cached with its old time");
        attr.ino
    };
    let dirs: Vec<Ino> = ["mkdir", "rmdir", "unlink", "create", "from", "to", "other"]
        .iter()
        .map(|name| ino(name))
        .collect();
    let [mkdir, rmdir, unlink, create, from, to, other] = dirs[..] else {
        unreachable!()
    };
    m.fs.mkdir(mkdir, b"d", 0o755).unwrap();
    m.fs.rmdir(rmdir, b"d").unwrap();
    m.fs.unlink(unlink, b"f").unwrap();
    let (_, fh) = m.fs.create(create, b"n", 0o644, WRITE).unwrap();
    m.fs.release(fh).unwrap();
    m.fs.rename(from, b"g", to, b"g2", false).unwrap();
    let recent = SystemTime::now() - Duration::from_secs(60);
    for (what, dir) in [
        ("mkdir", mkdir),
        ("rmdir", rmdir),
        ("unlink", unlink),
        ("create", create),
        ("rename (from)", from),
        ("rename (to)", to),
    ] {
        let shown = m.fs.getattr(dir).unwrap().mtime;
        assert!(shown > recent, "{what}: {shown:?}");
    }
    assert_eq!(
        m.fs.getattr(other).unwrap().mtime,
        old,
        "untouched directory"
    );
}

#[test]
fn statfs_shows_the_free_space_the_server_tells_asking_once_per_ttl() {
    let m = mount();
    m.store.set_quota(Some(10 * MIB as u64 + 100));
    let s = m.fs.statfs();
    let free = (10 * MIB / 4096) as u64;
    assert_eq!((s.blocks, s.bfree, s.bavail), (free, free, free));
    let asked = m.faults.counters().get(Op::FreeSpace);
    assert_eq!(asked, 1);
    for _ in 0..5 {
        assert_eq!(m.fs.statfs().bavail, free);
    }
    assert_eq!(
        m.faults.counters().get(Op::FreeSpace),
        asked,
        "cached for {FREE_SPACE_TTL:?}: df in a loop costs no round trips"
    );
    // A server that cannot tell (no quota here, a refused AVBL there) or
    // fails to: unknown, as before.
    let m = mount();
    assert_eq!(m.fs.statfs().bavail, 0);
    let m = mount();
    m.store.set_quota(Some(MIB as u64));
    m.faults.fail_next(Op::FreeSpace, ErrorKind::Unavailable);
    assert_eq!(m.fs.statfs().bavail, 0);
}

#[test]
fn unreachable_servers_are_etimedout_and_bad_handles_ebadf() {
    let m = mount();
    m.faults.fail_next(Op::Stat, ErrorKind::Unavailable);
    m.faults.fail_next(Op::List, ErrorKind::Unavailable);
    let err = m.fs.lookup(ROOT_INO, b"x").expect_err("down");
    assert_eq!(err.errno(), libc::ETIMEDOUT);
    assert_eq!(
        m.fs.read(999, 0, 10).expect_err("no handle").errno(),
        libc::EBADF
    );
    assert_eq!(
        m.fs.getattr(12345).expect_err("unknown inode").errno(),
        libc::ENOENT
    );
}

#[test]
fn forgotten_inodes_are_forgotten() {
    let m = mount();
    m.store.put_file(b"f", b"x");
    let ino = m.ino("f");
    m.fs.forget(ino, 1);
    assert_eq!(
        m.fs.getattr(ino).expect_err("forgotten").errno(),
        libc::ENOENT
    );
    let again = m.ino("f");
    assert_eq!(m.fs.getattr(again).expect("getattr").size, 1);
}

// ----- more of what programs do -----

#[test]
fn a_server_that_refuses_renames_still_gets_the_file() {
    let m = mount();
    m.store.put_file(b"f", b"old");
    m.store.put_file(b"g", b"old");
    let f = m.ino("f");
    let g = m.ino("g");
    // The rename fails, and again after the old file was removed.
    m.faults.fail_next(Op::Rename, ErrorKind::PermissionDenied);
    m.faults.fail_next(Op::Rename, ErrorKind::PermissionDenied);
    let fh = m.fs.open(f, WRITE).expect("open");
    m.fs.write(fh, 0, b"NEW").expect("write");
    m.fs.flush(fh).expect("flush: copied in place");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"f").as_deref(), Some(&b"NEW"[..]));
    assert!(m.temp_files().is_empty(), "{:?}", m.temp_files());
    // From then on, uploads go straight to the file.
    m.store.reset_counters();
    let fh = m.fs.open(g, WRITE).expect("open");
    m.fs.write(fh, 0, b"NEW").expect("write");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"g").as_deref(), Some(&b"NEW"[..]));
    assert_eq!(m.store.counters().rename, 0);
}

#[test]
fn unlinking_an_open_file_discards_its_writes() {
    let m = mount();
    let (attr, fh) =
        m.fs.create(ROOT_INO, b"scratch", 0o644, RDWR)
            .expect("create");
    m.fs.write(fh, 0, &pattern(3 * MIB, 1))
        .expect("write (streaming)");
    m.fs.unlink(ROOT_INO, b"scratch").expect("unlink");
    assert_eq!(
        m.fs.lookup(ROOT_INO, b"scratch").expect_err("gone").errno(),
        libc::ENOENT
    );
    assert!(
        m.fs.getattr(attr.ino).is_ok(),
        "the open handle still has it"
    );
    m.fs.write(fh, 3 * MIB as u64, b"more")
        .expect("write after unlink");
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert!(m.store.paths().is_empty(), "{:?}", m.store.paths());
}

#[test]
fn fsync_uploads_and_writing_goes_on() {
    let m = mount();
    let (_, fh) = m.fs.create(ROOT_INO, b"db", 0o644, RDWR).expect("create");
    m.fs.write(fh, 0, b"first").expect("write");
    m.fs.fsync(fh).expect("fsync");
    assert_eq!(m.store.file(b"db").as_deref(), Some(&b"first"[..]));
    m.fs.write(fh, 5, b" second").expect("write");
    m.fs.write(fh, 0, b"F").expect("write");
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"db").as_deref(), Some(&b"First second"[..]));
}

#[test]
fn a_large_staged_file_moves_to_a_private_spool_file() {
    let m = mount_with(MemoryStore::new(), |c| c.spool_memory_limit = MIB);
    let mut expected = pattern(3 * MIB, 1);
    m.store.put_file(b"img", &expected);
    let ino = m.ino("img");
    let fh = m.fs.open(ino, WRITE).expect("open");
    m.fs.write(fh, 2 * MIB as u64, b"patch").expect("write");
    expected[2 * MIB..2 * MIB + 5].copy_from_slice(b"patch");
    let stats = m.fs.stats();
    assert_eq!(stats.spool_files, 1);
    assert!(stats.spool_peak_memory <= MIB as u64);
    let spool_dir = m.spool.path().join("spool");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&spool_dir)
        .expect("spool dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(
        std::fs::read_dir(&spool_dir).expect("list").count(),
        0,
        "no file to leak"
    );
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"img").expect("file"), expected);
}

#[test]
fn a_file_replaced_while_open_for_writing_is_not_uploaded_over_its_replacement() {
    let m = mount();
    m.store.put_file(b"a", b"AAAA");
    m.store.put_file(b"b", b"BBBB");
    let b = m.ino("b");
    m.ino("a");
    let fh = m.fs.open(b, WRITE).expect("open b");
    m.fs.write(fh, 0, b"bb").expect("write b");
    m.fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", false)
        .expect("mv a b");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"b").as_deref(), Some(&b"AAAA"[..]));
    assert_eq!(m.store.paths(), vec![b"b".to_vec()]);
}

#[test]
fn directories_rename_over_empty_ones_only() {
    let m = mount();
    m.store.put_file(b"src/x", b"x");
    m.store.put_dir(b"empty");
    m.store.put_file(b"full/y", b"y");
    m.ino("src");
    m.ino("empty");
    m.ino("full");
    let err =
        m.fs.rename(ROOT_INO, b"src", ROOT_INO, b"full", false)
            .expect_err("full");
    assert_eq!(err.errno(), libc::ENOTEMPTY);
    m.fs.rename(ROOT_INO, b"src", ROOT_INO, b"empty", false)
        .expect("over empty");
    assert_eq!(m.store.file(b"empty/x").as_deref(), Some(&b"x"[..]));
    let err =
        m.fs.rename(ROOT_INO, b"empty", m.ino("empty"), b"inside", false)
            .expect_err("into itself");
    assert_eq!(err.errno(), libc::EINVAL);
    let f =
        m.fs.rename(ROOT_INO, b"full", m.ino("empty"), b"x", false)
            .expect_err("dir over file");
    assert_eq!(f.errno(), libc::ENOTDIR);
}

#[test]
fn copying_a_tree_in_asks_nothing_about_new_directories() {
    let m = mount();
    let d = m.fs.mkdir(ROOT_INO, b"new", 0o755).expect("mkdir").ino;
    m.store.reset_counters();
    for i in 0..10 {
        let name = format!("f{i}");
        assert_eq!(
            m.fs.lookup(d, name.as_bytes()).expect_err("absent").errno(),
            libc::ENOENT
        );
        m.cp(d, &name, b"content").expect("cp");
    }
    let c = m.store.counters();
    assert_eq!(
        (c.upload, c.size, c.total()),
        (10, 10, 20),
        "one upload and its check per file, and nothing else: {c:?}"
    );
}

#[test]
fn the_core_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Fs>();
}

#[test]
fn cp_over_an_existing_file_truncated_by_setattr_still_streams() {
    let m = mount();
    m.store.put_file(b"f", &pattern(100, 1));
    let ino = m.ino("f");
    // The kernel turns O_TRUNC into open + setattr(size 0).
    let fh = m.fs.open(ino, WRITE).expect("open");
    let truncate = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    m.fs.setattr(ino, Some(fh), truncate).expect("ftruncate");
    let data = pattern(4 * MIB, 2);
    for (i, c) in data.chunks(128 * KIB).enumerate() {
        m.fs.write(fh, (i * 128 * KIB) as u64, c).expect("write");
    }
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.fs.stats().streamed_uploads, 1);
    assert_eq!(m.store.file(b"f").expect("file"), data);
    assert!(m.temp_files().is_empty());
}

#[test]
fn reading_a_file_while_it_streams_reads_what_was_written() {
    let m = mount();
    let (attr, fh) = m.fs.create(ROOT_INO, b"f", 0o644, WRITE).expect("create");
    let data = pattern(3 * MIB, 3);
    m.fs.write(fh, 0, &data[..2 * MIB]).expect("write");
    let rh = m.fs.open(attr.ino, READ).expect("open for reading");
    let got = m.fs.read(rh, MIB as u64 - 10, 20).expect("read");
    assert_eq!(got, &data[MIB - 10..MIB + 10]);
    m.fs.write(fh, 2 * MIB as u64, &data[2 * MIB..])
        .expect("write on");
    m.fs.release(rh).expect("release reader");
    m.fs.flush(fh).expect("flush");
    m.fs.release(fh).expect("release");
    assert_eq!(m.store.file(b"f").expect("file"), data);
    assert!(m.store.paths().len() == 1);
}

/// Reading a directory lists its subdirectories ahead, in the background,
/// once each: a walk that follows (here at once, racing the prefetch) finds
/// them listed or being listed, and no directory is listed twice.
#[test]
fn subdirectories_are_listed_ahead_of_a_walk_once_each() {
    let m = mount_with(MemoryStore::new(), |c| c.listing_prefetch = 3);
    for d in 0..20 {
        m.store.put_dir(format!("d{d:02}").as_bytes());
        m.store.put_dir(format!("d{d:02}/sub").as_bytes());
        m.store.put_file(format!("d{d:02}/sub/f").as_bytes(), b"x");
    }
    m.store.reset_counters();
    let mut dirs = vec![ROOT_INO];
    let mut walked = 0;
    while let Some(dir) = dirs.pop() {
        walked += 1;
        for item in m.fs.readdir(dir).unwrap() {
            if item.kind == FileKind::Dir {
                dirs.push(m.fs.lookup(dir, &item.name).unwrap().ino);
            }
        }
    }
    assert_eq!(walked, 41);
    assert_eq!(m.store.counters().list, 41, "one listing per directory");
    assert_eq!(m.store.counters().stat, 0);
}

#[test]
fn without_a_walk_nothing_is_listed_ahead_twice() {
    let m = mount_with(MemoryStore::new(), |c| c.listing_prefetch = 2);
    for d in 0..10 {
        m.store.put_dir(format!("d{d}").as_bytes());
    }
    m.store.reset_counters();
    m.fs.readdir(ROOT_INO).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while m.store.counters().list < 11 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        m.store.counters().list,
        11,
        "the root and its 10 subdirectories"
    );
    m.fs.readdir(ROOT_INO).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        m.store.counters().list,
        11,
        "cached subdirectories are not listed again"
    );
}

/// Temporary upload files are never listed; one left over by an interrupted
/// upload (older than an hour) is deleted when its directory is listed, and
/// a recent one (an upload that may be in progress elsewhere) is left alone.
#[test]
fn leftover_temporary_uploads_are_removed_when_listed() {
    let m = mount();
    let old = b".report.pdf.ftpsfs-1a2b3c.part";
    let recent = b".notes.txt.ftpsfs-4d5e6f.part";
    m.store.put_file(old, b"partial");
    m.store.put_file(recent, b"partial");
    m.store.put_file(b"report.pdf", b"the old version");
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    m.store.set_mtime(old, two_hours_ago).unwrap();
    m.store.reset_counters();
    let names: Vec<Vec<u8>> =
        m.fs.readdir(ROOT_INO)
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
    assert_eq!(names, vec![b"report.pdf".to_vec()]);
    assert_eq!(m.store.file(old), None, "the leftover is gone");
    assert!(m.store.file(recent).is_some(), "a recent one is kept");
    assert_eq!(m.store.file(b"report.pdf").unwrap(), b"the old version");
    assert_eq!(m.store.counters().delete, 1);
}

/// At shutdown (SIGTERM) the pending changes are uploaded; one that cannot
/// be (the server is gone) is kept in a private file under the spool
/// directory, not dropped with the spool: the program was told its writes
/// succeeded.
#[test]
fn an_upload_that_fails_at_shutdown_keeps_its_content_locally() {
    use std::os::unix::fs::PermissionsExt;
    let m = impatient_mount();
    m.store.put_dir(b"docs");
    m.store.put_file(b"docs/report.txt", b"old version");
    let dir = m.fs.lookup(ROOT_INO, b"docs").unwrap();
    let file = m.fs.lookup(dir.ino, b"report.txt").unwrap();
    let fh = m.fs.open(file.ino, WRITE).unwrap();
    m.fs.write(fh, 0, b"NEW").unwrap();
    m.faults.fail_always(Op::Upload, ErrorKind::Unavailable);
    let err = m.fs.shutdown().expect_err("the upload failed");
    m.reachable();
    assert!(err.message.contains("could not be uploaded"), "{err:?}");
    assert_eq!(m.store.file(b"docs/report.txt").unwrap(), b"old version");
    let spool = m.spool.path().join("spool");
    let kept_dir = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("unsaved-")
        })
        .expect("a directory of unsaved files");
    let kept = kept_dir.join("docs/report.txt");
    assert_eq!(std::fs::read(&kept).unwrap(), b"NEW version");
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "readable by the user only");
    let next_start = Fs::new(m.store.clone(), config(&m.spool));
    assert_eq!(
        next_start.kept_by_earlier_mounts(),
        vec![kept],
        "the next mount with this spool finds what was kept"
    );
}

// ----- patching in place -----

const BIG: usize = 8 * MIB;

impl Mount {
    /// `dd conv=notrunc`: opens `name` for writing without truncating,
    /// writes each `(offset, bytes)`, closes. The first error, as dd sees it.
    fn dd(&self, name: &str, writes: &[(usize, &[u8])]) -> Result<(), ftpsfs::fs::Error> {
        let fh = self.fs.open(self.ino(name), WRITE)?;
        let mut result = Ok(());
        for (offset, bytes) in writes {
            result = result.and(self.fs.write(fh, *offset as u64, bytes).map(|_| ()));
        }
        let flushed = self.fs.flush(fh);
        let released = self.fs.release(fh);
        result.and(flushed).and(released)
    }

    /// A big file on the server, and the counters started afresh.
    fn big_file(&self, name: &str) -> Vec<u8> {
        let data = pattern(BIG, 7);
        self.store.put_file(name.as_bytes(), &data);
        self.ino(name);
        self.store.reset_counters();
        data
    }

    /// (whole uploads, REST + STOR uploads, renames, bytes uploaded)
    fn uploads(&self) -> (u64, u64, u64, u64) {
        let c = self.store.counters();
        (c.upload, c.upload_at, c.rename, c.bytes_uploaded)
    }
}

/// `data` with `bytes` written at `offset`.
fn written(mut data: Vec<u8>, offset: usize, bytes: &[u8]) -> Vec<u8> {
    if data.len() < offset + bytes.len() {
        data.resize(offset + bytes.len(), 0);
    }
    data[offset..offset + bytes.len()].copy_from_slice(bytes);
    data
}

/// A 4 KiB `dd conv=notrunc` into a big file sends those 4 KiB with one
/// REST + STOR, on a server that writes in place: no whole upload, no
/// rename, no temporary file left.
#[test]
fn a_small_change_inside_a_big_file_sends_only_that_range() {
    let m = mount();
    let data = m.big_file("big");
    let block = pattern(4 * KIB, 8);
    m.dd("big", &[(3 * MIB, &block)]).expect("dd");
    assert_eq!(m.uploads(), (0, 1, 0, 4 * KIB as u64));
    assert_eq!(m.store.file(b"big"), Some(written(data, 3 * MIB, &block)));
    let stats = m.fs.stats();
    assert_eq!((stats.patches, stats.bytes_patched), (1, 4 * KIB as u64));
    assert_eq!(stats.staged_uploads, 0);
    assert!(m.temp_files().is_empty());
    assert_eq!(m.fs.getattr(m.ino("big")).unwrap().size, BIG as u64);
}

/// Writes into a big file that was not fetched go range by range, exactly
/// what was written, in order: the bytes between them are not held here
/// (a staged copy would merge near ones, see `changes`).
#[test]
fn unfetched_writes_go_range_by_range_exactly_as_written() {
    let m = mount();
    let data = m.big_file("big");
    let (a, b, c) = (pattern(4 * KIB, 1), pattern(4 * KIB, 2), pattern(100, 3));
    m.dd("big", &[(5 * MIB, &c), (MIB + 10 * KIB, &b), (MIB, &a)])
        .expect("dd");
    assert_eq!(m.uploads(), (0, 3, 0, (8 * KIB + 100) as u64));
    let expected = written(
        written(written(data, MIB, &a), MIB + 10 * KIB, &b),
        5 * MIB,
        &c,
    );
    assert_eq!(m.store.file(b"big"), Some(expected));
    assert_eq!(m.count(Op::OpenRead), 0, "nothing fetched");
}

/// The issue's case: a 4 KiB `dd conv=notrunc` into the middle of a big
/// file downloads nothing and uploads those 4 KiB: what a new 4 KiB file
/// costs, plus the checks of the server's size before and after.
#[test]
fn a_small_write_inside_a_big_file_fetches_nothing() {
    let m = mount();
    let data = m.big_file("big");
    let block = pattern(4 * KIB, 8);
    m.dd("big", &[(BIG / 2, &block)]).expect("dd");
    let c = m.store.counters();
    assert_eq!((c.open_read, c.bytes_read), (0, 0), "{c:?}");
    assert_eq!(m.uploads(), (0, 1, 0, 4 * KIB as u64));
    assert_eq!(m.store.file(b"big"), Some(written(data, BIG / 2, &block)));
    let stats = m.fs.stats();
    assert_eq!((stats.unfetched_patches, stats.patches), (1, 1));
    assert_eq!(
        stats.spool_peak_memory, 0,
        "the spool moved to a (sparse) file"
    );

    // With `--patch never`, the same dd fetches the whole file (as before).
    let m = mount_with(MemoryStore::new(), |c| c.patch_in_place = false);
    m.big_file("big");
    m.dd("big", &[(BIG / 2, &block)]).expect("dd");
    let c = m.store.counters();
    assert_eq!((c.open_read, c.bytes_read), (1, BIG as u64), "{c:?}");
    assert_eq!(m.fs.stats().unfetched_patches, 0);
}

/// Reads of a file written but not fetched: the written bytes from here,
/// the others from the server, in one reply where a read spans both; the
/// size shown is the server's.
#[test]
fn reads_of_an_unfetched_file_merge_the_written_ranges() {
    let m = mount();
    let data = m.big_file("big");
    let ino = m.ino("big");
    let fh = m.fs.open(ino, RDWR).expect("open");
    let (a, b) = (pattern(4 * KIB, 1), pattern(10, 2));
    m.fs.write(fh, 3 * MIB as u64, &a).expect("write");
    m.fs.write(fh, (3 * MIB + 5 * KIB) as u64, &b)
        .expect("write");
    let expected = written(written(data, 3 * MIB, &a), 3 * MIB + 5 * KIB, &b);
    assert_eq!(m.fs.getattr(ino).expect("getattr").size, BIG as u64);
    for (offset, len) in [
        (3 * MIB - 100, 8 * KIB),
        (3 * MIB, 4 * KIB),
        (3 * MIB + 5 * KIB + 3, 2),
        (0, 64 * KIB),
        (BIG - 10, 64 * KIB),
        (BIG, 10),
    ] {
        let got = m.fs.read(fh, offset as u64, len as u32).expect("read");
        let end = (offset + len).min(BIG);
        assert_eq!(got, expected[offset.min(BIG)..end], "{offset} {len}");
    }
    // Read in full, in order, through the read-ahead.
    let mut all = Vec::new();
    loop {
        let chunk =
            m.fs.read(fh, all.len() as u64, 128 * KIB as u32)
                .expect("read");
        if chunk.is_empty() {
            break;
        }
        all.extend_from_slice(&chunk);
    }
    assert!(all == expected, "the whole file read back");
    m.fs.release(fh).expect("release");
    assert!(m.store.file(b"big") == Some(expected));
    assert_eq!(m.count(Op::Upload), 0, "patched");
}

/// A write the rule does not admit (one that grows the file, one at byte
/// 0, one past an eighth), and a truncate to another size, fetch the file
/// and put what was written over it: then it is a staged file as any.
#[test]
fn unfetched_writes_are_put_over_the_file_when_it_must_be_fetched() {
    let block = pattern(4 * KIB, 8);
    let eighth = pattern(BIG / 8, 3);
    // (what, offset and bytes written next, or None: truncated to BIG + 3;
    // then whole uploads and REST + STOR uploads at close)
    type Next<'a> = Option<(usize, &'a [u8])>;
    let cases: [(&str, Next, (u64, u64)); 4] = [
        ("grows", Some((BIG - 2, b"four")), (0, 2)),
        ("byte 0", Some((0, b"zero")), (1, 0)),
        ("an eighth", Some((MIB, &eighth)), (1, 0)),
        ("truncate", None, (0, 2)),
    ];
    for (name, next, (whole, ranges)) in cases {
        let m = mount();
        let data = m.big_file("big");
        let fh = m.fs.open(m.ino("big"), RDWR).expect("open");
        m.fs.write(fh, (2 * MIB) as u64, &block).expect("write");
        assert_eq!(m.count(Op::OpenRead), 0, "{name}: not fetched yet");
        let (at, bytes) = match next {
            Some((at, bytes)) => {
                m.fs.write(fh, at as u64, bytes).expect("write");
                (at, bytes)
            }
            None => {
                let size = SetAttr {
                    size: Some((BIG + 3) as u64),
                    ..SetAttr::default()
                };
                m.fs.setattr(m.ino("big"), None, size).expect("truncate");
                (BIG, &b"\0\0\0"[..])
            }
        };
        assert_eq!(m.count(Op::OpenRead), 1, "{name}: fetched");
        let expected = written(written(data, 2 * MIB, &block), at, bytes);
        let got = m.fs.read(fh, (2 * MIB) as u64, (4 * KIB) as u32);
        assert_eq!(
            got.expect("read"),
            block,
            "{name}: the first write is there"
        );
        m.fs.release(fh).expect("release");
        assert!(m.store.file(b"big") == Some(expected), "{name}");
        let c = m.store.counters();
        assert_eq!((c.upload, c.upload_at), (whole, ranges), "{name}");
    }
}

/// A file written but not fetched and then unlinked keeps its whole
/// content for its descriptors: the server's part is fetched first.
#[test]
fn an_unfetched_file_unlinked_while_open_keeps_its_content() {
    let m = mount();
    let data = m.big_file("big");
    let fh = m.fs.open(m.ino("big"), RDWR).expect("open");
    m.fs.write(fh, MIB as u64, b"mine").expect("write");
    m.fs.unlink(ROOT_INO, b"big").expect("unlink");
    assert!(!m.store.exists(b"big"));
    let got = m.fs.read(fh, (MIB - 2) as u64, 8).expect("read");
    assert_eq!(got, written(data, MIB, b"mine")[MIB - 2..MIB + 6]);
    m.fs.release(fh).expect("release");
    assert!(!m.store.exists(b"big"), "never uploaded");
}

/// Growing a big file a little (a write over its end, a truncate up) is a
/// patch of the new tail, zeros included.
#[test]
fn a_big_file_grown_a_little_sends_its_new_tail() {
    let m = mount();
    let data = m.big_file("big");
    let tail = pattern(8 * KIB, 9);
    m.dd("big", &[(BIG - 4 * KIB, &tail)])
        .expect("dd over the end");
    let data = written(data, BIG - 4 * KIB, &tail);
    assert_eq!(m.uploads(), (0, 1, 0, 8 * KIB as u64));
    m.store.reset_counters();
    let ino = m.ino("big");
    let grown = (BIG + 12 * KIB) as u64;
    let size = SetAttr {
        size: Some(grown),
        ..SetAttr::default()
    };
    m.fs.setattr(ino, None, size).expect("truncate up");
    assert_eq!(m.uploads(), (0, 1, 0, 8 * KIB as u64), "8 KiB of zeros");
    let mut expected = data;
    expected.resize(grown as usize, 0);
    assert_eq!(m.store.file(b"big"), Some(expected));
}

/// A server that truncates after REST + STOR (Pure-FTPd) gets a patch only
/// of what runs to the end of the file; a change in the middle replaces the
/// file whole.
#[test]
fn a_truncating_server_is_patched_only_at_the_end() {
    let m = mount();
    m.store.set_store_at_offset(StoreAtOffset::Truncates);
    let data = m.big_file("big");
    let block = pattern(4 * KIB, 8);
    m.dd("big", &[(3 * MIB, &block)]).expect("dd");
    let data = written(data, 3 * MIB, &block);
    assert_eq!(m.uploads(), (1, 0, 1, BIG as u64), "replaced whole");
    assert_eq!(m.store.file(b"big"), Some(data.clone()));
    m.store.reset_counters();
    m.dd("big", &[(BIG - 2 * KIB, &block)])
        .expect("dd at the end");
    assert_eq!(m.uploads(), (0, 1, 0, 4 * KIB as u64), "the tail patched");
    assert_eq!(
        m.store.file(b"big"),
        Some(written(data, BIG - 2 * KIB, &block))
    );
    assert!(m.temp_files().is_empty());
}

/// Where the server refuses REST + STOR, or the probe could not tell, or
/// the user said `--patch never`, the file is replaced whole.
#[test]
fn without_in_place_writes_the_file_is_replaced_whole() {
    for (mode, patch) in [
        (StoreAtOffset::Refused, true),
        (StoreAtOffset::Unknown, true),
        (StoreAtOffset::InPlace, false),
    ] {
        let m = mount_with(MemoryStore::new(), |c| c.patch_in_place = patch);
        m.store.set_store_at_offset(mode);
        let data = m.big_file("big");
        m.dd("big", &[(MIB, b"x")]).expect("dd");
        assert_eq!(m.uploads(), (1, 0, 1, BIG as u64), "{mode:?} {patch}");
        assert_eq!(m.store.file(b"big"), Some(written(data, MIB, b"x")));
        assert_eq!(m.fs.stats().patches, 0);
    }
}

/// What is not a small change inside a big file is replaced whole: a
/// small file, a change from its first byte, a change of more than an
/// eighth, too many scattered writes, a shrink (then writes).
#[test]
fn big_small_scattered_or_shrinking_changes_replace_the_file() {
    let m = mount();
    m.store.put_file(b"small", &pattern(MIB - 1, 1));
    m.dd("small", &[(10, b"x")]).expect("dd");
    assert_eq!(m.uploads().0, 1, "a file under 1 MiB");

    let data = m.big_file("big");
    m.dd("big", &[(0, b"x"), (BIG - 1, b"y")]).expect("dd");
    assert_eq!(m.uploads().0, 1, "from byte 0: REST 0 + STOR would cut it");
    let data = written(written(data, 0, b"x"), BIG - 1, b"y");
    assert_eq!(m.store.file(b"big"), Some(data.clone()));

    m.store.reset_counters();
    let chunk = pattern(BIG / 8 + 1, 2);
    m.dd("big", &[(0, &chunk)]).expect("dd");
    assert_eq!(m.uploads(), (1, 0, 1, BIG as u64), "more than an eighth");
    let data = written(data, 0, &chunk);

    m.store.reset_counters();
    let writes: Vec<(usize, &[u8])> = (0..17).map(|i| (i * 300 * KIB, &b"y"[..])).collect();
    m.dd("big", &writes).expect("dd");
    assert_eq!(m.uploads().0, 1, "17 ranges");
    let data = writes.iter().fold(data, |d, (o, b)| written(d, *o, b));
    assert_eq!(m.store.file(b"big"), Some(data.clone()));

    m.store.reset_counters();
    let ino = m.ino("big");
    let fh = m.fs.open(ino, WRITE).expect("open");
    let size = SetAttr {
        size: Some((BIG - 10) as u64),
        ..SetAttr::default()
    };
    m.fs.setattr(ino, Some(fh), size).expect("shrink");
    m.fs.write(fh, (BIG - 10) as u64, b"0123")
        .expect("write after the shrink");
    m.fs.release(fh).expect("release");
    assert_eq!(
        m.uploads(),
        (1, 0, 1, (BIG - 6) as u64),
        "shrunk, then grown"
    );
    let mut expected = data[..BIG - 10].to_vec();
    expected.extend_from_slice(b"0123");
    assert_eq!(m.store.file(b"big"), Some(expected));
    assert_eq!(m.fs.stats().patches, 0);
}

/// Another client changed the file since it was written here: it is
/// replaced whole, never patched into a file the mount does not know: the
/// server's copy as it is now, with the writes made here over it. Caught
/// by the size on any server, by the time where the server tells exact
/// times.
#[test]
fn a_file_changed_by_another_client_is_replaced_not_patched() {
    for (server, same_size) in [(list_server(), false), (MemoryStore::new(), true)] {
        let m = mount_with(server, |_| {});
        let data = m.big_file("big");
        let ino = m.ino("big");
        let fh = m.fs.open(ino, WRITE).expect("open");
        m.fs.write(fh, MIB as u64, b"mine").expect("write");
        std::thread::sleep(Duration::from_millis(5));
        let theirs = if same_size {
            pattern(BIG, 99)
        } else {
            pattern(BIG + 1, 99)
        };
        m.store.put_file(b"big", &theirs);
        m.store.reset_counters();
        m.fs.release(fh).expect("release");
        let len = theirs.len() as u64;
        assert_eq!(m.uploads(), (1, 0, 1, len), "same size: {same_size}");
        // The write was held over the server's copy, not fetched: it goes
        // over the server's copy as it is now.
        assert_eq!(m.store.file(b"big"), Some(written(theirs, MIB, b"mine")));
        drop(data);
    }
}

/// A range cut halfway is sent again from its start: the server ends with
/// the right bytes, nothing else sent again.
#[test]
fn a_cut_patch_is_sent_again_from_the_range_start() {
    let m = mount();
    let data = m.big_file("big");
    let block = pattern(64 * KIB, 5);
    let fh = m.fs.open(m.ino("big"), WRITE).expect("open");
    m.fs.write(fh, 2 * MIB as u64, &block).expect("write");
    m.faults.fail_upload_after(10 * KIB as u64);
    m.fs.flush(fh).expect("sent again");
    m.fs.release(fh).expect("release");
    assert_eq!(m.uploads(), (0, 2, 0, 74 * KIB as u64));
    assert_eq!(m.store.file(b"big"), Some(written(data, 2 * MIB, &block)));
}

/// A patch refused or failing for good falls back to replacing the file
/// whole, which the local copy can always do.
#[test]
fn a_refused_patch_replaces_the_file_whole() {
    let m = mount();
    let data = m.big_file("big");
    m.faults
        .fail_next(Op::UploadAt, ErrorKind::PermissionDenied);
    m.dd("big", &[(MIB, b"x")]).expect("dd");
    assert_eq!(m.uploads(), (1, 0, 1, BIG as u64));
    assert_eq!(m.faults.counters().upload_at, 1);
    assert_eq!(m.store.file(b"big"), Some(written(data, MIB, b"x")));
}

/// A patch that cannot be finished in the retry time fails with EIO, and
/// the local copy is kept in the spool directory (the server's file may
/// mix old and new bytes now).
#[test]
fn a_patch_that_cannot_finish_fails_with_eio_and_keeps_the_local_copy() {
    let m = mount_with(MemoryStore::new(), |c| {
        c.retry_time = Duration::from_secs(1)
    });
    let data = m.big_file("big");
    let fh = m.fs.open(m.ino("big"), WRITE).expect("open");
    m.fs.write(fh, MIB as u64, b"mine").expect("write");
    m.faults.fail_always(Op::UploadAt, ErrorKind::Unavailable);
    let err = m.fs.flush(fh).expect_err("the server stays away");
    assert_eq!(err.errno(), libc::EIO);
    assert!(m.faults.counters().upload_at >= 3, "retried with backoff");
    m.faults.stop_failing(Op::UploadAt);
    let _ = m.fs.release(fh);
    let kept = m.fs.kept_by_earlier_mounts();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read(&kept[0]).unwrap(),
        written(data, MIB, b"mine")
    );
}

/// A patch is checked by the server's size once (the patch's own check,
/// whatever `--verify`), never by digest: the digest computed here would be
/// of the ranges sent, not of the file.
#[test]
fn a_patch_is_checked_by_size_once_whatever_verify() {
    for verify in [Verify::None, Verify::Size, Verify::Digest] {
        let m = mount_with(digest_server(), |c| c.verify = verify);
        let data = m.big_file("big");
        m.dd("big", &[(3 * MIB, b"patch")]).expect("dd");
        assert_eq!(m.store.file(b"big"), Some(written(data, 3 * MIB, b"patch")));
        let c = m.store.counters();
        assert_eq!((c.upload, c.upload_at), (0, 1), "{verify}: {c:?}");
        assert_eq!((c.size, c.digest), (1, 0), "{verify}: one SIZE, after");
        let stats = m.fs.stats();
        assert_eq!(stats.patches, 1, "{verify}");
        assert_eq!(
            (stats.verified_by_size, stats.verified_by_digest),
            (1, 0),
            "{verify}"
        );
    }
}

/// A patch whose server size is wrong (its last range, at the end of the
/// file, stored short) replaces the file whole, and that upload is checked
/// as any: by size and digest.
#[test]
fn a_patch_stored_short_is_replaced_whole_and_that_upload_checked() {
    let m = mount_with(digest_server(), |_| {});
    let data = m.big_file("big");
    let tail = pattern(8 * KIB, 4);
    m.faults.corrupt_next_uploads(&[Corruption::DropLast]);
    m.dd("big", &[(BIG - 4 * KIB, &tail)]).expect("dd");
    assert_eq!(
        m.store.file(b"big"),
        Some(written(data, BIG - 4 * KIB, &tail))
    );
    let c = m.store.counters();
    assert_eq!((c.upload_at, c.upload, c.rename), (1, 1, 1), "{c:?}");
    assert_eq!(
        (c.size, c.digest),
        (2, 1),
        "after the patch, after the upload"
    );
    let stats = m.fs.stats();
    assert_eq!((stats.patches, stats.upload_mismatches), (0, 1));
    assert_eq!((stats.verified_by_size, stats.verified_by_digest), (1, 1));
}

// ----- cut uploads resume; uploads are checked -----

impl Mount {
    /// Writes `data` over the existing file at `path` without truncating
    /// it first: the file is staged whole and uploaded at close.
    fn overwrite(&self, path: &str, data: &[u8]) -> Result<(), ftpsfs::fs::Error> {
        let fh = self.fs.open(self.ino(path), WRITE)?;
        let result = self.write_all(fh, data);
        let flushed = self.fs.flush(fh);
        result.and(flushed).and(self.fs.release(fh))
    }

    /// The files an unverified upload left in the spool directory.
    fn kept_locally(&self) -> Vec<std::path::PathBuf> {
        Fs::new(self.store.clone(), config(&self.spool)).kept_by_earlier_mounts()
    }
}

fn digest_server() -> MemoryStore {
    let store = MemoryStore::new();
    store.set_digests(DigestSet::of(&[
        DigestAlgorithm::Sha256,
        DigestAlgorithm::Crc32,
    ]));
    store
}

/// A staged upload that replaces a file goes to a temporary name; cut
/// there, it goes on from the server's size (REST + STOR) and is renamed
/// into place: no byte twice, the old file untouched until then.
#[test]
fn a_cut_staged_upload_resumes_on_its_temporary_name() {
    let m = mount();
    m.store.put_file(b"f", &pattern(600 * KIB, 1));
    let new = pattern(600 * KIB, 2);
    m.faults.fail_upload_after(200 * KIB as u64);
    m.store.reset_counters();
    m.overwrite("f", &new).expect("resumed");
    assert_eq!(m.store.file(b"f"), Some(new.clone()));
    assert!(m.temp_files().is_empty(), "{:?}", m.temp_files());
    let c = m.faults.counters();
    assert_eq!((c.upload, c.upload_at, c.append), (1, 1, 0), "{c:?}");
    assert_eq!(c.size, 2, "where to resume, and the check at the end");
    assert_eq!(
        m.store.counters().bytes_uploaded,
        new.len() as u64,
        "nothing sent twice reached the server"
    );
    let stats = m.fs.stats();
    assert_eq!((stats.resumed_uploads, stats.verified_by_size), (1, 1));
}

/// Where the server refuses REST + STOR (ProFTPD without
/// AllowStoreRestart), a cut upload goes on with APPE.
#[test]
fn a_cut_upload_resumes_with_appe_where_rest_is_refused() {
    let m = mount();
    m.store.set_store_at_offset(StoreAtOffset::Refused);
    let data = pattern(300 * KIB, 3);
    m.faults.fail_upload_after(100 * KIB as u64);
    m.cp(ROOT_INO, "f", &data).expect("resumed");
    assert_eq!(m.store.file(b"f"), Some(data));
    let c = m.faults.counters();
    assert_eq!((c.upload, c.upload_at, c.append), (1, 0, 1), "{c:?}");
}

/// A server that can resume neither way gets the upload again from zero,
/// once.
#[test]
fn a_cut_upload_starts_again_from_zero_where_it_cannot_resume() {
    let m = mount();
    m.store.set_store_at_offset(StoreAtOffset::Refused);
    m.store.set_append(false);
    let data = pattern(300 * KIB, 4);
    m.faults.fail_upload_after(100 * KIB as u64);
    m.cp(ROOT_INO, "f", &data).expect("sent again");
    assert_eq!(m.store.file(b"f"), Some(data.clone()));
    assert_eq!(m.faults.counters().upload, 2);
    assert_eq!(
        m.store.counters().bytes_uploaded,
        100 * KIB as u64 + data.len() as u64
    );
    assert_eq!(m.fs.stats().restarted_uploads, 1);
}

/// Another client creates `victim` after the mount listed the directory;
/// `cp` over it through the mount is reset: the result is the complete new
/// file, never a truncated one.
#[test]
fn a_cut_copy_over_a_file_the_mount_did_not_know_ends_complete() {
    let m = mount();
    assert_eq!(m.ls_lr(ROOT_INO), 0);
    m.store.put_file(b"victim", &pattern(50 * KIB, 5));
    let new = pattern(200 * KIB, 6);
    m.faults.fail_upload_after(70 * KIB as u64);
    m.cp(ROOT_INO, "victim", &new).expect("resumed");
    assert_eq!(m.store.file(b"victim"), Some(new));
    assert_eq!(m.fs.stats().resumed_uploads, 1);
}

/// A streaming upload cut while the server had not yet got its last bytes
/// (in buffers): they are sent again from the window of recent bytes, and
/// the digest computed while sending still matches the server's.
#[test]
fn a_cut_streaming_upload_resumes_from_its_window() {
    let m = mount_with(digest_server(), |_| {});
    let data = pattern(8 * MIB, 7);
    m.faults.set_upload_lag(MIB as u64);
    m.faults.fail_upload_after(3 * MIB as u64);
    m.cp(ROOT_INO, "big", &data).expect("resumed");
    assert_eq!(m.store.file(b"big"), Some(data.clone()));
    assert!(m.temp_files().is_empty(), "{:?}", m.temp_files());
    assert_eq!(m.store.counters().bytes_uploaded, data.len() as u64);
    let stats = m.fs.stats();
    assert_eq!(stats.streamed_uploads, 1);
    assert_eq!(stats.resumed_uploads, 1);
    assert_eq!(stats.verified_by_digest, 1);
    assert_eq!(m.faults.counters().digest, 1);
}

/// A server that lost more than the window holds: the stream fails as a
/// cut upload did before, and nothing is left on the server.
#[test]
fn a_streaming_upload_whose_server_lost_more_than_the_window_fails() {
    let m = mount_with(MemoryStore::new(), |c| c.upload_window = MIB);
    m.faults.set_upload_lag(3 * MIB as u64);
    m.faults.fail_upload_after(5 * MIB as u64);
    let err = m
        .cp(ROOT_INO, "big", &pattern(8 * MIB, 8))
        .expect_err("outside the window");
    assert_eq!(err.errno(), libc::EIO);
    assert!(m.store.paths().is_empty(), "{:?}", m.store.paths());
    assert_eq!(m.faults.counters().size, 1, "asked once, then gave up");
}

/// The copy that replaces a rename the server refuses is resumed too.
#[test]
fn a_cut_copy_onto_the_target_resumes() {
    let m = mount();
    m.store.put_file(b"f", b"old");
    m.faults
        .fail_always(Op::Rename, ErrorKind::PermissionDenied);
    let new = pattern(500 * KIB, 9);
    m.faults.fail_upload_to_after(b"f", 100 * KIB as u64);
    m.overwrite("f", &new).expect("copied");
    assert_eq!(m.store.file(b"f"), Some(new));
    assert!(m.temp_files().is_empty(), "{:?}", m.temp_files());
    assert_eq!(m.fs.stats().resumed_uploads, 1);
}

/// A file of 1 MiB or more is checked by digest where the server offers
/// one this mount computes too; a small file by its size only.
#[test]
fn uploads_are_checked_by_size_and_big_ones_by_digest() {
    let m = mount_with(digest_server(), |_| {});
    m.cp(ROOT_INO, "small", b"tiny").expect("cp");
    let c = m.faults.counters();
    assert_eq!((c.size, c.digest), (1, 0));
    m.store.put_file(b"big", &pattern(2 * MIB, 10));
    m.faults.reset_counters();
    m.overwrite("big", &pattern(2 * MIB, 11)).expect("staged");
    let c = m.faults.counters();
    assert_eq!((c.size, c.digest), (1, 1));
    let stats = m.fs.stats();
    assert_eq!((stats.verified_by_size, stats.verified_by_digest), (2, 1));
}

#[test]
fn verify_none_asks_nothing_after_an_upload() {
    let m = mount_with(digest_server(), |c| c.verify = Verify::None);
    m.cp(ROOT_INO, "small", b"tiny").expect("cp");
    m.cp(ROOT_INO, "big", &pattern(3 * MIB, 12)).expect("cp");
    let c = m.faults.counters();
    assert_eq!((c.size, c.digest), (0, 0), "{c:?}");
}

/// A server that stored something else than was sent, and said it was
/// fine: the upload is sent again from the start, once.
#[test]
fn an_upload_that_does_not_match_is_sent_again_once() {
    let m = mount_with(digest_server(), |_| {});
    m.store.put_file(b"big", &pattern(2 * MIB, 13));
    let new = pattern(2 * MIB, 14);
    m.faults.corrupt_next_uploads(&[Corruption::FlipFirst]);
    m.overwrite("big", &new).expect("right the second time");
    assert_eq!(m.store.file(b"big"), Some(new));
    let stats = m.fs.stats();
    assert_eq!(
        (
            stats.upload_mismatches,
            stats.restarted_uploads,
            stats.verified_by_digest
        ),
        (1, 1, 1)
    );
}

/// Wrong twice: EIO, the server's file as it was, and the content kept
/// in the spool directory (the log says where).
#[test]
fn an_upload_wrong_twice_fails_and_is_kept_locally() {
    let m = mount();
    m.store.put_file(b"keep", b"precious");
    let new = pattern(100 * KIB, 15);
    m.faults
        .corrupt_next_uploads(&[Corruption::DropLast, Corruption::DropLast]);
    let err = m.overwrite("keep", &new).expect_err("wrong twice");
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(m.store.file(b"keep").as_deref(), Some(&b"precious"[..]));
    assert!(m.temp_files().is_empty(), "{:?}", m.temp_files());
    let kept = m.kept_locally();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].ends_with("keep"));
    assert_eq!(std::fs::read(&kept[0]).expect("kept"), new);
}

/// A streamed file is not held here beyond its window: a mismatch fails it
/// at once, and its real name is untouched.
#[test]
fn a_streamed_upload_that_does_not_match_fails() {
    let m = mount_with(digest_server(), |_| {});
    m.store.put_file(b"big", b"old");
    m.faults.corrupt_next_uploads(&[Corruption::FlipFirst]);
    let err = m
        .cp(ROOT_INO, "big", &pattern(3 * MIB, 16))
        .expect_err("mismatch");
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(m.store.file(b"big").as_deref(), Some(&b"old"[..]));
    assert!(m.temp_files().is_empty(), "{:?}", m.temp_files());
}

/// The final reply of an upload is lost: the resume's SIZE finds every
/// byte there, and is the check too (no second SIZE), even with
/// `--verify none`, which checks a resumed upload's size all the same.
#[test]
fn a_lost_final_reply_costs_one_size_and_nothing_sent_again() {
    for verify in [Verify::Size, Verify::None] {
        let m = mount_with(MemoryStore::new(), |c| c.verify = verify);
        let data = pattern(300 * KIB, 17);
        m.faults.corrupt_next_uploads(&[Corruption::LoseReply]);
        m.cp(ROOT_INO, "f", &data).expect("complete");
        assert_eq!(m.store.file(b"f"), Some(data.clone()));
        let c = m.faults.counters();
        assert_eq!(
            (c.upload, c.upload_at, c.append, c.size),
            (1, 0, 0, 1),
            "{verify}: {c:?}"
        );
        assert_eq!(m.store.counters().bytes_uploaded, data.len() as u64);
    }
}

/// A digest or size reply that is no digest or no size is never taken as
/// a match: sent again once, then EIO with the content kept.
#[test]
fn unusable_check_replies_are_never_a_success() {
    let m = mount_with(digest_server(), |_| {});
    m.store.put_file(b"big", &pattern(2 * MIB, 18));
    m.faults.fail_next(Op::Digest, ErrorKind::Failed);
    m.faults.fail_next(Op::Size, ErrorKind::Failed);
    let err = m
        .overwrite("big", &pattern(2 * MIB, 19))
        .expect_err("no usable check, twice");
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(m.store.file(b"big"), Some(pattern(2 * MIB, 18)));
    assert_eq!(m.kept_locally().len(), 1);
    assert_eq!(m.fs.stats().upload_mismatches, 2);
}

/// An append is checked by the server's size too: one that lost a byte
/// on the server is EIO, not a success (it is not sent again: an append
/// is not atomic, and the server's file now ends differently).
#[test]
fn an_append_is_checked_by_the_servers_size() {
    let m = mount();
    m.store.put_file(b"log", b"head\n");
    let ino = m.ino("log");
    let fh = m.fs.open(ino, WRITE).expect("open");
    m.fs.write(fh, 5, b"line 1\n").expect("write at the end");
    m.fs.flush(fh).expect("appended");
    assert_eq!(m.fs.stats().verified_by_size, 1);
    m.fs.write(fh, 12, b"line 2\n").expect("write at the end");
    m.faults.corrupt_next_uploads(&[Corruption::DropLast]);
    assert_eq!(m.fs.flush(fh).expect_err("a byte lost").errno(), libc::EIO);
    let _ = m.fs.release(fh);
    assert_eq!(m.fs.stats().upload_mismatches, 1);
}

/// After a cut the server holds more than was sent (garbage after the
/// break, beyond the 256 KiB write it broke in): the upload is not resumed
/// on top of it but sent again from zero, once.
#[test]
fn a_server_holding_more_than_was_sent_gets_the_upload_again_from_zero() {
    let m = mount();
    let data = pattern(300 * KIB, 20);
    m.faults.fail_upload_after(100 * KIB as u64);
    m.faults
        .corrupt_next_uploads(&[Corruption::GarbageOnBreak(200 * KIB as u32)]);
    m.cp(ROOT_INO, "f", &data).expect("sent again");
    assert!(m.store.file(b"f") == Some(data), "the file as sent");
    let c = m.faults.counters();
    assert_eq!((c.upload, c.upload_at, c.append), (2, 0, 0), "{c:?}");
    assert_eq!(m.fs.stats().restarted_uploads, 1);
}
