//! More real mounts, driven with ordinary tools: termination by signal, the
//! directory cache seen from the server's side (commands counted in vsftpd's
//! protocol log), rsync and a 1 GiB copy at full size, read-only mounts,
//! changes made on the server, and concurrent readers. (The core cases run
//! against every server, the in-process one included, in mount_matrix.rs.)
//! Every test checks what a user would: the bytes on the server, the
//! listing, the tool's exit status and message, whether the mount is gone.
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::data;
use common::mount::{is_mounted, ok, run, wait_until, Mount};
use common::scratch::Scratch;
use common::vsftpd::Vsftpd;

// ----- helpers -----

/// The PID of the ftpsfs process serving `mount`: a child of this test
/// process whose command line names the mountpoint and whose executable is
/// ftpsfs (other children, like a process holding a file open, also name
/// the mountpoint).
fn ftpsfs_pid(mount: &Mount) -> u32 {
    let me = std::process::id().to_string();
    let dir = mount.dir.to_string_lossy().into_owned();
    let out = run("pgrep", &["-P", &me, "-f", &dir], 10);
    let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_ftpsfs")).unwrap();
    let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .map(|exe| exe == binary)
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(pids.len(), 1, "one ftpsfs process for {dir}: {pids:?}");
    pids[0]
}

/// A field of /proc/PID/status in KiB (VmHWM: peak resident set).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn signal(pid: u32, name: &str) {
    ok("kill", &[&format!("-{name}"), &pid.to_string()], 10);
}

/// How many of `commands` (see `Vsftpd::commands`) use `verb`.
fn count_verb(commands: &[String], verb: &str) -> usize {
    commands
        .iter()
        .filter(|c| c.split(' ').next() == Some(verb))
        .count()
}

/// Files that root puts on the server must belong to the FTP user, or it
/// cannot change them.
fn chown_to_ftp_user(server: &Vsftpd, path: &Path) {
    let user = &server.env["FTPS_USER"];
    ok(
        "chown",
        &["-R", &format!("{user}:"), &path.to_string_lossy()],
        60,
    );
}

fn sha256sum(path: &Path) -> String {
    let out = ok("sha256sum", &[&path.to_string_lossy()], 600);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum printed a digest")
        .to_string()
}

/// A process that opens files on the mount, writes to them and keeps them
/// open (no close, so nothing is flushed) until it is killed or 120 s pass.
/// Killed on drop.
struct Holder(Child);

impl Holder {
    /// `script` is Perl run with the paths as @ARGV; it must print "ready".
    fn start(script: &str, paths: &[&Path]) -> Holder {
        let mut child = Command::new("perl")
            .arg("-e")
            .arg(format!("alarm 120; $| = 1; {script}"))
            .args(paths)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start perl");
        let mut line = String::new();
        // Bounded: the alarm ends perl (and so this read) within 120 s.
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "ready" {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("holder failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Holder(child)
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop();
    }
}

// ----- 1. termination by signal -----

/// An append to an existing file is staged and uploaded at close; here the
/// writer never closes, so only ftpsfs's SIGTERM handling can put the bytes
/// on the server. A new file written sequentially (streamed to STOR) must
/// be complete too.
#[test]
fn sigterm_uploads_writes_pending_in_files_still_open() {
    let server = Vsftpd::start(&[]);
    let root = server.info.root.clone();
    std::fs::write(root.join("log.txt"), b"old\n").unwrap();
    chown_to_ftp_user(&server, &root.join("log.txt"));
    let mount = Mount::start(&server.info, &[]);
    let fresh = data::bytes(3_000_000, 77);
    let scratch = Scratch::new("sigterm-pending");
    std::fs::write(scratch.path("fresh.src"), &fresh).unwrap();
    let mut holder = Holder::start(
        r#"open(my $a, ">>", $ARGV[0]) or die "append: $!";
           syswrite($a, "new\n") == 4 or die "write: $!";
           open(my $src, "<", $ARGV[2]) or die "src: $!"; binmode $src;
           local $/; my $body = <$src>;
           open(my $f, ">", $ARGV[1]) or die "create: $!";
           syswrite($f, $body) == length($body) or die "write: $!";
           print "ready\n"; sleep 110;"#,
        &[
            &mount.path("log.txt"),
            &mount.path("fresh.bin"),
            &scratch.path("fresh.src"),
        ],
    );
    // The test proves nothing if the append were already on the server.
    assert_eq!(
        std::fs::read(root.join("log.txt")).unwrap(),
        b"old\n",
        "the append is still pending before the signal"
    );
    let pid = ftpsfs_pid(&mount);
    signal(pid, "TERM");
    let uploaded = wait_until(30, || {
        std::fs::read(root.join("log.txt")).ok().as_deref() == Some(b"old\nnew\n")
            && std::fs::read(root.join("fresh.bin"))
                .map(|b| b == fresh)
                .unwrap_or(false)
    });
    assert!(
        uploaded,
        "pending writes on the server after SIGTERM; log.txt = {:?}, fresh.bin {} bytes; log:\n{}",
        String::from_utf8_lossy(&std::fs::read(root.join("log.txt")).unwrap_or_default()),
        std::fs::metadata(root.join("fresh.bin"))
            .map(|m| m.len())
            .unwrap_or(0),
        mount.log_text()
    );
    assert!(
        mount.log_text().contains("uploading pending writes"),
        "{}",
        mount.log_text()
    );
    // No partial-upload temporaries left in the directory.
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".part")),
        "temporaries left on the server: {names:?}"
    );
    holder.stop();
}

/// Perl for `Holder`: overwrites the existing file $ARGV[0] in place
/// (staged, not streamed: it is not a new file) with the content of
/// $ARGV[1], 1 MiB at a time, and keeps it open.
const OVERWRITE_AND_HOLD: &str = r#"open(my $f, "+<", $ARGV[0]) or die "open: $!";
    open(my $src, "<", $ARGV[1]) or die "src: $!"; binmode $src;
    while (my $n = sysread($src, my $buf, 1048576)) {
        syswrite($f, $buf) == $n or die "write: $!";
    }
    print "ready\n"; sleep 110;"#;

#[test]
fn sigterm_uploads_100_mib_of_pending_writes() {
    let server = Vsftpd::start(&[]);
    let root = server.info.root.clone();
    std::fs::write(root.join("big.bin"), data::bytes(1024 * 1024, 5)).unwrap();
    chown_to_ftp_user(&server, &root.join("big.bin"));
    let mut mount = Mount::start(&server.info, &[]);
    let scratch = Scratch::new("sigterm-100");
    let body = data::bytes(100 * 1024 * 1024, 6);
    std::fs::write(scratch.path("src"), &body).unwrap();
    let mut holder = Holder::start(
        OVERWRITE_AND_HOLD,
        &[&mount.path("big.bin"), &scratch.path("src")],
    );
    assert_eq!(
        std::fs::metadata(root.join("big.bin")).unwrap().len(),
        1024 * 1024,
        "still pending before the signal"
    );
    signal(ftpsfs_pid(&mount), "TERM");
    let want = data::sha256(&body);
    assert!(
        wait_until(120, || std::fs::metadata(root.join("big.bin"))
            .is_ok_and(|m| m.len() == body.len() as u64)
            && sha256sum(&root.join("big.bin")) == want),
        "the 100 MiB reach the server after SIGTERM; log:\n{}",
        mount.log_text()
    );
    // The lazily unmounted mount goes once the writer lets go.
    holder.stop();
    assert!(
        mount.unmount(),
        "ftpsfs exits 0 after SIGTERM: {}",
        mount.log_text()
    );
}

/// SIGTERM while the server is unreachable: the pending writes cannot be
/// uploaded; ftpsfs says so in its log and keeps them in a private file,
/// and the server's file is the old one, intact.
#[test]
fn sigterm_with_the_server_unreachable_keeps_pending_writes_locally() {
    use common::proxied::Proxied;
    use common::proxy::Kind;
    let rig = Proxied::start(&[]);
    let root = rig.info.root.clone();
    let old = data::bytes(1024 * 1024, 7);
    std::fs::write(root.join("doc.bin"), &old).unwrap();
    chown_to_ftp_user(&rig.server, &root.join("doc.bin"));
    // The upload is tried for --retry-time before its content is kept.
    let mut mount = rig.mount(&[
        "--connect-timeout",
        "2",
        "--timeout",
        "3",
        "--retry-time",
        "5",
    ]);
    let scratch = Scratch::new("sigterm-unreachable");
    let body = data::bytes(20 * 1024 * 1024, 8);
    std::fs::write(scratch.path("src"), &body).unwrap();
    let mut holder = Holder::start(
        OVERWRITE_AND_HOLD,
        &[&mount.path("doc.bin"), &scratch.path("src")],
    );
    for kind in [Kind::Control, Kind::Data] {
        rig.proxy.set_refuse(kind, true);
        rig.proxy.reset_all(kind);
    }
    signal(ftpsfs_pid(&mount), "TERM");
    let signalled = Instant::now();
    let reported = wait_until(120, || mount.log_text().contains("its content is kept in"));
    eprintln!("reported {:?} after SIGTERM", signalled.elapsed());
    let log = mount.log_text();
    assert!(reported, "no report 120 s after SIGTERM:\n{log}");
    holder.stop();
    assert!(wait_until(30, || !is_mounted(&mount.dir)), "{log}");
    assert!(
        !mount.unmount(),
        "ftpsfs exits non-zero when pending writes could not be uploaded"
    );
    let kept = log
        .lines()
        .find_map(|l| l.split("its content is kept in ").nth(1))
        .unwrap_or_else(|| panic!("the log names where the content is kept:\n{log}"))
        .trim()
        .to_string();
    assert!(kept.ends_with("/doc.bin"), "{kept}");
    assert_eq!(
        data::sha256(&std::fs::read(&kept).unwrap()),
        data::sha256(&body)
    );
    assert_eq!(
        std::fs::read(root.join("doc.bin")).unwrap(),
        old,
        "the old file is intact"
    );
}

#[test]
fn sigterm_with_a_file_held_open_unmounts_and_exits_0() {
    let server = Vsftpd::start(&[]);
    let root = server.info.root.clone();
    std::fs::write(root.join("log.txt"), b"old\n").unwrap();
    chown_to_ftp_user(&server, &root.join("log.txt"));
    let mut mount = Mount::start(&server.info, &[]);
    let mut holder = Holder::start(
        r#"open(my $a, ">>", $ARGV[0]) or die "append: $!";
           syswrite($a, "new\n") == 4 or die "write: $!";
           print "ready\n"; sleep 110;"#,
        &[&mount.path("log.txt")],
    );
    let pid = ftpsfs_pid(&mount);
    signal(pid, "TERM");
    assert!(
        wait_until(30, || std::fs::read(root.join("log.txt")).ok().as_deref()
            == Some(b"old\nnew\n")),
        "the pending append reaches the server"
    );
    // Whether ftpsfs detaches the mount at once (lazily) or once the last
    // file is closed, with the writer gone the mount must be gone too.
    holder.stop();
    assert!(
        wait_until(30, || !is_mounted(&mount.dir)),
        "mount still there 30 s after SIGTERM (writer gone); log:\n{}",
        mount.log_text()
    );
    assert!(
        mount.unmount(),
        "ftpsfs exits with status 0 after SIGTERM; log:\n{}",
        mount.log_text()
    );
    assert_eq!(std::fs::read(root.join("log.txt")).unwrap(), b"old\nnew\n");
}

#[test]
fn sigterm_with_nothing_pending_unmounts_and_exits_0() {
    let server = Vsftpd::start(&[]);
    let mut mount = Mount::start(&server.info, &[]);
    std::fs::write(mount.path("done"), b"done").unwrap();
    let pid = ftpsfs_pid(&mount);
    signal(pid, "TERM");
    let gone = wait_until(30, || !is_mounted(&mount.dir));
    // A second signal must not be ignored either.
    let gone_after_second = gone || {
        signal(pid, "TERM");
        wait_until(30, || !is_mounted(&mount.dir))
    };
    assert!(
        gone,
        "mount still there 30 s after SIGTERM (and 10 s after a second one: {}); log:\n{}",
        if gone_after_second {
            "then gone"
        } else {
            "still there"
        },
        mount.log_text()
    );
    assert!(
        mount.unmount(),
        "ftpsfs exits with status 0 after SIGTERM; log:\n{}",
        mount.log_text()
    );
    assert_eq!(
        std::fs::read(server.info.root.join("done")).unwrap(),
        b"done"
    );
    assert!(
        mount.log_text().contains("unmounted"),
        "{}",
        mount.log_text()
    );
}

// ----- 2. the directory cache, counted on the server -----

#[test]
fn warm_ls_lr_sends_no_command() {
    const DIRS: usize = 50;
    const FILES: usize = 10;
    let server = Vsftpd::start(&[]);
    let tree = server.info.root.join("tree");
    for d in 0..DIRS {
        let dir = tree.join(format!("dir{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES {
            std::fs::write(dir.join(format!("file{f}")), data::bytes(d * 10 + f, 1)).unwrap();
        }
    }
    chown_to_ftp_user(&server, &tree);
    // A long keepalive: an idle session's NOOP is not a command ls caused.
    let mount = Mount::start(
        &server.info,
        &["--attr-ttl", "60", "--dir-ttl", "60", "--keepalive", "3600"],
    );
    let target = mount.path_str("tree");
    let before = server.commands().len();
    let cold = ok("ls", &["-lR", &target], 120).stdout;
    let after_cold = server.commands();
    let cold_commands = &after_cold[before..];
    let warm = ok("ls", &["-lR", &target], 120).stdout;
    let after_warm = server.commands();

    let lists = count_verb(cold_commands, "LIST") + count_verb(cold_commands, "MLSD");
    let mdtms = count_verb(cold_commands, "MDTM");
    let sizes = count_verb(cold_commands, "SIZE");
    eprintln!(
        "cold ls -lR of {DIRS} dirs x {FILES} files: {} commands ({lists} listings, {mdtms} MDTM, \
         {sizes} SIZE); warm: {}",
        cold_commands.len(),
        after_warm.len() - after_cold.len()
    );
    // Not counted: EPSV, which sets up the next transfer's data connection
    // as a listing ends; the cold run's last one may reach vsftpd's log
    // only after the cold run's commands were read. A warm listing would
    // show its LIST or MLSD.
    let warm_commands: Vec<String> = after_warm[after_cold.len()..]
        .iter()
        .filter(|c| c.as_str() != "EPSV")
        .cloned()
        .collect();
    assert_eq!(
        warm_commands,
        Vec::<String>::new(),
        "the warm ls -lR sent commands"
    );
    // What a user sees: every file, and the same listing both times.
    let text = String::from_utf8_lossy(&cold);
    let file_lines = text.lines().filter(|l| l.starts_with('-')).count();
    assert_eq!(file_lines, DIRS * FILES, "{text}");
    assert_eq!(
        String::from_utf8_lossy(&warm),
        text,
        "warm listing differs from cold"
    );
    // About one listing per directory (tree + its 50 dirs + the root), not
    // one per file, and no per-file MDTM/SIZE storm.
    assert!(
        lists <= DIRS + 4,
        "{lists} listings for {} directories: {cold_commands:?}",
        DIRS + 1
    );
    assert!(lists >= DIRS, "each directory listed: {cold_commands:?}");
    assert!(
        mdtms <= 5,
        "{mdtms} MDTM for a cold ls -lR: {cold_commands:?}"
    );
    assert!(
        sizes <= 5,
        "{sizes} SIZE for a cold ls -lR: {cold_commands:?}"
    );
}

// ----- 3. rsync at full size -----

#[test]
fn rsync_2000_files_in_50_dirs_then_nothing_to_transfer() {
    let server = Vsftpd::start(&[]);
    let mount = Mount::start(&server.info, &[]);
    let scratch = Scratch::new("rsync2000");
    let tree = scratch.path("tree");
    for d in 0..50usize {
        std::fs::create_dir_all(tree.join(format!("d{d:02}"))).unwrap();
        for f in 0..40usize {
            let n = d * 40 + f;
            std::fs::write(
                tree.join(format!("d{d:02}/f{f:02}.dat")),
                data::bytes((n * 53) % 6000, n as u64),
            )
            .unwrap();
        }
    }
    let src = format!("{}/", tree.display());
    let dst = format!("{}/", mount.path_str("backup"));
    ok("rsync", &["-a", &src, &dst], 900);
    // Every byte of every file, and nothing else, on the server.
    let on_server = server.info.root.join("backup");
    let diff = run(
        "diff",
        &["-r", &tree.to_string_lossy(), &on_server.to_string_lossy()],
        300,
    );
    assert!(
        diff.status.success(),
        "server tree differs: {}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    let count = ok("find", &[&on_server.to_string_lossy(), "-type", "f"], 60).stdout;
    assert_eq!(String::from_utf8_lossy(&count).lines().count(), 2000);

    let second = ok("rsync", &["-a", "--itemize-changes", &src, &dst], 900);
    let changes = String::from_utf8_lossy(&second.stdout);
    let transferred: Vec<&str> = changes.lines().filter(|l| l.starts_with('>')).collect();
    assert!(
        transferred.is_empty(),
        "second rsync transferred {} files, e.g. {:?}",
        transferred.len(),
        &transferred[..transferred.len().min(10)]
    );
    // vsftpd sets files' times but refuses directories' (the mount then shows
    // the server's), so rsync asks again for each directory: `.d..t......`.
    // Anything else — a file's time, size, mode, a new entry — is a failure.
    let other: Vec<&str> = changes
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(".d..t......"))
        .collect();
    assert!(
        other.is_empty(),
        "second rsync changed something: {:?}",
        &other[..other.len().min(10)]
    );
}

// ----- 4. a 1 GiB file in and out -----

#[test]
fn one_gib_in_and_out_with_checksums_and_bounded_memory() {
    const GIB: u64 = 1024 * 1024 * 1024;
    let server = Vsftpd::start(&[]);
    let mut mount = Mount::start(&server.info, &[]);
    let scratch = Scratch::new("gib");
    let src = scratch.path("big.src");
    ok(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={}", src.display()),
            "bs=1M",
            "count=1024",
            "iflag=fullblock",
            "status=none",
        ],
        300,
    );
    let want = sha256sum(&src);
    ok(
        "cp",
        &[&src.to_string_lossy(), &mount.path_str("big")],
        1200,
    );
    let on_server = server.info.root.join("big");
    assert_eq!(std::fs::metadata(&on_server).unwrap().len(), GIB);
    assert_eq!(sha256sum(&on_server), want, "the file on the server");
    assert_eq!(std::fs::metadata(mount.path("big")).unwrap().len(), GIB);
    let back = scratch.path("big.back");
    ok(
        "cp",
        &[&mount.path_str("big"), &back.to_string_lossy()],
        1200,
    );
    assert_eq!(sha256sum(&back), want, "the file copied back");

    let pid = ftpsfs_pid(&mount);
    let hwm = status_kib(pid, "VmHWM");
    eprintln!(
        "ftpsfs peak RSS (VmHWM) after 1 GiB in and out: {} KiB",
        hwm
    );
    assert!(
        hwm < 300 * 1024,
        "ftpsfs peak RSS {hwm} KiB: a 1 GiB copy must not be buffered in memory"
    );
    assert!(mount.unmount(), "clean unmount; log:\n{}", mount.log_text());
}

// ----- 5. read-only mounts -----

#[test]
fn read_only_mount_reads_and_refuses_writes() {
    let server = Vsftpd::start(&[]);
    let root = server.info.root.clone();
    let body = data::bytes(50_000, 61);
    std::fs::create_dir(root.join("d")).unwrap();
    std::fs::write(root.join("d/r.bin"), &body).unwrap();
    chown_to_ftp_user(&server, &root.join("d"));
    let mount = Mount::start(&server.info, &["--ro"]);
    assert_eq!(
        data::sha256(&std::fs::read(mount.path("d/r.bin")).unwrap()),
        data::sha256(&body),
        "reads work"
    );
    let listing = String::from_utf8(ok("ls", &["-l", &mount.path_str("d")], 30).stdout).unwrap();
    assert!(listing.contains("r.bin"), "{listing}");
    let scratch = Scratch::new("ro");
    std::fs::write(scratch.path("src"), b"src").unwrap();
    let r = mount.path_str("d/r.bin");
    let attempts: Vec<(&str, Vec<String>)> = vec![
        ("touch", vec![mount.path_str("new")]),
        ("cp", vec![scratch.str("src"), mount.path_str("d/copy")]),
        ("mkdir", vec![mount.path_str("nd")]),
        ("rm", vec!["-f".into(), r.clone()]),
        ("mv", vec![r.clone(), mount.path_str("d/moved")]),
        ("truncate", vec!["-s".into(), "0".into(), r.clone()]),
        ("chmod", vec!["600".into(), r.clone()]),
        ("rmdir", vec![mount.path_str("d")]),
        (
            "sh",
            vec![
                "-c".into(),
                "printf x >> \"$1\"".into(),
                "sh".into(),
                r.clone(),
            ],
        ),
    ];
    for (program, args) in &attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(program, &args, 30);
        assert!(!out.status.success(), "{program} {args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Read-only file system"),
            "{program} {args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read(root.join("d/r.bin")).unwrap(), body);
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .chain(std::fs::read_dir(root.join("d")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "nothing created or removed: {names:?}");
}

// ----- 6. changes made on the server -----

#[test]
fn server_side_changes_show_after_the_ttl() {
    let server = Vsftpd::start(&[]);
    let root = server.info.root.clone();
    std::fs::write(root.join("grow.txt"), b"version one").unwrap();
    std::fs::write(root.join("same.txt"), b"AAAA").unwrap();
    std::fs::write(root.join("gone.txt"), b"bye").unwrap();
    chown_to_ftp_user(&server, &root);
    let mount = Mount::start(&server.info, &["--attr-ttl", "1", "--dir-ttl", "1"]);
    let ls = || {
        let mut names: Vec<String> = std::fs::read_dir(&mount.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(ls(), ["gone.txt", "grow.txt", "same.txt"]);
    assert_eq!(
        std::fs::read(mount.path("grow.txt")).unwrap(),
        b"version one"
    );
    assert_eq!(std::fs::read(mount.path("same.txt")).unwrap(), b"AAAA");

    // Changed behind the mount's back: a new size, the same size with new
    // bytes (and an older time, as rsync -a to the server would leave),
    // a new file, a deleted file.
    std::fs::write(root.join("grow.txt"), b"version two, longer").unwrap();
    std::fs::write(root.join("same.txt"), b"BBBB").unwrap();
    ok(
        "touch",
        &[
            "-d",
            "2021-06-01 12:00:00 UTC",
            &root.join("same.txt").to_string_lossy(),
        ],
        10,
    );
    std::fs::write(root.join("new.txt"), b"new").unwrap();
    std::fs::remove_file(root.join("gone.txt")).unwrap();
    chown_to_ftp_user(&server, &root);
    std::thread::sleep(Duration::from_millis(2500));

    assert_eq!(ls(), ["grow.txt", "new.txt", "same.txt"]);
    assert_eq!(
        std::fs::read(mount.path("grow.txt")).unwrap(),
        b"version two, longer"
    );
    assert_eq!(std::fs::metadata(mount.path("grow.txt")).unwrap().len(), 19);
    assert_eq!(std::fs::read(mount.path("new.txt")).unwrap(), b"new");
    assert_eq!(std::fs::read(mount.path("same.txt")).unwrap(), b"BBBB");
    let cat = run("cat", &[&mount.path_str("gone.txt")], 10);
    assert!(
        String::from_utf8_lossy(&cat.stderr).contains("No such file"),
        "{cat:?}"
    );
}

// ----- 7. concurrent readers -----

#[test]
fn two_readers_of_one_file_get_the_same_bytes() {
    let server = Vsftpd::start(&[]);
    let body = data::bytes(24 * 1024 * 1024 + 12345, 88);
    std::fs::write(server.info.root.join("shared.bin"), &body).unwrap();
    let want = data::sha256(&body);
    let mount = Mount::start(&server.info, &[]);
    let path = mount.path("shared.bin");
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || sha256sum(&path))
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.join().expect("reader"), want);
    }
    // And one reader seeking while another streams: dd of the middle.
    let middle = {
        let path = path.clone();
        std::thread::spawn(move || {
            ok(
                "dd",
                &[
                    &format!("if={}", path.display()),
                    "bs=4096",
                    "skip=1000",
                    "count=100",
                    "status=none",
                ],
                120,
            )
            .stdout
        })
    };
    let whole = sha256sum(&path);
    assert_eq!(whole, want);
    assert_eq!(
        middle.join().expect("dd"),
        body[4096 * 1000..4096 * 1100].to_vec()
    );
}

/// The server dropped every session while the mount was idle (a restart):
/// the next upload finds its pooled session dead before any byte was sent,
/// and opens it again on a new one instead of failing the program.
#[test]
fn an_upload_after_the_server_dropped_every_session_succeeds() {
    let server = Vsftpd::start(&[]);
    let mount = Mount::start(&server.info, &["--attr-ttl", "60", "--dir-ttl", "60"]);
    ok("cp", &["/etc/hostname", &mount.path_str("first")], 30);
    let logins = server.logins();
    assert!(server.kill_sessions() > 0, "no session to drop");
    std::thread::sleep(Duration::from_millis(300));
    let body = data::bytes(200_000, 31);
    let scratch = Scratch::new("after-restart");
    std::fs::write(scratch.path("second"), &body).unwrap();
    ok(
        "cp",
        &[&scratch.str("second"), &mount.path_str("second")],
        30,
    );
    assert_eq!(
        std::fs::read(server.info.root.join("second")).unwrap(),
        body
    );
    assert!(
        server.logins() > logins,
        "the upload went over a new session: {:?}",
        server.commands()
    );
    let read = ok("cat", &[&mount.path_str("second")], 30).stdout;
    assert_eq!(read, body);
}

/// A crash while a new file streams (here: kill -9 with 4 MiB written and
/// the file still open) leaves nothing under its real name on the server:
/// only the hidden temporary name, which listings hide and sweep.
#[test]
fn a_killed_mount_leaves_no_partial_file_under_the_real_name() {
    let server = Vsftpd::start(&[]);
    let mut mount = Mount::start(&server.info, &[]);
    let pid = ftpsfs_pid(&mount);
    // One process that writes and keeps the file open: a copy of the
    // descriptor closed in a forked child (this test's own `kill`, say)
    // would be a close(), and so an upload.
    let writer = "import sys, time\n\
                  f = open(sys.argv[1], 'wb')\n\
                  f.write(b'x' * (4 << 20)); f.flush()\n\
                  print('written', flush=True); time.sleep(120)\n";
    let mut child = Command::new("python3")
        .args(["-c", writer, &mount.path_str("big.bin")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (apt-get install -y python3)");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line).unwrap();
    }
    assert_eq!(line.trim(), "written");
    let temp_on_server = || {
        std::fs::read_dir(&server.info.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(".big.bin.ftpsfs-") && n.ends_with(".part"))
    };
    assert!(
        wait_until(10, || temp_on_server().is_some()),
        "the stream goes to a hidden name: {:?}",
        server.commands()
    );
    signal(pid, "KILL");
    assert!(wait_until(30, || !is_mounted(&mount.dir)), "still mounted");
    let _ = child.kill();
    let _ = child.wait();
    assert!(!mount.unmount(), "killed, so not a clean exit");
    assert!(
        !server.info.root.join("big.bin").exists(),
        "a partial file under the real name: {:?}",
        server.commands()
    );
    assert!(temp_on_server().is_some(), "the partial upload is hidden");
}

/// The children of `pid` whose command is `name`.
fn children_named(pid: u32, name: &str) -> Vec<u32> {
    let out = run("pgrep", &["-P", &pid.to_string(), "-x", name], 10);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// fusermount3's auto_unmount can lose a race on a busy machine (it is
/// woken before the kernel ends the dead mount's connection, and then
/// leaves the mount: src/guard.rs). The guard beside every mount takes it
/// away then: here auto_unmount's helper is killed first, so only the
/// guard can act.
#[test]
fn a_killed_mount_goes_away_even_when_auto_unmount_does_not_act() {
    let server = Vsftpd::start(&[]);
    let mut mount = Mount::start(&server.info, &[]);
    let pid = ftpsfs_pid(&mount);
    let helpers = children_named(pid, "fusermount3");
    assert_eq!(helpers.len(), 1, "one auto_unmount helper: {helpers:?}");
    assert_eq!(children_named(pid, "ftpsfs-guard").len(), 1, "one guard");
    signal(helpers[0], "KILL");
    signal(pid, "KILL");
    assert!(wait_until(30, || !is_mounted(&mount.dir)), "still mounted");
    assert!(!mount.unmount(), "killed, so not a clean exit");
}

/// Run as root, a crash is cleaned up by fusermount3's auto_unmount (an
/// ordinary user's mount by the guard: tests/mount_guard.rs). A mount whose
/// daemon died must not be left behind for `ls` to hang or fail on.
#[test]
fn a_killed_mount_of_root_goes_away_and_what_was_closed_is_on_the_server() {
    let server = Vsftpd::start(&[]);
    let mut mount = Mount::start(&server.info, &[]);
    std::fs::write(mount.path("closed.txt"), b"closed before the crash").unwrap();
    let pid = ftpsfs_pid(&mount);
    signal(pid, "KILL");
    let killed = Instant::now();
    assert!(
        wait_until(30, || !is_mounted(&mount.dir)),
        "the mount of a killed ftpsfs (pid {pid}) is still there; its processes:\n{}",
        String::from_utf8_lossy(
            &run("sh", &["-c", "ps -eo pid,ppid,stat,wchan:20,cmd | grep -E 'fusermount|ftpsfs' | grep -v grep"], 10).stdout
        )
    );
    eprintln!("unmounted {:?} after SIGKILL", killed.elapsed());
    let listing = ok("ls", &["-a", &mount.dir.to_string_lossy()], 10);
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout)
            .split_whitespace()
            .count(),
        2,
        "a plain empty directory again (. and ..)"
    );
    assert!(!mount.unmount(), "killed, so not a clean exit");
    assert_eq!(
        std::fs::read(server.info.root.join("closed.txt")).unwrap(),
        b"closed before the crash"
    );
}
