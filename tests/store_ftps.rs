//! The FTPS store against vsftpd, held to the same contract as the
//! in-memory store the filesystem core is tested with (and as the
//! in-process server in store_ftps_inproc.rs).
mod common;

use std::sync::Arc;

use common::store_contract;
use common::vsftpd::Vsftpd;
use ftpsfs::ftp::{Connector, FtpConfig, Pool, PoolSettings};
use ftpsfs::store::ftps::FtpsStore;
use ftpsfs::store::{ErrorKind, RemoteStore};

fn store(config: FtpConfig, root: &[u8]) -> FtpsStore {
    let pool = Arc::new(Pool::new(
        Connector::new(config).unwrap(),
        PoolSettings::default(),
    ));
    FtpsStore::connect(pool, root).expect("store")
}

#[test]
fn vsftpd_meets_the_contract() {
    let server = Vsftpd::start(&[]);
    let store = store(server.info.config(), b"");
    assert!(
        !store.capabilities().exact_listing_mtime,
        "vsftpd has no MLSD"
    );
    store_contract::run_all(&store);
    assert!(
        store.capabilities().set_mtime,
        "vsftpd sets files' times (MDTM with two arguments), even though it refuses directories'"
    );
}

#[test]
fn mounted_subdirectory_is_the_root() {
    let server = Vsftpd::start(&[]);
    std::fs::create_dir_all(server.info.root.join("share/inner")).unwrap();
    std::fs::write(server.info.root.join("share/inner/f"), b"deep").unwrap();
    let store = store(server.info.config(), b"share");
    assert_eq!(store_contract::read_all(&store, b"inner/f", 0), b"deep");
    assert_eq!(store.list(b"").unwrap()[0].name, b"inner");
    let missing = FtpsStore::connect(
        Arc::new(Pool::new(
            Connector::new(server.info.config()).unwrap(),
            PoolSettings::default(),
        )),
        b"no-such-dir",
    );
    let err = missing.err().expect("missing root");
    assert!(err.message.contains("no-such-dir"), "{err}");
}

#[test]
fn large_download_reads_sequentially_on_one_transfer() {
    let server = Vsftpd::start(&[]);
    let body = common::data::bytes(20 * 1024 * 1024, 4);
    std::fs::write(server.info.root.join("big"), &body).unwrap();
    let store = store(server.info.config(), b"");
    let before = store.pool().connector().stats().snapshot();
    assert_eq!(store_contract::read_all(&store, b"big", 0), body);
    let after = store.pool().connector().stats().snapshot();
    assert_eq!(after.data_connections - before.data_connections, 1);
}

#[test]
fn refusals_on_a_file_of_another_user_are_permission_errors() {
    let server = Vsftpd::start(&[]);
    // Written by root: the FTP user may read it but not change it.
    std::fs::write(server.info.root.join("theirs"), b"x").unwrap();
    let store = store(server.info.config(), b"");
    let chmod = store.chmod(b"theirs", 0o600).expect_err("not the owner");
    assert_eq!(chmod.kind, ErrorKind::PermissionDenied, "{chmod}");
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let mtime = store.set_mtime(b"theirs", when).expect_err("not the owner");
    assert_eq!(mtime.kind, ErrorKind::PermissionDenied, "{mtime}");
    assert!(
        store.capabilities().set_mtime,
        "one refused file does not make the server unable to set times"
    );
}
