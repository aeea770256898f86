#!/usr/bin/python3
"""OpenSSH ProxyCommand for `ProxyUseFdpass=yes` (bench/ssh.py): connects,
hands the connected socket to ssh and exits, so no relay process sits
between ssh and the server and the direct and tunnelled paths are measured
alike.

  fdpass.py unix:/path/to/ssh.sock
      connects to a sandbox's endpoint socket (direct)
  fdpass.py tcp:127.0.0.1:PORT /v1/sessions/<id>/tunnel
      connects to nginx and sends CONNECT (with `Authorization: Bearer
      $PICO_TOKEN` when that is set); the answer's header is read one byte
      at a time up to and including the blank line, so sshd's banner stays
      in the socket for ssh; anything but 200 fails

With ProxyUseFdpass, ssh gives the command a socketpair as its stdout and
waits for one descriptor on it (one byte of data with SCM_RIGHTS)."""

import os
import socket
import sys

MAX_HEAD = 8192


def fail(msg):
    sys.stderr.write("fdpass: %s\n" % msg)
    sys.exit(1)


def connect_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def read_head(s):
    """The response header, up to and including \\r\\n\\r\\n, not a byte more."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        b = s.recv(1)
        if not b:
            fail("connection closed in the CONNECT answer: %r" % head)
        head += b
        if len(head) > MAX_HEAD:
            fail("CONNECT answer header too long")
    return head


def connect_tunnel(hostport, path):
    host, port = hostport.rsplit(":", 1)
    if host != "127.0.0.1":
        fail("only 127.0.0.1 is a target here, not %s" % host)
    s = socket.create_connection((host, int(port)), timeout=10)
    req = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (path, hostport)
    token = os.environ.get("PICO_TOKEN")
    if token:
        req += "Authorization: Bearer %s\r\n" % token
    s.sendall(req.encode() + b"\r\n")
    status = read_head(s).split(b"\r\n", 1)[0]
    parts = status.split(None, 2)
    if len(parts) < 2 or parts[1] != b"200":
        fail("CONNECT %s: %s" % (path, status.decode("latin-1")))
    s.settimeout(None)
    # ssh does not set TCP_NODELAY on a socket it is handed for a batch
    # command; without it Nagle holds back the handshake's small writes
    # (40 ms delayed ACKs: logins measured 50 ms slower than direct)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def pass_to_ssh(conn):
    """Sends conn's descriptor over fd 1, the socketpair from ssh."""
    out = socket.socket(fileno=1)
    socket.send_fds(out, [b"\0"], [conn.fileno()])
    out.detach()


def main():
    if len(sys.argv) == 2 and sys.argv[1].startswith("unix:"):
        conn = connect_unix(sys.argv[1][len("unix:"):])
    elif len(sys.argv) == 3 and sys.argv[1].startswith("tcp:"):
        conn = connect_tunnel(sys.argv[1][len("tcp:"):], sys.argv[2])
    else:
        fail("usage: fdpass.py unix:PATH | tcp:127.0.0.1:PORT /v1/sessions/ID/tunnel")
    pass_to_ssh(conn)


if __name__ == "__main__":
    main()
