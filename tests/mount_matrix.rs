//! The server matrix (issue 5): the core mount suite against each FTPS
//! server people run, in its default secure configuration, each started by
//! its script in `scripts/`. A server that is not installed fails its test
//! with the package to install; none is skipped. What each server cannot do
//! is stated in its `Expect` and checked to degrade gracefully; README.md's
//! "Servers" table says the same.
mod common;
#[path = "support/inproc.rs"]
mod inproc;

use common::mount::Mount;
use common::mount_suite::{core_suite, Expect};
use common::script_server::ScriptServer;
use common::vsftpd::Vsftpd;
use inproc::InProcServer;

/// Debian's vsftpd 3.0.3: no MFMT, but `MDTM time path`; SITE CHMOD; LIST
/// (no MLSD) with `-a` for dot files.
const VSFTPD: Expect = Expect {
    sets_mtime: true,
    chmod: true,
    dot_files: true,
};

/// ProFTPD 1.3.8 with mod_tls: MLSD, MFMT, SITE CHMOD.
const PROFTPD: Expect = Expect {
    sets_mtime: true,
    chmod: true,
    dot_files: true,
};

/// The core suite on explicit-TLS mounts of `server`.
fn explicit(server: &ScriptServer, expect: Expect) {
    core_suite(
        &server.info.root,
        || Mount::start(&server.info, &[]),
        expect,
    );
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
    let root = &server.info.root;
    core_suite(root, || Mount::start_implicit(&server.info, &[]), VSFTPD);
}

#[test]
fn proftpd_session_reuse_required() {
    let server = ScriptServer::start("proftpd-test-server", &[]);
    assert_eq!(server.env["FTPS_SESSION_REUSE_REQUIRED"], "yes");
    explicit(&server, PROFTPD);
}

#[test]
fn proftpd_no_session_reuse_required() {
    let server = ScriptServer::start("proftpd-test-server", &["--no-session-reuse-required"]);
    assert_eq!(server.env["FTPS_SESSION_REUSE_REQUIRED"], "no");
    explicit(&server, PROFTPD);
}

/// The in-process libunftp server that `cargo test` runs everywhere: MLSD,
/// SITE CHMOD, no way to set a time.
#[test]
fn inproc_libunftp() {
    let server = InProcServer::start();
    let info = server.info();
    let expect = Expect {
        sets_mtime: false,
        chmod: true,
        dot_files: true,
    };
    core_suite(&info.root, || Mount::start(&info, &[]), expect);
}
