"""Pause, resume and the idle stop on the real stack (docs/api.md,
"Pause and resume", "Idle stop"; docs/runtime-local.md, "Pause").

A paused local sandbox is frozen by `runc pause` (the freezer cgroup):
its processes stand still holding their memory, files stay, a CONNECT
gets 409 with a JSON body, and resume lets them go on where they were.
CRIU does not work on this host (docs/runtime-local.md says what
failed), so memory is measured to stay, not to drop."""

import json
import os
import sys
import threading
import time

import pytest

from pico_stack import wait_for
from test_tunnel import ssh_client, ssh_run

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sdk",
                                "python"))
from sandbox_sdk import SandboxClient  # noqa: E402

CGROUP = "/sys/fs/cgroup"


def status(stack, sid):
    r = stack.request("GET", "/v1/sessions/" + sid)
    return r.json()["status"] if r.status == 200 else r.status


def action(stack, sid, what):
    return stack.request("POST", "/v1/sessions/%s/%s" % (sid, what))


def freezer_state(sid):
    with open("%s/freezer/pico/%s/freezer.state" % (CGROUP, sid)) as f:
        return f.read().strip()


def memory_bytes(sid):
    """The sandbox cgroup's memory.current (cgroup v1 on this host:
    memory.usage_in_bytes)."""
    with open("%s/memory/pico/%s/memory.usage_in_bytes" % (CGROUP, sid)) as f:
        return int(f.read())


def workspace(stack, sid):
    return os.path.join(stack.var, "sessions", sid, "workspace")


def read_counter(stack, sid):
    """The number the sandbox's loop wrote last (mv makes each write
    whole), None before its first."""
    try:
        with open(os.path.join(workspace(stack, sid), "counter")) as f:
            return int(f.read())
    except FileNotFoundError:
        return None


def counter_value(stack, sid):
    """The counter file's number once it holds one (it is rewritten)."""
    got = []
    wait_for(lambda: got.append(read_counter(stack, sid)) or got[-1] is not None,
             what="counter")
    return got[-1]


class EventLog:
    """The SDK's event iterator over one session, read by a thread from
    while the session exists until its "terminated"."""

    def __init__(self, url, sid):
        self.types = []
        it = SandboxClient(url).events(sid, reconnect=False)
        self.thread = threading.Thread(target=self._read, args=(it,),
                                       daemon=True)
        self.thread.start()

    def _read(self, it):
        for e in it:
            self.types.append(e.type)

    def ended(self):
        self.thread.join(30)
        assert not self.thread.is_alive(), "no terminated: %s" % self.types
        return self.types


def nothing_left(stack, sid):
    """No container, frozen cgroup, session folder or mount of sid."""
    assert "pico-" + sid not in stack.runc_containers()
    for ctl in ("freezer", "memory", "pids"):
        assert not os.path.exists("%s/%s/pico/%s" % (CGROUP, ctl, sid)), ctl
    assert not os.path.exists(os.path.join(stack.var, "sessions", sid))
    with open("/proc/self/mountinfo") as f:
        assert sid not in f.read()


def test_pause_resume_keeps_files_and_processes(stack):
    client = SandboxClient(stack.url)
    s = client.create_session(ttl=600)
    sid = s.session_id
    log = EventLog(stack.url, sid)
    try:
        s.run("echo before-pause > /workspace/note.txt").check()
        # a counter that a restart would begin again at 1
        s.run("setsid nohup sh -c 'i=0; while :; do i=$((i+1)); "
              "echo $i > /workspace/counter.new; "
              "mv /workspace/counter.new /workspace/counter; sleep 0.1; done' "
              ">/dev/null 2>&1 < /dev/null &").check()
        # and 64 MiB held, so the memory measured is more than sshd's
        s.run("setsid nohup python3 -c 'import time; b = bytearray(64 << 20); "
              "b[::4096] = b\"x\" * len(b[::4096]); time.sleep(3600)' "
              ">/dev/null 2>&1 < /dev/null &").check()
        wait_for(lambda: memory_bytes(sid) > 64 << 20, what="64 MiB held")
        first = counter_value(stack, sid)
        wait_for(lambda: read_counter(stack, sid) > first + 5, what="counting")
        mem_running = memory_bytes(sid)

        s.pause()
        assert s.status == "paused"
        assert status(stack, sid) == "paused"
        assert freezer_state(sid) == "FROZEN"
        at_pause = counter_value(stack, sid)
        mem_paused = memory_bytes(sid)
        print("memory.usage_in_bytes running %d paused %d" %
              (mem_running, mem_paused))
        # frozen, not checkpointed: the memory stays where it was
        assert mem_paused >= mem_running * 0.9
        time.sleep(1.5)  # the reaper's liveness check runs meanwhile
        assert read_counter(stack, sid) == at_pause, "counted while paused"
        assert status(stack, sid) == "paused", "liveness failed it"

        # a CONNECT to a paused session: 409, JSON naming the state
        sock, line, rest = stack.open_tunnel(sid)
        try:
            assert " 409 " in line, line
            while b"}}" not in rest:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                rest += chunk
        finally:
            sock.close()
        err = json.loads(rest)["error"]
        assert err["code"] == "session_paused" and err["status"] == "paused"

        s.resume()
        assert s.status == "running"
        assert freezer_state(sid) == "THAWED"
        # goes on from where it stood: a restart would start at 1
        wait_for(lambda: read_counter(stack, sid) > at_pause, what="counting on")
        after = read_counter(stack, sid)
        assert at_pause < after < at_pause + 1000
        assert s.run("cat /workspace/note.txt").check().stdout == "before-pause\n"
    finally:
        s.delete()
    types = log.ended()
    assert types.index("paused") < types.index("resumed") < types.index("terminated")
    nothing_left(stack, sid)


def test_pause_and_resume_errors(stack):
    sid = stack.create(ttl=300)["session_id"]
    try:
        r = action(stack, sid, "resume")
        assert r.status == 409 and r.json()["error"]["code"] == "conflict", r
        assert "only a paused session can be resumed" in r.json()["error"]["message"]
        assert action(stack, sid, "pause").status == 200
        r = action(stack, sid, "pause")
        assert r.status == 409, r
        assert r.json()["error"]["message"] == "the session is already paused"
        r = stack.request("GET", "/v1/sessions/%s/pause" % sid)
        assert r.status == 405 and r.headers.get("Allow") == "POST", r
        # a paused session's ttl can still change
        assert stack.request("PATCH", "/v1/sessions/" + sid,
                             body={"ttl": 200}).status == 200
    finally:
        assert stack.delete(sid).status == 200
    r = action(stack, sid, "pause")
    assert r.status == 404 and r.json()["error"]["code"] == "not_found", r
    r = action(stack, "not-a-uuid-at-all-but-thirty-six-ch", "pause")
    assert r.status == 400 and r.json()["error"]["code"] == "invalid_session_id"
    nothing_left(stack, sid)


@pytest.mark.parametrize("value", [-1, 86401, "5", 1.5, True, None])
def test_idle_timeout_out_of_bounds_is_400(stack, value):
    r = stack.request("POST", "/v1/sessions", body={"idle_timeout": value})
    assert r.status == 400, r
    err = r.json()["error"]
    assert err["code"] == "invalid_request"
    assert err["message"].startswith("idle_timeout: must be an integer "
                                     "between 0 (off) and 86400"), err


def test_idle_stop_spares_an_open_ssh_connection(stack):
    sess = stack.create(ttl=600, idle_timeout=2)
    sid = sess["session_id"]
    log = EventLog(stack.url, sid)
    assert sess["idle_timeout"] == 2
    sock, line, _ = stack.open_tunnel(sid)
    assert " 200 " in line, line
    t = ssh_client(sock)
    try:
        assert ssh_run(t, "echo hi") == (0, "hi\n")
        # no traffic at all for three times the idle_timeout
        time.sleep(6)
        assert status(stack, sid) == "running"
        assert ssh_run(t, "echo still") == (0, "still\n")
    finally:
        t.close()
        sock.close()
    closed = time.time()
    wait_for(lambda: status(stack, sid) == "paused", timeout=20,
             what="idle pause")
    print("paused %.1f s after the last tunnel closed (idle_timeout 2)" %
          (time.time() - closed))
    assert action(stack, sid, "resume").status == 200
    assert stack.delete(sid).status == 200
    types = log.ended()
    assert types.index("idle") < types.index("paused") < types.index("resumed")
    nothing_left(stack, sid)


def test_idle_stop_without_a_tunnel_and_idle_timeout_zero(stack):
    busy = stack.create(ttl=600, idle_timeout=0)["session_id"]
    idle = stack.create(ttl=600, idle_timeout=1)
    created = time.time()
    wait_for(lambda: status(stack, idle["session_id"]) == "paused", timeout=20,
             what="idle pause")
    print("paused %.1f s after create (idle_timeout 1)" % (time.time() - created))
    assert freezer_state(idle["session_id"]) == "FROZEN"
    assert status(stack, busy) == "running"
    for sid in (busy, idle["session_id"]):
        assert stack.delete(sid).status == 200
        nothing_left(stack, sid)


def test_idle_action_delete(new_stack):
    st = new_stack(conf={"pico.conf": {"idle_action": "delete"}})
    sid = st.create(ttl=600, idle_timeout=1)["session_id"]
    log = EventLog(st.url, sid)
    wait_for(lambda: status(st, sid) == 404, timeout=20, what="idle delete")
    types = log.ended()
    assert types[-2:] == ["idle", "terminated"], types
    nothing_left(st, sid)


def test_paused_session_expires_cleanly(stack):
    sid = stack.create(ttl=3)["session_id"]
    assert action(stack, sid, "pause").status == 200
    assert freezer_state(sid) == "FROZEN"
    wait_for(lambda: status(stack, sid) == 404, timeout=20, what="expiry")
    wait_for(lambda: not os.path.exists(os.path.join(stack.var, "sessions", sid)),
             what="folder removed")
    nothing_left(stack, sid)


def test_backend_restart_keeps_a_paused_session_paused(new_stack):
    st = new_stack()
    sid = st.create(ttl=600)["session_id"]
    assert action(st, sid, "pause").status == 200
    st.backend.stop()
    st.backend.start()
    wait_for(lambda: st.request("GET", "/health").status == 200, what="health")
    assert status(st, sid) == "paused"
    assert freezer_state(sid) == "FROZEN"
    assert action(st, sid, "resume").status == 200
    sock, line, _ = st.open_tunnel(sid)
    t = ssh_client(sock)
    try:
        assert ssh_run(t, "echo back") == (0, "back\n")
    finally:
        t.close()
        sock.close()
    assert action(st, sid, "pause").status == 200


def test_drain_deletes_paused_sessions(new_stack):
    st = new_stack()
    ids = [st.create(ttl=600)["session_id"] for _ in range(2)]
    assert action(st, ids[0], "pause").status == 200
    st.drain()
    for sid in ids:
        assert status(st, sid) == 404
        nothing_left(st, sid)



def test_make_run_drain_deletes_paused_sessions(run_stack):
    """Ctrl-C / SIGTERM to `make run`'s supervisor (scripts/run.sh)
    drains paused sessions too: nothing frozen is left."""
    st = run_stack(name="pause-drain")
    ids = [st.create(ttl=600)["session_id"] for _ in range(2)]
    assert action(st, ids[0], "pause").status == 200
    assert freezer_state(ids[0]) == "FROZEN"
    st.stop()
    assert st.runc_containers() == []
    for sid in ids:
        nothing_left(st, sid)
