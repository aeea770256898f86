"""Ports of a sandbox: a local port forwarded through ports tunnels
(``CONNECT /v1/sessions/<id>/ports/<port>/tunnel``), and the check of a
port number. See :meth:`Session.forward` and :meth:`Session.expose`."""

from __future__ import annotations

import select
import socket
import threading
from typing import Any, Callable, List

from .errors import InvalidRequest


def check_port(port: Any) -> int:
    """The port as an int, or :class:`InvalidRequest` outside 1..65535."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidRequest("port must be an integer from 1 to 65535, not %r" % (port,),
                             code="invalid_port")
    return port


def _relay(a: Any, b: Any) -> None:
    """Both ways until both ended; EOF one way half-closes the other."""
    open_ = {a: b, b: a}
    try:
        while open_:
            ready, _, _ = select.select(list(open_), [], [])
            for s in ready:
                data = s.recv(65536)
                if not data:
                    peer = open_.pop(s)
                    try:
                        peer.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    continue
                open_[s].sendall(data)
    except OSError:
        pass
    finally:
        a.close()
        b.close()


class PortForward:
    """A local listening socket whose every connection is relayed, by a
    thread of its own, through a new ports tunnel to the sandbox. Use as a
    context manager, or call :meth:`close`. ``port`` is the local port."""

    def __init__(self, open_tunnel: Callable[[], Any], host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self._open = open_tunnel
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._closed = threading.Event()
        self._threads: List[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True,
                                        name="sandbox-forward-%d" % self.port)
        self._accept.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._one, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _one(self, conn: socket.socket) -> None:
        try:
            tun = self._open()
        except Exception:  # the tunnel's error ends this connection only
            conn.close()
            return
        tun.settimeout(None)
        _relay(conn, tun)

    def close(self) -> None:
        """Stops accepting; relays already open end with their peers."""
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._accept.join(5)

    def __enter__(self) -> "PortForward":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<PortForward %s:%d>" % (self.host, self.port)
