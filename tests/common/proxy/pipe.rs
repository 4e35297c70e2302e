//! One direction of a proxied connection: a reader that stamps each chunk
//! with the time it may leave (now + latency), and a writer that sends chunks
//! when due, as fast as the bandwidth cap allows, and not at all while
//! stalled. Between them a bounded queue: when it is full the reader stops
//! reading, and TCP flow control pushes back on the sender.
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Conn, Shared, CLOSE, POLL, RESET};

/// Bytes read per chunk.
const CHUNK: usize = 64 * 1024;
/// Bytes a direction holds in flight unless `set_buffering` says less
/// (this bounds throughput at QUEUE_LIMIT / latency: 8 MiB / 20 ms =
/// 400 MiB/s).
pub(crate) const QUEUE_LIMIT: usize = 8 * 1024 * 1024;
/// Largest single write, so a stall or a reset takes effect within it.
const PIECE: usize = 16 * 1024;

enum Item {
    Bytes(Vec<u8>),
    Eof,
}

struct Queue {
    items: VecDeque<(Instant, Item)>,
    bytes: usize,
}

struct Pipe {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    to_server: bool,
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Pipe {
    fn source(&self) -> &TcpStream {
        if self.to_server {
            &self.conn.client
        } else {
            &self.conn.server
        }
    }

    fn sink(&self) -> &TcpStream {
        if self.to_server {
            &self.conn.server
        } else {
            &self.conn.client
        }
    }

    fn over(&self) -> bool {
        self.shared.stopping() || self.conn.is_ending()
    }
}

/// Starts the reader and the writer of one direction through `spawn`.
pub(crate) fn start(
    conn: Arc<Conn>,
    to_server: bool,
    shared: Arc<Shared>,
    spawn: impl Fn(&str, Box<dyn FnOnce() + Send>),
) {
    let pipe = Arc::new(Pipe {
        conn,
        shared,
        to_server,
        queue: Mutex::new(Queue {
            items: VecDeque::new(),
            bytes: 0,
        }),
        changed: Condvar::new(),
    });
    let reader = Arc::clone(&pipe);
    spawn("proxy-read", Box::new(move || read_loop(&reader)));
    spawn("proxy-write", Box::new(move || write_loop(&pipe)));
}

fn read_loop(pipe: &Pipe) {
    let mut buf = vec![0u8; CHUNK];
    let limit = pipe.shared.queue_limit(pipe.conn.kind);
    while !pipe.over() {
        {
            let queue = pipe.queue.lock().unwrap();
            if queue.bytes >= limit {
                let _ = pipe.changed.wait_timeout(queue, POLL).unwrap();
                continue;
            }
        }
        let item = match pipe.source().read(&mut buf) {
            Ok(0) => Item::Eof,
            Ok(n) => {
                if pipe.to_server {
                    pipe.shared.count_from_client(&pipe.conn, n);
                }
                Item::Bytes(buf[..n].to_vec())
            }
            Err(e) if is_timeout(&e) => continue,
            // The truncate fault disconnected the server's side itself.
            Err(_) if pipe.conn.truncated.load(Ordering::Relaxed) => Item::Eof,
            Err(_) => {
                // The peer reset: pass the reset on to the other side.
                pipe.conn.end(RESET);
                return;
            }
        };
        pipe.shared.touch(&pipe.conn);
        let eof = matches!(item, Item::Eof);
        let due = Instant::now() + pipe.shared.latency(pipe.conn.kind);
        let mut queue = pipe.queue.lock().unwrap();
        if let Item::Bytes(bytes) = &item {
            queue.bytes += bytes.len();
        }
        queue.items.push_back((due, item));
        pipe.changed.notify_all();
        if eof {
            return;
        }
    }
}

fn write_loop(pipe: &Pipe) {
    let mut next_free = Instant::now();
    loop {
        if pipe.over() {
            finish(pipe);
            return;
        }
        let item = {
            let mut queue = pipe.queue.lock().unwrap();
            let due = queue.items.front().map(|(due, _)| *due);
            match due {
                None => {
                    let _ = pipe.changed.wait_timeout(queue, POLL).unwrap();
                    continue;
                }
                Some(due) if due > Instant::now() => {
                    drop(queue);
                    std::thread::sleep((due - Instant::now().min(due)).min(POLL));
                    continue;
                }
                Some(_) => {
                    let (_, item) = queue.items.pop_front().expect("front exists");
                    if let Item::Bytes(bytes) = &item {
                        queue.bytes -= bytes.len();
                    }
                    pipe.changed.notify_all();
                    item
                }
            }
        };
        match item {
            Item::Eof => {
                let _ = pipe.sink().shutdown(Shutdown::Write);
                if pipe.conn.truncated.load(Ordering::Relaxed) {
                    // The client's end of a truncated upload: no server
                    // answers it any more.
                    let _ = pipe.conn.client.shutdown(Shutdown::Write);
                }
                return;
            }
            Item::Bytes(bytes) => {
                if send(pipe, &bytes, &mut next_free).is_err() {
                    finish(pipe);
                    return;
                }
            }
        }
    }
}

/// Sends one chunk piece by piece, obeying the stall, bandwidth, reset and
/// truncate faults before each piece.
fn send(pipe: &Pipe, bytes: &[u8], next_free: &mut Instant) -> Result<(), ()> {
    for piece in bytes.chunks(PIECE) {
        if pipe.conn.truncated.load(Ordering::Relaxed) {
            // Thrown away: the server's side is gone.
            continue;
        }
        while pipe.shared.stalled(&pipe.conn) {
            if pipe.over() {
                return Err(());
            }
            std::thread::sleep(POLL);
        }
        if let Some(rate) = pipe.shared.bandwidth(pipe.conn.kind) {
            let now = Instant::now();
            *next_free = (*next_free).max(now);
            while Instant::now() < *next_free {
                if pipe.over() {
                    return Err(());
                }
                std::thread::sleep((*next_free - Instant::now().min(*next_free)).min(POLL));
            }
            *next_free += Duration::from_secs_f64(piece.len() as f64 / rate as f64);
        }
        if let Some(allowed) = pipe.shared.claim_reset(&pipe.conn, piece.len()) {
            // Best effort: the bytes before the reset point, then RST.
            let _ = write_all(pipe, &piece[..allowed]);
            pipe.shared
                .count_forwarded(&pipe.conn, pipe.to_server, allowed);
            pipe.conn.end(RESET);
            return Err(());
        }
        if let Some(allowed) = truncation(pipe, piece) {
            let _ = write_all(pipe, &piece[..allowed]);
            pipe.shared
                .count_forwarded(&pipe.conn, pipe.to_server, allowed);
            disconnect_server(pipe);
            continue;
        }
        write_all(pipe, piece)?;
        pipe.shared
            .count_forwarded(&pipe.conn, pipe.to_server, piece.len());
    }
    Ok(())
}

/// Where in `piece`, the client's next bytes to the server, the truncate
/// fault ends what the server gets.
fn truncation(pipe: &Pipe, piece: &[u8]) -> Option<usize> {
    let limit = pipe.shared.truncate_after(pipe.conn.kind)?;
    if !pipe.to_server {
        return None;
    }
    let done = pipe.conn.forwarded.load(Ordering::Relaxed);
    let allowed = limit.saturating_sub(done);
    (allowed <= piece.len() as u64).then_some(allowed as usize)
}

/// Resets the server's side of a connection only (the client's stays
/// open): `connect` to AF_UNSPEC disconnects a TCP socket, with a reset.
fn disconnect_server(pipe: &Pipe) {
    pipe.conn.truncated.store(true, Ordering::Relaxed);
    let addr = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    // SAFETY: a valid socket descriptor and a sockaddr of the size given.
    unsafe {
        libc::connect(
            pipe.conn.server.as_raw_fd(),
            &addr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        );
    }
}

fn write_all(pipe: &Pipe, mut buf: &[u8]) -> Result<(), ()> {
    while !buf.is_empty() {
        if pipe.over() {
            return Err(());
        }
        match pipe.sink().write(buf) {
            Ok(0) => return Err(()),
            Ok(n) => buf = &buf[n..],
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                pipe.conn.end(RESET);
                return Err(());
            }
        }
    }
    Ok(())
}

/// Ends the connection as asked: FIN on both sides for a close; for a
/// reset, nothing here (SO_LINGER 0 is set, and the last descriptor to
/// close sends RST once every thread has let go).
fn finish(pipe: &Pipe) {
    if pipe.conn.ending.load(std::sync::atomic::Ordering::Relaxed) == CLOSE {
        let _ = pipe.conn.client.shutdown(Shutdown::Both);
        let _ = pipe.conn.server.shutdown(Shutdown::Both);
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
