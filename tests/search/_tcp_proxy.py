"""A TCP proxy in front of the test PostgreSQL server that a test can cut: every open connection dropped, and new
ones accepted and closed at once, for a while — what a driver sees when the server restarts or the network fails."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import sqlalchemy as sa


class CuttableProxy:
    """Listens on a free local port and forwards every connection to ``upstream`` (host, port)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._down_until = 0.0
        self.cuts = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` (of the upstream server) through this proxy."""
        return sa.make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def cut(self, seconds: float) -> None:
        """Drop every open connection now, and refuse new ones (accepted, then closed) for ``seconds``."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            self.cuts += 1
            dropped, self._open = self._open, []
        for sock in dropped:
            _close(sock)

    def down_for(self) -> float:
        """Seconds left of the current cut (0 when connections are accepted)."""
        return max(self._down_until - time.monotonic(), 0.0)

    def close(self) -> None:
        self._closed = True
        self.cut(0.0)
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):  # either side closed: the connection is over
        while data := source.recv(65536):
            target.sendall(data)
    _close(source)
    _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already shut down or never connected
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
