"""sandbox_sdk - Python client of pico, the sandbox session service.

Create a session, run commands and move files in its sandbox over SSH
through the service's CONNECT tunnel::

    from sandbox_sdk import SandboxClient

    client = SandboxClient("http://localhost:8080", token="")
    session = client.create_session(ttl=3600)
    print(f"Session ID: {session.session_id}")
    print(session.run("python3 -c 'print(6*7)'").stdout)
    session.delete()
"""

__version__ = "0.1.0"

from .errors import (AuthenticationError, CommandError, CommandTimeout,  # noqa: E402
                     Conflict, HostKeyMismatch, IdempotencyKeyReused,
                     InvalidRequest, MethodNotAllowed,
                     PermissionDenied, RateLimited, SandboxConnectionError,
                     SandboxError, SandboxNotReady, ServerError,
                     ServiceUnavailable, SessionNotFound, SSHAuthenticationError,
                     SSHError, TransferError, TunnelError)
from .session import CommandResult, Session  # noqa: E402
from .client import Event, SandboxClient, SessionList  # noqa: E402

__all__ = [
    "SandboxClient", "Session", "SessionList", "CommandResult", "Event",
    "SandboxError", "SandboxConnectionError", "InvalidRequest",
    "AuthenticationError", "PermissionDenied", "SessionNotFound",
    "MethodNotAllowed", "Conflict", "IdempotencyKeyReused", "RateLimited",
    "ServerError",
    "ServiceUnavailable", "SandboxNotReady", "TunnelError", "SSHError",
    "SSHAuthenticationError", "HostKeyMismatch", "CommandTimeout",
    "CommandError", "TransferError", "__version__",
]
