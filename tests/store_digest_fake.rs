//! The FTPS store's `size` and `digest` against a scripted server (plain
//! FTP on loopback) that offers SIZE, HASH with RANG, XSHA256 and XCRC, and
//! answers some files with garbage: which command is chosen for what, and
//! that no garbage passes as a size or a digest.
mod common;

use common::fake::{plain_store, Conn, FakeServer};
use ftpsfs::digest::to_hex;
use ftpsfs::store::{DigestAlgorithm, DigestSet, ErrorKind, RemoteStore};

/// The content of every file the script knows (all are "abc").
const CONTENT: &[u8] = b"abc";

fn hex(algorithm: DigestAlgorithm, data: &[u8]) -> String {
    to_hex(&algorithm.digest(data).unwrap())
}

fn digest_server(c: &mut Conn) {
    c.send("220 fake\r\n");
    let mut selected = DigestAlgorithm::Sha1;
    let mut range: Option<(usize, usize)> = None;
    while let Some(line) = c.recv() {
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        let reply = match verb.to_ascii_uppercase().as_str() {
            "USER" => "331 ok".to_string(),
            "PASS" => "230 ok".to_string(),
            "TYPE" | "NOOP" => "200 ok".to_string(),
            "FEAT" => "211-Features:\r\n SIZE\r\n HASH SHA-1*;SHA-256;CRC32\r\n RANG STREAM\r\n XSHA256\r\n XCRC\r\n211 End".to_string(),
            "QUIT" => {
                c.send("221 bye\r\n");
                return;
            }
            "OPTS" => match arg.strip_prefix("HASH ").and_then(DigestAlgorithm::from_hash_name) {
                Some(a) => {
                    selected = a;
                    format!("200 {}", a.hash_name())
                }
                None => "501 unknown".to_string(),
            },
            "RANG" => {
                let (a, b) = arg.split_once(' ').unwrap();
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                range = (a <= b).then_some((a, b + 1));
                "350 ok".to_string()
            }
            "HASH" => {
                let (start, end) = range.unwrap_or((0, CONTENT.len()));
                let data = &CONTENT[start..end];
                let digest = hex(selected, data);
                let span = format!("{start}-{}", end - 1);
                match arg {
                    "wrong" => format!("213 SHA-1 {span} {} wrong", hex(DigestAlgorithm::Sha1, data)),
                    "short" => format!("213 {} {span} {} short", selected.hash_name(), &digest[2..]),
                    "missing" => "550 missing: No such file or directory".to_string(),
                    _ => format!(
                        "213-Computing\r\n213 {} {span} {digest} {arg}",
                        selected.hash_name()
                    ),
                }
            }
            "XSHA256" | "XCRC" => {
                let algorithm = DigestAlgorithm::from_x_command(verb).unwrap();
                let words: Vec<&str> = arg.split(' ').collect();
                let (start, end) = match words[..] {
                    [_, s, e] => (s.parse().unwrap(), e.parse().unwrap()),
                    _ => (0, CONTENT.len()),
                };
                format!(
                    "250-Computing\r\n250 {}",
                    hex(algorithm, &CONTENT[start..end]).to_uppercase()
                )
            }
            "SIZE" => match arg {
                "negative" => "213 -1".to_string(),
                "garbage" => "213 about 3 bytes".to_string(),
                "dir" => "550 dir: not a regular file".to_string(),
                _ => format!("213 {}", CONTENT.len()),
            },
            _ => "502 not here".to_string(),
        };
        c.send(&format!("{reply}\r\n"));
    }
}

#[test]
fn sizes_are_numbers_or_errors() {
    let server = FakeServer::start(digest_server);
    let store = plain_store(&server);
    assert_eq!(store.size(b"f").unwrap(), 3);
    for garbage in [&b"negative"[..], b"garbage"] {
        let err = store.size(garbage).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Failed, "{err}");
        assert!(err.message.contains("not a size"), "{err}");
    }
    assert_eq!(store.size(b"dir").unwrap_err().kind, ErrorKind::NotFound);
    assert!(server.received().contains(&"SIZE f".to_string()));
}

#[test]
fn digests_by_the_command_that_fits() {
    use DigestAlgorithm::*;
    let server = FakeServer::start(digest_server);
    let store = plain_store(&server);
    assert_eq!(
        store.capabilities().digests,
        DigestSet::of(&[Sha256, Sha1, Crc32])
    );
    // Whole files by HASH, after selecting the algorithm.
    assert_eq!(
        store.digest(b"f", Sha256, None).unwrap(),
        Sha256.digest(CONTENT).unwrap()
    );
    let sent = server.received();
    let opts = sent
        .iter()
        .position(|c| c == "OPTS HASH SHA-256")
        .expect("OPTS HASH");
    assert_eq!(sent[opts + 1], "HASH f");
    // A range by the X command (no session state to reset).
    assert_eq!(
        store.digest(b"f", Sha256, Some((1, 3))).unwrap(),
        Sha256.digest(b"bc").unwrap()
    );
    assert!(server.received().contains(&"XSHA256 f 1 3".to_string()));
    assert_eq!(
        store.digest(b"f", Crc32, Some((0, 3))).unwrap(),
        Crc32.digest(CONTENT).unwrap()
    );
    // A path with a space: HASH with RANG (the X commands split at spaces),
    // and the range reset after.
    assert_eq!(
        store.digest(b"a b", Sha256, Some((1, 3))).unwrap(),
        Sha256.digest(b"bc").unwrap()
    );
    let sent = server.received();
    let rang = sent.iter().position(|c| c == "RANG 1 2").expect("RANG");
    assert_eq!(sent[rang + 1..rang + 3], ["HASH a b", "RANG 1 0"]);
    assert!(!sent.iter().any(|c| c.starts_with("XSHA256 a b")));
    // SHA-1 by HASH (selected again), and a range of it by HASH + RANG,
    // as no XSHA1 is offered.
    assert_eq!(
        store.digest(b"f", Sha1, None).unwrap(),
        Sha1.digest(CONTENT).unwrap()
    );
    assert_eq!(
        store.digest(b"f", Sha1, Some((0, 2))).unwrap(),
        Sha1.digest(b"ab").unwrap()
    );
    assert!(server.received().contains(&"RANG 0 1".to_string()));
}

#[test]
fn no_garbage_passes_as_a_digest() {
    use DigestAlgorithm::*;
    let server = FakeServer::start(digest_server);
    let store = plain_store(&server);
    let kind =
        |path: &[u8], algorithm, range| store.digest(path, algorithm, range).unwrap_err().kind;
    assert_eq!(
        kind(b"wrong", Sha256, None),
        ErrorKind::Failed,
        "another algorithm"
    );
    assert_eq!(kind(b"short", Sha256, None), ErrorKind::Failed, "too short");
    assert_eq!(kind(b"missing", Sha256, None), ErrorKind::NotFound);
    assert_eq!(kind(b"f", Md5, None), ErrorKind::Unsupported, "not offered");
    assert_eq!(kind(b"f", Sha256, Some((2, 2))), ErrorKind::InvalidInput);
}
