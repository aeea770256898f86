#!/usr/bin/python3
"""Benchmark of ngx_pico_module's tunnels, in one run, on loopback and unix
sockets only:

  * raw relay throughput through a tunnel vs a direct connection to the
    same endpoint (bench/tunnel_load.c's server; a session record points at
    it, so the tunnel's code path is the one sandboxes get), up and down,
    with the nginx workers' CPU seconds per GiB;
  * CONNECT -> 200 latency (Redis lookup and endpoint connect included);
  * idle tunnels held at once (client sockets spread over processes, two
    nginx workers) and nginx's memory per idle tunnel (RSS delta / count).

Writes a markdown table (--out). Bounded: a few GiB moved, a fixed count
of tunnels."""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from pico_stack import Stack, wait_for  # noqa: E402

LOAD = os.path.join(ROOT, "build", "bench", "tunnel_load")
GIB = 1 << 30
CLK = os.sysconf("SC_CLK_TCK")


def worker_pids(stack):
    out = subprocess.run(["pgrep", "-P", str(stack.nginx.pid)],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def transfer(direction, nbytes, target):
    out = subprocess.run([LOAD, direction, str(nbytes), target],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError("%s %s: %s" % (direction, target, out.stderr))
    return float(out.stdout.strip())


def throughput(stack, endpoint_target, tunnel_target, nbytes, runs):
    """Median MiB/s direct and tunnelled, and worker CPU s/GiB."""
    rows = {}
    pids = worker_pids(stack)
    for direction in ("up", "down"):
        direct, tunnel, cpu = [], [], []
        for _ in range(runs):
            direct.append(nbytes / transfer(direction, nbytes, endpoint_target))
            c0 = cpu_seconds(pids)
            tunnel.append(nbytes / transfer(direction, nbytes, tunnel_target))
            cpu.append((cpu_seconds(pids) - c0) / (nbytes / GIB))
        rows[direction] = (statistics.median(direct) / (1 << 20),
                           statistics.median(tunnel) / (1 << 20),
                           statistics.median(cpu))
    return rows


def latency(target, count):
    out = subprocess.run([LOAD, "latency", str(count), target],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    us = sorted(float(x) for x in out.stdout.split())
    return us[len(us) // 2], us[min(len(us) - 1, int(len(us) * 0.99))]


def hold(stack, target, total, procs):
    """Opens total idle tunnels from procs client processes; returns
    (opened, RSS delta KiB per tunnel)."""
    pids = worker_pids(stack)
    before = rss_kib(pids)
    clients = []
    per = total // procs
    for _ in range(procs):
        clients.append(subprocess.Popen([LOAD, "hold", str(per), target],
                                        stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE))
    opened = 0
    for c in clients:
        line = c.stdout.readline().decode().split()
        opened += int(line[1]) if len(line) == 2 else 0
    time.sleep(1)
    after = rss_kib(pids)
    for c in clients:
        c.stdin.close()
    for c in clients:
        c.wait(60)
    return opened, (after - before) / max(opened, 1)


def set_splice(stack, on):
    path = stack.conf_path("nginx.conf")
    with open(path) as f:
        text = f.read()
    text = text.replace("pico_splice on;", "").replace("pico_splice off;", "")
    text = text.replace("http {\n", "http {\n    pico_splice %s;\n"
                        % ("on" if on else "off"), 1)
    with open(path, "w") as f:
        f.write(text)
    old = set(worker_pids(stack))
    stack.reload_nginx()
    wait_for(lambda: len(set(worker_pids(stack)) - old) >= stack.workers
             and not (set(worker_pids(stack)) & old),
             timeout=30, what="reloaded workers")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench",
                                                  "tunnel.md"))
    ap.add_argument("--bytes", type=int, default=GIB)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency-count", type=int, default=2000)
    ap.add_argument("--idle", type=int, default=16000)
    ap.add_argument("--idle-procs", type=int, default=4)
    args = ap.parse_args()

    stack = Stack(name="bench-tunnel", workers=2)
    stack.configure()
    stack.start_redis()
    stack.start_nginx()
    servers = []
    try:
        sock = os.path.join(stack.var, "sessions", "load.sock")
        idle_sock = os.path.join(stack.var, "sessions", "idle.sock")
        port = stack.port + 1 if stack.port < 65000 else stack.port - 1
        tcp = "127.0.0.1:%d" % port
        for cmd in (["server", sock], ["server", tcp],
                    ["idle-server", idle_sock]):
            p = subprocess.Popen([LOAD] + cmd, stdout=subprocess.PIPE)
            assert p.stdout.readline().strip() == b"listening"
            servers.append(p)

        def record(endpoint):
            sid = str(uuid.uuid4())
            stack.redis_cli("HSET", "pico:session:" + sid, "session_id", sid,
                            "status", "running", "endpoint", endpoint)
            return "127.0.0.1:%d/%s" % (stack.port, sid)

        unix_tunnel = record("unix:" + sock)
        tcp_tunnel = record(tcp)
        idle_tunnel = record("unix:" + idle_sock)

        results = {}
        results["unix, pico_splice on"] = throughput(stack, "unix:" + sock,
                                             unix_tunnel, args.bytes,
                                             args.runs)
        results["tcp, pico_splice on"] = throughput(stack, "tcp:" + tcp, tcp_tunnel,
                                            args.bytes, args.runs)
        set_splice(stack, False)
        results["unix, pico_splice off"] = throughput(stack, "unix:" + sock, unix_tunnel,
                                           args.bytes, args.runs)
        results["tcp, pico_splice off"] = throughput(stack, "tcp:" + tcp, tcp_tunnel,
                                          args.bytes, args.runs)
        set_splice(stack, True)

        p50, p99 = latency(unix_tunnel, args.latency_count)
        opened, kib = hold(stack, idle_tunnel, args.idle, args.idle_procs)
    finally:
        for p in servers:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
        stack.stop_nginx()
        stack.stop_redis()

    lines = [
        "## Tunnels (ngx_pico_module, make bench-tunnel)",
        "",
        "%s, %d CPUs, load average %s at the end. %d MiB per transfer, "
        "median of %d; direct = the client connects to the endpoint itself, "
        "tunnel = TCP to nginx, CONNECT, relay to the same endpoint. CPU is "
        "the nginx workers' user+system time per GiB relayed. With "
        "pico_splice on (the default) directions reading TCP splice and "
        "directions reading a unix socket copy; off copies everything."
        % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           os.cpu_count(), os.getloadavg()[0], args.bytes >> 20, args.runs),
        "",
        "| endpoint, relay | dir | direct MiB/s | tunnel MiB/s | ratio | "
        "CPU s/GiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, rows in results.items():
        for d in ("up", "down"):
            direct, tunnel, cpu = rows[d]
            lines.append("| %s | %s | %.0f | %.0f | %.2f | %.2f |"
                         % (name, d, direct, tunnel, tunnel / direct, cpu))
    lines += [
        "",
        "| measure | value |",
        "|---|---:|",
        "| CONNECT -> 200 p50 (Redis lookup included) | %.0f us |" % p50,
        "| CONNECT -> 200 p99 | %.0f us |" % p99,
        "| idle tunnels held at once (asked %d, 2 workers) | %d |"
        % (args.idle, opened),
        "| nginx RSS per idle tunnel | %.1f KiB |" % kib,
        "",
    ]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
