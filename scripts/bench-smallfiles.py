#!/usr/bin/env python3
"""bench-smallfiles.py - small-file helper for scripts/bench (not a test).

Usage:
  bench-smallfiles.py gen DIR N
      Create N files of 1-8 KiB (random sizes and contents, fixed seed) spread over
      50 directories DIR/d00..d49.
  bench-smallfiles.py upload HOST PORT USER CAFILE LOCAL_DIR REMOTE_DIR
      Upload LOCAL_DIR's tree to REMOTE_DIR (created) one file after another on ONE
      control connection: explicit FTPS (AUTH TLS), PROT P, and every data
      connection resumes the control connection's TLS session (vsftpd's
      require_ssl_reuse). The clock runs from the first MKD to the last 226, i.e. it
      leaves out connect and login, as a mounted filesystem has those behind it.
  bench-smallfiles.py list HOST PORT USER CAFILE REMOTE_DIR
      Recursive LIST of REMOTE_DIR on one connection (the raw cost of a cold ls -lR).

The password comes from $FTPS_PASSWORD. $FTPS_TLS_NAME, when set, is the name
the server certificate is checked against instead of HOST (for a proxy in
between, as in scripts/bench-latency). Prints one line of key=value pairs:
seconds=S files=N bytes=B dirs=D commands=C tls=TLSv1.x
"""
import ftplib
import os
import random
import socket
import ssl
import sys
import time


class ReuseFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's session."""

    commands = 0

    def putcmd(self, line):
        self.commands += 1
        super().putcmd(line)

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        # Without TCP_NODELAY the close_notify after a small file waits for the
        # peer's delayed ACK (Nagle): ~40 ms per file on loopback.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
        return conn, size


def connect(host, port, user, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ftp = ReuseFTP_TLS(context=ctx, timeout=60)
    ftp.connect(host, int(port))
    # TLS checks the certificate against ftp.host; connections (data ones
    # included) go to the control connection's peer either way.
    ftp.host = os.environ.get("FTPS_TLS_NAME", host)
    ftp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ftp.login(user, os.environ["FTPS_PASSWORD"])  # sends AUTH TLS first
    ftp.prot_p()
    ftp.voidcmd("TYPE I")
    ftp.commands = 0
    return ftp


def gen(root, n):
    rnd = random.Random(20240601)
    n = int(n)
    ndirs = 50
    for d in range(ndirs):
        os.makedirs(os.path.join(root, "d%02d" % d), exist_ok=True)
    total = 0
    for i in range(n):
        size = rnd.randint(1024, 8192)
        path = os.path.join(root, "d%02d" % (i % ndirs), "f%05d" % i)
        with open(path, "wb") as f:
            f.write(rnd.randbytes(size))
        total += size
    print("files=%d bytes=%d dirs=%d" % (n, total, ndirs))


def upload(host, port, user, cafile, local, remote):
    ftp = connect(host, port, user, cafile)
    files = nbytes = dirs = 0
    t0 = time.monotonic()
    ftp.mkd(remote)
    for dirpath, dirnames, filenames in os.walk(local):
        dirnames.sort()
        rel = os.path.relpath(dirpath, local)
        rdir = remote if rel == "." else remote + "/" + rel.replace(os.sep, "/")
        if rel != ".":
            ftp.mkd(rdir)
            dirs += 1
        for name in sorted(filenames):
            with open(os.path.join(dirpath, name), "rb") as f:
                data = f.read()
            stor(ftp, rdir + "/" + name, data)
            files += 1
            nbytes += len(data)
    t1 = time.monotonic()
    tls = ftp.sock.version()
    cmds = ftp.commands
    ftp.quit()
    print("seconds=%.6f files=%d bytes=%d dirs=%d commands=%d tls=%s"
          % (t1 - t0, files, nbytes, dirs, cmds, tls))


def stor(ftp, path, data):
    """ftplib's storbinary without its TYPE I before every file (sent once at login):
    PASV, STOR, TLS resume, data, close_notify, 226."""
    conn, _ = ftp.ntransfercmd("STOR " + path)
    with conn:
        conn.sendall(data)
        conn.unwrap()
    ftp.voidresp()


def listing(host, port, user, cafile, remote):
    ftp = connect(host, port, user, cafile)
    t0 = time.monotonic()
    todo, dirs, files = [remote], 0, 0
    while todo:
        d = todo.pop(0)
        lines = []
        ftp.retrlines("LIST " + d, lines.append)
        dirs += 1
        for line in lines:
            name = line.split(None, 8)[-1]
            if line.startswith("d"):
                if name not in (".", ".."):
                    todo.append(d + "/" + name)
            else:
                files += 1
    t1 = time.monotonic()
    tls = ftp.sock.version()
    cmds = ftp.commands
    ftp.quit()
    print("seconds=%.6f files=%d bytes=0 dirs=%d commands=%d tls=%s"
          % (t1 - t0, files, dirs, cmds, tls))


def main(argv):
    if len(argv) >= 2 and argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if len(argv) == 4 and argv[1] == "gen":
        gen(argv[2], argv[3])
    elif len(argv) == 8 and argv[1] == "upload":
        upload(*argv[2:])
    elif len(argv) == 7 and argv[1] == "list":
        listing(*argv[2:])
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
