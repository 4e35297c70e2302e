//! The FTPS store's free space (AVBL) against scripted servers: a number is
//! shown, a server that does not know AVBL is asked once per mount, and a
//! reply that is not a number is "unknown" (and asked again later).
mod common;

use common::fake::{plain_store, Conn, FakeServer};
use ftpsfs::store::RemoteStore;

/// Answers the login, PWD and NOOP, and AVBL with `avbl`.
fn answering(c: &mut Conn, avbl: &str) {
    c.send("220 fake\r\n");
    while let Some(line) = c.next_after_login() {
        let reply = match line.to_ascii_uppercase().as_str() {
            "AVBL" => avbl,
            "PWD" => "257 \"/\" is the current directory",
            "NOOP" => "200 ok",
            "QUIT" => return,
            _ => "502 not here",
        };
        c.send(&format!("{reply}\r\n"));
    }
}

fn avbl_sent(server: &FakeServer) -> usize {
    server.received().iter().filter(|l| *l == "AVBL").count()
}

#[test]
fn a_number_of_bytes_is_the_free_space() {
    let server = FakeServer::start(|c| answering(c, "213 5368709120"));
    let store = plain_store(&server);
    assert_eq!(store.free_space(), Some(5 << 30));
    assert_eq!(store.free_space(), Some(5 << 30));
    assert_eq!(
        avbl_sent(&server),
        2,
        "the store keeps no cache (the core does)"
    );
}

#[test]
fn a_server_without_avbl_is_asked_once() {
    let server = FakeServer::start(|c| answering(c, "500 AVBL not understood"));
    let store = plain_store(&server);
    for _ in 0..3 {
        assert_eq!(store.free_space(), None);
    }
    assert_eq!(avbl_sent(&server), 1);
}

#[test]
fn a_reply_that_is_no_number_is_unknown() {
    let server = FakeServer::start(|c| answering(c, "213 plenty of room"));
    let store = plain_store(&server);
    assert_eq!(store.free_space(), None);
    assert_eq!(store.free_space(), None);
    assert_eq!(
        avbl_sent(&server),
        2,
        "asked again: it may be a passing fault"
    );
}

#[test]
fn with_every_session_busy_free_space_is_unknown_at_once() {
    use ftpsfs::ftp::{Connector, Pool, PoolSettings};
    let server = FakeServer::start(|c| answering(c, "213 1000"));
    let pool = Pool::new(
        Connector::new(common::fake::plain_config(server.port)).unwrap(),
        PoolSettings {
            max_sessions: 1,
            ..PoolSettings::default()
        },
    );
    let pool = std::sync::Arc::new(pool);
    let store =
        ftpsfs::store::ftps::FtpsStore::connect(std::sync::Arc::clone(&pool), b"").expect("store");
    let busy = pool.get().expect("the only session");
    assert_eq!(store.free_space(), None, "not waited for");
    drop(busy);
    assert_eq!(store.free_space(), Some(1000));
    assert_eq!(avbl_sent(&server), 1);
}
