//! What the `ftpsfs` command does when it starts, run as a user runs it (in
//! the background, the default), against vsftpd: it returns 0 once the mount
//! is live, and when it cannot connect, log in, verify the certificate or
//! mount, it exits non-zero with one line that says why, and leaves neither
//! a mount nor a process behind.
mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::mount::{is_mounted, ok, run, wait_until};
use common::scratch::Scratch;
use common::socks::SocksServer;
use common::vsftpd::Vsftpd;
use common::ServerInfo;

/// A mountpoint and a cache directory of the test's own.
struct Place {
    scratch: Scratch,
}

impl Place {
    fn new(name: &str) -> Place {
        let scratch = Scratch::new(name);
        std::fs::create_dir_all(scratch.0.join("mnt")).unwrap();
        Place { scratch }
    }

    fn mountpoint(&self) -> PathBuf {
        self.scratch.0.join("mnt")
    }

    fn cache(&self) -> PathBuf {
        self.scratch.0.join("cache")
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if is_mounted(&self.mountpoint()) {
            let _ = run(
                "fusermount3",
                &["-uz", &self.mountpoint().to_string_lossy()],
                30,
            );
        }
    }
}

fn url(info: &ServerInfo, port: u16) -> String {
    format!("ftpes://{}@{}:{port}/", info.user, info.url_host())
}

/// Runs `ftpsfs` without `-f`, as a user does, with a deadline.
fn ftpsfs(args: &[&str], password: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new("timeout")
        .args(["-k", "5", "90"])
        .arg(env!("CARGO_BIN_EXE_ftpsfs"))
        .args(["--connect-timeout", "5", "--timeout", "10"])
        .args(args)
        .env("FTPSFS_PASSWORD", password)
        .output()
        .expect("run ftpsfs");
    assert_ne!(out.status.code(), Some(124), "ftpsfs did not return");
    (out, started.elapsed())
}

/// The PIDs of the processes whose command line names `mountpoint`
/// (ftpsfs, and a fusermount3 or guard it may have started).
fn pids_naming(mountpoint: &Path) -> Vec<String> {
    // Not through `run`: its `timeout` process would name the mountpoint too.
    let out = Command::new("pgrep")
        .arg("-f")
        .arg(mountpoint)
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The processes whose command line names `mountpoint`, as their executables.
fn processes_naming(mountpoint: &Path) -> Vec<PathBuf> {
    pids_naming(mountpoint)
        .iter()
        .filter_map(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
        .collect()
}

/// How many ftpsfs daemons serve `mountpoint` (not counting the guard
/// each forks: the same executable, named `ftpsfs-guard`).
fn serving(mountpoint: &Path) -> usize {
    let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_ftpsfs")).unwrap();
    pids_naming(mountpoint)
        .iter()
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            exe.is_ok_and(|exe| exe == binary) && comm.trim() == "ftpsfs"
        })
        .count()
}

/// The command failed with one line on stderr that contains each of
/// `reasons` (in lower case), and left nothing behind.
fn failed_with(out: &Output, took: Duration, reasons: &[&str], place: &Place, password: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("after {took:?}, exit {:?}: {stderr}", out.status.code());
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("ftpsfs: "), "{stderr}");
    for reason in reasons {
        assert!(
            lines[0].to_lowercase().contains(reason),
            "names {reason:?}: {stderr}"
        );
    }
    assert!(!stderr.contains(password), "the password is not shown");
    assert!(!is_mounted(&place.mountpoint()), "no mount left behind");
    assert_eq!(
        processes_naming(&place.mountpoint()),
        Vec::<PathBuf>::new(),
        "no process left behind"
    );
    assert_eq!(
        std::fs::read_dir(place.mountpoint()).unwrap().count(),
        0,
        "the mountpoint is a plain empty directory again"
    );
}

fn common_args(place: &Place) -> Vec<String> {
    vec![
        "--cache-dir".into(),
        place.cache().to_string_lossy().into_owned(),
    ]
}

fn with_ca(info: &ServerInfo, place: &Place) -> Vec<String> {
    let mut args = common_args(place);
    args.push("--ca-file".into());
    args.push(info.ca_file.to_string_lossy().into_owned());
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn returns_once_the_mount_is_live_and_serves_in_the_background() {
    let server = Vsftpd::start(&[]);
    let place = Place::new("start-ok");
    std::fs::write(server.info.root.join("there.txt"), b"hello").unwrap();
    let mut args = with_ca(&server.info, &place);
    args.push(url(&server.info, server.info.port));
    args.push(place.mountpoint().to_string_lossy().into_owned());
    let (out, took) = ftpsfs(&strs(&args), &server.info.password);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("mounted in the background in {took:?}");
    // No waiting: the command's return is the promise that the mount is live.
    assert!(is_mounted(&place.mountpoint()));
    assert_eq!(
        std::fs::read(place.mountpoint().join("there.txt")).unwrap(),
        b"hello"
    );
    std::fs::write(place.mountpoint().join("new.txt"), b"written").unwrap();
    assert_eq!(serving(&place.mountpoint()), 1, "one daemon serves it");
    ok(
        "fusermount3",
        &["-u", &place.mountpoint().to_string_lossy()],
        30,
    );
    assert!(
        wait_until(30, || serving(&place.mountpoint()) == 0),
        "the daemon exits after unmounting"
    );
    assert_eq!(
        std::fs::read(server.info.root.join("new.txt")).unwrap(),
        b"written"
    );
    assert!(
        place.cache().join("ftpsfs.log").is_file(),
        "in the background the log goes beside the spool"
    );
}

#[test]
fn a_server_that_refuses_connections_is_one_line_and_no_mount() {
    let server = Vsftpd::start(&[]);
    let place = Place::new("start-refused");
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut args = with_ca(&server.info, &place);
    // Timeouts far longer than the answer takes, so that waiting for one
    // cannot pass for "at once" on a loaded machine.
    args.extend(["--connect-timeout", "30", "--timeout", "30"].map(String::from));
    args.push(url(&server.info, port));
    args.push(place.mountpoint().to_string_lossy().into_owned());
    let (out, took) = ftpsfs(&strs(&args), &server.info.password);
    failed_with(&out, took, &["connect"], &place, &server.info.password);
    // About 1.4 s (three quick retries), not one timeout (30 s).
    assert!(took < Duration::from_secs(15), "refused at once: {took:?}");
}

#[test]
fn a_wrong_password_is_one_line_and_no_mount() {
    let server = Vsftpd::start(&[]);
    let place = Place::new("start-password");
    let mut args = with_ca(&server.info, &place);
    args.push(url(&server.info, server.info.port));
    args.push(place.mountpoint().to_string_lossy().into_owned());
    let wrong = "not-the-password-4711";
    let (out, took) = ftpsfs(&strs(&args), wrong);
    failed_with(&out, took, &["login", "530"], &place, wrong);
    let passwords = server
        .commands()
        .iter()
        .filter(|c| c.starts_with("PASS"))
        .count();
    assert_eq!(
        passwords, 1,
        "a wrong password is sent once, not per session"
    );
}

#[test]
fn an_unverifiable_certificate_is_one_line_and_no_mount() {
    let server = Vsftpd::start(&[]);
    let place = Place::new("start-cert");
    // The system's roots, not the test CA: the server's certificate is
    // issued by an authority nobody trusts here.
    let mut args = common_args(&place);
    args.push(url(&server.info, server.info.port));
    args.push(place.mountpoint().to_string_lossy().into_owned());
    let (out, took) = ftpsfs(&strs(&args), &server.info.password);
    failed_with(&out, took, &["certificate"], &place, &server.info.password);
    assert!(
        !server.commands().iter().any(|c| c.starts_with("USER")),
        "nothing is sent before the certificate is verified"
    );
}

#[test]
fn a_mountpoint_that_is_no_directory_is_one_line_and_no_mount() {
    let server = Vsftpd::start(&[]);
    let place = Place::new("start-mountpoint");
    let missing = place.mountpoint().join("missing");
    let mut args = with_ca(&server.info, &place);
    args.push(url(&server.info, server.info.port));
    args.push(missing.to_string_lossy().into_owned());
    let (out, took) = ftpsfs(&strs(&args), &server.info.password);
    failed_with(
        &out,
        took,
        &["cannot mount", "no such file"],
        &place,
        &server.info.password,
    );
    assert!(!missing.exists(), "not created behind the user's back");
}

/// `mount` and `/etc/fstab` run ftpsfs through mount.fuse3, which passes
/// every option with `-o`. The source `PROGRAM#URL` of type `fuse` names the
/// program by its path; `-t fuse.ftpsfs` differs only in finding `ftpsfs` on
/// the system PATH, which a test cannot set without installing it.
#[test]
fn mount_and_an_fstab_line_mount_it_with_o_options() {
    let server = Vsftpd::start(&[]);
    let place = Place::new("start-fstab");
    let password_file = place.scratch.path("password");
    std::fs::write(&password_file, format!("{}\n", server.info.password)).unwrap();
    std::fs::set_permissions(&password_file, PermissionsExt::from_mode(0o600)).unwrap();
    let source = format!(
        "{}#{}",
        env!("CARGO_BIN_EXE_ftpsfs"),
        url(&server.info, server.info.port)
    );
    let options = format!(
        "_netdev,noauto,password_file={},ca_file={},cache_dir={},sessions=2,ro",
        password_file.display(),
        server.info.ca_file.display(),
        place.cache().display()
    );
    let mountpoint = place.mountpoint().to_string_lossy().into_owned();
    std::fs::write(server.info.root.join("f.txt"), b"via mount").unwrap();

    ok(
        "mount",
        &["-t", "fuse", &source, &mountpoint, "-o", &options],
        60,
    );
    assert!(
        is_mounted(&place.mountpoint()),
        "mounted when mount returns"
    );
    assert_eq!(
        std::fs::read(place.mountpoint().join("f.txt")).unwrap(),
        b"via mount"
    );
    let refused = std::fs::write(place.mountpoint().join("g.txt"), b"x").expect_err("ro");
    assert_eq!(
        refused.raw_os_error(),
        Some(libc::EROFS),
        "-o ro is honoured"
    );
    ok("umount", &[&mountpoint], 30);

    let fstab = place.scratch.path("fstab");
    let options = options.replace(",ro", "");
    std::fs::write(
        &fstab,
        format!("{source} {mountpoint} fuse {options} 0 0\n"),
    )
    .unwrap();
    ok("mount", &["-T", &fstab.to_string_lossy(), &mountpoint], 60);
    std::fs::write(place.mountpoint().join("g.txt"), b"via fstab").unwrap();
    ok("umount", &[&mountpoint], 30);
    assert_eq!(
        std::fs::read(server.info.root.join("g.txt")).unwrap(),
        b"via fstab"
    );
    assert!(
        wait_until(30, || serving(&place.mountpoint()) == 0),
        "the daemon exits after unmounting"
    );
}

// Client certificates (mutual TLS), against vsftpd with ssl_request_cert,
// require_cert, validate_cert and a client CA (`--require-client-cert`).

fn mtls_server() -> Vsftpd {
    Vsftpd::start(&["--require-client-cert"])
}

/// A file the script made, by its `FTPS_*` name.
fn made(server: &Vsftpd, key: &str) -> String {
    server
        .env
        .get(key)
        .unwrap_or_else(|| panic!("the script printed no {key}"))
        .clone()
}

fn mtls_args(server: &Vsftpd, place: &Place, extra: &[&str]) -> Vec<String> {
    let mut args = with_ca(&server.info, place);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(url(&server.info, server.info.port));
    args.push(place.mountpoint().to_string_lossy().into_owned());
    args
}

#[test]
fn a_server_that_requires_a_client_certificate_refuses_none_with_one_line() {
    let server = mtls_server();
    for (tls, reasons) in [
        (
            "1.3",
            &[
                "the server requires a client certificate",
                "certificate required",
                "--client-cert",
            ][..],
        ),
        (
            "1.2",
            &["handshake failure", "client certificate", "--client-cert"][..],
        ),
    ] {
        let place = Place::new("start-mtls-none");
        let args = mtls_args(&server, &place, &["--tls-max", tls]);
        let (out, took) = ftpsfs(&strs(&args), &server.info.password);
        failed_with(&out, took, reasons, &place, &server.info.password);
        assert!(took < Duration::from_secs(15), "not retried: {took:?}");
    }
    assert_eq!(server.logins(), 0);
}

#[test]
fn a_client_certificate_of_another_ca_is_refused_with_one_line() {
    let server = mtls_server();
    let cert = made(&server, "FTPS_FOREIGN_CLIENT_CERT");
    let key = made(&server, "FTPS_FOREIGN_CLIENT_KEY");
    for tls in ["1.3", "1.2"] {
        let place = Place::new("start-mtls-foreign");
        let args = mtls_args(
            &server,
            &place,
            &[
                "--tls-max",
                tls,
                "--client-cert",
                &cert,
                "--client-key",
                &key,
            ],
        );
        let (out, took) = ftpsfs(&strs(&args), &server.info.password);
        failed_with(
            &out,
            took,
            &[
                "the server refused the client certificate",
                "unknown ca",
                "check --client-cert / the server's ca",
            ],
            &place,
            &server.info.password,
        );
    }
    assert_eq!(server.logins(), 0);
}

/// Refused before anything connects: exit 2 (a bad command line), one line
/// naming the key file.
fn refused_at_start(server: &Vsftpd, extra: &[&str], reasons: &[&str]) {
    let place = Place::new("start-mtls-key");
    let args = mtls_args(server, &place, extra);
    let (out, _) = ftpsfs(&strs(&args), &server.info.password);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("exit {:?}: {stderr}", out.status.code());
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    for reason in reasons {
        assert!(lines[0].contains(reason), "names {reason:?}: {stderr}");
    }
    assert!(!stderr.contains("PRIVATE KEY"), "no key: {stderr}");
    assert!(!is_mounted(&place.mountpoint()));
    assert!(
        !server.info.log_text().contains("CONNECT"),
        "nothing connected to the server"
    );
}

#[test]
fn a_client_key_that_does_not_match_or_is_encrypted_is_refused_at_start() {
    let server = mtls_server();
    let cert = made(&server, "FTPS_CLIENT_CERT");
    let foreign_key = made(&server, "FTPS_FOREIGN_CLIENT_KEY");
    refused_at_start(
        &server,
        &["--client-cert", &cert, "--client-key", &foreign_key],
        &[&format!(
            "the client key in {foreign_key} does not match the certificate in {cert}"
        )],
    );
    let scratch = Scratch::new("mtls-encrypted");
    let encrypted = scratch.str("encrypted.key");
    ok(
        "openssl",
        &[
            "pkey",
            "-in",
            &made(&server, "FTPS_CLIENT_KEY"),
            "-aes256",
            "-passout",
            "pass:not-for-ftpsfs",
            "-out",
            &encrypted,
        ],
        30,
    );
    refused_at_start(
        &server,
        &["-o", &format!("client_cert={cert},client_key={encrypted}")],
        &[
            &format!("the client key in {encrypted} is encrypted"),
            "openssl pkey -in",
        ],
    );
}

#[test]
fn a_client_key_others_can_read_is_a_warning_and_the_mount_works() {
    let server = mtls_server();
    std::fs::write(server.info.root.join("there.txt"), b"over mutual TLS").unwrap();
    let place = Place::new("start-mtls-mode");
    let key = place.scratch.path("client.key");
    std::fs::copy(made(&server, "FTPS_CLIENT_KEY"), &key).unwrap();
    std::fs::set_permissions(&key, PermissionsExt::from_mode(0o644)).unwrap();
    let args = mtls_args(
        &server,
        &place,
        &[
            "--client-cert",
            &made(&server, "FTPS_CLIENT_CERT"),
            "--client-key",
            &key.to_string_lossy(),
        ],
    );
    let (out, _) = ftpsfs(&strs(&args), &server.info.password);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "ftpsfs: warning: the client key file {} is accessible by others (mode 644); run chmod 600 on it",
            key.display()
        )
    );
    assert_eq!(
        std::fs::read(place.mountpoint().join("there.txt")).unwrap(),
        b"over mutual TLS"
    );
    ok(
        "fusermount3",
        &["-u", &place.mountpoint().to_string_lossy()],
        30,
    );
    assert!(wait_until(30, || serving(&place.mountpoint()) == 0));
}

// SOCKS5 proxies (the mounts that work are in mount_proxy.rs).

/// Runs ftpsfs through `proxy` (with `extra` options) and requires it to
/// fail at start with one line naming each of `reasons`, without `secret`;
/// no login reaches the server.
fn refused_through_proxy(
    server: &Vsftpd,
    proxy: &str,
    extra: &[&str],
    reasons: &[&str],
    secret: &str,
) {
    let place = Place::new("start-proxy");
    let mut args = with_ca(&server.info, &place);
    args.extend(["--proxy", proxy].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(url(&server.info, server.info.port));
    args.push(place.mountpoint().to_string_lossy().into_owned());
    let (out, took) = ftpsfs(&strs(&args), &server.info.password);
    failed_with(&out, took, reasons, &place, secret);
    assert!(took < Duration::from_secs(15), "not retried: {took:?}");
    assert_eq!(server.logins(), 0);
}

#[test]
fn a_wrong_proxy_password_is_one_line_and_no_mount() {
    let server = Vsftpd::start(&[]);
    let proxy = SocksServer::microsocks(Some(("alice", "right-proxy-pw")));
    let scratch = Scratch::new("start-proxy-pw");
    let file = scratch.path("pw");
    std::fs::write(&file, "wrong-proxy-pw\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused_through_proxy(
        &server,
        &proxy.url("socks5", Some("alice")),
        &["--proxy-password-file", &file.to_string_lossy()],
        &["socks5 proxy", "refused the user name or password"],
        "wrong-proxy-pw",
    );
    // And with no user name at all, the line says where to put one.
    refused_through_proxy(
        &server,
        &proxy.url("socks5", None),
        &[],
        &["requires a user name and password", "ftpsfs_proxy_password"],
        &server.info.password,
    );
}

#[test]
fn a_proxy_whose_rules_refuse_is_one_line_and_no_mount() {
    let server = Vsftpd::start(&[]);
    let dante = SocksServer::dante("socks block { from: 0.0.0.0/0 to: 0.0.0.0/0 }");
    refused_through_proxy(
        &server,
        &dante.url("socks5", None),
        &[],
        &["socks5 proxy", "not allowed by the proxy's rules"],
        &server.info.password,
    );
}

#[test]
fn a_server_that_is_no_socks5_proxy_is_one_line_and_no_mount() {
    let server = Vsftpd::start(&[]);
    // The FTP server itself, given as the proxy: it greets with "220".
    let not_a_proxy = format!("socks5://127.0.0.1:{}", server.info.port);
    let password = &server.info.password;
    let reasons = ["not a socks5 proxy", "220"];
    refused_through_proxy(&server, &not_a_proxy, &[], &reasons, password);
    // Nothing listening: the line names the proxy.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    refused_through_proxy(
        &server,
        &format!("socks5://127.0.0.1:{port}"),
        &[],
        &[&format!("socks5 proxy 127.0.0.1:{port}")],
        password,
    );
}
