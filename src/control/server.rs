//! The mount's side of the control socket: a listening thread and one
//! short-lived thread per request, at most `MAX_CLIENTS` at once.
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::protocol::{ReplyLine, Request, MAX_REQUEST};
use super::runtime;
use super::target::Target;

/// Requests served at once; more are refused (a `sync` may take long, but
/// a loop of clients must not make the mount start threads without end).
const MAX_CLIENTS: usize = 8;
/// A client gets this long to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A reply that cannot be written for this long (a client that stopped
/// reading) ends the connection.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ControlServer {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Listens on `socket` (in a private directory, see `runtime`), mode
    /// 0600. A socket file left by a mount that died is replaced; one that
    /// a live process answers on is not.
    pub fn start(socket: &Path, target: Arc<dyn Target>) -> io::Result<ControlServer> {
        if let Some(dir) = socket.parent() {
            runtime::ensure_private_dir(dir)?;
        }
        if UnixStream::connect(socket).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another process serves {}", socket.display()),
            ));
        }
        match std::fs::remove_file(socket) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(socket)?;
        runtime::make_private(socket)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let stopping = Arc::clone(&stopping);
            std::thread::Builder::new()
                .name("ftpsfs-control".into())
                .spawn(move || accept_loop(listener, target, stopping))?
        };
        Ok(ControlServer {
            path: socket.to_path_buf(),
            stopping,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stopping`.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: UnixListener, target: Arc<dyn Target>, stopping: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                log::debug!("control socket: accept failed: {e}");
                // EMFILE and its kin: do not spin on them.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let _ = stream.set_write_timeout(Some(REPLY_TIMEOUT));
        match peer_uid(&stream) {
            Ok(uid) if uid == runtime::current_uid() => {}
            Ok(uid) => {
                log::warn!("control socket: refused a request from uid {uid}");
                let _ = send(
                    &mut stream,
                    &ReplyLine::Error("permission denied: not the mounting user".into()),
                );
                close_gently(stream, ACCEPT_DRAIN);
                continue;
            }
            Err(e) => {
                log::debug!("control socket: no peer credentials: {e}");
                continue;
            }
        }
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = send(&mut stream, &ReplyLine::Error("busy: try again".into()));
            close_gently(stream, ACCEPT_DRAIN);
            continue;
        }
        let target = Arc::clone(&target);
        let done = Arc::clone(&active);
        let spawned = std::thread::Builder::new()
            .name("ftpsfs-control-client".into())
            .spawn(move || {
                serve_one(stream, &*target);
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The uid of the process at the other end of `stream` (SO_PEERCRED: what
/// the kernel recorded when it connected, not what the client claims).
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes and `len` is the size
    // of `cred`, as getsockopt(2) requires; the descriptor is open for the
    // duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

fn serve_one(stream: UnixStream, target: &dyn Target) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    let request = read_request(stream);
    let _ = match request {
        Ok(request) => {
            log::debug!("control socket: {request:?}");
            answer(&mut writer, target, request)
        }
        Err(message) => {
            log::debug!("control socket: bad request: {message}");
            send(&mut writer, &ReplyLine::Error(message))
        }
    };
    close_gently(writer, REQUEST_TIMEOUT);
}

/// How long the accept loop waits for a refused client's unread bytes.
const ACCEPT_DRAIN: Duration = Duration::from_millis(100);
/// At most this much unread input is read away before closing.
const DRAIN_LIMIT: u64 = 256 * 1024;

/// Closes a connection whose request was not read to its end (garbage, an
/// oversized line, a refused client) so the client still reads the reply:
/// closing with unread input makes the kernel send a reset, which can
/// discard the reply before the client reads it. The reading stops after
/// `patience` or `DRAIN_LIMIT` bytes.
fn close_gently(stream: UnixStream, patience: Duration) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(patience));
    let _ = io::copy(&mut stream.take(DRAIN_LIMIT), &mut io::sink());
}

fn read_request(stream: UnixStream) -> Result<Request, String> {
    let mut line = Vec::new();
    let mut limited = BufReader::new(stream).take(MAX_REQUEST as u64 + 1);
    limited
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the request: {e}"))?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_REQUEST {
            format!("request longer than {MAX_REQUEST} bytes")
        } else {
            "incomplete request (no newline)".into()
        });
    }
    line.pop();
    let line = std::str::from_utf8(&line).map_err(|_| "request is not UTF-8".to_string())?;
    Request::parse(line)
}

fn answer(out: &mut UnixStream, target: &dyn Target, request: Request) -> io::Result<()> {
    let result = match request {
        Request::Status { json } => {
            let status = target.status();
            let text = if json {
                status.to_json()
            } else {
                status.to_text()
            };
            for line in text.lines() {
                send(out, &ReplyLine::Data(line.to_string()))?;
            }
            Ok(None)
        }
        Request::Refresh { path } => target.refresh(&path).map(Some),
        Request::Sync => {
            // The sync goes on when the client stops listening: the
            // uploads are wanted either way.
            let mut progress_out = out.try_clone().ok();
            let mut progress = |text: &str| {
                if let Some(o) = progress_out.as_mut() {
                    if send(o, &ReplyLine::Progress(text.to_string())).is_err() {
                        progress_out = None;
                    }
                }
            };
            target.sync(&mut progress).map(Some)
        }
    };
    match result {
        Ok(message) => {
            if let Some(message) = message {
                send(out, &ReplyLine::Data(message))?;
            }
            send(out, &ReplyLine::Ok)
        }
        Err(message) => send(out, &ReplyLine::Error(message)),
    }
}

fn send(out: &mut UnixStream, line: &ReplyLine) -> io::Result<()> {
    let mut text = line.to_line();
    text.push('\n');
    out.write_all(text.as_bytes())
}
