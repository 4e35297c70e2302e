//! Everything a control session needs to connect, log in and open data
//! connections. Built once by the caller; every new or reconnected session
//! applies all of it again, so a reconnect never forgets PROT P or the active
//! port range.
use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use super::identity::ClientIdentity;
use super::socks::Proxy;

/// How the control connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `AUTH TLS` on a plain connection (default port 21).
    Explicit,
    /// TLS from the first byte (default port 990).
    Implicit,
    /// No TLS at all. Only behind an explicit opt-out; callers warn on every start.
    InsecurePlain,
}

impl Security {
    pub fn default_port(self) -> u16 {
        match self {
            Security::Implicit => 990,
            Security::Explicit | Security::InsecurePlain => 21,
        }
    }
}

/// A password that never shows in `{:?}` output or logs.
#[derive(Clone, Default)]
pub struct Password(String);

impl Password {
    pub fn new(secret: impl Into<String>) -> Password {
        Password(secret.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(****)")
    }
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: Password,
}

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file whose certificates replace the default roots. A self-signed
    /// server certificate given here is trusted as itself.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server certificate (DER); when set, it alone decides.
    pub pin_sha256: Option<[u8; 32]>,
    /// Skip verification entirely. Callers must warn loudly.
    pub insecure: bool,
    /// Highest TLS version to offer (1.2 or 1.3); `None` means 1.3.
    pub max_version: Option<TlsVersion>,
    /// Name to verify the certificate against (and send as SNI) instead of
    /// the host connected to: for a server reached by IP or through a tunnel.
    pub server_name: Option<String>,
    /// The certificate and key to present when the server asks for one
    /// (mutual TLS), on the control and on every data connection.
    pub client_identity: Option<ClientIdentity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect (control and data) and TLS handshakes.
    pub connect: Duration,
    /// Waiting for a reply on the control connection.
    pub reply: Duration,
    /// No byte moving on a data connection for this long fails the transfer.
    pub data_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(15),
            reply: Duration::from_secs(30),
            data_idle: Duration::from_secs(60),
        }
    }
}

/// How data connections are opened.
#[derive(Debug, Clone)]
pub enum DataMode {
    /// EPSV, falling back to PASV. `trust_pasv_address` uses the address in the
    /// PASV reply instead of the control connection's peer; off by default
    /// because servers behind NAT advertise unroutable addresses, and a hostile
    /// server could point the client elsewhere.
    Passive {
        trust_pasv_address: bool,
        /// Try EPSV first (default). Off goes straight to PASV, for the rare
        /// firewall that only understands PASV.
        epsv: bool,
    },
    /// EPRT, falling back to PORT: the server connects to us.
    Active {
        /// Local ports to listen on; `None` lets the system choose.
        ports: Option<RangeInclusive<u16>>,
        /// Address to advertise (a NAT's public address); `None` advertises the
        /// control connection's local address.
        advertise: Option<IpAddr>,
    },
}

impl Default for DataMode {
    fn default() -> Self {
        DataMode::Passive {
            trust_pasv_address: false,
            epsv: true,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    /// An idle pooled session sends NOOP after this long, before the server's
    /// idle timeout (vsftpd's default is 300 s) closes it.
    pub noop_after: Duration,
    /// TCP keepalive: first probe after this much silence, then every
    /// `tcp_interval`, giving up after `tcp_probes`. Short, so that NAT and
    /// firewall state for the control connection survives a long transfer.
    pub tcp_idle: Duration,
    pub tcp_interval: Duration,
    pub tcp_probes: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            noop_after: Duration::from_secs(60),
            tcp_idle: Duration::from_secs(15),
            tcp_interval: Duration::from_secs(15),
            tcp_probes: 4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FtpConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Credentials,
    pub tls: TlsOptions,
    pub timeouts: Timeouts,
    pub data_mode: DataMode,
    pub keepalive: Keepalive,
    /// A SOCKS5 proxy that every connection (control and data) goes through.
    pub proxy: Option<Proxy>,
    /// Send CCC after login (and PROT P), so that the control connection
    /// goes on in clear text for firewalls' FTP helpers. Opt-in; callers warn.
    pub clear_control_after_login: bool,
}

impl FtpConfig {
    /// A configuration with the defaults for everything but the server and user.
    pub fn new(host: impl Into<String>, port: u16, credentials: Credentials) -> FtpConfig {
        FtpConfig {
            host: host.into(),
            port,
            security: Security::Explicit,
            credentials,
            tls: TlsOptions::default(),
            timeouts: Timeouts::default(),
            data_mode: DataMode::default(),
            keepalive: Keepalive::default(),
            proxy: None,
            clear_control_after_login: false,
        }
    }

    /// `host:port`, with brackets around IPv6 literals.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses `40000-50000` (or a single port) into a range.
pub fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let parse = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| format!("invalid port {s:?} in range {text:?}"))
    };
    let (low, high) = (parse(low)?, parse(high)?);
    if low == 0 || low > high {
        return Err(format!(
            "invalid port range {text:?}: expected LOW-HIGH with 0 < LOW <= HIGH"
        ));
    }
    Ok(low..=high)
}

/// Parses a SHA-256 fingerprint given as 64 hex digits, with or without colons.
pub fn parse_sha256_hex(text: &str) -> Result<[u8; 32], String> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    let invalid = || format!("invalid SHA-256 fingerprint {text:?}: expected 64 hex digits");
    if hex.len() != 64 {
        return Err(invalid());
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
        out[i] = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_never_printed() {
        let creds = Credentials {
            user: "u".into(),
            password: Password::new("hunter2"),
        };
        assert!(!format!("{creds:?}").contains("hunter2"));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("40000-50000"), Ok(40000..=50000));
        assert_eq!(parse_port_range("40000"), Ok(40000..=40000));
        assert!(parse_port_range("5-1").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("a-b").is_err());
    }

    #[test]
    fn fingerprints() {
        let colon = "AB:".repeat(31) + "AB";
        assert_eq!(parse_sha256_hex(&colon), Ok([0xab; 32]));
        assert_eq!(parse_sha256_hex(&"0f".repeat(32)), Ok([0x0f; 32]));
        assert!(parse_sha256_hex("abc").is_err());
        assert!(parse_sha256_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn ipv6_addresses_get_brackets() {
        let creds = Credentials {
            user: "u".into(),
            password: Password::default(),
        };
        assert_eq!(
            FtpConfig::new("::1", 21, creds.clone()).address(),
            "[::1]:21"
        );
        assert_eq!(FtpConfig::new("h", 21, creds).address(), "h:21");
    }
}
