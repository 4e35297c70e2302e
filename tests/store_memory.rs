//! The in-memory store held to the contract the FTPS store meets against real
//! servers, so the filesystem core is tested against a faithful stand-in; and
//! the fault-injecting wrapper, with no fault armed, changes nothing of it.
mod common;

use std::sync::Arc;

use common::store_contract;
use ftpsfs::store::{Capabilities, ErrorKind, RemoteStore};
use ftpsfs_testkit::{FaultyStore, MemoryStore, Op};

#[test]
fn memory_meets_the_contract() {
    let store = MemoryStore::new();
    store_contract::run_all(&store);
    assert!(store.paths().is_empty(), "{:?}", store.paths());
}

#[test]
fn memory_without_optional_capabilities_meets_the_contract() {
    let store = MemoryStore::with_capabilities(Capabilities {
        set_mtime: false,
        chmod: false,
        exact_listing_mtime: false,
        append: true,
        ..Capabilities::default()
    });
    store_contract::run_all(&store);
    assert!(store.paths().is_empty(), "{:?}", store.paths());
}

#[test]
fn the_fault_wrapper_without_faults_meets_the_contract() {
    let store = FaultyStore::new(MemoryStore::new());
    store_contract::run_all(&store);
    assert!(
        store.inner().paths().is_empty(),
        "{:?}",
        store.inner().paths()
    );
    assert_eq!(
        store.counters(),
        store.inner().counters(),
        "every call went through"
    );
}

#[test]
fn counters_see_what_the_contract_did() {
    let store = MemoryStore::new();
    store_contract::write_file(&store, b"f", &common::data::bytes(200_000, 3));
    assert_eq!(store_contract::read_all(&store, b"f", 0).len(), 200_000);
    let counts = store.counters();
    assert_eq!((counts.upload, counts.open_read), (1, 1));
    assert_eq!(
        (counts.bytes_uploaded, counts.bytes_read),
        (200_000, 200_000)
    );
    assert_eq!(counts.total(), 2);
}

#[test]
fn usable_as_a_shared_trait_object() {
    let server = Arc::new(MemoryStore::new());
    let store = Arc::new(FaultyStore::new(Arc::clone(&server)));
    let dynamic: Arc<dyn RemoteStore> = store.clone();
    store.fail_next(Op::Mkdir, ErrorKind::Unavailable);
    assert_eq!(
        dynamic.mkdir(b"d").unwrap_err().kind,
        ErrorKind::Unavailable
    );
    dynamic.mkdir(b"d").unwrap();
    assert!(server.exists(b"d"));
    assert_eq!(store.counters().mkdir, 2);
    assert_eq!(server.counters().mkdir, 1, "the failure never reached it");
}
