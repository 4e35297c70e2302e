//! Directory listings fetched from the server, each directory by one request
//! at a time: a request for a directory that is being listed already waits
//! for that listing instead of sending another (a program walking a tree and
//! the prefetcher ahead of it ask for the same directories). Temporary
//! upload files are left out of listings, and removed when left over.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use super::cache::Cache;
use super::{replace, Result};
use crate::store::path::join;
use crate::store::{DirEntry, Metadata, RemoteStore};

pub(super) type Entries = Vec<(Vec<u8>, Metadata)>;

pub(super) struct Lister {
    store: Arc<dyn RemoteStore>,
    cache: Arc<Cache>,
    /// Directories being listed now.
    in_flight: Mutex<HashMap<Vec<u8>, Arc<Flight>>>,
    /// Leftover temporary files this mount tried to delete.
    stale_tried: Mutex<HashSet<Vec<u8>>>,
}

#[derive(Default)]
struct Flight {
    done: Mutex<bool>,
    finished: Condvar,
}

impl Flight {
    fn wait(&self) {
        let mut done = self.done.lock();
        while !*done {
            self.finished.wait(&mut done);
        }
    }
}

/// Ends a listing in flight when dropped, however the listing ended: its
/// waiters must never wait for ever.
struct Landing<'a>(&'a Lister, &'a [u8], Arc<Flight>);

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let Landing(lister, dir, flight) = self;
        lister.in_flight.lock().remove(*dir);
        *flight.done.lock() = true;
        flight.finished.notify_all();
    }
}

impl Lister {
    pub(super) fn new(store: Arc<dyn RemoteStore>, cache: Arc<Cache>) -> Lister {
        Lister {
            store,
            cache,
            in_flight: Mutex::new(HashMap::new()),
            stale_tried: Mutex::new(HashSet::new()),
        }
    }

    /// Lists `dir` on the server and caches it (`scan`: for a readdir). When
    /// it is being listed already, waits for that and uses its result if it
    /// was cached (else lists it again, and a failure is this call's own).
    pub(super) fn fetch(&self, dir: &[u8], scan: bool) -> Result<Entries> {
        let cached = || {
            if scan {
                self.cache.listing(dir)
            } else {
                self.cache.listing_unscanned(dir)
            }
        };
        let mine = {
            let mut in_flight = self.in_flight.lock();
            match in_flight.get(dir) {
                Some(theirs) => Err(Arc::clone(theirs)),
                // Listed by someone else since the caller looked in the cache.
                None if let Some(entries) = cached() => return Ok(entries),
                None => {
                    let mine = Arc::new(Flight::default());
                    in_flight.insert(dir.to_vec(), Arc::clone(&mine));
                    Ok(mine)
                }
            }
        };
        match mine {
            Ok(mine) => {
                let _landing = Landing(self, dir, mine);
                self.list_and_cache(dir, scan)
            }
            Err(theirs) => {
                theirs.wait();
                match cached() {
                    Some(entries) => Ok(entries),
                    None => self.list_and_cache(dir, scan),
                }
            }
        }
    }

    /// Whether a fresh listing of `dir` is cached.
    pub(super) fn is_cached(&self, dir: &[u8]) -> bool {
        self.cache.has_children(dir).is_some()
    }

    /// Lists `dir` for the prefetcher: nothing is sent when it is cached or
    /// being listed already.
    pub(super) fn prefetch(&self, dir: &[u8]) {
        let flight = Arc::new(Flight::default());
        {
            let mut in_flight = self.in_flight.lock();
            if in_flight.contains_key(dir) || self.is_cached(dir) {
                return;
            }
            in_flight.insert(dir.to_vec(), Arc::clone(&flight));
        }
        let _landing = Landing(self, dir, flight);
        if let Err(e) = self.list_and_cache(dir, false) {
            log::debug!("listing ahead of a walk: {e}");
        }
    }

    fn list_and_cache(&self, dir: &[u8], scan: bool) -> Result<Entries> {
        if self.cache.recently_unreachable() {
            if let Some(stale) = self.cache.stale_listing(dir) {
                return Ok(stale);
            }
        }
        let started = Instant::now();
        let listed = match self.store.list(dir) {
            Ok(listed) => listed,
            Err(e) => {
                return match offline_answer(&self.cache, &e, || self.cache.stale_listing(dir)) {
                    Some(stale) => Ok(stale),
                    None => Err(e.into()),
                }
            }
        };
        self.cache.offline(false);
        let (temps, entries): (Vec<_>, Vec<_>) = listed
            .into_iter()
            .partition(|e| replace::is_temp_name(&e.name));
        self.remove_stale_temps(dir, temps);
        let entries = entries.into_iter().map(|e| (e.name, e.meta)).collect();
        Ok(self.cache.fill_listing(dir, entries, started, scan))
    }

    /// Temporary upload files are never shown; those left over by an upload
    /// that was interrupted (see `replace::STALE_TEMP_AGE`) are deleted when
    /// their directory is listed, each tried once.
    fn remove_stale_temps(&self, dir: &[u8], temps: Vec<DirEntry>) {
        let now = SystemTime::now();
        for temp in temps {
            if !replace::is_stale_temp(&temp.name, temp.meta.mtime, now) {
                continue;
            }
            let path = join(dir, &temp.name);
            if !self.stale_tried.lock().insert(path.to_vec()) {
                continue;
            }
            match self.store.delete(&path) {
                Ok(()) => log::info!("removed {path}, left by an interrupted upload"),
                Err(e) => log::warn!("could not remove a leftover temporary file: {e}"),
            }
        }
    }
}

/// While the server cannot be reached (`err` says so), what was last known
/// (`stale`), however old: cached files stay readable offline (their
/// contents from the content cache), and changes made meanwhile by other
/// clients show once the server answers again. The switch is logged once.
pub(super) fn offline_answer<T>(
    cache: &Cache,
    err: &crate::store::Error,
    stale: impl FnOnce() -> Option<T>,
) -> Option<T> {
    if err.kind != crate::store::ErrorKind::Unavailable {
        return None;
    }
    if cache.offline(true) {
        log::warn!("the server cannot be reached ({err}): answering from what was cached");
    }
    stale()
}
