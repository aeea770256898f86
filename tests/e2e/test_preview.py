"""HTTP preview: a web app in a sandbox seen through nginx at
/v1/sessions/<id>/ports/<port>/... (pico_preview, proxy_pass to pico-init's
port relay), WebSockets included, in curl, a raw WebSocket client and
headless Chromium. With auth on: the owner's token or a signed preview
link (POST .../ports/<port>/preview) that becomes a cookie; an expired
link or one of another session or port is refused. The sandbox keeps no
network interface but lo throughout."""

import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import urllib.parse

import pytest

from pico_stack import ROOT, read_head
from sandbox_apps import Box

sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))

WEB_PORT = 8000
WS_PORT = 8765
PAGE = "<!doctype html><html><body><h1>hello from the sandbox</h1></body></html>"


def prefix(sid, port):
    return "/v1/sessions/%s/ports/%d" % (sid, port)


def curl(stack, path, *args):
    """curl's status line, headers and body (curl is the real client)."""
    p = subprocess.run(["curl", "-s", "-i", "--max-time", "30", *args,
                        "http://127.0.0.1:%d%s" % (stack.port, path)],
                       capture_output=True, timeout=60)
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return int(lines[0].split()[1]), headers, body.decode("utf-8", "replace")


def ws_echo(stack, path, text, headers=()):
    """One WebSocket text message through nginx; returns the echo."""
    s = socket.create_connection(("127.0.0.1", stack.port), 10)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n" % (path, stack.port, key))
        req += "".join("%s: %s\r\n" % h for h in headers)
        s.sendall(req.encode() + b"\r\n")
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 101"), head
        data = text.encode()
        mask = os.urandom(4)
        s.sendall(bytes([0x81, 0x80 | len(data)]) + mask +
                  bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        buf = rest
        while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F):
            chunk = s.recv(4096)
            assert chunk, "WebSocket closed"
            buf += chunk
        assert buf[0] == 0x81, buf
        return buf[2:2 + (buf[1] & 0x7F)].decode()
    finally:
        s.close()


@pytest.fixture(scope="module")
def apps(stack):
    """A session with python -m http.server and the WebSocket app."""
    sid = stack.create(ttl=600)["session_id"]
    box = Box(stack, sid)
    box.http_server(WEB_PORT, PAGE)
    box.ws_app(WS_PORT)
    yield sid, box
    box.close()
    assert stack.delete(sid).status == 200


def test_preview_serves_http_server_with_auth_off(stack, apps):
    sid, box = apps
    status, _, body = curl(stack, prefix(sid, WEB_PORT) + "/")
    assert status == 200 and "hello from the sandbox" in body, (status, body)
    status, _, body = curl(stack, prefix(sid, WEB_PORT) + "/index.html?x=1")
    assert status == 200 and "hello from the sandbox" in body
    status, _, body = curl(stack, prefix(sid, WEB_PORT) + "/missing.html")
    assert status == 404  # the app's own 404
    assert box.interfaces() == ["lo"]


def test_preview_without_slash_redirects(stack, apps):
    sid, _ = apps
    status, headers, _ = curl(stack, prefix(sid, WEB_PORT))
    assert status == 301
    assert headers["location"][0].endswith(prefix(sid, WEB_PORT) + "/")


def test_app_sees_its_own_path_and_the_prefix(stack, apps):
    sid, _ = apps
    status, _, body = curl(stack, prefix(sid, WS_PORT) + "/headers?a=b",
                           "-H", "Cookie: theme=dark; pico_preview=" + "0" * 64,
                           "-H", "Authorization: Bearer secret")
    assert status == 200, body
    seen = json.loads(body)
    assert seen["path"] == "/headers?a=b"
    hdrs = {k.lower(): v for k, v in seen["headers"].items()}
    assert hdrs["x-forwarded-prefix"] == prefix(sid, WS_PORT)
    assert hdrs["host"] == "127.0.0.1:%d" % stack.port
    # neither credential reaches the app; other cookies do
    assert hdrs.get("cookie") == "theme=dark"
    assert "authorization" not in hdrs
    # a POST keeps its method and body on the way
    status, _, body = curl(stack, prefix(sid, WS_PORT) + "/form", "-d", "a=1&b=2")
    assert status == 200, body
    seen = json.loads(body)
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/form", "a=1&b=2")


@pytest.mark.parametrize("port,status", [("0", 400), ("65536", 400),
                                         ("abc", 400)])
def test_preview_bad_port(stack, apps, port, status):
    sid, _ = apps
    got, _, body = curl(stack, "/v1/sessions/%s/ports/%s/" % (sid, port))
    assert got == status, body
    assert json.loads(body)["error"]["message"] == "port must be 1..65535"


def test_preview_closed_port_is_502_with_a_message(stack, apps):
    sid, _ = apps
    status, _, body = curl(stack, prefix(sid, 8999) + "/")
    assert status == 502
    assert json.loads(body)["error"]["message"] == "nothing listens on port 8999"


def test_preview_unknown_session_is_404(stack):
    status, _, body = curl(stack, prefix("123e4567-e89b-12d3-a456-426614174000",
                                         80) + "/")
    assert status == 404, body
    status, _, body = curl(stack, "/v1/sessions/nope/ports/80/")
    assert status == 400, body


def test_websocket_echo_through_preview(stack, apps):
    sid, _ = apps
    assert ws_echo(stack, prefix(sid, WS_PORT) + "/ws", "hello ws") == "hello ws"


LOOPBACK = ('inet_addr("127.', '"::1"', '"::ffff:127.')


def outside_traffic(trace):
    """What a strace -f -yy of connect and the send calls shows going
    beyond loopback: TCP connects, DNS, datagrams sent with an address,
    and anything sent on a UDP socket connected outside. A UDP connect
    alone sends nothing: Chromium's route probe to 2001:4860:: is one."""
    bad, outside = [], set()
    for line in trace.splitlines():
        m = re.search(r"\(\d+<(TCP|UDP)v?6?:\[([^\]]*)\]>", line)
        if m is None:
            continue
        inet = "AF_INET" in line and not any(a in line for a in LOOPBACK)
        if " connect(" in line and inet:
            if m.group(1) == "TCP" or "htons(53)" in line:
                bad.append(line[:200])
            outside.add(m.group(2))
        elif " connect(" not in line and (inet or m.group(2) in outside):
            bad.append(line[:200])
    return bad


def chromium(tmp_path, *args, trace=False):
    """Headless Chromium that talks to nothing but the URL it is given:
    no background services, and every host name resolves to nothing
    (--host-resolver-rules), so not even a DNS query leaves. trace=True
    runs it under strace and fails on any traffic beyond loopback."""
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
           "--no-first-run", "--no-default-browser-check",
           "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-default-apps", "--disable-extensions",
           "--metrics-recording-only", "--disable-domain-reliability",
           "--disable-breakpad", "--no-pings", "--dns-prefetch-disable",
           "--no-proxy-server", "--disable-features=MediaRouter,OptimizationHints",
           "--disable-client-side-phishing-detection",
           "--safebrowsing-disable-auto-update",
           "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
           "--user-data-dir=%s" % (tmp_path / "chromium-profile"),
           "--virtual-time-budget=10000", *args]
    log = tmp_path / "chromium.strace"
    if trace:
        cmd = ["strace", "-f", "-qq", "-yy", "-e",
               "trace=connect,sendto,sendmsg,sendmmsg,write,writev",
               "-o", str(log)] + cmd
    p = subprocess.run(cmd, capture_output=True, timeout=120,
                       cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-2000:]
    if trace:
        text = log.read_text(errors="replace")
        assert "AF_INET" in text  # it did connect: the check saw something
        assert outside_traffic(text) == []
    return p.stdout.decode("utf-8", "replace")


def test_chromium_renders_the_pages_and_the_websocket(stack, apps, tmp_path):
    sid, _ = apps
    base = "http://127.0.0.1:%d" % stack.port
    dom = chromium(tmp_path, "--dump-dom", base + prefix(sid, WEB_PORT) + "/",
                   trace=True)
    assert "hello from the sandbox" in dom
    # the page's own script opened the WebSocket and rendered its echo
    dom = chromium(tmp_path, "--dump-dom", base + prefix(sid, WS_PORT) + "/")
    assert "got echo-4711" in dom, dom
    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--screenshot=%s" % shot, "--window-size=800,600",
             base + prefix(sid, WS_PORT) + "/")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack("!II", png[16:24])
    assert (width, height) == (800, 600)
    assert len(png) > 2000  # a rendered page, not a blank one


def link(st, sid, port, token, ttl=None):
    r = st.request("POST", prefix(sid, port) + "/preview", token=token,
                   body={"ttl": ttl} if ttl else None)
    assert r.status == 201, r
    return r.json()


def test_preview_with_auth_on(new_stack, tmp_path):
    st = new_stack(auth=True)
    alice = st.make_token("alice")
    bob = st.make_token("bob")
    sid = st.create(token=alice, ttl=300)["session_id"]
    other = st.create(token=alice, ttl=300)["session_id"]
    box = Box(st, sid)
    try:
        box.ws_app(WS_PORT)
        page = prefix(sid, WS_PORT) + "/"
        # no credential, a bad one, another principal's
        status, headers, body = curl(st, page)
        assert status == 401 and "preview link required" in body
        assert curl(st, page, "-H", "Authorization: Bearer x")[0] == 401
        assert curl(st, page, "-H", "Authorization: Bearer " + bob)[0] == 404
        # the owner's token
        status, _, body = curl(st, page, "-H", "Authorization: Bearer " + alice)
        assert status == 200 and "pico preview" in body

        # a signed link: the API's answer, then a cookie and a clean URL
        made = link(st, sid, WS_PORT, alice)
        assert made["path"].startswith(page + "?pico_preview=")
        assert made["url"] == "http://127.0.0.1:%d%s" % (st.port, made["path"])
        assert made["port"] == WS_PORT and made["expires_at"]
        token = urllib.parse.parse_qs(made["path"].split("?", 1)[1])["pico_preview"][0]
        assert len(token) == 64
        assert st.redis_cli("KEYS", "pico:preview:*").count("pico:preview:") == 1
        assert token not in st.redis_cli("KEYS", "pico:preview:*")
        status, headers, _ = curl(st, made["path"] + "&x=1")
        assert status == 302, headers
        assert headers["location"][0] == "http://127.0.0.1:%d%s?x=1" % (st.port, page)
        cookie = headers["set-cookie"][0]
        assert cookie.startswith("pico_preview=%s;" % token)
        assert "Path=%s/;" % prefix(sid, WS_PORT) in cookie and "HttpOnly" in cookie
        status, _, body = curl(st, page, "-H", "Cookie: pico_preview=" + token)
        assert status == 200 and "pico preview" in body
        assert ws_echo(st, page + "ws", "via link",
                       [("Cookie", "pico_preview=" + token)]) == "via link"

        # the link is for this session and port only
        status, _, body = curl(st, prefix(other, WS_PORT) + "/", "-H",
                               "Cookie: pico_preview=" + token)
        assert status == 403 and "another session or port" in body
        status, _, body = curl(st, prefix(sid, WEB_PORT) + "/", "-H",
                               "Cookie: pico_preview=" + token)
        assert status == 403 and "another session or port" in body
        # unknown and expired links
        status, _, body = curl(st, page, "-H", "Cookie: pico_preview=" + "a" * 64)
        assert status == 403 and "expired or invalid" in body
        key = st.redis_cli("KEYS", "pico:preview:*")
        st.redis_cli("HSET", key, "expires", "1")
        status, _, body = curl(st, page, "-H", "Cookie: pico_preview=" + token)
        assert status == 403 and "expired" in body
        st.redis_cli("DEL", key)
        status, _, body = curl(st, page, "-H", "Cookie: pico_preview=" + token)
        assert status == 403 and "expired or invalid" in body

        # a real browser follows a fresh link to the page and its WebSocket
        made = link(st, sid, WS_PORT, alice, ttl=120)
        dom = chromium(tmp_path, "--dump-dom", made["url"])
        assert "got echo-4711" in dom, dom

        # the route's own errors
        r = st.request("POST", prefix(sid, 0) + "/preview", token=alice)
        assert r.status == 400 and r.json()["error"]["code"] == "invalid_port"
        r = st.request("POST", prefix(sid, WS_PORT) + "/preview", token=bob)
        assert r.status == 404
        r = st.request("POST", prefix(sid, WS_PORT) + "/preview", token=alice,
                       body={"ttl": 0})
        assert r.status == 400 and "ttl" in r.json()["error"]["message"]
        r = st.request("POST", prefix(sid, WS_PORT) + "/preview", token=alice,
                       body={"ttl": 10**9})
        assert r.status == 400
        # the link never outlives its session
        made = link(st, sid, WS_PORT, alice, ttl=86400)
        s = st.request("GET", "/v1/sessions/" + sid, token=alice).json()
        assert made["expires_at"] <= s["expires_at"]
        assert box.interfaces() == ["lo"]
    finally:
        box.close()
        st.delete(sid, token=alice)
        st.delete(other, token=alice)


def test_sdk_expose(new_stack):
    from sandbox_sdk import SandboxClient

    st = new_stack(auth=True)
    alice = st.make_token("alice")
    client = SandboxClient(st.url, token=alice)
    session = client.create_session(ttl=300)
    box = Box(st, session.session_id)
    try:
        box.http_server(WEB_PORT, PAGE)
        url = session.expose(WEB_PORT)
        assert url.startswith(st.url + prefix(session.session_id, WEB_PORT) + "/?pico_preview=")
        # curl follows the link's redirect with the cookie it was given
        p = subprocess.run(["curl", "-s", "-L", "-c", "/dev/null", "-b", "", url],
                           capture_output=True, text=True, timeout=60)
        assert "hello from the sandbox" in p.stdout
    finally:
        box.close()
        session.delete()


def test_preview_under_make_run(run_stack):
    """As `make run` runs pico (scripts/run.sh, auth off): the preview path
    of a session serves its app to curl, and the sandbox has only lo."""
    st = run_stack(name="run-preview")
    sid = st.create(ttl=300)["session_id"]
    box = Box(st, sid)
    try:
        box.http_server(WEB_PORT, PAGE)
        status, _, body = curl(st, prefix(sid, WEB_PORT) + "/")
        assert status == 200 and "hello from the sandbox" in body, (status, body)
        assert box.interfaces() == ["lo"]
    finally:
        box.close()
        assert st.delete(sid).status == 200
