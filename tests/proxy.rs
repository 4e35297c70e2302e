//! The fault proxy of the fault tests, driven with plain TCP echo servers:
//! each fault does what it says, and the proxy's threads end when it is
//! dropped.
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::proxy::{FaultProxy, Kind};

const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const PROXY_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Echoes every byte back on every connection until dropped.
struct Echo {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind((SERVER_IP, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut echoes = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let flag = Arc::clone(&flag);
                        echoes.push(std::thread::spawn(move || echo(conn, &flag)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for e in echoes {
                let _ = e.join();
            }
        });
        Echo {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

fn echo(mut conn: TcpStream, stop: &AtomicBool) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An echo server for control and one for data, behind a proxy.
fn setup() -> (Echo, Echo, FaultProxy) {
    let control = Echo::start();
    let data = Echo::start();
    let proxy = FaultProxy::start(PROXY_IP, SERVER_IP, control.port, [data.port]);
    (control, data, proxy)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect_timeout(&(PROXY_IP, port).into(), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn round_trip(s: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    s.write_all(message).unwrap();
    let mut back = vec![0u8; message.len()];
    s.read_exact(&mut back).unwrap();
    back
}

/// Sends `body` while reading its echo (too large to send first and read
/// after: both directions' buffers would fill).
fn echo_through(s: &mut TcpStream, body: &[u8]) -> Vec<u8> {
    let writer = {
        let mut s2 = s.try_clone().unwrap();
        let body = body.to_vec();
        std::thread::spawn(move || s2.write_all(&body).unwrap())
    };
    let mut back = vec![0u8; body.len()];
    s.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    back
}

#[test]
fn forwards_both_ways_and_counts() {
    let (control, data, proxy) = setup();
    let mut c = connect(control.port);
    let mut d = connect(data.port);
    let body = common::data::bytes(3 * 1024 * 1024, 1);
    let back = echo_through(&mut d, &body);
    assert!(back == body, "the data came back unchanged");
    assert_eq!(round_trip(&mut c, b"NOOP\r\n"), b"NOOP\r\n");
    // A forwarding thread counts its bytes once written, which the echo
    // may overtake: the counts are waited for (bounded), not raced.
    let deadline = Instant::now() + Duration::from_secs(10);
    let counted = |kind: Kind, bytes: u64| loop {
        let stats = proxy.stats(kind);
        if (stats.to_server == bytes && stats.to_client == bytes) || Instant::now() > deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stats = counted(Kind::Data, body.len() as u64);
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.to_server, body.len() as u64);
    assert_eq!(stats.to_client, body.len() as u64);
    assert_eq!(stats.open, 1);
    assert_eq!(counted(Kind::Control, 6).to_server, 6);
}

#[test]
fn latency_delays_each_way_but_bytes_keep_flowing() {
    let (control, _data, proxy) = setup();
    let latency = Duration::from_millis(200);
    proxy.set_latency(Kind::Control, latency);
    let mut c = connect(control.port);
    let started = Instant::now();
    round_trip(&mut c, b"x");
    let rtt = started.elapsed();
    assert!(rtt >= latency * 2, "one round trip: {rtt:?}");
    // 4 MiB there and back, in 64 KiB reads: a pipeline takes about one
    // round trip more than without latency (well under a second); a proxy
    // that slept once per read would take 64 delays each way (25 s).
    let body = common::data::bytes(4 * 1024 * 1024, 3);
    let started = Instant::now();
    let back = echo_through(&mut c, &body);
    let all = started.elapsed();
    assert!(back == body, "the data came back unchanged");
    assert!(
        all < Duration::from_secs(10),
        "a pipeline, not a sleep per chunk: {all:?}"
    );
}

#[test]
fn bandwidth_cap_slows_a_transfer() {
    let (_control, data, proxy) = setup();
    proxy.set_bandwidth(Kind::Data, Some(1024 * 1024));
    let mut d = connect(data.port);
    let body = common::data::bytes(512 * 1024, 2);
    let started = Instant::now();
    let back = echo_through(&mut d, &body);
    let took = started.elapsed();
    assert!(back == body);
    // 512 KiB at 1 MiB/s each way (pipelined): about 0.5 s.
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn stall_holds_bytes_without_closing() {
    let (control, _data, proxy) = setup();
    let mut c = connect(control.port);
    round_trip(&mut c, b"before");
    proxy.set_stall(Kind::Control, true);
    c.write_all(b"during").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 6];
    let err = c.read(&mut buf).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "nothing arrives and nothing closes: {err:?}"
    );
    proxy.set_stall(Kind::Control, false);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"during");
}

#[test]
fn reset_after_n_bytes_fires_once() {
    let (_control, data, proxy) = setup();
    proxy.reset_after(Kind::Data, 100_000);
    let mut d = connect(data.port);
    let body = common::data::bytes(200_000, 3);
    let _ = d.write_all(&body);
    let mut got = Vec::new();
    let err = loop {
        let mut buf = [0u8; 8192];
        match d.read(&mut buf) {
            Ok(0) => panic!("EOF instead of a reset after {} bytes", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err:?}");
    assert!(got.len() < 100_000, "{} bytes came back", got.len());
    assert!(proxy.reset_fired(Kind::Data));
    assert_eq!(proxy.stats(Kind::Data).resets, 1);
    // The next connection is left alone.
    let mut again = connect(data.port);
    assert_eq!(round_trip(&mut again, &body), body);
}

#[test]
fn refuse_closes_the_door_and_reopens_it() {
    let (control, data, proxy) = setup();
    proxy.set_refuse(Kind::Control, true);
    let err = TcpStream::connect_timeout(&(PROXY_IP, control.port).into(), Duration::from_secs(2))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let mut d = connect(data.port);
    assert_eq!(round_trip(&mut d, b"data still works"), b"data still works");
    proxy.set_refuse(Kind::Control, false);
    let mut c = connect(control.port);
    assert_eq!(round_trip(&mut c, b"back"), b"back");
}

#[test]
fn close_all_sends_eof_and_reset_all_sends_rst() {
    let (control, data, proxy) = setup();
    let mut c = connect(control.port);
    let mut d = connect(data.port);
    round_trip(&mut c, b"a");
    round_trip(&mut d, b"b");
    assert_eq!(proxy.close_all(Kind::Control), 1);
    let mut buf = [0u8; 1];
    assert_eq!(c.read(&mut buf).unwrap(), 0, "EOF");
    assert_eq!(round_trip(&mut d, b"c"), b"c", "data untouched");
    assert_eq!(proxy.reset_all(Kind::Data), 1);
    let err = d.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err:?}");
    let stats = proxy.stats(Kind::Data);
    assert_eq!((stats.resets, stats.open), (1, 0));
}

#[test]
fn idle_connections_are_silenced_busy_ones_are_not() {
    let (control, _data, proxy) = setup();
    proxy.set_idle_drop(Kind::Control, Some(Duration::from_millis(300)));
    let mut idle = connect(control.port);
    let mut busy = connect(control.port);
    round_trip(&mut idle, b"hello");
    for _ in 0..10 {
        round_trip(&mut busy, b"tick");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(round_trip(&mut busy, b"still here"), b"still here");
    assert_eq!(
        proxy.stats(Kind::Control).idle_dropped,
        1,
        "only the idle one"
    );
    idle.write_all(b"anyone?").unwrap();
    idle.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 7];
    let err = idle.read(&mut buf).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "silence, like a firewall that forgot the connection: {err:?}"
    );
}

#[test]
fn dropping_the_proxy_ends_every_connection_and_thread() {
    let (control, data, proxy) = setup();
    proxy.set_stall(Kind::Data, true);
    let mut c = connect(control.port);
    let mut d = connect(data.port);
    round_trip(&mut c, b"x");
    d.write_all(b"stuck").unwrap();
    let started = Instant::now();
    drop(proxy);
    // A few polls (milliseconds); the bound only catches a drop that waits
    // for a stalled connection, which would never end.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drop took {:?}",
        started.elapsed()
    );
    let mut buf = [0u8; 8];
    for s in [&mut c, &mut d] {
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("connection still open after drop: {other:?}"),
        }
    }
    let err = TcpStream::connect_timeout(&(PROXY_IP, control.port).into(), Duration::from_secs(2))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    drop(data);
}

#[test]
fn a_stall_pushes_back_on_the_sender() {
    let (_control, data, proxy) = setup();
    let mut d = connect(data.port);
    d.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    proxy.set_stall(Kind::Data, true);
    let block = vec![0u8; 256 * 1024];
    let started = Instant::now();
    let mut sent = 0usize;
    let err = loop {
        match d.write(&block) {
            Ok(n) => sent += n,
            Err(e) => break e,
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still writing after {sent} bytes"
        );
    };
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    eprintln!(
        "blocked after {} MiB in {:?}",
        sent >> 20,
        started.elapsed()
    );
    assert!(sent < 64 << 20, "{sent} bytes went into a stalled proxy");
}
