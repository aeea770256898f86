"""A session: one sandbox, and what can be done with it over SSH.

:class:`Session` holds the session's fields as the service last reported
them (``refresh()`` reads them again) and one SSH connection to the
sandbox, opened on first use through the CONNECT tunnel and reused by every
command and file transfer until ``close()`` or ``delete()``.
"""

from __future__ import annotations

import datetime as _dt
import os
import posixpath
import stat as _stat
import tempfile
import threading
import time
import weakref
from contextlib import contextmanager
from typing import (TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Union)

import paramiko

from .errors import (CommandError, SandboxError, SandboxNotReady, SessionNotFound,
                     SSHError, TransferError)
from .ports import PortForward, check_port
from .ssh import SSHConnection
from .tunnel import TunnelSocket

if TYPE_CHECKING:  # pragma: no cover
    from .client import SandboxClient

PathLike = Union[str, "os.PathLike[str]"]

#: Bytes read from a local file (upload) or asked of the server (download)
#: per step. Transfers stream: memory use does not grow with the file size.
CHUNK_SIZE = 256 * 1024

#: Bytes a download asks for before writing them out (bounds its memory).
#: paramiko holds up to about three windows' worth while the disk catches
#: up (measured: 25 MB peaks with 8 MiB windows, 13 MB with 4 MiB).
DOWNLOAD_WINDOW = 4 * 1024 * 1024
_SFTP_BLOCK = 32768

#: Commands that run code given on stdin, by language.
LANGUAGES: Dict[str, str] = {
    "python": "python3 -",
    "python3": "python3 -",
    "bash": "bash -s",
    "sh": "sh -s",
    "shell": "sh -s",
    "node": "node -",
    "javascript": "node -",
    "js": "node -",
}


def parse_time(value: Any) -> Optional[_dt.datetime]:
    """Parses an RFC 3339 time (``2025-10-24T03:45:00Z``, fractions and
    offsets allowed) or unix seconds into a timezone-aware ``datetime``.
    Returns ``None`` for ``None`` or an empty string."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _dt.datetime.fromtimestamp(value, tz=_dt.timezone.utc)
    text = str(value).strip()
    if text.isdigit():
        return _dt.datetime.fromtimestamp(int(text), tz=_dt.timezone.utc)
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    text = text.replace("t", "T").replace(" ", "T", 1)
    # Python < 3.11 accepts only 3 or 6 fractional digits.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = head + "." + (digits + "000000")[:6] + rest
    when = _dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when


class CommandResult:
    """What a command did: ``exit_code``, and its output as text
    (``stdout``, ``stderr``; UTF-8, undecodable bytes replaced) and as bytes
    (``stdout_bytes``, ``stderr_bytes``)."""

    __slots__ = ("command", "exit_code", "stdout_bytes", "stderr_bytes")

    def __init__(self, command: str, exit_code: int, stdout_bytes: bytes,
                 stderr_bytes: bytes) -> None:
        self.command = command
        self.exit_code = exit_code
        self.stdout_bytes = stdout_bytes
        self.stderr_bytes = stderr_bytes

    @property
    def stdout(self) -> str:
        """Standard output as text."""
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        """Standard error as text."""
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """``True`` when the command exited 0."""
        return self.exit_code == 0

    def check(self) -> "CommandResult":
        """Returns self if the command exited 0, else raises
        :class:`CommandError` (with this result as ``.result``)."""
        if self.exit_code != 0:
            tail = self.stderr.strip().splitlines()[-1:] or [""]
            raise CommandError("command exited %d: %s %s" % (
                self.exit_code, self.command, tail[0]), result=self,
                code="command_failed")
        return self

    def __repr__(self) -> str:
        return "CommandResult(exit_code=%d, stdout=%r, stderr=%r)" % (
            self.exit_code, _short(self.stdout), _short(self.stderr))


def _short(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[:n] + "..."


class Session:
    """One sandbox session.

    Made by :meth:`SandboxClient.create_session`,
    :meth:`SandboxClient.get_session` or :meth:`SandboxClient.list_sessions`;
    not meant to be built by hand.

    Fields (as last reported by the service): ``session_id``, ``status``
    (``pending``, ``running``, ``paused``, ``terminating``, ``terminated``,
    ``failed``), ``idle_timeout`` (seconds, 0 = off),
    ``image``, ``ttl`` (seconds), ``created_at`` and ``expires_at``
    (timezone-aware ``datetime``), ``sandbox_name``, ``tunnel_path``,
    ``ssh_user``, ``host_key``, ``host_key_fingerprint``, ``resources``,
    ``metadata``, ``tunnels``, ``reason``; ``raw`` is the whole JSON object.

    The SSH connection is opened on first use (``run``, file transfers) and
    then shared: ``run`` may be called from several threads at once. Used as
    a context manager, the session is deleted on exit.

    SSH credentials: ``ssh_password`` (default ``"sandbox"``) and
    ``ssh_key`` (a paramiko key, tried first when set) may be changed before
    the first use.
    """

    session_id: str
    status: str
    image: str
    ttl: Optional[int]
    idle_timeout: Optional[int]
    created_at: Optional[_dt.datetime]
    expires_at: Optional[_dt.datetime]
    sandbox_name: str
    tunnel_path: str
    ssh_user: str
    host_key: Optional[str]
    host_key_fingerprint: Optional[str]
    resources: Dict[str, Any]
    metadata: Dict[str, str]
    tunnels: Dict[str, Any]
    reason: Optional[str]
    raw: Dict[str, Any]

    def __init__(self, client: "SandboxClient", data: Dict[str, Any], *,
                 ssh_password: Optional[str] = "sandbox",
                 ssh_key: Optional[paramiko.PKey] = None) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._conn: Optional[SSHConnection] = None
        self.ssh_password = ssh_password
        self.ssh_key = ssh_key
        self._update(data)

    # -- fields --------------------------------------------------------
    def _update(self, data: Dict[str, Any]) -> None:
        self.raw = dict(data)
        self.session_id = str(data.get("session_id") or data.get("id") or "")
        self.status = str(data.get("status") or "")
        self.image = str(data.get("image") or "")
        ttl = data.get("ttl")
        self.ttl = int(ttl) if isinstance(ttl, (int, float)) else None
        self.created_at = parse_time(data.get("created_at"))
        self.expires_at = parse_time(data.get("expires_at"))
        self.sandbox_name = str(data.get("sandbox_name") or "")
        self.tunnel_path = str(data.get("tunnel_path") or
                               "/v1/sessions/%s/tunnel" % self.session_id)
        self.ssh_user = str(data.get("ssh_user") or "sandbox")
        self.host_key = data.get("host_key") or None
        self.host_key_fingerprint = (data.get("host_key_fingerprint") or
                                     data.get("host_key_fpr") or None)
        idle = data.get("idle_timeout")
        self.idle_timeout = int(idle) if isinstance(idle, int) else None
        self.resources = dict(data.get("resources") or {})
        self.metadata = dict(data.get("metadata") or {})
        self.tunnels = dict(data.get("tunnels") or {})
        self.reason = data.get("reason") or None

    @property
    def is_running(self) -> bool:
        """``True`` if the last known status is ``running``."""
        return self.status == "running"

    def refresh(self) -> "Session":
        """Reads the session's fields from the service again; returns self.

        Raises :class:`SessionNotFound` once the session is gone."""
        data = self._client._get_session_data(self.session_id)
        self._update(data)
        return self

    def wait_until_running(self, timeout: float = 60.0,
                           interval: float = 0.25) -> "Session":
        """Polls the service until the status is ``running``.

        Raises :class:`SandboxNotReady` if the session failed or ended, or
        did not get there within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            if self.status == "running":
                return self
            if self.status in ("failed", "terminating", "terminated"):
                raise SandboxNotReady("session %s is %s%s" % (
                    self.session_id, self.status,
                    ": " + self.reason if self.reason else ""),
                    code="session_" + self.status)
            if time.monotonic() >= deadline:
                raise SandboxNotReady("session %s still %s after %ss" % (
                    self.session_id, self.status, timeout), code="not_ready")
            time.sleep(interval)

    # -- lifecycle -----------------------------------------------------
    def extend(self, ttl: int) -> "Session":
        """Moves ``expires_at`` to now + ``ttl`` seconds (it may also
        shorten the session); returns self with the new fields. See
        :meth:`SandboxClient.extend_session`."""
        self._update(self._client.extend_session(self.session_id, ttl).raw)
        return self

    def pause(self) -> "Session":
        """Freezes the sandbox (status ``paused``); see
        :meth:`SandboxClient.pause_session`."""
        self._update(self._client.pause_session(self.session_id).raw)
        return self

    def resume(self) -> "Session":
        """Thaws a paused sandbox; see
        :meth:`SandboxClient.resume_session`."""
        self._update(self._client.resume_session(self.session_id).raw)
        return self

    def delete(self) -> None:
        """Closes the SSH connection and deletes the session (its sandbox is
        removed). Raises :class:`SessionNotFound` if it was already gone."""
        self.close()
        self._client.delete_session(self.session_id)
        self.status = "terminated"

    def close(self) -> None:
        """Closes the SSH connection (the session keeps running)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.delete()
        except SessionNotFound:
            pass

    def __repr__(self) -> str:
        return "<Session %s %s>" % (self.session_id, self.status)

    # -- tunnel and SSH ------------------------------------------------
    def open_tunnel(self) -> TunnelSocket:
        """Opens a new CONNECT tunnel to the sandbox's sshd and returns the
        connected socket; the first bytes read are the sandbox's SSH banner
        (``SSH-2.0-...``). The caller owns and closes it.

        Raises :class:`SessionNotFound` (404), :class:`SandboxNotReady`
        (503), :class:`AuthenticationError` (401), :class:`TunnelError`
        (502) or :class:`SandboxConnectionError`."""
        return self._client._open_tunnel(self.tunnel_path)

    # -- ports ---------------------------------------------------------
    def open_port_tunnel(self, port: int) -> TunnelSocket:
        """A raw byte stream to TCP ``port`` (1..65535) on 127.0.0.1 inside
        the sandbox; the caller owns and closes it. A port nothing listens
        on raises :class:`TunnelError` (502) with the server's message."""
        return self._client._open_tunnel("/v1/sessions/%s/ports/%d/tunnel" % (
            self.session_id, check_port(port)))

    def forward(self, port: int, local_port: int = 0,
                host: str = "127.0.0.1") -> PortForward:
        """Listens on ``host:local_port`` (0: any free port; see
        ``.port``) and relays each connection to ``port`` in the sandbox
        through its own tunnel. Close it (or use ``with``) when done."""
        check_port(port)
        return PortForward(lambda: self.open_port_tunnel(port), host, local_port)

    def expose(self, port: int, ttl: Optional[int] = None) -> str:
        """A preview URL of ``port`` for a browser: a signed link the
        server makes (``POST .../ports/<port>/preview``), good for ``ttl``
        seconds (server default 900) and never past the session."""
        body = {"ttl": ttl} if ttl is not None else None
        _, data = self._client._request(
            "POST", "/v1/sessions/%s/ports/%d/preview" % (
                self.session_id, check_port(port)), body)
        return self._client.api_url + data["path"]

    def _ssh(self) -> SSHConnection:
        """The session's SSH connection, opened (or reopened, if it died)
        on first use."""
        with self._lock:
            conn = self._conn
            if conn is not None and conn.active:
                return conn
            if conn is not None:
                conn.close()
                self._conn = None
            if self._client.verify_host_key and not self.host_key \
                    and not self.host_key_fingerprint:
                # Made while the sandbox was starting (the key is published
                # once it runs): ask again rather than trust blindly.
                self.refresh()
            sock = self.open_tunnel()
            try:
                timeout = self._client.timeout
                sock.settimeout(timeout)
                conn = SSHConnection(
                    sock, username=self.ssh_user, password=self.ssh_password,
                    pkey=self.ssh_key, host_key=self.host_key,
                    host_key_fingerprint=self.host_key_fingerprint,
                    verify_host_key=self._client.verify_host_key,
                    timeout=timeout)
            except BaseException:
                sock.close()
                raise
            self._conn = conn
            # A Session dropped without close() must not leave its
            # connection (and paramiko's thread) behind.
            weakref.finalize(self, conn.close)
            return conn

    def connect(self) -> "Session":
        """Opens the SSH connection now (it is otherwise opened on first
        use); returns self. Raises :class:`HostKeyMismatch`,
        :class:`SSHAuthenticationError`, :class:`SSHError` or the tunnel's
        errors."""
        self._ssh()
        return self

    def _with_conn(self, fn: Any) -> Any:
        """Calls fn(conn). If the connection turns out dead before a channel
        could be opened (so nothing ran yet), reconnects once and tries
        again."""
        conn = self._ssh()
        try:
            return fn(conn)
        except SSHError as e:
            if conn.active or e.code not in ("ssh_channel", "sftp"):
                raise
            with self._lock:
                if self._conn is conn:
                    self._conn = None
            conn.close()
            return fn(self._ssh())

    # -- commands ------------------------------------------------------
    def run(self, command: str, timeout: Optional[float] = None, *,
            stdin: Union[bytes, str, None] = None,
            env: Optional[Dict[str, str]] = None,
            check: bool = False) -> CommandResult:
        """Runs a shell command in the sandbox (as the SSH user, in its
        working directory, ``/workspace``) and waits for it.

        Args:
            command: a shell command line.
            timeout: seconds to wait; :class:`CommandTimeout` when exceeded.
            stdin: data for the command's standard input.
            env: environment variables to ask sshd to set (sshd only accepts
                those its ``AcceptEnv`` allows; prefer ``VAR=x cmd``).
            check: raise :class:`CommandError` if the exit code is not 0.

        Returns a :class:`CommandResult`. Safe to call from several threads.
        """
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin

        def go(conn: SSHConnection) -> CommandResult:
            code, out, err = conn.exec(command, timeout=timeout, stdin=data,
                                       environment=env)
            return CommandResult(command, code, out, err)

        result = self._with_conn(go)
        return result.check() if check else result

    def run_code(self, code: str, language: str = "python",
                 timeout: Optional[float] = None, *,
                 check: bool = False) -> CommandResult:
        """Runs a program given as text: it is sent on the interpreter's
        standard input (no shell quoting involved). ``language`` is one of
        ``python`` (``python3``), ``bash``, ``sh``, ``node``. A Python
        exception shows in ``stderr`` with a non-zero ``exit_code``."""
        try:
            interpreter = LANGUAGES[language.lower()]
        except KeyError:
            raise ValueError("unsupported language %r (one of %s)" % (
                language, ", ".join(sorted(LANGUAGES)))) from None
        return self.run(interpreter, timeout=timeout, stdin=code, check=check)

    # -- files ---------------------------------------------------------
    @contextmanager
    def sftp(self) -> Iterator[paramiko.SFTPClient]:
        """An SFTP client on the session's SSH connection (its own channel),
        closed when the ``with`` block ends::

            with session.sftp() as sftp:
                print(sftp.listdir("/workspace"))
        """
        conn = self._ssh()
        slot = conn.channel_slot()
        with slot:
            client = conn.open_sftp()
            try:
                yield client
            finally:
                client.close()

    def _sftp_call(self, fn: Any) -> Any:
        def go(conn: SSHConnection) -> Any:
            with conn.channel_slot():
                client = conn.open_sftp()
                try:
                    return fn(client)
                finally:
                    client.close()
        try:
            return self._with_conn(go)
        except SandboxError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise TransferError("sftp: %s" % (e,), code="sftp") from e

    def upload_file(self, local_path: PathLike, remote_path: str, *,
                    mode: Optional[int] = None,
                    callback: Optional[Any] = None) -> int:
        """Copies a local file into the sandbox, streaming it in chunks, and
        checks the remote size afterwards. A relative ``remote_path`` starts
        in SFTP's starting folder (``/workspace`` in pico's sandboxes). ``mode`` sets the remote file's
        permission bits; ``callback(done, total)`` is called as bytes go.
        Returns the number of bytes copied; :class:`TransferError` on a
        size mismatch or remote error."""
        total = os.path.getsize(local_path)

        def go(sftp: paramiko.SFTPClient) -> int:
            sent = 0
            with open(local_path, "rb") as src, sftp.open(remote_path, "wb") as dst:
                dst.set_pipelined(True)
                while True:
                    chunk = src.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    dst.write(chunk)
                    sent += len(chunk)
                    if callback is not None:
                        callback(sent, total)
            if mode is not None:
                sftp.chmod(remote_path, mode)
            size = sftp.stat(remote_path).st_size
            if size != sent:
                raise TransferError("upload of %s: remote size %s, sent %d" % (
                    remote_path, size, sent), code="size_mismatch")
            return sent

        return self._sftp_call(go)

    def download_file(self, remote_path: str, local_path: PathLike, *,
                      callback: Optional[Any] = None) -> int:
        """Copies a file out of the sandbox, streaming it in chunks into a
        temporary file next to ``local_path`` that replaces ``local_path``
        only once the whole file arrived and its size matches the remote
        size. Returns the number of bytes copied."""
        local_path = os.fspath(local_path)
        folder = os.path.dirname(os.path.abspath(local_path))

        def go(sftp: paramiko.SFTPClient) -> int:
            attrs = sftp.stat(remote_path)
            if attrs.st_mode is not None and not _stat.S_ISREG(attrs.st_mode):
                raise TransferError("%s is not a regular file" % remote_path,
                                    code="not_a_file")
            total = attrs.st_size or 0
            fd, tmp = tempfile.mkstemp(prefix=".sandbox-dl-", dir=folder)
            try:
                got = 0
                with os.fdopen(fd, "wb") as dst, sftp.open(remote_path, "rb") as src:
                    # Pipelined reads, one window at a time: paramiko's
                    # prefetch() would ask for the whole file at once and
                    # buffer it in memory if the disk is slower than the
                    # network.
                    while got < total:
                        end = min(total, got + DOWNLOAD_WINDOW)
                        blocks = [(off, min(_SFTP_BLOCK, end - off))
                                  for off in range(got, end, _SFTP_BLOCK)]
                        for data in src.readv(blocks):
                            if not data:
                                break
                            dst.write(data)
                            got += len(data)
                            if callback is not None:
                                callback(got, total)
                        if got < end:
                            break  # the file shrank
                    if src.stat().st_size != total:
                        got = -1
                if got != total:
                    raise TransferError("download of %s: the file changed"
                                        " during the copy (size was %d)"
                                        % (remote_path, total),
                                        code="size_mismatch")
                os.replace(tmp, local_path)
                tmp = ""
                return got
            finally:
                if tmp:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass

        return self._sftp_call(go)

    def write_file(self, remote_path: str, data: Union[bytes, str], *,
                   mode: Optional[int] = None) -> int:
        """Writes ``data`` (bytes, or text as UTF-8) to a file in the
        sandbox, replacing it. Returns the number of bytes written."""
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)

        def go(sftp: paramiko.SFTPClient) -> int:
            with sftp.open(remote_path, "wb") as dst:
                dst.set_pipelined(True)
                view = memoryview(payload)
                for i in range(0, len(payload), CHUNK_SIZE):
                    dst.write(view[i:i + CHUNK_SIZE].tobytes())
            if mode is not None:
                sftp.chmod(remote_path, mode)
            size = sftp.stat(remote_path).st_size
            if size != len(payload):
                raise TransferError("write of %s: remote size %s, wrote %d" % (
                    remote_path, size, len(payload)), code="size_mismatch")
            return len(payload)

        return self._sftp_call(go)

    def read_file(self, remote_path: str) -> bytes:
        """Returns the whole content of a file in the sandbox."""

        def go(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(remote_path, "rb") as src:
                size = src.stat().st_size or 0
                src.prefetch(size)
                parts: List[bytes] = []
                while True:
                    chunk = src.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    parts.append(chunk)
            return b"".join(parts)

        return self._sftp_call(go)

    def list_dir(self, remote_path: str = ".") -> List[str]:
        """Names in a folder of the sandbox."""
        return self._sftp_call(lambda sftp: sftp.listdir(remote_path))

    def remove_file(self, remote_path: str) -> None:
        """Removes a file in the sandbox."""
        self._sftp_call(lambda sftp: sftp.remove(remote_path))

    def make_dirs(self, remote_path: str) -> None:
        """Creates a folder and its missing parents in the sandbox."""

        def go(sftp: paramiko.SFTPClient) -> None:
            path = posixpath.normpath(remote_path)
            todo = []
            while path not in ("", "/", "."):
                try:
                    sftp.stat(path)
                    break
                except IOError:
                    todo.append(path)
                    path = posixpath.dirname(path)
            for p in reversed(todo):
                sftp.mkdir(p)

        self._sftp_call(go)
