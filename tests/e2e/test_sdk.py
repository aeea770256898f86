"""End-to-end tests of the Python SDK (sdk/python, package sandbox_sdk)
against a real pico stack: redis-server, pico-backend, nginx with
ngx_pico_module, runc sandboxes running sshd. Nothing of pico is faked."""

import datetime as dt
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SDK = os.path.join(ROOT, "sdk", "python")
sys.path.insert(0, SDK)

import sandbox_sdk  # noqa: E402
from sandbox_sdk import tunnel as sdk_tunnel  # noqa: E402
from sandbox_sdk import (AuthenticationError, HostKeyMismatch,  # noqa: E402
                         InvalidRequest, SandboxClient, SandboxConnectionError,
                         SandboxError, SandboxNotReady, SessionNotFound)

MiB = 1 << 20


@pytest.fixture(scope="module")
def client(stack):
    return SandboxClient(stack.url, token="")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def other_host_key(tmp_path):
    """A valid ed25519 public key that is not any sandbox's."""
    path = str(tmp_path / "other_key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path],
                   check=True)
    with open(path + ".pub") as f:
        return " ".join(f.read().split()[:2])


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "connection closed after %r" % buf
        buf += chunk
    return buf


def test_lifecycle(stack, client):
    health = client.health()
    assert isinstance(health, dict)

    session = client.create_session(ttl=600, metadata={"purpose": "sdk-e2e"},
                                    resources={"memory_mb": 256})
    try:
        assert str(uuid.UUID(session.session_id)) == session.session_id
        assert session.status == "running"
        assert session.image == "sandbox:latest"
        assert session.ttl == 600
        assert session.created_at.tzinfo is not None
        assert session.expires_at - session.created_at == dt.timedelta(seconds=600)
        now = dt.datetime.now(dt.timezone.utc)
        assert abs((now - session.created_at).total_seconds()) < 300
        assert session.sandbox_name
        assert session.host_key.startswith("ssh-ed25519 AAAA")
        assert session.host_key_fingerprint.startswith("SHA256:")
        assert session.metadata == {"purpose": "sdk-e2e"}
        assert session.resources.get("memory_mb") == 256

        again = client.get_session(session.session_id)
        assert again.session_id == session.session_id
        assert again.created_at == session.created_at
        assert again.host_key == session.host_key

        listed = client.list_sessions()
        assert session.session_id in [s.session_id for s in listed]
        assert listed.total >= 1

        r = session.run("pwd; whoami; python3 --version")
        assert r.exit_code == 0, r
        lines = r.stdout.splitlines()
        assert lines[0] == "/workspace" and lines[1] == "sandbox"
        assert lines[2].startswith("Python 3.11")
        assert r.stdout_bytes.decode() == r.stdout

        r = session.run("echo out; echo err >&2; exit 7")
        assert (r.exit_code, r.stdout, r.stderr) == (7, "out\n", "err\n")
        with pytest.raises(sandbox_sdk.CommandError):
            r.check()

        r = session.run("tr a-z A-Z", stdin="hello sandbox\n")
        assert r.stdout == "HELLO SANDBOX\n"

        assert session.write_file("/workspace/note.txt", "caf\u00e9\n") == 6
        assert session.read_file("/workspace/note.txt") == "caf\u00e9\n".encode()
        assert "note.txt" in session.list_dir("/workspace")
        assert session.run("cat /workspace/note.txt").stdout == "caf\u00e9\n"

        with pytest.raises(sandbox_sdk.CommandTimeout):
            session.run("sleep 30", timeout=1)
        # the connection is still usable after a timeout, and the command
        # was killed
        assert session.run("echo still").stdout == "still\n"
        assert session.run("ps -eo args | grep -c '^sleep 30' || true").stdout == "0\n"

        # relative paths: SFTP and commands both start in /workspace
        session.write_file("relative.txt", b"rel\n")
        assert session.run("cat relative.txt").stdout == "rel\n"

        session.refresh()
        assert session.status == "running"
    finally:
        session.delete()
    assert session.status == "terminated"
    with pytest.raises(SessionNotFound) as info:
        client.get_session(session.session_id)
    assert info.value.status == 404 and info.value.message
    with pytest.raises(SessionNotFound):
        client.delete_session(session.session_id)
    with pytest.raises(SessionNotFound):
        session.run("true")
    with pytest.raises(SessionNotFound):
        session.refresh()
    assert session.session_id not in [s.session_id for s in client.list_sessions()]


def test_guide_example_runs_as_written(stack):
    """The Python example of TEST_TUNNEL_GUIDE.zh.md, with only the
    service address changed to this stack's."""
    code = (
        "from sandbox_sdk import SandboxClient\n"
        "\n"
        'client = SandboxClient("http://localhost:8080", token="")\n'
        "session = client.create_session(ttl=3600)\n"
        "\n"
        'print(f"Session ID: {session.session_id}")\n'
        'print(f"Run: ./bin/test-tunnel -session {session.session_id}")\n'
    ).replace("http://localhost:8080", "http://localhost:%d" % stack.port)
    env = dict(os.environ, PYTHONPATH=SDK)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith("Session ID: ")
    sid = first[len("Session ID: "):]
    assert str(uuid.UUID(sid)) == sid
    assert out.stdout.splitlines()[1] == "Run: ./bin/test-tunnel -session " + sid
    r = stack.request("GET", "/v1/sessions/" + sid)
    assert r.status == 200 and r.json()["status"] == "running"
    assert stack.delete(sid).status == 200


def test_twenty_sessions_concurrently(client):
    """20 sessions created at once; each runs commands from 3 threads at
    the same time over its one SSH connection."""
    n_sessions, n_threads, n_cmds = 20, 3, 4

    def work(i):
        s = client.create_session(ttl=600, metadata={"worker": str(i)})
        try:
            outputs = []
            lock = threading.Lock()

            def runner(t):
                for k in range(n_cmds):
                    tag = "%d-%d-%d" % (i, t, k)
                    r = s.run("echo %s; python3 -c 'print(%d*%d)'" % (tag, t + 2, k + 3))
                    with lock:
                        outputs.append((tag, r.exit_code, r.stdout))

            threads = [threading.Thread(target=runner, args=(t,))
                       for t in range(n_threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # every command ran in this session's own sandbox
            name = s.run("cat /etc/hostname 2>/dev/null || hostname").stdout.strip()
            marker = s.run("echo %s > /workspace/who; cat /workspace/who" % s.session_id)
            return s.session_id, outputs, name, marker.stdout.strip()
        finally:
            s.delete()

    with ThreadPoolExecutor(n_sessions) as pool:
        results = list(pool.map(work, range(n_sessions)))

    assert len({sid for sid, _, _, _ in results}) == n_sessions
    for i, (sid, outputs, _, marker) in enumerate(results):
        assert marker == sid
        assert len(outputs) == n_threads * n_cmds
        for tag, code, out in outputs:
            _, t, k = map(int, tag.split("-"))
            assert code == 0
            assert out == "%s\n%d\n" % (tag, (t + 2) * (k + 3))
    listed = {s.session_id for s in client.list_sessions()}
    assert not listed & {sid for sid, _, _, _ in results}


def test_large_upload_download(client, tmp_path):
    src = tmp_path / "big.bin"
    h = hashlib.sha256()
    with open(src, "wb") as f:
        for _ in range(50):
            block = os.urandom(MiB)
            h.update(block)
            f.write(block)
    digest = h.hexdigest()
    progress = []
    with client.create_session(ttl=600) as s:
        n = s.upload_file(src, "/workspace/big.bin",
                          callback=lambda done, total: progress.append((done, total)))
        assert n == 50 * MiB
        assert progress[-1] == (50 * MiB, 50 * MiB)
        r = s.run("sha256sum /workspace/big.bin; stat -c %s /workspace/big.bin")
        assert r.stdout.split() == [digest, "/workspace/big.bin", str(50 * MiB)]
        dst = tmp_path / "back.bin"
        # streamed: the SDK never holds the file in memory
        tracemalloc.start()
        try:
            assert s.download_file("/workspace/big.bin", dst) == 50 * MiB
            down_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            assert s.upload_file(dst, "/workspace/again.bin") == 50 * MiB
            up_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert down_peak < 20 * MiB and up_peak < 20 * MiB, (down_peak, up_peak)
        assert sha256_file(dst) == digest
        assert s.run("sha256sum < /workspace/again.bin").stdout.split()[0] == digest
        # a missing remote file is an error, and leaves no partial file
        with pytest.raises(sandbox_sdk.TransferError):
            s.download_file("/workspace/missing.bin", tmp_path / "missing.bin")
        assert not (tmp_path / "missing.bin").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_run_code(client):
    with client.create_session(ttl=600) as s:
        r = s.run_code('''import sys
print("it's \\"quoted\\" $HOME `x`")
print(sys.version_info[:2])
''')
        assert r.exit_code == 0, r.stderr
        assert r.stdout == "it's \"quoted\" $HOME `x`\n(3, 11)\n"

        r = s.run_code("def f():\n    return 1 / 0\n\nf()\n")
        assert r.exit_code != 0
        assert "Traceback (most recent call last)" in r.stderr
        assert "ZeroDivisionError" in r.stderr
        assert r.stdout == ""

        r = s.run_code("echo from bash; exit 3", language="bash")
        assert (r.exit_code, r.stdout) == (3, "from bash\n")
        with pytest.raises(ValueError):
            s.run_code("x", language="cobol")


def test_disk_quota_through_the_sdk(client):
    """resources={"disk_mb": N} passes through create_session; the limit
    holds inside the sandbox and the SDK reports the failed write."""
    with client.create_session(ttl=600, resources={"disk_mb": 32}) as s:
        assert s.resources["disk_mb"] == 32
        r = s.run("dd if=/dev/zero of=/workspace/big bs=1M count=64")
        assert r.exit_code != 0
        assert "No space left on device" in r.stderr
        s.write_file("/workspace/big", b"")
        s.write_file("/workspace/small.txt", "still room\n")
        assert s.read_file("/workspace/small.txt") == b"still room\n"
    with pytest.raises(InvalidRequest) as e:
        client.create_session(ttl=600, resources={"disk_mb": 1})
    assert "disk_mb" in str(e.value)


def test_api_errors_map_to_exceptions(stack, client):
    with pytest.raises(InvalidRequest) as info:
        client.create_session(ttl=-5)
    assert info.value.status == 400 and "ttl" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        client.create_session(ttl="soon")
    assert info.value.status == 400
    with pytest.raises(InvalidRequest) as info:
        client.create_session(ttl=60, image="no-such-image:latest")
    assert info.value.status == 400 and "image" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        client.create_session(colour="blue")
    assert info.value.status == 400 and "colour" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        client.create_session(metadata={"k": "v" * 100000})
    assert (info.value.status, info.value.code) == (413, "body_too_large")
    with pytest.raises(InvalidRequest) as info:          # nginx's own limit
        client.create_session(metadata={"k": "v" * (2 * MiB)})
    assert info.value.status == 413

    unknown = str(uuid.uuid4())
    for call in (lambda: client.get_session(unknown),
                 lambda: client.delete_session(unknown),
                 lambda: client.open_tunnel(unknown)):
        with pytest.raises(SessionNotFound) as info:
            call()
        assert info.value.status == 404
    assert "Session not found" in str(info.value)   # the tunnel's text

    port = closed_port()
    dead = SandboxClient("http://127.0.0.1:%d" % port, token="")
    for call in (dead.health, dead.list_sessions, lambda: dead.create_session(),
                 lambda: dead.open_tunnel(unknown)):
        with pytest.raises(SandboxConnectionError) as info:
            call()
        assert isinstance(info.value, ConnectionError)
        assert info.value.status is None


def test_sandbox_not_ready(stack, client):
    s = client.create_session(ttl=600)
    key = "pico:session:" + s.session_id
    try:
        stack.redis_cli("HSET", key, "status", "pending")
        with pytest.raises(SandboxNotReady) as info:
            s.open_tunnel()
        assert info.value.status == 503
        assert "not ready" in info.value.message.lower()
        with pytest.raises(SandboxNotReady):
            s.run("true")
        assert s.refresh().status == "pending"
        with pytest.raises(SandboxNotReady):
            s.wait_until_running(timeout=0.5, interval=0.1)
        stack.redis_cli("HSET", key, "status", "running")
        assert s.run("echo ok").stdout == "ok\n"
    finally:
        stack.redis_cli("HSET", key, "status", "running")
        s.delete()


def test_auth(new_stack):
    st = new_stack(auth=True)
    alice = SandboxClient(st.url, token=st.make_token("alice"))
    bob = SandboxClient(st.url, token=st.make_token("bob"))
    anonymous = SandboxClient(st.url, token="")
    forged = SandboxClient(st.url, token="pico_%s_%s" % ("0" * 16, "0" * 64))

    for c in (anonymous, forged):
        for call in (c.list_sessions, lambda: c.create_session(ttl=60)):
            with pytest.raises(AuthenticationError) as info:
                call()
            assert info.value.status == 401

    s = alice.create_session(ttl=600)
    try:
        assert s.run("whoami").stdout == "sandbox\n"
        assert s.session_id in [x.session_id for x in alice.list_sessions()]
        assert s.session_id not in [x.session_id for x in bob.list_sessions()]
        with pytest.raises(SessionNotFound):
            bob.get_session(s.session_id)
        with pytest.raises(SessionNotFound):
            bob.open_tunnel(s.session_id)
        with pytest.raises(SessionNotFound):
            bob.delete_session(s.session_id)
        with pytest.raises(AuthenticationError):
            anonymous.open_tunnel(s.session_id)
        with pytest.raises(AuthenticationError):
            forged.get_session(s.session_id)
    finally:
        s.delete()


def test_host_key_mismatch_refused(stack, client, tmp_path):
    wrong = other_host_key(tmp_path)
    with client.create_session(ttl=600) as s:
        good_key, good_fpr = s.host_key, s.host_key_fingerprint
        # 1. the key in the Session object is changed
        s.host_key = wrong
        with pytest.raises(HostKeyMismatch):
            s.run("true")
        # 2. only the fingerprint is wrong
        s.host_key = None
        s.host_key_fingerprint = "SHA256:" + "A" * 43
        with pytest.raises(HostKeyMismatch):
            s.run("true")
        # 3. nothing published: the SDK asks the service again, and still
        # finding nothing, refuses (no blind trust)
        s.host_key_fingerprint = None
        record = "pico:session:" + s.session_id
        stack.redis_cli("HSET", record, "host_key", "", "host_key_fpr", "")
        with pytest.raises(HostKeyMismatch) as info:
            s.run("true")
        assert info.value.code == "host_key_unknown"
        assert s.host_key is None
        # ... and when the service has it again, it is used
        stack.redis_cli("HSET", record, "host_key", good_key, "host_key_fpr", good_fpr)
        s.host_key_fingerprint = None
        assert s.run("echo refreshed").stdout == "refreshed\n"
        assert s.host_key == good_key
        s.close()
        # 4. the service's record says another key
        stack.redis_cli("HSET", "pico:session:" + s.session_id, "host_key", wrong)
        stack.redis_cli("HSET", "pico:session:" + s.session_id, "host_key_fpr",
                        "SHA256:" + "B" * 43)
        s.refresh()
        assert s.host_key == wrong
        with pytest.raises(HostKeyMismatch):
            s.run("true")
        # the right key works
        s.host_key, s.host_key_fingerprint = good_key, good_fpr
        assert s.run("echo trusted").stdout == "trusted\n"


def test_context_manager_deletes(client):
    with client.create_session(ttl=600) as s:
        sid = s.session_id
        assert s.run("true").exit_code == 0
    with pytest.raises(SessionNotFound):
        client.get_session(sid)

    with pytest.raises(RuntimeError):
        with client.create_session(ttl=600) as s:
            sid = s.session_id
            raise RuntimeError("user code failed")
    with pytest.raises(SessionNotFound):
        client.get_session(sid)

    # deleting inside the block is fine too
    with client.create_session(ttl=600) as s:
        s.delete()


def test_open_tunnel_raw_socket(stack, client):
    with client.create_session(ttl=600) as s:
        sock = s.open_tunnel()
        try:
            sock.settimeout(10)
            banner = b""
            while b"\n" not in banner:
                chunk = sock.recv(256)
                assert chunk, "tunnel closed before the SSH banner"
                banner += chunk
            assert banner.startswith(b"SSH-2.0-")
            # the stream goes both ways: sshd answers our banner with its KEXINIT
            sock.sendall(b"SSH-2.0-sdk_test\r\n")
            assert sock.recv(4096)
        finally:
            sock.close()
        # the 200 and the sandbox's banner waiting together in the socket
        # buffer: the header is consumed, the banner is kept
        raw = socket.create_connection(("127.0.0.1", stack.port), 10)
        try:
            raw.sendall(("CONNECT %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                         % s.tunnel_path).encode())
            peeked = b""
            while b"\r\n\r\nSSH-2.0-" not in peeked:
                if peeked:
                    time.sleep(0.005)   # the 200 is there, the banner not yet
                peeked = raw.recv(4096, socket.MSG_PEEK)
                assert peeked.startswith(b"HTTP/1.1 200"), peeked
            assert sdk_tunnel._read_header_peek(raw).startswith(b"HTTP/1.1 200")
            assert recv_exact(raw, 8) == b"SSH-2.0-"
        finally:
            raw.close()
        # many tunnels to one session at once
        socks = [s.open_tunnel() for _ in range(5)]
        try:
            for t in socks:
                t.settimeout(10)
                assert recv_exact(t, 8) == b"SSH-2.0-"
        finally:
            for t in socks:
                t.close()


def test_is_a_sandbox_error_hierarchy():
    for cls in (SessionNotFound, SandboxNotReady, AuthenticationError,
                InvalidRequest, HostKeyMismatch, SandboxConnectionError):
        assert issubclass(cls, SandboxError)


def test_limits_and_outages_map_to_exceptions():
    """429 at max_sessions; 503 while Redis or the backend is down."""
    from pico_stack import Stack
    st = Stack(name="sdk-limits")
    st.configure()
    st.set_conf("max_sessions", "1")
    st.start(configure=False)
    try:
        c = SandboxClient(st.url, token="")
        s = c.create_session(ttl=300)
        with pytest.raises(sandbox_sdk.RateLimited) as info:
            c.create_session(ttl=300)
        assert (info.value.status, info.value.code) == (429, "too_many_sessions")
        with pytest.raises(sandbox_sdk.MethodNotAllowed):
            c._request("PUT", "/v1/sessions")

        st.backend.stop()
        try:
            with pytest.raises(sandbox_sdk.ServiceUnavailable) as info:
                c.list_sessions()
            assert info.value.code == "backend_unavailable"
            # the tunnel does not need the backend
            assert s.run("echo up").stdout == "up\n"
        finally:
            st.backend.start()
        st.stop_redis()
        try:
            with pytest.raises(sandbox_sdk.ServiceUnavailable) as info:
                c.health()
            assert info.value.status == 503
            with pytest.raises(sandbox_sdk.ServiceUnavailable):
                c.list_sessions()
            assert not c.is_healthy()
            # the tunnel's 503 here is the service's, not the sandbox's
            with pytest.raises(sandbox_sdk.ServiceUnavailable) as info:
                s.open_tunnel()
            assert not isinstance(info.value, SandboxNotReady)
        finally:
            st.start_redis()
        assert c.health()["status"] == "ok"

        s.delete()
    finally:
        st.stop()
    assert st.runc_containers() == []


def test_ssh_key_login(stack, tmp_path):
    key = str(tmp_path / "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key],
                   check=True)
    with open(key + ".pub") as f:
        public = " ".join(f.read().split()[:2])
    c = SandboxClient(stack.url, token="", ssh_key=key, ssh_password=None)
    with c.create_session(ttl=300) as s:
        assert s.raw.get("ssh_public_key") == public
        assert s.run("whoami").stdout == "sandbox\n"
        # another key, and no password: refused by sshd
        s.close()
        s.ssh_key = None
        with pytest.raises(sandbox_sdk.SSHAuthenticationError):
            s.run("true")
        s.ssh_password = "wrong"
        with pytest.raises(sandbox_sdk.SSHAuthenticationError) as info:
            s.run("true")
        assert "unable to authenticate" in str(info.value)


def test_sdk_installs_offline_and_runs_the_guide_example(stack, tmp_path):
    """`make sdk-install` (what sdk/python/README.md tells users) installs
    the package from the checkout with no network, and the installed copy,
    not the checkout's, runs the guide's example."""
    venv = tmp_path / "venv"
    subprocess.run(["make", "-s", "-C", ROOT, "sdk-install", "SDK_VENV=%s" % venv],
                   check=True, capture_output=True, timeout=300)
    py = str(venv / "bin" / "python")
    code = ("import sandbox_sdk\n"
            "from sandbox_sdk import SandboxClient\n"
            "print(sandbox_sdk.__file__)\n"
            "client = SandboxClient(%r, token='')\n"
            "session = client.create_session(ttl=3600)\n"
            "print(f'Session ID: {session.session_id}')\n"
            "session.delete()\n" % stack.url)
    out = subprocess.run([py, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path), check=True).stdout
    where, line = out.splitlines()[:2]
    assert where.startswith(str(venv)), where
    assert line.startswith("Session ID: ")
    sid = line.split(": ", 1)[1]
    assert stack.request("GET", "/v1/sessions/" + sid).status == 404


def test_extend_through_the_sdk(client):
    session = client.create_session(ttl=60)
    try:
        before = session.expires_at
        assert session.extend(1200) is session
        assert session.expires_at > before
        assert session.ttl == (session.expires_at - session.created_at).total_seconds()
        assert client.get_session(session.session_id).expires_at == session.expires_at
        shorter = client.extend_session(session.session_id, 30)
        assert shorter.expires_at < session.expires_at
        with pytest.raises(InvalidRequest) as info:
            session.extend(-1)
        assert info.value.status == 400 and info.value.message.startswith("ttl:")
    finally:
        session.delete()
    with pytest.raises(SessionNotFound):
        client.extend_session(session.session_id, 60)


def test_idempotent_create_through_the_sdk(stack, client):
    key = str(uuid.uuid4())
    first = client.create_session(ttl=120, metadata={"k": key}, idempotency_key=key)
    try:
        again = client.create_session(ttl=120, metadata={"k": key}, idempotency_key=key)
        assert again.session_id == first.session_id
        with pytest.raises(sandbox_sdk.IdempotencyKeyReused) as info:
            client.create_session(ttl=60, metadata={"k": key}, idempotency_key=key)
        assert info.value.status == 422
        with pytest.raises(InvalidRequest):
            client.create_session(ttl=60, idempotency_key="x" * 256)
        # without a key of ours the SDK makes a fresh one each call
        other = client.create_session(ttl=60, metadata={"k": key})
        assert other.session_id != first.session_id
        other.delete()
    finally:
        first.delete()


def test_events_through_the_sdk(client):
    session = client.create_session(ttl=600)
    session.extend(300)
    it = client.events(session_id=session.session_id)
    events = [next(it), next(it), next(it)]
    session.delete()
    events += list(it)
    assert [e.type for e in events] == ["created", "running", "ttl_changed", "terminated"]
    assert all(e.session_id == session.session_id for e in events)
    again = list(client.events(session_id=session.session_id,
                               last_event_id=events[1].id))
    assert [e.id for e in again] == [e.id for e in events[2:]]
    with pytest.raises(InvalidRequest):
        next(client.events(last_event_id="nope"))
