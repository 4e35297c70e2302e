//! The commands' side of the control socket: send one request, hand each
//! reply line to the caller, and turn the end of the reply into a result.
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{ReplyLine, Request};

/// How long a command waits for each line of a reply (except `sync`, whose
/// uploads take as long as they take).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `request` on `socket`; `on_line` gets every `data` and `progress`
/// line. Ok once the mount says `ok`; Err with the mount's message, or with
/// why it could not be asked.
pub fn ask(
    socket: &Path,
    request: &Request,
    timeout: Option<Duration>,
    mut on_line: impl FnMut(&ReplyLine),
) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            format!("no running mount answers there ({e})")
        }
        io::ErrorKind::PermissionDenied => {
            format!(
                "permission denied on {}: not the mounting user",
                socket.display()
            )
        }
        _ => format!("cannot connect to {}: {e}", socket.display()),
    })?;
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(Some(REPLY_TIMEOUT)))
        .map_err(|e| format!("control socket: {e}"))?;
    let mut line = request.to_line();
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut text = String::new();
        match reader.read_line(&mut text) {
            Ok(0) => return Err("the mount closed the connection without an answer".into()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "the mount did not answer within {} s",
                    timeout.unwrap_or_default().as_secs()
                ))
            }
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
        match ReplyLine::parse(&text)? {
            ReplyLine::Ok => return Ok(()),
            ReplyLine::Error(message) => return Err(message),
            other => on_line(&other),
        }
    }
}
