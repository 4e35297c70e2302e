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
