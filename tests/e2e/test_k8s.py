"""End-to-end tests of the kubernetes runtime.

The whole pico stack runs for real (redis-server, pico-backend, nginx with
ngx_pico_module); only the Kubernetes API server is the fake one in
tests/fake_k8s/server.py, whose pods are runc containers from the sandbox
rootfs, run with the pod's securityContext, sshd on their own addresses in
127.0.0.0/8.

A second group drives the driver alone (build/k8s/driver_cli) for what
the REST API cannot steer: watch reconnects, 410 Gone, API errors in each
step, kubeconfig and token authentication.
"""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import paramiko
import pytest

from pico_stack import IMAGES, ROOT, Stack, backend_binary, free_port, port_open, wait_for

ROOTFS = os.path.join(IMAGES, "sandbox_latest", "rootfs")
FAKE = os.path.join(ROOT, "tests", "fake_k8s", "server.py")
DRIVER = os.path.join(ROOT, "build", "k8s", "driver_cli")
NS = "pico-sandboxes"
READY_TIMEOUT_S = 3  # the test stack's k8s_ready_timeout_s



@pytest.fixture(scope="module", autouse=True)
def prerequisites():
    # Missing pieces fail, as in test_cli.py: a skipped suite reads as a
    # passed one.
    assert os.path.isfile(os.path.join(ROOTFS, "usr", "sbin", "sshd")), \
        "no sandbox rootfs at %s (make rootfs, or set PICO_IMAGES)" % ROOTFS
    assert os.path.exists(DRIVER), "build/k8s/driver_cli not built (make build-all)"


class FakeK8s:
    """The fake API server as a process of this test run."""

    def __init__(self, token=None, gc=False, tls=False):
        self.port = free_port()
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.token = token
        self.state = os.path.join(ROOT, "var", "t", "fake_k8s-%d-%d" % (self.port, os.getpid()))
        os.makedirs(self.state, exist_ok=True)
        cmd = [sys.executable if sys.executable.startswith("/usr/bin/") else "/usr/bin/python3",
               FAKE, "--port", str(self.port), "--rootfs", ROOTFS, "--state", self.state]
        if token:
            cmd += ["--token", token]
        if gc:
            cmd += ["--gc"]
        self.ca = None
        if tls:
            # A self-signed certificate for 127.0.0.1: the API server's,
            # and the CA clients must be told to trust.
            self.ca = os.path.join(self.state, "tls.crt")
            key = os.path.join(self.state, "tls.key")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                            "-subj", "/CN=fake-kube-apiserver", "-addext",
                            "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", self.ca],
                           check=True, capture_output=True)
            cmd += ["--tls-cert", self.ca, "--tls-key", key]
        self.log = open(os.path.join(self.state, "server.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        wait_for(self._up, what="fake API server")

    def _up(self):
        if self.proc.poll() is not None:
            raise RuntimeError("fake API server exited, see %s/server.log" % self.state)
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def call(self, method, path, body=None, ctype="application/json"):
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca) if self.ca else None
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def state_dump(self):
        return self.call("GET", "/_fake/state")[1]

    def pods(self):
        return {p["metadata"]["name"]: p for p in self.state_dump()["pods"]}

    def secrets(self):
        return {s["metadata"]["name"]: s for s in self.state_dump()["secrets"]}

    def faults(self, **kw):
        assert self.call("POST", "/_fake/faults", kw)[0] == 200

    def reset_faults(self):
        self.call("DELETE", "/_fake/faults")

    def stop(self):
        """SIGTERM; the fake must stop cleanly and take its sshd's along."""
        sshd = list(self.state_dump()["sshd"].values())
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("fake API server ignored SIGTERM")
        self.log.close()
        for pid in sshd:
            assert not os.path.exists("/proc/%d" % pid) or \
                open("/proc/%d/stat" % pid).read().split()[2] == "Z", "pod %d left running" % pid
        # Nothing of runc is left: no container under the fake's runc root
        # (running or stopped), no cgroup of one.
        runc = subprocess.run(["runc", "--root", os.path.join(self.state, "runc"), "list", "-q"],
                              capture_output=True, text=True, timeout=30)
        assert runc.returncode == 0 and runc.stdout.split() == [], \
            "runc containers left: %r %r" % (runc.stdout, runc.stderr)
        left = [d for h in os.listdir("/sys/fs/cgroup")
                for d in glob.glob("/sys/fs/cgroup/%s/pico-fake-k8s/%d-*" % (h, self.port))]
        assert left == [], "cgroups left: %s" % left


@pytest.fixture(scope="module")
def fake():
    f = FakeK8s()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def dfake():
    """A fake of the driver-alone tests' own: the stack's backend watches
    every sandbox pod, and its requests would take their injected faults
    and spoil their request counts."""
    f = FakeK8s()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def kstack(fake):
    """A stack on the kubernetes runtime with a short readiness deadline."""
    s = Stack(name="k8s", runtime="kubernetes", env={"K8S_API": fake.url})
    s.configure()
    s.set_conf("k8s_ready_timeout_s", str(READY_TIMEOUT_S))
    s.start(configure=False)
    yield s
    s.stop()
    pods_gone(fake, *[n for n in fake.pods() if n.startswith("sandbox-")])
    assert s.sanitizer_reports() == [], "sanitizer reported errors: %s" % s.sanitizer_reports()


@pytest.fixture(autouse=True)
def no_faults(request):
    yield
    for name in ("fake", "dfake"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset_faults()


def pods_gone(fake, *names, timeout=10):
    """Deleted pods are Terminating for a while before they go, as on a
    real cluster (the fake's terminate_s)."""
    wait_for(lambda: not set(names) & set(fake.pods()), timeout=timeout, interval=0.05,
             what="pods %s gone" % ", ".join(names))


class Replay:
    """A socket whose first reads return bytes already read from it."""

    def __init__(self, sock, data):
        self._sock, self._data = sock, data

    def recv(self, n):
        if self._data:
            out, self._data = self._data[:n], self._data[n:]
            return out
        return self._sock.recv(n)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def ssh_over_tunnel(stack, sid, **auth):
    """paramiko over CONNECT through nginx; returns (client, server key)."""
    sock, status, rest = stack.open_tunnel(sid)
    assert status.startswith("HTTP/1.1 200"), status
    # sshd's banner may come in the same segment as the 200
    assert rest == b"" or rest.startswith(b"SSH-2.0-"), rest
    t = paramiko.Transport(Replay(sock, rest) if rest else sock)
    t.start_client(timeout=20)
    key = t.get_remote_server_key()
    if "pkey" in auth:
        t.auth_publickey("sandbox", auth["pkey"])
    else:
        t.auth_password("sandbox", auth.get("password", "sandbox"))
    c = paramiko.SSHClient()
    c._transport = t
    return c, key


def run(client, cmd):
    _, out, err = client.exec_command(cmd, timeout=30)
    return out.read().decode(), err.read().decode(), out.channel.recv_exit_status()


# -- through the whole stack ---------------------------------------------

def test_create_ssh_delete(kstack, fake):
    sess = kstack.create(ttl=600)
    sid = sess["session_id"]
    assert sess["status"] == "running"
    name = "sandbox-" + sid
    pod = fake.pods()[name]
    labels = pod["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/managed-by": "pico", "managed-by": "pico-apiserver",
                      "session-id": sid, "sandbox": sess["sandbox_name"]}
    assert pod["metadata"]["namespace"] == NS
    c = pod["spec"]["containers"][0]
    assert c["readinessProbe"]["tcpSocket"]["port"] == 22
    # The local runtime's capabilities (docs/runtime-local.md) plus
    # NET_BIND_SERVICE for port 22; within Pod Security "baseline".
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": [
        "CHOWN", "SETUID", "SETGID", "SYS_CHROOT", "AUDIT_WRITE", "NET_BIND_SERVICE"]}
    assert sc["allowPrivilegeEscalation"] is False
    assert "runtimeClassName" not in pod["spec"]
    assert c["resources"]["limits"] and c["resources"]["requests"]
    assert not any("KEY" in e.get("name", "").upper() for e in c.get("env") or [])
    secret = fake.secrets()[name + "-ssh"]
    assert secret["metadata"]["labels"]["session-id"] == sid
    assert [r["uid"] for r in secret["metadata"]["ownerReferences"]] == [pod["metadata"]["uid"]]
    vol = [v for v in pod["spec"]["volumes"] if "secret" in v][0]
    assert vol["secret"]["secretName"] == name + "-ssh"
    assert vol["secret"]["defaultMode"] in (0o400, 0o600)

    client, key = ssh_over_tunnel(kstack, sid)
    try:
        # The session's host key is the one the pod's sshd shows.
        assert sess["host_key"].split()[1] == key.get_base64()
        out, _, code = run(client, "pwd; id -un; python3 --version")
        assert code == 0
        lines = out.split()
        assert lines[0] == "/workspace" and lines[1] == "sandbox"
        assert "Python 3.11" in out
        out, _, _ = run(client, "echo hi > /workspace/f && cat /workspace/f")
        assert out == "hi\n"
    finally:
        client.close()

    r = kstack.delete(sid)
    assert r.status in (200, 204), r
    assert kstack.request("GET", "/v1/sessions/" + sid).status == 404
    assert fake.pods()[name]["metadata"]["deletionTimestamp"]  # Terminating
    assert name + "-ssh" not in fake.secrets()
    pods_gone(fake, name)
    s, status, _ = kstack.open_tunnel(sid)
    s.close()
    assert " 404 " in status


# Linux capability numbers (linux/capability.h) of the names pods use.
CAP_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3,
            "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8,
            "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18, "SYS_ADMIN": 21,
            "MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31}


def documented_caps():
    """The capability table of docs/kubernetes.md ("The pod's security")."""
    with open(os.path.join(ROOT, "docs", "kubernetes.md")) as f:
        text = f.read()
    sec = text[text.index("### The pod's security"):]
    sec = sec[:sec.index("\n\n", sec.index("| capability |"))]
    caps = set()
    for line in sec.splitlines()[2:]:
        if line.startswith("|") and not line.startswith("|---"):
            caps |= set(re.findall(r"`([A-Z_]+)`", line.split("|")[1]))
    return caps


def proc_status(text):
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_pod_runs_with_its_security_context(kstack, fake):
    """The fake's kubelet runs the pod as a runc container with the pod's
    securityContext; the running sshd has exactly the documented
    capabilities, no_new_privs and the RuntimeDefault seccomp filter, and
    the user's shell none of the capabilities (and cannot gain them)."""
    want = documented_caps()
    assert want == {"CHOWN", "SETUID", "SETGID", "SYS_CHROOT", "AUDIT_WRITE",
                    "NET_BIND_SERVICE"}, want
    mask = sum(1 << CAP_BITS[c] for c in want)
    sid = kstack.create(ttl=600)["session_id"]
    try:
        pod = fake.pods()["sandbox-" + sid]
        assert set(pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]) == want
        st = fake.state_dump()
        pid = st["sshd"][pod["metadata"]["uid"]]
        # a runc container of the fake's, whose PID 1 is this pid
        state = json.loads(subprocess.run(
            ["runc", "--root", st["runc_root"], "state", "pod-" + pod["metadata"]["uid"]],
            capture_output=True, text=True, check=True).stdout)
        assert state["status"] == "running" and state["pid"] == pid
        assert os.readlink("/proc/%d/ns/pid" % pid) != os.readlink("/proc/self/ns/pid")
        assert os.readlink("/proc/%d/ns/mnt" % pid) != os.readlink("/proc/self/ns/mnt")
        with open("/proc/%d/comm" % pid) as f:
            assert f.read().strip() == "sshd"  # the start script exec'd it
        with open("/proc/%d/status" % pid) as f:
            ps = proc_status(f.read())
        assert ps["Uid"].split()[0] == "0"  # no runAsUser: the image's root
        for field in ("CapEff", "CapPrm", "CapBnd"):
            assert int(ps[field], 16) == mask, "%s %s != %x" % (field, ps[field], mask)
        assert int(ps["CapInh"], 16) == 0 and int(ps["CapAmb"], 16) == 0
        assert ps["NoNewPrivs"].strip() == "1"  # allowPrivilegeEscalation: false
        assert ps["Seccomp"].strip() == "2"     # RuntimeDefault: a filter
        client, _ = ssh_over_tunnel(kstack, sid)
        try:
            out, _, code = run(client, "id -u; cat /proc/self/status; "
                               "unshare -U true 2>&1; echo rc=$?")
            assert code == 0
            us = proc_status(out)
            assert out.split()[0] == "1000"
            assert int(us["CapEff"], 16) == 0 and int(us["CapPrm"], 16) == 0
            assert int(us["CapBnd"], 16) == mask
            assert us["NoNewPrivs"].strip() == "1" and us["Seccomp"].strip() == "2"
            # the seccomp filter refuses new namespaces (unshare(2))
            assert "rc=1" in out and "Operation not permitted" in out, out
            # sshd's children of the session: none has more than the set
            sess_pids = [p for p in os.listdir("/proc") if p.isdigit()
                         and os.path.exists("/proc/%s/ns/pid" % p)]
            for p in sess_pids:
                try:
                    if os.readlink("/proc/%s/ns/pid" % p) != os.readlink("/proc/%d/ns/pid" % pid):
                        continue
                    with open("/proc/%s/status" % p) as f:
                        s2 = proc_status(f.read())
                except OSError:
                    continue
                assert int(s2["CapBnd"], 16) == mask and int(s2["CapEff"], 16) & ~mask == 0
                assert s2["NoNewPrivs"].strip() == "1"
        finally:
            client.close()
    finally:
        assert kstack.delete(sid).status == 200


def test_disk_quota_is_ephemeral_storage(kstack, fake):
    """resources.disk_mb on Kubernetes: the pod's ephemeral-storage
    request and limit (the kubelet evicts a pod writing past it) and the
    workspace emptyDir's sizeLimit. Without it, neither is set."""
    sess = kstack.create(ttl=600, resources={"disk_mb": 64})
    sid = sess["session_id"]
    assert sess["resources"]["disk_mb"] == 64
    plain = kstack.create(ttl=600)["session_id"]
    try:
        pod = fake.pods()["sandbox-" + sid]
        res = pod["spec"]["containers"][0]["resources"]
        assert res["limits"]["ephemeral-storage"] == "64Mi"
        assert res["requests"]["ephemeral-storage"] == "64Mi"
        [ws] = [v for v in pod["spec"]["volumes"] if v["name"] == "workspace"]
        assert ws["emptyDir"] == {"sizeLimit": "64Mi"}
        pod = fake.pods()["sandbox-" + plain]
        res = pod["spec"]["containers"][0]["resources"]
        assert "ephemeral-storage" not in res["limits"]
        assert "ephemeral-storage" not in res["requests"]
        [ws] = [v for v in pod["spec"]["volumes"] if v["name"] == "workspace"]
        assert ws["emptyDir"] == {}
    finally:
        assert kstack.delete(sid).status == 200
        assert kstack.delete(plain).status == 200


def test_user_public_key(kstack, fake):
    # The fake lays the Secret out as the kubelet does (a mode-1777 folder
    # of symlinks into ..data): sshd's StrictModes refuses authorized_keys
    # there, so key login works only if the pod copies the keys out first.
    key = paramiko.RSAKey.generate(2048)
    pub = "ssh-rsa " + key.get_base64()
    sid = kstack.create(ttl=600, ssh_public_key=pub)["session_id"]
    try:
        client, _ = ssh_over_tunnel(kstack, sid, pkey=key)
        out, _, _ = run(client, "pwd")
        client.close()
        assert out.strip() == "/workspace"
    finally:
        kstack.delete(sid)


def test_expiry_deletes_pod(kstack, fake):
    sid = kstack.create(ttl=2)["session_id"]
    name = "sandbox-" + sid
    assert name in fake.pods()
    wait_for(lambda: kstack.request("GET", "/v1/sessions/" + sid).status == 404,
             timeout=60, interval=0.2, what="session expiry")
    wait_for(lambda: name not in fake.pods() and name + "-ssh" not in fake.secrets(),
             timeout=30, interval=0.2, what="pod and secret deletion")


def test_api_5xx_during_create(kstack, fake):
    before_pods, before_secrets = set(fake.pods()), set(fake.secrets())
    before = {x["session_id"] for x in kstack.request("GET", "/v1/sessions").json()["sessions"]}
    fake.faults(create_pod_status=500, count=1, message="etcdserver: request timed out")
    r = kstack.request("POST", "/v1/sessions", body={"ttl": 60})
    assert r.status >= 500, r
    err = r.json()["error"]
    assert "etcdserver: request timed out" in err["message"]
    pods_gone(fake, *(set(fake.pods()) - before_pods))
    assert set(fake.secrets()) == before_secrets
    new = [x for x in kstack.request("GET", "/v1/sessions").json()["sessions"]
           if x["session_id"] not in before]
    assert [x["status"] for x in new] in ([], ["failed"])


def test_pod_never_ready(kstack, fake):
    before = set(fake.pods())
    fake.faults(never_ready=True)
    r = kstack.request("POST", "/v1/sessions", body={"ttl": 60})
    assert r.status >= 500, r
    assert "did not become ready within %ds" % READY_TIMEOUT_S in r.json()["error"]["message"]
    pods_gone(fake, *(set(fake.pods()) - before))
    assert not [n for n in fake.secrets() if n not in {p + "-ssh" for p in before}]
    failed = [x for x in kstack.request("GET", "/v1/sessions").json()["sessions"]
              if x["status"] == "failed" and "did not become ready" in (x.get("reason") or "")]
    assert failed


def test_reconcile_after_restart(kstack, fake):
    live = kstack.create(ttl=600)["session_id"]
    vanished = kstack.create(ttl=600)["session_id"]
    kstack.backend.stop()
    try:
        # While the backend is down: its pod vanishes, and a labelled pod
        # nobody has a record of appears.
        assert fake.call("DELETE", "/api/v1/namespaces/%s/pods/sandbox-%s" % (NS, vanished))[0] == 200
        orphan = str(uuid.uuid4())
        labels = {"app.kubernetes.io/managed-by": "pico", "managed-by": "pico-apiserver",
                  "session-id": orphan, "sandbox": "sandbox-" + orphan}
        code, _ = fake.call("POST", "/api/v1/namespaces/%s/pods" % NS, {
            "metadata": {"name": "sandbox-" + orphan, "labels": labels},
            "spec": {"containers": [{"name": "sshd", "image": "sandbox:latest"}]}})
        assert code == 201
    finally:
        kstack.backend.start()
    wait_for(lambda: "sandbox-" + orphan not in fake.pods(), timeout=30, interval=0.2,
             what="orphan pod removal")
    wait_for(lambda: kstack.request("GET", "/v1/sessions/" + vanished).json().get("status") == "failed",
             timeout=30, interval=0.2, what="vanished session marked failed")
    assert kstack.request("GET", "/v1/sessions/" + live).json()["status"] == "running"
    assert "sandbox-" + live in fake.pods()
    client, _ = ssh_over_tunnel(kstack, live)
    assert run(client, "true")[2] == 0
    client.close()
    for sid in (live, vanished):
        kstack.delete(sid)


def session_status(stack, sid):
    return stack.request("GET", "/v1/sessions/" + sid).json()


def tunnel_status(stack, sid):
    s, status, _ = stack.open_tunnel(sid)
    s.close()
    return status


def test_pod_deleted_then_ip_reused_fails_session(kstack, fake):
    """A's pod is deleted from outside and its address given to B's pod:
    A must turn failed at once, and a CONNECT to A must be an error, never
    a tunnel into B's sandbox (its password is public)."""
    a = kstack.create(ttl=600)["session_id"]
    ip = fake.pods()["sandbox-" + a]["status"]["podIP"]
    t0 = time.monotonic()
    assert fake.call("DELETE", "/api/v1/namespaces/%s/pods/sandbox-%s" % (NS, a))[0] == 200
    # Failed while the pod is still Terminating, before its IP is free.
    st = wait_for(lambda: (lambda x: x if x["status"] == "failed" else None)(session_status(kstack, a)),
                  timeout=5, interval=0.05, what="session of the deleted pod failed")
    lag = time.monotonic() - t0
    assert "deleted" in st["reason"], st
    pods_gone(fake, "sandbox-" + a)  # the CNI frees the IP only now
    fake.faults(next_pod_ip=ip)
    b = kstack.create(ttl=600)["session_id"]
    try:
        assert fake.pods()["sandbox-" + b]["status"]["podIP"] == ip
        assert " 200 " not in tunnel_status(kstack, a) + " "
        assert session_status(kstack, a)["status"] == "failed"
        client, _ = ssh_over_tunnel(kstack, b)
        client.close()
    finally:
        kstack.delete(b)
        kstack.delete(a)
    print("failed %.3f s after the delete" % lag)


def test_pod_container_exit_fails_session(kstack, fake):
    """A Ready pod whose container dies (phase Failed, not Ready) fails
    its session with the reason."""
    sid = kstack.create(ttl=600)["session_id"]
    try:
        uid = fake.pods()["sandbox-" + sid]["metadata"]["uid"]
        assert fake.call("POST", "/_fake/pods/%s/crash" % uid)[0] == 200
        st = wait_for(lambda: (lambda x: x if x["status"] == "failed" else None)(session_status(kstack, sid)),
                      timeout=5, interval=0.05, what="session of the failed pod failed")
        assert "Failed" in st["reason"] or "not ready" in st["reason"], st
        assert " 200 " not in tunnel_status(kstack, sid) + " "
    finally:
        kstack.delete(sid)


def test_pod_replaced_under_same_name_is_not_the_session(kstack, fake):
    """While the backend is down the session's pod is replaced by another
    pod of the same name (another uid) on the same address: the record is
    bound to the first pod's uid, so the session is failed, and a CONNECT
    does not reach the stranger."""
    sid = kstack.create(ttl=600)["session_id"]
    name = "sandbox-" + sid
    old = fake.pods()[name]
    ip = old["status"]["podIP"]
    kstack.backend.stop()
    try:
        assert fake.call("DELETE", "/api/v1/namespaces/%s/pods/%s" % (NS, name))[0] == 200
        pods_gone(fake, name)
        fake.faults(next_pod_ip=ip)
        body = {"metadata": {"name": name, "labels": old["metadata"]["labels"]}, "spec": old["spec"]}
        assert fake.call("POST", "/api/v1/namespaces/%s/pods" % NS, body)[0] == 201
        wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "True"
                             for c in fake.pods()[name]["status"].get("conditions", [])),
                 timeout=20, interval=0.1, what="the stranger pod ready")
        assert fake.pods()[name]["metadata"]["uid"] != old["metadata"]["uid"]
    finally:
        kstack.backend.start()
    st = wait_for(lambda: (lambda x: x if x["status"] == "failed" else None)(session_status(kstack, sid)),
                  timeout=10, interval=0.1, what="session of the replaced pod failed")
    assert "uid" in st["reason"], st
    assert " 200 " not in tunnel_status(kstack, sid) + " "
    kstack.delete(sid)
    if name in fake.pods():
        fake.call("DELETE", "/api/v1/namespaces/%s/pods/%s" % (NS, name))


def test_concurrent_creates(kstack, fake):
    # Request threads share one driver: each create must get its own pod,
    # key and address, and SSH into the right one.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as ex:
        rs = list(ex.map(lambda _: kstack.request("POST", "/v1/sessions", body={"ttl": 600}), range(4)))
    assert [r.status for r in rs] == [201] * 4, rs
    sess = [r.json() for r in rs]
    pods = fake.pods()
    ips = {pods["sandbox-" + x["session_id"]]["status"]["podIP"] for x in sess}
    assert len(ips) == 4
    assert len({x["host_key"] for x in sess}) == 4
    for x in sess:
        client, key = ssh_over_tunnel(kstack, x["session_id"])
        client.close()
        assert x["host_key"].split()[1] == key.get_base64()
    for x in sess:
        assert kstack.delete(x["session_id"]).status in (200, 204)


def test_health(kstack, fake):
    assert kstack.request("GET", "/health").status == 200
    fake.faults(list_pod_status=503, count=1000)
    assert kstack.request("GET", "/health").status == 503
    fake.reset_faults()
    assert kstack.request("GET", "/health").status == 200


@pytest.mark.parametrize("prefix,refused", [
    ("pico/", "names no registry"),                 # the old default: a Docker Hub account
    ("someone/sandboxes/", "names no registry"),
    ("REGISTRY.example/pico/", "placeholder"),      # deploy/k8s/base's, not replaced
    ("registry.example.com/pico/", None),
    ("localhost:5000/pico/", None),
    ("docker.io/pico/", None),                      # Docker Hub, said on purpose
    ("", None),                                     # the test stacks'
])
def test_backend_refuses_unnamed_registry(tmp_path, prefix, refused):
    conf = tmp_path / "pico.conf"
    conf.write_text("runtime kubernetes\nredis unix:%s/none.sock\nstate_dir %s\n"
                    "k8s_api http://127.0.0.1:9\nk8s_image_prefix \"%s\"\n" % (tmp_path, tmp_path, prefix))
    r = subprocess.run([backend_binary(), "--config", str(conf)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0  # no Redis: an accepted prefix fails later, at Redis
    if refused:
        assert "k8s_image_prefix" in r.stderr and refused in r.stderr, r.stderr
        assert "redis" not in r.stderr.lower(), r.stderr
    else:
        assert "k8s_image_prefix" not in r.stderr, r.stderr
        assert "redis" in r.stderr.lower(), r.stderr


# -- the driver alone --------------------------------------------------------

def driver(dfake, *args, timeout_s=READY_TIMEOUT_S, env=None):
    e = dict(os.environ, **(env or {}))
    r = subprocess.run([DRIVER, dfake.url, NS, str(timeout_s)] + list(args),
                       capture_output=True, text=True, timeout=120, env=e)
    return r.returncode, r.stdout, r.stderr


def test_driver_watch_reconnects_and_410(dfake):
    # Streams end every 0.1 s and the first two watches answer 410 Gone:
    # the driver must resume from its resourceVersion or re-read the pod.
    dfake.faults(watch_max_s=0.1, watch_gone=2)
    sid = str(uuid.uuid4())
    code, out, err = driver(dfake, "create", sid, timeout_s=30)
    assert code == 0, err
    ip, port = out.split()[0].rsplit(":", 1)
    assert port == "22" and ip.startswith("127.")
    socket.create_connection((ip, 22), 5).close()
    assert driver(dfake, "alive", sid)[1].strip() == "1"
    assert sid in driver(dfake, "list")[1].split()
    assert driver(dfake, "destroy", sid)[0] == 0
    assert driver(dfake, "alive", sid)[1].strip() == "0"
    assert driver(dfake, "destroy", sid)[0] == 0  # already gone is success


def pod_requests(dfake, since):
    """The API requests about pods and secrets made since `since`."""
    return [r for r in dfake.state_dump()["requests"]
            if r[3] >= since and ("/pods" in r[1] or "/secrets" in r[1])]


def test_driver_410_with_compaction_does_not_storm(dfake):
    # The shortest history window: every watch first compacts, so a watch
    # from any resourceVersion older than the newest change answers 410.
    # The pod does not change for 2 s. Resuming from the pod's own
    # resourceVersion would 410 again at once (about 1,000 requests a
    # second); resuming from a LIST's, with backoff, takes a handful.
    dfake.faults(compact=True, ready_delay_s=2)
    sid = str(uuid.uuid4())
    t0, before = time.time(), dfake.state_dump()["request_count"]
    code, out, err = driver(dfake, "create", sid, timeout_s=30)
    n = dfake.state_dump()["request_count"] - before
    assert code == 0, err
    print("API requests for one create with compaction:", n)
    assert n < 20, "%d API requests for one create" % n
    lists = [r for r in pod_requests(dfake, t0)
             if r[0] == "GET" and "watch" not in r[2] and r[1].endswith("/pods")]
    assert lists and lists[0][2]["fieldSelector"] == "metadata.name=sandbox-" + sid
    assert driver(dfake, "destroy", sid)[0] == 0


def test_driver_watch_error_event_is_retried(dfake):
    # An ERROR event that is not 410 (etcd trouble, throttling) is the API
    # server's passing problem: the watch is tried again after a pause.
    dfake.faults(watch_error={"code": 500, "count": 2, "message": "etcdserver: leader changed"},
                ready_delay_s=1)
    sid = str(uuid.uuid4())
    code, _, err = driver(dfake, "create", sid, timeout_s=30)
    assert code == 0, err
    assert driver(dfake, "destroy", sid)[0] == 0


def test_driver_relist_429_honours_retry_after(dfake):
    # After a 410 the driver re-reads the pod; that read answers 429 with
    # Retry-After: 1, then 503: both are retried (the first after at least
    # the second the server asked for), and the create succeeds. The
    # rules cover a GET of the pod by name too, whichever way it reads.
    rules = [{"method": m, "resource": "pods", "status": st, "count": 1, "watch": False,
              **({"retry_after": 1} if st == 429 else {})}
             for m in ("LIST", "GET") for st in (429, 503)]
    dfake.faults(compact=True, ready_delay_s=3, rules=rules)
    sid = str(uuid.uuid4())
    t0 = time.time()
    code, _, err = driver(dfake, "create", sid, timeout_s=30)
    assert code == 0, err
    reqs = pod_requests(dfake, t0)
    reads = [i for i, r in enumerate(reqs) if r[0] == "GET" and "watch" not in r[2]]
    assert len(reads) >= 3, reqs
    # The next request after the 429 came no sooner than Retry-After.
    assert reqs[reads[0] + 1][3] - reqs[reads[0]][3] >= 0.95
    assert driver(dfake, "destroy", sid)[0] == 0


def test_driver_runtime_class(dfake):
    # k8s_runtime_class names the pods' RuntimeClass (gVisor, Kata...);
    # a name no RuntimeClass could have is refused at start.
    sid = str(uuid.uuid4())
    code, _, err = driver(dfake, "create", sid, timeout_s=30, env={"K8S_RUNTIME_CLASS": "gvisor"})
    assert code == 0, err
    assert dfake.pods()["sandbox-" + sid]["spec"]["runtimeClassName"] == "gvisor"
    assert driver(dfake, "destroy", sid)[0] == 0
    code, _, err = driver(dfake, "health", env={"K8S_RUNTIME_CLASS": "Bad Name"})
    assert code == 1 and "k8s_runtime_class" in err, err


def test_driver_list_long_and_expired_continue(dfake):
    # Pages of one item, continue tokens of 1,500+ characters with '+', '/'
    # and '=' in them, and the second token expired (410): list must still
    # report every labelled pod, each once.
    sids = [str(uuid.uuid4()) for _ in range(3)]
    for sid in sids:
        labels = {"app.kubernetes.io/managed-by": "pico", "managed-by": "pico-apiserver",
                  "session-id": sid, "sandbox": "sandbox-" + sid}
        code, _ = dfake.call("POST", "/api/v1/namespaces/%s/pods" % NS, {
            "metadata": {"name": "sandbox-" + sid, "labels": labels},
            "spec": {"containers": [{"name": "sshd", "image": "sandbox:latest"}]}})
        assert code == 201
    try:
        dfake.faults(max_page=1, long_continue=True, continue_gone=1)
        code, out, err = driver(dfake, "list")
        assert code == 0, err
        listed = out.split()
        assert sorted(set(sids) & set(listed)) == sorted(sids), (out, err)
        assert len(listed) == len(set(listed))
    finally:
        dfake.reset_faults()
        for sid in sids:
            driver(dfake, "destroy", sid)


@pytest.mark.parametrize("fault,text", [
    ({"create_secret_status": 403, "message": "secrets is forbidden: User cannot create"},
     "403 Forbidden: secrets is forbidden"),
    ({"create_pod_status": 422, "message": 'Pod "x" is invalid: spec.containers: Required value'},
     "422 Invalid"),
    ({"create_pod_status": 409}, "409 AlreadyExists"),
    ({"patch_secret_status": 500}, "500"),
])
def test_driver_api_errors_leave_nothing(dfake, fault, text):
    dfake.faults(**fault)
    sid = str(uuid.uuid4())
    code, _, err = driver(dfake, "create", sid)
    assert code == 1
    assert text in err
    pods_gone(dfake, "sandbox-" + sid)
    assert "sandbox-" + sid + "-ssh" not in dfake.secrets()


def test_driver_hung_api_fails_within_deadline(dfake):
    # The API server takes the pod create and does not answer in time: the
    # create fails with curl's timeout (no hang), and the secret made
    # before it is removed.
    dfake.faults(rules=[{"method": "POST", "resource": "pods", "status": 504,
                        "delay_s": READY_TIMEOUT_S + 3, "count": 1}])
    sid = str(uuid.uuid4())
    code, _, err = driver(dfake, "create", sid)
    assert code == 1
    assert "Timeout" in err or "timed out" in err, err
    assert "sandbox-" + sid + "-ssh" not in dfake.secrets()
    pods_gone(dfake, "sandbox-" + sid)


def test_driver_alive_after_container_exit(dfake):
    # restartPolicy Never: a sandbox whose sshd died is not alive.
    sid = str(uuid.uuid4())
    code, _, err = driver(dfake, "create", sid, timeout_s=60)
    assert code == 0, err
    uid = dfake.pods()["sandbox-" + sid]["metadata"]["uid"]
    assert dfake.call("POST", "/_fake/pods/%s/crash" % uid)[0] == 200
    wait_for(lambda: driver(dfake, "alive", sid)[1].strip() == "0", timeout=20, what="pod failed")
    assert driver(dfake, "destroy", sid)[0] == 0


def test_driver_unreachable_api_is_an_error_not_a_hang():
    port = free_port()  # nothing listens there
    r = subprocess.run([DRIVER, "http://127.0.0.1:%d" % port, NS, "3", "create", str(uuid.uuid4())],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "kubernetes API" in r.stderr


def test_driver_kubeconfig_and_token(tmp_path):
    f = FakeK8s(token="s3cr3t-token")
    try:
        sid = str(uuid.uuid4())
        # Without the token: 401, and the Status message says so.
        code, _, err = driver(f, "health")
        assert code == 1 and "401" in err
        kc = tmp_path / "config"
        kc.write_text(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: %s\n"
            "  name: dfake\ncontexts:\n- context:\n    cluster: dfake\n    user: pico\n"
            "    namespace: %s\n  name: dfake-ctx\ncurrent-context: dfake-ctx\n"
            "users:\n- name: pico\n  user:\n    token: \"s3cr3t-token\"\n" % (f.url, NS))
        code, _, err = driver(f, "health", env={"K8S_KUBECONFIG": str(kc)})
        assert code == 0, err
        # As minikube writes it: the lists nested in items (extensions)
        # are not items of the clusters: or contexts: list.
        kc.write_text(
            "apiVersion: v1\nclusters:\n- cluster:\n    extensions:\n"
            "    - extension:\n        provider: minikube.sigs.k8s.io\n"
            "        version: v1.32.0\n      name: cluster_info\n    server: %s\n"
            "  name: minikube\ncontexts:\n- context:\n    cluster: minikube\n"
            "    extensions:\n    - extension:\n        provider: minikube.sigs.k8s.io\n"
            "      name: context_info\n    namespace: default\n    user: minikube\n"
            "  name: minikube\ncurrent-context: minikube\nkind: Config\n"
            "users:\n- name: minikube\n  user:\n    token: s3cr3t-token\n" % f.url)
        code, _, err = driver(f, "health", env={"K8S_KUBECONFIG": str(kc)})
        assert code == 0, err
        tok = tmp_path / "token"
        tok.write_text("s3cr3t-token\n")
        code, out, err = driver(f, "create", sid, timeout_s=30, env={"K8S_TOKEN_FILE": str(tok)})
        assert code == 0, err
        assert driver(f, "destroy", sid, env={"K8S_TOKEN_FILE": str(tok)})[0] == 0
    finally:
        f.stop()


def test_driver_tls_in_cluster_and_kubeconfig_ca(tmp_path):
    f = FakeK8s(token="in-cluster-token", tls=True)
    try:
        tok = tmp_path / "token"
        tok.write_text("in-cluster-token")
        cluster = {"K8S_INCLUSTER": "1", "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                   "KUBERNETES_SERVICE_PORT": str(f.port), "K8S_TOKEN_FILE": str(tok)}
        # The certificate is verified: without the CA the call fails.
        code, _, err = driver(f, "health", env=cluster)
        assert code == 1 and "certificate" in err.lower(), err
        cluster["K8S_CA_FILE"] = f.ca
        code, _, err = driver(f, "health", env=cluster)
        assert code == 0, err
        sid = str(uuid.uuid4())
        code, _, err = driver(f, "create", sid, timeout_s=30, env=cluster)
        assert code == 0, err
        assert driver(f, "destroy", sid, env=cluster)[0] == 0
        # kubeconfig with the CA inline (certificate-authority-data).
        import base64
        ca_data = base64.b64encode(open(f.ca, "rb").read()).decode()
        kc = tmp_path / "config"
        kc.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n  - name: k\n"
            "    cluster:\n      certificate-authority-data: %s\n      server: %s\n"
            "contexts:\n  - name: c\n    context: {cluster: k, user: u}\n" % (ca_data, f.url))
        # flow-style maps are outside the subset: the context names no cluster.
        code, _, err = driver(f, "health", env={"K8S_KUBECONFIG": str(kc)})
        assert code == 1 and "no cluster" in err, err
        kc.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n  - name: k\n"
            "    cluster:\n      certificate-authority-data: %s\n      server: %s\n"
            "contexts:\n  - name: c\n    context:\n      cluster: k\n      user: u\n"
            "users:\n  - name: u\n    user:\n      tokenFile: token\n" % (ca_data, f.url))
        code, _, err = driver(f, "health", env={"K8S_KUBECONFIG": str(kc)})
        assert code == 0, err
    finally:
        f.stop()


# -- make run RUNTIME=kubernetes-fake, and the real kubectl ----------------

GUIDE = os.path.join(os.path.dirname(ROOT), "shared", "reference", "TEST_TUNNEL_GUIDE.zh.md")


def guide_script():
    """test_complete.sh as the user's guide prints it (its first bash block
    after the heading), or None when the guide is not beside the checkout."""
    if not os.path.exists(GUIDE):
        return None
    text = open(GUIDE, encoding="utf-8").read()
    text = text[text.index("test_complete.sh"):]
    return text[text.index("```bash\n") + 8:text.index("\n```", text.index("```bash\n"))] + "\n"


@pytest.fixture(scope="module")
def runfake():
    from supervised import RunStack

    class FakeRun(RunStack):
        def env(self):
            return dict(super().env(), RUNTIME="kubernetes-fake", K8S_FAKE_PORT=str(self.k8s_port))

    # The guide's script names localhost:8080: that port when it is free.
    s = FakeRun(name="runfake")
    if not port_open(8080):
        s.port = 8080
    s.k8s_port = free_port()
    s.start()
    yield s
    s.stop()
    assert "pico: stopped" in s.output()


def kubectl(stack, *args, timeout=90):
    r = subprocess.run(["kubectl"] + list(args), capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, KUBECONFIG=os.path.join(stack.var, "kubeconfig")))
    return r.returncode, r.stdout, r.stderr


def test_make_run_kubernetes_fake_with_real_kubectl(runfake):
    conf = open(os.path.join(runfake.var, "conf", "pico.conf")).read()
    assert "runtime kubernetes" in conf
    sess = runfake.create(ttl=600)
    sid, name = sess["session_id"], sess["sandbox_name"]
    try:
        code, out, err = kubectl(runfake, "get", "pods", "-l", "managed-by=pico-apiserver")
        assert code == 0, err
        assert out.split("\n")[0].split()[:3] == ["NAME", "READY", "STATUS"], out
        assert name in out and "1/1" in out and "Running" in out, out
        code, out, err = kubectl(runfake, "wait", "--for=condition=Ready", "pod",
                                 "-l", "session-id=" + sid, "--timeout=60s")
        assert code == 0 and "condition met" in out, err
        code, out, err = kubectl(runfake, "get", "pod", name, "-o", "yaml")
        assert code == 0, err
        import yaml
        pod = yaml.safe_load(out)
        assert pod["metadata"]["labels"]["session-id"] == sid
        assert pod["status"]["phase"] == "Running"
    finally:
        assert runfake.delete(sid).status == 200
    wait_for(lambda: name not in kubectl(runfake, "get", "pods", "-l", "managed-by=pico-apiserver")[1],
             timeout=10, interval=0.2, what="kubectl no longer listing the pod")


def test_make_run_kubernetes_fake_test_complete(runfake):
    """scripts/test_complete.sh, and the guide's own test_complete.sh
    (its kubectl wait -l sandbox=... included) unmodified."""
    env = dict(os.environ, KUBECONFIG=os.path.join(runfake.var, "kubeconfig"),
               PICO_API="http://127.0.0.1:%d" % runfake.port)
    r = subprocess.run([os.path.join(ROOT, "scripts", "test_complete.sh")], capture_output=True,
                       text=True, timeout=180, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    script = guide_script()
    assert script is not None, "the user's guide is not at %s" % GUIDE
    assert runfake.port == 8080, "port 8080 is taken: the guide's script cannot run unmodified"
    path = os.path.join(runfake.var, "test_complete.sh")
    with open(path, "w") as f:
        f.write(script)
    os.chmod(path, 0o755)
    r = subprocess.run([path], capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "condition met" in r.stdout and "所有测试完成" in r.stdout, r.stdout


# -- the fake, as strict as a real API server where the driver depends on it

def test_fake_terminating_grace_and_async_gc():
    """DELETE marks the pod Terminating with the DeleteOptions body's grace
    period; it goes only after its container stopped, and the garbage
    collector removes the owned Secret later, not in the same request."""
    f = FakeK8s(gc=True)
    try:
        sid = str(uuid.uuid4())
        code, _, err = driver(f, "create", sid, timeout_s=20)
        assert code == 0, err
        f.faults(terminate_s=1.0, gc_delay_s=0.5)
        name = "sandbox-" + sid
        code, pod = f.call("DELETE", "/api/v1/namespaces/%s/pods/%s" % (NS, name),
                           {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 7})
        assert code == 200
        assert pod["metadata"]["deletionTimestamp"] and pod["metadata"]["deletionGracePeriodSeconds"] == 7
        assert name in f.pods() and name + "-ssh" in f.secrets()
        assert driver(f, "alive", sid)[1].strip() == "0"  # Terminating is not alive
        pods_gone(f, name)
        wait_for(lambda: name + "-ssh" not in f.secrets(), timeout=5, interval=0.05,
                 what="the owned Secret collected")
    finally:
        f.stop()


def test_fake_bookmarks_namespace_and_selector(dfake):
    # BOOKMARK events when asked for (allowWatchBookmarks), none otherwise.
    import http.client
    def watch_lines(query):
        c = http.client.HTTPConnection("127.0.0.1", dfake.port, timeout=10)
        c.request("GET", "/api/v1/namespaces/%s/pods?watch=1&resourceVersion=%s&timeoutSeconds=2%s"
                  % (NS, dfake.call("GET", "/api/v1/namespaces/%s/pods" % NS)[1]["metadata"]["resourceVersion"],
                     query))
        body = c.getresponse().read().decode()
        c.close()
        return [json.loads(x) for x in body.splitlines() if x.strip()]
    dfake.faults(bookmark_s=0.5)
    evs = watch_lines("&allowWatchBookmarks=true")
    assert evs and all(e["type"] == "BOOKMARK" for e in evs), evs
    assert evs[0]["object"]["metadata"]["resourceVersion"]
    assert watch_lines("") == []
    # A body naming another namespace than the URL is a 400, not a move.
    code, st = dfake.call("POST", "/api/v1/namespaces/%s/pods" % NS, {
        "metadata": {"name": "x", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}})
    assert code == 400 and st["reason"] == "BadRequest" and "namespace" in st["message"], st
    # Invalid label selectors are a 400.
    for sel in ("a=b=c", "=x", "a/b/c=d", "x=" + "v" * 64):
        code, st = dfake.call("GET", "/api/v1/namespaces/%s/pods?labelSelector=%s"
                              % (NS, urllib.parse.quote(sel)))
        assert code == 400 and st["reason"] == "BadRequest", (sel, st)


def test_driver_request_bodies_match_upstream_schema(fake, dfake):
    """Every body the driver sent to either fake in this module (the
    stack's creates and deletes, the driver-alone runs) is valid against
    the upstream Kubernetes OpenAPI schemas, unknown fields refused
    (tests/deploy/k8s_schema.py): the Pod, Secret and NetworkPolicy as
    POSTed, the ownerReferences merge patches applied, DeleteOptions."""
    logs = [os.path.join(f.state, "bodies.jsonl") for f in (fake, dfake)]
    logs = [p for p in logs if os.path.exists(p)]
    seen = set()
    for p in logs:
        with open(p) as fh:
            for line in fh:
                rec = json.loads(line)
                if rec.get("user_agent") != "pico-backend":
                    continue
                kind = rec["body"].get("kind") if isinstance(rec["body"], dict) else None
                seen.add((rec["method"], kind))
    for want in (("POST", "Pod"), ("POST", "Secret"), ("POST", "NetworkPolicy"), ("PATCH", None),
                 ("DELETE", "DeleteOptions")):
        assert want in seen, "no %s %s body logged: %s" % (want + (seen,))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "deploy", "k8s_schema.py"),
                        "--bodies"] + logs, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 invalid" in r.stdout, r.stdout



def test_pause_is_refused_and_idle_deletes(kstack, fake):
    """The Kubernetes driver cannot pause (docs/kubernetes.md, "Pause"):
    501 not_supported, the pod untouched; an idle session is deleted
    instead of paused."""
    sid = kstack.create(ttl=300)["session_id"]
    for what in ("pause", "resume"):
        r = kstack.request("POST", "/v1/sessions/%s/%s" % (sid, what))
        assert r.status == 501, r
        err = r.json()["error"]
        assert err == {"code": "not_supported",
                       "message": "the kubernetes runtime cannot pause sessions"}
    assert session_status(kstack, sid)["status"] == "running"
    assert kstack.delete(sid).status == 200
    idle = kstack.create(ttl=300, idle_timeout=1)["session_id"]
    wait_for(lambda: kstack.request("GET", "/v1/sessions/" + idle).status == 404,
             timeout=30, what="idle delete")
    pods_gone(fake, "sandbox-" + idle)


def test_network_not_allowed_is_400(kstack, fake):
    """This stack's network_allowed is the default, none: egress is a 400
    and nothing is made (test_k8s_network.py has the allowed cases)."""
    before = {p["metadata"]["name"] for p in fake.state_dump()["networkpolicies"]}
    r = kstack.request("POST", "/v1/sessions", body={"ttl": 60, "network": "egress"})
    assert r.status == 400, r
    assert r.json()["error"]["message"] == \
        "network: egress is not allowed on this server (allowed: none)", r.json()
    assert {p["metadata"]["name"] for p in fake.state_dump()["networkpolicies"]} == before
