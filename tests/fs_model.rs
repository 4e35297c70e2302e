//! A reference-model property test of the filesystem core (issue 10).
//!
//! Random sequences of operations run against `Fs` over the in-memory
//! store, with store faults injected, and against a small model of what
//! doc/SEMANTICS.md promises. After every step the result (errno, bytes
//! read), what the mount shows (lookups, listings, sizes of open files) and
//! what the server holds are compared with the model; proptest shrinks a
//! failing case to a short sequence and prints it.
//!
//! Modelled (SEMANTICS.md):
//! - §3 writes: data reaches the server at flush, fsync and close (and at
//!   `truncate` of a file no descriptor writes); a new file appears on the
//!   server at its first upload; an existing file is replaced through a
//!   hidden temporary name, so a failed upload leaves the old content and a
//!   failed upload of a new file leaves nothing; after a failure the local
//!   changes are dropped, the file shows the server's content (a new file an
//!   empty one, while open) and the error sticks to the descriptors that
//!   write the file; streaming (sequential writes past the stream threshold)
//!   and its fallback; O_APPEND, O_TRUNC, holes read as zeros. An upload
//!   cut by a lost connection (`Arm::BreakUpload`, or `Unavailable` when
//!   it opens), staged or streaming, is resumed from the server's size and
//!   succeeds with the whole file (§3 "Cut uploads resume"); only a
//!   refusal fails it.
//! - §3 appends: a write at the end of a file whose content is the
//!   server's (O_APPEND, or at its size) fetches nothing; the file then
//!   holds only what follows the server's size (`MFile::append_base`):
//!   reads and writes there are served here, before it (and truncates
//!   below it, and an unlink or a rename over the file) fetch the server's
//!   copy first, failing with the download's errno and staying appended
//!   (an unlink or rename goes on, its descriptors then keeping nothing).
//!   At a save the server's size is asked (SIZE, `FaultOp::Size`: a lost
//!   connection waited out; the check after the APPE then gets an answer)
//!   and the new bytes are sent with APPE, resumed from the server's size
//!   when cut; an error asking, another size (another client appended:
//!   `Step::OtherAppends`, the one change by others modelled) or a refused
//!   APPE has the file fetched and replaced whole, and a refusal is
//!   remembered for the mount (`Model::appe_refused`: at-end writes are
//!   staged from then on); other APPE errors fail the upload as any.
//!   FsStats::appends is checked after every step.
//! - §3 patches in place: what the server does with REST + STOR is drawn
//!   per case (`rest_stor`: in place, truncating, refused, unknown), and
//!   files from `PATCH_MIN` bytes may be patched. The model does not
//!   predict whether a save patches (the core's rule of changed bytes and
//!   ranges), but checks that a patch (FsStats::patches) happens only where
//!   the rule allows it (`check_patch_allowed`: a copy fetched from the
//!   server, never cut below that, the server's file unchanged, a server
//!   that writes REST + STOR), that one fault (a cut or refused REST +
//!   STOR, a failed SIZE or MLST) never fails it (the range is sent again,
//!   or the file replaced whole), and what the server holds after it. A
//!   patch is checked by size only: a range stored short inside the file
//!   (`Arm::Corrupt`) leaves one old byte, which the model then takes
//!   (`Model::patched_short`). The SIZE after any other upload (`verify`)
//!   fails the save when refused (`FaultOp::Size`).
//! - §3 patches without fetching: a write inside a file the server has,
//!   of at least `PATCH_MIN` bytes, where REST + STOR writes in place and
//!   within the patch rule (`admits`: not byte 0, not growing it, at most
//!   16 ranges and an eighth of the file) fetches nothing
//!   (`MFile::overlay`; predicted, and checked against
//!   FsStats::unfetched_patches at every write). Reads of it may fail as
//!   any download; a write the rule does not admit, a truncate to another
//!   size and an unlink fetch it first (failing as a fetch does); a save
//!   patches it, or fetches it and replaces it whole, failing only if that
//!   fetch fails.
//! - §4 create (O_EXCL), rename of files and directories over existing
//!   targets with their errnos, rename of a file not yet uploaded, unlink of
//!   open files (they keep working for their descriptors and are never
//!   uploaded), rmdir of non-empty directories, mkdir.
//! - §5 the size shown for files being written; chmod and utimens results.
//! - §10 the errno of every store error kind, for metadata operations and
//!   for uploads.
//! - Temporary names never show in listings, and none is left on the server
//!   once no upload is in progress.
//!
//! Deliberately not modelled: timing (TTL expiry: the TTLs are an hour, so
//! everything the mount shows comes from its own changes), other clients
//! changing the server (but for appending to a file appended to here), the
//! backoff before an upload is resumed (it only delays: `retry_time` is a
//! minute, and one fault at a time never exhausts it), servers that refuse
//! renames or chmod/MFMT, LIST
//! servers' rounded times, modes and times beyond the result of the call
//! that sets them, read-ahead and download reuse, concurrency (one thread),
//! crashes and shutdown, and which store calls the cache saves. Where the
//! semantics leave a choice (where the error of a broken stream shows up,
//! whether an orphaned file's old content can still be read), the model
//! accepts exactly the documented alternatives and then checks that the
//! state that follows is the one that goes with the alternative taken.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ftpsfs::fs::{Fh, Fs, FsConfig, Ino, OpenFlags, SetAttr, Verify, ROOT_INO};
use ftpsfs::store::{ErrorKind as Kind, FileKind, StoreAtOffset};
use proptest::prelude::*;

// ----- The store under test: built, and faults injected, only here -----

use ftpsfs_testkit::{Corruption, FaultyStore, MemoryStore, Op};

type Store = FaultyStore<MemoryStore>;

fn new_store() -> Arc<Store> {
    Arc::new(FaultyStore::new(MemoryStore::new()))
}

/// What the server holds, for checking (no faults, not counted).
fn server(store: &Store) -> &MemoryStore {
    store.inner()
}

fn arm_fault(store: &Store, arm: &Arm) {
    match *arm {
        Arm::Fail(op, kind) => store.fail_next(op.into(), kind.into()),
        Arm::BreakUpload(n) => store.fail_upload_after(n as u64),
        Arm::BreakRead(n) => store.fail_read_after(n as u64),
        Arm::Corrupt => store.corrupt_next_uploads(&[Corruption::DropLast]),
    }
}

/// A fault armed for one step must not outlive it.
fn clear_faults(store: &Store) {
    store.clear_faults();
}

/// Uploads the store was asked to open (failed calls included), to tell
/// whether a write started a streaming upload.
fn uploads_opened(store: &Store) -> u64 {
    store.counters().upload
}

fn resumes_opened(store: &Store) -> u64 {
    let counters = store.counters();
    counters.upload_at + counters.append
}

// ----- The operations -----

const KIB: usize = 1024;
/// Small, so that spools move to disk and files stream after a few writes;
/// the core streams after min(spool memory limit, 1 MiB).
const SPOOL_MEMORY: usize = 64 * KIB;
const STREAM_AT: usize = SPOOL_MEMORY;
const SLOTS: usize = 3;
/// Few names, so that operations collide: renames over existing targets,
/// rmdir of full directories, names reused after unlink.
const PATHS: [&str; 7] = ["a", "b", "d", "a/x", "b/x", "d/x", "d/y"];
const BASE_TIME: u64 = 1_600_000_000;
/// Files from this size may be patched in place (the core's 1 MiB would
/// need files too big to run thousands of cases).
const PATCH_MIN: usize = 2 * KIB;

#[derive(Clone, Copy, PartialEq, Eq)]
struct P(u8);

impl P {
    fn path(self) -> &'static str {
        PATHS[self.0 as usize]
    }
}

impl fmt::Debug for P {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.path())
    }
}

/// A descriptor slot: an open handle lives in one until it is released.
#[derive(Clone, Copy, PartialEq, Eq)]
struct H(u8);

impl fmt::Debug for H {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h{}", self.0)
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    ReadOnly,
    WriteOnly,
    ReadWrite,
}

#[derive(Clone, Copy, Debug)]
enum At {
    End,
    Offset(u32),
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Handle(H),
    Path(P),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultOp {
    List,
    Stat,
    OpenRead,
    Upload,
    Append,
    /// REST + STOR of a patch in place.
    UploadAt,
    /// SIZE, asked before and after a patch.
    Size,
    Delete,
    Mkdir,
    Rmdir,
    Rename,
    Chmod,
    SetMtime,
}

impl From<FaultOp> for Op {
    fn from(op: FaultOp) -> Op {
        match op {
            FaultOp::List => Op::List,
            FaultOp::Stat => Op::Stat,
            FaultOp::OpenRead => Op::OpenRead,
            FaultOp::Upload => Op::Upload,
            FaultOp::Append => Op::Append,
            FaultOp::UploadAt => Op::UploadAt,
            FaultOp::Size => Op::Size,
            FaultOp::Delete => Op::Delete,
            FaultOp::Mkdir => Op::Mkdir,
            FaultOp::Rmdir => Op::Rmdir,
            FaultOp::Rename => Op::Rename,
            FaultOp::Chmod => Op::Chmod,
            FaultOp::SetMtime => Op::SetMtime,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultKind {
    Unavailable,
    PermissionDenied,
    NoSpace,
    NotFound,
    Failed,
    /// Generated for APPE only (a server without it).
    Unsupported,
}

impl From<FaultKind> for Kind {
    fn from(k: FaultKind) -> Kind {
        match k {
            FaultKind::Unavailable => Kind::Unavailable,
            FaultKind::PermissionDenied => Kind::PermissionDenied,
            FaultKind::NoSpace => Kind::NoSpace,
            FaultKind::NotFound => Kind::NotFound,
            FaultKind::Failed => Kind::Failed,
            FaultKind::Unsupported => Kind::Unsupported,
        }
    }
}

/// A fault armed for the one step it wraps.
#[derive(Clone, Copy, Debug)]
enum Arm {
    /// The next call of the operation fails with the kind.
    Fail(FaultOp, FaultKind),
    /// The next upload opened breaks (connection lost) after that many bytes.
    BreakUpload(u32),
    /// The next download opened breaks after that many bytes.
    BreakRead(u32),
    /// The next upload opened stores all but its last byte, and the
    /// server answers that it is fine (`verify` finds it).
    Corrupt,
}

#[derive(Clone, Debug)]
enum Step {
    /// Opens into the lowest free descriptor slot (none free: skipped).
    Create {
        p: P,
        excl: bool,
        trunc: bool,
        read: bool,
    },
    /// Opens into the lowest free descriptor slot (none free: skipped).
    Open {
        p: P,
        mode: Mode,
        trunc: bool,
        append: bool,
    },
    Write {
        h: H,
        at: At,
        len: u32,
        seed: u8,
    },
    Read {
        h: H,
        off: u32,
        len: u32,
    },
    Truncate {
        t: Target,
        size: u32,
    },
    Flush(H),
    Fsync(H),
    Release(H),
    Rename {
        from: P,
        to: P,
    },
    Unlink(P),
    Mkdir(P),
    Rmdir(P),
    Chmod {
        t: Target,
        mode: u16,
    },
    Touch {
        t: Target,
        secs: u32,
    },
    /// Another client appends to the server's file at `p`, but only while
    /// the mount is appending to it (else nothing): the one change by
    /// others that is modelled, as the mount checks for it before APPE.
    OtherAppends {
        p: P,
        len: u32,
        seed: u8,
    },
    Faulty(Arm, Box<Step>),
}

impl Step {
    /// Whether the step looks a path up (which a lookup fault can fail).
    fn looks_up(&self) -> bool {
        match self {
            Step::Write { .. }
            | Step::Read { .. }
            | Step::Flush(_)
            | Step::Fsync(_)
            | Step::Release(_)
            | Step::Truncate {
                t: Target::Handle(_),
                ..
            }
            | Step::Chmod {
                t: Target::Handle(_),
                ..
            }
            | Step::Touch {
                t: Target::Handle(_),
                ..
            }
            | Step::OtherAppends { .. } => false,
            Step::Faulty(_, inner) => inner.looks_up(),
            _ => true,
        }
    }
}

/// What a step returned: an errno, or what is compared of its success.
#[derive(Clone, PartialEq, Eq)]
enum Out {
    Done,
    Bytes(Vec<u8>),
    Perm(u16),
    Mtime(u64),
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Out::Done => write!(f, "Done"),
            // Whole contents would drown the report: length and a digest.
            Out::Bytes(b) => write!(f, "Bytes(len {}, digest {:016x})", b.len(), digest(b)),
            Out::Perm(m) => write!(f, "Perm({m:o})"),
            Out::Mtime(s) => write!(f, "Mtime({s})"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Errno(i32);

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            libc::ENOENT => "ENOENT",
            libc::ESTALE => "ESTALE",
            libc::EACCES => "EACCES",
            libc::EEXIST => "EEXIST",
            libc::ENOTEMPTY => "ENOTEMPTY",
            libc::ENOSPC => "ENOSPC",
            libc::ETIMEDOUT => "ETIMEDOUT",
            libc::EIO => "EIO",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EBADF => "EBADF",
            libc::EINVAL => "EINVAL",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            n => return write!(f, "errno {n}"),
        };
        f.write_str(name)
    }
}

type Res = Result<Out, Errno>;

fn digest(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x = (seed as u64).wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

// ----- SEMANTICS.md §10, written out independently of src/fs/errno.rs -----

fn store_errno(k: FaultKind) -> Errno {
    Errno(match k {
        FaultKind::NotFound => libc::ENOENT,
        FaultKind::PermissionDenied => libc::EACCES,
        FaultKind::NoSpace => libc::ENOSPC,
        FaultKind::Unavailable => libc::ETIMEDOUT,
        FaultKind::Failed => libc::EIO,
        FaultKind::Unsupported => libc::EOPNOTSUPP,
    })
}

/// A read's failure: a file the server no longer has, while open, is
/// ESTALE (§10 `Vanished`); the rest as any store failure.
fn read_errno(k: FaultKind) -> Errno {
    match k {
        FaultKind::NotFound => ESTALE,
        k => store_errno(k),
    }
}

/// An upload's failure: written data lost to a dropped connection is EIO.
fn upload_errno(k: FaultKind) -> Errno {
    match k {
        FaultKind::Unavailable => Errno(libc::EIO),
        k => store_errno(k),
    }
}

const ENOENT: Errno = Errno(libc::ENOENT);
const ESTALE: Errno = Errno(libc::ESTALE);
const EIO: Errno = Errno(libc::EIO);
const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);

// ----- The model -----

type Bytes = Rc<Vec<u8>>;

#[derive(Clone, Debug, PartialEq)]
enum SNode {
    Dir,
    File(Bytes),
}

#[derive(Clone, Debug)]
enum VNode {
    Dir,
    /// A file no descriptor has open: what the server has.
    File(Bytes),
    /// An open file: its content is the open file's.
    Open(usize),
}

#[derive(Clone, Debug)]
struct MStream {
    /// Uploading to a temporary name (always, but on a server that
    /// refuses renames).
    temp: bool,
    /// Where a new file's upload is (its real name when the stream began).
    dest: String,
}

#[derive(Clone, Debug)]
struct MFile {
    /// None once unlinked or replaced by a rename (orphaned).
    path: Option<String>,
    /// What reads of it return, and its size.
    content: Bytes,
    /// Changed here and not uploaded yet.
    dirty: bool,
    /// The server has a file at its path, so an upload replaces that file.
    on_server: bool,
    /// The content is held locally (else it is read from the server).
    local: bool,
    /// Written in order from byte 0 since it was empty: may stream.
    in_order: bool,
    stream: Option<MStream>,
    /// Appending: written only at or after this offset, the server's size
    /// when the first write at its end came (`content` is the server's
    /// first `base` bytes, then what was written). Only the bytes from
    /// here on go to the server (APPE); nothing is held locally before.
    append_base: Option<usize>,
    /// Patching without a fetch: the content is the server's with these
    /// ranges (sorted, merged where they touch) written here, which only
    /// they are held (SEMANTICS §3 "A small write inside a big file").
    overlay: Option<Vec<(usize, usize)>>,
    /// Held locally as fetched from the server, which had this many bytes,
    /// and never cut below that since: a save may patch it in place (the
    /// model checks that a patch happens only then).
    fetched: Option<usize>,
    /// Not held locally and gone from the server: a read may fail with
    /// ESTALE (SEMANTICS §4: "can fail with ESTALE once the current
    /// download ends"), a write starts from empty.
    maybe_gone: bool,
    handles: usize,
    writers: usize,
}

impl MFile {
    /// Its content is the server's, untouched here: a write may append
    /// to it or patch it without fetching it.
    fn servers(&self) -> bool {
        !self.local
            && self.stream.is_none()
            && self.append_base.is_none()
            && self.overlay.is_none()
            && self.path.is_some()
            && self.on_server
            && !self.maybe_gone
    }
}

#[derive(Clone, Debug)]
struct MHandle {
    file: usize,
    read: bool,
    write: bool,
    append: bool,
    sticky: Option<Errno>,
}

/// What the step was observed to do that the semantics leave open.
#[derive(Clone, Copy, Debug, Default)]
struct Obs {
    /// A streaming file fell back to staging (FsStats::stream_fallbacks).
    fell_back: bool,
    /// The store was asked to open an upload.
    upload_opened: bool,
    /// The store was asked to open an upload from an offset (REST + STOR)
    /// or an append: a cut upload resumed, a patch or an append.
    resumed_opened: bool,
    /// A file was patched in place (FsStats::patches).
    patched: bool,
    /// A write began a patch without fetching (FsStats::unfetched_patches).
    unfetched: bool,
}

#[derive(Clone, Debug, Default)]
struct Model {
    server: BTreeMap<String, SNode>,
    view: BTreeMap<String, VNode>,
    files: BTreeMap<usize, MFile>,
    handles: [Option<MHandle>; SLOTS],
    next_file: usize,
    /// The fault armed for the step being applied, and what it was seen to do.
    arm: Option<Arm>,
    obs: Obs,
    /// Temporary names a failed DELE left on the server (cleaning up after
    /// a fall-back or a failure): hidden, and swept by a listing once an
    /// hour old (§3). Names, not paths: a renamed directory takes them.
    leftovers: BTreeSet<String>,
    /// The server refused APPE in this mount: a write at the end of a file
    /// stages it, as any other write.
    appe_refused: bool,
    /// Appends that succeeded (FsStats::appends).
    appends: u64,
    /// What the server does with REST + STOR (a patch in place).
    rest_stor: StoreAtOffset,
}

fn parent_of(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

fn name_of(p: &str) -> &str {
    p.rfind('/').map_or(p, |i| &p[i + 1..])
}

fn is_under(p: &str, dir: &str) -> bool {
    p.len() > dir.len() && p.starts_with(dir) && p.as_bytes()[dir.len()] == b'/'
}

fn moved(p: &str, from: &str, to: &str) -> String {
    format!("{to}{}", &p[from.len()..])
}

fn slice(content: &[u8], off: u32, len: u32) -> Vec<u8> {
    let start = (off as usize).min(content.len());
    let end = (off as usize + len as usize).min(content.len());
    content[start..end].to_vec()
}

fn write_at(content: &mut Bytes, offset: usize, data: &[u8]) {
    let c = Rc::make_mut(content);
    if c.len() < offset + data.len() {
        c.resize(offset + data.len(), 0);
    }
    c[offset..offset + data.len()].copy_from_slice(data);
}

/// The patch rule for a write of `len` bytes at `offset` into a file of
/// `size` bytes not fetched, with `ranges` written already (§3): not byte
/// 0, not past the end, at most 16 ranges and an eighth of the file. The
/// ranges with it, if admitted.
fn admits(
    size: usize,
    ranges: &[(usize, usize)],
    offset: usize,
    len: usize,
) -> Option<Vec<(usize, usize)>> {
    if len == 0 {
        return Some(ranges.to_vec());
    }
    if offset == 0 || offset + len > size {
        return None;
    }
    let (mut start, mut end) = (offset, offset + len);
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &(s, e) in ranges {
        if e < start || end < s {
            out.push((s, e));
        } else {
            start = start.min(s);
            end = end.max(e);
        }
    }
    out.push((start, end));
    out.sort_unstable();
    let total: usize = out.iter().map(|(s, e)| e - s).sum();
    (out.len() <= 16 && total <= size / 8).then_some(out)
}

/// A save's outcome decided: what it returned.
type Saved = Result<(), Errno>;

/// What became of an append at a save.
enum Appended {
    /// The server has the whole file.
    Done,
    /// Not appended: the file is fetched and replaced whole.
    Replace,
    /// The upload failed with this errno.
    Failed(Errno),
}

impl Model {
    fn fail_kind(&self, op: FaultOp) -> Option<FaultKind> {
        match self.arm {
            Some(Arm::Fail(o, k)) if o == op => Some(k),
            _ => None,
        }
    }

    fn breaks_read(&self) -> bool {
        matches!(self.arm, Some(Arm::BreakRead(_)))
    }

    fn kind(&self, p: &str) -> Option<FileKind> {
        match self.view.get(p)? {
            VNode::Dir => Some(FileKind::Dir),
            _ => Some(FileKind::File),
        }
    }

    fn open_at(&self, p: &str) -> Option<usize> {
        match self.view.get(p) {
            Some(VNode::Open(id)) => Some(*id),
            _ => None,
        }
    }

    fn shown(&self, p: &str) -> Option<SNode> {
        match self.view.get(p)? {
            VNode::Dir => Some(SNode::Dir),
            VNode::File(c) => Some(SNode::File(c.clone())),
            VNode::Open(id) => Some(SNode::File(self.files[id].content.clone())),
        }
    }

    /// The errno of looking up `p`'s parent directory.
    fn parent_ok(&self, p: &str) -> Result<(), Errno> {
        let parent = parent_of(p);
        if parent.is_empty() {
            return Ok(());
        }
        self.parent_ok(parent)?;
        match self.kind(parent) {
            None => Err(ENOENT),
            Some(FileKind::Dir) => Ok(()),
            Some(_) => Err(Errno(libc::ENOTDIR)),
        }
    }

    /// The errno of looking up `p`'s parent, whatever it is.
    fn parent_found(&self, p: &str) -> Result<(), Errno> {
        let parent = parent_of(p);
        if parent.is_empty() {
            return Ok(());
        }
        self.lookup(parent).map(drop)
    }

    fn lookup(&self, p: &str) -> Result<FileKind, Errno> {
        self.parent_ok(p)?;
        self.kind(p).ok_or(ENOENT)
    }

    fn has_children(&self, dir: &str) -> bool {
        self.view.keys().any(|k| is_under(k, dir))
    }

    fn children(&self, dir: &str) -> BTreeMap<String, FileKind> {
        self.view
            .keys()
            .filter(|k| parent_of(k) == dir && !k.is_empty())
            .map(|k| (name_of(k).to_string(), self.kind(k).unwrap()))
            .collect()
    }

    fn free_slot(&self) -> Option<H> {
        (0..SLOTS)
            .find(|&i| self.handles[i].is_none())
            .map(|i| H(i as u8))
    }

    fn handle(&self, h: H) -> Option<&MHandle> {
        self.handles[h.0 as usize].as_ref()
    }

    /// The open file of `p`, opened (one more user) if it is not.
    fn acquire(&mut self, p: &str) -> usize {
        if let Some(id) = self.open_at(p) {
            self.files.get_mut(&id).unwrap().handles += 1;
            return id;
        }
        let Some(VNode::File(content)) = self.view.get(p).cloned() else {
            panic!("model: acquire of {p}, which is not a file");
        };
        let id = self.next_file;
        self.next_file += 1;
        self.files.insert(
            id,
            MFile {
                path: Some(p.to_string()),
                content,
                dirty: false,
                on_server: true,
                local: false,
                in_order: false,
                stream: None,
                append_base: None,
                overlay: None,
                fetched: None,
                maybe_gone: false,
                handles: 1,
                writers: 0,
            },
        );
        self.view.insert(p.to_string(), VNode::Open(id));
        id
    }

    /// One user less; the last one closes the file, uploading what is left
    /// (an error there has nobody to go to: the store tells what happened).
    fn release_file(&mut self, id: usize, store: &Store) {
        let f = self.files.get_mut(&id).unwrap();
        f.handles -= 1;
        if f.handles > 0 {
            return;
        }
        if f.dirty && f.path.is_some() {
            let _ = self.save(id, None, None, store);
        }
        let f = self.files.remove(&id).unwrap();
        if let Some(p) = f.path {
            if f.on_server || f.dirty {
                self.view.insert(p, VNode::File(f.content));
            } else {
                // Created here, its upload failed: it was never anywhere.
                self.view.remove(&p);
            }
        }
    }

    /// After a failed upload: the local changes are dropped, the file is
    /// what the server has, and the error sticks to the descriptors that
    /// write the file (and to `caller`, the one that saw it at a flush or
    /// fsync; a read passes none).
    fn upload_failed(&mut self, id: usize, e: Errno, caller: Option<H>) {
        let f = self.files.get_mut(&id).unwrap();
        f.stream = None;
        f.append_base = None;
        f.overlay = None;
        f.dirty = false;
        f.in_order = false;
        f.local = false;
        f.fetched = None;
        if let Some(p) = f.path.clone() {
            if !f.on_server {
                // What the upload of a new file left is deleted.
                self.server.remove(&p);
            }
            match self.server.get(&p) {
                Some(SNode::File(c)) => {
                    f.content = c.clone();
                    f.on_server = true;
                    f.maybe_gone = false;
                }
                _ => {
                    f.content = Rc::new(Vec::new());
                    f.on_server = false;
                    f.maybe_gone = true;
                }
            }
        }
        for (i, slot) in self.handles.iter_mut().enumerate() {
            if let Some(h) = slot {
                if h.file == id && (h.write || caller == Some(H(i as u8))) && h.sticky.is_none() {
                    h.sticky = Some(e);
                }
            }
        }
    }

    /// Streaming → staged: the upload is finished and fetched back. A new
    /// file's partial upload stays on the server under its name (the file
    /// is then replaced through a temporary name); it is read from the
    /// store, and must be a prefix of what was written.
    fn unstream(&mut self, id: usize, actual: &Res, caller: Option<H>, store: &Store) -> Saved {
        let f = &self.files[&id];
        let s = f.stream.clone().expect("streaming");
        let mut failures = Vec::new();
        if let Some(k) = self.fail_kind(FaultOp::OpenRead) {
            failures.push(upload_errno(k));
        }
        if self.breaks_read() {
            failures.push(EIO);
        }
        if let Err(e) = actual {
            if failures.contains(e) {
                self.upload_failed(id, *e, caller);
                return Err(*e);
            }
        }
        let f = self.files.get_mut(&id).unwrap();
        f.stream = None;
        f.local = true;
        f.fetched = None;
        f.in_order = false;
        if !s.temp && f.path.as_deref() == Some(&s.dest) {
            let partial = server(store).file(s.dest.as_bytes()).unwrap_or_default();
            assert!(
                f.content.starts_with(&partial),
                "the partial upload of {} is not a prefix of what was written",
                s.dest
            );
            self.server
                .insert(s.dest.clone(), SNode::File(Rc::new(partial)));
            self.files.get_mut(&id).unwrap().on_server = true;
        }
        Ok(())
    }

    /// Uploads the file's changes. `actual`: what the call returned (None
    /// where its result goes nowhere: then the store tells).
    fn save(&mut self, id: usize, actual: Option<&Res>, caller: Option<H>, store: &Store) -> Saved {
        let f = &self.files[&id];
        let Some(path) = f.path.clone() else {
            return Ok(());
        };
        if !f.dirty {
            return Ok(());
        }
        if f.overlay.is_some() {
            if self.obs.patched {
                // Only the written ranges were sent (one fault is sent
                // again or never reaches them), over the server's copy,
                // which nobody else changes here.
                assert!(
                    self.rest_stor == StoreAtOffset::InPlace && f.content.len() >= PATCH_MIN,
                    "{path} was patched without a fetch against the rule"
                );
                if matches!(self.arm, Some(Arm::Corrupt)) {
                    self.patched_short(id, &path, store);
                }
                let f = self.files.get_mut(&id).unwrap();
                self.server.insert(path, SNode::File(f.content.clone()));
                f.overlay = None;
                f.dirty = false;
                return Ok(());
            }
            // Not patched (refused, or the server's copy could not be
            // checked): fetched, the writes put over it, replaced whole.
            let size = f.content.len();
            self.fetch_to_replace(id, size, None, caller)?;
        }
        let f = &self.files[&id];
        if let Some(base) = f.append_base {
            match self.send_appended(id, base) {
                Appended::Done => return Ok(()),
                Appended::Failed(e) => {
                    self.upload_failed(id, e, caller);
                    return Err(e);
                }
                Appended::Replace => {
                    let fetched = self.fetched_for_append(&path, base);
                    self.fetch_to_replace(id, base, fetched, caller)?;
                }
            }
        }
        let f = &self.files[&id];
        let unknown = Err(EIO);
        let actual_or = actual.unwrap_or(&unknown);
        if f.stream.is_some() && self.obs.fell_back {
            // A stream with writes held ahead of a gap falls back first.
            self.unstream(id, actual_or, caller, store)?;
        }
        if self.obs.patched {
            self.check_patch_allowed(id, &path);
            if matches!(self.arm, Some(Arm::Corrupt)) {
                self.patched_short(id, &path, store);
            }
        }
        let f = &self.files[&id];
        let mut failures = Vec::new();
        let through_temp = match &f.stream {
            Some(s) => s.temp || s.dest != path,
            None => f.on_server,
        };
        // A lost connection while opening the upload, and a cut upload
        // (staged or streaming), are resumed: only a refusal fails it.
        if f.stream.is_none() {
            match self.fail_kind(FaultOp::Upload) {
                None | Some(FaultKind::Unavailable) => {}
                Some(k) => failures.push(upload_errno(k)),
            }
        }
        // A stream cut earlier is resumed here, with APPE where the server
        // has no REST + STOR to offer: an APPE refused for good (say, no
        // space) may fail the save with its error.
        if f.stream.is_some()
            && !matches!(
                self.rest_stor,
                StoreAtOffset::InPlace | StoreAtOffset::Truncates
            )
        {
            match self.fail_kind(FaultOp::Append) {
                None | Some(FaultKind::Unavailable) => {}
                Some(k) => failures.push(upload_errno(k)),
            }
        }
        // A stream cut earlier and resumed in this save opens its upload
        // again, after the corruption was armed: the server then holds one
        // byte short, and a stream, which keeps only its window, fails at
        // the mismatch (EIO) instead of being sent again (SEMANTICS §3).
        if f.stream.is_some()
            && !self.obs.fell_back
            && self.obs.resumed_opened
            && matches!(self.arm, Some(Arm::Corrupt))
        {
            failures.push(EIO);
        }
        // The size asked after the upload (`verify`): lost, it is asked
        // again; refused, the save fails with it; no size, a staged upload
        // is sent again (and succeeds), a stream fails (EIO).
        match self.fail_kind(FaultOp::Size) {
            None | Some(FaultKind::Unavailable) => {}
            Some(k) => failures.push(upload_errno(k)),
        }
        if through_temp {
            // A refused rename over the old file is retried after deleting
            // it; a lost connection or a vanished file is a failure.
            if let Some(k @ (FaultKind::Unavailable | FaultKind::NotFound)) =
                self.fail_kind(FaultOp::Rename)
            {
                failures.push(upload_errno(k));
            }
        }
        let failed = match actual {
            // A patch is cut at worst (sent again) or falls back to a
            // whole upload: one fault never fails it.
            _ if self.obs.patched => None,
            Some(Err(e)) if failures.contains(e) => Some(*e),
            Some(_) => None,
            None => {
                let on_store = server(store).file(path.as_bytes());
                match failures.first() {
                    Some(e) if on_store.as_deref() != Some(&f.content[..]) => Some(*e),
                    _ => None,
                }
            }
        };
        if let Some(e) = failed {
            self.upload_failed(id, e, caller);
            return Err(e);
        }
        let writers = f.writers;
        let f = self.files.get_mut(&id).unwrap();
        self.server.insert(path, SNode::File(f.content.clone()));
        f.dirty = false;
        f.on_server = true;
        f.stream = None;
        f.maybe_gone = false;
        // An empty file just uploaded with writers still open stays known
        // here, so the writes that follow can still stream.
        f.local = f.content.is_empty() && writers > 0;
        f.fetched = None;
        f.in_order = f.local;
        Ok(())
    }

    /// At a save, an appended or patched file not sent as such: the
    /// server's `size` bytes are fetched, the writes put over them, and the
    /// file is then uploaded whole as a staged file (held as fetched from a
    /// server that had `fetched` bytes). A failing fetch fails the save.
    fn fetch_to_replace(
        &mut self,
        id: usize,
        size: usize,
        fetched: Option<usize>,
        caller: Option<H>,
    ) -> Saved {
        if let Some(e) = self.fetch_fails(size) {
            // An upload's failure: a lost connection is EIO.
            let e = if e == ETIMEDOUT { EIO } else { e };
            self.upload_failed(id, e, caller);
            return Err(e);
        }
        let f = self.files.get_mut(&id).unwrap();
        f.append_base = None;
        f.overlay = None;
        f.local = true;
        f.fetched = fetched;
        f.in_order = false;
        Ok(())
    }

    /// Unlinked or replaced while open: never uploaded again.
    fn orphan(&mut self, id: usize) {
        let f = self.files.get_mut(&id).unwrap();
        f.path = None;
        // Only changes not uploaded are held for it; its bytes on their way
        // to the server (streaming) are dropped with the upload, and what it
        // had uploaded was the server's, which is gone now. An appended file
        // whose server part could not be fetched (`before_orphaning`) keeps
        // nothing either.
        if !f.dirty
            || f.stream.take().is_some()
            || f.append_base.take().is_some()
            || f.overlay.take().is_some()
        {
            f.local = false;
            f.maybe_gone = true;
        }
        f.dirty = false;
    }

    /// Gets the content local before a change (data lock held in the core).
    /// Err: the download failed; nothing changed.
    fn stage(&mut self, id: usize, actual: &Res) -> Result<(), Errno> {
        let f = &self.files[&id];
        if f.local {
            return Ok(());
        }
        let fetch = f.on_server && f.path.is_some() && !f.maybe_gone;
        if let Some(base) = f.append_base {
            // The server's first `base` bytes are fetched, then the bytes
            // appended here follow them; still appending if that fails.
            if let Some(e) = self.fetch_fails(base) {
                return Err(e);
            }
            let path = f.path.clone().expect("appending under a name");
            let fetched = self.fetched_for_append(&path, base);
            let f = self.files.get_mut(&id).unwrap();
            f.append_base = None;
            f.local = true;
            f.fetched = fetched;
            f.in_order = false;
            return Ok(());
        }
        if fetch {
            let mut failures = Vec::new();
            if let Some(k) = self.fail_kind(FaultOp::OpenRead) {
                failures.push(store_errno(k));
            }
            if self.breaks_read() {
                failures.push(ETIMEDOUT);
            }
            if let Err(e) = actual {
                if failures.contains(e) {
                    return Err(*e);
                }
            }
        }
        let f = self.files.get_mut(&id).unwrap();
        // A patched file's written ranges go over what was fetched: its
        // content already has them.
        f.overlay = None;
        if !fetch {
            // Nothing to fetch: gone from the server, or never there.
            f.content = Rc::new(Vec::new());
            f.maybe_gone = false;
        }
        f.fetched = fetch.then_some(f.content.len());
        f.local = true;
        f.in_order = f.content.is_empty() && !fetch;
        Ok(())
    }

    /// An appended file fetched: a copy of the server's, changed only from
    /// `base` on, unless the server's file is not `base` bytes any more.
    fn fetched_for_append(&self, path: &str, base: usize) -> Option<usize> {
        match self.server.get(path) {
            Some(SNode::File(c)) if c.len() == base => Some(base),
            _ => None,
        }
    }

    /// A save patched the file in place: only a copy of the server's file,
    /// never cut below the size fetched, at least `PATCH_MIN` bytes, on a
    /// server that writes REST + STOR in place or truncates after it, and
    /// whose file is still what was fetched, may be (SEMANTICS §3).
    fn check_patch_allowed(&self, id: usize, path: &str) {
        let f = &self.files[&id];
        let server_len = match self.server.get(path) {
            Some(SNode::File(c)) => Some(c.len()),
            _ => None,
        };
        assert!(
            f.stream.is_none()
                && f.on_server
                && f.fetched.is_some()
                && f.fetched == server_len
                && f.content.len() >= PATCH_MIN.max(f.fetched.unwrap_or(0))
                && matches!(
                    self.rest_stor,
                    StoreAtOffset::InPlace | StoreAtOffset::Truncates
                ),
            "{path} was patched in place, against the rule: {} bytes, fetched {:?}, \
             streaming {}, the server's {server_len:?} bytes, REST + STOR {:?}",
            f.content.len(),
            f.fetched,
            f.stream.is_some(),
            self.rest_stor
        );
    }

    /// A patch's range stored all but its last byte, and the server said
    /// it was fine (`Arm::Corrupt`). A patch is checked by size only
    /// (SEMANTICS §3): a range that ends at the file's end is found and
    /// the file replaced whole, but one inside the file is not. The server
    /// then holds the file with one old byte at most: that is what the
    /// file is from now on.
    fn patched_short(&mut self, id: usize, path: &str, store: &Store) {
        let held = server(store).file(path.as_bytes()).unwrap_or_default();
        let f = self.files.get_mut(&id).unwrap();
        let differ = held
            .iter()
            .zip(f.content.iter())
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            held.len() == f.content.len() && differ <= 1,
            "{path}: after a patch with a range stored short the server holds {} bytes \
             ({differ} differ), not {} with one old byte at most",
            held.len(),
            f.content.len()
        );
        f.content = Rc::new(held);
    }

    fn appending_at(&self, p: &str) -> bool {
        self.open_at(p)
            .is_some_and(|id| self.files[&id].append_base.is_some())
    }

    /// Whether a fetch of a server file of `size` bytes (one download from
    /// byte 0 to its end) fails with the fault armed, and its errno.
    fn fetch_fails(&self, size: usize) -> Option<Errno> {
        match self.arm {
            Some(Arm::Fail(FaultOp::OpenRead, k)) => Some(store_errno(k)),
            // Broken once `n` bytes came, even at the end of the file (the
            // transfer was not confirmed).
            Some(Arm::BreakRead(n)) if n as usize <= size => Some(ETIMEDOUT),
            _ => None,
        }
    }

    /// A write at the end of a file whose content is the server's, while
    /// the server takes APPE, starts appending: nothing is fetched.
    fn start_appending_if_at_end(&mut self, id: usize, offset: usize) {
        let refused = self.appe_refused;
        let f = self.files.get_mut(&id).unwrap();
        if f.servers() && !refused && offset == f.content.len() {
            f.append_base = Some(offset);
        }
    }

    /// A write inside a file whose content is the server's, of at least
    /// `PATCH_MIN` bytes, on a server that writes REST + STOR in place,
    /// within the patch rule (`admits`), begins a patch without fetching
    /// the file (§3). The time asked then (MLST) failing stages it instead.
    /// Whether it began.
    fn start_patching_if_inside(&mut self, id: usize, offset: usize, len: usize) -> bool {
        let stat_fails = matches!(self.arm, Some(Arm::Fail(FaultOp::Stat, _)));
        let in_place = self.rest_stor == StoreAtOffset::InPlace;
        let f = self.files.get_mut(&id).unwrap();
        let size = f.content.len();
        if !f.servers() || !in_place || stat_fails || size < PATCH_MIN {
            return false;
        }
        if admits(size, &[], offset, len).is_none() {
            return false;
        }
        // Nothing written yet: the write itself is held by the caller.
        f.overlay = Some(Vec::new());
        true
    }

    /// An appended file loses its name (unlink, rename over it): the
    /// server's part is fetched first; if that fails, its descriptors keep
    /// nothing (`orphan`). Nothing is returned either way.
    fn before_orphaning(&mut self, id: usize) {
        let f = &self.files[&id];
        if f.overlay.is_some() && self.fetch_fails(f.content.len()).is_some() {
            return;
        }
        if f.append_base.is_some() || f.overlay.is_some() {
            let _ = self.stage(id, &Ok(Out::Done));
        }
    }

    /// A save of an appended file: its size asked (`size`: a lost
    /// connection is waited out), then APPE of the bytes from `base` on,
    /// resumed from the server's size when cut. What became of it.
    fn send_appended(&mut self, id: usize, base: usize) -> Appended {
        let f = &self.files[&id];
        let path = f.path.clone().expect("appending under a name");
        // The SIZE before the APPE takes the armed failure (the check
        // after it then gets an answer).
        match self.fail_kind(FaultOp::Size) {
            None | Some(FaultKind::Unavailable) => {}
            Some(_) => return Appended::Replace,
        }
        match self.server.get(&path) {
            Some(SNode::File(c)) if c.len() == base => {}
            _ => return Appended::Replace,
        }
        match self.fail_kind(FaultOp::Append) {
            Some(FaultKind::PermissionDenied | FaultKind::Unsupported) => {
                self.appe_refused = true;
                return Appended::Replace;
            }
            // Cut (and a broken stream): resumed from the server's size.
            None | Some(FaultKind::Unavailable) => {}
            Some(k) => return Appended::Failed(upload_errno(k)),
        }
        let f = &self.files[&id];
        if matches!(self.arm, Some(Arm::Corrupt)) && f.content.len() > base {
            // The server kept all but the last byte: the size check after
            // the append finds it, and an append is not sent again.
            let kept = f.content[..f.content.len() - 1].to_vec();
            self.server.insert(path, SNode::File(Rc::new(kept)));
            return Appended::Failed(EIO);
        }
        let f = self.files.get_mut(&id).unwrap();
        self.server.insert(path, SNode::File(f.content.clone()));
        f.append_base = None;
        f.dirty = false;
        f.local = false;
        f.in_order = false;
        self.appends += 1;
        Appended::Done
    }

    /// A file written in order from empty may start streaming once it is
    /// big enough. Whether it does is the core's choice (SEMANTICS §3 only
    /// promises it for new and O_TRUNC files, and it is not visible but as
    /// bounded memory), so it is observed: the store opens an upload.
    fn start_stream_if_due(&mut self, id: usize, h: H, actual: &Res, store: &Store) -> Saved {
        let f = &self.files[&id];
        let Some(path) = f.path.clone() else {
            return Ok(());
        };
        if !(f.in_order && f.stream.is_none() && f.content.len() >= STREAM_AT) {
            return Ok(());
        }
        if let Some(k) = self.fail_kind(FaultOp::Upload) {
            if matches!(k, FaultKind::PermissionDenied | FaultKind::NoSpace) {
                let e = upload_errno(k);
                if actual == &Err(e) {
                    self.upload_failed(id, e, Some(h));
                    return Err(e);
                }
            }
            // A refusal that may pass: staged, uploaded whole at close.
            self.files.get_mut(&id).unwrap().in_order = false;
            return Ok(());
        }
        let _ = store;
        if !self.obs.upload_opened {
            return Ok(());
        }
        let f = self.files.get_mut(&id).unwrap();
        f.stream = Some(MStream {
            // New files too (§3: nothing partial under the real name); the
            // model has no server that refuses renames.
            temp: true,
            dest: path,
        });
        // A break of the stream (`Arm::BreakUpload`) is resumed from its
        // window: it fails nothing.
        Ok(())
    }

    fn truncate(
        &mut self,
        id: usize,
        size: usize,
        actual: &Res,
        caller: Option<H>,
        store: &Store,
    ) -> Saved {
        let f = &self.files[&id];
        if f.stream.is_some() {
            if f.content.len() == size {
                return Ok(());
            }
            self.unstream(id, actual, caller, store)?;
        }
        let f = &self.files[&id];
        if f.overlay.is_some() {
            if f.content.len() == size {
                return Ok(());
            }
            // Any other size: fetched, the writes put over it.
            self.stage(id, actual)?;
        }
        let f = &self.files[&id];
        if let Some(base) = f.append_base {
            if size >= base {
                // Only what was appended is cut: still appending.
                let f = self.files.get_mut(&id).unwrap();
                Rc::make_mut(&mut f.content).resize(size, 0);
                return Ok(());
            }
            self.stage(id, actual)?;
        }
        let f = &self.files[&id];
        if !f.local {
            if size == 0 {
                let f = self.files.get_mut(&id).unwrap();
                f.content = Rc::new(Vec::new());
                f.local = true;
                f.fetched = None;
                f.in_order = true;
                f.maybe_gone = false;
                f.dirty = f.path.is_some();
                return Ok(());
            }
            if f.content.len() == size && f.on_server && !f.maybe_gone {
                return Ok(());
            }
            self.stage(id, actual)?;
        }
        let f = self.files.get_mut(&id).unwrap();
        let was = f.content.len();
        Rc::make_mut(&mut f.content).resize(size, 0);
        // REST + STOR never shortens a file: cut below what was fetched,
        // it is replaced whole.
        if f.fetched.is_some_and(|b| size < b) {
            f.fetched = None;
        }
        f.in_order = size == 0 || (f.in_order && size == was);
        f.dirty = f.path.is_some();
        Ok(())
    }

    /// Applies `step` given what the core returned (`actual`), and returns
    /// what it should have returned. Where the semantics allow several
    /// outcomes, `actual` picks one and the state follows it.
    fn apply(&mut self, step: &Step, actual: &Res, obs: Obs, store: &Store) -> Res {
        self.obs = obs;
        if let Some(Arm::Fail(FaultOp::Stat | FaultOp::List, k)) = self.arm {
            // A lookup that asked the server failed: nothing else happened.
            // (Steps on a descriptor look nothing up: their error is theirs.)
            if step.looks_up() && actual == &Err(store_errno(k)) {
                return Err(store_errno(k));
            }
        }
        match step {
            Step::Faulty(..) => unreachable!("unwrapped by the runner"),
            Step::OtherAppends { p, len, seed } => {
                if self.appending_at(p.path()) {
                    let Some(SNode::File(c)) = self.server.get_mut(p.path()) else {
                        unreachable!("appending to a file the server has");
                    };
                    Rc::make_mut(c).extend(pattern(*len as usize, *seed));
                }
                Ok(Out::Done)
            }
            Step::Create {
                p,
                excl,
                trunc,
                read,
            } => {
                let Some(h) = self.free_slot() else {
                    return Ok(Out::Done);
                };
                let h = &h;
                let p = p.path();
                self.parent_ok(p)?;
                match self.kind(p) {
                    Some(_) if *excl => Err(Errno(libc::EEXIST)),
                    Some(FileKind::Dir) => Err(Errno(libc::EISDIR)),
                    Some(_) => self.open(*h, p, *read, true, *trunc, false, actual, store),
                    None => {
                        let id = self.next_file;
                        self.next_file += 1;
                        self.files.insert(
                            id,
                            MFile {
                                path: Some(p.to_string()),
                                content: Rc::new(Vec::new()),
                                dirty: true,
                                on_server: false,
                                local: true,
                                in_order: true,
                                stream: None,
                                append_base: None,
                                overlay: None,
                                fetched: None,
                                maybe_gone: false,
                                handles: 1,
                                writers: 1,
                            },
                        );
                        self.view.insert(p.to_string(), VNode::Open(id));
                        self.handles[h.0 as usize] = Some(MHandle {
                            file: id,
                            read: *read,
                            write: true,
                            append: false,
                            sticky: None,
                        });
                        Ok(Out::Done)
                    }
                }
            }
            Step::Open {
                p,
                mode,
                trunc,
                append,
            } => {
                let Some(h) = self.free_slot() else {
                    return Ok(Out::Done);
                };
                let h = &h;
                let p = p.path();
                match self.lookup(p)? {
                    FileKind::Dir => Err(Errno(libc::EISDIR)),
                    _ => {
                        let (read, write) = match mode {
                            Mode::ReadOnly => (true, false),
                            Mode::WriteOnly => (false, true),
                            Mode::ReadWrite => (true, true),
                        };
                        self.open(*h, p, read, write, *trunc, *append, actual, store)
                    }
                }
            }
            Step::Write { h, at, len, seed } => {
                let Some(hd) = self.handle(*h).cloned() else {
                    return Ok(Out::Done);
                };
                if !hd.write {
                    return Err(Errno(libc::EBADF));
                }
                if let Some(e) = hd.sticky {
                    return Err(e);
                }
                let id = hd.file;
                let data = pattern(*len as usize, *seed);
                let offset = match (hd.append, at) {
                    (true, _) | (_, At::End) => self.files[&id].content.len(),
                    (false, At::Offset(o)) => *o as usize,
                };
                if self.files[&id].stream.is_some() {
                    if obs.fell_back {
                        self.unstream(id, actual, Some(*h), store)?;
                    } else {
                        let f = self.files.get_mut(&id).unwrap();
                        write_at(&mut f.content, offset, &data);
                        f.dirty = true;
                        return Ok(Out::Done);
                    }
                }
                self.start_appending_if_at_end(id, offset);
                let started = self.start_patching_if_inside(id, offset, data.len());
                assert_eq!(
                    started,
                    obs.unfetched,
                    "a write of {} bytes at {offset} began a patch without fetching: \
                     expected {started}, observed {}",
                    data.len(),
                    obs.unfetched
                );
                let f = self.files.get_mut(&id).unwrap();
                if f.append_base.is_some_and(|base| offset >= base) {
                    write_at(&mut f.content, offset, &data);
                    f.dirty = true;
                    return Ok(Out::Done);
                }
                if let Some(ranges) = &f.overlay {
                    if let Some(ranges) = admits(f.content.len(), ranges, offset, data.len()) {
                        f.overlay = Some(ranges);
                        write_at(&mut f.content, offset, &data);
                        f.dirty = true;
                        return Ok(Out::Done);
                    }
                }
                self.stage(id, actual)?;
                let f = self.files.get_mut(&id).unwrap();
                if offset != f.content.len() {
                    f.in_order = false;
                }
                write_at(&mut f.content, offset, &data);
                f.dirty = f.path.is_some();
                self.start_stream_if_due(id, *h, actual, store)?;
                Ok(Out::Done)
            }
            Step::Read { h, off, len } => {
                let Some(hd) = self.handle(*h).cloned() else {
                    return Ok(Out::Done);
                };
                if !hd.read {
                    return Err(Errno(libc::EBADF));
                }
                let id = hd.file;
                if self.files[&id].stream.is_some() {
                    // The upload is finished first and fetched back (§2).
                    // Its failure sticks to the writers, not to a reader
                    // (this read returns it).
                    let caller = hd.write.then_some(*h);
                    self.unstream(id, actual, caller, store)?;
                }
                if let Some(base) = self.files[&id].append_base {
                    // Before the server's end: the file is fetched first.
                    if (*off as usize) < base {
                        self.stage(id, actual)?;
                    }
                }
                // A patched file's written bytes are held here, the others
                // read from the server (which may fail as any read).
                let f = &self.files[&id];
                let bytes = Ok(Out::Bytes(slice(&f.content, *off, *len)));
                if f.local || f.append_base.is_some() {
                    return bytes;
                }
                if f.maybe_gone && actual == &Err(ESTALE) {
                    return Err(ESTALE);
                }
                let mut failures = Vec::new();
                if let Some(k) = self.fail_kind(FaultOp::OpenRead) {
                    failures.push(read_errno(k));
                }
                if self.breaks_read() {
                    failures.push(ETIMEDOUT);
                }
                match actual {
                    Err(e) if failures.contains(e) => Err(*e),
                    _ => bytes,
                }
            }
            Step::Truncate { t, size } => {
                let (id, caller) = match *t {
                    Target::Handle(h) => {
                        let Some(hd) = self.handle(h).cloned() else {
                            return Ok(Out::Done);
                        };
                        if !hd.write {
                            return Err(Errno(libc::EINVAL));
                        }
                        if let Some(e) = hd.sticky {
                            return Err(e);
                        }
                        self.files.get_mut(&hd.file).unwrap().handles += 1;
                        (hd.file, Some(h))
                    }
                    Target::Path(p) => {
                        let p = p.path();
                        if self.lookup(p)? == FileKind::Dir {
                            return Err(Errno(libc::EISDIR));
                        }
                        (self.acquire(p), None)
                    }
                };
                let mut result = self.truncate(id, *size as usize, actual, caller, store);
                if result.is_ok() && self.files[&id].writers == 0 {
                    // truncate(1) of a file nobody writes is uploaded at once.
                    result = self.save(id, Some(actual), caller, store);
                }
                self.release_file(id, store);
                result.map(|()| Out::Done)
            }
            Step::Flush(h) => {
                let Some(hd) = self.handle(*h).cloned() else {
                    return Ok(Out::Done);
                };
                if let Some(e) = hd.sticky {
                    return Err(e);
                }
                let f = &self.files[&hd.file];
                if hd.write || (f.dirty && !f.on_server) {
                    self.save(hd.file, Some(actual), Some(*h), store)?;
                }
                Ok(Out::Done)
            }
            Step::Fsync(h) => {
                let Some(hd) = self.handle(*h).cloned() else {
                    return Ok(Out::Done);
                };
                if let Some(e) = hd.sticky {
                    return Err(e);
                }
                self.save(hd.file, Some(actual), Some(*h), store)
                    .map(|()| Out::Done)
            }
            Step::Release(h) => {
                let Some(hd) = self.handle(*h).cloned() else {
                    return Ok(Out::Done);
                };
                let result = match hd.sticky {
                    Some(e) => Err(e),
                    None if hd.write => self.save(hd.file, Some(actual), Some(*h), store),
                    None => Ok(()),
                };
                self.handles[h.0 as usize] = None;
                if hd.write {
                    self.files.get_mut(&hd.file).unwrap().writers -= 1;
                }
                self.release_file(hd.file, store);
                result.map(|()| Out::Done)
            }
            Step::Rename { from, to } => {
                let (from, to) = (from.path(), to.path());
                // §4, as for rmdir: a directory renamed over a non-empty
                // one the mount has not listed is found non-empty when the
                // server refuses to remove it, and a fault there is what
                // the caller gets instead.
                let over_full_dir = self.kind(from) == Some(FileKind::Dir)
                    && self.kind(to) == Some(FileKind::Dir)
                    && from != to
                    && self.has_children(to);
                if let Some(k) = self.fail_kind(FaultOp::Delete) {
                    if over_full_dir && actual == &Err(store_errno(k)) {
                        return Err(store_errno(k));
                    }
                }
                self.rename(from, to)
            }
            Step::Unlink(p) => {
                let p = p.path();
                if self.lookup(p)? == FileKind::Dir {
                    return Err(Errno(libc::EISDIR));
                }
                let open = self.open_at(p);
                if let Some(id) = open {
                    self.before_orphaning(id);
                }
                let on_server = open.is_none_or(|id| self.files[&id].on_server);
                if on_server {
                    if let Some(k) = self.fail_kind(FaultOp::Delete) {
                        return Err(store_errno(k));
                    }
                    self.server.remove(p);
                }
                self.view.remove(p);
                if let Some(id) = open {
                    self.orphan(id);
                }
                Ok(Out::Done)
            }
            Step::Mkdir(p) => {
                let p = p.path();
                self.parent_ok(p)?;
                if let Some(k) = self.fail_kind(FaultOp::Mkdir) {
                    if actual == &Err(store_errno(k)) {
                        return Err(store_errno(k));
                    }
                }
                if self.kind(p).is_some() {
                    return Err(Errno(libc::EEXIST));
                }
                self.server.insert(p.to_string(), SNode::Dir);
                self.view.insert(p.to_string(), VNode::Dir);
                Ok(Out::Done)
            }
            Step::Rmdir(p) => {
                let p = p.path();
                match self.lookup(p)? {
                    FileKind::Dir => {}
                    _ => return Err(Errno(libc::ENOTDIR)),
                }
                if let Some(k) = self.fail_kind(FaultOp::Rmdir) {
                    // §4: ENOTEMPTY if the mount knows of entries; a
                    // directory it has not listed is asked with RMD.
                    if !self.has_children(p) || actual == &Err(store_errno(k)) {
                        return Err(store_errno(k));
                    }
                }
                if self.has_children(p) {
                    return Err(Errno(libc::ENOTEMPTY));
                }
                self.server.remove(p);
                self.view.remove(p);
                Ok(Out::Done)
            }
            Step::Chmod { t, mode } => {
                let id = self.attr_target(*t)?;
                if let Some(Err(e)) = id.map(|id| self.attr_on_orphan(id, actual)) {
                    return Err(e);
                }
                if !id.is_some_and(|id| self.files[&id].dirty) {
                    if let Some(k) = self.fail_kind(FaultOp::Chmod) {
                        return Err(store_errno(k));
                    }
                }
                Ok(Out::Perm(*mode))
            }
            Step::Touch { t, secs } => {
                let id = self.attr_target(*t)?;
                if let Some(Err(e)) = id.map(|id| self.attr_on_orphan(id, actual)) {
                    return Err(e);
                }
                if !id.is_some_and(|id| self.files[&id].dirty) {
                    if let Some(k) = self.fail_kind(FaultOp::SetMtime) {
                        return Err(store_errno(k));
                    }
                }
                Ok(Out::Mtime(BASE_TIME + *secs as u64))
            }
        }
    }

    /// The open file a chmod/utimens goes to (None: a closed file or a
    /// directory, which the server changes at once).
    fn attr_target(&self, t: Target) -> Result<Option<usize>, Errno> {
        match t {
            Target::Handle(h) => match self.handle(h) {
                None => Err(Errno(-1)),
                Some(hd) => match hd.sticky {
                    Some(e) => Err(e),
                    None => Ok(Some(hd.file)),
                },
            },
            Target::Path(p) => {
                self.lookup(p.path())?;
                Ok(self.open_at(p.path()))
            }
        }
    }

    /// chmod or utimens of a file with no name on the server (orphaned, or
    /// new and its upload failed) and no pending changes: the server has
    /// nothing to change, ENOENT. Not documented either way, so accepted.
    fn attr_on_orphan(&self, id: usize, actual: &Res) -> Result<(), Errno> {
        let f = &self.files[&id];
        let nameless = f.path.is_none() || (!f.on_server && !f.dirty);
        if nameless && !f.dirty && actual == &Err(ENOENT) {
            return Err(ENOENT);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        h: H,
        p: &str,
        read: bool,
        write: bool,
        trunc: bool,
        append: bool,
        actual: &Res,
        store: &Store,
    ) -> Res {
        let id = self.acquire(p);
        if write && trunc {
            if let Err(e) = self.truncate(id, 0, actual, Some(h), store) {
                self.release_file(id, store);
                return Err(e);
            }
        }
        if write {
            self.files.get_mut(&id).unwrap().writers += 1;
        }
        self.handles[h.0 as usize] = Some(MHandle {
            file: id,
            read,
            write,
            append,
            sticky: None,
        });
        Ok(Out::Done)
    }

    fn rename(&mut self, from: &str, to: &str) -> Res {
        // Both parents are looked up (as the kernel does) before the core
        // sees the rename and says that one is not a directory.
        self.parent_found(from)?;
        self.parent_found(to)?;
        self.parent_ok(from)?;
        self.parent_ok(to)?;
        let src = self.kind(from).ok_or(ENOENT)?;
        if from == to {
            return Ok(Out::Done);
        }
        let src_dir = src == FileKind::Dir;
        if src_dir && is_under(to, from) {
            return Err(Errno(libc::EINVAL));
        }
        match (src_dir, self.kind(to)) {
            (true, Some(FileKind::Dir)) if self.has_children(to) => {
                return Err(Errno(libc::ENOTEMPTY))
            }
            (true, Some(k)) if k != FileKind::Dir => return Err(Errno(libc::ENOTDIR)),
            (false, Some(FileKind::Dir)) => return Err(Errno(libc::EISDIR)),
            _ => {}
        }
        if let Some(id) = self.open_at(to) {
            self.before_orphaning(id);
        }
        // Not on the server: a file created here and not uploaded yet, or
        // whose first upload failed (it shows, empty, while open).
        let local_only = self
            .open_at(from)
            .is_some_and(|id| !self.files[&id].on_server);
        if local_only && self.kind(to).is_some() {
            // §4: the target is replaced at once; the file moving there
            // reaches the server at its upload, so the old one is deleted
            // now (a new file there, not uploaded, has nothing to delete).
            let target_on_server = match self.open_at(to) {
                Some(id) => self.files[&id].on_server,
                None => self.server.contains_key(to),
            };
            if target_on_server {
                if let Some(k) = self.fail_kind(FaultOp::Delete) {
                    return Err(store_errno(k));
                }
                self.server.remove(to);
            }
        }
        if !local_only {
            if let Some(k) = self.fail_kind(FaultOp::Rename) {
                // A refused rename over an existing target is retried after
                // deleting the target (§4: not atomic then).
                let retried = self.kind(to).is_some()
                    && !matches!(k, FaultKind::Unavailable | FaultKind::NotFound);
                if !retried {
                    return Err(store_errno(k));
                }
            }
            move_tree(&mut self.server, from, to);
        }
        if let Some(id) = self.open_at(to) {
            self.orphan(id);
        }
        move_tree(&mut self.view, from, to);
        for f in self.files.values_mut() {
            if let Some(p) = &f.path {
                if p == from || is_under(p, from) {
                    f.path = Some(moved(p, from, to));
                }
            }
            if let Some(s) = &mut f.stream {
                if is_under(&s.dest, from) {
                    s.dest = moved(&s.dest, from, to);
                }
            }
        }
        Ok(Out::Done)
    }
}

/// Moves `from` and everything under it to `to`, replacing `to`.
fn move_tree<V>(map: &mut BTreeMap<String, V>, from: &str, to: &str) {
    let doomed: Vec<String> = map
        .keys()
        .filter(|k| k.as_str() == to || is_under(k, to))
        .cloned()
        .collect();
    for k in doomed {
        map.remove(&k);
    }
    let moving: Vec<String> = map
        .keys()
        .filter(|k| k.as_str() == from || is_under(k, from))
        .cloned()
        .collect();
    for k in moving {
        let v = map.remove(&k).unwrap();
        map.insert(moved(&k, from, to), v);
    }
}

// ----- The system under test -----

struct Harness {
    store: Arc<Store>,
    fs: Fs,
    slots: [Option<(Fh, Ino)>; SLOTS],
    writable: [bool; SLOTS],
    _spool: tempfile::TempDir,
}

fn errno(e: ftpsfs::fs::Error) -> Errno {
    Errno(e.errno())
}

impl Harness {
    fn new(rest_stor: StoreAtOffset) -> Harness {
        let spool = tempfile::tempdir().expect("temp dir");
        let store = new_store();
        let config = FsConfig {
            attr_ttl: Duration::from_secs(3600),
            dir_ttl: Duration::from_secs(3600),
            spool_dir: spool.path().join("spool"),
            spool_memory_limit: SPOOL_MEMORY,
            read_only: false,
            uid: 1000,
            gid: 1000,
            umask: 0,
            read_ahead: 256 * KIB,
            read_streams: 3,
            segment_size: 8 * 1024 * 1024,
            listing_prefetch: 0,
            write_in_place: false,
            revalidate_on_open: false,
            patch_in_place: true,
            patch_min_size: PATCH_MIN as u64,
            retry_time: Duration::from_secs(60),
            verify: Verify::Digest,
            upload_window: 16 * 1024 * 1024,
        };
        server(&store).set_store_at_offset(rest_stor);
        let fs = Fs::new(store.clone(), config);
        Harness {
            store,
            fs,
            slots: [None; SLOTS],
            writable: [false; SLOTS],
            _spool: spool,
        }
    }

    /// The inode of a path, looked up as the kernel does.
    fn ino(&self, path: &str) -> Result<Ino, Errno> {
        let mut ino = ROOT_INO;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            ino = self.fs.lookup(ino, comp.as_bytes()).map_err(errno)?.ino;
        }
        Ok(ino)
    }

    fn free_slot(&self) -> Option<H> {
        (0..SLOTS)
            .find(|&i| self.slots[i].is_none())
            .map(|i| H(i as u8))
    }

    fn parent(&self, path: &str) -> Result<Ino, Errno> {
        self.ino(parent_of(path))
    }

    fn target(&self, t: Target) -> Option<Result<(Ino, Option<Fh>), Errno>> {
        match t {
            Target::Handle(h) => self.slots[h.0 as usize].map(|(fh, ino)| Ok((ino, Some(fh)))),
            Target::Path(p) => Some(self.ino(p.path()).map(|ino| (ino, None))),
        }
    }

    fn run(&mut self, step: &Step) -> Res {
        let done = |r: Result<(), ftpsfs::fs::Error>| r.map(|()| Out::Done).map_err(errno);
        match step {
            Step::Faulty(..) => unreachable!("unwrapped by the runner"),
            // Not through the mount: see run_case.
            Step::OtherAppends { .. } => Ok(Out::Done),
            Step::Create {
                p,
                excl,
                trunc,
                read,
            } => {
                let Some(h) = self.free_slot() else {
                    return Ok(Out::Done);
                };
                let p = p.path();
                let parent = self.parent(p)?;
                let flags = OpenFlags {
                    read: *read,
                    write: true,
                    truncate: *trunc,
                    append: false,
                    exclusive: *excl,
                };
                let (attr, fh) = self
                    .fs
                    .create(parent, name_of(p).as_bytes(), 0o644, flags)
                    .map_err(errno)?;
                self.slots[h.0 as usize] = Some((fh, attr.ino));
                self.writable[h.0 as usize] = true;
                Ok(Out::Done)
            }
            Step::Open {
                p,
                mode,
                trunc,
                append,
            } => {
                let Some(h) = self.free_slot() else {
                    return Ok(Out::Done);
                };
                let ino = self.ino(p.path())?;
                let flags = OpenFlags {
                    read: !matches!(mode, Mode::WriteOnly),
                    write: !matches!(mode, Mode::ReadOnly),
                    truncate: *trunc,
                    append: *append,
                    exclusive: false,
                };
                let fh = self.fs.open(ino, flags).map_err(errno)?;
                self.slots[h.0 as usize] = Some((fh, ino));
                self.writable[h.0 as usize] = flags.write;
                Ok(Out::Done)
            }
            Step::Write { h, at, len, seed } => {
                let Some((fh, _)) = self.slots[h.0 as usize] else {
                    return Ok(Out::Done);
                };
                let offset = match at {
                    At::End => self
                        .fs
                        .getattr(self.slots[h.0 as usize].unwrap().1)
                        .map_or(0, |a| a.size),
                    At::Offset(o) => *o as u64,
                };
                let data = pattern(*len as usize, *seed);
                let n = self.fs.write(fh, offset, &data).map_err(errno)?;
                assert_eq!(n as usize, data.len(), "a short write");
                Ok(Out::Done)
            }
            Step::Read { h, off, len } => {
                let Some((fh, _)) = self.slots[h.0 as usize] else {
                    return Ok(Out::Done);
                };
                self.fs
                    .read(fh, *off as u64, *len)
                    .map(Out::Bytes)
                    .map_err(errno)
            }
            Step::Truncate { t, size } => {
                let Some(target) = self.target(*t) else {
                    return Ok(Out::Done);
                };
                if let Target::Handle(h) = t {
                    if !self.writable[h.0 as usize] {
                        // The kernel refuses ftruncate of a descriptor not
                        // open for writing; the core never sees it.
                        return Err(Errno(libc::EINVAL));
                    }
                }
                let (ino, fh) = target?;
                let changes = SetAttr {
                    size: Some(*size as u64),
                    ..SetAttr::default()
                };
                self.fs
                    .setattr(ino, fh, changes)
                    .map(|_| Out::Done)
                    .map_err(errno)
            }
            Step::Flush(h) => match self.slots[h.0 as usize] {
                None => Ok(Out::Done),
                Some((fh, _)) => done(self.fs.flush(fh)),
            },
            Step::Fsync(h) => match self.slots[h.0 as usize] {
                None => Ok(Out::Done),
                Some((fh, _)) => done(self.fs.fsync(fh)),
            },
            Step::Release(h) => match self.slots[h.0 as usize].take() {
                None => Ok(Out::Done),
                Some((fh, _)) => done(self.fs.release(fh)),
            },
            Step::Rename { from, to } => {
                let (from, to) = (from.path(), to.path());
                let fp = self.parent(from)?;
                let tp = self.parent(to)?;
                done(self.fs.rename(
                    fp,
                    name_of(from).as_bytes(),
                    tp,
                    name_of(to).as_bytes(),
                    false,
                ))
            }
            Step::Unlink(p) => {
                let parent = self.parent(p.path())?;
                done(self.fs.unlink(parent, name_of(p.path()).as_bytes()))
            }
            Step::Mkdir(p) => {
                let parent = self.parent(p.path())?;
                self.fs
                    .mkdir(parent, name_of(p.path()).as_bytes(), 0o755)
                    .map(|_| Out::Done)
                    .map_err(errno)
            }
            Step::Rmdir(p) => {
                let parent = self.parent(p.path())?;
                done(self.fs.rmdir(parent, name_of(p.path()).as_bytes()))
            }
            Step::Chmod { t, mode } => {
                let Some(target) = self.target(*t) else {
                    return Err(Errno(-1));
                };
                let (ino, fh) = target?;
                let changes = SetAttr {
                    mode: Some(*mode as u32),
                    ..SetAttr::default()
                };
                self.fs
                    .setattr(ino, fh, changes)
                    .map(|a| Out::Perm(a.perm))
                    .map_err(errno)
            }
            Step::Touch { t, secs } => {
                let Some(target) = self.target(*t) else {
                    return Err(Errno(-1));
                };
                let (ino, fh) = target?;
                let time = UNIX_EPOCH + Duration::from_secs(BASE_TIME + *secs as u64);
                let changes = SetAttr {
                    mtime: Some(time),
                    ..SetAttr::default()
                };
                self.fs
                    .setattr(ino, fh, changes)
                    .map(|a| {
                        Out::Mtime(
                            a.mtime
                                .duration_since(UNIX_EPOCH)
                                .map_or(0, |d| d.as_secs()),
                        )
                    })
                    .map_err(errno)
            }
        }
    }
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".part") && name.contains(".ftpsfs-")
}

/// Compares what the mount shows and what the server holds with the model.
fn check(model: &Model, sut: &Harness) -> Result<(), String> {
    // The server: exactly the model's, plus what uploads in progress may
    // have put there (a streaming new file under its name, a temporary
    // name beside a file streaming over an existing one).
    let mut store: BTreeMap<String, SNode> = BTreeMap::new();
    for p in server(&sut.store).paths() {
        let p = String::from_utf8(p).expect("utf-8 path");
        let node = match server(&sut.store).file(p.as_bytes()) {
            Some(c) => SNode::File(Rc::new(c)),
            None => SNode::Dir,
        };
        store.insert(p, node);
    }
    let streams: Vec<&MStream> = model
        .files
        .values()
        .filter_map(|f| f.stream.as_ref())
        .collect();
    for (p, node) in &store {
        let expected = model.server.get(p);
        if expected == Some(node) {
            continue;
        }
        let in_progress = streams.iter().any(|s| {
            if s.temp {
                is_temp_name(name_of(p))
            } else {
                &s.dest == p
            }
        });
        let left_over = model.leftovers.contains(name_of(p));
        if expected.is_none() && (in_progress || left_over) {
            continue;
        }
        return Err(format!(
            "the server has {p:?} = {}, the model {}",
            describe(Some(node)),
            describe(expected)
        ));
    }
    for (p, node) in &model.server {
        if !store.contains_key(p) {
            return Err(format!("the server lacks {p:?} = {}", describe(Some(node))));
        }
    }
    // What the mount shows: every name the steps use and every name the
    // model has, by lookup; every directory, by readdir.
    let names: BTreeSet<String> = PATHS
        .iter()
        .map(|p| p.to_string())
        .chain(model.view.keys().cloned())
        .collect();
    for p in &names {
        let expected = model.lookup(p).map(|k| {
            let size = match model.shown(p) {
                Some(SNode::File(c)) => c.len() as u64,
                _ => 0,
            };
            (k, size)
        });
        let got = sut.ino(p).and_then(|ino| {
            let a = sut.fs.getattr(ino).map_err(errno)?;
            Ok((a.kind, if a.kind == FileKind::Dir { 0 } else { a.size }))
        });
        if got != expected {
            return Err(format!(
                "{p:?}: the mount shows {got:?}, the model {expected:?}"
            ));
        }
    }
    let dirs = std::iter::once(String::new()).chain(
        model
            .view
            .iter()
            .filter(|(_, v)| matches!(v, VNode::Dir))
            .map(|(k, _)| k.clone()),
    );
    for dir in dirs {
        let ino = sut
            .ino(&dir)
            .map_err(|e| format!("lookup of {dir:?}: {e:?}"))?;
        let listed: BTreeMap<String, FileKind> = sut
            .fs
            .readdir(ino)
            .map_err(|e| format!("readdir {dir:?}: {e}"))?
            .into_iter()
            .map(|item| (String::from_utf8(item.name).unwrap(), item.kind))
            .collect();
        let expected = model.children(&dir);
        if listed != expected {
            return Err(format!(
                "readdir {dir:?}: {listed:?}, the model {expected:?}"
            ));
        }
    }
    // The size each open descriptor's file shows.
    for (i, slot) in sut.slots.iter().enumerate() {
        let m = model.handles[i].as_ref();
        match (slot, m) {
            (None, None) => {}
            (Some((_, ino)), Some(hd)) => {
                let f = &model.files[&hd.file];
                let size = sut.fs.getattr(*ino).map(|a| a.size).map_err(errno);
                if size != Ok(f.content.len() as u64) {
                    return Err(format!(
                        "h{i}: getattr size {size:?}, the model {}",
                        f.content.len()
                    ));
                }
            }
            _ => return Err(format!("h{i}: open in one and not the other")),
        }
    }
    // Nothing open: the mount shows exactly what the server has.
    if model.files.is_empty() {
        let shown: BTreeMap<String, SNode> = model
            .view
            .keys()
            .map(|k| (k.clone(), model.shown(k).unwrap()))
            .collect();
        if shown != model.server {
            return Err(format!(
                "with nothing open the model's view and server differ: {:?} vs {:?}",
                shown.keys().collect::<Vec<_>>(),
                model.server.keys().collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

fn describe(node: Option<&SNode>) -> String {
    match node {
        None => "nothing".into(),
        Some(SNode::Dir) => "a directory".into(),
        Some(SNode::File(c)) => format!("a file of {} bytes (digest {:016x})", c.len(), digest(c)),
    }
}

/// What the server holds before the first step.
#[derive(Clone, Debug)]
enum Init {
    Dir(P),
    File(P, u32, u8),
}

fn run_case(rest_stor: StoreAtOffset, init: &[Init], steps: &[Step]) -> Result<(), TestCaseError> {
    let mut sut = Harness::new(rest_stor);
    let mut model = Model {
        rest_stor,
        ..Model::default()
    };
    for i in init {
        let (p, node) = match *i {
            Init::Dir(p) => (p.path(), SNode::Dir),
            Init::File(p, len, seed) => {
                (p.path(), SNode::File(Rc::new(pattern(len as usize, seed))))
            }
        };
        let parent = parent_of(p);
        let parent_is_dir = parent.is_empty() || model.server.get(parent) == Some(&SNode::Dir);
        if model.server.contains_key(p) || !parent_is_dir {
            continue;
        }
        match &node {
            SNode::Dir => server(&sut.store).put_dir(p.as_bytes()),
            SNode::File(c) => server(&sut.store).put_file(p.as_bytes(), c),
        }
        model.view.insert(
            p.to_string(),
            match &node {
                SNode::Dir => VNode::Dir,
                SNode::File(c) => VNode::File(c.clone()),
            },
        );
        model.server.insert(p.to_string(), node);
    }
    let mut trace = Vec::new();
    let all_released = (0..SLOTS).map(|i| Step::Release(H(i as u8)));
    for (i, step) in steps.iter().cloned().chain(all_released).enumerate() {
        let (arm, inner) = match &step {
            Step::Faulty(arm, inner) => (Some(*arm), &**inner),
            other => (None, other),
        };
        let before = sut.fs.stats();
        let uploads_before = uploads_opened(&sut.store);
        let resumes_before = resumes_opened(&sut.store);
        if let Some(arm) = &arm {
            arm_fault(&sut.store, arm);
        }
        if let Step::OtherAppends { p, len, seed } = inner {
            if model.appending_at(p.path()) {
                let path = p.path().as_bytes();
                let mut c = server(&sut.store).file(path).expect("the server's file");
                c.extend(pattern(*len as usize, *seed));
                server(&sut.store).put_file(path, &c);
            }
        }
        let actual = sut.run(inner);
        if arm.is_some() {
            clear_faults(&sut.store);
        }
        let obs = Obs {
            fell_back: sut.fs.stats().stream_fallbacks > before.stream_fallbacks,
            upload_opened: uploads_opened(&sut.store) > uploads_before,
            resumed_opened: resumes_opened(&sut.store) > resumes_before,
            patched: sut.fs.stats().patches > before.patches,
            unfetched: sut.fs.stats().unfetched_patches > before.unfetched_patches,
        };
        model.arm = arm;
        let expected = model.apply(inner, &actual, obs, &sut.store);
        model.arm = None;
        if let Some(Arm::Fail(FaultOp::Delete, _)) = arm {
            for p in server(&sut.store).paths() {
                let name = name_of(std::str::from_utf8(&p).unwrap());
                if is_temp_name(name) {
                    model.leftovers.insert(name.to_string());
                }
            }
        }
        trace.push(format!("{i:>3}: {step:?} -> {actual:?}"));
        let failure = if actual != expected {
            Some(format!(
                "step {i} returned {actual:?}, the model says {expected:?}"
            ))
        } else if sut.fs.stats().appends != model.appends {
            Some(format!(
                "after step {i}: {} appends, the model {}",
                sut.fs.stats().appends,
                model.appends
            ))
        } else {
            check(&model, &sut)
                .err()
                .map(|e| format!("after step {i}: {e}"))
        };
        if let Some(failure) = failure {
            return Err(TestCaseError::fail(format!(
                "{failure}\nsteps run (descriptor slots as filled, results):\n{}",
                trace.join("\n")
            )));
        }
    }
    // Everything closed: each file reads back as the server has it.
    for (p, node) in &model.server {
        if let SNode::File(c) = node {
            let ino = sut
                .ino(p)
                .map_err(|e| TestCaseError::fail(format!("{p}: {e:?}")))?;
            let read = OpenFlags {
                read: true,
                ..OpenFlags::default()
            };
            let fh = sut.fs.open(ino, read).expect("open to read back");
            let got = sut.fs.read(fh, 0, c.len() as u32 + 1).expect("read back");
            sut.fs.release(fh).expect("release after reading back");
            prop_assert!(
                got == **c,
                "{} reads back {} bytes, not {}",
                p,
                got.len(),
                c.len()
            );
        }
    }
    prop_assert!(
        !server(&sut.store).paths().iter().any(|p| {
            let name = name_of(std::str::from_utf8(p).unwrap());
            is_temp_name(name) && !model.leftovers.contains(name)
        }),
        "a temporary name is left on the server: {:?}",
        server(&sut.store).paths()
    );
    Ok(())
}

// ----- The generator -----

/// Mostly names whose parent is likely to exist (the root, and "d", which
/// every case starts with), so that steps get past their lookups.
fn path() -> impl Strategy<Value = P> {
    // Weights by index into PATHS: "a", "b", "d", "a/x", "b/x", "d/x", "d/y".
    prop_oneof![
        3 => Just(P(0)),
        3 => Just(P(1)),
        1 => Just(P(2)),
        1 => Just(P(3)),
        1 => Just(P(4)),
        3 => Just(P(5)),
        2 => Just(P(6)),
    ]
}

/// Mostly the slots that open steps fill first.
fn slot() -> impl Strategy<Value = H> {
    prop_oneof![4 => Just(H(0)), 2 => Just(H(1)), 1 => Just(H(2))]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        slot().prop_map(Target::Handle),
        path().prop_map(Target::Path)
    ]
}

fn write_len() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => 1u32..=64,
        2 => 1u32..=4096,
        2 => 20_000u32..=100_000,
    ]
}

fn offset() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..64, 1 => 0u32..200_000]
}

fn plain_step() -> impl Strategy<Value = Step> {
    let mode = prop_oneof![
        Just(Mode::ReadOnly),
        Just(Mode::WriteOnly),
        Just(Mode::ReadWrite)
    ];
    let at = prop_oneof![3 => Just(At::End), 1 => offset().prop_map(At::Offset)];
    prop_oneof![
        3 => (path(), any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(p, excl, trunc, read)| Step::Create { p, excl, trunc, read }),
        4 => (path(), mode, any::<bool>(), any::<bool>())
            .prop_map(|(p, mode, trunc, append)| Step::Open { p, mode, trunc, append }),
        // `>>`: an existing file written at its end is appended to.
        2 => path().prop_map(|p| Step::Open { p, mode: Mode::WriteOnly, trunc: false, append: true }),
        8 => (slot(), at, write_len(), any::<u8>())
            .prop_map(|(h, at, len, seed)| Step::Write { h, at, len, seed }),
        // A small change inside a file, which a save may patch in place.
        2 => (slot(), offset(), 1u32..=64, any::<u8>())
            .prop_map(|(h, off, len, seed)| Step::Write { h, at: At::Offset(off), len, seed }),
        3 => (slot(), offset(), prop_oneof![1u32..=100, 1u32..=300_000])
            .prop_map(|(h, off, len)| Step::Read { h, off, len }),
        2 => (target(), prop_oneof![Just(0u32), 0u32..100, 0u32..150_000])
            .prop_map(|(t, size)| Step::Truncate { t, size }),
        1 => slot().prop_map(Step::Flush),
        1 => slot().prop_map(Step::Fsync),
        3 => slot().prop_map(Step::Release),
        2 => (path(), path()).prop_map(|(from, to)| Step::Rename { from, to }),
        1 => path().prop_map(Step::Unlink),
        2 => path().prop_map(Step::Mkdir),
        1 => path().prop_map(Step::Rmdir),
        1 => (target(), prop_oneof![Just(0o600u16), Just(0o755u16)])
            .prop_map(|(t, mode)| Step::Chmod { t, mode }),
        1 => (target(), 0u32..1000).prop_map(|(t, secs)| Step::Touch { t, secs }),
        1 => (path(), 1u32..=64, any::<u8>())
            .prop_map(|(p, len, seed)| Step::OtherAppends { p, len, seed }),
    ]
}

fn fault_kind() -> impl Strategy<Value = FaultKind> {
    prop_oneof![
        Just(FaultKind::Unavailable),
        Just(FaultKind::PermissionDenied),
        Just(FaultKind::NoSpace),
        Just(FaultKind::NotFound),
        Just(FaultKind::Failed),
    ]
}

/// The next call of one of `ops` fails.
fn fail(ops: impl Strategy<Value = FaultOp>) -> impl Strategy<Value = Arm> {
    (ops, fault_kind(), any::<bool>()).prop_map(|(op, kind, flip)| match (op, kind) {
        // A server without APPE (500/502) as often as one that denies it.
        (FaultOp::Append, FaultKind::PermissionDenied) if flip => {
            Arm::Fail(op, FaultKind::Unsupported)
        }
        // A server that says an existing name is missing (to a lookup,
        // RMD or DELE): the core believes it and caches the name as
        // absent (§1, negative entries) until the TTL, which the model
        // does not run out. Not a fault but a lie.
        (FaultOp::List | FaultOp::Stat | FaultOp::Rmdir | FaultOp::Delete, FaultKind::NotFound) => {
            Arm::Fail(op, FaultKind::Unavailable)
        }
        _ => Arm::Fail(op, kind),
    })
}

fn arm() -> impl Strategy<Value = Arm> {
    let op = prop_oneof![
        Just(FaultOp::List),
        Just(FaultOp::Stat),
        Just(FaultOp::OpenRead),
        Just(FaultOp::Upload),
        Just(FaultOp::Append),
        Just(FaultOp::Delete),
        Just(FaultOp::Mkdir),
        Just(FaultOp::Rmdir),
        Just(FaultOp::Rename),
        Just(FaultOp::Chmod),
        Just(FaultOp::SetMtime),
    ];
    prop_oneof![
        4 => fail(op),
        1 => (0u32..150_000).prop_map(Arm::BreakUpload),
        1 => (0u32..150_000).prop_map(Arm::BreakRead),
    ]
}

/// The faults of an upload at flush, fsync or close: of an append (its
/// size asked, APPE, resumed when cut) or of a file replaced whole.
fn save_arm() -> impl Strategy<Value = Arm> {
    let op = prop_oneof![
        2 => Just(FaultOp::Stat),
        3 => Just(FaultOp::Append),
        1 => Just(FaultOp::OpenRead),
        1 => Just(FaultOp::Upload),
        1 => Just(FaultOp::Rename),
        2 => Just(FaultOp::UploadAt),
        1 => Just(FaultOp::Size),
    ];
    prop_oneof![
        4 => fail(op),
        1 => prop_oneof![0u32..64, 0u32..150_000].prop_map(Arm::BreakUpload),
        1 => Just(Arm::Corrupt),
    ]
}

fn save_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        slot().prop_map(Step::Flush),
        slot().prop_map(Step::Fsync),
        slot().prop_map(Step::Release),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => plain_step(),
        2 => (arm(), plain_step()).prop_map(|(a, s)| Step::Faulty(a, Box::new(s))),
        1 => (save_arm(), save_step()).prop_map(|(a, s)| Step::Faulty(a, Box::new(s))),
    ]
}

fn init() -> impl Strategy<Value = Init> {
    prop_oneof![
        1 => path().prop_map(Init::Dir),
        2 => (path(), prop_oneof![0u32..100, 0u32..150_000], any::<u8>())
            .prop_map(|(p, len, seed)| Init::File(p, len, seed)),
    ]
}

/// What the server does with REST + STOR: each way a server answers the
/// probe (vsftpd, Pure-FTPd, ProFTPD, a probe that could not tell).
fn rest_stor() -> impl Strategy<Value = StoreAtOffset> {
    prop_oneof![
        3 => Just(StoreAtOffset::InPlace),
        1 => Just(StoreAtOffset::Truncates),
        1 => Just(StoreAtOffset::Refused),
        1 => Just(StoreAtOffset::Unknown),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_core_does_what_semantics_md_promises(
        init in proptest::collection::vec(init(), 0..5)
            .prop_map(|more| [Init::Dir(P(2))].into_iter().chain(more).collect::<Vec<_>>()),
        steps in proptest::collection::vec(step(), 1..30),
        rest_stor in rest_stor(),
    ) {
        run_case(rest_stor, &init, &steps)?;
    }
}

/// Each path of an append (SEMANTICS §3) at least once, whatever the
/// random cases meet: "a" (10 bytes) and "b" (100 bytes) are on the server,
/// "a" is opened into h0 and 5 bytes are written at its end.
#[test]
fn every_path_of_an_append() {
    use Step::*;
    const A: P = P(0);
    const B: P = P(1);
    const D: P = P(2);
    let h0 = H(0);
    let write = |at, len| Write {
        h: h0,
        at,
        len,
        seed: 7,
    };
    let read = |off, len| Read { h: h0, off, len };
    let faulty = |arm, step| Faulty(arm, Box::new(step));
    let fail = |op, kind| Arm::Fail(op, kind);
    let open_b = Open {
        p: B,
        mode: Mode::ReadWrite,
        trunc: false,
        append: false,
    };
    let write_h1 = |at| Write {
        h: H(1),
        at,
        len: 1,
        seed: 1,
    };
    let cases: Vec<Vec<Step>> = vec![
        // Appended at flush, again at close.
        vec![Flush(h0), write(At::End, 3), Release(h0)],
        // Its size asked (SIZE, not a listing): a lost connection waited
        // out; another error, or another size, and the file is replaced
        // whole.
        vec![faulty(
            fail(FaultOp::Size, FaultKind::Unavailable),
            Fsync(h0),
        )],
        vec![faulty(fail(FaultOp::Size, FaultKind::Failed), Flush(h0))],
        vec![
            OtherAppends {
                p: A,
                len: 4,
                seed: 1,
            },
            Flush(h0),
        ],
        vec![
            OtherAppends {
                p: A,
                len: 4,
                seed: 1,
            },
            faulty(fail(FaultOp::OpenRead, FaultKind::Failed), Flush(h0)),
            write(At::End, 1),
        ],
        // Cut: resumed from the server's size.
        vec![faulty(
            fail(FaultOp::Append, FaultKind::Unavailable),
            Flush(h0),
        )],
        // O_APPEND: at the end whatever the offset, without a fetch.
        vec![
            Open {
                p: A,
                mode: Mode::WriteOnly,
                trunc: false,
                append: true,
            },
            faulty(Arm::BreakRead(0), write_h1(At::Offset(0))),
            Release(h0),
            faulty(Arm::BreakRead(0), write_h1(At::Offset(0))),
        ],
        vec![faulty(Arm::BreakUpload(2), Flush(h0)), write(At::End, 1)],
        // Refused: replaced, and no more appends in this mount.
        vec![
            faulty(fail(FaultOp::Append, FaultKind::Unsupported), Flush(h0)),
            open_b.clone(),
            faulty(
                fail(FaultOp::OpenRead, FaultKind::Failed),
                write_h1(At::End),
            ),
        ],
        // ... but a file appended to already still is.
        vec![
            open_b.clone(),
            write_h1(At::End),
            faulty(fail(FaultOp::Append, FaultKind::Unsupported), Flush(h0)),
            Flush(H(1)),
        ],
        vec![faulty(
            fail(FaultOp::Append, FaultKind::PermissionDenied),
            Release(h0),
        )],
        // Failed: the file is the server's, the error sticks.
        vec![
            faulty(fail(FaultOp::Append, FaultKind::NoSpace), Flush(h0)),
            write(At::End, 1),
            read(0, 100),
        ],
        vec![faulty(
            fail(FaultOp::Append, FaultKind::NotFound),
            Fsync(h0),
        )],
        vec![faulty(
            fail(FaultOp::Append, FaultKind::Failed),
            Release(h0),
        )],
        // Reads: after the server's end from here, before it fetched.
        vec![
            faulty(fail(FaultOp::OpenRead, FaultKind::Failed), read(10, 10)),
            faulty(fail(FaultOp::OpenRead, FaultKind::Failed), read(9, 10)),
            faulty(Arm::BreakRead(10), read(0, 1)),
            faulty(Arm::BreakRead(11), read(0, 1)),
            Flush(h0),
        ],
        // Writes and truncates before the server's end fetch; after, not.
        // Past the end of a file not appended to: fetched, not appended.
        vec![
            open_b.clone(),
            faulty(Arm::BreakRead(0), write_h1(At::Offset(101))),
            write_h1(At::Offset(101)),
        ],
        vec![
            faulty(Arm::BreakRead(0), write(At::Offset(20), 2)),
            faulty(Arm::BreakRead(0), write(At::Offset(9), 2)),
            write(At::Offset(9), 2),
            Flush(h0),
        ],
        vec![
            faulty(
                fail(FaultOp::OpenRead, FaultKind::Unavailable),
                Truncate {
                    t: Target::Handle(h0),
                    size: 10,
                },
            ),
            write(At::End, 1),
            faulty(
                fail(FaultOp::OpenRead, FaultKind::Unavailable),
                Truncate {
                    t: Target::Path(A),
                    size: 0,
                },
            ),
            Truncate {
                t: Target::Path(A),
                size: 3,
            },
            Flush(h0),
        ],
        // Removed: the server's part is fetched first, or nothing is kept.
        vec![Unlink(P(0)), read(0, 100), Release(h0)],
        vec![
            faulty(fail(FaultOp::OpenRead, FaultKind::Failed), Unlink(A)),
            read(0, 100),
            write(At::End, 1),
            read(0, 100),
        ],
        vec![Rename { from: B, to: A }, read(0, 100)],
        vec![
            faulty(Arm::BreakRead(3), Rename { from: B, to: A }),
            read(0, 100),
        ],
        // Moved: appended under the new name.
        vec![Rename { from: A, to: P(5) }, Flush(h0)],
    ];
    let init = [Init::Dir(D), Init::File(A, 10, 3), Init::File(B, 100, 4)];
    for case in cases {
        run_fixed(StoreAtOffset::InPlace, &init, write(At::End, 5), case);
    }
}

/// A fixed case: "a" is opened read-write into h0 and `first` runs, then
/// `case`; panics with the trace where the core and the model part.
fn run_fixed(rest_stor: StoreAtOffset, init: &[Init], first: Step, case: Vec<Step>) {
    let open = Step::Open {
        p: P(0),
        mode: Mode::ReadWrite,
        trunc: false,
        append: false,
    };
    let steps: Vec<Step> = [open, first].into_iter().chain(case).collect();
    if let Err(e) = run_case(rest_stor, init, &steps) {
        panic!("{e}");
    }
}

/// What the fixed cases of patches start from: "a" (100 000 bytes) on the
/// server, and a directory "d".
fn big_file_init() -> [Init; 2] {
    [Init::Dir(P(2)), Init::File(P(0), 100_000, 3)]
}

/// A write of `len` bytes of `seed`'s pattern at `off` through h0.
fn write_h0(seed: u8) -> impl Fn(u32, u32) -> Step {
    move |off, len| Step::Write {
        h: H(0),
        at: At::Offset(off),
        len,
        seed,
    }
}

/// Each path of a patch in place (SEMANTICS §3) at least once: "a"
/// (100 000 bytes) is on the server, opened into h0 and written at 99 000.
#[test]
fn every_path_of_a_patch() {
    use Step::*;
    let h0 = H(0);
    let write = write_h0(9);
    let flush_with = |arm| vec![Faulty(arm, Box::new(Flush(h0)))];
    let failing = |op, kind| flush_with(Arm::Fail(op, kind));
    let in_place = StoreAtOffset::InPlace;
    let read_back = || Read {
        h: h0,
        off: 98_990,
        len: 1_100,
    };
    let cases: Vec<(StoreAtOffset, Vec<Step>)> = vec![
        (in_place, vec![Release(h0)]),
        (in_place, vec![write(90_000, 50), Fsync(h0)]),
        // Overlapping the first write, and a write far from it.
        (in_place, vec![write(98_990, 12), write(5, 5), Release(h0)]),
        // Cut, sent again.
        (in_place, flush_with(Arm::BreakUpload(3))),
        (in_place, failing(FaultOp::UploadAt, FaultKind::Unavailable)),
        // Refused, or the server's file not asked: replaced whole.
        (
            in_place,
            failing(FaultOp::UploadAt, FaultKind::PermissionDenied),
        ),
        (in_place, failing(FaultOp::Size, FaultKind::Failed)),
        (
            in_place,
            failing(FaultOp::Size, FaultKind::PermissionDenied),
        ),
        (in_place, failing(FaultOp::Size, FaultKind::Unavailable)),
        (in_place, failing(FaultOp::Stat, FaultKind::Failed)),
        // A range stored short: inside the file the size check after the
        // patch cannot see it (the server keeps one old byte, read back
        // here); at the file's end it can, and the file is replaced whole.
        (
            in_place,
            vec![Faulty(Arm::Corrupt, Box::new(Flush(h0))), read_back()],
        ),
        (
            StoreAtOffset::Truncates,
            vec![
                write(99_990, 20),
                Faulty(Arm::Corrupt, Box::new(Flush(h0))),
                read_back(),
            ],
        ),
        // Cut below the size fetched, then grown: replaced whole.
        (
            in_place,
            vec![
                Truncate {
                    t: Target::Handle(h0),
                    size: 50_000,
                },
                write(60_000, 10),
                Release(h0),
            ],
        ),
        // Truncated at the end of the write: only a change near the end
        // is patched (from it to the end).
        (StoreAtOffset::Truncates, vec![Release(h0)]),
        (
            StoreAtOffset::Truncates,
            vec![write(99_990, 20), Release(h0)],
        ),
        (StoreAtOffset::Truncates, vec![write(10, 5), Release(h0)]),
        (StoreAtOffset::Refused, vec![Release(h0)]),
        (StoreAtOffset::Unknown, vec![Release(h0)]),
    ];
    let init = big_file_init();
    for (rest_stor, case) in cases {
        // Inside the file: patched without fetching it where REST + STOR
        // writes in place; over its end: fetched first (staged) always.
        for first in [write(99_000, 5), write(99_998, 5)] {
            run_fixed(rest_stor, &init, first, case.clone());
        }
    }
}

/// Each path of a patch without fetching (SEMANTICS §3 "A small write
/// inside a big file"): "a" (100 000 bytes) is on the server, opened into
/// h0 and written at 50 000 (100 bytes). Reads merge the written bytes
/// with the server's (a failing download fails only what it serves);
/// writes the rule does not admit, and truncates to another size, fetch
/// the file first (a failing fetch fails them and changes nothing).
#[test]
fn every_path_of_a_patch_without_fetching() {
    use Step::*;
    let h0 = H(0);
    let write = write_h0(4);
    let read = |off, len| Read { h: h0, off, len };
    let faulty = |arm, step| Faulty(arm, Box::new(step));
    let no_download = Arm::Fail(FaultOp::OpenRead, FaultKind::Failed);
    let failing = |op, kind| vec![faulty(Arm::Fail(op, kind), Flush(h0))];
    let truncate = |size| Truncate {
        t: Target::Handle(h0),
        size,
    };
    let scattered: Vec<Step> = (1..=17).map(|i| write(i * 3_000, 1)).collect();
    let cases: Vec<Vec<Step>> = vec![
        vec![read(49_990, 200), read(50_010, 10), Release(h0)],
        vec![faulty(no_download, read(50_010, 10)), Release(h0)],
        vec![
            faulty(no_download, read(49_000, 2_000)),
            read(49_000, 2_000),
        ],
        vec![
            faulty(Arm::BreakRead(10), read(40_000, 20_000)),
            Release(h0),
        ],
        vec![
            write(60_000, 10),
            write(50_050, 100),
            read(49_000, 12_000),
            Fsync(h0),
        ],
        vec![write(0, 1), read(0, 10), Release(h0)],
        vec![
            faulty(no_download, write(0, 1)),
            read(49_990, 20),
            Release(h0),
        ],
        vec![write(99_999, 5), Release(h0)],
        vec![write(70_000, 12_500), Release(h0)],
        scattered,
        vec![truncate(100_000), Release(h0)],
        vec![truncate(50_050), read(49_990, 100), Release(h0)],
        vec![faulty(no_download, truncate(10)), Release(h0)],
        vec![Unlink(P(0)), read(49_990, 200), Release(h0)],
        vec![
            faulty(no_download, Unlink(P(0))),
            read(49_990, 200),
            Release(h0),
        ],
        vec![faulty(Arm::BreakUpload(3), Flush(h0)), read(49_990, 200)],
        failing(FaultOp::UploadAt, FaultKind::Unavailable),
        failing(FaultOp::UploadAt, FaultKind::PermissionDenied),
        failing(FaultOp::Stat, FaultKind::Failed),
        failing(FaultOp::Size, FaultKind::Failed),
        vec![faulty(no_download, Flush(h0)), read(49_990, 200)],
        vec![faulty(Arm::Corrupt, Flush(h0)), read(49_990, 200)],
    ];
    let init = big_file_init();
    for case in cases {
        run_fixed(StoreAtOffset::InPlace, &init, write(50_000, 100), case);
    }
}

/// A new file that streams, its upload cut before a byte reached the
/// server, on a server without REST + STOR: the next save resumes it with
/// APPE, and an APPE refused for lack of space fails the save with ENOSPC
/// (found by a long random run).
#[test]
fn a_cut_stream_resumed_with_a_refused_append_fails_with_its_error() {
    use Step::*;
    let h0 = H(0);
    let write = |at, len| Write {
        h: h0,
        at,
        len,
        seed: 7,
    };
    let create = Create {
        p: P(0),
        excl: false,
        trunc: true,
        read: false,
    };
    for rest_stor in [StoreAtOffset::Refused, StoreAtOffset::Unknown] {
        let steps = vec![
            create.clone(),
            write(At::End, STREAM_AT as u32 - 10),
            Faulty(Arm::BreakUpload(0), Box::new(write(At::End, 4096))),
            write(At::End, 4096),
            Faulty(
                Arm::Fail(FaultOp::Append, FaultKind::NoSpace),
                Box::new(Fsync(h0)),
            ),
            Release(h0),
        ];
        if let Err(e) = run_case(rest_stor, &[], &steps) {
            panic!("{rest_stor:?}: {e}");
        }
    }
}

/// `open(p, O_CREAT | O_WRONLY)`.
fn create_without_truncating(p: P) -> Step {
    Step::Create {
        p,
        excl: false,
        trunc: false,
        read: false,
    }
}

/// A stream cut earlier is resumed at the next save, and the corruption
/// armed for that save hits the resumed upload: a stream keeps only its
/// window, so the mismatch fails the save (EIO) and nothing partial is
/// left (found by a long random run).
#[test]
fn a_cut_stream_whose_resumed_upload_is_stored_short_fails_the_save() {
    use Step::*;
    let h0 = H(0);
    let steps = vec![
        create_without_truncating(P(0)),
        Faulty(
            Arm::BreakUpload(0),
            Box::new(Write {
                h: h0,
                at: At::End,
                len: STREAM_AT as u32,
                seed: 0,
            }),
        ),
        Faulty(Arm::Corrupt, Box::new(Fsync(h0))),
        Release(h0),
    ];
    for rest_stor in [StoreAtOffset::InPlace, StoreAtOffset::Refused] {
        if let Err(e) = run_case(rest_stor, &[], &steps) {
            panic!("{rest_stor:?}: {e}");
        }
    }
}

/// A read through a read-only descriptor of a file that streams finishes
/// the upload and fetches it back; when that fetch fails, the read returns
/// the error, the writers keep it, and the reader's close does not (found
/// by a long random run).
#[test]
fn a_failed_fetch_of_a_stream_for_a_reader_sticks_to_the_writers_only() {
    use Step::*;
    let (h0, h1) = (H(0), H(1));
    let steps = vec![
        create_without_truncating(P(0)),
        Write {
            h: h0,
            at: At::End,
            len: STREAM_AT as u32,
            seed: 0,
        },
        Open {
            p: P(0),
            mode: Mode::ReadOnly,
            trunc: false,
            append: false,
        },
        Faulty(
            Arm::Fail(FaultOp::OpenRead, FaultKind::Unavailable),
            Box::new(Read {
                h: h1,
                off: 0,
                len: 1,
            }),
        ),
        Release(h0),
        Release(h1),
    ];
    if let Err(e) = run_case(StoreAtOffset::InPlace, &[], &steps) {
        panic!("{e}");
    }
}
