//! A hostile or broken server, seen through the whole client (session, pool,
//! store, filesystem core): listings with names that are no names, absurd
//! sizes, a passive reply pointing to port 0, a listing that never ends.
//! Each gives a clear error or is ignored; none panics or eats memory.
mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;

use common::fake::{plain_config, Conn, FakeServer};
use ftpsfs::fs::{Fs, FsConfig, ROOT_INO};
use ftpsfs::ftp::{Connector, Kind, Pool, PoolSettings};
use ftpsfs::store::ftps::FtpsStore;

/// Answers EPSV with a fresh listener, and LIST (or anything that opens a
/// data connection) by writing `body` on it.
fn serve_listing(c: &mut Conn, body: &dyn Fn(&mut dyn Write)) {
    c.send("220 hostile\r\n");
    let mut passive: Option<TcpListener> = None;
    while let Some(line) = c.next_after_login() {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EPSV" => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                c.send(&format!(
                    "229 ok (|||{}|)\r\n",
                    l.local_addr().unwrap().port()
                ));
                passive = Some(l);
            }
            "LIST" => {
                let Some(l) = passive.take() else {
                    c.send("425 no data connection\r\n");
                    continue;
                };
                let (mut data, _) = l.accept().unwrap();
                c.send("150 here it comes\r\n");
                body(&mut data);
                drop(data);
                c.send("226 done\r\n");
            }
            "NOOP" => c.send("200 ok\r\n"),
            _ => c.send("502 no\r\n"),
        }
    }
}

/// Names a listing may carry that must never become directory entries:
/// `.`, `..`, paths that climb out, and NUL.
const HOSTILE_LIST: &[u8] = b"\
-rw-r--r--    1 0 0            5 Jun 01 12:00 ok.txt\r\n\
drwxr-xr-x    2 0 0         4096 Jun 01 12:00 .\r\n\
drwxr-xr-x    2 0 0         4096 Jun 01 12:00 ..\r\n\
-rw-r--r--    1 0 0            5 Jun 01 12:00 ../../etc/passwd\r\n\
-rw-r--r--    1 0 0            5 Jun 01 12:00 a/b\r\n\
-rw-r--r--    1 0 0            5 Jun 01 12:00 nul\0name\r\n\
-rw-r--r--    1 0 0           -1 Jun 01 12:00 negative\r\n\
-rw-r--r--    1 0 0 99999999999999999999999 Jun 01 12:00 huge\r\n\
-rw-r--r--    1 0 0 18446744073709551615 Jun 01 12:00 max\r\n\
-rw-r--r--    1 0 0            7 Jun 01 12:00 spaced name\r\n";

fn hostile_listing(c: &mut Conn) {
    serve_listing(c, &|data| {
        let _ = data.write_all(HOSTILE_LIST);
    });
}

#[test]
fn hostile_listing_names_never_reach_the_filesystem() {
    let server = FakeServer::start(hostile_listing);
    let connector = Connector::new(plain_config(server.port)).unwrap();
    let pool = Arc::new(Pool::new(connector, PoolSettings::default()));
    let store = FtpsStore::connect(pool, b"").expect("the store connects");
    let spool = tempfile::tempdir().unwrap();
    let fs = Fs::new(
        Arc::new(store),
        FsConfig {
            spool_dir: spool.path().join("spool"),
            ..FsConfig::default()
        },
    );
    let items = fs.readdir(ROOT_INO).expect("the listing is read");
    let names: BTreeSet<String> = items
        .iter()
        .map(|i| String::from_utf8_lossy(&i.name).into_owned())
        .collect();
    for bad in [".", "..", "../../etc/passwd", "a/b", "nul\0name"] {
        assert!(!names.contains(bad), "{bad:?} listed: {names:?}");
    }
    assert!(
        names.contains("ok.txt") && names.contains("spaced name"),
        "{names:?}"
    );
    // A size that is not a number is no entry; one beyond what a file
    // offset can hold (i64) would reach programs as a negative size.
    for absurd in ["negative", "huge", "max"] {
        assert!(!names.contains(absurd), "{absurd} listed: {names:?}");
    }
    let err = fs.lookup(ROOT_INO, b"..").expect_err("'..' is no name");
    assert_eq!(err.errno(), libc::EINVAL);
}

fn epsv_to_port_zero(c: &mut Conn) {
    c.send("220 hostile\r\n");
    while let Some(line) = c.next_after_login() {
        match line.split(' ').next().unwrap_or("") {
            "EPSV" => c.send("229 ok (|||0|)\r\n"),
            "PASV" => c.send("227 ok (127,0,0,1,0,0)\r\n"),
            _ => c.send("502 no\r\n"),
        }
    }
}

#[test]
fn a_passive_reply_to_port_zero_is_a_clear_error() {
    let server = FakeServer::start(epsv_to_port_zero);
    let mut session = Connector::new(plain_config(server.port))
        .unwrap()
        .connect()
        .expect("login");
    let err = session
        .list_dir(b"")
        .expect_err("no data connection to port 0");
    assert_eq!(err.kind(), Kind::Protocol, "{err}");
    // Refused before connecting: "no port" says so; what a connection to
    // port 0 would give is "refused", at once, so no time bound tells more.
    assert!(err.to_string().contains("no port"), "{err}");
}

/// A listing that is one line without end: 300 MiB with no newline.
fn endless_listing(c: &mut Conn) {
    serve_listing(c, &|data| {
        let block = vec![b'x'; 1024 * 1024];
        for _ in 0..300 {
            if data.write_all(&block).is_err() {
                return;
            }
        }
    });
}

#[test]
fn a_listing_without_end_is_cut_off_with_an_error() {
    let server = FakeServer::start(endless_listing);
    let mut session = Connector::new(plain_config(server.port))
        .unwrap()
        .connect()
        .expect("login");
    let err = session.list_dir(b"").expect_err("too large");
    assert!(err.to_string().contains("larger than 256 MiB"), "{err}");
}
