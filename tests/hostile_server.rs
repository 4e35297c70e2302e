//! A hostile or broken server, seen through the whole client (session, pool,
//! store, filesystem core): listings with names that are no names, absurd
//! sizes, a passive reply pointing to port 0, a listing that never ends,
//! size and digest replies that lie about an upload.
//! Each gives a clear error or is ignored; none panics or eats memory.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::fake::{plain_config, Conn, FakeServer};
use ftpsfs::fs::{Fs, FsConfig, OpenFlags, ROOT_INO};
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

/// The whole client over plain FTP to `server`, with its spool in a
/// temporary directory (removed when the second value is dropped).
fn fs_over(server: &FakeServer) -> (Fs, tempfile::TempDir) {
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
    (fs, spool)
}

#[test]
fn hostile_listing_names_never_reach_the_filesystem() {
    let server = FakeServer::start(hostile_listing);
    let (fs, _spool) = fs_over(&server);
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

/// What the lying server holds, by name, shared by its sessions (each test
/// uses names of its own).
static HELD: Mutex<BTreeMap<String, Vec<u8>>> = Mutex::new(BTreeMap::new());

/// The lie a name asks for when its size or digest is checked.
fn size_reply(name: &str, held: &[u8]) -> String {
    let len = held.len();
    if name.contains("garbage") {
        format!("213 about {len} bytes")
    } else if name.contains("negative") {
        "213 -1".to_string()
    } else if name.contains("larger") {
        format!("213 {}", len + 1)
    } else if name.contains("huge") {
        "213 99999999999999999999999".to_string()
    } else {
        format!("213 {len}")
    }
}

fn hash_reply(name: &str, held: &[u8]) -> String {
    use ftpsfs::digest::to_hex;
    use ftpsfs::store::DigestAlgorithm::{Sha1, Sha256};
    let span = format!("0-{}", held.len().saturating_sub(1));
    let (label, algorithm) = if name.contains("sha1") {
        ("SHA-1", Sha1)
    } else {
        ("SHA-256", Sha256)
    };
    let digest = to_hex(&algorithm.digest(held).unwrap());
    format!("213 {label} {span} {digest} {name}")
}

/// A server that stores every upload right, and lies when asked about one
/// whose name says so (`size_reply`, `hash_reply`): the check that follows
/// an upload meets each hostile reply after a real STOR.
fn lying_checks(c: &mut Conn) {
    c.send("220 liar\r\n");
    let mut passive: Option<TcpListener> = None;
    let mut rename_from = String::new();
    while let Some(line) = c.recv() {
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        let arg = arg.to_string();
        let held = |name: &str| HELD.lock().unwrap().get(name).cloned();
        let reply = match verb.to_ascii_uppercase().as_str() {
            "USER" => "331 password please".to_string(),
            "PASS" => "230 logged in".to_string(),
            "TYPE" | "NOOP" => "200 ok".to_string(),
            "FEAT" => "211-Features:\r\n EPSV\r\n SIZE\r\n HASH SHA-256\r\n211 End".to_string(),
            "OPTS" if arg == "HASH SHA-256" => "200 SHA-256".to_string(),
            "QUIT" => {
                c.send("221 bye\r\n");
                return;
            }
            "EPSV" => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = l.local_addr().unwrap().port();
                passive = Some(l);
                format!("229 ok (|||{port}|)")
            }
            verb @ ("LIST" | "STOR") => {
                let Some(l) = passive.take() else {
                    c.send("425 no data connection\r\n");
                    continue;
                };
                let (mut data, _) = l.accept().unwrap();
                c.send("150 go\r\n");
                if verb == "STOR" {
                    let mut body = Vec::new();
                    let _ = data.read_to_end(&mut body);
                    HELD.lock().unwrap().insert(arg, body);
                } else {
                    for (name, body) in HELD.lock().unwrap().iter() {
                        let _ = write!(
                            data,
                            "-rw-r--r--    1 0 0 {} Jun 01 12:00 {name}\r\n",
                            body.len()
                        );
                    }
                }
                drop(data);
                "226 done".to_string()
            }
            "SIZE" => held(&arg).map_or("550 no such file".to_string(), |b| size_reply(&arg, &b)),
            "HASH" => held(&arg).map_or("550 no such file".to_string(), |b| hash_reply(&arg, &b)),
            "DELE" => {
                HELD.lock().unwrap().remove(&arg);
                "250 deleted".to_string()
            }
            "RNFR" => {
                rename_from = arg;
                "350 go on".to_string()
            }
            "RNTO" => {
                let mut held = HELD.lock().unwrap();
                match held.remove(&rename_from) {
                    Some(body) => {
                        held.insert(arg, body);
                        "250 renamed".to_string()
                    }
                    None => "550 no such file".to_string(),
                }
            }
            _ => "502 not here".to_string(),
        };
        c.send(&format!("{reply}\r\n"));
    }
}

/// Writes `data` to a new file `name` as cp does, and closes it.
fn cp(fs: &Fs, name: &str, data: &[u8]) -> Result<(), ftpsfs::fs::Error> {
    let flags = OpenFlags {
        write: true,
        truncate: true,
        ..OpenFlags::default()
    };
    let (_, fh) = fs.create(ROOT_INO, name.as_bytes(), 0o644, flags)?;
    let mut written = Ok(());
    for (i, chunk) in data.chunks(128 * 1024).enumerate() {
        if let Err(e) = fs.write(fh, (i * 128 * 1024) as u64, chunk) {
            written = Err(e);
            break;
        }
    }
    let flushed = fs.flush(fh);
    let released = fs.release(fh);
    written.and(flushed).and(released)
}

/// After a real upload, a size reply that is garbage, negative, larger than
/// what was sent or past what a file can hold, and a digest reply for
/// another algorithm than asked, are never taken as success: close fails
/// with EIO and nothing is left under the name. True replies pass (and the
/// digest is asked: the check is not skipped).
#[test]
fn hostile_size_and_hash_replies_after_an_upload_are_never_a_success() {
    let server = FakeServer::start(lying_checks);
    let (fs, _spool) = fs_over(&server);
    let small: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    // 1 MiB or more: checked by digest too.
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i * 13) as u8).collect();
    cp(&fs, "right-small.bin", &small).expect("true replies pass");
    cp(&fs, "right-big.bin", &big).expect("true replies pass");
    assert!(
        server.received().iter().any(|c| c.starts_with("HASH ")),
        "the digest is asked: {:?}",
        server.received()
    );
    for (name, data) in [
        ("garbage.bin", &small),
        ("negative.bin", &small),
        ("larger.bin", &small),
        ("huge.bin", &small),
        ("larger-big.bin", &big),
        ("sha1-big.bin", &big),
    ] {
        let err = cp(&fs, name, data).expect_err(name);
        assert_eq!(err.errno(), libc::EIO, "{name}: {err}");
        let held: Vec<String> = HELD.lock().unwrap().keys().cloned().collect();
        assert!(
            !held.iter().any(|n| n.contains(name)),
            "{name} left on the server: {held:?}"
        );
    }
}
