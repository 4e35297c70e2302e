//! In-process FTPS server for integration tests.
//!
//! Include it from a test file with
//!
//! ```ignore
//! #[path = "support/inproc.rs"]
//! mod inproc;
//! use inproc::InProcServer;
//! ```
//!
//! Each [`InProcServer`] is a libunftp server with the local-disk storage back end
//! (`unftp-sbe-fs`) running on its own small tokio runtime, listening on
//! `127.0.0.1` on a free port. By default it requires explicit TLS (`AUTH TLS`) on the
//! control channel and `PROT P` on the data channel, offers TLS 1.2 and 1.3, and accepts
//! (does not require) TLS session resumption. A fresh CA and a server certificate signed by
//! it (CA:FALSE, SAN IP 127.0.0.1 and DNS localhost) are made for every server; give
//! [`InProcServer::ca_file`] to the client as its CA file. [`InProcServer::wrong_ca_file`]
//! is an unrelated CA for negative tests.
//!
//! Login is user [`InProcServer::user`] (`ftpsfs`) with a random password per server
//! ([`InProcServer::password`]); anonymous login is refused. The storage root is a fresh
//! temporary directory ([`InProcServer::root`]) so tests can check the bytes on disk.
//! libunftp's own log (every command and reply at debug level, the password shown as
//! `*******`) goes to [`InProcServer::log_file`].
//! Everything (runtime, sockets, temporary files) goes away when the server is dropped.
//!
//! Control connections pass through a small relay in here (see [`relay`]) that works around
//! a race in libunftp 0.24's AUTH TLS; data connections go straight to libunftp.
//!
//! Things libunftp 0.24 does that a client under test will meet (checked with curl 7.88 and
//! Python's ftplib):
//! - FEAT lists AUTH TLS, EPSV, MDTM, MLSD, MLST, PBSZ, PROT, REST STREAM, SITE MD5, SIZE,
//!   UTF8. No MFMT, no MDTM with a time (set), no EPRT, no XRMD; PORT only with
//!   [`InProcServerBuilder::active_mode`]. SITE CHMOD is added by this file.
//! - A command line it cannot parse (`MODE Z`, `OPTS MLST …`) gets `501 Invalid Parameter`
//!   and then the control connection is closed.
//! - MKD answers `257 /name` (path not quoted); MLSD facts are only type, size, modify.
//! - The data-channel TLS requirement is checked on PASV only: after `PROT C`, EPSV works
//!   in the clear.
//! - With TLS 1.3 the server sends session tickets on every data connection; a client that
//!   closes an upload without reading them gets its connection reset and the upload may
//!   lose its tail (426). curl does this (curl/curl#6149), so curl uploads in tests should
//!   use `--tls-max 1.2`. After an upload the server closes without a TLS close_notify.
//! - A failed TLS handshake on a data connection panics a tokio task inside libunftp
//!   (printed to stderr, harmless to the test).
//!
//! Tests themselves stay blocking std code; tokio lives only in here.
//!
//! Dev-dependencies this file needs: `libunftp` (features `ring`, no default features),
//! `unftp-sbe-fs`, `unftp-core`, `async-trait`, `slog`, `tokio` (`rt-multi-thread`, `net`,
//! `time`, `io-util`, `sync`), `rcgen` (features `ring`, `pem`, no default features) and
//! `tempfile`.

#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::ops::RangeInclusive;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use libunftp::options::TlsFlags;
use libunftp::options::{
    ActivePassiveMode, FtpsRequired, PassiveHost, Reply, ReplyCode, SiteCommandContext,
    SiteCommandHandler,
};
use libunftp::{Server, ServerBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, DefaultUser, Principal, UserDetail,
};
use unftp_core::storage::{Metadata, StorageBackend};
use unftp_sbe_fs::Filesystem;

/// The login name every in-process server accepts.
pub const USER: &str = "ftpsfs";

/// How long [`InProcServerBuilder::start`] waits for the server to greet.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Passive ports are handed out in blocks of `PASV_SPAN` from `PASV_FIRST..PASV_END`, below
/// Linux's ephemeral range (32768..), so that servers in one test process (tests run on
/// parallel threads) never share a port and the kernel's outgoing ports do not land in them.
const PASV_FIRST: u16 = 20000;
const PASV_END: u16 = 30000;
const PASV_SPAN: u16 = 40;

/// Options for an [`InProcServer`]; get one from [`InProcServer::builder`].
#[derive(Clone, Debug)]
pub struct InProcServerBuilder {
    tls: bool,
    require_tls_control: bool,
    require_tls_data: bool,
    tls_flags: TlsFlags,
    idle_timeout: Option<Duration>,
    passive_host: Option<Ipv4Addr>,
    active_mode: bool,
    site_chmod: bool,
}

impl Default for InProcServerBuilder {
    fn default() -> Self {
        InProcServerBuilder {
            tls: true,
            require_tls_control: true,
            require_tls_data: true,
            tls_flags: TlsFlags::V1_2
                | TlsFlags::V1_3
                | TlsFlags::RESUMPTION_SESS_ID
                | TlsFlags::RESUMPTION_TICKETS,
            idle_timeout: None,
            passive_host: None,
            active_mode: false,
            site_chmod: true,
        }
    }
}

impl InProcServerBuilder {
    /// `false`: plain FTP, TLS not configured at all, so `AUTH TLS` is answered with an error
    /// and FEAT does not list it. Default `true`.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Whether TLS is required before USER/PASS (control) and before PASV (data: `PROT P`).
    /// Default `(true, true)`. Only meaningful with `tls(true)`.
    ///
    /// Caveat (libunftp 0.24): the data-channel requirement is checked on `PASV` only; `EPSV`
    /// and `PORT` with `PROT C` are let through.
    pub fn require_tls(mut self, control: bool, data: bool) -> Self {
        self.require_tls_control = control;
        self.require_tls_data = data;
        self
    }

    /// TLS versions and session resumption. Default
    /// `V1_2 | V1_3 | RESUMPTION_SESS_ID | RESUMPTION_TICKETS`. E.g. `TlsFlags::V1_2` alone
    /// is TLS 1.2 only without resumption.
    pub fn tls_flags(mut self, flags: TlsFlags) -> Self {
        self.tls_flags = flags;
        self
    }

    /// Close a control connection after this long without a command (whole seconds, at
    /// least 1). Default: libunftp's 600 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Advertise this address in the `PASV` reply instead of the control connection's
    /// (the server still listens on 127.0.0.1; `EPSV` replies carry no address).
    ///
    /// Use a loopback address such as `127.0.0.2` (nothing listens there: connection
    /// refused). Do not make a client actually connect to a private or public address
    /// (10.x etc.) from tests: traffic to anything outside 127.0.0.0/8 is not allowed here.
    pub fn passive_host(mut self, ip: Ipv4Addr) -> Self {
        self.passive_host = Some(ip);
        self
    }

    /// Also accept `PORT` (active mode). Default: passive only (`PORT` is refused).
    /// libunftp 0.24 has no `EPRT`.
    pub fn active_mode(mut self, on: bool) -> Self {
        self.active_mode = on;
        self
    }

    /// Answer `SITE CHMOD <octal> <path>` (libunftp has no built-in one; this file adds it).
    /// The path is resolved against the storage root, not the session's working directory,
    /// which libunftp does not give SITE handlers: use absolute paths. Default `true`.
    pub fn site_chmod(mut self, on: bool) -> Self {
        self.site_chmod = on;
        self
    }

    /// Start the server and wait (at most 10 s) until it greets; panics on failure.
    pub fn start(self) -> InProcServer {
        InProcServer::start_with(self)
    }
}

/// A running in-process FTP(S) server; stopped when dropped.
pub struct InProcServer {
    runtime: Option<tokio::runtime::Runtime>,
    port: u16,
    password: String,
    passive_ports: RangeInclusive<u16>,
    root: PathBuf,
    ca_file: PathBuf,
    wrong_ca_file: PathBuf,
    server_cert_file: PathBuf,
    log_file: PathBuf,
    tls: bool,
    // Last, so the files go after the runtime has stopped.
    _dir: tempfile::TempDir,
}

impl fmt::Debug for InProcServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcServer")
            .field("port", &self.port)
            .field("user", &USER)
            .field("password", &"<redacted>")
            .field("passive_ports", &self.passive_ports)
            .field("root", &self.root)
            .field("tls", &self.tls)
            .finish()
    }
}

impl InProcServer {
    /// Options; call `.start()` on the result.
    pub fn builder() -> InProcServerBuilder {
        InProcServerBuilder::default()
    }

    /// Start with the defaults: FTPS required on both channels, TLS 1.2 and 1.3.
    pub fn start() -> InProcServer {
        InProcServerBuilder::default().start()
    }

    /// The control port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// Always `"ftpsfs"`.
    pub fn user(&self) -> &'static str {
        USER
    }

    /// The random password of this server (32 hex digits).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// PEM file of the CA that signed the server certificate (pass as the client's CA file).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// PEM file of another CA, unrelated to this server's certificate.
    pub fn wrong_ca_file(&self) -> &Path {
        &self.wrong_ca_file
    }

    /// PEM file of the server's own certificate (leaf only), e.g. for pinning tests.
    pub fn server_cert_file(&self) -> &Path {
        &self.server_cert_file
    }

    /// libunftp's log: one line per event, e.g. `DEBG Control channel event Command(Pasv) …`
    /// and `DEBG Control channel reply Reply { code: … }`.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The log so far as text (the password never appears in it).
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log_file)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The storage root on disk: `ftp://…/a/b` is `root().join("a/b")`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The passive port range reserved for this server.
    pub fn passive_ports(&self) -> RangeInclusive<u16> {
        self.passive_ports.clone()
    }

    /// Whether TLS is configured (`builder().tls(..)`).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// `ftp://127.0.0.1:PORT/` (no credentials in it).
    pub fn url(&self) -> String {
        format!("ftp://{}:{}/", self.host(), self.port)
    }

    /// Stop now (same as dropping it).
    /// What a client needs, in the form the shared test suites take.
    pub fn info(&self) -> crate::common::ServerInfo {
        crate::common::ServerInfo {
            host: self.host().to_string(),
            port: self.port(),
            implicit_port: None,
            user: self.user().to_string(),
            password: self.password().to_string(),
            ca_file: self.ca_file().to_path_buf(),
            wrong_ca_file: self.wrong_ca_file().to_path_buf(),
            server_cert: Some(self.server_cert_file().to_path_buf()),
            root: self.root().to_path_buf(),
            log: Some(self.log_file().to_path_buf()),
        }
    }

    pub fn stop(self) {}

    fn start_with(opts: InProcServerBuilder) -> InProcServer {
        let dir = tempfile::Builder::new()
            .prefix("ftpsfs-inproc-")
            .tempdir()
            .expect("inproc: cannot make a temporary directory");
        let root = dir.path().join("root");
        let tls_dir = dir.path().join("tls");
        for d in [&root, &tls_dir] {
            std::fs::create_dir(d).expect("inproc: cannot make a directory in the temp dir");
        }
        let pki = Pki::write(&tls_dir);
        let log_file = dir.path().join("server.log");
        let log = Arc::new(FileLog::create(&log_file));
        let password = random_hex();
        let passive_ports = reserve_passive_ports();

        let settings = Arc::new(Settings {
            opts: opts.clone(),
            root: root.clone(),
            cert_file: pki.server_cert.clone(),
            key_file: pki.server_key,
            log,
            passive_ports: passive_ports.clone(),
            auth: Arc::new(PasswordAuth {
                password: password.clone(),
            }),
        });
        // Build once up front so that a bad configuration panics here, not in a task.
        if let Err(e) = settings.server(Arc::new(Notify::new())) {
            panic!("inproc: libunftp rejected the server configuration: {e}");
        }

        let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("inproc: cannot bind 127.0.0.1:0 for the control port");
        let port = listener.local_addr().expect("inproc: local_addr").port();
        listener
            .set_nonblocking(true)
            .expect("inproc: set_nonblocking");

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(8)
            .thread_name(format!("inproc-ftp-{port}"))
            .enable_all()
            .build()
            .expect("inproc: cannot build the tokio runtime");
        runtime.spawn(accept_loop(listener, settings));

        let server = InProcServer {
            runtime: Some(runtime),
            port,
            password,
            passive_ports,
            root,
            ca_file: pki.ca,
            wrong_ca_file: pki.wrong_ca,
            server_cert_file: pki.server_cert,
            log_file,
            tls: opts.tls,
            _dir: dir,
        };
        server.wait_for_greeting();
        server
    }

    /// Connect and read the `220` greeting, retrying until [`START_TIMEOUT`].
    fn wait_for_greeting(&self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no attempt");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "inproc: FTP server on {addr} did not greet within {START_TIMEOUT:?}: {last}"
                );
            }
            let attempt = std::net::TcpStream::connect_timeout(&addr, left).and_then(|s| {
                s.set_read_timeout(Some(left))?;
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line)?;
                Ok(line)
            });
            match attempt {
                Ok(line) if line.starts_with("220") => return,
                Ok(line) => last = format!("unexpected greeting {:?}", line.trim_end()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for InProcServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Dropped inside some other tokio runtime, where blocking would panic.
                rt.shutdown_background();
            } else {
                // Cancels the accept loop and every session; closes all sockets. Blocking
                // file I/O tasks get at most this long before their threads are abandoned.
                rt.shutdown_timeout(Duration::from_secs(2));
            }
        }
    }
}

/// Everything needed to build a libunftp `Server` for one control connection.
struct Settings {
    opts: InProcServerBuilder,
    root: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    log: Arc<FileLog>,
    passive_ports: RangeInclusive<u16>,
    auth: Arc<PasswordAuth>,
}

impl Settings {
    /// A `Server` for one control connection; its log signals `upgraded` when libunftp
    /// switches that connection to TLS.
    fn server(
        &self,
        upgraded: Arc<Notify>,
    ) -> Result<Server<Filesystem, DefaultUser>, libunftp::ServerError> {
        let logger = slog::Logger::root(
            slog::Drain::fuse(ConnLog {
                file: self.log.clone(),
                upgraded,
            }),
            slog::o!(),
        );
        let root = self.root.clone();
        let o = &self.opts;
        let mut b = ServerBuilder::with_authenticator(
            Box::new(move || {
                Filesystem::new(root.clone()).expect("inproc: cannot open the storage root")
            }),
            self.auth.clone(),
        )
        .greeting("ftpsfs in-process test server")
        .logger(logger)
        .passive_ports(self.passive_ports.clone())
        .active_passive_mode(if o.active_mode {
            ActivePassiveMode::ActiveAndPassive
        } else {
            ActivePassiveMode::PassiveOnly
        });
        if o.tls {
            let req = |on| {
                if on {
                    FtpsRequired::All
                } else {
                    FtpsRequired::None
                }
            };
            b = b
                .ftps(self.cert_file.clone(), self.key_file.clone())
                .ftps_tls_flags(o.tls_flags)
                .ftps_required(req(o.require_tls_control), req(o.require_tls_data));
        }
        if let Some(t) = o.idle_timeout {
            b = b.idle_session_timeout(t.as_secs().max(1));
        }
        if let Some(ip) = o.passive_host {
            b = b.passive_host(PassiveHost::Ip(ip));
        }
        if o.site_chmod {
            b = b.site_command(
                "CHMOD",
                SiteChmod {
                    root: self.root.clone(),
                },
            );
        }
        b.build()
    }
}

/// Accepts control connections and serves each one with a freshly built `Server` through
/// [`relay`]. (libunftp's `listen` binds by address itself and cannot report what port 0
/// became; `Server::service` takes one accepted stream.)
async fn accept_loop(listener: StdTcpListener, settings: Arc<Settings>) {
    let listener = TcpListener::from_std(listener)
        .expect("inproc: cannot register the control listener with tokio");
    let internal = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("inproc: cannot bind the internal control listener");
    loop {
        let client = match listener.accept().await {
            Ok((client, _peer)) => client,
            Err(_) => {
                // E.g. EMFILE: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some((near, far)) = loopback_pair(&internal).await else {
            continue;
        };
        let upgraded = Arc::new(Notify::new());
        if let Ok(server) = settings.server(upgraded.clone()) {
            tokio::spawn(async move {
                let _ = server.service(far).await;
            });
            tokio::spawn(relay(client, near, upgraded));
        }
    }
}

/// Two ends of a fresh TCP connection over loopback.
async fn loopback_pair(internal: &TcpListener) -> Option<(TcpStream, TcpStream)> {
    let near = TcpStream::connect(internal.local_addr().ok()?).await.ok()?;
    let near_addr = near.local_addr().ok()?;
    loop {
        let accepted = tokio::time::timeout(Duration::from_secs(5), internal.accept()).await;
        let (far, peer) = accepted.ok()?.ok()?;
        if peer == near_addr {
            return Some((near, far));
        }
    }
}

/// What libunftp logs just before it takes the control connection's socket back from its line
/// reader and starts the TLS handshake on it.
const UPGRADE_LOG_LINE: &str = "Upgrading control channel to TLS";

/// Copies a control connection both ways between the client and libunftp, with one change:
/// once the server has sent `234` (AUTH TLS accepted), the client's next bytes (its TLS
/// ClientHello) are held back until libunftp has logged [`UPGRADE_LOG_LINE`].
///
/// Why: libunftp 0.24 sends the 234 reply and asks for the TLS switch through a spawned task,
/// and its control loop may poll the line reader once more in between. A client that sends
/// its ClientHello at once (a rustls client does) then has it read as an FTP command: the
/// server answers in plain text and the handshake fails ("received corrupt message of type
/// InvalidContentType"), about 1 time in 12 with four clients at once on two cores.
async fn relay(client: TcpStream, server: TcpStream, upgraded: Arc<Notify>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let auth_accepted = Arc::new(AtomicBool::new(false));

    let upstream = {
        let auth_accepted = auth_accepted.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut held = false;
            loop {
                let n = match client_rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if !held && auth_accepted.load(Ordering::Acquire) {
                    held = true;
                    let _ = tokio::time::timeout(Duration::from_secs(5), upgraded.notified()).await;
                }
                if server_tx.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = server_tx.shutdown().await;
        })
    };

    let mut buf = vec![0u8; 16 * 1024];
    let mut line = Vec::new();
    let mut plain = true;
    loop {
        let n = match server_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Before any TLS the replies are plain lines; flag a 234 before the client sees it.
        if plain {
            for &b in &buf[..n] {
                line.push(b);
                if b == b'\n' {
                    if line.starts_with(b"234") {
                        auth_accepted.store(true, Ordering::Release);
                        plain = false;
                        break;
                    }
                    line.clear();
                }
            }
        }
        if client_tx.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // The server closed: close the client's side too.
    upstream.abort();
}

/// The server's log file, shared by the loggers of all its connections.
struct FileLog(Mutex<std::fs::File>);

impl FileLog {
    fn create(path: &Path) -> FileLog {
        FileLog(Mutex::new(
            std::fs::File::create(path).expect("inproc: cannot create the log file"),
        ))
    }
}

/// The slog drain of one control connection: one line per record into the [`FileLog`], and
/// a signal on `upgraded` when [`UPGRADE_LOG_LINE`] comes by.
struct ConnLog {
    file: Arc<FileLog>,
    upgraded: Arc<Notify>,
}

impl slog::Drain for ConnLog {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let msg = record.msg().to_string();
        let mut line = format!("{} {msg}", record.level().as_short_str());
        let mut kv = KvLine(&mut line);
        let _ = slog::KV::serialize(&record.kv(), record, &mut kv);
        let _ = slog::KV::serialize(values, record, &mut kv);
        line.push('\n');
        if let Ok(mut f) = self.file.0.lock() {
            let _ = f.write_all(line.as_bytes());
        }
        if msg == UPGRADE_LOG_LINE {
            self.upgraded.notify_one();
        }
        Ok(())
    }
}

struct KvLine<'a>(&'a mut String);

impl slog::Serializer for KvLine<'_> {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments) -> slog::Result {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

/// Password check for the single user [`USER`]. Its `Debug` hides the password.
struct PasswordAuth {
    password: String,
}

impl fmt::Debug for PasswordAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordAuth { user: \"ftpsfs\", password: <redacted> }")
    }
}

#[async_trait::async_trait]
impl Authenticator for PasswordAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        if username != USER {
            return Err(AuthenticationError::BadUser);
        }
        match creds.password.as_deref() {
            Some(p) if p == self.password => Ok(Principal {
                username: username.to_string(),
            }),
            _ => Err(AuthenticationError::BadPassword),
        }
    }
}

/// `SITE CHMOD <octal mode> <path>` on the local storage root.
#[derive(Debug)]
struct SiteChmod {
    root: PathBuf,
}

impl SiteChmod {
    fn run(&self, args: &str) -> Reply {
        let args = args.trim();
        let Some((mode, path)) = args.split_once(' ') else {
            return Reply::new(
                ReplyCode::ParameterSyntaxError,
                "Usage: SITE CHMOD <mode> <path>",
            );
        };
        let Ok(mode) = u32::from_str_radix(mode, 8) else {
            return Reply::new(ReplyCode::ParameterSyntaxError, "Bad mode");
        };
        if mode > 0o7777 {
            return Reply::new(ReplyCode::ParameterSyntaxError, "Bad mode");
        }
        let rel = Path::new(path.trim_start_matches('/'));
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Reply::new(ReplyCode::FileError, "Bad path");
        }
        let full = self.root.join(rel);
        match std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => Reply::new(ReplyCode::CommandOkay, "SITE CHMOD command ok."),
            Err(_) => Reply::new(ReplyCode::FileError, "SITE CHMOD command failed."),
        }
    }
}

#[async_trait::async_trait]
impl<Storage, User> SiteCommandHandler<Storage, User> for SiteChmod
where
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    User: UserDetail + 'static,
{
    async fn handle(&self, ctx: &SiteCommandContext<Storage, User>) -> Reply {
        self.run(&ctx.arguments)
    }
}

/// The PEM files of one server.
struct Pki {
    ca: PathBuf,
    wrong_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Pki {
    /// A CA (CA:TRUE), a server certificate signed by it (CA:FALSE, serverAuth, SAN IP
    /// 127.0.0.1 + DNS localhost) and an unrelated second CA, written into `dir`.
    fn write(dir: &Path) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };

        let ca = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("rcgen params");
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            CertifiedIssuer::self_signed(p, KeyPair::generate().expect("rcgen key"))
                .expect("rcgen: CA certificate")
        };
        let issuer = ca("ftpsfs in-process test CA");
        let wrong = ca("ftpsfs unrelated test CA");

        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("rcgen params");
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("rcgen key");
        let cert = p
            .signed_by(&key, &issuer)
            .expect("rcgen: server certificate");

        let pki = Pki {
            ca: dir.join("ca.pem"),
            wrong_ca: dir.join("wrong-ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        let files = [
            (&pki.ca, issuer.pem()),
            (&pki.wrong_ca, wrong.pem()),
            (&pki.server_cert, cert.pem()),
            (&pki.server_key, key.serialize_pem()),
        ];
        for (path, pem) in files {
            std::fs::write(path, pem).expect("inproc: cannot write a PEM file");
        }
        pki
    }
}

/// 128 random bits as hex, from std's randomly keyed hasher (no extra dependency).
fn random_hex() -> String {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let word = || {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(CALLS.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.finish()
    };
    format!("{:016x}{:016x}", word(), word())
}

/// A block of `PASV_SPAN` ports that are all free now, distinct from every other block this
/// process has handed out since the last wrap-around. The starting block depends on the process
/// id so that test binaries running side by side (nextest) start apart.
fn reserve_passive_ports() -> RangeInclusive<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let blocks = u32::from((PASV_END - PASV_FIRST) / PASV_SPAN);
    let offset = std::process::id().wrapping_mul(7919) % blocks;
    for _ in 0..blocks {
        let block = (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % blocks;
        let first = PASV_FIRST + (block as u16) * PASV_SPAN;
        let range = first..=first + PASV_SPAN - 1;
        if range
            .clone()
            .all(|p| StdTcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok())
        {
            return range;
        }
    }
    panic!("inproc: no free block of {PASV_SPAN} passive ports in {PASV_FIRST}..{PASV_END}");
}
