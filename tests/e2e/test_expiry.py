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
