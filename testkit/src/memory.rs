//! A `RemoteStore` held in memory, so the filesystem core can be tested
//! without a network.
//!
//! It behaves like vsftpd on a Linux filesystem, including where that is
//! inconvenient for a client: `upload` truncates or creates the file at once,
//! written bytes show up while the upload runs, and an upload that is dropped
//! or fails leaves its partial file behind. An open upload follows its file
//! through renames (it holds the inode, as the server's descriptor does), and
//! a download reads the content as it was when it was opened.
//!
//! It also counts every operation (so tests can prove that a cache saved a
//! round trip), and models what a server may be set up to refuse: a quota, a
//! subtree where writes are denied. Faults of the network or of a server
//! having a bad moment (a failed call, a broken transfer, a slow answer) are
//! not its business: `FaultyStore` (faults.rs) injects those around it.
//!
//! Where the server's answer is not dictated by the trait, these are the
//! choices (the FTPS store reports the same kinds, see `ftps.rs`):
//! - `list` of a file, `open_read` and `exact_mtime` of a directory: NotFound
//!   (vsftpd answers 550, which means "not found").
//! - `delete` of a directory, `rmdir` of a file or of the root:
//!   PermissionDenied (what the FTPS store concludes when the path exists).
//! - `upload`/`append` onto a directory, `rename` of a file onto a directory
//!   or of a directory onto a file, `rename` of the root: Failed.
//! - `rename` of a directory into its own subtree: InvalidInput (EINVAL).
//! - A path through a file (`file/x`) is NotFound, like a missing one.
//! - A path with CR, LF or NUL, an empty component (leading, trailing or double
//!   slash), `.` or `..`: InvalidInput.
//! - Directories list with size 4096 and mode 0o755, files with mode 0o644;
//!   a directory's mtime changes when an entry is added, removed or renamed.
//! - `upload_at` (REST + STOR) does what `set_store_at_offset` says (vsftpd's
//!   in-place write by default): an offset past the end fills the gap with
//!   zeros, on a missing file too (vsftpd creates it); `Refused` refuses with
//!   Unsupported and changes nothing; `Unknown` writes in place and is what
//!   `store_at_offset` reports (a probe that could not tell).
//! - `size` follows links; of a directory it is NotFound (vsftpd: 550).
//! - `digest` only for the algorithms in `Capabilities::digests` (none by
//!   default, as vsftpd), else Unsupported; MD5 cannot be computed here
//!   (Unsupported); a range past the end of the file is Failed (ProFTPD:
//!   501), an empty one InvalidInput; of a directory NotFound.
//! - `append` is Unsupported when `Capabilities::append` is off.
//! - Without `exact_listing_mtime`, `list` and `stat` give times as a LIST
//!   line does: to the minute, or to the day when more than 182 days old or
//!   in the future; `exact_mtime` (MDTM) is always exact.
//!
//! Symbolic links (made with `put_symlink`; the trait cannot make them):
//! - `list` and `stat` describe the link itself, as a LIST line (`l...
//!   name -> target`) or MLSD `OS.unix=slink:target` does: kind Symlink, the
//!   target, size the target's length, mode 0o777.
//! - What vsftpd does with open(2) or stat(2) follows the link, as the
//!   server's own system calls do: `open_read`, `exact_mtime`, `chmod`,
//!   `set_mtime`, `list` of a link, and `upload`/`append` (which create the
//!   target of a dangling link, as open(O_CREAT) does). A relative target is
//!   resolved from the link's directory, an absolute one from the store's
//!   root (the server's chroot); `..` stops at the root. A dangling link or a
//!   loop (more than 40 links) is NotFound.
//! - `delete` removes the link, `rename` moves it; `rmdir` of a link is
//!   PermissionDenied, as of a file.
//! - A path *through* a link (`link/x`) is NotFound, as through a file: the
//!   kernel resolves links itself, so the core names a link only as the last
//!   component of a path.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ftpsfs::store::path::{is_under, join, shown};
use ftpsfs::store::{
    Capabilities, DigestAlgorithm, DigestSet, DirEntry, Error, ErrorKind, FileKind, Metadata,
    ReadStream, RemoteStore, Result, StoreAtOffset, UploadStream,
};
use parking_lot::Mutex;

use crate::ops::{Op, OpCounts};

const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;
/// What `ls -l` shows for a symbolic link (the mode of a link is not used).
const LINK_MODE: u32 = 0o777;
/// Links followed before giving up, as Linux's MAXSYMLINKS (ELOOP).
const MAX_LINKS: usize = 40;
/// What `ls -l` shows for a directory on ext4.
const DIR_SIZE: u64 = 4096;
/// Older than this (or in the future), a LIST line gives only the day.
const LIST_RECENT: Duration = Duration::from_secs(182 * 24 * 60 * 60);

/// The in-memory server. Cheap to share behind an `Arc`; every method locks
/// one mutex, streams included.
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

type InodeId = u64;

enum Node {
    /// Content and attributes are in `State::inodes`, so an open upload can
    /// follow the file through renames.
    File(InodeId),
    Dir(Dir),
    Symlink(Link),
}

struct Link {
    /// As given: relative to the link's directory, or absolute (a leading
    /// `/`) from the store's root.
    target: Vec<u8>,
    mtime: SystemTime,
}

struct Dir {
    children: BTreeMap<Vec<u8>, Node>,
    mode: u32,
    mtime: SystemTime,
}

impl Dir {
    fn new(now: SystemTime) -> Dir {
        Dir {
            children: BTreeMap::new(),
            mode: DIR_MODE,
            mtime: now,
        }
    }
}

struct Inode {
    /// Shared with the downloads opened before the last change.
    content: Arc<Vec<u8>>,
    mode: u32,
    mtime: SystemTime,
}

struct State {
    root: Node,
    inodes: HashMap<InodeId, Inode>,
    next_inode: InodeId,
    /// Bytes in all files, for the quota.
    used: u64,
    capabilities: Capabilities,
    counts: OpCounts,
    quota: Option<u64>,
    denied: Vec<Vec<u8>>,
    store_at_offset: StoreAtOffset,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty root, every capability but digests (none, as vsftpd);
    /// REST + STOR writes in place (as vsftpd).
    pub fn new() -> MemoryStore {
        MemoryStore::with_capabilities(Capabilities {
            set_mtime: true,
            chmod: true,
            exact_listing_mtime: true,
            append: true,
            digests: DigestSet::EMPTY,
        })
    }

    pub fn with_capabilities(capabilities: Capabilities) -> MemoryStore {
        let state = State {
            root: Node::Dir(Dir::new(SystemTime::now())),
            inodes: HashMap::new(),
            next_inode: 1,
            used: 0,
            capabilities,
            counts: OpCounts::default(),
            quota: None,
            denied: Vec::new(),
            store_at_offset: StoreAtOffset::InPlace,
        };
        MemoryStore {
            state: Arc::new(Mutex::new(state)),
        }
    }

    pub fn set_capabilities(&self, capabilities: Capabilities) {
        self.state.lock().capabilities = capabilities;
    }

    /// The digests the server computes (`Capabilities::digests`).
    pub fn set_digests(&self, digests: DigestSet) {
        self.state.lock().capabilities.digests = digests;
    }

    /// Whether APPE works (`Capabilities::append`).
    pub fn set_append(&self, append: bool) {
        self.state.lock().capabilities.append = append;
    }

    /// What `upload_at` does, and what `store_at_offset` reports (see the
    /// module's comment); `InPlace` by default.
    pub fn set_store_at_offset(&self, behaviour: StoreAtOffset) {
        self.state.lock().store_at_offset = behaviour;
    }

    // --- Test helpers: they bypass counters, quota and denied subtrees. ---

    /// Creates or replaces a file (or a link), creating missing parent
    /// directories.
    ///
    /// # Panics
    /// On an invalid path, or when the path or one of its parents is in the
    /// way (a directory where the file goes, a file where a parent goes).
    pub fn put_file(&self, path: &[u8], bytes: &[u8]) {
        let comps = helper_path(path);
        let Some((name, parent)) = comps.split_last() else {
            panic!("put_file: the root is a directory");
        };
        let now = SystemTime::now();
        let mut state = self.state.lock();
        let state = &mut *state;
        let dir = make_dirs(&mut state.root, parent, now, path);
        match dir.children.get(*name) {
            Some(Node::Dir(_)) => panic!("put_file: {} is a directory", shown(path)),
            Some(Node::File(id)) => {
                if let Some(inode) = state.inodes.get_mut(id) {
                    state.used = state.used - inode.content.len() as u64 + bytes.len() as u64;
                    inode.content = Arc::new(bytes.to_vec());
                    inode.mtime = now;
                }
            }
            None | Some(Node::Symlink(_)) => {
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(
                    id,
                    Inode {
                        content: Arc::new(bytes.to_vec()),
                        mode: FILE_MODE,
                        mtime: now,
                    },
                );
                state.used += bytes.len() as u64;
                dir.children.insert(name.to_vec(), Node::File(id));
                dir.mtime = now;
            }
        }
    }

    /// Creates or replaces a symbolic link (or a file) at `path` pointing to
    /// `target`, creating missing parent directories. The target is kept as
    /// given and need not exist.
    ///
    /// # Panics
    /// On an invalid path, or when a directory is at `path` or a file is
    /// where a parent goes.
    pub fn put_symlink(&self, path: &[u8], target: &[u8]) {
        let comps = helper_path(path);
        let Some((name, parent)) = comps.split_last() else {
            panic!("put_symlink: the root is a directory");
        };
        let now = SystemTime::now();
        let mut state = self.state.lock();
        let state = &mut *state;
        let dir = make_dirs(&mut state.root, parent, now, path);
        if let Some(Node::Dir(_)) = dir.children.get(*name) {
            panic!("put_symlink: {} is a directory", shown(path));
        }
        let link = Node::Symlink(Link {
            target: target.to_vec(),
            mtime: now,
        });
        dir.mtime = now;
        if let Some(old) = dir.children.insert(name.to_vec(), link) {
            state.release(old);
        }
    }

    /// Creates a directory and its missing parents (nothing if it exists).
    ///
    /// # Panics
    /// On an invalid path, or when a file is in the way.
    pub fn put_dir(&self, path: &[u8]) {
        let comps = helper_path(path);
        let mut state = self.state.lock();
        make_dirs(&mut state.root, &comps, SystemTime::now(), path);
    }

    /// The content of a file; `None` if it is missing, a directory or a link
    /// (links are not followed).
    pub fn file(&self, path: &[u8]) -> Option<Vec<u8>> {
        let comps = parse(path).ok()?;
        let state = self.state.lock();
        match lookup(&state.root, &comps)? {
            Node::File(id) => state.inodes.get(id).map(|i| i.content.to_vec()),
            Node::Dir(_) | Node::Symlink(_) => None,
        }
    }

    /// The target of a symbolic link; `None` if the path is not a link.
    pub fn symlink(&self, path: &[u8]) -> Option<Vec<u8>> {
        let comps = parse(path).ok()?;
        let state = self.state.lock();
        match lookup(&state.root, &comps)? {
            Node::Symlink(link) => Some(link.target.clone()),
            Node::File(_) | Node::Dir(_) => None,
        }
    }

    pub fn exists(&self, path: &[u8]) -> bool {
        self.metadata(path).is_some()
    }

    /// The exact metadata of a path, whatever the capabilities.
    pub fn metadata(&self, path: &[u8]) -> Option<Metadata> {
        let comps = parse(path).ok()?;
        let state = self.state.lock();
        let node = lookup(&state.root, &comps)?;
        Some(state.exact_meta(node))
    }

    /// Every file, directory and link but the root, sorted.
    pub fn paths(&self) -> Vec<Vec<u8>> {
        fn walk(dir: &Dir, prefix: &[u8], out: &mut Vec<Vec<u8>>) {
            for (name, node) in &dir.children {
                let path = join(prefix, name).into_bytes();
                if let Node::Dir(sub) = node {
                    out.push(path.clone());
                    walk(sub, &path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let state = self.state.lock();
        let mut out = Vec::new();
        if let Node::Dir(root) = &state.root {
            walk(root, b"", &mut out);
        }
        out
    }

    // --- Counters ---

    pub fn counters(&self) -> OpCounts {
        self.state.lock().counts
    }

    pub fn reset_counters(&self) {
        self.state.lock().counts = OpCounts::default();
    }

    // --- What the server is set up to refuse ---

    /// Limits the bytes of all files together; a write that would go past it
    /// stores what fits and fails with NoSpace, and so does `finish`.
    pub fn set_quota(&self, quota: Option<u64>) {
        self.state.lock().quota = quota;
    }

    /// Uploads, appends, deletes, mkdir, rmdir, renames (either side), chmod
    /// and set_mtime of `prefix` or anything under it fail with
    /// PermissionDenied. `b""` denies every write. Adds to earlier calls.
    pub fn deny_writes_under(&self, prefix: &[u8]) {
        self.state.lock().denied.push(prefix.to_vec());
    }

    /// Undoes every `deny_writes_under`.
    pub fn allow_all_writes(&self) {
        self.state.lock().denied.clear();
    }

    // --- Internals ---

    /// Counts the call and locks the server for it.
    fn enter(&self, op: Op) -> parking_lot::MutexGuard<'_, State> {
        let mut state = self.state.lock();
        state.counts.bump(op);
        state
    }

    fn start_upload(&self, op: Op, path: &[u8], offset: u64) -> Result<Box<dyn UploadStream>> {
        let mut state = self.enter(op);
        let comps = parse(path)?;
        state.check_writable(path)?;
        if op == Op::Append && !state.capabilities.append {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("appending to {}: the server refuses APPE", shown(path)),
            ));
        }
        let behaviour = state.store_at_offset;
        if op == Op::UploadAt && offset > 0 && behaviour == StoreAtOffset::Refused {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "writing {} from byte {offset}: the server refuses REST before STOR",
                    shown(path)
                ),
            ));
        }
        // STOR onto a link writes (or creates) its target, as open(2) does.
        let resolved = state.follow(&comps)?;
        let comps: Vec<&[u8]> = resolved.iter().map(Vec::as_slice).collect();
        state.check_writable(&comps.join(&b'/'))?;
        let now = SystemTime::now();
        let state = &mut *state;
        let Some((name, parent)) = comps.split_last() else {
            return Err(Error::new(
                ErrorKind::Failed,
                "uploading the mounted directory: it is a directory",
            ));
        };
        let dir = lookup_dir_mut(&mut state.root, parent).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("uploading {}: no such directory", shown(path)),
            )
        })?;
        let id = match dir.children.get(*name) {
            // `follow` leaves no link at the end of the path.
            Some(Node::Dir(_)) | Some(Node::Symlink(_)) => {
                return Err(Error::new(
                    ErrorKind::Failed,
                    format!("uploading {}: it is a directory", shown(path)),
                ))
            }
            Some(Node::File(id)) => {
                let id = *id;
                let cut = match op {
                    // REST 0 + STOR is STOR: the file is replaced.
                    Op::Upload | Op::UploadAt if offset == 0 => Some(0),
                    Op::UploadAt if behaviour == StoreAtOffset::Truncates => Some(offset),
                    _ => None,
                };
                if let (Some(cut), Some(inode)) = (cut, state.inodes.get_mut(&id)) {
                    let len = inode.content.len() as u64;
                    if cut < len {
                        state.used -= len - cut;
                        // `cut` is below the length, so it fits in usize.
                        Arc::make_mut(&mut inode.content).truncate(cut as usize);
                        inode.mtime = now;
                    }
                }
                id
            }
            None => {
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(
                    id,
                    Inode {
                        content: Arc::new(Vec::new()),
                        mode: FILE_MODE,
                        mtime: now,
                    },
                );
                dir.children.insert(name.to_vec(), Node::File(id));
                dir.mtime = now;
                id
            }
        };
        Ok(Box::new(MemoryUpload {
            state: Arc::clone(&self.state),
            inode: id,
            path: path.to_vec(),
            position: (op == Op::UploadAt && offset > 0).then_some(offset),
            failed: None,
        }))
    }

    /// The content of the file at `path`, links followed; NotFound for a
    /// directory or nothing.
    fn content(&self, state: &State, path: &[u8], what: &str) -> Result<Arc<Vec<u8>>> {
        let comps = parse(path)?;
        let resolved = state.follow(&comps)?;
        let comps: Vec<&[u8]> = resolved.iter().map(Vec::as_slice).collect();
        match lookup(&state.root, &comps) {
            Some(Node::File(id)) => state
                .inodes
                .get(id)
                .map(|i| Arc::clone(&i.content))
                .ok_or_else(|| not_found(what, path)),
            Some(Node::Dir(_)) => Err(Error::new(
                ErrorKind::NotFound,
                format!("{what} {}: it is a directory", shown(path)),
            )),
            None | Some(Node::Symlink(_)) => Err(not_found(what, path)),
        }
    }
}

impl State {
    fn exact_meta(&self, node: &Node) -> Metadata {
        let (kind, size, mtime, mode) = match node {
            Node::Dir(dir) => (FileKind::Dir, DIR_SIZE, dir.mtime, dir.mode),
            Node::File(id) => match self.inodes.get(id) {
                Some(i) => (FileKind::File, i.content.len() as u64, i.mtime, i.mode),
                None => (FileKind::File, 0, UNIX_EPOCH, FILE_MODE),
            },
            Node::Symlink(link) => (
                FileKind::Symlink,
                link.target.len() as u64,
                link.mtime,
                LINK_MODE,
            ),
        };
        let symlink_target = match node {
            Node::Symlink(link) => Some(link.target.clone()),
            Node::File(_) | Node::Dir(_) => None,
        };
        Metadata {
            kind,
            size,
            mtime: Some(mtime),
            mtime_exact: true,
            mode: Some(mode),
            symlink_target,
        }
    }

    /// Metadata as a listing gives it.
    fn listed_meta(&self, node: &Node, now: SystemTime) -> Metadata {
        let mut meta = self.exact_meta(node);
        if !self.capabilities.exact_listing_mtime {
            meta.mtime = meta.mtime.map(|t| list_line_time(t, now));
            meta.mtime_exact = false;
        }
        meta
    }

    fn check_writable(&self, path: &[u8]) -> Result<()> {
        if self
            .denied
            .iter()
            .any(|prefix| path == prefix.as_slice() || is_under(path, prefix))
        {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("{}: permission denied", shown(path)),
            ));
        }
        Ok(())
    }

    /// Forgets a file or a subtree that was unlinked, freeing its bytes.
    fn release(&mut self, node: Node) {
        match node {
            Node::File(id) => {
                if let Some(inode) = self.inodes.remove(&id) {
                    self.used -= inode.content.len() as u64;
                }
            }
            Node::Dir(dir) => {
                for (_, child) in dir.children {
                    self.release(child);
                }
            }
            Node::Symlink(_) => {}
        }
    }

    /// The path that `comps` leads to once the links at its end are
    /// followed: `comps` itself when it is not a link (whether or not it
    /// exists), the target's path otherwise, which may not exist (a dangling
    /// link). NotFound on a loop.
    fn follow(&self, comps: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
        let mut path: Vec<Vec<u8>> = comps.iter().map(|c| c.to_vec()).collect();
        for _ in 0..=MAX_LINKS {
            let here: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
            let Some(Node::Symlink(link)) = lookup(&self.root, &here) else {
                return Ok(path);
            };
            let mut next: Vec<Vec<u8>> = if link.target.starts_with(b"/") {
                Vec::new()
            } else {
                path[..path.len() - 1].to_vec()
            };
            for comp in link.target.split(|&b| b == b'/') {
                match comp {
                    b"" | b"." => {}
                    b".." => {
                        next.pop();
                    }
                    name => next.push(name.to_vec()),
                }
            }
            path = next;
        }
        Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{}: too many levels of symbolic links",
                shown(&comps.join(&b'/'))
            ),
        ))
    }
}

/// What `chmod` and `set_mtime` change: a field that directories and files
/// both have, on the target of a link.
enum Attribute {
    Mode(u32),
    Mtime(SystemTime),
}

impl MemoryStore {
    fn change_attribute(&self, path: &[u8], attribute: Attribute) -> Result<()> {
        let (op, verb) = match attribute {
            Attribute::Mode(_) => (Op::Chmod, "changing the mode of"),
            Attribute::Mtime(_) => (Op::SetMtime, "setting the time of"),
        };
        let mut state = self.enter(op);
        let comps = parse(path)?;
        let refusal = match attribute {
            Attribute::Mode(_) if !state.capabilities.chmod => "the server cannot change modes",
            Attribute::Mtime(_) if !state.capabilities.set_mtime => {
                "the server cannot set modification times"
            }
            _ => "",
        };
        if !refusal.is_empty() {
            return Err(Error::new(ErrorKind::Unsupported, refusal));
        }
        state.check_writable(path)?;
        // chmod(2) and utime(2) change the target of a link.
        let resolved = state.follow(&comps)?;
        let comps: Vec<&[u8]> = resolved.iter().map(Vec::as_slice).collect();
        let state = &mut *state;
        let (mode, mtime) = match lookup_mut(&mut state.root, &comps) {
            Some(Node::Dir(dir)) => (&mut dir.mode, &mut dir.mtime),
            Some(Node::File(id)) => match state.inodes.get_mut(id) {
                Some(inode) => (&mut inode.mode, &mut inode.mtime),
                None => return Err(not_found(verb, path)),
            },
            None | Some(Node::Symlink(_)) => return Err(not_found(verb, path)),
        };
        match attribute {
            Attribute::Mode(new) => *mode = new & 0o7777,
            Attribute::Mtime(new) => *mtime = new,
        }
        Ok(())
    }
}

impl RemoteStore for MemoryStore {
    fn list(&self, dir: &[u8]) -> Result<Vec<DirEntry>> {
        let state = self.enter(Op::List);
        let comps = parse(dir)?;
        let resolved = state.follow(&comps)?;
        let comps: Vec<&[u8]> = resolved.iter().map(Vec::as_slice).collect();
        let now = SystemTime::now();
        match lookup(&state.root, &comps) {
            Some(Node::Dir(d)) => Ok(d
                .children
                .iter()
                .map(|(name, node)| DirEntry {
                    name: name.clone(),
                    meta: state.listed_meta(node, now),
                })
                .collect()),
            Some(Node::File(_)) => Err(Error::new(
                ErrorKind::NotFound,
                format!("listing {}: not a directory", shown(dir)),
            )),
            None | Some(Node::Symlink(_)) => Err(not_found("listing", dir)),
        }
    }

    fn stat(&self, path: &[u8]) -> Result<Metadata> {
        let state = self.enter(Op::Stat);
        let comps = parse(path)?;
        let node = lookup(&state.root, &comps).ok_or_else(|| not_found("looking up", path))?;
        Ok(state.listed_meta(node, SystemTime::now()))
    }

    fn exact_mtime(&self, path: &[u8]) -> Result<SystemTime> {
        let state = self.enter(Op::ExactMtime);
        let comps = parse(path)?;
        let resolved = state.follow(&comps)?;
        let comps: Vec<&[u8]> = resolved.iter().map(Vec::as_slice).collect();
        match lookup(&state.root, &comps) {
            Some(Node::File(id)) => state
                .inodes
                .get(id)
                .map(|i| i.mtime)
                .ok_or_else(|| not_found("reading the time of", path)),
            Some(Node::Dir(_)) => Err(Error::new(
                ErrorKind::NotFound,
                format!("reading the time of {}: it is a directory", shown(path)),
            )),
            None | Some(Node::Symlink(_)) => Err(not_found("reading the time of", path)),
        }
    }

    fn open_read(&self, path: &[u8], offset: u64) -> Result<Box<dyn ReadStream>> {
        let state = self.enter(Op::OpenRead);
        let comps = parse(path)?;
        let resolved = state.follow(&comps)?;
        let comps: Vec<&[u8]> = resolved.iter().map(Vec::as_slice).collect();
        let content = match lookup(&state.root, &comps) {
            Some(Node::File(id)) => state.inodes.get(id).map(|i| Arc::clone(&i.content)),
            Some(Node::Dir(_)) => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("reading {}: it is a directory", shown(path)),
                ))
            }
            None | Some(Node::Symlink(_)) => None,
        }
        .ok_or_else(|| not_found("reading", path))?;
        Ok(Box::new(MemoryReader {
            state: Arc::clone(&self.state),
            content,
            position: offset,
        }))
    }

    fn upload(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        self.start_upload(Op::Upload, path, 0)
    }

    fn append(&self, path: &[u8]) -> Result<Box<dyn UploadStream>> {
        self.start_upload(Op::Append, path, 0)
    }

    fn upload_at(&self, path: &[u8], offset: u64) -> Result<Box<dyn UploadStream>> {
        self.start_upload(Op::UploadAt, path, offset)
    }

    fn size(&self, path: &[u8]) -> Result<u64> {
        let state = self.enter(Op::Size);
        let content = self.content(&state, path, "reading the size of")?;
        Ok(content.len() as u64)
    }

    fn digest(
        &self,
        path: &[u8],
        algorithm: DigestAlgorithm,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>> {
        let state = self.enter(Op::Digest);
        let what = format!("computing the {algorithm} digest of {}", shown(path));
        if !state.capabilities.digests.contains(algorithm) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{what}: the server offers no command for it"),
            ));
        }
        let Some(mut hasher) = algorithm.hasher() else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{what}: the memory store cannot compute it"),
            ));
        };
        let content = self.content(&state, path, "computing the digest of")?;
        let len = content.len() as u64;
        let (start, end) = range.unwrap_or((0, len));
        if range.is_some() && end <= start {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{what}: the range {start}..{end} is empty"),
            ));
        }
        if end > len {
            return Err(Error::new(
                ErrorKind::Failed,
                format!("{what}: the range ends past the end of the file ({len} bytes)"),
            ));
        }
        // Both are at most the length, so they fit in usize.
        hasher.update(&content[start as usize..end as usize]);
        Ok(hasher.finish())
    }

    /// The configured behaviour (`set_store_at_offset`); not a call to the
    /// server, so not counted.
    fn store_at_offset(&self, _dir: &[u8]) -> StoreAtOffset {
        self.state.lock().store_at_offset
    }

    fn delete(&self, path: &[u8]) -> Result<()> {
        let mut state = self.enter(Op::Delete);
        let comps = parse(path)?;
        state.check_writable(path)?;
        let state = &mut *state;
        let Some((name, parent)) = comps.split_last() else {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "deleting the mounted directory: it is a directory",
            ));
        };
        let dir =
            lookup_dir_mut(&mut state.root, parent).ok_or_else(|| not_found("deleting", path))?;
        match dir.children.get(*name) {
            None => return Err(not_found("deleting", path)),
            Some(Node::Dir(_)) => {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!("deleting {}: it is a directory", shown(path)),
                ))
            }
            Some(Node::File(_)) | Some(Node::Symlink(_)) => {}
        }
        let removed = dir.children.remove(*name);
        dir.mtime = SystemTime::now();
        if let Some(node) = removed {
            state.release(node);
        }
        Ok(())
    }

    fn mkdir(&self, path: &[u8]) -> Result<()> {
        let mut state = self.enter(Op::Mkdir);
        let comps = parse(path)?;
        state.check_writable(path)?;
        let Some((name, parent)) = comps.split_last() else {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "creating the mounted directory: it exists",
            ));
        };
        let dir = lookup_dir_mut(&mut state.root, parent).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("creating directory {}: no such parent", shown(path)),
            )
        })?;
        if dir.children.contains_key(*name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("creating directory {}: it exists", shown(path)),
            ));
        }
        let now = SystemTime::now();
        dir.children.insert(name.to_vec(), Node::Dir(Dir::new(now)));
        dir.mtime = now;
        Ok(())
    }

    fn rmdir(&self, path: &[u8]) -> Result<()> {
        let mut state = self.enter(Op::Rmdir);
        let comps = parse(path)?;
        state.check_writable(path)?;
        let Some((name, parent)) = comps.split_last() else {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "removing the mounted directory",
            ));
        };
        let dir = lookup_dir_mut(&mut state.root, parent)
            .ok_or_else(|| not_found("removing directory", path))?;
        match dir.children.get(*name) {
            None => return Err(not_found("removing directory", path)),
            Some(Node::File(_)) | Some(Node::Symlink(_)) => {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!("removing directory {}: it is not a directory", shown(path)),
                ))
            }
            Some(Node::Dir(d)) if !d.children.is_empty() => {
                return Err(Error::new(
                    ErrorKind::NotEmpty,
                    format!("removing directory {}: it is not empty", shown(path)),
                ))
            }
            Some(Node::Dir(_)) => {}
        }
        dir.children.remove(*name);
        dir.mtime = SystemTime::now();
        Ok(())
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        let mut state = self.enter(Op::Rename);
        let from_comps = parse(from)?;
        let to_comps = parse(to)?;
        let what = || format!("renaming {} to {}", shown(from), shown(to));
        let Some((from_name, from_parent)) = from_comps.split_last() else {
            return Err(Error::new(
                ErrorKind::Failed,
                format!("{}: cannot move the mounted directory", what()),
            ));
        };
        state.check_writable(from)?;
        state.check_writable(to)?;
        let source_is_dir = match lookup(&state.root, &from_comps) {
            None => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("{}: no such file or directory", what()),
                ))
            }
            Some(node) => matches!(node, Node::Dir(_)),
        };
        let target_parent_is_dir = match to_comps.split_last() {
            Some((_, parent)) => matches!(lookup(&state.root, parent), Some(Node::Dir(_))),
            None => true,
        };
        if !target_parent_is_dir {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{}: no such target directory", what()),
            ));
        }
        if from_comps == to_comps {
            return Ok(());
        }
        if to_comps.starts_with(&from_comps) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{}: a directory cannot move into itself", what()),
            ));
        }
        match (source_is_dir, lookup(&state.root, &to_comps)) {
            (_, None) => {}
            (false, Some(Node::File(_) | Node::Symlink(_))) => {}
            (true, Some(Node::Dir(d))) if d.children.is_empty() => {}
            (true, Some(Node::Dir(_))) => {
                return Err(Error::new(
                    ErrorKind::NotEmpty,
                    format!("{}: the target is a directory that is not empty", what()),
                ))
            }
            (false, Some(Node::Dir(_))) => {
                return Err(Error::new(
                    ErrorKind::Failed,
                    format!("{}: the target is a directory", what()),
                ))
            }
            (true, Some(Node::File(_) | Node::Symlink(_))) => {
                return Err(Error::new(
                    ErrorKind::Failed,
                    format!("{}: the target is not a directory", what()),
                ))
            }
        }
        // Every check passed: the target parent is a directory outside the
        // source, and the target (if any) can be replaced.
        let now = SystemTime::now();
        let state = &mut *state;
        let moved = lookup_dir_mut(&mut state.root, from_parent).and_then(|dir| {
            dir.mtime = now;
            dir.children.remove(*from_name)
        });
        let (Some(moved), Some((to_name, to_parent))) = (moved, to_comps.split_last()) else {
            return Err(Error::new(ErrorKind::Failed, what()));
        };
        let replaced = match lookup_dir_mut(&mut state.root, to_parent) {
            Some(dir) => {
                dir.mtime = now;
                dir.children.insert(to_name.to_vec(), moved)
            }
            None => return Err(Error::new(ErrorKind::Failed, what())),
        };
        if let Some(old) = replaced {
            state.release(old);
        }
        Ok(())
    }

    fn chmod(&self, path: &[u8], mode: u32) -> Result<()> {
        self.change_attribute(path, Attribute::Mode(mode))
    }

    fn set_mtime(&self, path: &[u8], mtime: SystemTime) -> Result<()> {
        self.change_attribute(path, Attribute::Mtime(mtime))
    }

    fn capabilities(&self) -> Capabilities {
        self.state.lock().capabilities
    }

    /// What is left of the quota; `None` without one, as most FTP servers.
    fn free_space(&self) -> Option<u64> {
        let state = self.enter(Op::FreeSpace);
        state.quota.map(|quota| quota.saturating_sub(state.used))
    }
}

/// A download over the content as it was when it was opened.
struct MemoryReader {
    state: Arc<Mutex<State>>,
    content: Arc<Vec<u8>>,
    position: u64,
}

impl ReadStream for MemoryReader {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let len = self.content.len() as u64;
        let start = self.position.min(len);
        let n = (len - start).min(buf.len() as u64);
        // `n` is at most `buf.len()`, and `start + n` at most the length.
        let (from, count) = (start as usize, n as usize);
        buf[..count].copy_from_slice(&self.content[from..from + count]);
        self.position += n;
        self.state.lock().counts.bytes_read += n;
        Ok(count)
    }

    fn position(&self) -> u64 {
        self.position
    }
}

/// An upload writing straight into its file, as STOR does.
struct MemoryUpload {
    state: Arc<Mutex<State>>,
    inode: InodeId,
    path: Vec<u8>,
    /// Where the next write goes (`upload_at`); `None`: at the end.
    position: Option<u64>,
    /// Once a write failed, every later call fails the same way.
    failed: Option<Error>,
}

impl UploadStream for MemoryUpload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let mut state = self.state.lock();
        let state = &mut *state;
        let len = state
            .inodes
            .get(&self.inode)
            .map_or(0, |i| i.content.len() as u64);
        let at = self.position.unwrap_or(len);
        // Bytes the file grows by if all of `data` is written: the gap
        // before `at` (zeros) and what goes past the end.
        let growth = |n: u64| (at + n).saturating_sub(len);
        let mut n = data.len() as u64;
        let mut failure = None;
        if let Some(quota) = state.quota {
            let allowed = quota.saturating_sub(state.used);
            if allowed < growth(n) {
                // What fits: the gap and the overwritten part cost nothing
                // beyond the growth.
                n = (len + allowed).saturating_sub(at).min(n);
                failure = Some(Error::new(
                    ErrorKind::NoSpace,
                    format!("uploading {}: over quota", shown(&self.path)),
                ));
            }
        }
        // Writes to a file deleted meanwhile go nowhere, as on a server
        // writing to an unlinked file.
        // (An empty write extends nothing, as write(2) after lseek(2).)
        let inode = state.inodes.get_mut(&self.inode).filter(|_| n > 0);
        if let Some(inode) = inode {
            let part = &data[..n as usize];
            let content = Arc::make_mut(&mut inode.content);
            let start = at as usize;
            if content.len() < start {
                content.resize(start, 0);
            }
            // Over what is there, then past the end.
            let over = (content.len() - start).min(part.len());
            content[start..start + over].copy_from_slice(&part[..over]);
            content.extend_from_slice(&part[over..]);
            inode.mtime = SystemTime::now();
            state.used += growth(n);
        }
        if let Some(position) = self.position.as_mut() {
            *position += n;
        }
        state.counts.bytes_uploaded += n;
        match failure {
            Some(err) => {
                self.failed = Some(err.clone());
                Err(err)
            }
            None => Ok(()),
        }
    }

    fn finish(self: Box<Self>) -> Result<()> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let mut state = self.state.lock();
        if let Some(inode) = state.inodes.get_mut(&self.inode) {
            inode.mtime = SystemTime::now();
        }
        Ok(())
    }
}

/// The components of a store path; InvalidInput for what an FTPS client
/// refuses to send (CR, LF, NUL) and for malformed paths.
fn parse(path: &[u8]) -> Result<Vec<&[u8]>> {
    if path.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{}: names with CR, LF or NUL cannot be sent", shown(path)),
        ));
    }
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let comps: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    if comps
        .iter()
        .any(|c| c.is_empty() || *c == b"." || *c == b"..")
    {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{}: not a store path", shown(path)),
        ));
    }
    Ok(comps)
}

fn helper_path(path: &[u8]) -> Vec<&[u8]> {
    match parse(path) {
        Ok(comps) => comps,
        Err(e) => panic!("{e}"),
    }
}

fn lookup<'a>(root: &'a Node, comps: &[&[u8]]) -> Option<&'a Node> {
    let mut node = root;
    for comp in comps {
        node = match node {
            Node::Dir(dir) => dir.children.get(*comp)?,
            Node::File(_) | Node::Symlink(_) => return None,
        };
    }
    Some(node)
}

fn lookup_mut<'a>(root: &'a mut Node, comps: &[&[u8]]) -> Option<&'a mut Node> {
    let mut node = root;
    for comp in comps {
        node = match node {
            Node::Dir(dir) => dir.children.get_mut(*comp)?,
            Node::File(_) | Node::Symlink(_) => return None,
        };
    }
    Some(node)
}

fn lookup_dir_mut<'a>(root: &'a mut Node, comps: &[&[u8]]) -> Option<&'a mut Dir> {
    match lookup_mut(root, comps)? {
        Node::Dir(dir) => Some(dir),
        Node::File(_) | Node::Symlink(_) => None,
    }
}

/// `mkdir -p` for the test helpers.
fn make_dirs<'a>(root: &'a mut Node, comps: &[&[u8]], now: SystemTime, path: &[u8]) -> &'a mut Dir {
    let mut node = root;
    for comp in comps {
        let Node::Dir(dir) = node else {
            panic!("{}: a file is in the way", shown(path));
        };
        if !dir.children.contains_key(*comp) {
            dir.mtime = now;
        }
        node = dir
            .children
            .entry(comp.to_vec())
            .or_insert_with(|| Node::Dir(Dir::new(now)));
    }
    match node {
        Node::Dir(dir) => dir,
        Node::File(_) | Node::Symlink(_) => panic!("{}: a file is in the way", shown(path)),
    }
}

/// A time as a LIST line shows it: minutes for recent ones, days otherwise.
fn list_line_time(t: SystemTime, now: SystemTime) -> SystemTime {
    let Ok(since_epoch) = t.duration_since(UNIX_EPOCH) else {
        return t;
    };
    let recent = t <= now && now.duration_since(t).is_ok_and(|age| age <= LIST_RECENT);
    let unit = if recent { 60 } else { 24 * 60 * 60 };
    let secs = since_epoch.as_secs();
    UNIX_EPOCH + Duration::from_secs(secs - secs % unit)
}

fn not_found(what: &str, path: &[u8]) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("{what} {}: no such file or directory", shown(path)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftpsfs::store::path::split;

    fn caps(set_mtime: bool, chmod: bool, exact_listing_mtime: bool) -> Capabilities {
        Capabilities {
            set_mtime,
            chmod,
            exact_listing_mtime,
            append: true,
            digests: DigestSet::EMPTY,
        }
    }

    fn read_all(store: &MemoryStore, path: &[u8], offset: u64) -> Vec<u8> {
        let mut stream = store.open_read(path, offset).expect("open_read");
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = stream.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(stream.position(), offset + out.len() as u64);
        out
    }

    fn write(store: &MemoryStore, path: &[u8], bytes: &[u8]) {
        let mut up = store.upload(path).expect("upload");
        up.write(bytes).expect("write");
        up.finish().expect("finish");
    }

    fn kind<T>(result: Result<T>) -> ErrorKind {
        match result {
            Ok(_) => panic!("should fail"),
            Err(e) => e.kind,
        }
    }

    fn names(store: &MemoryStore, dir: &[u8]) -> Vec<Vec<u8>> {
        store
            .list(dir)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    fn ago(secs: u64) -> SystemTime {
        SystemTime::now() - Duration::from_secs(secs)
    }

    #[test]
    fn root_exists_and_is_an_empty_dir() {
        let store = MemoryStore::new();
        let meta = store.stat(b"").unwrap();
        assert_eq!(meta.kind, FileKind::Dir);
        assert_eq!(meta.mode, Some(0o755));
        assert!(store.list(b"").unwrap().is_empty());
        assert!(store.exists(b""));
        assert!(store.paths().is_empty());
        assert_eq!(
            store.capabilities(),
            caps(true, true, true),
            "every capability by default"
        );
    }

    #[test]
    fn list_is_sorted_with_metadata() {
        let store = MemoryStore::new();
        store.put_file(b"d/b", b"bb");
        store.put_file(b"d/a", b"a");
        store.put_dir(b"d/C");
        store.put_file(b"d/C/deep", b"x");
        let entries = store.list(b"d").unwrap();
        let got: Vec<_> = entries
            .iter()
            .map(|e| (e.name.clone(), e.meta.kind, e.meta.size, e.meta.mode))
            .collect();
        assert_eq!(
            got,
            vec![
                (b"C".to_vec(), FileKind::Dir, DIR_SIZE, Some(0o755)),
                (b"a".to_vec(), FileKind::File, 1, Some(0o644)),
                (b"b".to_vec(), FileKind::File, 2, Some(0o644)),
            ]
        );
        for e in &entries {
            assert!(e.meta.mtime_exact);
            assert!(e.meta.mtime.is_some());
            assert_eq!(e.meta.symlink_target, None);
            assert_eq!(Some(e.meta.clone()), store.metadata(&join(b"d", &e.name)));
        }
        assert_eq!(kind(store.list(b"missing")), ErrorKind::NotFound);
        assert_eq!(kind(store.list(b"d/a")), ErrorKind::NotFound, "a file");
        assert_eq!(kind(store.list(b"d/a/x")), ErrorKind::NotFound);
    }

    #[test]
    fn listing_times_are_exact_or_as_a_list_line_gives_them() {
        let store = MemoryStore::with_capabilities(caps(true, true, false));
        store.put_file(b"recent", b"r");
        store.put_file(b"old", b"o");
        store.put_file(b"future", b"f");
        let recent = UNIX_EPOCH
            + Duration::from_secs(ago(3600).duration_since(UNIX_EPOCH).unwrap().as_secs())
            + Duration::from_millis(1);
        let old = UNIX_EPOCH + Duration::from_secs(1_234_567_890);
        let future = SystemTime::now() + Duration::from_secs(10 * 86400);
        store.set_mtime(b"recent", recent).unwrap();
        store.set_mtime(b"old", old).unwrap();
        store.set_mtime(b"future", future).unwrap();
        let listed: HashMap<Vec<u8>, Metadata> = store
            .list(b"")
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.meta))
            .collect();
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let recent_listed = listed[&b"recent".to_vec()].mtime.unwrap();
        assert_eq!(secs(recent_listed), secs(recent) - secs(recent) % 60);
        assert_eq!(
            recent_listed
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos(),
            0
        );
        let old_listed = listed[&b"old".to_vec()].mtime.unwrap();
        assert_eq!(secs(old_listed), secs(old) - secs(old) % 86400);
        let future_listed = listed[&b"future".to_vec()].mtime.unwrap();
        assert_eq!(secs(future_listed) % 86400, 0);
        assert!(listed.values().all(|m| !m.mtime_exact));
        // stat goes through the listing on such servers; MDTM is exact.
        let stat = store.stat(b"old").unwrap();
        assert_eq!((stat.mtime, stat.mtime_exact), (Some(old_listed), false));
        assert_eq!(store.exact_mtime(b"old").unwrap(), old);
        assert_eq!(store.exact_mtime(b"recent").unwrap(), recent);
        assert_eq!(store.metadata(b"old").unwrap().mtime, Some(old));

        store.set_capabilities(caps(true, true, true));
        let stat = store.stat(b"recent").unwrap();
        assert_eq!((stat.mtime, stat.mtime_exact), (Some(recent), true));
    }

    #[test]
    fn stat_and_exact_mtime() {
        let store = MemoryStore::new();
        store.put_file(b"d/f", b"12345");
        let meta = store.stat(b"d/f").unwrap();
        assert_eq!((meta.kind, meta.size), (FileKind::File, 5));
        assert_eq!(store.exact_mtime(b"d/f").unwrap(), meta.mtime.unwrap());
        assert_eq!(store.stat(b"d").unwrap().kind, FileKind::Dir);
        assert_eq!(kind(store.stat(b"d/g")), ErrorKind::NotFound);
        assert_eq!(kind(store.stat(b"d/f/g")), ErrorKind::NotFound);
        assert_eq!(kind(store.exact_mtime(b"d/g")), ErrorKind::NotFound);
        assert_eq!(
            kind(store.exact_mtime(b"d")),
            ErrorKind::NotFound,
            "MDTM of a directory, as vsftpd"
        );
    }

    #[test]
    fn reads_from_offsets_over_a_snapshot() {
        let store = MemoryStore::new();
        let body: Vec<u8> = (0..100u8).collect();
        store.put_file(b"f", &body);
        assert_eq!(read_all(&store, b"f", 0), body);
        assert_eq!(read_all(&store, b"f", 37), body[37..]);
        assert_eq!(read_all(&store, b"f", 100), b"");
        assert_eq!(read_all(&store, b"f", 1000), b"", "past the end");

        let mut stream = store.open_read(b"f", 10).unwrap();
        assert_eq!(stream.position(), 10);
        write(&store, b"f", b"replaced");
        let mut tail = vec![0u8; 200];
        let n = stream.read(&mut tail).unwrap();
        assert_eq!(&tail[..n], &body[10..], "the content at open time");
        assert_eq!(stream.position(), 100);
        assert_eq!(stream.read(&mut tail).unwrap(), 0);
        assert_eq!(read_all(&store, b"f", 0), b"replaced");

        let mut empty = store.open_read(b"f", 0).unwrap();
        assert_eq!(empty.read(&mut []).unwrap(), 0);
        assert_eq!(empty.position(), 0);

        assert_eq!(kind(store.open_read(b"missing", 0)), ErrorKind::NotFound);
        store.put_dir(b"d");
        assert_eq!(kind(store.open_read(b"d", 0)), ErrorKind::NotFound);
        assert_eq!(kind(store.open_read(b"", 0)), ErrorKind::NotFound);
        assert_eq!(kind(store.open_read(b"f/x", 0)), ErrorKind::NotFound);
    }

    #[test]
    fn upload_creates_at_once_and_shows_bytes_as_they_come() {
        let store = MemoryStore::new();
        let before = store.metadata(b"").unwrap().mtime;
        let mut up = store.upload(b"new").unwrap();
        assert_eq!(store.file(b"new").unwrap(), b"", "created at STOR");
        assert_eq!(store.metadata(b"new").unwrap().mode, Some(0o644));
        assert!(store.metadata(b"").unwrap().mtime >= before);
        up.write(b"abc").unwrap();
        assert_eq!(store.file(b"new").unwrap(), b"abc");
        up.write(b"").unwrap();
        up.write(b"def").unwrap();
        assert_eq!(read_all(&store, b"new", 0), b"abcdef");
        store.set_mtime(b"new", UNIX_EPOCH).unwrap();
        let start = SystemTime::now();
        up.finish().unwrap();
        let mtime = store.metadata(b"new").unwrap().mtime.unwrap();
        assert!(mtime >= start, "finish sets the time to now");
    }

    #[test]
    fn upload_truncates_at_once_and_keeps_the_mode() {
        let store = MemoryStore::new();
        store.put_file(b"f", b"old content");
        store.chmod(b"f", 0o600).unwrap();
        let mut up = store.upload(b"f").unwrap();
        assert_eq!(store.file(b"f").unwrap(), b"");
        up.write(b"new").unwrap();
        up.finish().unwrap();
        assert_eq!(store.file(b"f").unwrap(), b"new");
        assert_eq!(store.metadata(b"f").unwrap().mode, Some(0o600));
    }

    #[test]
    fn a_dropped_upload_leaves_its_partial_file() {
        let store = MemoryStore::new();
        store.put_file(b"f", b"previous");
        let mut up = store.upload(b"f").unwrap();
        up.write(b"part").unwrap();
        drop(up);
        assert_eq!(store.file(b"f").unwrap(), b"part");
        drop(store.upload(b"g").unwrap());
        assert_eq!(store.file(b"g").unwrap(), b"");
    }

    #[test]
    fn append_keeps_the_content_or_creates() {
        let store = MemoryStore::new();
        store.put_file(b"f", b"head");
        let mut up = store.append(b"f").unwrap();
        assert_eq!(store.file(b"f").unwrap(), b"head");
        up.write(b"+tail").unwrap();
        up.finish().unwrap();
        assert_eq!(store.file(b"f").unwrap(), b"head+tail");
        let mut up = store.append(b"created").unwrap();
        up.write(b"x").unwrap();
        up.finish().unwrap();
        assert_eq!(store.file(b"created").unwrap(), b"x");
    }

    fn write_at(store: &MemoryStore, path: &[u8], offset: u64, bytes: &[u8]) {
        let mut up = store.upload_at(path, offset).expect("upload_at");
        up.write(bytes).expect("write");
        up.finish().expect("finish");
    }

    #[test]
    fn upload_at_as_each_server_does_it() {
        let store = MemoryStore::new();
        assert_eq!(
            store.store_at_offset(b""),
            StoreAtOffset::InPlace,
            "vsftpd's"
        );
        store.put_file(b"f", b"0123456789");
        write_at(&store, b"f", 3, b"XY");
        assert_eq!(store.file(b"f").unwrap(), b"012XY56789");
        // Writes continue where the last one ended, and past the end.
        let mut up = store.upload_at(b"f", 8).unwrap();
        up.write(b"ab").unwrap();
        assert_eq!(store.file(b"f").unwrap(), b"012XY567ab", "shows at once");
        up.write(b"cd").unwrap();
        up.finish().unwrap();
        assert_eq!(store.file(b"f").unwrap(), b"012XY567abcd");
        // A gap is zeros, on a new file too; an empty write extends nothing.
        write_at(&store, b"f", 14, b"!");
        assert_eq!(store.file(b"f").unwrap(), b"012XY567abcd\0\0!");
        write_at(&store, b"new", 2, b"z");
        assert_eq!(store.file(b"new").unwrap(), b"\0\0z");
        write_at(&store, b"new", 10, b"");
        assert_eq!(store.file(b"new").unwrap(), b"\0\0z");
        // REST 0 + STOR is STOR.
        write_at(&store, b"f", 0, b"whole");
        assert_eq!(store.file(b"f").unwrap(), b"whole");

        store.set_store_at_offset(StoreAtOffset::Truncates);
        assert_eq!(store.store_at_offset(b"any"), StoreAtOffset::Truncates);
        store.put_file(b"f", b"0123456789");
        let up = store.upload_at(b"f", 3).unwrap();
        assert_eq!(
            store.file(b"f").unwrap(),
            b"012",
            "cut at the offset at once"
        );
        drop(up);
        write_at(&store, b"f", 3, b"XY");
        assert_eq!(store.file(b"f").unwrap(), b"012XY");
        write_at(&store, b"f", 7, b"Z");
        assert_eq!(store.file(b"f").unwrap(), b"012XY\0\0Z");

        store.set_store_at_offset(StoreAtOffset::Refused);
        assert_eq!(kind(store.upload_at(b"f", 3)), ErrorKind::Unsupported);
        assert_eq!(store.file(b"f").unwrap(), b"012XY\0\0Z", "nothing changed");
        write_at(&store, b"f", 0, b"plain STOR still works");
        assert_eq!(store.file(b"f").unwrap(), b"plain STOR still works");

        store.set_store_at_offset(StoreAtOffset::Unknown);
        assert_eq!(store.store_at_offset(b""), StoreAtOffset::Unknown);
        write_at(&store, b"f", 6, b"S");
        assert_eq!(store.file(b"f").unwrap(), b"plain STOR still works");
        assert_eq!(store.counters().upload_at, 12);
        assert_eq!(store.counters().upload, 0);
    }

    #[test]
    fn upload_at_refusals_and_quota() {
        let store = MemoryStore::new();
        store.put_dir(b"d");
        assert_eq!(kind(store.upload_at(b"d", 1)), ErrorKind::Failed);
        assert_eq!(kind(store.upload_at(b"no/f", 1)), ErrorKind::NotFound);
        assert_eq!(kind(store.upload_at(b"a\nb", 1)), ErrorKind::InvalidInput);
        store.deny_writes_under(b"d");
        assert_eq!(
            kind(store.upload_at(b"d/f", 1)),
            ErrorKind::PermissionDenied
        );

        store.put_file(b"f", b"0123456789");
        store.set_quota(Some(12));
        // Overwriting costs nothing; growing costs what it grows by.
        write_at(&store, b"f", 2, b"abcdefgh");
        let mut up = store.upload_at(b"f", 8).unwrap();
        let err = up.write(b"ABCDEF").unwrap_err();
        assert_eq!(err.kind, ErrorKind::NoSpace);
        assert_eq!(store.file(b"f").unwrap(), b"01abcdefABCD", "what fits");
        assert_eq!(kind(up.finish()), ErrorKind::NoSpace);
        let mut up = store.upload_at(b"f", 20).unwrap();
        assert_eq!(kind(up.write(b"x")), ErrorKind::NoSpace);
        assert_eq!(store.file(b"f").unwrap().len(), 12, "no gap either");
    }

    #[test]
    fn append_can_be_refused() {
        let store = MemoryStore::new();
        store.put_file(b"f", b"x");
        store.set_append(false);
        assert!(!store.capabilities().append);
        assert_eq!(kind(store.append(b"f")), ErrorKind::Unsupported);
        store.set_append(true);
        store.append(b"f").unwrap().finish().unwrap();
    }

    #[test]
    fn sizes_now() {
        let store = MemoryStore::new();
        store.put_file(b"d/f", b"12345");
        store.put_symlink(b"link", b"d/f");
        assert_eq!(store.size(b"d/f").unwrap(), 5);
        assert_eq!(store.size(b"link").unwrap(), 5, "follows links");
        let mut up = store.append(b"d/f").unwrap();
        up.write(b"67").unwrap();
        assert_eq!(store.size(b"d/f").unwrap(), 7, "as the server has it now");
        assert_eq!(kind(store.size(b"d")), ErrorKind::NotFound);
        assert_eq!(kind(store.size(b"")), ErrorKind::NotFound);
        assert_eq!(kind(store.size(b"missing")), ErrorKind::NotFound);
        assert_eq!(store.counters().size, 6);
    }

    #[test]
    fn digests_only_where_offered() {
        use ftpsfs::digest::to_hex;
        let store = MemoryStore::new();
        store.put_file(b"f", b"abc123456789");
        assert!(store.capabilities().digests.is_empty(), "vsftpd has none");
        let sha256 = DigestAlgorithm::Sha256;
        assert_eq!(
            kind(store.digest(b"f", sha256, None)),
            ErrorKind::Unsupported
        );
        store.set_digests(DigestSet::of(&DigestAlgorithm::ALL));
        assert_eq!(
            to_hex(&store.digest(b"f", sha256, Some((0, 3))).unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let crc = store.digest(b"f", DigestAlgorithm::Crc32, Some((3, 12)));
        assert_eq!(to_hex(&crc.unwrap()), "cbf43926");
        assert_eq!(
            store.digest(b"f", DigestAlgorithm::Sha1, None).unwrap(),
            DigestAlgorithm::Sha1.digest(b"abc123456789").unwrap()
        );
        assert_eq!(
            kind(store.digest(b"f", DigestAlgorithm::Md5, None)),
            ErrorKind::Unsupported,
            "not computable here"
        );
        assert_eq!(
            kind(store.digest(b"f", sha256, Some((3, 3)))),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(store.digest(b"f", sha256, Some((3, 13)))),
            ErrorKind::Failed
        );
        assert_eq!(kind(store.digest(b"", sha256, None)), ErrorKind::NotFound);
        assert_eq!(
            kind(store.digest(b"nope", sha256, None)),
            ErrorKind::NotFound
        );
        store.put_file(b"empty", b"");
        assert_eq!(
            to_hex(
                &store
                    .digest(b"empty", DigestAlgorithm::Crc32, None)
                    .unwrap()
            ),
            "00000000"
        );
        assert_eq!(store.counters().digest, 10);
    }

    #[test]
    fn upload_and_append_refusals() {
        let store = MemoryStore::new();
        store.put_file(b"file", b"");
        store.put_dir(b"dir");
        for op in [Op::Upload, Op::Append] {
            let start = |path: &[u8]| match op {
                Op::Upload => store.upload(path),
                _ => store.append(path),
            };
            assert_eq!(kind(start(b"no/parent")), ErrorKind::NotFound);
            assert_eq!(kind(start(b"file/x")), ErrorKind::NotFound);
            assert_eq!(kind(start(b"dir")), ErrorKind::Failed);
            assert_eq!(kind(start(b"")), ErrorKind::Failed);
        }
        assert!(!store.exists(b"no"));
        assert_eq!(store.paths(), vec![b"dir".to_vec(), b"file".to_vec()]);
    }

    #[test]
    fn an_upload_follows_its_file_through_renames_and_deletes() {
        let store = MemoryStore::new();
        let mut up = store.upload(b"a").unwrap();
        up.write(b"1").unwrap();
        store.rename(b"a", b"b").unwrap();
        up.write(b"2").unwrap();
        assert_eq!(store.file(b"b").unwrap(), b"12");
        assert!(!store.exists(b"a"));
        store.delete(b"b").unwrap();
        up.write(b"3").unwrap();
        up.finish().unwrap();
        assert!(store.paths().is_empty(), "the unlinked file stays gone");
    }

    #[test]
    fn delete() {
        let store = MemoryStore::new();
        store.put_file(b"d/f", b"x");
        store.delete(b"d/f").unwrap();
        assert!(!store.exists(b"d/f"));
        assert_eq!(kind(store.delete(b"d/f")), ErrorKind::NotFound);
        assert_eq!(kind(store.delete(b"nope/f")), ErrorKind::NotFound);
        assert_eq!(kind(store.delete(b"d")), ErrorKind::PermissionDenied);
        assert_eq!(kind(store.delete(b"")), ErrorKind::PermissionDenied);
        assert!(store.exists(b"d"));
    }

    #[test]
    fn mkdir() {
        let store = MemoryStore::new();
        store.mkdir(b"d").unwrap();
        store.mkdir(b"d/e").unwrap();
        assert_eq!(store.metadata(b"d/e").unwrap().kind, FileKind::Dir);
        assert_eq!(kind(store.mkdir(b"d")), ErrorKind::AlreadyExists);
        assert_eq!(kind(store.mkdir(b"")), ErrorKind::AlreadyExists);
        store.put_file(b"f", b"");
        assert_eq!(kind(store.mkdir(b"f")), ErrorKind::AlreadyExists);
        assert_eq!(kind(store.mkdir(b"f/x")), ErrorKind::NotFound);
        assert_eq!(kind(store.mkdir(b"x/y")), ErrorKind::NotFound);
    }

    #[test]
    fn rmdir() {
        let store = MemoryStore::new();
        store.put_file(b"d/e/f", b"");
        assert_eq!(kind(store.rmdir(b"d")), ErrorKind::NotEmpty);
        assert_eq!(kind(store.rmdir(b"d/e/f")), ErrorKind::PermissionDenied);
        assert_eq!(kind(store.rmdir(b"d/x")), ErrorKind::NotFound);
        assert_eq!(kind(store.rmdir(b"x/y")), ErrorKind::NotFound);
        assert_eq!(kind(store.rmdir(b"")), ErrorKind::PermissionDenied);
        store.delete(b"d/e/f").unwrap();
        store.rmdir(b"d/e").unwrap();
        store.rmdir(b"d").unwrap();
        assert!(store.paths().is_empty());
    }

    #[test]
    fn directory_times_follow_their_entries() {
        let store = MemoryStore::new();
        store.put_dir(b"d");
        let check = |what: &str, op: &dyn Fn()| {
            store.set_mtime(b"d", UNIX_EPOCH).unwrap();
            op();
            let mtime = store.metadata(b"d").unwrap().mtime.unwrap();
            assert!(mtime > UNIX_EPOCH, "{what} changes the directory's time");
        };
        check("upload", &|| write(&store, b"d/f", b"x"));
        check("mkdir", &|| store.mkdir(b"d/sub").unwrap());
        check("rename in", &|| {
            store.put_file(b"outside", b"");
            store.rename(b"outside", b"d/g").unwrap()
        });
        check("rename out", &|| store.rename(b"d/g", b"g").unwrap());
        check("delete", &|| store.delete(b"d/f").unwrap());
        check("rmdir", &|| store.rmdir(b"d/sub").unwrap());
        store.put_file(b"d/h", b"");
        store.set_mtime(b"d", UNIX_EPOCH).unwrap();
        write(&store, b"d/h", b"changed");
        assert_eq!(
            store.metadata(b"d").unwrap().mtime,
            Some(UNIX_EPOCH),
            "writing a file leaves its directory alone"
        );
    }

    /// Each case: the tree before (files with content, dirs ending in '/'),
    /// the rename, the result, the tree after.
    #[test]
    fn rename_table() {
        type Case = (
            &'static [&'static str],
            &'static str,
            &'static str,
            std::result::Result<(), ErrorKind>,
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (&["a=1"], "a", "b", Ok(()), &["b=1"]),
            (&["a=1", "b=2"], "a", "b", Ok(()), &["b=1"]),
            (&["a=1"], "a", "a", Ok(()), &["a=1"]),
            (&["d/", "a=1"], "a", "d/a", Ok(()), &["d/", "d/a=1"]),
            (&["d/", "d/x=1"], "d", "e", Ok(()), &["e/", "e/x=1"]),
            (
                &["d/", "d/s/", "d/s/x=1"],
                "d",
                "n",
                Ok(()),
                &["n/", "n/s/", "n/s/x=1"],
            ),
            (&["d/", "d/x=1", "e/"], "d", "e", Ok(()), &["e/", "e/x=1"]),
            (
                &["d/", "d/x=1", "e/", "e/y=2"],
                "d",
                "e",
                Err(ErrorKind::NotEmpty),
                &["d/", "d/x=1", "e/", "e/y=2"],
            ),
            (
                &["a=1", "d/"],
                "a",
                "d",
                Err(ErrorKind::Failed),
                &["a=1", "d/"],
            ),
            (
                &["a=1", "d/"],
                "d",
                "a",
                Err(ErrorKind::Failed),
                &["a=1", "d/"],
            ),
            (&[], "a", "b", Err(ErrorKind::NotFound), &[]),
            (&["a=1"], "a", "no/b", Err(ErrorKind::NotFound), &["a=1"]),
            (
                &["a=1", "f=2"],
                "a",
                "f/b",
                Err(ErrorKind::NotFound),
                &["a=1", "f=2"],
            ),
            (&["d/"], "d", "d/e", Err(ErrorKind::InvalidInput), &["d/"]),
            (
                &["d/", "d/s/"],
                "d",
                "d/s/e",
                Err(ErrorKind::InvalidInput),
                &["d/", "d/s/"],
            ),
            (
                &["d/", "d/s/"],
                "d/s",
                "d",
                Err(ErrorKind::NotEmpty),
                &["d/", "d/s/"],
            ),
            (&["d/"], "", "x", Err(ErrorKind::Failed), &["d/"]),
            (&["d/"], "d", "", Err(ErrorKind::NotEmpty), &["d/"]),
            (&["a=1"], "a", "", Err(ErrorKind::Failed), &["a=1"]),
            (
                &["a=1"],
                "a",
                "b\r\n",
                Err(ErrorKind::InvalidInput),
                &["a=1"],
            ),
            // A name that extends another is not inside it.
            (&["d/"], "d", "dd", Ok(()), &["dd/"]),
        ];
        for (before, from, to, expected, after) in cases {
            let store = MemoryStore::new();
            for spec in before.iter() {
                match spec.split_once('=') {
                    Some((path, body)) => store.put_file(path.as_bytes(), body.as_bytes()),
                    None => store.put_dir(spec.trim_end_matches('/').as_bytes()),
                }
            }
            let got = store
                .rename(from.as_bytes(), to.as_bytes())
                .map_err(|e| e.kind);
            assert_eq!(&got, expected, "rename {from} -> {to} over {before:?}");
            let tree: Vec<String> = store
                .paths()
                .into_iter()
                .map(|p| match store.file(&p) {
                    Some(body) => format!("{}={}", shown(&p), String::from_utf8_lossy(&body)),
                    None => format!("{}/", shown(&p)),
                })
                .collect();
            assert_eq!(&tree, after, "rename {from} -> {to} over {before:?}");
        }
    }

    #[test]
    fn rename_keeps_the_moved_entry_attributes() {
        let store = MemoryStore::new();
        store.put_file(b"a", b"x");
        store.set_mtime(b"a", UNIX_EPOCH).unwrap();
        store.chmod(b"a", 0o600).unwrap();
        store.rename(b"a", b"b").unwrap();
        let meta = store.metadata(b"b").unwrap();
        assert_eq!((meta.mtime, meta.mode), (Some(UNIX_EPOCH), Some(0o600)));
    }

    #[test]
    fn chmod_and_set_mtime() {
        let store = MemoryStore::new();
        store.put_file(b"d/f", b"");
        store.chmod(b"d/f", 0o100_640).unwrap();
        store.chmod(b"d", 0o700).unwrap();
        assert_eq!(store.stat(b"d/f").unwrap().mode, Some(0o640));
        assert_eq!(store.list(b"").unwrap()[0].meta.mode, Some(0o700));
        let when = UNIX_EPOCH + Duration::from_secs(1_234_567_890);
        store.set_mtime(b"d/f", when).unwrap();
        store.set_mtime(b"d", when).unwrap();
        assert_eq!(store.exact_mtime(b"d/f").unwrap(), when);
        assert_eq!(store.stat(b"d").unwrap().mtime, Some(when));
        assert_eq!(kind(store.chmod(b"x", 0o600)), ErrorKind::NotFound);
        assert_eq!(kind(store.set_mtime(b"x", when)), ErrorKind::NotFound);

        let store = MemoryStore::with_capabilities(caps(false, false, true));
        store.put_file(b"f", b"");
        assert_eq!(kind(store.chmod(b"f", 0o600)), ErrorKind::Unsupported);
        assert_eq!(kind(store.set_mtime(b"f", when)), ErrorKind::Unsupported);
        assert_eq!(store.capabilities(), caps(false, false, true));
        assert_eq!(store.metadata(b"f").unwrap().mode, Some(0o644));
    }

    #[test]
    fn names_that_cannot_be_sent_are_refused() {
        let store = MemoryStore::new();
        store.put_file(b"ok", b"");
        for bad in [&b"a\rb"[..], b"a\nb", b"a\0b", b"ok\r\nDELE ok"] {
            assert_eq!(kind(store.list(bad)), ErrorKind::InvalidInput);
            assert_eq!(kind(store.stat(bad)), ErrorKind::InvalidInput);
            assert_eq!(kind(store.exact_mtime(bad)), ErrorKind::InvalidInput);
            assert_eq!(kind(store.open_read(bad, 0)), ErrorKind::InvalidInput);
            assert_eq!(kind(store.upload(bad)), ErrorKind::InvalidInput);
            assert_eq!(kind(store.append(bad)), ErrorKind::InvalidInput);
            assert_eq!(kind(store.delete(bad)), ErrorKind::InvalidInput);
            assert_eq!(kind(store.mkdir(bad)), ErrorKind::InvalidInput);
            assert_eq!(kind(store.rmdir(bad)), ErrorKind::InvalidInput);
            assert_eq!(kind(store.rename(b"ok", bad)), ErrorKind::InvalidInput);
            assert_eq!(kind(store.rename(bad, b"x")), ErrorKind::InvalidInput);
            assert_eq!(kind(store.chmod(bad, 0o600)), ErrorKind::InvalidInput);
            assert_eq!(
                kind(store.set_mtime(bad, UNIX_EPOCH)),
                ErrorKind::InvalidInput
            );
        }
        for malformed in [&b"/ok"[..], b"ok/", b"a//b", b".", b"a/../ok", b"./ok"] {
            assert_eq!(kind(store.stat(malformed)), ErrorKind::InvalidInput);
            assert_eq!(kind(store.upload(malformed)), ErrorKind::InvalidInput);
        }
        assert_eq!(store.paths(), vec![b"ok".to_vec()]);
        assert_eq!(store.file(b"ok").unwrap(), b"");
    }

    #[test]
    fn counters_count_each_operation_and_the_bytes() {
        let store = MemoryStore::new();
        let calls: [(Op, &dyn Fn()); 12] = [
            (Op::List, &|| drop(store.list(b""))),
            (Op::Stat, &|| drop(store.stat(b"f"))),
            (Op::ExactMtime, &|| drop(store.exact_mtime(b"f"))),
            (Op::OpenRead, &|| drop(store.open_read(b"f", 0))),
            (Op::Upload, &|| drop(store.upload(b"f"))),
            (Op::Append, &|| drop(store.append(b"f"))),
            (Op::Delete, &|| drop(store.delete(b"f"))),
            (Op::Mkdir, &|| drop(store.mkdir(b"d"))),
            (Op::Rmdir, &|| drop(store.rmdir(b"d"))),
            (Op::Rename, &|| drop(store.rename(b"f", b"g"))),
            (Op::Chmod, &|| drop(store.chmod(b"f", 0o600))),
            (Op::SetMtime, &|| drop(store.set_mtime(b"f", UNIX_EPOCH))),
        ];
        for (op, call) in calls {
            store.reset_counters();
            call();
            call(); // failed calls count too
            let counts = store.counters();
            assert_eq!(counts.get(op), 2, "{op:?}");
            assert_eq!(counts.total(), 2, "{op:?} counts nothing else");
        }
        store.reset_counters();
        store.capabilities();
        store.put_file(b"helper", b"helpers are not counted");
        assert_eq!(store.file(b"helper").unwrap().len(), 23);
        assert_eq!(store.counters(), OpCounts::default());

        write(&store, b"f", b"12345");
        read_all(&store, b"f", 1);
        let counts = store.counters();
        assert_eq!((counts.bytes_uploaded, counts.bytes_read), (5, 4));
        assert_eq!(counts.total(), 2, "bytes are not operations");
        store.reset_counters();
        assert_eq!(store.counters(), OpCounts::default());
    }

    #[test]
    fn quota_fails_the_write_that_goes_past_it() {
        let store = MemoryStore::new();
        store.put_file(b"existing", b"12345");
        store.set_quota(Some(10));
        let mut up = store.upload(b"f").unwrap();
        up.write(b"abc").unwrap();
        let err = up.write(b"defg").unwrap_err();
        assert_eq!(err.kind, ErrorKind::NoSpace);
        assert_eq!(store.file(b"f").unwrap(), b"abcde", "what fits is stored");
        assert_eq!(up.write(b"").unwrap_err().kind, ErrorKind::NoSpace);
        assert_eq!(up.finish().unwrap_err().kind, ErrorKind::NoSpace);

        // Truncating and deleting free space.
        write(&store, b"existing", b"");
        let mut up = store.append(b"f").unwrap();
        up.write(b"fghij").unwrap();
        up.finish().unwrap();
        assert_eq!(store.file(b"f").unwrap(), b"abcdefghij");
        assert_eq!(
            kind(store.append(b"f").unwrap().write(b"k")),
            ErrorKind::NoSpace
        );
        store.delete(b"f").unwrap();
        write(&store, b"g", b"0123456789");
        store.put_file(b"h", b"x"); // helpers ignore the quota
        store.rename(b"h", b"g").unwrap(); // replacing frees the old file
        write(&store, b"i", b"012345678");
        store.set_quota(None);
        write(&store, b"big", &[0u8; 1000]);
    }

    #[test]
    fn denied_subtrees_refuse_writes_but_not_reads() {
        let store = MemoryStore::new();
        store.put_file(b"ro/f", b"x");
        store.put_dir(b"ro/d");
        store.put_file(b"rox", b"sibling");
        store.deny_writes_under(b"ro");
        let denied = ErrorKind::PermissionDenied;
        assert_eq!(kind(store.upload(b"ro/f")), denied);
        assert_eq!(kind(store.upload(b"ro/new")), denied);
        assert_eq!(kind(store.append(b"ro/f")), denied);
        assert_eq!(kind(store.delete(b"ro/f")), denied);
        assert_eq!(kind(store.mkdir(b"ro/e")), denied);
        assert_eq!(kind(store.rmdir(b"ro/d")), denied);
        assert_eq!(kind(store.rmdir(b"ro")), denied);
        assert_eq!(kind(store.rename(b"ro/f", b"out")), denied);
        assert_eq!(kind(store.rename(b"rox", b"ro/in")), denied);
        assert_eq!(kind(store.rename(b"ro", b"elsewhere")), denied);
        assert_eq!(kind(store.chmod(b"ro/f", 0o600)), denied);
        assert_eq!(kind(store.set_mtime(b"ro/f", UNIX_EPOCH)), denied);
        assert_eq!(read_all(&store, b"ro/f", 0), b"x");
        assert_eq!(names(&store, b"ro"), vec![b"d".to_vec(), b"f".to_vec()]);
        write(&store, b"rox", b"writable");
        store.mkdir(b"other").unwrap();
        store.allow_all_writes();
        store.delete(b"ro/f").unwrap();
        store.deny_writes_under(b"");
        assert_eq!(kind(store.mkdir(b"anything")), denied);
        assert_eq!(kind(store.delete(b"rox")), denied);
    }

    #[test]
    fn helpers() {
        let store = MemoryStore::new();
        store.put_file(b"a/b/c", b"abc");
        store.put_dir(b"a/e/f");
        store.put_dir(b"a/e"); // exists: nothing
        store.put_file(b"a/b/c", b"replaced");
        assert_eq!(store.file(b"a/b/c").unwrap(), b"replaced");
        assert_eq!(store.file(b"a/b"), None, "a directory");
        assert_eq!(store.file(b"a/x"), None);
        assert_eq!(store.file(b"bad\n"), None);
        assert!(store.exists(b"a/e/f"));
        assert!(!store.exists(b"a/e/g"));
        let meta = store.metadata(b"a/b/c").unwrap();
        assert_eq!(
            (meta.kind, meta.size, meta.mtime_exact),
            (FileKind::File, 8, true)
        );
        let paths: Vec<&[u8]> = vec![b"a", b"a/b", b"a/b/c", b"a/e", b"a/e/f"];
        assert_eq!(store.paths(), paths);
        assert_eq!(store.counters().total(), 0);
    }

    #[test]
    #[should_panic(expected = "a file is in the way")]
    fn put_file_through_a_file_panics() {
        let store = MemoryStore::new();
        store.put_file(b"f", b"");
        store.put_file(b"f/g", b"");
    }

    #[test]
    fn concurrent_uploads_and_reads() {
        let store = Arc::new(MemoryStore::new());
        store.put_dir(b"d");
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let path = format!("d/file{t}").into_bytes();
                    let body: Vec<u8> = (0..20_000u32).map(|i| (i as u8) ^ t).collect();
                    let mut up = store.upload(&path).unwrap();
                    for chunk in body.chunks(1000) {
                        up.write(chunk).unwrap();
                        // Readers and listers race with the writers.
                        let seen = store.open_read(&path, 0).unwrap();
                        drop(seen);
                        store.list(b"d").unwrap();
                    }
                    up.finish().unwrap();
                    assert_eq!(read_all(&store, &path, 0), body);
                    body
                })
            })
            .collect();
        let bodies: Vec<Vec<u8>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (t, body) in bodies.iter().enumerate() {
            assert_eq!(store.file(format!("d/file{t}").as_bytes()).unwrap(), *body);
        }
        let counts = store.counters();
        assert_eq!(counts.upload, 8);
        assert_eq!(counts.bytes_uploaded, 8 * 20_000);
        assert_eq!(counts.bytes_read, 8 * 20_000);
        assert_eq!(names(&store, b"d").len(), 8);
    }

    #[test]
    fn store_and_streams_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<MemoryStore>();
        send::<MemoryReader>();
        send::<MemoryUpload>();
        let _: Box<dyn RemoteStore> = Box::new(MemoryStore::default());
    }

    #[test]
    fn list_line_times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(list_line_time(t(1_699_999_999), now), t(1_699_999_980));
        assert_eq!(list_line_time(t(1_700_000_001), now), t(1_699_920_000));
        assert_eq!(list_line_time(t(1_600_000_000), now), t(1_599_955_200));
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(list_line_time(before_epoch, now), before_epoch);
    }

    /// `d/target` (a file), `d/sub/` and links to them in every spelling.
    fn linked() -> MemoryStore {
        let store = MemoryStore::new();
        store.put_file(b"d/target", b"hello");
        store.put_dir(b"d/sub");
        store.put_symlink(b"d/rel", b"target");
        store.put_symlink(b"d/abs", b"/d/target");
        store.put_symlink(b"d/sub/up", b"../target");
        store.put_symlink(b"d/chain", b"./rel");
        store.put_symlink(b"d/dangling", b"nowhere");
        store.put_symlink(b"d/todir", b"sub");
        store.put_symlink(b"top", b"../../d//target");
        store
    }

    #[test]
    fn links_list_and_stat_as_themselves() {
        let store = linked();
        let listed: HashMap<Vec<u8>, Metadata> = store
            .list(b"d")
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.meta))
            .collect();
        for (name, target) in [
            ("rel", &b"target"[..]),
            ("abs", b"/d/target"),
            ("chain", b"./rel"),
            ("dangling", b"nowhere"),
            ("todir", b"sub"),
        ] {
            let path = format!("d/{name}").into_bytes();
            let meta = &listed[name.as_bytes()];
            assert_eq!(meta.kind, FileKind::Symlink, "{name}");
            assert_eq!(meta.symlink_target.as_deref(), Some(target), "{name}");
            assert_eq!(meta.size, target.len() as u64, "{name}: as lstat");
            assert_eq!(meta.mode, Some(0o777), "{name}");
            assert_eq!(store.stat(&path).unwrap(), *meta, "{name}");
            assert_eq!(store.metadata(&path).as_ref(), Some(meta), "{name}");
            assert_eq!(store.symlink(&path).as_deref(), Some(target), "{name}");
            assert_eq!(store.file(&path), None, "{name}: not a file");
        }
        assert_eq!(listed[&b"target".to_vec()].symlink_target, None);
        assert_eq!(store.symlink(b"d/target"), None);
        assert_eq!(store.symlink(b"d/missing"), None);
        assert!(store.paths().contains(&b"d/dangling".to_vec()));

        let store = MemoryStore::with_capabilities(caps(true, true, false));
        store.put_symlink(b"l", b"x");
        let meta = store.stat(b"l").unwrap();
        assert_eq!((meta.kind, meta.mtime_exact), (FileKind::Symlink, false));
    }

    #[test]
    fn reads_follow_links_as_the_server_does() {
        let store = linked();
        for link in [&b"d/rel"[..], b"d/abs", b"d/sub/up", b"d/chain", b"top"] {
            assert_eq!(read_all(&store, link, 1), b"ello", "{link:?}");
        }
        assert_eq!(kind(store.open_read(b"d/dangling", 0)), ErrorKind::NotFound);
        assert_eq!(
            kind(store.open_read(b"d/todir", 0)),
            ErrorKind::NotFound,
            "a directory"
        );
        assert_eq!(
            kind(store.open_read(b"d/todir/up", 0)),
            ErrorKind::NotFound,
            "a path through a link"
        );
        assert_eq!(kind(store.stat(b"d/todir/up")), ErrorKind::NotFound);
        assert_eq!(
            store.exact_mtime(b"d/rel").unwrap(),
            store.exact_mtime(b"d/target").unwrap()
        );
        assert_eq!(kind(store.exact_mtime(b"d/dangling")), ErrorKind::NotFound);
        let listed: Vec<Vec<u8>> = names(&store, b"d/todir");
        assert_eq!(
            listed,
            names(&store, b"d/sub"),
            "LIST of a link lists its target"
        );
        assert_eq!(kind(store.list(b"d/rel")), ErrorKind::NotFound, "a file");
        assert_eq!(kind(store.list(b"d/dangling")), ErrorKind::NotFound);
    }

    #[test]
    fn loops_and_long_chains() {
        let store = MemoryStore::new();
        store.put_symlink(b"self", b"self");
        store.put_symlink(b"a", b"b");
        store.put_symlink(b"b", b"/a");
        for looping in [&b"self"[..], b"a", b"b"] {
            assert_eq!(kind(store.open_read(looping, 0)), ErrorKind::NotFound);
            assert_eq!(kind(store.upload(looping)), ErrorKind::NotFound);
            assert_eq!(store.stat(looping).unwrap().kind, FileKind::Symlink);
        }
        store.put_file(b"f", b"end");
        store.put_symlink(b"l0", b"f");
        for i in 1..=MAX_LINKS {
            store.put_symlink(format!("l{i}").as_bytes(), format!("l{}", i - 1).as_bytes());
        }
        let longest = format!("l{}", MAX_LINKS - 1);
        assert_eq!(read_all(&store, longest.as_bytes(), 0), b"end", "40 links");
        let too_long = format!("l{MAX_LINKS}");
        assert_eq!(
            kind(store.open_read(too_long.as_bytes(), 0)),
            ErrorKind::NotFound,
            "41 links"
        );
    }

    #[test]
    fn delete_and_rename_act_on_the_link_itself() {
        let store = linked();
        store.delete(b"d/rel").unwrap();
        assert!(!store.exists(b"d/rel"));
        assert_eq!(store.file(b"d/target").unwrap(), b"hello");
        store.delete(b"d/dangling").unwrap();
        assert_eq!(kind(store.rmdir(b"d/todir")), ErrorKind::PermissionDenied);
        assert!(store.exists(b"d/sub"));

        store.rename(b"d/abs", b"moved").unwrap();
        assert_eq!(store.symlink(b"moved").unwrap(), b"/d/target");
        assert!(!store.exists(b"d/abs"));
        assert_eq!(read_all(&store, b"moved", 0), b"hello");
        store.put_file(b"plain", b"old");
        store.rename(b"moved", b"plain").unwrap();
        assert_eq!(store.symlink(b"plain").unwrap(), b"/d/target", "replaced");
        assert_eq!(kind(store.rename(b"plain", b"d/sub")), ErrorKind::Failed);
        assert_eq!(kind(store.rename(b"d/sub", b"plain")), ErrorKind::Failed);
        store.rename(b"d/target", b"plain").unwrap();
        assert_eq!(
            store.file(b"plain").unwrap(),
            b"hello",
            "a file over a link"
        );
        assert_eq!(store.state.lock().used, 5);
    }

    #[test]
    fn writes_through_a_link_reach_its_target() {
        let store = linked();
        write(&store, b"d/rel", b"new");
        assert_eq!(store.file(b"d/target").unwrap(), b"new");
        assert_eq!(store.symlink(b"d/rel").unwrap(), b"target", "still a link");
        let mut up = store.append(b"d/sub/up").unwrap();
        up.write(b"+more").unwrap();
        up.finish().unwrap();
        assert_eq!(store.file(b"d/target").unwrap(), b"new+more");
        write(&store, b"d/dangling", b"made");
        assert_eq!(store.file(b"d/nowhere").unwrap(), b"made", "O_CREAT");
        assert_eq!(kind(store.upload(b"d/todir")), ErrorKind::Failed);
        store.put_symlink(b"lost", b"no/dir/f");
        assert_eq!(kind(store.upload(b"lost")), ErrorKind::NotFound);

        store.chmod(b"d/abs", 0o600).unwrap();
        store.set_mtime(b"d/abs", UNIX_EPOCH).unwrap();
        let target = store.metadata(b"d/target").unwrap();
        assert_eq!((target.mode, target.mtime), (Some(0o600), Some(UNIX_EPOCH)));
        let link = store.metadata(b"d/abs").unwrap();
        assert_eq!(link.mode, Some(0o777));
        assert_ne!(link.mtime, Some(UNIX_EPOCH));
        assert_eq!(kind(store.chmod(b"lost", 0o600)), ErrorKind::NotFound);

        store.deny_writes_under(b"d/sub");
        assert_eq!(
            kind(store.upload(b"d/sub/up")),
            ErrorKind::PermissionDenied,
            "the link's path"
        );
        store.put_symlink(b"in", b"d/sub/f");
        assert_eq!(
            kind(store.upload(b"in")),
            ErrorKind::PermissionDenied,
            "the target's path"
        );
    }

    #[test]
    fn helpers_replace_links_and_files() {
        let store = MemoryStore::new();
        store.put_file(b"f", b"12345");
        store.put_symlink(b"f", b"elsewhere");
        assert_eq!(store.symlink(b"f").unwrap(), b"elsewhere");
        assert_eq!(store.state.lock().used, 0, "the file's bytes are freed");
        store.put_file(b"f", b"abc");
        assert_eq!(store.file(b"f").unwrap(), b"abc");
        store.put_symlink(b"new/dir/l", b"../../f");
        assert_eq!(read_all(&store, b"new/dir/l", 0), b"abc");
        assert_eq!(store.counters().total(), 1);
    }

    #[test]
    #[should_panic(expected = "is a directory")]
    fn put_symlink_onto_a_directory_panics() {
        let store = MemoryStore::new();
        store.put_dir(b"d");
        store.put_symlink(b"d", b"x");
    }

    /// The store against a flat model of the same rules (a map from full
    /// paths to entries), over random sequences of operations.
    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone, PartialEq)]
        enum Entry {
            Dir,
            File(Vec<u8>),
        }

        #[derive(Debug, Clone)]
        enum Step {
            Upload(usize, Vec<u8>),
            Append(usize, Vec<u8>),
            Delete(usize),
            Mkdir(usize),
            Rmdir(usize),
            Rename(usize, usize),
            Read(usize),
        }

        const PATHS: [&str; 9] = ["", "a", "b", "a/a", "a/b", "b/a", "b/b", "a/a/a", "a/b/a"];

        fn step() -> impl Strategy<Value = Step> {
            let path = 0..PATHS.len();
            let body = proptest::collection::vec(any::<u8>(), 0..6);
            prop_oneof![
                (path.clone(), body.clone()).prop_map(|(p, b)| Step::Upload(p, b)),
                (path.clone(), body).prop_map(|(p, b)| Step::Append(p, b)),
                path.clone().prop_map(Step::Delete),
                path.clone().prop_map(Step::Mkdir),
                path.clone().prop_map(Step::Mkdir),
                path.clone().prop_map(Step::Rmdir),
                (path.clone(), path.clone()).prop_map(|(a, b)| Step::Rename(a, b)),
                path.prop_map(Step::Read),
            ]
        }

        struct Model(BTreeMap<Vec<u8>, Entry>);

        impl Model {
            fn get(&self, p: &[u8]) -> Option<&Entry> {
                if p.is_empty() {
                    return Some(&Entry::Dir);
                }
                self.0.get(p)
            }

            fn is_dir(&self, p: &[u8]) -> bool {
                self.get(p) == Some(&Entry::Dir)
            }

            fn parent_is_dir(&self, p: &[u8]) -> bool {
                self.is_dir(split(p).0)
            }

            fn has_children(&self, p: &[u8]) -> bool {
                self.0.keys().any(|k| is_under(k, p))
            }

            fn apply(&mut self, step: &Step) -> std::result::Result<Vec<u8>, ErrorKind> {
                use ErrorKind::*;
                let path = |i: &usize| PATHS[*i].as_bytes().to_vec();
                match step {
                    Step::Upload(p, body) | Step::Append(p, body) => {
                        let p = path(p);
                        if p.is_empty() {
                            return Err(Failed);
                        }
                        if !self.parent_is_dir(&p) {
                            return Err(NotFound);
                        }
                        let mut content = match self.get(&p) {
                            Some(Entry::Dir) => return Err(Failed),
                            Some(Entry::File(old)) if matches!(step, Step::Append(..)) => {
                                old.clone()
                            }
                            _ => Vec::new(),
                        };
                        content.extend_from_slice(body);
                        self.0.insert(p, Entry::File(content));
                    }
                    Step::Delete(p) => {
                        let p = path(p);
                        match self.get(&p) {
                            None => return Err(NotFound),
                            Some(Entry::Dir) => return Err(PermissionDenied),
                            Some(Entry::File(_)) => self.0.remove(&p),
                        };
                    }
                    Step::Mkdir(p) => {
                        let p = path(p);
                        if self.get(&p).is_some() {
                            return Err(AlreadyExists);
                        }
                        if !self.parent_is_dir(&p) {
                            return Err(NotFound);
                        }
                        self.0.insert(p, Entry::Dir);
                    }
                    Step::Rmdir(p) => {
                        let p = path(p);
                        match self.get(&p) {
                            _ if p.is_empty() => return Err(PermissionDenied),
                            None => return Err(NotFound),
                            Some(Entry::File(_)) => return Err(PermissionDenied),
                            Some(Entry::Dir) if self.has_children(&p) => return Err(NotEmpty),
                            Some(Entry::Dir) => self.0.remove(&p),
                        };
                    }
                    Step::Rename(from, to) => {
                        let (from, to) = (path(from), path(to));
                        if from.is_empty() {
                            return Err(Failed);
                        }
                        let Some(source) = self.get(&from).cloned() else {
                            return Err(NotFound);
                        };
                        if !to.is_empty() && !self.parent_is_dir(&to) {
                            return Err(NotFound);
                        }
                        if from == to {
                            return Ok(Vec::new());
                        }
                        if is_under(&to, &from) {
                            return Err(InvalidInput);
                        }
                        match (&source, self.get(&to)) {
                            (_, None) | (Entry::File(_), Some(Entry::File(_))) => {}
                            (Entry::Dir, Some(Entry::Dir)) if self.has_children(&to) => {
                                return Err(NotEmpty)
                            }
                            (Entry::Dir, Some(Entry::Dir)) => {}
                            _ => return Err(Failed),
                        }
                        self.0.remove(&to);
                        let moved: Vec<Vec<u8>> = self
                            .0
                            .keys()
                            .filter(|k| **k == from || is_under(k, &from))
                            .cloned()
                            .collect();
                        for key in moved {
                            if let Some(entry) = self.0.remove(&key) {
                                let mut new_key = to.clone();
                                new_key.extend_from_slice(&key[from.len()..]);
                                self.0.insert(new_key, entry);
                            }
                        }
                    }
                    Step::Read(p) => {
                        return match self.get(&path(p)) {
                            Some(Entry::File(body)) => Ok(body.clone()),
                            _ => Err(NotFound),
                        }
                    }
                }
                Ok(Vec::new())
            }
        }

        fn run(store: &MemoryStore, step: &Step) -> std::result::Result<Vec<u8>, ErrorKind> {
            let path = |i: &usize| PATHS[*i].as_bytes();
            let upload = |up: Result<Box<dyn UploadStream>>, body: &[u8]| {
                let mut up = up?;
                up.write(body)?;
                up.finish()
            };
            let result = match step {
                Step::Upload(p, body) => upload(store.upload(path(p)), body),
                Step::Append(p, body) => upload(store.append(path(p)), body),
                Step::Delete(p) => store.delete(path(p)),
                Step::Mkdir(p) => store.mkdir(path(p)),
                Step::Rmdir(p) => store.rmdir(path(p)),
                Step::Rename(a, b) => store.rename(path(a), path(b)),
                Step::Read(p) => {
                    return store
                        .open_read(path(p), 0)
                        .map(|_| read_all(store, path(p), 0))
                        .map_err(|e| e.kind)
                }
            };
            result.map(|()| Vec::new()).map_err(|e| e.kind)
        }

        proptest! {
            #[test]
            fn store_matches_the_model(steps in proptest::collection::vec(step(), 1..40)) {
                let store = MemoryStore::new();
                let mut model = Model(BTreeMap::new());
                for step in &steps {
                    let expected = model.apply(step);
                    prop_assert_eq!(run(&store, step), expected, "{:?}", step);
                    let tree: BTreeMap<Vec<u8>, Entry> = store
                        .paths()
                        .into_iter()
                        .map(|p| {
                            let entry = store.file(&p).map_or(Entry::Dir, Entry::File);
                            (p, entry)
                        })
                        .collect();
                    prop_assert_eq!(&tree, &model.0, "after {:?}", step);
                    let used: usize = model.0.values().map(|e| match e {
                        Entry::File(b) => b.len(),
                        Entry::Dir => 0,
                    }).sum();
                    prop_assert_eq!(store.state.lock().used, used as u64);
                }
            }
        }
    }
}
