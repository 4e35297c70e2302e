//! `ftpsfs status`, `refresh` and `sync` against a real mount of vsftpd,
//! run as the commands a user types; the control socket refusing other
//! users, as the kernel reports them (SO_PEERCRED), even where the runtime
//! directory was opened up; and what the mount keeps of others' files: the
//! content cache across a remount and a crash, `-o cto`.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::mount::{ok, run, wait_until, Mount};
use common::vsftpd::Vsftpd;
use ftpsfs::control::runtime;

fn ftpsfs(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_ftpsfs"), args, 60)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn socket_of(mount: &Mount) -> PathBuf {
    let canonical = runtime::canonical_mountpoint(&mount.dir).expect("mountpoint");
    runtime::socket_path(&runtime::default_runtime_dir(), &canonical).expect("socket path")
}

/// Mounts with caches that outlive the test, so only a refresh can show
/// what another client changed; waits until the control socket answers.
fn mount(server: &Vsftpd) -> Mount {
    let mount = Mount::start(&server.info, &["--attr-ttl", "600", "--dir-ttl", "600"]);
    let dir = mount.path_str("");
    assert!(
        wait_until(10, || ftpsfs(&["status", &dir]).status.success()),
        "the control socket never answered: {}",
        mount.log_text()
    );
    mount
}

#[test]
fn status_shows_sessions_tls_and_counters() {
    let server = Vsftpd::start(&[]);
    let mount = mount(&server);
    std::fs::write(server.info.root.join("f"), vec![7u8; 100_000]).unwrap();
    assert_eq!(std::fs::read(mount.path("f")).unwrap().len(), 100_000);

    let out = ftpsfs(&["status", &mount.path_str("")]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for part in [
        "sessions:",
        "TLSv1.",
        "resumed TLS",
        "transfers: none",
        "cache:",
    ] {
        assert!(shown.contains(part), "{part:?} missing:\n{shown}");
    }
    let json = String::from_utf8_lossy(&ftpsfs(&["status", "--json", &mount.path_str("")]).stdout)
        .trim()
        .to_string();
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    assert!(
        !json.contains(r#""resumed_handshakes":0,"#),
        "a read resumed TLS: {json}"
    );

    // --watch repeats until stopped.
    let mut watch = std::process::Command::new(env!("CARGO_BIN_EXE_ftpsfs"))
        .args(["status", "--watch", &mount.path_str("")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let _ = watch.kill();
    let watched = watch.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&watched.stdout);
    assert!(shown.matches("sessions:").count() >= 2, "{shown}");
}

#[test]
fn refresh_shows_what_another_client_changed_at_once() {
    let server = Vsftpd::start(&[]);
    std::fs::create_dir(server.info.root.join("d")).unwrap();
    std::fs::write(server.info.root.join("d/old"), b"12345").unwrap();
    let mount = mount(&server);
    let names = |m: &Mount| {
        let mut names: Vec<String> = std::fs::read_dir(m.path("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&mount), ["old"]);
    assert_eq!(std::fs::metadata(mount.path("d/old")).unwrap().len(), 5);
    // Another client adds a file and rewrites one.
    std::fs::write(server.info.root.join("d/new"), b"n").unwrap();
    std::fs::write(server.info.root.join("d/old"), b"1234567890").unwrap();
    assert_eq!(names(&mount), ["old"], "cached for 10 minutes");
    assert_eq!(std::fs::metadata(mount.path("d/old")).unwrap().len(), 5);

    let out = ftpsfs(&["refresh", &mount.path_str(""), "d"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(names(&mount), ["new", "old"]);
    assert_eq!(
        std::fs::metadata(mount.path("d/old")).unwrap().len(),
        10,
        "the kernel's cached attributes were dropped too"
    );
    assert_eq!(std::fs::read(mount.path("d/old")).unwrap(), b"1234567890");

    // A path outside the mount is refused before anything is sent.
    let out = ftpsfs(&["refresh", &mount.path_str(""), "/etc"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not inside the mount"),
        "{}",
        text(&out)
    );
}

#[test]
fn sync_uploads_a_file_still_open_for_writing() {
    let server = Vsftpd::start(&[]);
    let mount = mount(&server);
    let path = mount.path_str("open.txt");
    // A writer that keeps its descriptor open until told to stop (not a
    // shell: its `>&3` duplicates the descriptor and closes the copy, and
    // every close is a flush that uploads).
    let mut writer = std::process::Command::new("python3")
        .arg("-c")
        .arg("import os,sys\nfd=os.open(sys.argv[1],os.O_WRONLY|os.O_CREAT)\nos.write(fd,b'still open')\nsys.stdin.read()")
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut last = String::new();
    let pending = wait_until(10, || {
        last = text(&ftpsfs(&["status", &mount.path_str("")]));
        last.contains("1 pending")
    });
    assert!(pending, "the write never showed as pending:\n{last}");
    assert!(!server.info.root.join("open.txt").exists());

    let out = ok(
        env!("CARGO_BIN_EXE_ftpsfs"),
        &["sync", &mount.path_str("")],
        60,
    );
    assert!(text(&out).contains("1 file(s) uploaded"), "{}", text(&out));
    assert_eq!(
        std::fs::read(server.info.root.join("open.txt")).unwrap(),
        b"still open",
        "on the server while the writer still holds it open"
    );
    drop(writer.stdin.take());
    let _ = writer.wait();
}

#[test]
fn other_users_are_refused_and_garbage_does_not_hurt_the_mount() {
    let server = Vsftpd::start(&[]);
    let mount = mount(&server);
    let socket = socket_of(&mount);
    let dir = socket.parent().unwrap().to_path_buf();
    let as_nobody = |script: &str| {
        run(
            "setpriv",
            &[
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "python3",
                "-c",
                script,
                socket.to_str().unwrap(),
            ],
            30,
        )
    };
    let client = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX)\n\
        try:\n s.connect(sys.argv[1])\n\
        except OSError as e:\n print('connect:', e.strerror); sys.exit(0)\n\
        s.sendall(b'ftpsfs/1 status\\n')\n\
        print(s.makefile().read())";
    // The private directory keeps others out.
    let out = as_nobody(client);
    assert!(
        text(&out).contains("connect: Permission denied"),
        "{}",
        text(&out)
    );
    // Opened up (as a careless admin might), the mount still refuses them.
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(&dir, 0o711).unwrap();
    mode(&socket, 0o666).unwrap();
    let out = as_nobody(client);
    mode(&socket, 0o600).unwrap();
    mode(&dir, 0o700).unwrap();
    assert!(
        text(&out).contains("error permission denied: not the mounting user"),
        "{}",
        text(&out)
    );
    assert!(mount
        .log_text()
        .contains("refused a request from uid 65534"));

    // Garbage from the user's own processes: an error line, the mount lives.
    let out = run(
        "python3",
        &[
            "-c",
            "import socket,sys\n\
             s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n\
             s.sendall(bytes(range(256))*64); s.shutdown(socket.SHUT_WR)\n\
             print(s.makefile(errors='replace').read())",
            socket.to_str().unwrap(),
        ],
        30,
    );
    assert!(text(&out).starts_with("error "), "{}", text(&out));
    std::fs::write(mount.path("after"), b"fine").unwrap();
    assert_eq!(
        std::fs::read(server.info.root.join("after")).unwrap(),
        b"fine"
    );
    assert!(ftpsfs(&["status", &mount.path_str("")]).status.success());
}

#[test]
fn the_commands_say_when_no_mount_answers() {
    let dir = tempfile::tempdir().unwrap();
    let out = ftpsfs(&["status", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let shown = text(&out);
    assert!(
        shown.contains("no running mount") || shown.contains("no ftpsfs mount"),
        "{shown}"
    );
}

#[test]
fn with_cto_an_open_reads_what_another_client_just_wrote() {
    let server = Vsftpd::start(&[]);
    std::fs::write(server.info.root.join("f"), b"old").unwrap();
    let mount = Mount::start(
        &server.info,
        &["--attr-ttl", "600", "--dir-ttl", "600", "-o", "cto"],
    );
    assert_eq!(std::fs::read(mount.path("f")).unwrap(), b"old");
    std::fs::write(server.info.root.join("f"), b"new and longer").unwrap();
    assert_eq!(
        std::fs::read(mount.path("f")).unwrap(),
        b"new and longer",
        "the open asked the server, and the kernel kept no stale size"
    );
    let sizes = server
        .commands()
        .iter()
        .filter(|c| c.starts_with("SIZE") || c.starts_with("MDTM"))
        .count();
    assert!(sizes >= 2, "SIZE and MDTM at open: {:?}", server.commands());
}

fn retrs(server: &Vsftpd, name: &str) -> usize {
    server
        .commands()
        .iter()
        .filter(|c| c.starts_with("RETR") && c.ends_with(name))
        .count()
}

#[test]
fn a_file_read_before_a_remount_is_read_from_the_cache_after_it() {
    let server = Vsftpd::start(&[]);
    let data: Vec<u8> = (0..(6 << 20) + 777).map(|i: u32| (i % 249) as u8).collect();
    std::fs::write(server.info.root.join("big"), &data).unwrap();
    // Written an hour ago: the rewrite below has another time even to the
    // second, which is all the server tells (MDTM).
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(server.info.root.join("big"))
        .and_then(|f| f.set_modified(an_hour_ago))
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    {
        let mount = Mount::start(&server.info, &["--cache-dir", cache_dir]);
        assert!(std::fs::read(mount.path("big")).unwrap() == data);
    }
    assert_eq!(retrs(&server, "big"), 1);
    let mount = Mount::start(&server.info, &["--cache-dir", cache_dir]);
    assert!(std::fs::read(mount.path("big")).unwrap() == data);
    assert_eq!(retrs(&server, "big"), 1, "no download after the remount");
    let status = text(&ftpsfs(&["status", &mount.path_str("")]));
    assert!(status.contains("in 7 blocks"), "{status}");

    // Changed on the server (same size, new time): read anew.
    let mut changed = data.clone();
    changed[100] ^= 1;
    std::fs::write(server.info.root.join("big"), &changed).unwrap();
    let out = ftpsfs(&["refresh", &mount.path_str("")]);
    assert!(out.status.success(), "{}", text(&out));
    let read = std::fs::read(mount.path("big")).unwrap();
    assert!(
        read == changed,
        "stale bytes after a refresh:\n{}",
        mount.log_text()
    );
    assert_eq!(retrs(&server, "big"), 2);
}

#[test]
fn a_mount_killed_while_filling_the_cache_serves_only_whole_blocks_after() {
    let server = Vsftpd::start(&[]);
    let data: Vec<u8> = (0..24u32 << 20).map(|i| (i % 241) as u8).collect();
    std::fs::write(server.info.root.join("big"), &data).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let mut mount = Mount::start(&server.info, &["--cache-dir", cache_dir]);
    let path = mount.path_str("big");
    let mut reader = std::process::Command::new("dd")
        .args([&format!("if={path}"), "of=/dev/null", "bs=64k"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Some blocks stored, the download still going.
    let blocks = |dir: &Path| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let content = cache.path().join("content");
    assert!(
        wait_until(30, || std::fs::read_dir(&content)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|m| std::fs::read_dir(m.path()).into_iter().flatten().flatten())
            .any(|f| blocks(&f.path()) >= 2)),
        "no block stored"
    );
    let pid = mount.pid().unwrap().to_string();
    ok("kill", &["-9", &pid], 10);
    let _ = reader.wait();
    assert!(wait_until(30, || !common::mount::is_mounted(&mount.dir)));
    assert!(!mount.unmount());
    drop(mount);

    let mount = Mount::start(&server.info, &["--cache-dir", cache_dir]);
    assert!(
        std::fs::read(mount.path("big")).unwrap() == data,
        "every byte right"
    );
}

#[test]
fn cached_files_stay_readable_while_the_server_is_down() {
    let server = Vsftpd::start(&[]);
    let data: Vec<u8> = (0..(2u32 << 20) + 5).map(|i| (i % 239) as u8).collect();
    std::fs::write(server.info.root.join("kept"), &data).unwrap();
    let mount = Mount::start(
        &server.info,
        &["--attr-ttl", "1", "--dir-ttl", "1", "--retry-time", "2"],
    );
    assert!(std::fs::read(mount.path("kept")).unwrap() == data);
    server.stop();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let started = std::time::Instant::now();
    assert!(
        std::fs::read(mount.path("kept")).unwrap() == data,
        "read from the cache while the server is down"
    );
    let out = run("ls", &[&mount.path_str("")], 60);
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept"));
    // fsync (as careful programs do; close reports it too) hears of it.
    let write = std::fs::File::create(mount.path("new")).and_then(|mut f| {
        use std::io::Write;
        f.write_all(b"x")?;
        f.sync_all()
    });
    assert!(write.is_err(), "a write fails while the server is down");
    eprintln!(
        "offline reads and the failed write took {:?}",
        started.elapsed()
    );
    assert!(mount.log_text().contains("the server cannot be reached"));
}
