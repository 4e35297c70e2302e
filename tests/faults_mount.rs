//! The mount through a fault-injecting proxy in front of vsftpd: resets,
//! stalls, an unreachable server, idle drops, a session cap, and load. Each
//! test asserts what a user sees (bytes and checksums, the tool's error and
//! how long it took, what the server holds) and that the mount works again
//! afterwards without remounting.
mod common;

use std::ops::Deref;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::data;
use common::mount::{ok, run, wait_until, Mount};
use common::proxied::Proxied;
use common::proxy::Kind;
use common::script_server::ScriptServer;

/// Timeouts short enough that no scenario waits long (seconds).
const REPLY_TIMEOUT: u64 = 5;
const CONNECT_TIMEOUT: u64 = 3;
const DATA_TIMEOUT: u64 = 5;
/// How long a cut upload is resumed where a test waits for it to fail.
const RETRY_TIME: u64 = 5;
/// What a bound on how long a failure took allows beyond the timeouts it
/// adds up: enough that a loaded 2-core machine cannot use it up, while a
/// failure that hangs (the tools run under a 120 s deadline) still fails.
const MARGIN: u64 = 10;

const MIB: usize = 1024 * 1024;

/// vsftpd behind the fault proxy, mounted with short timeouts.
struct Rig(Proxied);

impl Deref for Rig {
    type Target = Proxied;
    fn deref(&self) -> &Proxied {
        &self.0
    }
}

impl Rig {
    fn start(server_options: &[&str]) -> Rig {
        Rig(Proxied::start(server_options))
    }

    /// Mounts through the proxy with short timeouts and `extra` options.
    fn mount(&self, extra: &[&str]) -> Mount {
        let timeouts = [
            "--timeout".to_string(),
            REPLY_TIMEOUT.to_string(),
            "--connect-timeout".to_string(),
            CONNECT_TIMEOUT.to_string(),
            "--data-timeout".to_string(),
            DATA_TIMEOUT.to_string(),
        ];
        let mut args: Vec<&str> = timeouts.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        self.0.mount(&args)
    }

    fn root(&self) -> &Path {
        &self.info.root
    }

    /// Puts a file on the server (as its FTP user, so the mount may replace it).
    fn put(&self, name: &str, body: &[u8]) {
        let path = self.root().join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
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

/// A rig with one file on the server (`size` bytes from `seed`), mounted
/// with `extra` and listed once, so that the sessions are logged in.
fn with_file(name: &str, size: usize, seed: u64, extra: &[&str]) -> (Rig, Mount, Vec<u8>) {
    let rig = Rig::start(&[]);
    let body = data::bytes(size, seed);
    rig.put(name, &body);
    let mount = rig.mount(extra);
    ok("ls", &[&mount.path_str("")], 30);
    (rig, mount, body)
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
    // One stream, so that the reset cuts the download in its middle (with
    // segments it may cut one being ended, which needs no resume).
    let (rig, mount, body) = with_file("big.bin", 50 * MIB, 1, &["--read-streams", "0"]);
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

/// The RESTs past the start of a file in vsftpd's log: the segments of a
/// segmented read (each offset once, or a segment was fetched again from
/// its start).
fn segment_offsets(rig: &Rig) -> Vec<u64> {
    rig.server
        .commands()
        .iter()
        .filter_map(|c| c.strip_prefix("REST ")?.parse().ok())
        .filter(|&offset| offset > 0)
        .collect()
}

#[test]
fn a_segmented_read_whose_segments_are_reset_gives_the_right_bytes() {
    // Segments are 8 MiB: a reset after 3 MiB of a data connection's
    // traffic cuts whichever transfer (first stream or segment) gets there.
    let (rig, mount, body) = with_file("big.bin", 64 * MIB, 3, &[]);
    rig.proxy.resets_after(
        Kind::Data,
        &[3 * MIB as u64, 3 * MIB as u64, 3 * MIB as u64],
    );
    let digest = sha256sum(&mount.path_str("big.bin"), 120);
    let digest = digest.unwrap_or_else(|out| panic!("{}\n{}", stderr(&out), mount.log_text()));
    assert_eq!(
        digest,
        data::sha256(&body),
        "right bytes in the right order"
    );
    assert!(
        rig.proxy.reset_fired(Kind::Data),
        "all three resets happened"
    );
    assert!(
        !segment_offsets(&rig).is_empty(),
        "the read used no segments: {:?}",
        rig.server.commands()
    );
    works_again(&rig, &mount, "after.bin");
}

#[test]
fn a_segmented_read_at_the_servers_session_cap_leaves_a_session_for_listings() {
    // vsftpd takes two sessions per address; the mount asks for four.
    let rig = Rig::start(&["--max-per-ip", "2"]);
    let body = data::bytes(64 * MIB, 4);
    rig.put("big.bin", &body);
    rig.put("dir/small", b"small");
    let mount = rig.mount(&["--sessions", "4"]);
    let path = mount.path_str("big.bin");
    let reader = std::thread::spawn(move || sha256sum(&path, 120));
    // Listings and small reads go on beside the read, on the session the
    // segments leave free: each answers (run's deadline), none fails.
    for round in 0..10 {
        ok("ls", &[&mount.path_str("dir")], 30);
        let small = ok("cat", &[&mount.path_str("dir/small")], 30);
        assert_eq!(small.stdout, b"small", "round {round}");
    }
    let digest = reader.join().unwrap();
    let digest = digest.unwrap_or_else(|out| panic!("{}\n{}", stderr(&out), mount.log_text()));
    assert_eq!(digest, data::sha256(&body));
    let log = mount.log_text();
    assert!(
        log.contains("using at most 2 sessions"),
        "the pool never met the cap\n{log}"
    );
    eprintln!(
        "segments read beside the listings: {:?}",
        segment_offsets(&rig)
    );
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
fn stalled_data_connection_fails_the_read_after_the_data_timeout() {
    let (rig, mount, body) = with_file("big.bin", 50 * MIB, 2, &[]);
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
    // The data timeout, one resume whose TLS handshake times out, and the
    // kernel's own retry of the page the program waits for (a new read
    // request, so a new download that times out the same way).
    let limit = Duration::from_secs(DATA_TIMEOUT + 2 * CONNECT_TIMEOUT + MARGIN);
    assert!(
        took < limit,
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

/// What a failed tool printed, for assertion messages.
fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The reset sessions are noticed at once (the reset) and replaced, at no
/// reply timeout: one of 30 s here, so that waiting for it cannot hide in
/// the noise of a loaded machine.
#[test]
fn control_reset_while_idle_is_invisible() {
    let (rig, mount, body) = with_file(
        "f.bin",
        3 * MIB,
        3,
        &["--attr-ttl", "0", "--dir-ttl", "0", "--timeout", "30"],
    );
    let logins = rig.proxy.stats(Kind::Control).accepted;
    let dropped = rig.proxy.reset_all(Kind::Control);
    assert!(dropped >= 1, "the mount's sessions were reset");
    let started = Instant::now();
    let listing = ok("ls", &[&mount.path_str("")], 30);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("f.bin"));
    assert_eq!(
        sha256sum(&mount.path_str("f.bin"), 30).expect("read after the reset"),
        data::sha256(&body)
    );
    let took = started.elapsed();
    eprintln!("ls + read after an idle control reset: {took:?}");
    assert!(
        rig.proxy.stats(Kind::Control).accepted > logins,
        "a new session replaced the reset ones"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    works_again(&rig, &mount, "after.bin");
}

#[test]
fn control_reset_during_a_download_gives_the_bytes_or_eio() {
    let (rig, mount, body) = with_file("big.bin", 200 * MIB, 4, &[]);
    // About 4 s for the whole file, so the reset lands in the middle.
    rig.proxy.set_bandwidth(Kind::Data, Some(50 * MIB as u64));
    let reader = {
        let path = mount.path_str("big.bin");
        std::thread::spawn(move || (sha256sum(&path, 120), Instant::now()))
    };
    assert!(wait_until(30, || rig.proxy.stats(Kind::Data).to_client
        > 60 * MIB as u64));
    let reset_at = Instant::now();
    assert!(rig.proxy.reset_all(Kind::Control) >= 1);
    let (result, ended) = reader.join().unwrap();
    rig.proxy.set_bandwidth(Kind::Data, None);
    let took = ended - reset_at;
    match result {
        Ok(digest) => {
            assert_eq!(digest, data::sha256(&body), "complete and correct");
            eprintln!("download completed {took:?} after the control reset");
        }
        Err(out) => {
            assert_eq!(errno_of(&out), "EIO", "{}", stderr(&out));
            eprintln!("download failed with EIO {took:?} after the control reset");
        }
    }
    let recovery = works_again(&rig, &mount, "after.bin");
    eprintln!("works again within {recovery:?}");
}

/// Refuse: the server's host answers every connect with RST (a stopped
/// server). Hang: it accepts connections and then says nothing. The outage
/// lasts `lasting`; the tools keep trying during it, and each try must end
/// within the timeouts: `ls` and a file read before the outage answer from
/// what the mount cached (offline reading, doc/SEMANTICS.md §2), a file
/// never read and a mkdir fail with ETIMEDOUT or EIO.
fn outage(rig: &Rig, mount: &Mount, how: &str, lasting: Duration) {
    let body = data::bytes(MIB, 5);
    rig.put(&format!("{how}.bin"), &body);
    rig.put(&format!("{how}-read.bin"), &body);
    ok("ls", &[&mount.path_str("")], 30);
    let read_before = ok("cat", &[&mount.path_str(&format!("{how}-read.bin"))], 30);
    assert!(read_before.stdout == body);
    let began = Instant::now();
    for kind in [Kind::Control, Kind::Data] {
        match how {
            "refuse" => rig.proxy.set_refuse(kind, true),
            _ => rig.proxy.set_stall(kind, true),
        }
        rig.proxy.close_all(kind);
    }
    let mut worst = Duration::ZERO;
    let mut tries = 0;
    loop {
        for (tool, args, works) in [
            ("ls", vec![mount.path_str("")], true),
            (
                "cat",
                vec![mount.path_str(&format!("{how}-read.bin"))],
                true,
            ),
            ("cat", vec![mount.path_str(&format!("{how}.bin"))], false),
            ("mkdir", vec![mount.path_str("new-dir")], false),
        ] {
            let started = Instant::now();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run(tool, &args, 120);
            let took = started.elapsed();
            worst = worst.max(took);
            tries += 1;
            if tries <= 4 {
                eprintln!(
                    "{how}: {tool} {args:?} ended after {took:?}: {}",
                    stderr(&out).trim()
                );
            }
            if works {
                assert!(
                    out.status.success(),
                    "{tool} {args:?} answers from the cache during the outage: {}",
                    stderr(&out)
                );
                continue;
            }
            assert!(
                !out.status.success(),
                "{tool} {args:?} cannot work during the outage"
            );
            assert!(
                matches!(errno_of(&out), "ETIMEDOUT" | "EIO"),
                "{tool}: {}",
                stderr(&out)
            );
        }
        if began.elapsed() >= lasting {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "{how}: {tries} operations over {:?} of outage, the slowest ended after {worst:?}",
        began.elapsed()
    );
    let limit = Duration::from_secs(REPLY_TIMEOUT + CONNECT_TIMEOUT + MARGIN);
    assert!(
        worst < limit,
        "{how}: an operation took {worst:?}\n{}",
        mount.log_text()
    );
    assert!(mount.log_text().contains("the server cannot be reached"));
    for kind in [Kind::Control, Kind::Data] {
        rig.proxy.set_refuse(kind, false);
        rig.proxy.set_stall(kind, false);
    }
    let recovery = works_again(rig, mount, &format!("after-{how}.bin"));
    eprintln!("{how}: works again within {recovery:?}");
    assert!(recovery < Duration::from_secs(10), "{recovery:?}");
}

#[test]
fn unreachable_server_fails_operations_in_time_and_the_mount_recovers() {
    let rig = Rig::start(&[]);
    let mount = rig.mount(&["--attr-ttl", "0", "--dir-ttl", "0"]);
    outage(&rig, &mount, "refuse", Duration::from_secs(30));
}

#[test]
fn silent_server_fails_operations_in_time_and_the_mount_recovers() {
    let rig = Rig::start(&[]);
    let mount = rig.mount(&["--attr-ttl", "0", "--dir-ttl", "0"]);
    outage(&rig, &mount, "hang", Duration::ZERO);
}

#[test]
fn idle_drop_by_a_firewall_is_prevented_by_keepalive() {
    let (rig, mount, body) = with_file(
        "f.bin",
        MIB,
        6,
        &["--keepalive", "1", "--attr-ttl", "0", "--dir-ttl", "0"],
    );
    let sessions = rig.proxy.stats(Kind::Control).accepted;
    rig.proxy
        .set_idle_drop(Kind::Control, Some(Duration::from_secs(4)));
    std::thread::sleep(Duration::from_secs(12));
    let started = Instant::now();
    ok("ls", &[&mount.path_str("")], 30);
    assert_eq!(
        sha256sum(&mount.path_str("f.bin"), 30).unwrap(),
        data::sha256(&body)
    );
    let took = started.elapsed();
    let stats = rig.proxy.stats(Kind::Control);
    eprintln!(
        "after 12 s idle behind a 4 s idle drop: {took:?}, {} dropped",
        stats.idle_dropped
    );
    // The NOOPs kept every session alive (the negative control, without
    // keepalive, is the next test): none was silenced, none replaced.
    assert_eq!(stats.idle_dropped, 0, "{}", mount.log_text());
    assert_eq!(
        stats.accepted,
        sessions,
        "no session had to be replaced\n{}",
        mount.log_text()
    );
}

#[test]
fn idle_drop_without_keepalive_costs_one_reply_timeout() {
    // A reply timeout long enough that one and two of them are far apart.
    const REPLY_TIMEOUT: u64 = 15;
    let rig = Rig::start(&[]);
    let mount = rig.mount(&[
        "--attr-ttl",
        "0",
        "--dir-ttl",
        "0",
        "--timeout",
        &REPLY_TIMEOUT.to_string(),
    ]);
    ok("ls", &[&mount.path_str("")], 30);
    let sessions = rig.proxy.stats(Kind::Control).accepted;
    rig.proxy
        .set_idle_drop(Kind::Control, Some(Duration::from_secs(2)));
    std::thread::sleep(Duration::from_secs(5));
    let started = Instant::now();
    let out = run("ls", &[&mount.path_str("")], 60);
    let took = started.elapsed();
    eprintln!(
        "ls after an idle drop without keepalive: {:?} after {took:?}",
        out.status
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The cause: the idle drop silenced the session (the default keepalive,
    // 60 s, is too late for it), and a new one took over.
    let stats = rig.proxy.stats(Kind::Control);
    assert!(stats.idle_dropped >= 1, "the proxy silenced a session");
    assert!(stats.accepted > sessions, "a new session was opened");
    assert!(
        took < Duration::from_secs(REPLY_TIMEOUT + MARGIN),
        "{took:?}\n{}",
        mount.log_text()
    );
}

#[test]
fn a_long_download_keeps_working_when_its_idle_control_connection_is_dropped() {
    // One stream (no segments), so that its control connection idles.
    let (rig, mount, body) = with_file(
        "big.bin",
        40 * MIB,
        7,
        &["--keepalive", "1", "--read-streams", "0"],
    );
    // About 8 s of transfer, during which the control connection is idle
    // for longer than the firewall allows.
    rig.proxy.set_bandwidth(Kind::Data, Some(5 * MIB as u64));
    rig.proxy
        .set_idle_drop(Kind::Control, Some(Duration::from_secs(3)));
    let started = Instant::now();
    let digest = sha256sum(&mount.path_str("big.bin"), 120);
    let took = started.elapsed();
    let stats = rig.proxy.stats(Kind::Control);
    eprintln!(
        "40 MiB at 5 MiB/s behind a 3 s idle drop: {took:?}, {} control connections dropped",
        stats.idle_dropped
    );
    let digest = digest.unwrap_or_else(|out| panic!("{}\n{}", stderr(&out), mount.log_text()));
    assert_eq!(digest, data::sha256(&body));
    assert!(
        stats.idle_dropped >= 1,
        "the control connection was dropped during the transfer"
    );
}

#[test]
fn a_session_cap_makes_operations_queue_not_fail() {
    let rig = Rig::start(&["--max-per-ip", "2"]);
    let bodies: Vec<Vec<u8>> = (0..4).map(|i| data::bytes(4 * MIB, 10 + i)).collect();
    for (i, body) in bodies.iter().enumerate() {
        rig.put(&format!("in{i}.bin"), body);
    }
    let mount = rig.mount(&["--sessions", "4"]);
    let local = std::env::temp_dir().join(format!("ftpsfs-cap-{}", std::process::id()));
    std::fs::create_dir_all(&local).unwrap();
    let mut jobs = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let src = local.join(format!("out{i}.bin"));
        std::fs::write(&src, body).unwrap();
        let src = src.to_string_lossy().into_owned();
        let dst = mount.path_str(&format!("out{i}.bin"));
        jobs.push(std::thread::spawn(move || run("cp", &[&src, &dst], 120)));
        let path = mount.path_str(&format!("in{i}.bin"));
        jobs.push(std::thread::spawn(move || run("cat", &[&path], 120)));
    }
    for job in jobs {
        let out = job.join().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            stderr(&out),
            mount.log_text()
        );
    }
    for (i, body) in bodies.iter().enumerate() {
        let on_server = std::fs::read(rig.root().join(format!("out{i}.bin"))).unwrap();
        assert_eq!(data::sha256(&on_server), data::sha256(body), "out{i}.bin");
    }
    let _ = std::fs::remove_dir_all(&local);
    // The cap was hit: vsftpd refused a third session with 421, and the
    // pool lowered its limit to the two it allows.
    let log = mount.log_text();
    assert!(
        log.contains("using at most 2 sessions"),
        "the pool never met the cap\n{log}"
    );
    assert!(
        rig.server.info.log_text().contains("421 "),
        "vsftpd refused no session"
    );
}

/// `cp` over a file, its data connection reset in the middle: the upload
/// goes on from the server's size on its temporary name and is renamed into
/// place; the server ends with exactly the new bytes, nothing sent twice
/// beyond what the reset cut, nothing left beside it.
#[test]
fn an_upload_over_a_file_cut_by_a_data_reset_resumes() {
    let (rig, mount, _old) = with_file("doc.bin", 2 * MIB, 20, &[]);
    let new = data::bytes(6 * MIB, 21);
    let before = rig.proxy.stats(Kind::Data).to_server;
    cp_through_a_data_reset(&rig, &mount, "doc.bin", &new, 3 * MIB as u64);
    let sent = rig.proxy.stats(Kind::Data).to_server - before;
    eprintln!(
        "{sent} bytes to the server on data connections for {} bytes",
        new.len()
    );
    assert!(
        sent < (new.len() + new.len() / 2) as u64,
        "resumed, not sent again whole: {sent}"
    );
    assert!(
        mount.log_text().contains("upload resumed at byte"),
        "{}",
        mount.log_text()
    );
    works_again(&rig, &mount, "after.bin");
}

/// Resident memory of a process now, in MiB.
/// `cat >> file` over a data connection reset in the middle: the append
/// goes on from what the server holds, and the file is whole, with nothing
/// downloaded and nothing sent twice beyond what the reset cut.
#[test]
fn an_append_cut_by_a_data_reset_is_resumed() {
    let (rig, mount, old) = with_file("log.bin", 2 * MIB, 40, &[]);
    let added = data::bytes(8 * MIB, 41);
    let local = Local::new("append");
    let src = local.file("added.bin", &added);
    rig.proxy.reset_after(Kind::Data, 3 * MIB as u64);
    let started = Instant::now();
    let script = format!("cat '{src}' >> '{}'", mount.path_str("log.bin"));
    let out = run("sh", &["-c", &script], 120);
    eprintln!(
        "cat >> with a data reset at 3 MiB: {:?} after {:?}",
        out.status,
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        mount.log_text()
    );
    assert!(rig.proxy.reset_fired(Kind::Data));
    let whole = [old, added].concat();
    assert_eq!(
        data::sha256(&std::fs::read(rig.root().join("log.bin")).unwrap()),
        data::sha256(&whole),
        "the appended file is whole"
    );
    assert_eq!(others_on_server(&rig, &["log.bin"]), Vec::<String>::new());
}

fn rss_mib(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096 / MIB as u64
}

/// One writer: replaces its file again and again with new content, and
/// checks after each close that the server holds exactly that.
fn writer_loop(
    id: u64,
    mount_path: String,
    server_path: std::path::PathBuf,
    until: Instant,
) -> u32 {
    let local = std::env::temp_dir().join(format!("ftpsfs-load-{}-{id}", std::process::id()));
    let mut rounds = 0;
    while Instant::now() < until {
        let size = (256 * 1024) + ((id as usize * 7 + rounds as usize * 13) % 16) * 256 * 1024;
        let body = data::bytes(size, id * 1000 + rounds as u64);
        std::fs::write(&local, &body).unwrap();
        let out = run("cp", &[&local.to_string_lossy(), &mount_path], 120);
        assert!(out.status.success(), "writer {id}: {}", stderr(&out));
        let on_server = std::fs::read(&server_path).unwrap();
        assert_eq!(
            data::sha256(&on_server),
            data::sha256(&body),
            "writer {id}, round {rounds}: the server holds what was written"
        );
        rounds += 1;
    }
    let _ = std::fs::remove_file(&local);
    rounds
}

/// One reader: reads its file again and again, checking every byte.
fn reader_loop(id: u64, mount_path: String, want: String, until: Instant) -> u32 {
    let mut rounds = 0;
    while Instant::now() < until {
        let digest = sha256sum(&mount_path, 120)
            .unwrap_or_else(|out| panic!("reader {id}: {}", stderr(&out)));
        assert_eq!(digest, want, "reader {id}, round {rounds}");
        rounds += 1;
    }
    rounds
}

#[test]
fn eight_writers_and_eight_readers_on_four_sessions() {
    let rig = Rig::start(&[]);
    let readers = 8u64;
    let writers = 8u64;
    let mut wants = Vec::new();
    for id in 0..readers {
        let body = data::bytes(2 * MIB + id as usize * 512 * 1024, 500 + id);
        rig.put(&format!("r{id}.bin"), &body);
        wants.push(data::sha256(&body));
    }
    let mount = rig.mount(&["--sessions", "4"]);
    let pid = mount.pid().expect("ftpsfs runs");
    ok("ls", &[&mount.path_str("")], 30);
    let until = Instant::now() + Duration::from_secs(30);
    let mut jobs = Vec::new();
    for id in 0..writers {
        let path = mount.path_str(&format!("w{id}.bin"));
        let server_path = rig.root().join(format!("w{id}.bin"));
        jobs.push(std::thread::spawn(move || {
            ("writer", writer_loop(id, path, server_path, until))
        }));
    }
    for (id, want) in wants.into_iter().enumerate() {
        let path = mount.path_str(&format!("r{id}.bin"));
        jobs.push(std::thread::spawn(move || {
            ("reader", reader_loop(id as u64, path, want, until))
        }));
    }
    let mut peak_rss = 0;
    while jobs.iter().any(|j| !j.is_finished()) {
        peak_rss = peak_rss.max(rss_mib(pid));
        assert!(
            Instant::now() < until + Duration::from_secs(150),
            "the load did not finish: a deadlock?"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut rounds = Vec::new();
    for job in jobs {
        let (kind, n) = job.join().expect("no writer or reader failed");
        assert!(n > 0, "every {kind} got through at least once");
        rounds.push(n);
    }
    eprintln!("rounds per writer then reader: {rounds:?}; peak RSS {peak_rss} MiB");
    assert!(peak_rss < 400, "memory bounded: {peak_rss} MiB");
    works_again(&rig, &mount, "after.bin");
}

/// A local scratch directory for files to copy in, removed on drop.
struct Local(std::path::PathBuf);

impl Local {
    fn new(name: &str) -> Local {
        let dir = std::env::temp_dir().join(format!("ftpsfs-faults-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Local(dir)
    }

    fn file(&self, name: &str, body: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Names on the server besides `keep`.
fn others_on_server(rig: &Rig, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(rig.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// `cp` of `body` to `name` through the mount, its data connection reset
/// after `reset_at` bytes: it succeeds, and the server holds exactly `body`
/// there, and nothing else.
fn cp_through_a_data_reset(rig: &Rig, mount: &Mount, name: &str, body: &[u8], reset_at: u64) {
    let local = Local::new(name);
    let src = local.file(name, body);
    rig.proxy.reset_after(Kind::Data, reset_at);
    let out = run("cp", &[&src, &mount.path_str(name)], 120);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rig.proxy.reset_fired(Kind::Data));
    assert_eq!(
        data::sha256(&std::fs::read(rig.root().join(name)).unwrap()),
        data::sha256(body),
        "exactly the new bytes"
    );
    assert_eq!(others_on_server(rig, &[name]), Vec::<String>::new());
}

#[test]
fn a_new_file_cut_by_a_data_reset_resumes() {
    let rig = Rig::start(&[]);
    let mount = rig.mount(&[]);
    ok("ls", &[&mount.path_str("")], 30);
    cp_through_a_data_reset(
        &rig,
        &mount,
        "new.bin",
        &data::bytes(5 * MIB, 22),
        2 * MIB as u64,
    );
}

/// Another client creates `victim` after the mount listed the directory;
/// `cp` over it through the mount (a small file: written in place) is
/// reset: the other client's file ends replaced by the complete new file,
/// never truncated.
#[test]
fn a_copy_over_a_file_another_client_created_survives_a_data_reset() {
    let rig = Rig::start(&[]);
    let mount = rig.mount(&[]);
    ok("ls", &[&mount.path_str("")], 30);
    rig.put("victim", &data::bytes(300_000, 25));
    cp_through_a_data_reset(&rig, &mount, "victim", &data::bytes(900_000, 26), 400_000);
}

/// The server goes away for 3 s in the middle of an upload (every control
/// and data connection closed, new ones refused), as in a restart: the
/// upload goes on from the server's size once it is back, and the server
/// ends with exactly the new bytes.
#[test]
fn an_upload_resumes_across_a_server_outage() {
    let (rig, mount, _old) = with_file("doc.bin", MIB, 27, &[]);
    let local = Local::new("outage-upload");
    let body = data::bytes(4 * MIB, 28);
    let src = local.file("doc.bin", &body);
    rig.proxy.set_bandwidth(Kind::Data, Some(2 * MIB as u64));
    let before = rig.proxy.stats(Kind::Data).to_server;
    let writer = in_background("cp", vec![src, mount.path_str("doc.bin")], 120);
    assert!(wait_until(30, || rig.proxy.stats(Kind::Data).to_server
        > before + MIB as u64));
    for kind in [Kind::Control, Kind::Data] {
        rig.proxy.set_refuse(kind, true);
        rig.proxy.close_all(kind);
    }
    std::thread::sleep(Duration::from_secs(3));
    for kind in [Kind::Control, Kind::Data] {
        rig.proxy.set_refuse(kind, false);
    }
    let (out, _) = writer.join().unwrap();
    rig.proxy.set_bandwidth(Kind::Data, None);
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        mount.log_text()
    );
    assert_eq!(
        data::sha256(&std::fs::read(rig.root().join("doc.bin")).unwrap()),
        data::sha256(&body),
        "exactly the new bytes"
    );
    assert_eq!(others_on_server(&rig, &["doc.bin"]), Vec::<String>::new());
    assert!(
        mount.log_text().contains("upload resumed at byte"),
        "{}",
        mount.log_text()
    );
}

/// rsync through a data reset completes in one run: the cut upload is
/// resumed under rsync, which never sees it.
#[test]
fn rsync_through_a_data_reset_completes_in_one_run() {
    let rig = Rig::start(&[]);
    let mount = rig.mount(&[]);
    ok("ls", &[&mount.path_str("")], 30);
    let local = Local::new("rsync");
    let mut bodies = Vec::new();
    for i in 0..3u64 {
        let body = data::bytes(2 * MIB + i as usize * 100_000, 30 + i);
        local.file(&format!("tree/f{i}.bin"), &body);
        bodies.push(body);
    }
    let src = format!("{}/tree/", local.0.to_string_lossy());
    let dst = mount.path_str("tree");
    // A MiB into the first file: its data connection resets.
    rig.proxy.reset_after(Kind::Data, MIB as u64);
    ok("rsync", &["-a", &src, &dst], 120);
    assert!(rig.proxy.reset_fired(Kind::Data));
    for (i, body) in bodies.iter().enumerate() {
        let on_server = std::fs::read(rig.root().join(format!("tree/f{i}.bin"))).unwrap();
        assert_eq!(data::sha256(&on_server), data::sha256(body), "f{i}.bin");
    }
    let mut names: Vec<String> = std::fs::read_dir(rig.root().join("tree"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "nothing but the copy: {names:?}");
}

#[test]
fn stalled_upload_fails_close_after_the_data_timeout_and_the_retry_time() {
    let (rig, mount, old) = with_file(
        "doc.bin",
        3 * MIB,
        23,
        &["--retry-time", &RETRY_TIME.to_string()],
    );
    let local = Local::new("stalled-upload");
    let src = local.file("doc.bin", &data::bytes(30 * MIB, 24));
    rig.proxy.set_bandwidth(Kind::Data, Some(10 * MIB as u64));
    let writer = in_background("cp", vec![src, mount.path_str("doc.bin")], 120);
    assert!(wait_until(30, || rig.proxy.stats(Kind::Data).to_server
        > 5 * MIB as u64));
    rig.proxy.set_stall(Kind::Data, true);
    let stalled_at = Instant::now();
    let (out, ended) = writer.join().unwrap();
    let took = ended - stalled_at;
    rig.proxy.set_stall(Kind::Data, false);
    rig.proxy.set_bandwidth(Kind::Data, None);
    eprintln!(
        "cp after the upload stalled: {:?} after {took:?}: {}",
        out.status,
        stderr(&out).trim()
    );
    assert!(!out.status.success(), "a stalled upload is not a success");
    assert_eq!(errno_of(&out), "EIO", "{}", stderr(&out));
    // The data timeout for the write to fail; resuming for the retry time,
    // whose last attempt can take a data timeout more; a listing after the
    // failure whose data connection times out on a pooled session and once
    // more on a new one; a margin.
    let limit = Duration::from_secs(
        DATA_TIMEOUT + RETRY_TIME + DATA_TIMEOUT + 2 * CONNECT_TIMEOUT + MARGIN,
    );
    assert!(took < limit, "{took:?}\n{}", mount.log_text());
    assert_eq!(
        data::sha256(&std::fs::read(rig.root().join("doc.bin")).unwrap()),
        data::sha256(&old),
        "the old content is intact"
    );
    eprintln!(
        "left on the server besides doc.bin: {:?}",
        others_on_server(&rig, &["doc.bin"])
    );
    works_again(&rig, &mount, "after.bin");
}

/// A listing whose data connections stall gives up after two handshake
/// timeouts; a directory listed before is then shown as it was (offline
/// reading), one never listed fails with ETIMEDOUT.
#[test]
fn a_listing_over_a_stalled_data_path_fails_after_two_handshake_timeouts() {
    let rig = Rig::start(&[]);
    let mount = rig.mount(&["--attr-ttl", "0", "--dir-ttl", "0"]);
    // Listed ahead (the prefetch lists subdirectories of a listed one), but
    // not what is below it.
    rig.put("never-listed/deeper/inside", b"x");
    ok("ls", &[&mount.path_str("")], 30);
    let listed = run("ls", &[&mount.path_str("")], 60);
    rig.proxy.set_stall(Kind::Data, true);
    let data_connections = rig.proxy.stats(Kind::Data).accepted;
    let started = Instant::now();
    let stale = run("ls", &[&mount.path_str("")], 60);
    let took = started.elapsed();
    assert!(stale.status.success(), "{}", stderr(&stale));
    assert_eq!(stale.stdout, listed.stdout, "the listing of before");
    let limit = Duration::from_secs(2 * CONNECT_TIMEOUT + MARGIN);
    assert!(took < limit, "{took:?}\n{}", mount.log_text());
    // Tried twice, and once more by the prefetch of the subdirectory the
    // stale listing shows; every lookup after that is answered at once.
    // (A first try may go out on a data connection set up ahead, before
    // the stall, which this count does not see.)
    let tries = rig.proxy.stats(Kind::Data).accepted - data_connections;
    assert!(
        (1..=4).contains(&tries),
        "{tries} data connections before answering from the cache"
    );
    // The stale answers are used for a while without trying again (one
    // timeout per 5 s, not one per lookup): past that, a listing tries.
    std::thread::sleep(Duration::from_secs(6));
    let data_connections = rig.proxy.stats(Kind::Data).accepted;
    let started = Instant::now();
    let out = run("ls", &[&mount.path_str("never-listed/deeper")], 60);
    let took = started.elapsed();
    let tries = rig.proxy.stats(Kind::Data).accepted - data_connections;
    eprintln!(
        "ls over stalled data connections: {:?} after {took:?}: {}",
        out.status,
        stderr(&out).trim()
    );
    assert_eq!(errno_of(&out), "ETIMEDOUT", "{}", stderr(&out));
    // One try on the pooled session, one on a new one; not four. Counted,
    // since one handshake timeout more is too little time to tell apart on
    // a loaded machine; the time bound only catches a hang. The pooled
    // session's try may use a data connection set up ahead before the
    // stall, which this count does not see.
    assert!(
        (1..=2).contains(&tries),
        "{tries} data connections tried\n{}",
        mount.log_text()
    );
    let limit = Duration::from_secs(2 * CONNECT_TIMEOUT + MARGIN);
    assert!(took < limit, "{took:?}\n{}", mount.log_text());
    rig.proxy.set_stall(Kind::Data, false);
    works_again(&rig, &mount, "after.bin");
}

#[test]
fn four_readers_of_one_file_through_a_data_reset_get_the_same_bytes() {
    let (rig, mount, body) = with_file("shared.bin", 40 * MIB, 40, &[]);
    let want = data::sha256(&body);
    rig.proxy.set_bandwidth(Kind::Data, Some(40 * MIB as u64));
    // About a quarter into one of the four downloads.
    rig.proxy.reset_after(Kind::Data, 10 * MIB as u64);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let path = mount.path_str("shared.bin");
            std::thread::spawn(move || sha256sum(&path, 120))
        })
        .collect();
    for reader in readers {
        // A reader that timed out panicked in its thread: the mount's log
        // (removed with the mount) is what tells why.
        let digest = reader
            .join()
            .unwrap_or_else(|_| panic!("a reader timed out\n{}", mount.log_text()))
            .unwrap_or_else(|out| panic!("{}\n{}", stderr(&out), mount.log_text()));
        assert_eq!(digest, want);
    }
    assert!(rig.proxy.reset_fired(Kind::Data));
}

/// A program that appends `src` to `target` through the mount, says so by
/// creating `ready`, and keeps the file open without closing it.
struct OpenWriter(std::process::Child);

impl OpenWriter {
    fn start(target: &str, src: &str, ready: &str) -> OpenWriter {
        let script = r#"open(my $f, ">>", $ARGV[0]) or die "append: $!";
            open(my $s, "<", $ARGV[1]) or die "src: $!"; binmode $s; binmode $f;
            my $buf; while (my $n = sysread($s, $buf, 1 << 20)) {
                syswrite($f, $buf, $n) == $n or die "write: $!"; }
            open(my $r, ">", $ARGV[2]) or die "ready: $!"; close $r; sleep 170;"#;
        // perl itself (not under `timeout`), so that dropping this kills the
        // process that holds the file; it gives up by itself after 170 s.
        let child = std::process::Command::new("perl")
            .args(["-e", script, target, src, ready])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("perl");
        OpenWriter(child)
    }
}

impl Drop for OpenWriter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigterm_uploads_100_mib_pending_over_a_slow_link_before_exiting() {
    let (rig, mut mount, old) = with_file("big.log", 10 * MIB, 50, &[]);
    let local = Local::new("sigterm");
    let more = data::bytes(100 * MIB, 51);
    let src = local.file("more.bin", &more);
    let ready = local.0.join("ready").to_string_lossy().into_owned();
    let writer = OpenWriter::start(&mount.path_str("big.log"), &src, &ready);
    assert!(
        wait_until(120, || Path::new(&ready).exists()),
        "the append was written\n{}",
        mount.log_text()
    );
    assert_eq!(
        std::fs::metadata(rig.root().join("big.log")).unwrap().len(),
        old.len() as u64,
        "the append is still pending before the signal"
    );
    rig.proxy.set_bandwidth(Kind::Data, Some(40 * MIB as u64));
    let pid = mount.pid().expect("ftpsfs runs");
    let started = Instant::now();
    ok("kill", &["-TERM", &pid.to_string()], 10);
    let mut want = old.clone();
    want.extend_from_slice(&more);
    let want = data::sha256(&want);
    let uploaded = wait_until(120, || {
        std::fs::read(rig.root().join("big.log")).is_ok_and(|b| data::sha256(&b) == want)
    });
    let took = started.elapsed();
    eprintln!("110 MiB on the server {took:?} after SIGTERM");
    assert!(
        uploaded,
        "the pending append reached the server\n{}",
        mount.log_text()
    );
    drop(writer);
    assert!(
        mount.unmount(),
        "ftpsfs exits with status 0\n{}",
        mount.log_text()
    );
    assert_eq!(
        others_on_server(&rig, &["big.log"]),
        Vec::<String>::new(),
        "no temporaries left"
    );
}

/// How big the uploads cut at several points are: the issue's 200 MiB. The
/// three cases take 13-17 s together on loopback here (2 cores; each upload
/// about 1-2.5 s, the rest the server, the data and the checks), within
/// the ~20 s the CI can spend on them.
const CUT_UPLOAD: usize = 200 * MIB;

/// Where the mount's log says cut uploads went on.
fn resumed_at(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split("upload resumed at byte ").nth(1)?.parse().ok())
        .collect()
}

/// What is uploaded in `an_upload_cut_at_several_points`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upload {
    /// `cp` to a name the server does not have.
    New,
    /// `cp` over a file the server has.
    Replace,
    /// `cat >>` onto a file the server has.
    Append,
}

/// `upload` of `CUT_UPLOAD` bytes, its data connections reset three times
/// (each after a quarter of the upload: near a quarter, a half and three
/// quarters of it): it succeeds, the server holds exactly what it must, and
/// each reset cost at most one upload window of bytes sent again.
fn an_upload_cut_at_several_points(upload: Upload) {
    const CUTS: usize = 3;
    let rig = Rig::start(&[]);
    let old = data::bytes(MIB, 60);
    if upload != Upload::New {
        rig.put("big.bin", &old);
    }
    // A router's buffering, not a proxy's: with the proxy's defaults (an
    // 8 MiB queue, and a receive buffer the kernel grows to 32 MiB) 35 MiB
    // were in flight at a reset, more than the window; the mount then
    // fails the upload (EIO, "only the bytes from ... were still held"), as
    // doc/SEMANTICS.md says it does when the server lost more than that.
    // Set before the mount: a socket's buffer is fixed when it connects,
    // and the mount connects its next data connection ahead of time.
    rig.proxy.set_buffering(Kind::Data, Some(256 * 1024));
    let mount = rig.mount(&[]);
    ok("ls", &[&mount.path_str("")], 30);
    let local = Local::new(&format!("cuts-{upload:?}"));
    let added = data::bytes(CUT_UPLOAD, 61);
    let src = local.file("src.bin", &added);
    let want = match upload {
        Upload::Append => local.file("want.bin", &[old.as_slice(), &added].concat()),
        _ => src.clone(),
    };
    let dst = mount.path_str("big.bin");
    rig.proxy
        .resets_after(Kind::Data, &[(CUT_UPLOAD / 4) as u64; CUTS]);
    let before = rig.proxy.stats(Kind::Data);
    let started = Instant::now();
    let out = match upload {
        Upload::Append => run("sh", &["-c", &format!("cat '{src}' >> '{dst}'")], 300),
        _ => run("cp", &[&src, &dst], 300),
    };
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        mount.log_text()
    );
    let after = rig.proxy.stats(Kind::Data);
    assert!(rig.proxy.reset_fired(Kind::Data), "{}", mount.log_text());
    assert_eq!(after.resets - before.resets, CUTS as u64);
    let on_server = rig.root().join("big.bin");
    ok("cmp", &[&want, &on_server.to_string_lossy()], 60);
    assert_eq!(others_on_server(&rig, &["big.bin"]), Vec::<String>::new());
    let log = mount.log_text();
    let cuts = log.lines().filter(|l| l.ends_with("; resuming")).count();
    assert_eq!(cuts, CUTS, "{log}");
    // (An append resumes with APPE, which needs no offset; it logs none.)
    let resumed_at = resumed_at(&log);
    // What the mount sent (TLS records and handshakes included, and what
    // the resets threw away): the bytes once, and per reset at most what
    // the mount keeps to send again.
    let sent = after.from_client - before.from_client;
    let extra = sent.saturating_sub(CUT_UPLOAD as u64);
    let window = ftpsfs::fs::UPLOAD_WINDOW as u64;
    eprintln!(
        "{upload:?}: {} MiB cut {CUTS} times (resumed at bytes {resumed_at:?}) in {took:?}: \
         {sent} bytes up, {extra} more than the file ({} per reset; window {window})",
        CUT_UPLOAD / MIB,
        extra / CUTS as u64
    );
    assert!(
        extra <= CUTS as u64 * window,
        "{extra} bytes sent again for {CUTS} resets"
    );
}

#[test]
fn a_new_file_cut_at_several_points_resumes_each_time() {
    an_upload_cut_at_several_points(Upload::New);
}

#[test]
fn a_replaced_file_cut_at_several_points_resumes_each_time() {
    an_upload_cut_at_several_points(Upload::Replace);
}

#[test]
fn an_append_cut_at_several_points_resumes_each_time() {
    an_upload_cut_at_several_points(Upload::Append);
}

/// The server goes away for 20 s in the middle of an upload (its session
/// processes killed, as by a restart, and no new connection reaches it),
/// then comes back: the upload, resumed for the default `--retry-time`
/// (60 s), completes with exactly the bytes sent, under the real name
/// only.
#[test]
fn an_upload_resumes_across_a_20_s_server_outage() {
    const OUTAGE: Duration = Duration::from_secs(20);
    let rig = Rig::start(&[]);
    // A router's buffering, so that the server's size after the outage is
    // within the window (see `an_upload_cut_at_several_points`); set
    // before the mount, which connects data connections ahead of time.
    rig.proxy.set_buffering(Kind::Data, Some(256 * 1024));
    let mount = rig.mount(&[]);
    ok("ls", &[&mount.path_str("")], 30);
    let local = Local::new("outage-20s");
    let body = data::bytes(24 * MIB, 62);
    let src = local.file("new.bin", &body);
    // About 6 s of upload, so that the outage lands in its middle.
    rig.proxy.set_bandwidth(Kind::Data, Some(4 * MIB as u64));
    let writer = in_background("cp", vec![src.clone(), mount.path_str("new.bin")], 120);
    assert!(wait_until(30, || rig.proxy.stats(Kind::Data).to_server
        > 8 * MIB as u64));
    for kind in [Kind::Control, Kind::Data] {
        rig.proxy.set_refuse(kind, true);
    }
    let killed = rig.server.kill_sessions();
    assert!(killed >= 1, "the server's sessions were killed");
    for kind in [Kind::Control, Kind::Data] {
        rig.proxy.reset_all(kind);
    }
    let down_at = Instant::now();
    std::thread::sleep(OUTAGE);
    assert!(
        !writer.is_finished(),
        "cp waits for the server\n{}",
        mount.log_text()
    );
    for kind in [Kind::Control, Kind::Data] {
        rig.proxy.set_refuse(kind, false);
    }
    let back_at = Instant::now();
    let (out, ended) = writer.join().unwrap();
    rig.proxy.set_bandwidth(Kind::Data, None);
    eprintln!(
        "cp ended {:?} after an outage of {:?} ({killed} server processes killed)",
        ended - back_at,
        back_at - down_at
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        mount.log_text()
    );
    ok(
        "cmp",
        &[&src, &rig.root().join("new.bin").to_string_lossy()],
        60,
    );
    assert_eq!(others_on_server(&rig, &["new.bin"]), Vec::<String>::new());
    let log = mount.log_text();
    let resumed = resumed_at(&log);
    eprintln!("resumed at bytes {resumed:?}");
    assert!(resumed.iter().any(|&at| at > 0), "{log}");
}

/// A server that stores less than it was sent and answers 226 all the same:
/// the proxy ends every upload to the server early (`set_truncate`: the
/// server's side is reset, what the client still sends is thrown away and
/// its end answered with a FIN), so the server's own 226 is real. The size
/// check catches it, the file is sent once more (cut the same way), and
/// then close fails with EIO, its content kept where the log says.
///
/// pyftpdlib, not vsftpd: vsftpd (with OpenSSL 3) answers 426 to a TLS
/// stream that ends without close_notify, with a FIN even between two
/// records, or with a reset, and the proxy cannot forge that encrypted
/// alert; pyftpdlib 1.5.7 takes a reset as the end of the upload, keeps
/// what it got and answers 226: the silent loss the check is for.
#[test]
fn an_upload_the_server_stores_short_with_226_fails_with_eio_and_is_kept() {
    let rig = Proxied::around(ScriptServer::start("pyftpdlib-test-server", &[]));
    let root = rig.info.root.clone();
    let mount = rig.mount(&[]);
    ok("ls", &[&mount.path_str("")], 30);
    let local = Local::new("short");
    // Under 1 MiB: staged whole, so it can be sent again from the start.
    let body = data::bytes(800_000, 63);
    let src = local.file("short.bin", &body);
    rig.proxy.set_truncate(Kind::Data, Some(300_000));
    let out = run("cp", &[&src, &mount.path_str("short.bin")], 120);
    rig.proxy.set_truncate(Kind::Data, None);
    let log = mount.log_text();
    assert!(!out.status.success(), "a short upload is no success\n{log}");
    assert_eq!(errno_of(&out), "EIO", "{}", stderr(&out));
    // The server took both uploads as complete, and short.
    let server_log = rig.info.log_text();
    let stored: Vec<&str> = server_log
        .lines()
        .filter(|l| l.contains("STOR ") && l.contains("short.bin completed=1"))
        .collect();
    assert_eq!(
        stored.len(),
        2,
        "two uploads, both ended by the server\n{log}"
    );
    assert!(
        stored
            .iter()
            .all(|l| !l.ends_with(&format!("bytes={}", body.len()))),
        "{stored:?}"
    );
    assert!(
        log.contains("uploading it again from the start") && log.contains("giving up"),
        "{log}"
    );
    let kept = log
        .lines()
        .find_map(|l| l.split("its content is kept in ").nth(1))
        .unwrap_or_else(|| panic!("the log says where the content is kept\n{log}"));
    ok("cmp", &[&src, kept.trim()], 30);
    eprintln!(
        "cp: {}; kept in {kept}; the server logged: {stored:?}",
        stderr(&out).trim()
    );
    assert!(!root.join("short.bin").exists(), "nothing short left");
}
