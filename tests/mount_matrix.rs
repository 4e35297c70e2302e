//! The server matrix (issue 5): the core mount suite against each FTPS
//! server people run, in its default secure configuration, each started by
//! its script in `scripts/`. A server that is not installed fails its test
//! with the package to install; none is skipped. What each server cannot do
//! is stated in its `Expect` and checked to degrade gracefully; README.md's
//! "Servers" table says the same.
mod common;
#[path = "support/inproc.rs"]
mod inproc;

use common::data;
use common::mount::{ok, Mount};
use common::mount_suite::{core_suite, Expect};
use common::scratch::Scratch;
use common::script_server::ScriptServer;
use common::vsftpd::Vsftpd;
use inproc::InProcServer;

/// A server that does all the suite asks: ProFTPD and pyftpdlib (MLSD,
/// MFMT, SITE CHMOD, dot files and trailing spaces kept).
const EVERYTHING: Expect = Expect {
    mlsd: true,
    mfmt: true,
    sets_mtime: true,
    chmod: true,
    dot_files: true,
    trailing_spaces: true,
};

/// Debian's vsftpd 3.0.3: LIST (the mount sends `LIST -a`), no MFMT but the
/// two-argument `MDTM time path`.
const VSFTPD: Expect = Expect {
    mlsd: false,
    mfmt: false,
    ..EVERYTHING
};

/// The core suite on explicit-TLS mounts of `server`.
fn explicit(server: &ScriptServer, expect: Expect) {
    core_suite(&server.info, || Mount::start(&server.info, &[]), expect);
}

#[test]
fn vsftpd_tls13_explicit() {
    let server = Vsftpd::start(&[]);
    assert_eq!(server.env["FTPS_TLS_MAX"], "1.3");
    explicit(&server, VSFTPD);
}

#[test]
fn vsftpd_tls12_only() {
    let server = Vsftpd::start(&["--tls12-only"]);
    assert_eq!(server.env["FTPS_TLS_MAX"], "1.2");
    explicit(&server, VSFTPD);
}

#[test]
fn vsftpd_implicit_tls() {
    let server = Vsftpd::start(&[]);
    let mount = || Mount::start_implicit(&server.info, &[]);
    core_suite(&server.info, mount, VSFTPD);
}

#[test]
fn proftpd_session_reuse_required() {
    let server = ScriptServer::start("proftpd-test-server", &[]);
    assert_eq!(server.env["FTPS_SESSION_REUSE_REQUIRED"], "yes");
    explicit(&server, EVERYTHING);
}

#[test]
fn proftpd_no_session_reuse_required() {
    let server = ScriptServer::start("proftpd-test-server", &["--no-session-reuse-required"]);
    assert_eq!(server.env["FTPS_SESSION_REUSE_REQUIRED"], "no");
    explicit(&server, EVERYTHING);
}

/// The in-process libunftp server (which plain `cargo test` runs the client
/// and store tests against), here through a real mount: MLSD, SITE CHMOD,
/// no way to set a time (no MFMT, `MDTM time path` refused).
#[test]
fn inproc_libunftp() {
    let server = InProcServer::start();
    let info = server.info();
    let expect = Expect {
        mfmt: false,
        sets_mtime: false,
        ..EVERYTHING
    };
    core_suite(&info, || Mount::start(&info, &[]), expect);
}

/// pyftpdlib's TLS_FTPHandler: MLSD, MFMT, SITE CHMOD; data connections
/// need not resume the control session.
#[test]
fn pyftpdlib_tls() {
    let server = ScriptServer::start("pyftpdlib-test-server", &[]);
    explicit(&server, EVERYTHING);
}

/// Pure-FTPd 1.0.50 with --tls=2: MLSD, MFMT, SITE CHMOD; stores a name
/// ending in a space with an underscore instead.
#[test]
fn pure_ftpd_tls() {
    let server = ScriptServer::start("pure-ftpd-test-server", &[]);
    let expect = Expect {
        trailing_spaces: false,
        ..EVERYTHING
    };
    explicit(&server, expect);
}

/// ProFTPD with mod_digest (`LoadModule mod_digest.c`, `DigestEngine on`):
/// an upload of 1 MiB or more is checked by digest as well as by size, a
/// small one by size only, and `--verify none` asks neither. Counted in the
/// server's own protocol log.
#[test]
fn proftpd_with_mod_digest_checks_big_uploads_by_digest() {
    let server = ScriptServer::start("proftpd-test-server", &["--digest"]);
    let scratch = Scratch::new("digest");
    let small = data::bytes(10_000, 1);
    let big = data::bytes(3 * 1024 * 1024, 2);
    std::fs::write(scratch.path("small.bin"), &small).unwrap();
    std::fs::write(scratch.path("big.bin"), &big).unwrap();
    let digests = || commands(&server, &["HASH", "XSHA256", "XSHA1", "XCRC", "XMD5"]);
    let sizes = || commands(&server, &["SIZE"]);

    let mount = Mount::start(&server.info, &[]);
    ok(
        "cp",
        &[&scratch.str("small.bin"), &mount.path_str("small.bin")],
        60,
    );
    // ProFTPD answers the SIZE sent with the end of an upload's bytes
    // during the transfer when it polls its control connection before the
    // transfer ends (a matter of timing): then it is not taken, asked
    // again after the 226, and no longer sent that way on this mount.
    let small_sizes = sizes();
    assert_eq!(digests(), 0, "the small file: no digest");
    assert!((1..=2).contains(&small_sizes), "the small file: its size");
    ok(
        "cp",
        &[&scratch.str("big.bin"), &mount.path_str("big.bin")],
        60,
    );
    let big_sizes = sizes();
    assert_eq!(digests(), 1, "the big file: its digest");
    assert!(
        (small_sizes + 1..=small_sizes + 2).contains(&big_sizes),
        "the big file: its size"
    );
    assert!(
        mount.log_text().contains("matches what was sent"),
        "{}",
        mount.log_text()
    );
    drop(mount);

    let mount = Mount::start(&server.info, &["--verify", "none"]);
    ok(
        "cp",
        &[&scratch.str("big.bin"), &mount.path_str("again.bin")],
        60,
    );
    assert_eq!(
        (digests(), sizes()),
        (1, big_sizes),
        "--verify none asks nothing"
    );
    drop(mount);
    for (name, body) in [
        ("small.bin", &small),
        ("big.bin", &big),
        ("again.bin", &big),
    ] {
        let stored = std::fs::read(server.info.root.join(name)).unwrap();
        assert_eq!(data::sha256(&stored), data::sha256(body), "{name}");
    }
}

/// A large file read in order through a ProFTPD mount: the extra streams'
/// segments go out as `RANG` + `RETR` (ProFTPD's FEAT lists `RANG STREAM`),
/// and the bytes are the file's, whichever segments the server ended itself
/// and which it ran on past (see `store_primitives`).
#[test]
fn proftpd_segments_are_ranges() {
    let server = ScriptServer::start("proftpd-test-server", &[]);
    let body = data::bytes(40 * 1024 * 1024 + 12_345, 3);
    std::fs::write(server.info.root.join("big.bin"), &body).unwrap();
    let mount = Mount::start(&server.info, &[]);
    let read = std::process::Command::new("timeout")
        .args(["120", "cat", &mount.path_str("big.bin")])
        .output()
        .expect("cat");
    assert!(read.status.success(), "cat: {:?}", read.status);
    assert!(read.stdout == body, "the file's bytes through the mount");
    // Transfers that ended with 226 rather than ABOR's 426: the one that
    // reads to the end of the file, and the ranges ProFTPD ended itself.
    let log = server.info.log_text();
    let ranges = commands(&server, &["RANG"]);
    let ended_by_server = log
        .lines()
        .filter(|l| l.starts_with("RETR big.bin -> 226"))
        .count();
    assert!(
        ranges >= 1 && ended_by_server >= 2,
        "segments as ranges: {ranges}, transfers the server ended: {ended_by_server}; log:\n{log}"
    );
}

/// Lines of the server's protocol log (`COMMAND ARGS -> CODE`) whose
/// command is one of `names`.
fn commands(server: &ScriptServer, names: &[&str]) -> usize {
    server
        .info
        .log_text()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|c| names.iter().any(|n| c.eq_ignore_ascii_case(n)))
        })
        .count()
}
