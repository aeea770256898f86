#!/usr/bin/python3
"""Benchmark of ngx_pico_module's tunnels, in one run, on loopback and unix
sockets only:

  * raw relay throughput through a tunnel vs a direct connection to the
    same endpoint (bench/tunnel_load.c's server; a session record points at
    it, so the tunnel's code path is the one sandboxes get), up and down,
    with the nginx workers' CPU seconds per GiB;
  * CONNECT -> 200 latency (Redis lookup and endpoint connect included);
  * idle tunnels held at once (client sockets spread over processes, two
    nginx workers) and nginx's memory per idle tunnel (RSS delta / count);
  * reference proxies in the same run, to the same loopback TCP endpoint:
    nginx's stock stream proxy (its own nginx instance, same worker count
    and buffer size), squid and tinyproxy as CONNECT proxies (Debian's
    packages; `make bench-tunnel` installs them when missing, and a proxy
    that is not there is reported as such).

Writes a markdown table (--out). Bounded: a few GiB moved, a fixed count
of tunnels."""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from pico_stack import Stack, free_port, port_open, wait_for  # noqa: E402

LOAD = os.path.join(ROOT, "build", "bench", "tunnel_load")
STREAM_SO = "/usr/lib/nginx/modules/ngx_stream_module.so"
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


def write_report(path, lines):
    """The markdown section to path (scripts/bench-report.sh collects it),
    and to stdout."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def machine_busy():
    """CPU seconds the whole machine spent busy (all cores, /proc/stat):
    client, endpoint, relay and the kernel's softirq work together"""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK


def throughput(pids, endpoint_target, tunnel_target, nbytes, runs):
    """Median MiB/s direct and tunnelled, the CPU s/GiB of pids (the
    relaying processes), and the machine's busy CPU s/GiB direct and
    tunnelled."""
    rows = {}
    gib = nbytes / GIB
    for direction in ("up", "down"):
        direct, tunnel, cpu, mdirect, mtunnel = [], [], [], [], []
        for _ in range(runs):
            m0 = machine_busy()
            direct.append(nbytes / transfer(direction, nbytes, endpoint_target))
            mdirect.append((machine_busy() - m0) / gib)
            procs = pids()
            c0 = cpu_seconds(procs)
            m0 = machine_busy()
            tunnel.append(nbytes / transfer(direction, nbytes, tunnel_target))
            mtunnel.append((machine_busy() - m0) / gib)
            cpu.append((cpu_seconds(procs) - c0) / gib)
        rows[direction] = (statistics.median(direct) / (1 << 20),
                           statistics.median(tunnel) / (1 << 20),
                           statistics.median(cpu),
                           statistics.median(mdirect),
                           statistics.median(mtunnel))
    return rows


def latency_samples(args):
    """CONNECT -> 200 microseconds, sorted, from tunnel_load ARGS."""
    out = subprocess.run([LOAD] + args, capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return sorted(float(x) for x in out.stdout.split())


def p50_p99(us):
    return us[len(us) // 2], us[min(len(us) - 1, int(len(us) * 0.99))]


# Samples of each CONNECT latency distribution of the run, for the plot.
SAMPLES = {}


def latency(target, count, name=None):
    us = latency_samples(["latency", str(count), target])
    if name:
        SAMPLES[name] = us
    return p50_p99(us)


def cache_counts(stack, sids):
    """(hits, misses) of the module's cache ($pico_cache in the access
    log) over the tunnels to sids: that warm CONNECTs were answered from
    the cache and cold ones by Redis."""
    want = set(sids)
    hits = misses = 0
    with open(os.path.join(stack.var, "log", "nginx-access.log")) as f:
        for line in f:
            m = re.search(r"session=(\S+) .*cache=(\S+)", line)
            if m and m.group(1) in want:
                hits += m.group(2) == "hit"
                misses += m.group(2) == "miss"
    return hits, misses


def plot_latency(path):
    """A CDF of every latency distribution of the run (gnuplot, Debian's
    gnuplot-nox) into path; a line saying why when it cannot."""
    if not shutil.which("gnuplot"):
        return "no plot: gnuplot is not installed (apt-get install gnuplot-nox)"
    d = os.path.join(ROOT, "build", "bench")
    plots = []
    for name, us in SAMPLES.items():
        f = os.path.join(d, "latency-%s.txt" % re.sub(r"[^a-z0-9]+", "-", name.lower()))
        with open(f, "w") as out:
            out.write("\n".join("%.1f %.6f" % (v, (i + 1) / len(us))
                                 for i, v in enumerate(us)) + "\n")
        plots.append("'%s' using 1:2 with lines lw 2 title '%s'" % (f, name))
    script = ("set terminal pngcairo size 900,500 font 'sans,10'\n"
              "set output '%s'\nset logscale x\nset grid\n"
              "set xlabel 'CONNECT -> 200, microseconds (log scale)'\n"
              "set ylabel 'fraction of CONNECTs'\nset key bottom right\n"
              "set title 'CONNECT latency, one run of make bench-tunnel'\n"
              "plot %s\n" % (path, ", ".join(plots)))
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        return "no plot: gnuplot failed: %s" % r.stderr.strip()
    return None


def start_hold(count, target, source):
    """One tunnel_load hold process; returns (process, (opened, refused
    with 503, other failures)) once it has tried all count, tunnels held."""
    c = subprocess.Popen([LOAD, "hold", str(count), target, source],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    line = c.stdout.readline().decode().split()
    if len(line) == 4:
        return c, tuple(int(x) for x in line[1:])
    return c, (0, 0, count)


def stop_holds(clients):
    for c in clients:
        c.stdin.close()
    for c in clients:
        c.wait(120)


def hold(stack, targets, total, procs, clients):
    """Tries total idle tunnels from procs client processes at once, each
    from its own loopback address (127.0.0.2, ...: one range of ephemeral
    ports each) and to its own endpoint (targets[i]: no process near the
    20,000 open files); they stay held (clients); returns (opened, refused
    with 503, other failures, nginx RSS delta KiB per opened tunnel)."""
    pids = worker_pids(stack)
    before = rss_kib(pids)
    per = -(-total // procs)
    started = []
    for i in range(procs):
        started.append(subprocess.Popen(
            [LOAD, "hold", str(per), targets[i % len(targets)],
             "127.0.0.%d" % (2 + i)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL))
    clients.extend(started)
    opened = refused = other = 0
    for c in started:
        line = c.stdout.readline().decode().split()
        if len(line) == 4:
            opened += int(line[1])
            refused += int(line[2])
            other += int(line[3])
        else:
            other += per
    time.sleep(1)
    after = rss_kib(pids)
    return opened, refused, other, (after - before) / max(opened, 1)


def idle_tunnels(args):
    """The tunnels-held measure on a stack of its own, configured as `make
    run` is (args.idle_workers workers, the default pico_max_tunnels), then
    what happens at the limit: the slots left free by uneven spreading over
    the workers are filled, and 100 more CONNECTs are tried with every
    worker at its limit."""
    stack = Stack(name="bench-idle", workers=args.idle_workers)
    stack.configure()
    stack.start_redis()
    stack.start_nginx()
    servers, targets, clients = [], [], []
    try:
        for i in range(args.idle_procs):
            path = os.path.join(stack.var, "sessions", "idle%d.sock" % i)
            p = subprocess.Popen([LOAD, "idle-server", path],
                                 stdout=subprocess.PIPE)
            assert p.stdout.readline().strip() == b"listening"
            servers.append(p)
            sid = str(uuid.uuid4())
            stack.redis_cli("HSET", "pico:session:" + sid, "session_id", sid,
                            "status", "running", "endpoint", "unix:" + path)
            targets.append("127.0.0.1:%d/%s" % (stack.port, sid))
        errlog = os.path.join(stack.var, "log", "nginx-error.log")
        with open(errlog) as f:
            limits = re.findall(r"pico_max_tunnels (\d+) in this worker",
                                f.read())
        capacity = sum(int(x) for x in limits)
        t0 = time.monotonic()
        opened, refused, other, kib = hold(stack, targets, args.idle,
                                           args.idle_procs, clients)
        seconds = time.monotonic() - t0
        source = "127.0.0.%d" % (2 + args.idle_procs)
        full, tried = opened, 0
        for _ in range(20):  # accepts do not spread evenly: a few rounds
            c, got = start_hold(max(capacity - full, 0) + 200, targets[0],
                                source)
            clients.append(c)
            full += got[0]
            tried += sum(got)
            if got[0] == 0:
                break
        c, probe = start_hold(100, targets[-1], source)
        clients.append(c)
        with open(errlog) as f:
            log = f.read()
    finally:
        stop_holds(clients)
        for p in servers:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
        stack.stop_nginx()
        stack.stop_redis()
    return {"opened": opened, "refused": refused, "other": other,
            "kib": kib, "seconds": seconds, "capacity": capacity,
            "workers": len(limits), "full": full, "fill": tried,
            "probe": probe,
            "reusing": log.count("worker_connections are not enough"),
            "limit_logged": log.count("pico_max_tunnels (")}


def tree_pids(pid):
    """pid and its children: a proxy's master and workers"""
    out = subprocess.run(["pgrep", "-P", str(pid)],
                         capture_output=True, text=True).stdout
    return [pid] + [int(p) for p in out.split()]


class RefProxy:
    """One reference proxy process, started and stopped by this run."""

    def __init__(self, name, cmd, port, folder):
        self.name = name
        self.port = port
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(folder, "stderr.log"), "ab"))
        wait_for(lambda: port_open(port) or self.proc.poll() is not None,
                 timeout=30, what=name + " port")
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited (%s)" % (name, folder))
        time.sleep(0.3)  # workers forked

    def pids(self):
        return tree_pids(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def ref_folder(stack, name):
    d = os.path.join(stack.var, "ref", name)
    os.makedirs(d, exist_ok=True)
    # squid and tinyproxy drop root for an unprivileged user that must
    # write its logs and pid file here
    os.chmod(os.path.join(stack.var, "ref"), 0o755)
    os.chmod(d, 0o777)
    return d


def stack_buffer_size(stack):
    """pico_buffer_size of the stack's nginx.conf, for the stream proxy"""
    with open(stack.conf_path("nginx.conf")) as f:
        for line in f:
            words = line.split()
            if words and words[0] == "pico_buffer_size":
                return words[1].rstrip(";")
    return "256k"


def start_stream(stack, tcp, port, workers, buffer_size):
    """nginx's stock stream proxy: its own nginx instance"""
    d = ref_folder(stack, "nginx-stream")
    with open(stack.conf_path("nginx.conf")) as f:
        user = [l for l in f if l.startswith("user ")]
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("load_module %s;\n%s"
                "worker_processes %d;\nworker_rlimit_nofile 20000;\n"
                "pid %s/nginx.pid;\nerror_log %s/error.log;\ndaemon off;\n"
                "events { worker_connections 4096; }\n"
                "stream {\n    proxy_buffer_size %s;\n"
                "    server { listen 127.0.0.1:%d; proxy_pass %s; }\n}\n"
                % (STREAM_SO, "".join(user), workers, d, d, buffer_size,
                   port, tcp))
    return RefProxy("nginx stream", ["nginx", "-p", d, "-c", conf, "-e",
                                     os.path.join(d, "error.log")], port, d)


def start_squid(stack, port):
    d = ref_folder(stack, "squid")
    conf = os.path.join(d, "squid.conf")
    with open(conf, "w") as f:
        f.write("http_port 127.0.0.1:%d\n"
                "http_access allow localhost\nhttp_access deny all\n"
                "cache deny all\ncache_mem 8 MB\naccess_log none\n"
                "cache_log %s/cache.log\npid_filename %s/squid.pid\n"
                "coredump_dir %s\nshutdown_lifetime 0 seconds\n"
                "max_filedescriptors 4096\n" % (port, d, d, d))
    return RefProxy("squid", ["squid", "-N", "-f", conf], port, d)


def start_tinyproxy(stack, port):
    d = ref_folder(stack, "tinyproxy")
    conf = os.path.join(d, "tinyproxy.conf")
    with open(conf, "w") as f:
        f.write("Port %d\nListen 127.0.0.1\nTimeout 600\nMaxClients 256\n"
                "Allow 127.0.0.1\nPidFile \"%s/tinyproxy.pid\"\n"
                "LogFile \"%s/tinyproxy.log\"\nLogLevel Critical\n"
                % (port, d, d))
        if os.geteuid() == 0:
            f.write("User nobody\nGroup nogroup\n")
    return RefProxy("tinyproxy", ["tinyproxy", "-d", "-c", conf], port, d)


def references(stack, tcp, args):
    """Throughput (and CONNECT latency) of the reference proxies to the
    TCP endpoint; a proxy that is missing or fails is a row saying so."""
    rows = {}
    starts = [
        ("nginx stream proxy", STREAM_SO, False,
         lambda p: start_stream(stack, tcp, p, stack.workers,
                                stack_buffer_size(stack))),
        ("squid (CONNECT)", "/usr/sbin/squid", True,
         lambda p: start_squid(stack, p)),
        ("tinyproxy (CONNECT)", "/usr/bin/tinyproxy", True,
         lambda p: start_tinyproxy(stack, p)),
    ]
    for name, path, connect, start in starts:
        if not os.path.exists(path):
            rows[name] = "not installed (%s missing)" % path
            continue
        port = free_port()
        try:
            proxy = start(port)
        except (RuntimeError, TimeoutError) as e:
            rows[name] = "did not start: %s" % e
            continue
        try:
            target = ("proxy:127.0.0.1:%d/%s" % (port, tcp) if connect
                      else "tcp:127.0.0.1:%d" % port)
            tp = throughput(proxy.pids, "tcp:" + tcp, target, args.bytes,
                            args.runs)
            lat = (latency(target, args.latency_count, name.split()[0])
                   if connect else None)
            rows[name] = (tp, lat)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            rows[name] = "failed: %s" % e
        finally:
            proxy.stop()
    return rows


def reference_table(pico, pico_lat, refs, cold_lat, caches):
    cache_note = ("pico warm: one session again and again, answered by the "
                  "workers' session cache (%d hits, %d misses: each "
                  "worker's first lookup and each pico_cache_max_age); "
                  "cold: the first CONNECT to each of %d sessions, every one "
                  "a Redis lookup (%d hits, %d misses)."
                  % (caches[0] + (sum(caches[1]),) + caches[1]))
    lines = [
        "### Against reference proxies (same run, loopback TCP endpoint)",
        "",
        "Each proxy relays to the same tunnel_load endpoint on 127.0.0.1; "
        "ratio = proxy / direct, direct measured next to each proxy's runs. "
        "CPU is the proxy's processes' user+system time per GiB (nginx: "
        "master and workers; squid -N and tinyproxy -d: one process, all "
        "its threads). CONNECT -> 200 includes the proxy's connect to the "
        "endpoint (pico's cold ones also its Redis lookup); the stream proxy has no "
        "CONNECT. Stream proxy: as many workers as pico's nginx, "
        "proxy_buffer_size = pico_buffer_size; squid and tinyproxy: "
        "Debian's builds, default buffers.",
        "",
        cache_note,
        "",
        "| proxy | up MiB/s | up ratio | down MiB/s | down ratio | "
        "CPU s/GiB up/down | CONNECT->200 p50/p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    cold = ("; cold (first CONNECT to each session) %.0f / %.0f us"
            % cold_lat)

    def row(name, tp, lat):
        (du, tu, cu), (dd, td, cd) = tp["up"][:3], tp["down"][:3]
        lines.append("| %s | %.0f | %.2f | %.0f | %.2f | %.2f / %.2f | %s |"
                     % (name, tu, tu / du, td, td / dd, cu, cd,
                        "%.0f / %.0f us" % lat if lat else "-"))

    row("pico tunnel (ngx_pico_module)", pico, pico_lat)
    lines[-1] = lines[-1].replace(" | %.0f / %.0f us |" % pico_lat,
                                  " | warm %.0f / %.0f us%s |"
                                  % (pico_lat + (cold,)))
    for name, r in refs.items():
        if isinstance(r, str):
            lines.append("| %s | %s | | | | | |" % (name, r))
        else:
            row(name, r[0], r[1])
    lines.append("")
    return lines


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


def idle_lines(args, idle):
    return [
        "Idle tunnels: a stack of its own as `make run` configures it (%d "
        "workers, default pico_max_tunnels: %d in all); %d tunnels tried "
        "from %d client processes (one loopback source address and one "
        "endpoint each), all held at once. Then the slots the uneven "
        "spreading over the workers left free are filled (%d tried), and "
        "100 more CONNECTs are tried with every worker at its limit."
        % (idle["workers"], idle["capacity"], args.idle, args.idle_procs,
           idle["fill"]),
        "",
        "| measure | value |",
        "|---|---:|",
        "| idle tunnels held at once | %d |" % idle["opened"],
        "| of the %d tried: `503 Too many tunnels` / closed without an "
        "answer, other status or connect failed | %d / %d |"
        % (args.idle, idle["refused"], idle["other"]),
        "| nginx RSS per idle tunnel | %.1f KiB |" % idle["kib"],
        "| seconds to try them all | %.1f |" % idle["seconds"],
        "| held after filling the free slots (limit %d) | %d |"
        % (idle["capacity"], idle["full"]),
        "| then 100 more: 200 / `503 Too many tunnels` / anything else | "
        "%d / %d / %d |" % idle["probe"],
        "| error log: pico_max_tunnels reached / \"worker_connections are "
        "not enough\" | %d / %d |"
        % (idle["limit_logged"], idle["reusing"]),
        "",
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench",
                                                  "tunnel.md"))
    ap.add_argument("--bytes", type=int, default=GIB)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--latency-count", type=int, default=2000)
    ap.add_argument("--cold-count", type=int, default=500,
                    help="sessions for the first-CONNECT (cold) latency")
    ap.add_argument("--plot", default=os.path.join(ROOT, "docs",
                                                   "connect-latency.png"))
    # more than the 3 workers' default limit (3 x 8874): what happens at
    # the limit is part of the measure
    ap.add_argument("--idle", type=int, default=28000)
    ap.add_argument("--idle-procs", type=int, default=8)
    ap.add_argument("--idle-workers", type=int, default=3)
    ap.add_argument("--idle-only", action="store_true",
                    help="only the idle tunnels held at once")
    ap.add_argument("--no-references", dest="references",
                    action="store_false",
                    help="skip nginx stream, squid and tinyproxy")
    args = ap.parse_args()

    if args.idle_only:
        idle = idle_tunnels(args)
        lines = ["## Idle tunnels (bench/tunnel.py --idle-only)", ""]
        lines += idle_lines(args, idle)
        print("\n".join(lines))
        return

    stack = Stack(name="bench-tunnel", workers=2)
    stack.configure()
    stack.start_redis()
    stack.start_nginx()
    servers = []
    try:
        sock = os.path.join(stack.var, "sessions", "load.sock")
        port = free_port()
        tcp = "127.0.0.1:%d" % port
        for cmd in (["server", sock], ["server", tcp]):
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

        def nginx_pids():
            return worker_pids(stack)

        results = {}
        results["unix, pico_splice on"] = throughput(nginx_pids, "unix:" + sock,
                                             unix_tunnel, args.bytes,
                                             args.runs)
        results["tcp, pico_splice on"] = throughput(nginx_pids, "tcp:" + tcp, tcp_tunnel,
                                            args.bytes, args.runs)
        set_splice(stack, False)
        results["unix, pico_splice off"] = throughput(nginx_pids, "unix:" + sock, unix_tunnel,
                                           args.bytes, args.runs)
        results["tcp, pico_splice off"] = throughput(nginx_pids, "tcp:" + tcp, tcp_tunnel,
                                          args.bytes, args.runs)
        set_splice(stack, True)

        p50, p99 = latency(unix_tunnel, args.latency_count)
        tcp_lat = latency(tcp_tunnel, args.latency_count, "pico warm")
        # cold: the first CONNECT to each of many sessions
        cold_targets = [record(tcp) for _ in range(args.cold_count)]
        cold = latency_samples(["latency-each"] + cold_targets)
        SAMPLES["pico cold"] = cold
        cold_lat = p50_p99(cold)
        # the tunnels' access-log lines are written as they close
        time.sleep(0.5)
        warm_cache = cache_counts(stack, [tcp_tunnel.rsplit("/", 1)[1]])
        cold_cache = cache_counts(stack, [t.rsplit("/", 1)[1]
                                          for t in cold_targets])
        if cold_cache[0] or warm_cache[0] < warm_cache[1]:
            raise RuntimeError("pico cache: warm %d hits / %d misses, cold "
                               "%d hits / %d misses" % (warm_cache + cold_cache))
        refs = references(stack, tcp, args) if args.references else {}
    finally:
        for p in servers:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
        stack.stop_nginx()
        stack.stop_redis()
    idle = idle_tunnels(args)

    lines = [
        "## Tunnels (ngx_pico_module, make bench-tunnel)",
        "",
        "Command: `make bench-tunnel`, which runs `%s`."
        % " ".join(["/usr/bin/python3", "bench/tunnel.py"] + sys.argv[1:]),
        "",
        "%s, %d CPUs, load average %s at the end. %d MiB per transfer, "
        "median of %d; direct = the client connects to the endpoint itself, "
        "tunnel = TCP to nginx, CONNECT, relay to the same endpoint. CPU is "
        "the nginx workers' user+system time per GiB relayed; machine CPU "
        "is every core's busy time (client, endpoint, nginx, kernel) per "
        "GiB moved, direct and through the tunnel (it counts everything "
        "running, other load included). With pico_splice on (the "
        "default) only the direction from TCP into a unix socket splices "
        "(client -> sandbox of a unix endpoint); the other directions "
        "copy, and off copies everything, so the tcp rows on and off run "
        "the same code: their difference is this machine's noise."
        % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           os.cpu_count(), os.getloadavg()[0], args.bytes >> 20, args.runs),
        "",
        "| endpoint, relay | dir | direct MiB/s | tunnel MiB/s | ratio | "
        "nginx CPU s/GiB | machine CPU s/GiB direct / tunnel |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, rows in results.items():
        for d in ("up", "down"):
            direct, tunnel, cpu, mdirect, mtunnel = rows[d]
            lines.append("| %s | %s | %.0f | %.0f | %.2f | %.2f | "
                         "%.2f / %.2f |"
                         % (name, d, direct, tunnel, tunnel / direct, cpu,
                            mdirect, mtunnel))
    lines += [
        "",
        "| measure | value |",
        "|---|---:|",
        "| CONNECT -> 200 p50 (unix endpoint, warm: session cache; cold below) | %.0f us |" % p50,
        "| CONNECT -> 200 p99 | %.0f us |" % p99,
        "",
    ]
    lines += idle_lines(args, idle)
    tcp_rows = results["tcp, pico_splice on"]
    direct_cpu = sum(tcp_rows[d][3] for d in ("up", "down"))
    # /proc/stat counts in ticks: tiny --bytes runs can read 0 for direct
    cost = ("%.1fx" % (sum(tcp_rows[d][4] for d in ("up", "down")) / direct_cpu)
            if direct_cpu else "(too little moved to tell)")
    lines += [
        "Reading it: a GiB through the tunnel cost the machine %s (TCP "
        "endpoint) the CPU of a direct GiB: three processes and two trips "
        "through the socket layer instead of two and one, on %d shared "
        "cores; the stock stream proxy below pays the same. What was tried "
        "to move the ratio (buffer and pipe sizes, splice vs copy per "
        "direction, SPLICE_F_MORE, draining per event) and why 0.9x is out "
        "of reach here: docs/nginx-module.md, \"Throughput: what was "
        "tried\"."
        % (cost, os.cpu_count()),
        "",
    ]
    if refs:
        lines += reference_table(tcp_rows, tcp_lat, refs, cold_lat,
                                 (warm_cache, cold_cache))
    why = plot_latency(args.plot)
    lines += [why or "CONNECT latency distributions of this run (pico warm: "
              "one session again and again; pico cold: the first CONNECT "
              "to each of %d sessions; TCP endpoint for all): "
              "![CONNECT latency](%s)" % (args.cold_count,
                                          os.path.relpath(args.plot, os.path.join(ROOT, "docs"))),
              ""]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
