//! The control connection: sends command lines and reads replies, over plain
//! TCP until `AUTH TLS` and over TLS after it.
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::error::{Error, Result};
use super::reply::{parse_reply, Reply};
use super::stream::Stream;

pub struct Control {
    /// `None` only while the connection is being upgraded to TLS.
    stream: Option<Stream>,
    /// Bytes received but not yet parsed into a reply.
    pending: Vec<u8>,
    reply_timeout: Duration,
    peer: SocketAddr,
    local: SocketAddr,
    /// The TLS version the connection had before CCC ended TLS.
    negotiated: Option<rustls::ProtocolVersion>,
}

impl Control {
    pub fn new(tcp: TcpStream, reply_timeout: Duration) -> Result<Control> {
        let addr_error = |source| Error::Io {
            phase: "reading socket address".into(),
            source,
        };
        let peer = tcp.peer_addr().map_err(addr_error)?;
        let local = tcp.local_addr().map_err(addr_error)?;
        Ok(Control {
            stream: Some(Stream::Plain(tcp)),
            pending: Vec::new(),
            reply_timeout,
            peer,
            local,
            negotiated: None,
        })
    }

    /// The server's address as seen by this connection: data connections go
    /// here by default, whatever a PASV reply says.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(Stream::is_tls)
    }

    /// The TLS version negotiated on this connection (None before TLS;
    /// after CCC, the version it had, which its data connections still use).
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match self.stream.as_ref()? {
            Stream::Tls(tls) => tls.conn.protocol_version(),
            Stream::Plain(_) => self.negotiated,
        }
    }

    pub fn tcp(&self) -> Option<&TcpStream> {
        self.stream.as_ref().map(Stream::tcp)
    }

    /// Switches to TLS (after `AUTH TLS` was accepted, or at once for implicit
    /// TLS) and completes the handshake within `timeout`.
    pub fn upgrade_to_tls(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        timeout: Duration,
    ) -> Result<()> {
        if !self.pending.is_empty() {
            // Bytes after the 234 reply would be plaintext injected into what
            // should be the TLS stream.
            return Err(Error::protocol(
                "starting TLS on the control connection",
                "the server sent data after accepting AUTH TLS",
            ));
        }
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(Error::protocol(
                "starting TLS",
                "the control connection is already TLS",
            ));
        };
        let phase = "TLS handshake on the control connection";
        let mut stream = Stream::start_tls(tcp, config, name, phase, timeout)?;
        stream.set_timeout(timeout)?;
        stream.finish_handshake(phase, timeout)?;
        stream.set_timeout(self.reply_timeout)?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Ends TLS after the server accepted CCC: our close_notify, then the
    /// server's within `timeout`, then the same TCP connection in clear text.
    /// Records are read one at a time straight from the socket, so nothing
    /// the server sends after its close_notify (clear text) is taken into
    /// rustls's buffer and lost. A server that answered 200 and keeps TLS
    /// is an error that names the option to leave out.
    pub fn end_tls(&mut self, timeout: Duration) -> Result<()> {
        let phase = "ending TLS on the control connection after CCC";
        if !self.pending.is_empty() {
            return Err(Error::protocol(
                phase,
                "the server sent more after accepting CCC",
            ));
        }
        let Some(Stream::Tls(mut tls)) = self.stream.take() else {
            return Err(Error::protocol(phase, "the control connection is not TLS"));
        };
        if let Err(e) = close_tls_both_ways(&mut tls, phase, timeout) {
            self.stream = Some(Stream::Tls(tls));
            return Err(e);
        }
        self.negotiated = tls.conn.protocol_version();
        let plain = Stream::Plain(tls.sock);
        plain.set_timeout(self.reply_timeout)?;
        self.stream = Some(plain);
        Ok(())
    }

    /// Sends one command line. `shown` is what logs and errors may say about
    /// it (never a password).
    pub fn send(&mut self, line: &[u8], shown: &str) -> Result<()> {
        log::debug!("> {shown}");
        let timeout = self.reply_timeout;
        let stream = self.stream_mut()?;
        let mut out = Vec::with_capacity(line.len() + 2);
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        stream
            .write_all(&out)
            .and_then(|()| stream.flush())
            .map_err(|e| Error::io(format!("sending {shown}"), e, timeout))
    }

    /// Reads the next complete reply, waiting at most the reply timeout for
    /// each chunk of it.
    pub fn read_reply(&mut self, phase: &str) -> Result<Reply> {
        loop {
            match parse_reply(&self.pending) {
                Ok(Some((reply, used))) => {
                    self.pending.drain(..used);
                    log::debug!("< {} {}", reply.code, reply.text());
                    return Ok(reply);
                }
                Ok(None) => self.fill(phase)?,
                Err(e) => return Err(Error::protocol(phase.to_string(), e.to_string())),
            }
        }
    }

    /// Waits at most `timeout` for a reply, then restores the normal timeout.
    pub fn read_reply_within(&mut self, phase: &str, timeout: Duration) -> Result<Reply> {
        let normal = self.reply_timeout;
        self.set_reply_timeout(timeout)?;
        let reply = self.read_reply(phase);
        self.set_reply_timeout(normal)?;
        reply
    }

    pub fn set_reply_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.reply_timeout = timeout;
        self.stream_mut()?.set_timeout(timeout)
    }

    /// Says goodbye on the TLS layer; errors do not matter any more.
    pub fn close(&mut self) {
        if let Some(stream) = self.stream.as_mut() {
            let _ = stream.close_write();
        }
    }

    fn fill(&mut self, phase: &str) -> Result<()> {
        let timeout = self.reply_timeout;
        let stream = self.stream_mut()?;
        let mut chunk = [0u8; 8192];
        let n = stream
            .read(&mut chunk)
            .map_err(|e| Error::io(phase.to_string(), e, timeout))?;
        if n == 0 {
            return Err(Error::Closed {
                phase: phase.to_string(),
            });
        }
        self.pending.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn stream_mut(&mut self) -> Result<&mut Stream> {
        self.stream.as_mut().ok_or_else(|| Error::Closed {
            phase: "control connection is not open".into(),
        })
    }
}

/// How long a TLS record header is: type, version, length.
const RECORD_HEADER: usize = 5;

/// Sends our close_notify and reads records until the peer's (see
/// `Control::end_tls`).
fn close_tls_both_ways(
    tls: &mut StreamOwned<ClientConnection, TcpStream>,
    phase: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let io = |e: std::io::Error| Error::io(phase.to_string(), e, timeout);
    tls.conn.send_close_notify();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut tls.sock).map_err(io)?;
    }
    let kept_tls = || {
        Error::protocol(
            phase,
            format!(
                "the server accepted CCC (200) but did not end TLS within {:.0} s (no close_notify); \
                 leave out --clear-control-after-login with this server",
                timeout.as_secs_f64()
            ),
        )
    };
    loop {
        let state = tls.conn.process_new_packets().map_err(|e| Error::Tls {
            phase: phase.to_string(),
            reason: super::tls::describe_tls_error(&e),
        })?;
        if state.plaintext_bytes_to_read() > 0 {
            return Err(Error::protocol(
                phase,
                "the server sent more over TLS after accepting CCC",
            ));
        }
        if state.peer_has_closed() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(kept_tls());
        }
        tls.sock.set_read_timeout(Some(left)).map_err(io)?;
        let record = match read_record(&mut tls.sock) {
            Ok(record) => record,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(kept_tls())
            }
            Err(e) => return Err(io(e)),
        };
        tls.conn.read_tls(&mut &record[..]).map_err(io)?;
    }
}

/// Exactly one TLS record from the socket.
fn read_record(sock: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut record = vec![0u8; RECORD_HEADER];
    sock.read_exact(&mut record)?;
    let length = usize::from(u16::from_be_bytes([record[3], record[4]]));
    record.resize(RECORD_HEADER + length, 0);
    sock.read_exact(&mut record[RECORD_HEADER..])?;
    Ok(record)
}
