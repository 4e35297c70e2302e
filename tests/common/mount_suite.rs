//! The core mount suite, run against every server of the matrix
//! (tests/mount_matrix.rs): what a user does with a mounted FTPS directory,
//! with ordinary tools, checked on the server's disk and through the mount.
//! Where a server cannot do something (set a time, change a mode, list dot
//! files), `Expect` says so and the suite checks that the mount degrades
//! gracefully: the tool still succeeds and the data is intact.
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::data;
use super::mount::{directories_renames_and_removal, ok, run, Mount};
use super::scratch::Scratch;
use super::suite;
use super::ServerInfo;

/// What the server can do, as the matrix found it; the README's "Servers"
/// table is filled from these.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// FEAT offers MLSD (else the mount lists with `LIST -a`).
    pub mlsd: bool,
    /// FEAT offers MFMT (else times are set with `MDTM time path`).
    pub mfmt: bool,
    /// MFMT or `MDTM time path` works: `touch -d` and `rsync -a` keep times,
    /// and a second `rsync -a` transfers nothing.
    pub sets_mtime: bool,
    /// SITE CHMOD works: `chmod` reaches the server.
    pub chmod: bool,
    /// Names starting with a dot are listed.
    pub dot_files: bool,
    /// A name ending in a space is stored as it is (Pure-FTPd stores
    /// `name ` as `name_`).
    pub trailing_spaces: bool,
}

/// Every step. `mount` mounts the server directory `info.root`, which starts
/// empty: once for the directory checks (which end with it empty again),
/// then again after files are put on the server directly, so that the
/// second mount sees them through the server's listing.
pub fn core_suite(info: &ServerInfo, mount: impl Fn() -> Mount, expect: Expect) {
    let root = &info.root;
    features_offered(info, expect);
    directories_renames_and_removal(root, &mount());
    put_on_the_server(root);
    let mount = mount();
    cp_in_and_out_keeps_every_byte(root, &mount);
    overwrite_append_and_truncate_in_place(root, &mount);
    names_with_spaces_unicode_and_dots(root, &mount, expect);
    touch_and_chmod_reach_the_server(root, &mount, expect);
    rsync_twice(root, &mount, expect.sets_mtime);
}

/// What the server's FEAT says, as the mount's own client reads it.
fn features_offered(info: &ServerInfo, expect: Expect) {
    let (_, session) = suite::connect(info.config());
    let features = session.features();
    assert_eq!(
        (features.mlsd, features.mfmt),
        (expect.mlsd, expect.mfmt),
        "(MLSD, MFMT) offered; FEAT: {:?}",
        features.raw
    );
    session.quit();
}

const DIRECT_BIN_LEN: usize = 700_000;

/// Files made on the server's disk, not through the mount (as root: the FTP
/// user may read them but not change them).
fn put_on_the_server(root: &Path) {
    std::fs::create_dir_all(root.join("from server")).unwrap();
    std::fs::write(
        root.join("from server/direct.bin"),
        data::bytes(DIRECT_BIN_LEN, 5),
    )
    .unwrap();
    std::fs::write(root.join("from server/a file"), b"s").unwrap();
    std::fs::write(root.join("from server/.hidden"), b"h").unwrap();
}

/// cp into the mount and back out, sizes around the buffer edges up to
/// 10 MiB, checked by SHA-256 on the server and after reading back; and a
/// file put on the server directly, read through the mount.
pub fn cp_in_and_out_keeps_every_byte(root: &Path, mount: &Mount) {
    let local = Scratch::new("suite-cp");
    ok("mkdir", &[&mount.path_str("cp")], 30);
    for (i, size) in [0usize, 1, 4095, 4096, 131_073, 10 * 1024 * 1024]
        .into_iter()
        .enumerate()
    {
        let name = format!("cp/f{size}.bin");
        let body = data::bytes(size, i as u64);
        let src = local.str(&format!("f{size}"));
        std::fs::write(&src, &body).unwrap();
        ok("cp", &[&src, &mount.path_str(&name)], 120);
        let on_server = std::fs::read(root.join(&name)).unwrap();
        assert_eq!(
            data::sha256(&on_server),
            data::sha256(&body),
            "{name} on the server"
        );
        // Visible at once, with its size, without waiting for a listing.
        assert_eq!(
            std::fs::metadata(mount.path(&name)).unwrap().len(),
            size as u64,
            "{name} size seen at once"
        );
        let back = local.str(&format!("f{size}.back"));
        ok("cp", &[&mount.path_str(&name), &back], 120);
        assert_eq!(
            data::sha256(&std::fs::read(&back).unwrap()),
            data::sha256(&body),
            "{name} read back"
        );
    }
    assert_eq!(
        data::sha256(&std::fs::read(mount.path("from server/direct.bin")).unwrap()),
        data::sha256(&data::bytes(DIRECT_BIN_LEN, 5)),
        "a file put on the server directly"
    );
    let listing = String::from_utf8(ok("ls", &["-la", &mount.path_str("cp")], 30).stdout).unwrap();
    assert!(listing.contains("f131073.bin"), "{listing}");
}

/// dd conv=notrunc into the middle of a file, append with >>, truncate down
/// and up: the whole file on the server is what a local disk would hold.
pub fn overwrite_append_and_truncate_in_place(root: &Path, mount: &Mount) {
    ok("mkdir", &[&mount.path_str("rw")], 30);
    let f = mount.path_str("rw/f");
    let on_server = || std::fs::read(root.join("rw/f")).unwrap();
    let original = data::bytes(300_000, 9);
    std::fs::write(&f, &original).unwrap();
    assert_eq!(on_server(), original, "written");

    let local = Scratch::new("suite-dd");
    std::fs::write(local.path("patch"), vec![0xAB; 5000]).unwrap();
    ok(
        "dd",
        &[
            &format!("if={}", local.str("patch")),
            &format!("of={f}"),
            "bs=1000",
            "seek=100",
            "conv=notrunc",
            "status=none",
        ],
        60,
    );
    let mut expected = original.clone();
    expected[100_000..105_000].fill(0xAB);
    assert_eq!(on_server(), expected, "dd conv=notrunc");

    ok("sh", &["-c", "printf 'tail' >> \"$1\"", "sh", &f], 30);
    expected.extend_from_slice(b"tail");
    assert_eq!(on_server(), expected, "append");

    ok("truncate", &["-s", "1000", &f], 30);
    assert_eq!(on_server(), expected[..1000], "truncate down");
    ok("truncate", &["-s", "5000", &f], 30);
    let grown = on_server();
    assert_eq!(grown.len(), 5000, "truncate up");
    assert_eq!(grown[..1000], expected[..1000]);
    assert!(
        grown[1000..].iter().all(|&b| b == 0),
        "zeros after truncate up"
    );
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 5000);
    ok("truncate", &["-s", "0", &f], 30);
    assert!(on_server().is_empty(), "truncate to 0");
}

/// Names with spaces (leading, trailing, doubled), non-ASCII and dots, made
/// through the mount, listed and renamed; a dot file put on the server is
/// listed when the server lists dot files (what the server's listing
/// says: that directory was made behind the mount's back); a name with a line
/// feed is refused with EINVAL (it would inject a command).
pub fn names_with_spaces_unicode_and_dots(root: &Path, mount: &Mount, expect: Expect) {
    let dot_files = expect.dot_files;
    ok("mkdir", &["-p", &mount.path_str("names/a dir")], 30);
    assert_eq!(
        std::fs::read(mount.path("from server/a file")).unwrap(),
        b"s"
    );
    let from_server = list(mount, "from server");
    assert_eq!(
        from_server.iter().any(|l| l == ".hidden"),
        dot_files,
        "a dot file listed (dot files expected: {dot_files}) in {from_server:?}"
    );
    // Listed or not, a dot file is there when asked for by name.
    assert_eq!(
        std::fs::read(mount.path("from server/.hidden")).unwrap(),
        b"h"
    );
    let names = [
        "with space",
        "two  spaces",
        " leading",
        "ünïcødé ✓",
        ".hidden",
        "..dots",
    ];
    for name in names {
        std::fs::write(mount.path(&format!("names/a dir/{name}")), name.as_bytes()).unwrap();
        assert_eq!(
            std::fs::read(root.join("names/a dir").join(name)).unwrap(),
            name.as_bytes(),
            "{name:?} on the server"
        );
    }
    let listed = list(mount, "names/a dir");
    for name in names {
        assert!(listed.iter().any(|l| l == name), "{name:?} in {listed:?}");
    }
    ok(
        "mv",
        &[
            &mount.path_str("names/a dir/with space"),
            &mount.path_str("names/a dir/ünïcødé renamed"),
        ],
        30,
    );
    assert_eq!(
        std::fs::read(root.join("names/a dir/ünïcødé renamed")).unwrap(),
        b"with space"
    );
    let bad = run("touch", &[&mount.path_str("names/line\nbreak")], 30);
    assert!(!bad.status.success(), "a name with LF is refused");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Invalid argument"),
        "{bad:?}"
    );
    ok("rm", &["-r", &mount.path_str("names/a dir")], 60);
    assert!(
        !root.join("names/a dir").exists(),
        "rm -r of the named files"
    );
    trailing_space(root, mount, expect.trailing_spaces);
}

/// A name ending in a space: kept, or (Pure-FTPd) the server stores the
/// file as `name_`, and the write still succeeds with every byte there.
fn trailing_space(root: &Path, mount: &Mount, kept: bool) {
    ok("mkdir", &[&mount.path_str("names/trailing")], 30);
    std::fs::write(mount.path("names/trailing/space "), b"t").unwrap();
    let on_server = root.join("names/trailing/space ");
    let renamed = root.join("names/trailing/space_");
    if kept {
        assert_eq!(std::fs::read(on_server).unwrap(), b"t");
    } else {
        assert!(!on_server.exists(), "the server keeps trailing spaces");
        assert_eq!(std::fs::read(renamed).unwrap(), b"t");
    }
}

fn list(mount: &Mount, dir: &str) -> Vec<String> {
    std::fs::read_dir(mount.path(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// touch -d and chmod: on the server when it can set times and modes;
/// otherwise the tools still succeed and the file is unharmed.
pub fn touch_and_chmod_reach_the_server(root: &Path, mount: &Mount, expect: Expect) {
    let t = mount.path_str("t");
    std::fs::write(&t, b"x").unwrap();
    ok("touch", &["-d", "2020-01-02 03:04:05 UTC", &t], 30);
    let wanted = UNIX_EPOCH + Duration::from_secs(1_577_934_245);
    let on_server = std::fs::metadata(root.join("t"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        on_server == wanted,
        expect.sets_mtime,
        "mtime on the server {on_server:?} (server sets times: {})",
        expect.sets_mtime
    );
    if expect.sets_mtime {
        let seen = std::fs::metadata(&t).unwrap().modified().unwrap();
        assert_eq!(seen, wanted, "mtime seen through the mount");
    }
    ok("chmod", &["600", &t], 30);
    let mode = std::fs::metadata(root.join("t"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode == 0o600,
        expect.chmod,
        "mode on the server {mode:o} (server does SITE CHMOD: {})",
        expect.chmod
    );
    assert_eq!(std::fs::read(root.join("t")).unwrap(), b"x");
}

/// rsync -a of 200 files in 10 directories, then again: the second run
/// transfers nothing when the server keeps times; otherwise it sends the
/// files again (rsync cannot tell them unchanged) and still succeeds.
pub fn rsync_twice(root: &Path, mount: &Mount, sets_mtime: bool) {
    let tree = Scratch::new("suite-rsync");
    let body = |d: usize, f: usize| data::bytes(100 + f * 37, (d * 100 + f) as u64);
    for d in 0..10 {
        std::fs::create_dir_all(tree.path(&format!("dir{d}"))).unwrap();
        for f in 0..20 {
            std::fs::write(tree.path(&format!("dir{d}/file{f}")), body(d, f)).unwrap();
        }
    }
    // Times well in the past: a server that cannot set them gives every file
    // a different time, however fast the first run went.
    ok(
        "find",
        &[
            &tree.str(""),
            "-type",
            "f",
            "-exec",
            "touch",
            "-d",
            "2020-01-02 03:04:05 UTC",
            "{}",
            "+",
        ],
        60,
    );
    let src = format!("{}/", tree.0.display());
    let dst = format!("{}/", mount.path_str("backup"));
    ok("rsync", &["-a", &src, &dst], 300);
    let check_server = |when: &str| {
        for d in 0..10 {
            for f in 0..20 {
                let rel = format!("backup/dir{d}/file{f}");
                assert_eq!(
                    std::fs::read(root.join(&rel)).unwrap(),
                    body(d, f),
                    "{rel} after the {when} rsync"
                );
            }
        }
    };
    check_server("first");
    let second = ok("rsync", &["-a", "--itemize-changes", &src, &dst], 300);
    let changes = String::from_utf8_lossy(&second.stdout);
    let transferred: Vec<&str> = changes
        .lines()
        .filter(|l| l.starts_with('>') || l.starts_with('<'))
        .collect();
    if sets_mtime {
        assert!(
            transferred.is_empty(),
            "second rsync transferred: {transferred:?}"
        );
    } else {
        assert_eq!(
            transferred.len(),
            200,
            "without server-side times every file is sent again: {transferred:?}"
        );
    }
    check_server("second");
}
