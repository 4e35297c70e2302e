//! Reads of one handle when its download fails: the kernel sends several
//! read requests at once, and a program must hear of the failure after one
//! download's worth of waiting, not one per queued request.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use ftpsfs::fs::{Fs, FsConfig, OpenFlags, ROOT_INO};
use ftpsfs::store::memory::{MemoryStore, Op};
use ftpsfs::store::{
    Capabilities, DirEntry, Error, ErrorKind, Metadata, ReadStream, RemoteStore, Result,
    UploadStream,
};

/// Opening a download takes `OPEN_DELAY` and, while `failing`, fails then:
/// a server behind a stalled network.
struct SlowFailingReads {
    inner: MemoryStore,
    failing: AtomicBool,
}

const OPEN_DELAY: Duration = Duration::from_millis(400);

impl RemoteStore for SlowFailingReads {
    fn open_read(&self, path: &[u8], offset: u64) -> Result<Box<dyn ReadStream>> {
        let stream = self.inner.open_read(path, offset);
        std::thread::sleep(OPEN_DELAY);
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Unavailable, "timed out"));
        }
        stream
    }
    fn list(&self, dir: &[u8]) -> Result<Vec<DirEntry>> {
        self.inner.list(dir)
    }
    fn stat(&self, path: &[u8]) -> Result<Metadata> {
        self.inner.stat(path)
    }
    fn exact_mtime(&self, path: &[u8]) -> Result<SystemTime> {
        self.inner.exact_mtime(path)
    }
    fn upload(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        self.inner.upload(path)
    }
    fn append(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        self.inner.append(path)
    }
    fn delete(&self, path: &[u8]) -> Result<()> {
        self.inner.delete(path)
    }
    fn mkdir(&self, path: &[u8]) -> Result<()> {
        self.inner.mkdir(path)
    }
    fn rmdir(&self, path: &[u8]) -> Result<()> {
        self.inner.rmdir(path)
    }
    fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        self.inner.rename(from, to)
    }
    fn chmod(&self, path: &[u8], mode: u32) -> Result<()> {
        self.inner.chmod(path, mode)
    }
    fn set_mtime(&self, path: &[u8], mtime: SystemTime) -> Result<()> {
        self.inner.set_mtime(path, mtime)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

#[test]
fn reads_queued_behind_a_failing_download_share_its_error() {
    let spool = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SlowFailingReads {
        inner: MemoryStore::new(),
        failing: AtomicBool::new(true),
    });
    store.inner.put_file(b"f", &vec![7u8; 4 << 20]);
    let config = FsConfig {
        spool_dir: spool.path().join("spool"),
        ..FsConfig::default()
    };
    let fs = Arc::new(Fs::new(store.clone(), config));
    let ino = fs.lookup(ROOT_INO, b"f").expect("lookup").ino;
    let read_only = OpenFlags {
        read: true,
        ..OpenFlags::default()
    };
    let fh = fs.open(ino, read_only).expect("open");
    let requests = 4;
    let barrier = Arc::new(Barrier::new(requests));
    let started = Instant::now();
    let readers: Vec<_> = (0..requests)
        .map(|i| {
            let fs = Arc::clone(&fs);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                fs.read(fh, (i as u64) * 131_072, 131_072)
            })
        })
        .collect();
    for reader in readers {
        let err = reader.join().unwrap().expect_err("the download fails");
        assert_eq!(err.errno(), libc::ETIMEDOUT, "{err}");
    }
    let took = started.elapsed();
    assert_eq!(
        store.inner.counters().get(Op::OpenRead),
        1,
        "one download tried for the queued requests"
    );
    assert!(
        took < OPEN_DELAY * 2,
        "{requests} queued requests failed after {took:?}, one try takes {OPEN_DELAY:?}"
    );
    // A read asked after the failure tries again, and works once the
    // server is back.
    store.failing.store(false, Ordering::SeqCst);
    assert_eq!(fs.read(fh, 0, 10).expect("read again"), vec![7u8; 10]);
    fs.release(fh).expect("release");
}
