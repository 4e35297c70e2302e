#!/usr/bin/env python3
"""latency-proxy.py - a TCP proxy that adds a fixed delay each way, for
scripts/bench-latency (not a test; the tests use the Rust fault proxy in
tests/common/proxy.rs).

Usage:
  latency-proxy.py LISTEN_IP TARGET_IP DELAY_MS PORT [PORT...]
      PORT may be a range A-B. Listens on LISTEN_IP at every PORT and forwards
      each connection to TARGET_IP at the same port, delaying every byte by
      DELAY_MS in each direction. The delay is a pipeline, as on a long link:
      bytes keep flowing, each arriving DELAY_MS after it was sent. Runs until
      SIGTERM/SIGINT; prints "ready" on stdout once every port listens.
"""
import collections
import signal
import socket
import sys
import threading
import time

CHUNK = 256 * 1024


class DelayedPipe:
    """One direction of one connection: a reader queues what it reads with
    the time it may leave; a writer sends it then."""

    def __init__(self, src, dst, delay):
        self.src, self.dst, self.delay = src, dst, delay
        self.queue = collections.deque()
        self.cond = threading.Condition()

    def start(self):
        threading.Thread(target=self.read, daemon=True).start()
        threading.Thread(target=self.write, daemon=True).start()

    def read(self):
        while True:
            try:
                data = self.src.recv(CHUNK)
            except OSError:
                data = b""
            with self.cond:
                self.queue.append((time.monotonic() + self.delay, data))
                self.cond.notify()
            if not data:
                return

    def write(self):
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                due, data = self.queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    self.dst.shutdown(socket.SHUT_WR)
                    return
                self.dst.sendall(data)
            except OSError:
                # The other side is gone: end both directions.
                for s in (self.src, self.dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return


def serve(listener, target_ip, port, delay):
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection((target_ip, port), timeout=10)
        except OSError:
            client.close()
            continue
        server.settimeout(None)
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        DelayedPipe(client, server, delay).start()
        DelayedPipe(server, client, delay).start()


def ports(specs):
    for spec in specs:
        low, _, high = spec.partition("-")
        yield from range(int(low), int(high or low) + 1)


def main(argv):
    if len(argv) < 5 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    listen_ip, target_ip, delay = argv[1], argv[2], float(argv[3]) / 1000
    for port in ports(argv[4:]):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((listen_ip, port))
        listener.listen(64)
        threading.Thread(
            target=serve, args=(listener, target_ip, port, delay), daemon=True
        ).start()
    print("ready", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
