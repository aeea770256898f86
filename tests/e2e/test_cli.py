"""End-to-end tests of test-tunnel, the C command-line client, against the
real stack: every flag and spelling, every error the user's guide lists
(text and exit status), large and slow outputs, SFTP transfers, OpenSSH
(ssh, scp, sftp) through -stdio, the shell scripts, and memory checks.

test-tunnel runs as its ASan/UBSan build (build/san/test-tunnel) when it
exists; every run asserts that the sanitizers stayed silent. One test runs
bin/test-tunnel under valgrind on the success path and each error path.
https is checked through a TLS-terminating front (standing in for an
ingress) in front of the stack's plain-HTTP port."""

import glob
import hashlib
import os
import pty
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import uuid

import pytest

from pico_stack import ROOT, free_port

BIN = os.path.join(ROOT, "bin", "test-tunnel")
SAN = os.path.join(ROOT, "build", "san", "test-tunnel")
TT = SAN if os.path.exists(SAN) else BIN
STAMP = r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d "
VAR = os.path.join(ROOT, "var")
os.makedirs(VAR, exist_ok=True)  # scratch files live in the checkout's var/
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]


@pytest.fixture(scope="module")
def tmp():
    d = tempfile.mkdtemp(prefix="tt-", dir=VAR)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def keypair(tmp):
    key = os.path.join(tmp, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key],
                   check=True)
    with open(key + ".pub") as f:
        return key, f.read().strip()


@pytest.fixture(scope="module")
def sid(stack, keypair):
    """One running session for the tests that do not change it."""
    s = stack.create(ttl=900, ssh_public_key=keypair[1])
    yield s["session_id"]
    stack.delete(s["session_id"])


@pytest.fixture
def scratch(stack):
    """Sessions a test may break; deleted afterwards (status restored)."""
    made = []

    def make():
        s = stack.create(ttl=600)
        made.append(s["session_id"])
        return s["session_id"]

    yield make
    for sid_ in made:
        stack.redis_cli("HSET", "pico:session:" + sid_, "status", "running")
        stack.delete(sid_)


def run_tt(args, binary=TT, merge=False, timeout=120, stdout=None,
           stderr=None, **kw):
    """Runs test-tunnel; asserts the sanitizers reported nothing."""
    logdir = tempfile.mkdtemp(prefix="tt-san-", dir=VAR)
    env = dict(os.environ,
               ASAN_OPTIONS="detect_leaks=1:log_path=%s/asan" % logdir,
               UBSAN_OPTIONS="print_stacktrace=1:log_path=%s/ubsan" % logdir)
    try:
        if merge:
            stdout, stderr = subprocess.PIPE, subprocess.STDOUT
        p = subprocess.run([binary] + args, env=env, timeout=timeout,
                           stdout=stdout or subprocess.PIPE,
                           stderr=stderr or subprocess.PIPE, **kw)
        reports = glob.glob(os.path.join(logdir, "*"))
        text = "".join(open(r, errors="replace").read() for r in reports)
        assert not reports, "sanitizer reports:\n" + text
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    return p


def out(p):
    return p.stdout.decode(errors="replace")


def err(p):
    return p.stderr.decode(errors="replace")


def tt(stack, session, *args, **kw):
    return run_tt(["-api", stack.url, "-session", session] + list(args), **kw)


def command_block(cmd, code, stdout, stderr=""):
    block = "\n--- Command Output ---\nCommand: %s\nExit Code: %d\nStdout:\n%s\n" % (
        cmd, code, stdout)
    if stderr:
        block += "Stderr:\n%s\n" % stderr
    return block + "--- End Output ---\n\n"


# -- the guide's success output ------------------------------------------

def test_default_run_prints_the_guide_output_in_order(stack, sid):
    p = tt(stack, sid, merge=True)
    text = out(p)
    assert p.returncode == 0, text
    expected = [
        STAMP + "Testing tunnel connection to session: " + sid,
        STAMP + "Connecting to 127.0.0.1:%d" % stack.port,
        STAMP + "Sending CONNECT request to /v1/sessions/%s/tunnel" % sid,
        STAMP + "Received response: 200 Connection Established",
        STAMP + "✅ HTTP CONNECT tunnel established successfully",
        STAMP + "Establishing SSH connection as user: sandbox",
        STAMP + "✅ SSH connection established successfully",
        STAMP + "✅ Command executed successfully",
        "",
        "--- Command Output ---",
        "Command: echo 'Hello from sandbox'",
        "Exit Code: 0",
        "Stdout:",
        "Hello from sandbox",
        "",
        "--- End Output ---",
        "",
        STAMP + "Running additional tests...",
        STAMP + "✅ Current directory: /workspace",
        STAMP + "✅ Current user: sandbox",
        STAMP + r"✅ Python version: Python 3\.11\.\d+",
        "",
        "🎉 All tests completed successfully!",
    ]
    lines = text.rstrip("\n").split("\n")
    assert len(lines) == len(expected), text
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_results_on_stdout_progress_on_stderr(stack, sid):
    p = tt(stack, sid)
    assert p.returncode == 0, err(p)
    assert out(p) == command_block("echo 'Hello from sandbox'", 0,
                                   "Hello from sandbox\n") + \
        "\n🎉 All tests completed successfully!\n"
    assert all(re.match(STAMP, l) for l in err(p).splitlines()), err(p)


# -- flags ---------------------------------------------------------------

@pytest.mark.parametrize("style", ["-f v", "-f=v", "--f v", "--f=v"])
def test_every_flag_in_every_spelling(stack, sid, style):
    values = [("api", stack.url), ("session", sid), ("token", ""),
              ("user", "sandbox"), ("password", "sandbox"),
              ("cmd", "echo spelled $((6*7))"), ("timeout", "20")]
    dash = "--" if style.startswith("--") else "-"
    args = []
    for name, value in values:
        if "=" in style:
            args.append("%s%s=%s" % (dash, name, value))
        else:
            args += [dash + name, value]
    p = run_tt(args)
    assert p.returncode == 0, err(p)
    assert command_block("echo spelled $((6*7))", 0, "spelled 42\n") in out(p)


def test_defaults_reach_the_default_api(stack, sid):
    # Nothing listens on localhost:8080 in the tests unless a user runs
    # pico there: only assert the default address is the one dialled.
    p = run_tt(["-session", sid, "-timeout", "5"])
    assert "Connecting to localhost:8080" in err(p)


@pytest.mark.parametrize("flag", ["-h", "--help", "-help"])
def test_help_lists_every_flag_with_its_default(flag):
    p = run_tt([flag])
    assert p.returncode == 0
    text = err(p)
    for name, default in [("api", '"http://localhost:8080"'), ("token", '""'),
                          ("user", '"sandbox"'), ("password", '"sandbox"'),
                          ("cmd", "\"echo 'Hello from sandbox'\""),
                          ("timeout", "30")]:
        assert re.search(r"  -%s .*\n.*\(default %s\)" % (name, re.escape(default)),
                         text), (name, text)
    for name in ("session", "upload", "download", "stdio", "fdpass", "cacert"):
        assert "  -" + name in text


def test_missing_session_is_a_usage_error():
    p = run_tt(["-api", "http://127.0.0.1:1"])
    assert p.returncode == 2
    assert err(p).startswith("Error: -session is required\nUsage of test-tunnel:")


@pytest.mark.parametrize("args,message", [
    (["-session", "x", "-bogus"], "flag provided but not defined: -bogus"),
    (["-session"], "flag needs an argument: -session"),
    (["-session", "x", "-timeout", "soon"], 'invalid value "soon" for flag -timeout'),
    (["-session", "x", "-upload", "nocolon"], 'invalid value "nocolon" for flag -upload'),
    (["-session", "x", "extra"], "unexpected argument: extra"),
])
def test_bad_command_lines_exit_2(args, message):
    p = run_tt(args)
    assert p.returncode == 2
    assert err(p).startswith(message + "\n"), err(p)
    assert out(p) == ""


def test_session_id_cannot_inject_into_the_request():
    p = run_tt(["-api", "http://127.0.0.1:1", "-session", "a b\r\nX: y"])
    assert p.returncode == 2
    assert err(p) == "Error: invalid session ID\n"


def test_make_targets_run_test_tunnel(stack, sid):
    p = subprocess.run(["make", "-s", "test-tunnel", "SESSION_ID=" + sid,
                        "API=" + stack.url], cwd=ROOT, capture_output=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    assert "🎉 All tests completed successfully!" in out(p)
    p = subprocess.run(["make", "-s", "test-tunnel"], cwd=ROOT,
                       capture_output=True, timeout=300)
    assert p.returncode != 0
    assert "usage: make test-tunnel SESSION_ID=<session-id>" in err(p)


# -- the guide's troubleshooting errors ----------------------------------

def test_connection_refused():
    p = run_tt(["-api", "http://127.0.0.1:%d" % free_port(), "-session",
                str(uuid.uuid4())])
    assert p.returncode == 1
    assert err(p).endswith("\nError: failed to connect to server: connection refused\n")


def test_unknown_session_is_404(stack):
    p = tt(stack, str(uuid.uuid4()))
    assert p.returncode == 1
    assert err(p).endswith("\nError: CONNECT failed with status 404: Session not found\n")
    assert out(p) == ""


def test_deleted_session_is_404(stack, scratch):
    gone = scratch()
    assert stack.delete(gone).status in (200, 202, 204)
    p = tt(stack, gone)
    assert p.returncode == 1
    assert err(p).endswith("Error: CONNECT failed with status 404: Session not found\n")


def test_session_not_running_is_503(stack, scratch):
    s = scratch()
    stack.redis_cli("HSET", "pico:session:" + s, "status", "pending")
    p = tt(stack, s)
    assert p.returncode == 1
    assert err(p).endswith("Error: CONNECT failed with status 503: Sandbox not ready\n")


def test_wrong_password_cannot_authenticate(stack, sid):
    p = tt(stack, sid, "-password", "not-the-password")
    assert p.returncode == 1
    assert err(p).endswith("\nError: ssh: unable to authenticate\n")


def test_unknown_user_cannot_authenticate(stack, sid):
    p = tt(stack, sid, "-user", "root")
    assert p.returncode == 1
    assert err(p).endswith("\nError: ssh: unable to authenticate\n")


class GarbageServer:
    """A TCP endpoint that answers like no SSH server would."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nnot ssh\r\n")
            c.close()

    def close(self):
        self.sock.close()


def test_endpoint_that_is_not_ssh_fails_the_handshake(stack, scratch):
    s = scratch()
    srv = GarbageServer()
    key = "pico:session:" + s
    old = stack.redis_cli("HGET", key, "endpoint")
    try:
        stack.redis_cli("HSET", key, "endpoint", "127.0.0.1:%d" % srv.port)
        p = tt(stack, s)
    finally:
        stack.redis_cli("HSET", key, "endpoint", old)
        srv.close()
    assert p.returncode == 1
    assert re.search(r"\nError: failed to establish SSH connection: ssh: "
                     r"handshake failed: .+\n$", err(p)), err(p)


def test_unreachable_sandbox_is_502(stack, scratch):
    s = scratch()
    key = "pico:session:" + s
    old = stack.redis_cli("HGET", key, "endpoint")
    try:
        stack.redis_cli("HSET", key, "endpoint", "127.0.0.1:%d" % free_port())
        p = tt(stack, s)
    finally:
        stack.redis_cli("HSET", key, "endpoint", old)
    assert p.returncode == 1
    assert re.search(r"\nError: CONNECT failed with status 502: .+\n$", err(p)), err(p)


def test_host_key_mismatch_fails_the_handshake(stack, scratch, keypair):
    s = scratch()
    key = "pico:session:" + s
    old = stack.redis_cli("HGET", key, "host_key")
    other = keypair[1].rsplit(" ", 1)[0] if keypair[1].count(" ") > 1 else keypair[1]
    try:
        stack.redis_cli("HSET", key, "host_key", other)
        assert stack.request("GET", "/v1/sessions/" + s).json()["host_key"] == other
        p = tt(stack, s)
    finally:
        stack.redis_cli("HSET", key, "host_key", old)
    assert p.returncode == 1
    assert re.search(r"\nError: failed to establish SSH connection: ssh: "
                     r"handshake failed: host key mismatch: server offered "
                     r"SHA256:\S+, session expects SHA256:\S+\n$", err(p)), err(p)
    assert "Command Output" not in out(p)


def test_failing_command_shows_its_exit_code(stack, sid):
    p = tt(stack, sid, "-cmd", "echo partial; echo oops >&2; exit 3")
    assert p.returncode == 1
    assert out(p) == command_block("echo partial; echo oops >&2; exit 3", 3,
                                   "partial\n", "oops\n")
    assert err(p).endswith("\nError: command exited with code 3\n")
    assert "✅ Command executed successfully" not in err(p)


def test_command_that_closes_its_output_and_runs_on(stack, sid):
    # The exit status, not the end of output, ends a command.
    cmd = "echo early; exec >&- 2>&-; sleep 2; exit 5"
    p = tt(stack, sid, "-cmd", cmd)
    assert p.returncode == 1
    assert out(p) == command_block(cmd, 5, "early\n")


def test_command_killed_by_a_signal(stack, sid):
    p = tt(stack, sid, "-cmd", "kill -9 $$")
    assert p.returncode == 1
    assert "Exit Code: 137\n" in out(p)
    assert err(p).endswith("Error: command exited with code 137 (signal KILL)\n")


def test_lost_connection_fails_to_execute_command(stack, sid):
    # The command kills its own sshd: the session ends without an exit.
    p = tt(stack, sid, "-cmd", "kill -9 $PPID")
    assert p.returncode == 1
    assert re.search(r"\nError: failed to execute command(: .+)?\n$", err(p)), err(p)


# -- the guide's scenarios ------------------------------------------------

def test_python_code_runs(stack, sid):
    p = tt(stack, sid, "-cmd", "python -c 'print(sum(range(100)))'")
    assert p.returncode == 0, err(p)
    assert "Stdout:\n4950\n\n" in out(p)
    p = tt(stack, sid, "-cmd", "python -c 'import sys; print(sys.version)'")
    assert p.returncode == 0, err(p)
    assert "Stdout:\n3.11." in out(p)


def test_file_operations(stack, sid):
    cmd = "echo 'test data' > /tmp/test.txt && cat /tmp/test.txt"
    p = tt(stack, sid, "-cmd", cmd)
    assert p.returncode == 0, err(p)
    assert command_block(cmd, 0, "test data\n") in out(p)


def test_long_command_output_arrives(stack, sid):
    cmd = "sleep 5 && echo 'Sleep completed'"
    p = tt(stack, sid, "-cmd", cmd)
    assert p.returncode == 0, err(p)
    assert command_block(cmd, 0, "Sleep completed\n") in out(p)


def test_hundred_lines_arrive_in_order(stack, sid):
    cmd = "for i in {1..100}; do echo Line $i; done"
    p = tt(stack, sid, "-cmd", cmd)
    assert p.returncode == 0, err(p)
    lines = "".join("Line %d\n" % i for i in range(1, 101))
    assert command_block(cmd, 0, lines) in out(p)


def test_ten_megabytes_of_output_with_stderr_apart(stack, sid):
    size = 10 * 1024 * 1024
    cmd = "head -c %d /dev/zero | tr '\\0' x; echo; seq 1 1000 >&2" % size
    p = tt(stack, sid, "-cmd", cmd)
    assert p.returncode == 0, err(p)
    text = out(p)
    stdout = text.split("\nStdout:\n", 1)[1].split("\nStderr:\n", 1)[0]
    assert stdout == "x" * size + "\n"
    stderr = text.split("\nStderr:\n", 1)[1].split("\n--- End Output ---", 1)[0]
    assert stderr == "".join("%d\n" % i for i in range(1, 1001))


# -- SFTP ----------------------------------------------------------------

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test_upload_and_download_50_mib(stack, sid, tmp):
    src = os.path.join(tmp, "up.bin")
    back = os.path.join(tmp, "back.bin")
    small = os.path.join(tmp, "small.txt")
    with open(src, "wb") as f:
        for _ in range(50):
            f.write(os.urandom(1 << 20))
    with open(small, "w") as f:
        f.write("second file\n")
    digest = sha256(src)
    cmd = "sha256sum /workspace/up.bin; cat small.txt"
    p = tt(stack, sid, "-upload", src + ":/workspace/up.bin",
           "--upload=%s:small.txt" % small, "-cmd", cmd,
           "-download", "/workspace/up.bin:" + back, timeout=300)
    assert p.returncode == 0, err(p)
    assert command_block(cmd, 0, "%s  /workspace/up.bin\nsecond file\n" % digest) \
        in out(p)
    assert "✅ Uploaded %s -> /workspace/up.bin (52428800 bytes)" % src in err(p)
    assert "✅ Downloaded /workspace/up.bin -> %s (52428800 bytes)" % back in err(p)
    assert sha256(back) == digest
    assert "MiB (" not in err(p)  # no progress line without a terminal


def test_progress_is_shown_on_a_terminal(stack, sid, tmp):
    src = os.path.join(tmp, "progress.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(4 << 20))
    master, slave = pty.openpty()
    chunks = []

    def drain():
        while True:
            try:
                d = os.read(master, 65536)
            except OSError:
                return
            if not d:
                return
            chunks.append(d)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        p = run_tt(["-api", stack.url, "-session", sid, "-upload",
                    src + ":/workspace/progress.bin", "-download",
                    "/workspace/progress.bin:" + src + ".back"],
                   stderr=slave, stdout=subprocess.PIPE)
    finally:
        os.close(slave)
        reader.join(30)
        os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert p.returncode == 0, text
    assert "Uploading %s: 4.0 / 4.0 MiB (100%%)" % src in text, text
    assert "Downloading /workspace/progress.bin: 4.0 / 4.0 MiB (100%)" in text
    assert sha256(src + ".back") == sha256(src)


def test_upload_of_a_missing_file_fails(stack, sid, tmp):
    missing = os.path.join(tmp, "does-not-exist")
    p = tt(stack, sid, "-upload", missing + ":/workspace/x")
    assert p.returncode == 1
    assert err(p).endswith("Error: failed to upload %s: %s: No such file or directory\n"
                           % (missing, missing))


def test_download_of_a_missing_file_fails(stack, sid, tmp):
    p = tt(stack, sid, "-download", "/workspace/nope:" + os.path.join(tmp, "nope"))
    assert p.returncode == 1
    assert "Error: failed to download /workspace/nope: " in err(p)


# -- -stdio and OpenSSH ---------------------------------------------------

def proxy_command(stack):
    return "ProxyCommand=%s -api %s -session %%h -stdio" % (TT, stack.url)


def test_stdio_relays_the_banner_and_logs_nothing_on_stdout(stack, sid):
    p = tt(stack, sid, "-stdio", input=b"")
    assert p.stdout.startswith(b"SSH-2.0-"), p.stdout
    assert err(p) == ""


def test_stdio_error_goes_to_stderr_only(stack):
    p = tt(stack, str(uuid.uuid4()), "-stdio", input=b"")
    assert p.returncode == 1
    assert p.stdout == b""
    assert err(p) == "Error: CONNECT failed with status 404: Session not found\n"


def test_openssh_ssh_through_stdio(stack, sid, keypair):
    p = subprocess.run(["ssh"] + SSH_OPTS + ["-i", keypair[0], "-o", proxy_command(stack),
                        "sandbox@" + sid, "pwd; whoami; cat"],
                       input=b"piped through\n", capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == b"/workspace\nsandbox\npiped through\n"


def fdpass_opts(api, keypair):
    return SSH_OPTS + ["-i", keypair[0], "-o", "ProxyUseFdpass=yes", "-o",
                       "ProxyCommand=%s -api %s -session %%h -fdpass" % (TT, api)]


def test_openssh_ssh_and_scp_with_fdpass(stack, sid, keypair, tmp):
    """-fdpass hands ssh the tunnel's socket: ssh talks to nginx itself,
    no relay process in between; a command and a 3 MiB scp both work."""
    opts = fdpass_opts(stack.url, keypair)
    p = subprocess.run(["ssh"] + opts + ["sandbox@" + sid, "pwd; whoami; cat"],
                       input=b"handed over\n", capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == b"/workspace\nsandbox\nhanded over\n"
    src = os.path.join(tmp, "fdpass.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(3 << 20))
    p = subprocess.run(["scp", "-q"] + opts + [src, "sandbox@%s:/workspace/fdpass.bin" % sid],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    p = subprocess.run(["ssh"] + opts + ["sandbox@" + sid, "sha256sum /workspace/fdpass.bin"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.split()[0].decode() == sha256(src)


def test_fdpass_errors(stack, sid):
    # stdout is a pipe here, not ssh's socketpair
    p = tt(stack, sid, "-fdpass", input=b"")
    assert (p.returncode, p.stdout) == (1, b"")
    assert err(p) == ("Error: -fdpass: stdout is not a socket (use it as ssh's "
                      "ProxyCommand with -o ProxyUseFdpass=yes)\n")
    p = tt(stack, str(uuid.uuid4()), "-fdpass", input=b"")
    assert p.returncode == 1
    assert err(p) == "Error: CONNECT failed with status 404: Session not found\n"
    p = tt(stack, sid, "-fdpass", "-stdio", input=b"")
    assert p.returncode == 2
    assert err(p).startswith("Error: -stdio and -fdpass exclude each other\n")


def test_openssh_scp_and_sftp_through_stdio(stack, sid, keypair, tmp):
    src = os.path.join(tmp, "scp.bin")
    back = os.path.join(tmp, "sftp.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(3 << 20))
    opts = SSH_OPTS + ["-i", keypair[0], "-o", proxy_command(stack)]
    p = subprocess.run(["scp", "-q"] + opts + [src, "sandbox@%s:/workspace/scp.bin" % sid],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    batch = "get /workspace/scp.bin %s\n" % back
    p = subprocess.run(["sftp", "-q", "-b", "-"] + opts + ["sandbox@" + sid],
                       input=batch.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert sha256(back) == sha256(src)


# -- scripts --------------------------------------------------------------

def script_env(stack):
    return dict(os.environ, PICO_API=stack.url, TEST_TUNNEL=TT)


def test_complete_flow_script(stack):
    p = subprocess.run([os.path.join(ROOT, "scripts", "test_complete.sh")],
                       env=script_env(stack), capture_output=True, timeout=180)
    assert p.returncode == 0, out(p) + err(p)
    text = out(p)
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]",
                 "🎉 All tests completed successfully!", "✅ Session 已删除"):
        assert step in text, text
    created = re.search(r"Session 创建成功: (\S+)", text).group(1)
    assert stack.request("GET", "/v1/sessions/" + created).status == 404


def test_complete_flow_script_fails_without_server(stack):
    env = dict(script_env(stack), PICO_API="http://127.0.0.1:%d" % free_port())
    p = subprocess.run([os.path.join(ROOT, "scripts", "test_complete.sh")],
                       env=env, capture_output=True, timeout=60)
    assert p.returncode != 0
    assert "❌ pico-apiserver 未运行" in out(p)


def test_concurrent_and_loop_scripts(stack, sid):
    before = stack.request("GET", "/v1/sessions").json()["total"]
    p = subprocess.run([os.path.join(ROOT, "scripts", "concurrent_sessions.sh"), "5"],
                       env=script_env(stack), capture_output=True, timeout=240)
    assert p.returncode == 0, out(p) + err(p)
    assert out(p).count("✅ session ") == 5
    assert stack.request("GET", "/v1/sessions").json()["total"] == before
    p = subprocess.run([os.path.join(ROOT, "scripts", "loop_test.sh"), sid, "3"],
                       env=script_env(stack), capture_output=True, timeout=120)
    assert p.returncode == 0, out(p) + err(p)
    assert "🎉 3 iterations passed" in out(p)
    p = subprocess.run([os.path.join(ROOT, "scripts", "loop_test.sh"),
                        str(uuid.uuid4()), "2"],
                       env=script_env(stack), capture_output=True, timeout=60)
    assert p.returncode != 0


# -- auth ----------------------------------------------------------------

def test_token_flag_against_a_stack_with_auth(new_stack):
    st = new_stack(name="ttauth", auth=True)
    token = st.make_token("alice")
    other = st.make_token("bob")
    s = st.create(token=token, ttl=600)["session_id"]
    try:
        p = tt(st, s, "-token", token)
        assert p.returncode == 0, err(p)
        p = tt(st, s)
        assert p.returncode == 1
        assert re.search(r"\nError: CONNECT failed with status 401: .+\n$", err(p)), err(p)
        p = tt(st, s, "-token", other)
        assert p.returncode == 1
        assert err(p).endswith("Error: CONNECT failed with status 404: Session not found\n")
    finally:
        st.delete(s, token=token)


# -- https ---------------------------------------------------------------

class TLSFront:
    """A TLS-terminating front (what an ingress does) for the stack's
    plain-HTTP port, with a throwaway self-signed certificate."""

    def __init__(self, stack, tmp):
        self.cert = os.path.join(tmp, "front.crt")
        key = os.path.join(tmp, "front.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                        "-keyout", key, "-out", self.cert, "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.cert, key)
        self.backend_port = stack.port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def handle(self, c):
        try:
            t = self.ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError):
            c.close()
            return
        u = socket.create_connection(("127.0.0.1", self.backend_port))
        # SFTP waits for each small reply: no Nagle delays in the front.
        for sk in (t, u):
            sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        th = threading.Thread(target=self.pipe, args=(u, t), daemon=True)
        th.start()
        self.pipe(t, u)
        th.join(60)
        t.close()
        u.close()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port


@pytest.fixture(scope="module")
def tls_front(stack, tmp):
    f = TLSFront(stack, tmp)
    yield f
    f.sock.close()


def test_https_api_with_cacert(stack, sid, tls_front, tmp):
    src = os.path.join(tmp, "tls.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(5 << 20))
    p = run_tt(["-api", tls_front.url, "-cacert", tls_front.cert, "-session", sid,
                "-upload", src + ":/workspace/tls.bin", "-cmd",
                "sha256sum < /workspace/tls.bin"])
    assert p.returncode == 0, err(p)
    assert "Connecting to 127.0.0.1:%d" % tls_front.port in err(p)
    assert "Stdout:\n%s  -\n" % sha256(src) in out(p)
    assert "🎉 All tests completed successfully!" in out(p)


def test_https_api_with_an_untrusted_certificate(sid, tls_front):
    p = run_tt(["-api", tls_front.url, "-session", sid])
    assert p.returncode == 1
    assert err(p).endswith("\nError: failed to connect to server: tls: "
                           "certificate: self-signed certificate\n"), err(p)


def test_https_errors_and_stdio(stack, sid, tls_front, keypair):
    p = run_tt(["-api", tls_front.url, "-cacert", tls_front.cert, "-session",
                str(uuid.uuid4())])
    assert p.returncode == 1
    assert err(p).endswith("Error: CONNECT failed with status 404: Session not found\n")
    proxy = "ProxyCommand=%s -api %s -cacert %s -session %%h -stdio" % (
        TT, tls_front.url, tls_front.cert)
    p = subprocess.run(["ssh"] + SSH_OPTS + ["-i", keypair[0], "-o", proxy,
                        "sandbox@" + sid, "echo over tls"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == b"over tls\n"
    p = run_tt(["-api", tls_front.url, "-cacert", tls_front.cert, "-session",
                sid, "-fdpass"], input=b"")
    assert p.returncode == 1
    assert err(p) == ("Error: -fdpass needs an http:// -api (ssh cannot speak "
                      "the TLS around the tunnel); use -stdio\n")


# -- memory checks --------------------------------------------------------

VALGRIND = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--track-fds=yes"]


def test_valgrind_clean_on_success_and_every_error(stack, sid, scratch, tls_front):
    if shutil.which("valgrind") is None:
        pytest.fail("valgrind is missing (scripts/deps.sh installs it)")
    pending = scratch()
    stack.redis_cli("HSET", "pico:session:" + pending, "status", "pending")
    cases = [
        (["-api", stack.url, "-session", sid], 0),
        (["-api", "http://127.0.0.1:%d" % free_port(), "-session", sid], 1),
        (["-api", stack.url, "-session", str(uuid.uuid4())], 1),
        (["-api", stack.url, "-session", pending], 1),
        (["-api", stack.url, "-session", sid, "-password", "wrong"], 1),
        (["-api", stack.url, "-session", sid, "-cmd", "exit 4"], 1),
        (["-api", stack.url, "-session", sid, "-stdio"], 0),
        (["-api", stack.url, "-session", sid, "-fdpass"], 1),
        (["-session"], 2),
    ]
    cases += [(["-api", tls_front.url, "-cacert", tls_front.cert,
                "-session", sid], 0),
              (["-api", tls_front.url, "-cacert", tls_front.cert,
                "-session", sid, "-stdio"], 0),
              (["-api", tls_front.url, "-session", sid], 1)]
    for args, code in cases:
        p = subprocess.run(VALGRIND + [BIN] + args, capture_output=True,
                           input=b"", timeout=120)
        report = p.stderr.decode(errors="replace")
        assert p.returncode == code, (args, report)
        assert "ERROR SUMMARY" not in report and " lost" not in report, report
        # Only the standard streams may be open at exit (no leaked fds).
        assert not re.search(r"Open (AF_|file descriptor ([3-9]|\d\d))",
                             report), (args, report)
