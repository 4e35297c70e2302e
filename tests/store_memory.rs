//! The in-memory store held to the contract the FTPS store meets against real
//! servers, so the filesystem core is tested against a faithful stand-in.
mod common;

use common::store_contract;
use ftpsfs::store::memory::{MemoryStore, Op};
use ftpsfs::store::{Capabilities, ErrorKind, RemoteStore};

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
    });
    store_contract::run_all(&store);
    assert!(store.paths().is_empty(), "{:?}", store.paths());
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
    let store = std::sync::Arc::new(MemoryStore::new());
    let dynamic: std::sync::Arc<dyn RemoteStore> = store.clone();
    store.fail_next(Op::Mkdir, ErrorKind::Unavailable);
    assert_eq!(
        dynamic.mkdir(b"d").unwrap_err().kind,
        ErrorKind::Unavailable
    );
    dynamic.mkdir(b"d").unwrap();
    assert!(store.exists(b"d"));
    assert_eq!(store.counters().mkdir, 2);
}
