"""Unit tests of sandbox_sdk's own logic: parsing, error mapping, host key
checks, the CONNECT answer reader. No service needed; the end-to-end tests
against a real pico stack are in tests/e2e/test_sdk.py."""

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import uuid

import paramiko
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import sandbox_sdk  # noqa: E402
from sandbox_sdk import errors, ssh, tunnel  # noqa: E402
from sandbox_sdk.session import CommandResult, parse_time  # noqa: E402


def test_parse_time_rfc3339_and_unix():
    want = dt.datetime(2025, 10, 24, 3, 45, tzinfo=dt.timezone.utc)
    assert parse_time("2025-10-24T03:45:00Z") == want
    assert parse_time("2025-10-24T05:45:00+02:00") == want
    assert parse_time(int(want.timestamp())) == want
    assert parse_time("2025-10-24T03:45:00.5Z").microsecond == 500000
    assert parse_time(None) is None
    assert parse_time("2025-10-24T03:45:00Z").tzinfo is not None


@pytest.mark.parametrize("status,cls", [
    (400, sandbox_sdk.InvalidRequest), (401, sandbox_sdk.AuthenticationError),
    (404, sandbox_sdk.SessionNotFound), (405, sandbox_sdk.MethodNotAllowed),
    (409, sandbox_sdk.Conflict), (413, sandbox_sdk.InvalidRequest),
    (415, sandbox_sdk.InvalidRequest), (429, sandbox_sdk.RateLimited),
    (500, sandbox_sdk.ServerError), (503, sandbox_sdk.ServiceUnavailable),
])
def test_error_mapping(status, cls):
    body = '{"error": {"code": "some_code", "message": "ttl must be positive"}}'
    e = errors.error_from_response(status, body, "Reason")
    assert type(e) is cls
    assert isinstance(e, sandbox_sdk.SandboxError)
    assert (e.status, e.code, e.message) == (status, "some_code", "ttl must be positive")


def test_tunnel_error_mapping_and_plain_text():
    e = errors.error_from_response(503, "Sandbox not ready\n", "Service Unavailable",
                                   tunnel=True)
    assert type(e) is sandbox_sdk.SandboxNotReady and e.message == "Sandbox not ready"
    e = errors.error_from_response(503, "Session store unavailable\n",
                                   "Service Unavailable", tunnel=True)
    assert type(e) is sandbox_sdk.ServiceUnavailable
    e = errors.error_from_response(502, "", "Bad Gateway", tunnel=True)
    assert type(e) is sandbox_sdk.TunnelError and e.message == "Bad Gateway"
    e = errors.error_from_response(429, "{}", "Too Many", {"retry-after": "3"})
    assert e.retry_after == 3.0
    e = errors.error_from_response(404, "<html><body>nginx</body></html>", "Not Found")
    assert e.message == "Not Found"


def test_connection_error_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]      # bound, never listening: refused
        client = sandbox_sdk.SandboxClient("http://127.0.0.1:%d" % port, token="")
        with pytest.raises(sandbox_sdk.SandboxConnectionError) as info:
            client.list_sessions()
        assert isinstance(info.value, ConnectionError)
        assert "refused" in str(info.value)
        with pytest.raises(sandbox_sdk.SandboxConnectionError):
            client.open_tunnel("00000000-0000-0000-0000-000000000000")


def _answer(sock, chunks):
    for c in chunks:
        sock.sendall(c)


@pytest.mark.parametrize("chunks", [
    [b"HTTP/1.1 200 Connection Established\r\n\r\nSSH-2.0-OpenSSH_9.2\r\n"],
    [b"HTTP/1.1 200 Connection Established\r\n\r", b"\nSSH-2.0-OpenSSH_9.2\r\n"],
    [b"HTTP/1.1 200 Conn", b"ection Established\r\n", b"\r\n", b"SSH-2.0-OpenSSH_9.2\r\n"],
])
def test_connect_header_keeps_following_bytes(chunks):
    a, b = socket.socketpair()
    with a, b:
        t = threading.Thread(target=_answer, args=(b, chunks))
        t.start()
        head = tunnel._read_header_peek(a)
        t.join()
        assert head.endswith(b"\r\n\r\n") and head.startswith(b"HTTP/1.1 200")
        b.shutdown(socket.SHUT_WR)
        rest = b""
        while True:
            got = a.recv(4096)
            if not got:
                break
            rest += got
        assert rest == b"SSH-2.0-OpenSSH_9.2\r\n"


def test_parse_status():
    st, reason, hdrs = tunnel.parse_status(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 17\r\n\r\n")
    assert (st, reason, hdrs["content-length"]) == (404, "Not Found", "17")
    with pytest.raises(sandbox_sdk.TunnelError):
        tunnel.parse_status(b"SSH-2.0-OpenSSH\r\n\r\n")


def _keygen(tmp_path, name):
    path = str(tmp_path / name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path],
                   check=True)
    with open(path + ".pub") as f:
        return paramiko.Ed25519Key.from_private_key_file(path), f.read().strip()


def test_host_key_check(tmp_path):
    key, line = _keygen(tmp_path, "a")
    other, other_line = _keygen(tmp_path, "b")
    fpr = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "a.pub")],
                         capture_output=True, text=True, check=True).stdout.split()[1]
    assert ssh.fingerprint(key.asbytes()) == fpr
    ssh.check_host_key(key, line, fpr)
    ssh.check_host_key(key, None, fpr)
    ssh.check_host_key(key, line, None)
    with pytest.raises(sandbox_sdk.HostKeyMismatch):
        ssh.check_host_key(key, other_line, None)
    with pytest.raises(sandbox_sdk.HostKeyMismatch):
        ssh.check_host_key(key, None, ssh.fingerprint(other.asbytes()))
    with pytest.raises(sandbox_sdk.HostKeyMismatch):
        ssh.check_host_key(key, None, None)
    with pytest.raises(sandbox_sdk.HostKeyMismatch):
        ssh.check_host_key(key, "ssh-ed25519 not-base64!", None)
    assert ssh.public_key_line(key) == " ".join(line.split()[:2])


def test_command_result():
    r = CommandResult("false", 1, b"out\n", b"caf\xc3\xa9 \xff\n")
    assert r.stdout == "out\n" and r.stderr == "caf\u00e9 \ufffd\n"
    assert not r.ok
    with pytest.raises(sandbox_sdk.CommandError) as info:
        r.check()
    assert info.value.result is r
    assert CommandResult("true", 0, b"", b"").check().ok


def test_client_url_handling():
    c = sandbox_sdk.SandboxClient("http://localhost:8080/", token="t")
    assert (c._host, c._port, c._prefix, c._host_header) == ("localhost", 8080, "", "localhost:8080")
    c = sandbox_sdk.SandboxClient("https://pico.example/api")
    assert (c._port, c._prefix, c._tls, c._host_header) == (443, "/api", True, "pico.example")
    with pytest.raises(ValueError):
        sandbox_sdk.SandboxClient("ftp://x")


def test_buffered_header_and_prefixed_socket():
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\nSSH-")
        head, rest = tunnel._read_header_buffered(a)
        assert head.endswith(b"\r\n\r\n") and rest == b"SSH-"
        b.sendall(b"2.0-x\r\n")
        p = tunnel.PrefixedSocket(a, rest)
        assert p.pending() == 4
        assert p.recv(2) == b"SS" and p.recv(100) == b"H-"
        assert p.pending() == 0
        buf = bytearray(100)
        n = p.recv_into(buf)
        assert bytes(buf[:n]) == b"2.0-x\r\n"
        assert p.fileno() == a.fileno()
        q = tunnel.PrefixedSocket(a, b"abc")
        n = q.recv_into(buf, 2)
        assert (n, bytes(buf[:2])) == (2, b"ab")


# -- a fake service: records requests, answers what a test tells it ----
import http.server  # noqa: E402
import json  # noqa: E402


class FakeService:
    """An HTTP server on 127.0.0.1 whose answers come from
    ``answer(method, path, headers, body) -> (status, headers, body)``;
    ``body`` may be bytes or a list of bytes chunks (streamed)."""

    def __init__(self, answer):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.requests.append((self.command, self.path,
                                       dict(self.headers), body))
                got = answer(self.command, self.path, self.headers, body)
                if got is None:  # hang up without an answer
                    self.close_connection = True
                    return
                status, hdrs, out = got
                self.send_response(status)
                for k, v in hdrs.items():
                    self.send_header(k, v)
                if isinstance(out, list):
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for chunk in out:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    return
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


SESSION = {"session_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
           "status": "running", "ttl": 100,
           "created_at": "2025-10-24T03:45:00Z",
           "expires_at": "2025-10-24T03:46:40Z"}


def json_answer(status, obj):
    return status, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def test_extend_sends_patch_ttl_and_updates_the_session():
    def answer(method, path, headers, body):
        if method == "PATCH":
            ttl = json.loads(body)["ttl"]
            return json_answer(200, dict(SESSION, ttl=ttl,
                                         expires_at="2025-10-24T03:55:00Z"))
        return json_answer(200, SESSION)

    svc = FakeService(answer)
    try:
        client = sandbox_sdk.SandboxClient(svc.url, token="t0k")
        s = client.get_session(SESSION["session_id"])
        assert s.extend(600) is s
        method, path, headers, body = svc.requests[-1]
        assert (method, path) == ("PATCH", "/v1/sessions/" + SESSION["session_id"])
        assert json.loads(body) == {"ttl": 600}
        assert headers["Content-Type"] == "application/json"
        assert headers["Authorization"] == "Bearer t0k"
        assert s.ttl == 600 and s.expires_at.minute == 55
        with pytest.raises(TypeError):
            client.extend_session(SESSION["session_id"], 1.5)
    finally:
        svc.close()


def test_extend_errors_map():
    svc = FakeService(lambda *a: json_answer(409, {"error": {
        "code": "conflict", "message": "the session is being deleted"}}))
    try:
        client = sandbox_sdk.SandboxClient(svc.url, token="")
        with pytest.raises(sandbox_sdk.Conflict):
            client.extend_session(SESSION["session_id"], 60)
    finally:
        svc.close()


def test_create_sends_a_fresh_idempotency_key_reused_across_retries():
    calls = []

    def answer(method, path, headers, body):
        calls.append(headers.get("Idempotency-Key"))
        if len(calls) in (1, 3):
            return None  # the answer is lost
        return json_answer(201, SESSION)

    svc = FakeService(answer)
    try:
        client = sandbox_sdk.SandboxClient(svc.url, token="")
        s = client.create_session(ttl=100)
        assert s.session_id == SESSION["session_id"]
        assert len(calls) == 2 and calls[0] == calls[1]
        assert str(uuid.UUID(calls[0])) == calls[0]
        client.create_session(ttl=100)
        assert len(calls) == 4 and calls[2] == calls[3] != calls[0]
        client.create_session(ttl=100, idempotency_key="mine")
        assert calls[4] == "mine"
    finally:
        svc.close()


def test_create_gives_up_after_its_retries():
    calls = []

    def answer(method, path, headers, body):
        calls.append(headers.get("Idempotency-Key"))
        return None

    svc = FakeService(answer)
    try:
        client = sandbox_sdk.SandboxClient(svc.url, token="")
        with pytest.raises(sandbox_sdk.SandboxConnectionError):
            client.create_session(ttl=100, retries=1)
        assert len(calls) == 2 and calls[0] == calls[1]
    finally:
        svc.close()


def test_create_does_not_retry_a_422():
    calls = []

    def answer(method, path, headers, body):
        calls.append(1)
        return json_answer(422, {"error": {"code": "idempotency_key_reused",
                                           "message": "Idempotency-Key: x"}})

    svc = FakeService(answer)
    try:
        client = sandbox_sdk.SandboxClient(svc.url, token="")
        with pytest.raises(sandbox_sdk.SandboxError) as info:
            client.create_session(ttl=100, idempotency_key="k")
        assert type(info.value) is sandbox_sdk.IdempotencyKeyReused
        assert info.value.status == 422 and len(calls) == 1
    finally:
        svc.close()


def test_parse_sse():
    import io
    from sandbox_sdk.client import parse_sse
    text = (b"retry: 1000\n: connected\n\n"
            b"id: 1-0\nevent: created\ndata: {\"session_id\": \"s1\", \"type\": \"created\"}\n\n"
            b": keepalive\n\n"
            b"id: 2-0\r\nevent: failed\r\ndata: {\"session_id\": \"s1\", \"reason\": \"x\"}\r\n\r\n"
            b"id: 3-0\nevent: half")
    got = list(parse_sse(io.BytesIO(text)))
    assert [(e.id, e.type, e.session_id) for e in got] == [("1-0", "created", "s1"),
                                                          ("2-0", "failed", "s1")]
    assert got[1].data["reason"] == "x"


def test_events_reconnect_with_the_last_id():
    calls = []

    def answer(method, path, headers, body):
        calls.append((path, headers.get("Last-Event-ID")))
        if len(calls) == 1:
            return 200, {"Content-Type": "text/event-stream"}, [
                b"id: 5-0\nevent: created\ndata: {\"session_id\": \"a\"}\n\n"]
        if len(calls) == 2:
            return 200, {"Content-Type": "text/event-stream"}, [
                b"id: 6-0\nevent: terminated\ndata: {\"session_id\": \"a\"}\n\n"]
        return json_answer(410, {"error": {"code": "event_expired", "message": "m"}})

    svc = FakeService(answer)
    try:
        client = sandbox_sdk.SandboxClient(svc.url, token="")
        it = client.events()
        assert next(it).id == "5-0"
        assert next(it).type == "terminated"
        with pytest.raises(sandbox_sdk.SandboxError) as info:
            next(it)
        assert info.value.status == 410
        assert calls == [("/v1/events", None), ("/v1/events", "5-0"),
                         ("/v1/events", "6-0")]
        # a session's stream ends after its terminated
        calls.clear()
        evs = list(client.events(session_id="a", last_event_id="4-0"))
        assert [e.id for e in evs] == ["5-0", "6-0"]
        assert calls[0] == ("/v1/sessions/a/events", "4-0")
    finally:
        svc.close()
