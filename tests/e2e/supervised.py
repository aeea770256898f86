"""`make run`'s supervisor (scripts/run.sh) as a test stack, and an SSH
connection held open through a tunnel: what the supervision and chaos
tests kill parts under.

RunStack is a pico_stack.Stack whose processes are started and watched by
scripts/run.sh itself, exactly as `make run` starts them, in a process
group of their own so that a test can signal it like a terminal would."""

import os
import signal
import subprocess
import sys
import time

import paramiko

from pico_stack import ROOT, IMAGES, Stack, backend_binary, wait_for

sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))
from sandbox_sdk.tunnel import open_tunnel  # noqa: E402


class RunStack(Stack):
    def __init__(self, name="run", **kw):
        super().__init__(name=name, workers=kw.pop("workers", 2), **kw)
        self.proc = None
        # nginx masters seen: their workers are found by session id
        self.known_sids = set()
        self.out_path = os.path.join(ROOT, "var", "t", "%s-%d.out" % (self.name, os.getpid()))

    def env(self):
        return dict(os.environ, VAR=self.var, IMAGES=IMAGES,
                    LISTEN="127.0.0.1:%d" % self.port, WORKERS=str(self.workers),
                    PICO_BACKEND_BIN=backend_binary(),
                    ASAN_OPTIONS="log_path=%s/log/asan:detect_leaks=1" % self.var,
                    UBSAN_OPTIONS="print_stacktrace=1:log_path=%s/log/ubsan" % self.var)

    def launch(self, cmd=None):
        """Starts run.sh (or cmd) in a new process group; returns the Popen."""
        out = open(self.out_path, "ab")
        try:
            return subprocess.Popen(cmd or [os.path.join(ROOT, "scripts", "run.sh")],
                                    env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    cwd=ROOT)
        finally:
            out.close()

    def start(self, cmd=None, fresh=True):
        if fresh and os.path.exists(self.var):
            subprocess.run(["rm", "-rf", self.var], check=True)
        self.out_from = os.path.getsize(self.out_path) if os.path.exists(self.out_path) else 0
        self.proc = self.launch(cmd)
        wait_for(lambda: self.proc.poll() is not None or
                 "pico: listening on" in self.output()[self.out_from:],
                 timeout=120, interval=0.1, what="run.sh ready")
        wait_for(self.healthy, timeout=120, interval=0.1, what="pico up under run.sh")
        return self

    def healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError("run.sh exited %s:\n%s" % (self.proc.returncode, self.output()))
        try:
            return self.request("GET", "/health", timeout=2).status == 200
        except OSError:
            return False

    def output(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def pid(self, part):
        with open(os.path.join(self.var, "run", part + ".pid")) as f:
            return int(f.read().split()[0])

    def signal_group(self, sig):
        os.killpg(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=180):
        if self.proc is not None and self.proc.poll() is None:
            self.signal_group(sig)
            self.proc.wait(timeout)
        self.proc = None

    def note_nginx(self):
        """Remembers the running nginx master, whose workers processes()
        finds by their session id (they have no trace of the state folder)."""
        try:
            self.known_sids.add(self.pid("nginx"))
        except (OSError, ValueError):
            pass

    def processes(self):
        """PIDs of every live process of this stack: anything whose command
        line or working directory names the state folder, and the nginx
        workers of its masters' sessions."""
        self.note_nginx()
        found, sids = [], {}
        for p in os.listdir("/proc"):
            if not p.isdigit() or int(p) == os.getpid():
                continue
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
                cwd = os.readlink("/proc/%s/cwd" % p)
                with open("/proc/%s/stat" % p) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z":
                continue
            sids[int(p)] = int(fields[3])
            if self.var in cmd or cwd.startswith(self.var):
                found.append(int(p))
        sessions = set(found) | self.known_sids
        return sorted(set(found) | {p for p, sid in sids.items() if sid in sessions})


class TunnelSSH:
    """An SSH connection (paramiko) over one CONNECT tunnel. It never
    reconnects: a command that fails means this tunnel broke."""

    def __init__(self, stack, sid, timeout=20):
        self.sock = open_tunnel("127.0.0.1", stack.port,
                                "/v1/sessions/%s/tunnel" % sid, timeout=timeout)
        self.transport = paramiko.Transport(self.sock)
        self.transport.start_client(timeout=timeout)
        self.transport.auth_password("sandbox", "sandbox")
        assert self.transport.is_authenticated()

    def run(self, cmd, stdin=b"", timeout=60):
        ch = self.transport.open_session(timeout=timeout)
        ch.settimeout(timeout)
        ch.exec_command(cmd)
        if stdin:
            ch.sendall(stdin)
        ch.shutdown_write()
        out = ch.makefile("rb").read()
        rc = ch.recv_exit_status()
        ch.close()
        return rc, out

    def ok(self, cmd, stdin=b"", timeout=60):
        rc, out = self.run(cmd, stdin, timeout)
        assert rc == 0, (cmd, rc, out)
        return out

    def close(self):
        self.transport.close()
        self.sock.close()


def alive(pid):
    """True while pid runs: a zombie (whose reaper may be slow) is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive_now = [p for p in pids if alive(p)]
        if not alive_now:
            return []
        time.sleep(0.1)
    return alive_now
