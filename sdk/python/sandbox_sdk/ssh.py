"""SSH to a sandbox over a CONNECT tunnel, with paramiko.

One :class:`SSHConnection` is one paramiko ``Transport`` running over one
tunnel socket. Commands and SFTP each use their own SSH channel on it, so
several threads can run commands at once over the same connection.

Trust: the service publishes each sandbox's host key (``host_key``,
``host_key_fingerprint``). The connection compares the key the sandbox
presents in the handshake with it and refuses to authenticate on any
difference (:class:`HostKeyMismatch`); it never trusts an unknown key unless
the caller explicitly turned verification off.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import select
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

import paramiko

from .errors import (CommandTimeout, HostKeyMismatch, SandboxError,
                     SSHAuthenticationError, SSHError)

#: How many channels one connection keeps open at once. OpenSSH's sshd
#: refuses more than ``MaxSessions`` (10 by default) per connection; callers
#: beyond this limit wait for a free channel.
MAX_CHANNELS = 8

_READ_SIZE = 65536

#: paramiko's messages about each connection go to this logger (silent
#: unless the application configures logging).
LOGGER_NAME = "sandbox_sdk.ssh"
logging.getLogger("sandbox_sdk").addHandler(logging.NullHandler())


def parse_public_key(text: str) -> Tuple[str, bytes]:
    """Parses ``"<type> <base64> [comment]"`` into (type, key blob).

    Raises ``ValueError`` when the text is not a public key line.
    """
    parts = (text or "").split()
    if len(parts) < 2:
        raise ValueError("not an SSH public key: %r" % (text or "")[:80])
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("not an SSH public key (bad base64): %s" % e) from e
    return parts[0], blob


def fingerprint(blob: bytes) -> str:
    """The OpenSSH SHA256 fingerprint of a key blob: ``SHA256:<base64>``."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _host_key_algorithms(key_type: str) -> List[str]:
    if key_type == "ssh-rsa":
        return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    return [key_type]


def check_host_key(key: paramiko.PKey, expected_key: Optional[str],
                   expected_fingerprint: Optional[str]) -> None:
    """Raises :class:`HostKeyMismatch` unless ``key`` matches what the
    service published. At least one of ``expected_key`` and
    ``expected_fingerprint`` must be given."""
    blob = key.asbytes()
    got_fpr = fingerprint(blob)
    if not expected_key and not expected_fingerprint:
        raise HostKeyMismatch(
            "the session has no published host key; refusing to trust %s %s"
            % (key.get_name(), got_fpr), code="host_key_unknown")
    if expected_key:
        try:
            _, want_blob = parse_public_key(expected_key)
        except ValueError as e:
            raise HostKeyMismatch("the session's published host key is not"
                                  " valid: %s" % e, code="host_key_invalid") from e
        if blob != want_blob:
            raise HostKeyMismatch(
                "host key mismatch: the sandbox presented %s %s, the service"
                " published %s" % (key.get_name(), got_fpr, fingerprint(want_blob)),
                code="host_key_mismatch")
    if expected_fingerprint:
        want = expected_fingerprint.strip()
        if want.startswith("SHA256:"):
            if want.rstrip("=") != got_fpr:
                raise HostKeyMismatch(
                    "host key mismatch: the sandbox presented %s, the service"
                    " published %s" % (got_fpr, want), code="host_key_mismatch")
        elif not expected_key:
            raise HostKeyMismatch("unsupported host key fingerprint %r" % want,
                                  code="host_key_invalid")


class SSHConnection:
    """One authenticated SSH connection over an already connected socket.

    Args:
        sock: the tunnel socket (owned by the connection from now on).
        username, password, pkey: credentials; ``pkey`` (a paramiko key) is
            tried first when given, then the password.
        host_key, host_key_fingerprint: what the service published.
        verify_host_key: ``False`` skips the host key check (not
            recommended).
        timeout: seconds for the handshake and authentication.
        keepalive: seconds between SSH keepalives (0 disables).
    """

    def __init__(self, sock: Any, *, username: str, password: Optional[str],
                 pkey: Optional[paramiko.PKey], host_key: Optional[str],
                 host_key_fingerprint: Optional[str], verify_host_key: bool = True,
                 timeout: Optional[float] = 30.0, keepalive: int = 30,
                 max_channels: int = MAX_CHANNELS) -> None:
        self._channels = threading.BoundedSemaphore(max_channels)
        self.transport = paramiko.Transport(sock)
        self.transport.set_log_channel(LOGGER_NAME)
        try:
            self._connect(username, password, pkey, host_key,
                          host_key_fingerprint, verify_host_key, timeout, keepalive)
        except BaseException:
            self.transport.close()
            raise

    def _connect(self, username: str, password: Optional[str],
                 pkey: Optional[paramiko.PKey], host_key: Optional[str],
                 host_key_fingerprint: Optional[str], verify: bool,
                 timeout: Optional[float], keepalive: int) -> None:
        t = self.transport
        if verify and host_key:
            try:
                key_type, _ = parse_public_key(host_key)
            except ValueError as e:
                raise HostKeyMismatch("the session's published host key is"
                                      " not valid: %s" % e,
                                      code="host_key_invalid") from e
            # Ask only for the published key's algorithm, so a sandbox with
            # several host keys is checked against the right one.
            algs = [a for a in _host_key_algorithms(key_type)
                    if a in t.get_security_options().key_types]
            if algs:
                t.get_security_options().key_types = algs
        try:
            t.start_client(timeout=timeout)
        except paramiko.SSHException as e:
            raise SSHError("ssh: handshake failed: %s" % e, code="ssh_handshake") from e
        except (OSError, EOFError) as e:
            raise SSHError("ssh: handshake failed: %s" % e, code="ssh_handshake") from e
        key = t.get_remote_server_key()
        if verify:
            check_host_key(key, host_key, host_key_fingerprint)
        if keepalive:
            t.set_keepalive(keepalive)
        self._authenticate(username, password, pkey, timeout)

    def _authenticate(self, username: str, password: Optional[str],
                      pkey: Optional[paramiko.PKey], timeout: Optional[float]) -> None:
        t = self.transport
        t.auth_timeout = timeout
        errors: List[str] = []
        # The key first, then the password: the first that gets in wins.
        attempts: List[Tuple[str, Callable[[], object]]] = []
        if pkey is not None:
            attempts.append(("key", lambda: t.auth_publickey(username, pkey)))
        if password is not None:
            attempts.append(("password", lambda: t.auth_password(username, password)))
        for what, attempt in attempts:
            if t.is_authenticated():
                break
            try:
                attempt()
            except paramiko.AuthenticationException as e:
                errors.append("%s: %s" % (what, e))
            except paramiko.SSHException as e:
                raise SSHError("ssh: authentication failed: %s" % e,
                               code="ssh_auth") from e
        if not t.is_authenticated():
            raise SSHAuthenticationError(
                "ssh: unable to authenticate as %r (%s)"
                % (username, "; ".join(errors) or "no credentials"),
                code="ssh_auth")

    # -- state ---------------------------------------------------------
    @property
    def active(self) -> bool:
        """``True`` while the connection is up and authenticated."""
        return self.transport.is_active() and self.transport.is_authenticated()

    def close(self) -> None:
        """Closes the connection and its tunnel socket."""
        self.transport.close()

    # -- channels ------------------------------------------------------
    def _open_channel(self, timeout: Optional[float]) -> paramiko.Channel:
        """Opens a session channel, retrying briefly when sshd refuses
        because a just-closed channel is not freed yet on its side."""
        delay = 0.01
        for attempt in range(8):
            try:
                return self.transport.open_session(timeout=timeout)
            except paramiko.ChannelException as e:
                if attempt == 7:
                    raise SSHError("ssh: cannot open a channel: %s" % e,
                                   code="ssh_channel") from e
                time.sleep(delay)
                delay *= 2
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise SSHError("ssh: cannot open a channel: %s" % e,
                               code="ssh_channel") from e
        raise AssertionError("unreachable")

    def exec(self, command: str, *, timeout: Optional[float] = None,
             stdin: Optional[bytes] = None,
             environment: Optional[dict] = None) -> Tuple[int, bytes, bytes]:
        """Runs ``command`` and returns (exit code, stdout, stderr).

        ``stdin`` is sent to the command, then end-of-file; without it the
        command reads end-of-file at once. The exit code is -1 when the
        command ended without one (killed by a signal). Raises
        :class:`CommandTimeout` (with the output so far) when ``timeout``
        seconds pass first; the channel is then closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._channels:
            chan = self._open_channel(timeout if timeout is not None else 30.0)
            writer: Optional[threading.Thread] = None
            try:
                if environment:
                    chan.update_environment(environment)
                chan.exec_command(command)
                if stdin:
                    writer = threading.Thread(target=_feed_stdin,
                                              args=(chan, stdin), daemon=True)
                    writer.start()
                else:
                    chan.shutdown_write()
                try:
                    out, err = _collect(chan, deadline, command)
                    code = _exit_status(chan, deadline)
                    if code is None:
                        raise CommandTimeout(
                            "command did not exit within %ss: %s" % (timeout, command),
                            stdout=b"".join(out), stderr=b"".join(err), code="timeout")
                except CommandTimeout:
                    _send_signal(chan, "KILL")
                    raise
                if code == -1 and not self.transport.is_active():
                    raise SSHError("ssh: connection lost while running: %s" % command,
                                   code="ssh_lost")
                return code, b"".join(out), b"".join(err)
            except paramiko.SSHException as e:
                raise SSHError("ssh: failed to execute command: %s" % e,
                               code="ssh_exec") from e
            finally:
                chan.close()
                if writer is not None:
                    writer.join(5)

    def open_sftp(self) -> paramiko.SFTPClient:
        """Opens an SFTP session on its own channel. Close it when done."""
        try:
            client = paramiko.SFTPClient.from_transport(self.transport)
        except paramiko.ChannelException:
            # A channel slot is not free on the server yet; try once more.
            time.sleep(0.05)
            client = paramiko.SFTPClient.from_transport(self.transport)
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise SSHError("ssh: cannot start SFTP: %s" % e, code="sftp") from e
        if client is None:
            raise SSHError("ssh: cannot start SFTP", code="sftp")
        return client

    def channel_slot(self) -> threading.BoundedSemaphore:
        """The semaphore that bounds channels on this connection."""
        return self._channels


def _send_signal(chan: paramiko.Channel, name: str) -> None:
    """Asks sshd to send a signal to the channel's command (RFC 4254
    6.9), best effort: paramiko has no call for it, and sshd may refuse."""
    try:
        m = paramiko.Message()
        m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
        m.add_int(chan.remote_chanid)
        m.add_string("signal")
        m.add_boolean(False)
        m.add_string(name)
        chan.transport._send_user_message(m)
    except Exception:  # noqa: BLE001 - best effort on a channel being dropped
        pass


def _feed_stdin(chan: paramiko.Channel, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            n = chan.send(view[:32768])
            if n <= 0:
                break
            view = view[n:]
        chan.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass


def _collect(chan: paramiko.Channel, deadline: Optional[float],
             command: str) -> Tuple[List[bytes], List[bytes]]:
    """Reads stdout and stderr until the command's end-of-file."""
    out: List[bytes] = []
    err: List[bytes] = []
    poller = select.poll()
    poller.register(chan.fileno(), select.POLLIN)
    while True:
        while chan.recv_ready():
            out.append(chan.recv(_READ_SIZE))
        while chan.recv_stderr_ready():
            err.append(chan.recv_stderr(_READ_SIZE))
        if (chan.eof_received or chan.closed) and not chan.recv_ready() \
                and not chan.recv_stderr_ready():
            return out, err
        wait_ms = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandTimeout("command did not finish in time: %s" % command,
                                     stdout=b"".join(out), stderr=b"".join(err),
                                     code="timeout")
            wait_ms = int(left * 1000) + 1
        # Bound each wait: a transport that dies silently closes the channel
        # without waking the pipe on every paramiko version.
        poller.poll(1000 if wait_ms is None else min(wait_ms, 1000))


def _exit_status(chan: paramiko.Channel, deadline: Optional[float]) -> Optional[int]:
    """The command's exit status; -1 without one; ``None`` on timeout."""
    while not chan.status_event.is_set():
        if chan.closed:
            break
        if deadline is None:
            chan.status_event.wait(1.0)
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        chan.status_event.wait(min(left, 1.0))
    if not chan.status_event.is_set():
        return -1
    return chan.recv_exit_status()


def load_private_key(key: Any, password: Optional[str] = None) -> paramiko.PKey:
    """Returns a paramiko key from a paramiko key, or from a path to an
    OpenSSH private key file (ed25519, ECDSA or RSA; ``~`` is expanded)."""
    if isinstance(key, paramiko.PKey):
        return key
    path = os.path.expanduser(os.fspath(key))
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(path, password=password)
        except paramiko.PasswordRequiredException:
            raise
        except (paramiko.SSHException, ValueError) as e:
            errors.append("%s: %s" % (cls.__name__, e))
    raise SandboxError("cannot load private key %s (%s)" % (path, "; ".join(errors)),
                       code="bad_key")


def public_key_line(key: paramiko.PKey) -> str:
    """The ``authorized_keys`` line of a key: ``<type> <base64>``."""
    return "%s %s" % (key.get_name(), key.get_base64())


Callback = Callable[[int, int], Any]
