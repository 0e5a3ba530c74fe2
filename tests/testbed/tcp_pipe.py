"""A ProxyCommand for the tests, like `nc HOST PORT`: joins stdin/stdout to a TCP connection and
appends "HOST PORT" to LOG, so a test can prove the connection went through it."""

from __future__ import annotations

import os
import selectors
import socket
import sys


def main(host: str, port: str, log: str) -> None:
    with open(log, "a") as handle:
        handle.write(f"{host} {port}\n")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.settimeout(None)
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is sock:
                data = sock.recv(1 << 16)
                if not data:
                    return
                os.write(sys.stdout.fileno(), data)
            else:
                data = os.read(sys.stdin.fileno(), 1 << 16)
                if not data:
                    return
                sock.sendall(data)


if __name__ == "__main__":
    main(*sys.argv[1:4])
