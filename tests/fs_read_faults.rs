//! Reads of one handle when its download fails: the kernel sends several
//! read requests at once, and a program must hear of the failure after one
//! download's worth of waiting, not one per queued request.
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ftpsfs::fs::{Fs, FsConfig, OpenFlags, ROOT_INO};
use ftpsfs::store::ErrorKind;
use ftpsfs_testkit::{FaultyStore, MemoryStore, Op};

/// How long opening a download takes before it fails: a server behind a
/// stalled network. Long enough that one download's worth of waiting and
/// one per queued request (4 x) are seconds apart, even on a loaded machine.
const OPEN_DELAY: Duration = Duration::from_secs(2);

#[test]
fn reads_queued_behind_a_failing_download_share_its_error() {
    let spool = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    store.set_delay(Op::OpenRead, OPEN_DELAY);
    store.fail_always(Op::OpenRead, ErrorKind::Unavailable);
    store.inner().put_file(b"f", &vec![7u8; 4 << 20]);
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
        store.counters().get(Op::OpenRead),
        1,
        "one download tried for the queued requests"
    );
    assert!(
        took < OPEN_DELAY * requests as u32,
        "{requests} queued requests failed after {took:?}, one try takes {OPEN_DELAY:?}"
    );
    // A read asked after the failure tries again, and works once the
    // server is back.
    store.stop_failing(Op::OpenRead);
    assert_eq!(fs.read(fh, 0, 10).expect("read again"), vec![7u8; 10]);
    fs.release(fh).expect("release");
}
