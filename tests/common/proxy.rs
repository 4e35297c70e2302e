//! A fault-injecting TCP proxy between ftpsfs and a real server.
//!
//! It listens on one loopback address (e.g. 127.0.0.2) on the control port
//! and on every port of the server's passive range, and forwards each
//! connection to the same port on the server's address (127.0.0.1). ftpsfs
//! connects data connections to the control connection's peer, so they go
//! through the proxy too. Faults are switched per connection kind at run
//! time: latency, bandwidth, stall, reset after N bytes, refusing new
//! connections, closing or resetting the open ones, and dropping idle ones
//! the way a firewall does (silently).
//!
//! Every thread polls with short timeouts and exits once the proxy is
//! dropped; `Drop` joins them all.
mod pipe;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::SockRef;

/// How often every loop looks at the stop flag and the faults.
pub(crate) const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Control,
    Data,
}

/// What happened to the connections of one kind so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub accepted: u64,
    /// Bytes forwarded from the client to the server.
    pub to_server: u64,
    /// Bytes taken from the client (what it sent: those forwarded, and
    /// those a reset or a truncation threw away).
    pub from_client: u64,
    /// Bytes forwarded from the server to the client.
    pub to_client: u64,
    /// Connections ended by a reset fault (`reset_after`, `reset_all`).
    pub resets: u64,
    /// Connections closed by `close_all`.
    pub closes: u64,
    /// Connections silenced by the idle-drop fault.
    pub idle_dropped: u64,
    /// Connections open now.
    pub open: u64,
}

/// The faults switched on for one kind of connection.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    latency_us: AtomicU64,
    /// Bytes per second per direction of each connection; 0: no cap.
    bandwidth: AtomicU64,
    stall: AtomicBool,
    /// One-shot resets, in turn: the first connection to forward the
    /// front's bytes (both directions together, counted from its start) is
    /// reset there, and the next one is armed.
    reset_after: Mutex<VecDeque<u64>>,
    refuse: AtomicBool,
    idle_drop_ms: AtomicU64,
    /// Every connection's bytes to the server end (with a reset) when it
    /// has forwarded this many bytes; 0: off.
    truncate_after: AtomicU64,
    /// Bytes the proxy holds per direction of a new connection (its queue,
    /// and its sockets' receive buffers); 0: the queue's default, buffers
    /// as the kernel tunes them.
    buffering: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    to_server: AtomicU64,
    from_client: AtomicU64,
    to_client: AtomicU64,
    resets: AtomicU64,
    closes: AtomicU64,
    idle_dropped: AtomicU64,
}

/// How a connection is to end.
pub(crate) const RUNNING: u8 = 0;
pub(crate) const CLOSE: u8 = 1;
pub(crate) const RESET: u8 = 2;

/// One proxied connection: the client's socket and ours to the server,
/// shared by the four threads that move its bytes (a reader and a writer
/// per direction). The sockets close when the last thread lets go.
pub(crate) struct Conn {
    pub(crate) kind: Kind,
    pub(crate) client: TcpStream,
    pub(crate) server: TcpStream,
    pub(crate) ending: AtomicU8,
    /// Silenced by the idle-drop fault: nothing is forwarded any more, and
    /// nothing is closed either.
    pub(crate) blackholed: AtomicBool,
    /// Cut short by the truncate fault: the server's side is reset, the
    /// client's goes on until the client ends it.
    pub(crate) truncated: AtomicBool,
    /// Bytes forwarded, both directions.
    pub(crate) forwarded: AtomicU64,
    last_activity_ms: AtomicU64,
}

impl Conn {
    pub(crate) fn is_ending(&self) -> bool {
        self.ending.load(Ordering::Relaxed) != RUNNING
    }

    /// Asks the threads to end the connection; the first request wins.
    pub(crate) fn end(&self, how: u8) -> bool {
        if how == RESET {
            // With SO_LINGER 0, the close of the last descriptor sends RST.
            let _ = SockRef::from(&self.client).set_linger(Some(Duration::ZERO));
            let _ = SockRef::from(&self.server).set_linger(Some(Duration::ZERO));
        }
        self.ending
            .compare_exchange(RUNNING, how, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

pub(crate) struct Shared {
    stop: AtomicBool,
    started: Instant,
    faults: HashMap<Kind, Faults>,
    counters: HashMap<Kind, Counters>,
    conns: Mutex<Vec<Weak<Conn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn faults(&self, kind: Kind) -> &Faults {
        &self.faults[&kind]
    }

    pub(crate) fn latency(&self, kind: Kind) -> Duration {
        Duration::from_micros(self.faults(kind).latency_us.load(Ordering::Relaxed))
    }

    pub(crate) fn bandwidth(&self, kind: Kind) -> Option<u64> {
        Some(self.faults(kind).bandwidth.load(Ordering::Relaxed)).filter(|&b| b > 0)
    }

    pub(crate) fn truncate_after(&self, kind: Kind) -> Option<u64> {
        Some(self.faults(kind).truncate_after.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    pub(crate) fn queue_limit(&self, kind: Kind) -> usize {
        match self.faults(kind).buffering.load(Ordering::Relaxed) {
            0 => pipe::QUEUE_LIMIT,
            n => n as usize,
        }
    }

    pub(crate) fn stalled(&self, conn: &Conn) -> bool {
        self.faults(conn.kind).stall.load(Ordering::Relaxed)
            || conn.blackholed.load(Ordering::Relaxed)
    }

    pub(crate) fn touch(&self, conn: &Conn) {
        let now = self.started.elapsed().as_millis() as u64;
        conn.last_activity_ms.store(now, Ordering::Relaxed);
    }

    /// How many of `len` bytes `conn` may still forward before the armed
    /// reset fires; `None` when no reset is due within them. Disarms and
    /// counts the reset when it claims it.
    pub(crate) fn claim_reset(&self, conn: &Conn, len: usize) -> Option<usize> {
        let mut armed = self.faults(conn.kind).reset_after.lock().unwrap();
        let limit = *armed.front()?;
        let done = conn.forwarded.load(Ordering::Relaxed);
        if done + len as u64 <= limit {
            return None;
        }
        armed.pop_front();
        self.counters[&conn.kind]
            .resets
            .fetch_add(1, Ordering::Relaxed);
        Some(limit.saturating_sub(done) as usize)
    }

    pub(crate) fn count_from_client(&self, conn: &Conn, n: usize) {
        self.counters[&conn.kind]
            .from_client
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_forwarded(&self, conn: &Conn, to_server: bool, n: usize) {
        conn.forwarded.fetch_add(n as u64, Ordering::Relaxed);
        let counters = &self.counters[&conn.kind];
        let counter = if to_server {
            &counters.to_server
        } else {
            &counters.to_client
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn spawn(&self, name: &str, body: impl FnOnce() + Send + 'static) {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(body)
            .expect("spawn proxy thread");
        let mut threads = self.threads.lock().unwrap();
        threads.retain(|t| !t.is_finished());
        threads.push(handle);
    }

    fn live(&self, kind: Kind) -> Vec<Arc<Conn>> {
        let mut conns = self.conns.lock().unwrap();
        conns.retain(|c| c.strong_count() > 0);
        conns
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|c| c.kind == kind && !c.is_ending())
            .collect()
    }
}

pub struct FaultProxy {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    pub listen: IpAddr,
}

impl FaultProxy {
    /// Listens on `listen` at `control_port` and every data port, forwarding
    /// each to the same port on `target`.
    pub fn start(
        listen: IpAddr,
        target: IpAddr,
        control_port: u16,
        data_ports: impl IntoIterator<Item = u16>,
    ) -> FaultProxy {
        let kinds = [Kind::Control, Kind::Data];
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            started: Instant::now(),
            faults: kinds.iter().map(|&k| (k, Faults::default())).collect(),
            counters: kinds.iter().map(|&k| (k, Counters::default())).collect(),
            conns: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let mut ports = vec![(control_port, Kind::Control)];
        ports.extend(data_ports.into_iter().map(|p| (p, Kind::Data)));
        let mut listeners = Listeners {
            listen,
            ports,
            open: Vec::new(),
        };
        listeners.sync(&shared);
        assert!(
            !listeners.open.is_empty(),
            "the proxy could not listen on {listen}"
        );
        let worker = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || accept_loop(listeners, target, &worker))
            .expect("spawn proxy acceptor");
        FaultProxy {
            shared,
            acceptor: Some(acceptor),
            listen,
        }
    }

    /// Added delay for every byte, each way (a pipeline: bytes keep flowing).
    pub fn set_latency(&self, kind: Kind, each_way: Duration) {
        self.shared
            .faults(kind)
            .latency_us
            .store(each_way.as_micros() as u64, Ordering::Relaxed);
    }

    /// Caps each direction of each connection at `bytes_per_second`.
    pub fn set_bandwidth(&self, kind: Kind, bytes_per_second: Option<u64>) {
        self.shared
            .faults(kind)
            .bandwidth
            .store(bytes_per_second.unwrap_or(0), Ordering::Relaxed);
    }

    /// Holds at most about `bytes` per direction of each new connection of
    /// `kind` (`None`: the default, an 8 MiB queue, socket buffers tuned by
    /// the kernel, up to 32 MiB each here), as a router does rather than a
    /// proxy: what a reset throws away stays what the two ends had in their
    /// own buffers.
    pub fn set_buffering(&self, kind: Kind, bytes: Option<u64>) {
        self.shared
            .faults(kind)
            .buffering
            .store(bytes.unwrap_or(0), Ordering::Relaxed);
    }

    /// Every connection of `kind` from now on that forwards `bytes` (both
    /// directions, since it opened) has what goes to the server end there
    /// with a reset of the server's side
    /// only, while what the client still sends is taken and thrown away and
    /// its end answered with a FIN: a server that takes a reset as the end
    /// of an upload (pyftpdlib does) stores a short file and answers 226,
    /// while the client sent it all. `None` switches it off.
    pub fn set_truncate(&self, kind: Kind, bytes: Option<u64>) {
        self.shared
            .faults(kind)
            .truncate_after
            .store(bytes.unwrap_or(0), Ordering::Relaxed);
    }

    /// Stops (or resumes) forwarding without closing anything.
    pub fn set_stall(&self, kind: Kind, stalled: bool) {
        self.shared
            .faults(kind)
            .stall
            .store(stalled, Ordering::Relaxed);
    }

    /// Arms a one-shot reset: the first connection of `kind` whose forwarded
    /// bytes (both directions, since it opened) reach `bytes` gets RST on
    /// both sides right there.
    pub fn reset_after(&self, kind: Kind, bytes: u64) {
        self.resets_after(kind, &[bytes]);
    }

    /// Arms one-shot resets in turn: the first connection of `kind` to
    /// forward `each[0]` bytes since it opened is reset there, then the
    /// first to forward `each[1]`, and so on. Replaces what was armed.
    pub fn resets_after(&self, kind: Kind, each: &[u64]) {
        *self.shared.faults(kind).reset_after.lock().unwrap() = each.iter().copied().collect();
    }

    /// Whether every armed reset has fired (or none was armed).
    pub fn reset_fired(&self, kind: Kind) -> bool {
        self.shared
            .faults(kind)
            .reset_after
            .lock()
            .unwrap()
            .is_empty()
    }

    /// New connections are refused (the listeners close, so a connect gets
    /// ECONNREFUSED), or accepted again.
    pub fn set_refuse(&self, kind: Kind, refuse: bool) {
        self.shared
            .faults(kind)
            .refuse
            .store(refuse, Ordering::Relaxed);
        // Let the acceptor close or reopen its listeners before returning.
        std::thread::sleep(POLL * 3);
    }

    /// Closes every open connection of `kind` (FIN to both sides).
    pub fn close_all(&self, kind: Kind) -> usize {
        self.end_all(kind, CLOSE, |c| &c.closes)
    }

    /// Resets every open connection of `kind` (RST to both sides).
    pub fn reset_all(&self, kind: Kind) -> usize {
        self.end_all(kind, RESET, |c| &c.resets)
    }

    fn end_all(&self, kind: Kind, how: u8, counter: fn(&Counters) -> &AtomicU64) -> usize {
        let mut ended = 0;
        for conn in self.shared.live(kind) {
            if conn.end(how) {
                ended += 1;
            }
        }
        counter(&self.shared.counters[&kind]).fetch_add(ended as u64, Ordering::Relaxed);
        ended
    }

    /// Silences connections of `kind` idle for longer than `after`, as a
    /// firewall that forgets them: nothing more is forwarded, nothing is
    /// closed. `None` switches it off (silenced connections stay silent).
    pub fn set_idle_drop(&self, kind: Kind, after: Option<Duration>) {
        let ms = after.map_or(0, |d| d.as_millis().max(1) as u64);
        self.shared
            .faults(kind)
            .idle_drop_ms
            .store(ms, Ordering::Relaxed);
    }

    pub fn stats(&self, kind: Kind) -> Stats {
        let c = &self.shared.counters[&kind];
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            accepted: get(&c.accepted),
            to_server: get(&c.to_server),
            from_client: get(&c.from_client),
            to_client: get(&c.to_client),
            resets: get(&c.resets),
            closes: get(&c.closes),
            idle_dropped: get(&c.idle_dropped),
            open: self.shared.live(kind).len() as u64,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// The listening sockets, opened and closed as the refuse fault says.
struct Listeners {
    listen: IpAddr,
    ports: Vec<(u16, Kind)>,
    open: Vec<(TcpListener, Kind)>,
}

impl Listeners {
    fn sync(&mut self, shared: &Shared) {
        let refused = |kind: Kind| shared.faults(kind).refuse.load(Ordering::Relaxed);
        self.open.retain(|(_, kind)| !refused(*kind));
        for &(port, kind) in &self.ports {
            let is_open = self
                .open
                .iter()
                .any(|(l, _)| l.local_addr().map(|a| a.port()).ok() == Some(port));
            if is_open || refused(kind) {
                continue;
            }
            // A port taken by someone else is skipped; the caller notices
            // through failing connections.
            if let Ok(listener) = TcpListener::bind(SocketAddr::new(self.listen, port)) {
                let _ = listener.set_nonblocking(true);
                self.open.push((listener, kind));
            }
        }
    }
}

fn accept_loop(mut listeners: Listeners, target: IpAddr, shared: &Arc<Shared>) {
    while !shared.stopping() {
        listeners.sync(shared);
        drop_idle(shared);
        let mut fds: Vec<libc::pollfd> = listeners
            .open
            .iter()
            .map(|(l, _)| libc::pollfd {
                fd: l.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of pollfd for the length given.
        let ready = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                POLL.as_millis() as i32,
            )
        };
        if ready <= 0 {
            continue;
        }
        for (i, pollfd) in fds.iter().enumerate() {
            if pollfd.revents == 0 {
                continue;
            }
            let (listener, kind) = &listeners.open[i];
            while let Ok((client, _)) = listener.accept() {
                let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                forward(client, *kind, SocketAddr::new(target, port), shared);
            }
        }
    }
}

/// Connects to the server and starts moving bytes; a server that cannot be
/// reached makes the client's connection reset.
fn forward(client: TcpStream, kind: Kind, target: SocketAddr, shared: &Arc<Shared>) {
    shared.counters[&kind]
        .accepted
        .fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nonblocking(false);
    let server = match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
        Ok(server) => server,
        Err(_) => {
            let _ = SockRef::from(&client).set_linger(Some(Duration::ZERO));
            return;
        }
    };
    let buffering = shared.faults(kind).buffering.load(Ordering::Relaxed);
    for socket in [&client, &server] {
        if buffering > 0 {
            // A fixed receive buffer: the kernel no longer grows it.
            let _ = SockRef::from(socket).set_recv_buffer_size(buffering as usize);
        }
        let _ = socket.set_nodelay(true);
        let _ = socket.set_read_timeout(Some(POLL));
        let _ = socket.set_write_timeout(Some(POLL));
    }
    let conn = Arc::new(Conn {
        kind,
        client,
        server,
        ending: AtomicU8::new(RUNNING),
        blackholed: AtomicBool::new(false),
        truncated: AtomicBool::new(false),
        forwarded: AtomicU64::new(0),
        last_activity_ms: AtomicU64::new(0),
    });
    shared.touch(&conn);
    shared.conns.lock().unwrap().push(Arc::downgrade(&conn));
    for to_server in [true, false] {
        pipe::start(
            Arc::clone(&conn),
            to_server,
            Arc::clone(shared),
            |name, body| shared.spawn(name, body),
        );
    }
}

/// Silences the connections that sat idle longer than their kind allows.
fn drop_idle(shared: &Shared) {
    let now = shared.started.elapsed().as_millis() as u64;
    for kind in [Kind::Control, Kind::Data] {
        let limit = shared.faults(kind).idle_drop_ms.load(Ordering::Relaxed);
        if limit == 0 {
            continue;
        }
        for conn in shared.live(kind) {
            let idle = now.saturating_sub(conn.last_activity_ms.load(Ordering::Relaxed));
            if idle > limit && !conn.blackholed.swap(true, Ordering::Relaxed) {
                shared.counters[&kind]
                    .idle_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
