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
//! of `segment_size` bytes (near the end, the rest shared out evenly over
//! the streams, at least `TAIL_MIN` each, so they finish together; the last
//! one open-ended, read to the end of the file, so a file that grew is read
//! whole), and worker threads fetch them:
//! - worker 0 keeps the primary stream, which goes on without a reopen as
//!   long as its next segment is the one its stream is at (always, when it
//!   is the only worker: one stream costs nothing more than before);
//! - each extra worker opens `open_read(path, segment start)` (REST + RETR
//!   on another pooled session), reads exactly to the segment's end and
//!   drops the stream (the FTPS store ABORs, whose reply orders it handles),
//!   then takes the next segment.
//!
//! `read` hands out the segments' bytes in file order; a segment is freed
//! once handed out.
//!
//! Memory bound: at most one segment per stream exists at once (being
//! fetched, or fetched and waiting for the reader), each at most
//! `segment_size` bytes (the open-ended last one too, unless the file grew
//! while read), so one reader holds at most
//! `(read_streams + 1) × segment_size` (defaults: 3 extra streams, 8 MiB:
//! 32 MiB) besides the read-ahead buffer. A stream that finished its
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
//! Adaptation: it starts with one extra stream. Each time streams are
//! added, the aggregate rate (bytes fetched by all workers) is measured over
//! `PROBE` from the moment all new streams gave their first byte, and
//! compared with the rate before them: while the rate grows by more than
//! `GAIN`, as many streams again are added (1, 2, 4...: on a long link each
//! step costs a reopen and a probe at the lower rate); otherwise adding
//! stops, and if the rate dropped one stream goes (a fast LAN stays at one
//! stream after one probe). A segment open
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
/// The growth of the aggregate rate that makes a stream worth it.
const GAIN: f64 = 1.10;
/// A rate below this share of the one before the newest stream was added
/// sends that stream away again.
const LOSS: f64 = 0.90;
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
                fetched: 0,
                rate_before,
                probe: None,
                settled: false,
                tail: None,
                starting: 0,
                spare: Vec::new(),
            }),
            changed: Condvar::new(),
            segment_size: self.settings.segment_size.max(CHUNK as u64),
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
        add_stream(&shared, &mut shared.state.lock(), true);
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
    /// Bytes fetched by all workers.
    fetched: u64,
    /// The aggregate rate before the newest stream was added.
    rate_before: f64,
    /// The measurement under way: since when, from how many bytes fetched.
    probe: Option<(Instant, u64)>,
    /// No more streams are added.
    settled: bool,
    /// The length of the segments the end of the file is shared out in.
    tail: Option<u64>,
    /// Streams added that have not given a byte yet: the probe waits for
    /// them all.
    starting: usize,
    /// Buffers of freed segments, for the next ones.
    spare: Vec<Vec<u8>>,
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
            return None;
        }
        if s.segments.len() >= s.target {
            // Full: wait for the reader.
            return Some(None);
        }
        let start = s.next_start;
        // Near the end, the rest is shared out evenly over the streams, so
        // that they finish together instead of one fetching a last full
        // segment alone.
        let rest = s.size.saturating_sub(start);
        if s.tail.is_none() && rest < s.target as u64 * self.segment_size {
            // Fixed once, or each new segment would be smaller than the last.
            s.tail = Some(rest.div_ceil(s.target as u64).max(TAIL_MIN));
        }
        let len = s.tail.unwrap_or(self.segment_size).min(self.segment_size);
        let end = if rest <= len { u64::MAX } else { start + len };
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

/// Counts `n` fetched bytes and, when a probe is due, decides whether the
/// newest stream helped (under the state lock).
fn account(shared: &Arc<Shared>, s: &mut State, n: usize, newest: bool) {
    s.fetched += n as u64;
    if newest {
        s.starting = s.starting.saturating_sub(1);
    }
    if s.settled {
        return;
    }
    let Some((since, from)) = s.probe else {
        // The probe starts once the newest streams all give bytes: their
        // opens are not what is measured.
        if s.starting == 0 {
            s.probe = Some((Instant::now(), s.fetched));
        }
        return;
    };
    let elapsed = since.elapsed();
    if elapsed < PROBE {
        return;
    }
    let rate = (s.fetched - from) as f64 / elapsed.as_secs_f64();
    log::debug!(
        "segmented read: {} streams fetch {:.1} MB/s (before: {:.1} MB/s), {:.3} s after engaging",
        s.target,
        rate / 1e6,
        s.rate_before / 1e6,
        shared.engaged_at.elapsed().as_secs_f64()
    );
    if rate > s.rate_before * GAIN {
        s.rate_before = rate;
        // As many again (1, 2, 4...): each probe costs its time at the
        // lower rate, and a long link pays a reopen per stream added.
        let more = s.target.min(shared.max_streams.saturating_sub(s.target));
        for _ in 0..more.max(1) {
            add_stream(shared, s, false);
        }
    } else {
        s.settled = true;
        if rate < s.rate_before * LOSS && s.target > 1 {
            // The newest stream made it slower (a link with a total cap, or
            // a CPU already busy): one goes at its next segment.
            s.target -= 1;
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
                if s.stop || (s.running > s.target && s.running > 1) {
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
        if stream.as_ref().map(|st| st.position()) != Some(from) {
            drop(stream.take());
            // An extra stream takes a session only when one is free, unless
            // it is the last worker (then it holds nothing and waits as the
            // primary does).
            let last = shared.state.lock().running == 1;
            let opened = if extra && !last {
                source.store.open_read_now(&source.path, from)
            } else {
                source.store.open_read(&source.path, from).map(Some)
            };
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
        // Fetch to the segment's end.
        let mut at = from;
        loop {
            let want = (end - at).min(CHUNK as u64) as usize;
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
                shared.changed.notify_all();
                break;
            }
            match st.read(&mut chunk[..want]) {
                Ok(0) => {
                    let mut s = shared.state.lock();
                    if let Some(i) = Shared::index_of(&s, start) {
                        s.segments[i].status = Status::Done { eof: true };
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
                    s.segments[i].data.extend_from_slice(&chunk[..n]);
                    at += n as u64;
                    let held: u64 = s.segments.iter().map(|g| g.data.len() as u64).sum();
                    source.stats.peak_bytes.fetch_max(held, Ordering::Relaxed);
                    account(shared, &mut s, n, newest);
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
    if let Some(i) = Shared::index_of(&s, start) {
        let segment = &mut s.segments[i];
        segment.failures += 1;
        segment.status = if segment.failures >= ATTEMPTS {
            Status::Failed(err)
        } else {
            Status::Queued
        };
    }
    shared.changed.notify_all();
}
