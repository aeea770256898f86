"""Expiry end to end: the reaper removes an expired session's sandbox,
record and state within 2 s after expires_at, and with two backends on
one Redis every session is reaped exactly once."""

import calendar
import glob
import http.client
import json
import os
import re
import socket
import time

from pico_stack import wait_for


def unix_time(rfc3339):
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))


def gone(stack, sid):
    return (stack.request("GET", "/v1/sessions/" + sid).status == 404 and
            stack.redis_cli("EXISTS", "pico:session:" + sid) == "0" and
            stack.redis_cli("ZSCORE", "pico:expiry", sid) == "" and
            stack.redis_cli("ZSCORE", "pico:reaping", sid) == "" and
            not [c for c in stack.runc_containers() if sid in c] and
            not os.path.exists(os.path.join(stack.var, "sessions", sid)) and
            not leftovers_on_host(sid))


def leftovers_on_host(sid):
    """Mounts or cgroups of the sandbox that outlived it."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if sid in line]
    cgroups = glob.glob("/sys/fs/cgroup/*/pico/*%s*" % sid)
    return mounts + cgroups


def test_expired_session_removed_within_2s(stack):
    s = stack.create(ttl=2)
    sid = s["session_id"]
    deadline = unix_time(s["expires_at"]) + 2
    assert not gone(stack, sid)
    # While it lives, its cgroups are there (so the check below can fail).
    assert leftovers_on_host(sid)
    # Sleep to the deadline, then everything must be gone already.
    time.sleep(max(0, deadline - time.time()))
    assert gone(stack, sid)
    log = stack.backend.read_log()
    assert log.count("reaped " + sid) == 1, log


def test_two_backends_reap_each_session_once(new_stack):
    st = new_stack(backends=2)
    created = [st.create(ttl=1 + i % 3) for i in range(10)]
    sids = [c["session_id"] for c in created]
    # From the create answers: a ttl=1 session may be reaped already.
    last = max(unix_time(c["expires_at"]) for c in created)
    wait_for(lambda: all(gone(st, s) for s in sids), timeout=last - time.time() + 30,
             interval=0.2, what="all sessions reaped")
    logs = "".join(b.read_log() for b in st.backends)
    for sid in sids:
        assert len(re.findall(r"\breaped %s\b" % sid, logs)) == 1, sid


def test_sessions_are_reaped_by_their_own_node(new_stack):
    """Two nodes on one Redis: while node A is down, node B leaves A's
    expired sessions alone (their sandboxes are A's); A reaps them when it
    is back. Each session is reaped once, by its own node."""
    st = new_stack(backends=2)
    sids = [st.create(ttl=2)["session_id"] for _ in range(6)]
    node = {s: st.redis_cli("HGET", "pico:session:" + s, "node") for s in sids}
    a_node = node[sids[0]]
    a = 0 if a_node == node_of(st, 0) else 1
    b = 1 - a
    st.backends[a].stop()
    time.sleep(4)
    for s in sids:
        exists = st.redis_cli("EXISTS", "pico:session:" + s) == "1"
        assert exists == (node[s] == a_node), (s, node[s], exists)
    st.backends[a].start()
    wait_for(lambda: all(gone(st, s) for s in sids), timeout=30, interval=0.2,
             what="all sessions reaped")
    for s in sids:
        i = a if node[s] == a_node else b
        assert len(re.findall(r"\breaped %s\b" % s, st.backends[i].read_log())) == 1, s
        assert not re.findall(r"\breaped %s\b" % s, st.backends[1 - i].read_log()), s


def node_of(st, i):
    with open(st.backends[i].conf) as f:
        for line in f:
            if line.startswith("node_name "):
                return line.split()[1]
    return ""


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def backend_request(backend, method, path):
    """A request to one backend's own socket, not through nginx, so the
    test picks which node answers."""
    conn = _UnixHTTP(backend.sock)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def test_delete_on_another_node_is_done_by_the_owner(new_stack):
    """DELETE sent to the node that does not own the session: the owner's
    reaper destroys the sandbox and the answer waits for it (200,
    terminated, as on the owner); with
    the owner down the answer is 503 owner_unavailable, nothing is removed
    behind the owner's back, and the owner deletes it once it is back."""
    st = new_stack(backends=2)
    sid, sid2 = (st.create(ttl=600)["session_id"] for _ in range(2))
    owner = node_of(st, 0)
    a = 0 if st.redis_cli("HGET", "pico:session:" + sid, "node") == owner else 1
    assert st.redis_cli("HGET", "pico:session:" + sid2, "node") in (
        node_of(st, 0), node_of(st, 1))
    b = 1 - a
    status, body = backend_request(st.backends[b], "DELETE", "/v1/sessions/" + sid)
    assert status == 200, body
    assert json.loads(body) == {"session_id": sid, "status": "terminated"}
    assert gone(st, sid)
    assert re.findall(r"\breaped %s\b" % sid, st.backends[a].read_log())
    assert "hands it to its node" in st.backends[b].read_log()

    # a session of node a again, then a down
    while True:
        sid = st.create(ttl=600)["session_id"]
        if st.redis_cli("HGET", "pico:session:" + sid, "node") == node_of(st, a):
            break
        st.delete(sid)
    st.backends[a].stop()
    status, body = backend_request(st.backends[b], "DELETE", "/v1/sessions/" + sid)
    assert status == 503, body
    assert json.loads(body)["error"]["code"] == "owner_unavailable"
    assert st.redis_cli("EXISTS", "pico:session:" + sid) == "1"
    assert [c for c in st.runc_containers() if sid in c]
    st.backends[a].start()
    wait_for(lambda: gone(st, sid), timeout=30, interval=0.2, what="owner deletes it")
    st.delete(sid2)
