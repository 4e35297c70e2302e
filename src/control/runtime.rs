//! Where a mount's control socket is: one private directory per user, one
//! socket per mountpoint, named by a hash of the mountpoint's absolute path
//! so the mount and the commands find the same one without a registry.
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// sockaddr_un's sun_path holds 108 bytes, the terminating NUL included.
const MAX_SOCKET_PATH: usize = 107;

/// The user's runtime directory for ftpsfs: `$XDG_RUNTIME_DIR/ftpsfs` where
/// that is set (systemd makes it per user, mode 0700), `/run/ftpsfs` for
/// root, otherwise `/tmp/ftpsfs-UID`.
pub fn runtime_dir(xdg_runtime_dir: Option<&Path>, uid: u32) -> PathBuf {
    match xdg_runtime_dir {
        Some(dir) if dir.is_absolute() => dir.join("ftpsfs"),
        _ if uid == 0 => PathBuf::from("/run/ftpsfs"),
        _ => PathBuf::from(format!("/tmp/ftpsfs-{uid}")),
    }
}

/// The runtime directory of the user running this process.
pub fn default_runtime_dir() -> PathBuf {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    runtime_dir(xdg.as_deref(), current_uid())
}

pub fn current_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// The mountpoint as the mount and the commands both name it: absolute,
/// with symbolic links of its parent resolved. The last component is not
/// resolved: it is the mount's root, and a stat of it would go to the mount
/// itself (and hang with it, if it hangs).
pub fn canonical_mountpoint(mountpoint: &Path) -> io::Result<PathBuf> {
    let absolute = if mountpoint.is_absolute() {
        mountpoint.to_path_buf()
    } else {
        std::env::current_dir()?.join(mountpoint)
    };
    let name = match absolute.file_name() {
        Some(name) => name.to_owned(),
        // "/" or a path ending in "..": resolve it all.
        None => return std::fs::canonicalize(&absolute),
    };
    let parent = absolute.parent().unwrap_or(Path::new("/"));
    Ok(std::fs::canonicalize(parent)?.join(name))
}

/// The socket of the mount on `mountpoint` (already canonical).
pub fn socket_path(runtime: &Path, mountpoint: &Path) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let digest = ring::digest::digest(&ring::digest::SHA256, mountpoint.as_os_str().as_bytes());
    let name: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = runtime.join(format!("{name}.sock"));
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the control socket's path {} is too long for a Unix socket; \
                 set XDG_RUNTIME_DIR to a shorter directory",
                path.display()
            ),
        ));
    }
    Ok(path)
}

/// Creates the runtime directory (mode 0700) or checks that the existing
/// one belongs to this user and is private: a directory another user made
/// (in /tmp, say) or that others can enter could let them plant or reach
/// the socket.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", dir.display()),
            ))
        }
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(not_private(dir, "it is not a directory"));
    }
    if meta.uid() != current_uid() {
        return Err(not_private(dir, "another user owns it"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(not_private(
            dir,
            "others may enter it (it must be mode 0700: chmod 700 it)",
        ));
    }
    Ok(())
}

fn not_private(dir: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "the runtime directory {} is not private: {why}",
            dir.display()
        ),
    )
}

/// Makes `path` readable and writable by its owner only.
pub fn make_private(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_directory_follows_xdg_then_root_then_tmp() {
        assert_eq!(
            runtime_dir(Some(Path::new("/run/user/1000")), 1000),
            PathBuf::from("/run/user/1000/ftpsfs")
        );
        assert_eq!(runtime_dir(None, 0), PathBuf::from("/run/ftpsfs"));
        assert_eq!(runtime_dir(None, 1000), PathBuf::from("/tmp/ftpsfs-1000"));
        // A relative XDG_RUNTIME_DIR is ignored, as the spec says.
        assert_eq!(
            runtime_dir(Some(Path::new("rel")), 1000),
            PathBuf::from("/tmp/ftpsfs-1000")
        );
    }

    #[test]
    fn each_mountpoint_has_its_own_socket() {
        let run = Path::new("/run/user/1000/ftpsfs");
        let a = socket_path(run, Path::new("/mnt/a")).unwrap();
        let b = socket_path(run, Path::new("/mnt/b")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, socket_path(run, Path::new("/mnt/a")).unwrap());
        assert!(a.starts_with(run));
        let long = PathBuf::from(format!("/{}", "x".repeat(100)));
        assert!(socket_path(&long, Path::new("/mnt/a")).is_err());
    }

    #[test]
    fn the_mountpoint_is_named_the_same_however_it_is_given() {
        let dir = std::env::temp_dir().join(format!("ftpsfs-canon-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("m")).unwrap();
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let direct = canonical_mountpoint(&dir.join("m")).unwrap();
        let via_link = canonical_mountpoint(&link.join("m")).unwrap();
        assert_eq!(direct, via_link);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_runtime_directory_others_can_enter_is_refused() {
        let dir = std::env::temp_dir().join(format!("ftpsfs-rt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ensure_private_dir(&dir).unwrap();
        ensure_private_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
