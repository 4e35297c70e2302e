//! A TCP connection that is plain or TLS-protected, for the control and the
//! data channels alike, with the handshake and the TLS shutdown done the way
//! FTPS servers need them.
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, StreamOwned};

use super::error::{Error, Result};

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.sock,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Wraps a TCP connection in TLS and sends the ClientHello at once, without
    /// waiting for the server's answer: some servers send their 150 reply before
    /// they accept TLS on the data connection, others after, and a hello that is
    /// already on its way suits both. `finish_handshake` completes it.
    pub fn start_tls(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        phase: &str,
        timeout: Duration,
    ) -> Result<Stream> {
        let conn = ClientConnection::new(config, name).map_err(|e| Error::Tls {
            phase: phase.to_string(),
            reason: e.to_string(),
        })?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.wants_write() {
            tls.conn
                .write_tls(&mut tls.sock)
                .map_err(|e| Error::io(phase, e, timeout))?;
        }
        Ok(Stream::Tls(Box::new(tls)))
    }

    /// Completes the TLS handshake; says whether the session was resumed.
    pub fn finish_handshake(&mut self, phase: &str, timeout: Duration) -> Result<HandshakeKind> {
        let Stream::Tls(tls) = self else {
            return Ok(HandshakeKind::Full);
        };
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| Error::io(phase, e, timeout))?;
        }
        Ok(tls.conn.handshake_kind().unwrap_or(HandshakeKind::Full))
    }

    pub fn set_timeout(&self, timeout: Duration) -> Result<()> {
        let fail = |source| Error::Io {
            phase: "setting socket timeout".into(),
            source,
        };
        self.tcp().set_read_timeout(Some(timeout)).map_err(fail)?;
        self.tcp().set_write_timeout(Some(timeout)).map_err(fail)
    }

    /// Ends our side cleanly: TLS close_notify, then a TCP half-close. The read
    /// side stays open so the caller can read to EOF — with TLS 1.3 that is when
    /// session tickets sent after the data arrive and get stored for the next
    /// data connection to resume.
    pub fn close_write(&mut self) -> io::Result<()> {
        self.end_writing(true)
    }

    /// `close_write`, where `half_close` false leaves the TCP connection
    /// open after a TLS close_notify, for the peer to close. Needed through
    /// SOCKS5 proxies that end both directions at the first EOF (microsocks):
    /// the server's own close_notify then meets a closed socket, and the
    /// reset that answers it makes the server lose the end of the upload
    /// (vsftpd: "426 Failure reading network stream"). Plain connections
    /// always half-close: EOF is their only end of data.
    pub fn end_writing(&mut self, half_close: bool) -> io::Result<()> {
        self.send_close_notify()?;
        if !half_close && self.is_tls() {
            return Ok(());
        }
        self.tcp().shutdown(Shutdown::Write)
    }

    /// Sends TLS close_notify (nothing on a plain connection), and nothing
    /// more: the TCP connection stays open both ways, and reading goes on
    /// (TLS closes each direction on its own).
    pub fn send_close_notify(&mut self) -> io::Result<()> {
        if let Stream::Tls(tls) = self {
            tls.conn.send_close_notify();
            while tls.conn.wants_write() {
                tls.conn.write_tls(&mut tls.sock)?;
            }
        }
        Ok(())
    }

    /// Reads and discards until the peer closes. A TCP close without TLS
    /// close_notify is accepted here: the data already went the other way and
    /// the final reply decides.
    pub fn drain_to_eof(&mut self) -> io::Result<()> {
        let mut scratch = [0u8; 4096];
        loop {
            match self.read(&mut scratch) {
                Ok(0) => {
                    self.await_tcp_eof();
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// How long to wait for the peer's TCP close after its TLS close_notify.
const TCP_EOF_WAIT: Duration = Duration::from_millis(100);

impl Stream {
    /// After the peer's TLS close_notify, waits briefly for its TCP FIN before
    /// the socket is closed. Why: closing our socket just as the FIN arrives
    /// loses the FIN now and then (measured on Linux loopback: about 1 upload
    /// in 70), the peer retransmits it only after the 200 ms minimum RTO, and
    /// a server that lingers on close (vsftpd) holds its final reply until
    /// then. Bounded, so a server that waits for our close costs at most
    /// `TCP_EOF_WAIT`.
    pub fn await_tcp_eof(&mut self) {
        let Stream::Tls(tls) = self else {
            return;
        };
        let deadline = Instant::now() + TCP_EOF_WAIT;
        let mut scratch = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tls.sock.set_read_timeout(Some(left)).is_err() {
                return;
            }
            // Anything after close_notify is not part of the transfer.
            match tls.sock.read(&mut scratch) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    /// For TLS, not rustls's `StreamOwned::write`: that one ignores a failed
    /// socket write and reports it only at the next call, so a stalled
    /// connection cost one write timeout per call before anything failed.
    /// Here the records are pushed out before the call returns, and a
    /// socket error (a write timeout included) is this call's error.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => {
                let (conn, sock) = (&mut tls.conn, &mut tls.sock);
                let limit = sock.write_timeout().ok().flatten();
                let mut push = |conn: &mut ClientConnection| {
                    while conn.wants_write() {
                        let started = Instant::now();
                        if conn.write_tls(sock)? == 0 {
                            return Err(io::Error::from(io::ErrorKind::WriteZero));
                        }
                        // A socket write that hits its timeout after taking
                        // part of the bytes returns that part, not an error:
                        // the next one would wait the timeout again.
                        if limit.is_some_and(|limit| started.elapsed() >= limit) {
                            return Err(io::Error::from(io::ErrorKind::TimedOut));
                        }
                    }
                    Ok::<(), io::Error>(())
                };
                push(conn)?;
                let n = conn.writer().write(buf)?;
                push(conn)?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}
