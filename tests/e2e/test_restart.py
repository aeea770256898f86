"""Restart safety: a backend killed with SIGKILL and started again
reconciles runc and Redis. Live sessions stay and stay reachable, a
sandbox without a record is removed, a record whose sandbox died is
marked failed with a reason. SIGTERM stops the backend cleanly without
deleting sessions."""

import os
import signal
import subprocess

import pytest

from pico_stack import ssh_banner, wait_for


def containers_of(st, sid):
    return [c for c in st.runc_containers() if sid in c]


def test_sigkill_restart_reconciles(new_stack):
    st = new_stack()
    keep = st.create(ttl=600)["session_id"]
    orphan = st.create(ttl=600)["session_id"]
    dead = st.create(ttl=600)["session_id"]
    assert ssh_banner(st, keep).startswith(b"SSH-2.0-")

    st.backend.stop(sig=signal.SIGKILL)
    # Behind the backend's back: a sandbox loses its record, another
    # sandbox dies.
    st.redis_cli("DEL", "pico:session:" + orphan)
    st.redis_cli("ZREM", "pico:expiry", orphan)
    [dead_ctr] = containers_of(st, dead)
    subprocess.run(["runc", "--root", os.path.join(st.var, "runc"), "kill",
                    dead_ctr, "KILL"], check=True)
    wait_for(lambda: b'"status": "running"' not in subprocess.run(
        ["runc", "--root", os.path.join(st.var, "runc"), "state", dead_ctr],
        capture_output=True).stdout, what="container stopped")
    assert containers_of(st, orphan)

    st.backend.start()
    log = st.backend.read_log()
    assert "reconcile" in log

    # The orphan is gone, files included.
    assert containers_of(st, orphan) == []
    assert not os.path.exists(os.path.join(st.var, "sessions", orphan))
    # The dead one is marked failed, with a reason.
    r = st.request("GET", "/v1/sessions/" + dead)
    assert r.status == 200, r
    assert r.json()["status"] == "failed"
    assert r.json()["reason"]
    assert st.redis_cli("HGET", "pico:session:" + dead, "endpoint") == ""
    # A failed session stops holding its slot within the retention time
    # (300 s) instead of its whole ttl (600 s), and its record says so.
    failed = r.json()
    created = int(st.redis_cli("HGET", "pico:session:" + dead, "created_at"))
    expires = int(st.redis_cli("HGET", "pico:session:" + dead, "expires_at"))
    assert expires < created + 600
    assert failed["ttl"] == expires - created
    assert int(float(st.redis_cli("ZSCORE", "pico:expiry", dead))) == expires * 1000
    # The live one is untouched and still reachable.
    r = st.request("GET", "/v1/sessions/" + keep)
    assert r.status == 200 and r.json()["status"] == "running", r
    assert ssh_banner(st, keep).startswith(b"SSH-2.0-")

    # Deleting both works; nothing is left.
    assert st.delete(dead).status == 200
    assert st.delete(keep).status == 200
    assert st.runc_containers() == []


def test_sigterm_keeps_sessions(new_stack):
    st = new_stack()
    sid = st.create(ttl=600)["session_id"]
    proc = st.backend.proc
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    st.backend.proc = None
    assert containers_of(st, sid)
    assert st.redis_cli("HGET", "pico:session:" + sid, "status") == "running"
    st.backend.start()
    r = st.request("GET", "/v1/sessions/" + sid)
    assert r.status == 200 and r.json()["status"] == "running", r
    assert ssh_banner(st, sid).startswith(b"SSH-2.0-")
    assert st.delete(sid).status == 200


def test_config_errors_name_file_and_line(new_stack, tmp_path):
    st = new_stack()
    conf = str(tmp_path / "bad.conf")
    with open(st.conf_path("pico.conf")) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text + "ttl_defualt 5\n")
    from pico_stack import backend_binary
    r = subprocess.run([backend_binary(), "--config", conf], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    lines = text.count("\n") + 1
    assert "%s:%d: unknown key" % (conf, lines) in r.stderr, r.stderr
    with open(conf, "w") as f:
        f.write(text.replace("ttl_max 86400", "ttl_max 12abc"))
    r = subprocess.run([backend_binary(), "--config", conf], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "ttl_max" in r.stderr, r.stderr


def _sigterm_during_create(st, before):
    """One create with SIGTERM sent as soon as it started; returns the
    answer, the backend's exit status and whether the signal really came
    before the create finished."""
    import threading
    result = {}
    t = threading.Thread(target=lambda: result.update(
        r=st.request("POST", "/v1/sessions", body={"ttl": 600})))
    t.start()
    wait_for(lambda: st.backend.read_log().count("creating ") > before,
             interval=0.001, what="create started")
    proc = st.backend.proc
    proc.send_signal(signal.SIGTERM)
    t.join(60)
    rc = proc.wait(30)
    st.backend.proc = None
    r = result["r"]
    log = st.backend.read_log()
    sid = r.json().get("session_id", "") if r.status == 201 else ""
    in_flight = sid and log.rfind("signal 15") < log.find("created " + sid)
    return r, rc, sid, in_flight


def test_sigterm_finishes_create_in_flight(new_stack):
    """SIGTERM while a create runs: the client still gets its 201, the
    backend exits 0, and the session lives on. Tried until the signal
    really lands mid-create; a run where it never does fails."""
    st = new_stack()
    for _ in range(5):
        before = st.backend.read_log().count("creating ")
        r, rc, sid, in_flight = _sigterm_during_create(st, before)
        assert r.status == 201, r
        assert rc == 0
        assert containers_of(st, sid)
        st.backend.start()
        assert st.backend.read_log().count("creating ") == before + 1
        assert st.request("GET", "/v1/sessions/" + sid).json()["status"] == "running"
        assert st.delete(sid).status == 200
        if in_flight:
            return
    pytest.fail("SIGTERM never arrived while a create was in flight")


def _threads(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return 0


def test_sigterm_while_starting_with_warm_pool(new_stack):
    """SIGTERM as soon as the warm-pool thread runs (reconcile has not
    finished yet): the backend still stops by its own hand, exit 0 with
    its "stopping" line, instead of being killed by the signal."""
    from pico_stack import backend_binary
    st = new_stack(conf={"pico.conf": {"warm_pool": "2"}})
    b = st.backend
    b.stop()
    stops = b.read_log().count("stopping (sessions are kept)")
    for attempt in range(3):
        with open(b.log, "ab") as out:
            proc = subprocess.Popen([backend_binary(), "--config", b.conf],
                                    stdout=out, stderr=out)
        wait_for(lambda: _threads(proc.pid) > 1 or proc.poll() is not None,
                 interval=0.0005, what="a second thread")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, b.read_log()[-2000:]
        assert b.read_log().count("stopping (sessions are kept)") == stops + attempt + 1
    b.start()


def test_drain_without_redis_still_removes_sandboxes(new_stack):
    # `make run` drains on stop; a stack whose Redis died must still stop
    # without leaving sandboxes behind.
    st = new_stack()
    sid = st.create(ttl=600)["session_id"]
    assert containers_of(st, sid)
    st.stop_redis()
    st.drain()
    assert st.runc_containers() == []
    assert not os.path.exists(os.path.join(st.var, "sessions", sid))
