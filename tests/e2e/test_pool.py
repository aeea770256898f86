"""The local runtime's warm pool (warm_pool N), end to end: real
pico-backend, real runc, real sshd.

What is checked: creates with the default image and limits are served
from the pool (the backend logs "from pool", and the sandbox is older
than the request), SSH works on a pooled sandbox (/workspace, its hostname, key auth
with ssh_public_key, the host key the API reports), the pool refills,
DELETE and expiry leave nothing (container, folders, cgroups), SIGTERM
and drain leave no pool sandbox, SIGKILL + restart removes the old
unclaimed pool and keeps claimed sessions, and other limits start cold
with their own limits. No timing thresholds."""

import glob
import json
import os
import signal
import subprocess
import time

import paramiko
import pytest

from pico_stack import Stack, wait_for
from test_sandbox import (CGROUP_ROOT, Sandbox, check_key_login,
                          endpoint_path, make_key)


def pool_containers(st):
    return sorted(c for c in st.runc_containers() if c.startswith("pico-pool-"))


def pool_folders(st):
    return sorted(os.listdir(os.path.join(st.var, "pool")))


def container_of(st, sid):
    """The container a session's folder names (a claimed pool sandbox)."""
    with open(os.path.join(st.var, "sessions", sid, "container")) as f:
        return "pico-" + f.read().strip()


def wait_pool_full(st, n=2):
    """n unclaimed sandboxes whose sshd answered (the backend logs each
    one it puts into the pool only then)."""
    def full():
        names = pool_folders(st)
        log = st.backend.read_log()
        return len(names) == n and all("warm pool: %s ready" % x in log for x in names)
    wait_for(full, timeout=30, what="pool of %d" % n)


def cgroups_named(name):
    return glob.glob(os.path.join(CGROUP_ROOT, "*", "pico", name))


def nothing_left(st, sid, cid):
    name = cid[len("pico-"):]
    return (cid not in st.runc_containers() and
            not os.path.exists(os.path.join(st.var, "sessions", sid)) and
            not os.path.exists(os.path.join(st.var, "pool", name)) and
            not os.path.exists(os.path.join(st.var, "runc", cid)) and
            cgroups_named(name) == [])


@pytest.fixture
def pool_stack():
    made = []

    def make(n=2, **kw):
        s = Stack(**kw)
        made.append(s)
        s.configure()
        s.set_conf("warm_pool", str(n))
        s.start(configure=False)
        wait_pool_full(s, n)
        return s

    yield make
    for s in made:
        s.stop()
    for s in made:
        assert s.runc_containers() == [], "sandboxes left behind"
        assert pool_folders(s) == [], "pool folders left behind"
        assert s.sanitizer_reports() == [], "sanitizer reported errors"


def test_create_from_pool_ssh_delete_and_refill(pool_stack):
    st = pool_stack(2)
    before = pool_containers(st)
    t0 = time.time()
    sess = st.create()
    sid = sess["session_id"]
    cid = container_of(st, sid)
    # served from the pool: one of the sandboxes that were ready before
    # the request, and the backend says so
    assert cid in before
    assert "session %s: sandbox %s from pool" % (sid, cid[len("pico-"):]) in \
        st.backend.read_log()
    with open(os.path.join(st.var, "runc", cid, "state.json")) as f:
        created = json.load(f)["created"]
    assert created[:19] <= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0))
    # the session's own folder, with the endpoint in it
    path = endpoint_path(st, sid)
    assert path == os.path.join(st.var, "sessions", sid, "ssh.sock")
    box = Sandbox(path)
    assert box.ok("pwd").strip() == "/workspace"
    assert box.ok("id -u").strip() == "1000"
    # the session's hostname, set at claim like a cold one's
    assert box.ok("hostname").strip() == "sandbox-" + sid
    key = box.host_key()
    assert sess["host_key"] == "ssh-ed25519 " + key.get_base64()
    box.close()
    r = st.request("GET", "/v1/sessions/" + sid)
    assert r.status == 200 and r.json()["status"] == "running", r

    # the pool refills in the background
    wait_pool_full(st, 2)
    assert cid not in pool_containers(st) or cid in st.runc_containers()

    assert st.delete(sid).status == 200
    wait_for(lambda: nothing_left(st, sid, cid), what="nothing left")
    assert cid not in st.runc_containers()


def test_key_auth_on_pooled_sandbox(pool_stack, tmp_path):
    st = pool_stack(2)
    pkey, pub = make_key(tmp_path)
    sid = st.create(ssh_public_key=pub)["session_id"]
    assert "session %s: sandbox" % sid in st.backend.read_log()
    check_key_login(endpoint_path(st, sid), pkey, tmp_path)
    # a session without a key gets no key, even from the same pool
    sid2 = st.create()["session_id"]
    assert "session %s: sandbox" % sid2 in st.backend.read_log()
    with pytest.raises(paramiko.AuthenticationException):
        Sandbox(endpoint_path(st, sid2), pkey=pkey)
    assert st.delete(sid).status == 200
    assert st.delete(sid2).status == 200


def test_other_limits_start_cold_with_their_limits(pool_stack):
    st = pool_stack(2)
    sid = st.create(resources={"memory_mb": 128})["session_id"]
    assert "session %s: sandbox" % sid not in st.backend.read_log()
    assert "pico-" + sid in st.runc_containers()
    assert not os.path.exists(os.path.join(st.var, "sessions", sid, "container"))
    with open(os.path.join(CGROUP_ROOT, "memory", "pico", sid,
                           "memory.limit_in_bytes")) as f:
        assert int(f.read()) == 128 * 1024 * 1024
    box = Sandbox(endpoint_path(st, sid))
    assert box.ok("pwd").strip() == "/workspace"
    box.close()
    assert st.delete(sid).status == 200
    wait_for(lambda: nothing_left(st, sid, "pico-" + sid), what="nothing left")


def test_expiry_of_a_pooled_session_leaves_nothing(pool_stack):
    st = pool_stack(2)
    sid = st.create(ttl=1)["session_id"]
    cid = container_of(st, sid)
    wait_for(lambda: st.request("GET", "/v1/sessions/" + sid).status == 404 and
             nothing_left(st, sid, cid), timeout=15, what="expired and removed")


def test_sigterm_and_drain_leave_no_pool(pool_stack):
    st = pool_stack(2)
    sid = st.create(ttl=600)["session_id"]
    cid = container_of(st, sid)
    wait_pool_full(st, 2)
    st.backend.stop(sig=signal.SIGTERM)
    # the unclaimed pool is gone, the session is kept
    assert pool_containers(st) == [cid]
    assert pool_folders(st) == []
    assert "warm pool: stopped" in st.backend.read_log()
    st.backend.start()
    wait_pool_full(st, 2)
    r = st.request("GET", "/v1/sessions/" + sid)
    assert r.status == 200 and r.json()["status"] == "running", r
    st.drain()
    assert st.runc_containers() == [], "drain left sandboxes"
    assert pool_folders(st) == []
    assert os.listdir(os.path.join(st.var, "sessions")) == []


def test_sigkill_restart_reconciles_the_pool(pool_stack):
    st = pool_stack(2)
    keep = st.create(ttl=600)["session_id"]
    keep_cid = container_of(st, keep)
    wait_pool_full(st, 2)
    old_pool = [c for c in pool_containers(st) if c != keep_cid]
    assert len(old_pool) == 2

    st.backend.stop(sig=signal.SIGKILL)
    st.backend.start()
    log = st.backend.read_log()
    for c in old_pool:
        assert "warm pool: removed leftover %s" % c[len("pico-"):] in log
        assert nothing_left(st, "-", c)
    wait_pool_full(st, 2)
    # the claimed one is a session: kept, running, reachable
    r = st.request("GET", "/v1/sessions/" + keep)
    assert r.status == 200 and r.json()["status"] == "running", r
    assert keep_cid in st.runc_containers()
    box = Sandbox(endpoint_path(st, keep))
    assert box.ok("pwd").strip() == "/workspace"
    box.close()
    # and DELETE still finds its container
    assert st.delete(keep).status == 200
    wait_for(lambda: nothing_left(st, keep, keep_cid), what="nothing left")
    assert len(pool_containers(st)) == 2
