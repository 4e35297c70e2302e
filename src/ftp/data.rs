//! Data-connection endpoints: connecting to a passive port, or listening for
//! the server in active mode within the user's port range.
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::socks::Bind;

/// Where the data connection comes from before the transfer command is sent.
pub enum Endpoint {
    /// Passive: already connected to the server's data port.
    Connected(TcpStream),
    /// Active: waiting for the server to connect to us.
    Listening(TcpListener),
    /// Active through a SOCKS5 proxy: waiting for the server to connect to
    /// the proxy's BIND port.
    Bound(Box<Bind>),
}

/// The passive data connection of a session's next transfer, set up while
/// the session is between transfers: `EPSV` is sent ahead as a transfer
/// ends (`ask`), its reply read and the port connected to off the caller's
/// path (`settle`, in the pool's preparing thread), and the next transfer
/// command goes out on it at once (`take`). That takes the EPSV and TCP
/// round trips off each small file's way. A server keeps one pending
/// passive port per session (vsftpd closes it only at the next
/// PASV/EPSV/PORT or transfer), so there is never more than one.
#[derive(Debug, Default)]
pub enum NextData {
    #[default]
    None,
    /// `EPSV` was sent ahead; its reply is not read yet. Every other
    /// command waits until it is (`Session::send`).
    Asked,
    /// Its reply came (before the transfer's own, from a server that
    /// answers while a transfer ends): this port, not connected to yet.
    Offered(u16),
    /// Connected to the port the server opened for the next transfer.
    Connected { tcp: TcpStream, since: Instant },
}

/// A connection set up ahead that has not been used for this long is
/// closed instead: a server or a firewall may have given up on it.
pub const NEXT_DATA_MAX_AGE: Duration = Duration::from_secs(15);

impl NextData {
    pub fn is_none(&self) -> bool {
        matches!(self, NextData::None)
    }

    pub fn is_asked(&self) -> bool {
        matches!(self, NextData::Asked)
    }

    /// Whether a reply is still to be read or a port to be connected to.
    pub fn needs_settling(&self) -> bool {
        matches!(self, NextData::Asked | NextData::Offered(_))
    }

    /// Whether a connection is ready for the next transfer.
    pub fn is_connected(&self) -> bool {
        matches!(self, NextData::Connected { since, .. } if since.elapsed() < NEXT_DATA_MAX_AGE)
    }

    /// The connection for the next transfer, when there is a fresh one; an
    /// old one is closed. Leaves `None`.
    pub fn take(&mut self) -> Option<TcpStream> {
        match std::mem::take(self) {
            NextData::Connected { tcp, since } if since.elapsed() < NEXT_DATA_MAX_AGE => Some(tcp),
            NextData::Asked => {
                *self = NextData::Asked;
                None
            }
            _ => None,
        }
    }
}

/// Binds a listener for active mode on `ip`, on a port of `range` (or any).
/// Starts at a varying point of the range, so that concurrent sessions do not
/// all race for its first port.
pub fn listen(ip: IpAddr, range: Option<&RangeInclusive<u16>>) -> Result<TcpListener> {
    let Some(range) = range else {
        return TcpListener::bind(SocketAddr::new(ip, 0)).map_err(|source| Error::Io {
            phase: format!("listening for an active data connection on {ip}"),
            source,
        });
    };
    let (low, high) = (*range.start(), *range.end());
    let span = u32::from(high - low) + 1;
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % span)
        .unwrap_or(0);
    for i in 0..span {
        let offset = (start + i) % span;
        let Ok(port) = u16::try_from(u32::from(low) + offset) else {
            continue;
        };
        if let Ok(listener) = TcpListener::bind(SocketAddr::new(ip, port)) {
            return Ok(listener);
        }
    }
    Err(Error::Config(format!(
        "no free port in the active port range {low}-{high} on {ip}"
    )))
}

/// What became ready first while waiting in active mode.
pub enum Ready {
    /// The server connected to our listener.
    Connection(TcpStream),
    /// The control connection has something to say (likely a refusal).
    Control,
}

/// Waits until the server connects to `listener` or the control connection
/// becomes readable, whichever comes first, for at most `timeout`. Only the
/// server's own address may connect: anyone else who guesses the port would
/// otherwise get our upload or feed our download.
pub fn accept_or_reply(
    listener: &TcpListener,
    expected_peer: IpAddr,
    control: &TcpStream,
    timeout: Duration,
) -> Result<Ready> {
    let deadline = Instant::now() + timeout;
    let phase = "waiting for the server to open the active data connection";
    loop {
        let (listener_ready, control_ready, _) =
            first_readable(listener.as_raw_fd(), control, deadline, timeout, phase)?;
        if listener_ready {
            let (stream, peer) = listener.accept().map_err(|source| Error::Io {
                phase: "accepting the active data connection".into(),
                source,
            })?;
            if peer.ip() == expected_peer {
                return Ok(Ready::Connection(stream));
            }
            log::warn!("refused a data connection from {peer}: only the server {expected_peer} may connect");
            continue;
        }
        if control_ready {
            return Ok(Ready::Control);
        }
    }
}

/// What became ready first in active mode through a proxy.
pub enum BindReady {
    /// The server connected to the proxy, which passes the connection on.
    Connection(TcpStream),
    /// The control connection has something to say; the bind is still waiting.
    Control(Box<Bind>),
}

/// Waits until the proxy reports the server's connection (its second BIND
/// reply) or the control connection becomes readable, for at most `timeout`.
pub fn bound_or_reply(
    bind: Box<Bind>,
    control: &TcpStream,
    timeout: Duration,
) -> Result<BindReady> {
    let deadline = Instant::now() + timeout;
    let phase = "waiting for the server to connect to the proxy's BIND port";
    loop {
        let (proxy_ready, control_ready, left) =
            first_readable(bind.socket().as_raw_fd(), control, deadline, timeout, phase)?;
        if proxy_ready {
            return bind.accept(left).map(BindReady::Connection);
        }
        if control_ready {
            return Ok(BindReady::Control(bind));
        }
    }
}

/// Polls `fd` and the control connection until `deadline` (a timeout of
/// `timeout` in all, named `phase`): which are readable, and the time left.
fn first_readable(
    fd: i32,
    control: &TcpStream,
    deadline: Instant,
    timeout: Duration,
    phase: &str,
) -> Result<(bool, bool, Duration)> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Timeout {
            phase: phase.into(),
            after: timeout,
        });
    }
    let (fd_ready, control_ready) = poll_two(fd, control.as_raw_fd(), left)?;
    Ok((fd_ready, control_ready, left))
}

/// poll(2) on two descriptors for readability.
fn poll_two(a: i32, b: i32, timeout: Duration) -> Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let millis = i32::try_from(timeout.as_millis())
        .unwrap_or(i32::MAX)
        .max(1);
    // SAFETY: `fds` is a valid array of two pollfd structs that lives across the
    // call, and its length is passed exactly; both descriptors are open (owned
    // by the listener and the control stream borrowed by the caller).
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, millis) };
    if rc < 0 {
        let source = std::io::Error::last_os_error();
        if source.kind() == std::io::ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(Error::Io {
            phase: "waiting for the active data connection".into(),
            source,
        });
    }
    let ready =
        |fd: &libc::pollfd| fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    Ok((ready(&fds[0]), ready(&fds[1])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_inside_the_range() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let range = 41000..=41010;
        let listener = listen(ip, Some(&range)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(range.contains(&port));
    }

    #[test]
    fn full_range_is_a_clear_error() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let taken = TcpListener::bind((ip, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = listen(ip, Some(&(port..=port))).err().unwrap();
        assert!(
            err.to_string()
                .contains("no free port in the active port range"),
            "{err}"
        );
    }
}
