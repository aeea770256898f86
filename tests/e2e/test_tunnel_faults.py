"""End-to-end tests of ngx_pico_module under faults and odd requests: a
CONNECT with a body, 405s off the tunnel path, bursts of CONNECTs to one
sandbox, Redis pausing under accounting, TLS listeners.

The echo endpoint and the session records come from test_tunnel.py's
helpers (build/bench/tunnel_load behind a record written with redis-cli)."""

import os
import socket
import time
import uuid

import pytest

from pico_stack import read_head, wait_for
from test_tunnel import (EchoEndpoint, add_record, cleanup_records,  # noqa: F401
                         connect_raw, echo, echo_roundtrip, open_echo,
                         read_body)


# -- a CONNECT never has a body ------------------------------------------

@pytest.mark.parametrize("header", ["Content-Length: 5",
                                    "Transfer-Encoding: chunked"])
def test_connect_with_a_body_is_400(stack, echo, header):
    """nginx would treat what follows the header as a body and discard it:
    tunnel bytes lost.  The module refuses such a CONNECT before anything
    is read or relayed."""
    sid = add_record(stack, "unix:" + echo.path)
    req = ("CONNECT /v1/sessions/%s/tunnel HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n"
           % (sid, header)).encode()
    s, head, rest = connect_raw(stack, req + b"echo\nhello")
    try:
        assert head.startswith("HTTP/1.1 400 "), head
        assert "text/plain" in head
        assert "Connection: close" in head
        body = read_body(s, head, rest)
        assert body == ("A CONNECT has no body: Content-Length and "
                        "Transfer-Encoding are not allowed\n")
    finally:
        s.close()
    assert stack.redis_cli("EXISTS", "pico:tunnels:" + sid) == "0"


def test_connect_with_content_length_0_opens(stack, echo):
    """Content-Length: 0 announces no body: nothing to discard."""
    sid = add_record(stack, "unix:" + echo.path)
    req = ("CONNECT /v1/sessions/%s/tunnel HTTP/1.1\r\nHost: x\r\n"
           "Content-Length: 0\r\n\r\n" % sid).encode()
    s, head, rest = connect_raw(stack, req + b"echo\nhello")
    try:
        assert head.startswith("HTTP/1.1 200 "), head
        got = rest
        while len(got) < 5:
            got += s.recv(100)
        assert got == b"hello"
    finally:
        s.close()


# -- 405s that are not the tunnel's --------------------------------------

@pytest.mark.parametrize("path,allow", [
    ("/health", "GET, HEAD"),
    ("/v1/sessions", "GET, HEAD, POST"),
    ("/v1/sessions/%s" % uuid.uuid4(), "GET, HEAD, PATCH, DELETE"),
])
def test_trace_on_rest_paths_is_the_apis_405(stack, path, allow):
    """nginx rejects TRACE with 405 before any phase, and error_page 405
    sends it to @tunnel; off the tunnel path it is the REST API's 405."""
    r = stack.request("TRACE", path)
    assert r.status == 405, r
    assert r.headers.get("Allow") == allow, r
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_trace_on_the_tunnel_path_allows_connect(stack):
    r = stack.request("TRACE", "/v1/sessions/%s/tunnel" % uuid.uuid4())
    assert r.status == 405, r
    assert r.headers.get("Allow") == "CONNECT"
    r = stack.request("GET", "/v1/sessions/%s/tunnel" % uuid.uuid4())
    assert (r.status, r.headers.get("Allow")) == (405, "CONNECT")


# -- an early answer is the end of the request ---------------------------

@pytest.mark.parametrize("request_line", [
    "GET /v1/sessions/%s/tunnel HTTP/1.1",
    "CONNECT /v1/sessions/%s/tunnel/x HTTP/1.1",
])
def test_an_early_answer_opens_no_tunnel(stack, echo, request_line):
    """The content handler's checks that answered (405, 404, 400, 401,
    503) used to go on to the next step: the lookup, the connect and a
    "200 Connection Established" after the error."""
    sid = add_record(stack, "unix:" + echo.path)
    req = (request_line % sid + "\r\nHost: x\r\n\r\n").encode()
    s, head, rest = connect_raw(stack, req + b"echo\nhello")
    try:
        assert head.split(" ")[1] in ("404", "405"), head
        body = read_body(s, head, rest)
        s.settimeout(2)
        after = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                after += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        assert after == rest[len(body):] == b"", (body, after)
    finally:
        s.close()
    time.sleep(0.2)
    assert stack.redis_cli("HGETALL", "pico:tunnels:" + sid) == ""


# -- a burst of CONNECTs to one sandbox ----------------------------------

class SlowListener:
    """A unix listener with a small backlog that accepts nothing for
    `pause` seconds, then everything: a sandbox's sshd under a burst.
    Linux fails connect(2) to a full unix backlog with EAGAIN at once."""

    def __init__(self, path, backlog=4, pause=0.5):
        import threading
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o777)  # the workers are not root
        self.sock.listen(backlog)
        self.accepted = []
        self.pause = pause
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        time.sleep(self.pause)
        self.sock.settimeout(0.5)
        while True:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted.append(c)

    def close(self):
        self.sock.close()
        for c in self.accepted:
            c.close()


def test_burst_of_connects_to_one_sandbox_all_open(stack):
    """400 CONNECTs at once to a session whose listener's backlog (4) is
    full for half a second: the module tries a unix connect that fails
    with EAGAIN again within pico_connect_timeout instead of a 502."""
    path = os.path.join(stack.var, "sessions", "slow-%s.sock" % uuid.uuid4().hex[:8])
    lst = SlowListener(path)
    sid = add_record(stack, "unix:" + path)
    n = 400
    clients = []
    try:
        start = time.monotonic()
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", stack.port), 10)
            c.sendall(("CONNECT /v1/sessions/%s/tunnel HTTP/1.1\r\n"
                       "Host: x\r\n\r\n" % sid).encode())
            clients.append(c)
        codes = {}
        for c in clients:
            head, _ = read_head(c)
            code = head.split(b" ", 2)[1].decode() if head else "closed"
            codes[code] = codes.get(code, 0) + 1
        took = time.monotonic() - start
        assert codes == {"200": n}, codes
        assert took < 5, "took %.1f s" % took
        wait_for(lambda: len(lst.accepted) == n, timeout=5, what="accepts")
    finally:
        for c in clients:
            c.close()
        lst.close()
    wait_for(lambda: stack.redis_cli("HGET", "pico:tunnels:" + sid, "open") == "0",
             timeout=10, what="open=0")
    assert stack.redis_cli("HGET", "pico:tunnels:" + sid, "opened") == str(n)


# -- accounting stays exact ----------------------------------------------

def test_counters_exact_across_many_tunnels(stack, echo):
    """300 tunnels to one session, 50 at a time, each moving a few bytes:
    the merged updates add up to exactly what was relayed."""
    from pico_stack import run_parallel
    sid = add_record(stack, "unix:" + echo.path)
    key = "pico:tunnels:" + sid
    n = 300

    def one(i):
        s = open_echo(stack, sid)
        try:
            data = b"x" * (i + 1)
            s.sendall(data)
            got = b""
            while len(got) < len(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            return got == data
        finally:
            s.close()

    ts, results = run_parallel(one, n, 50)
    for t in ts:
        t.join(60)
    assert results.count(True) == n
    want_down = sum(range(1, n + 1))
    wait_for(lambda: stack.redis_cli("HGET", key, "bytes_down") == str(want_down)
             and stack.redis_cli("HGET", key, "open") == "0",
             timeout=10, what="counters")
    assert stack.redis_cli("HGET", key, "opened") == str(n)
    assert stack.redis_cli("HGET", key, "bytes_up") == str(want_down + 5 * n)


def test_tunnel_opened_and_closed_at_once_leaves_open_0(stack, echo):
    """Its +1 and -1 merge into one update of open 0: the field is still
    written (0), not left out."""
    sid = add_record(stack, "unix:" + echo.path)
    key = "pico:tunnels:" + sid
    open_echo(stack, sid).close()
    wait_for(lambda: stack.redis_cli("HGET", key, "opened") == "1",
             what="opened=1")
    assert stack.redis_cli("HGET", key, "open") == "0"
    assert stack.redis_cli("HGET", key, "bytes_up") == "5"


def test_redis_pause_loses_no_open_decrement(new_stack):
    """Redis stops answering for 1.5 s (CLIENT PAUSE) while tunnels close
    and a CONNECT's lookup times out: the "open -1"s of the closed tunnels
    still arrive, and the counters end exact."""
    stack = new_stack(name="pause", workers=1,
                      nginx_http_extra="pico_redis_timeout 300ms;")
    e = EchoEndpoint(stack)
    try:
        sid = add_record(stack, "unix:" + e.path)
        # not looked up yet, so not in the worker's cache: its lookups wait
        cold = add_record(stack, "unix:" + e.path)
        key = "pico:tunnels:" + sid
        socks = [open_echo(stack, sid) for _ in range(20)]
        wait_for(lambda: stack.redis_cli("HGET", key, "open") == "20",
                 what="open=20")
        stack.redis_cli("CLIENT", "PAUSE", "1500", "ALL")
        for s in socks:
            s.close()
        # lookups that time out while Redis is paused
        for _ in range(2):
            s, status, _ = stack.open_tunnel(cold, timeout=5)
            s.close()
            assert " 503 " in status, status
        time.sleep(1.6)
        wait_for(lambda: stack.redis_cli("HGET", key, "open") == "0",
                 timeout=5, what="open=0 after the pause")
        assert stack.redis_cli("HGET", key, "opened") == "20"
        # and the module still serves
        s = open_echo(stack, sid)
        s.close()
        wait_for(lambda: stack.redis_cli("HGET", key, "opened") == "21",
                 what="opened=21")
    finally:
        e.stop()


# -- TLS on the listener -------------------------------------------------

def test_tunnel_over_tls_listener(new_stack, tmp_path):
    """Under "listen ... ssl" the client's socket carries TLS records: the
    relay must copy through OpenSSL, not splice the ciphertext (splice is
    on by default for TCP client -> unix endpoint)."""
    import ssl
    import subprocess
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.check_call(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                           "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                           "-subj", "/CN=127.0.0.1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from pico_stack import free_port
    port = free_port()
    stack = new_stack(name="tls", nginx_listen_extra=["127.0.0.1:%d ssl" % port],
                      nginx_http_extra="ssl_certificate %s; ssl_certificate_key %s"
                      % (cert, key))
    e = EchoEndpoint(stack)
    try:
        sid = add_record(stack, "unix:" + e.path)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", port), 10)
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        try:
            s.sendall(("CONNECT /v1/sessions/%s/tunnel HTTP/1.1\r\nHost: x\r\n\r\n"
                       % sid).encode() + b"echo\n")
            head, rest = read_head(s)
            assert head.startswith(b"HTTP/1.1 200 "), head
            data = os.urandom(300000)
            assert echo_roundtrip(s, data, rest, timeout=30) == data
        finally:
            s.close()
        key_ = "pico:tunnels:" + sid
        wait_for(lambda: stack.redis_cli("HGET", key_, "open") == "0",
                 what="open=0")
        assert stack.redis_cli("HGET", key_, "bytes_down") == str(len(data))
        # the plain listener still works beside it
        s = open_echo(stack, sid)
        s.close()
    finally:
        e.stop()
