//! The one error type of the protocol client.
//!
//! Every error says what was being done (the phase or the command) and what went
//! wrong, in words a user can act on. `kind()` classifies it, so the pool retries
//! only what is safe to retry and the store layer can map it to an errno in one
//! place without reading reply texts.
use std::fmt;
use std::io;

/// What a caller needs to decide: retry, report as "not found", and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The connection dropped, timed out, or the server said "try again" (4xx).
    /// The session is not usable; a new one may succeed.
    Transient,
    NotFound,
    PermissionDenied,
    /// 452/552: quota or disk full.
    NoSpace,
    AlreadyExists,
    /// The server does not implement the command (500/502/504).
    Unsupported,
    /// The user gave something we refuse to send (CR/LF in a name, bad option).
    InvalidInput,
    /// Login refused (530).
    LoginFailed,
    /// Certificate or TLS negotiation failure; retrying will not help.
    Tls,
    /// The server broke the protocol (malformed reply, truncated transfer).
    Protocol,
    /// Any other permanent refusal by the server.
    Refused,
}

#[derive(Debug)]
pub enum Error {
    /// A TCP connection could not be made.
    Connect {
        what: &'static str,
        addr: String,
        source: io::Error,
    },
    /// No answer within the configured time.
    Timeout {
        phase: String,
        after: std::time::Duration,
    },
    /// The peer closed the connection.
    Closed { phase: String },
    /// Any other socket error.
    Io { phase: String, source: io::Error },
    /// TLS failed (handshake, certificate, record layer).
    Tls { phase: String, reason: String },
    /// The server answered a command with a negative or unexpected reply.
    Reply {
        command: String,
        code: u16,
        text: String,
    },
    /// The server sent something that is not FTP.
    Protocol { phase: String, detail: String },
    /// A request we refuse to send.
    InvalidInput(String),
    /// The configuration cannot work (e.g. unreadable CA file).
    Config(String),
    /// A SOCKS5 proxy refused or broke the handshake; `kind` says whether
    /// that may pass (unreachable host) or not (wrong password, rules).
    Proxy {
        phase: String,
        detail: String,
        kind: Kind,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(phase: impl Into<String>, source: io::Error, timeout: std::time::Duration) -> Error {
        let phase = phase.into();
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
                phase,
                after: timeout,
            },
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Error::Closed {
                phase: format!("{phase} ({source})"),
            },
            _ => match tls_error_inside(&source) {
                Some((reason, true)) => Error::Tls { phase, reason },
                // A corrupt record or unexpected message on a connection that
                // worked: the connection is lost (a server process that died
                // and wrote plaintext into the stream), a new one may work.
                Some((reason, false)) => Error::Closed {
                    phase: format!("{phase} (TLS stream broken: {reason})"),
                },
                None => Error::Io { phase, source },
            },
        }
    }

    pub fn protocol(phase: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Protocol {
            phase: phase.into(),
            detail: detail.into(),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } | Error::Closed { .. } => Kind::Transient,
            Error::Io { .. } => Kind::Transient,
            Error::Tls { .. } => Kind::Tls,
            // "550 Permission denied" to EPSV is about passive mode, not a
            // file: reported as a refused request (EIO), not EACCES.
            Error::Reply { command, code, .. } if opens_data(command) && *code >= 500 => {
                Kind::Refused
            }
            Error::Reply { code, text, .. } => classify_reply(*code, text),
            Error::Protocol { .. } => Kind::Protocol,
            Error::InvalidInput(_) | Error::Config(_) => Kind::InvalidInput,
            Error::Proxy { kind, .. } => *kind,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.kind() == Kind::Transient
    }

    /// The reply code, when the server answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Reply { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the control session can no longer be trusted to be in step
    /// with the server and must be dropped rather than returned to the pool.
    pub fn breaks_session(&self) -> bool {
        match self {
            Error::Reply { code, .. } => *code == 421,
            Error::InvalidInput(_) => false,
            _ => true,
        }
    }
}

/// Commands that set up a data connection rather than name a file.
fn opens_data(command: &str) -> bool {
    matches!(command, "EPSV" | "PASV" | "EPRT" | "PORT")
}

/// Classifies a negative reply. 550 is used by servers for "no such file" and
/// for "permission denied" alike, so its text decides; a bare 550 is reported
/// as not found, which is what it means most often.
fn classify_reply(code: u16, text: &str) -> Kind {
    let lower = text.to_ascii_lowercase();
    let denied = ["denied", "permission", "not allowed"]
        .iter()
        .any(|word| lower.contains(word));
    match code {
        421 | 425 | 426 | 450 | 451 => Kind::Transient,
        452 | 552 => Kind::NoSpace,
        530 => Kind::LoginFailed,
        500 | 502 | 504 => Kind::Unsupported,
        550 | 551 | 553 if denied => Kind::PermissionDenied,
        550 | 553 if lower.contains("exists") => Kind::AlreadyExists,
        553 => Kind::PermissionDenied,
        550 | 551 => Kind::NotFound,
        400..=499 => Kind::Transient,
        _ => Kind::Refused,
    }
}

/// rustls reports failures through io::Error; find the rustls error inside so
/// that a certificate problem is named as one instead of "I/O error". The flag
/// says whether retrying cannot help (certificates, no common TLS version).
fn tls_error_inside(err: &io::Error) -> Option<(String, bool)> {
    let inner = err.get_ref()?;
    let tls = inner.downcast_ref::<rustls::Error>()?;
    let permanent = matches!(
        tls,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::PeerIncompatible(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType
            | rustls::Error::AlertReceived(_)
    );
    Some((crate::ftp::tls::describe_tls_error(tls), permanent))
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { what, addr, source } => {
                write!(f, "cannot open {what} to {addr}: {source}")
            }
            Error::Timeout { phase, after } => {
                write!(f, "timed out after {:.1} s: {phase}", after.as_secs_f64())
            }
            Error::Closed { phase } => write!(f, "connection closed by the server: {phase}"),
            Error::Io { phase, source } => write!(f, "{phase}: {source}"),
            Error::Tls { phase, reason } => write!(f, "TLS failed: {phase}: {reason}"),
            Error::Reply {
                command,
                code,
                text,
            } => {
                write!(f, "server refused {command}: {text} ({code})")?;
                let passive = command == "EPSV" || command == "PASV";
                if passive && *code >= 500 {
                    write!(
                        f,
                        " — the server does not allow passive mode; try active mode (--active)"
                    )?;
                } else if let Some(hint) = reply_hint(*code, text) {
                    write!(f, " — {hint}")?;
                }
                Ok(())
            }
            Error::Protocol { phase, detail } => {
                write!(f, "protocol error: {phase}: {detail}")
            }
            Error::InvalidInput(msg) => write!(f, "invalid request: {msg}"),
            Error::Config(msg) => write!(f, "configuration error: {msg}"),
            Error::Proxy { phase, detail, .. } => write!(f, "{phase}: {detail}"),
        }
    }
}

/// Advice for the replies that have a well-known cause in the field.
fn reply_hint(code: u16, text: &str) -> Option<&'static str> {
    let lower = text.to_ascii_lowercase();
    if (code == 522 || code == 425 || code == 450) && lower.contains("reuse") {
        return Some(
            "the server requires the data connection to resume the control connection's TLS session",
        );
    }
    match code {
        421 => Some("the server closed the session (too many connections, idle timeout or restart)"),
        425 => Some("the data connection could not be opened: a firewall or NAT between client and server may block passive ports; try --active"),
        452 | 552 => Some("the server is out of space or the account is over quota"),
        530 => Some("check the user name and password"),
        _ => None,
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> Error {
        Error::Reply {
            command: "RETR a".into(),
            code,
            text: text.into(),
        }
    }

    #[test]
    fn classifies_replies() {
        assert_eq!(reply(550, "Failed to open file.").kind(), Kind::NotFound);
        assert_eq!(
            reply(550, "Permission denied.").kind(),
            Kind::PermissionDenied
        );
        assert_eq!(
            reply(553, "Could not create file.").kind(),
            Kind::PermissionDenied
        );
        assert_eq!(
            reply(550, "Directory already exists").kind(),
            Kind::AlreadyExists
        );
        assert_eq!(reply(452, "Insufficient storage").kind(), Kind::NoSpace);
        assert_eq!(reply(552, "Quota exceeded").kind(), Kind::NoSpace);
        assert_eq!(reply(421, "Timeout.").kind(), Kind::Transient);
        assert_eq!(
            reply(425, "Can't open data connection").kind(),
            Kind::Transient
        );
        assert_eq!(reply(530, "Login incorrect.").kind(), Kind::LoginFailed);
        assert_eq!(
            reply(502, "Command not implemented").kind(),
            Kind::Unsupported
        );
        assert_eq!(reply(501, "Syntax error").kind(), Kind::Refused);
        let passive_refused = Error::Reply {
            command: "EPSV".into(),
            code: 550,
            text: "Permission denied.".into(),
        };
        assert_eq!(
            passive_refused.kind(),
            Kind::Refused,
            "not a file's permission"
        );
    }

    #[test]
    fn timeouts_and_resets_are_transient() {
        let d = std::time::Duration::from_secs(3);
        let timeout = Error::io("reading reply", io::ErrorKind::WouldBlock.into(), d);
        assert!(timeout.is_transient());
        assert!(timeout.to_string().contains("timed out after 3.0 s"));
        let reset = Error::io("reading", io::ErrorKind::ConnectionReset.into(), d);
        assert!(reset.is_transient() && reset.breaks_session());
    }

    #[test]
    fn refused_passive_mode_suggests_active() {
        let e = Error::Reply {
            command: "EPSV".into(),
            code: 550,
            text: "Permission denied.".into(),
        };
        assert!(e.to_string().contains("try active mode"), "{e}");
    }

    #[test]
    fn session_reuse_refusal_explains_itself() {
        let e = reply(522, "SSL connection failed: session reuse required");
        assert!(e
            .to_string()
            .contains("resume the control connection's TLS session"));
    }
}
