//! A scripted FTPS server (explicit TLS on both channels, rustls as server)
//! for what real servers do not do on demand, e.g. ending a download without
//! TLS close_notify. Its certificate is self-signed and marked CA:TRUE, as
//! `openssl req -x509` makes most self-signed FTPS certificates.
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// vsftpd's default greeting, for the client to take the fake for vsftpd.
pub const VSFTPD_GREETING: &str = "(vsFTPd 3.0.3)";

pub struct TlsFake {
    pub port: u16,
    pub cert_file: PathBuf,
    _dir: TempDir,
}

/// How the data connection of a RETR ends.
#[derive(Clone, Copy)]
pub enum DataEnd {
    CloseNotify,
    /// TCP FIN without close_notify: a truncation attacker, or a broken server.
    BareClose,
    /// No TLS on the data connection at all: the file is sent in clear
    /// before (instead of) a handshake.
    Plaintext,
    /// Half the bytes, then a TCP reset before any close_notify, and 426.
    Reset,
    /// All the bytes and close_notify, as `CloseNotify`, and then 426 (the
    /// server's verdict is what counts).
    CloseNotifyThen426,
}

/// How the server answers CCC.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ccc {
    /// 502, as vsftpd does.
    Unknown,
    /// 200, close_notify both ways, then the control connection in clear.
    Clears,
    /// 200, and TLS goes on: no close_notify ever comes.
    KeepsTls,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, marked CA:TRUE as
/// `openssl req -x509` marks it, and its key, written into `dir`. Made with
/// rcgen rather than the openssl program, so that the test runs anywhere.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("rcgen params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("rcgen key");
    let cert = params.self_signed(&key).expect("rcgen: certificate");
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

impl TlsFake {
    pub fn start(data_end: DataEnd) -> TlsFake {
        TlsFake::start_with(data_end, Ccc::Unknown)
    }

    /// With `ccc`, what the server does with CCC.
    pub fn start_with(data_end: DataEnd, ccc: Ccc) -> TlsFake {
        TlsFake::start_greeting(data_end, ccc, "tls fake")
    }

    /// With `greeting` as the text of its 220.
    pub fn start_greeting(data_end: DataEnd, ccc: Ccc, greeting: &'static str) -> TlsFake {
        // One directory per fake: a test may run two at once.
        static FAKES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ftpsfs-tlsfake-{}-{:?}-{}",
            std::process::id(),
            thread::current().id(),
            FAKES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_file, key_file) = self_signed(&dir);
        let certs = vec![CertificateDer::from_pem_file(&cert_file).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&key_file).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = Arc::clone(&config);
                thread::spawn(move || serve(stream, config, data_end, ccc, greeting));
            }
        });
        TlsFake {
            port,
            cert_file,
            _dir: TempDir(dir),
        }
    }
}

type Tls = StreamOwned<ServerConnection, TcpStream>;

fn tls_accept(tcp: TcpStream, config: &Arc<ServerConfig>) -> Tls {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
    StreamOwned::new(ServerConnection::new(Arc::clone(config)).unwrap(), tcp)
}

fn recv(tls: &mut impl Read) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match tls.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => {
                return Some(String::from_utf8_lossy(&line).trim_end().to_string())
            }
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
}

fn serve(
    mut tcp: TcpStream,
    config: Arc<ServerConfig>,
    data_end: DataEnd,
    ccc: Ccc,
    greeting: &str,
) {
    let _ = tcp.write_all(format!("220 {greeting}\r\n").as_bytes());
    let mut auth = [0u8; 10];
    if tcp.read_exact(&mut auth).is_err() || &auth != b"AUTH TLS\r\n" {
        return;
    }
    let _ = tcp.write_all(b"234 go ahead\r\n");
    let mut control = tls_accept(tcp, &config);
    let mut passive: Option<TcpListener> = None;
    while let Some(line) = recv(&mut control) {
        if line.eq_ignore_ascii_case("CCC") && ccc != Ccc::Unknown {
            let _ = control.write_all(b"200 clearing\r\n");
            let _ = control.flush();
            if ccc == Ccc::KeepsTls {
                // Deaf to the client's close_notify: holds the connection
                // until the client gives up and closes it.
                let mut ignored = Vec::new();
                let _ = control.sock.read_to_end(&mut ignored);
                return;
            }
            control.conn.send_close_notify();
            let _ = control.flush();
            if !read_until_close_notify(&mut control) {
                return;
            }
            let mut plain = control.sock;
            while let Some(line) = recv(&mut plain) {
                let Some(reply) = answer(&mut plain, &line, &mut passive, &config, data_end) else {
                    return;
                };
                let _ = plain.write_all(reply.as_bytes());
            }
            return;
        }
        let Some(reply) = answer(&mut control, &line, &mut passive, &config, data_end) else {
            return;
        };
        let _ = control.write_all(reply.as_bytes());
        let _ = control.flush();
    }
}

/// Reads TLS records one at a time until the client's close_notify, so
/// that the clear-text command right behind it stays in the socket (a
/// rustls read would take it into its buffer). False if anything else came.
fn read_until_close_notify(tls: &mut Tls) -> bool {
    loop {
        match tls.conn.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() > 0 => return false,
            Ok(state) if state.peer_has_closed() => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
        let mut record = vec![0u8; 5];
        if tls.sock.read_exact(&mut record).is_err() {
            return false;
        }
        let length = usize::from(u16::from_be_bytes([record[3], record[4]]));
        record.resize(5 + length, 0);
        if tls.sock.read_exact(&mut record[5..]).is_err()
            || tls.conn.read_tls(&mut &record[..]).is_err()
        {
            return false;
        }
    }
}

/// The reply to one command line (`None`: end the session).
fn answer(
    control: &mut impl Write,
    line: &str,
    passive: &mut Option<TcpListener>,
    config: &Arc<ServerConfig>,
    data_end: DataEnd,
) -> Option<String> {
    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
    let reply = match verb.as_str() {
        "USER" => "331 password\r\n".to_string(),
        "PASS" => "230 in\r\n".to_string(),
        "PBSZ" | "PROT" | "TYPE" | "NOOP" => "200 ok\r\n".to_string(),
        "FEAT" => "211-Features:\r\n EPSV\r\n211 End\r\n".to_string(),
        "EPSV" => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            *passive = Some(l);
            format!("229 ok (|||{port}|)\r\n")
        }
        "RETR" => {
            let l = passive.take()?;
            let _ = control.write_all(b"150 data\r\n");
            let _ = control.flush();
            let (mut tcp, _) = l.accept().unwrap();
            if let DataEnd::Plaintext = data_end {
                let _ = tcp.write_all(&[7u8; 1000]);
                let _ = tcp.shutdown(Shutdown::Both);
                return Some("226 done\r\n".to_string());
            }
            let mut data = tls_accept(tcp, config);
            if let DataEnd::Reset = data_end {
                let _ = data.write_all(&[7u8; 500]);
                let _ = data.flush();
                // With SO_LINGER 0, the close sends RST.
                let _ = socket2::SockRef::from(&data.sock).set_linger(Some(Duration::ZERO));
                drop(data);
                return Some("426 Failure writing network stream.\r\n".to_string());
            }
            let _ = data.write_all(&[7u8; 1000]);
            let _ = data.flush();
            match data_end {
                DataEnd::CloseNotify | DataEnd::CloseNotifyThen426 => {
                    // As vsftpd: the final reply once the client's
                    // close_notify came (read_to_end ends there).
                    data.conn.send_close_notify();
                    let _ = data.flush();
                    let mut rest = Vec::new();
                    let _ = data.read_to_end(&mut rest);
                }
                DataEnd::BareClose | DataEnd::Plaintext | DataEnd::Reset => {
                    let _ = data.sock.shutdown(Shutdown::Both);
                }
            }
            match data_end {
                DataEnd::CloseNotifyThen426 => "426 Failure writing network stream.\r\n",
                _ => "226 done\r\n",
            }
            .to_string()
        }
        _ => "502 no\r\n".to_string(),
    };
    Some(reply)
}
