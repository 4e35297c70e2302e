//! Unmounts the mount if the process serving it dies without unmounting
//! (crash, SIGKILL, OOM killer), so no dead mount is left behind where every
//! access fails with "Transport endpoint is not connected".
//!
//! Why not only fusermount3's `auto_unmount`:
//! - fuser allows it only with `allow_other`/`allow_root`, which an ordinary
//!   user cannot set unless /etc/fuse.conf has `user_allow_other`;
//! - it loses a race: fusermount3 unmounts only if opening the mount fails
//!   with ENOTCONN, and it is woken when the dead process's socket closes,
//!   which the kernel may do before it closes /dev/fuse. On a busy machine
//!   fusermount3's open then reaches the still-live connection, is ended by
//!   the abort with ECONNABORTED instead, and the dead mount stays (seen in
//!   2 of 9 runs of `mount_more`'s kill test beside other mounts).
//!
//! So this guard runs beside every mount, and `auto_unmount`, where set,
//! is the second line.
//!
//! The guard is a small process forked before any thread exists. It holds
//! the read end of a pipe whose write end only the serving process has. Once
//! mounted, the server says so, and the guard notes the mount's device number
//! (from /proc/self/mountinfo). When the read ends without the "done" byte,
//! the server is gone, and the guard runs `fusermount3 -u -z` if that same
//! mount (not a later one on the same directory) is still there.
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The byte that tells the guard the mount ended cleanly.
const DONE: u8 = b'q';
/// The byte that tells the guard the mount is live.
const MOUNTED: u8 = b'm';

/// The serving process's end of the guard's pipe.
pub struct Guard {
    pipe: File,
}

impl Guard {
    /// Forks the guard process. Must be called while the process has a
    /// single thread.
    pub fn start(mountpoint: &Path) -> Result<Guard, String> {
        let mountpoint = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.into());
        let mut fds = [0i32; 2];
        // Close-on-exec, so programs the server runs (fusermount3) do not
        // keep the write end open after the server is gone.
        // SAFETY: `fds` is a valid array of two ints for pipe2(2) to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(format!(
                "unmount guard: pipe: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: both descriptors were just returned by pipe2(2) and are
        // owned by nothing else.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the caller guarantees a single-threaded process, so the
        // child is a complete copy that may allocate and run Rust code.
        match unsafe { libc::fork() } {
            -1 => Err(format!(
                "unmount guard: fork: {}",
                std::io::Error::last_os_error()
            )),
            0 => {
                drop(write_end);
                watch(File::from(read_end), &mountpoint)
            }
            _ => Ok(Guard {
                pipe: File::from(write_end),
            }),
        }
    }

    /// The mount is live: from now on the guard takes it away if this
    /// process dies.
    pub fn mounted(&mut self) {
        let _ = self.pipe.write_all(&[MOUNTED]);
    }

    /// The mount ended the normal way: the guard exits without acting.
    pub fn done(mut self) {
        let _ = self.pipe.write_all(&[DONE]);
    }
}

/// The guard process: never returns.
fn watch(mut pipe: File, mountpoint: &Path) -> ! {
    detach(pipe.as_raw_fd());
    let mut ours = None;
    let mut byte = [0u8; 1];
    let clean = loop {
        match pipe.read(&mut byte) {
            Ok(0) => break false,
            Ok(_) if byte[0] == MOUNTED => ours = topmost_ftpsfs_mount(mountpoint),
            Ok(_) => break byte[0] == DONE,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    // fusermount3's auto_unmount may have taken it away already, and the
    // directory may hold a newer mount since: only the same device is ours.
    if !clean && ours.is_some() && topmost_ftpsfs_mount(mountpoint) == ours {
        let _ = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(mountpoint)
            .status();
    }
    // SAFETY: _exit(2) ends this process without running the parent's
    // atexit handlers or destructors, which belong to the serving process.
    unsafe { libc::_exit(0) }
}

/// Leaves the terminal's session (so Ctrl-C reaches only the server, which
/// then unmounts itself) and closes every descriptor but the pipe: an
/// inherited readiness pipe or socket must not be kept open by the guard.
fn detach(keep: i32) {
    // SAFETY: setsid(2) and prctl(2) with PR_SET_NAME (a NUL-terminated
    // name of at most 16 bytes) have no memory-safety preconditions.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, c"ftpsfs-guard".as_ptr());
    }
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    for fd in open {
        if fd == keep || null.as_ref().is_ok_and(|n| n.as_raw_fd() == fd) {
            continue;
        }
        match (&null, fd) {
            // SAFETY: dup2(2) onto a standard descriptor from one that is open.
            (Ok(null), 0..=2) => unsafe {
                libc::dup2(null.as_raw_fd(), fd);
            },
            // SAFETY: closing a descriptor this process owns and no Rust
            // object of the guard refers to (only `keep` and `null` are used).
            _ => unsafe {
                libc::close(fd);
            },
        }
    }
}

/// The device number ("0:51") of the ftpsfs FUSE mount on top of
/// `mountpoint`, as /proc/self/mountinfo lists it (later lines are mounted
/// later, so on top).
fn topmost_ftpsfs_mount(mountpoint: &Path) -> Option<Vec<u8>> {
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    topmost_ftpsfs_device(&info, &mountinfo_escape(mountpoint))
}

fn topmost_ftpsfs_device(info: &[u8], target: &[u8]) -> Option<Vec<u8>> {
    let mut found = None;
    for line in info.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if fields.get(4) != Some(&target) {
            continue;
        }
        let ftpsfs = fields.get(sep + 1).is_some_and(|t| t.starts_with(b"fuse"))
            && fields
                .get(sep + 2)
                .is_some_and(|s| s.starts_with(b"ftpsfs"));
        // A later mount of something else hides an earlier ftpsfs one.
        found = ftpsfs.then(|| fields.get(2).map(|d| d.to_vec())).flatten();
    }
    found
}

/// Mount points in mountinfo have space, tab, newline and backslash written
/// as octal escapes.
fn mountinfo_escape(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => out.extend_from_slice(format!("\\{b:03o}").as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_escaped_as_in_mountinfo() {
        assert_eq!(mountinfo_escape(Path::new("/mnt/a b")), b"/mnt/a\\040b");
        assert_eq!(mountinfo_escape(Path::new("/mnt/x\\y")), b"/mnt/x\\134y");
        assert_eq!(mountinfo_escape(Path::new("/mnt/é")), "/mnt/é".as_bytes());
    }

    #[test]
    fn a_directory_that_is_no_mount_is_not_ours() {
        assert_eq!(topmost_ftpsfs_mount(Path::new("/")), None);
        assert_eq!(topmost_ftpsfs_mount(Path::new("/nonexistent/ftpsfs")), None);
    }

    #[test]
    fn only_the_mount_on_top_counts() {
        let info = b"30 25 0:26 / /mnt/x rw - tmpfs tmpfs rw\n\
                     31 30 0:51 / /mnt/x rw,nosuid - fuse.ftpsfs ftpsfs#h rw\n\
                     32 25 0:52 / /mnt/y rw - fuse.ftpsfs ftpsfs#h rw\n";
        assert_eq!(
            topmost_ftpsfs_device(info, b"/mnt/x"),
            Some(b"0:51".to_vec())
        );
        assert_eq!(topmost_ftpsfs_device(info, b"/mnt/z"), None);
        let hidden = [&info[..], b"33 31 0:27 / /mnt/x rw - tmpfs tmpfs rw\n"].concat();
        assert_eq!(topmost_ftpsfs_device(&hidden, b"/mnt/x"), None);
        let newer = [
            &info[..],
            b"34 31 0:60 / /mnt/x rw - fuse.ftpsfs ftpsfs#h rw\n",
        ]
        .concat();
        assert_eq!(
            topmost_ftpsfs_device(&newer, b"/mnt/x"),
            Some(b"0:60".to_vec())
        );
    }
}
