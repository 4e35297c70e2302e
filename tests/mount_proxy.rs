//! Mounts through real SOCKS5 servers from Debian on loopback: microsocks
//! (with and without a user name and password) and dante (BIND for active
//! mode). The proxies connect to vsftpd from 127.0.0.3, so the server's log
//! tells that the control and every data connection came through the proxy
//! (vsftpd refuses a data connection from another address than its control
//! connection's). Start-up failures (wrong password, a refusing proxy, not
//! a proxy) are in mount_start.rs.
mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::data;
use common::mount::{ok, run, Mount};
use common::scratch::Scratch;
use common::socks::{SocksServer, OUTGOING_IP};
use common::vsftpd::Vsftpd;

const MIB: usize = 1024 * 1024;

/// A file holding the proxy password, private as a password file must be.
fn password_file(scratch: &Scratch, password: &str) -> String {
    let path = scratch.path("proxy-password");
    std::fs::write(&path, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    scratch.str("proxy-password")
}

/// What vsftpd saw connect: every client address in its log.
fn clients(server: &Vsftpd) -> Vec<String> {
    const MARK: &str = "Client \"";
    let log = server.info.log_text();
    let mut seen: Vec<String> = log
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(MARK)? + MARK.len()..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

/// Lists, reads and writes through `mount`; the bytes on the server are right.
fn round_trip(server: &Vsftpd, mount: &Mount, name: &str) {
    let body = data::bytes(3 * MIB + 17, 7);
    std::fs::write(server.info.root.join(format!("{name}.in")), &body).unwrap();
    let listed = ok("ls", &[&mount.path_str("")], 30);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&format!("{name}.in")),
        "{listed:?}"
    );
    let read = std::fs::read(mount.path(&format!("{name}.in"))).unwrap();
    assert_eq!(data::sha256(&read), data::sha256(&body));
    // cp, not fs::write: the upload's verdict comes from close(2), which
    // dropping a File ignores.
    let local = Scratch::new("proxy-round-trip");
    std::fs::write(local.path("out"), &body).unwrap();
    ok(
        "cp",
        &[&local.str("out"), &mount.path_str(&format!("{name}.out"))],
        60,
    );
    let stored = std::fs::read(server.info.root.join(format!("{name}.out")))
        .unwrap_or_else(|e| panic!("{e}: {}", mount.log_text()));
    assert_eq!(data::sha256(&stored), data::sha256(&body));
}

#[test]
fn mounts_through_microsocks_without_and_with_a_password() {
    let server = Vsftpd::start(&[]);
    let scratch = Scratch::new("proxy-auth");
    let file = password_file(&scratch, "proxy-secret");
    let open = SocksServer::microsocks(None);
    let guarded = SocksServer::microsocks(Some(("alice", "proxy-secret")));
    let cases = [
        (open.url("socks5", None), None),
        (guarded.url("socks5", Some("alice")), Some(file.as_str())),
        // The proxy resolves the name (the certificate names localhost too).
        (guarded.url("socks5h", Some("alice")), Some(file.as_str())),
    ];
    for (i, (proxy, password_file)) in cases.iter().enumerate() {
        let mut extra = vec!["--proxy", proxy.as_str()];
        if let Some(file) = password_file {
            extra.extend(["--proxy-password-file", file]);
        }
        let mount = if proxy.starts_with("socks5h") {
            let url = format!(
                "ftpes://{}@localhost:{}/",
                server.info.user, server.info.port
            );
            Mount::start_url(&server.info, &url, &extra)
        } else {
            Mount::start(&server.info, &extra)
        };
        round_trip(&server, &mount, &format!("case{i}"));
        let log = mount.log_text();
        assert!(
            !log.contains("proxy-secret"),
            "the proxy password is not logged"
        );
    }
    assert_eq!(
        clients(&server),
        vec![OUTGOING_IP.to_string()],
        "every connection came through a proxy"
    );
}

#[test]
fn active_mode_goes_through_dante_bind() {
    let server = Vsftpd::start(&[]);
    let dante = SocksServer::dante(
        "socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 command: bind connect bindreply }",
    );
    let mount = Mount::start(
        &server.info,
        &["--active", "--proxy", &dante.url("socks5", None)],
    );
    round_trip(&server, &mount, "active");
    let commands = server.commands();
    assert!(
        commands.iter().any(|c| c.starts_with("EPRT |1|127.0.0.3|")),
        "the server was sent to the proxy's BIND port: {commands:?}"
    );
    assert!(!commands
        .iter()
        .any(|c| c.starts_with("EPSV") || c.starts_with("PASV")));
    assert_eq!(clients(&server), vec![OUTGOING_IP.to_string()]);
}

#[test]
fn active_mode_through_a_proxy_without_bind_names_passive_mode() {
    let server = Vsftpd::start(&[]);
    let microsocks = SocksServer::microsocks(None);
    let mount = Mount::start(
        &server.info,
        &["--active", "--proxy", &microsocks.url("socks5", None)],
    );
    let out = run("ls", &[&mount.path_str("")], 60);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Input/output error"),
        "{stderr}: {}",
        mount.log_text()
    );
    let log = mount.log_text();
    assert!(
        log.contains("does not offer BIND") && log.contains("use passive mode"),
        "{log}"
    );
}

/// Reads `path` in 1 MiB pieces on its own thread: after the first piece it
/// says so and waits for a go; the end result comes on the returned channel.
fn paused_reader(
    path: std::path::PathBuf,
) -> (
    mpsc::Receiver<()>,
    mpsc::Sender<()>,
    mpsc::Receiver<std::io::Result<Vec<u8>>>,
) {
    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let result = (|| {
            let mut file = std::fs::File::open(&path)?;
            let mut all = vec![0u8; MIB];
            file.read_exact(&mut all)?;
            let _ = started_tx.send(());
            let _ = go_rx.recv();
            file.read_to_end(&mut all)?;
            Ok(all)
        })();
        let _ = done_tx.send(result);
    });
    (started, go, done)
}

#[test]
fn a_proxy_killed_during_a_read_fails_it_and_the_mount_recovers() {
    let server = Vsftpd::start(&[]);
    let mut proxy = SocksServer::microsocks(None);
    let body = data::bytes(64 * MIB, 11);
    std::fs::write(server.info.root.join("big.bin"), &body).unwrap();
    let mount = Mount::start(
        &server.info,
        &[
            "--proxy",
            &proxy.url("socks5", None),
            "--timeout",
            "5",
            "--connect-timeout",
            "3",
            "--data-timeout",
            "5",
        ],
    );
    let (started, go, done) = paused_reader(mount.path("big.bin"));
    started
        .recv_timeout(Duration::from_secs(60))
        .expect("the first MiB was read");
    proxy.kill();
    let killed = Instant::now();
    go.send(()).unwrap();
    let result = done
        .recv_timeout(Duration::from_secs(120))
        .expect("the read ended instead of hanging");
    let took = killed.elapsed();
    eprintln!(
        "the read ended {took:?} after the proxy died: {:?}",
        result.as_ref().map(Vec::len)
    );
    let err = result.expect_err("64 MiB cannot all be buffered before the proxy died");
    // A lost connection that does not come back is ETIMEDOUT, as without a
    // proxy (doc/SEMANTICS.md, "Errors").
    assert_eq!(err.raw_os_error(), Some(libc::ETIMEDOUT), "{err}");
    assert!(
        mount.log_text().contains("SOCKS5 proxy"),
        "the log names the proxy"
    );

    proxy.restart();
    let read = std::fs::read(mount.path("big.bin")).expect("works again with the proxy back");
    assert_eq!(data::sha256(&read), data::sha256(&body));
}
