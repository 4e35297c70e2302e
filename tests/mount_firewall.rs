//! A stateful firewall that forgets connections idle for more than 10 s,
//! as firewalls and NAT routers do (their timeouts are longer, the
//! mechanism the same): each test runs in its own network namespace whose
//! conntrack forgets established TCP connections after 10 s of silence and
//! whose nftables rule drops what it no longer knows. Unlike a proxy in user
//! space, it sees TCP keepalive probes, so it tests what keeps a control
//! connection alive while a long transfer leaves it silent.
//!
//! The test's own thread enters the namespace (setns affects one thread),
//! so the server and the mount it starts live there; the mount itself is
//! visible to the whole machine as usual.
mod common;

use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use common::data;
use common::mount::{ok, Mount};
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

#[test]
fn idle_for_60_s_behind_the_firewall_then_used_at_once() {
    let firewall = Firewalled::enter("idle");
    let server = Vsftpd::start(&[]);
    std::fs::write(server.info.root.join("f.bin"), data::bytes(1 << 20, 1)).unwrap();
    let mount = Mount::start(
        &server.info,
        &["--keepalive", "5", "--attr-ttl", "0", "--dir-ttl", "0"],
    );
    ok("ls", &[&mount.path_str("")], 30);
    let before = connects(&server);
    std::thread::sleep(Duration::from_secs(60));
    let started = Instant::now();
    ok("ls", &[&mount.path_str("")], 30);
    let body = ok("cat", &[&mount.path_str("f.bin")], 30).stdout;
    let took = started.elapsed();
    eprintln!(
        "after 60 s idle: ls + cat in {took:?}; {} packets dropped by the firewall",
        firewall.dropped()
    );
    assert_eq!(data::sha256(&body), data::sha256(&data::bytes(1 << 20, 1)));
    assert_eq!(connects(&server), before, "no session had to be replaced");
    assert!(
        took < Duration::from_secs(3),
        "{took:?}\n{}",
        mount.log_text()
    );
}

/// While a slow reader takes 30 s over a file, its session's control
/// connection says nothing; TCP keepalive probes keep the firewall's state,
/// so the transfer's final reply arrives and the session is used again.
#[test]
fn a_30_s_transfer_keeps_its_control_connection() {
    let firewall = Firewalled::enter("transfer");
    let server = Vsftpd::start(&[]);
    let body = data::bytes(30 << 20, 2);
    std::fs::write(server.info.root.join("big.bin"), &body).unwrap();
    let mount = Mount::start(&server.info, &["--keepalive", "5", "--sessions", "1"]);
    ok("ls", &[&mount.path_str("")], 30);
    let before = connects(&server);
    let started = Instant::now();
    // 1 MiB a second: the data connection moves, the control one is silent.
    let out = ok(
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
    assert_eq!(String::from_utf8_lossy(&out.stdout), body.len().to_string());
    // The one session, used again: it must have seen its 226.
    ok("ls", &[&mount.path_str("")], 30);
    ok("cp", &["/etc/hostname", &mount.path_str("after")], 30);
    eprintln!(
        "slow read of 30 MiB: {took:?}; {} packets dropped by the firewall",
        firewall.dropped()
    );
    assert!(took >= Duration::from_secs(FORGETS_AFTER * 2), "{took:?}");
    assert_eq!(
        connects(&server),
        before,
        "the session survived the transfer\n{}",
        mount.log_text()
    );
}
