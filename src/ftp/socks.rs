//! Connections through a SOCKS5 proxy (RFC 1928), with user name and password
//! authentication (RFC 1929): CONNECT for the control connection and passive
//! data connections, BIND for active ones.
//!
//! `Handshake` is the conversation with the proxy as a machine with no I/O:
//! it says what to send and how many bytes it may read next, never more than
//! the proxy's reply holds, so that bytes after it (an FTP server's greeting
//! comes right after a CONNECT reply) stay in the socket for the caller.
//! `connect` and `bind` drive it on a socket with the caller's timeouts.
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::config::Credentials;
use super::error::{Error, Kind, Result};
use super::net;

const VERSION: u8 = 5;
const AUTH_VERSION: u8 = 1;
const NO_AUTH: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const CONNECT: u8 = 1;
const BIND: u8 = 2;
const IPV4: u8 = 1;
const DOMAIN: u8 = 3;
const IPV6: u8 = 4;

/// A SOCKS5 proxy, as `--proxy` gives it.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `socks5h://`: host names are sent to the proxy, which resolves them;
    /// `socks5://` resolves them here and sends addresses.
    pub remote_dns: bool,
    /// User name and password (RFC 1929), when the proxy asks for them.
    pub auth: Option<Credentials>,
}

impl Proxy {
    /// `host:port`, with brackets around IPv6 literals.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What `--proxy` says, before the password is looked up elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub host: String,
    pub port: u16,
    pub remote_dns: bool,
    pub user: Option<String>,
}

/// Parses `socks5://[user@]host:port` or `socks5h://…`. A password in the
/// URL is refused: the command line can be read by every user (ps, /proc).
pub fn parse_proxy_url(text: &str) -> std::result::Result<ProxyUrl, String> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("proxy {text:?} is not a URL: expected socks5://host:port"))?;
    let remote_dns = match scheme.to_ascii_lowercase().as_str() {
        "socks5" => false,
        "socks5h" => true,
        other => {
            return Err(format!(
                "proxy scheme {other:?} is not supported: use socks5:// (names resolved here) \
                 or socks5h:// (names resolved by the proxy)"
            ))
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err("the proxy URL takes no path: socks5://[user@]host:port".into());
    }
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => {
            if userinfo.contains(':') {
                return Err(format!(
                    "the proxy password in --proxy can be seen by every user of this machine \
                     (ps, /proc); remove it from the URL and put it in {PROXY_PASSWORD_ENV} or \
                     a file given with --proxy-password-file"
                ));
            }
            let user = percent_decode(userinfo)?;
            if user.is_empty() || user.len() > 255 {
                return Err("the proxy user name must be 1 to 255 bytes long".into());
            }
            (Some(user), host_port)
        }
        None => (None, authority),
    };
    let (host, port) = split_host_port(host_port)
        .ok_or_else(|| format!("proxy {host_port:?}: expected host:port (e.g. localhost:1080)"))?;
    if host.is_empty() || host.len() > 255 {
        return Err(format!("proxy {host_port:?}: no host name"));
    }
    Ok(ProxyUrl {
        host,
        port,
        remote_dns,
        user,
    })
}

/// Where the proxy password comes from, besides `--proxy-password-file`.
pub const PROXY_PASSWORD_ENV: &str = "FTPSFS_PROXY_PASSWORD";

fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(inner) = text.strip_prefix('[') {
        let (host, rest) = inner.split_once(']')?;
        (host, rest.strip_prefix(':')?)
    } else {
        text.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((host.to_string(), port))
}

fn percent_decode(text: &str) -> std::result::Result<String, String> {
    let bytes = crate::percent::decode(text).map_err(|e| format!("the proxy user name: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "the proxy user name is not valid UTF-8".to_string())
}

/// Where a connection through the proxy goes, or where the proxy listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Ip(SocketAddr),
    /// A name the proxy resolves (socks5h).
    Name(String, u16),
}

impl Address {
    pub fn port(&self) -> u16 {
        match self {
            Address::Ip(addr) => addr.port(),
            Address::Name(_, port) => *port,
        }
    }

    pub fn with_port(&self, port: u16) -> Address {
        match self {
            Address::Ip(addr) => Address::Ip(SocketAddr::new(addr.ip(), port)),
            Address::Name(name, _) => Address::Name(name.clone(), port),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Address::Ip(SocketAddr::V4(addr)) => {
                out.push(IPV4);
                out.extend_from_slice(&addr.ip().octets());
            }
            Address::Ip(SocketAddr::V6(addr)) => {
                out.push(IPV6);
                out.extend_from_slice(&addr.ip().octets());
            }
            Address::Name(name, _) => {
                out.push(DOMAIN);
                // Checked to be at most 255 bytes where names are accepted;
                // cut here rather than send a wrong length byte.
                let name = &name.as_bytes()[..name.len().min(255)];
                out.push(name.len() as u8);
                out.extend_from_slice(name);
            }
        }
        out.extend_from_slice(&self.port().to_be_bytes());
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(addr) => write!(f, "{addr}"),
            Address::Name(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// What went wrong talking to the proxy, before it is given the proxy's
/// address and turned into an `Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The first bytes were not a SOCKS5 answer: another kind of server.
    NotSocks5 { answered: Vec<u8> },
    /// A SOCKS5 answer that breaks the protocol.
    Garbage(String),
    /// The proxy wants a user name and password and none was given.
    NeedsAuthentication,
    /// The proxy accepts none of the methods offered.
    NoAcceptableMethod,
    /// RFC 1929: the user name or password was refused.
    AuthenticationRefused,
    /// The proxy's reply code to CONNECT or BIND (RFC 1928 section 6).
    Reply { command: u8, code: u8 },
}

impl Failure {
    fn kind(&self) -> Kind {
        match self {
            Failure::NotSocks5 { .. } | Failure::Garbage(_) => Kind::Protocol,
            Failure::NeedsAuthentication | Failure::AuthenticationRefused => Kind::LoginFailed,
            Failure::NoAcceptableMethod => Kind::Refused,
            // General failure, unreachable network or host, refused, TTL expired:
            // the path may work again later.
            Failure::Reply {
                code: 1 | 3 | 4 | 5 | 6,
                ..
            } => Kind::Transient,
            Failure::Reply { .. } => Kind::Refused,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NotSocks5 { answered } => {
                let shown: String = String::from_utf8_lossy(answered)
                    .chars()
                    .map(|c| if c.is_control() { '.' } else { c })
                    .collect();
                write!(
                    f,
                    "it is not a SOCKS5 proxy (it answered {shown:?}); check the --proxy address"
                )
            }
            Failure::Garbage(what) => write!(f, "the proxy broke the SOCKS5 protocol: {what}"),
            Failure::NeedsAuthentication => write!(
                f,
                "the proxy requires a user name and password: give the user in --proxy \
                 socks5://USER@host:port and the password in {PROXY_PASSWORD_ENV} or \
                 --proxy-password-file"
            ),
            Failure::NoAcceptableMethod => write!(
                f,
                "the proxy accepts none of the authentication methods offered \
                 (none, user name and password)"
            ),
            Failure::AuthenticationRefused => {
                write!(f, "the proxy refused the user name or password")
            }
            Failure::Reply { command, code } => {
                let what = match code {
                    1 => "general failure",
                    2 => "connection not allowed by the proxy's rules",
                    3 => "network unreachable from the proxy",
                    4 => "host unreachable from the proxy",
                    5 => "connection refused (by the server, as seen from the proxy)",
                    6 => "TTL expired",
                    7 => "command not supported",
                    8 => "address type not supported",
                    _ => "unknown reply code",
                };
                write!(f, "the proxy answered {code}: {what}")?;
                match (*command, *code) {
                    (BIND, 7) => write!(
                        f,
                        "; this proxy does not offer BIND, which active mode needs through a \
                         proxy: use passive mode (leave out --active)"
                    ),
                    (_, 8) => write!(
                        f,
                        "; try socks5:// (names resolved here) instead of socks5h://, or the \
                         other way round"
                    ),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// What the I/O does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes, then read.
    Send(Vec<u8>),
    /// Read at most this many bytes and give them to `received`.
    Read(usize),
    /// BIND: the proxy listens here for the server; read again for the
    /// reply that comes when the server connects.
    Listening(Address),
    /// The connection is through: to this peer (BIND) or from this local
    /// address of the proxy (CONNECT).
    Connected(Address),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The greeting was sent; the method choice is awaited.
    Method,
    /// User name and password were sent; their verdict is awaited.
    Authentication,
    /// CONNECT or BIND was sent; its (first) reply is awaited.
    Request,
    /// BIND: the proxy listens; the reply for the server's connection is awaited.
    BindAccept,
    Done,
}

/// The SOCKS5 conversation for one connection, without I/O.
pub struct Handshake {
    command: u8,
    target: Address,
    auth: Option<Credentials>,
    state: State,
    /// The part of the current reply received so far.
    received: Vec<u8>,
}

impl Handshake {
    pub fn connect(target: Address, auth: Option<Credentials>) -> Handshake {
        Handshake::new(CONNECT, target, auth)
    }

    /// `expected_peer`: where the server will connect from (RFC 1928 asks
    /// for it in DST.ADDR; proxies use it to check the incoming connection).
    pub fn bind(expected_peer: Address, auth: Option<Credentials>) -> Handshake {
        Handshake::new(BIND, expected_peer, auth)
    }

    fn new(command: u8, target: Address, auth: Option<Credentials>) -> Handshake {
        Handshake {
            command,
            target,
            auth,
            state: State::Method,
            received: Vec::new(),
        }
    }

    /// The greeting: the methods we can do.
    pub fn start(&self) -> Vec<u8> {
        if self.auth.is_some() {
            vec![VERSION, 2, NO_AUTH, USER_PASSWORD]
        } else {
            vec![VERSION, 1, NO_AUTH]
        }
    }

    /// How many bytes to read next: never past the end of the proxy's reply.
    pub fn wanted(&self) -> usize {
        let have = self.received.len();
        match self.state {
            State::Method | State::Authentication => 2usize.saturating_sub(have),
            State::Request | State::BindAccept => match reply_length(&self.received) {
                Some(total) => total.saturating_sub(have),
                None => 5usize.saturating_sub(have),
            },
            State::Done => 0,
        }
    }

    /// Takes bytes read from the proxy (at most `wanted()`; fewer is fine).
    pub fn received(&mut self, bytes: &[u8]) -> std::result::Result<Step, Failure> {
        if bytes.len() > self.wanted() {
            return Err(Failure::Garbage("more bytes than the reply holds".into()));
        }
        self.received.extend_from_slice(bytes);
        if let Some(&version) = self.received.first() {
            let expected = match self.state {
                // RFC 1929 says 1; some proxies answer with 5.
                State::Authentication => version == AUTH_VERSION || version == VERSION,
                _ => version == VERSION,
            };
            if !expected {
                return Err(if self.state == State::Method {
                    Failure::NotSocks5 {
                        answered: self.received.clone(),
                    }
                } else {
                    Failure::Garbage(format!("version byte {version} in a reply"))
                });
            }
        }
        if self.wanted() > 0 {
            if self.state == State::Request || self.state == State::BindAccept {
                check_reply_header(&self.received, self.command)?;
            }
            return Ok(Step::Read(self.wanted()));
        }
        let reply = std::mem::take(&mut self.received);
        match self.state {
            State::Method => self.method_chosen(reply[1]),
            State::Authentication => {
                if reply[1] != 0 {
                    return Err(Failure::AuthenticationRefused);
                }
                self.state = State::Request;
                Ok(Step::Send(self.request()))
            }
            State::Request => {
                let address = parse_reply(&reply, self.command)?;
                if self.command == BIND {
                    self.state = State::BindAccept;
                    Ok(Step::Listening(address))
                } else {
                    self.state = State::Done;
                    Ok(Step::Connected(address))
                }
            }
            State::BindAccept => {
                let address = parse_reply(&reply, self.command)?;
                self.state = State::Done;
                Ok(Step::Connected(address))
            }
            State::Done => Err(Failure::Garbage("bytes after the handshake ended".into())),
        }
    }

    fn method_chosen(&mut self, method: u8) -> std::result::Result<Step, Failure> {
        match (method, &self.auth) {
            (NO_AUTH, _) => {
                self.state = State::Request;
                Ok(Step::Send(self.request()))
            }
            (USER_PASSWORD, Some(credentials)) => {
                self.state = State::Authentication;
                let user = credentials.user.as_bytes();
                let password = credentials.password.expose().as_bytes();
                let (Ok(user_len), Ok(password_len)) =
                    (u8::try_from(user.len()), u8::try_from(password.len()))
                else {
                    return Err(Failure::Garbage(
                        "user name or password longer than 255 bytes".into(),
                    ));
                };
                let mut out = vec![AUTH_VERSION, user_len];
                out.extend_from_slice(user);
                out.push(password_len);
                out.extend_from_slice(password);
                Ok(Step::Send(out))
            }
            (NO_ACCEPTABLE_METHOD, None) => Err(Failure::NeedsAuthentication),
            (NO_ACCEPTABLE_METHOD, Some(_)) => Err(Failure::NoAcceptableMethod),
            (other, _) => Err(Failure::Garbage(format!(
                "it chose authentication method {other}, which was not offered"
            ))),
        }
    }

    fn request(&self) -> Vec<u8> {
        let mut out = vec![VERSION, self.command, 0];
        self.target.encode(&mut out);
        out
    }
}

/// The whole length of a CONNECT/BIND reply, once its first five bytes are in.
fn reply_length(header: &[u8]) -> Option<usize> {
    let length = match *header.get(3)? {
        IPV4 => 4,
        IPV6 => 16,
        DOMAIN => 1 + usize::from(*header.get(4)?),
        // Unknown: `check_reply_header` says so; until then read the minimum.
        _ => return None,
    };
    Some(4 + length + 2)
}

/// Fails early on a reply whose code or address type is already known bad.
fn check_reply_header(header: &[u8], command: u8) -> std::result::Result<(), Failure> {
    if let Some(&code) = header.get(1) {
        if code != 0 {
            return Err(Failure::Reply { command, code });
        }
    }
    if let Some(&atyp) = header.get(3) {
        if !matches!(atyp, IPV4 | IPV6 | DOMAIN) {
            return Err(Failure::Garbage(format!("unknown address type {atyp}")));
        }
    }
    Ok(())
}

fn parse_reply(reply: &[u8], command: u8) -> std::result::Result<Address, Failure> {
    check_reply_header(reply, command)?;
    let port_at = reply.len() - 2;
    let port = u16::from_be_bytes([reply[port_at], reply[port_at + 1]]);
    let address = &reply[4..port_at];
    Ok(match reply[3] {
        IPV4 => {
            let octets: [u8; 4] = address
                .try_into()
                .map_err(|_| Failure::Garbage("short IPv4 address".into()))?;
            Address::Ip(SocketAddr::new(IpAddr::from(octets), port))
        }
        IPV6 => {
            let octets: [u8; 16] = address
                .try_into()
                .map_err(|_| Failure::Garbage("short IPv6 address".into()))?;
            Address::Ip(SocketAddr::new(IpAddr::from(octets), port))
        }
        _ => {
            let name = String::from_utf8_lossy(&address[1..]).into_owned();
            Address::Name(name, port)
        }
    })
}

// ---- I/O ---------------------------------------------------------------------

/// Opens `what` to `host:port` through `proxy`, within `timeout` for each
/// step. With `socks5://` a name is resolved here and each of its addresses
/// tried in turn (a new proxy connection each); with `socks5h://` it goes
/// to the proxy as a name. Returns the socket and the address that worked.
pub fn connect(
    proxy: &Proxy,
    what: &'static str,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(TcpStream, Address)> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let targets = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![Address::Ip(SocketAddr::new(ip, port))],
        Err(_) if proxy.remote_dns => vec![Address::Name(bare.to_string(), port)],
        Err(_) => (bare, port)
            .to_socket_addrs()
            .map_err(|source| Error::Connect {
                what,
                addr: format!("{bare}:{port}"),
                source,
            })?
            .map(Address::Ip)
            .collect(),
    };
    let mut last = None;
    for target in targets {
        match connect_to(proxy, what, &target, timeout) {
            Ok(tcp) => return Ok((tcp, target)),
            Err(e) if e.is_transient() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Connect {
        what,
        addr: format!("{bare}:{port}"),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "host name resolved to no address",
        ),
    }))
}

/// CONNECT to one address through the proxy.
pub fn connect_to(
    proxy: &Proxy,
    what: &'static str,
    target: &Address,
    timeout: Duration,
) -> Result<TcpStream> {
    let mut tcp = open(proxy, what, timeout)?;
    let mut handshake = Handshake::connect(target.clone(), proxy.auth.clone());
    let phase = format!("{what} to {target}");
    match drive(&mut tcp, &mut handshake, proxy, &phase, timeout)? {
        Step::Connected(_) => Ok(tcp),
        other => Err(Error::protocol(
            format!("SOCKS5 proxy {}", proxy.address()),
            format!("unexpected step {other:?} in CONNECT"),
        )),
    }
}

/// An active-mode data connection waiting at the proxy (SOCKS5 BIND).
pub struct Bind {
    tcp: TcpStream,
    handshake: Handshake,
    proxy: Proxy,
    /// Where the proxy listens for the server: what EPRT/PORT advertise.
    pub listening: SocketAddr,
}

impl Bind {
    /// The socket to poll: it becomes readable when the server connected
    /// (or the proxy gave up).
    pub fn socket(&self) -> &TcpStream {
        &self.tcp
    }

    /// Reads the proxy's second reply (the server connected): the socket
    /// is then the data connection.
    pub fn accept(mut self, timeout: Duration) -> Result<TcpStream> {
        let phase = "active data connection (BIND)";
        match drive(
            &mut self.tcp,
            &mut self.handshake,
            &self.proxy,
            phase,
            timeout,
        )? {
            Step::Connected(peer) => {
                log::debug!("the server connected to the proxy's BIND port from {peer}");
                Ok(self.tcp)
            }
            other => Err(Error::protocol(
                format!("SOCKS5 proxy {}", self.proxy.address()),
                format!("unexpected step {other:?} in BIND"),
            )),
        }
    }
}

/// Asks the proxy to listen for a connection from `server` (BIND).
pub fn bind(proxy: &Proxy, server: &Address, timeout: Duration) -> Result<Bind> {
    let mut tcp = open(proxy, "active data connection", timeout)?;
    let mut handshake = Handshake::bind(server.clone(), proxy.auth.clone());
    let phase = "active data connection (BIND)";
    let listening = match drive(&mut tcp, &mut handshake, proxy, phase, timeout)? {
        Step::Listening(Address::Ip(addr)) if addr.ip().is_unspecified() => {
            // "Listening on 0.0.0.0": on the address we reached the proxy at.
            let proxy_ip = tcp.peer_addr().map_err(|source| Error::Io {
                phase: "reading the proxy's address".into(),
                source,
            })?;
            SocketAddr::new(proxy_ip.ip(), addr.port())
        }
        Step::Listening(Address::Ip(addr)) => addr,
        other => {
            return Err(Error::protocol(
                format!("SOCKS5 proxy {}", proxy.address()),
                format!("BIND answered {other:?}, not an address to give the server"),
            ))
        }
    };
    Ok(Bind {
        tcp,
        handshake,
        proxy: proxy.clone(),
        listening,
    })
}

fn open(proxy: &Proxy, what: &'static str, timeout: Duration) -> Result<TcpStream> {
    let tcp = net::connect(what, &proxy.address(), timeout).map_err(|e| match e {
        Error::Connect { what, source, .. } => Error::Connect {
            what,
            addr: format!("the SOCKS5 proxy {}", proxy.address()),
            source,
        },
        other => other,
    })?;
    let fail = |source| Error::Io {
        phase: "setting socket options".into(),
        source,
    };
    tcp.set_read_timeout(Some(timeout)).map_err(fail)?;
    tcp.set_write_timeout(Some(timeout)).map_err(fail)?;
    tcp.set_nodelay(true).map_err(fail)?;
    Ok(tcp)
}

/// Runs the handshake until it connects, or (BIND) until the proxy listens.
fn drive(
    tcp: &mut TcpStream,
    handshake: &mut Handshake,
    proxy: &Proxy,
    phase: &str,
    timeout: Duration,
) -> Result<Step> {
    let at_proxy = || format!("SOCKS5 proxy {}: {phase}", proxy.address());
    let failed = |failure: Failure| Error::Proxy {
        phase: at_proxy(),
        kind: failure.kind(),
        detail: failure.to_string(),
    };
    if handshake.state == State::Method {
        tcp.write_all(&handshake.start())
            .map_err(|e| Error::io(at_proxy(), e, timeout))?;
    }
    let mut buffer = [0u8; 262];
    loop {
        let wanted = handshake.wanted().min(buffer.len());
        let n = tcp
            .read(&mut buffer[..wanted])
            .map_err(|e| Error::io(at_proxy(), e, timeout))?;
        if n == 0 {
            return Err(Error::Closed {
                phase: format!("{} (the proxy closed the connection)", at_proxy()),
            });
        }
        let step = match handshake.received(&buffer[..n]) {
            Err(Failure::NotSocks5 { answered }) => Err(Failure::NotSocks5 {
                answered: first_line_of_answer(tcp, answered),
            }),
            other => other,
        };
        match step.map_err(failed)? {
            Step::Read(_) => {}
            Step::Send(bytes) => tcp
                .write_all(&bytes)
                .map_err(|e| Error::io(at_proxy(), e, timeout))?,
            done => return Ok(done),
        }
    }
}

/// What another kind of server said, to name it in the error: the bytes
/// read so far and what else comes within a moment, up to the first line end.
fn first_line_of_answer(tcp: &mut TcpStream, mut answered: Vec<u8>) -> Vec<u8> {
    let mut more = [0u8; 80];
    if tcp
        .set_read_timeout(Some(Duration::from_millis(200)))
        .is_ok()
    {
        if let Ok(n) = tcp.read(&mut more) {
            answered.extend_from_slice(&more[..n]);
        }
    }
    let end = answered
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(answered.len());
    answered.truncate(end);
    answered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::config::Password;

    fn credentials() -> Credentials {
        Credentials {
            user: "alice".into(),
            password: Password::new("s3cret"),
        }
    }

    fn target() -> Address {
        Address::Name("ftp.example".into(), 21)
    }

    const CONNECT_REQUEST: &[u8] = b"\x05\x01\x00\x03\x0bftp.example\x00\x15";
    const OK_V4: &[u8] = &[5, 0, 0, 1, 10, 0, 0, 1, 0x30, 0x39];

    /// Feeds `input` in pieces of `chunk` bytes (never more than wanted),
    /// collecting what the machine sends; ends at the first final step.
    fn run(
        mut handshake: Handshake,
        input: &[u8],
        chunk: usize,
    ) -> (Vec<Vec<u8>>, std::result::Result<Step, Failure>) {
        let mut sent = vec![handshake.start()];
        let mut rest = input;
        loop {
            let n = handshake.wanted().min(chunk).min(rest.len());
            if n == 0 {
                return (sent, Ok(Step::Read(handshake.wanted())));
            }
            let (piece, tail) = rest.split_at(n);
            rest = tail;
            match handshake.received(piece) {
                Ok(Step::Read(_)) => {}
                Ok(Step::Send(bytes)) => sent.push(bytes),
                other => return (sent, other),
            }
        }
    }

    #[test]
    fn connect_without_authentication() {
        for chunk in 1..=10 {
            let input = [&[5, 0][..], OK_V4].concat();
            let (sent, outcome) = run(Handshake::connect(target(), None), &input, chunk);
            assert_eq!(
                sent,
                vec![vec![5, 1, 0], CONNECT_REQUEST.to_vec()],
                "{chunk}"
            );
            assert_eq!(
                outcome,
                Ok(Step::Connected(Address::Ip(
                    "10.0.0.1:12345".parse().unwrap()
                )))
            );
        }
    }

    #[test]
    fn connect_with_user_and_password() {
        for chunk in 1..=10 {
            let input = [&[5, 2, 1, 0][..], OK_V4].concat();
            let (sent, outcome) = run(
                Handshake::connect(target(), Some(credentials())),
                &input,
                chunk,
            );
            assert_eq!(
                sent,
                vec![
                    vec![5, 2, 0, 2],
                    b"\x01\x05alice\x06s3cret".to_vec(),
                    CONNECT_REQUEST.to_vec()
                ]
            );
            assert!(matches!(outcome, Ok(Step::Connected(_))), "{outcome:?}");
        }
    }

    #[test]
    fn a_proxy_that_needs_no_password_is_not_sent_one() {
        let input = [&[5, 0][..], OK_V4].concat();
        let (sent, outcome) = run(
            Handshake::connect(target(), Some(credentials())),
            &input,
            64,
        );
        assert_eq!(sent.len(), 2);
        assert!(!sent.concat().windows(6).any(|w| w == b"s3cret"));
        assert!(matches!(outcome, Ok(Step::Connected(_))));
    }

    #[test]
    fn never_reads_past_the_reply() {
        // A domain-name reply and an IPv6 reply, each followed by the FTP greeting.
        let domain = b"\x05\x00\x00\x03\x05proxy\x04\x38220 hello\r\n";
        let v6 = [&[5, 0, 0, 4][..], &[0; 16], &[0, 21], b"220 hello\r\n"].concat();
        for (input, expected) in [
            (&domain[..], Address::Name("proxy".into(), 1080)),
            (&v6[..], Address::Ip("[::]:21".parse().unwrap())),
        ] {
            let mut handshake = Handshake::connect(target(), None);
            assert_eq!(
                handshake.received(&[5, 0]).ok(),
                Some(Step::Send(CONNECT_REQUEST.to_vec()))
            );
            let mut at = 0;
            let step = loop {
                let n = handshake.wanted();
                let step = handshake.received(&input[at..at + n]).unwrap();
                at += n;
                if step != Step::Read(handshake.wanted()) {
                    break step;
                }
            };
            assert_eq!(step, Step::Connected(expected));
            assert_eq!(&input[at..], b"220 hello\r\n");
            assert_eq!(handshake.wanted(), 0);
        }
    }

    #[test]
    fn every_reply_code_is_a_named_failure() {
        let transient = [1, 3, 4, 5, 6];
        for code in 1..=9u8 {
            let input = [5, 0, 5, code, 0, 1, 0, 0, 0, 0, 0, 0];
            let (_, outcome) = run(Handshake::connect(target(), None), &input, 64);
            let failure = outcome.unwrap_err();
            assert_eq!(
                failure,
                Failure::Reply {
                    command: CONNECT,
                    code
                }
            );
            let kind = failure.kind();
            if transient.contains(&code) {
                assert_eq!(kind, Kind::Transient, "{code}");
            } else {
                assert_ne!(kind, Kind::Transient, "{code}");
            }
            let text = failure.to_string();
            assert!(text.contains(&format!("answered {code}")), "{text}");
        }
        let refused = Failure::Reply {
            command: CONNECT,
            code: 2,
        };
        assert!(refused
            .to_string()
            .contains("not allowed by the proxy's rules"));
    }

    #[test]
    fn bind_gives_the_listening_address_then_the_peer() {
        let server = Address::Ip("192.0.2.7:21".parse().unwrap());
        let mut handshake = Handshake::bind(server, None);
        assert_eq!(handshake.start(), vec![5, 1, 0]);
        let request = handshake.received(&[5, 0]).unwrap();
        assert_eq!(request, Step::Send(vec![5, 2, 0, 1, 192, 0, 2, 7, 0, 21]));
        let first = [5, 0, 0, 1, 127, 0, 0, 1, 0x9c, 0x41];
        assert_eq!(handshake.received(&first[..5]), Ok(Step::Read(5)));
        assert_eq!(
            handshake.received(&first[5..]),
            Ok(Step::Listening(Address::Ip(
                "127.0.0.1:40001".parse().unwrap()
            )))
        );
        assert_eq!(handshake.wanted(), 5);
        let second = [5, 0, 0, 1, 192, 0, 2, 7, 0, 20];
        assert_eq!(handshake.received(&second[..5]), Ok(Step::Read(5)));
        assert_eq!(
            handshake.received(&second[5..]),
            Ok(Step::Connected(Address::Ip(
                "192.0.2.7:20".parse().unwrap()
            )))
        );
    }

    #[test]
    fn bind_not_supported_names_passive_mode() {
        let mut handshake = Handshake::bind(target(), None);
        handshake.received(&[5, 0]).unwrap();
        let failure = handshake.received(&[5, 7, 0, 1, 0]).unwrap_err();
        // Refused (EIO), as a server refusing passive mode is: not
        // EOPNOTSUPP, which would say the directory cannot be listed at all.
        assert_eq!(failure.kind(), Kind::Refused);
        assert!(
            failure.to_string().contains("use passive mode"),
            "{failure}"
        );
    }

    #[test]
    fn authentication_failures() {
        let (_, outcome) = run(Handshake::connect(target(), None), &[5, 0xff], 64);
        let failure = outcome.unwrap_err();
        assert_eq!(failure, Failure::NeedsAuthentication);
        assert!(failure.to_string().contains(PROXY_PASSWORD_ENV));
        let (_, outcome) = run(
            Handshake::connect(target(), Some(credentials())),
            &[5, 0xff],
            64,
        );
        assert_eq!(outcome, Err(Failure::NoAcceptableMethod));
        for status in [1u8, 2, 0xff] {
            let (_, outcome) = run(
                Handshake::connect(target(), Some(credentials())),
                &[5, 2, 1, status],
                64,
            );
            assert_eq!(outcome, Err(Failure::AuthenticationRefused));
            assert_eq!(Failure::AuthenticationRefused.kind(), Kind::LoginFailed);
        }
        // Some proxies answer the RFC 1929 exchange with version 5.
        let input = [&[5, 2, 5, 0][..], OK_V4].concat();
        let (_, outcome) = run(
            Handshake::connect(target(), Some(credentials())),
            &input,
            64,
        );
        assert!(matches!(outcome, Ok(Step::Connected(_))));
    }

    #[test]
    fn a_method_not_offered_is_garbage() {
        let (_, outcome) = run(Handshake::connect(target(), None), &[5, 2], 64);
        assert!(matches!(outcome, Err(Failure::Garbage(_))), "{outcome:?}");
        let (_, outcome) = run(Handshake::connect(target(), None), &[5, 1], 64);
        assert!(matches!(outcome, Err(Failure::Garbage(_))), "{outcome:?}");
    }

    #[test]
    fn an_ftp_or_http_server_is_not_a_socks5_proxy() {
        for answer in [
            &b"220 vsftpd ready\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\n",
        ] {
            let (_, outcome) = run(Handshake::connect(target(), None), answer, 64);
            let failure = outcome.unwrap_err();
            assert!(matches!(failure, Failure::NotSocks5 { .. }), "{failure:?}");
            assert_eq!(failure.kind(), Kind::Protocol);
            assert!(
                failure.to_string().contains("not a SOCKS5 proxy"),
                "{failure}"
            );
        }
    }

    #[test]
    fn garbage_replies() {
        let cases: &[&[u8]] = &[
            &[5, 0, 4, 0, 0, 1], // wrong version in the CONNECT reply
            &[5, 0, 5, 0, 0, 9], // unknown address type
            &[5, 2, 5, 0],       // auth asked for, not offered (no credentials)
        ];
        for input in cases {
            let (_, outcome) = run(Handshake::connect(target(), None), input, 64);
            assert!(
                matches!(outcome, Err(Failure::Garbage(_))),
                "{input:?}: {outcome:?}"
            );
        }
        let mut handshake = Handshake::connect(target(), None);
        assert!(handshake.received(&[5, 0, 0]).is_err(), "more than wanted");
    }

    #[test]
    fn short_input_waits_for_more() {
        let (_, outcome) = run(
            Handshake::connect(target(), None),
            &[5, 0, 5, 0, 0, 1, 10],
            64,
        );
        assert_eq!(outcome, Ok(Step::Read(5)));
    }

    #[test]
    fn proxy_urls() {
        let url = parse_proxy_url("socks5h://bob@proxy.example:1080").unwrap();
        assert_eq!(
            url,
            ProxyUrl {
                host: "proxy.example".into(),
                port: 1080,
                remote_dns: true,
                user: Some("bob".into())
            }
        );
        let url = parse_proxy_url("socks5://[::1]:1080/").unwrap();
        assert_eq!(
            (url.host.as_str(), url.remote_dns, url.user),
            ("::1", false, None)
        );
        let url = parse_proxy_url("SOCKS5://us%40er@127.0.0.1:9").unwrap();
        assert_eq!(url.user.as_deref(), Some("us@er"));
        let err = parse_proxy_url("socks5://bob:hunter2@proxy:1080").unwrap_err();
        assert!(
            err.contains(PROXY_PASSWORD_ENV) && !err.contains("hunter2"),
            "{err}"
        );
        assert!(parse_proxy_url("http://proxy:8080")
            .unwrap_err()
            .contains("socks5h://"));
        assert!(parse_proxy_url("socks5://proxy").is_err());
        assert!(parse_proxy_url("socks5://proxy:0").is_err());
        assert!(parse_proxy_url("socks5://proxy:1080/path").is_err());
        assert!(parse_proxy_url("proxy:1080").is_err());
    }

    // ---- the I/O, against a scripted proxy on loopback ----

    use std::net::TcpListener;

    /// A proxy that reads what the client sends and answers with `script`
    /// (pieces written with a pause between, so the client sees short
    /// reads); returns its address and what it received.
    fn scripted_proxy(script: Vec<&'static [u8]>) -> (Proxy, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut received = vec![0u8; 3];
            tcp.read_exact(&mut received).unwrap();
            for piece in script {
                tcp.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                // Whatever the client sent meanwhile (its request).
                tcp.set_nonblocking(true).unwrap();
                let mut more = [0u8; 512];
                while let Ok(n @ 1..) = tcp.read(&mut more) {
                    received.extend_from_slice(&more[..n]);
                }
                tcp.set_nonblocking(false).unwrap();
            }
            // Hold the connection until the client closes it.
            let _ = tcp.read_to_end(&mut received);
            received
        });
        let proxy = Proxy {
            host: "127.0.0.1".into(),
            port,
            remote_dns: true,
            auth: None,
        };
        (proxy, server)
    }

    #[test]
    fn connect_through_a_proxy_that_answers_in_pieces_keeps_the_greeting() {
        let (proxy, server) = scripted_proxy(vec![
            &[5],
            &[0],
            &[5, 0, 0],
            &[1, 127, 0, 0, 1],
            b"\x00\x15220 ftp server ready\r\n",
        ]);
        let timeout = Duration::from_secs(5);
        let (mut tcp, reached) =
            connect(&proxy, "control connection", "ftp.example", 21, timeout).unwrap();
        assert_eq!(reached, Address::Name("ftp.example".into(), 21));
        let mut greeting = [0u8; 22];
        tcp.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting, b"220 ftp server ready\r\n", "not swallowed");
        drop(tcp);
        let received = server.join().unwrap();
        assert_eq!(received, [&[5, 1, 0][..], CONNECT_REQUEST_TO_21].concat());
    }

    /// `CONNECT ftp.example:21` as sent.
    const CONNECT_REQUEST_TO_21: &[u8] = b"\x05\x01\x00\x03\x0bftp.example\x00\x15";

    #[test]
    fn a_silent_proxy_times_out_and_a_closing_one_is_named() {
        let (proxy, _server) = scripted_proxy(vec![&[5, 0]]);
        let timeout = Duration::from_millis(300);
        let err = connect(&proxy, "data connection", "ftp.example", 21, timeout).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(err.is_transient());
        assert!(err.to_string().contains("SOCKS5 proxy 127.0.0.1:"), "{err}");

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            // Reads the greeting, then hangs up without a word.
            let (mut tcp, _) = listener.accept().unwrap();
            let _ = tcp.read_exact(&mut [0u8; 3]);
        });
        let proxy = Proxy { port, ..proxy };
        let err = connect(&proxy, "data connection", "ftp.example", 21, timeout).unwrap_err();
        assert!(matches!(err, Error::Closed { .. }), "{err}");
        assert!(
            err.to_string().contains("the proxy closed the connection"),
            "{err}"
        );
    }

    #[test]
    fn a_refusal_is_an_error_naming_the_proxy_and_the_target() {
        let (proxy, _server) = scripted_proxy(vec![&[5, 0], &[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]]);
        let err = connect(
            &proxy,
            "control connection",
            "ftp.example",
            21,
            Duration::from_secs(5),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("control connection to ftp.example:21")
                && text.contains("not allowed by the proxy's rules"),
            "{text}"
        );
        assert_eq!(err.kind(), Kind::Refused);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_reply(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            chunk in 1usize..20,
            auth: bool,
        ) {
            let auth = auth.then(credentials);
            let _ = run(Handshake::connect(target(), auth.clone()), &bytes, chunk);
            let _ = run(Handshake::bind(target(), auth), &bytes, chunk);
        }
    }
}
