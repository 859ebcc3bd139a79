"""Idle HTTP/1.1 keep-alive connections held open against a REST port (``--idle-connections``).

Issue 14: 2,000 idle keep-alive connections must not slow 16 busy clients (p99 within 1.5x). Each
connection first makes one small ``GET /v1/models/<name>`` and reads the reply, so the server has
accepted it and parsed a request on it (a server that only parks fresh sockets in its accept backlog
would otherwise look free), then idles until ``close()``.
"""

from __future__ import annotations

import resource
import select
import socket
import time

OPEN_TIMEOUT = 120.0  # opening them all is bounded: a server that cannot keep up fails the check


def raise_file_limit(needed: int) -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (the default soft 1024 is below 2,000 sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class IdleConnections:
    """``count`` keep-alive connections to 127.0.0.1:``port``, each after one GET of ``path``."""

    def __init__(self, port: int, path: str, count: int) -> None:
        raise_file_limit(count)
        self.sockets: list[socket.socket] = []
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        deadline = time.monotonic() + OPEN_TIMEOUT
        try:
            for _ in range(count):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"opened only {len(self.sockets)} of {count} idle connections "
                                       f"in {OPEN_TIMEOUT:.0f} s")
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                self.sockets.append(sock)
                sock.sendall(request)
                _read_reply(sock)
        except BaseException:
            self.close()
            raise

    def still_open(self) -> int:
        """How many the server has not closed (a closed one is readable and peeks EOF)."""
        poller = select.poll()  # not select(): it stops at fd 1024
        for sock in self.sockets:
            poller.register(sock, select.POLLIN | select.POLLHUP)
        ready = {fd for fd, _ in poller.poll(0)}
        closed = 0
        for sock in self.sockets:
            if sock.fileno() in ready:
                sock.setblocking(False)
                try:
                    closed += sock.recv(1, socket.MSG_PEEK) == b""
                except BlockingIOError:
                    pass
                except ConnectionError:
                    closed += 1
        return len(self.sockets) - closed

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []


def _read_reply(sock: socket.socket) -> None:
    """Read one HTTP/1.1 reply with a Content-Length body; fail on anything but 200."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection before replying")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"GET for an idle connection: {head.splitlines()[0]!r}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-reply")
        body += chunk
