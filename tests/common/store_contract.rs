//! What every `RemoteStore` must do, checked through the trait alone, so the
//! in-memory store the core is tested against behaves like the real servers.
use std::time::{Duration, UNIX_EPOCH};

use ftpsfs::store::{ErrorKind, FileKind, RemoteStore};

use super::data;

pub fn read_all(store: &dyn RemoteStore, path: &[u8], offset: u64) -> Vec<u8> {
    let mut stream = store.open_read(path, offset).expect("open_read");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 100_000];
    loop {
        let n = stream.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(stream.position(), offset + out.len() as u64);
    out
}

pub fn write_file(store: &dyn RemoteStore, path: &[u8], bytes: &[u8]) {
    let mut upload = store.upload(path).expect("upload");
    for chunk in bytes.chunks(64 * 1024) {
        upload.write(chunk).expect("write");
    }
    upload.finish().expect("finish");
}

fn kind_of(result: ftpsfs::store::Result<()>) -> ErrorKind {
    result.expect_err("should fail").kind
}

/// Every operation of the trait, with the error kinds the core relies on.
pub fn run_all(store: &dyn RemoteStore) {
    files(store);
    directories(store);
    renames(store);
    attributes(store);
    refused_names(store);
}

fn files(store: &dyn RemoteStore) {
    let body = data::bytes(300_001, 11);
    write_file(store, b"file.bin", &body);
    let meta = store.stat(b"file.bin").unwrap();
    assert_eq!((meta.kind, meta.size), (FileKind::File, body.len() as u64));
    assert_eq!(read_all(store, b"file.bin", 0), body);
    assert_eq!(read_all(store, b"file.bin", 123_457), body[123_457..]);
    assert_eq!(read_all(store, b"file.bin", body.len() as u64), b"");

    let mut append = store.append(b"file.bin").unwrap();
    append.write(b"tail").unwrap();
    append.finish().unwrap();
    assert_eq!(store.stat(b"file.bin").unwrap().size, body.len() as u64 + 4);

    write_file(store, b"file.bin", b"short");
    assert_eq!(read_all(store, b"file.bin", 0), b"short", "upload replaces");
    write_file(store, b"empty", b"");
    assert_eq!(store.stat(b"empty").unwrap().size, 0);

    store.delete(b"file.bin").unwrap();
    assert_eq!(
        store.stat(b"file.bin").unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(kind_of(store.delete(b"file.bin")), ErrorKind::NotFound);
    // Some servers accept RETR of a missing file and fail it afterwards: the
    // error may come at the first read instead of at open.
    let missing = store
        .open_read(b"missing", 0)
        .and_then(|mut s| s.read(&mut [0u8; 16]));
    assert_eq!(missing.err().map(|e| e.kind), Some(ErrorKind::NotFound));
    store.delete(b"empty").unwrap();
}

fn directories(store: &dyn RemoteStore) {
    store.mkdir(b"d").unwrap();
    assert_eq!(kind_of(store.mkdir(b"d")), ErrorKind::AlreadyExists);
    assert_eq!(kind_of(store.mkdir(b"no/such/parent")), ErrorKind::NotFound);
    store.mkdir(b"d/sub dir").unwrap();
    write_file(store, b"d/sub dir/.hidden", b"h");
    write_file(store, b"d/a", b"aa");
    let mut names: Vec<(Vec<u8>, FileKind, u64)> = store
        .list(b"d")
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.meta.kind, e.meta.size))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        names,
        vec![
            (b"a".to_vec(), FileKind::File, 2),
            (b"sub dir".to_vec(), FileKind::Dir, names[1].2)
        ]
    );
    assert_eq!(store.list(b"d/sub dir").unwrap()[0].name, b".hidden");
    assert_eq!(store.stat(b"d").unwrap().kind, FileKind::Dir);
    assert_eq!(store.stat(b"").unwrap().kind, FileKind::Dir);

    assert_eq!(kind_of(store.rmdir(b"d/sub dir")), ErrorKind::NotEmpty);
    assert_eq!(kind_of(store.rmdir(b"nothing here")), ErrorKind::NotFound);
    store.delete(b"d/sub dir/.hidden").unwrap();
    store.rmdir(b"d/sub dir").unwrap();
    store.delete(b"d/a").unwrap();
    store.rmdir(b"d").unwrap();
    assert!(store.list(b"").unwrap().iter().all(|e| e.name != b"d"));
}

fn renames(store: &dyn RemoteStore) {
    write_file(store, b"old", b"old content");
    write_file(store, b"target", b"to be replaced");
    store.rename(b"old", b"target").unwrap();
    assert_eq!(
        read_all(store, b"target", 0),
        b"old content",
        "rename replaces a file"
    );
    assert_eq!(store.stat(b"old").unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(kind_of(store.rename(b"old", b"x")), ErrorKind::NotFound);

    store.mkdir(b"dir1").unwrap();
    write_file(store, b"dir1/inside", b"i");
    store.rename(b"dir1", b"dir2").unwrap();
    assert_eq!(
        read_all(store, b"dir2/inside", 0),
        b"i",
        "a directory moves with its content"
    );
    store.delete(b"dir2/inside").unwrap();
    store.rmdir(b"dir2").unwrap();
    store.delete(b"target").unwrap();
}

fn attributes(store: &dyn RemoteStore) {
    write_file(store, b"attrs", b"x");
    let caps = store.capabilities();
    if caps.set_mtime {
        // Works, or the store finds out the server cannot and says so.
        let when = UNIX_EPOCH + Duration::from_secs(1_234_567_890);
        // A server may refuse a directory's time (vsftpd does) and still set
        // files' times: that refusal must not turn the capability off.
        store.mkdir(b"timed dir").unwrap();
        if let Err(e) = store.set_mtime(b"timed dir", when) {
            assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
        }
        store.rmdir(b"timed dir").unwrap();
        match store.set_mtime(b"attrs", when) {
            Ok(()) => assert_eq!(store.exact_mtime(b"attrs").unwrap(), when),
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
                assert!(!store.capabilities().set_mtime, "the store remembers");
            }
        }
    }
    if caps.chmod {
        store.chmod(b"attrs", 0o640).unwrap();
        let listed = store
            .list(b"")
            .unwrap()
            .into_iter()
            .find(|e| e.name == b"attrs")
            .unwrap();
        // Servers that report modes (LIST, MLSD with UNIX.mode) show the new one.
        if let Some(mode) = listed.meta.mode {
            assert_eq!(mode & 0o777, 0o640);
        }
    }
    store.delete(b"attrs").unwrap();
}

fn refused_names(store: &dyn RemoteStore) {
    for name in [&b"a\r\nDELE b"[..], b"a\nb"] {
        assert_eq!(kind_of(store.delete(name)), ErrorKind::InvalidInput);
        assert_eq!(
            store.upload(name).err().map(|e| e.kind),
            Some(ErrorKind::InvalidInput)
        );
    }
}
