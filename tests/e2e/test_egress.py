"""Network egress of local sandboxes ("network": "egress"), end to end:
real pico-backend, runc, slirp4netns, nftables, sshd in the sandbox.

Safety first: no test here sends a packet anywhere but loopback and
network namespaces it made itself. pico's egress namespace (egress_netns)
is a namespace of the test, wired by one veth pair to a second one, the
"fake internet", which holds a DNS server (dnsmasq) answering the user's
guide's names with documentation addresses (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24), an HTTPS server with a test CA, and addresses that answer
ping. A guard checks, before any sandbox exists, that the egress namespace
is not the host's, that it has no route but into the test's own veth and
no default route, and that the resolver pico hands sandboxes is the fake;
otherwise the test fails before any traffic.

What is checked: the guide's three network tests in spirit (ping an
address, nslookup a name, curl an https URL) pass against the fake, and
each denied destination is refused although the fake answers it when
asked from the egress namespace directly: the host's services (through
slirp's 10.0.2.2 and the egress namespace's own address), cloud metadata
at 169.254.169.254, a denied CIDR, another sandbox. A sandbox without
egress has only lo; DELETE leaves no slirp4netns and no netns mount; bad
requests and a policy that allows nothing are refused."""

import json
import os
import secrets
import signal
import subprocess

import paramiko
import pytest

from pico_stack import backend_binary, wait_for
from test_sandbox import Sandbox, endpoint_path

FAKE_DNS = "192.0.2.10"     # the fake's resolver, web and ping host
DENIED_HOST = "198.51.100.10"  # in egress_deny_cidrs, answers anyway
METADATA = "169.254.169.254"   # link-local, answers anyway
EG_ADDR, NET_ADDR = "203.0.113.1", "203.0.113.2"  # the veth pair
EG_PORT = 8765  # a service in the egress namespace itself ("the host")
FAKE_JSON = {"login": "github", "id": 9919, "fake": True}

SERVER = r'''
import http.server, json, socketserver, ssl, sys, threading
body = json.dumps(%(json)s).encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = body if self.path == "/users/github" else b"reachable\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
servers = []
for spec in sys.argv[1:]:
    addr, port, tls = spec.split(":")
    s = S((addr, int(port)), H)
    if tls == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain("%(dir)s/server.pem", "%(dir)s/server.key")
        s.socket = ctx.wrap_socket(s.socket, server_side=True)
    servers.append(s)
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
'''


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True,
                          text=True, timeout=30, **kw).stdout


def make_ca(d):
    """A test CA and a server certificate for the guide's names."""
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
       "2", "-subj", "/CN=pico egress test CA", "-keyout", d + "/ca.key",
       "-out", d + "/ca.pem")
    with open(d + "/ext.cnf", "w") as f:
        f.write("subjectAltName=DNS:api.github.com,DNS:google.com,IP:%s\n"
                % FAKE_DNS)
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj",
       "/CN=api.github.com", "-keyout", d + "/server.key", "-out",
       d + "/server.csr")
    sh("openssl", "x509", "-req", "-in", d + "/server.csr", "-CA",
       d + "/ca.pem", "-CAkey", d + "/ca.key", "-CAcreateserial", "-days",
       "2", "-extfile", d + "/ext.cnf", "-out", d + "/server.pem")


class FakeInternet:
    """Two namespaces of this test: `eg` (pico's egress_netns) and `net`
    (the fake internet), one veth pair between them, nothing else."""

    def __init__(self, tmp):
        tag = secrets.token_hex(3)
        self.eg, self.net = "pico-eg-" + tag, "pico-net-" + tag
        self.veth_eg, self.veth_net = "pe" + tag, "pn" + tag
        self.tmp = str(tmp)
        self.procs = []

    def ip(self, *args):
        return sh("ip", *args)

    def ns(self, name, *args, **kw):
        return subprocess.Popen(["ip", "netns", "exec", name] + list(args),
                                **kw)

    def up(self):
        self.ip("netns", "add", self.eg)
        self.ip("netns", "add", self.net)
        self.ip("link", "add", self.veth_eg, "netns", self.eg, "type", "veth",
                "peer", "name", self.veth_net, "netns", self.net)
        for ns, dev, addr in ((self.eg, self.veth_eg, EG_ADDR),
                              (self.net, self.veth_net, NET_ADDR)):
            self.ip("-n", ns, "link", "set", "lo", "up")
            self.ip("-n", ns, "addr", "add", addr + "/24", "dev", dev)
            self.ip("-n", ns, "link", "set", dev, "up")
        for a in (FAKE_DNS, DENIED_HOST, METADATA):
            self.ip("-n", self.net, "addr", "add", a + "/32", "dev", "lo")
        for dst in ("192.0.2.0/24", "198.51.100.0/24", METADATA + "/32"):
            self.ip("-n", self.eg, "route", "add", dst, "via", NET_ADDR,
                    "dev", self.veth_eg)
        make_ca(self.tmp)
        self.start_services()

    def start_services(self):
        conf = os.path.join(self.tmp, "dnsmasq.conf")
        with open(conf, "w") as f:
            f.write("no-resolv\nno-hosts\nbind-interfaces\n"
                    "listen-address=%s\naddress=/google.com/%s\n"
                    "address=/api.github.com/%s\naddress=/denied.example/%s\n"
                    # documentation IPv6 too: nslookup asks for AAAA as well
                    "address=/#/2001:db8::10\n"
                    % (FAKE_DNS, FAKE_DNS, FAKE_DNS, DENIED_HOST))
        self.procs.append(self.ns(self.net, "dnsmasq", "--keep-in-foreground",
                                  "--conf-file=" + conf, "--pid-file=",
                                  "--user=root", "--group=root"))
        script = os.path.join(self.tmp, "server.py")
        with open(script, "w") as f:
            f.write(SERVER % {"json": repr(FAKE_JSON), "dir": self.tmp})
        for ns, specs in ((self.net, [FAKE_DNS + ":443:tls",
                                      DENIED_HOST + ":80:plain",
                                      METADATA + ":80:plain"]),
                          (self.eg, ["0.0.0.0:%d:plain" % EG_PORT])):
            p = self.ns(ns, "/usr/bin/python3", script, *specs,
                        stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
            assert p.stdout.readline().strip() == "ready"

    def down(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in (self.eg, self.net):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def from_eg(self, *args):
        """Runs a command in the egress namespace (the positive control:
        the fake answers what the sandbox must not reach)."""
        return subprocess.run(["ip", "netns", "exec", self.eg] + list(args),
                              capture_output=True, text=True, timeout=30)


def guard(fake, egress_dns):
    """Fails closed unless traffic from pico's egress namespace can only
    reach the test's own namespaces."""
    host = os.stat("/proc/self/ns/net").st_ino
    eg = os.stat("/run/netns/" + fake.eg).st_ino
    if eg == host:
        pytest.fail("guard: egress namespace is the host's")
    links = json.loads(fake.ip("-n", fake.eg, "-j", "link", "show"))
    names = sorted(l["ifname"] for l in links)
    if names != sorted(["lo", fake.veth_eg]):
        pytest.fail("guard: egress namespace has links %s" % names)
    for fam in ("-4", "-6"):
        routes = json.loads(fake.ip("-n", fake.eg, fam, "-j", "route", "show",
                                    "table", "all"))
        for r in routes:
            if r.get("dst") == "default" or r.get("dev") not in (
                    "lo", fake.veth_eg):
                pytest.fail("guard: egress namespace route %s" % r)
            gw = r.get("gateway")
            if gw is not None and gw != NET_ADDR:
                pytest.fail("guard: egress route via %s" % gw)
    if egress_dns != FAKE_DNS:
        pytest.fail("guard: the resolver is not the fake's")


@pytest.fixture
def fake(tmp_path):
    f = FakeInternet(tmp_path)
    try:
        f.up()
        guard(f, FAKE_DNS)
        yield f
    finally:
        f.down()


def egress_conf(fake, **more):
    conf = {"network_allowed": "none,egress",
            "egress_netns": fake.eg,
            "egress_dns": FAKE_DNS,
            "egress_deny_cidrs": "198.51.100.0/24"}
    conf.update(more)
    return {"pico.conf": conf}


def put_file(box, local, remote):
    sftp = paramiko.SFTPClient.from_transport(box.transport)
    sftp.put(local, remote)
    sftp.close()


def refused(box, cmd):
    rc, out, err = box.run(cmd)
    assert rc != 0, (cmd, out, err)


def slirps(stack):
    out = subprocess.run(["pgrep", "-a", "slirp4netns"], capture_output=True,
                         text=True).stdout
    return [l for l in out.splitlines() if stack.var in l]


def dnsmasqs(stack):
    out = subprocess.run(["pgrep", "-a", "dnsmasq"], capture_output=True,
                         text=True).stdout
    return [l for l in out.splitlines() if stack.var in l]


def netns_mounts(stack):
    with open("/proc/self/mountinfo") as f:
        return [l for l in f if stack.var in l and "/netns" in l]


def test_egress_against_the_fake_internet(fake, new_stack):
    stack = new_stack(conf=egress_conf(fake))
    a = stack.create(network="egress")
    b = stack.create(network="egress")
    c = stack.create()
    assert a["network"] == "egress" and c["network"] == "none"
    box = Sandbox(endpoint_path(stack, a["session_id"]))
    other = Sandbox(endpoint_path(stack, b["session_id"]))
    plain = Sandbox(endpoint_path(stack, c["session_id"]))
    try:
        # the last part of the guard: what the sandbox resolves with
        assert box.ok("cat /etc/resolv.conf").split() == [
            "nameserver", FAKE_DNS]

        # the guide's three tests, against the fake
        assert " 0% packet loss" in box.ok("ping -c 3 %s" % FAKE_DNS)
        out = box.ok("nslookup api.github.com")
        assert "Address: %s" % FAKE_DNS in out, out
        put_file(box, os.path.join(fake.tmp, "ca.pem"), "/tmp/ca.pem")
        body = box.ok("curl -sS --cacert /tmp/ca.pem "
                      "https://api.github.com/users/github")
        assert json.loads(body) == FAKE_JSON

        # denied although the fake answers each from the egress namespace
        for url in ("http://%s/" % DENIED_HOST, "http://%s/" % METADATA,
                    "http://%s:%d/" % (EG_ADDR, EG_PORT)):
            r = fake.from_eg("curl", "-sS", "-m", "10", url)
            assert r.stdout == "reachable\n", (url, r)
            refused(box, "curl -sS -m 10 " + url)
        refused(box, "ping -c 1 -W 5 %s" % DENIED_HOST)
        # the host's loopback through slirp's gateway, and the stack's own
        # services (nginx, the backend when it listens on TCP)
        refused(box, "curl -sS -m 10 http://10.0.2.2:%d/" % EG_PORT)
        refused(box, "curl -sS -m 10 http://10.0.2.2:%d/health" % stack.port)
        listen = stack.conf_value("listen")
        if not listen.startswith("unix:"):
            refused(box, "curl -sS -m 10 http://10.0.2.2:%s/"
                    % listen.rsplit(":", 1)[1])
        # another sandbox: each is 10.0.2.100 behind its own NAT, with no
        # port forwarded; a listener there is not reachable from here
        other.ok("(python3 -m http.server 8000 --bind 0.0.0.0 "
                 ">/dev/null 2>&1 &) ; sleep 0")
        wait_for(lambda: other.run("curl -s -o /dev/null "
                                   "http://10.0.2.100:8000/")[0] == 0,
                 what="the other sandbox's listener")
        refused(box, "curl -sS -m 10 http://10.0.2.100:8000/")

        # no egress: only lo
        devs = plain.ok("tail -n +3 /proc/net/dev").split()
        assert [d for d in devs if d.endswith(":")] == ["lo:"]
    finally:
        for x in (box, other, plain):
            x.close()
    for s in (a, b, c):
        assert stack.delete(s["session_id"]).status == 200
    assert slirps(stack) == []
    assert netns_mounts(stack) == []


def test_egress_allowed_domains(fake, new_stack):
    """Allow-list mode: only allowed names resolve (through the sandbox's
    own dnsmasq), and only their answers are reachable."""
    stack = new_stack(conf=egress_conf(fake, egress_deny_cidrs="",
                                       egress_allow_domains="api.github.com"))
    a = stack.create(network="egress")
    box = Sandbox(endpoint_path(stack, a["session_id"]))
    try:
        assert box.ok("cat /etc/resolv.conf").split() == [
            "nameserver", "127.0.0.1"]
        # before any answer pinned it, the address itself is refused
        refused(box, "ping -c 1 -W 5 %s" % FAKE_DNS)
        out = box.ok("nslookup api.github.com")
        assert "Address: %s" % FAKE_DNS in out, out
        put_file(box, os.path.join(fake.tmp, "ca.pem"), "/tmp/ca.pem")
        body = box.ok("curl -sS --cacert /tmp/ca.pem "
                      "https://api.github.com/users/github")
        assert json.loads(body) == FAKE_JSON
        assert " 0% packet loss" in box.ok("ping -c 3 %s" % FAKE_DNS)
        # a name not allowed does not resolve, not even by asking the
        # upstream resolver directly
        refused(box, "nslookup google.com")
        refused(box, "nslookup -timeout=3 -retry=1 google.com %s" % FAKE_DNS)
        # an address no allowed name gave is refused, though it answers
        assert fake.from_eg("curl", "-sS", "-m", "10", "http://%s/"
                            % DENIED_HOST).stdout == "reachable\n"
        refused(box, "curl -sS -m 10 http://%s/" % DENIED_HOST)
    finally:
        box.close()
    assert stack.delete(a["session_id"]).status == 200
    assert slirps(stack) == [] and dnsmasqs(stack) == []
    assert netns_mounts(stack) == []


def test_egress_denied_domains(fake, new_stack):
    """Deny-list mode: denied names do not resolve, others do."""
    stack = new_stack(conf=egress_conf(fake,
                                       egress_deny_domains="denied.example"))
    a = stack.create(network="egress")
    box = Sandbox(endpoint_path(stack, a["session_id"]))
    try:
        out = box.ok("nslookup google.com")
        assert "Address: %s" % FAKE_DNS in out, out
        refused(box, "nslookup denied.example")
        refused(box, "nslookup sub.denied.example")
        refused(box, "nslookup -timeout=3 -retry=1 denied.example %s"
                % FAKE_DNS)
    finally:
        box.close()
    assert stack.delete(a["session_id"]).status == 200
    assert dnsmasqs(stack) == []


def test_egress_survives_a_backend_kill(fake, new_stack):
    """SIGKILL of the backend: the sandbox keeps its network (slirp4netns
    is no child to stop), and the restarted backend's DELETE still removes
    slirp4netns, the netns mount and the container."""
    stack = new_stack(conf=egress_conf(fake))
    a = stack.create(network="egress")
    stack.backend.stop(sig=signal.SIGKILL)
    stack.backend.start()
    wait_for(lambda: stack.request("GET", "/health").status == 200,
             what="the restarted backend")
    box = Sandbox(endpoint_path(stack, a["session_id"]))
    try:
        assert " 0% packet loss" in box.ok("ping -c 3 %s" % FAKE_DNS)
        refused(box, "curl -sS -m 10 http://%s/" % METADATA)
    finally:
        box.close()
    assert stack.delete(a["session_id"]).status == 200
    wait_for(lambda: slirps(stack) == [], what="slirp4netns gone")
    assert netns_mounts(stack) == []


def test_egress_request_lists(fake, new_stack):
    """A request's own lists narrow the server's, never widen them."""
    stack = new_stack(conf=egress_conf(fake))
    bad = [({"network": "egress", "egress": {"allow_cidrs": [
        "198.51.100.0/25"]}}, "egress: allows nothing"),
        ({"network": "egress", "egress": {"allow_cidrs": ["169.254.0.0/16"]}},
         "egress: allows nothing"),
        ({"egress": {"deny_cidrs": ["192.0.2.0/24"]}},
         'egress: needs "network": "egress"'),
        ({"network": "egress", "egress": {"allow_cidrs": ["192.0.2.1/24"]}},
         "egress.allow_cidrs: 192.0.2.1/24 is not an IPv4 range"),
        ({"network": "egress", "egress": {"ports": [80]}},
         "egress.ports: unknown field"),
        ({"network": "egress", "egress": []}, "egress: must be an object")]
    for body, message in bad:
        r = stack.request("POST", "/v1/sessions", body=body)
        assert r.status == 400, (body, r)
        assert message in r.json()["error"]["message"], (body, r)

    narrow = stack.create(network="egress",
                          egress={"allow_cidrs": ["192.0.2.10/32"]})
    deny = stack.create(network="egress",
                        egress={"deny_cidrs": ["192.0.2.0/24"]})
    assert narrow["egress"] == {"allow_cidrs": ["192.0.2.10/32"],
                                "deny_cidrs": []}
    got = stack.request("GET", "/v1/sessions/" + deny["session_id"]).json()
    assert got["network"] == "egress" and got["egress"] == {
        "allow_cidrs": [], "deny_cidrs": ["192.0.2.0/24"]}, got
    boxes = [Sandbox(endpoint_path(stack, x["session_id"]))
             for x in (narrow, deny)]
    try:
        n, d = boxes
        # the fake's veth address answers ping from any plain egress box
        assert " 0% packet loss" in d.ok("ping -c 1 %s" % NET_ADDR)
        assert " 0% packet loss" in n.ok("ping -c 1 %s" % FAKE_DNS)
        refused(n, "ping -c 1 -W 5 %s" % NET_ADDR)
        refused(d, "ping -c 1 -W 5 %s" % FAKE_DNS)
    finally:
        for b in boxes:
            b.close()
    for x in (narrow, deny):
        assert stack.delete(x["session_id"]).status == 200


def test_egress_refused_unless_allowed(stack):
    r = stack.request("POST", "/v1/sessions", body={"network": "egress"})
    assert r.status == 400, r
    assert r.json()["error"]["message"] == (
        "network: egress is not allowed on this server (allowed: none)"), r
    r = stack.request("POST", "/v1/sessions", body={"network": "wide"})
    assert r.status == 400, r
    assert "network: must be" in r.json()["error"]["message"], r


@pytest.mark.parametrize("keys,message", [
    ({"egress_allow_cidrs": "198.51.100.0/24",
      "egress_deny_cidrs": "198.51.100.0/23"}, "allows nothing"),
    ({"egress_allow_cidrs": "169.254.0.0/16"}, "allows nothing"),
    ({"egress_deny_cidrs": "198.51.100.1/24"}, "egress_deny_cidrs"),
    ({"egress_dns": "127.0.0.1"}, "egress_dns"),
    ({"network_allowed": "none,wifi"}, "network_allowed"),
    ({"egress_allow_domains": "API.github.com"}, "egress_allow_domains"),
    ({"egress_deny_domains": "a..b"}, "egress_deny_domains"),
])
def test_egress_config_errors(tmp_path, keys, message):
    conf = {"network_allowed": "none,egress", "egress_dns": FAKE_DNS}
    conf.update(keys)
    path = tmp_path / "pico.conf"
    path.write_text("".join("%s %s\n" % kv for kv in conf.items()))
    r = subprocess.run([backend_binary(), "--config", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
