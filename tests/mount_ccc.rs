//! `--clear-control-after-login` (CCC) against ProFTPD + mod_tls: with
//! `TLSRequired auth+data` (`proftpd-test-server --allow-ccc`) the control
//! connection goes on in clear text after login, on every session,
//! reconnected ones included, while login and data stay encrypted; with the
//! default `TLSRequired on` ProFTPD refuses CCC (534) and the mount keeps
//! TLS. The control connection runs through a relay that records what the
//! client sends, to see what crossed the network in clear text.
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::data;
use common::mount::{ok, Mount};
use common::scratch::Scratch;
use common::script_server::ScriptServer;

/// Forwards connections on its own port to the server's control port and
/// keeps every byte the client sent.
struct Relay {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(server_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (sent_by_clients, open_conns) = (Arc::clone(&sent), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                open_conns.lock().unwrap().push(client.try_clone().unwrap());
                let recorded = Arc::clone(&sent_by_clients);
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16384];
                    while let Ok(n @ 1..) = from_client.read(&mut buffer) {
                        recorded.lock().unwrap().extend_from_slice(&buffer[..n]);
                        if to_server.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown(Shutdown::Both);
                });
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Both);
                });
            }
        });
        Relay { port, sent, open }
    }

    fn sent_in_clear(&self, text: &str) -> bool {
        let sent = self.sent.lock().unwrap();
        sent.windows(text.len()).any(|w| w == text.as_bytes())
    }

    /// Cuts every control connection, as a NAT that forgets them.
    fn cut_all(&self) -> usize {
        let mut open = self.open.lock().unwrap();
        for conn in open.iter() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        std::mem::take(&mut *open).len()
    }
}

/// `(logins, CCC answered 200, CCC answered 534)` in ProFTPD's command log.
fn counts(server: &ScriptServer) -> (usize, usize, usize) {
    let log = server.info.log_text();
    let count = |prefix: &str, code: &str| {
        log.lines()
            .filter(|l| l.starts_with(prefix) && l.ends_with(&format!("-> {code}")))
            .count()
    };
    (
        count("PASS", "230"),
        count("CCC", "200"),
        count("CCC", "534"),
    )
}

fn mount_through(server: &ScriptServer, relay: &Relay) -> Mount {
    let url = format!("ftpes://{}@127.0.0.1:{}/", server.info.user, relay.port);
    Mount::start_url(&server.info, &url, &["--clear-control-after-login"])
}

/// ls, cat and cp in through the mount, checked on the server.
fn works(server: &ScriptServer, mount: &Mount, name: &str) {
    let body = data::bytes(300_000, 5);
    let local = Scratch::new("ccc");
    std::fs::write(local.path(name), &body).unwrap();
    ok("cp", &[&local.str(name), &mount.path_str(name)], 60);
    let stored = std::fs::read(server.info.root.join(name)).unwrap();
    assert_eq!(data::sha256(&stored), data::sha256(&body));
    let listed = ok("ls", &[&mount.path_str("")], 30);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(name));
    let read = std::fs::read(mount.path(name)).unwrap();
    assert_eq!(data::sha256(&read), data::sha256(&body));
}

#[test]
fn ccc_clears_the_control_connection_of_every_session_on_proftpd() {
    let server = ScriptServer::start("proftpd-test-server", &["--allow-ccc"]);
    let relay = Relay::start(server.info.port);
    let mount = mount_through(&server, &relay);
    works(&server, &mount, "one.bin");
    let (logins, cleared, refused) = counts(&server);
    assert!(logins >= 1);
    assert_eq!((cleared, refused), (logins, 0), "CCC on every session");
    assert!(
        relay.sent_in_clear("EPSV\r\n") || relay.sent_in_clear("PASV\r\n"),
        "the passive-mode commands crossed in clear text"
    );
    assert!(!relay.sent_in_clear("PASS"), "the password did not");
    assert!(!relay.sent_in_clear(&server.info.password));
    let log = mount.log_text();
    assert!(
        log.contains("--clear-control-after-login: after login"),
        "warned"
    );

    assert!(relay.cut_all() >= 1);
    works(&server, &mount, "two.bin");
    let (logins_after, cleared_after, _) = counts(&server);
    assert!(logins_after > logins, "sessions were reconnected");
    assert_eq!(
        cleared_after, logins_after,
        "reconnected sessions sent CCC too"
    );
}

#[test]
fn ccc_refused_by_proftpd_keeps_tls_and_says_so() {
    let server = ScriptServer::start("proftpd-test-server", &[]);
    let relay = Relay::start(server.info.port);
    let mount = mount_through(&server, &relay);
    works(&server, &mount, "one.bin");
    let (logins, cleared, refused) = counts(&server);
    assert_eq!((cleared, refused), (0, logins));
    assert!(!relay.sent_in_clear("EPSV") && !relay.sent_in_clear("PASV"));
    let log = mount.log_text();
    assert_eq!(
        log.matches("the server refused CCC (534").count(),
        1,
        "said once: {log}"
    );
    assert!(log.contains("the control connection stays encrypted"));
}
