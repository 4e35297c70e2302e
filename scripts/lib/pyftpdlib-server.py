#!/usr/bin/python3
"""pyftpdlib's TLS_FTPHandler as deployed: TLS required on control and data,
one virtual user, a passive port range. Run by scripts/pyftpdlib-test-server
(which makes the certificate, the ports and the user); not meant to be run by
hand.

Every command and reply is logged (pyftpdlib's debug log) to --log.
"""
import argparse
import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.servers import FTPServer


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pasv-min", type=int, required=True)
    p.add_argument("--pasv-max", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-file", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--log", required=True)
    return p.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(
        filename=args.log,
        level=logging.DEBUG,
        format="%(asctime)s %(message)s",
    )
    with open(args.password_file, encoding="ascii") as f:
        password = f.read().strip()
    authorizer = DummyAuthorizer()
    # every permission: list, read, write, delete, rename, mkdir, append,
    # SITE CHMOD (M) and MFMT (T)
    authorizer.add_user(args.user, password, args.root, perm="elradfmwMT")

    handler = TLS_FTPHandler
    handler.certfile = args.cert
    handler.keyfile = args.key
    handler.tls_control_required = True
    handler.tls_data_required = True
    handler.authorizer = authorizer
    handler.passive_ports = range(args.pasv_min, args.pasv_max + 1)
    handler.permit_foreign_addresses = False
    handler.banner = "ftpsfs test pyftpdlib ready."

    server = FTPServer((args.host, args.port), handler)
    server.max_cons = 256
    server.max_cons_per_ip = 100
    print("listening", flush=True)
    server.serve_forever(handle_exit=True)


if __name__ == "__main__":
    sys.exit(main())
