//! The FTPS store against the in-process server (libunftp), held to the same
//! contract as the in-memory store the filesystem core is tested with. The
//! same contract against vsftpd is in store_ftps.rs (system tests).
mod common;
#[path = "support/inproc.rs"]
mod inproc;

use std::sync::Arc;

use common::store_contract;
use ftpsfs::ftp::{Connector, Pool, PoolSettings};
use ftpsfs::store::ftps::FtpsStore;
use ftpsfs::store::RemoteStore;

#[test]
fn inproc_meets_the_contract() {
    let server = inproc::InProcServer::start();
    let pool = Arc::new(Pool::new(
        Connector::new(server.info().config()).unwrap(),
        PoolSettings::default(),
    ));
    let store = FtpsStore::connect(pool, b"").expect("store");
    assert!(
        store.capabilities().exact_listing_mtime,
        "libunftp has MLSD"
    );
    store_contract::run_all(&store);
}

/// The primitives of issue 11 against libunftp: SIZE, the REST + STOR
/// probe (its answer checked by a patch), no digest commands.
#[test]
fn inproc_primitives() {
    use ftpsfs::store::{DigestAlgorithm, ErrorKind, StoreAtOffset};
    let server = inproc::InProcServer::start();
    let pool = Arc::new(Pool::new(
        Connector::new(server.info().config()).unwrap(),
        PoolSettings::default(),
    ));
    let store = FtpsStore::connect(pool, b"").expect("store");
    store_contract::write_file(&store, b"f", b"0123456789");
    assert_eq!(store.size(b"f").unwrap(), 10);
    assert_eq!(
        store.size(b"missing").unwrap_err().kind,
        ErrorKind::NotFound
    );
    let found = store.store_at_offset(b"");
    let names: Vec<_> = store
        .list(b"")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![b"f".to_vec()], "the probe file is gone");
    let patched = store.upload_at(b"f", 3).and_then(|mut up| {
        up.write(b"XY")?;
        up.finish()
    });
    // libunftp ends the file where the write ended, as Pure-FTPd does.
    assert_eq!(found, StoreAtOffset::Truncates);
    patched.unwrap();
    assert_eq!(store_contract::read_all(&store, b"f", 0), b"012XY");
    let err = store
        .digest(b"f", DigestAlgorithm::Sha256, None)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
    assert!(store.capabilities().digests.is_empty());
}
