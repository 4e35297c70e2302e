//! The mount across the network conditions FTP is known for, against vsftpd:
//! a server behind NAT that advertises a wrong address in its PASV reply, a
//! firewall that blocks the passive ports (active mode, a port range, an
//! advertised NAT address), and IPv6. The fault proxy stands in for
//! "another host".
mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;

use common::data;
use common::mount::{ok, run, Mount};
use common::proxy::{FaultProxy, Kind};
use common::scratch::Scratch;
use common::vsftpd::Vsftpd;

const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn passive_ports(server: &Vsftpd) -> RangeInclusive<u16> {
    let port = |key: &str| -> u16 { server.env[key].parse().expect(key) };
    port("FTPS_PASV_MIN")..=port("FTPS_PASV_MAX")
}

/// Copies a file of 300 KiB into the mount and back out; both copies and
/// the server's file must have the bytes written.
fn round_trip(server: &Vsftpd, mount: &Mount, name: &str) {
    let local = Scratch::new(name);
    let bytes = data::bytes(300 * 1024, name.len() as u64);
    std::fs::write(local.path("in"), &bytes).unwrap();
    ok("cp", &[&local.str("in"), &mount.path_str(name)], 60);
    assert_eq!(std::fs::read(server.info.root.join(name)).unwrap(), bytes);
    ok("cp", &[&mount.path_str(name), &local.str("out")], 60);
    assert_eq!(std::fs::read(local.path("out")).unwrap(), bytes);
}

/// The (E)PRT commands of the server's log as (address, port).
fn announced_addresses(server: &Vsftpd) -> Vec<(String, u16)> {
    server
        .commands()
        .iter()
        .filter_map(|c| {
            if let Some(arg) = c.strip_prefix("EPRT ") {
                // |1|127.0.0.1|40001|
                let parts: Vec<&str> = arg.split('|').collect();
                return Some((parts.get(2)?.to_string(), parts.get(3)?.parse().ok()?));
            }
            let arg = c.strip_prefix("PORT ")?;
            let n: Vec<u16> = arg.split(',').filter_map(|p| p.parse().ok()).collect();
            (n.len() == 6).then(|| {
                (
                    format!("{}.{}.{}.{}", n[0], n[1], n[2], n[3]),
                    n[4] * 256 + n[5],
                )
            })
        })
        .collect()
}

#[test]
fn nat_an_unroutable_pasv_address_is_ignored_by_default() {
    let server = Vsftpd::start(&["--pasv-address", "10.255.255.1"]);
    let mount = Mount::start(&server.info, &["--connect-timeout", "3"]);
    round_trip(&server, &mount, "behind-nat.bin");
    let listing = ok("ls", &[&mount.path_str("")], 30);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("behind-nat.bin"));
}

#[test]
fn nat_trust_pasv_address_connects_where_the_server_says() {
    // The server advertises 127.0.0.3, where a proxy forwards the passive
    // ports to it: data connections through the proxy prove that the
    // advertised address was used, none that it was ignored.
    let advertised = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let server = Vsftpd::start(&["--pasv-address", "127.0.0.3"]);
    let proxy = FaultProxy::start(
        advertised,
        SERVER_IP,
        server.info.port,
        passive_ports(&server),
    );

    let mount = Mount::start(&server.info, &[]);
    round_trip(&server, &mount, "ignored.bin");
    assert_eq!(
        proxy.stats(Kind::Data).accepted,
        0,
        "the default ignores it"
    );
    drop(mount);

    let mount = Mount::start(&server.info, &["--trust-pasv-address"]);
    round_trip(&server, &mount, "trusted.bin");
    assert!(
        proxy.stats(Kind::Data).accepted >= 2,
        "the upload and the download went to the advertised address"
    );
    let commands = server.commands();
    assert!(
        commands.iter().any(|c| c == "PASV"),
        "PASV, whose reply has the address, not EPSV: {commands:?}"
    );
}

#[test]
fn firewall_blocks_passive_active_mode_works_inside_its_port_range() {
    let server = Vsftpd::start(&["--no-pasv"]);

    // Passive refused: a clear error at the tool (EIO, not EACCES) and in
    // the log, which names the way out.
    let mount = Mount::start(&server.info, &[]);
    let refused = run("ls", &[&mount.path_str("")], 30);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("Input/output error"), "{stderr}");
    assert!(
        mount.log_text().contains("try active mode (--active)"),
        "{}",
        mount.log_text()
    );
    drop(mount);

    let mount = Mount::start(&server.info, &["--active", "--active-ports", "40000-40100"]);
    round_trip(&server, &mount, "active.bin");
    ok("mkdir", &[&mount.path_str("dir")], 30);
    let listing = ok("ls", &[&mount.path_str("")], 30);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("active.bin"));
    let announced = announced_addresses(&server);
    assert!(announced.len() >= 3, "{announced:?}");
    for (address, port) in &announced {
        assert_eq!(address, "127.0.0.1");
        assert!(
            (40000..=40100).contains(port),
            "port {port} outside the range"
        );
    }
}

#[test]
fn active_mode_advertises_the_nat_address() {
    // ftpsfs behind NAT: the server must connect to the NAT's public
    // address (127.0.0.2 here), which forwards the active port range to
    // ftpsfs. vsftpd normally insists on the client's own address
    // (port_promiscuous=NO), which NAT breaks; such servers allow it.
    let nat = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let ports = 40200..=40220;
    let server = Vsftpd::start(&["--no-pasv", "--extra-conf", "port_promiscuous=YES"]);
    let proxy = FaultProxy::start(nat, SERVER_IP, 40199, ports.clone());
    let mount = Mount::start(
        &server.info,
        &[
            "--active",
            "--active-ports",
            "40200-40220",
            "--active-address",
            "127.0.0.2",
        ],
    );
    round_trip(&server, &mount, "through-nat.bin");
    let announced = announced_addresses(&server);
    assert!(!announced.is_empty());
    for (address, port) in &announced {
        assert_eq!(address, "127.0.0.2");
        assert!(ports.contains(port), "port {port} outside the range");
    }
    assert!(proxy.stats(Kind::Data).accepted >= 2);
}

#[test]
fn ipv6_passive_and_active() {
    let server = Vsftpd::start(&["--ipv6"]);
    assert_eq!(server.info.host, "::1");
    let mount = Mount::start(&server.info, &[]);
    round_trip(&server, &mount, "v6.bin");
    ok("mkdir", &[&mount.path_str("v6 dir")], 30);
    ok(
        "mv",
        &[&mount.path_str("v6.bin"), &mount.path_str("v6 dir/v6.bin")],
        30,
    );
    let listing = ok("ls", &[&mount.path_str("v6 dir")], 30);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("v6.bin"));
    let commands = server.commands();
    assert!(commands.iter().any(|c| c == "EPSV"), "{commands:?}");
    assert!(!commands.iter().any(|c| c == "PASV"), "{commands:?}");
    drop(mount);

    let mount = Mount::start(&server.info, &["--active", "--active-ports", "40300-40320"]);
    round_trip(&server, &mount, "v6-active.bin");
    let eprt: Vec<String> = server
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("EPRT "))
        .collect();
    assert!(!eprt.is_empty());
    for c in &eprt {
        assert!(c.starts_with("EPRT |2|::1|"), "{c}");
    }
}
