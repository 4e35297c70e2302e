//! A real mount of `ftpsfs` for a test: started in the foreground as a child
//! process, waited for with a deadline, and always unmounted on drop — by
//! fusermount3, then by aborting the FUSE connection if that hangs — so a
//! failing test can neither hang nor leave a mount behind.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::ServerInfo;

pub struct Mount {
    pub dir: PathBuf,
    base: PathBuf,
    child: Option<Child>,
    pub log: PathBuf,
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ftpsfs"))
}

/// Runs a command with a deadline; a command that hangs is killed and the
/// test fails instead of waiting forever.
pub fn run(program: &str, args: &[&str], timeout_secs: u32) -> Output {
    let out = Command::new("timeout")
        .arg("-k")
        .arg("5")
        .arg(timeout_secs.to_string())
        .arg(program)
        .args(args)
        .output()
        .expect("spawn command");
    assert_ne!(
        out.status.code(),
        Some(124),
        "{program} {args:?} timed out after {timeout_secs} s"
    );
    if out.status.code() == Some(127) {
        // timeout(1) could not find the program.
        super::require::program(program, super::require::package_of(program));
    }
    out
}

/// Like `run`, and the command must succeed.
pub fn ok(program: &str, args: &[&str], timeout_secs: u32) -> Output {
    let out = run(program, args, timeout_secs);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits until `cond` holds, up to `secs` seconds; true when it did.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

pub fn is_mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(dir.as_ref()))
}

impl Mount {
    /// Mounts the server's root with extra command-line options, over
    /// explicit TLS (`ftpes://`).
    pub fn start(info: &ServerInfo, extra: &[&str]) -> Mount {
        let url = format!("ftpes://{}@{}:{}/", info.user, info.url_host(), info.port);
        Mount::start_url(info, &url, extra)
    }

    /// Mounts the server's root over implicit TLS (`ftps://`, TLS from the
    /// first byte), on the server's implicit port.
    pub fn start_implicit(info: &ServerInfo, extra: &[&str]) -> Mount {
        let port = info
            .implicit_port
            .expect("this server has no implicit-TLS port");
        let url = format!("ftps://{}@{}:{port}/", info.user, info.url_host());
        Mount::start_url(info, &url, extra)
    }

    pub fn start_url(info: &ServerInfo, url: &str, extra: &[&str]) -> Mount {
        super::require::fuse();
        let base = std::env::temp_dir().join(format!(
            "ftpsfs-mount-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let dir = base.join("mnt");
        let cache = base.join("cache");
        std::fs::create_dir_all(&dir).unwrap();
        let log = base.join("ftpsfs.log");
        // A test may name its own cache directory, to share it between
        // mounts (the content cache across a remount).
        let cache_args = if extra.contains(&"--cache-dir") {
            Vec::new()
        } else {
            vec!["--cache-dir".into(), cache.into_os_string()]
        };
        let child = Command::new(binary())
            .arg("-f")
            .arg("--ca-file")
            .arg(&info.ca_file)
            .args(cache_args)
            .arg("--log-file")
            .arg(&log)
            .arg("--log-level")
            .arg("debug")
            .arg("--timeout")
            .arg("20")
            .args(extra)
            .arg(url)
            .arg(&dir)
            .env("FTPSFS_PASSWORD", &info.password)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ftpsfs");
        let mut mount = Mount {
            dir,
            base,
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&mount.dir) {
            if let Some(child) = mount.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut stderr) = child.stderr.take() {
                        use std::io::Read;
                        let _ = stderr.read_to_string(&mut err);
                    }
                    panic!("ftpsfs exited ({status}) before mounting: {err}");
                }
            }
            assert!(Instant::now() < deadline, "not mounted within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        mount.settle_probe();
        mount
    }

    /// Waits (10 s at most, then goes on) until the mount's background
    /// probe of REST + STOR is over, its file removed, or the mount said it
    /// does not probe ahead: a test that counts commands, bytes or files on
    /// the server from here sees none of the probe's.
    fn settle_probe(&self) {
        wait_until(10, || {
            let log = self.log_text();
            log.contains("REST + STOR: the probe ahead is over")
                || log.contains("REST + STOR: no probe ahead")
        });
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn path_str(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// The ftpsfs process serving the mount, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Unmounts and waits for ftpsfs to exit; true when it exited cleanly.
    pub fn unmount(&mut self) -> bool {
        if is_mounted(&self.dir) {
            let _ = run("fusermount3", &["-u", &self.dir.to_string_lossy()], 60);
        }
        if is_mounted(&self.dir) {
            abort_connection(&self.dir);
            let _ = run("umount", &["-l", &self.dir.to_string_lossy()], 20);
        }
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Writes 1 to the FUSE connection's `abort` file, which fails every pending
/// request of a mount whose daemon no longer answers.
fn abort_connection(dir: &Path) {
    // The device number comes from mountinfo: a stat of a dead mount hangs.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy();
    let Some(minor) = mounts
        .lines()
        .filter(|line| line.split(' ').nth(4) == Some(dir.as_ref()))
        .find_map(|line| {
            line.split(' ')
                .nth(2)?
                .split(':')
                .nth(1)
                .map(str::to_string)
        })
    else {
        return;
    };
    let control = Path::new("/sys/fs/fuse/connections");
    if !control.join(&minor).exists() {
        let _ = run(
            "mount",
            &["-t", "fusectl", "fusectl", "/sys/fs/fuse/connections"],
            10,
        );
    }
    let _ = std::fs::write(control.join(&minor).join("abort"), b"1");
}

/// Lines of the mount's log a failing test prints as it ends.
const LOG_LINES_ON_FAILURE: usize = 150;

impl Drop for Mount {
    fn drop(&mut self) {
        self.unmount();
        if std::thread::panicking() {
            // The log goes with the mount's directory: a failing test
            // shows its end, which is where CI's output is read.
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_LINES_ON_FAILURE)..];
            eprintln!(
                "--- the last {} lines of the mount's log ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// mkdir -p, mv within and across directories and over an existing file, mv
/// of a directory, rmdir of a non-empty one, rm -r: checked on the server
/// (`root`) and through the mount.
pub fn directories_renames_and_removal(root: &Path, mount: &Mount) {
    ok("mkdir", &["-p", &mount.path_str("a/b/c")], 30);
    assert!(root.join("a/b/c").is_dir());
    std::fs::write(mount.path("a/one.txt"), b"one").unwrap();
    std::fs::write(mount.path("a/b/two.txt"), b"two").unwrap();
    ok(
        "mv",
        &[&mount.path_str("a/one.txt"), &mount.path_str("a/uno.txt")],
        30,
    );
    ok(
        "mv",
        &[&mount.path_str("a/uno.txt"), &mount.path_str("a/b/c/")],
        30,
    );
    assert_eq!(std::fs::read(root.join("a/b/c/uno.txt")).unwrap(), b"one");
    assert!(!root.join("a/one.txt").exists() && !root.join("a/uno.txt").exists());
    ok(
        "mv",
        &[
            &mount.path_str("a/b/c/uno.txt"),
            &mount.path_str("a/b/two.txt"),
        ],
        30,
    );
    assert_eq!(
        std::fs::read(root.join("a/b/two.txt")).unwrap(),
        b"one",
        "mv over an existing file"
    );
    ok(
        "mv",
        &[&mount.path_str("a/b"), &mount.path_str("moved")],
        30,
    );
    assert_eq!(std::fs::read(root.join("moved/two.txt")).unwrap(), b"one");
    assert_eq!(std::fs::read(mount.path("moved/two.txt")).unwrap(), b"one");
    let not_empty = run("rmdir", &[&mount.path_str("moved")], 30);
    assert!(
        String::from_utf8_lossy(&not_empty.stderr).contains("not empty"),
        "{not_empty:?}"
    );
    ok(
        "rm",
        &["-r", &mount.path_str("moved"), &mount.path_str("a")],
        60,
    );
    assert!(!root.join("moved").exists() && !root.join("a").exists());
    assert_eq!(std::fs::read_dir(&mount.dir).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(root).unwrap().count(), 0);
}
