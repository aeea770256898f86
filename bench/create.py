"""Create-to-ready benchmark of pico-backend against a real local stack
(redis, backend, nginx, runc sandboxes with sshd).

Latency: POST /v1/sessions answers 201 only once the sandbox's sshd
accepts, so the POST round trip *is* create -> ready. Measured over N
sequential creates (each session deleted again right after, outside the
timed part), then concurrent creates C at a time for throughput. A
sample counts only if a tunnel to it then gets the SSH banner.

Prints a markdown section to stdout (make bench-create writes it to
build/bench/create.md)."""

import argparse
import os
import re
import statistics
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
# Measure the optimised build, not the sanitizer one the tests prefer.
os.environ.setdefault("PICO_BACKEND", os.path.join(ROOT, "bin", "pico-backend"))
from pico_stack import Stack  # noqa: E402


def pct(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def create_timed(st):
    t0 = time.perf_counter()
    r = st.request("POST", "/v1/sessions", body={"ttl": 600})
    dt = time.perf_counter() - t0
    if r.status != 201:
        raise RuntimeError("create failed: %r" % r)
    return r.json()["session_id"], dt


def check_ready(st, sid):
    s, status, rest = st.open_tunnel(sid)
    try:
        if " 200 " not in status + " ":
            raise RuntimeError("tunnel to %s: %s" % (sid, status))
        buf = rest
        while b"\n" not in buf:
            chunk = s.recv(256)
            if not chunk:
                break
            buf += chunk
        if not buf.startswith(b"SSH-2.0-"):
            raise RuntimeError("no SSH banner from %s: %r" % (sid, buf[:64]))
    finally:
        s.close()


def sequential(st, n):
    lat = []
    for i in range(n):
        sid, dt = create_timed(st)
        check_ready(st, sid)
        lat.append(dt)
        st.delete(sid)
    return lat


def concurrent(st, total, width):
    lat, errors, sids = [], [], []
    lock = threading.Lock()
    todo = list(range(total))

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            try:
                sid, dt = create_timed(st)
                with lock:
                    lat.append(dt)
                    sids.append(sid)
            except Exception as e:  # reported, not hidden
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=worker) for _ in range(width)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for sid in sids:
        check_ready(st, sid)
    for sid in sids:
        st.delete(sid)
    return lat, wall, errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=60, help="sequential creates (>= 50)")
    ap.add_argument("-c", type=int, default=8, help="concurrent creates at a time")
    ap.add_argument("--total", type=int, default=64, help="concurrent creates in all")
    args = ap.parse_args()

    st = Stack(name="bench-create").start()
    try:
        warm = sequential(st, 3)  # first create pays cold caches
        lat = sequential(st, args.n)
        clat, wall, errors = concurrent(st, args.total, args.c)
    finally:
        st.stop()
    # The backend logs how long each create took on its side (record,
    # runtime create, record again); the rest is HTTP and nginx.
    inside = [int(x) / 1000.0 for x in
              re.findall(r"created \S+ endpoint=\S+ in (\d+) ms", st.backend.read_log())]
    inside = inside[len(warm):len(warm) + len(lat)]  # the sequential ones

    ms = lambda v: "%.1f" % (v * 1000)  # noqa: E731
    print("## Session create -> ready (local runtime)\n")
    print("POST /v1/sessions through nginx until 201 (the sandbox's sshd "
          "accepts); every session then answered a tunnel with its SSH banner.\n")
    print("| measure | value |")
    print("|---|---|")
    print("| first creates (cold), ms | %s |" % ", ".join(ms(v) for v in warm))
    print("| sequential creates | %d |" % len(lat))
    print("| p50 latency, ms | %s |" % ms(statistics.median(lat)))
    print("| p99 latency, ms | %s |" % ms(pct(lat, 99)))
    print("| min / max, ms | %s / %s |" % (ms(min(lat)), ms(max(lat))))
    if inside:
        print("| p50 inside the backend (log: record + sandbox start), ms | %s |"
              % ms(statistics.median(inside)))
    print("| concurrent creates (%d at a time) | %d ok, %d failed |"
          % (args.c, len(clat), len(errors)))
    if clat:
        print("| concurrent p50 / p99 latency, ms | %s / %s |"
              % (ms(statistics.median(clat)), ms(pct(clat, 99))))
        print("| concurrent throughput, sessions/s | %.1f |" % (len(clat) / wall))
    print("| target (issue) | p50 <= 50 ms, p99 <= 150 ms |")
    if errors:
        print("\nerrors: %s" % "; ".join(errors[:5]))
    print()


if __name__ == "__main__":
    main()
