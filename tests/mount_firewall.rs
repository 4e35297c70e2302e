//! A stateful firewall that forgets connections idle for more than 10 s,
//! as firewalls and NAT routers do (their timeouts are longer, the
//! mechanism the same): each test runs in its own network namespace whose
//! conntrack forgets established TCP connections after 10 s of silence and
//! whose nftables rule drops what it no longer knows. Unlike a proxy in user
//! space, it sees TCP keepalive probes, so it tests what keeps a control
//! connection alive while a long transfer leaves it silent.
//!
//! Each case runs twice: with a `--keepalive` below the firewall's timeout,
//! where the sessions must survive, and with the default (NOOP after 60 s,
//! TCP probes after 15 s: too late for this firewall), where the firewall
//! must be seen dropping packets and the sessions must be replaced. The
//! second run proves that the first one passes because of the keepalive,
//! not because the firewall did nothing.
//!
//! The test's own thread enters the namespace (setns affects one thread),
//! so the server and the mount it starts live there; the mount itself is
//! visible to the whole machine as usual.
mod common;

use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use common::data;
use common::mount::{ok, run, Mount};
use common::require;
use common::vsftpd::Vsftpd;

/// Seconds of silence after which the firewall forgets a connection.
const FORGETS_AFTER: u64 = 10;

/// A network namespace with the firewall; the calling thread is in it
/// until drop, which deletes it.
struct Firewalled {
    name: String,
    home: std::fs::File,
}

fn sh(args: &[&str]) {
    let out = Command::new("timeout")
        .arg("30")
        .args(args)
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Firewalled {
    fn enter(test: &str) -> Firewalled {
        require::root("a network namespace with a firewall");
        require::program("ip", "iproute2");
        require::program("nft", "nftables");
        require::program("sysctl", "procps");
        let name = format!("ftpsfs-fw-{}-{test}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        let script = format!(
            "ip link set lo up && \
             sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_established={FORGETS_AFTER} \
                        net.netfilter.nf_conntrack_tcp_loose=0 && \
             nft add table inet fw && \
             nft add chain inet fw input '{{ type filter hook input priority 0; }}' && \
             nft add rule inet fw input ct state invalid counter drop"
        );
        sh(&["ip", "netns", "exec", &name, "sh", "-c", &script]);
        let home = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
        let target = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
        // SAFETY: setns(2) with a namespace file descriptor that stays open
        // for the call; it moves only this thread.
        let entered = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        Firewalled { name, home }
    }

    /// Packets the firewall dropped because it had forgotten their
    /// connection.
    fn dropped(&self) -> u64 {
        let out = Command::new("nft")
            .args(["list", "chain", "inet", "fw", "input"])
            .output()
            .expect("nft");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Firewalled {
    fn drop(&mut self) {
        // SAFETY: as in `enter`, with the thread's original namespace.
        unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) };
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Control connections vsftpd accepted so far (its log has a CONNECT line
/// for each).
fn connects(server: &Vsftpd) -> usize {
    server.info.log_text().matches("CONNECT: Client").count()
}

/// A keepalive below the firewall's timeout: what keeps the sessions alive.
const KEEPALIVE: &[&str] = &["--keepalive", "5"];
/// The default keepalive: too late for a firewall that forgets in 10 s.
const DEFAULT_KEEPALIVE: &[&str] = &[];

/// What a case saw: packets the firewall dropped, control connections the
/// server accepted after the mount's first ones, and how long the use after
/// the silence took.
struct Seen {
    dropped: u64,
    new_sessions: usize,
    took: Duration,
    log: String,
}

/// Mounts behind the firewall, leaves the mount idle for 60 s, then lists
/// and reads a file.
fn idle_60_s_then_used(test: &str, keepalive: &[&str]) -> Seen {
    let firewall = Firewalled::enter(test);
    let server = Vsftpd::start(&[]);
    let body = data::bytes(1 << 20, 1);
    std::fs::write(server.info.root.join("f.bin"), &body).unwrap();
    let mut args = vec!["--attr-ttl", "0", "--dir-ttl", "0"];
    args.extend_from_slice(keepalive);
    let mount = Mount::start(&server.info, &args);
    ok("ls", &[&mount.path_str("")], 30);
    let before = connects(&server);
    std::thread::sleep(Duration::from_secs(60));
    let started = Instant::now();
    ok("ls", &[&mount.path_str("")], 60);
    let read = ok("cat", &[&mount.path_str("f.bin")], 60).stdout;
    let took = started.elapsed();
    assert_eq!(data::sha256(&read), data::sha256(&body));
    let seen = Seen {
        dropped: firewall.dropped(),
        new_sessions: connects(&server) - before,
        took,
        log: mount.log_text(),
    };
    eprintln!(
        "{test}: after 60 s idle, ls + cat in {took:?}; {} packets dropped by the firewall, {} new sessions",
        seen.dropped, seen.new_sessions
    );
    seen
}

#[test]
fn idle_for_60_s_behind_the_firewall_then_used_at_once() {
    let seen = idle_60_s_then_used("idle", KEEPALIVE);
    assert_eq!(seen.dropped, 0, "the firewall forgot nothing\n{}", seen.log);
    assert_eq!(
        seen.new_sessions, 0,
        "no session had to be replaced\n{}",
        seen.log
    );
    // A forgotten session would cost a reply timeout (20 s) first.
    assert!(
        seen.took < Duration::from_secs(15),
        "{:?}\n{}",
        seen.took,
        seen.log
    );
}

/// The negative control of the test above: the same silence with the
/// default keepalive, which comes too late for this firewall.
#[test]
fn idle_for_60_s_without_an_early_keepalive_loses_the_sessions() {
    let seen = idle_60_s_then_used("idle-default", DEFAULT_KEEPALIVE);
    assert!(
        seen.dropped > 0,
        "the firewall dropped nothing\n{}",
        seen.log
    );
    assert!(
        seen.new_sessions > 0,
        "the forgotten sessions were replaced\n{}",
        seen.log
    );
}

/// A slow reader takes 30 s over a file with the mount's only session; its
/// control connection says nothing meanwhile. Then the session is used
/// again.
fn slow_read_of_30_s(test: &str, keepalive: &[&str]) -> Seen {
    let firewall = Firewalled::enter(test);
    let server = Vsftpd::start(&[]);
    let body = data::bytes(30 << 20, 2);
    std::fs::write(server.info.root.join("big.bin"), &body).unwrap();
    let mut args = vec!["--sessions", "1"];
    args.extend_from_slice(keepalive);
    let mount = Mount::start(&server.info, &args);
    ok("ls", &[&mount.path_str("")], 30);
    let before = connects(&server);
    let started = Instant::now();
    // 1 MiB a second: the data connection moves, the control one is silent.
    // Without keepalive the read may fail at its end (the final reply is
    // lost with the control connection); either way it must take 30 s.
    let out = run(
        "perl",
        &[
            "-e",
            r#"open(F, "<", $ARGV[0]) or die $!; my $n = 0;
               while (my $r = sysread(F, my $b, 1048576)) { $n += $r; sleep 1; }
               print $n;"#,
            &mount.path_str("big.bin"),
        ],
        120,
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(FORGETS_AFTER * 2), "{took:?}");
    let read_all = String::from_utf8_lossy(&out.stdout) == body.len().to_string();
    // The one session, used again: it must have seen its 226, or have been
    // replaced.
    ok("ls", &[&mount.path_str("")], 60);
    ok("cp", &["/etc/hostname", &mount.path_str("after")], 60);
    let seen = Seen {
        dropped: firewall.dropped(),
        new_sessions: connects(&server) - before,
        took,
        log: mount.log_text(),
    };
    eprintln!(
        "{test}: slow read of 30 MiB: {:?} in {took:?}, read all: {read_all}; {} packets dropped by the firewall, {} new sessions",
        out.status, seen.dropped, seen.new_sessions
    );
    if keepalive == KEEPALIVE {
        assert!(
            out.status.success() && read_all,
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            seen.log
        );
    }
    seen
}

/// TCP keepalive probes keep the firewall's state for the silent control
/// connection, so the transfer's final reply arrives and the session is
/// used again.
#[test]
fn a_30_s_transfer_keeps_its_control_connection() {
    let seen = slow_read_of_30_s("transfer", KEEPALIVE);
    assert_eq!(seen.dropped, 0, "the firewall forgot nothing\n{}", seen.log);
    assert_eq!(
        seen.new_sessions, 0,
        "the session survived the transfer\n{}",
        seen.log
    );
}

/// The negative control of the test above: with the default keepalive the
/// firewall forgets the control connection during the transfer.
#[test]
fn a_30_s_transfer_without_an_early_keepalive_loses_its_control_connection() {
    let seen = slow_read_of_30_s("transfer-default", DEFAULT_KEEPALIVE);
    assert!(
        seen.dropped > 0,
        "the firewall dropped nothing\n{}",
        seen.log
    );
    assert!(
        seen.new_sessions > 0,
        "the forgotten session was replaced\n{}",
        seen.log
    );
}
