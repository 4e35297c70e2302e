//! The store's primitives for transfers that cost what changed, survive a
//! cut and are checked (issue 11), against each real server: `size`,
//! `upload_at` (REST + STOR) and what the probe finds it does, `digest`
//! (HASH or XSHA256 and kin) compared with one computed here. What each
//! server does is stated in its test, and in README.md's "Servers" table.
mod common;

use std::path::Path;
use std::sync::Arc;

use common::script_server::ScriptServer;
use common::store_contract::{read_all, write_file};
use common::vsftpd::Vsftpd;
use common::ServerInfo;
use ftpsfs::ftp::{Connector, Pool, PoolSettings};
use ftpsfs::store::ftps::FtpsStore;
use ftpsfs::store::{DigestAlgorithm, DigestSet, ErrorKind, RemoteStore, StoreAtOffset};

fn store(info: &ServerInfo) -> FtpsStore {
    let pool = Arc::new(Pool::new(
        Connector::new(info.config()).unwrap(),
        PoolSettings::default(),
    ));
    FtpsStore::connect(pool, b"").expect("store")
}

/// Names in a directory on disk that are ours (a probe left behind).
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".ftpsfs-"))
        .collect()
}

/// SIZE of a file as the server has it now, of a missing path, of a
/// directory.
fn sizes(store: &FtpsStore, root: &Path) {
    let body = common::data::bytes(300_001, 11);
    write_file(store, b"sized.bin", &body);
    assert_eq!(store.size(b"sized.bin").unwrap(), 300_001);
    // Changed behind the store's back: the server's size, not a cache's.
    std::fs::write(root.join("sized.bin"), b"shorter").unwrap();
    assert_eq!(store.size(b"sized.bin").unwrap(), 7);
    let missing = store.size(b"no-such-file").unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");
    store.mkdir(b"a dir").unwrap();
    let dir = store.size(b"a dir").unwrap_err();
    assert_eq!(dir.kind, ErrorKind::NotFound, "{dir}");
    store.rmdir(b"a dir").unwrap();
}

/// Probes (once: a second call costs nothing), leaves no probe file (its
/// DELE may come a moment after the answer), and
/// `upload_at` does what the probe said.
fn probe_and_patch(store: &FtpsStore, root: &Path) -> StoreAtOffset {
    let found = store.store_at_offset(b"");
    assert_ne!(found, StoreAtOffset::Unknown, "the probe should tell");
    // Its DELE goes after the answer, on a thread of its own.
    assert!(
        common::mount::wait_until(10, || leftovers(root).is_empty()),
        "{:?}",
        leftovers(root)
    );
    let before = store.pool().connector().stats().snapshot();
    assert_eq!(store.store_at_offset(b""), found);
    let after = store.pool().connector().stats().snapshot();
    assert_eq!(
        after.commands, before.commands,
        "remembered, not probed again"
    );

    write_file(store, b"patched", b"0123456789");
    let patched = store.upload_at(b"patched", 3).and_then(|mut up| {
        up.write(b"XY")?;
        up.finish()
    });
    let on_disk = std::fs::read(root.join("patched")).unwrap();
    match found {
        StoreAtOffset::InPlace => {
            patched.unwrap();
            assert_eq!(on_disk, b"012XY56789");
        }
        StoreAtOffset::Truncates => {
            patched.unwrap();
            assert_eq!(on_disk, b"012XY");
        }
        StoreAtOffset::Refused => {
            let err = patched.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
            assert_eq!(on_disk, b"0123456789", "nothing changed");
        }
        StoreAtOffset::Unknown => unreachable!(),
    }
    // Offset 0 is a plain STOR: the file is replaced.
    let mut whole = store.upload_at(b"patched", 0).unwrap();
    whole.write(b"new").unwrap();
    whole.finish().unwrap();
    assert_eq!(std::fs::read(root.join("patched")).unwrap(), b"new");
    found
}

fn local(algorithm: DigestAlgorithm, data: &[u8]) -> Vec<u8> {
    algorithm.digest(data).expect("computable here")
}

/// Every offered algorithm that can be computed here, on a whole file and
/// (where `ranges`) on a range, equals the local digest; where not, a range
/// is Unsupported. A missing file is NotFound.
fn digests_match(store: &FtpsStore, name: &[u8], ranges: bool) {
    let body = common::data::bytes(1_000_003, 5);
    write_file(store, name, &body);
    let offered = store.capabilities().digests;
    assert!(offered.contains(DigestAlgorithm::Sha256), "{offered:?}");
    for algorithm in offered.iter().filter(|a| a.is_local()) {
        let whole = store.digest(name, algorithm, None).unwrap();
        assert_eq!(
            whole,
            local(algorithm, &body),
            "{algorithm} of the whole file"
        );
        let range = store.digest(name, algorithm, Some((1000, 700_000)));
        match range {
            Ok(digest) if ranges => {
                assert_eq!(
                    digest,
                    local(algorithm, &body[1000..700_000]),
                    "{algorithm}"
                )
            }
            Err(e) if !ranges => assert_eq!(e.kind, ErrorKind::Unsupported, "{e}"),
            other => panic!("{algorithm} of a range: {other:?}"),
        }
    }
    let missing = store
        .digest(b"no-such-file", DigestAlgorithm::Sha256, None)
        .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");
    // After a ranged HASH the session's range was reset: a whole download.
    assert_eq!(read_all(store, name, 0), body);
}

#[test]
fn vsftpd_sizes_patches_in_place_and_has_no_digests() {
    let server = Vsftpd::start(&[]);
    let store = store(&server.info);
    sizes(&store, &server.info.root);
    assert_eq!(
        probe_and_patch(&store, &server.info.root),
        StoreAtOffset::InPlace
    );
    let caps = store.capabilities();
    assert!(caps.digests.is_empty() && caps.append, "{caps:?}");
    write_file(&store, b"f", b"x");
    let err = store
        .digest(b"f", DigestAlgorithm::Sha256, None)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
}

#[test]
fn proftpd_refuses_rest_stor_by_default() {
    let server = ScriptServer::start("proftpd-test-server", &[]);
    assert_eq!(server.env["FTPS_STORE_RESTART"], "no");
    let store = store(&server.info);
    sizes(&store, &server.info.root);
    assert_eq!(
        probe_and_patch(&store, &server.info.root),
        StoreAtOffset::Refused
    );
    assert!(store.capabilities().digests.is_empty());
    // APPE falls under the same directive: "451 Append/Restart not
    // permitted", every time. The store says Unsupported, so the core
    // replaces appended files whole instead of retrying for --retry-time.
    write_file(&store, b"log", b"head");
    let err = store.append(b"log").map(|_| ()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
}

/// With `AllowStoreRestart on`, ProFTPD 1.3.8 writes in place as vsftpd.
#[test]
fn proftpd_with_allow_store_restart_writes_in_place() {
    let server = ScriptServer::start("proftpd-test-server", &["--allow-store-restart"]);
    assert_eq!(server.env["FTPS_STORE_RESTART"], "yes");
    let store = store(&server.info);
    sizes(&store, &server.info.root);
    assert_eq!(
        probe_and_patch(&store, &server.info.root),
        StoreAtOffset::InPlace
    );
}

#[test]
fn proftpd_with_mod_digest() {
    let server = ScriptServer::start("proftpd-test-server", &["--digest"]);
    assert_eq!(server.env["FTPS_DIGEST"], "yes");
    let store = store(&server.info);
    let offered = store.capabilities().digests;
    assert_eq!(offered, DigestSet::of(&DigestAlgorithm::ALL));
    digests_match(&store, b"digested.bin", true);
    // HASH carries the spaces but ignores RANG (ProFTPD 1.3.8); XSHA256
    // splits its arguments at spaces: whole files only.
    digests_match(&store, b"name with spaces.bin", false);
    // Ranges go to the X commands, which know no MD5 here either.
    let md5 = store.digest(b"digested.bin", DigestAlgorithm::Md5, None);
    assert_eq!(
        md5.unwrap().len(),
        16,
        "the server computes it, we cannot check it"
    );
}

/// Pure-FTPd 1.0.50: the file ends where the write ended (012XY); no
/// digest commands.
#[test]
fn pure_ftpd_truncates_at_the_end_of_the_write() {
    let server = ScriptServer::start("pure-ftpd-test-server", &[]);
    let store = store(&server.info);
    sizes(&store, &server.info.root);
    assert_eq!(
        probe_and_patch(&store, &server.info.root),
        StoreAtOffset::Truncates
    );
    assert!(store.capabilities().digests.is_empty());
}

/// pyftpdlib 1.5.7: in place, as vsftpd; no digest commands.
#[test]
fn pyftpdlib_writes_in_place() {
    let server = ScriptServer::start("pyftpdlib-test-server", &[]);
    let store = store(&server.info);
    sizes(&store, &server.info.root);
    assert_eq!(
        probe_and_patch(&store, &server.info.root),
        StoreAtOffset::InPlace
    );
    assert!(store.capabilities().digests.is_empty());
}

/// The commands in a script server's protocol log since line `from`
/// (ProFTPD logs "COMMAND args -> code").
fn logged_since(server: &ScriptServer, from: usize) -> Vec<String> {
    // Read as the server writes it; lines are whole once the reply went out.
    let log = std::fs::read_to_string(&server.env["FTPS_LOG"]).unwrap_or_default();
    log.lines().skip(from).map(str::to_string).collect()
}

/// A segment of a segmented read, on ProFTPD (FEAT: `RANG STREAM`): RANG
/// instead of REST. A range of whole 64 KiB units (segments end at
/// multiples of 64 KiB: `fs::segmented`) the server ends itself: the
/// stream ends there with the right bytes, the transfer completes without
/// ABOR, and the range does not stick to the session's next download. A
/// range of any other length ProFTPD 1.3.8 runs on past its end (to the
/// end of the file): the stream then reads on as a plain download, never
/// losing or doubling a byte, and the caller ends it by ABOR.
#[test]
fn proftpd_ends_a_segment_at_its_end_with_rang() {
    let server = ScriptServer::start("proftpd-test-server", &[]);
    let pool = Arc::new(Pool::new(
        Connector::new(server.info.config()).unwrap(),
        PoolSettings {
            max_sessions: 1,
            ..PoolSettings::default()
        },
    ));
    let store = FtpsStore::connect(pool, b"").expect("store");
    let body = common::data::bytes(3_000_001, 12);
    write_file(&store, b"seg.bin", &body);
    let verbs_since = |mark: usize| -> Vec<String> {
        logged_since(&server, mark)
            .iter()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|verb| !["EPSV", "PASV", "TYPE"].contains(verb))
            .map(str::to_string)
            .collect()
    };

    let mark = logged_since(&server, 0).len();
    let (start, end) = (1_048_576usize, 1_048_576 + 16 * 65_536);
    let mut stream = store
        .open_read_segment(b"seg.bin", start as u64, Some(end as u64), true)
        .expect("open")
        .expect("a session");
    assert_eq!(stream.range_end(), Some(end as u64));
    let got = drain(&mut *stream);
    assert_eq!(got.len(), end - start, "the stream ends at the range's end");
    assert!(got == body[start..end], "the segment's bytes");
    drop(stream);
    let whole = read_all(&store, b"seg.bin", 0);
    assert!(whole == body, "the next download is the whole file");
    let commands = logged_since(&server, mark);
    assert_eq!(verbs_since(mark), ["RANG", "RETR", "RETR"], "{commands:#?}");
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("RANG 1048576 2097151 -> 350")),
        "{commands:#?}"
    );

    // Not whole units: ProFTPD sends on; every byte still comes once.
    let mark = logged_since(&server, 0).len();
    let (start, end) = (1_000_003usize, 2_500_000usize);
    let mut stream = store
        .open_read_segment(b"seg.bin", start as u64, Some(end as u64), true)
        .expect("open")
        .expect("a session");
    let mut got = vec![0u8; end - start];
    let mut at = 0;
    while at < got.len() {
        let n = stream.read(&mut got[at..]).expect("read");
        assert!(n > 0, "ended at {at} of {}", got.len());
        at += n;
    }
    assert!(got == body[start..end], "the segment's bytes");
    assert_eq!(stream.range_end(), None, "read on as a plain download");
    let rest = drain(&mut *stream);
    assert!(rest == body[end..], "the rest of the file, once");
    drop(stream);
    let commands = logged_since(&server, mark);
    assert_eq!(verbs_since(mark), ["RANG", "RETR"], "{commands:#?}");
}

/// Without RANG (vsftpd), a segment's stream is a plain REST + RETR that
/// reads on past the segment's end: the caller drops it there.
#[test]
fn vsftpd_reads_a_segment_with_rest() {
    let server = Vsftpd::start(&[]);
    let store = store(&server.info);
    let body = common::data::bytes(300_000, 13);
    write_file(&store, b"seg.bin", &body);
    let mut stream = store
        .open_read_segment(b"seg.bin", 1000, Some(2000), true)
        .expect("open")
        .expect("a session");
    assert_eq!(stream.range_end(), None);
    assert!(drain(&mut *stream) == body[1000..], "read on to the end");
}

/// Everything a stream gives until it ends.
fn drain(stream: &mut dyn ftpsfs::store::ReadStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 100_000];
    loop {
        match stream.read(&mut buf).expect("read") {
            0 => return out,
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}
