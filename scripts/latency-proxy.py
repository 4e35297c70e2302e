#!/usr/bin/env python3
"""latency-proxy.py - a TCP proxy that looks like a long link: a fixed delay
each way and, optionally, a bandwidth cap per connection and direction, and
resets. For scripts/bench-latency, scripts/bench --wan and scripts/bench's
cut upload (not a test; the tests use the Rust fault proxy in
tests/common/proxy.rs).

Usage:
  latency-proxy.py [OPTIONS] LISTEN_IP TARGET_IP DELAY_MS PORT [PORT...]
      PORT may be a range A-B. Listens on LISTEN_IP at every PORT and forwards
      each connection to TARGET_IP at the same port, delaying every byte by
      DELAY_MS in each direction. The delay is a pipeline, as on a long link:
      bytes keep flowing, each arriving DELAY_MS after it was sent. Runs until
      SIGTERM/SIGINT; prints "ready" on stdout once every port listens.
  latency-proxy.py --self-check [--delay-ms N] [--rate R] [--handshake] [--size-mib N]
      Measures the proxy itself (started as a child process with the same
      options) with plain sockets on loopback and prints what it should take
      and what it took: a 1-byte ping (2 x delay), a connect + first reply,
      a download and an upload of N MiB (N MiB / rate + 2 x delay, 4 x delay
      with --handshake; default 16 MiB, 25 ms, 8M), four of them
      in parallel (each connection capped on its own: 4 x rate in all), a ping
      next to a saturated connection, and a download with no cap (the delay
      must not throttle). Informational: exit status 0 whenever it ran.

Options:
  --rate R      cap each connection, in each direction, at R bytes/s (suffix
                k, M, G = 10^3, 10^6, 10^9; Ki, Mi, Gi = 2^10...; "8M" is
                8 MB/s). A token bucket per direction of a connection, in front
                of the delay: the bytes leave the bucket at R (bursts of up to
                2 ms worth, at least 16 KiB), then travel DELAY_MS. Chunks are 2 ms
                worth of the rate, so a capped stream is smooth and a lone byte
                is not held up behind a big chunk. What is in flight is bounded
                (the rate x delay product, plus as much again queued at the
                bucket, at least 64 KiB): a sender feels back-pressure as on a
                real link, and the proxy does not buffer whole files.
                Without --rate (the default) nothing is capped.
  --handshake   a new connection costs a round trip before the client's first
                byte arrives, as TCP's handshake does on a real link: the proxy
                connects to the target DELAY_MS after the client did (the SYN's
                way), and nothing from the client arrives before 3 x DELAY_MS
                (connect() returns after a round trip, then the bytes travel).
                The client's connect() itself still returns at once.
  --stats       read commands on stdin: "stats" prints one line per PORT
                argument: PORT conns=N turns=T up=BYTES down=BYTES resets=N,
                where a turn is data from the server after data from the
                client on one connection (a request answered: pipelined
                requests answered together count once).
  --reset-after BYTES --resets N
                the first N connections to carry BYTES from the client (each
                counted from its start) are reset there, with RST to both
                sides, as a firewall does (default N: 1).
  --buffer BYTES
                hold at most about BYTES per direction of a connection: the
                queue between reader and writer, and the sockets' receive
                buffers (fixed, so the kernel does not grow them to tens of
                MiB). A reset then loses what a router would, not what a
                buffering proxy would. Default: as the rate and delay need.

The figures of --self-check on a 2-core machine: see README.md "Benchmarks".
"""
import argparse
import collections
import ctypes
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

CHUNK = 256 * 1024  # uncapped: what one recv takes
QUANTUM = 0.002  # capped: a chunk (and the bucket's burst) is this much of the rate
MIN_BURST = 16 * 1024
MIN_QUEUE = 64 * 1024


class Link:
    """What every connection of one proxy goes through."""

    def __init__(self, delay, rate=None, handshake=False, buffer=None):
        self.delay, self.rate, self.handshake = delay, rate, handshake
        self.buffer = buffer
        if rate:
            self.chunk = max(4096, min(CHUNK, int(rate * QUANTUM)))
            self.burst = max(MIN_BURST, self.chunk)
            # in flight (rate x delay) + as much again waiting at the bucket
            self.limit = max(MIN_QUEUE, 2 * int(rate * delay) + 2 * self.burst)
        else:
            self.chunk, self.burst, self.limit = CHUNK, 0, None
        if buffer:
            self.limit = buffer if self.limit is None else min(self.limit, buffer)
            self.chunk = min(self.chunk, buffer)


class Stats:
    """Counters of one listening PORT argument (all its ports)."""

    def __init__(self, spec):
        self.spec = spec
        self.lock = threading.Lock()
        self.conns = self.turns = self.up = self.down = self.resets = 0

    def line(self):
        with self.lock:
            return "%s conns=%d turns=%d up=%d down=%d resets=%d" % (
                self.spec, self.conns, self.turns, self.up, self.down, self.resets)


class Resets:
    """The resets still to do (--reset-after, --resets), for all ports."""

    def __init__(self, after, count):
        self.after, self.left = after, count if after else 0
        self.lock = threading.Lock()

    def claim(self, up):
        """Whether a connection that has now carried `up` bytes from the
        client is to be reset (each claim uses one up)."""
        with self.lock:
            if self.left <= 0 or up < self.after:
                return False
            self.left -= 1
            return True


def reset(sock):
    """Sends RST on `sock` at once, and wakes whoever waits on it: connect()
    to AF_UNSPEC disconnects a TCP socket with a reset."""
    libc = ctypes.CDLL(None, use_errno=True)
    addr = struct.pack("H14x", socket.AF_UNSPEC)
    libc.connect(sock.fileno(), addr, len(addr))


class Conn:
    """One proxied connection: its two sockets, closed when both pipes end."""

    def __init__(self, client, server, stats, resets):
        self.client, self.server, self.stats, self.resets = client, server, stats, resets
        self.lock = threading.Lock()
        self.last = None  # direction of the last data read: "up" or "down"
        self.open_pipes = 2
        self.up = 0  # bytes from the client so far
        self.was_reset = False

    def saw(self, direction, n):
        with self.lock:
            turn = direction == "down" and self.last == "up"
            self.last = direction
            if direction == "up":
                self.up += n
            cut = (direction == "up" and not self.was_reset
                   and self.resets.claim(self.up))
            self.was_reset = self.was_reset or cut
        if cut:
            with self.stats.lock:
                self.stats.resets += 1
            for s in (self.client, self.server):
                reset(s)
        with self.stats.lock:
            if direction == "up":
                self.stats.up += n
            else:
                self.stats.down += n
            self.stats.turns += turn

    def pipe_done(self):
        with self.lock:
            self.open_pipes -= 1
            last = self.open_pipes == 0
        if last:
            for s in (self.client, self.server):
                try:
                    s.close()
                except OSError:
                    pass

    def abort(self):
        for s in (self.client, self.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class DelayedPipe:
    """One direction of one connection: a reader queues what it reads with
    the time it may leave (after the bucket, if capped, and the delay); a
    writer sends it then."""

    def __init__(self, conn, src, dst, direction, link, not_before=0.0):
        self.conn, self.src, self.dst, self.direction = conn, src, dst, direction
        self.link, self.not_before = link, not_before
        self.queue = collections.deque()
        self.queued = 0
        self.cond = threading.Condition()
        self.tat = 0.0  # the bucket's theoretical arrival time (GCRA)
        self.dead = False

    def start(self):
        threading.Thread(target=self.read, daemon=True).start()
        threading.Thread(target=self.write, daemon=True).start()

    def due(self, n):
        """When n bytes read now may reach the other side."""
        link = self.link
        # Nothing leaves before the (emulated) handshake let the client send.
        now = max(time.monotonic(), self.not_before - link.delay)
        leave = now
        if link.rate and n:
            # Token bucket as GCRA: the bytes leave once the bucket has room
            # for them, i.e. when a link of this rate would have sent them,
            # less the burst allowance. Steady state: exactly the rate.
            self.tat = max(self.tat, now) + n / link.rate
            leave = max(now, self.tat - link.burst / link.rate)
        return leave + link.delay

    def read(self):
        limit = self.link.limit
        while True:
            if limit:
                with self.cond:
                    while self.queued >= limit and not self.dead:
                        self.cond.wait()
                    if self.dead:
                        break
            try:
                data = self.src.recv(self.link.chunk)
            except OSError:
                data = b""
            if data:
                self.conn.saw(self.direction, len(data))
            with self.cond:
                self.queue.append((self.due(len(data)), data))
                self.queued += len(data)
                self.cond.notify_all()
            if not data:
                break

    def write(self):
        try:
            self._write()
        finally:
            self.conn.pipe_done()

    def _write(self):
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                due, data = self.queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if data:
                # What else is due by now goes in the same send.
                parts = [data]
                size = len(data)
                with self.cond:
                    now = time.monotonic()
                    while (self.queue and self.queue[0][1]
                           and self.queue[0][0] <= now and size < CHUNK):
                        _, more = self.queue.popleft()
                        parts.append(more)
                        size += len(more)
                data = b"".join(parts) if len(parts) > 1 else data
            try:
                if not data:
                    self.dst.shutdown(socket.SHUT_WR)
                    return
                self.dst.sendall(data)
            except OSError:
                # The other side is gone: end both directions.
                with self.cond:
                    self.dead = True
                    self.cond.notify_all()
                self.conn.abort()
                return
            with self.cond:
                self.queued -= len(data)
                self.cond.notify_all()


def connect_pair(client, accepted, target_ip, port, link, stats, resets):
    if link.handshake and link.delay:
        # The SYN takes the delay to reach the server.
        time.sleep(max(0.0, accepted + link.delay - time.monotonic()))
    try:
        server = socket.create_connection((target_ip, port), timeout=10)
    except OSError:
        client.close()
        return
    server.settimeout(None)
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if link.buffer:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, link.buffer)
    with stats.lock:
        stats.conns += 1
    conn = Conn(client, server, stats, resets)
    # With the handshake: the client's connect() would return after a round
    # trip, and its first byte take the delay again.
    not_before = accepted + 3 * link.delay if link.handshake else 0.0
    DelayedPipe(conn, client, server, "up", link, not_before).start()
    DelayedPipe(conn, server, client, "down", link).start()


def serve(listener, target_ip, port, link, stats, resets):
    while True:
        client, _ = listener.accept()
        accepted = time.monotonic()
        if link.handshake:
            threading.Thread(target=connect_pair, daemon=True, args=(
                client, accepted, target_ip, port, link, stats, resets)).start()
        else:
            connect_pair(client, accepted, target_ip, port, link, stats, resets)


def ports(spec):
    low, _, high = spec.partition("-")
    return range(int(low), int(high or low) + 1)


def parse_rate(text):
    """'8M' -> 8e6 bytes/s; k/M/G are powers of 10, Ki/Mi/Gi of 2; a
    trailing B or B/s is allowed; 0 or 'none' means no cap."""
    t = text.strip()
    for tail in ("B/s", "/s", "B"):
        if t.endswith(tail) and len(t) > len(tail):
            t = t[: -len(tail)]
            break
    if t.lower() in ("none", "0", ""):
        return None
    mult = 1
    for suffix, m in (("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30),
                      ("k", 10**3), ("K", 10**3), ("M", 10**6), ("G", 10**9)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    value = float(t) * mult
    if value <= 0:
        return None
    return value


def run_proxy(args):
    link = Link(args.delay_ms / 1000, args.rate, args.handshake, args.buffer)
    resets = Resets(args.reset_after, args.resets)
    all_stats = []
    for spec in args.ports:
        stats = Stats(spec)
        all_stats.append(stats)
        for port in ports(spec):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((args.listen_ip, port))
            listener.listen(64)
            threading.Thread(target=serve, daemon=True, args=(
                listener, args.target_ip, port, link, stats, resets)).start()
    print("ready", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.stats:
        def commands():
            for line in sys.stdin:
                if line.strip() == "stats":
                    print("\n".join(s.line() for s in all_stats), flush=True)
        threading.Thread(target=commands, daemon=True).start()
    while not stop.wait(0.5):
        pass
    return 0


# ---------------------------------------------------------------- self-check

def target_server(listener):
    """The self-check's far end. A connection's first byte says what to do:
    e: echo everything; d + 8-byte length: send that many bytes;
    u + 8-byte length: read that many bytes, then send one byte."""

    def handle(s):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            op = recv_exact(s, 1)
            if op == b"e":
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    s.sendall(b)
            elif op == b"d":
                n = int.from_bytes(recv_exact(s, 8), "big")
                block = os.urandom(65536)
                while n > 0:
                    k = min(n, len(block))
                    s.sendall(block[:k])
                    n -= k
            elif op == b"u":
                n = int.from_bytes(recv_exact(s, 8), "big")
                while n > 0:
                    b = s.recv(min(n, 1 << 20))
                    if not b:
                        break
                    n -= len(b)
                s.sendall(b"!")
        except OSError:
            pass
        finally:
            s.close()

    while True:
        s, _ = listener.accept()
        threading.Thread(target=handle, args=(s,), daemon=True).start()


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise OSError("connection closed early")
        buf += b
    return bytes(buf)


class Rig:
    """A proxy child process on 127.0.0.2 in front of target_server on
    127.0.0.1, at one port."""

    def __init__(self, delay_ms, rate, handshake):
        self.delay = delay_ms / 1000
        for _ in range(20):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            self.port = listener.getsockname()[1]
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                probe.bind(("127.0.0.2", self.port))
                break
            except OSError:
                listener.close()
            finally:
                probe.close()
        listener.listen(64)
        threading.Thread(target=target_server, args=(listener,), daemon=True).start()
        cmd = [sys.executable, os.path.abspath(__file__)]
        if rate:
            cmd += ["--rate", repr(rate)]
        if handshake:
            cmd += ["--handshake"]
        cmd += ["127.0.0.2", "127.0.0.1", str(delay_ms), str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("self-check: the proxy did not start")

    def connect(self, op, n=None):
        s = socket.create_connection(("127.0.0.2", self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(op + (n.to_bytes(8, "big") if n is not None else b""))
        return s

    def close(self):
        self.proc.terminate()
        self.proc.wait()


def download(rig, n, out=None):
    """Seconds from sending the request to the last byte, and from the first
    byte to the last (the rate without the delay)."""
    t0 = time.monotonic()
    s = rig.connect(b"d", n)
    got, first = 0, None
    while got < n:
        b = s.recv(1 << 20)
        if not b:
            break
        if first is None:
            first = time.monotonic()
        got += len(b)
    t1 = time.monotonic()
    s.close()
    result = (t1 - t0, t1 - first, got)
    if out is not None:
        out.append(result)
    return result


def upload(rig, n, out=None):
    """Seconds from connecting to the server's one-byte answer that all n
    bytes arrived."""
    t0 = time.monotonic()
    s = rig.connect(b"u", n)
    block = b"\0" * 65536
    left = n
    while left > 0:
        k = min(left, len(block))
        s.sendall(block[:k])
        left -= k
    recv_exact(s, 1)
    t1 = time.monotonic()
    s.close()
    result = t1 - t0
    if out is not None:
        out.append(result)
    return result


def pings(s, count):
    times = []
    for _ in range(count):
        t0 = time.monotonic()
        s.sendall(b".")
        recv_exact(s, 1)
        times.append(time.monotonic() - t0)
    return times


def ms(x):
    return "%.1f ms" % (x * 1000)


def check(label, expected, measured, unit=""):
    off = (measured - expected) / expected * 100 if expected else 0.0
    note = "" if abs(off) <= 10 else "   <- outside +-10%"
    fmt = (lambda v: ms(v)) if unit == "s->ms" else (lambda v: "%.3f %s" % (v, unit))
    print("  %-46s expected %-12s measured %-12s (%+.1f%%)%s" % (
        label, fmt(expected), fmt(measured), off, note))


def self_check(args):
    delay = args.delay_ms / 1000
    rate = args.rate
    n = int(args.size_mib * 1048576)
    print("latency-proxy self-check: delay %g ms each way, rate %s per connection and "
          "direction, %g MiB transfers, %d cores, loopback" % (
              args.delay_ms, "%.3g MB/s" % (rate / 1e6) if rate else "uncapped",
              args.size_mib, os.cpu_count() or 0))
    rig = Rig(args.delay_ms, rate, args.handshake)
    try:
        s = rig.connect(b"e")
        pings(s, 2)  # warm up
        p = pings(s, 20)
        check("1-byte ping, median of 20 (2 x delay)", 2 * delay, statistics.median(p), "s->ms")
        print("  %-46s min %s, max %s" % ("", ms(min(p)), ms(max(p))))
        s.close()

        t0 = time.monotonic()
        s = rig.connect(b"e")
        s.sendall(b".")
        recv_exact(s, 1)
        t = time.monotonic() - t0
        s.close()
        if args.handshake:
            check("connect + 1-byte ping (2 round trips)", 4 * delay, t, "s->ms")
        else:
            check("connect + 1-byte ping (no --handshake: 1 rt)", 2 * delay, t, "s->ms")

        if rate:
            # connect, request, last byte: one round trip, two with the handshake
            rt = (4 if args.handshake else 2) * delay
            total, data, got = download(rig, n)
            check("download: connect to last byte", n / rate + rt, total, "s")
            check("  its rate, first byte to last (MB/s)", rate / 1e6, got / data / 1e6, "")
            t = upload(rig, n)
            check("upload: connect to the server's ack", n / rate + rt, t, "s")

            res = []
            threads = [threading.Thread(target=download, args=(rig, n, res)) for _ in range(4)]
            t0 = time.monotonic()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            t = time.monotonic() - t0
            check("4 parallel downloads, total (MB/s)", 4 * n / (n / rate + rt) / 1e6,
                  4 * n / t / 1e6, "")
            print("  %-46s each: %s" % ("", ", ".join("%.3f s" % r[0] for r in res)))

            # A ping beside a saturated connection: caps are per connection.
            res = []
            bulk = threading.Thread(target=download, args=(rig, n, res))
            bulk.start()
            time.sleep(0.3)
            s = rig.connect(b"e")
            p = pings(s, 10)
            s.close()
            bulk.join()
            check("ping beside a capped download, median", 2 * delay, statistics.median(p), "s->ms")
        else:
            print("  (no --rate: no rate checks)")
    finally:
        rig.close()

    # The delay must not throttle: with no cap, a download through the delay
    # runs at what the proxy can move, far above any rate a link here has.
    rig = Rig(args.delay_ms, None, False)
    try:
        total, data, got = download(rig, n)
        print("  %-46s %.3f s, %.1f MB/s first byte to last (delay %s adds %s once)" % (
            "download with no cap", total, got / data / 1e6, ms(delay), ms(2 * delay)))
        if rate:
            print("  %-46s %.1f x the cap" % ("", got / data / rate))
    finally:
        rig.close()
    return 0


def main(argv):
    p = argparse.ArgumentParser(
        prog="latency-proxy.py", add_help=False,
        usage="%(prog)s [OPTIONS] LISTEN_IP TARGET_IP DELAY_MS PORT... | --self-check ... (--help)")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--rate", type=parse_rate, default=argparse.SUPPRESS)
    p.add_argument("--handshake", action="store_true")
    p.add_argument("--stats", action="store_true")
    p.add_argument("--reset-after", type=int, default=0)
    p.add_argument("--resets", type=int, default=1)
    p.add_argument("--buffer", type=int, default=None)
    p.add_argument("--self-check", action="store_true")
    p.add_argument("--delay-ms", type=float, default=25.0)
    p.add_argument("--size-mib", type=float, default=16.0)
    p.add_argument("listen_ip", nargs="?")
    p.add_argument("target_ip", nargs="?")
    p.add_argument("delay", nargs="?", type=float)
    p.add_argument("ports", nargs="*")
    args = p.parse_args(argv[1:])
    if args.help:
        print(__doc__.strip())
        return 0
    if args.self_check:
        if not hasattr(args, "rate"):
            args.rate = 8e6
        return self_check(args)
    if not hasattr(args, "rate"):
        args.rate = None
    if args.listen_ip is None or args.target_ip is None or args.delay is None or not args.ports:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    args.delay_ms = args.delay
    return run_proxy(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
