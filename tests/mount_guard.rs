//! A mount by an ordinary user (no allow_other, so no fusermount3
//! auto_unmount) whose ftpsfs process is killed: the unmount guard
//! (src/guard.rs) must take the dead mount away, so that the mountpoint is a
//! plain directory again instead of failing every access with ENOTCONN.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::mount::{is_mounted, ok, run, wait_until};
use common::vsftpd::Vsftpd;

/// The user the mount runs as: `nobody`.
const UID: u32 = 65534;

/// /dev/fuse made usable by every user, as on a standard Debian system (the
/// test machines have it root-only); the old mode comes back on drop.
struct FuseDeviceOpen {
    old_mode: u32,
}

impl FuseDeviceOpen {
    fn new() -> FuseDeviceOpen {
        common::require::fuse();
        let old_mode = std::fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o7777;
        std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
        FuseDeviceOpen { old_mode }
    }
}

impl Drop for FuseDeviceOpen {
    fn drop(&mut self) {
        let _ =
            std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(self.old_mode));
    }
}

/// An ftpsfs process run as `nobody`, with its directories; whatever
/// happens, nothing stays mounted or running after drop.
struct UserMount {
    base: PathBuf,
    dir: PathBuf,
    child: Child,
}

impl UserMount {
    fn start(server: &Vsftpd) -> UserMount {
        let info = &server.info;
        let base = std::env::temp_dir().join(format!("ftpsfs-guard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("mnt");
        std::fs::create_dir_all(&dir).unwrap();
        for path in [&base, &dir] {
            std::os::unix::fs::chown(path, Some(UID), Some(UID)).unwrap();
        }
        let child = Command::new("setpriv")
            .arg(format!("--reuid={UID}"))
            .arg(format!("--regid={UID}"))
            .arg("--clear-groups")
            .arg(env!("CARGO_BIN_EXE_ftpsfs"))
            .arg("-f")
            .arg("--ca-file")
            .arg(&info.ca_file)
            .arg("--cache-dir")
            .arg(base.join("cache"))
            .arg("--log-file")
            .arg(base.join("ftpsfs.log"))
            .arg(format!(
                "ftpes://{}@{}:{}/",
                info.user, info.host, info.port
            ))
            .arg(&dir)
            .env("FTPSFS_PASSWORD", &info.password)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ftpsfs as nobody");
        let mut mount = UserMount { base, dir, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&mount.dir) {
            if let Ok(Some(status)) = mount.child.try_wait() {
                panic!("ftpsfs exited ({status}) before mounting: {}", mount.log());
            }
            assert!(Instant::now() < deadline, "not mounted within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        mount
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("ftpsfs.log")).unwrap_or_default()
    }
}

impl Drop for UserMount {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if is_mounted(&self.dir) {
            let _ = run("umount", &["-l", &self.dir.to_string_lossy()], 20);
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Runs a command as `nobody`: without allow_other, only the user who
/// mounted may enter the mount, root included.
fn as_user(args: &[&str]) -> std::process::Output {
    let uid = format!("--reuid={UID}");
    let gid = format!("--regid={UID}");
    let mut all = vec![uid.as_str(), gid.as_str(), "--clear-groups"];
    all.extend_from_slice(args);
    ok("setpriv", &all, 30)
}

/// The guard process that the ftpsfs process `ftpsfs` forked.
fn guard_of(ftpsfs: u32) -> Option<u32> {
    let out = run(
        "pgrep",
        &["-P", &ftpsfs.to_string(), "-x", "ftpsfs-guard"],
        10,
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|p| p.parse().ok())
}

/// Whether a process has exited (a zombie counts: the guard's parent is
/// gone, and whoever inherits it may be slow to reap it).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command, which is in parentheses.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn a_killed_user_mount_is_unmounted_and_a_clean_one_leaves_no_guard() {
    let server = Vsftpd::start(&[]);
    let _device = FuseDeviceOpen::new();

    // Killed: SIGKILL leaves ftpsfs no chance to unmount.
    let mut mount = UserMount::start(&server);
    // Not dumpable (no core dump holding the password, no ptrace or /proc
    // reading by the user's other processes): the kernel then gives its
    // /proc files to root.
    use std::os::unix::fs::MetadataExt;
    let environ = std::fs::metadata(format!("/proc/{}/environ", mount.child.id())).unwrap();
    assert_eq!(environ.uid(), 0, "ftpsfs running as nobody is not dumpable");
    let file = mount.dir.join("f.txt");
    as_user(&["cp", "/etc/hostname", &file.to_string_lossy()]);
    let guard = guard_of(mount.child.id()).expect("a guard process beside the mount");
    let _ = mount.child.kill();
    let _ = mount.child.wait();
    assert!(
        wait_until(30, || !is_mounted(&mount.dir)),
        "the dead mount is still there 10 s after ftpsfs was killed"
    );
    let listing = run("ls", &["-a", &mount.dir.to_string_lossy()], 10);
    assert!(
        listing.status.success(),
        "the mountpoint is not a plain directory again: {}",
        String::from_utf8_lossy(&listing.stderr)
    );
    assert!(Path::new(&server.info.root).join("f.txt").exists());
    assert!(
        wait_until(10, || gone(guard)),
        "the guard stays after its work"
    );
    drop(mount);

    // Unmounted the normal way: the guard leaves without a trace.
    let mut mount = UserMount::start(&server);
    let guard = guard_of(mount.child.id()).expect("a guard process beside the mount");
    as_user(&["fusermount3", "-u", &mount.dir.to_string_lossy()]);
    let status = mount.child.wait().unwrap();
    assert!(status.success(), "ftpsfs after fusermount3 -u: {status}");
    assert!(
        wait_until(10, || gone(guard)),
        "the guard stays after a clean end"
    );
    assert!(!is_mounted(&mount.dir));
}
