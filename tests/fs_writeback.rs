//! Async write-back in the filesystem core (no mount, no network): close()
//! returns once the file is in the spool and journal; uploads run in the
//! background; the mount shows pending files as written; fsync, unmount,
//! ordering barriers, refusals, recovery after a kill, a corrupt journal
//! and backpressure.
//!
//! Nothing here asserts a duration: what a test checks is what the server
//! holds, the calls that reached it, and what the core reports.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ftpsfs::fs::{Fs, FsConfig, Ino, OpenFlags, WriteBackConfig, ROOT_INO};
use ftpsfs::store::ErrorKind;
use ftpsfs_testkit::{FaultyStore, MemoryStore, Op};

const KIB: usize = 1024;

/// `cp`'s open: O_WRONLY | O_CREAT | O_TRUNC.
fn write_flags() -> OpenFlags {
    OpenFlags {
        write: true,
        truncate: true,
        ..OpenFlags::default()
    }
}

struct Mount {
    store: Arc<MemoryStore>,
    faults: Arc<FaultyStore<Arc<MemoryStore>>>,
    fs: Arc<Fs>,
    dir: tempfile::TempDir,
}

fn fs_config(dir: &Path) -> FsConfig {
    FsConfig {
        spool_dir: dir.join("spool"),
        // A cut upload is resumed for a second before the uploader's own
        // backoff takes over (and unmount gives up after that long
        // without progress).
        retry_time: Duration::from_secs(1),
        ..FsConfig::default()
    }
}

fn write_back_dir(dir: &Path) -> PathBuf {
    dir.join("write-back")
}

fn start(store: Arc<MemoryStore>, dir: tempfile::TempDir, spool_limit: u64) -> Mount {
    start_with(store, dir, spool_limit, |_| {})
}

/// A mount whose store has `faults` armed before its uploaders start (a
/// recovered entry may otherwise be uploaded before the test looks).
fn start_with(
    store: Arc<MemoryStore>,
    dir: tempfile::TempDir,
    spool_limit: u64,
    arm: impl FnOnce(&FaultyStore<Arc<MemoryStore>>),
) -> Mount {
    start_with_uploaders(store, dir, spool_limit, 4, arm)
}

fn start_with_uploaders(
    store: Arc<MemoryStore>,
    dir: tempfile::TempDir,
    spool_limit: u64,
    uploaders: usize,
    arm: impl FnOnce(&FaultyStore<Arc<MemoryStore>>),
) -> Mount {
    let faults = Arc::new(FaultyStore::new(Arc::clone(&store)));
    arm(&faults);
    let fs = Fs::new(faults.clone(), fs_config(dir.path()))
        .with_write_back(WriteBackConfig {
            dir: write_back_dir(dir.path()),
            spool_limit,
            uploaders,
        })
        .expect("write-back directory");
    Mount {
        store,
        faults,
        fs,
        dir,
    }
}

fn mount() -> Mount {
    start(
        Arc::new(MemoryStore::new()),
        tempfile::tempdir().expect("temp dir"),
        1 << 30,
    )
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

impl Mount {
    fn ino(&self, path: &str) -> Ino {
        path.split('/').fold(ROOT_INO, |dir, name| {
            let found = self.fs.lookup(dir, name.as_bytes());
            found.unwrap_or_else(|e| panic!("lookup {path}: {e}")).ino
        })
    }

    /// Closes `name` while the server cannot be reached, then dies.
    fn close_then_kill(self, name: &str, data: &[u8]) -> (Arc<MemoryStore>, tempfile::TempDir) {
        self.offline();
        self.cp(ROOT_INO, name, data).expect("cp");
        self.kill()
    }

    /// `cp`: create, write, flush, close; the first error.
    fn cp(&self, parent: Ino, name: &str, data: &[u8]) -> Result<(), ftpsfs::fs::Error> {
        let (_, fh) = self
            .fs
            .create(parent, name.as_bytes(), 0o644, write_flags())?;
        let mut result = Ok(());
        for (i, chunk) in data.chunks(128 * KIB).enumerate() {
            if result.is_ok() {
                result = self.fs.write(fh, (i * 128 * KIB) as u64, chunk).map(drop);
            }
        }
        let flushed = self.fs.flush(fh);
        let released = self.fs.release(fh);
        result.and(flushed).and(released)
    }

    /// rsync's last step: `.NAME.tmp` renamed to NAME (in the root).
    fn rename_into_place(&self, name: &str) {
        let temp = format!(".{name}.tmp");
        self.fs
            .rename(ROOT_INO, temp.as_bytes(), ROOT_INO, name.as_bytes(), false)
            .unwrap_or_else(|e| panic!("rename {temp} {name}: {e}"));
    }

    /// What rsync does with its temporary file once written: sets its
    /// mode, then renames it into place.
    fn chmod_and_rename_into_place(&self, name: &str, mode: u32) {
        let attrs = ftpsfs::fs::SetAttr {
            mode: Some(mode),
            ..Default::default()
        };
        let temp = self.ino(&format!(".{name}.tmp"));
        self.fs.setattr(temp, None, attrs).expect("chmod");
        self.rename_into_place(name);
    }

    /// The file as a reader sees it: one read of all of it (the core
    /// answers a read past what a spool holds with what there is).
    fn cat(&self, path: &str) -> Vec<u8> {
        let read = OpenFlags {
            read: true,
            ..OpenFlags::default()
        };
        let fh = self.fs.open(self.ino(path), read).expect("open");
        let data = self.fs.read(fh, 0, 16 << 20).expect("read");
        self.fs.release(fh).expect("release");
        data
    }

    /// Each file is on the server with its bytes.
    fn assert_on_server(&self, files: &[(String, Vec<u8>)]) {
        for (name, data) in files {
            assert_eq!(
                self.store.file(name.as_bytes()).as_deref(),
                Some(&data[..]),
                "{name}"
            );
        }
    }

    fn names(&self, dir: Ino) -> Vec<String> {
        self.fs
            .readdir(dir)
            .expect("readdir")
            .into_iter()
            .map(|i| String::from_utf8_lossy(&i.name).into_owned())
            .collect()
    }

    /// Uploads fail as if the server could not be reached.
    fn offline(&self) {
        self.faults.fail_always(Op::Upload, ErrorKind::Unavailable);
    }

    fn online(&self) {
        self.faults.stop_failing(Op::Upload);
    }

    /// Ends this mount as kill -9 would: no shutdown, the uploaders stop.
    /// Returns the server and the directory for the next mount.
    fn kill(self) -> (Arc<MemoryStore>, tempfile::TempDir) {
        let weak: Weak<Fs> = Arc::downgrade(&self.fs);
        drop(self.fs);
        // An uploader in the middle of an attempt holds the mount until
        // that attempt ends (a second at most here).
        let deadline = Instant::now() + Duration::from_secs(30);
        // Its lock on the directory goes with it, just after the last
        // reference (as the kernel drops a killed process's locks).
        let lock = write_back_dir(self.dir.path()).join("lock");
        let unlocked = || {
            std::fs::File::open(&lock)
                .and_then(|f| f.try_lock().map_err(std::io::Error::other))
                .is_ok()
        };
        while weak.upgrade().is_some() || !unlocked() {
            assert!(
                Instant::now() < deadline,
                "the killed mount never went away"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (self.store, self.dir)
    }
}

#[test]
fn close_returns_before_the_upload_and_the_mount_shows_the_file() {
    let m = mount();
    m.offline();
    let data = pattern(300 * KIB, 1);
    m.cp(ROOT_INO, "a", &data)
        .expect("close returns while the server is unreachable");
    assert_eq!(m.store.file(b"a"), None, "not uploaded yet");
    let attr = m.fs.getattr(m.ino("a")).expect("getattr");
    assert_eq!(attr.size, data.len() as u64, "the size written is shown");
    assert_eq!(m.names(ROOT_INO), vec!["a"], "listed");
    assert_eq!(m.cat("a"), data, "read from the spool");
    assert_eq!(
        m.fs.pending_uploads().files,
        1,
        "{:?}",
        m.fs.write_back_counts()
    );

    // Let an attempt meet the outage before the server comes back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.faults.counters().get(Op::Upload) < 2 {
        assert!(Instant::now() < deadline, "no upload was attempted");
        std::thread::sleep(Duration::from_millis(10));
    }
    m.online();
    let fh =
        m.fs.open(
            m.ino("a"),
            OpenFlags {
                read: true,
                ..OpenFlags::default()
            },
        )
        .expect("open");
    m.fs.fsync(fh).expect("fsync waits for the upload");
    assert_eq!(
        m.store.file(b"a").as_deref(),
        Some(&data[..]),
        "fsync returned: uploaded"
    );
    m.fs.release(fh).expect("release");
    assert!(
        m.faults.counters().get(Op::Upload) > 1,
        "the failed attempts were retried"
    );
    assert_eq!(m.fs.pending_uploads().files, 0);
}

#[test]
fn unmount_waits_for_every_upload() {
    let m = mount();
    m.faults.set_delay(Op::Upload, Duration::from_millis(20));
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("f{i}"), pattern(4 * KIB + i, i as u8)))
        .collect();
    for (name, data) in &files {
        m.cp(ROOT_INO, name, data).expect("cp");
    }
    m.fs.shutdown().expect("shutdown waits for all");
    m.assert_on_server(&files);
    assert!(
        m.store.paths().iter().all(|p| !p.starts_with(b".")),
        "no temporary file left: {:?}",
        m.store.paths()
    );
}

#[test]
fn a_refused_upload_is_kept_in_the_spool_and_listed() {
    let m = mount();
    m.store.set_quota(Some(1000));
    let data = pattern(4 * KIB, 2);
    m.cp(ROOT_INO, "big", &data)
        .expect("close returns (the spool has it)");
    let err =
        m.fs.shutdown()
            .expect_err("the refusal is reported at unmount");
    assert!(err.message.contains("big"), "{err}");
    let counts = m.fs.write_back_counts();
    assert_eq!(counts.failed.len(), 1, "listed as failed");
    assert_eq!(counts.failed[0].0, b"big");
    let kept = m.fs.failed_write_backs();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        std::fs::read(&kept[0]).expect("kept"),
        data,
        "its content is kept"
    );
    assert_eq!(m.store.file(b"big"), None);
}

#[test]
fn a_failed_upload_is_tried_again_at_the_next_mount() {
    let m = mount();
    m.store.deny_writes_under(b"");
    let data = pattern(5 * KIB, 3);
    m.cp(ROOT_INO, "x", &data).expect("close");
    let _ = m.fs.shutdown();
    assert_eq!(m.fs.write_back_counts().failed.len(), 1, "553: failed");
    let (store, dir) = m.kill();
    store.allow_all_writes();
    let m = start(store, dir, 1 << 30);
    m.fs.shutdown().expect("uploaded now");
    assert_eq!(m.store.file(b"x").as_deref(), Some(&data[..]));
}

#[test]
fn renames_deletes_and_re_creates_of_pending_paths_keep_their_order() {
    let m = mount();
    // Slow uploads: each request below meets its path still pending.
    m.faults.set_delay(Op::Upload, Duration::from_millis(100));
    m.cp(ROOT_INO, "a", b"first a").expect("cp a");
    m.fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", false)
        .expect("rename a b");
    m.cp(ROOT_INO, "a", b"second a").expect("cp a again");
    m.cp(ROOT_INO, "c", b"c").expect("cp c");
    m.fs.unlink(ROOT_INO, b"c").expect("rm c");
    m.cp(ROOT_INO, "c", b"c again").expect("cp c again");
    m.cp(ROOT_INO, "d", b"one").expect("cp d");
    m.cp(ROOT_INO, "d", b"two, longer").expect("cp d over it");
    let dir = m.fs.mkdir(ROOT_INO, b"t", 0o755).expect("mkdir").ino;
    m.cp(dir, "in", b"inside").expect("cp t/in");
    m.fs.rename(ROOT_INO, b"t", ROOT_INO, b"u", false)
        .expect("mv t u");
    m.fs.shutdown().expect("shutdown");
    assert_eq!(m.store.file(b"a").as_deref(), Some(&b"second a"[..]));
    assert_eq!(m.store.file(b"b").as_deref(), Some(&b"first a"[..]));
    assert_eq!(m.store.file(b"c").as_deref(), Some(&b"c again"[..]));
    assert_eq!(m.store.file(b"d").as_deref(), Some(&b"two, longer"[..]));
    assert_eq!(m.store.file(b"u/in").as_deref(), Some(&b"inside"[..]));
    assert!(!m.store.exists(b"t"));
}

/// rsync's and editors' shape: a file written under a temporary name, its
/// mode set, and renamed into place. A chmod and a rename that come before
/// the upload began go with the queued upload: one upload to the new name,
/// no rename on the server, the mode set after it. (The
/// uploads of the first four, one per uploader, have begun: their renames
/// wait for them and go to the server, as before. The others are renamed
/// first, while those four are held up.)
#[test]
fn a_rename_before_the_upload_begins_moves_the_upload_to_the_new_name() {
    let m = mount();
    m.faults.set_delay(Op::Upload, Duration::from_millis(800));
    m.store.put_file(b"t9", b"the server's old t9");
    m.fs.lookup(ROOT_INO, b"t9").expect("seen");
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("t{i}"), pattern(2 * KIB + i, i as u8)))
        .collect();
    for (name, data) in &files {
        m.cp(ROOT_INO, &format!(".{name}.tmp"), data).expect("cp");
    }
    for (name, _) in files.iter().rev() {
        // rsync sets the temporary file's mode first.
        m.chmod_and_rename_into_place(name, 0o640);
    }
    // Shown under the new names at once, with their bytes and mode.
    assert_eq!(m.cat("t9"), files[9].1);
    assert_eq!(
        m.fs.getattr(m.ino("t11")).expect("stat").perm & 0o777,
        0o640
    );
    assert!(!m.names(ROOT_INO).iter().any(|n| n.ends_with(".tmp")));
    m.fs.shutdown().expect("uploaded");
    m.assert_on_server(&files);
    assert!(
        !m.store.paths().iter().any(|p| p.ends_with(b".tmp")),
        "{:?}",
        m.store.paths()
    );
    let renames = m.store.counters().get(Op::Rename);
    // Four renames of uploads that had begun, and one for t9, which
    // replaces a file on the server (through a temporary name).
    assert!(renames <= 5, "{renames} renames on the server");
    assert_eq!(
        m.store.counters().get(Op::Chmod),
        files.len() as u64,
        "each mode set once, after the upload"
    );
    assert_eq!(
        m.store.counters().get(Op::Upload),
        files.len() as u64,
        "one upload per file"
    );
}

/// A chmod and a rename moved into the queue are in the journal: after
/// kill -9 the next mount uploads the file to its new name, never to the
/// old one, and sets its mode.
#[test]
fn a_rename_moved_into_the_queue_survives_a_kill() {
    let m = mount();
    m.faults.set_delay(Op::Upload, Duration::from_millis(800));
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("r{i}"), pattern(KIB + i, i as u8)))
        .collect();
    for (name, data) in &files {
        m.cp(ROOT_INO, &format!(".{name}.tmp"), data).expect("cp");
    }
    // The last four: their uploads wait behind the first four.
    for (name, _) in &files[4..] {
        m.chmod_and_rename_into_place(name, 0o600);
    }
    let (store, dir) = m.kill();
    let m = start(store, dir, 1 << 30);
    m.fs.shutdown().expect("uploaded");
    m.assert_on_server(&files[4..]);
    for (name, _) in &files[4..] {
        let meta = ftpsfs::store::RemoteStore::stat(&*m.store, name.as_bytes()).expect("stat");
        assert_eq!(meta.mode.map(|m| m & 0o777), Some(0o600), "{name}'s mode");
    }
    for (name, _) in &files[4..] {
        assert!(
            !m.store.exists(format!(".{name}.tmp").as_bytes()),
            "{name} went to its old name"
        );
    }
}

#[test]
fn rmdir_of_a_pending_tree_waits_for_its_uploads() {
    let m = mount();
    m.faults.set_delay(Op::Upload, Duration::from_millis(50));
    let d = m.fs.mkdir(ROOT_INO, b"d", 0o755).expect("mkdir").ino;
    let e = m.fs.mkdir(d, b"e", 0o755).expect("mkdir").ino;
    for i in 0..5 {
        m.cp(e, &format!("f{i}"), b"x").expect("cp");
    }
    for i in 0..5 {
        m.fs.unlink(e, format!("f{i}").as_bytes()).expect("rm");
    }
    m.fs.rmdir(d, b"e").expect("rmdir e");
    m.fs.rmdir(ROOT_INO, b"d").expect("rmdir d");
    m.fs.shutdown().expect("shutdown");
    assert!(m.store.paths().is_empty(), "{:?}", m.store.paths());
    assert_eq!(
        m.store.counters().get(Op::Delete),
        5,
        "each file deleted once, after its upload"
    );
}

#[test]
fn a_killed_mount_s_journal_is_finished_by_the_next_mount() {
    let m = mount();
    m.offline();
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("k{i}"), pattern(3 * KIB + i * 7, i as u8)))
        .collect();
    for (name, data) in &files {
        m.cp(ROOT_INO, name, data).expect("cp");
    }
    assert!(
        m.store.paths().is_empty(),
        "nothing uploaded before the kill"
    );
    let (store, dir) = m.kill();
    let m = start_with(store, dir, 1 << 30, |faults| {
        faults.fail_always(Op::Upload, ErrorKind::Unavailable)
    });
    assert_eq!(
        m.fs.pending_uploads().files,
        files.len(),
        "found in the journal"
    );
    assert_eq!(
        m.fs.getattr(m.ino("k3")).expect("shown").size,
        files[3].1.len() as u64
    );
    m.online();
    m.fs.shutdown().expect("uploaded");
    m.assert_on_server(&files);
    // Done entries are gone from the journal: a third mount has nothing to do.
    let (store, dir) = m.kill();
    let m = start(store, dir, 1 << 30);
    assert_eq!(m.fs.pending_uploads().files, 0);
}

#[test]
fn a_recovered_file_changed_on_the_server_meanwhile_is_kept_beside_it() {
    let m = mount();
    m.store.put_file(b"doc", b"v1");
    m.fs.lookup(ROOT_INO, b"doc").expect("seen");
    let (store, dir) = m.close_then_kill("doc", b"v2 from the mount");
    store.put_file(b"doc", b"v3 by another client!");
    let m = start(store, dir, 1 << 30);
    m.fs.shutdown().expect("uploaded");
    assert_eq!(
        m.store.file(b"doc").as_deref(),
        Some(&b"v3 by another client!"[..]),
        "the server's change is not overwritten"
    );
    let conflict: Vec<Vec<u8>> = m
        .store
        .paths()
        .into_iter()
        .filter(|p| p.starts_with(b"doc.ftpsfs-conflict-"))
        .collect();
    assert_eq!(conflict.len(), 1, "{:?}", m.store.paths());
    assert_eq!(
        m.store.file(&conflict[0]).as_deref(),
        Some(&b"v2 from the mount"[..])
    );
}

#[test]
fn two_recovered_versions_of_one_file_upload_in_order_without_a_conflict() {
    let m = mount();
    m.offline();
    // A shell's `> v` then writes: a flush of the empty new file (one
    // entry), then the content at close (a second entry of the same path).
    let (_, fh) =
        m.fs.create(ROOT_INO, b"v", 0o644, write_flags())
            .expect("create");
    m.fs.flush(fh).expect("flush");
    m.fs.write(fh, 0, b"the content").expect("write");
    m.fs.release(fh).expect("close");
    assert_eq!(m.fs.pending_uploads().files, 2);
    let (store, dir) = m.kill();
    let m = start(store, dir, 1 << 30);
    m.fs.shutdown().expect("uploaded");
    assert_eq!(m.store.file(b"v").as_deref(), Some(&b"the content"[..]));
    assert_eq!(m.store.paths(), vec![b"v".to_vec()], "no conflict copy");
}

#[test]
fn a_recovered_file_already_uploaded_is_not_sent_again() {
    let (store, dir) = mount().close_then_kill("n", b"new file");
    // The killed mount got its upload through, but not its journal line.
    store.put_file(b"n", b"new file");
    let m = start(store, dir, 1 << 30);
    m.fs.shutdown().expect("shutdown");
    assert_eq!(m.store.counters().get(Op::Upload), 0, "not sent again");
    assert_eq!(m.store.paths(), vec![b"n".to_vec()], "no conflict copy");
}

#[test]
fn corrupt_and_cut_journal_entries_and_spool_files_are_never_uploaded() {
    let m = mount();
    m.offline();
    for name in ["good", "bad-line", "bad-spool", "cut"] {
        m.cp(ROOT_INO, name, format!("content of {name}").as_bytes())
            .expect("cp");
    }
    let (store, dir) = m.kill();
    let wb = write_back_dir(dir.path());
    let journal = wb.join("journal");
    let text = std::fs::read_to_string(&journal).expect("journal");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    // Line 2: one byte of its size changed. Line 4: cut in its middle.
    let bad = lines[1].replacen(" 19 ", " 20 ", 1);
    assert_ne!(bad, lines[1]);
    let cut = &lines[3][..lines[3].len() / 2];
    std::fs::write(
        &journal,
        format!("{}\n{bad}\n{}\n{cut}", lines[0], lines[2]),
    )
    .expect("write journal");
    // The third file's spool file: its bytes changed on disk.
    let seq3 = lines[2].split(' ').nth(1).expect("seq");
    std::fs::write(wb.join("spool").join(seq3), b"content of bad-spooX").expect("spool");

    let m = start(store, dir, 1 << 30);
    let _ = m.fs.shutdown();
    assert_eq!(
        m.store.file(b"good").as_deref(),
        Some(&b"content of good"[..])
    );
    assert_eq!(
        m.store.file(b"bad-line"),
        None,
        "a corrupt entry is skipped"
    );
    assert_eq!(m.store.file(b"cut"), None, "a cut entry is skipped");
    assert_eq!(
        m.store.file(b"bad-spool"),
        None,
        "a corrupt spool file is not uploaded"
    );
    let failed = m.fs.write_back_counts().failed;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, b"bad-spool");
}

#[test]
fn a_failing_spool_disk_makes_close_upload_at_once() {
    let m = mount();
    // Spool files can no longer be made (as on a full or read-only disk).
    let spool = write_back_dir(m.dir.path()).join("spool");
    std::fs::remove_dir_all(&spool).expect("rm spool");
    std::fs::write(&spool, b"not a directory").expect("block it");
    m.cp(ROOT_INO, "s", b"saved anyway").expect("close");
    assert_eq!(
        m.store.file(b"s").as_deref(),
        Some(&b"saved anyway"[..]),
        "uploaded before close returned"
    );
    assert_eq!(m.fs.pending_uploads().files, 0);
}

#[test]
fn a_full_spool_makes_close_wait_for_uploads() {
    let store = Arc::new(MemoryStore::new());
    let m = start(
        store,
        tempfile::tempdir().expect("temp dir"),
        10 * KIB as u64,
    );
    m.offline();
    m.cp(ROOT_INO, "one", &pattern(8 * KIB, 1)).expect("fits");
    let m = Arc::new(m);
    let second = {
        let m = Arc::clone(&m);
        std::thread::spawn(move || m.cp(ROOT_INO, "two", &pattern(8 * KIB, 2)))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(!second.is_finished(), "close waits while the spool is full");
    assert_eq!(
        m.fs.write_back_counts().bytes,
        8 * KIB as u64,
        "one file spooled"
    );
    m.online();
    second
        .join()
        .expect("thread")
        .expect("close returns once there is room");
    m.fs.shutdown().expect("shutdown");
    assert_eq!(
        m.store.file(b"two").as_deref(),
        Some(&pattern(8 * KIB, 2)[..])
    );
    assert_eq!(
        m.store.file(b"one").as_deref(),
        Some(&pattern(8 * KIB, 1)[..])
    );
}

#[test]
fn writing_a_pending_file_again_starts_from_its_closed_content() {
    let m = mount();
    m.faults.set_delay(Op::Upload, Duration::from_millis(50));
    m.cp(ROOT_INO, "w", b"0123456789").expect("cp");
    let flags = OpenFlags {
        truncate: false,
        ..write_flags()
    };
    let fh = m.fs.open(m.ino("w"), flags).expect("open for writing");
    m.fs.write(fh, 3, b"XY").expect("write");
    m.fs.release(fh).expect("close");
    m.fs.shutdown().expect("shutdown");
    assert_eq!(m.store.file(b"w").as_deref(), Some(&b"012XY56789"[..]));
}

// ----- async mode ends where sync mode ends -----
//
// Sync mode is the reference (tests/fs_model.rs checks it against
// doc/SEMANTICS.md): the same random steps run on a sync and an async mount,
// each over its own server. After every step both return the same result
// and show the same tree (names, sizes, bytes), while the async mount's
// uploads lag behind (each takes a few ms); after unmount both servers hold
// the same files.

mod differential {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 5] = ["a", "b", "c", "d/x", "d/y"];

    #[derive(Debug, Clone)]
    pub enum Step {
        Copy(usize, u8, usize),
        Append(usize, u8),
        Patch(usize, u8, usize),
        Truncate(usize, u64),
        Rename(usize, usize),
        /// rsync's shape: written to a temporary name, renamed into place.
        Replace(usize, u8, usize),
        Unlink(usize),
        Mkdir,
        Rmdir,
        Fsync(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        let name = 0..NAMES.len();
        prop_oneof![
            (name.clone(), any::<u8>(), 0..3000usize).prop_map(|(n, s, l)| Step::Copy(n, s, l)),
            (name.clone(), any::<u8>()).prop_map(|(n, s)| Step::Append(n, s)),
            (name.clone(), any::<u8>(), 0..3000usize).prop_map(|(n, s, o)| Step::Patch(n, s, o)),
            (name.clone(), 0..4000u64).prop_map(|(n, l)| Step::Truncate(n, l)),
            (name.clone(), name.clone()).prop_map(|(a, b)| Step::Rename(a, b)),
            (name.clone(), any::<u8>(), 0..3000usize).prop_map(|(n, s, l)| Step::Replace(n, s, l)),
            name.clone().prop_map(Step::Unlink),
            Just(Step::Mkdir),
            Just(Step::Rmdir),
            name.prop_map(Step::Fsync),
        ]
    }

    fn split(path: &str) -> (&str, &str) {
        path.rsplit_once('/').unwrap_or(("", path))
    }

    fn errno<T>(r: Result<T, ftpsfs::fs::Error>) -> Result<(), i32> {
        r.map(drop).map_err(|e| e.errno())
    }

    impl Mount {
        fn find(&self, path: &str) -> Result<Ino, ftpsfs::fs::Error> {
            let mut ino = ROOT_INO;
            for name in path.split('/').filter(|c| !c.is_empty()) {
                ino = self.fs.lookup(ino, name.as_bytes())?.ino;
            }
            Ok(ino)
        }

        fn parent(&self, path: &str) -> Result<(Ino, String), ftpsfs::fs::Error> {
            let (dir, name) = split(path);
            Ok((self.find(dir)?, name.to_string()))
        }

        /// Opens `path` for writing (not truncating), writes, closes.
        fn write_at(
            &self,
            path: &str,
            flags: OpenFlags,
            offset: u64,
            data: &[u8],
        ) -> Result<(), i32> {
            let ino = self.find(path).map_err(|e| e.errno())?;
            let fh = self.fs.open(ino, flags).map_err(|e| e.errno())?;
            let wrote = errno(self.fs.write(fh, offset, data));
            let closed = errno(self.fs.release(fh));
            wrote.and(closed)
        }

        fn run(&self, step: &Step) -> Result<(), i32> {
            let rdwr = OpenFlags {
                read: true,
                write: true,
                ..OpenFlags::default()
            };
            match step {
                Step::Copy(n, seed, len) => {
                    let (dir, name) = self.parent(NAMES[*n]).map_err(|e| e.errno())?;
                    errno(self.cp(dir, &name, &pattern(*len, *seed)))
                }
                Step::Append(n, seed) => {
                    let flags = OpenFlags {
                        append: true,
                        ..rdwr
                    };
                    self.write_at(NAMES[*n], flags, 0, &pattern(100, *seed))
                }
                Step::Patch(n, seed, offset) => {
                    self.write_at(NAMES[*n], rdwr, *offset as u64, &pattern(50, *seed))
                }
                Step::Truncate(n, len) => {
                    let ino = self.find(NAMES[*n]).map_err(|e| e.errno())?;
                    let size = ftpsfs::fs::SetAttr {
                        size: Some(*len),
                        ..Default::default()
                    };
                    errno(self.fs.setattr(ino, None, size))
                }
                Step::Rename(a, b) => {
                    let (from_dir, from) = self.parent(NAMES[*a]).map_err(|e| e.errno())?;
                    let (to_dir, to) = self.parent(NAMES[*b]).map_err(|e| e.errno())?;
                    errno(
                        self.fs
                            .rename(from_dir, from.as_bytes(), to_dir, to.as_bytes(), false),
                    )
                }
                Step::Replace(n, seed, len) => {
                    let (dir, name) = self.parent(NAMES[*n]).map_err(|e| e.errno())?;
                    let temp = format!(".{name}.tmp");
                    errno(self.cp(dir, &temp, &pattern(*len, *seed)))?;
                    errno(
                        self.fs
                            .rename(dir, temp.as_bytes(), dir, name.as_bytes(), false),
                    )
                }
                Step::Unlink(n) => {
                    let (dir, name) = self.parent(NAMES[*n]).map_err(|e| e.errno())?;
                    errno(self.fs.unlink(dir, name.as_bytes()))
                }
                Step::Mkdir => errno(self.fs.mkdir(ROOT_INO, b"d", 0o755)),
                Step::Rmdir => errno(self.fs.rmdir(ROOT_INO, b"d")),
                Step::Fsync(n) => {
                    let ino = self.find(NAMES[*n]).map_err(|e| e.errno())?;
                    let fh = self.fs.open(ino, rdwr).map_err(|e| e.errno())?;
                    let synced = errno(self.fs.fsync(fh));
                    synced.and(errno(self.fs.release(fh)))
                }
            }
        }

        /// Every name the mount shows, with its kind, size and bytes.
        fn tree(&self) -> Vec<(String, u64, u64)> {
            let mut shown = Vec::new();
            for dir in ["", "d"] {
                let Ok(ino) = self.find(dir) else { continue };
                for item in self.fs.readdir(ino).expect("readdir") {
                    let name = String::from_utf8_lossy(&item.name).into_owned();
                    let path = if dir.is_empty() {
                        name
                    } else {
                        format!("{dir}/{name}")
                    };
                    let ino = self.find(&path).expect("a listed name is found");
                    let attr = self.fs.getattr(ino).expect("getattr");
                    // Directory sizes are whatever the server's listing says.
                    let (size, bytes) = if attr.kind == ftpsfs::store::FileKind::File {
                        (attr.size, checksum(&self.cat(&path)))
                    } else {
                        (0, 0)
                    };
                    shown.push((path, size, bytes));
                }
            }
            shown
        }
    }

    fn checksum(bytes: &[u8]) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        h.finish()
    }

    fn server_files(store: &MemoryStore) -> Vec<(Vec<u8>, Option<u64>)> {
        store
            .paths()
            .into_iter()
            .map(|p| {
                let f = store.file(&p).map(|b| checksum(&b));
                (p, f)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn async_mode_shows_and_stores_what_sync_mode_does(steps in proptest::collection::vec(step(), 1..25)) {
            let sync_store = Arc::new(MemoryStore::new());
            let sync_dir = tempfile::tempdir().expect("temp dir");
            let sync = Mount {
                faults: Arc::new(FaultyStore::new(Arc::clone(&sync_store))),
                fs: Arc::new(Fs::new(Arc::clone(&sync_store) as _, fs_config(sync_dir.path()))),
                store: sync_store,
                dir: sync_dir,
            };
            // One uploader, and uploads slow enough that files wait behind
            // each other (so that renames meet uploads not begun, as well as
            // ones under way), short enough for 32 cases.
            let asyn = start_with_uploaders(
                Arc::new(MemoryStore::new()),
                tempfile::tempdir().expect("temp dir"),
                1 << 30,
                1,
                |faults| faults.set_delay(Op::Upload, Duration::from_millis(10)),
            );
            for (i, step) in steps.iter().enumerate() {
                let expected = sync.run(step);
                let got = asyn.run(step);
                prop_assert_eq!(got, expected, "step {}: {:?}", i, step);
                prop_assert_eq!(asyn.tree(), sync.tree(), "after step {}: {:?}", i, step);
            }
            asyn.fs.shutdown().expect("async uploads");
            sync.fs.shutdown().expect("sync uploads");
            prop_assert_eq!(server_files(&asyn.store), server_files(&sync.store));
        }
    }
}

/// A server holding `big` at "big", one that writes REST + STOR in place
/// (so sync mode would patch), and the file open for reading and writing.
fn big_file_open(big: &[u8]) -> (Mount, u64) {
    let store = MemoryStore::new();
    store.set_store_at_offset(ftpsfs::store::StoreAtOffset::InPlace);
    store.put_file(b"big", big);
    let m = start(
        Arc::new(store),
        tempfile::tempdir().expect("temp dir"),
        1 << 30,
    );
    let rdwr = OpenFlags {
        read: true,
        write: true,
        ..OpenFlags::default()
    };
    let fh = m.fs.open(m.ino("big"), rdwr).expect("open");
    (m, fh)
}

#[test]
fn a_small_change_inside_a_big_file_is_spooled_whole_not_patched() {
    let big = pattern(2 << 20, 9);
    let (m, fh) = big_file_open(&big);
    m.fs.write(fh, 1 << 20, b"XYZW").expect("write");
    m.fs.release(fh).expect("close");
    let mut want = big.clone();
    want[1 << 20..(1 << 20) + 4].copy_from_slice(b"XYZW");
    assert_eq!(m.cat("big"), want, "the mount shows the change");
    m.fs.shutdown().expect("shutdown");
    assert_eq!(m.store.file(b"big"), Some(want), "on the server");
    assert_eq!(m.fs.stats().patches, 0);
}

#[test]
fn writes_after_a_flush_of_a_big_file_read_back_over_its_waiting_version() {
    let big = pattern(2 << 20, 4);
    let (m, fh) = big_file_open(&big);
    m.faults.set_delay(Op::Upload, Duration::from_millis(300));
    m.fs.write(fh, 1 << 20, b"AAAA").expect("write");
    m.fs.flush(fh)
        .expect("flush: the first version waits in the spool");
    m.fs.write(fh, 3 << 19, b"BBBB")
        .expect("write after the flush");
    let read = m.fs.read(fh, 1 << 20, 4).expect("read");
    assert_eq!(
        read, b"AAAA",
        "the flushed write, not the server's older copy"
    );
    m.fs.release(fh).expect("close");
    m.fs.shutdown().expect("shutdown");
    let mut want = big.clone();
    want[1 << 20..(1 << 20) + 4].copy_from_slice(b"AAAA");
    want[3 << 19..(3 << 19) + 4].copy_from_slice(b"BBBB");
    assert_eq!(m.store.file(b"big"), Some(want));
}

/// A new file of up to 1 MiB goes straight to its name (one STOR, no
/// rename), as in sync mode. If the mount dies during that upload, the next
/// mount finds the start of the file under its name: that is its own cut
/// upload, replaced, not another client's file (no conflict copy). Another
/// client's file there is kept, and the entry goes beside it.
#[test]
fn a_new_file_goes_straight_to_its_name_and_a_cut_upload_of_it_is_finished() {
    let m = mount();
    let data = pattern(10 * KIB, 3);
    m.cp(ROOT_INO, "direct", &data).expect("cp");
    m.fs.shutdown().expect("uploaded");
    assert_eq!(m.store.file(b"direct").as_deref(), Some(&data[..]));
    assert_eq!(m.store.counters().get(Op::Rename), 0, "no temporary name");

    let (store, dir) = mount().close_then_kill("n", &data);
    store.put_file(b"n", &data[..3000]);
    store.put_file(b"other", b"another client's");
    let m = start(store, dir, 1 << 30);
    m.fs.shutdown().expect("uploaded");
    assert_eq!(m.store.file(b"n").as_deref(), Some(&data[..]));
    assert_eq!(
        m.store.paths(),
        vec![b"n".to_vec(), b"other".to_vec()],
        "no conflict copy"
    );

    let (store, dir) = mount().close_then_kill("n", &data);
    store.put_file(b"n", b"another client's file");
    let m = start(store, dir, 1 << 30);
    m.fs.shutdown().expect("uploaded");
    assert_eq!(
        m.store.file(b"n").as_deref(),
        Some(&b"another client's file"[..])
    );
    assert_eq!(m.store.paths().len(), 2, "beside it: {:?}", m.store.paths());
}

/// A mount that runs long rewrites its journal with the live entries
/// only, once it is long and mostly done lines (so it does not grow
/// without bound until the next mount), and what it rewrote is what the
/// next mount finishes after a kill.
#[test]
fn a_long_running_mount_rewrites_its_journal_and_keeps_what_waits() {
    let m = mount();
    for i in 0..2100 {
        m.cp(ROOT_INO, &format!("j{i}"), b"j").expect("cp");
    }
    while m.fs.pending_uploads().files > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    m.offline();
    let waiting: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("w{i}"), pattern(100 + i, i as u8)))
        .collect();
    for (name, data) in &waiting {
        m.cp(ROOT_INO, name, data).expect("cp");
    }
    let journal = write_back_dir(m.dir.path()).join("journal");
    let lines = std::fs::read_to_string(&journal)
        .expect("journal")
        .lines()
        .count();
    // 4,210 lines without a rewrite (a P and a D line per uploaded file).
    assert!(lines < 1000, "{lines} lines in the journal");
    let (store, dir) = m.kill();
    let m = start(store, dir, 1 << 30);
    m.fs.shutdown().expect("uploaded");
    m.assert_on_server(&waiting);
    assert_eq!(m.store.file(b"j2099").as_deref(), Some(&b"j"[..]));
}
