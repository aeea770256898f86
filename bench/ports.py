#!/usr/bin/python3
"""Port tunnels (CONNECT /v1/sessions/<id>/ports/<port>/tunnel) vs the
sandbox's port relay reached straight, in one run on a real stack: bulk
bytes to a sink app in the sandbox (up) and from a source app (down).

  direct:   the session's ports.sock, "PORT <n>\\n", "OK\\n", then bytes:
            pico-init's relay child and the app, nothing else
  tunnel:   TCP to nginx, CONNECT with the ports path, then bytes: the
            same plus nginx with ngx_pico_module

The ratio tunnel/direct is what nginx's relay costs on this path (the
apps and pico-init's relay are in both). Median MiB/s of --runs transfers
of --mib MiB each. Targets only unix sockets and 127.0.0.1; bounded by
the transfer sizes. Writes a markdown section (--out)."""

import argparse
import os
import socket
import statistics
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from pico_stack import Stack, read_head  # noqa: E402
from sandbox_apps import Box  # noqa: E402
from tunnel import write_report  # noqa: E402

MIB = 1 << 20
SINK, SOURCE = 8101, 8102

# One connection at a time: the sink reads to EOF and answers "done"; the
# source sends what the first line asks for and closes.
APPS = r"""
import socket, sys, threading
def sink(c):
    buf = bytearray(1 << 20)
    while c.recv_into(buf):
        pass
    c.sendall(b"done")
    c.close()
def source(c):
    n = int(c.makefile("rb").readline())
    chunk = bytes(1 << 20)
    while n > 0:
        c.sendall(chunk[:min(n, len(chunk))])
        n -= len(chunk)
    c.close()
def serve(port, fn):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(8)
    while True:
        c, _ = s.accept()
        threading.Thread(target=fn, args=(c,), daemon=True).start()
threading.Thread(target=serve, args=(%d, source), daemon=True).start()
serve(%d, sink)
""" % (SOURCE, SINK)


def open_direct(stack, sid, port):
    ep = stack.redis_cli("HGET", "pico:session:" + sid, "endpoint")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(os.path.dirname(ep[len("unix:"):]), "ports.sock"))
    s.sendall(b"PORT %d\n" % port)
    answer = b""
    while not answer.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            raise RuntimeError("port relay closed: %r" % answer)
        answer += b
    if answer != b"OK\n":
        raise RuntimeError("port relay: %r" % answer)
    return s


def open_tunnel(stack, sid, port):
    s = socket.create_connection(("127.0.0.1", stack.port), timeout=30)
    s.sendall(b"CONNECT /v1/sessions/%s/ports/%d/tunnel HTTP/1.1\r\n"
              b"Host: x\r\n\r\n" % (sid.encode(), port))
    head, rest = read_head(s)
    if b" 200 " not in head.split(b"\r\n", 1)[0] or rest:
        raise RuntimeError("CONNECT: %r" % head)
    return s


def up(conn, nbytes):
    chunk = bytes(MIB)
    t0 = time.monotonic()
    left = nbytes
    while left > 0:
        conn.sendall(chunk[:min(left, MIB)])
        left -= MIB
    conn.shutdown(socket.SHUT_WR)
    if conn.recv(16) != b"done":
        raise RuntimeError("sink did not confirm")
    return nbytes / MIB / (time.monotonic() - t0)


def down(conn, nbytes):
    buf = bytearray(MIB)
    t0 = time.monotonic()
    conn.sendall(b"%d\n" % nbytes)
    got = 0
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        got += n
    if got != nbytes:
        raise RuntimeError("source sent %d of %d bytes" % (got, nbytes))
    return nbytes / MIB / (time.monotonic() - t0)


def median_rate(opener, stack, sid, fn, port, nbytes, runs):
    rates = []
    for _ in range(runs):
        conn = opener(stack, sid, port)
        try:
            conn.settimeout(120)
            rates.append(fn(conn, nbytes))
        finally:
            conn.close()
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    nbytes = args.mib * MIB
    stack = Stack(name="bench-ports")
    stack.start()
    try:
        sid = stack.create(ttl=600)["session_id"]
        box = Box(stack, sid)
        box.put("/tmp/apps.py", APPS)
        box.start("python3 /tmp/apps.py", SINK)
        rows = []
        for name, fn, port in (("up", up, SINK), ("down", down, SOURCE)):
            d = median_rate(open_direct, stack, sid, fn, port, nbytes, args.runs)
            t = median_rate(open_tunnel, stack, sid, fn, port, nbytes, args.runs)
            rows.append("| %s | %.0f | %.0f | %.2f |" % (name, d, t, t / d))
        box.close()
        stack.delete(sid)
    finally:
        stack.stop()
    write_report(args.out, [
        "## Port tunnels (bench/ports.py, `make bench-ports`)",
        "",
        "%d MiB per transfer, median of %d, between a client on the host and "
        "a Python app in one runc sandbox (sink up, source down). *direct*: "
        "the session's ports.sock and pico-init's relay only; *tunnel*: "
        "`CONNECT .../ports/<port>/tunnel` through nginx and the module as "
        "well. The ratio is what nginx adds on this path." % (args.mib, args.runs),
        "",
        "| direction | direct MiB/s | tunnel MiB/s | tunnel/direct |",
        "|---|---|---|---|",
    ] + rows + [""])


if __name__ == "__main__":
    main()
