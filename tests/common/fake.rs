//! A scripted FTP server on a real loopback socket, for behaviour no real
//! server shows on demand: silence, garbage, refusing TLS, stalling a transfer.
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ftpsfs::ftp::config::Timeouts;
use ftpsfs::ftp::{Credentials, FtpConfig, Password, Security};

pub struct FakeServer {
    pub port: u16,
    /// Every command line the client sent, in order.
    pub received: Arc<Mutex<Vec<String>>>,
}

pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    received: Arc<Mutex<Vec<String>>>,
}

impl Conn {
    pub fn send(&mut self, text: &str) {
        let _ = self.writer.write_all(text.as_bytes());
    }

    /// The next command line, or `None` when the client hung up.
    pub fn recv(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                let line = line.trim_end().to_string();
                self.received.lock().unwrap().push(line.clone());
                Some(line)
            }
        }
    }

    /// Answers the plain-FTP login and set-up commands until `until` arrives;
    /// refuses anything else.
    pub fn plain_login_until(&mut self, until: &str) -> Option<String> {
        loop {
            let line = self.next_after_login()?;
            if line
                .split(' ')
                .next()
                .is_some_and(|v| v.eq_ignore_ascii_case(until))
            {
                return Some(line);
            }
            self.send("502 not here\r\n");
        }
    }

    /// Answers the plain-FTP login and set-up commands and returns the first
    /// other command for the caller to answer.
    pub fn next_after_login(&mut self) -> Option<String> {
        loop {
            let line = self.recv()?;
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "USER" => self.send("331 password please\r\n"),
                "PASS" => self.send("230 logged in\r\n"),
                "TYPE" => self.send("200 ok\r\n"),
                "FEAT" => self.send("211-Features:\r\n EPSV\r\n211 End\r\n"),
                _ => return Some(line),
            }
        }
    }
}

/// Plain FTP to a fake server on `port`, with timeouts short enough that a
/// test never waits long.
pub fn plain_config(port: u16) -> FtpConfig {
    let mut config = FtpConfig::new(
        "127.0.0.1",
        port,
        Credentials {
            user: "u".into(),
            password: Password::new("p"),
        },
    );
    config.security = Security::InsecurePlain;
    config.timeouts = Timeouts {
        connect: Duration::from_secs(2),
        reply: Duration::from_secs(2),
        data_idle: Duration::from_secs(2),
    };
    config
}

/// The FTPS store over plain FTP to a scripted server, with the mount's
/// root at the login directory.
pub fn plain_store(server: &FakeServer) -> ftpsfs::store::ftps::FtpsStore {
    use ftpsfs::ftp::{Connector, Pool, PoolSettings};
    let pool = Pool::new(
        Connector::new(plain_config(server.port)).unwrap(),
        PoolSettings::default(),
    );
    ftpsfs::store::ftps::FtpsStore::connect(std::sync::Arc::new(pool), b"").expect("store")
}

impl FakeServer {
    /// Serves each connection with `script` on its own thread. The threads
    /// end when the client disconnects; the listener thread ends with the
    /// test process.
    pub fn start(script: fn(&mut Conn)) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let writer = stream.try_clone().unwrap();
                    let mut conn = Conn {
                        reader: BufReader::new(stream),
                        writer,
                        received: log,
                    };
                    script(&mut conn);
                });
            }
        });
        FakeServer { port, received }
    }

    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

/// How a scripted server answers ABOR after the client abandons a download.
#[derive(Clone, Copy)]
pub enum AborReply {
    /// 426 for the transfer, then 226 for the ABOR (RFC 959).
    Pair,
    /// Only 226.
    Single226,
    /// 451 for the transfer, then 226.
    Local451,
    /// 226 for the ABOR, and the transfer's 426 only after the NOOP that
    /// follows (asynchronous servers such as libunftp).
    LateTransferReply,
    /// Nothing at all: the session must be given up.
    Silent,
}

/// What a scripted plain-FTP server refuses and how it answers ABOR.
#[derive(Clone, Copy)]
pub struct Behaviour {
    pub epsv: bool,
    pub eprt: bool,
    pub abor: AborReply,
    /// Understands `LIST -a` (refused with 501 otherwise).
    pub list_a: bool,
}

/// A small plain-FTP server: passive (EPSV/PASV) and active (EPRT/PORT)
/// data connections, RETR of 32 MiB of zeros (more than socket buffers hold,
/// so a client that stops reading is noticed), STOR into nowhere, ABOR.
pub fn serve(c: &mut Conn, behaviour: Behaviour) {
    use std::net::{Ipv4Addr, SocketAddr};
    c.send("220 fake\r\n");
    let mut passive: Option<TcpListener> = None;
    let mut active: Option<SocketAddr> = None;
    while let Some(line) = c.next_after_login() {
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match verb.to_ascii_uppercase().as_str() {
            "EPSV" if behaviour.epsv => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                c.send(&format!(
                    "229 ok (|||{}|)\r\n",
                    l.local_addr().unwrap().port()
                ));
                passive = Some(l);
            }
            "PASV" => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = l.local_addr().unwrap().port();
                c.send(&format!(
                    "227 ok (127,0,0,1,{},{})\r\n",
                    port >> 8,
                    port & 0xff
                ));
                passive = Some(l);
            }
            "EPRT" if behaviour.eprt => {
                let parts: Vec<&str> = arg.split('|').collect();
                active = Some(SocketAddr::new(
                    parts[2].parse().unwrap(),
                    parts[3].parse().unwrap(),
                ));
                c.send("200 ok\r\n");
            }
            "PORT" => {
                let n: Vec<u16> = arg.split(',').map(|x| x.parse().unwrap()).collect();
                let ip = Ipv4Addr::new(n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8);
                active = Some(SocketAddr::new(ip.into(), n[4] << 8 | n[5]));
                c.send("200 ok\r\n");
            }
            "LIST" if !behaviour.list_a && arg.starts_with("-a") => c.send("501 bad option\r\n"),
            "RETR" | "STOR" | "LIST" => {
                let connected = match (passive.take(), active.take()) {
                    (Some(l), _) => l.accept().map(|(stream, _)| stream),
                    (None, Some(addr)) => TcpStream::connect(addr),
                    _ => {
                        c.send("425 use PASV or PORT first\r\n");
                        continue;
                    }
                };
                // The client may have given up on the transfer already.
                let Ok(mut data) = connected else {
                    c.send("425 no data connection\r\n");
                    continue;
                };
                c.send("150 go\r\n");
                if verb.eq_ignore_ascii_case("STOR") {
                    let _ = std::io::copy(&mut data, &mut std::io::sink());
                    c.send("226 stored\r\n");
                    continue;
                }
                let block = vec![0u8; 64 * 1024];
                let mut aborted = false;
                for _ in 0..512 {
                    if data.write_all(&block).is_err() {
                        aborted = true;
                        break;
                    }
                }
                drop(data);
                if !aborted {
                    c.send("226 done\r\n");
                    continue;
                }
                // The client closed the data connection: it sends ABOR next.
                if c.recv().is_none() {
                    return;
                }
                match behaviour.abor {
                    AborReply::Pair => c.send("426 aborted\r\n226 ABOR ok\r\n"),
                    AborReply::Single226 => c.send("226 ABOR ok\r\n"),
                    AborReply::Local451 => c.send("451 local error\r\n226 ABOR ok\r\n"),
                    AborReply::LateTransferReply => {
                        c.send("226 closed data channel\r\n");
                        if c.recv().is_none() {
                            return;
                        }
                        c.send("200 noop\r\n426 connection closed\r\n");
                    }
                    AborReply::Silent => {
                        // Longer than any test waits: a client that waited
                        // for the answer would hang, not just be slow.
                        std::thread::sleep(Duration::from_secs(60));
                        return;
                    }
                }
            }
            "NOOP" => c.send("200 noop\r\n"),
            "ABOR" => c.send("225 no transfer\r\n"),
            _ => c.send("502 not implemented\r\n"),
        }
    }
}
