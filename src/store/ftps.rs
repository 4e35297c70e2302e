//! The FTPS server as a `RemoteStore`, on a pool of control sessions.
//!
//! Reads and uploads hold a pooled session for their whole length (the
//! transfer owns it), so different files move in parallel on different
//! sessions. A download broken by a lost connection resumes with REST at the
//! byte it reached; an upload broken the same way fails, and only `finish`
//! says it is complete.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::ftp::avbl::Available;
use crate::ftp::dialogue::digest::Hashed;
use crate::ftp::dialogue::transfer::Start;
use crate::ftp::features::Features;
use crate::ftp::listing::{Entry, EntryKind};
use crate::ftp::session::{retr_on, retr_range_on, upload_at_on, upload_on};
use crate::ftp::transfer::{Download, Upload};
use crate::ftp::{self, Kind, Pool, PooledSession, Retry};

use super::path::{join, shown, split};
use super::transfers::{Direction, Ticket, Transfers};
use super::{
    Capabilities, DigestAlgorithm, DirEntry, Error, ErrorKind, FileKind, Metadata, ReadStream,
    RemoteStore, Result, StoreAtOffset, UploadStream,
};

mod probe;

pub use probe::ProbeStatus;

/// How often a broken download is reopened at the byte it reached.
const DOWNLOAD_RESUMES: u32 = 3;
/// How often opening a transfer is tried again after a fast transient
/// failure (see `open_transfer`).
const TRANSFER_OPEN_RETRIES: u32 = 3;

pub struct FtpsStore {
    pool: Arc<Pool>,
    /// The mounted directory on the server, without a trailing slash; empty
    /// for the login directory.
    root: Vec<u8>,
    capabilities: Capabilities,
    /// What FEAT said, for choosing commands (SIZE, HASH or XSHA256, RANG).
    features: Features,
    /// Set once the server showed it cannot set modification times (e.g. it
    /// reads `MDTM time path` as a path name).
    set_mtime_refused: AtomicBool,
    /// Set once HASH answered a RANG with the whole file's digest (ProFTPD
    /// 1.3.8): ranges are not asked of HASH again.
    hash_ignores_rang: AtomicBool,
    /// What REST + STOR does here (see `probe`).
    probe: probe::Probe,
    /// Downloads and uploads in flight, for `ftpsfs status`.
    transfers: Arc<Transfers>,
    /// Set once the server refused AVBL: free space is not asked again.
    avbl_refused: AtomicBool,
    /// Sizes told right after uploads, for the `size` asked next.
    fresh_sizes: Arc<FreshSizes>,
    /// Whether uploads send SIZE with the end of their bytes (when their
    /// size is checked next, `--verify`).
    size_with_uploads: bool,
}

/// How long a size told right after an upload answers `size`.
const FRESH_SIZE_AGE: Duration = Duration::from_secs(5);
/// At most this many such sizes are kept (uploads in parallel).
const FRESH_SIZES: usize = 64;

/// Sizes the server told right after an upload's 226 (SIZE went out with
/// the end of its bytes, see `ftp::transfer::Upload::finish_and_size`),
/// each handed once to the `size` asked next of that file: the check of
/// `--verify` that follows every upload then costs no round trip of its
/// own. A size is that of SIZE after the transfer ended, as asked a moment
/// later would be; it is taken once, within seconds, and forgotten when
/// the file is written, deleted or renamed through this store.
#[derive(Default)]
struct FreshSizes(Mutex<Vec<(Vec<u8>, u64, Instant)>>);

impl FreshSizes {
    fn put(&self, remote: Vec<u8>, size: u64) {
        let mut sizes = self.0.lock();
        sizes.retain(|(path, _, at)| *path != remote && at.elapsed() < FRESH_SIZE_AGE);
        if sizes.len() >= FRESH_SIZES {
            sizes.remove(0);
        }
        sizes.push((remote, size, Instant::now()));
    }

    fn take(&self, remote: &[u8]) -> Option<u64> {
        let mut sizes = self.0.lock();
        let at = sizes.iter().position(|(path, _, _)| path == remote)?;
        let (_, size, told) = sizes.remove(at);
        (told.elapsed() < FRESH_SIZE_AGE).then_some(size)
    }

    fn forget(&self, remote: &[u8]) {
        self.0.lock().retain(|(path, _, _)| path != remote);
    }

    fn moved(&self, from: &[u8], to: &[u8]) {
        let mut sizes = self.0.lock();
        sizes.retain(|(path, _, _)| path != to);
        for entry in sizes.iter_mut().filter(|(path, _, _)| path == from) {
            entry.0 = to.to_vec();
        }
    }
}

impl FtpsStore {
    /// Opens a download of `path` from `start`; `None` only with
    /// `Checkout::Now`, when no session is free.
    fn open_reader(
        &self,
        path: &[u8],
        start: Start,
        checkout: Checkout,
    ) -> Result<Option<FtpsReader>> {
        let remote = self.remote(path);
        let Some(download) = open_download(&self.pool, &remote, start, checkout)? else {
            return Ok(None);
        };
        let offset = start.offset();
        Ok(Some(FtpsReader {
            pool: Arc::clone(&self.pool),
            remote,
            position: offset,
            end: start.length().map(|length| offset + length),
            carried: None,
            download: Some(download),
            resumes_left: DOWNLOAD_RESUMES,
            ticket: self.transfers.start(Direction::Download, path, offset),
            checkout,
        }))
    }

    /// Logs in (checking that the server and the mounted directory are
    /// usable) and reads what the server can do.
    pub fn connect(pool: Arc<Pool>, root: &[u8]) -> Result<FtpsStore> {
        let root = normalize_root(root);
        let features = pool
            .run(Retry::Idempotent, |session| Ok(session.features().clone()))
            .map_err(|e| from_ftp(e, "connecting"))?;
        let capabilities = Capabilities {
            // MFMT, or MDTM with two arguments (vsftpd): tried when needed.
            set_mtime: features.mfmt || features.mdtm,
            chmod: true,
            exact_listing_mtime: features.mlsd,
            append: true,
            digests: features.hash.union(features.x_digests),
        };
        let store = FtpsStore {
            pool,
            root,
            capabilities,
            features,
            set_mtime_refused: AtomicBool::new(false),
            hash_ignores_rang: AtomicBool::new(false),
            probe: probe::Probe::default(),
            transfers: Arc::default(),
            avbl_refused: AtomicBool::new(false),
            fresh_sizes: Arc::default(),
            size_with_uploads: false,
        };
        store.check_root()?;
        Ok(store)
    }

    /// Uploads send SIZE with the end of their bytes, for the check that
    /// follows them (`--verify` size or digest): see `FreshSizes`.
    pub fn with_size_after_uploads(mut self, on: bool) -> FtpsStore {
        self.size_with_uploads = on;
        self
    }

    /// The mounted directory must exist: some servers (vsftpd) list a missing
    /// directory as an empty one, so ask its parent.
    fn check_root(&self) -> Result<()> {
        let root = &self.root;
        if root.is_empty() || root == b"/" {
            return Ok(());
        }
        let (parent, name) = match root.iter().rposition(|&b| b == b'/') {
            Some(0) => (&b"/"[..], &root[1..]),
            Some(i) => (&root[..i], &root[i + 1..]),
            None => (&b""[..], &root[..]),
        };
        let parent = parent.to_vec();
        let listing = self
            .pool
            .run(Retry::Idempotent, |s| s.list_dir(&parent))
            .map_err(|e| from_ftp(e, &format!("opening {}", shown(root))))?;
        match listing.iter().find(|e| e.name == name) {
            Some(entry) if entry.kind == EntryKind::Dir => Ok(()),
            Some(_) => Err(Error::new(
                ErrorKind::Failed,
                format!("{} is not a directory on the server", shown(root)),
            )),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("{} does not exist on the server", shown(root)),
            )),
        }
    }

    /// The downloads and uploads in flight now.
    pub fn transfers(&self) -> Vec<super::transfers::InFlight> {
        self.transfers.snapshot()
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    fn remote(&self, path: &[u8]) -> Vec<u8> {
        match (path.is_empty(), self.root.as_slice()) {
            (true, _) => self.root.clone(),
            (false, b"/") => [b"/", path].concat(),
            (false, root) => join(root, path).into_bytes(),
        }
    }

    fn run<T>(
        &self,
        retry: Retry,
        what: &str,
        path: &[u8],
        mut op: impl FnMut(&mut ftp::Session, &[u8]) -> ftp::Result<T>,
    ) -> Result<T> {
        let remote = self.remote(path);
        self.pool
            .run(retry, |session| op(session, &remote))
            .map_err(|e| from_ftp(e, &format!("{what} {}", shown(&remote))))
    }

    /// A 550 means "not found" to most servers and "could not" to vsftpd,
    /// whatever the cause; ask the server what is there to tell which.
    fn explain_failure(&self, err: Error, path: &[u8], expect: Expectation) -> Error {
        if err.kind != ErrorKind::NotFound && err.kind != ErrorKind::Failed {
            return err;
        }
        let found = self.stat(path);
        let kind = match (expect, found) {
            (Expectation::Absent, Ok(_)) => ErrorKind::AlreadyExists,
            (Expectation::EmptyDir, Ok(meta)) if meta.kind == FileKind::Dir => {
                match self.list(path) {
                    Ok(entries) if !entries.is_empty() => ErrorKind::NotEmpty,
                    _ => ErrorKind::PermissionDenied,
                }
            }
            (Expectation::Present | Expectation::EmptyDir, Ok(_)) => ErrorKind::PermissionDenied,
            (Expectation::Present | Expectation::EmptyDir, Err(e))
                if e.kind == ErrorKind::NotFound =>
            {
                ErrorKind::NotFound
            }
            (Expectation::Absent, Err(e)) if e.kind == ErrorKind::NotFound => {
                // The parent is missing, or the server refuses.
                let (parent, _) = split(path);
                match self.stat(parent) {
                    Err(e) if e.kind == ErrorKind::NotFound => ErrorKind::NotFound,
                    _ => ErrorKind::PermissionDenied,
                }
            }
            _ => err.kind,
        };
        Error::new(kind, err.message)
    }
}

/// What a failed operation needed to find at its path.
#[derive(Clone, Copy)]
enum Expectation {
    /// mkdir, upload: nothing there yet.
    Absent,
    /// delete, rename source, chmod: something there.
    Present,
    /// rmdir: an empty directory.
    EmptyDir,
}

impl RemoteStore for FtpsStore {
    fn list(&self, dir: &[u8]) -> Result<Vec<DirEntry>> {
        let entries = self.run(Retry::Idempotent, "listing", dir, |s, remote| {
            s.list_dir(remote)
        })?;
        Ok(entries.into_iter().filter_map(dir_entry).collect())
    }

    fn stat(&self, path: &[u8]) -> Result<Metadata> {
        if path.is_empty() {
            return Ok(Metadata {
                kind: FileKind::Dir,
                size: 0,
                mtime: None,
                mtime_exact: false,
                mode: None,
                symlink_target: None,
            });
        }
        if self.capabilities.exact_listing_mtime {
            let entry = self.run(Retry::Idempotent, "looking up", path, |s, remote| {
                s.mlst(remote)
            })?;
            return Ok(metadata(&entry));
        }
        let (parent, name) = split(path);
        self.list(parent)?
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.meta)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("{} does not exist", shown(path)),
                )
            })
    }

    fn exact_mtime(&self, path: &[u8]) -> Result<SystemTime> {
        self.run(
            Retry::Idempotent,
            "reading the time of",
            path,
            |s, remote| s.mdtm(remote),
        )
    }

    fn open_read(&self, path: &[u8], offset: u64) -> Result<Box<dyn ReadStream>> {
        self.open_read_segment(path, offset, None, true)?
            .ok_or_else(|| no_session(&self.remote(path)))
    }

    fn open_read_now(&self, path: &[u8], offset: u64) -> Result<Option<Box<dyn ReadStream>>> {
        self.open_read_segment(path, offset, None, false)
    }

    /// With RANG where FEAT lists `RANG STREAM` (ProFTPD): the server ends
    /// the segment's transfer itself, so the session needs no ABOR and its
    /// replies (a round trip, and on some servers a reset data connection)
    /// after each segment.
    fn open_read_segment(
        &self,
        path: &[u8],
        start: u64,
        end: Option<u64>,
        wait: bool,
    ) -> Result<Option<Box<dyn ReadStream>>> {
        let checkout = if wait { Checkout::Wait } else { Checkout::Now };
        let from = match end {
            Some(end) if self.features.rang && end > start => Start::Range { start, end },
            _ => Start::At(start),
        };
        let reader = self.open_reader(path, from, checkout)?;
        Ok(reader.map(|r| Box::new(r) as Box<dyn ReadStream>))
    }

    fn ready_for_reads(&self, streams: usize) {
        self.pool.set_up_data_ahead(streams);
    }

    fn upload(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        self.start_upload("STOR", path)
    }

    fn append(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        self.start_upload("APPE", path)
    }

    fn upload_at(&self, path: &[u8], offset: u64) -> Result<Box<dyn UploadStream>> {
        if offset == 0 {
            return self.upload(path);
        }
        let remote = self.remote(path);
        let what = format!("writing {} from byte {offset}", shown(&remote));
        let describe = |e: ftp::Error| {
            if refuses_writing_at(&e) {
                Error::new(ErrorKind::Unsupported, format!("{what}: {e}"))
            } else {
                from_ftp(e, &what)
            }
        };
        self.fresh_sizes.forget(&remote);
        let upload = open_transfer(&self.pool, describe, |session| {
            upload_at_on(session, "STOR", &remote, offset)
        })?;
        Ok(Box::new(FtpsUpload {
            upload: Some(upload),
            remote,
            ticket: self.transfers.start(Direction::Upload, path, offset),
            fresh_sizes: Arc::clone(&self.fresh_sizes),
            // A patch is checked by its size whatever --verify.
            ask_size: true,
        }))
    }

    fn size(&self, path: &[u8]) -> Result<u64> {
        if path.is_empty() {
            return Err(not_a_file(path, "it is a directory"));
        }
        if let Some(size) = self.fresh_sizes.take(&self.remote(path)) {
            return Ok(size);
        }
        if self.features.size {
            let sized = self.run(
                Retry::Idempotent,
                "reading the size of",
                path,
                |s, remote| s.size(remote),
            );
            match sized {
                Err(e) if e.kind == ErrorKind::Unsupported => {
                    log::debug!("SIZE refused although offered ({e}); asking the listing")
                }
                sized => return sized,
            }
        }
        // No SIZE: what the server lists now (the store keeps no cache).
        let meta = self.stat(path)?;
        match meta.kind {
            FileKind::File => Ok(meta.size),
            FileKind::Dir => Err(not_a_file(path, "it is a directory")),
            FileKind::Symlink => Err(Error::new(
                ErrorKind::Failed,
                format!(
                    "reading the size of {}: it is a symbolic link, and the server has no SIZE",
                    shown(path)
                ),
            )),
        }
    }

    fn digest(
        &self,
        path: &[u8],
        algorithm: DigestAlgorithm,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>> {
        let remote = self.remote(path);
        let what = format!("computing the {algorithm} digest of {}", shown(&remote));
        if let Some((start, end)) = range {
            if end <= start {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{what}: the range {start}..{end} is empty"),
                ));
            }
        }
        let features = &self.features;
        // ProFTPD splits the arguments of XSHA256 and its kin at spaces: a
        // path with one would name another file, or be refused.
        let x =
            features.x_digests.contains(algorithm) && !remote.iter().any(u8::is_ascii_whitespace);
        let ranges = features.rang && !self.hash_ignores_rang.load(Ordering::Relaxed);
        let hash = features.hash.contains(algorithm) && (range.is_none() || ranges);
        // HASH carries any path; for a range, the older command needs no
        // RANG (a state on the session that must be reset after).
        let use_hash = hash && (range.is_none() || !x);
        if !use_hash && !x {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{what}: the server offers no command for it{}",
                    if range.is_some() { " (of a range)" } else { "" }
                ),
            ));
        }
        let hashed = self
            .pool
            .run(Retry::Idempotent, |s| {
                if use_hash {
                    s.hash(algorithm, &remote, range)
                } else {
                    s.x_digest(algorithm, &remote, range).map(Hashed::Digest)
                }
            })
            .map_err(|e| digest_error(e, &what))?;
        match hashed {
            Hashed::Digest(digest) => Ok(digest),
            Hashed::RangeIgnored => {
                log::info!(
                    "the server's HASH ignores RANG; ranges are only asked of XSHA256 and its kin"
                );
                self.hash_ignores_rang.store(true, Ordering::Relaxed);
                Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("{what}: the server's HASH hashes the whole file, not a range"),
                ))
            }
        }
    }

    fn store_at_offset(&self, dir: &[u8]) -> StoreAtOffset {
        self.store_at_offset_probed(dir)
    }

    fn probe_store_at_offset(&self, dir: &[u8]) {
        self.probe_ahead(dir)
    }

    fn delete(&self, path: &[u8]) -> Result<()> {
        self.fresh_sizes.forget(&self.remote(path));
        self.run(Retry::Idempotent, "deleting", path, |s, remote| {
            s.delete(remote)
        })
        .map_err(|e| self.explain_failure(e, path, Expectation::Present))
    }

    fn mkdir(&self, path: &[u8]) -> Result<()> {
        self.run(Retry::Once, "creating directory", path, |s, remote| {
            s.mkdir(remote)
        })
        .map_err(|e| self.explain_failure(e, path, Expectation::Absent))
    }

    fn rmdir(&self, path: &[u8]) -> Result<()> {
        self.run(
            Retry::Idempotent,
            "removing directory",
            path,
            |s, remote| s.rmdir(remote),
        )
        .map_err(|e| self.explain_failure(e, path, Expectation::EmptyDir))
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        let target = self.remote(to);
        let renamed = self.run(Retry::Once, "renaming", from, |s, remote| {
            s.rename(remote, &target)
        });
        match renamed {
            Ok(()) => self.fresh_sizes.moved(&self.remote(from), &target),
            Err(_) => {
                self.fresh_sizes.forget(&self.remote(from));
                self.fresh_sizes.forget(&target);
            }
        }
        renamed.map_err(|e| self.explain_failure(e, from, Expectation::Present))
    }

    fn chmod(&self, path: &[u8], mode: u32) -> Result<()> {
        self.run(
            Retry::Idempotent,
            "changing the mode of",
            path,
            |s, remote| s.chmod(remote, mode),
        )
        .map_err(|e| self.explain_failure(e, path, Expectation::Present))
    }

    fn set_mtime(&self, path: &[u8], mtime: SystemTime) -> Result<()> {
        if self.set_mtime_refused.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the server cannot set modification times",
            ));
        }
        let result = self.run(
            Retry::Idempotent,
            "setting the time of",
            path,
            |s, remote| s.set_mtime(remote, mtime),
        );
        let Err(e) = result else {
            return Ok(());
        };
        if !matches!(
            e.kind,
            ErrorKind::NotFound | ErrorKind::Failed | ErrorKind::Unsupported
        ) {
            return Err(e);
        }
        // The path exists, so the server refused to set its time: because it
        // cannot (500/502, or it read `MDTM time path` as a path and says "not
        // found" of a file that is there), because it will not for
        // directories (vsftpd), or because this user may not change this file.
        let misread = e.kind == ErrorKind::Unsupported || mentions_missing(&e.message);
        match self.stat(path).map(|meta| meta.kind) {
            Ok(FileKind::File) if misread => {
                log::info!(
                    "the server cannot set modification times ({e}); times will not be kept"
                );
                self.set_mtime_refused.store(true, Ordering::Relaxed);
                Err(Error::new(ErrorKind::Unsupported, e.message))
            }
            Ok(FileKind::File) => Err(Error::new(ErrorKind::PermissionDenied, e.message)),
            Ok(_) => Err(Error::new(ErrorKind::Unsupported, e.message)),
            Err(_) => Err(e),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            set_mtime: self.capabilities.set_mtime
                && !self.set_mtime_refused.load(Ordering::Relaxed),
            ..self.capabilities
        }
    }

    fn free_space(&self) -> Option<u64> {
        if self.avbl_refused.load(Ordering::Relaxed) {
            return None;
        }
        // Not worth waiting for: with every session busy (downloads), df
        // answers "unknown" at once instead of waiting for one.
        let asked = self
            .pool
            .get_within(Duration::ZERO)
            .and_then(|mut session| session.available_space());
        match asked {
            Ok(Available::Bytes(bytes)) => Some(bytes),
            Ok(Available::NotOffered(reply)) => {
                log::debug!("the server does not tell free space (AVBL: {reply}); df shows 0");
                self.avbl_refused.store(true, Ordering::Relaxed);
                None
            }
            Ok(Available::Unreadable(reply)) => {
                log::debug!("AVBL did not answer a number of bytes ({reply:?}); df shows 0");
                None
            }
            Err(e) => {
                log::debug!("asking free space (AVBL) failed: {e}; df shows 0");
                None
            }
        }
    }
}

impl FtpsStore {
    fn start_upload(&self, verb: &'static str, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        let remote = self.remote(path);
        let describe = |e: ftp::Error| {
            // A server that answers APPE itself with "try again" (ProFTPD
            // without AllowStoreRestart: 451 Append/Restart not permitted)
            // says so every time: it refuses appending, and the core
            // replaces the file whole instead of retrying.
            let refuses_append = verb == "APPE"
                && matches!(&e, ftp::Error::Reply { command, code: 450 | 451, .. }
                    if command.starts_with("APPE"));
            let err = from_ftp(e, &format!("uploading {}", shown(&remote)));
            if refuses_append {
                Error::new(ErrorKind::Unsupported, err.message)
            } else {
                err
            }
        };
        // Trying again is safe: no byte of the file has been sent yet. A
        // refused STOR (e.g. 553) is permanent and reported as is.
        self.fresh_sizes.forget(&remote);
        let upload = open_transfer(&self.pool, describe, |session| {
            upload_on(session, verb, &remote)
        })?;
        Ok(Box::new(FtpsUpload {
            upload: Some(upload),
            remote,
            ticket: self.transfers.start(Direction::Upload, path, 0),
            fresh_sizes: Arc::clone(&self.fresh_sizes),
            ask_size: self.size_with_uploads,
        }))
    }
}

/// Opens a download at `offset`; `None` only with `Checkout::Now`, when no
/// session is free.
fn open_download(
    pool: &Pool,
    remote: &[u8],
    start: Start,
    checkout: Checkout,
) -> Result<Option<Download<PooledSession>>> {
    let describe = |e: ftp::Error| from_ftp(e, &format!("reading {}", shown(remote)));
    open_transfer_with(pool, checkout, describe, |session| match start {
        Start::At(offset) => retr_on(session, remote, offset, None),
        Start::Range { start, end } => retr_range_on(session, remote, start, end),
    })
}

/// Whether opening a transfer waits for a session when all are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checkout {
    Wait,
    Now,
}

fn no_session(remote: &[u8]) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("reading {}: no free FTP session", shown(remote)),
    )
}

/// Opens a transfer on a pooled session, waiting for one (see
/// `open_transfer_with`).
fn open_transfer<T, E>(
    pool: &Pool,
    describe: impl Fn(ftp::Error) -> E,
    open: impl Fn(PooledSession) -> ftp::Result<T>,
) -> std::result::Result<T, E> {
    open_transfer_with(pool, Checkout::Wait, &describe, open)?.ok_or_else(|| {
        describe(ftp::Error::Closed {
            phase: "the session pool gave no session".into(),
        })
    })
}

/// Opens a transfer on a pooled session. A transient failure is tried again
/// when it came fast (a pooled session that had died while idle, a data
/// port refused), but not once a try has taken as long as the connect
/// timeout: a stalled network fails every try by a timeout, and the program
/// should hear of it after one, not after each of them. With
/// `Checkout::Now`, `None` when no session is free.
fn open_transfer_with<T, E>(
    pool: &Pool,
    checkout: Checkout,
    describe: impl Fn(ftp::Error) -> E,
    open: impl Fn(PooledSession) -> ftp::Result<T>,
) -> std::result::Result<Option<T>, E> {
    let patience = pool.connector().config().timeouts.connect;
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        let session = match checkout {
            Checkout::Wait => pool.get().map_err(&describe)?,
            Checkout::Now => match pool.try_get().map_err(&describe)? {
                Some(session) => session,
                None => return Ok(None),
            },
        };
        match open(session) {
            Ok(transfer) => return Ok(Some(transfer)),
            Err(e)
                if e.is_transient()
                    && attempts < TRANSFER_OPEN_RETRIES
                    && started.elapsed() < patience =>
            {
                attempts += 1
            }
            Err(e) => return Err(describe(e)),
        }
    }
}

/// Lets go of a transfer that broke. Dropping it aborts the transfer (ABOR,
/// then waiting for the server's replies, up to the reply timeout when the
/// server is stuck behind a stalled data connection); that happens on its
/// own thread, so the caller can resume or report the failure at once.
fn abandon<T: Send + 'static>(transfer: T) {
    let spawned = std::thread::Builder::new()
        .name("ftpsfs-abort".into())
        .spawn(move || drop(transfer));
    if let Err(e) = spawned {
        log::debug!("aborting a broken transfer in place: {e}");
    }
}

struct FtpsReader {
    pool: Arc<Pool>,
    remote: Vec<u8>,
    position: u64,
    /// The end of a range the server ends the transfer at (RANG): the
    /// stream ends there.
    end: Option<u64>,
    /// A byte read past a range's end that the server did not keep to,
    /// the next to hand out (see `end_of_range`).
    carried: Option<u8>,
    /// `None` after the end of the file (or range) was reached and the
    /// transfer closed.
    download: Option<Download<PooledSession>>,
    resumes_left: u32,
    ticket: Ticket,
    /// How a resume gets its session: a segment's stream waits for none.
    checkout: Checkout,
}

impl ReadStream for FtpsReader {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        use std::io::Read;
        if let (Some(byte), Some(first)) = (self.carried, buf.first_mut()) {
            *first = byte;
            self.carried = None;
            self.position += 1;
            self.ticket.count(1);
            return Ok(1);
        }
        loop {
            let Some(download) = self.download.as_mut() else {
                // A range whose transfer failed before its end is never
                // taken for the end of the file.
                return match self.end {
                    Some(end) if self.position < end => Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "reading {}: the range's transfer failed",
                            shown(&self.remote)
                        ),
                    )),
                    _ => Ok(0),
                };
            };
            // Never past a range's end, even from a server that sends more.
            let room = self.end.map_or(buf.len(), |end| {
                buf.len().min((end - self.position) as usize)
            });
            match download.read(&mut buf[..room]) {
                Ok(0) => {
                    if let Some(done) = self.download.take() {
                        done.finish().map_err(|e| {
                            from_ftp(e, &format!("reading {}", shown(&self.remote)))
                        })?;
                    }
                    return Ok(0);
                }
                Ok(n) => {
                    // The range's last bytes: its transfer is ended now,
                    // not when the stream is dropped (that would ABOR a
                    // transfer already complete). Bytes whose range did not
                    // end cleanly are not handed out.
                    if self.end == Some(self.position + n as u64) {
                        self.end_of_range()?;
                    }
                    self.position += n as u64;
                    self.ticket.count(n);
                    return Ok(n);
                }
                Err(e) if self.resumes_left > 0 => {
                    // The data connection broke: start again where we are.
                    log::info!(
                        "download of {} broke at byte {} ({e}); resuming",
                        shown(&self.remote),
                        self.position
                    );
                    self.resumes_left -= 1;
                    if let Some(broken) = self.download.take() {
                        abandon(broken);
                    }
                    let from = match self.end {
                        Some(end) => Start::Range {
                            start: self.position,
                            end,
                        },
                        None => Start::At(self.position),
                    };
                    let resumed = open_download(&self.pool, &self.remote, from, self.checkout)?;
                    self.download = Some(resumed.ok_or_else(|| no_session(&self.remote))?);
                }
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!("reading {}: {e}", shown(&self.remote)),
                    ))
                }
            }
        }
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn range_end(&self) -> Option<u64> {
        self.end
    }
}

impl FtpsReader {
    /// At a range's end: a server that ends the transfer there sends no
    /// more data, then its 226; the transfer completes here, so dropping
    /// the stream sends no ABOR. A server that sends on past the end
    /// (ProFTPD 1.3.8 does, unless the range's length is a multiple of its
    /// 16 KiB buffer: measured) leaves a plain download, as without RANG:
    /// the byte read is kept for the next read, and a caller that stops at
    /// the range's end drops the stream (ABOR).
    fn end_of_range(&mut self) -> Result<()> {
        use std::io::Read;
        let Some(download) = self.download.as_mut() else {
            return Ok(());
        };
        let mut more = [0u8; 1];
        match download.read(&mut more) {
            Ok(0) => match self.download.take() {
                Some(done) => done
                    .finish()
                    .map(drop)
                    .map_err(|e| from_ftp(e, &format!("reading {}", shown(&self.remote)))),
                None => Ok(()),
            },
            Ok(_) => {
                log::debug!(
                    "{}: the server sent on past the end of the range (RANG); read as a plain download",
                    shown(&self.remote)
                );
                download.expect_any_length();
                self.carried = Some(more[0]);
                self.end = None;
                Ok(())
            }
            Err(e) => {
                if let Some(broken) = self.download.take() {
                    abandon(broken);
                }
                Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "reading {}: the end of a range did not come cleanly: {e}",
                        shown(&self.remote)
                    ),
                ))
            }
        }
    }
}

struct FtpsUpload {
    /// `None` once a write failed and the transfer was abandoned.
    upload: Option<Upload<PooledSession>>,
    remote: Vec<u8>,
    ticket: Ticket,
    fresh_sizes: Arc<FreshSizes>,
    /// Whether SIZE goes with the end of the bytes (see `FreshSizes`).
    ask_size: bool,
}

impl FtpsUpload {
    fn broken(&self, reason: &str) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!("uploading {}: {reason}", shown(&self.remote)),
        )
    }
}

impl UploadStream for FtpsUpload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let Some(upload) = self.upload.as_mut() else {
            return Err(self.broken("the upload failed before"));
        };
        let result = upload.write_all(data);
        if result.is_ok() {
            self.ticket.count(data.len());
        }
        result.map_err(|e| {
            // Ended here, not on another thread: ABOR and the server's
            // final reply (426) come once its side of the transfer is over
            // and what it received is written. A resume asks the size only
            // after that; asked earlier, the old transfer could still add
            // bytes after it (seen with vsftpd: an APPE resumed at once
            // duplicated 224 KiB).
            drop(self.upload.take());
            self.broken(&e.to_string())
        })
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let Some(upload) = self.upload else {
            return Err(self.broken("the upload failed before"));
        };
        let remote = self.remote;
        let finished = if self.ask_size {
            upload.finish_and_size(&remote)
        } else {
            upload.finish().map(|sent| (sent, None))
        };
        let (_, size) = finished
            .map_err(|e| from_ftp(e, &format!("completing the upload of {}", shown(&remote))))?;
        if let Some(size) = size {
            self.fresh_sizes.put(remote, size);
        }
        Ok(())
    }
}

/// The one translation from protocol errors to store errors.
pub fn from_ftp(err: ftp::Error, what: &str) -> Error {
    let kind = match err.kind() {
        Kind::NotFound => ErrorKind::NotFound,
        Kind::PermissionDenied | Kind::LoginFailed => ErrorKind::PermissionDenied,
        Kind::NoSpace => ErrorKind::NoSpace,
        Kind::AlreadyExists => ErrorKind::AlreadyExists,
        Kind::Unsupported => ErrorKind::Unsupported,
        Kind::InvalidInput => ErrorKind::InvalidInput,
        Kind::Transient => ErrorKind::Unavailable,
        Kind::Tls | Kind::Protocol | Kind::Refused => ErrorKind::Failed,
    };
    Error::new(kind, format!("{what}: {err}"))
}

/// Whether an `upload_at` was refused because of its offset: REST refused
/// (500/502/504, or any other answer but 421), or ProFTPD's `451
/// Append/Restart not permitted` to the STOR after it. Other refusals of
/// the STOR (550, 553, 552) keep their meaning (not found, denied, full).
fn refuses_writing_at(err: &ftp::Error) -> bool {
    match err {
        ftp::Error::Reply { command, code, .. } if command.starts_with("REST") => *code != 421,
        ftp::Error::Reply { command, code, .. } if command.starts_with("STOR") => *code == 451,
        _ => false,
    }
}

/// Whether the server refused a REST + STOR (rather than failing it for a
/// reason that may pass): any reply but the transient ones of a session
/// (421) or a data connection (425, 426, 450). ProFTPD without
/// `AllowStoreRestart` accepts the REST and refuses the STOR with `451
/// Append/Restart not permitted`, a 4xx that is not transient at all.
fn refuses_store_at_offset(err: &ftp::Error) -> bool {
    matches!(err, ftp::Error::Reply { command, code, .. }
        if (command.starts_with("REST") || command.starts_with("STOR"))
            && !matches!(code, 421 | 425 | 426 | 450)
            && *code >= 400)
}

/// The translation of errors of digest commands, whose codes say other
/// things than elsewhere (draft-bryan-ftpext-hash: 552 the user may not,
/// 553 a directory, 556 a file the server's policy will not hash; 501 to
/// OPTS HASH an unknown algorithm).
fn digest_error(err: ftp::Error, what: &str) -> Error {
    let kind = match &err {
        ftp::Error::Reply {
            code: 552 | 556, ..
        } => Some(ErrorKind::Unsupported),
        ftp::Error::Reply {
            command, code: 501, ..
        } if command.starts_with("OPTS HASH") => Some(ErrorKind::Unsupported),
        ftp::Error::Reply { code: 553, .. } => Some(ErrorKind::NotFound),
        _ => None,
    };
    let mapped = from_ftp(err, what);
    match kind {
        Some(kind) => Error::new(kind, mapped.message),
        None => mapped,
    }
}

fn not_a_file(path: &[u8], why: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("reading the size of {}: {why}", shown(path)),
    )
}

/// A hidden temporary name of the core's form (`.<name>.ftpsfs-<hex>.part`),
/// which listings hide and the core sweeps when left over.
fn probe_name() -> Vec<u8> {
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        ".store-at-offset-probe.ftpsfs-{:x}{:x}{:x}.part",
        std::process::id(),
        nanos,
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes()
}

fn dir_entry(entry: Entry) -> Option<DirEntry> {
    // A name with a slash or NUL cannot be a single path component; a hostile
    // or broken listing must not smuggle one in.
    if entry.name.is_empty() || entry.name.iter().any(|&b| b == b'/' || b == 0) {
        log::warn!(
            "ignoring listing entry with an impossible name {:?}",
            shown(&entry.name).to_string()
        );
        return None;
    }
    // A size beyond what a file offset can hold would reach programs as a
    // negative size.
    if entry.size.is_some_and(|size| size > i64::MAX as u64) {
        log::warn!(
            "ignoring listing entry {:?} with an impossible size",
            shown(&entry.name).to_string()
        );
        return None;
    }
    let meta = metadata(&entry);
    Some(DirEntry {
        name: entry.name,
        meta,
    })
}

fn metadata(entry: &Entry) -> Metadata {
    let (kind, symlink_target) = match &entry.kind {
        EntryKind::Dir => (FileKind::Dir, None),
        EntryKind::Symlink { target } => (FileKind::Symlink, target.clone()),
        EntryKind::File | EntryKind::Other => (FileKind::File, None),
    };
    Metadata {
        kind,
        size: entry.size.unwrap_or(0),
        mtime: entry.modified,
        mtime_exact: entry.modified_exact,
        mode: entry.mode,
        symlink_target,
    }
}

/// Whether a server's refusal speaks of a missing file.
fn mentions_missing(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("not found") || lower.contains("no such file")
}

fn normalize_root(root: &[u8]) -> Vec<u8> {
    let mut root = root.to_vec();
    while root.len() > 1 && root.ends_with(b"/") {
        root.pop();
    }
    root
}
