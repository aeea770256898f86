"""Exceptions raised by sandbox_sdk.

Every error the SDK raises is a :class:`SandboxError`. Errors that come from
an HTTP answer (the REST API or the CONNECT tunnel) carry the answer's
``status`` and the service's machine-readable ``code`` and human ``message``
(from ``{"error": {"code": ..., "message": ...}}``). The subclasses let
callers catch the cases they care about::

    try:
        client.get_session(sid)
    except SessionNotFound:
        ...
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Type


class SandboxError(Exception):
    """Base class of every error raised by the SDK.

    Attributes:
        message: human-readable text (the service's ``error.message`` when the
            error came from an HTTP answer).
        code: the service's machine-readable ``error.code`` (e.g.
            ``"not_found"``), or a short SDK-side code such as
            ``"connection_failed"``; may be ``None``.
        status: the HTTP status of the answer, or ``None`` when the error did
            not come from an HTTP answer.
        body: the raw answer body (text), if any.
    """

    def __init__(self, message: str, *, code: Optional[str] = None,
                 status: Optional[int] = None, body: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.body = body

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(str(self.status))
        if self.code:
            parts.append(self.code)
        prefix = " ".join(parts)
        return "%s: %s" % (prefix, self.message) if prefix else self.message

    def __repr__(self) -> str:
        return "%s(message=%r, code=%r, status=%r)" % (
            type(self).__name__, self.message, self.code, self.status)


class SandboxConnectionError(SandboxError, ConnectionError):
    """The service could not be reached (refused, reset, DNS, timeout...)."""


class InvalidRequest(SandboxError):
    """400 (bad input), 413 (body too large) or 415 (not JSON)."""


class AuthenticationError(SandboxError):
    """401: the token is missing or not valid."""


class PermissionDenied(SandboxError):
    """403: the token may not do this."""


class SessionNotFound(SandboxError):
    """404: the session does not exist, expired, was deleted, or belongs to
    another principal."""


class MethodNotAllowed(SandboxError):
    """405: the service does not accept this method on this path."""


class Conflict(SandboxError):
    """409: the request conflicts with the session's state."""


class IdempotencyKeyReused(SandboxError):
    """422: the ``Idempotency-Key`` was used before with another request
    body."""


class RateLimited(SandboxError):
    """429: too many requests or sessions.

    Attributes:
        retry_after: seconds to wait, from the ``Retry-After`` header, or
            ``None``.
    """

    def __init__(self, message: str, *, retry_after: Optional[float] = None,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(SandboxError):
    """5xx: the service failed to do what was asked."""


class ServiceUnavailable(ServerError):
    """503 from the REST API: the service (or its Redis or runtime) is not
    able to answer right now."""


class SandboxNotReady(SandboxError):
    """The session's sandbox is not accepting connections: the tunnel answered
    503 ``Sandbox not ready``, or the session's status is not ``running``
    (still starting, failed, or terminating)."""


class TunnelError(ServerError):
    """The tunnel could not reach the sandbox (502), or the tunnel answer was
    not understood."""


class SSHError(SandboxError):
    """The SSH connection to the sandbox failed (handshake, channel, SFTP)."""


class SSHAuthenticationError(SSHError):
    """The sandbox's sshd refused the user name / password or key."""


class HostKeyMismatch(SSHError):
    """The sandbox presented a host key other than the one the service
    published for the session. The SDK refuses the connection."""


class CommandTimeout(SandboxError, TimeoutError):
    """A command did not finish within its timeout.

    Attributes:
        stdout, stderr: the output (bytes) gathered before the timeout.
    """

    def __init__(self, message: str, *, stdout: bytes = b"", stderr: bytes = b"",
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.stdout = stdout
        self.stderr = stderr


class TransferError(SandboxError):
    """A file transfer did not complete (size check failed, remote error)."""


class CommandError(SandboxError):
    """Raised by :meth:`CommandResult.check` when a command exited non-zero.

    Attributes:
        result: the :class:`~sandbox_sdk.CommandResult`.
    """

    def __init__(self, message: str, *, result: Any = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.result = result


_BY_STATUS: Dict[int, Type[SandboxError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: SessionNotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    422: IdempotencyKeyReused,
    429: RateLimited,
    503: ServiceUnavailable,
}


def parse_error_body(body: str) -> "tuple[Optional[str], Optional[str]]":
    """Returns (code, message) from an error body.

    Understands ``{"error": {"code": ..., "message": ...}}``, ``{"error":
    "text"}`` and ``{"message": ...}``; any other non-empty body is taken as
    the message itself (plain-text answers such as ``Session not found``).
    """
    text = (body or "").strip()
    if not text:
        return None, None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            code = err.get("code")
            msg = err.get("message")
            return (str(code) if code is not None else None,
                    str(msg) if msg is not None else None)
        if isinstance(err, str):
            return None, err
        if isinstance(doc.get("message"), str):
            code = doc.get("code")
            return (str(code) if code is not None else None, doc["message"])
        return None, None
    # Plain text (or HTML from something in between): keep it short.
    first = text.splitlines()[0].strip()
    if first.startswith("<"):
        return None, None
    return None, first[:500]


def error_from_response(status: int, body: str, reason: str = "",
                        headers: Optional[Dict[str, str]] = None,
                        tunnel: bool = False) -> SandboxError:
    """Builds the exception for an HTTP answer with a non-success status.

    ``tunnel`` selects the tunnel's meanings: there 503 ``Sandbox not
    ready`` is :class:`SandboxNotReady` (other 503s stay
    :class:`ServiceUnavailable`) and 502 is :class:`TunnelError`.
    """
    code, message = parse_error_body(body)
    if not message:
        message = reason or "HTTP %d" % status
    kw: Dict[str, Any] = {"code": code, "status": status, "body": body}
    if tunnel and status == 503:
        # "Sandbox not ready" is the session's state; other 503 texts
        # (e.g. "Session store unavailable") are the service's.
        if not body.strip() or "not ready" in message.lower():
            return SandboxNotReady(message, **kw)
        return ServiceUnavailable(message, **kw)
    if tunnel and status == 502:
        return TunnelError(message, **kw)
    cls = _BY_STATUS.get(status)
    if cls is RateLimited:
        retry_after: Optional[float] = None
        value = (headers or {}).get("retry-after")
        if value:
            try:
                retry_after = float(value)
            except ValueError:
                retry_after = None
        return RateLimited(message, retry_after=retry_after, **kw)
    if cls is None:
        cls = ServerError if status >= 500 else SandboxError
    return cls(message, **kw)
