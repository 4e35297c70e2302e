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
    // Its DELE goes after the answer, on a thread of its own.
    let names = || -> Vec<Vec<u8>> {
        std::fs::read_dir(server.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_encoded_bytes())
            .collect()
    };
    assert!(
        common::mount::wait_until(10, || names() == vec![b"f".to_vec()]),
        "the probe file is gone: {:?}",
        names()
    );
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

/// A segment's download (`open_read_now`) takes a session only when one is
/// free: `None` while downloads hold them all, never a wait; one once a
/// download let go of its session, reading the right bytes from its offset.
#[test]
fn open_read_now_takes_only_a_free_session() {
    let server = inproc::InProcServer::start();
    let settings = PoolSettings {
        max_sessions: 2,
        ..PoolSettings::default()
    };
    let pool = Arc::new(Pool::new(
        Connector::new(server.info().config()).unwrap(),
        settings,
    ));
    let store = FtpsStore::connect(pool, b"").expect("store");
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    store_contract::write_file(&store, b"f", &body);
    let first = store.open_read(b"f", 0).expect("first download");
    let second = store.open_read_now(b"f", 10).expect("second download");
    assert!(second.is_some(), "a session was free");
    assert!(
        store.open_read_now(b"f", 20).expect("third").is_none(),
        "both sessions are held"
    );
    drop(first);
    let mut third = store
        .open_read_now(b"f", 100_000)
        .expect("third download")
        .expect("a session is free again");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = third.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, &body[100_000..]);
}
