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
