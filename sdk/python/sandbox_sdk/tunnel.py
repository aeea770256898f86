"""The CONNECT tunnel: one TCP connection to the service that, after
``CONNECT /v1/sessions/<id>/tunnel`` is answered ``200 Connection
Established``, carries raw bytes to and from the sandbox's sshd.

The sandbox's sshd speaks first (its ``SSH-2.0-...`` banner), so its first
bytes may arrive in the same segment as the 200 header. For a plain TCP
connection the header is read with ``MSG_PEEK`` and exactly the header's
bytes are consumed, so everything after it stays in the kernel's buffer and
the caller gets an ordinary socket. For TLS (``https://`` service URLs) the
header is read normally and any extra bytes are handed back through
:class:`PrefixedSocket`.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Dict, Optional, Tuple, Union

from .errors import SandboxConnectionError, TunnelError, error_from_response

#: The largest CONNECT answer header the SDK accepts.
MAX_HEADER = 64 * 1024

TunnelSocket = Union[socket.socket, "PrefixedSocket"]


class PrefixedSocket:
    """A socket wrapper that first returns bytes already read from the
    connection, then reads from the socket itself. Used for TLS connections,
    where ``MSG_PEEK`` cannot leave extra bytes in the kernel."""

    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        self._sock = sock
        self._prefix = prefix

    def recv(self, n: int, flags: int = 0) -> bytes:
        if self._prefix:
            out, self._prefix = self._prefix[:n], self._prefix[n:]
            return out
        return self._sock.recv(n, flags)

    def recv_into(self, buf: Any, n: int = 0, flags: int = 0) -> int:
        if self._prefix:
            n = n or len(buf)
            out = self.recv(n)
            buf[:len(out)] = out
            return len(out)
        return self._sock.recv_into(buf, n, flags)

    def pending(self) -> int:
        """Bytes held in the wrapper (not visible to ``select``)."""
        return len(self._prefix)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def __enter__(self) -> "PrefixedSocket":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sock.close()


def _read_header_peek(sock: socket.socket) -> bytes:
    """Reads one HTTP answer header (through the blank line) and consumes no
    byte after it."""
    head = b""
    while True:
        chunk = sock.recv(65536, socket.MSG_PEEK)
        if not chunk:
            raise TunnelError("connection closed before the CONNECT answer"
                              " was complete", code="bad_answer")
        buf = head + chunk
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            need = end + 4 - len(head)
            while need > 0:
                got = sock.recv(need)
                if not got:
                    raise TunnelError("connection closed in the CONNECT answer",
                                      code="bad_answer")
                need -= len(got)
            return buf[:end + 4]
        # No end of header yet: these bytes are all header; consume them so
        # the next peek blocks until new data arrives. The search runs over
        # head + chunk, so a terminator split across reads is still found.
        got = sock.recv(len(chunk))
        head += got
        if len(head) > MAX_HEADER:
            raise TunnelError("CONNECT answer header too long", code="bad_answer")


def _read_header_buffered(sock: Any) -> Tuple[bytes, bytes]:
    """Reads one HTTP answer header; returns (header, bytes after it)."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            return buf[:end + 4], buf[end + 4:]
        if len(buf) > MAX_HEADER:
            raise TunnelError("CONNECT answer header too long", code="bad_answer")
        chunk = sock.recv(65536)
        if not chunk:
            raise TunnelError("connection closed before the CONNECT answer"
                              " was complete", code="bad_answer")
        buf += chunk


def parse_status(header: bytes) -> Tuple[int, str, Dict[str, str]]:
    """Parses an HTTP answer header into (status, reason, headers); header
    names are lower-cased."""
    lines = header.decode("iso-8859-1").split("\r\n")
    first = lines[0].split(" ", 2)
    if len(first) < 2 or not first[0].startswith("HTTP/") or not first[1].isdigit():
        raise TunnelError("not an HTTP answer to CONNECT: %r" % lines[0][:100],
                          code="bad_answer")
    status = int(first[1])
    reason = first[2] if len(first) > 2 else ""
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, reason, headers


def _read_error_body(sock: Any, headers: Dict[str, str], prefix: bytes) -> str:
    """Reads the body of a non-200 CONNECT answer, best effort."""
    body = prefix
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        length = -1
    try:
        if length >= 0:
            length = min(length, 65536)
            while len(body) < length:
                chunk = sock.recv(length - len(body))
                if not chunk:
                    break
                body += chunk
            body = body[:length]
        elif headers.get("transfer-encoding", "").lower() != "chunked":
            while len(body) < 65536:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
    except OSError:
        pass
    return body.decode("utf-8", "replace")


def open_tunnel(host: str, port: int, path: str, *, token: str = "",
                use_tls: bool = False, host_header: Optional[str] = None,
                timeout: Optional[float] = 30.0,
                ssl_context: Optional[ssl.SSLContext] = None) -> TunnelSocket:
    """Opens a CONNECT tunnel and returns the connected socket, positioned at
    the first byte from the sandbox.

    Raises :class:`SandboxConnectionError` when the service cannot be
    reached, and the mapped :class:`SandboxError` subclass (404
    ``SessionNotFound``, 503 ``SandboxNotReady``, 401
    ``AuthenticationError``, 502 ``TunnelError``...) when it answers with an
    error. The socket is left blocking with ``timeout`` set; callers may
    change it.
    """
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise SandboxConnectionError(
            "failed to connect to %s:%d: %s" % (host, port, e.strerror or e),
            code="connection_failed") from e
    sock: Any = raw
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if use_tls:
            ctx = ssl_context or ssl.create_default_context()
            sock = ctx.wrap_socket(raw, server_hostname=host)
        req = ["CONNECT %s HTTP/1.1" % path,
               "Host: %s" % (host_header or host)]
        if token:
            req.append("Authorization: Bearer %s" % token)
        sock.sendall(("\r\n".join(req) + "\r\n\r\n").encode("latin-1"))
        if use_tls:
            header, rest = _read_header_buffered(sock)
        else:
            header, rest = _read_header_peek(sock), b""
        status, reason, headers = parse_status(header)
        if status == 200:
            if rest:
                return PrefixedSocket(sock, rest)
            return sock
        body = _read_error_body(sock, headers, rest)
        sock.close()
        raise error_from_response(status, body, reason, headers, tunnel=True)
    except (socket.timeout, ConnectionError, ssl.SSLError, OSError) as e:
        sock.close()
        if isinstance(e, SandboxConnectionError):
            raise
        raise SandboxConnectionError("tunnel to %s:%d failed: %s" % (host, port, e),
                                     code="connection_failed") from e
    except BaseException:
        sock.close()
        raise
