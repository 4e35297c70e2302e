//! The only file that knows fuser: each callback turns a kernel request into a
//! call on the filesystem core and its result into a reply or an errno.
//!
//! fuser runs callbacks on several threads (`Config::n_threads`), so one
//! request waiting on the network (a large upload at close) does not stop
//! `ls` from being answered on another.
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, MountOption, OpenFlags as FuseOpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, SessionACL, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;

use crate::fs::{self, Attr, DirItem, Fs, OpenFlags, SetAttr};
use crate::store::FileKind;

/// Kernel requests of up to 1 MiB: fewer round trips for large reads and writes.
const MAX_IO: u32 = 1024 * 1024;
/// Preferred I/O size reported to programs (cp sizes its buffer by it).
const BLOCK_SIZE: u32 = 1024 * 1024;

/// The kernel-facing choices of the command line.
pub struct MountSettings {
    /// What `mount` shows as the source.
    pub source: String,
    pub read_only: bool,
    pub allow_other: bool,
    pub default_permissions: bool,
    /// Threads answering kernel requests.
    pub threads: usize,
}

/// A mounted filesystem, not yet serving requests.
pub struct Mounted {
    session: fuser::Session<FuseAdapter>,
}

impl Mounted {
    /// A handle that makes the kernel forget what it caches of an inode.
    pub fn kernel_cache(&self) -> KernelCache {
        KernelCache(self.session.notifier())
    }

    /// Serves requests until the filesystem is unmounted.
    pub fn run(self) -> io::Result<()> {
        self.session.run()
    }
}

/// The kernel's caches of a mount (attributes for the attribute TTL, file
/// pages), for `ftpsfs refresh`.
pub struct KernelCache(fuser::Notifier);

impl KernelCache {
    /// Drops the kernel's attributes and cached pages of `ino`. An inode
    /// the kernel no longer knows (it forgot it) is not an error.
    pub fn forget(&self, ino: u64) {
        // Offset 0, length 0: the attributes, and the pages from 0 to the end.
        if let Err(e) = self.0.inval_inode(INodeNo(ino), 0, 0) {
            log::debug!("kernel cache of inode {ino} not invalidated: {e}");
        }
    }
}

/// Mounts `fs` on `mountpoint`. When this returns, the mount exists.
pub fn mount(
    fs: Arc<Fs>,
    attr_ttl: Duration,
    mountpoint: &Path,
    settings: &MountSettings,
) -> io::Result<Mounted> {
    let config = fuse_config(settings);
    let session = fuser::Session::new(FuseAdapter::new(fs, attr_ttl), mountpoint, &config)?;
    Ok(Mounted { session })
}

fn fuse_config(settings: &MountSettings) -> Config {
    let mut config = Config::default();
    let mut mount_options = vec![
        MountOption::FSName(settings.source.clone()),
        MountOption::Subtype("ftpsfs".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if settings.read_only {
        mount_options.push(MountOption::RO);
    }
    if settings.default_permissions {
        mount_options.push(MountOption::DefaultPermissions);
    }
    config.acl = if settings.allow_other {
        SessionACL::All
    } else if is_root() {
        // Same users as the default for root, and it lets fusermount3 unmount
        // the mount if this process dies (auto_unmount needs allow_*).
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    if fusermount_auto_unmount(settings.allow_other) {
        mount_options.push(MountOption::AutoUnmount);
    }
    config.mount_options = mount_options;
    config.n_threads = Some(settings.threads);
    config
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether fusermount3 unmounts the mount if this process dies
/// (`auto_unmount`, which fuser allows only with allow_other or allow_root).
/// Either way run.rs starts its own guard too (src/guard.rs says why).
pub fn fusermount_auto_unmount(allow_other: bool) -> bool {
    allow_other || is_root()
}

pub struct FuseAdapter {
    fs: Arc<Fs>,
    attr_ttl: Duration,
    /// Directory listings as they were at opendir, so that a listing read in
    /// several readdir calls neither skips nor repeats entries.
    open_dirs: Mutex<HashMap<u64, Arc<Vec<DirItem>>>>,
    next_dir_handle: AtomicU64,
}

impl FuseAdapter {
    pub fn new(fs: Arc<Fs>, attr_ttl: Duration) -> FuseAdapter {
        FuseAdapter {
            fs,
            attr_ttl,
            open_dirs: Mutex::new(HashMap::new()),
            next_dir_handle: AtomicU64::new(1),
        }
    }

    fn file_attr(&self, attr: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(attr.ino),
            size: attr.size,
            blocks: attr.size.div_ceil(512),
            atime: attr.mtime,
            mtime: attr.mtime,
            ctime: attr.mtime,
            crtime: attr.mtime,
            kind: file_type(attr.kind),
            perm: attr.perm,
            nlink: attr.nlink,
            uid: attr.uid,
            gid: attr.gid,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
    }
}

/// The errno for a core error; failures a user should hear about are logged
/// here with their reason, since the errno alone says little.
fn errno(op: &str, err: &fs::Error) -> Errno {
    let code = err.errno();
    if matches!(
        code,
        libc::EIO | libc::ETIMEDOUT | libc::ENOTCONN | libc::ENOSPC | libc::EACCES
    ) {
        log::warn!("{op}: {err}");
    } else {
        log::debug!("{op}: {err}");
    }
    Errno::from_i32(code)
}

/// Answers a request whose success carries no data.
fn reply_empty(reply: ReplyEmpty, op: &str, result: fs::Result<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(op, &e)),
    }
}

fn open_flags(flags: i32) -> OpenFlags {
    let access = flags & libc::O_ACCMODE;
    OpenFlags {
        read: access == libc::O_RDONLY || access == libc::O_RDWR,
        write: access == libc::O_WRONLY || access == libc::O_RDWR,
        truncate: flags & libc::O_TRUNC != 0,
        append: flags & libc::O_APPEND != 0,
        exclusive: flags & libc::O_EXCL != 0,
    }
}

fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each of these is a request to the kernel; an older kernel offering
        // less is fine.
        let _ = config.set_max_write(MAX_IO);
        let _ = config.set_max_readahead(MAX_IO);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.fs.shutdown() {
            log::error!("pending writes could not be uploaded at unmount: {e}");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs.lookup(parent.0, name.as_bytes()) {
            Ok(attr) => reply.entry(&self.attr_ttl, &self.file_attr(&attr), Generation(0)),
            Err(e) => reply.error(errno("lookup", &e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(attr) => reply.attr(&self.attr_ttl, &self.file_attr(&attr)),
            Err(e) => reply.error(errno("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let changes = SetAttr {
            mode,
            size,
            mtime: mtime.map(time_of),
        };
        match self.fs.setattr(ino.0, fh.map(|h| h.0), changes) {
            Ok(attr) => reply.attr(&self.attr_ttl, &self.file_attr(&attr)),
            Err(e) => reply.error(errno("setattr", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno("readlink", &e)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match self.fs.mkdir(parent.0, name.as_bytes(), mode & !umask) {
            Ok(attr) => reply.entry(&self.attr_ttl, &self.file_attr(&attr), Generation(0)),
            Err(e) => reply.error(errno("mkdir", &e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, "unlink", self.fs.unlink(parent.0, name.as_bytes()));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, "rmdir", self.fs.rmdir(parent.0, name.as_bytes()));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            // An atomic swap has no FTP equivalent.
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        reply_empty(
            reply,
            "rename",
            self.fs.rename(
                parent.0,
                name.as_bytes(),
                newparent.0,
                newname.as_bytes(),
                no_replace,
            ),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: FuseOpenFlags, reply: ReplyOpen) {
        match self.fs.open(ino.0, open_flags(flags.0)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno("read", &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(fh.0, offset, data) {
            Ok(written) => reply.written(written),
            Err(e) => reply.error(errno("write", &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, "close", self.fs.flush(fh.0));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, "release", self.fs.release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, "fsync", self.fs.fsync(fh.0));
    }

    /// `sync DIR` (coreutils opens the directory and fsyncs it). Answering
    /// it at all matters: after an ENOSYS (fuser's default) the kernel
    /// never asks again and reports success at once.
    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, "fsyncdir", self.fs.fsyncdir(ino.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: FuseOpenFlags, reply: ReplyOpen) {
        match self.fs.readdir(ino.0) {
            Ok(items) => {
                let handle = self.next_dir_handle.fetch_add(1, Ordering::Relaxed);
                self.open_dirs.lock().insert(handle, Arc::new(items));
                reply.opened(FileHandle(handle), FopenFlags::empty());
            }
            Err(e) => reply.error(errno("opendir", &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(items) = self.open_dirs.lock().get(&fh.0).cloned() else {
            reply.error(Errno::EBADF);
            return;
        };
        // Offsets: 1 is ".", 2 is "..", 3.. the items; each entry carries
        // the offset of the one after it.
        let dots = [(ino.0, &b"."[..]), (ino.0, &b".."[..])];
        let dot_entries = dots.iter().map(|(i, n)| (*i, *n, FileType::Directory));
        let item_entries = items
            .iter()
            .map(|item| (item.ino, item.name.as_slice(), file_type(item.kind)));
        for (index, (entry_ino, name, kind)) in dot_entries.chain(item_entries).enumerate() {
            let next = index as u64 + 1;
            if next <= offset {
                continue;
            }
            if reply.add(INodeNo(entry_ino), next, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        reply: ReplyEmpty,
    ) {
        self.open_dirs.lock().remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Permissions are the server's to enforce (or the kernel's, with
        // default_permissions); existence is ours.
        match self.fs.getattr(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno("access", &e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .fs
            .create(parent.0, name.as_bytes(), mode & !umask, open_flags(flags))
        {
            Ok((attr, fh)) => reply.created(
                &self.attr_ttl,
                &self.file_attr(&attr),
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno("create", &e)),
        }
    }
}
