//! A download or upload in progress on a data connection. It holds its
//! session (borrowed, or owned as a pooled session), so the control connection
//! cannot be used for anything else until the transfer is finished or
//! aborted; dropping an unfinished transfer aborts it.
use std::io::{self, Read, Write};
use std::ops::DerefMut;

use super::error::{Error, Result};
use super::session::Session;
use super::stream::Stream;

pub struct Download<S: DerefMut<Target = Session>> {
    session: S,
    /// `None` once finished or aborted.
    stream: Option<Stream>,
    received: u64,
    /// Bytes the server should send (size minus offset), when known.
    expected: Option<u64>,
    at_eof: bool,
    /// Our TLS close_notify went out with the end of the handshake (see
    /// `server_family`); the data is still read to the server's.
    close_notify_sent: bool,
}

impl<S: DerefMut<Target = Session>> Download<S> {
    pub(super) fn new(session: S, mut stream: Stream, expected: Option<u64>) -> Self {
        // Right behind the handshake's last message, in the same flight: a
        // failure here shows again when the data is read.
        let close_notify_sent = session.family().close_notify_with_handshake()
            && stream.is_tls()
            && stream.send_close_notify().is_ok();
        Download {
            session,
            stream: Some(stream),
            received: 0,
            expected,
            at_eof: false,
            close_notify_sent,
        }
    }

    /// Drops the size the download was expected to have: the server sent
    /// on past a range it was asked for (see `store::ftps`), and the rest
    /// of the file is read as any download's.
    pub fn expect_any_length(&mut self) {
        self.expected = None;
    }

    /// Bytes read so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    pub(super) fn session_timeouts(&self) -> super::config::Timeouts {
        self.session.session_timeouts()
    }

    /// Completes a download that was read to its end: closes the data
    /// connection properly and checks the server's final reply and the size.
    pub fn finish(mut self) -> Result<u64> {
        let Some(mut stream) = self.stream.take() else {
            return Err(Error::protocol("download", "already finished"));
        };
        if !self.at_eof {
            drop(stream);
            self.session.abort_transfer();
            return Err(Error::protocol(
                "download",
                "finished before the end of the data; use abort()",
            ));
        }
        // Our close_notify, unless it went with the handshake, and the TCP
        // half-close; errors here do not change what was received.
        if self.close_notify_sent {
            let _ = stream.tcp().shutdown(std::net::Shutdown::Write);
        } else {
            let _ = stream.close_write();
            if self.session.family().waits_for_our_close_notify() {
                // The final reply comes only once the server has it.
                self.session.note_request();
            }
        }
        stream.await_tcp_eof();
        drop(stream);
        // The server is done with the transfer: the next one's data
        // connection can be asked for before its reply is read.
        self.session.ask_next_data();
        self.session
            .finish_transfer("download (RETR/LIST)", false)?;
        if let Some(expected) = self.expected {
            if self.received != expected {
                // Fewer: cut short. More: the file changed since its size
                // was read (a stale listing). Neither is the file asked for.
                let why = if self.received < expected {
                    "the transfer was cut short"
                } else {
                    "the file changed on the server since its size was read"
                };
                return Err(Error::protocol(
                    "download",
                    format!(
                        "the server sent {} bytes where {} were expected: {why}",
                        self.received, expected
                    ),
                ));
            }
        }
        Ok(self.received)
    }

    /// Stops a download before its end (ABOR), keeping the session usable when
    /// the server cooperates.
    pub fn abort(mut self) {
        self.abort_now();
    }

    fn abort_now(&mut self) {
        if let Some(stream) = self.stream.take() {
            drop(stream);
            self.session.abort_transfer();
        }
    }
}

impl<S: DerefMut<Target = Session>> Read for Download<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at_eof || buf.is_empty() {
            return Ok(0);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(0);
        };
        self.session.note_wait();
        match stream.read(buf) {
            Ok(0) => {
                self.at_eof = true;
                Ok(0)
            }
            Ok(n) => {
                self.received += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && stream.is_tls() => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the data connection closed without TLS close_notify: the download may be truncated",
            )),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                let idle = self.session.session_timeouts().data_idle;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no data from the server for {:.1} s on the data connection", idle.as_secs_f64()),
                ))
            }
            Err(e) => Err(e),
        }
    }
}

impl<S: DerefMut<Target = Session>> Drop for Download<S> {
    fn drop(&mut self) {
        self.abort_now();
    }
}

pub struct Upload<S: DerefMut<Target = Session>> {
    session: S,
    stream: Option<Stream>,
    sent: u64,
}

impl<S: DerefMut<Target = Session>> Upload<S> {
    pub(super) fn new(session: S, stream: Stream) -> Self {
        Upload {
            session,
            stream: Some(stream),
            sent: 0,
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Completes the upload: TLS close_notify, half-close, read the data
    /// connection to its end (TLS 1.3 session tickets arrive there), then the
    /// server's final reply. Only a 226/250 makes it a success.
    pub fn finish(self) -> Result<u64> {
        self.finish_asking_size(None).map(|(sent, _)| sent)
    }

    /// `finish`, with `SIZE path` sent along with the end of the bytes:
    /// also the size of the file on the server once the transfer ended,
    /// when the server told it after its 226 (see `dialogue::transfer`),
    /// without a round trip of its own.
    pub fn finish_and_size(self, path: &[u8]) -> Result<(u64, Option<u64>)> {
        self.finish_asking_size(Some(path))
    }

    fn finish_asking_size(mut self, size_of: Option<&[u8]>) -> Result<(u64, Option<u64>)> {
        let Some(mut stream) = self.stream.take() else {
            return Err(Error::protocol("upload", "already finished"));
        };
        let data_idle = self.session.session_timeouts().data_idle;
        let half_close = !self.session.through_proxy();
        let ended = stream.flush().and_then(|()| stream.end_writing(half_close));
        let size_asked = ended.is_ok() && size_of.is_some_and(|p| self.session.ask_size_ahead(p));
        if ended.is_ok() {
            self.session.ask_next_data_with_end();
        }
        // The server answers the end of the bytes by closing its side.
        self.session.note_request();
        self.session.note_wait();
        let closed = ended.and_then(|()| stream.drain_to_eof());
        drop(stream);
        if let Err(e) = closed {
            self.session.abort_transfer();
            return Err(Error::io("completing the upload", e, data_idle));
        }
        // As in `Download::finish`, asked for before the final reply, but
        // only where the server is known to read no command before it
        // (vsftpd); elsewhere once the reply is in, as a server that reads
        // commands during a transfer may not have seen our close yet.
        let ahead = self.session.family().reads_no_commands_during_transfers();
        if ahead {
            self.session.ask_next_data();
        }
        let size = self
            .session
            .finish_transfer("upload (STOR/APPE)", size_asked)?;
        if !ahead {
            self.session.ask_next_data();
        }
        Ok((self.sent, size))
    }

    /// Abandons the upload. The data connection is cut without close_notify,
    /// so a strict server can tell the file is incomplete; callers must not
    /// treat what the server holds as complete.
    pub fn abort(mut self) {
        self.abort_now();
    }

    fn abort_now(&mut self) {
        if let Some(stream) = self.stream.take() {
            let _ = stream.tcp().shutdown(std::net::Shutdown::Both);
            drop(stream);
            self.session.abort_transfer();
        }
    }
}

impl<S: DerefMut<Target = Session>> Write for Upload<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "upload already finished",
            ));
        };
        let n = stream.write(buf).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                let idle = self.session.session_timeouts().data_idle;
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the server took no data for {:.1} s on the data connection",
                        idle.as_secs_f64()
                    ),
                )
            } else {
                e
            }
        })?;
        self.sent += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.stream.as_mut() {
            Some(stream) => stream.flush(),
            None => Ok(()),
        }
    }
}

impl<S: DerefMut<Target = Session>> Drop for Upload<S> {
    fn drop(&mut self) {
        self.abort_now();
    }
}
