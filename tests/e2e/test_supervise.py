"""`make run` as its user sees it (scripts/run.sh): a part that dies is
restarted and costs no session, file or open tunnel; only SIGTERM or
Ctrl-C stops the stack, and then nothing it started is left; a second run
on the same state folder is refused with the holder's PID; a run killed
with SIGKILL leaves parts that the next run finds and stops first, and
the sessions come through."""

import os
import signal
import subprocess

from pico_stack import ROOT, wait_for
from supervised import RunStack, TunnelSSH, alive



def session_listed(st, sid):
    try:
        r = st.request("GET", "/v1/sessions", timeout=2)
    except OSError:
        return False
    return r.status == 200 and sid in r.body


def test_backend_sigkill_is_restarted_and_costs_nothing(run_stack):
    st = run_stack(name="sup-backend")
    sid = st.create(ttl=600)["session_id"]
    ssh = TunnelSSH(st, sid)
    ssh.ok("echo kept > /workspace/f")
    old = st.pid("backend")

    os.kill(old, signal.SIGKILL)
    # The open tunnel and a new one carry SSH while the backend is away.
    assert ssh.ok("cat /workspace/f") == b"kept\n"
    fresh = TunnelSSH(st, sid)
    assert fresh.ok("cat /workspace/f") == b"kept\n"
    fresh.close()

    wait_for(lambda: session_listed(st, sid), timeout=30, what="REST back")
    assert st.pid("backend") != old
    assert "backend (PID %d) exited" % old in st.output()
    assert "backend restarted" in st.output()
    # The session was not drained: same sandbox, same file, same tunnel.
    assert st.request("GET", "/v1/sessions/" + sid).json()["status"] == "running"
    assert ssh.ok("cat /workspace/f") == b"kept\n"
    ssh.close()


def test_redis_sigkill_is_restarted_from_its_aof(run_stack):
    st = run_stack(name="sup-redis")
    sid = st.create(ttl=600)["session_id"]
    old = st.pid("redis")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: session_listed(st, sid), timeout=30, what="session back")
    assert st.pid("redis") != old
    assert "redis (PID %d) exited" % old in st.output()
    # The module reconnected: a new tunnel needs a Redis lookup.
    ssh = wait_for(lambda: _try_ssh(st, sid), timeout=30, what="tunnel again")
    assert ssh.ok("echo ok") == b"ok\n"
    ssh.close()


def _try_ssh(st, sid):
    try:
        return TunnelSSH(st, sid, timeout=5)
    except Exception:
        return None


def test_nginx_master_sigkill_keeps_open_tunnels(run_stack):
    st = run_stack(name="sup-nginx")
    sid = st.create(ttl=600)["session_id"]
    ssh = TunnelSSH(st, sid)
    st.note_nginx()
    old = st.pid("nginx")
    os.kill(old, signal.SIGKILL)
    # The tunnel lives in a worker, which finishes its tunnels and quits.
    assert ssh.ok("echo still") == b"still\n"
    wait_for(lambda: _pid_changed(st, old), timeout=30, what="new master")
    st.note_nginx()
    fresh = wait_for(lambda: _try_ssh(st, sid), timeout=30, what="new tunnel")
    assert fresh.ok("echo new") == b"new\n"
    assert ssh.ok("echo old") == b"old\n"
    fresh.close()
    ssh.close()


def _pid_changed(st, old):
    try:
        return st.pid("nginx") != old and st.healthy()
    except (OSError, ValueError):
        return False


def test_second_run_on_the_same_state_is_refused(run_stack):
    st = run_stack(name="sup-twice")
    second = subprocess.run([os.path.join(ROOT, "scripts", "run.sh")], env=st.env(),
                            capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert second.returncode == 1
    assert "already running (PID %d)" % st.proc.pid in second.stderr, second.stderr
    assert st.healthy()


def test_sigterm_to_make_run_returns_when_all_is_stopped():
    """SIGTERM to the process group of `make run`, as a terminal or a
    service manager sends it: make returns only when the drain is done
    and no process of the stack is left."""
    st = RunStack(name="sup-make")
    try:
        st.start(cmd=["make", "-s", "--no-print-directory", "run", "VAR=" + st.var,
                      "LISTEN=127.0.0.1:%d" % st.port])
        sid = st.create(ttl=600)["session_id"]
        assert st.runc_containers()
        st.note_nginx()
        before = st.processes()
        assert len(before) >= 4, before  # redis, backend, nginx master + workers
        st.signal_group(signal.SIGTERM)
        st.proc.wait(180)
        # Nothing is left the moment make returns: no waiting here.
        assert [p for p in before if alive(p)] == []
        assert st.processes() == []
        assert st.runc_containers() == []
        assert not os.path.exists(os.path.join(st.var, "sessions", sid))
        assert "pico: stopped" in st.output()
    finally:
        st.stop(sig=signal.SIGKILL)
        for p in st.processes():
            os.kill(p, signal.SIGKILL)


def test_leftovers_of_a_sigkilled_run_are_stopped_and_sessions_kept(run_stack):
    st = run_stack(name="sup-leftover")
    sid = st.create(ttl=600)["session_id"]
    ssh = TunnelSSH(st, sid)
    ssh.ok("echo survived > /workspace/f")
    ssh.close()
    st.note_nginx()
    parts = {p: st.pid(p) for p in ("redis", "backend", "nginx")}
    st.signal_group(signal.SIGKILL)
    st.proc.wait(30)
    # run.sh is gone; the parts ran in their own sessions and are left.
    for name, pid in parts.items():
        assert alive(pid), name

    st.start(fresh=False)
    out = st.output()
    for name, pid in parts.items():
        assert "found %s (PID %d) left running" % (name, pid) in out, out
        assert not alive(pid), name
    wait_for(lambda: session_listed(st, sid), timeout=30, what="session listed")
    ssh = TunnelSSH(st, sid)
    assert ssh.ok("cat /workspace/f") == b"survived\n"
    ssh.close()


def test_ctrl_c_again_during_the_drain_does_not_cut_it_short():
    """Ctrl-C pressed again (and again) while the drain runs: the terminal
    sends SIGINT to the whole process group, the drain command included.
    The drain still deletes every session and stops every part."""
    st = RunStack(name="sup-twice")
    try:
        st.start()
        sids = [st.create(ttl=600)["session_id"] for _ in range(6)]
        st.note_nginx()
        before = st.processes()
        st.signal_group(signal.SIGINT)
        wait_for(lambda: "stopping: draining sessions" in st.output()[st.out_from:],
                 timeout=30, interval=0.01, what="the drain to start")
        left = [s for s in sids if os.path.exists(os.path.join(st.var, "sessions", s))]
        st.signal_group(signal.SIGINT)
        st.signal_group(signal.SIGTERM)
        # the signals came while sessions were still to be deleted
        assert left, "the drain was over before the second signal"
        st.proc.wait(180)
        out = st.output()[st.out_from:]
        assert "pico: stopped" in out, out
        assert [p for p in before if alive(p)] == []
        assert st.runc_containers() == []
        for sid in sids:
            assert not os.path.exists(os.path.join(st.var, "sessions", sid)), out
    finally:
        st.stop(sig=signal.SIGKILL)
        for p in st.processes():
            os.kill(p, signal.SIGKILL)
