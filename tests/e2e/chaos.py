"""The reliability suite's load and its ledger (tests/e2e/test_chaos.py).

Load: a burst of concurrent creates, and live SSH tunnels moving
checksummed data, while a fault is injected. The Ledger counts what the
suite reports in docs/RELIABILITY.md: faults injected, requests served,
sessions lost, orphans, bytes verified. CHAOS_SCALE (default 1; `make
chaos` uses more) multiplies the load; every loop is bounded in count and
time and stops by itself."""

import glob
import hashlib
import json
import os
import re
import subprocess
import threading
import time

from pico_stack import ROOT, run_parallel, wait_for
from supervised import TunnelSSH

SCALE = max(1, int(os.environ.get("CHAOS_SCALE", "1")))
RESULTS = os.path.join(ROOT, "build", "chaos", "results.jsonl")


class Ledger:
    def __init__(self, fault):
        self.fault = fault
        self.lock = threading.Lock()
        self.counts = {"faults": 0, "requests": 0, "created": 0, "create_errors": 0,
                       "sessions_lost": 0, "orphans": 0, "bytes_verified": 0,
                       "corrupted": 0, "tunnel_errors": 0, "connect_failures": 0,
                       "connect_retries": 0}

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] += n

    def write(self):
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(dict(self.counts, fault=self.fault, scale=SCALE)) + "\n")


class Streamer(threading.Thread):
    """One tunnel moving checksummed data: each round sends a block to
    `sha256sum` in the sandbox and compares the digest. Stops after
    `rounds` or when told."""

    def __init__(self, stack, sid, ledger, block=64 * 1024, rounds=1000):
        super().__init__(daemon=True)
        self.ssh = TunnelSSH(stack, sid)
        self.ledger, self.block, self.rounds = ledger, block, rounds
        self.stop_flag = threading.Event()
        self.error = None
        self.done_rounds = 0

    def run(self):
        try:
            for i in range(self.rounds):
                if self.stop_flag.is_set():
                    break
                data = os.urandom(self.block)
                out = self.ssh.ok("sha256sum", stdin=data).split()[0].decode()
                if out != hashlib.sha256(data).hexdigest():
                    self.ledger.add("corrupted")
                    raise AssertionError("checksum mismatch in round %d" % i)
                self.ledger.add("bytes_verified", len(data))
                self.ledger.add("requests")
                self.done_rounds += 1
        except Exception as e:  # the test asserts on it
            self.error = e
            self.ledger.add("tunnel_errors")

    def finish(self):
        self.stop_flag.set()
        self.join(120)
        self.ssh.close()
        return self.error


def create_burst(stack, ledger, count, threads=8, ttl=600):
    """count creates from `threads` threads at once; returns the threads
    and the answers as they come: (status, session or error body)."""
    def one(_):
        try:
            r = stack.request("POST", "/v1/sessions", body={"ttl": ttl}, timeout=60)
            item = (r.status, r.json() if r.body.startswith("{") else r.body)
        except OSError as e:
            item = (0, str(e))
        ledger.add("requests")
        ledger.add("created" if item[0] == 201 else "create_errors")
        return item

    return run_parallel(one, count, threads)


def join_all(ts, timeout=180):
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in ts), "load did not stop in time"


def check_created_usable(stack, answers, ledger):
    """Every 201 names a session that is listed and carries SSH; every
    other answer is an error the API describes."""
    for status, body in answers:
        if status == 201:
            sid = body["session_id"]
            r = wait_for(lambda: _get_ok(stack, sid), timeout=30, what="session " + sid)
            if r.json()["status"] != "running":
                ledger.add("sessions_lost")
            ssh = wait_for(lambda: _ssh_or_count(stack, sid, ledger), timeout=30,
                           interval=0.2, what="a tunnel to " + sid)
            assert ssh.ok("echo ok") == b"ok\n"
            ssh.close()
        elif status:
            assert status >= 500 or status == 429, (status, body)
            assert isinstance(body, dict) and "error" in body, body


def _ssh_or_count(stack, sid, ledger):
    """An SSH connection through a tunnel, or None (counted as a CONNECT
    retried): right after a Redis restart a worker that has not
    reconnected yet answers 503 "Session store unavailable"."""
    try:
        return TunnelSSH(stack, sid, timeout=10)
    except Exception:
        ledger.add("connect_retries")
        return None


def _get_ok(stack, sid):
    try:
        r = stack.request("GET", "/v1/sessions/" + sid, timeout=5)
    except OSError:
        return None
    return r if r.status == 200 else None


def state_of(stack):
    """What exists for sessions: records in Redis, runc containers,
    session folders, cgroups, loop devices and mounts under the state."""
    records = set(k.split(":")[-1] for k in
                  stack.redis_cli("--scan", "--pattern", "pico:session:*").split())
    containers = set(c[len("pico-"):] for c in stack.runc_containers())
    folders = set(os.listdir(os.path.join(stack.var, "sessions")))
    cgroups = set()
    for d in glob.glob("/sys/fs/cgroup/*/pico/*-*-*-*-*"):
        cgroups.add(os.path.basename(d))
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    loops = set(re.findall(r"%s/sessions/([0-9a-f-]{36})/" % re.escape(stack.var), loops))
    with open("/proc/self/mountinfo") as f:
        mounts = set(re.findall(r"%s/sessions/([0-9a-f-]{36})" % re.escape(stack.var),
                                f.read()))
    return dict(records=records, containers=containers, folders=folders,
                cgroups=cgroups, loops=loops, mounts=mounts)


def orphans(stack, live_cgroups_too=True):
    """Anything that exists for a session without a record, or a running
    record without a sandbox. Empty when the stack is consistent."""
    s = state_of(stack)
    bad = []
    for kind in ("containers", "folders", "loops", "mounts"):
        bad += ["%s %s" % (kind, i) for i in s[kind] - s["records"]]
    mine = s["records"] | s["containers"]
    # cgroups are per host: only those of this stack's sessions count
    bad += ["cgroups %s" % i for i in s["cgroups"] - s["records"] if i in mine]
    for sid in s["records"]:
        st = stack.redis_cli("HGET", "pico:session:" + sid, "status")
        if st == "running" and sid not in s["containers"]:
            bad.append("record %s running without a sandbox" % sid)
    return bad


def settle(stack, ledger, timeout=30):
    """Waits for the stack to be consistent; counts what stays orphaned."""
    try:
        wait_for(lambda: not orphans(stack), timeout=timeout, interval=0.5,
                 what="no orphans")
    except TimeoutError:
        pass
    left = orphans(stack)
    ledger.add("orphans", len(left))
    return left
