//! Patching in place on real servers (SEMANTICS §3): a 4 KiB `dd
//! conv=notrunc` into a big file sends about those 4 KiB where the server
//! writes `REST n` + `STOR` in place (vsftpd: counted on the wire by the
//! fault proxy; ProFTPD with `AllowStoreRestart on`), and replaces the file
//! whole where it truncates (Pure-FTPd) or refuses (ProFTPD by default).
//! Either way the server ends with exactly the bytes a local disk would
//! hold. A patch keeps the server's file (its inode); a replacement is a
//! new file renamed over it.
mod common;

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::data;
use common::mount::{ok, run, wait_until, Mount};
use common::proxied::Proxied;
use common::proxy::Kind;
use common::scratch::Scratch;
use common::script_server::ScriptServer;

const MIB: usize = 1024 * 1024;
const BIG: usize = 8 * MIB;
const BLOCK: usize = 4096;
/// The 4 KiB block written: in the middle of the file.
const SEEK: usize = 1000;

/// What a dd into a big file did on the server.
struct Dd {
    /// The server's file is the one it was (patched), not a new one.
    same_inode: bool,
}

/// An 8 MiB file written through the mount: its content.
fn big_file(mount: &Mount, name: &str) -> Vec<u8> {
    let body = data::bytes(BIG, 61);
    std::fs::write(mount.path(name), &body).unwrap();
    body
}

/// `dd bs=4k count=1 seek=SEEK conv=notrunc` into `name`, which holds
/// `body`, through the mount; checks the server then holds exactly `body`
/// with that block changed.
fn dd_a_block(root: &Path, mount: &Mount, name: &str, body: Vec<u8>) -> Dd {
    let on_server = root.join(name);
    let before = std::fs::metadata(&on_server).unwrap().ino();
    let local = Scratch::new("patch-dd");
    let block = data::bytes(BLOCK, 62);
    std::fs::write(local.path("block"), &block).unwrap();
    ok(
        "dd",
        &[
            &format!("if={}", local.str("block")),
            &format!("of={}", mount.path_str(name)),
            "bs=4k",
            "count=1",
            &format!("seek={SEEK}"),
            "conv=notrunc",
            "status=none",
        ],
        120,
    );
    let mut expected = body;
    expected[SEEK * BLOCK..(SEEK + 1) * BLOCK].copy_from_slice(&block);
    let held = std::fs::read(&on_server).unwrap();
    assert_eq!(held.len(), BIG, "the size is kept");
    assert!(
        data::sha256(&held) == data::sha256(&expected),
        "the server holds the file with the block changed"
    );
    let after = std::fs::metadata(&on_server).unwrap().ino();
    Dd {
        same_inode: before == after,
    }
}

/// vsftpd writes REST + STOR in place: the dd sends its 4 KiB (with the
/// one-time probe's 12 bytes and the TLS handshakes of a few data
/// connections), not 8 MiB, and downloads nothing of the file: only the
/// written block is held (SEMANTICS §3), so what comes down is TLS
/// handshakes, not 8 MiB.
#[test]
fn vsftpd_gets_a_4k_dd_into_8_mib_as_a_4k_patch() {
    let rig = Proxied::start(&[]);
    let mount = rig.mount(&[]);
    let body = big_file(&mount, "big.bin");
    let before = rig.proxy.stats(Kind::Data);
    let dd = dd_a_block(&rig.info.root, &mount, "big.bin", body);
    let after = rig.proxy.stats(Kind::Data);
    let (sent, received) = (
        after.to_server - before.to_server,
        after.to_client - before.to_client,
    );
    eprintln!(
        "a 4 KiB dd into 8 MiB sent {sent} and received {received} bytes on data connections"
    );
    assert!(
        (BLOCK as u64..32 * 1024).contains(&sent),
        "{sent} bytes sent for a 4 KiB change"
    );
    assert!(
        received < 32 * 1024,
        "{received} bytes received for a 4 KiB change into {BIG} bytes"
    );
    assert!(dd.same_inode, "patched in place, not replaced");
    let log = mount.log_text();
    assert!(
        log.contains("patched in place: 4096 bytes in 1 range"),
        "{log}"
    );
}

/// The REST + STOR probe runs in the background as the mount comes up (in
/// the mount's root, its file removed after): a dd into a big file once it
/// is done is patched in place and sends no probe command of its own.
#[test]
fn vsftpd_is_probed_in_the_background_and_the_first_dd_sends_no_probe() {
    let rig = Proxied::start(&[]);
    let mount = rig.mount(&[]);
    let probe_commands = |commands: &[String]| {
        commands
            .iter()
            .filter(|c| c.contains(".store-at-offset-probe.ftpsfs-"))
            .cloned()
            .collect::<Vec<_>>()
    };
    // `ftpsfs status` tells when the answer is known; its file's DELE
    // follows.
    let dir = mount.path_str("");
    let status = || {
        let out = run(
            env!("CARGO_BIN_EXE_ftpsfs"),
            &["status", "--json", &dir],
            30,
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let probed = wait_until(30, || status().contains(r#""rest_stor":"in place""#));
    assert!(probed, "{}\n{}", status(), mount.log_text());
    let removed = wait_until(10, || {
        let probe = probe_commands(&rig.server.commands());
        probe.iter().any(|c| c.starts_with("DELE "))
    });
    assert!(removed, "the probe file was not removed");
    let probe = probe_commands(&rig.server.commands());
    let verbs: Vec<&str> = probe.iter().filter_map(|c| c.split(' ').next()).collect();
    assert_eq!(verbs, ["STOR", "STOR", "RETR", "DELE"], "{probe:?}");
    let body = big_file(&mount, "big.bin");
    let before = rig.server.commands().len();
    let dd = dd_a_block(&rig.info.root, &mount, "big.bin", body);
    let during = rig.server.commands()[before..].to_vec();
    assert!(dd.same_inode, "patched in place");
    assert!(probe_commands(&during).is_empty(), "{during:?}");
    assert!(during.iter().any(|c| c.starts_with("REST ")), "{during:?}");
}

/// A patch cut by a reset of its data connection is sent again from the
/// start of its range: the server ends with the right bytes, in the same
/// file, and what went up is the range twice at most, not the file.
#[test]
fn vsftpd_a_patch_cut_by_a_data_reset_is_sent_again() {
    let rig = Proxied::start(&[]);
    let mount = rig.mount(&[]);
    let mut expected = big_file(&mount, "big.bin");
    let on_server = rig.info.root.join("big.bin");
    let inode = std::fs::metadata(&on_server).unwrap().ino();
    let change = data::bytes(512 * 1024, 63);
    let at = 3 * MIB;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(mount.path("big.bin"))
        .unwrap();
    file.seek(SeekFrom::Start(at as u64)).unwrap();
    // The write is held here (an eighth of the file at most: nothing is
    // fetched); the reset is armed for the patch.
    file.write_all(&change).unwrap();
    let before = rig.proxy.stats(Kind::Data).to_server;
    rig.proxy.reset_after(Kind::Data, 200 * 1024);
    file.sync_all()
        .expect("the patch is sent again after the reset");
    drop(file);
    let sent = rig.proxy.stats(Kind::Data).to_server - before;
    assert!(rig.proxy.reset_fired(Kind::Data), "the reset cut the patch");
    assert!(
        (change.len() as u64..2 * change.len() as u64).contains(&sent),
        "{sent} bytes sent for a 512 KiB change cut once"
    );
    expected[at..at + change.len()].copy_from_slice(&change);
    let held = std::fs::read(&on_server).unwrap();
    assert!(
        data::sha256(&held) == data::sha256(&expected),
        "the right bytes"
    );
    assert_eq!(std::fs::metadata(&on_server).unwrap().ino(), inode);
    let log = mount.log_text();
    assert!(log.contains("sending it again"), "{log}");
}

/// With `--patch never` the same dd replaces the file whole, atomically.
#[test]
fn vsftpd_with_patch_never_replaces_whole() {
    let rig = Proxied::start(&[]);
    let mount = rig.mount(&["-o", "patch=never"]);
    let body = big_file(&mount, "big.bin");
    let before = rig.proxy.stats(Kind::Data).to_server;
    let dd = dd_a_block(&rig.info.root, &mount, "big.bin", body);
    let sent = rig.proxy.stats(Kind::Data).to_server - before;
    assert!(sent >= BIG as u64, "{sent} bytes: the whole file");
    assert!(!dd.same_inode, "replaced through a temporary name");
}

/// Pure-FTPd truncates after REST + STOR: a change in the middle replaces
/// the file whole (a patch would cut it there).
#[test]
fn pure_ftpd_gets_the_dd_as_a_whole_replacement() {
    let server = ScriptServer::start("pure-ftpd-test-server", &[]);
    let mount = Mount::start(&server.info, &[]);
    let body = big_file(&mount, "big.bin");
    let dd = dd_a_block(&server.info.root, &mount, "big.bin", body);
    assert!(!dd.same_inode, "replaced, not patched");
    let log = mount.log_text();
    assert!(
        log.contains("the server truncates after REST + STOR"),
        "{log}"
    );
}

/// ProFTPD refuses REST before STOR by default (replaced whole), and
/// writes in place with `AllowStoreRestart on` (patched).
#[test]
fn proftpd_is_patched_only_with_allow_store_restart() {
    for (options, patched) in [(&[][..], false), (&["--allow-store-restart"][..], true)] {
        let server = ScriptServer::start("proftpd-test-server", options);
        let mount = Mount::start(&server.info, &[]);
        let body = big_file(&mount, "big.bin");
        let dd = dd_a_block(&server.info.root, &mount, "big.bin", body);
        assert_eq!(dd.same_inode, patched, "{options:?}");
    }
}
