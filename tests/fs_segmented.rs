//! Segmented reads (issue 12): a large file read in order is fetched ahead
//! on extra streams in segments, and the reader gets exactly the file's
//! bytes whatever happens to those streams.
//!
//! Against the in-memory store behind the fault injector; a small store
//! wrapper here records the offset of every download opened. No timings
//! are asserted: the paced stores only make the adaptation's measurements
//! meaningful (a per-connection cap gains from streams, a total cap does
//! not), with wide margins.
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ftpsfs::fs::{ContentCache, Fs, FsConfig, OpenFlags, ROOT_INO};
use ftpsfs::store::{
    Capabilities, DigestAlgorithm, DirEntry, ErrorKind, Metadata, ReadStream, RemoteStore, Result,
    StoreAtOffset, UploadStream,
};
use ftpsfs_testkit::{FaultyStore, MemoryStore, Op};
use parking_lot::Mutex;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Small segments, so a few MiB cross many boundaries.
const SEGMENT: usize = 512 * KIB;
/// What the kernel asks per read (fuse.rs: max_read 1 MiB; 128 KiB is
/// what a plain `cat` gets).
const READ: u32 = 128 * KIB as u32;

/// Bytes per second of each download, unless a test says otherwise.
const PACE: u64 = 50_000_000;

/// Records the offset of every `open_read`, passes everything through.
struct Recorder<S> {
    inner: S,
    offsets: Mutex<Vec<u64>>,
}

impl<S: RemoteStore> RemoteStore for Recorder<S> {
    fn list(&self, dir: &[u8]) -> Result<Vec<DirEntry>> {
        self.inner.list(dir)
    }
    fn stat(&self, path: &[u8]) -> Result<Metadata> {
        self.inner.stat(path)
    }
    fn exact_mtime(&self, path: &[u8]) -> Result<SystemTime> {
        self.inner.exact_mtime(path)
    }
    fn open_read(&self, path: &[u8], offset: u64) -> Result<Box<dyn ReadStream>> {
        self.offsets.lock().push(offset);
        self.inner.open_read(path, offset)
    }
    fn open_read_now(&self, path: &[u8], offset: u64) -> Result<Option<Box<dyn ReadStream>>> {
        self.offsets.lock().push(offset);
        self.inner.open_read_now(path, offset)
    }
    fn upload(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        self.inner.upload(path)
    }
    fn append(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        self.inner.append(path)
    }
    fn upload_at(&self, path: &[u8], offset: u64) -> Result<Box<dyn UploadStream>> {
        self.inner.upload_at(path, offset)
    }
    fn size(&self, path: &[u8]) -> Result<u64> {
        self.inner.size(path)
    }
    fn digest(
        &self,
        path: &[u8],
        algorithm: DigestAlgorithm,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>> {
        self.inner.digest(path, algorithm, range)
    }
    fn store_at_offset(&self, dir: &[u8]) -> StoreAtOffset {
        self.inner.store_at_offset(dir)
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
    fn free_space(&self) -> Option<u64> {
        self.inner.free_space()
    }
}

type Store = Recorder<Arc<FaultyStore<Arc<MemoryStore>>>>;

struct Setup {
    fs: Fs,
    faults: Arc<FaultyStore<Arc<MemoryStore>>>,
    store: Arc<Store>,
    _spool: tempfile::TempDir,
}

fn setup(file: &[u8], read_streams: usize) -> Setup {
    setup_with(file, read_streams, false)
}

/// `setup`, with the content cache when `cached` (downloads then start at
/// the 1 MiB block of the first read, not at the read).
fn setup_with(file: &[u8], read_streams: usize, cached: bool) -> Setup {
    setup_sized(file, read_streams, cached, SEGMENT)
}

/// `setup_with`, with segments of `segment` bytes.
fn setup_sized(file: &[u8], read_streams: usize, cached: bool, segment: usize) -> Setup {
    let spool = tempfile::tempdir().expect("temp dir");
    let server = Arc::new(MemoryStore::new());
    server.put_file(b"f", file);
    let faults = Arc::new(FaultyStore::new(Arc::clone(&server)));
    // Paced, so that the primary cannot fetch every segment before an extra
    // stream has started.
    faults.set_read_rate(Some(PACE));
    let store = Arc::new(Recorder {
        inner: Arc::clone(&faults),
        offsets: Mutex::new(Vec::new()),
    });
    let config = FsConfig {
        spool_dir: spool.path().join("spool"),
        read_ahead: MIB,
        read_streams,
        segment_size: segment as u64,
        ..FsConfig::default()
    };
    let mut fs = Fs::new(store.clone(), config);
    if cached {
        let dir = spool.path().join("cache");
        let cache = ContentCache::open(&dir, b"user@memory:21/", 1 << 30).expect("cache");
        fs = fs.with_content_cache(Arc::new(cache));
    }
    Setup {
        fs,
        faults,
        store,
        _spool: spool,
    }
}

/// Bytes that differ at every offset of a segment, so a segment put in the
/// wrong place or shifted by some bytes shows.
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i >> 16) as u8)
        .collect()
}

fn open(fs: &Fs) -> u64 {
    let ino = fs.lookup(ROOT_INO, b"f").expect("lookup").ino;
    let flags = OpenFlags {
        read: true,
        ..OpenFlags::default()
    };
    fs.open(ino, flags).expect("open")
}

/// Reads the whole file in order, `READ` bytes at a time; calls `between`
/// with the offset before each read.
fn read_in_order(fs: &Fs, fh: u64, mut between: impl FnMut(u64)) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        between(out.len() as u64);
        let got = fs.read(fh, out.len() as u64, READ).expect("read");
        if got.is_empty() {
            return out;
        }
        out.extend_from_slice(&got);
    }
}

/// Reads on in order from the end of `got` to the end of the file.
fn read_to_end(fs: &Fs, fh: u64, got: &mut Vec<u8>) {
    loop {
        let data = fs.read(fh, got.len() as u64, READ).expect("read");
        if data.is_empty() {
            return;
        }
        got.extend_from_slice(&data);
    }
}

/// Opens the file, reads it whole in order, checks the bytes against
/// `want`, and returns what the segmented reads did.
fn read_whole(s: &Setup, want: &[u8]) -> ftpsfs::fs::SegmentCounts {
    let fh = open(&s.fs);
    let got = read_in_order(&s.fs, fh, |_| {});
    s.fs.release(fh).expect("release");
    assert_same(&got, want);
    s.fs.segment_counts()
}

fn assert_same(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("first wrong byte at offset {i}");
    }
}

#[test]
fn odd_sizes_read_right_across_segment_boundaries() {
    for len in [
        6 * MIB + 1,
        7 * MIB + SEGMENT - 1,
        9 * MIB + 12_345,
        11 * MIB + SEGMENT / 2 + 1,
    ] {
        let want = content(len);
        let s = setup(&want, 3);
        let counts = read_whole(&s, &want);
        assert_eq!(counts.engaged, 1, "size {len}: segments started");
        assert!(counts.opened >= 1, "size {len}: extra streams opened");
        let offsets = s.store.offsets.lock().clone();
        assert_eq!(offsets[0], 0, "the primary");
        assert!(
            offsets.len() as u64 > 1 && offsets.len() as u64 == counts.opened + 1,
            "size {len}: {offsets:?}"
        );
        // Each segment opened once (the extra streams open theirs at once,
        // in any order).
        let mut sorted = offsets[1..].to_vec();
        sorted.sort_unstable();
        assert!(
            sorted.windows(2).all(|w| w[0] < w[1]),
            "size {len}: {offsets:?}"
        );
    }
}

#[test]
fn memory_held_by_segments_stays_bounded() {
    let want = content(24 * MIB + 777);
    let s = setup(&want, 3);
    let fh = open(&s.fs);
    // A slow reader: the workers run ahead until the bound stops them.
    let got = read_in_order(&s.fs, fh, |offset| {
        if offset % (2 * MIB as u64) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    s.fs.release(fh).expect("release");
    assert_same(&got, &want);
    let counts = s.fs.segment_counts();
    // One segment per stream (three extra and the primary), each at most
    // half as large again as the segment size (whole rounds).
    let bound = (3 + 1) * SEGMENT as u64 * 3 / 2;
    assert!(counts.peak_bytes > 0);
    assert!(
        counts.peak_bytes <= bound,
        "held {} bytes, bound {bound}",
        counts.peak_bytes
    );
}

#[test]
fn a_refused_segment_open_is_fetched_by_another_stream() {
    let want = content(12 * MIB + 3);
    let s = setup(&want, 3);
    let fh = open(&s.fs);
    let mut got = s.fs.read(fh, 0, READ).expect("first read");
    // The primary is open: the first segment stream is refused.
    s.faults.fail_next(Op::OpenRead, ErrorKind::Unavailable);
    got.extend(read_in_order_from(&s.fs, fh, READ as u64));
    s.fs.release(fh).expect("release");
    assert_same(&got, &want);
    let counts = s.fs.segment_counts();
    assert_eq!(counts.retried, 1, "{counts:?}");
}

#[test]
fn a_server_at_its_session_cap_leaves_one_stream() {
    let want = content(12 * MIB + 3);
    let s = setup(&want, 3);
    // One download at a time: every segment stream is refused (421) while
    // the primary is open; the primary's own reopen, after it let go of
    // its stream, is not.
    s.faults.set_read_sessions(Some(1));
    let counts = read_whole(&s, &want);
    assert_eq!(counts.engaged, 1);
    // The three extra streams start at once; each is refused once, and
    // none is tried again (the budget backs off).
    assert!(
        counts.retried >= 1 && counts.retried <= 3,
        "backed off after the refusal: {counts:?}"
    );
}

fn read_in_order_from(fs: &Fs, fh: u64, from: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let got = fs.read(fh, from + out.len() as u64, READ).expect("read");
        if got.is_empty() {
            return out;
        }
        out.extend_from_slice(&got);
    }
}

#[test]
fn a_broken_segment_stream_ends_in_the_right_bytes() {
    let want = content(10 * MIB + 99);
    let s = setup(&want, 3);
    let fh = open(&s.fs);
    let mut got = s.fs.read(fh, 0, READ).expect("first read");
    // The next stream opened (a segment's) breaks 100 000 bytes in, in the
    // middle of a read of the segment. The store gave up on it (the FTPS
    // store resumes once by itself first), so the segmented download ends
    // there, as a single stream's does: a read waiting for those bytes gets
    // the error, a later one opens a new download where it reads.
    s.faults.fail_read_after(100_000);
    let mut failed = 0;
    loop {
        match s.fs.read(fh, got.len() as u64, READ) {
            Ok(data) if data.is_empty() => break,
            Ok(data) => got.extend_from_slice(&data),
            Err(e) => {
                assert_eq!(e.errno(), libc::ETIMEDOUT, "{e}");
                failed += 1;
                assert_eq!(failed, 1, "one break, one error at most");
            }
        }
    }
    s.fs.release(fh).expect("release");
    assert_same(&got, &want);
    let counts = s.fs.segment_counts();
    let offsets = s.store.offsets.lock().clone();
    let broken = offsets[1];
    assert!(
        offsets[2..]
            .iter()
            .any(|&o| o >= broken && o <= broken + 100_000),
        "a new download where the reader was, in the broken segment: {offsets:?} {counts:?}"
    );
}

#[test]
fn a_segment_that_keeps_failing_gives_the_reader_the_error() {
    let want = content(10 * MIB);
    let s = setup(&want, 3);
    let fh = open(&s.fs);
    s.fs.read(fh, 0, READ).expect("first read");
    // Refused (not "not found": a file gone while open is ESTALE, see
    // download.rs).
    s.faults
        .fail_always(Op::OpenRead, ErrorKind::PermissionDenied);
    let mut offset = READ as u64;
    let err = loop {
        match s.fs.read(fh, offset, READ) {
            Ok(data) if data.is_empty() => panic!("read to the end without the error"),
            Ok(data) => offset += data.len() as u64,
            Err(e) => break e,
        }
    };
    assert_eq!(err.errno(), libc::EACCES, "{err}");
    assert!(offset < want.len() as u64);
    s.faults.stop_failing(Op::OpenRead);
    // A read after the failure opens again and gets the right bytes.
    let again = s.fs.read(fh, offset, READ).expect("read again");
    assert_same(
        &again,
        &want[offset as usize..offset as usize + READ as usize],
    );
    s.fs.release(fh).expect("release");
}

#[test]
fn random_reads_start_no_segments() {
    let want = content(32 * MIB);
    let s = setup(&want, 3);
    let fh = open(&s.fs);
    for i in 0..40u64 {
        // Scattered offsets, each far from the one before.
        let offset = (i * 7_919 * 4_099) % (31 * MIB as u64);
        let got = s.fs.read(fh, offset, READ).expect("read");
        assert_same(
            &got,
            &want[offset as usize..offset as usize + READ as usize],
        );
    }
    s.fs.release(fh).expect("release");
    assert_eq!(s.fs.segment_counts().engaged, 0);
}

#[test]
fn a_second_read_in_order_starts_segments_and_one_read_does_not() {
    let want = content(12 * MIB);
    let s = setup(&want, 3);
    let fh = open(&s.fs);
    // The largest read the kernel sends: no segments yet, however long the
    // read-ahead runs.
    let first = s.fs.read(fh, 0, MIB as u32).expect("first read");
    assert_same(&first, &want[..MIB]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(s.fs.segment_counts().engaged, 0, "after one read");
    let mut got = first;
    read_to_end(&s.fs, fh, &mut got);
    s.fs.release(fh).expect("release");
    assert_same(&got, &want);
    assert_eq!(s.fs.segment_counts().engaged, 1, "after reads in order");
}

#[test]
fn a_whole_block_read_one_page_into_a_block_starts_no_segments() {
    // With the content cache a download starts at the read's 1 MiB block:
    // a 1 MiB read 4 KiB into a block ends more than 1 MiB past the
    // download's start, but it is still one read.
    let want = content(32 * MIB);
    let s = setup_with(&want, 3, true);
    let fh = open(&s.fs);
    for i in 0..12u64 {
        let offset = ((i * 7 + 3) % 29) * MIB as u64 + 4 * KIB as u64;
        let got = s.fs.read(fh, offset, MIB as u32).expect("read");
        assert_same(&got, &want[offset as usize..offset as usize + MIB]);
    }
    s.fs.release(fh).expect("release");
    assert_eq!(s.fs.segment_counts().engaged, 0);
}

#[test]
fn off_means_one_stream() {
    let want = content(12 * MIB);
    let s = setup(&want, 0);
    let fh = open(&s.fs);
    let got = read_in_order(&s.fs, fh, |_| {});
    s.fs.release(fh).expect("release");
    assert_same(&got, &want);
    assert_eq!(s.fs.segment_counts(), Default::default());
    assert_eq!(*s.store.offsets.lock(), vec![0]);
}

#[test]
fn streams_are_added_while_a_per_connection_cap_is_what_limits() {
    // 4 MB/s per stream: each added stream adds as much again.
    let want = content(40 * MIB);
    let s = setup(&want, 3);
    s.faults.set_read_rate(Some(4_000_000));
    let counts = read_whole(&s, &want);
    assert_eq!(counts.peak_extra, 3, "{counts:?}");
    assert!(
        counts.longest >= SEGMENT as u64 && counts.longest <= SEGMENT as u64 * 3 / 2,
        "{counts:?}"
    );
    // Most segments on extra streams: they stayed.
    assert!(counts.opened >= 20, "{counts:?}");
}

#[test]
fn every_byte_is_fetched_once_and_each_segment_opened_once() {
    // Four streams (a per-connection cap): segments read exactly to their
    // ends, so nothing is fetched twice or past the end, and each segment
    // costs one open at most (the primary goes on into its next one when
    // that is where it is).
    let len = 20 * MIB + 5;
    let want = content(len);
    let s = setup(&want, 3);
    s.faults.set_read_rate(Some(4_000_000));
    s.faults.reset_counters();
    let counts = read_whole(&s, &want);
    assert_eq!(counts.peak_extra, 3, "{counts:?}");
    assert_eq!(s.faults.counters().bytes_read, len as u64);
    let segments = len.div_ceil(SEGMENT) as u64 + counts.split;
    let opens = s.faults.counters().open_read;
    assert!(
        opens >= 2 && opens <= segments + 1,
        "{opens} opens for at most {segments} segments (splits included) and the primary"
    );
    assert_eq!(opens, counts.opened + 1, "{counts:?}");
}

#[test]
fn a_stream_left_idle_at_the_end_takes_over_part_of_a_slow_one() {
    // The primary runs at 50 MB/s, the extra streams (opened after the
    // first read) at 4 MB/s: near the end the primary has nothing left to
    // make while the others are far from done, so it splits off the end of
    // one of their segments. Every byte still comes once, in order.
    // Segments of 2 MiB: what is left of a slow one when the primary is
    // done is well above the smallest split (a read of 256 KiB, the most
    // one stream has under way, is never split off).
    let len = 12 * MIB + 321;
    let want = content(len);
    let s = setup_sized(&want, 3, false, 2 * MIB);
    let fh = open(&s.fs);
    let mut got = s.fs.read(fh, 0, READ).expect("first read");
    s.faults.set_read_rate(Some(4_000_000));
    s.faults.reset_counters();
    read_to_end(&s.fs, fh, &mut got);
    s.fs.release(fh).expect("release");
    assert_same(&got, &want);
    let counts = s.fs.segment_counts();
    assert!(counts.split >= 1, "{counts:?}");
    // Nothing fetched twice: a split starts past the read under way.
    assert_eq!(
        s.faults.counters().bytes_read,
        (len - READ as usize) as u64,
        "{counts:?}"
    );
}

#[test]
fn no_more_streams_when_the_link_is_the_limit() {
    // 12 MB/s for all streams together: the extra streams, all started at
    // once, gain nothing, and leave at their first segments' ends (or a
    // little later: their next segments may be taken before the probe
    // ends); the primary fetches the rest. 40 MiB are 53 segments of the
    // size `streams_are_added_while_a_per_connection_cap_is_what_limits`
    // fetches mostly on the extra streams.
    let want = content(40 * MIB);
    let s = setup(&want, 3);
    s.faults.set_total_read_rate(Some(12_000_000));
    let counts = read_whole(&s, &want);
    assert_eq!(counts.peak_extra, 3, "{counts:?}");
    assert!(counts.opened <= 9, "{counts:?}");
}

#[test]
fn files_read_at_once_share_the_sessions() {
    // Four large files read at once with three extra streams for all: their
    // own downloads take the four sessions, and none engages segments
    // while all four are read.
    let want: Vec<Vec<u8>> = (0..4).map(|i| content(9 * MIB + i * 1001)).collect();
    let s = setup(&want[0], 3);
    let server = s.faults.inner();
    for (i, body) in want.iter().enumerate().skip(1) {
        server.put_file(format!("f{i}").as_bytes(), body);
    }
    let flags = OpenFlags {
        read: true,
        ..OpenFlags::default()
    };
    let handles: Vec<u64> = (0..4)
        .map(|i| {
            let name = if i == 0 {
                "f".to_string()
            } else {
                format!("f{i}")
            };
            let ino = s.fs.lookup(ROOT_INO, name.as_bytes()).expect("lookup").ino;
            s.fs.open(ino, flags).expect("open")
        })
        .collect();
    let mut got = vec![Vec::new(); 4];
    let mut done = [false; 4];
    // All four in their middles: no segments. (Once one has been read to
    // its end, its session is free for another's extra stream.)
    while got.iter().any(|g| g.len() < 6 * MIB) {
        for (i, &fh) in handles.iter().enumerate() {
            let data = s.fs.read(fh, got[i].len() as u64, READ).expect("read");
            got[i].extend_from_slice(&data);
        }
    }
    assert_eq!(s.fs.segment_counts().engaged, 0);
    while !done.iter().all(|&d| d) {
        for (i, &fh) in handles.iter().enumerate() {
            if done[i] {
                continue;
            }
            let data = s.fs.read(fh, got[i].len() as u64, READ).expect("read");
            done[i] = data.is_empty();
            got[i].extend_from_slice(&data);
        }
    }
    for (i, fh) in handles.into_iter().enumerate() {
        s.fs.release(fh).expect("release");
        assert_same(&got[i], &want[i]);
    }
}

#[test]
fn extra_streams_leave_when_other_large_files_are_opened() {
    // One file read in order engages segments; then three more large files
    // are opened and read: the four downloads need the four sessions, so
    // the first file's extra streams leave at their segments' ends.
    let want = content(40 * MIB);
    let others: Vec<Vec<u8>> = (1..4).map(|i| content(4 * MIB + i * 999)).collect();
    let s = setup(&want, 3);
    s.faults.set_read_rate(Some(4_000_000));
    let server = s.faults.inner();
    for (i, body) in others.iter().enumerate() {
        server.put_file(format!("f{}", i + 1).as_bytes(), body);
    }
    let fh = open(&s.fs);
    let mut got = Vec::new();
    // Until it engaged (the read-ahead thread engages once a second read
    // in order came), well before its end.
    while s.fs.segment_counts().engaged == 0 {
        assert!(got.len() < 20 * MIB, "never engaged");
        got.extend_from_slice(&s.fs.read(fh, got.len() as u64, READ).expect("read"));
    }
    let flags = OpenFlags {
        read: true,
        ..OpenFlags::default()
    };
    let mut handles = Vec::new();
    for (i, body) in others.iter().enumerate() {
        let name = format!("f{}", i + 1);
        let ino = s.fs.lookup(ROOT_INO, name.as_bytes()).expect("lookup").ino;
        let other = s.fs.open(ino, flags).expect("open");
        let first = s.fs.read(other, 0, READ).expect("read");
        assert_same(&first, &body[..READ as usize]);
        handles.push(other);
    }
    read_to_end(&s.fs, fh, &mut got);
    s.fs.release(fh).expect("release");
    assert_same(&got, &want);
    for other in handles {
        s.fs.release(other).expect("release");
    }
    let counts = s.fs.segment_counts();
    assert!(counts.left_for_others >= 1, "{counts:?}");
}

/// Runs `work` on its own thread and fails the test when it has not
/// finished in `limit`: a hang fails instead of hanging the test run.
fn within<T: Send + 'static>(limit: Duration, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    finished
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("not done in {limit:?}: the reads hang"))
}

/// Reads the whole file in order like `read_in_order`, reading on after
/// a failed read (a broken download) as a program that retries would, up to
/// `breaks` times.
fn read_through_breaks(fs: &Fs, fh: u64, breaks: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut failed = 0;
    loop {
        match fs.read(fh, out.len() as u64, READ) {
            Ok(got) if got.is_empty() => return out,
            Ok(got) => out.extend_from_slice(&got),
            Err(e) => {
                failed += 1;
                assert!(failed <= breaks, "{failed} failed reads: {e}");
            }
        }
    }
}

#[test]
fn four_readers_of_one_file_on_four_sessions_through_a_break_never_hang() {
    // The FTPS store's pool: four sessions, and an open beyond them waits
    // for one to come back. Four handles read the same file at once, and
    // one download breaks on the way.
    for round in 0..3 {
        let want = Arc::new(content(16 * MIB + 5));
        let s = Arc::new(setup(&want, 3));
        s.faults.set_read_pool(Some(4), Duration::from_secs(60));
        s.faults.set_delay(Op::OpenRead, Duration::from_millis(20));
        s.faults.fail_read_after(3 * MIB as u64 + round * 100_000);
        let handles: Vec<u64> = (0..4).map(|_| open(&s.fs)).collect();
        let readers: Vec<_> = handles
            .iter()
            .map(|&fh| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || read_through_breaks(&s.fs, fh, 1))
            })
            .collect();
        let got = within(Duration::from_secs(30), move || {
            readers.into_iter().map(|r| r.join()).collect::<Vec<_>>()
        });
        for (fh, got) in handles.into_iter().zip(got) {
            s.fs.release(fh).expect("release");
            assert_same(&got.expect("a reader failed"), &want);
        }
    }
}

#[test]
fn a_reader_that_waits_for_a_session_while_segments_hold_them_never_hangs() {
    // One file is read with all four sessions (its own and three segment
    // streams); then one thread opens three more files and reads them in
    // turn, as few FUSE threads serve many readers: while it waits for a
    // session for one file, it reads none of the others, whose downloads
    // hold theirs. Before the fix, a segment stream that let go of its
    // session to move to its next segment waited for one in the pool, the
    // other segment streams held theirs while waiting for the reader (which
    // waited for that segment), and the opens took the rest: every reader
    // hung until the pool's checkout timeout.
    let want = Arc::new(content(48 * MIB + 7));
    let s = Arc::new(setup(&want, 3));
    s.faults.set_read_rate(Some(10_000_000));
    s.faults.set_read_pool(Some(4), Duration::from_secs(60));
    let first = open(&s.fs);
    let one = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || read_in_order(&s.fs, first, |_| {}))
    };
    // Until the first reader runs its extra streams (not a condition of
    // the test: the other readers start anyway after a while).
    for _ in 0..200 {
        if s.fs.segment_counts().peak_extra >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let others = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || {
            let handles: Vec<u64> = (0..3).map(|_| open(&s.fs)).collect();
            let mut got = vec![Vec::new(); 3];
            let mut done = [false; 3];
            while !done.iter().all(|&d| d) {
                for (i, &fh) in handles.iter().enumerate() {
                    if done[i] {
                        continue;
                    }
                    let data = s.fs.read(fh, got[i].len() as u64, READ).expect("read");
                    done[i] = data.is_empty();
                    got[i].extend_from_slice(&data);
                }
            }
            for fh in handles {
                s.fs.release(fh).expect("release");
            }
            got
        })
    };
    let (one, others) = within(Duration::from_secs(40), move || (one.join(), others.join()));
    assert_same(&one.expect("the first reader failed"), &want);
    for got in others.expect("a reader failed") {
        assert_same(&got, &want);
    }
    s.fs.release(first).expect("release");
}
