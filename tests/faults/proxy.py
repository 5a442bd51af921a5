"""A TCP proxy in front of a real server (the suite's Redis), with the faults an
attacker's network has: it passes bytes, refuses, hangs, or drops.

- `pass`: bytes flow both ways.
- `refuse`: new connections are closed at once; live ones are cut.
- `hang`: connections are accepted and nothing is answered (a Redis that accepts but
  never replies); live ones stop answering too.
- `drop`: live connections are cut; new ones pass (a network blip).

The upstream stays as it was throughout: when the proxy passes again, the server answers
with all the data it had ("Redis comes back with its data").
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit


class FaultProxy:
    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url
        parts = urlsplit(upstream_url)
        self._unix = parts.scheme == "unix"
        self._target: str | tuple[str, int]
        if self._unix:
            self._target = parts.path
            query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
            self._db = query.get("db", "0")
        else:
            self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
            self._db = parts.path.lstrip("/") or "0"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode = "pass"
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The upstream's URL through the proxy (same database, same options)."""
        return urlunsplit(("redis", f"127.0.0.1:{self.port}", f"/{self._db}", "", ""))

    def set(self, mode: str) -> None:
        assert mode in ("pass", "refuse", "hang", "drop"), mode
        self.mode = mode
        if mode in ("refuse", "drop"):
            self._cut_all()

    @contextlib.contextmanager
    def fault(self, mode: str) -> Iterator[None]:
        self.set(mode)
        try:
            yield
        finally:
            self.set("pass")

    def close(self) -> None:
        self._stopped.set()
        self.listener.close()
        self._cut_all()

    def _cut_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def _connect_upstream(self) -> socket.socket:
        if self._unix:
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self._target)
            return up
        return socket.create_connection(self._target)  # type: ignore[arg-type]

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self._stopped.is_set():
                for key, _ in sel.select(timeout=0.05):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    if self.mode == "hang":
                        continue  # swallowed: the caller waits for a reply that never comes
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.close()
