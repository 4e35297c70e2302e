//! When our TLS close_notify goes out on a download's data connection (see
//! `ftp::server_family`), against the real servers it is chosen for: vsftpd
//! gets it with the end of the handshake and then answers a small download
//! in two round trips; pyftpdlib, which stops sending at it, gets it after
//! its own and still answers (bounded: short timeouts, so a download that
//! stalled fails the test instead of hanging it). And what is never
//! delivered as complete: a download shorter or longer than the size the
//! caller was told (a stale listing).
mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::script_server::ScriptServer;
use common::server::ServerInfo;
use common::vsftpd::Vsftpd;
use ftpsfs::ftp::config::Timeouts;
use ftpsfs::ftp::session::{retr_on, upload_on};
use ftpsfs::ftp::{Connector, FtpConfig, Pool, PoolSettings, StatsSnapshot};

const FILES: u64 = 6;
const SIZE: usize = 4096;

/// Short timeouts: a data connection that stalls fails within seconds.
fn bounded(info: &ServerInfo) -> FtpConfig {
    let mut config = info.config();
    config.timeouts = Timeouts {
        connect: Duration::from_secs(5),
        reply: Duration::from_secs(5),
        data_idle: Duration::from_secs(5),
    };
    config
}

/// Uploads `FILES` small files, downloads each once (a warm-up first), and
/// returns the client's counters over the downloads.
fn small_downloads(config: FtpConfig) -> StatsSnapshot {
    let connector = Connector::new(config).unwrap();
    let settings = PoolSettings {
        max_sessions: 1,
        ..PoolSettings::default()
    };
    let pool = Pool::new(connector, settings);
    let body = |i: u64| vec![b'a' + i as u8; SIZE];
    for i in 0..=FILES {
        let session = pool.get().unwrap();
        let mut upload = upload_on(session, "STOR", format!("f{i}").as_bytes()).unwrap();
        upload.write_all(&body(i)).unwrap();
        upload.finish().unwrap();
    }
    let get = |i: u64| {
        let session = pool.get().unwrap();
        let name = format!("f{i}");
        let mut download = retr_on(session, name.as_bytes(), 0, Some(SIZE as u64)).unwrap();
        let mut got = Vec::new();
        download.read_to_end(&mut got).unwrap();
        assert_eq!(download.finish().unwrap(), SIZE as u64);
        assert_eq!(got, body(i), "{name}");
    };
    get(FILES);
    let before = pool.connector().stats().snapshot();
    for i in 0..FILES {
        get(i);
    }
    let after = pool.connector().stats().snapshot();
    assert_eq!(
        after.data_set_up_ahead - before.data_set_up_ahead,
        FILES,
        "every download went out on the data connection set up ahead"
    );
    StatsSnapshot {
        round_trips: after.round_trips - before.round_trips,
        commands: after.commands - before.commands,
        ..after
    }
}

/// RETR with the ClientHello (150 and the server's handshake), then our
/// Finished with our close_notify (the data, vsftpd's close_notify and its
/// 226): two round trips. Sent after vsftpd's close_notify, ours would cost
/// a third, which the client counts (vsftpd holds its 226 for it).
#[test]
fn a_small_download_from_vsftpd_costs_two_round_trips() {
    for options in [&[][..], &["--tls12-only"][..]] {
        let server = Vsftpd::start(options);
        let counted = small_downloads(bounded(&server.info));
        assert_eq!(counted.round_trips, 2 * FILES, "{options:?}: {counted:?}");
        assert_eq!(
            counted.commands,
            2 * FILES,
            "RETR and the EPSV sent ahead: {counted:?}"
        );
    }
}

/// pyftpdlib breaks a download off at a close_notify that comes early (a
/// reset): it gets ours after its own, and every download completes within
/// the short timeouts.
#[test]
fn pyftpdlib_gets_the_close_notify_after_its_own_and_does_not_hang() {
    let server = ScriptServer::start("pyftpdlib-test-server", &[]);
    let counted = small_downloads(bounded(&server.info));
    assert_eq!(counted.round_trips, 2 * FILES, "{counted:?}");
}

/// The size the caller was told (a listing) is stale: the file shrank or
/// grew on the server. Neither download is delivered as complete.
#[test]
fn a_stale_size_is_never_a_complete_download() {
    let server = Vsftpd::start(&[]);
    let connector = Connector::new(bounded(&server.info)).unwrap();
    let mut session = connector.connect().unwrap();
    let mut upload = session.stor(b"changed").unwrap();
    upload.write_all(&[b'x'; SIZE]).unwrap();
    upload.finish().unwrap();
    for (told, what) in [(2 * SIZE, "cut short"), (SIZE / 2, "changed")] {
        let mut download = session.retr(b"changed", 0, Some(told as u64)).unwrap();
        let mut got = Vec::new();
        download.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), SIZE);
        let err = download
            .finish()
            .expect_err("not the size the caller was told");
        assert!(err.to_string().contains(what), "{told}: {err}");
        assert!(!session.is_broken(), "the session stays in step");
    }
    session.noop().expect("in step");
}
