//! What the system tests need from the machine, checked where it is used.
//! With the `system-tests` feature on, a missing prerequisite fails the test
//! with what to install (`.ci/run` installs all of it), never skips it: a CI
//! that forgot a package must not pass by testing nothing.
use std::path::{Path, PathBuf};

/// Fails unless the test runs as root (mounts as root, servers, namespaces).
pub fn root(why: &str) {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{why} needs root: run `cargo test --features system-tests` as root (.ci/run does)"
    );
}

/// The path of `program` (searched in PATH and the sbin directories, as root
/// finds it), or a failure naming the Debian package that provides it.
pub fn program(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} is not installed: run `apt-get install -y {package}` (.ci/run does)")
        })
}

/// A FUSE mount can be made: the kernel device and fusermount3 (which
/// unmounts, and mounts for users other than root).
pub fn fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: load the fuse module (`modprobe fuse`), or give \
         the container the device (`--device /dev/fuse --cap-add SYS_ADMIN`)"
    );
    program("fusermount3", "fuse3");
}

/// The Debian package of a program the tests run, for the message of a
/// missing one.
pub fn package_of(program: &str) -> &str {
    match program {
        "fusermount3" => "fuse3",
        "nft" => "nftables",
        "ip" | "ss" => "iproute2",
        "setpriv" | "mount" | "umount" => "util-linux",
        "sha256sum" | "dd" | "cp" | "cat" | "ls" | "timeout" => "coreutils",
        other => other,
    }
}
