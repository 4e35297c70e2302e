//! Unmounts the mount if the process serving it dies without unmounting
//! (crash, SIGKILL, OOM killer), so no dead mount is left behind where every
//! access fails with "Transport endpoint is not connected".
//!
//! Why not only fusermount3's `auto_unmount`: fuser allows it only with
//! `allow_other`/`allow_root`, which an ordinary user cannot set unless
//! /etc/fuse.conf has `user_allow_other`. Where `auto_unmount` is in use
//! this guard is not started.
//!
//! The guard is a small process forked before any thread exists. It holds
//! the read end of a pipe whose write end only the serving process has: when
//! the read ends without the "done" byte, the server is gone, and the guard
//! runs `fusermount3 -u -z` if an ftpsfs mount is still on the mountpoint.
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The byte that tells the guard the mount ended cleanly.
const DONE: u8 = b'q';

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

    /// The mount ended the normal way: the guard exits without acting.
    pub fn done(mut self) {
        let _ = self.pipe.write_all(&[DONE]);
    }
}

/// The guard process: never returns.
fn watch(mut pipe: File, mountpoint: &Path) -> ! {
    detach(pipe.as_raw_fd());
    let mut byte = [0u8; 1];
    let clean = loop {
        match pipe.read(&mut byte) {
            Ok(0) => break false,
            Ok(_) => break byte[0] == DONE,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    if !clean && is_ftpsfs_mount(mountpoint) {
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

/// Whether the mount on `mountpoint` (as /proc/self/mountinfo spells it) is
/// a FUSE mount of ftpsfs.
fn is_ftpsfs_mount(mountpoint: &Path) -> bool {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return false;
    };
    let target = mountinfo_escape(mountpoint);
    info.split(|&b| b == b'\n').any(|line| {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == b"-") else {
            return false;
        };
        fields.get(4) == Some(&target.as_slice())
            && fields.get(sep + 1).is_some_and(|t| t.starts_with(b"fuse"))
            && fields
                .get(sep + 2)
                .is_some_and(|s| s.starts_with(b"ftpsfs"))
    })
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
        assert!(!is_ftpsfs_mount(Path::new("/")));
        assert!(!is_ftpsfs_mount(Path::new("/nonexistent/ftpsfs")));
    }
}
