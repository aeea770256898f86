"""End-to-end tests of ngx_pico_module: CONNECT /v1/sessions/<id>/tunnel
through the real stack (nginx with the module, redis, pico-backend, runc
sandboxes with sshd).

Bulk-transfer tests use an echo endpoint the test controls
(build/bench/tunnel_load server) behind a session record written with
redis-cli: the module's code path (lookup, connect, relay, accounting) is
the same as for a sandbox, and it moves a gigabyte without 100 sshds."""

import concurrent.futures
import glob
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

import paramiko
import pytest

from pico_stack import ROOT, Stack, free_port, read_head, wait_for

LOAD = os.path.join(ROOT, "build", "bench", "tunnel_load")


# -- helpers -------------------------------------------------------------

def connect_raw(stack, payload, timeout=10):
    """Sends payload; returns (socket, head, rest) of the first response."""
    s = socket.create_connection(("127.0.0.1", stack.port), timeout)
    s.sendall(payload)
    head, rest = read_head(s)
    return s, head.decode("latin-1"), rest


def read_body(s, head, rest):
    m = re.search(r"(?i)content-length:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    return rest[:n].decode()


def tunnel_answer(stack, sid, token=None, path=None):
    """CONNECT and return (status code, headers, body) of an error answer."""
    req = "CONNECT %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (
        path or "/v1/sessions/%s/tunnel" % sid)
    if token is not None:
        req += "Authorization: %s\r\n" % token
    s, head, rest = connect_raw(stack, req.encode() + b"\r\n")
    try:
        code = int(head.split(" ", 2)[1])
        body = read_body(s, head, rest) if code != 200 else ""
        return code, head, body
    finally:
        s.close()


def read_until(s, marker, limit=1 << 16):
    buf = b""
    while marker not in buf and len(buf) < limit:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def wait_closed(s, deadline_s):
    """True if the peer closes s within deadline_s (data is discarded)."""
    s.settimeout(0.2)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if s.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


class EchoEndpoint:
    """build/bench/tunnel_load's server on a unix socket in the stack's
    sessions folder (where nginx's workers may connect), or on a loopback
    TCP port (tcp=True)."""

    def __init__(self, stack, name="echo", tcp=False):
        assert os.path.exists(LOAD), "build/bench/tunnel_load missing: make"
        if tcp:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            self.path = "127.0.0.1:%d" % port
            self.endpoint = self.path
        else:
            self.path = os.path.join(stack.var, "sessions", name + ".sock")
            self.endpoint = "unix:" + self.path
        self.proc = subprocess.Popen([LOAD, "server", self.path],
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        assert self.proc.stdout.readline().strip() == b"listening"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


_records = []


def add_record(stack, endpoint, status="running", owner=""):
    """A session record pointing at an endpoint the test controls (removed
    again after the test, see cleanup_records)."""
    sid = str(uuid.uuid4())
    stack.redis_cli("HSET", "pico:session:" + sid, "session_id", sid,
                    "status", status, "endpoint", endpoint, "owner", owner)
    _records.append((stack, sid))
    return sid


@pytest.fixture(autouse=True)
def cleanup_records():
    yield
    while _records:
        stack, sid = _records.pop()
        if stack.redis is not None:
            stack.redis_cli("DEL", "pico:session:" + sid, "pico:tunnels:" + sid)


def open_echo(stack, sid, timeout=30):
    s, status, rest = stack.open_tunnel(sid, extra=b"echo\n", timeout=timeout)
    assert status == "HTTP/1.1 200 Connection Established", status
    assert rest == b""
    return s


def echo_roundtrip(s, data, rest=b"", timeout=120):
    """Sends data while reading the echo back; returns what came back
    (starting with rest, echo bytes already read with the answer)."""
    got = [rest]

    def reader():
        n = len(rest)
        while n < len(data):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got.append(chunk)
            n += len(chunk)

    t = threading.Thread(target=reader)
    t.start()
    s.sendall(data)
    t.join(timeout)
    return b"".join(got)


def ssh_client(sock):
    """paramiko over an open tunnel, as user sandbox."""
    t = paramiko.Transport(sock)
    t.start_client(timeout=30)
    t.auth_password("sandbox", "sandbox")
    assert t.is_authenticated()
    return t


def ssh_run(transport, command):
    chan = transport.open_session()
    chan.exec_command(command)
    out = b""
    while True:
        chunk = chan.recv(65536)
        if not chunk:
            break
        out += chunk
    status = chan.recv_exit_status()
    chan.close()
    return status, out.decode()


@pytest.fixture
def echo(stack):
    e = EchoEndpoint(stack)
    yield e
    e.stop()


# -- the tunnel itself ---------------------------------------------------

def test_tunnel_reaches_sshd(stack):
    sess = stack.create()
    s, status, rest = stack.open_tunnel(sess["session_id"])
    try:
        assert status == "HTTP/1.1 200 Connection Established"
        s.settimeout(10)
        banner = rest
        while b"\r\n" not in banner:
            chunk = s.recv(4096)
            assert chunk, banner
            banner += chunk
        assert banner.startswith(b"SSH-2.0-OpenSSH"), banner
    finally:
        s.close()
        stack.delete(sess["session_id"])


def test_ssh_command_over_tunnel(stack):
    sess = stack.create()
    s, status, rest = stack.open_tunnel(sess["session_id"])
    assert status == "HTTP/1.1 200 Connection Established"
    assert rest == b""  # the banner is read by paramiko itself
    t = ssh_client(s)
    try:
        code, out = ssh_run(t, "id -un; pwd; echo $((6*7))")
        assert code == 0
        assert out.split() == ["sandbox", "/workspace", "42"]
    finally:
        t.close()
        stack.delete(sess["session_id"])


def test_banner_in_the_same_write_as_the_header(stack):
    """Bytes pipelined after the request header reach sshd: it answers a
    client banner with its key exchange (SSH_MSG_KEXINIT, 20)."""
    sess = stack.create()
    s, status, rest = stack.open_tunnel(sess["session_id"],
                                        extra=b"SSH-2.0-pico_e2e\r\n")
    try:
        assert status == "HTTP/1.1 200 Connection Established"
        s.settimeout(10)
        buf = rest
        while b"\r\n" not in buf or len(buf.partition(b"\r\n")[2]) < 6:
            chunk = s.recv(4096)
            assert chunk, "sshd closed: %r" % buf
            buf += chunk
        banner, _, packet = buf.partition(b"\r\n")
        assert banner.startswith(b"SSH-2.0-OpenSSH")
        assert packet[5] == 20, packet[:16]
    finally:
        s.close()
        stack.delete(sess["session_id"])


def test_health_then_connect_on_one_connection(stack):
    sess = stack.create()
    sid = sess["session_id"]
    s = socket.create_connection(("127.0.0.1", stack.port), 10)
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = read_until(s, b"\r\n\r\n")
        head, _, rest = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        read_body(s, head.decode(), rest)
        s.sendall(("CONNECT /v1/sessions/%s/tunnel HTTP/1.1\r\n"
                   "Host: 127.0.0.1\r\n\r\n" % sid).encode())
        buf = read_until(s, b"SSH-2.0-")
        buf += read_until(s, b"\r\n") if not buf.endswith(b"\r\n") else b""
        assert buf.startswith(b"HTTP/1.1 200 Connection Established\r\n\r\n"
                              b"SSH-2.0-OpenSSH"), buf
    finally:
        s.close()
        stack.delete(sid)


# -- answers before a tunnel opens ---------------------------------------

def test_error_answers(stack):
    sess = stack.create()
    sid = sess["session_id"]
    try:
        code, _, body = tunnel_answer(stack, "not-a-uuid")
        assert code == 400 and "session id" in body
        code, _, _ = tunnel_answer(stack, sid.upper())
        assert code == 400

        code, _, body = tunnel_answer(stack, str(uuid.uuid4()))
        assert (code, body) == (404, "Session not found\n")
        code, _, _ = tunnel_answer(stack, None, path="/v1/sessions/%s" % sid)
        assert code == 404
        code, _, _ = tunnel_answer(stack, None,
                                   path="/v1/sessions/%s/tunnel/x" % sid)
        assert code == 404

        for method in ("GET", "POST", "DELETE"):
            r = stack.request(method, "/v1/sessions/%s/tunnel" % sid)
            assert r.status == 405, (method, r)
            assert r.headers.get("Allow") == "CONNECT"

        # an endpoint that refuses: a record pointing at a dead socket
        dead = add_record(stack, "unix:" + os.path.join(stack.var, "sessions",
                                                        "dead.sock"))
        code, _, body = tunnel_answer(stack, dead)
        assert code == 502 and body

        pending = add_record(stack, "unix:/nonexistent", status="pending")
        code, _, body = tunnel_answer(stack, pending)
        assert (code, body) == (503, "Sandbox not ready\n")
        stack.redis_cli("DEL", "pico:session:" + dead, "pico:session:" + pending)
    finally:
        stack.delete(sid)


def nginx_error(stack, payload):
    """Sends a raw request nginx itself rejects; returns (status, headers,
    parsed JSON body)."""
    s, head, rest = connect_raw(stack, payload)
    try:
        code = int(head.split(" ", 2)[1])
        body = read_body(s, head, rest)
    finally:
        s.close()
    assert re.search(r"(?im)^content-type:\s*application/json", head), head
    return code, head, json.loads(body)


@pytest.mark.parametrize("payload, status, code", [
    # %00 in the path: nginx's parser refuses it
    (b"GET /v1/sessions/%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400,
     "invalid_request"),
    (b"NOT A REQUEST LINE\r\n\r\n", 400, "invalid_request"),
    (b"GET /v1/sessions/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
     414, "uri_too_long"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 +
     b"\r\n\r\n", 400, "header_too_large"),
    # the error pages themselves are internal: nginx's own 404
    (b"GET /_pico/error/400 HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"),
    # over client_max_body_size (1m): refused on the header alone
    (b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\n"
     b"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n",
     413, "body_too_large"),
])
def test_nginx_errors_are_json(stack, payload, status, code):
    got, head, body = nginx_error(stack, payload)
    assert got == status, head
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


def test_tunnel_errors_stay_plain_text_next_to_json_pages(stack):
    """The JSON error pages must not catch the module's own answers nor
    the CONNECT 405 that leads to the module."""
    code, head, body = tunnel_answer(stack, str(uuid.uuid4()))
    assert (code, body) == (404, "Session not found\n")
    assert "application/json" not in head
    code, _, body = tunnel_answer(stack, "not-a-uuid")
    assert code == 400 and "session id" in body


def test_access_log_records_tunnels(stack, echo):
    sid = add_record(stack, "unix:" + echo.path)
    s = open_echo(stack, sid)
    assert echo_roundtrip(s, b"x" * 1000) == b"x" * 1000
    s.close()
    log = os.path.join(stack.var, "log", "nginx-access.log")

    def logged():
        with open(log) as f:
            return [l for l in f if "session=" + sid in l]

    lines = wait_for(logged, what="access log line")
    line = lines[-1]
    assert '"CONNECT /v1/sessions/%s/tunnel HTTP/1.1" 200' % sid in line
    assert "tunnel=closed" in line
    assert "up=1005 down=1000" in line  # "echo\n" + 1000 bytes
    assert re.search(r"time=\d+\.\d{3}", line)
    stack.redis_cli("DEL", "pico:session:" + sid, "pico:tunnels:" + sid)


def test_tunnel_accounting(stack, echo):
    sid = add_record(stack, "unix:" + echo.path)
    key = "pico:tunnels:" + sid
    s = open_echo(stack, sid)
    wait_for(lambda: stack.redis_cli("HGET", key, "open") == "1",
             what="open=1")
    data = os.urandom(300000)
    assert echo_roundtrip(s, data) == data
    s.close()
    wait_for(lambda: stack.redis_cli("HGET", key, "open") == "0",
             what="open=0")
    assert stack.redis_cli("HGET", key, "opened") == "1"
    assert stack.redis_cli("HGET", key, "bytes_up") == str(len(data) + 5)
    assert stack.redis_cli("HGET", key, "bytes_down") == str(len(data))
    last = int(stack.redis_cli("HGET", key, "last_activity"))
    assert abs(last / 1000 - time.time()) < 3600

    # a deleted session's counters are not brought back: the record (and
    # its counters, as the backend does) go while a tunnel is open, with
    # bytes not yet accounted; its close must not recreate the hash
    s = open_echo(stack, sid)
    wait_for(lambda: stack.redis_cli("HGET", key, "open") == "1",
             what="open=1 again")
    assert echo_roundtrip(s, data) == data
    stack.redis_cli("DEL", "pico:session:" + sid, key)
    s.close()
    # the close's update (open -1, the byte deltas) and a flush later
    time.sleep(1.5)
    assert stack.redis_cli("EXISTS", key) == "0"


def test_client_gone_mid_download_closes_tunnel(stack, echo):
    """The client vanishes while the endpoint still has a gigabyte to send
    (the relay is blocked writing to the client): the tunnel ends."""
    sid = add_record(stack, "unix:" + echo.path)
    key = "pico:tunnels:" + sid
    s, status, _ = stack.open_tunnel(sid, extra=b"down %d\n" % (1 << 30))
    assert status.endswith("200 Connection Established")
    assert len(s.recv(65536)) > 0
    wait_for(lambda: stack.redis_cli("HGET", key, "open") == "1",
             what="open=1")
    s.close()
    wait_for(lambda: stack.redis_cli("HGET", key, "open") == "0",
             what="tunnel closed after the client left")


# -- many tunnels --------------------------------------------------------

def many_echo_tunnels(stack, endpoint, count, size):
    """count concurrent tunnels to an echo endpoint, size bytes each way;
    returns whether each got its own bytes back"""
    sid = add_record(stack, endpoint)
    block = os.urandom(size)

    def one(i):
        data = i.to_bytes(4, "big") + block[4:]
        s = open_echo(stack, sid, timeout=120)
        try:
            back = echo_roundtrip(s, data)
            return hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
        finally:
            s.close()

    try:
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            return list(pool.map(one, range(count)))
    finally:
        stack.redis_cli("DEL", "pico:session:" + sid, "pico:tunnels:" + sid)


def test_100_concurrent_tunnels_move_10_mib_each(stack, echo):
    assert many_echo_tunnels(stack, "unix:" + echo.path, 100,
                             10 << 20) == [True] * 100


def test_tcp_endpoint_both_ways(stack):
    """A TCP endpoint: TCP to TCP both ways (copied: splice only pays from
    TCP into a unix socket)."""
    echo = EchoEndpoint(stack, tcp=True)
    try:
        assert many_echo_tunnels(stack, echo.endpoint, 10, 4 << 20) == [True] * 10
    finally:
        echo.stop()


def test_copy_relay_when_splice_is_off(new_stack):
    stack = new_stack(name="copy", workers=1, nginx_http_extra="pico_splice off;")
    echo = EchoEndpoint(stack)
    try:
        assert many_echo_tunnels(stack, echo.endpoint, 10, 4 << 20) == [True] * 10
    finally:
        echo.stop()


def test_half_close_is_relayed(stack, echo):
    """EOF from the client reaches the endpoint; its answer still comes
    back, then the tunnel closes."""
    sid = add_record(stack, "unix:" + echo.path)
    s, status, _ = stack.open_tunnel(sid, extra=b"up 5\n")
    assert status.endswith("200 Connection Established")
    s.sendall(b"hello")
    s.shutdown(socket.SHUT_WR)
    assert read_until(s, b"ok\n") == b"ok\n"
    assert wait_closed(s, 10)
    s.close()
    stack.redis_cli("DEL", "pico:session:" + sid, "pico:tunnels:" + sid)


def test_reload_keeps_open_tunnels(new_stack):
    stack = new_stack(name="reload")
    echo = EchoEndpoint(stack)
    try:
        sid = add_record(stack, "unix:" + echo.path)
        tunnels = [open_echo(stack, sid) for _ in range(20)]
        sess = stack.create()
        ssh_sock, status, _ = stack.open_tunnel(sess["session_id"])
        assert status.endswith("200 Connection Established")
        ssh = ssh_client(ssh_sock)

        old = worker_pids(stack)
        stack.reload_nginx()
        wait_for(lambda: new_workers(stack, old), what="new workers")

        for i, s in enumerate(tunnels):
            data = b"%d" % i * 1000
            assert echo_roundtrip(s, data) == data
        assert ssh_run(ssh, "echo still here")[1] == "still here\n"
        # new tunnels open on the new workers
        s = open_echo(stack, sid)
        assert echo_roundtrip(s, b"new") == b"new"
        s.close()
        ssh.close()
        for s in tunnels:
            s.close()
        stack.delete(sess["session_id"])
    finally:
        echo.stop()


def test_fast_shutdown_accounts_cut_tunnels(new_stack):
    """SIGTERM cuts open tunnels without finishing them; the exiting
    workers still send their open -1 and last byte counts."""
    stack = new_stack(name="fastexit")
    echo = EchoEndpoint(stack)
    try:
        sid = add_record(stack, "unix:" + echo.path)
        key = "pico:tunnels:" + sid
        data = os.urandom(100000)
        tunnels = [open_echo(stack, sid) for _ in range(5)]
        for s in tunnels:
            assert echo_roundtrip(s, data) == data
        wait_for(lambda: stack.redis_cli("HGET", key, "open") == "5",
                 what="open=5")

        stack.nginx.send_signal(signal.SIGTERM)
        stack.nginx.wait(20)

        # the exited workers' last writes may still be in Redis' socket
        wait_for(lambda: stack.redis_cli("HGET", key, "open") == "0",
                 what="open=0 after SIGTERM")
        assert stack.redis_cli("HGET", key, "opened") == "5"
        assert stack.redis_cli("HGET", key, "bytes_up") == str(5 * (len(data) + 5))
        assert stack.redis_cli("HGET", key, "bytes_down") == str(5 * len(data))
        for s in tunnels:
            s.close()
    finally:
        echo.stop()


def worker_pids(stack):
    out = subprocess.run(["pgrep", "-P", str(stack.nginx.pid)],
                         capture_output=True, text=True).stdout
    return set(int(p) for p in out.split())


def new_workers(stack, old):
    return len(worker_pids(stack) - old) >= stack.workers


def test_pico_max_tunnels_gives_503(new_stack):
    stack = new_stack(name="limit", workers=1,
                      nginx_http_extra="pico_max_tunnels 3;")
    echo = EchoEndpoint(stack)
    try:
        sid = add_record(stack, "unix:" + echo.path)
        held = [open_echo(stack, sid) for _ in range(3)]
        code, _, body = tunnel_answer(stack, sid)
        assert (code, body) == (503, "Too many tunnels\n")
        held.pop().close()
        wait_for(lambda: try_open(stack, sid), what="a slot freed")
        for s in held:
            s.close()
    finally:
        echo.stop()


def test_every_worker_at_its_limit_still_answers_503(new_stack):
    """pico_max_tunnels is per worker and accepts do not spread evenly over
    the workers: try until every worker holds its limit (each try answered
    200 or 503, never a close without an answer), then a CONNECT still
    gets the module's 503."""
    stack = new_stack(name="limitall", workers=3,
                      nginx_http_extra="pico_max_tunnels 2;")
    echo = EchoEndpoint(stack)
    held = []
    try:
        sid = add_record(stack, "unix:" + echo.path)
        for _ in range(1000):
            s, status, _ = stack.open_tunnel(sid, extra=b"echo\n")
            if status == "HTTP/1.1 200 Connection Established":
                held.append(s)
                if len(held) == 3 * 2:
                    break
            else:
                s.close()
                assert status == "HTTP/1.1 503 Service Temporarily " \
                    "Unavailable", status
        assert len(held) == 3 * 2
        for _ in range(10):
            code, _, body = tunnel_answer(stack, sid)
            assert (code, body) == (503, "Too many tunnels\n")
        for s in held:
            assert echo_roundtrip(s, b"still here") == b"still here"
    finally:
        for s in held:
            s.close()
        echo.stop()


# -- HTTP/2 ----------------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(ftype, flags, stream, payload=b""):
    return (len(payload).to_bytes(3, "big") + bytes([ftype, flags]) +
            stream.to_bytes(4, "big") + payload)


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman."""
    out = b"\x00"
    for s in (name.encode(), value.encode()):
        assert len(s) < 127
        out += bytes([len(s)]) + s
    return out


def h2_status(block):
    """:status from the start of nginx's header block: an indexed static
    entry (8-14) or a literal with incremental indexing of name 8."""
    static = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}
    if block[0] & 0x80:
        return static[block[0] & 0x7f]
    assert block[0] == 0x48 and block[1] == 3, block[:8]
    return int(block[2:5])


def h2_request(port, fields, end_stream=False):
    """One request on stream 1 of an h2c connection (prior knowledge);
    returns (status, body) of the answer, or None if the stream or the
    connection ended without one."""
    s = socket.create_connection(("127.0.0.1", port), 10)
    try:
        block = b"".join(hpack_literal(n, v) for n, v in fields)
        s.sendall(H2_PREFACE + h2_frame(4, 0, 0) +
                  h2_frame(1, 0x4 | (0x1 if end_stream else 0), 1, block))
        buf, status, body = b"", None, b""
        while True:
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3],
                                                                  "big"):
                chunk = s.recv(65536)
                if not chunk:
                    return None if status is None else (status, body)
                buf += chunk
            n = int.from_bytes(buf[:3], "big")
            ftype, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7fffffff
            payload, buf = buf[9:9 + n], buf[9 + n:]
            if ftype == 4 and not flags & 0x1:  # SETTINGS: acknowledge
                s.sendall(h2_frame(4, 0x1, 0))
            if stream != 1:
                if ftype == 7:  # GOAWAY
                    return None if status is None else (status, body)
                continue
            if ftype == 1:
                status = h2_status(payload)
            elif ftype == 0:
                body += payload
            elif ftype == 3:  # RST_STREAM
                return None if status is None else (status, body)
            if flags & 0x1 and ftype in (0, 1):
                return status, body
    finally:
        s.close()


def test_http2_tunnel_is_refused(new_stack):
    """A CONNECT over HTTP/2 (h2c with prior knowledge on a second port)
    is answered with an error by the module, never 200, and nginx keeps
    serving HTTP/1.1 tunnels."""
    h2 = free_port()
    stack = new_stack(name="h2", workers=1,
                      nginx_listen_extra=["127.0.0.1:%d http2" % h2])
    echo = EchoEndpoint(stack)
    try:
        sid = add_record(stack, "unix:" + echo.path)
        path = "/v1/sessions/%s/tunnel" % sid
        got = h2_request(h2, [(":method", "CONNECT"), (":scheme", "http"),
                              (":authority", "127.0.0.1"), (":path", path)])
        assert got == (400, b"Tunnels need HTTP/1.1\n")
        # another method on the tunnel path over HTTP/2: the module's 405
        got = h2_request(h2, [(":method", "GET"), (":scheme", "http"),
                              (":authority", "127.0.0.1"), (":path", path)],
                         end_stream=True)
        assert got == (405, b"Method not allowed\n")
        s = open_echo(stack, sid)
        assert echo_roundtrip(s, b"after h2") == b"after h2"
        s.close()
    finally:
        echo.stop()


def test_idle_timeout_closes_tunnel(new_stack):
    stack = new_stack(name="idle", workers=1,
                      nginx_http_extra="pico_idle_timeout 1s;")
    echo = EchoEndpoint(stack)
    try:
        sid = add_record(stack, "unix:" + echo.path)
        s = open_echo(stack, sid)
        assert echo_roundtrip(s, b"ping") == b"ping"
        assert wait_closed(s, 30), "idle tunnel never closed"
        s.close()
        log = os.path.join(stack.var, "log", "nginx-access.log")
        wait_for(lambda: "tunnel=idle_timeout" in open(log).read(),
                 what="idle_timeout in the access log")
    finally:
        echo.stop()


def test_connect_timeout_gives_502(new_stack):
    """An endpoint that never completes the handshake (a listener whose
    accept queue is full drops SYNs) is a 502 after pico_connect_timeout."""
    stack = new_stack(name="ctimeout", workers=1,
                      nginx_http_extra="pico_connect_timeout 500ms;")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue; never accept
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.2)
        sid = add_record(stack, "127.0.0.1:%d" % port)
        code, _, body = tunnel_answer(stack, sid)
        assert (code, body) == (502, "Sandbox unreachable\n")
        err = open(os.path.join(stack.var, "log", "nginx-error.log")).read()
        assert "timed out" in err
    finally:
        for f in fillers:
            f.close()
        listener.close()


def try_open(stack, sid):
    s, status, _ = stack.open_tunnel(sid, extra=b"idle\n")
    s.close()
    return status.endswith("200 Connection Established")


# -- the rest of the stack going away ------------------------------------

def test_tunnels_open_while_backend_is_down(new_stack):
    stack = new_stack(name="nobackend")
    sess = stack.create()
    stack.backend.stop()
    try:
        s, status, rest = stack.open_tunnel(sess["session_id"])
        assert status == "HTTP/1.1 200 Connection Established"
        s.settimeout(10)
        assert (rest + read_until(s, b"\r\n")).startswith(b"SSH-2.0-OpenSSH")
        s.close()
    finally:
        stack.backend.start()
    stack.delete(sess["session_id"])


def test_redis_restart(new_stack):
    stack = new_stack(name="redisdown")
    sess = stack.create()
    sid = sess["session_id"]
    stack.stop_redis()
    try:
        code, _, body = tunnel_answer(stack, sid)
        assert (code, body) == (503, "Session store unavailable\n")
        # everything else is still served
        r = stack.request("GET", "/health", timeout=30)
        assert r.status in (200, 503)
    finally:
        stack.start_redis()
    wait_for(lambda: tunnel_answer(stack, sid)[0] == 200, what="tunnel again")
    stack.delete(sid)


def test_redis_name_is_resolved_when_nginx_reads_its_conf(new_stack):
    """pico_redis host:port with a name: the master resolves it when it
    reads the configuration, so a worker never waits on a resolver; tunnels
    open through it, and a name that does not resolve fails nginx -t with
    the directive's name in the message."""
    port = free_port()
    stack = new_stack(name="redisname",
                      nginx_http_extra="pico_redis localhost:%d;" % port,
                      conf={"redis.conf": {"port": str(port),
                                           "bind": "127.0.0.1"}})
    sess = stack.create()
    code, _, _ = tunnel_answer(stack, sess["session_id"])
    assert code == 200
    stack.delete(sess["session_id"])

    with open(stack.conf_path("nginx.conf")) as f:
        text = f.read()
    bad = stack.conf_path("nginx-bad.conf")
    with open(bad, "w") as f:
        f.write(text.replace("pico_redis localhost:%d;" % port,
                             "pico_redis no-such-host.invalid:6379;"))
    out = subprocess.run(["nginx", "-t", "-p", os.path.join(stack.var, "nginx"),
                          "-c", bad, "-e", os.path.join(stack.var, "log", "nginx-t.log")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert ('pico_redis "no-such-host.invalid:6379": host not found'
            in out.stderr), out.stderr


def test_hung_redis_gives_503_then_recovers(new_stack):
    """Redis stops answering (SIGSTOP): lookups fail with 503 after
    pico_redis_timeout instead of hanging; tunnels open again once it
    answers.  A session the worker has cached (checked moments ago, within
    pico_cache_max_age) still opens: a stopped Redis changes nothing."""
    stack = new_stack(name="redishung", workers=1,
                      nginx_http_extra="pico_redis_timeout 300ms;")
    echo = EchoEndpoint(stack)
    sid = add_record(stack, echo.endpoint)
    cold = add_record(stack, echo.endpoint)
    held = open_echo(stack, sid)
    stack.redis.send_signal(signal.SIGSTOP)
    try:
        code, _, body = tunnel_answer(stack, cold)
        assert (code, body) == (503, "Session store unavailable\n")
        assert tunnel_answer(stack, sid)[0] == 200
        # open tunnels do not depend on Redis
        assert echo_roundtrip(held, b"still") == b"still"
    finally:
        stack.redis.send_signal(signal.SIGCONT)
    wait_for(lambda: tunnel_answer(stack, cold)[0] == 200, what="tunnel again")
    held.close()
    echo.stop()


def test_deleted_session_tunnel_closes(stack):
    sess = stack.create()
    sid = sess["session_id"]
    s, status, rest = stack.open_tunnel(sid)
    assert status == "HTTP/1.1 200 Connection Established"
    t = ssh_client(s)
    r = stack.delete(sid)
    assert r.status in (200, 202, 204), r
    deadline = time.monotonic() + 2
    while t.is_active() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not t.is_active(), "tunnel still open 2 s after DELETE"
    t.close()
    code, _, body = tunnel_answer(stack, sid)
    assert (code, body) == (404, "Session not found\n")


def test_pico_events_close_tunnels(stack, echo):
    """The pub/sub path alone: the endpoint stays up, only the record goes
    and `deleted <id>` is published, as the backend does."""
    sid = add_record(stack, "unix:" + echo.path)
    s = open_echo(stack, sid)
    other = open_echo(stack, add_record(stack, "unix:" + echo.path))
    stack.redis_cli("DEL", "pico:session:" + sid)
    stack.redis_cli("PUBLISH", "pico:events", "deleted " + sid)
    assert wait_closed(s, 2), "tunnel open 2 s after the event"
    assert echo_roundtrip(other, b"alive") == b"alive"
    other.close()
    s.close()


def test_resubscribe_rechecks_open_tunnels(stack, echo):
    """A deletion missed while the subscriber was away is found by the
    re-check after it subscribes again."""
    sid = add_record(stack, "unix:" + echo.path)
    s = open_echo(stack, sid)
    stack.redis_cli("DEL", "pico:session:" + sid)  # no event published
    stack.redis_cli("CLIENT", "KILL", "TYPE", "pubsub")
    assert wait_closed(s, 2 + 2), "tunnel open after the re-check"
    s.close()


# -- auth ----------------------------------------------------------------

def test_auth(new_stack):
    stack = new_stack(name="auth", auth=True)
    alice = stack.make_token("alice")
    bob = stack.make_token("bob")
    sess = stack.create(token=alice)
    sid = sess["session_id"]

    code, head, _ = tunnel_answer(stack, sid)
    assert code == 401 and "WWW-Authenticate: Bearer" in head
    code, head, _ = tunnel_answer(stack, sid, token="Bearer nonsense")
    assert code == 401 and "invalid_token" in head
    code, _, _ = tunnel_answer(stack, sid, token="Basic " + alice)
    assert code == 401
    # right shape, wrong secret
    forged = alice[:-4] + ("0000" if not alice.endswith("0000") else "1111")
    code, _, _ = tunnel_answer(stack, sid, token="Bearer " + forged)
    assert code == 401
    # right shape, unknown token id
    code, _, _ = tunnel_answer(stack, sid,
                               token="Bearer pico_%s_%s" % ("f" * 16, "0" * 64))
    assert code == 401
    # another principal's session does not exist for bob
    code, _, body = tunnel_answer(stack, sid, token="Bearer " + bob)
    assert (code, body) == (404, "Session not found\n")

    s, status, rest = stack.open_tunnel(sid, token=alice)
    assert status == "HTTP/1.1 200 Connection Established"
    s.settimeout(10)
    assert (rest + read_until(s, b"\r\n")).startswith(b"SSH-2.0-OpenSSH")
    s.close()

    # a revoked token fails at once: deleted and published, as
    # `pico-backend token revoke` does (the module caches checked tokens)
    token_id = alice.split("_")[1]
    stack.redis_cli("DEL", "pico:token:" + token_id)
    stack.redis_cli("PUBLISH", "pico:events", "revoked " + token_id)
    code, _, _ = tunnel_answer(stack, sid, token="Bearer " + alice)
    assert code == 401
    stack.delete(sid, token=bob)  # 404 for bob; the stack's drain cleans up


# -- memory safety -------------------------------------------------------

def test_module_under_valgrind():
    """One nginx process (master_process off) under memcheck through the
    module's paths: errors, tunnels, Redis events, shutdown."""
    stack = Stack(name="valgrind", workers=1)
    stack.configure()
    stack.start_redis()
    stack.backends = []
    vglog = os.path.join(stack.var, "log", "valgrind.%p")
    try:
        stack.start_nginx(prefix_cmd=["valgrind", "--error-exitcode=99",
                                      "--log-file=" + vglog,
                                      "--trace-children=no"],
                          args=["-g", "master_process off;"])
        echo = EchoEndpoint(stack)
        try:
            sid = add_record(stack, "unix:" + echo.path)
            assert tunnel_answer(stack, "bad")[0] == 400
            assert tunnel_answer(stack, str(uuid.uuid4()))[0] == 404
            dead = add_record(stack, "unix:/nonexistent.sock")
            assert tunnel_answer(stack, dead)[0] == 502
            data = os.urandom(2 << 20)
            tunnels = [open_echo(stack, sid, timeout=60) for _ in range(5)]
            for s in tunnels:
                assert echo_roundtrip(s, data) == data
            tunnels.pop().close()
            stack.redis_cli("DEL", "pico:session:" + sid)
            stack.redis_cli("PUBLISH", "pico:events", "deleted " + sid)
            for s in tunnels:
                assert wait_closed(s, 30)
                s.close()
            s = open_echo(stack, add_record(stack, "unix:" + echo.path),
                          timeout=60)
            stack.stop_redis()
            assert tunnel_answer(stack, sid)[0] == 503
            stack.start_redis()
            s.close()
        finally:
            echo.stop()
    finally:
        stack.stop_nginx()
        stack.stop_redis()
    logs = glob.glob(os.path.join(stack.var, "log", "valgrind.*"))
    assert logs
    text = "".join(open(p).read() for p in logs)
    assert "ERROR SUMMARY: 0 errors" in text, text[-4000:]
    assert not re.search(r"Invalid (read|write|free)|uninitialised", text)
