//! The transfers in flight, for `ftpsfs status`: each download or upload
//! holds a `Ticket` for as long as it lives and counts its bytes on it.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Download,
    Upload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub direction: Direction,
    /// Relative to the mounted directory, as the core names it.
    pub path: Vec<u8>,
    /// Where the transfer started in the file (REST), and the bytes moved
    /// since.
    pub offset: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

struct Entry {
    direction: Direction,
    path: Vec<u8>,
    offset: u64,
    started: Instant,
    bytes: Arc<AtomicU64>,
}

#[derive(Default)]
pub struct Transfers {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Entry>>,
}

impl Transfers {
    pub fn start(self: &Arc<Self>, direction: Direction, path: &[u8], offset: u64) -> Ticket {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let bytes = Arc::new(AtomicU64::new(0));
        self.live.lock().insert(
            id,
            Entry {
                direction,
                path: path.to_vec(),
                offset,
                started: Instant::now(),
                bytes: Arc::clone(&bytes),
            },
        );
        Ticket {
            id,
            bytes,
            transfers: Arc::clone(self),
        }
    }

    /// The transfers in flight, oldest first.
    pub fn snapshot(&self) -> Vec<InFlight> {
        let live = self.live.lock();
        let mut ids: Vec<&u64> = live.keys().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| live.get(id))
            .map(|e| InFlight {
                direction: e.direction,
                path: e.path.clone(),
                offset: e.offset,
                bytes: e.bytes.load(Ordering::Relaxed),
                elapsed: e.started.elapsed(),
            })
            .collect()
    }
}

/// One transfer's place in `Transfers`; dropping it ends the transfer there.
pub struct Ticket {
    id: u64,
    bytes: Arc<AtomicU64>,
    transfers: Arc<Transfers>,
}

impl Ticket {
    pub fn count(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.transfers.live.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_is_listed_while_its_ticket_lives() {
        let transfers = Arc::new(Transfers::default());
        let down = transfers.start(Direction::Download, b"a", 0);
        let up = transfers.start(Direction::Upload, b"dir/b", 10);
        down.count(5);
        down.count(7);
        up.count(1);
        let now = transfers.snapshot();
        assert_eq!(now.len(), 2);
        assert_eq!((now[0].direction, now[0].bytes), (Direction::Download, 12));
        assert_eq!((now[1].path.as_slice(), now[1].offset), (&b"dir/b"[..], 10));
        drop(down);
        let now = transfers.snapshot();
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].direction, Direction::Upload);
        drop(up);
        assert!(transfers.snapshot().is_empty());
    }
}
