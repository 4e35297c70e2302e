//! From parsed options to a live mount: log in, mount, serve, and unmount
//! cleanly (pending writes uploaded first) on SIGINT, SIGTERM or an external
//! `fusermount3 -u`.
//!
//! Without `--foreground` the process forks *before* any thread exists (a
//! fork of a threaded process keeps only the calling thread), the child does
//! all the work, and the parent waits on a pipe until the child says the mount
//! is live — or why it is not — so the command's exit status tells the truth.
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cli::{Options, WriteBack};
use crate::control::mount_target::MountTarget;
use crate::control::{runtime, ControlServer};
use crate::fs::{ContentCache, Fs, FsConfig, WriteBackConfig};
use crate::ftp::{Connector, Pool};
use crate::fuse::{self, MountSettings};
use crate::guard::Guard;
use crate::store::ftps::FtpsStore;

/// The whole program after argument parsing.
pub fn run(options: Options) -> ExitCode {
    for warning in &options.warnings {
        eprintln!("ftpsfs: warning: {warning}");
    }
    if options.foreground {
        return match serve(&options, None) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("ftpsfs: {message}");
                ExitCode::FAILURE
            }
        };
    }
    match daemonize() {
        Ok(Side::Parent(readiness)) => wait_for_child(readiness),
        Ok(Side::Child(readiness)) => {
            let mut readiness = Some(readiness);
            let result = serve(&options, Some(&mut readiness));
            if let (Err(message), Some(mut pipe)) = (&result, readiness) {
                // Failed before the mount was live: the parent reports it.
                let _ = writeln!(pipe, "{message}");
            }
            if result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("ftpsfs: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Side {
    Parent(File),
    Child(File),
}

fn daemonize() -> Result<Side, String> {
    let mut fds = [0i32; 2];
    // Close-on-exec: fusermount3 (which stays alive with auto_unmount) must
    // not inherit the write end, or the parent would never see it close.
    // SAFETY: `fds` is a valid array of two ints for pipe2(2) to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just returned by pipe(2) and are owned
    // by nothing else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (run() forks before creating any),
    // so the child is a complete copy of this single-threaded process.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            drop(read_end);
            // SAFETY: setsid(2) has no memory-safety preconditions; it detaches
            // the child from the terminal's session so a closed terminal does
            // not end the mount.
            unsafe { libc::setsid() };
            Ok(Side::Child(File::from(write_end)))
        }
        _ => {
            drop(write_end);
            Ok(Side::Parent(File::from(read_end)))
        }
    }
}

/// The parent's side: an empty message means the mount is live.
fn wait_for_child(mut readiness: File) -> ExitCode {
    let mut message = String::new();
    let _ = readiness.read_to_string(&mut message);
    let message = message.trim();
    if message.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("ftpsfs: {message}");
        ExitCode::FAILURE
    }
}

/// Connects, mounts and serves until unmounted. `readiness` (background
/// mode) is closed once the mount is live, which releases the parent.
fn serve(options: &Options, readiness: Option<&mut Option<File>>) -> Result<(), String> {
    // Forked first, while this process still has one thread. Told "done" on
    // every return (the session's drop has unmounted by then, and after an
    // early failure the mount on the mountpoint, if any, is not ours); only
    // a process that dies without returning leaves the unmount to it.
    let mut guard = Guard::start(&options.mountpoint)?;
    let result = serve_until_unmounted(options, readiness, &mut guard);
    guard.done();
    result
}

fn serve_until_unmounted(
    options: &Options,
    readiness: Option<&mut Option<File>>,
    guard: &mut Guard,
) -> Result<(), String> {
    let spool_dir = spool_dir(&options.cache_dir, &options.mountpoint);
    let log_file = match (&options.log.file, readiness.is_some()) {
        (Some(file), _) => Some(file.clone()),
        // In the background stderr goes nowhere: keep the log beside the spool.
        (None, true) => Some(options.cache_dir.join("ftpsfs.log")),
        (None, false) => None,
    };
    if let Some(parent) = log_file.as_deref().and_then(Path::parent) {
        // Only create what is missing: an existing directory (say /tmp) is
        // the user's, and its permissions are not ours to change.
        if !parent.exists() {
            create_private_dir(parent)?;
        }
    }
    crate::logging::init(options.log.level, log_file.as_deref())?;
    for warning in &options.warnings {
        log::warn!("{warning}");
    }
    // Signals go to one thread that waits for them; every thread created
    // from here on inherits the block.
    let signals = block_termination_signals()?;

    let connector = Connector::new(options.ftp.clone()).map_err(|e| e.to_string())?;
    let pool = Arc::new(Pool::new(connector, options.pool));
    pool.warm_up(options.pool.max_sessions)
        .map_err(|e| e.to_string())?;
    let store = Arc::new(
        FtpsStore::connect(Arc::clone(&pool), &options.remote_root)
            .map_err(|e| e.to_string())?
            .with_size_after_uploads(options.verify != crate::fs::Verify::None),
    );
    let mut fs = Fs::new(
        Arc::clone(&store) as Arc<dyn crate::store::RemoteStore>,
        fs_config(options, spool_dir)?,
    );
    if let Some(content) = open_content_cache(options) {
        fs = fs.with_content_cache(content);
    }
    let fs = match options.write_back {
        WriteBack::Sync => Arc::new(fs),
        WriteBack::Async => {
            let dir = write_back_dir(options);
            fs.with_write_back(WriteBackConfig {
                dir: dir.clone(),
                spool_limit: options.write_back_spool_size,
                uploaders: options.pool.max_sessions,
            })
            .map_err(|e| format!("cannot use the write-back directory {}: {e}", dir.display()))?
        }
    };
    remind_of_unsaved_files(&fs.kept_by_earlier_mounts());

    let settings = MountSettings {
        source: format!("ftpsfs#{}", options.ftp.host),
        read_only: options.mount.read_only,
        allow_other: options.mount.allow_other,
        default_permissions: options.mount.default_permissions,
        // Enough threads that requests waiting on the network (one per
        // session) leave others free for `ls` and getattr.
        threads: (options.pool.max_sessions * 2 + 4).max(8),
    };
    // With close-to-open consistency the kernel keeps no attributes: it
    // asks the core (which answers from its own cache, without the
    // network) each time, and so sees the size an open just fetched.
    let kernel_attr_ttl = if options.revalidate_on_open {
        std::time::Duration::ZERO
    } else {
        options.attr_ttl
    };
    let session = fuse::mount(
        Arc::clone(&fs),
        kernel_attr_ttl,
        &options.mountpoint,
        &settings,
    )
    .map_err(|e| format!("cannot mount on {}: {e}", options.mountpoint.display()))?;
    guard.mounted();
    log::info!(
        "mounted {}:{} on {}",
        options.ftp.host,
        options.ftp.port,
        options.mountpoint.display()
    );
    // Detached: it ends on its own, and a mount that goes first only
    // leaves its probe file behind (hidden, swept later).
    drop(fs.probe_ahead());
    // Dropped when this function returns: the socket goes with the mount.
    let _control = start_control_socket(options, &fs, &store, &session);
    let unsaved = Arc::new(AtomicBool::new(false));
    spawn_signal_thread(
        signals,
        Arc::clone(&fs),
        options.mountpoint.clone(),
        Arc::clone(&unsaved),
    );
    if let Some(readiness) = readiness {
        // Closing the pipe without a message tells the parent "live".
        readiness.take();
        detach_stdio();
    }
    session
        .run()
        .map_err(|e| format!("FUSE session ended: {e}"))?;
    log::info!("unmounted {}", options.mountpoint.display());
    if unsaved.load(Ordering::SeqCst) {
        // The exit status tells a service manager that something was lost.
        return Err("pending writes could not be uploaded before unmounting (see the log)".into());
    }
    Ok(())
}

/// Which server, user and directory a mount is of: the next mount of the
/// same URL finds its content cache and its write-back journal by it.
fn identity(options: &Options) -> String {
    format!(
        "{}@{}:{}/{}",
        options.ftp.credentials.user,
        options.ftp.host,
        options.ftp.port,
        String::from_utf8_lossy(&options.remote_root)
    )
}

/// The async write-back journal and spool of this server, user and
/// directory: a remount of the same URL (after a crash too) finds them.
fn write_back_dir(options: &Options) -> PathBuf {
    let hash = crate::digest::DigestAlgorithm::Sha256
        .digest(identity(options).as_bytes())
        .unwrap_or_default();
    options
        .cache_dir
        .join("write-back")
        .join(crate::digest::to_hex(&hash[..hash.len().min(8)]))
}

/// The content cache of this server, user and directory (None: off, or it
/// could not be opened, which is logged: the mount works without it).
fn open_content_cache(options: &Options) -> Option<Arc<ContentCache>> {
    if options.cache_size == 0 {
        return None;
    }
    let identity = identity(options);
    match ContentCache::open(&options.cache_dir, identity.as_bytes(), options.cache_size) {
        Ok(cache) => {
            let usage = cache.usage();
            log::info!(
                "content cache: {} blocks ({} bytes) kept from earlier mounts, limit {} bytes",
                usage.blocks,
                usage.bytes,
                usage.limit
            );
            Some(Arc::new(cache))
        }
        Err(e) => {
            log::warn!(
                "no content cache in {} ({e}): every read goes to the server",
                options.cache_dir.display()
            );
            None
        }
    }
}

/// The socket `ftpsfs status|refresh|sync` talk to. A mount without one
/// still works: the failure is logged, not fatal.
fn start_control_socket(
    options: &Options,
    fs: &Arc<Fs>,
    store: &Arc<FtpsStore>,
    session: &fuse::Mounted,
) -> Option<ControlServer> {
    let started = (|| {
        let mountpoint = runtime::canonical_mountpoint(&options.mountpoint)?;
        let socket = runtime::socket_path(&runtime::default_runtime_dir(), &mountpoint)?;
        let target = MountTarget {
            fs: Arc::clone(fs),
            store: Arc::clone(store),
            kernel: session.kernel_cache(),
            server: format!(
                "{}:{}/{}",
                options.ftp.host,
                options.ftp.port,
                String::from_utf8_lossy(&options.remote_root).trim_start_matches('/')
            ),
            mountpoint,
            started: std::time::Instant::now(),
        };
        ControlServer::start(&socket, Arc::new(target))
    })();
    match started {
        Ok(server) => {
            log::info!("control socket: {}", server.path().display());
            Some(server)
        }
        Err(e) => {
            log::warn!("no control socket (ftpsfs status, refresh and sync will not reach this mount): {e}");
            None
        }
    }
}

fn fs_config(options: &Options, spool_dir: PathBuf) -> Result<FsConfig, String> {
    create_private_dir(&spool_dir)?;
    // SAFETY: getuid(2)/getgid(2) cannot fail and have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Ok(FsConfig {
        attr_ttl: options.attr_ttl,
        dir_ttl: options.dir_ttl,
        spool_dir,
        read_only: options.mount.read_only,
        uid: options.mount.uid.unwrap_or(uid),
        gid: options.mount.gid.unwrap_or(gid),
        umask: options.mount.umask.unwrap_or(0),
        write_in_place: options.write_in_place,
        revalidate_on_open: options.revalidate_on_open,
        patch_in_place: options.patch_in_place,
        retry_time: options.retry_time,
        verify: options.verify,
        read_streams: options.read_streams,
        // All sessions but one, which stays free for what programs ask.
        listing_prefetch: options.pool.max_sessions.saturating_sub(1),
        ..FsConfig::default()
    })
}

/// Warns, at every start until the user has dealt with them, of the files an
/// earlier mount could not upload: the programs that wrote them were told
/// they were written.
fn remind_of_unsaved_files(kept: &[PathBuf]) {
    const SHOWN: usize = 5;
    if kept.is_empty() {
        return;
    }
    let mut names: Vec<String> = kept
        .iter()
        .take(SHOWN)
        .map(|p| p.display().to_string())
        .collect();
    if kept.len() > SHOWN {
        names.push(format!("and {} more", kept.len() - SHOWN));
    }
    log::warn!(
        "{} file(s) that an earlier mount could not upload are kept locally: {}; \
         copy them into the mount (or delete them) once you have checked them",
        kept.len(),
        names.join(", ")
    );
}

/// One spool directory per mountpoint, so two mounts never share one.
fn spool_dir(cache_dir: &Path, mountpoint: &Path) -> PathBuf {
    let name: String = mountpoint
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    cache_dir.join(format!("spool{name}"))
}

/// Creates `dir` (and missing parents) readable only by the user. Used for
/// the spool, which is ftpsfs's own, and for directories that did not exist.
fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot make {} private: {e}", dir.display()))
}

/// Points stdin, stdout and stderr at /dev/null once the mount is live in
/// the background, so nothing is written to a terminal that went away.
fn detach_stdio() {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    use std::os::fd::AsRawFd;
    for fd in 0..=2 {
        // SAFETY: dup2(2) onto the standard descriptors, from a descriptor
        // that stays open for the call.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}

fn block_termination_signals() -> Result<libc::sigset_t, String> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use,
    // and pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err("cannot block termination signals".into());
        }
        Ok(set)
    }
}

/// Waits for SIGINT/SIGTERM/SIGHUP; uploads pending writes, then unmounts,
/// which ends the FUSE session and the program. The unmount is lazy: a
/// program still using the mount keeps it until it lets go, and new opens
/// fail at once. It goes through fusermount3 because with auto_unmount
/// fuser's own unmounter only hangs up on fusermount3, which leaves a live
/// daemon mounted.
fn spawn_signal_thread(
    signals: libc::sigset_t,
    fs: Arc<Fs>,
    mountpoint: PathBuf,
    unsaved: Arc<AtomicBool>,
) {
    let spawned = std::thread::Builder::new()
        .name("ftpsfs-signals".into())
        .spawn(move || loop {
            let mut signal = 0;
            // SAFETY: `signals` is an initialised set and `signal` a valid
            // place for sigwait to store the signal number.
            if unsafe { libc::sigwait(&signals, &mut signal) } != 0 {
                continue;
            }
            log::info!("signal {signal}: uploading pending writes, then unmounting");
            if let Err(e) = fs.shutdown() {
                log::error!("pending writes could not be uploaded: {e}");
                unsaved.store(true, Ordering::SeqCst);
            }
            let unmounted = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&mountpoint)
                .status();
            match unmounted {
                Ok(status) if status.success() => {}
                Ok(status) => log::error!("fusermount3 -u failed ({status})"),
                Err(e) => log::error!("cannot run fusermount3 to unmount: {e}"),
            }
        });
    if let Err(e) = spawned {
        log::error!("no signal thread ({e}): SIGTERM will not unmount cleanly");
    }
}
