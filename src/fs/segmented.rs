//! Parallel segmented reads: a large file read in order is fetched ahead in
//! segments on several sessions at once, and handed to the read-ahead in
//! order, as one stream.
//!
//! Why: on a long link each connection is capped (a shaper, or TCP's window
//! over the round trip), and several connections add up (see design.md,
//! "Long links"). On a fast LAN one stream is already the ceiling, so the
//! extra streams must earn their place by measurement.
//!
//! How: `SegmentedStream` is a `ReadStream` wrapped around the handle's
//! first download (the "primary"). It passes the primary's bytes through
//! until the reader has consumed more than `START_AFTER` (1 MiB) in order
//! from its first read, i.e. a second read in order (so random reads, at
//! most 1 MiB each, never start segments), of a file of at least two
//! segments. Then it
//! *engages*: the file from the current position on is cut into segments
//! of `segment_size` bytes, or up to half as large again where that makes
//! whole rounds of one segment per stream (`even_segments`: a 96 MiB file
//! on four streams is eight segments of 11.9 MiB, one reopen per stream,
//! not twelve of 8 MiB); near the end, a stream that comes for more takes
//! its share of all that is left (the rest and what the others still fetch
//! of theirs, at least `TAIL_MIN`), so the streams, which started apart,
//! finish together; the last one is open-ended, read to the end of the
//! file, so a file that grew is read whole. Once every segment is made, a
//! stream left without one splits off the end of the largest rest another
//! stream still fetches (`Shared::split`). Worker threads fetch them:
//! - worker 0 keeps the primary stream, which goes on without a reopen as
//!   long as its next segment is the one its stream is at (always, when it
//!   is the only worker: one stream costs nothing more than before);
//! - each extra worker opens `open_read_segment(path, start, end)` on
//!   another pooled session (REST + RETR, or RANG + RETR where the server
//!   offers it: then the server ends the transfer at the segment's end,
//!   see `ALIGN`), reads exactly to the segment's end and drops the stream
//!   (the FTPS store ABORs a transfer not ended, whose reply orders it
//!   handles), then takes the next segment.
//!
//! `read` hands out the segments' bytes in file order; a segment is freed
//! once handed out.
//!
//! Memory bound: at most one segment per stream exists at once (being
//! fetched, or fetched and waiting for the reader; a split adds none: its
//! bytes are part of the split segment's), each at most 3/2 ×
//! `segment_size` bytes (the open-ended last one too, unless the file grew
//! while read), so one reader holds at most
//! `(read_streams + 1) × 3/2 × segment_size` (defaults: 3 extra streams,
//! 8 MiB: 48 MiB) besides the read-ahead buffer. A stream that finished its
//! segment while the reader still reads an older one waits for the reader
//! (which takes a finished segment at memory speed), and ends its transfer
//! (ABOR) while it waits, not after. (One segment more per reader was the
//! bound before: no faster on the WAN rig, 8 MiB more RSS. Segments that
//! grew with the rate were tried, to make each reopen a smaller part of a
//! segment's time: no gain on the WAN rig, and twice the memory.) A freed
//! segment's buffer is kept
//! for the next segment (segments and kept buffers together within that
//! count): 8 MiB buffers freed and allocated on other threads otherwise
//! pile up in glibc's per-thread arenas. Each segment's
//! bytes are reserved when its fetch starts (virtual memory; pages are
//! touched as bytes arrive). A worker that would exceed it waits.
//!
//! Adaptation: it starts every extra stream the budget gives at once (one,
//! then two more took 0.6 s to reach four streams on the WAN rig, and the
//! streams that started late ended late). Each time streams are added, the
//! aggregate rate (the bytes of reads asked for since) is measured over
//! `PROBE` from the moment all new streams gave their first byte, and
//! compared with the rate before them: while the rate grows by more than
//! `GAIN`, more are added where the budget left some out; otherwise adding
//! stops and the streams of that step go at their segments' ends (a fast
//! LAN is back at one stream after one probe; the primary always stays). A segment open
//! refused with `Unavailable` (421 too many sessions, 425 no data
//! connection, the pool's session cap) lowers the number of streams by one
//! and stops adding for `BACKOFF`, for every reader (`Budget`).
//!
//! Failures never leave a gap or wrong bytes: a segment whose open fails
//! goes back to the queue; the next worker free (the primary worker, when
//! the extra ones have gone) fetches it. After `ATTEMPTS` failed opens of
//! one segment the reader gets the error. An extra stream that breaks
//! (after the store's own resume) puts its segment back in the queue, to be
//! fetched on from the break, within the same `ATTEMPTS`. The primary's
//! stream that breaks gives the reader its bytes up to the break and then
//! the error, as a single stream does; the reader's next read opens a new
//! download there. A reader waiting for bytes that no worker is left to
//! fetch gets an error, never a wait without end.
//!
//! Sessions: an extra stream never waits for one. It opens with
//! `open_read_now` (a session free now, or none: the segment goes back to
//! the queue untouched and the stream leaves), resumes a break only on a
//! session free then (otherwise the segment goes back to the queue from the
//! break), and lets go of its session while it waits for the reader to make
//! room. Only the primary worker (or the last worker left) waits for a
//! session, and it holds none while it does. Why: a segment stream that
//! waited for a session while other streams held theirs waiting for the
//! reader — which waited for that very segment — hung every reader of the
//! mount until the pool's checkout timeout (120 s) once other downloads took
//! the sessions that came free (four readers of one file through a data
//! reset; one thread reading several files in turn, as a few FUSE threads
//! serve many readers). Held that way, a reader needs no more sessions than
//! one download without segments.
//!
//! Extra streams across all readers of the mount share one `Budget` of
//! `read_streams`, in which every large file's own download counts too, so
//! several large files read at once do not ask the server for more sessions
//! than there are: a read engages segments only when it gets an extra
//! stream (four files read at once on four sessions engage none). A
//! large file opened after a reader took its extra streams sends them away,
//! one at each segment's end, until the budget holds again (four files
//! opened one after the other on four sessions end with none: the first
//! one's extra streams held sessions, and 8 MiB segments each, that the
//! others' downloads waited for).
//!
//! Not done: `RANG` (ProFTPD's clean end of a segment) — each segment is
//! ended by ABOR.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::store::{self, ErrorKind, ReadStream, RemoteStore};

/// The reader must have consumed more than this in order before segments
/// start: the kernel's reads are at most 1 MiB, so a random read never
/// does; a second read in order does. (2 MiB held a read on the WAN rig at
/// one stream 0.13 s longer.)
pub const START_AFTER: u64 = 1024 * 1024;
/// Bytes asked of a segment's stream per read.
const CHUNK: usize = 256 * 1024;
/// How long the aggregate rate is measured after a stream is added: long
/// enough for a few hundred chunks at a capped connection's rate (100 ms at
/// 16 MB/s is 1.6 MB), short enough that the ramp to all streams costs
/// little (150 ms made a 96 MiB read on the WAN rig 4% slower).
const PROBE: Duration = Duration::from_millis(100);
/// The smallest segment the end of a file is shared out in.
const TAIL_MIN: u64 = 1024 * 1024;
/// Segments may be up to this share larger than `segment_size`, to cut a
/// file into whole rounds (`even_segments`): 3/2.
const GROW_NUM: u64 = 3;
const GROW_DEN: u64 = 2;
/// The smallest piece split off a segment still being fetched, as a share
/// of the segment size (see `Shared::split`): 1 MiB of 8 MiB segments; a
/// smaller one would save less than its reopen costs.
const SPLIT_MIN_SHARE: u64 = 8;
/// Segments end at multiples of this many bytes of the file, so that every
/// segment but the first (which starts where the reader was) spans whole
/// units of it. Why: a server that offers `RANG` ends a segment's transfer
/// itself, with no ABOR (see `RemoteStore::open_read_segment`), but ProFTPD
/// 1.3.8 keeps to a range's end only when its length is a multiple of its
/// 16 KiB transfer buffer (measured: 16,384 and 65,536 bytes end there,
/// 16,385 and 60,000 run on to the end of the file).
const ALIGN: u64 = 64 * 1024;
/// The growth of the aggregate rate that makes a stream worth it.
const GAIN: f64 = 1.10;
/// No extra stream is added for this long after a segment open was refused.
const BACKOFF: Duration = Duration::from_secs(30);
/// Failures of one segment before the reader gets the error.
const ATTEMPTS: u32 = 3;

/// What a mount's segmented reads share: their settings, the budget of
/// extra streams, the counts.
pub struct Segments {
    pub settings: Settings,
    pub budget: Arc<Budget>,
    pub stats: Arc<SegmentStats>,
}

impl Segments {
    pub fn new(config: &super::FsConfig) -> Segments {
        let settings = Settings {
            extra_streams: config.read_streams,
            segment_size: config.segment_size.max(CHUNK as u64),
        };
        Segments {
            settings,
            budget: Arc::new(Budget::new(settings.extra_streams)),
            stats: Arc::new(SegmentStats::default()),
        }
    }
}

/// What segmented reads may use, from `FsConfig`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Extra streams per reader at most (0: off).
    pub extra_streams: usize,
    pub segment_size: u64,
}

/// The extra streams all readers of a mount may hold at once, and when a
/// refused segment open last said the server has no more.
///
/// A large file's own download counts too: extra streams are handed out
/// only while the large downloads and the extra streams together stay
/// within `extra_streams + 1` (the sessions, by default), so that files read
/// at once each keep their session and none holds segments it cannot fetch
/// any faster (four files read at once engage no segments at all).
pub struct Budget {
    state: Mutex<BudgetState>,
}

struct BudgetState {
    total: usize,
    free: usize,
    /// Large files' downloads alive (`SegmentedStream`s).
    readers: usize,
    refused_at: Option<Instant>,
}

impl Budget {
    pub fn new(extra_streams: usize) -> Budget {
        Budget {
            state: Mutex::new(BudgetState {
                total: extra_streams,
                free: extra_streams,
                readers: 0,
                refused_at: None,
            }),
        }
    }

    /// Takes one extra stream, unless none is free, the downloads of other
    /// large files use the sessions, or the server refused one lately.
    fn take(&self) -> bool {
        let mut s = self.state.lock();
        let backing_off = s.refused_at.is_some_and(|at| at.elapsed() < BACKOFF);
        let in_use = s.total - s.free;
        if s.free == 0 || backing_off || s.readers + in_use + 1 > s.total + 1 {
            return false;
        }
        s.free -= 1;
        true
    }

    /// Whether the large downloads and the extra streams now exceed what
    /// `take` allows: large files were opened since the extra streams were
    /// taken, and their downloads need the sessions more.
    fn crowded(&self) -> bool {
        let s = self.state.lock();
        s.readers + (s.total - s.free) > s.total + 1
    }

    fn reader_opened(&self) {
        self.state.lock().readers += 1;
    }

    fn reader_closed(&self) {
        let mut s = self.state.lock();
        s.readers = s.readers.saturating_sub(1);
    }

    fn give_back(&self) {
        self.state.lock().free += 1;
    }

    fn refused(&self) {
        self.state.lock().refused_at = Some(Instant::now());
    }
}

/// What the segmented reads of a mount did, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentCounts {
    /// Readers that engaged segments.
    pub engaged: u64,
    /// Segment streams opened (the primary going on is not counted).
    pub opened: u64,
    /// The most extra streams one reader ran at once.
    pub peak_extra: u64,
    /// The most segment bytes one reader held at once.
    pub peak_bytes: u64,
    /// Segment fetches that failed and went back to the queue.
    pub retried: u64,
    /// The longest segment made.
    pub longest: u64,
    /// Extra streams that left because other large files were opened.
    pub left_for_others: u64,
    /// Segments split at the end of the file, for a stream left idle.
    pub split: u64,
}

impl super::Fs {
    pub fn segment_counts(&self) -> SegmentCounts {
        let s = &self.segments.stats;
        SegmentCounts {
            engaged: s.engaged.load(Ordering::Relaxed),
            opened: s.opened.load(Ordering::Relaxed),
            peak_extra: s.peak_extra.load(Ordering::Relaxed),
            peak_bytes: s.peak_bytes.load(Ordering::Relaxed),
            retried: s.retried.load(Ordering::Relaxed),
            longest: s.longest.load(Ordering::Relaxed),
            left_for_others: s.left_for_others.load(Ordering::Relaxed),
            split: s.split.load(Ordering::Relaxed),
        }
    }
}

/// The counters behind `SegmentCounts`, updated by the workers.
#[derive(Debug, Default)]
pub struct SegmentStats {
    /// Readers that engaged segments.
    pub engaged: AtomicU64,
    /// Segment streams opened (the primary's reuse not counted).
    pub opened: AtomicU64,
    /// The most extra streams one reader ran at once.
    pub peak_extra: AtomicU64,
    /// The most segment bytes one reader held at once.
    pub peak_bytes: AtomicU64,
    /// Segment fetches that failed and went back to the queue.
    pub retried: AtomicU64,
    /// The longest segment made.
    pub longest: AtomicU64,
    /// Extra streams that left because other large files were opened.
    pub left_for_others: AtomicU64,
    /// Segments split at the end of the file, for a stream left idle.
    pub split: AtomicU64,
}

/// Everything the workers need to open streams.
struct Source {
    store: Arc<dyn RemoteStore>,
    path: Vec<u8>,
    budget: Arc<Budget>,
    stats: Arc<SegmentStats>,
}

/// The reader's side: before engaging, the primary stream; after, the
/// segments.
pub struct SegmentedStream {
    /// Counts this download among the large ones while it lives.
    budget: Arc<Budget>,
    source: Option<Source>,
    primary: Option<Box<dyn ReadStream>>,
    settings: Settings,
    size: u64,
    /// Where the handle's reader has asked up to (set by the read-ahead).
    consumed: Arc<AtomicU64>,
    /// Offset of the first byte this stream gave.
    opened_at: u64,
    /// Where the reader's first read started: `START_AFTER` counts from
    /// here, not from the block the download started at (a single 1 MiB
    /// read one page into a block would count as more than 1 MiB).
    asked_from: u64,
    /// The next byte `read` gives.
    position: u64,
    /// When the primary gave its first byte, for the rate before engaging.
    first_byte: Option<Instant>,
    shared: Option<Arc<Shared>>,
}

impl SegmentedStream {
    /// Wraps `primary` (a download of `path` from some offset, of a file of
    /// `size` bytes) for a reader whose first read starts at `asked_from`
    /// (the download may start before it, at the content cache's block).
    /// `consumed` is the reader's progress (the end of the newest read),
    /// shared with the read-ahead.
    pub fn new(
        segments: &Segments,
        store: Arc<dyn RemoteStore>,
        path: &[u8],
        size: u64,
        primary: Box<dyn ReadStream>,
        asked_from: u64,
        consumed: Arc<AtomicU64>,
    ) -> SegmentedStream {
        let position = primary.position();
        segments.budget.reader_opened();
        let settings = segments.settings;
        if settings.extra_streams > 0 && size.saturating_sub(position) >= 2 * settings.segment_size
        {
            // While the reader's first MiB comes on the primary: the extra
            // streams' sessions set up their data connections, so they
            // start sooner if segments start (and any transfer of theirs
            // uses them if not).
            store.ready_for_reads(settings.extra_streams);
        }
        SegmentedStream {
            budget: Arc::clone(&segments.budget),
            source: Some(Source {
                store,
                path: path.to_vec(),
                budget: Arc::clone(&segments.budget),
                stats: Arc::clone(&segments.stats),
            }),
            primary: Some(primary),
            settings: segments.settings,
            size,
            consumed,
            opened_at: position,
            asked_from: asked_from.max(position),
            position,
            first_byte: None,
            shared: None,
        }
    }

    /// Whether segments are worth starting now.
    fn should_engage(&self) -> bool {
        let segment = self.settings.segment_size.max(1);
        self.settings.extra_streams > 0
            && self.consumed.load(Ordering::Relaxed) > self.asked_from + START_AFTER
            && self.size.saturating_sub(self.position) >= 2 * segment
    }

    /// Hands the primary to worker 0 and adds the first extra stream; does
    /// nothing while no extra stream is to be had (segments with one stream
    /// would only hold memory), so a later read tries again.
    fn engage(&mut self) -> store::Result<()> {
        if !self.budget.take() {
            return Ok(());
        }
        let (Some(source), Some(primary)) = (self.source.take(), self.primary.take()) else {
            self.budget.give_back();
            return Ok(());
        };
        let rate_before = self.first_byte.map_or(0.0, |at| {
            let secs = at.elapsed().as_secs_f64().max(1e-3);
            (self.position - self.opened_at) as f64 / secs
        });
        source.stats.engaged.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                segments: VecDeque::new(),
                next_start: self.position,
                size: self.size,
                delivered: self.position,
                eof_at: None,
                stop: false,
                target: 1,
                running: 1,
                extra_running: 0,
                rate_before,
                probe: None,
                probed: 0,
                settled: false,
                step: 0,
                starting: 0,
                spare: Vec::new(),
                stream_rate: 0.0,
                reopen: Duration::ZERO,
            }),
            changed: Condvar::new(),
            segment_size: even_segments(
                self.size.saturating_sub(self.position),
                self.settings.segment_size.max(CHUNK as u64),
                self.settings.extra_streams + 1,
            ),
            engaged_at: Instant::now(),
            max_streams: self.settings.extra_streams + 1,
            source,
        });
        // The first segment is the primary's, where its stream is: an extra
        // stream that took it would leave the primary to reopen.
        let first = {
            let mut s = shared.state.lock();
            match shared.take(&mut s) {
                Some(Some(i)) => {
                    s.segments[i].status = Status::Fetching;
                    Some(s.segments[i].start)
                }
                _ => None,
            }
        };
        let worker = Arc::clone(&shared);
        let started = thread::Builder::new()
            .name("ftpsfs-segment".into())
            .spawn(move || work(&worker, Some(primary), first, false));
        if let Err(e) = started {
            shared.source.budget.give_back();
            // The primary went with the closure: this download is over.
            return Err(store::Error::new(
                ErrorKind::Failed,
                format!("no thread for a segmented read: {e}"),
            ));
        }
        {
            // Every extra stream at once: on a long link each step costs a
            // reopen and a probe at the lower rate (one, then two more took
            // 0.6 s to reach four streams on the WAN rig, and the streams
            // that started late ended late); the probe then sends them all
            // away again if they did not pay.
            let mut s = shared.state.lock();
            add_stream(&shared, &mut s, true);
            while !s.settled && s.target < shared.max_streams {
                add_stream(&shared, &mut s, false);
            }
            s.step = s.target - 1;
        }
        self.shared = Some(shared);
        Ok(())
    }
}

impl ReadStream for SegmentedStream {
    fn read(&mut self, buf: &mut [u8]) -> store::Result<usize> {
        if self.shared.is_none() && self.should_engage() {
            self.engage()?;
        }
        if let Some(shared) = &self.shared {
            let n = shared.deliver(self.position, buf)?;
            self.position += n as u64;
            return Ok(n);
        }
        let Some(primary) = self.primary.as_mut() else {
            return Ok(0);
        };
        let n = primary.read(buf)?;
        if n > 0 && self.first_byte.is_none() {
            self.first_byte = Some(Instant::now());
        }
        self.position += n as u64;
        Ok(n)
    }

    fn position(&self) -> u64 {
        self.position
    }
}

impl Drop for SegmentedStream {
    fn drop(&mut self) {
        self.budget.reader_closed();
        if let Some(shared) = &self.shared {
            shared.state.lock().stop = true;
            shared.changed.notify_all();
        }
    }
}

/// The segment size for `rest` bytes on up to `streams` streams: the
/// smallest whole number of rounds (each stream one segment) with segments
/// of at most `GROW` x `size`, and never under `size`. Why: every segment
/// but the primary's first costs a reopen (four round trips), so fewer
/// segments are faster on a long link; segments in whole rounds keep the
/// streams busy to the end (16 MiB segments of a 96 MiB file were slower than
/// 8 MiB ones: six segments on four streams, two fetched alone at the end).
/// A 96 MiB file on four streams: eight segments of 11.9 MiB, not twelve of 8.
fn even_segments(rest: u64, size: u64, streams: usize) -> u64 {
    let largest = size * GROW_NUM / GROW_DEN;
    let streams = streams.max(1) as u64;
    let rounds = rest.div_ceil(streams * largest).max(1);
    rest.div_ceil(rounds * streams).clamp(size, largest)
}

/// `end` moved back to a multiple of `ALIGN`, unless that would leave
/// nothing after `start`.
fn aligned_end(start: u64, end: u64) -> u64 {
    let aligned = end / ALIGN * ALIGN;
    if aligned > start {
        aligned
    } else {
        end
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when bytes arrive, a segment is freed or taken back, or
    /// the reader goes.
    changed: Condvar,
    segment_size: u64,
    /// When segments started, for the log.
    engaged_at: Instant,
    /// Streams (the primary included) one reader may run at most.
    max_streams: usize,
    source: Source,
}

struct State {
    /// Segments not yet handed out in full, in file order; the first holds
    /// `delivered`.
    segments: VecDeque<Segment>,
    /// Start of the first segment not yet made (`u64::MAX` after the
    /// open-ended last one).
    next_start: u64,
    size: u64,
    /// The next byte the reader gets.
    delivered: u64,
    /// A segment met the end of the file here, before its planned end (the
    /// file shrank): nothing after it is read.
    eof_at: Option<u64>,
    stop: bool,
    /// Streams wanted (the primary included), and running.
    target: usize,
    running: usize,
    /// Extra streams running, each holding one from the budget.
    extra_running: usize,
    /// The aggregate rate before the newest stream was added.
    rate_before: f64,
    /// The measurement under way: since when.
    probe: Option<Instant>,
    /// Bytes of the reads asked for since the probe began.
    probed: u64,
    /// No more streams are added.
    settled: bool,
    /// Streams the latest step added: they all go when it did not pay.
    step: usize,
    /// Streams added that have not given a byte yet: the probe waits for
    /// them all.
    starting: usize,
    /// Buffers of freed segments, for the next ones.
    spare: Vec<Vec<u8>>,
    /// One stream's rate over its latest whole segment (0: none yet), and
    /// the time from a segment's open to its first byte (the latest): what
    /// a split weighs (`Shared::split`).
    stream_rate: f64,
    reopen: Duration,
}

struct Segment {
    start: u64,
    /// `u64::MAX`: read to the end of the file.
    end: u64,
    data: Vec<u8>,
    status: Status,
    failures: u32,
}

#[derive(PartialEq)]
enum Status {
    Queued,
    Fetching,
    /// All its bytes are here; `eof` when its stream ended there.
    Done {
        eof: bool,
    },
    Failed(store::Error),
}

impl Segment {
    /// Where its fetch goes on from.
    fn resume_at(&self) -> u64 {
        self.start + self.data.len() as u64
    }
}

impl Shared {
    /// Copies the bytes at `position` into `buf`, waiting for them; 0 at the
    /// end of the file.
    fn deliver(&self, position: u64, buf: &mut [u8]) -> store::Result<usize> {
        let mut s = self.state.lock();
        loop {
            let Some(head) = s.segments.front() else {
                if s.next_start >= s.size || s.eof_at.is_some_and(|e| position >= e) {
                    return Ok(0);
                }
                self.check_workers(&s)?;
                self.changed.wait(&mut s);
                continue;
            };
            let from = (position - head.start) as usize;
            if from < head.data.len() {
                let n = buf.len().min(head.data.len() - from);
                buf[..n].copy_from_slice(&head.data[from..from + n]);
                s.delivered = position + n as u64;
                if let Some(head) = s.segments.front() {
                    if matches!(head.status, Status::Done { .. }) && s.delivered == head.resume_at()
                    {
                        self.free_head(&mut s);
                    }
                }
                return Ok(n);
            }
            match &head.status {
                Status::Done { eof: true } => return Ok(0),
                Status::Done { eof: false } => self.free_head(&mut s),
                Status::Failed(e) => return Err(e.clone()),
                Status::Queued | Status::Fetching => {
                    self.check_workers(&s)?;
                    self.changed.wait(&mut s)
                }
            }
        }
    }

    /// Whether a worker is left to bring the bytes waited for: every worker
    /// that leaves says so (`changed`), so a reader never waits on none.
    fn check_workers(&self, s: &State) -> store::Result<()> {
        if s.running == 0 {
            return Err(store::Error::new(
                ErrorKind::Failed,
                "a segmented read stopped before the end of the file",
            ));
        }
        Ok(())
    }

    /// Drops the first segment (handed out in full): room for another.
    fn free_head(&self, s: &mut State) {
        if let Some(head) = s.segments.front() {
            if matches!(head.status, Status::Done { eof: true }) {
                // The end of the file: keep it, `deliver` answers 0 from it.
                return;
            }
        }
        if let Some(mut done) = s.segments.pop_front() {
            // Kept for the next segment: buffers of this size freed and
            // allocated again on other threads leave glibc's per-thread
            // arenas holding freed ones, and the RSS grows past the bound.
            // Segments and spare buffers together stay within the bound.
            if s.segments.len() + s.spare.len() < s.target && done.data.capacity() > 0 {
                done.data.clear();
                s.spare.push(done.data);
            }
        }
        self.changed.notify_all();
    }

    /// The next segment a worker fetches: a queued one (the lowest, so the
    /// reader's next bytes come first), or a new one when there is room.
    /// Returns its index, or None when there is nothing left to fetch.
    fn take(&self, s: &mut State) -> Option<Option<usize>> {
        if let Some(i) = s.segments.iter().position(|g| g.status == Status::Queued) {
            return Some(Some(i));
        }
        let past_end = s.eof_at.is_some_and(|e| s.next_start >= e);
        if s.next_start >= s.size || s.next_start == u64::MAX || past_end {
            // Nothing left to make: this stream takes over part of the
            // largest rest another is still fetching, or it is done.
            return self.split(s).map(Some);
        }
        if s.segments.len() >= s.target {
            // Full: wait for the reader.
            return Some(None);
        }
        let start = s.next_start;
        let rest = s.size.saturating_sub(start);
        let streams = s.target as u64;
        let len = if rest < streams * self.segment_size {
            // Near the end, this stream's share of all that is left to
            // fetch: the rest and what the other streams still fetch of
            // their segments. The streams started apart (one is added after
            // another), so equal segments would end apart, one stream
            // fetching alone at the end; a stream that comes for more while
            // the others are still far from done takes more.
            let fetching: u64 = s
                .segments
                .iter()
                .filter(|g| g.status == Status::Fetching)
                .map(|g| g.end.min(s.size).saturating_sub(g.resume_at()))
                .sum();
            ((rest + fetching) / streams)
                .max(TAIL_MIN)
                .min(self.segment_size)
        } else {
            self.segment_size
        };
        let end = if rest <= len {
            u64::MAX
        } else {
            aligned_end(start, start + len)
        };
        let len = end.min(s.size) - start;
        self.source.stats.longest.fetch_max(len, Ordering::Relaxed);
        s.next_start = end;
        s.segments.push_back(Segment {
            start,
            end,
            data: Vec::new(),
            status: Status::Queued,
            failures: 0,
        });
        Some(Some(s.segments.len() - 1))
    }

    /// Splits the segment with the most bytes still to fetch, once every
    /// segment is made: its stream goes on to a nearer end, and the rest
    /// becomes a new segment (queued, at its index). Why: the segments
    /// started at different times (a stream is added after another), so
    /// near the end of the file one stream would fetch alone while the
    /// others are done; split, they end together. The split point leaves
    /// the stream as many bytes more than the new segment as it fetches
    /// while the new one opens, so both end at once; nothing is split when
    /// the new segment would be under its share `SPLIT_MIN_SHARE` of a
    /// segment. No bytes are added to
    /// what the segments hold (the new one is part of the old one's range).
    /// The new segment starts past the read the old segment's stream may
    /// have under way (`CHUNK`), so no byte is fetched twice; its stream
    /// still keeps only the bytes up to its segment's end (`work`).
    fn split(&self, s: &mut State) -> Option<usize> {
        let limit = s.eof_at.unwrap_or(s.size);
        let (i, rest) = s
            .segments
            .iter()
            .enumerate()
            .filter(|(_, g)| g.status == Status::Fetching)
            .map(|(i, g)| (i, g.end.min(limit).saturating_sub(g.resume_at())))
            .max_by_key(|&(_, rest)| rest)?;
        let lead = s.stream_rate * s.reopen.as_secs_f64();
        // Beyond the read the old segment's stream may have under way, so
        // that it fetches no byte of the new one.
        let len = ((rest as f64 - lead) / 2.0).max(0.0) as u64;
        let len = len.min(rest.saturating_sub(CHUNK as u64));
        // A range of whole `ALIGN` units, from an aligned end (see there).
        let len = len / ALIGN * ALIGN;
        if len < (self.segment_size / SPLIT_MIN_SHARE).max(CHUNK as u64) {
            return None;
        }
        let old = &mut s.segments[i];
        let at = old.end.min(limit) - len;
        let end = old.end;
        old.end = at;
        log::debug!(
            "segment at {}: split at {at}, {len} bytes before its end, for an idle stream",
            old.start
        );
        s.segments.insert(
            i + 1,
            Segment {
                start: at,
                end,
                data: Vec::new(),
                status: Status::Queued,
                failures: 0,
            },
        );
        self.source.stats.split.fetch_add(1, Ordering::Relaxed);
        Some(i + 1)
    }

    fn index_of(s: &State, start: u64) -> Option<usize> {
        s.segments.iter().position(|g| g.start == start)
    }
}

/// Adds a stream if the budget has one, or `taken` already (under the
/// state lock).
fn add_stream(shared: &Arc<Shared>, s: &mut State, taken: bool) {
    let budget = &shared.source.budget;
    if s.stop || s.target >= shared.max_streams || !(taken || budget.take()) {
        if taken {
            budget.give_back();
        }
        s.settled = true;
        return;
    }
    s.target += 1;
    s.running += 1;
    s.extra_running += 1;
    s.starting += 1;
    s.probe = None;
    shared
        .source
        .stats
        .peak_extra
        .fetch_max(s.extra_running as u64, Ordering::Relaxed);
    let worker = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("ftpsfs-segment".into())
        .spawn(move || work(&worker, None, None, true));
    if let Err(e) = spawned {
        log::debug!("no thread for another segment stream: {e}");
        s.target -= 1;
        s.running -= 1;
        s.extra_running -= 1;
        s.starting -= 1;
        s.settled = true;
        shared.source.budget.give_back();
    }
}

/// Counts `n` fetched bytes, asked for at `asked_at`, and, when a probe is
/// due, decides whether the newest streams helped (under the state lock).
fn account(shared: &Arc<Shared>, s: &mut State, n: usize, asked_at: Instant, newest: bool) {
    if let Some(since) = s.probe {
        // Only reads asked for once the probe began: a read under way then
        // brings bytes that took their time before it (with several
        // streams, several reads' worth: a rate that seemed to grow on a
        // link with one cap for all).
        if asked_at >= since {
            s.probed += n as u64;
        }
    }
    if newest {
        s.starting = s.starting.saturating_sub(1);
    }
    if s.settled {
        return;
    }
    let Some(since) = s.probe else {
        // The probe starts once the newest streams all give bytes: their
        // opens are not what is measured.
        if s.starting == 0 {
            s.probe = Some(Instant::now());
            s.probed = 0;
        }
        return;
    };
    let elapsed = since.elapsed();
    if elapsed < PROBE {
        return;
    }
    let rate = s.probed as f64 / elapsed.as_secs_f64();
    log::debug!(
        "segmented read: {} streams fetch {:.1} MB/s (before: {:.1} MB/s), {:.3} s after engaging",
        s.target,
        rate / 1e6,
        s.rate_before / 1e6,
        shared.engaged_at.elapsed().as_secs_f64()
    );
    if rate > s.rate_before * GAIN {
        s.rate_before = rate;
        // As many again (1, 2, 4...) where the first step left some out (a
        // budget shared with other readers): each probe costs its time at
        // the lower rate, and a long link pays a reopen per stream added.
        let before = s.target;
        let more = s.target.min(shared.max_streams.saturating_sub(s.target));
        for _ in 0..more.max(1) {
            add_stream(shared, s, false);
        }
        s.step = s.target - before;
    } else {
        s.settled = true;
        if s.target > 1 {
            // The newest streams did not pay (a link with a total cap, or
            // a CPU already busy): they go at their segments' ends.
            s.target = s.target.saturating_sub(s.step).max(1);
            shared.changed.notify_all();
        }
    }
}

/// A worker: fetches segments until the reader goes, the file ends, or the
/// worker is not wanted. `stream` is the primary's, positioned where the
/// segment that starts at `first` (already marked as fetched) starts.
fn work(
    shared: &Arc<Shared>,
    mut stream: Option<Box<dyn ReadStream>>,
    mut first: Option<u64>,
    extra: bool,
) {
    let source = &shared.source;
    let mut chunk = vec![0u8; CHUNK];
    let mut newest = extra;
    loop {
        // Pick a segment.
        let (start, from, end) = {
            let mut s = shared.state.lock();
            let given = first.take().and_then(|start| Shared::index_of(&s, start));
            let picked = given.or_else(|| loop {
                // Streams not wanted leave, the extra ones: the primary's
                // stream is the file's own download, which one stream keeps.
                if s.stop || (extra && s.running > s.target) {
                    break None;
                }
                if extra && source.budget.crowded() {
                    // Large files opened since this stream was taken: it
                    // leaves at a segment's end, so their downloads (and
                    // listings) get the session.
                    source.stats.left_for_others.fetch_add(1, Ordering::Relaxed);
                    s.target = s.target.saturating_sub(1).max(1);
                    s.settled = true;
                    break None;
                }
                match shared.take(&mut s) {
                    None => break None,
                    Some(Some(i)) => break Some(i),
                    Some(None)
                        if stream.is_some()
                            && (extra
                                || stream.as_ref().map(|st| st.position())
                                    != Some(s.next_start)) =>
                    {
                        // Waiting for the reader: an extra stream does not
                        // wait on a session (see "Sessions" above); a
                        // stream that is not where the next segment starts
                        // is ended now (ABOR), not once the reader made
                        // room.
                        MutexGuard::unlocked(&mut s, || drop(stream.take()));
                    }
                    Some(None) => shared.changed.wait(&mut s),
                }
            });
            let Some(i) = picked else {
                leave(shared, &mut s, extra, newest);
                return;
            };
            let size = s.size;
            let needs_buffer = s.segments[i].data.capacity() == 0;
            let spare = if needs_buffer { s.spare.pop() } else { None };
            let segment = &mut s.segments[i];
            segment.status = Status::Fetching;
            let wanted = segment.end.min(size.max(segment.start)) - segment.start;
            if needs_buffer {
                // Reserved once (a growing Vec would double), or a freed
                // segment's buffer (every segment but the tail's is as big).
                match spare {
                    Some(buffer) if buffer.capacity() as u64 >= wanted => segment.data = buffer,
                    _ => segment.data.reserve_exact(wanted as usize),
                }
            }
            (segment.start, segment.resume_at(), segment.end)
        };
        // The primary goes on where it is; any other stream is dropped
        // (ABOR) and a new one opened at the segment.
        let began = Instant::now();
        // A stream the server ends at a range's end cannot go on past it.
        let reopened = stream.as_ref().map(|st| st.position()) != Some(from)
            || stream
                .as_ref()
                .and_then(|st| st.range_end())
                .is_some_and(|range_end| from >= range_end);
        if reopened {
            drop(stream.take());
            // An extra stream takes a session only when one is free, unless
            // it is the last worker (then it holds nothing and waits as the
            // primary does).
            let last = shared.state.lock().running == 1;
            // A bounded segment as a range (the open-ended last one reads
            // to the end of the file, so a file that grew is read whole).
            let bounded = (end != u64::MAX).then_some(end);
            let wait = !extra || last;
            let opened = source
                .store
                .open_read_segment(&source.path, from, bounded, wait);
            match opened {
                Ok(Some(opened)) => {
                    source.stats.opened.fetch_add(1, Ordering::Relaxed);
                    stream = Some(opened);
                }
                Ok(None) => {
                    no_session(shared, start);
                    continue;
                }
                Err(e) => {
                    fail_segment(shared, start, e, extra);
                    continue;
                }
            }
        }
        let opened_in = began.elapsed();
        let Some(st) = stream.as_mut() else {
            continue;
        };
        // Fetch to the segment's end (which a split may bring nearer).
        let mut at = from;
        let mut end = end;
        let mut first_byte = None;
        loop {
            let want = end.saturating_sub(at).min(CHUNK as u64) as usize;
            if want == 0 {
                log::debug!(
                    "segment at {start}: {} bytes in {:?} (opened in {:?}; done {:.3} s after engaging) ({}), {} streams",
                    at - from,
                    began.elapsed(),
                    opened_in,
                    shared.engaged_at.elapsed().as_secs_f64(),
                    if extra { "extra" } else { "primary" },
                    shared.state.lock().running
                );
                let mut s = shared.state.lock();
                if let Some(i) = Shared::index_of(&s, start) {
                    s.segments[i].status = Status::Done { eof: false };
                }
                if let Some(since) = first_byte.filter(|_| at - from >= CHUNK as u64) {
                    let secs = Instant::now().duration_since(since).as_secs_f64();
                    s.stream_rate = (at - from) as f64 / secs.max(1e-3);
                }
                shared.changed.notify_all();
                break;
            }
            let asked_at = Instant::now();
            match st.read(&mut chunk[..want]) {
                Ok(0) => {
                    let mut s = shared.state.lock();
                    if let Some(i) = Shared::index_of(&s, start) {
                        s.segments[i].status = Status::Done { eof: true };
                        end = s.segments[i].end;
                    }
                    if end != u64::MAX {
                        // Shorter than planned: the file shrank.
                        s.eof_at = Some(at);
                    }
                    s.next_start = s.next_start.max(at);
                    shared.changed.notify_all();
                    // This stream has ended; nothing is at its position.
                    stream = None;
                    break;
                }
                Ok(n) => {
                    let mut s = shared.state.lock();
                    if s.stop {
                        break;
                    }
                    let Some(i) = Shared::index_of(&s, start) else {
                        break;
                    };
                    if first_byte.is_none() {
                        first_byte = Some(Instant::now());
                        if reopened {
                            s.reopen = began.elapsed();
                        }
                    }
                    // Split while this read was under way: the bytes past
                    // the new end are the new segment's.
                    end = s.segments[i].end;
                    let keep = n.min(end.saturating_sub(at) as usize);
                    s.segments[i].data.extend_from_slice(&chunk[..keep]);
                    at += keep as u64;
                    let held: u64 = s.segments.iter().map(|g| g.data.len() as u64).sum();
                    source.stats.peak_bytes.fetch_max(held, Ordering::Relaxed);
                    account(shared, &mut s, n, asked_at, newest);
                    newest = false;
                    shared.changed.notify_all();
                }
                Err(e) if extra => {
                    // The store resumed it already if a session was free
                    // then; the primary (which may wait for one) or another
                    // stream goes on from the break.
                    stream = None;
                    fail_segment(shared, start, e, extra);
                    break;
                }
                Err(e) => {
                    // The store resumed a broken transfer already (the FTPS
                    // store does, once): this is what a single stream would
                    // give the reader too, and trying again would make a
                    // stalled link fail the reader later than one stream.
                    stream = None;
                    let mut s = shared.state.lock();
                    if let Some(i) = Shared::index_of(&s, start) {
                        s.segments[i].status = Status::Failed(e);
                    }
                    shared.changed.notify_all();
                    break;
                }
            }
        }
        if shared.state.lock().stop {
            break;
        }
    }
    leave(shared, &mut shared.state.lock(), extra, newest);
}

/// A worker goes (under the state lock): it gives back its extra stream,
/// and says so, since a worker leaving may leave work the others (and the
/// reader, which checks that one is left) must see.
fn leave(shared: &Shared, s: &mut State, extra: bool, starting: bool) {
    s.running -= 1;
    if starting {
        s.starting = s.starting.saturating_sub(1);
    }
    if extra {
        s.extra_running -= 1;
        shared.source.budget.give_back();
    }
    shared.changed.notify_all();
}

/// No session was free for an extra stream's segment: the segment goes back
/// to the queue as it was (nothing failed), and the stream leaves (a busy
/// pool is no place for more streams).
fn no_session(shared: &Shared, start: u64) {
    let mut s = shared.state.lock();
    log::debug!("segment at {start}: no free session for an extra stream; it leaves");
    if s.target > 1 {
        s.target -= 1;
    }
    s.settled = true;
    if let Some(i) = Shared::index_of(&s, start) {
        s.segments[i].status = Status::Queued;
    }
    shared.changed.notify_all();
}

/// A segment's stream did not open: it goes back to the queue, or, after
/// `ATTEMPTS` failures, gives the reader the error. A refused open
/// (`Unavailable`: 421, 425, no session) also sends one extra stream away.
fn fail_segment(shared: &Shared, start: u64, err: store::Error, extra: bool) {
    let mut s = shared.state.lock();
    shared.source.stats.retried.fetch_add(1, Ordering::Relaxed);
    log::info!(
        "segment at {start} of a segmented read failed ({err}); {}",
        if extra {
            "another stream fetches it"
        } else {
            "fetching it again"
        }
    );
    if err.kind == ErrorKind::Unavailable && s.target > 1 {
        shared.source.budget.refused();
        s.target -= 1;
        s.settled = true;
    }
    // An extra stream refused a session failed, not the segment: the
    // extra streams start at once, and three refusals of the first queued
    // segment would otherwise give the reader the error.
    let refused_stream = extra && err.kind == ErrorKind::Unavailable;
    if let Some(i) = Shared::index_of(&s, start) {
        let segment = &mut s.segments[i];
        if !refused_stream {
            segment.failures += 1;
        }
        segment.status = if segment.failures >= ATTEMPTS {
            Status::Failed(err)
        } else {
            Status::Queued
        };
    }
    shared.changed.notify_all();
}
