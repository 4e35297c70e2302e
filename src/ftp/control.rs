//! The control connection: sends command lines and reads replies, over plain
//! TCP until `AUTH TLS` and over TLS after it.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

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

    /// The TLS version negotiated on this connection (None before TLS).
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match self.stream.as_ref()? {
            Stream::Tls(tls) => tls.conn.protocol_version(),
            Stream::Plain(_) => None,
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
