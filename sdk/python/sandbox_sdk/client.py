"""The REST client: :class:`SandboxClient` creates, finds, lists and
deletes sessions, and opens tunnels for them.

It speaks JSON over HTTP with the standard library only (``http.client``);
each call uses its own connection, so one client may be shared by many
threads.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
import urllib.parse
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import paramiko

from . import __version__
from .errors import (SandboxConnectionError, SandboxError, ServiceUnavailable,
                     error_from_response)
from .session import Session
from .ssh import load_private_key, public_key_line
from .tunnel import TunnelSocket, open_tunnel


class SessionList(List[Session]):
    """A list of sessions, plus ``total``: how many the service counted."""

    total: int

    def __init__(self, items: List[Session], total: Optional[int] = None) -> None:
        super().__init__(items)
        self.total = len(items) if total is None else total


class SandboxClient:
    """Client of a pico service.

    Args:
        api_url: the service's URL, e.g. ``http://localhost:8080``
            (``https://`` works too; a path prefix is kept).
        token: the API token; sent as ``Authorization: Bearer <token>``
            when not empty. ``None`` reads ``PICO_TOKEN`` from the
            environment.
        timeout: seconds for each HTTP call (creating a session waits for
            its sandbox to be ready), tunnel set-up and SSH handshake.
        ssh_password: the sandbox user's password for new sessions
            (``"sandbox"``).
        ssh_key: a paramiko key or the path of a private key file; when set,
            new sessions are created with its public key and SSH
            authenticates with it first.
        verify_host_key: compare each sandbox's SSH host key with the one
            the service published (default ``True``; turning it off trusts
            whatever answers the tunnel).
        ssl_context: TLS settings for ``https://`` URLs.

    Example::

        client = SandboxClient("http://localhost:8080", token="")
        with client.create_session(ttl=600) as session:
            print(session.run("python3 --version").stdout)
    """

    def __init__(self, api_url: str = "http://localhost:8080",
                 token: Optional[str] = "", timeout: Optional[float] = 60.0, *,
                 ssh_password: Optional[str] = "sandbox",
                 ssh_key: Union[paramiko.PKey, str, "os.PathLike[str]", None] = None,
                 verify_host_key: bool = True,
                 ssl_context: Optional[ssl.SSLContext] = None) -> None:
        parsed = urllib.parse.urlsplit(api_url if "://" in api_url
                                       else "http://" + api_url)
        if parsed.scheme not in ("http", "https"):
            raise ValueError("api_url must be http:// or https://, not %r" % api_url)
        if not parsed.hostname:
            raise ValueError("api_url has no host: %r" % api_url)
        self.api_url = api_url.rstrip("/")
        self.token = os.environ.get("PICO_TOKEN", "") if token is None else token
        self.timeout = timeout
        self.ssh_password = ssh_password
        self.ssh_key: Optional[paramiko.PKey] = (
            load_private_key(ssh_key) if ssh_key is not None else None)
        self.verify_host_key = verify_host_key
        self._tls = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._tls else 80)
        self._prefix = parsed.path.rstrip("/")
        self._ssl_context = ssl_context
        default_port = 443 if self._tls else 80
        host = "[%s]" % self._host if ":" in self._host else self._host
        self._host_header = host if self._port == default_port else \
            "%s:%d" % (host, self._port)

    def __repr__(self) -> str:
        return "SandboxClient(%r)" % self.api_url

    # -- HTTP ----------------------------------------------------------
    def _connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self._tls:
            return http.client.HTTPSConnection(self._host, self._port,
                                               timeout=timeout,
                                               context=self._ssl_context)
        return http.client.HTTPConnection(self._host, self._port,
                                          timeout=timeout)

    def _request(self, method: str, path: str,
                 body: Optional[Dict[str, Any]] = None, *,
                 timeout: Optional[float] = -1.0,
                 extra_headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
        """Sends one request; returns (status, decoded JSON or None).
        Raises the mapped :class:`SandboxError` for error answers."""
        headers = {"Accept": "application/json",
                   "User-Agent": "sandbox-sdk-python/%s" % __version__}
        headers.update(extra_headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        conn = self._connection(self.timeout if timeout == -1.0 else timeout)
        try:
            conn.request(method, self._prefix + path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            status, reason = resp.status, resp.reason
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        except (OSError, http.client.HTTPException) as e:
            raise SandboxConnectionError(
                "failed to connect to server %s: %s" % (self.api_url, _describe(e)),
                code="connection_failed") from e
        finally:
            conn.close()
        text = raw.decode("utf-8", "replace")
        if status >= 400:
            raise error_from_response(status, text, reason, resp_headers)
        if not text.strip():
            return status, None
        try:
            return status, json.loads(text)
        except ValueError as e:
            raise SandboxError("%s %s: answer is not JSON: %r" % (
                method, path, text[:200]), code="bad_answer", status=status,
                body=text) from e

    # -- sessions ------------------------------------------------------
    def create_session(self, ttl: Optional[int] = 3600,
                       image: Optional[str] = "sandbox:latest", *,
                       ssh_public_key: Optional[str] = None,
                       metadata: Optional[Dict[str, str]] = None,
                       resources: Optional[Dict[str, int]] = None,
                       ssh_key: Union[paramiko.PKey, str, None] = None,
                       timeout: Optional[float] = None,
                       idempotency_key: Optional[str] = None,
                       retries: int = 2,
                       idle_timeout: Optional[int] = None,
                       **options: Any) -> Session:
        """Creates a session and returns it once its sandbox is running.

        Args:
            ttl: lifetime in seconds (the service caps it); ``None`` leaves
                it to the service's default.
            image: the sandbox image; ``None`` for the service's default.
            ssh_public_key: a public key line to authorize in the sandbox.
            metadata: string labels stored with the session.
            resources: limits, e.g. ``{"memory_mb": 512, "cpu_millicores":
                1000, "pids": 256, "disk_mb": 1024}`` (``disk_mb``: one
                quota for /workspace and /home/sandbox; 0 = none).
            ssh_key: a private key (paramiko key or file path) to log in
                with; its public key is sent as ``ssh_public_key`` unless
                that is given. Defaults to the client's ``ssh_key``.
            timeout: seconds to wait for the answer; the default is the
                client's ``timeout`` but at least 180 s, since the service
                answers only once the sandbox runs (a Kubernetes pod may
                take a while).
            idempotency_key: sent as ``Idempotency-Key`` (1..255
                printable ASCII characters); ``None`` makes a fresh
                ``uuid4`` for this call. The service answers a repeat with
                the same key and body with the session the first attempt
                made, so the retries below never create a second session.
            retries: how many times to send the create again, with the same
                key, after a connection failure or timeout (the answer may
                have been lost) or a 503 from a service that is not
                answering; 0 = never.
            idle_timeout: seconds without an open tunnel after which the
                service pauses (or deletes, by its ``idle_action``) the
                session; 0 = never; ``None`` leaves it to the service's
                default.
            **options: further fields sent as they are.

        If the service answers while the sandbox is still ``pending``, this
        waits (up to the client's ``timeout``) until it is ``running``.

        Raises :class:`InvalidRequest` (400) for bad fields,
        :class:`RateLimited` (429) when the service is at its session limit,
        :class:`ServerError` when the sandbox could not be started.
        """
        body: Dict[str, Any] = {}
        if ttl is not None:
            body["ttl"] = ttl
        if image is not None:
            body["image"] = image
        key = load_private_key(ssh_key) if ssh_key is not None else self.ssh_key
        if ssh_public_key is None and key is not None:
            ssh_public_key = public_key_line(key)
        if ssh_public_key is not None:
            body["ssh_public_key"] = ssh_public_key
        if metadata is not None:
            body["metadata"] = metadata
        if resources is not None:
            body["resources"] = resources
        if idle_timeout is not None:
            body["idle_timeout"] = idle_timeout
        body.update(options)
        if timeout is None:
            timeout = None if self.timeout is None else max(self.timeout, 180.0)
        if idempotency_key is None:
            idempotency_key = str(uuid.uuid4())
        data = self._create_with_retries(body, timeout, idempotency_key, retries)
        session = self._session(data, key)
        if session.status == "pending":
            # pico answers once the sandbox runs; a service that answers
            # earlier is waited for here, so the session is usable at once.
            session.wait_until_running(timeout=timeout or 180.0)
        return session

    def _create_with_retries(self, body: Dict[str, Any], timeout: Optional[float],
                             idempotency_key: str, retries: int) -> Any:
        attempt = 0
        while True:
            try:
                _, data = self._request(
                    "POST", "/v1/sessions", body, timeout=timeout,
                    extra_headers={"Idempotency-Key": idempotency_key})
                return data
            except (SandboxConnectionError, ServiceUnavailable) as e:
                if attempt >= retries or not _retryable(e):
                    raise
            attempt += 1
            time.sleep(min(0.5 * 2 ** (attempt - 1), 4.0))

    def _session(self, data: Any, key: Optional[paramiko.PKey] = None) -> Session:
        if not isinstance(data, dict) or not data.get("session_id"):
            raise SandboxError("answer is not a session: %r" % (data,),
                               code="bad_answer")
        return Session(self, data, ssh_password=self.ssh_password,
                       ssh_key=key if key is not None else self.ssh_key)

    def _get_session_data(self, session_id: str) -> Dict[str, Any]:
        _, data = self._request("GET", "/v1/sessions/%s" % _quote(session_id))
        if not isinstance(data, dict):
            raise SandboxError("answer is not a session: %r" % (data,),
                               code="bad_answer")
        return data

    def get_session(self, session_id: str) -> Session:
        """Returns the session with this id; :class:`SessionNotFound` if
        there is none (or it belongs to another principal)."""
        return self._session(self._get_session_data(session_id))

    def list_sessions(self) -> SessionList:
        """Returns the sessions the token can see, with ``.total``."""
        _, data = self._request("GET", "/v1/sessions")
        if not isinstance(data, dict) or not isinstance(data.get("sessions"), list):
            raise SandboxError("answer is not a session list: %r" % (data,),
                               code="bad_answer")
        items = [self._session(d) for d in data["sessions"]]
        total = data.get("total")
        return SessionList(items, total if isinstance(total, int) else None)

    def iter_sessions(self) -> Iterator[Session]:
        """Iterates over :meth:`list_sessions`."""
        return iter(self.list_sessions())

    def extend_session(self, session_id: str, ttl: int) -> Session:
        """Sets a session's ``expires_at`` to now + ``ttl`` seconds (longer
        or shorter than before) and returns the session as it is then.

        Raises :class:`InvalidRequest` (400) for a ttl outside 1..ttl_max
        or past the service's ``lifetime_max`` after ``created_at``,
        :class:`Conflict` (409) while the session is being deleted or has
        failed, :class:`SessionNotFound` (404)."""
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise TypeError("ttl must be an int, not %r" % (ttl,))
        _, data = self._request("PATCH", "/v1/sessions/%s" % _quote(session_id),
                                {"ttl": ttl})
        return self._session(data)

    def pause_session(self, session_id: str) -> Session:
        """Freezes a running session's sandbox (status ``paused``): its
        files and processes stay, new tunnels are refused (409) until
        :meth:`resume_session`. Raises :class:`Conflict` (409) when the
        session is not running (already paused, being deleted, failed),
        :class:`SandboxError` (501, ``not_supported``) on a runtime that
        cannot pause, :class:`SessionNotFound` (404)."""
        _, data = self._request("POST", "/v1/sessions/%s/pause" %
                                _quote(session_id))
        return self._session(data)

    def resume_session(self, session_id: str) -> Session:
        """Thaws a paused session: its processes go on where they stood.
        Raises :class:`Conflict` (409) when it is not paused."""
        _, data = self._request("POST", "/v1/sessions/%s/resume" %
                                _quote(session_id))
        return self._session(data)

    def delete_session(self, session_id: str) -> None:
        """Deletes a session and its sandbox; :class:`SessionNotFound` if it
        does not exist."""
        self._request("DELETE", "/v1/sessions/%s" % _quote(session_id))

    def events(self, session_id: Optional[str] = None,
               last_event_id: Optional[str] = None, *,
               reconnect: bool = True) -> Iterator[Event]:
        """Iterates over lifecycle events as they happen (Server-Sent
        Events from ``GET /v1/events``, or ``/v1/sessions/<id>/events``).

        Args:
            session_id: only this session's events; the iteration then
                starts with its history and ends after ``terminated``.
            last_event_id: resume after this event's ``id``.
            reconnect: when the connection drops (or the service ends the
                stream, as a stopping backend does), connect again with the
                last event's id, so nothing is missed or repeated.

        Each item is an :class:`Event` (``id``, ``type``, ``session_id``,
        ``data``). Raises :class:`InvalidRequest` for a malformed or
        unknown ``last_event_id``, :class:`SandboxError` (410,
        ``event_expired``) for one older than the events kept."""
        path = "/v1/events" if session_id is None else \
            "/v1/sessions/%s/events" % _quote(session_id)
        last = last_event_id
        while True:
            try:
                for event in self._event_stream(path, last):
                    last = event.id
                    yield event
                    if session_id is not None and event.type == "terminated":
                        return
                if not reconnect:
                    return
            except SandboxConnectionError:
                if not reconnect:
                    raise
            time.sleep(1.0)

    def _event_stream(self, path: str, last: Optional[str]) -> Iterator[Event]:
        headers = {"Accept": "text/event-stream",
                   "User-Agent": "sandbox-sdk-python/%s" % __version__}
        if last:
            headers["Last-Event-ID"] = last
        if self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        # the service sends a comment at least every 15 s
        conn = self._connection(None if self.timeout is None
                                else max(self.timeout, 60.0))
        try:
            try:
                conn.request("GET", self._prefix + path, headers=headers)
                resp = conn.getresponse()
                if resp.status >= 400:
                    raise error_from_response(
                        resp.status, resp.read().decode("utf-8", "replace"),
                        resp.reason, {k.lower(): v for k, v in resp.getheaders()})
                yield from parse_sse(resp)
            except (OSError, http.client.HTTPException) as e:
                raise SandboxConnectionError(
                    "event stream from %s: %s" % (self.api_url, _describe(e)),
                    code="connection_failed") from e
        finally:
            conn.close()

    def health(self) -> Dict[str, Any]:
        """Returns the service's health document. Raises
        :class:`ServiceUnavailable` (503) when Redis or the runtime is
        failing, :class:`SandboxConnectionError` when nothing answers."""
        _, data = self._request("GET", "/health")
        return data if isinstance(data, dict) else {"status": "ok"}

    def is_healthy(self) -> bool:
        """``True`` when :meth:`health` succeeds."""
        try:
            self.health()
            return True
        except SandboxError:
            return False

    # -- tunnels -------------------------------------------------------
    def _open_tunnel(self, tunnel_path: str) -> TunnelSocket:
        return open_tunnel(self._host, self._port, self._prefix + tunnel_path,
                           token=self.token, use_tls=self._tls,
                           host_header=self._host_header, timeout=self.timeout,
                           ssl_context=self._ssl_context)

    def open_tunnel(self, session_id: str) -> TunnelSocket:
        """Opens a CONNECT tunnel to a session's sshd; see
        :meth:`Session.open_tunnel`."""
        return self._open_tunnel("/v1/sessions/%s/tunnel" % _quote(session_id))


class Event:
    """One lifecycle event: ``id`` (resume after it with
    ``last_event_id``), ``type`` (``created``, ``running``, ``failed``,
    ``ttl_changed``, ``expiring``, ``idle``, ``paused``, ``resumed``,
    ``tunnel_opened``, ``tunnel_closed``, ``terminated``; a type added
    later comes through as it is), ``session_id``,
    ``time`` and the whole ``data`` (``reason``, ``expires_at``, ``ttl``
    where the type has them)."""

    def __init__(self, event_id: str, type: str, data: Dict[str, Any]) -> None:
        self.id = event_id
        self.type = type
        self.data = data
        self.session_id = str(data.get("session_id") or "")
        self.time = data.get("time")

    def __repr__(self) -> str:
        return "Event(%r, %r, %r)" % (self.id, self.type, self.session_id)


def parse_sse(lines: Any) -> Iterator[Event]:
    """Events from an SSE byte stream (anything with ``readline()``);
    comments and events without data are skipped."""
    fields: Dict[str, str] = {}
    data: List[str] = []
    while True:
        raw = lines.readline()
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line == "":
            if data:
                try:
                    payload = json.loads("\n".join(data))
                except ValueError:
                    payload = {"data": "\n".join(data)}
                if not isinstance(payload, dict):
                    payload = {"data": payload}
                yield Event(fields.get("id", ""), fields.get("event", "message"),
                            payload)
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        else:
            fields[name] = value


def _retryable(e: SandboxError) -> bool:
    """A lost answer or a service that is not answering, as opposed to a
    503 the service chose (Redis down is worth a retry too)."""
    if isinstance(e, SandboxConnectionError):
        return True
    return e.code in ("backend_unavailable", "redis_unavailable")


def _quote(session_id: str) -> str:
    return urllib.parse.quote(str(session_id), safe="")


def _describe(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__
