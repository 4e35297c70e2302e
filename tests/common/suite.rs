//! The protocol client's tests, written once and run against every real
//! server (vsftpd, the in-process server). Each asserts what a user would
//! check: the bytes on the server's disk, the listing, the error's words.
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ftpsfs::ftp::listing::EntryKind;
use ftpsfs::ftp::{Connector, DataMode, Error, FtpConfig, Kind, Session};

use super::data;
use super::ServerInfo;

pub fn connect(config: FtpConfig) -> (Arc<Connector>, Session) {
    let connector = Connector::new(config).expect("connector");
    let session = connector.connect().expect("log in");
    (connector, session)
}

pub fn upload(session: &mut Session, path: &str, bytes: &[u8]) {
    let mut upload = session.stor(path.as_bytes()).expect("STOR accepted");
    for chunk in bytes.chunks(256 * 1024) {
        upload.write_all(chunk).expect("write upload data");
    }
    upload.finish().expect("upload complete");
}

pub fn download(session: &mut Session, path: &str, offset: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut download = session
        .retr(path.as_bytes(), offset, None)
        .expect("RETR accepted");
    download.read_to_end(&mut out).expect("read download");
    download.finish().expect("download complete");
    out
}

/// Upload, list, size, download: the bytes on disk and back are the same.
pub fn round_trip(info: &ServerInfo, config: FtpConfig) {
    let (_, mut session) = connect(config);
    let body = data::bytes(131_073, 1);
    upload(&mut session, "round trip.bin", &body);
    assert_eq!(
        std::fs::read(info.root.join("round trip.bin")).unwrap(),
        body
    );
    assert_eq!(session.size(b"round trip.bin").unwrap(), body.len() as u64);
    assert_eq!(download(&mut session, "round trip.bin", 0), body);
    let entries = session.list_dir(b"").expect("list");
    let entry = entries
        .iter()
        .find(|e| e.name == b"round trip.bin")
        .unwrap_or_else(|| panic!("uploaded file not listed: {entries:?}"));
    assert_eq!(entry.kind, EntryKind::File);
    assert_eq!(entry.size, Some(body.len() as u64));
    session.noop().expect("session still in step");
}

/// Ten uploads in a row on one session: every data connection must resume
/// the control connection's TLS session (vsftpd refuses it otherwise).
pub fn ten_uploads_resume_tls(info: &ServerInfo, config: FtpConfig) {
    let (connector, mut session) = connect(config);
    let before = connector.stats().snapshot();
    for i in 0..10 {
        let body = data::bytes(1000 + i, i as u64);
        let name = format!("small-{i}.bin");
        upload(&mut session, &name, &body);
        assert_eq!(
            std::fs::read(info.root.join(&name)).unwrap(),
            body,
            "{name}"
        );
    }
    let after = connector.stats().snapshot();
    assert_eq!(after.data_connections - before.data_connections, 10);
    assert_eq!(
        after.resumed_handshakes - before.resumed_handshakes,
        10,
        "every data connection resumed: {after:?}"
    );
    assert_eq!(
        after.full_handshakes, before.full_handshakes,
        "no full data handshakes"
    );
}

/// A large upload and download, checked by SHA-256 on both sides.
pub fn large_transfer(info: &ServerInfo, config: FtpConfig, size: usize) {
    let (_, mut session) = connect(config);
    let body = data::bytes(size, 7);
    let expected = data::sha256(&body);
    upload(&mut session, "large.bin", &body);
    let on_disk = std::fs::read(info.root.join("large.bin")).unwrap();
    assert_eq!(data::sha256(&on_disk), expected, "bytes on the server");
    let mut download = session.retr(b"large.bin", 0, Some(size as u64)).unwrap();
    let mut back = Vec::with_capacity(size);
    download.read_to_end(&mut back).unwrap();
    assert_eq!(download.finish().unwrap(), size as u64);
    assert_eq!(data::sha256(&back), expected, "bytes downloaded");
}

/// REST+RETR at several offsets, reading all or abandoning part-way; the
/// session stays usable after each abort.
pub fn ranged_reads(info: &ServerInfo, config: FtpConfig) {
    let (_, mut session) = connect(config);
    let body = data::bytes(3 * 1024 * 1024 + 17, 3);
    std::fs::write(info.root.join("ranged.bin"), &body).unwrap();
    for offset in [0usize, 1, 4095, 4096, 1_000_000, body.len() - 1, body.len()] {
        assert_eq!(
            download(&mut session, "ranged.bin", offset as u64),
            body[offset..],
            "offset {offset}"
        );
    }
    for offset in [0usize, 65_536, 2_000_000] {
        let mut download = session.retr(b"ranged.bin", offset as u64, None).unwrap();
        let mut part = vec![0u8; 10_000];
        download.read_exact(&mut part).unwrap();
        assert_eq!(part, body[offset..offset + 10_000]);
        download.abort();
        session.noop().expect("session usable after ABOR");
        assert!(!session.is_broken());
    }
    // Dropping an unfinished download aborts it too.
    {
        let mut download = session.retr(b"ranged.bin", 0, None).unwrap();
        let mut part = vec![0u8; 100];
        download.read_exact(&mut part).unwrap();
    }
    assert_eq!(session.size(b"ranged.bin").unwrap(), body.len() as u64);
}

/// A server that ends a download early is reported, not taken as success.
pub fn short_download_is_an_error(info: &ServerInfo, config: FtpConfig) {
    let (_, mut session) = connect(config);
    std::fs::write(info.root.join("short.bin"), data::bytes(1000, 9)).unwrap();
    let mut download = session.retr(b"short.bin", 0, Some(2000)).unwrap();
    let mut out = Vec::new();
    download.read_to_end(&mut out).unwrap();
    let err = download.finish().expect_err("short transfer");
    assert!(
        err.to_string()
            .contains("1000 bytes where 2000 were expected"),
        "{err}"
    );
    session.noop().unwrap();
}

/// MKD, RNFR/RNTO, APPE, SITE CHMOD, MDTM (read and set), DELE, RMD.
pub fn file_commands(info: &ServerInfo, config: FtpConfig) {
    let (_, mut session) = connect(config);
    let root = &info.root;
    session.mkdir(b"dir one").unwrap();
    assert!(root.join("dir one").is_dir());
    upload(&mut session, "dir one/a.txt", b"hello ");
    let mut append = session.appe(b"dir one/a.txt").unwrap();
    append.write_all(b"world").unwrap();
    append.finish().unwrap();
    assert_eq!(
        std::fs::read(root.join("dir one/a.txt")).unwrap(),
        b"hello world"
    );

    session.rename(b"dir one/a.txt", b"dir one/b.txt").unwrap();
    assert!(root.join("dir one/b.txt").exists() && !root.join("dir one/a.txt").exists());

    let mtime = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    session.set_mtime(b"dir one/b.txt", mtime).unwrap();
    assert_eq!(session.mdtm(b"dir one/b.txt").unwrap(), mtime);
    let on_disk = std::fs::metadata(root.join("dir one/b.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(on_disk, mtime);

    session.chmod(b"dir one/b.txt", 0o600).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("dir one/b.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let entries = session.list_dir(b"dir one").unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].name, b"b.txt");

    let not_empty = session.rmdir(b"dir one").expect_err("directory not empty");
    assert!(not_empty.code().is_some_and(|c| c >= 500), "{not_empty}");
    session.delete(b"dir one/b.txt").unwrap();
    session.rmdir(b"dir one").unwrap();
    assert!(!root.join("dir one").exists());

    let missing = session.delete(b"no such file").expect_err("missing file");
    assert_eq!(missing.kind(), Kind::NotFound, "{missing}");
    let missing = session
        .retr(b"no such file", 0, None)
        .err()
        .expect("RETR of a missing file");
    assert_eq!(missing.kind(), Kind::NotFound, "{missing}");
    session
        .noop()
        .expect("session still in step after refusals");
}

/// Dot files and names with spaces and unicode come back byte-exact.
pub fn listing_names(info: &ServerInfo, config: FtpConfig) {
    let (_, mut session) = connect(config);
    let names = [
        ".hidden",
        "with  two spaces",
        "ünïcødé ✓",
        "trailing space ",
    ];
    for name in names {
        std::fs::write(info.root.join(name), name.as_bytes()).unwrap();
    }
    std::fs::create_dir(info.root.join("sub dir")).unwrap();
    let entries = session.list_dir(b"").unwrap();
    for name in names {
        let entry = entries
            .iter()
            .find(|e| e.name == name.as_bytes())
            .unwrap_or_else(|| panic!("{name:?} not listed in {entries:?}"));
        assert_eq!(entry.size, Some(name.len() as u64));
        assert_eq!(entry.kind, EntryKind::File);
    }
    let dir = entries
        .iter()
        .find(|e| e.name == b"sub dir")
        .expect("dir listed");
    assert_eq!(dir.kind, EntryKind::Dir);
    assert!(!entries.iter().any(|e| e.name == b"." || e.name == b".."));
}

/// A name with CR or LF is refused before anything is sent.
pub fn crlf_refused(config: FtpConfig) {
    let (connector, mut session) = connect(config);
    let before = connector.stats().snapshot().commands;
    for name in [&b"evil\r\nDELE victim"[..], b"evil\nRMD x", b"a\rb"] {
        let err = session.delete(name).expect_err("refused");
        assert_eq!(err.kind(), Kind::InvalidInput, "{err}");
        assert!(session.stor(name).is_err());
        assert!(session.retr(name, 0, None).is_err());
    }
    assert_eq!(
        connector.stats().snapshot().commands,
        before,
        "nothing was sent"
    );
    session.noop().expect("session unaffected");
}

/// Without --ca-file the default roots (webpki-roots and the system store)
/// apply, and a certificate from the test's own CA is refused by them.
pub fn default_roots_refuse_a_private_ca(info: &ServerInfo) {
    let mut config = info.config();
    config.tls.ca_file = None;
    let err = Connector::new(config)
        .unwrap()
        .connect()
        .err()
        .expect("refused");
    assert_eq!(err.kind(), Kind::Tls, "{err}");
    assert!(err.to_string().contains("unknown authority"), "{err}");
}

pub fn wrong_ca_refused(info: &ServerInfo) {
    let mut config = info.config();
    config.tls.ca_file = Some(info.wrong_ca_file.clone());
    let err = Connector::new(config)
        .unwrap()
        .connect()
        .err()
        .expect("wrong CA refused");
    assert_eq!(err.kind(), Kind::Tls, "{err}");
    assert!(err.to_string().contains("unknown authority"), "{err}");
}

pub fn wrong_name_refused(info: &ServerInfo) {
    let mut config = info.config();
    config.tls.server_name = Some("wrong.example".into());
    let err = Connector::new(config)
        .unwrap()
        .connect()
        .err()
        .expect("wrong name refused");
    assert_eq!(err.kind(), Kind::Tls, "{err}");
    assert!(err.to_string().contains("name mismatch"), "{err}");
}

/// The server certificate pinned by SHA-256 is accepted without any CA; a
/// different pin is refused and the message shows the real fingerprint.
pub fn pinning(info: &ServerInfo, server_cert_der: &[u8]) {
    let digest = ring::digest::digest(&ring::digest::SHA256, server_cert_der);
    let mut pin = [0u8; 32];
    pin.copy_from_slice(digest.as_ref());
    let mut config = info.config();
    config.tls.ca_file = None;
    config.tls.pin_sha256 = Some(pin);
    let (_, mut session) = connect(config.clone());
    session
        .list_dir(b"")
        .expect("data connection under a pinned certificate");

    config.tls.pin_sha256 = Some([0xAB; 32]);
    let err = Connector::new(config)
        .unwrap()
        .connect()
        .err()
        .expect("wrong pin refused");
    let text = err.to_string();
    assert!(text.contains("does not match --pin-sha256"), "{text}");
    assert!(
        text.contains(&ftpsfs::ftp::tls::fingerprint(server_cert_der)),
        "{text}"
    );
}

/// With EPSV off, the address in the PASV reply (pointing elsewhere) is
/// ignored and the control connection's peer is used; trusting it fails.
pub fn pasv_address_ignored(info: &ServerInfo, config: FtpConfig) {
    let mut config = config;
    config.data_mode = DataMode::Passive {
        trust_pasv_address: false,
        epsv: false,
    };
    let (_, mut session) = connect(config.clone());
    upload(&mut session, "pasv.bin", b"through PASV");
    assert_eq!(
        std::fs::read(info.root.join("pasv.bin")).unwrap(),
        b"through PASV"
    );

    config.data_mode = DataMode::Passive {
        trust_pasv_address: true,
        epsv: false,
    };
    let (_, mut trusting) = connect(config);
    let err = trusting
        .list_dir(b"")
        .expect_err("advertised address is not the server");
    assert!(err.is_transient(), "{err}");
}

/// Active mode inside a port range: EPRT, the server connects to us, TLS as
/// the client all the same.
pub fn active_mode(info: &ServerInfo, config: FtpConfig, ports: std::ops::RangeInclusive<u16>) {
    let (_, mut passive) = connect(config.clone());
    let refused = passive
        .list_dir(b"")
        .expect_err("passive mode is off on this server");
    assert!(refused.to_string().contains("try active mode"), "{refused}");
    let mut config = config;
    config.data_mode = DataMode::Active {
        ports: Some(ports),
        advertise: None,
    };
    let (connector, mut session) = connect(config);
    let body = data::bytes(300_000, 5);
    upload(&mut session, "active.bin", &body);
    assert_eq!(std::fs::read(info.root.join("active.bin")).unwrap(), body);
    assert_eq!(download(&mut session, "active.bin", 0), body);
    let stats = connector.stats().snapshot();
    assert_eq!(stats.data_connections, 2);
    assert_eq!(stats.resumed_handshakes, 2);
}

/// A login with a wrong password is reported as such.
pub fn wrong_password(info: &ServerInfo) {
    let mut config = info.config();
    config.credentials.password = ftpsfs::ftp::Password::new("definitely-wrong");
    let err = Connector::new(config)
        .unwrap()
        .connect()
        .err()
        .expect("refused");
    assert_eq!(err.kind(), Kind::LoginFailed, "{err}");
    assert!(
        !err.to_string().contains("definitely-wrong"),
        "password in error: {err}"
    );
}

pub fn expect_transient(result: Result<(), Error>) {
    let err = result.expect_err("should fail");
    assert!(err.is_transient(), "{err}");
}
