"""Ports tunnels: CONNECT /v1/sessions/<id>/ports/<port>/tunnel is a raw
byte stream to 127.0.0.1:<port> inside the sandbox, through nginx, the
module and pico-init's port relay (ports.sock), while the sandbox keeps
no network interface but lo. Bad ports are 400s, a closed port a 502 that
says so; auth and ownership are the SSH tunnel's. test-tunnel's -port
(-stdio, -listen) and the SDK's forward() ride on it."""

import os
import re
import socket
import subprocess
import sys

import pytest

from pico_stack import ROOT, read_head
from sandbox_apps import Box

sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))

SAN = os.path.join(ROOT, "build", "san", "test-tunnel")
TT = SAN if os.path.exists(SAN) else os.path.join(ROOT, "bin", "test-tunnel")
ECHO_PORT = 7000


def connect_port(stack, sid, port, token=None, path=None, timeout=10):
    """CONNECT to a port; returns (socket, status line, head, leftover)."""
    s = socket.create_connection(("127.0.0.1", stack.port), timeout)
    path = path or "/v1/sessions/%s/ports/%s/tunnel" % (sid, port)
    req = "CONNECT %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % path
    if token:
        req += "Authorization: Bearer %s\r\n" % token
    s.sendall(req.encode() + b"\r\n")
    head, rest = read_head(s)
    return s, head.split(b"\r\n", 1)[0].decode(), head, rest


def body_of(s, head, rest):
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    return rest[:n].decode()


def echo_roundtrip(s, data):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        assert chunk, "echo closed after %d bytes" % len(got)
        got += chunk
    return got


@pytest.fixture(scope="module")
def echo(stack):
    """A session with a TCP echo server on ECHO_PORT."""
    sess = stack.create(ttl=600)
    sid = sess["session_id"]
    box = Box(stack, sid)
    box.tcp_echo(ECHO_PORT)
    yield sid, box
    box.close()
    assert stack.delete(sid).status == 200


def test_port_tunnel_reaches_a_tcp_echo(stack, echo):
    sid, box = echo
    s, status, _, rest = connect_port(stack, sid, ECHO_PORT)
    try:
        assert " 200 " in status, status
        assert rest == b""
        data = os.urandom(300000)
        assert echo_roundtrip(s, data) == data
        # half-close: the echo sees the end and closes its side too
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b""
    finally:
        s.close()
    # and the sandbox still has no network interface but lo
    assert box.interfaces() == ["lo"]


@pytest.mark.parametrize("port", ["0", "65536", "abc", "080", "-1"])
def test_bad_port_is_400(stack, echo, port):
    sid, _ = echo
    s, status, head, rest = connect_port(stack, sid, port)
    try:
        assert " 400 " in status, status
        assert "Invalid port: expected 1..65535" in body_of(s, head, rest)
    finally:
        s.close()


def test_bad_session_id_is_400_and_unknown_session_404(stack):
    s, status, _, _ = connect_port(stack, "nope", 80)
    s.close()
    assert " 400 " in status, status
    s, status, _, _ = connect_port(stack, "123e4567-e89b-12d3-a456-426614174000", 80)
    s.close()
    assert " 404 " in status, status


def test_closed_port_is_502_with_a_message(stack, echo):
    sid, _ = echo
    s, status, head, rest = connect_port(stack, sid, 7999)
    try:
        assert " 502 " in status, status
        assert "Nothing listens on port 7999" in body_of(s, head, rest)
    finally:
        s.close()


def test_other_paths_under_ports_are_not_tunnels(stack, echo):
    sid, _ = echo
    s, status, _, _ = connect_port(
        stack, sid, 0, path="/v1/sessions/%s/ports/%d/tunnelx" % (sid, ECHO_PORT))
    s.close()
    assert " 404 " in status, status


def test_test_tunnel_port_stdio(stack, echo):
    sid, _ = echo
    data = b"hello port\n" * 1000
    p = subprocess.run([TT, "-api", stack.url, "-session", sid, "-port",
                        str(ECHO_PORT), "-stdio"], input=data,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == data


def test_test_tunnel_port_flags_are_checked(stack, echo):
    sid, _ = echo
    for args, msg in ((["-port", "0", "-stdio"], "invalid value"),
                      (["-port", "70000", "-stdio"], "invalid value"),
                      (["-port", "80"], "-port needs -stdio or -listen"),
                      (["-listen", "127.0.0.1:0"], "-listen needs -port")):
        p = subprocess.run([TT, "-api", stack.url, "-session", sid] + args,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (args, p.stderr)
        assert msg in p.stderr, (args, p.stderr)


def test_test_tunnel_port_listen_forwards_a_local_port(stack, echo):
    sid, _ = echo
    p = subprocess.Popen([TT, "-api", stack.url, "-session", sid, "-port",
                          str(ECHO_PORT), "-listen", "127.0.0.1:0"],
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        m = re.match(r"Forwarding 127\.0\.0\.1:(\d+)", line)
        assert m, line
        local = int(m.group(1))
        # two connections at once, each its own tunnel
        a = socket.create_connection(("127.0.0.1", local), 10)
        b = socket.create_connection(("127.0.0.1", local), 10)
        try:
            assert echo_roundtrip(a, b"first") == b"first"
            assert echo_roundtrip(b, b"second" * 5000) == b"second" * 5000
        finally:
            a.close()
            b.close()
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_sdk_forward(stack, echo):
    from sandbox_sdk import SandboxClient

    sid, _ = echo
    client = SandboxClient(stack.url, token="")
    session = client.get_session(sid)
    with session.forward(ECHO_PORT) as fwd:
        for _ in range(2):
            c = socket.create_connection(("127.0.0.1", fwd.port), 10)
            try:
                assert echo_roundtrip(c, b"via sdk") == b"via sdk"
            finally:
                c.close()
    # closed: the port no longer accepts
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", fwd.port), 2).close()


def test_ports_auth_and_ownership(new_stack):
    st = new_stack(auth=True)
    alice = st.make_token("alice")
    bob = st.make_token("bob")
    sid = st.create(token=alice, ttl=300)["session_id"]
    box = Box(st, sid)
    try:
        box.tcp_echo(ECHO_PORT)
        s, status, _, _ = connect_port(st, sid, ECHO_PORT)
        s.close()
        assert " 401 " in status, status
        s, status, _, _ = connect_port(st, sid, ECHO_PORT, token=bob)
        s.close()
        assert " 404 " in status, status
        s, status, _, _ = connect_port(st, sid, ECHO_PORT, token=alice)
        try:
            assert " 200 " in status, status
            assert echo_roundtrip(s, b"alice's") == b"alice's"
        finally:
            s.close()
    finally:
        box.close()
        assert st.delete(sid, token=alice).status == 200


def test_pooled_sandbox_has_ports_too(new_stack):
    """A warm-pool sandbox was started before its session existed: its
    ports.sock was bound then and moved with its folder on the claim."""
    from test_pool import container_of, wait_pool_full

    st = new_stack(conf={"pico.conf": {"warm_pool": "1"}})
    wait_pool_full(st, 1)
    sid = st.create(ttl=300)["session_id"]
    assert "session %s: sandbox %s from pool" % (
        sid, container_of(st, sid)[len("pico-"):]) in st.backend.read_log()
    box = Box(st, sid)
    try:
        box.tcp_echo(ECHO_PORT)
        s, status, _, _ = connect_port(st, sid, ECHO_PORT)
        try:
            assert " 200 " in status, status
            assert echo_roundtrip(s, b"pooled") == b"pooled"
        finally:
            s.close()
        assert box.interfaces() == ["lo"]
    finally:
        box.close()
        assert st.delete(sid).status == 200


def test_sandbox_without_port_relay_says_so(stack):
    """A sandbox started before ports existed has no ports.sock: the 502
    says what to do. (Its socket removed here stands for such a one.)"""
    sid = stack.create(ttl=300)["session_id"]
    try:
        ep = stack.redis_cli("HGET", "pico:session:" + sid, "endpoint")
        os.unlink(os.path.join(os.path.dirname(ep[len("unix:"):]), "ports.sock"))
        s, status, head, rest = connect_port(stack, sid, 80)
        try:
            assert " 502 " in status, status
            assert "no port relay" in body_of(s, head, rest)
        finally:
            s.close()
        # and its SSH tunnel is not affected
        s, status, _ = stack.open_tunnel(sid)
        s.close()
        assert " 200 " in status, status
    finally:
        assert stack.delete(sid).status == 200
