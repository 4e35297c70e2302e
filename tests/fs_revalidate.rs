//! Close-to-open consistency (`--revalidate-on-open`): an open asks the
//! server for the file's size and time (one MLST, or SIZE and MDTM), so a
//! file another client changed reads as the server has it now, whatever the
//! cache TTLs; without it, the cached size holds until the TTL runs out.
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::core::{self, list_server, READ};
use ftpsfs::fs::{Fs, FsConfig, Ino};
use ftpsfs::store::RemoteStore;
use ftpsfs_testkit::MemoryStore;

struct Mount {
    store: Arc<MemoryStore>,
    fs: Fs,
    _spool: tempfile::TempDir,
}

fn mount(store: MemoryStore, revalidate_on_open: bool) -> Mount {
    let spool = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(store);
    let fs = Fs::new(
        store.clone(),
        FsConfig {
            // Far longer than the test: only a revalidation sees changes.
            attr_ttl: Duration::from_secs(3600),
            dir_ttl: Duration::from_secs(3600),
            spool_dir: spool.path().join("spool"),
            revalidate_on_open,
            ..FsConfig::default()
        },
    );
    Mount {
        store,
        fs,
        _spool: spool,
    }
}

impl Mount {
    fn ino(&self, name: &str) -> Ino {
        core::ino(&self.fs, name)
    }

    fn cat(&self, ino: Ino) -> Vec<u8> {
        core::cat(&self.fs, ino)
    }
}

#[test]
fn without_revalidation_the_cached_size_holds_until_the_ttl() {
    let m = mount(MemoryStore::new(), false);
    m.store.put_file(b"f", b"short");
    let ino = m.ino("f");
    assert_eq!(m.cat(ino), b"short");
    m.store.put_file(b"f", b"another client made it longer");
    let fh = m.fs.open(ino, READ).expect("open");
    // The kernel reads up to the size it was given: the cached one.
    assert_eq!(m.fs.getattr(ino).expect("getattr").size, 5);
    m.fs.release(fh).expect("release");
}

#[test]
fn an_open_sees_another_clients_change_with_one_mlst() {
    let m = mount(MemoryStore::new(), true);
    m.store.put_file(b"f", b"short");
    let ino = m.ino("f");
    assert_eq!(m.cat(ino), b"short");
    m.store.put_file(b"f", b"another client made it longer");
    m.store.reset_counters();
    let fh = m.fs.open(ino, READ).expect("open");
    assert_eq!(m.fs.getattr(ino).expect("getattr").size, 29);
    m.fs.release(fh).expect("release");
    assert_eq!(m.cat(ino), b"another client made it longer");
    let counts = m.store.counters();
    assert_eq!(
        (counts.stat, counts.list, counts.size),
        (2, 0, 0),
        "one per open: {counts:?}"
    );
    assert_eq!(
        m.fs.getattr(ino).expect("getattr").size,
        29,
        "the cache (and its listing) took the new size"
    );
}

#[test]
fn on_a_list_server_an_open_asks_size_and_mdtm_not_a_listing() {
    let m = mount(list_server(), true);
    m.store.put_file(b"f", b"12345");
    let ino = m.ino("f");
    m.store.reset_counters();
    assert_eq!(m.cat(ino), b"12345");
    let counts = m.store.counters();
    assert_eq!(
        (counts.size, counts.exact_mtime, counts.list, counts.stat),
        (1, 1, 0, 0),
        "{counts:?}"
    );
    m.store.put_file(b"f", b"1234567890");
    let fh = m.fs.open(ino, READ).expect("open");
    assert_eq!(m.fs.getattr(ino).expect("getattr").size, 10);
    m.fs.release(fh).expect("release");
}

#[test]
fn a_file_removed_on_the_server_fails_to_open() {
    for store in [MemoryStore::new(), list_server()] {
        let m = mount(store, true);
        m.store.put_file(b"gone", b"x");
        let ino = m.ino("gone");
        m.store.delete(b"gone").expect("delete on the server");
        let err = m.fs.open(ino, READ).expect_err("open of a deleted file");
        assert_eq!(err.errno(), libc::ENOENT, "{err:?}");
    }
}

#[test]
fn a_file_already_open_is_not_asked_again() {
    let m = mount(MemoryStore::new(), true);
    m.store.put_file(b"f", b"data");
    let ino = m.ino("f");
    let first = m.fs.open(ino, READ).expect("open");
    m.store.reset_counters();
    let second = m.fs.open(ino, READ).expect("second open");
    assert_eq!(
        m.store.counters().stat,
        0,
        "the open file's view is current"
    );
    m.fs.release(second).expect("release");
    m.fs.release(first).expect("release");
}
