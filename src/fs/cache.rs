//! What the core knows about the server's tree, so that `ls -lR` of an
//! unchanged tree sends nothing to the server.
//!
//! - Directory listings, fresh for the directory TTL: a listing answers
//!   `lookup` for every name in the directory, present or absent.
//! - Single entries (from `stat`, or changes made through the mount), fresh
//!   for the attribute TTL, negative ones included.
//! - Exact modification times, remembered for the life of the mount. A LIST
//!   server gives times to the minute (to the day for old files); an exact
//!   time learned from MDTM, or set through the mount (`touch -d`, `cp -p`,
//!   `rsync -a`), is kept with the file's size and used for every later
//!   listing that agrees with it (same size, listed time within the listing's
//!   precision of it). So a second `rsync -a` sees the nanoseconds it set
//!   without a single MDTM.
//!
//! Local changes are written here at once. A listing or stat that started
//! before a local change to the same directory is not cached, so a slow
//! listing cannot bring back a name that was just removed.
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;
use parking_lot::Mutex;

use crate::store::path::{join, split};
use crate::store::Metadata;

const ENTRIES: usize = 200_000;
const LISTINGS: usize = 20_000;
const EXACT_TIMES: usize = 500_000;
const TOUCHED: usize = 8192;

/// Where a cached answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A listing read for `readdir` (`ls -l` will look up every name in it).
    Scan,
    /// A listing read to answer lookups.
    Listing,
    /// One entry: a stat, an exact time, a change made through the mount.
    Single,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    Present(Metadata, Source),
    Absent,
    /// Not known, or no longer fresh.
    Unknown,
}

struct Entry {
    meta: Option<Metadata>,
    at: Instant,
}

struct Listing {
    children: BTreeMap<Vec<u8>, Metadata>,
    at: Instant,
    scan: bool,
}

struct Inner {
    entries: LruCache<Vec<u8>, Entry>,
    listings: LruCache<Vec<u8>, Listing>,
    exact: LruCache<Vec<u8>, (u64, SystemTime)>,
    touched: LruCache<Vec<u8>, Instant>,
    misses: LruCache<Vec<u8>, (u32, Instant)>,
}

pub struct Cache {
    attr_ttl: Duration,
    dir_ttl: Duration,
    inner: Mutex<Inner>,
    /// Answers `get` gave from the cache, and those it could not.
    hits: AtomicU64,
    misses: AtomicU64,
    /// Answers come from expired entries: the server cannot be reached.
    serving_stale: AtomicBool,
    /// When a lookup or listing last failed to reach the server.
    unreachable_at: Mutex<Option<Instant>>,
}

/// While the server is unreachable, how often a lookup or listing tries it
/// again instead of answering from the cache at once.
const OFFLINE_RETRY: Duration = Duration::from_secs(5);

/// How much the cache holds and how often it answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUsage {
    pub entries: usize,
    pub listings: usize,
    pub hits: u64,
    pub misses: u64,
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

fn under(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

/// Whether an exact time `exact` can be the one a listing shows as `listed`.
fn agrees(listed: SystemTime, listed_exact: bool, exact: SystemTime) -> bool {
    let Ok(ahead) = exact.duration_since(listed) else {
        return false;
    };
    if listed_exact {
        return ahead < Duration::from_secs(1);
    }
    let day = listed
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() % 86_400 == 0)
        .unwrap_or(false);
    ahead < Duration::from_secs(60) || (day && ahead < Duration::from_secs(86_400))
}

impl Inner {
    fn refine(&mut self, path: &[u8], meta: &mut Metadata) {
        let (Some(listed), Some(&(size, exact))) = (meta.mtime, self.exact.get(path)) else {
            return;
        };
        if size == meta.size && agrees(listed, meta.mtime_exact, exact) {
            meta.mtime = Some(exact);
            meta.mtime_exact = true;
        }
    }

    fn changed_since(&mut self, path: &[u8], started: Instant) -> bool {
        matches!(self.touched.get(path), Some(&t) if t >= started)
    }

    fn touch(&mut self, path: &[u8]) {
        let now = Instant::now();
        self.touched.put(path.to_vec(), now);
        self.touched.put(split(path).0.to_vec(), now);
    }

    fn set(&mut self, path: &[u8], meta: Option<Metadata>) {
        if !path.is_empty() {
            let (parent, name) = split(path);
            if let Some(listing) = self.listings.get_mut(parent) {
                match &meta {
                    Some(m) => {
                        listing.children.insert(name.to_vec(), m.clone());
                    }
                    None => {
                        listing.children.remove(name);
                    }
                }
            }
        }
        let at = Instant::now();
        self.entries.put(path.to_vec(), Entry { meta, at });
    }

    fn drop_under(&mut self, dir: &[u8]) {
        self.entries.retain(|k, _| !under(k, dir));
        self.listings.retain(|k, _| !under(k, dir));
        self.exact.retain(|k, _| !under(k, dir));
    }
}

impl Cache {
    pub fn new(attr_ttl: Duration, dir_ttl: Duration) -> Cache {
        Cache {
            attr_ttl,
            dir_ttl,
            inner: Mutex::new(Inner {
                entries: LruCache::new(cap(ENTRIES)),
                listings: LruCache::new(cap(LISTINGS)),
                exact: LruCache::new(cap(EXACT_TIMES)),
                touched: LruCache::new(cap(TOUCHED)),
                misses: LruCache::new(cap(TOUCHED)),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            serving_stale: AtomicBool::new(false),
            unreachable_at: Mutex::new(None),
        }
    }

    pub fn usage(&self) -> CacheUsage {
        let inner = self.inner.lock();
        CacheUsage {
            entries: inner.entries.len(),
            listings: inner.listings.len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Forgets everything known under `path` (all of it for the root), and
    /// `path`'s entry in its parent's listing, so the next lookups ask the
    /// server (`ftpsfs refresh`). A listing in flight is not kept either.
    /// Returns how many entries and listings were dropped.
    pub fn forget_under(&self, path: &[u8]) -> usize {
        let mut inner = self.inner.lock();
        let before = inner.entries.len() + inner.listings.len();
        inner.touch(path);
        inner.drop_under(path);
        if !path.is_empty() {
            inner.listings.pop(split(path).0);
        }
        before - (inner.entries.len() + inner.listings.len())
    }

    /// What is known about `path`: its parent's fresh listing first, then a
    /// fresh single entry.
    pub fn get(&self, path: &[u8]) -> Cached {
        let answer = self.lookup(path);
        let counter = match answer {
            Cached::Unknown => &self.misses,
            _ => &self.hits,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        answer
    }

    fn lookup(&self, path: &[u8]) -> Cached {
        let mut inner = self.inner.lock();
        if !path.is_empty() {
            let (parent, name) = split(path);
            if let Some(listing) = inner.listings.get(parent) {
                if listing.at.elapsed() < self.dir_ttl {
                    let source = if listing.scan {
                        Source::Scan
                    } else {
                        Source::Listing
                    };
                    return match listing.children.get(name) {
                        Some(meta) => Cached::Present(meta.clone(), source),
                        None => Cached::Absent,
                    };
                }
            }
        }
        match inner.entries.get(path) {
            Some(e) if e.at.elapsed() < self.attr_ttl => match &e.meta {
                Some(meta) => Cached::Present(meta.clone(), Source::Single),
                None => Cached::Absent,
            },
            _ => Cached::Unknown,
        }
    }

    /// The fresh listing of `dir`, sorted by name, for a readdir: lookups in
    /// it now count as part of a scan.
    pub fn listing(&self, dir: &[u8]) -> Option<Vec<(Vec<u8>, Metadata)>> {
        self.fresh_listing(dir, true)
    }

    /// The fresh listing of `dir`, sorted by name, without marking it read
    /// for a readdir.
    pub fn listing_unscanned(&self, dir: &[u8]) -> Option<Vec<(Vec<u8>, Metadata)>> {
        self.fresh_listing(dir, false)
    }

    fn fresh_listing(&self, dir: &[u8], scan: bool) -> Option<Vec<(Vec<u8>, Metadata)>> {
        let mut inner = self.inner.lock();
        let listing = inner.listings.get_mut(dir)?;
        if listing.at.elapsed() >= self.dir_ttl {
            return None;
        }
        listing.scan |= scan;
        Some(
            listing
                .children
                .iter()
                .map(|(n, m)| (n.clone(), m.clone()))
                .collect(),
        )
    }

    /// What was last known of `path`, however old: for answering while the
    /// server cannot be reached (see `offline`).
    pub fn stale(&self, path: &[u8]) -> Option<Metadata> {
        let mut inner = self.inner.lock();
        let mut meta = None;
        if !path.is_empty() {
            let (parent, name) = split(path);
            meta = inner
                .listings
                .get(parent)
                .and_then(|l| l.children.get(name).cloned());
        }
        let mut meta = meta.or_else(|| inner.entries.get(path).and_then(|e| e.meta.clone()))?;
        // Exact times learned since (MDTM at an open) apply, as to a listing.
        inner.refine(path, &mut meta);
        Some(meta)
    }

    /// The last listing of `dir`, however old (see `stale`).
    pub fn stale_listing(&self, dir: &[u8]) -> Option<Vec<(Vec<u8>, Metadata)>> {
        let mut inner = self.inner.lock();
        let children: Vec<(Vec<u8>, Metadata)> = inner
            .listings
            .get(dir)?
            .children
            .iter()
            .map(|(n, m)| (n.clone(), m.clone()))
            .collect();
        Some(
            children
                .into_iter()
                .map(|(name, mut meta)| {
                    inner.refine(&join(dir, &name), &mut meta);
                    (name, meta)
                })
                .collect(),
        )
    }

    /// Records whether the server could be reached just now; true when
    /// that changed (to log it once, not at every lookup).
    pub fn offline(&self, offline: bool) -> bool {
        *self.unreachable_at.lock() = offline.then(Instant::now);
        self.serving_stale.swap(offline, Ordering::Relaxed) != offline
    }

    /// The server could not be reached within the last `OFFLINE_RETRY`:
    /// lookups and listings that have a cached answer take it without
    /// trying again, so one timeout is paid per `OFFLINE_RETRY`, not one
    /// per lookup (an `ls -l` would otherwise wait a timeout per name).
    pub fn recently_unreachable(&self) -> bool {
        self.unreachable_at
            .lock()
            .is_some_and(|at| at.elapsed() < OFFLINE_RETRY)
    }

    /// Whether the fresh listing of `dir` has entries (None: not known).
    pub fn has_children(&self, dir: &[u8]) -> Option<bool> {
        let mut inner = self.inner.lock();
        let listing = inner.listings.get(dir)?;
        (listing.at.elapsed() < self.dir_ttl).then_some(!listing.children.is_empty())
    }

    /// Stores a listing fetched from the server (unless the directory
    /// changed locally since `started`) and returns it, exact times applied.
    pub fn fill_listing(
        &self,
        dir: &[u8],
        entries: Vec<(Vec<u8>, Metadata)>,
        started: Instant,
        scan: bool,
    ) -> Vec<(Vec<u8>, Metadata)> {
        let mut inner = self.inner.lock();
        let mut children = BTreeMap::new();
        for (name, mut meta) in entries {
            inner.refine(&join(dir, &name), &mut meta);
            children.insert(name, meta);
        }
        let out = children
            .iter()
            .map(|(n, m)| (n.clone(), m.clone()))
            .collect();
        if !inner.changed_since(dir, started) {
            inner.listings.put(
                dir.to_vec(),
                Listing {
                    children,
                    at: Instant::now(),
                    scan,
                },
            );
            inner.misses.pop(dir);
        }
        out
    }

    /// Stores what a stat found (None: absent), unless the path changed
    /// locally since `started`; returns it with an exact time applied.
    pub fn fill(&self, path: &[u8], meta: Option<Metadata>, started: Instant) -> Option<Metadata> {
        let mut inner = self.inner.lock();
        let meta = meta.map(|mut m| {
            inner.refine(path, &mut m);
            m
        });
        let parent = split(path).0;
        if !inner.changed_since(path, started) && !inner.changed_since(parent, started) {
            let at = Instant::now();
            inner.entries.put(
                path.to_vec(),
                Entry {
                    meta: meta.clone(),
                    at,
                },
            );
        }
        meta
    }

    /// Counts a lookup that the cache could not answer in `dir`; returns how
    /// many there were within the directory TTL.
    pub fn note_miss(&self, dir: &[u8]) -> u32 {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        let count = match inner.misses.get(dir) {
            Some(&(n, since)) if since.elapsed() < self.dir_ttl => n + 1,
            _ => 1,
        };
        let since = match inner.misses.get(dir) {
            Some(&(_, since)) if count > 1 => since,
            _ => now,
        };
        inner.misses.put(dir.to_vec(), (count, since));
        count
    }

    /// A change made through the mount: `path` now is `meta`.
    pub fn update(&self, path: &[u8], meta: Metadata) {
        let mut inner = self.inner.lock();
        inner.touch(path);
        inner.set(path, Some(meta));
    }

    /// A change made through the mount: `path` is gone (with all below it).
    pub fn remove(&self, path: &[u8]) {
        let mut inner = self.inner.lock();
        inner.touch(path);
        if !path.is_empty() {
            inner.drop_under(path);
        }
        inner.set(path, None);
    }

    /// Something changed that the core cannot describe (a failed upload may
    /// have left anything): ask the server next time.
    pub fn invalidate(&self, path: &[u8]) {
        let mut inner = self.inner.lock();
        inner.touch(path);
        inner.entries.pop(path);
        inner.exact.pop(path);
        inner.listings.pop(split(path).0);
    }

    /// A directory now known to be empty (just made through the mount).
    pub fn set_empty_dir(&self, dir: &[u8]) {
        let mut inner = self.inner.lock();
        inner.listings.put(
            dir.to_vec(),
            Listing {
                children: BTreeMap::new(),
                at: Instant::now(),
                scan: false,
            },
        );
    }

    /// A name in `dir` was added or removed through the mount: the
    /// directory's modification time shows `now`, as on a local disk, until
    /// the server's listing or stat of it says otherwise (its cached
    /// entries expire). Not cached: the server's answer comes next anyway.
    pub fn dir_changed(&self, dir: &[u8], now: SystemTime) {
        let mut inner = self.inner.lock();
        let newer = |meta: &mut Metadata| {
            meta.mtime = Some(now);
            meta.mtime_exact = true;
        };
        if let Some(Entry { meta: Some(m), .. }) = inner.entries.get_mut(dir) {
            newer(m);
        }
        if !dir.is_empty() {
            let (parent, name) = split(dir);
            if let Some(m) = inner
                .listings
                .get_mut(parent)
                .and_then(|l| l.children.get_mut(name))
            {
                newer(m);
            }
        }
    }

    /// `from` was renamed to `to` through the mount.
    pub fn rename(&self, from: &[u8], to: &[u8], meta: Metadata) {
        let mut inner = self.inner.lock();
        inner.touch(from);
        inner.touch(to);
        let exact = inner.exact.pop(from);
        inner.drop_under(from);
        inner.drop_under(to);
        inner.set(from, None);
        inner.set(to, Some(meta));
        if let Some(exact) = exact {
            inner.exact.put(to.to_vec(), exact);
        }
    }

    /// The exact modification time of a file of `size` bytes at `path`
    /// (learned from the server or set through the mount).
    pub fn set_exact_mtime(&self, path: &[u8], size: u64, mtime: SystemTime) {
        let mut inner = self.inner.lock();
        inner.exact.put(path.to_vec(), (size, mtime));
        let (parent, name) = split(path);
        if let Some(listing) = inner.listings.get_mut(parent) {
            if let Some(m) = listing.children.get_mut(name) {
                m.mtime = Some(mtime);
                m.mtime_exact = true;
            }
        }
        if let Some(e) = inner.entries.get_mut(path) {
            if let Some(m) = &mut e.meta {
                m.mtime = Some(mtime);
                m.mtime_exact = true;
            }
        }
    }

    /// The file's content changed: a remembered exact time no longer holds.
    pub fn forget_exact_mtime(&self, path: &[u8]) {
        self.inner.lock().exact.pop(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FileKind;

    fn file(size: u64, mtime: SystemTime, exact: bool) -> Metadata {
        Metadata {
            kind: FileKind::File,
            size,
            mtime: Some(mtime),
            mtime_exact: exact,
            mode: None,
            symlink_target: None,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn ttl(secs: u64) -> Cache {
        Cache::new(Duration::from_secs(secs), Duration::from_secs(secs))
    }

    #[test]
    fn a_listing_answers_present_and_absent_names() {
        let c = ttl(60);
        assert_eq!(c.get(b"d/a"), Cached::Unknown);
        let started = Instant::now();
        c.fill_listing(
            b"d",
            vec![(b"a".to_vec(), file(1, at(0), true))],
            started,
            true,
        );
        assert!(matches!(c.get(b"d/a"), Cached::Present(m, Source::Scan) if m.size == 1));
        assert_eq!(c.get(b"d/b"), Cached::Absent);
        assert_eq!(c.get(b"e/a"), Cached::Unknown);
    }

    #[test]
    fn refresh_forgets_what_is_under_a_path_and_nothing_else() {
        let c = ttl(60);
        let started = Instant::now();
        let listing = |names: &[&[u8]]| {
            names
                .iter()
                .map(|n| (n.to_vec(), file(1, at(0), true)))
                .collect::<Vec<_>>()
        };
        c.fill_listing(b"", listing(&[b"d", b"e"]), started, true);
        c.fill_listing(b"d", listing(&[b"a"]), started, true);
        c.fill_listing(b"d/sub", listing(&[b"x"]), started, true);
        c.fill_listing(b"e", listing(&[b"b"]), started, true);
        c.fill(b"dd", Some(file(2, at(0), true)), started);
        assert_eq!(
            c.forget_under(b"d"),
            3,
            "d's and d/sub's listings, and the root's"
        );
        assert_eq!(c.get(b"d/a"), Cached::Unknown);
        assert_eq!(c.get(b"d/sub/x"), Cached::Unknown);
        assert_eq!(c.get(b"d"), Cached::Unknown);
        assert!(matches!(c.get(b"e/b"), Cached::Present(..)));
        assert!(matches!(c.get(b"dd"), Cached::Present(..)), "not under d/");
        assert!(c.forget_under(b"") >= 2);
        assert_eq!(c.get(b"e/b"), Cached::Unknown);
        assert_eq!(c.usage().entries + c.usage().listings, 0);
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let c = ttl(60);
        c.get(b"a");
        c.fill(b"a", Some(file(1, at(0), true)), Instant::now());
        c.get(b"a");
        c.get(b"a");
        let usage = c.usage();
        assert_eq!((usage.hits, usage.misses), (2, 1));
    }

    #[test]
    fn entries_expire() {
        let c = Cache::new(Duration::ZERO, Duration::ZERO);
        c.fill(b"a", Some(file(1, at(0), true)), Instant::now());
        assert_eq!(c.get(b"a"), Cached::Unknown);
    }

    #[test]
    fn a_listing_older_than_a_local_change_is_not_kept() {
        let c = ttl(60);
        let started = Instant::now();
        c.remove(b"d/a");
        let out = c.fill_listing(
            b"d",
            vec![(b"a".to_vec(), file(1, at(0), true))],
            started,
            true,
        );
        assert_eq!(out.len(), 1, "the caller still gets what the server said");
        assert_eq!(c.get(b"d/a"), Cached::Absent, "the local removal wins");
    }

    #[test]
    fn exact_times_refine_minute_listings_that_agree() {
        let c = ttl(60);
        let exact = at(120) + Duration::from_nanos(42_500_000_017);
        c.set_exact_mtime(b"f", 5, exact);
        let out = c.fill_listing(
            b"",
            vec![
                (b"f".to_vec(), file(5, at(120), false)),
                (b"g".to_vec(), file(5, at(120), false)),
            ],
            Instant::now(),
            true,
        );
        assert_eq!(out[0].1.mtime, Some(exact));
        assert!(out[0].1.mtime_exact);
        assert!(!out[1].1.mtime_exact);
        // A different size or a later minute means the file changed.
        c.fill_listing(
            b"",
            vec![(b"f".to_vec(), file(6, at(120), false))],
            Instant::now(),
            true,
        );
        assert!(matches!(c.get(b"f"), Cached::Present(m, _) if !m.mtime_exact));
        c.fill_listing(
            b"",
            vec![(b"f".to_vec(), file(5, at(180), false))],
            Instant::now(),
            true,
        );
        assert!(matches!(c.get(b"f"), Cached::Present(m, _) if !m.mtime_exact));
    }

    #[test]
    fn exact_times_keep_nanoseconds_over_second_listings() {
        let c = ttl(60);
        let exact = at(1000) + Duration::from_nanos(123);
        c.set_exact_mtime(b"f", 1, exact);
        let m = c.fill(b"f", Some(file(1, at(1000), true)), Instant::now());
        assert_eq!(m.and_then(|m| m.mtime), Some(exact));
    }

    #[test]
    fn rename_moves_entries_and_drops_the_old_subtree() {
        let c = ttl(60);
        c.fill_listing(
            b"",
            vec![(b"d".to_vec(), file(0, at(0), true))],
            Instant::now(),
            true,
        );
        c.fill_listing(
            b"d",
            vec![(b"x".to_vec(), file(3, at(0), true))],
            Instant::now(),
            true,
        );
        c.rename(b"d", b"e", file(0, at(0), true));
        assert_eq!(c.get(b"d"), Cached::Absent);
        assert!(matches!(c.get(b"e"), Cached::Present(..)));
        assert_eq!(c.get(b"d/x"), Cached::Unknown);
    }

    #[test]
    fn misses_are_counted_per_directory() {
        let c = ttl(60);
        assert_eq!(c.note_miss(b"d"), 1);
        assert_eq!(c.note_miss(b"d"), 2);
        assert_eq!(c.note_miss(b"e"), 1);
    }
}
