//! Protocol branches that vsftpd does not take: EPSV refused (PASV, and
//! remembered), EPRT refused (PORT), and every way servers answer ABOR.
mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::fake::{plain_config, serve, AborReply, Behaviour, Conn, FakeServer};
use ftpsfs::ftp::{Connector, DataMode, Session};

fn plain_session(port: u16, data_mode: DataMode) -> Session {
    let mut config = plain_config(port);
    config.data_mode = data_mode;
    Connector::new(config).unwrap().connect().expect("login")
}

fn read_all(session: &mut Session) -> usize {
    let mut download = session.retr(b"f", 0, None).unwrap();
    let mut out = Vec::new();
    download.read_to_end(&mut out).unwrap();
    download.finish().unwrap();
    out.len()
}

#[test]
fn epsv_refused_falls_back_to_pasv_once() {
    let server = FakeServer::start(|c: &mut Conn| {
        serve(
            c,
            Behaviour {
                epsv: false,
                eprt: true,
                abor: AborReply::Pair,
                list_a: true,
            },
        )
    });
    let mut session = plain_session(server.port, DataMode::default());
    assert_eq!(read_all(&mut session), 32 * 1024 * 1024);
    assert_eq!(read_all(&mut session), 32 * 1024 * 1024);
    let sent = server.received();
    assert_eq!(
        sent.iter().filter(|l| *l == "EPSV").count(),
        1,
        "EPSV tried once: {sent:?}"
    );
    assert_eq!(sent.iter().filter(|l| *l == "PASV").count(), 2, "{sent:?}");
}

#[test]
fn eprt_refused_falls_back_to_port() {
    let server = FakeServer::start(|c: &mut Conn| {
        serve(
            c,
            Behaviour {
                epsv: true,
                eprt: false,
                abor: AborReply::Pair,
                list_a: true,
            },
        )
    });
    let active = DataMode::Active {
        ports: Some(47200..=47300),
        advertise: None,
    };
    let mut session = plain_session(server.port, active);
    assert_eq!(read_all(&mut session), 32 * 1024 * 1024);
    let sent = server.received();
    assert!(
        sent.iter().any(|l| l.starts_with("EPRT |1|127.0.0.1|")),
        "{sent:?}"
    );
    let port_line = sent
        .iter()
        .find(|l| l.starts_with("PORT "))
        .expect("PORT sent");
    let n: Vec<u16> = port_line[5..]
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    assert!((47200..=47300).contains(&(n[4] << 8 | n[5])), "{port_line}");
}

fn abort_keeps_session(abor: AborReply) {
    let server = match abor {
        AborReply::Pair => FakeServer::start(|c: &mut Conn| {
            serve(
                c,
                Behaviour {
                    epsv: true,
                    eprt: true,
                    abor: AborReply::Pair,
                    list_a: true,
                },
            )
        }),
        AborReply::Single226 => FakeServer::start(|c: &mut Conn| {
            serve(
                c,
                Behaviour {
                    epsv: true,
                    eprt: true,
                    abor: AborReply::Single226,
                    list_a: true,
                },
            )
        }),
        AborReply::Local451 => FakeServer::start(|c: &mut Conn| {
            serve(
                c,
                Behaviour {
                    epsv: true,
                    eprt: true,
                    abor: AborReply::Local451,
                    list_a: true,
                },
            )
        }),
        AborReply::LateTransferReply => FakeServer::start(|c: &mut Conn| {
            serve(
                c,
                Behaviour {
                    epsv: true,
                    eprt: true,
                    abor: AborReply::LateTransferReply,
                    list_a: true,
                },
            )
        }),
        AborReply::Silent => unreachable!(),
    };
    let mut session = plain_session(server.port, DataMode::default());
    let mut download = session.retr(b"f", 0, None).unwrap();
    let mut part = [0u8; 1000];
    download.read_exact(&mut part).unwrap();
    download.abort();
    assert!(!session.is_broken());
    session.noop().expect("in step after ABOR");
    assert_eq!(
        read_all(&mut session),
        32 * 1024 * 1024,
        "a full transfer after the abort"
    );
}

#[test]
fn abort_answered_426_then_226() {
    abort_keeps_session(AborReply::Pair);
}

#[test]
fn abort_answered_226_only() {
    abort_keeps_session(AborReply::Single226);
}

#[test]
fn abort_answered_451_then_226() {
    abort_keeps_session(AborReply::Local451);
}

#[test]
fn abort_whose_transfer_reply_comes_last() {
    abort_keeps_session(AborReply::LateTransferReply);
}

#[test]
fn abort_without_answer_discards_the_session() {
    let server = FakeServer::start(|c: &mut Conn| {
        serve(
            c,
            Behaviour {
                epsv: true,
                eprt: true,
                abor: AborReply::Silent,
                list_a: true,
            },
        )
    });
    let mut session = plain_session(server.port, DataMode::default());
    let mut download = session.retr(b"f", 0, None).unwrap();
    let mut part = [0u8; 1000];
    download.read_exact(&mut part).unwrap();
    let started = Instant::now();
    download.abort();
    assert!(
        session.is_broken(),
        "a session that did not answer ABOR is not reused"
    );
    // The reply timeout (2 s), not the server's 60 s of silence; a bound far
    // from both, so a loaded machine cannot fail it.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn mfmt_is_used_where_offered() {
    let server = FakeServer::start(|c: &mut Conn| {
        c.send("220 fake\r\n");
        while let Some(line) = c.recv() {
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "USER" => c.send("331 pw\r\n"),
                "PASS" => c.send("230 in\r\n"),
                "TYPE" => c.send("200 ok\r\n"),
                "FEAT" => c.send("211-Features:\r\n MFMT\r\n MDTM\r\n211 End\r\n"),
                "MFMT" => c.send("213 Modify=20200102030405; f\r\n"),
                _ => c.send("502 no\r\n"),
            }
        }
    });
    let mut session = plain_session(server.port, DataMode::default());
    assert!(session.features().mfmt);
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1_577_934_245);
    session.set_mtime(b"f", when).expect("MFMT accepted");
    assert!(
        server
            .received()
            .contains(&"MFMT 20200102030405 f".to_string()),
        "{:?}",
        server.received()
    );
}

#[test]
fn active_mode_advertises_the_given_address() {
    let server = FakeServer::start(|c: &mut Conn| {
        serve(
            c,
            Behaviour {
                epsv: true,
                eprt: true,
                abor: AborReply::Pair,
                list_a: true,
            },
        )
    });
    // As behind NAT: advertise an address that is not the one we listen on.
    // Nothing listens on 127.0.0.3, so the transfer fails; what matters is
    // that EPRT named the advertised address, not the local one.
    let active = DataMode::Active {
        ports: Some(47400..=47450),
        advertise: Some("127.0.0.3".parse().unwrap()),
    };
    let mut session = plain_session(server.port, active);
    assert!(session.retr(b"f", 0, None).is_err());
    let eprt = server
        .received()
        .into_iter()
        .find(|l| l.starts_with("EPRT"))
        .expect("EPRT sent");
    assert!(eprt.starts_with("EPRT |1|127.0.0.3|474"), "{eprt}");
}

#[test]
fn list_without_dash_a_is_remembered() {
    let server = FakeServer::start(|c: &mut Conn| {
        serve(
            c,
            Behaviour {
                epsv: true,
                eprt: true,
                abor: AborReply::Pair,
                list_a: false,
            },
        )
    });
    let mut session = plain_session(server.port, DataMode::default());
    session.list_dir(b"").expect("falls back to LIST");
    session.list_dir(b"d").expect("plain LIST again");
    let lists: Vec<String> = server
        .received()
        .into_iter()
        .filter(|l| l.starts_with("LIST"))
        .collect();
    assert_eq!(lists, vec!["LIST -a", "LIST", "LIST d"], "-a tried once");
}

static LOGGING_IN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static MOST_LOGGING_IN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A server whose FEAT (the last step of a login) takes 300 ms, and which
/// counts the logins under way.
fn slow_login(c: &mut Conn) {
    use std::sync::atomic::Ordering::SeqCst;
    c.send("220 slow to log in\r\n");
    while let Some(line) = c.recv() {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "USER" => "331 password\r\n",
            "PASS" => "230 in\r\n",
            "FEAT" => {
                let now = LOGGING_IN.fetch_add(1, SeqCst) + 1;
                MOST_LOGGING_IN.fetch_max(now, SeqCst);
                std::thread::sleep(Duration::from_millis(300));
                LOGGING_IN.fetch_sub(1, SeqCst);
                "211 no features\r\n"
            }
            "TYPE" | "NOOP" => "200 ok\r\n",
            "QUIT" => {
                c.send("221 bye\r\n");
                return;
            }
            _ => "502 not here\r\n",
        };
        c.send(reply);
    }
}

fn pool_of_four(port: u16) -> ftpsfs::ftp::Pool {
    use ftpsfs::ftp::{Pool, PoolSettings};
    let settings = PoolSettings {
        max_sessions: 4,
        ..PoolSettings::default()
    };
    Pool::new(Connector::new(plain_config(port)).unwrap(), settings)
}

/// Start-up logs every session in at once: over a slow link, four logins
/// in a row would take four times as long before the mount is live.
#[test]
fn the_pool_logs_its_sessions_in_concurrently_at_start_up() {
    let server = FakeServer::start(slow_login);
    let pool = pool_of_four(server.port);
    pool.warm_up(4).expect("logins");
    assert_eq!(
        MOST_LOGGING_IN.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "logins under way at the same time"
    );
    let users = server
        .received()
        .iter()
        .filter(|l| l.starts_with("USER"))
        .count();
    assert_eq!(users, 4, "one login per session");
}

/// A server that refuses every password.
fn refuses_the_password(c: &mut Conn) {
    c.send("220 hello\r\n");
    while let Some(line) = c.recv() {
        let reply = match line.split(' ').next().unwrap_or("") {
            "USER" => "331 password\r\n",
            "PASS" => "530 Login incorrect.\r\n",
            _ => "503 log in first\r\n",
        };
        c.send(reply);
    }
}

/// Servers lock accounts after a few failed logins: the sessions that log in
/// at once at start-up must not each send a wrong password.
#[test]
fn a_wrong_password_is_sent_once_at_start_up() {
    let server = FakeServer::start(refuses_the_password);
    let pool = pool_of_four(server.port);
    let err = pool.warm_up(4).expect_err("refused");
    assert_eq!(err.code(), Some(530), "{err}");
    let received = server.received();
    let passwords = received.iter().filter(|l| l.starts_with("PASS")).count();
    assert_eq!(passwords, 1, "{received:?}");
    // Operations right after it (a program retrying) get the same refusal
    // without another wrong password reaching the server.
    for _ in 0..3 {
        let err = pool.get().map(drop).expect_err("still refused");
        assert_eq!(err.code(), Some(530), "{err}");
    }
    let passwords = server
        .received()
        .iter()
        .filter(|l| l.starts_with("PASS"))
        .count();
    assert_eq!(passwords, 1, "{:?}", server.received());
}
