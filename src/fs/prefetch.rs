//! Lists subdirectories ahead of a program that walks a tree (`ls -R`,
//! `find`, `du`, `rsync`): when a directory is read, those of its
//! subdirectories not cached yet are listed in the background, a few at a
//! time, so that over a slow link the walk finds most listings ready instead
//! of waiting several round trips for each. Still one listing per directory:
//! the program's own request for a directory being listed waits for it
//! (`Lister`), and a cached one is not listed again.
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::lister::Lister;
use crate::store::path::join;

/// Subdirectories queued per directory read, and at most in the queue: a
/// directory with thousands of subdirectories is not listed whole because
/// someone looked into it.
const PER_DIRECTORY: usize = 64;
const QUEUE_LIMIT: usize = 1024;
/// A worker with nothing to do for this long ends.
const IDLE_EXIT: Duration = Duration::from_secs(2);

pub(super) struct Prefetcher {
    lister: Arc<Lister>,
    workers: usize,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Vec<u8>>,
    queued: HashSet<Vec<u8>>,
    running: usize,
}

impl Prefetcher {
    /// `workers`: listings run at once (each holds a server session).
    pub(super) fn new(lister: Arc<Lister>, workers: usize) -> Arc<Prefetcher> {
        Arc::new(Prefetcher {
            lister,
            workers,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        })
    }

    /// Queues the subdirectories of `dir` (from its listing) that are not
    /// cached, ahead of the directories queued before: a walk goes deep
    /// first (`ls -R`, `find`), so what it just found comes next.
    pub(super) fn ahead(self: &Arc<Self>, dir: &[u8], subdirs: impl Iterator<Item = Vec<u8>>) {
        let fresh: Vec<Vec<u8>> = subdirs
            .take(PER_DIRECTORY)
            .map(|name| join(dir, &name).into_bytes())
            .filter(|path| !self.lister.is_cached(path))
            .collect();
        if fresh.is_empty() {
            return;
        }
        let mut state = self.state.lock();
        for path in fresh.into_iter().rev() {
            if !state.queued.insert(path.clone()) {
                continue;
            }
            state.queue.push_front(path);
            if state.queue.len() > QUEUE_LIMIT {
                if let Some(dropped) = state.queue.pop_back() {
                    state.queued.remove(&dropped);
                }
            }
        }
        while state.running < self.workers.min(state.queue.len()) {
            let me = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("ftpsfs-prefetch".into())
                .spawn(move || me.work());
            match spawned {
                Ok(_) => state.running += 1,
                Err(e) => {
                    log::debug!("no thread to list ahead: {e}");
                    break;
                }
            }
        }
        self.wake.notify_all();
    }

    fn work(&self) {
        loop {
            let dir = {
                let mut state = self.state.lock();
                loop {
                    if let Some(dir) = state.queue.pop_front() {
                        state.queued.remove(&dir);
                        break dir;
                    }
                    if self.wake.wait_for(&mut state, IDLE_EXIT).timed_out()
                        && state.queue.is_empty()
                    {
                        state.running -= 1;
                        return;
                    }
                }
            };
            self.lister.prefetch(&dir);
        }
    }
}
