//! The client against servers that misbehave: silence, garbage, no TLS, a
//! stalled transfer. Every case ends in a clear error within its timeout.
mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::fake::{Conn, FakeServer};
use ftpsfs::ftp::config::Timeouts;
use ftpsfs::ftp::{Connector, Credentials, FtpConfig, Kind, Password, Security};

fn config(port: u16) -> FtpConfig {
    let mut config = FtpConfig::new(
        "127.0.0.1",
        port,
        Credentials {
            user: "u".into(),
            password: Password::new("secret-pw"),
        },
    );
    config.timeouts = Timeouts {
        connect: Duration::from_secs(1),
        reply: Duration::from_secs(1),
        data_idle: Duration::from_secs(1),
    };
    config
}

/// How long the fake servers of these tests keep silent where a client
/// without a working timeout would wait for them, and the bound that tells
/// such a client from one that gave up after its own 1 s timeout: far from
/// both, so that a loaded machine cannot fail the test.
const SILENCE: Duration = Duration::from_secs(60);
const NOT_WAITED: Duration = Duration::from_secs(30);

/// Timeouts long enough that a client waiting for one is told apart from
/// one that fails at once, on a loaded machine too.
fn patient(mut config: FtpConfig) -> FtpConfig {
    config.timeouts = Timeouts {
        connect: Duration::from_secs(60),
        reply: Duration::from_secs(60),
        data_idle: Duration::from_secs(60),
    };
    config
}

fn connect_error(config: FtpConfig) -> (ftpsfs::ftp::Error, Duration) {
    let started = Instant::now();
    let err = Connector::new(config)
        .unwrap()
        .connect()
        .err()
        .expect("connect fails");
    (err, started.elapsed())
}

#[test]
fn server_without_auth_tls_is_refused_before_login() {
    let server = FakeServer::start(|c: &mut Conn| {
        c.send("220 plain only\r\n");
        while c.recv().is_some() {
            c.send("500 AUTH not understood\r\n");
        }
    });
    let (err, _) = connect_error(config(server.port));
    assert_eq!(err.kind(), Kind::Tls, "{err}");
    assert!(
        err.to_string()
            .contains("refusing to continue in plaintext"),
        "{err}"
    );
    assert_eq!(
        server.received(),
        vec!["AUTH TLS"],
        "nothing after AUTH TLS was sent"
    );
}

#[test]
fn silent_server_times_out() {
    let server = FakeServer::start(|c: &mut Conn| {
        std::thread::sleep(SILENCE);
        c.send("220 too late\r\n");
    });
    let (err, elapsed) = connect_error(config(server.port));
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string()
            .contains("timed out after 1.0 s: waiting for the server's greeting"),
        "{err}"
    );
    assert!(elapsed < NOT_WAITED, "took {elapsed:?}");
}

#[test]
fn garbage_instead_of_a_greeting_is_a_protocol_error() {
    let server = FakeServer::start(|c: &mut Conn| c.send("HTTP/1.1 400 Bad Request\r\n\r\n"));
    let (err, _) = connect_error(config(server.port));
    assert_eq!(err.kind(), Kind::Protocol, "{err}");
    assert!(err.to_string().contains("not an FTP reply"), "{err}");
}

#[test]
fn endless_multi_line_reply_is_bounded() {
    let server = FakeServer::start(|c: &mut Conn| {
        c.send("220-welcome\r\n");
        let line = " this banner never ends ".repeat(40) + "\r\n";
        for _ in 0..100_000 {
            c.send(&line);
        }
    });
    let (err, _) = connect_error(config(server.port));
    assert_eq!(err.kind(), Kind::Protocol, "{err}");
    assert!(err.to_string().contains("reply longer than"), "{err}");
}

#[test]
fn closed_port_is_a_transient_connect_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (err, _) = connect_error(config(port));
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("cannot open control connection"),
        "{err}"
    );
}

#[test]
fn tls_alert_from_a_non_tls_server_names_tls() {
    // Implicit TLS against a server that speaks plain FTP: the handshake fails.
    let server = FakeServer::start(|c: &mut Conn| {
        c.send("220 plain\r\n");
        let _ = c.recv();
    });
    let mut config = patient(config(server.port));
    config.security = Security::Implicit;
    let (err, elapsed) = connect_error(config);
    assert!(err.to_string().contains("TLS"), "{err}");
    assert!(elapsed < NOT_WAITED, "no timeout waited: {elapsed:?}");
}

#[test]
fn stalled_download_fails_after_the_data_timeout() {
    let server = FakeServer::start(|c: &mut Conn| {
        c.send("220 hi\r\n");
        if c.plain_login_until("EPSV").is_none() {
            return;
        }
        let data = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = data.local_addr().unwrap().port();
        c.send(&format!(
            "229 Entering Extended Passive Mode (|||{port}|)\r\n"
        ));
        let (mut stream, _) = data.accept().unwrap();
        if c.recv().is_none() {
            return;
        }
        c.send("150 here it comes\r\n");
        use std::io::Write;
        let _ = stream.write_all(b"ten bytes!");
        // Stall: keep the data connection open and send nothing more.
        std::thread::sleep(SILENCE);
        drop(stream);
    });
    let mut config = config(server.port);
    config.security = Security::InsecurePlain;
    let connector = Connector::new(config).unwrap();
    let mut session = connector.connect().expect("plain login");
    let mut download = session.retr(b"file", 0, None).expect("RETR");
    let started = Instant::now();
    let mut buf = Vec::new();
    let err = download.read_to_end(&mut buf).expect_err("stall detected");
    let elapsed = started.elapsed();
    assert_eq!(buf, b"ten bytes!");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(
        err.to_string()
            .contains("no data from the server for 1.0 s"),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < NOT_WAITED,
        "{elapsed:?}"
    );
    download.abort();
}

#[test]
fn password_never_appears_in_errors() {
    let server = FakeServer::start(|c: &mut Conn| {
        c.send("220 hi\r\n");
        let _ = c.plain_login_until("NEVER");
    });
    let mut config = config(server.port);
    config.security = Security::InsecurePlain;
    config.credentials.password = Password::new("hunter2-secret");
    let connector = Connector::new(config.clone()).unwrap();
    let mut session = connector.connect().expect("login");
    let err = session.mkdir(b"x").expect_err("502");
    assert!(!err.to_string().contains("hunter2-secret"));
    assert!(!format!("{err:?} {config:?}").contains("hunter2-secret"));
}

fn tls_fake_config(server: &common::tls_fake::TlsFake) -> FtpConfig {
    let mut config = config(server.port);
    config.security = Security::Explicit;
    config.tls.ca_file = Some(server.cert_file.clone());
    config
}

#[test]
fn self_signed_ca_true_certificate_works_as_its_own_ca_file() {
    use common::tls_fake::{DataEnd, TlsFake};
    let server = TlsFake::start(DataEnd::CloseNotify);
    let connector = Connector::new(tls_fake_config(&server)).unwrap();
    let mut session = connector.connect().expect("trusted as itself");
    let mut download = session.retr(b"f", 0, None).unwrap();
    let mut body = Vec::new();
    download.read_to_end(&mut body).expect("clean end of data");
    assert_eq!(download.finish().unwrap(), 1000);
    assert_eq!(connector.stats().snapshot().resumed_handshakes, 1);
}

/// The fake server sends close_notify and then keeps the TCP connection open
/// until the client closes it (read_to_end). The client waits for the
/// server's TCP close after close_notify only briefly, so the transfer ends
/// at once instead of when one side's timeout fires (the server's 20 s, the
/// client's 60 s here): three downloads in well under one of them.
#[test]
fn a_server_that_closes_tcp_only_after_the_client_does_costs_no_timeout() {
    use common::tls_fake::{DataEnd, TlsFake};
    let server = TlsFake::start(DataEnd::CloseNotify);
    let connector = Connector::new(patient(tls_fake_config(&server))).unwrap();
    let mut session = connector.connect().unwrap();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let mut download = session.retr(b"f", 0, None).unwrap();
        let mut body = Vec::new();
        download.read_to_end(&mut body).unwrap();
        assert_eq!(download.finish().unwrap(), 1000);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "three downloads took {:?}",
        started.elapsed()
    );
}

#[test]
fn download_ending_without_close_notify_is_an_error() {
    use common::tls_fake::{DataEnd, TlsFake};
    let server = TlsFake::start(DataEnd::BareClose);
    let connector = Connector::new(tls_fake_config(&server)).unwrap();
    let mut session = connector.connect().unwrap();
    let mut download = session.retr(b"f", 0, None).unwrap();
    let mut body = Vec::new();
    let err = download
        .read_to_end(&mut body)
        .expect_err("truncation detected");
    assert!(
        err.to_string().contains("without TLS close_notify"),
        "{err}"
    );
    download.abort();
}

#[test]
fn a_data_connection_without_tls_is_refused() {
    use common::tls_fake::{DataEnd, TlsFake};
    let server = TlsFake::start(DataEnd::Plaintext);
    let connector = Connector::new(patient(tls_fake_config(&server))).unwrap();
    let mut session = connector.connect().unwrap();
    let started = Instant::now();
    let err = session
        .retr(b"f", 0, None)
        .err()
        .expect("plaintext data is never taken for the file");
    assert!(err.to_string().contains("TLS"), "{err}");
    assert!(
        started.elapsed() < NOT_WAITED,
        "refused at the handshake, no data timeout waited: {:?}",
        started.elapsed()
    );
}

/// A server that speaks nothing newer than TLS 1.1 (Python's ssl, told to):
/// refused at the handshake with a TLS error naming the version, before
/// USER; there is no fallback to an older TLS or to plain FTP. A system test:
/// it needs python3 (rustls, the in-process servers' TLS, has no TLS 1.1).
#[cfg(feature = "system-tests")]
#[test]
fn a_server_below_tls_1_2_is_refused() {
    common::require::program("python3", "python3");
    let dir = std::env::temp_dir().join(format!("ftpsfs-tls11-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = common::tls_fake::self_signed(&dir);
    let script = r#"
import socket, ssl, sys, warnings
warnings.simplefilter("ignore")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
ctx.minimum_version = ssl.TLSVersion.TLSv1
ctx.maximum_version = ssl.TLSVersion.TLSv1_1
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
s.settimeout(20)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.settimeout(10)
c.sendall(b"220 old server\r\n")
c.recv(100)
c.sendall(b"234 go ahead\r\n")
try:
    t = ctx.wrap_socket(c, server_side=True)
    print("handshake completed", t.version(), flush=True)
    print("after handshake:", t.recv(100), flush=True)
except Exception as e:
    print("handshake failed", flush=True)
"#;
    let mut server = std::process::Command::new("timeout")
        .args(["30", "python3", "-c", script])
        .arg(&cert)
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let port: u16 = line.trim().parse().expect("the server's port");
    let mut config = config(port);
    config.security = Security::Explicit;
    config.tls.ca_file = Some(cert.clone());
    let Err(err) = Connector::new(config).unwrap().connect() else {
        panic!("a TLS 1.1 server was accepted");
    };
    assert_eq!(err.kind(), Kind::Tls, "{err}");
    assert!(err.to_string().to_lowercase().contains("version"), "{err}");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let _ = server.wait();
    assert_eq!(
        rest.trim(),
        "handshake failed",
        "nothing after the handshake"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// CCC (--clear-control-after-login) against the scripted TLS server.

fn ccc_config(server: &common::tls_fake::TlsFake) -> FtpConfig {
    let mut config = tls_fake_config(server);
    config.clear_control_after_login = true;
    config.timeouts.reply = std::time::Duration::from_secs(2);
    config
}

/// One download of the fake's 1000 bytes on `session`.
fn download_works(session: &mut ftpsfs::ftp::Session) {
    let mut download = session.retr(b"f", 0, None).unwrap();
    let mut body = Vec::new();
    download.read_to_end(&mut body).unwrap();
    assert_eq!(download.finish().unwrap(), 1000);
}

#[test]
fn ccc_accepted_goes_on_in_clear_text_and_data_stays_tls() {
    use common::tls_fake::{Ccc, DataEnd, TlsFake};
    let server = TlsFake::start_with(DataEnd::CloseNotify, Ccc::Clears);
    let connector = Connector::new(ccc_config(&server)).unwrap();
    let mut session = connector.connect().expect("CCC and close_notify both ways");
    // The fake serves the commands after CCC only in clear text, and the
    // data connection only over TLS (resumed).
    download_works(&mut session);
    session.noop().unwrap();
    download_works(&mut session);
    assert_eq!(connector.stats().snapshot().resumed_handshakes, 2);
}

#[test]
fn ccc_refused_keeps_tls() {
    use common::tls_fake::{Ccc, DataEnd, TlsFake};
    let server = TlsFake::start_with(DataEnd::CloseNotify, Ccc::Unknown);
    let connector = Connector::new(ccc_config(&server)).unwrap();
    let mut session = connector.connect().expect("a refused CCC is no error");
    download_works(&mut session);
}

#[test]
fn ccc_answered_200_without_ending_tls_fails_the_session_clearly() {
    use common::tls_fake::{Ccc, DataEnd, TlsFake};
    let server = TlsFake::start_with(DataEnd::CloseNotify, Ccc::KeepsTls);
    let connector = Connector::new(ccc_config(&server)).unwrap();
    let err = connector.connect().err().expect("no session");
    let text = err.to_string();
    assert!(
        text.contains("accepted CCC (200) but did not end TLS within 2 s")
            && text.contains("--clear-control-after-login"),
        "{text}"
    );
    assert_eq!(err.kind(), ftpsfs::ftp::Kind::Protocol, "not retried");
}

/// Runs `check` on a session to a fake ending its downloads with
/// `data_end`, in both orders of the close_notify (see
/// `ftp::server_family`): a fake that greets as vsftpd gets ours with the
/// handshake, one that does not after its own.
fn in_both_download_ends(
    data_end: common::tls_fake::DataEnd,
    check: impl Fn(&mut ftpsfs::ftp::Session),
) {
    use common::tls_fake::{Ccc, TlsFake, VSFTPD_GREETING};
    for greeting in [VSFTPD_GREETING, "tls fake"] {
        let server = TlsFake::start_greeting(data_end, Ccc::Unknown, greeting);
        let connector = Connector::new(patient(tls_fake_config(&server))).unwrap();
        check(&mut connector.connect().unwrap());
    }
}

/// The data connection is reset after half the bytes, before any
/// close_notify: the read fails (never a short end of file), and what was
/// read is not taken for the file.
#[test]
fn a_data_connection_reset_before_close_notify_is_an_error() {
    in_both_download_ends(common::tls_fake::DataEnd::Reset, |session| {
        let mut download = session.retr(b"f", 0, Some(1000)).unwrap();
        let mut body = Vec::new();
        let err = download
            .read_to_end(&mut body)
            .expect_err("a reset is not an end of file");
        assert!(body.len() < 1000, "{}", body.len());
        // Reset, or a broken pipe where the reset met our close_notify.
        assert_ne!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        download.abort();
    });
}

/// Every byte and the server's close_notify came, then 426: the server's
/// verdict fails the download.
#[test]
fn a_426_after_all_bytes_fails_the_download() {
    in_both_download_ends(common::tls_fake::DataEnd::CloseNotifyThen426, |session| {
        let mut download = session.retr(b"f", 0, Some(1000)).unwrap();
        let mut body = Vec::new();
        let read = download.read_to_end(&mut body);
        assert_eq!(read.expect("all bytes, clean end"), 1000);
        let err = download.finish().expect_err("426 is a failed transfer");
        assert_eq!(err.code(), Some(426), "{err}");
        session.noop().expect("the session is in step");
    });
}
