#!/usr/bin/python3
"""SSH throughput through a pico tunnel vs straight to the sandbox, in one
run on a real stack (tests/e2e/pico_stack.py: redis, pico-backend, nginx
with ngx_pico_module, one runc sandbox with its sshd):

  * OpenSSH bulk transfers with a key login: up = `ssh ... 'cat >
    /dev/null'` fed N MiB of zeros from a pipe, down = `ssh ... 'head -c N
    /dev/zero'` spliced to /dev/null; each direct (the sandbox's endpoint
    unix socket) and through the tunnel (TCP to nginx, CONNECT with the
    stack's token), median MiB/s of a few runs, per cipher;
  * the nginx workers' CPU seconds per GiB tunnelled;
  * the time of one `ssh ... true` (connect, key exchange, login, command).

Both paths hand ssh a connected socket through `ProxyCommand` with
`ProxyUseFdpass=yes` (bench/fdpass.py), so no relay process of the client's
sits in either. A transfer is timed from the moment ssh starts reading its
stdin (up) or the first byte arrives (down) to the end, so the login is not
in the throughput. Targets only unix sockets and 127.0.0.1; bounded by
--budget seconds. Writes a markdown section (--out)."""

import argparse
import os
import re
import select
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from pico_stack import Stack  # noqa: E402
from tunnel import (cpu_seconds, machine_busy, worker_pids,  # noqa: E402
                    write_report)

FDPASS = os.path.join(ROOT, "bench", "fdpass.py")
PYTHON = "/usr/bin/python3"
MIB = 1 << 20
GIB = 1 << 30
CHUNK = MIB
PREFERRED_EXTRA = "aes128-gcm@openssh.com"


class Budget:
    """The run's time limit; each step asks how long it may still take."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def left(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("time budget used up")
        return left


# -- ssh command lines -----------------------------------------------------

def proxy_command(stack, sid, direct):
    """fdpass.py's command line: the endpoint socket, or nginx's port."""
    if direct:
        ep = stack.redis_cli("HGET", "pico:session:" + sid, "endpoint")
        if not ep.startswith("unix:"):
            raise RuntimeError("endpoint is not a unix socket: %r" % ep)
        args = [ep]
    else:
        args = ["tcp:127.0.0.1:%d" % stack.port,
                "/v1/sessions/%s/tunnel" % sid]
    return " ".join(shlex.quote(a) for a in [PYTHON, "-S", FDPASS] + args)


def ssh_argv(key, proxy, cipher=None, verbose=False):
    argv = ["ssh", "-F", "/dev/null", "-T", "-x",
            "-i", key, "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "Compression=no",
            "-o", "ConnectTimeout=10",
            "-o", "ProxyUseFdpass=yes", "-o", "ProxyCommand=" + proxy,
            "-o", "LogLevel=" + ("DEBUG2" if verbose else "ERROR")]
    if cipher:
        argv += ["-c", cipher]
    return argv + ["sandbox@pico-sandbox"]


def ssh_env(token):
    env = dict(os.environ)
    env.pop("PICO_TOKEN", None)
    if token:
        env["PICO_TOKEN"] = token
    return env


# -- what the sandbox's sshd offers ----------------------------------------

def probe_ciphers(argv, env):
    """(ciphers sshd offers, cipher ssh and sshd agree on by default,
    sshd's version), from the debug log of one `ssh -vv true`."""
    out = subprocess.run(argv + ["true"], env=env, capture_output=True,
                         text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError("ssh true: %s" % out.stderr[-2000:])
    log = out.stderr
    server = log.split("peer server KEXINIT proposal", 1)[-1]
    offered = re.search(r"ciphers ctos: (\S+)", server)
    chosen = re.search(r"kex: client->server cipher: (\S+)", log)
    version = re.search(r"remote software version (\S+)", log)
    if not offered or not chosen or not version:
        raise RuntimeError("no cipher or version lines in ssh -vv's log")
    return offered.group(1).split(","), chosen.group(1), version.group(1)


# -- one transfer -------------------------------------------------------------

class Clock:
    """Wall time and the machine's busy CPU time of one transfer."""

    def start(self):
        self.t0, self.m0 = time.perf_counter(), machine_busy()

    def stop(self):
        """(seconds, busy cores on average)"""
        t = time.perf_counter() - self.t0
        return t, (machine_busy() - self.m0) / t


def wait_fd(fd, events, budget):
    p = select.poll()
    p.register(fd, events)
    if not p.poll(budget.left() * 1000):
        raise TimeoutError("time budget used up in a transfer")


def prefill(w, nbytes):
    """Fills the (non-blocking) pipe before ssh reads it, with at most
    nbytes; bytes written."""
    zeros = memoryview(bytes(min(CHUNK, nbytes)))
    n = 0
    try:
        while n < nbytes:
            n += os.write(w, zeros[:nbytes - n])
    except BlockingIOError:
        pass
    return n


def feed(w, left, budget):
    """Writes left more zero bytes into the non-blocking pipe w."""
    zeros = memoryview(bytes(CHUNK))
    while left > 0:
        wait_fd(w, select.POLLOUT, budget)
        try:
            left -= os.write(w, zeros[:min(CHUNK, left)])
        except BlockingIOError:
            pass


def stop(p):
    """Ends an ssh this run started (a transfer that failed or ran out of time)."""
    if p.poll() is None:
        p.kill()
    p.communicate()


def finish(p, budget, what):
    try:
        _, err = p.communicate(timeout=budget.left())
    except (subprocess.TimeoutExpired, TimeoutError):
        stop(p)
        raise
    if p.returncode != 0:
        raise RuntimeError("%s: ssh exited %d: %s"
                           % (what, p.returncode, err.decode(errors="replace")[-2000:]))


def upstream(argv, env, nbytes, budget):
    """(seconds, busy cores) to send nbytes through `cat > /dev/null`, from
    the moment ssh first reads its stdin (the pipe was full until then)."""
    r, w = os.pipe()
    p = subprocess.Popen(argv + ["cat > /dev/null"], stdin=r,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=env)
    os.close(r)
    clock = None
    try:
        os.set_blocking(w, False)
        sent = prefill(w, nbytes)
        wait_fd(w, select.POLLOUT, budget)
        clock = Clock()
        clock.start()
        feed(w, nbytes - sent, budget)
    except BrokenPipeError:
        pass  # ssh is gone: finish() says why
    except BaseException:
        stop(p)
        raise
    finally:
        os.close(w)
    finish(p, budget, "up")
    if clock is None:
        raise RuntimeError("up: ssh exited without reading its input")
    return clock.stop()


def drain(r, devnull, clock, budget):
    """Splices the pipe r to /dev/null until EOF, clock started at the
    first byte; returns the byte count."""
    total = 0
    wait_fd(r, select.POLLIN, budget)
    clock.start()
    while True:
        n = os.splice(r, devnull, CHUNK)
        if n == 0:
            return total
        total += n
        wait_fd(r, select.POLLIN, budget)


def downstream(argv, env, nbytes, budget):
    """(seconds, busy cores) to receive nbytes of `head -c N /dev/zero`,
    from the first byte on."""
    r, w = os.pipe()
    p = subprocess.Popen(argv + ["head -c %d /dev/zero" % nbytes],
                         stdin=subprocess.DEVNULL, stdout=w,
                         stderr=subprocess.PIPE, env=env)
    os.close(w)
    devnull = os.open("/dev/null", os.O_WRONLY)
    clock = Clock()
    try:
        got = drain(r, devnull, clock, budget)
        took = clock.stop()
    except BaseException:
        stop(p)
        raise
    finally:
        os.close(r)
        os.close(devnull)
    finish(p, budget, "down")
    if got != nbytes:
        raise RuntimeError("down: got %d bytes of %d" % (got, nbytes))
    return took


def login_seconds(argv, env, budget):
    t0 = time.perf_counter()
    out = subprocess.run(argv + ["true"], env=env, capture_output=True,
                         timeout=budget.left())
    if out.returncode != 0:
        raise RuntimeError("ssh true: %s" % out.stderr.decode(errors="replace"))
    return time.perf_counter() - t0


# -- the measures ----------------------------------------------------------------

def throughput(stack, paths, env, cipher, args, budget):
    """{direction: (direct MiB/s, tunnel MiB/s, nginx CPU s/GiB, busy cores
    direct, busy cores tunnel)}, medians; direct and tunnel runs
    alternate, so drift on the machine hits both."""
    nbytes = args.mib * MIB
    rows = {}
    for name, run in (("up", upstream), ("down", downstream)):
        runs = {"direct": [], "tunnel": [], "cpu": []}
        for _ in range(args.runs):
            runs["direct"].append(run(ssh_argv(args.key, paths["direct"], cipher),
                                      env, nbytes, budget))
            pids = worker_pids(stack)
            c0 = cpu_seconds(pids)
            runs["tunnel"].append(run(ssh_argv(args.key, paths["tunnel"], cipher),
                                      env, nbytes, budget))
            runs["cpu"].append((cpu_seconds(pids) - c0) / (nbytes / GIB))
        med = statistics.median
        rows[name] = (med(nbytes / MIB / t for t, _ in runs["direct"]),
                      med(nbytes / MIB / t for t, _ in runs["tunnel"]),
                      med(runs["cpu"]),
                      med(b for _, b in runs["direct"]),
                      med(b for _, b in runs["tunnel"]))
    return rows


def logins(paths, env, args, budget):
    """Median seconds of `ssh ... true`, direct and tunnelled."""
    out = {}
    for path in ("direct", "tunnel"):
        out[path] = statistics.median(
            login_seconds(ssh_argv(args.key, paths[path]), env, budget)
            for _ in range(args.runs))
    return out


def make_key(folder):
    key = os.path.join(folder, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                    "bench-ssh", "-f", key], check=True)
    with open(key + ".pub") as f:
        return key, f.read().strip()


def create_session(stack, token, pub, args):
    fields = {"ttl": 600, "ssh_public_key": pub}
    if args.cpu_millicores:
        fields["resources"] = {"cpu_millicores": args.cpu_millicores}
    if args.isolation:
        fields["isolation"] = args.isolation
    sess = stack.create(token=token, **fields)
    sid = sess["session_id"]
    cpu = stack.redis_cli("HGET", "pico:session:" + sid, "cpu_millicores")
    return sid, cpu


def run_bench(stack, args, budget):
    """Everything measured on a started stack; returns the results."""
    token = stack.make_token("bench-ssh") if stack.auth else None
    env = ssh_env(token)
    keydir = tempfile.mkdtemp(prefix="ssh-key-", dir=stack.var)
    sid = None
    try:
        args.key, pub = make_key(keydir)
        sid, cpu = create_session(stack, token, pub, args)
        paths = {"direct": proxy_command(stack, sid, True),
                 "tunnel": proxy_command(stack, sid, False)}
        offered, default, sshd = probe_ciphers(
            ssh_argv(args.key, paths["tunnel"], verbose=True), env)
        ciphers = pick_ciphers(args.ciphers, offered, default)
        res = {"offered": offered, "default": default, "cpu": cpu,
               "sshd": sshd,
               "sid": sid, "logins": logins(paths, env, args, budget),
               "rows": {}}
        for c in ciphers:
            res["rows"][c] = throughput(stack, paths, env, c, args, budget)
        status = stack.delete(sid, token=token).status
        sid = None
        if status != 200:
            raise RuntimeError("DELETE answered %d" % status)
        return res
    finally:
        if sid is not None:
            stack.delete(sid, token=token)
        shutil.rmtree(keydir, ignore_errors=True)


def pick_ciphers(wanted, offered, default):
    """The default cipher, and aes128-gcm when sshd offers it (or --ciphers)."""
    if wanted:
        names = wanted.split(",")
        missing = [c for c in names if c not in offered]
        if missing:
            raise RuntimeError("sshd does not offer %s" % ",".join(missing))
        return names
    names = [default]
    if PREFERRED_EXTRA in offered and PREFERRED_EXTRA != default:
        names.append(PREFERRED_EXTRA)
    return names


# -- report ---------------------------------------------------------------------

def setup_text(res, args, load0):
    """The paragraph saying what ran, on what, and how it was timed."""
    return (
        "%s, %d CPUs, load average %.2f at the start and %.2f at the end. "
        "One %s sandbox (`cpu_millicores` %s) on a stack of its own (auth "
        "%s, %d nginx workers); client %s, sandbox sshd %s, ed25519 key. "
        "%d MiB per transfer, median of %d. Up: `ssh ... 'cat > /dev/null'` "
        "fed from a pipe; down: `ssh ... 'head -c %d /dev/zero'` spliced to "
        "/dev/null; timed from ssh's first read of its stdin (up) or the "
        "first byte (down) to the end, so the login is not in the rate. "
        "Direct = ssh to the sandbox's endpoint unix socket; tunnel = TCP "
        "to nginx, CONNECT; both through `ProxyCommand` with "
        "`ProxyUseFdpass=yes` (bench/fdpass.py connects and hands the "
        "socket to ssh), so no relay process of the client's is in either "
        "path. sshd offers %s; the default is `%s`. nginx CPU is the "
        "workers' user+system time per GiB tunnelled."
        % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           os.cpu_count(), load0, os.getloadavg()[0],
           args.isolation or "runc", res["cpu"],
           "on" if args.auth else "off", args.workers, ssh_version(),
           res["sshd"], args.mib, args.runs, args.mib * MIB,
           ", ".join("`%s`" % c for c in res["offered"]), res["default"]))


def table(res):
    lines = ["| cipher | direction | direct MiB/s | tunnel MiB/s | ratio | "
             "nginx CPU s/GiB |",
             "|---|---|---:|---:|---:|---:|"]
    for cipher, rows in res["rows"].items():
        for d in ("up", "down"):
            direct, tunnel, cpu = rows[d][:3]
            lines.append("| %s | %s | %.0f | %.0f | %.2f | %.2f |"
                         % (cipher, d, direct, tunnel, tunnel / direct, cpu))
    return lines


def report(res, args, load0, left):
    cmd = " ".join(["/usr/bin/python3", "bench/ssh.py"] + sys.argv[1:])
    lg = res["logins"]
    return [
        "## SSH through a tunnel (OpenSSH, make bench-ssh, isolation %s)"
        % (args.isolation or "runc"),
        "",
        "Command: `make bench-ssh`, which runs `%s`." % cmd,
        "",
        setup_text(res, args, load0),
        "",
    ] + table(res) + [
        "",
        "`ssh ... true` (connect, key exchange, key login, command; "
        "ProxyCommand's Python start included), median: %.0f ms direct, "
        "%.0f ms through the tunnel. Whole run: %.0f s of a %d s budget."
        % (lg["direct"] * 1000, lg["tunnel"] * 1000, args.budget - left,
           args.budget),
        "",
        reading(res),
        "",
    ]


def reading(res):
    """One sentence from the numbers: the ratios, how busy the machine
    already was without the relay, and what the relay cost."""
    rows = [r for c in res["rows"].values() for r in c.values()]
    ratios = [r[1] / r[0] for r in rows]
    cpus = [r[2] for r in rows]
    busy = [r[3] for r in rows]
    ncpu = os.cpu_count()
    text = ("Reading it: through the tunnel SSH keeps %.2f-%.2f of its "
            "direct throughput, and nginx spends %.2f-%.2f CPU s per GiB "
            "relaying it; direct, ssh and sshd (and the machine's other "
            "work) kept %.1f-%.1f of the %d cores busy"
            % (min(ratios), max(ratios), min(cpus), max(cpus),
               min(busy), max(busy), ncpu))
    if min(busy) >= 0.85 * ncpu:
        text += (", so the relay's CPU is taken from the encryption at "
                 "both ends: on this machine the ratio is set by CPU")
    return text + "."


def ssh_version():
    out = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    return out.stderr.split(",")[0].strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench",
                                                  "ssh.md"))
    ap.add_argument("--mib", type=int, default=512,
                    help="MiB per transfer")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ciphers", default="",
                    help="comma-separated; default: sshd's default cipher "
                    "and aes128-gcm@openssh.com")
    ap.add_argument("--cpu-millicores", type=int, default=0,
                    help="the sandbox's CPU limit (default: the stack's)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--isolation", choices=("runc", "gvisor"), default="",
                    help="isolation tier of the session (default: the server's)")
    ap.add_argument("--no-auth", dest="auth", action="store_false")
    ap.add_argument("--budget", type=int, default=170,
                    help="seconds the whole run may take")
    args = ap.parse_args()

    budget = Budget(args.budget)
    load0 = os.getloadavg()[0]
    stack = Stack(name="bench-ssh", auth=args.auth, workers=args.workers)
    try:
        stack.configure()
        if args.isolation == "gvisor":
            stack.set_conf("isolation_allowed", "runc,gvisor")
        stack.start(configure=False)
        res = run_bench(stack, args, budget)
    finally:
        stack.stop()
    left = stack.runc_containers()
    if left:
        raise RuntimeError("runc containers left behind: %s" % left)
    lines = report(res, args, load0, budget.deadline - time.monotonic())
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
