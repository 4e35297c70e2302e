//! The mount, driven with ordinary tools (cp, dd, mv, rm, rsync, tar, touch,
//! chmod, ls) against vsftpd as configured in the field. Every test checks
//! what a user would: the bytes and names on the server, the tool's exit
//! status and message.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use common::data;
use common::mount::{ok, run, Mount};
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

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ftpsfs-scratch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn cp_in_and_out_keeps_every_byte() {
    let (server, mount) = setup();
    let local = scratch("cp");
    for (i, size) in [0usize, 1, 4095, 4096, 131_073, 10 * 1024 * 1024]
        .into_iter()
        .enumerate()
    {
        let name = format!("f{size}.bin");
        let body = data::bytes(size, i as u64);
        let src = local_file(&local, &name, &body);
        ok("cp", &[&src, &mount.path_str(&name)], 120);
        let on_server = std::fs::read(server.info.root.join(&name)).unwrap();
        assert_eq!(
            data::sha256(&on_server),
            data::sha256(&body),
            "{name} on the server"
        );
        // Visible at once, with its size, without waiting for a listing.
        assert_eq!(
            std::fs::metadata(mount.path(&name)).unwrap().len(),
            size as u64
        );
        let back = local.join(format!("{name}.back"));
        ok(
            "cp",
            &[&mount.path_str(&name), &back.to_string_lossy()],
            120,
        );
        assert_eq!(
            data::sha256(&std::fs::read(&back).unwrap()),
            data::sha256(&body),
            "{name} read back"
        );
    }
    let listing = String::from_utf8(ok("ls", &["-la", &mount.path_str("")], 30).stdout).unwrap();
    assert!(listing.contains("f131073.bin"), "{listing}");
}

#[test]
fn directories_renames_and_removal() {
    let (server, mount) = setup();
    common::mount::directories_renames_and_removal(&server.info.root, &mount);
}

#[test]
fn overwrite_append_and_truncate_in_place() {
    let (server, mount) = setup();
    let original = data::bytes(300_000, 9);
    std::fs::write(mount.path("f"), &original).unwrap();
    let patch = scratch("dd").join("patch");
    std::fs::write(&patch, vec![0xAB; 5000]).unwrap();
    ok(
        "dd",
        &[
            &format!("if={}", patch.display()),
            &format!("of={}", mount.path_str("f")),
            "bs=1000",
            "seek=100",
            "conv=notrunc",
            "status=none",
        ],
        60,
    );
    let mut expected = original.clone();
    expected[100_000..105_000].fill(0xAB);
    assert_eq!(
        std::fs::read(server.info.root.join("f")).unwrap(),
        expected,
        "dd conv=notrunc"
    );

    ok(
        "sh",
        &["-c", &format!("printf 'tail' >> '{}'", mount.path_str("f"))],
        30,
    );
    expected.extend_from_slice(b"tail");
    assert_eq!(
        std::fs::read(server.info.root.join("f")).unwrap(),
        expected,
        "append"
    );

    ok("truncate", &["-s", "1000", &mount.path_str("f")], 30);
    assert_eq!(
        std::fs::read(server.info.root.join("f")).unwrap(),
        expected[..1000]
    );
    ok("truncate", &["-s", "5000", &mount.path_str("f")], 30);
    let grown = std::fs::read(server.info.root.join("f")).unwrap();
    assert_eq!(grown.len(), 5000);
    assert_eq!(grown[..1000], expected[..1000]);
    assert!(grown[1000..].iter().all(|&b| b == 0));
}

#[test]
fn touch_and_chmod_reach_the_server() {
    let (server, mount) = setup();
    std::fs::write(mount.path("t"), b"x").unwrap();
    ok(
        "touch",
        &["-d", "2020-01-02 03:04:05 UTC", &mount.path_str("t")],
        30,
    );
    let mtime = std::fs::metadata(server.info.root.join("t"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, UNIX_EPOCH + Duration::from_secs(1_577_934_245));
    let seen = std::fs::metadata(mount.path("t"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(seen, mtime);
    ok("chmod", &["600", &mount.path_str("t")], 30);
    let mode = std::fs::metadata(server.info.root.join("t"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn names_with_spaces_unicode_and_dots() {
    let (server, mount) = setup();
    for name in ["with space", "ünïcødé ✓", ".hidden", "..dots", "trailing "] {
        std::fs::write(mount.path(name), name.as_bytes()).unwrap();
        assert_eq!(
            std::fs::read(server.info.root.join(name)).unwrap(),
            name.as_bytes()
        );
    }
    let listed: Vec<String> = std::fs::read_dir(&mount.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in ["with space", "ünïcødé ✓", ".hidden", "..dots", "trailing "] {
        assert!(listed.iter().any(|l| l == name), "{name:?} in {listed:?}");
    }
    let bad = run("touch", &[&mount.path_str("line\nbreak")], 30);
    assert!(!bad.status.success(), "a name with LF is refused");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Invalid argument"),
        "{bad:?}"
    );
}

#[test]
fn rsync_twice_transfers_nothing_the_second_time() {
    let (server, mount) = setup();
    let tree = scratch("rsync");
    for d in 0..10 {
        std::fs::create_dir_all(tree.join(format!("dir{d}"))).unwrap();
        for f in 0..20 {
            std::fs::write(
                tree.join(format!("dir{d}/file{f}")),
                data::bytes(100 + f * 37, (d * 100 + f) as u64),
            )
            .unwrap();
        }
    }
    let src = format!("{}/", tree.display());
    let dst = format!("{}/", mount.path_str("backup"));
    ok("rsync", &["-a", &src, &dst], 300);
    for d in 0..10 {
        for f in 0..20 {
            let rel = format!("backup/dir{d}/file{f}");
            assert_eq!(
                std::fs::read(server.info.root.join(&rel)).unwrap(),
                data::bytes(100 + f * 37, (d * 100 + f) as u64),
                "{rel}"
            );
        }
    }
    let second = ok("rsync", &["-a", "--itemize-changes", &src, &dst], 300);
    let changes = String::from_utf8_lossy(&second.stdout);
    let transferred: Vec<&str> = changes
        .lines()
        .filter(|l| l.starts_with('>') || l.starts_with('<'))
        .collect();
    assert!(
        transferred.is_empty(),
        "second rsync transferred: {transferred:?}"
    );
}

#[test]
fn tar_into_and_out_of_the_mount() {
    let (server, mount) = setup();
    let tree = scratch("tar");
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
    let src = local_file(&scratch("refused"), "f", b"data");
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
