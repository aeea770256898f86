"""Expiry end to end: the reaper removes an expired session's sandbox,
record and state within 2 s after expires_at, and with two backends on
one Redis every session is reaped exactly once."""

import calendar
import glob
import os
import re
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
