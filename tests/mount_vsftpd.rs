//! The mount, driven with ordinary tools (tar, cp, dd, ls) against vsftpd as
//! configured in the field, beyond the core suite that tests/mount_matrix.rs
//! runs against every server (cp, rsync, mv, rm, dd, touch, chmod, names).
//! Every test checks what a user would: the bytes and names on the server,
//! the tool's exit status and message.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use common::data;
use common::mount::{ok, run, Mount};
use common::scratch::Scratch;
use common::vsftpd::Vsftpd;

fn setup() -> (Vsftpd, Mount) {
    let server = Vsftpd::start(&[]);
    let mount = Mount::start(&server.info, &[]);
    (server, mount)
}

fn local_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn tar_into_and_out_of_the_mount() {
    let (server, mount) = setup();
    let scratch = Scratch::new("tar");
    let tree = &scratch.0;
    std::fs::create_dir_all(tree.join("src/sub")).unwrap();
    std::fs::write(tree.join("src/a"), data::bytes(70_000, 1)).unwrap();
    std::fs::write(tree.join("src/sub/b"), b"bee").unwrap();
    let archive = tree.join("in.tar").to_string_lossy().into_owned();
    ok(
        "tar",
        &["-cf", &archive, "-C", &tree.to_string_lossy(), "src"],
        60,
    );
    ok("tar", &["-xf", &archive, "-C", &mount.path_str("")], 120);
    assert_eq!(
        std::fs::read(server.info.root.join("src/sub/b")).unwrap(),
        b"bee"
    );
    let seconds = |p: &Path| {
        let modified = std::fs::metadata(p).unwrap().modified().unwrap();
        modified.duration_since(UNIX_EPOCH).unwrap().as_secs()
    };
    assert_eq!(
        seconds(&server.info.root.join("src/a")),
        seconds(&tree.join("src/a")),
        "tar -x keeps the file's time on the server"
    );
    let out = tree.join("out.tar").to_string_lossy().into_owned();
    ok("tar", &["-cf", &out, "-C", &mount.path_str(""), "src"], 120);
    let listing = String::from_utf8(ok("tar", &["-tvf", &out], 30).stdout).unwrap();
    assert!(
        listing.contains("src/sub/b") && listing.contains("70000"),
        "{listing}"
    );
}

#[test]
fn a_refused_write_is_reported_by_the_writer() {
    let (server, mount) = setup();
    // A directory the FTP user may not write into (owned by root).
    let locked = server.info.root.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let scratch = Scratch::new("refused");
    let src = local_file(&scratch.0, "f", b"data");
    let out = run("cp", &[&src, &mount.path_str("locked/f")], 60);
    assert!(!out.status.success(), "cp must fail");
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("Permission denied"), "{message}");
    assert!(!locked.join("f").exists());
}

#[test]
fn ls_answers_while_a_big_copy_runs() {
    let (server, mount) = setup();
    // 1 GiB of zeros: cheap to produce, seconds to upload over TLS.
    let dest = format!("of={}", mount.path_str("big"));
    let copy = std::thread::spawn(move || {
        ok(
            "dd",
            &["if=/dev/zero", &dest, "bs=1M", "count=1024", "status=none"],
            600,
        )
    });
    // Not a timing test: every ls must finish (within run()'s deadline) and
    // at least one must finish while the copy is still going, which it
    // could not if requests waited behind the upload.
    let mut answered_during_copy = 0;
    while !copy.is_finished() {
        ok("ls", &["-l", &mount.path_str("")], 20);
        if !copy.is_finished() {
            answered_during_copy += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    copy.join().expect("copy finished");
    assert!(
        answered_during_copy > 0,
        "no ls completed while the copy ran"
    );
    let size = std::fs::metadata(server.info.root.join("big"))
        .unwrap()
        .len();
    assert_eq!(size, 1024 * 1024 * 1024);
}

#[test]
fn two_files_read_at_once() {
    let (server, mount) = setup();
    let a = data::bytes(30 * 1024 * 1024, 21);
    let b = data::bytes(30 * 1024 * 1024, 22);
    std::fs::write(server.info.root.join("a"), &a).unwrap();
    std::fs::write(server.info.root.join("b"), &b).unwrap();
    let (pa, pb) = (mount.path("a"), mount.path("b"));
    let ta = std::thread::spawn(move || std::fs::read(pa).unwrap());
    let tb = std::thread::spawn(move || std::fs::read(pb).unwrap());
    assert_eq!(data::sha256(&ta.join().unwrap()), data::sha256(&a));
    assert_eq!(data::sha256(&tb.join().unwrap()), data::sha256(&b));
}

#[test]
fn unmount_is_clean() {
    let (_server, mut mount) = setup();
    std::fs::write(mount.path("x"), b"x").unwrap();
    assert!(
        mount.unmount(),
        "ftpsfs exits 0 after fusermount3 -u; log: {}",
        mount.log_text()
    );
    assert!(!common::mount::is_mounted(&mount.dir));
}

#[test]
fn symbolic_links_on_the_server_are_links_in_the_mount() {
    let server = Vsftpd::start(&[]);
    let root = &server.info.root;
    std::fs::write(root.join("target.txt"), b"pointed at").unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/inner"), b"inside").unwrap();
    std::os::unix::fs::symlink("target.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("sub", root.join("dirlink")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("dangling")).unwrap();
    let mount = Mount::start(&server.info, &[]);
    for (name, target) in [
        ("link", "target.txt"),
        ("dirlink", "sub"),
        ("dangling", "nowhere"),
    ] {
        let meta = std::fs::symlink_metadata(mount.path(name)).unwrap();
        assert!(meta.file_type().is_symlink(), "{name}: {meta:?}");
        assert_eq!(
            std::fs::read_link(mount.path(name)).unwrap(),
            Path::new(target)
        );
    }
    assert_eq!(std::fs::read(mount.path("link")).unwrap(), b"pointed at");
    assert_eq!(
        std::fs::read(mount.path("dirlink/inner")).unwrap(),
        b"inside"
    );
    let err = std::fs::read(mount.path("dangling")).expect_err("nothing there");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    // Not followed by a walk: find sees three links.
    let found = ok("find", &[&mount.path_str(""), "-type", "l"], 30);
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 3);
}

/// vsftpd does not tell free space (AVBL is "500 Unknown command"): df
/// shows the mount with 0 blocks as before, and the server was asked once,
/// however often df runs.
#[test]
fn df_shows_unknown_space_and_asks_vsftpd_once() {
    let (server, mount) = setup();
    for _ in 0..3 {
        let out = ok(
            "df",
            &["-B1", "--output=size,avail", &mount.path_str("")],
            30,
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let numbers: Vec<&str> = text
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(numbers, ["0", "0"], "{text}");
    }
    let asked = server
        .commands()
        .iter()
        .filter(|c| c.as_str() == "AVBL")
        .count();
    assert_eq!(asked, 1, "{:?}", server.commands());
}

/// A file removed on the server after it was opened through the mount, but
/// before it was read: the read fails with ESTALE, and the name is gone.
#[test]
fn a_file_removed_on_the_server_while_open_reads_as_estale() {
    use std::io::Read;
    let (server, mount) = setup();
    let on_server = server.info.root.join("vanishing.txt");
    std::fs::write(&on_server, b"here for now").unwrap();
    let mut file = std::fs::File::open(mount.path("vanishing.txt")).unwrap();
    std::fs::remove_file(&on_server).unwrap();
    let mut buffer = Vec::new();
    let err = file.read_to_end(&mut buffer).expect_err("gone");
    assert_eq!(err.raw_os_error(), Some(libc::ESTALE), "{err}");
    drop(file);
    assert!(!mount.path("vanishing.txt").exists(), "the mount forgot it");
}

/// The directory's mtime moves with each name created or removed in it
/// through the mount at once, though the mount has the directory's old
/// time cached (and vsftpd's listing gives days for old times).
#[test]
fn creating_and_removing_names_updates_the_directory_mtime() {
    let (server, mount) = setup();
    for dir in ["created-in", "removed-from"] {
        std::fs::create_dir(server.info.root.join(dir)).unwrap();
    }
    std::fs::write(server.info.root.join("removed-from/f"), b"x").unwrap();
    for dir in ["created-in", "removed-from"] {
        let on_server = server.info.root.join(dir).to_string_lossy().into_owned();
        // Root made it: the FTP user must own it to write there.
        ok(
            "chown",
            &["-R", &format!("{}:", server.info.user), &on_server],
            30,
        );
        ok("touch", &["-d", "@1000000000", &on_server], 30);
    }
    let mtime = |dir: &str| {
        std::fs::metadata(mount.path(dir))
            .unwrap()
            .modified()
            .unwrap()
    };
    let recent = std::time::SystemTime::now() - Duration::from_secs(60);
    assert!(mtime("created-in") < recent && mtime("removed-from") < recent);
    std::fs::write(mount.path("created-in/new"), b"x").unwrap();
    std::fs::remove_file(mount.path("removed-from/f")).unwrap();
    assert!(mtime("created-in") > recent, "create");
    assert!(mtime("removed-from") > recent, "unlink");
}

#[test]
fn a_large_file_read_in_order_is_fetched_in_segments() {
    let (server, mount) = setup();
    let bytes = data::bytes(64 * 1024 * 1024, 23);
    std::fs::write(server.info.root.join("large"), &bytes).unwrap();
    let got = std::fs::read(mount.path("large")).unwrap();
    assert_eq!(data::sha256(&got), data::sha256(&bytes));
    // The extra streams' segments: RETRs after RESTs past the start (the
    // sessions' lines interleave in the log, so the RESTs are taken on
    // their own), each offset once.
    let commands = server.commands();
    let rests: Vec<u64> = commands
        .iter()
        .filter_map(|c| c.strip_prefix("REST ")?.parse().ok())
        .filter(|&offset| offset > 0)
        .collect();
    let retrs = commands.iter().filter(|c| c.starts_with("RETR")).count();
    assert!(retrs > 1, "one RETR only: {commands:?}");
    assert!(
        !rests.is_empty(),
        "no RETR of a segment (REST n > 0): {commands:?}"
    );
    let mut sorted = rests.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        rests.len(),
        "a segment fetched twice: {rests:?}"
    );
}
