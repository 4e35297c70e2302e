//! Commands sent without waiting for each reply, and the data connection of
//! the next transfer set up ahead (issue 12), against scripted servers that
//! answer in every order they may: REST refused with the RETR already on
//! its way, the reply to the EPSV sent ahead before the transfer's own, a
//! 425 for the connection set up ahead. And the round trips a small file
//! costs once warm, counted by the client (`Stats::round_trips`) against
//! the in-process FTPS server.
mod common;
#[path = "support/inproc.rs"]
mod inproc;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::fake::{plain_config, Conn, FakeServer};
use ftpsfs::ftp::session::{retr_on, upload_on};
use ftpsfs::ftp::{Connector, Pool, PoolSettings};
use inproc::InProcServer;

/// The verbs of `lines`, in order.
fn verbs(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.split(' ').next().unwrap_or("").to_ascii_uppercase())
        .collect()
}

/// Binds a passive listener and tells the client its port.
fn epsv(c: &mut Conn) -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    c.send(&format!("229 ok (|||{port}|)\r\n"));
    listener
}

/// Answers a RETR: `accepted` on the control connection, `body` on the
/// data connection, which is then closed, and 226.
fn send_file(c: &mut Conn, mut data: std::net::TcpStream, accepted: &str, body: &[u8]) {
    c.send(accepted);
    let _ = data.write_all(body);
    drop(data);
    c.send("226 done\r\n");
}

/// REST is refused; RETR, already sent with it, starts the whole file
/// (or, with `retr_refused`, is refused too).
fn refusing_rest(c: &mut Conn, retr_refused: bool) {
    c.send("220 fake\r\n");
    let mut passive = None;
    while let Some(line) = c.next_after_login() {
        match verbs(&[line])[0].as_str() {
            "EPSV" => passive = Some(epsv(c)),
            "REST" => c.send("502 REST not implemented\r\n"),
            "RETR" if retr_refused => c.send("550 no such file\r\n"),
            "RETR" => {
                let Some((data, _)) = passive.take().and_then(|l| l.accept().ok()) else {
                    c.send("425 no data connection\r\n");
                    continue;
                };
                send_file(c, data, "150 here is the whole file\r\n", b"0123456789");
            }
            "ABOR" => c.send("226 ABOR ok\r\n"),
            "NOOP" => c.send("200 noop\r\n"),
            _ => c.send("502 not here\r\n"),
        }
    }
}

fn refuses_rest(c: &mut Conn) {
    refusing_rest(c, false)
}

fn refuses_rest_and_retr(c: &mut Conn) {
    refusing_rest(c, true)
}

#[test]
fn a_refused_rest_never_makes_the_retr_sent_with_it_a_ranged_read() {
    let server = FakeServer::start(refuses_rest);
    let connector = Connector::new(plain_config(server.port)).unwrap();
    let mut session = connector.connect().unwrap();
    let err = session
        .retr(b"f", 5, None)
        .err()
        .expect("bytes from 0 are never handed out as bytes from 5");
    assert!(err.to_string().contains("REST 5"), "{err}");
    assert_eq!(err.code(), Some(502), "{err}");
    let sent = verbs(&server.received());
    let rest = sent.iter().position(|v| v == "REST").unwrap();
    assert_eq!(
        sent[rest..],
        ["REST", "RETR", "ABOR", "NOOP"],
        "the transfer the server started was abandoned: {sent:?}"
    );
    session.noop().expect("the session is in step");
    assert!(!session.is_broken());
}

#[test]
fn a_refused_rest_and_a_refused_retr_leave_the_session_in_step() {
    let server = FakeServer::start(refuses_rest_and_retr);
    let connector = Connector::new(plain_config(server.port)).unwrap();
    let mut session = connector.connect().unwrap();
    let err = session.retr(b"f", 5, None).err().expect("refused");
    assert!(err.to_string().contains("REST 5"), "{err}");
    session
        .noop()
        .expect("RETR's 550 was read, NOOP gets its own 200");
    assert!(!verbs(&server.received()).contains(&"ABOR".to_string()));
}

/// Answers REST only once the RETR behind it has arrived: a client that
/// waited for the 350 before sending RETR would wait until its timeout.
fn rest_answered_after_retr(c: &mut Conn) {
    c.send("220 fake\r\n");
    let mut passive = None;
    while let Some(line) = c.next_after_login() {
        match verbs(&[line])[0].as_str() {
            "EPSV" => passive = Some(epsv(c)),
            "REST" => {
                let Some(next) = c.recv() else { return };
                let listener = passive.take();
                let accepted = listener.and_then(|l| l.accept().ok());
                let (true, Some((data, _))) = (next.starts_with("RETR"), accepted) else {
                    c.send("503 RETR expected\r\n");
                    continue;
                };
                send_file(c, data, "350 ok\r\n150 go\r\n", b"56789");
            }
            _ => c.send("502 not here\r\n"),
        }
    }
}

#[test]
fn rest_and_retr_go_out_together() {
    let server = FakeServer::start(rest_answered_after_retr);
    let connector = Connector::new(plain_config(server.port)).unwrap();
    let mut session = connector.connect().unwrap();
    let mut download = session.retr(b"f", 5, Some(10)).expect("REST + RETR");
    let mut body = Vec::new();
    download.read_to_end(&mut body).unwrap();
    assert_eq!(body, b"56789");
    assert_eq!(download.finish().unwrap(), 5);
}

/// Takes uploads, and offers SIZE; `ahead_first`: answers the SIZE sent
/// with the end of the first upload before the upload's 226, as servers
/// that read commands during transfers do;
/// `forget`: answers the second upload with 425, as a server that forgot
/// the port set up ahead.
fn uploads(c: &mut Conn, ahead_first: bool, forget: bool) {
    c.send("220 fake\r\n");
    let mut passive = None;
    let mut stors = 0;
    let mut size = 0;
    while let Some(line) = c.recv() {
        match verbs(&[line])[0].as_str() {
            "USER" => c.send("331 password please\r\n"),
            "PASS" => c.send("230 logged in\r\n"),
            "TYPE" => c.send("200 ok\r\n"),
            "FEAT" => c.send("211-Features:\r\n EPSV\r\n SIZE\r\n211 End\r\n"),
            "SIZE" => c.send(&format!("213 {size}\r\n")),
            "EPSV" => passive = Some(epsv(c)),
            "STOR" => {
                stors += 1;
                if forget && stors == 2 {
                    passive = None;
                    c.send("425 Can't open data connection.\r\n");
                    continue;
                }
                let Some((mut data, _)) = passive.take().and_then(|l| l.accept().ok()) else {
                    c.send("425 no data connection\r\n");
                    continue;
                };
                c.send("150 go\r\n");
                let mut bytes = Vec::new();
                let _ = data.read_to_end(&mut bytes);
                drop(data);
                if ahead_first && stors == 1 {
                    // SIZE, sent with the end of the bytes, answered before
                    // the 226: it measures a file not yet complete (half of
                    // it here). The client sends it so no more, and sends
                    // the next EPSV only after the 226 (this is no vsftpd).
                    match c.recv().as_deref() {
                        Some(l) if l.starts_with("SIZE") => {
                            c.send(&format!("213 {}\r\n", bytes.len() / 2))
                        }
                        _ => return,
                    }
                }
                size = bytes.len();
                c.send(&format!("226 stored {} bytes\r\n", bytes.len()));
            }
            "NOOP" => c.send("200 noop\r\n"),
            "QUIT" => return c.send("221 bye\r\n"),
            _ => c.send("502 not here\r\n"),
        }
    }
}

fn in_order(c: &mut Conn) {
    uploads(c, false, false)
}

fn ahead_first(c: &mut Conn) {
    uploads(c, true, false)
}

fn forgets_the_port(c: &mut Conn) {
    uploads(c, false, true)
}

/// Uploads 10 bytes to `name`; the size SIZE told with the 226.
fn upload(session: &mut ftpsfs::ftp::Session, name: &[u8]) -> Option<u64> {
    let mut upload = session.stor(name).expect("STOR");
    upload.write_all(b"small file").unwrap();
    let (sent, size) = upload.finish_and_size(name).expect("226");
    assert_eq!(sent, 10);
    size
}

/// The next upload goes out on the data connection set up ahead, and the
/// size sent with an upload's end is taken only when it came after the
/// 226; either way the replies are told apart, in both orders. A server
/// that answered SIZE during the transfer is not sent it that way again.
#[test]
fn the_next_upload_goes_out_on_the_connection_set_up_ahead() {
    let in_order_sent = [
        "EPSV", "STOR", "SIZE", "EPSV", "STOR", "SIZE", "EPSV", "NOOP",
    ];
    let ahead_first_sent = ["EPSV", "STOR", "SIZE", "EPSV", "STOR", "EPSV", "NOOP"];
    for (script, size, expected) in [
        (in_order as fn(&mut Conn), Some(10), &in_order_sent[..]),
        (ahead_first, None, &ahead_first_sent[..]),
    ] {
        let server = FakeServer::start(script);
        let connector = Connector::new(plain_config(server.port)).unwrap();
        let mut session = connector.connect().unwrap();
        assert_eq!(upload(&mut session, b"a"), size);
        assert_eq!(upload(&mut session, b"b"), size);
        session.noop().expect("in step");
        let sent = verbs(&server.received());
        let first = sent.iter().position(|v| v == "EPSV").unwrap();
        assert_eq!(
            &sent[first..],
            expected,
            "one EPSV per upload, each sent as the one before ended"
        );
        assert_eq!(connector.stats().snapshot().data_set_up_ahead, 1);
    }
}

#[test]
fn a_425_for_the_connection_set_up_ahead_opens_a_new_one() {
    let server = FakeServer::start(forgets_the_port);
    let connector = Connector::new(plain_config(server.port)).unwrap();
    let mut session = connector.connect().unwrap();
    upload(&mut session, b"a");
    upload(&mut session, b"b");
    session.noop().expect("in step");
    let sent = verbs(&server.received());
    let first = sent.iter().position(|v| v == "EPSV").unwrap();
    assert_eq!(
        sent[first..],
        ["EPSV", "STOR", "SIZE", "EPSV", "STOR", "EPSV", "STOR", "SIZE", "EPSV", "NOOP"],
        "the refused STOR is sent again on a new data connection"
    );
    assert!(!session.is_broken());
}

/// Once warm, a small file's upload and download each cost two round trips
/// the caller waits for, counted by the client: the transfer command with
/// the data connection's TLS ClientHello (150 and the server's handshake),
/// then the bytes (the end of an upload, the data of a download). The EPSV
/// and the TCP connect of the next transfer are done between transfers, off
/// the caller's path; SIZE (the check of `--verify`) goes out with the end
/// of an upload's bytes. Without that, each file costs four.
#[test]
fn a_small_file_costs_two_round_trips_once_warm() {
    const FILES: u64 = 6;
    let server = InProcServer::start();
    let info = server.info();
    let connector = Connector::new(info.config()).unwrap();
    let settings = PoolSettings {
        max_sessions: 1,
        ..PoolSettings::default()
    };
    let pool = Pool::new(connector, settings);
    let stats = || pool.connector().stats().snapshot();
    let put = |name: &str| {
        let session = pool.get().unwrap();
        let mut upload = upload_on(session, "STOR", name.as_bytes()).unwrap();
        upload.write_all(&[b'x'; 4096]).unwrap();
        // With the check of --verify: SIZE goes with the end of the bytes.
        upload.finish_and_size(name.as_bytes()).unwrap();
    };
    let get = |name: &str| {
        let session = pool.get().unwrap();
        let mut download = retr_on(session, name.as_bytes(), 0, Some(4096)).unwrap();
        let mut body = Vec::new();
        download.read_to_end(&mut body).unwrap();
        download.finish().unwrap();
        assert_eq!(body, [b'x'; 4096]);
    };
    put("warm-up");
    let before = stats();
    for i in 0..FILES {
        put(&format!("f{i}"));
    }
    let after_uploads = stats();
    for i in 0..FILES {
        get(&format!("f{i}"));
    }
    let after_downloads = stats();
    assert_eq!(
        after_uploads.round_trips - before.round_trips,
        2 * FILES,
        "uploads: {before:?} -> {after_uploads:?}"
    );
    assert_eq!(
        after_downloads.round_trips - after_uploads.round_trips,
        2 * FILES,
        "downloads: {after_uploads:?} -> {after_downloads:?}"
    );
    assert_eq!(
        after_downloads.data_set_up_ahead - before.data_set_up_ahead,
        2 * FILES
    );
    assert_eq!(
        after_downloads.resumed_handshakes - before.resumed_handshakes,
        2 * FILES,
        "every data connection resumed the control connection's TLS session"
    );
}
