//! A download kept open while a program reads a file in order, with a thread
//! reading ahead into a bounded buffer so the next read finds its bytes
//! already here instead of waiting on the network.
//!
//! The buffer also keeps a little of what was already read: the kernel sends
//! its read-ahead requests on several threads, and one that arrives a little
//! late (behind the newest) is served from it instead of reopening the
//! download.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use parking_lot::{Condvar, Mutex};

use crate::store::{self, ReadStream};

/// Bytes asked of the stream per read.
const CHUNK: usize = 256 * 1024;
/// The largest read the kernel sends (fuse.rs sets max_readahead and
/// max_read to 1 MiB).
const MAX_READ: usize = 1024 * 1024;

struct Buffer {
    /// File offset of `data[0]`.
    start: u64,
    data: VecDeque<u8>,
    /// The end of what the reader has asked for; the thread fills up to
    /// `wanted + window`.
    wanted: u64,
    eof: bool,
    error: Option<store::Error>,
    stop: bool,
}

impl Buffer {
    fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }
}

struct Shared {
    buffer: Mutex<Buffer>,
    changed: Condvar,
}

pub struct ReadAhead {
    shared: Arc<Shared>,
    window: u64,
    history: u64,
    /// Where the reader has asked up to, for a stream that wants to know
    /// whether it is read in order (`segmented`).
    progress: Option<Arc<AtomicU64>>,
}

impl ReadAhead {
    /// Starts reading ahead from `stream` (positioned where the first read
    /// wants it), keeping up to `window` bytes ahead of the reader; keeps
    /// `progress` (when given) at the end of the newest read.
    pub fn start(
        stream: Box<dyn ReadStream>,
        window: usize,
        progress: Option<Arc<AtomicU64>>,
    ) -> std::io::Result<ReadAhead> {
        let window = window.max(CHUNK) as u64;
        let history = (window / 4).max(CHUNK as u64);
        // All the buffer will hold: history, the window ahead of the newest
        // read, that read, and one chunk. Reserved once, because a VecDeque
        // that grows doubles — to 16 MiB per reader for an 8 MiB window.
        let capacity = (history + window) as usize + MAX_READ + CHUNK;
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer {
                start: stream.position(),
                data: VecDeque::with_capacity(capacity),
                wanted: stream.position(),
                eof: false,
                error: None,
                stop: false,
            }),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        thread::Builder::new()
            .name("ftpsfs-read".into())
            .spawn(move || fill(stream, &worker, window))?;
        Ok(ReadAhead {
            shared,
            window,
            history,
            progress,
        })
    }

    /// Whether a read at `offset` can be served by this download: it is in
    /// the buffer, or not far ahead of it.
    pub fn covers(&self, offset: u64) -> bool {
        let b = self.shared.buffer.lock();
        b.error.is_none() && offset >= b.start && offset <= b.end() + self.window
    }

    /// Up to `size` bytes at `offset` (fewer only at the end of the file).
    /// Call only when `covers(offset)`.
    pub fn read(&self, offset: u64, size: usize) -> store::Result<Vec<u8>> {
        let want_end = offset + size as u64;
        if let Some(progress) = &self.progress {
            progress.fetch_max(want_end, Ordering::Relaxed);
        }
        let mut b = self.shared.buffer.lock();
        if want_end > b.wanted {
            b.wanted = want_end;
            self.shared.changed.notify_all();
        }
        while b.end() < want_end && !b.eof && b.error.is_none() {
            self.shared.changed.wait(&mut b);
        }
        if b.end() < want_end {
            if let Some(e) = &b.error {
                return Err(e.clone());
            }
        }
        let from = offset.saturating_sub(b.start) as usize;
        let to = (want_end.min(b.end()).saturating_sub(b.start)) as usize;
        let out = copy_range(&b.data, from, to);
        // Keep `history` bytes behind this read; drop what is older.
        let keep_from = offset.saturating_sub(self.history);
        if keep_from > b.start {
            let drop = ((keep_from - b.start) as usize).min(b.data.len());
            b.data.drain(..drop);
            b.start += drop as u64;
            self.shared.changed.notify_all();
        }
        Ok(out)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.shared.buffer.lock().stop = true;
        self.shared.changed.notify_all();
    }
}

/// `data[from..to]` as one vector, copied slice by slice.
fn copy_range(data: &VecDeque<u8>, from: usize, to: usize) -> Vec<u8> {
    if from >= to {
        return Vec::new();
    }
    let (a, b) = data.as_slices();
    let mut out = Vec::with_capacity(to - from);
    if from < a.len() {
        out.extend_from_slice(&a[from..to.min(a.len())]);
    }
    if to > a.len() {
        out.extend_from_slice(&b[from.saturating_sub(a.len())..to - a.len()]);
    }
    out
}

fn fill(mut stream: Box<dyn ReadStream>, shared: &Shared, window: u64) {
    let mut chunk = vec![0u8; CHUNK];
    loop {
        {
            let mut b = shared.buffer.lock();
            while !b.stop && b.end() >= b.wanted + window {
                shared.changed.wait(&mut b);
            }
            if b.stop {
                return;
            }
        }
        let result = stream.read(&mut chunk);
        let mut b = shared.buffer.lock();
        match result {
            Ok(0) => b.eof = true,
            Ok(n) => b.data.extend(&chunk[..n]),
            Err(e) => b.error = Some(e),
        }
        let done = b.eof || b.error.is_some() || b.stop;
        shared.changed.notify_all();
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bytes {
        data: Vec<u8>,
        pos: u64,
        fail_at: Option<u64>,
    }

    impl ReadStream for Bytes {
        fn read(&mut self, buf: &mut [u8]) -> store::Result<usize> {
            if Some(self.pos) == self.fail_at {
                return Err(store::Error::new(store::ErrorKind::Unavailable, "dropped"));
            }
            let start = self.pos as usize;
            let mut n = buf
                .len()
                .min(self.data.len().saturating_sub(start))
                .min(1000);
            if let Some(f) = self.fail_at {
                n = n.min((f - self.pos) as usize);
            }
            buf[..n].copy_from_slice(&self.data[start..start + n]);
            self.pos += n as u64;
            Ok(n)
        }
        fn position(&self) -> u64 {
            self.pos
        }
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn sequential_and_slightly_behind_reads() {
        let d = data(3_000_000);
        let stream = Bytes {
            data: d.clone(),
            pos: 100,
            fail_at: None,
        };
        let r = ReadAhead::start(Box::new(stream), 1 << 20, None).unwrap();
        assert!(r.covers(100));
        assert_eq!(r.read(100, 5000).unwrap(), &d[100..5100]);
        assert_eq!(r.read(5100, 1_000_000).unwrap(), &d[5100..1_005_100]);
        // A read a little behind the last one.
        assert!(r.covers(900_000));
        assert_eq!(r.read(900_000, 10).unwrap(), &d[900_000..900_010]);
        assert!(!r.covers(50), "before the buffer");
        // The filler may run up to `wanted + window` (plus one stream read)
        // at any moment, so "too far" must lie beyond that plus the window:
        // 1_005_100 + 2 * 1 MiB + 1000 < 3_500_000.
        assert!(!r.covers(3_500_000), "too far ahead");
        assert_eq!(r.read(2_000_000, 2_000_000).unwrap(), &d[2_000_000..]);
        assert_eq!(r.read(3_000_000, 10).unwrap(), b"");
    }

    #[test]
    fn errors_reach_the_reader() {
        let stream = Bytes {
            data: data(10_000),
            pos: 0,
            fail_at: Some(5000),
        };
        let r = ReadAhead::start(Box::new(stream), 1 << 20, None).unwrap();
        assert_eq!(r.read(0, 4000).unwrap().len(), 4000);
        let err = r.read(4000, 2000).unwrap_err();
        assert_eq!(err.kind, store::ErrorKind::Unavailable);
        assert!(!r.covers(4000));
    }
}
