"""One real pico stack for end-to-end tests: redis-server, pico-backend
(the ASan/UBSan build when it exists) and nginx with ngx_pico_module, on a
free loopback port, with its state in its own folder under var/t/.

The configuration comes from scripts/pico-conf.sh, the same generator
`make run` uses. Nothing here fakes a part of pico."""

import glob
import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGES = os.environ.get("PICO_IMAGES", os.path.join(ROOT, "var", "images"))
_counter = itertools.count()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("timed out waiting for " + what)


def port_open(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), 0.2).close()
        return True
    except OSError:
        return False


def run_parallel(fn, count, threads):
    """Calls fn(i) for i in range(count) from `threads` threads at once;
    returns the threads, already started (join them), and the list that
    fn's results are appended to as they come."""
    results, lock = [], threading.Lock()
    todo = list(range(count))

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            r = fn(i)
            with lock:
                results.append(r)

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    return ts, results


def ssh_banner(stack, sid, token=None):
    """The first line a session's sshd sends through a tunnel; raises
    AssertionError when the CONNECT is not answered 200."""
    s, status, rest = stack.open_tunnel(sid, token=token)
    try:
        assert " 200 " in status + " ", "tunnel to %s: %s" % (sid, status)
        buf = rest
        while b"\n" not in buf:
            chunk = s.recv(256)
            if not chunk:
                break
            buf += chunk
        return buf
    finally:
        s.close()


def read_head(sock):
    """Reads one HTTP response head; returns (head, bytes after it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def backend_binary():
    env = os.environ.get("PICO_BACKEND")
    if env:
        return env
    # The sanitizer build, always: silently testing bin/ instead would
    # hide every ASan/UBSan report. PICO_BACKEND picks another on purpose.
    san = os.path.join(ROOT, "build", "san", "pico-backend")
    if not os.path.exists(san):
        raise RuntimeError("%s is missing: run `make build-all`, or set "
                           "PICO_BACKEND to the binary to test" % san)
    return san


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


class Backend:
    def __init__(self, stack, index):
        self.stack = stack
        self.index = index
        self.proc = None
        suffix = "" if index == 0 else str(index + 1)
        self.conf = os.path.join(stack.var, "conf", "pico%s.conf" % suffix)
        self.sock = os.path.join(stack.var, "run", "backend%s.sock" % suffix)
        self.log = os.path.join(stack.var, "log", "backend%s.log" % suffix)
        if index:
            with open(stack.conf_path("pico.conf")) as f:
                text = f.read()
            text = text.replace(stack.conf_value("listen"), "unix:" + self.sock)
            text = text.replace("node_name " + stack.conf_value("node_name"),
                                "node_name %s-%d" % (stack.name, index + 1))
            with open(self.conf, "w") as f:
                f.write(text)

    def start(self):
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = "log_path=%s/log/asan:detect_leaks=1" % self.stack.var
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:log_path=%s/log/ubsan" % self.stack.var
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([backend_binary(), "--config", self.conf],
                                     stdout=out, stderr=out, env=env)
        out.close()
        wait_for(lambda: os.path.exists(self.sock) or self.proc.poll() is not None,
                 what="backend socket")
        if self.proc.poll() is not None:
            raise RuntimeError("backend exited: " + self.read_log())

    def read_log(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Stack:
    def __init__(self, name=None, auth=False, runtime="local", workers=2,
                 backends=1, env=None, nginx_http_extra="",
                 nginx_listen_extra=()):
        self.name = name or "s%d" % next(_counter)
        self.var = os.path.join(ROOT, "var", "t", "%s-%d" % (self.name, os.getpid()))
        self.port = free_port()
        self.auth = auth
        self.runtime = runtime
        self.workers = workers
        self.nbackends = backends
        self.extra_env = env or {}
        # extra directives for nginx's http block (e.g. pico_max_tunnels 3;)
        self.nginx_http_extra = nginx_http_extra
        # more listen directives for the server block, after its own
        # (e.g. "127.0.0.1:PORT http2")
        self.nginx_listen_extra = list(nginx_listen_extra)
        self.redis = None
        self.nginx = None
        self.backends = []

    # -- configuration -------------------------------------------------
    def conf_path(self, name):
        return os.path.join(self.var, "conf", name)

    def conf_value(self, key, name="pico.conf"):
        with open(self.conf_path(name)) as f:
            for line in f:
                parts = line.split(None, 1)
                if parts and parts[0] == key:
                    return parts[1].strip() if len(parts) > 1 else ""
        return None

    def set_conf(self, key, value, name="pico.conf"):
        """Replace (or add) one key of the backend's config file."""
        path = self.conf_path(name)
        with open(path) as f:
            lines = f.read().splitlines()
        out, done = [], False
        for line in lines:
            parts = line.split(None, 1)
            if parts and parts[0] == key:
                out.append("%s %s" % (key, value))
                done = True
            else:
                out.append(line)
        if not done:
            out.append("%s %s" % (key, value))
        with open(path, "w") as f:
            f.write("\n".join(out) + "\n")

    def configure(self):
        if os.path.exists(self.var):
            shutil.rmtree(self.var)
        env = dict(os.environ, AUTH="on" if self.auth else "off",
                   RUNTIME=self.runtime, NODE=self.name,
                   WORKERS=str(self.workers), **self.extra_env)
        subprocess.check_call([os.path.join(ROOT, "scripts", "pico-conf.sh"),
                               self.var, IMAGES, "127.0.0.1:%d" % self.port],
                              env=env)
        if self.nginx_http_extra:
            # each directive replaces the template's line of the same name,
            # or is added at the top of the http block
            path = self.conf_path("nginx.conf")
            with open(path) as f:
                lines = f.read().split("\n")
            for d in self.nginx_http_extra.split(";"):
                d = d.strip()
                if not d:
                    continue
                name = d.split()[0]
                for i, line in enumerate(lines):
                    if line.split()[:1] == [name]:
                        lines[i] = "    %s;" % d
                        break
                else:
                    lines.insert(lines.index("http {") + 1, "    %s;" % d)
            with open(path, "w") as f:
                f.write("\n".join(lines))
        if self.nginx_listen_extra:
            path = self.conf_path("nginx.conf")
            with open(path) as f:
                lines = f.read().split("\n")
            at = [i for i, line in enumerate(lines)
                  if line.split()[:1] == ["listen"]][0]
            lines[at + 1:at + 1] = ["        listen %s;" % d
                                    for d in self.nginx_listen_extra]
            with open(path, "w") as f:
                f.write("\n".join(lines))

    # -- processes -----------------------------------------------------
    def start(self, configure=True):
        if configure:
            self.configure()
        self.start_redis()
        self.backends = [Backend(self, i) for i in range(self.nbackends)]
        for b in self.backends:
            b.start()
        self.start_nginx()
        return self

    def start_redis(self):
        sock = self.redis_sock
        self.redis = subprocess.Popen(["redis-server", self.conf_path("redis.conf")],
                                      stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(sock) and self.redis_ping(),
                 what="redis")

    def stop_redis(self):
        if self.redis and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(10)
        self.redis = None

    def start_nginx(self, prefix_cmd=None, args=None):
        cmd = (prefix_cmd or []) + ["nginx", "-p", os.path.join(self.var, "nginx"),
                                    "-c", self.conf_path("nginx.conf"),
                                    "-e", os.path.join(self.var, "log", "nginx-error.log")]
        cmd += args or []
        self.nginx = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                      stderr=open(os.path.join(self.var, "log", "nginx.out"), "ab"))
        wait_for(self._port_open, timeout=60 if prefix_cmd else 10, what="nginx port")

    def stop_nginx(self):
        if self.nginx and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(20)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        self.nginx = None

    def reload_nginx(self):
        self.nginx.send_signal(signal.SIGHUP)

    @property
    def backend(self):
        return self.backends[0]

    def drain(self):
        """Delete every session of this stack (what `make run` does on stop)."""
        subprocess.run([backend_binary(), "--config", self.conf_path("pico.conf"),
                        "drain"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)

    def stop(self):
        self.stop_nginx()
        if self.redis is not None:
            self.drain()
        for b in self.backends:
            b.stop()
        self.stop_redis()

    def sanitizer_reports(self):
        return glob.glob(os.path.join(self.var, "log", "asan*")) + \
            glob.glob(os.path.join(self.var, "log", "ubsan*"))

    def runc_containers(self):
        out = subprocess.run(["runc", "--root", os.path.join(self.var, "runc"),
                              "list", "-q"], capture_output=True, text=True)
        return [l for l in out.stdout.split() if l]

    # -- clients -------------------------------------------------------
    def _port_open(self):
        return port_open(self.port)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def redis_sock(self):
        return os.path.join(self.var, "run", "redis.sock")

    def redis_ping(self):
        try:
            return self.redis_cli("PING") == "PONG"
        except Exception:
            return False

    def redis_cli(self, *args):
        out = subprocess.run(["redis-cli", "-s", self.redis_sock, *args],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def request(self, method, path, body=None, headers=None, token=None,
                timeout=60):
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if token:
            hdrs["Authorization"] = "Bearer " + token
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, dict(r.getheaders()), r.read().decode("utf-8", "replace"))
        finally:
            conn.close()

    def create(self, token=None, **fields):
        r = self.request("POST", "/v1/sessions", body=fields, token=token)
        assert r.status == 201, r
        return r.json()

    def delete(self, sid, token=None):
        return self.request("DELETE", "/v1/sessions/" + sid, token=token)

    def make_token(self, principal):
        out = subprocess.run([backend_binary(), "--config", self.conf_path("pico.conf"),
                              "token", "create", principal],
                             capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip().splitlines()[-1]

    def open_tunnel(self, sid, token=None, extra=b"", timeout=10):
        """CONNECT through nginx; returns (socket, status_line, leftover)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout)
        req = "CONNECT /v1/sessions/%s/tunnel HTTP/1.1\r\nHost: 127.0.0.1\r\n" % sid
        if token:
            req += "Authorization: Bearer %s\r\n" % token
        s.sendall(req.encode() + b"\r\n" + extra)
        head, rest = read_head(s)
        status = head.split(b"\r\n", 1)[0].decode()
        return s, status, rest
