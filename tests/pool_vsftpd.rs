//! The session pool against vsftpd: reconnecting after the server drops
//! sessions, living with a per-client session cap (421), keepalive NOOPs,
//! idle expiry and bounded waiting.
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::vsftpd::Vsftpd;
use common::{data, suite};
use ftpsfs::ftp::{Connector, Pool, PoolSettings, Retry};

fn pool(server: &Vsftpd, settings: PoolSettings, noop_after: Option<Duration>) -> Pool {
    let mut config = server.info.config();
    if let Some(noop_after) = noop_after {
        config.keepalive.noop_after = noop_after;
    }
    let settings = PoolSettings {
        backoff_initial: Duration::from_millis(50),
        ..settings
    };
    Pool::new(Connector::new(config).unwrap(), settings)
}

#[test]
fn reconnects_after_the_server_drops_every_session() {
    let server = Vsftpd::start(&[]);
    let pool = pool(&server, PoolSettings::default(), None);
    pool.warm_up(2).unwrap();
    assert_eq!(pool.connector().stats().snapshot().logins, 2);
    assert_eq!(server.logins(), 2, "{:?}", server.commands());
    std::fs::write(server.info.root.join("f"), b"x").unwrap();

    assert!(server.kill_sessions() > 0, "no session to drop");
    std::thread::sleep(Duration::from_millis(300));
    let entries = pool
        .run(Retry::Idempotent, |s| s.list_dir(b""))
        .expect("listing after the sessions were dropped");
    assert!(entries.iter().any(|e| e.name == b"f"));
    // The reconnect, as the server saw it: a third login.
    assert!(
        server.logins() >= 3,
        "a new login was made: {:?}",
        server.commands()
    );
}

#[test]
fn non_idempotent_operations_are_not_repeated_after_sending() {
    let server = Vsftpd::start(&[]);
    let pool = pool(&server, PoolSettings::default(), None);
    pool.warm_up(1).unwrap();
    assert!(server.kill_sessions() > 0, "no session to drop");
    std::thread::sleep(Duration::from_millis(300));
    let mut attempts = 0;
    let result = pool.run(Retry::Once, |s| {
        attempts += 1;
        s.rename(b"a", b"b")
    });
    let err = result.expect_err("the dead session fails the rename");
    assert!(err.is_transient(), "{err}");
    assert_eq!(
        attempts, 1,
        "a rename whose command was sent is not retried"
    );
    pool.run(Retry::Once, |s| s.noop())
        .expect("next operation gets a new session");
}

#[test]
fn lives_with_a_session_cap() {
    let server = Vsftpd::start(&["--max-per-ip", "2"]);
    let pool = Arc::new(pool(&server, PoolSettings::default(), None));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                for i in 0..5 {
                    let name = format!("t{t}-{i}.bin");
                    let body = data::bytes(20_000, (t * 10 + i) as u64);
                    pool.run(Retry::Idempotent, |s| {
                        let mut up = s.stor(name.as_bytes())?;
                        std::io::Write::write_all(&mut up, &body).map_err(|e| {
                            ftpsfs::ftp::Error::io("upload", e, Duration::from_secs(1))
                        })?;
                        up.finish().map(drop)
                    })
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(
                        pool.open_sessions() <= 2,
                        "{} sessions",
                        pool.open_sessions()
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    // Four writers and a default limit above the cap: the cap was hit.
    assert!(PoolSettings::default().max_sessions > 2);
    assert_eq!(
        pool.session_limit(),
        2,
        "the pool learnt the server's cap from its 421"
    );
    for t in 0..4u64 {
        for i in 0..5u64 {
            let on_disk = std::fs::read(server.info.root.join(format!("t{t}-{i}.bin"))).unwrap();
            assert_eq!(on_disk, data::bytes(20_000, t * 10 + i));
        }
    }
}

#[test]
fn warm_up_succeeds_against_a_session_cap() {
    let server = Vsftpd::start(&["--max-per-ip", "2"]);
    let settings = PoolSettings {
        checkout_timeout: Duration::from_secs(20),
        ..PoolSettings::default()
    };
    let pool = pool(&server, settings, None);
    pool.warm_up(4).expect("start-up logins live with the cap");
    assert_eq!(pool.session_limit(), 2);
    pool.run(Retry::Idempotent, |s| s.noop()).unwrap();
}

#[test]
fn idle_sessions_send_noop_and_expire() {
    let server = Vsftpd::start(&[]);
    let settings = PoolSettings {
        idle_expiry: Duration::from_millis(1500),
        ..PoolSettings::default()
    };
    let pool = pool(&server, settings, Some(Duration::from_millis(300)));
    pool.warm_up(3).unwrap();
    assert_eq!(pool.open_sessions(), 3);
    let before = pool.connector().stats().snapshot().commands;
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        pool.connector().stats().snapshot().commands > before,
        "NOOPs were sent"
    );
    assert!(server.info.log_text().contains("NOOP"), "server saw NOOP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.open_sessions() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pool.open_sessions(),
        1,
        "idle sessions expired, one kept warm"
    );
    pool.run(Retry::Idempotent, |s| s.noop()).unwrap();
}

#[test]
fn waiting_for_a_session_is_bounded() {
    let server = Vsftpd::start(&[]);
    let checkout_timeout = Duration::from_secs(2);
    let settings = PoolSettings {
        max_sessions: 1,
        checkout_timeout,
        ..PoolSettings::default()
    };
    let pool = pool(&server, settings, None);
    let held = pool.get().unwrap();
    let started = Instant::now();
    let err = pool.get().err().expect("no second session");
    let waited = started.elapsed();
    assert!(
        err.to_string().contains("waiting for a free FTP session"),
        "{err}"
    );
    // It waited for the session, and gave up at its timeout, not much later
    // (a margin that load cannot use up).
    assert!(
        waited >= checkout_timeout && waited < checkout_timeout + Duration::from_secs(10),
        "{waited:?}"
    );
    drop(held);
    let mut again = pool.get().expect("returned session is reused");
    again.noop().unwrap();
    assert_eq!(pool.connector().stats().snapshot().logins, 1);
}

#[test]
fn data_connections_of_pooled_sessions_resume() {
    let server = Vsftpd::start(&[]);
    let pool = Arc::new(pool(&server, PoolSettings::default(), None));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                for i in 0..5 {
                    let mut session = pool.get().unwrap();
                    suite::upload(&mut session, &format!("p{t}-{i}"), b"pooled");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = pool.connector().stats().snapshot();
    assert_eq!(stats.data_connections, 20);
    assert_eq!(stats.resumed_handshakes, 20, "{stats:?}");
}
