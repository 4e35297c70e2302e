//! TCP sockets as every FTP connection needs them: a bounded connect, no
//! Nagle delay, and keepalive probes short enough to keep NAT state alive.
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

use super::config::Keepalive;
use super::error::{Error, Result};

/// Connects to the first address of `host:port` that answers within `timeout`.
pub fn connect(what: &'static str, address: &str, timeout: Duration) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|source| Error::Connect {
            what,
            addr: address.to_string(),
            source,
        })?
        .collect();
    let mut last_error = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    let source = last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "host name resolved to no address",
        )
    });
    if matches!(
        source.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) {
        return Err(Error::Timeout {
            phase: format!("connecting {what} to {address}"),
            after: timeout,
        });
    }
    Err(Error::Connect {
        what,
        addr: address.to_string(),
        source,
    })
}

/// TCP_NODELAY, I/O timeouts and keepalive. Without TCP_NODELAY every small
/// upload waits ~40 ms on delayed ACKs.
pub fn tune(stream: &TcpStream, io_timeout: Duration, keepalive: &Keepalive) -> Result<()> {
    let fail = |source| Error::Io {
        phase: "setting socket options".into(),
        source,
    };
    stream.set_nodelay(true).map_err(fail)?;
    stream.set_read_timeout(Some(io_timeout)).map_err(fail)?;
    stream.set_write_timeout(Some(io_timeout)).map_err(fail)?;
    let probes = TcpKeepalive::new()
        .with_time(keepalive.tcp_idle)
        .with_interval(keepalive.tcp_interval)
        .with_retries(keepalive.tcp_probes);
    SockRef::from(stream)
        .set_tcp_keepalive(&probes)
        .map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn tune_sets_nodelay_timeouts_and_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stream = connect("control connection", &addr, Duration::from_secs(2)).unwrap();
        let keepalive = Keepalive {
            tcp_idle: Duration::from_secs(7),
            tcp_interval: Duration::from_secs(3),
            tcp_probes: 5,
            ..Keepalive::default()
        };
        tune(&stream, Duration::from_secs(9), &keepalive).unwrap();
        let sock = SockRef::from(&stream);
        assert!(stream.nodelay().unwrap());
        assert_eq!(stream.read_timeout().unwrap(), Some(Duration::from_secs(9)));
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(3)
        );
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 5);
    }
}
