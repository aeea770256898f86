"""End-to-end tests of pico-backend's REST API through the real stack
(nginx -> backend -> redis, runc sandboxes): the session lifecycle, the
JSON contract, and every kind of bad input getting a 4xx JSON error that
names the field, without crashing the backend or leaking a sandbox."""

import calendar
import json
import os
import re
import subprocess
import time

import pytest

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def unix_time(rfc3339):
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))


def error_of(r, status):
    """Asserts r is a JSON error with this status; returns its message."""
    assert r.status == status, r
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    err = r.json()["error"]
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    return err["message"]


def containers_of(stack, sid):
    return [c for c in stack.runc_containers() if sid in c]


def live_keys(stack):
    return sorted(k for k in stack.redis_cli("KEYS", "pico:session:*").split() if k)


def test_health(stack):
    r = stack.request("GET", "/health")
    assert r.status == 200, r
    assert r.json() == {"status": "ok", "redis": "ok", "runtime": "ok"}


def test_lifecycle(stack):
    s = stack.create(ttl=600, metadata={"team": "infra", "note": "héllo wörld"},
                     resources={"memory_mb": 256, "pids": 128})
    sid = s["session_id"]
    assert UUID_RE.match(sid)
    assert s["status"] == "running"
    assert s["image"] == "sandbox:latest"
    assert s["ttl"] == 600
    assert TIME_RE.match(s["created_at"]) and TIME_RE.match(s["expires_at"])
    assert unix_time(s["expires_at"]) - unix_time(s["created_at"]) == 600
    assert abs(unix_time(s["created_at"]) - time.time()) < 120
    assert s["sandbox_name"] == "sandbox-" + sid
    assert s["tunnel_path"] == "/v1/sessions/%s/tunnel" % sid
    assert s["ssh_user"] == "sandbox"
    assert s["host_key"].startswith("ssh-")
    assert s["host_key_fingerprint"].startswith("SHA256:")
    assert s["resources"] == {"memory_mb": 256, "cpu_millicores": 1000, "pids": 128,
                              "disk_mb": 0}
    assert s["metadata"] == {"team": "infra", "note": "héllo wörld"}
    assert s["tunnels"]["open"] == 0
    assert containers_of(stack, sid), stack.runc_containers()

    # The record is what docs/redis.md promises the module.
    assert stack.redis_cli("HGET", "pico:session:" + sid, "status") == "running"
    assert stack.redis_cli("HGET", "pico:session:" + sid, "endpoint")
    assert int(float(stack.redis_cli("ZSCORE", "pico:expiry", sid))) == \
        unix_time(s["expires_at"]) * 1000

    g = stack.request("GET", "/v1/sessions/" + sid)
    assert g.status == 200, g
    got = g.json()
    for k in ("session_id", "status", "image", "ttl", "created_at", "expires_at",
              "sandbox_name", "host_key", "host_key_fingerprint", "metadata",
              "resources"):
        assert got[k] == s[k], k

    lst = stack.request("GET", "/v1/sessions").json()
    assert lst["total"] == len(lst["sessions"])
    assert sid in [x["session_id"] for x in lst["sessions"]]

    d = stack.delete(sid)
    assert d.status == 200, d
    assert d.json() == {"session_id": sid, "status": "terminated"}
    error_of(stack.request("GET", "/v1/sessions/" + sid), 404)
    error_of(stack.delete(sid), 404)
    assert containers_of(stack, sid) == []
    assert stack.redis_cli("EXISTS", "pico:session:" + sid) == "0"
    assert stack.redis_cli("ZSCORE", "pico:expiry", sid) == ""
    assert not os.path.exists(os.path.join(stack.var, "sessions", sid))


def test_defaults_without_body(stack):
    r = stack.request("POST", "/v1/sessions")
    assert r.status == 201, r
    s = r.json()
    try:
        assert s["ttl"] == 3600
        assert s["image"] == "sandbox:latest"
        assert s["metadata"] == {}
        assert r.headers.get("Location") == "/v1/sessions/" + s["session_id"]
    finally:
        assert stack.delete(s["session_id"]).status == 200


def test_list_sorted_by_creation(stack):
    made = []
    try:
        for _ in range(3):
            made.append(stack.create(ttl=300)["session_id"])
            time.sleep(1.05)  # created_at has seconds precision
        lst = stack.request("GET", "/v1/sessions").json()["sessions"]
        ours = [x["session_id"] for x in lst if x["session_id"] in made]
        assert ours == made
        times = [x["created_at"] for x in lst]
        assert times == sorted(times)
    finally:
        for sid in made:
            stack.delete(sid)


def test_ssh_public_key(stack, tmp_path):
    key = str(tmp_path / "k")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key],
                   check=True)
    with open(key + ".pub") as f:
        pub = f.read().strip()
    s = stack.create(ttl=60, ssh_public_key=pub)
    try:
        assert s["status"] == "running"
    finally:
        stack.delete(s["session_id"])


BAD_BODIES = [
    ("{bad json", "body"),
    ("[1, 2]", "body"),
    ("null", "body"),
    ('"text"', "body"),
    ('{"ttl": 60, "ttl": 61}', "body"),
    ({"ttl": 0}, "ttl"),
    ({"ttl": -1}, "ttl"),
    ({"ttl": 1.5}, "ttl"),
    ({"ttl": "60"}, "ttl"),
    ({"ttl": None}, "ttl"),
    ({"ttl": True}, "ttl"),
    ({"ttl": 86401}, "ttl"),
    ({"ttl": 10 ** 30}, None),  # too big for an integer: a JSON error
    ('{"ttl": 1e400}', None),
    ({"ttl": "60; rm -rf /"}, "ttl"),
    ({"ttl": "$(id)"}, "ttl"),
    ({"image": 5}, "image"),
    ({"image": ""}, "image"),
    ({"image": "sandbox:latest; rm -rf /"}, "image"),
    ({"image": "$(id)"}, "image"),
    ({"image": "`id`"}, "image"),
    ({"image": "../../etc/passwd"}, "image"),
    ({"image": "Sandbox:Latest"}, "image"),
    ({"image": "a" * 200}, "image"),
    ({"image": "nosuchimage:latest"}, "image"),
    ({"ssh_public_key": "ssh-ed25519 AAAA"}, "ssh_public_key"),
    ({"ssh_public_key": "not a key"}, "ssh_public_key"),
    ({"ssh_public_key": 1}, "ssh_public_key"),
    ({"metadata": "x"}, "metadata"),
    ({"metadata": {"a;rm -rf /": "x"}}, "metadata"),
    ({"metadata": {"$(id)": "x"}}, "metadata"),
    ({"metadata": {"`id`": "x"}}, "metadata"),
    ({"metadata": {"k": 1}}, "metadata"),
    ({"metadata": {"k": "line\nbreak"}}, "metadata"),
    ({"metadata": {"k": "x" * 1025}}, "metadata"),
    ({"metadata": {"k%d" % i: "v" for i in range(33)}}, "metadata"),
    ({"resources": {"memory_mb": 0}}, "resources"),
    ({"resources": {"memory_mb": 8}}, "resources"),
    ({"resources": {"pids": 1}}, "resources"),
    ({"resources": {"memory_mb": 10 ** 6}}, "resources"),
    ({"resources": {"pids": "10"}}, "resources"),
    ({"resources": {"gpu": 1}}, "resources"),
    ({"resources": []}, "resources"),
    ({"unknown": 1}, "unknown"),
    ({"ttl": 60, "extra": True}, "extra"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES,
                         ids=[str(i) for i in range(len(BAD_BODIES))])
def test_bad_body(stack, body, field):
    before = live_keys(stack)
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    r = stack.request("POST", "/v1/sessions", body=body,
                      headers={"Content-Type": "application/json"})
    msg = error_of(r, 400)
    if field:
        assert msg.startswith(field), msg
    # Nothing new was stored (others' sessions may expire meanwhile).
    assert set(live_keys(stack)) - set(before) == set()


def test_body_too_large(stack):
    body = json.dumps({"metadata": {"k": "x" * 1000}, "pad": "y" * (70 * 1024)})
    error_of(stack.request("POST", "/v1/sessions", body=body,
                           headers={"Content-Type": "application/json"}), 413)
    # Just over the limit, even as valid JSON.
    body = '{"ttl": 60}' + " " * (64 * 1024)
    error_of(stack.request("POST", "/v1/sessions", body=body,
                           headers={"Content-Type": "application/json"}), 413)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "application/jsonx", None])
def test_wrong_content_type(stack, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    error_of(stack.request("POST", "/v1/sessions", body='{"ttl": 60}',
                           headers=headers), 415)


def test_content_type_with_charset(stack):
    r = stack.request("POST", "/v1/sessions", body='{"ttl": 60}',
                      headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status == 201, r
    stack.delete(r.json()["session_id"])


BAD_IDS = [
    "..%2f..%2fetc%2fpasswd",
    "..%2f",
    "a" * 6000,
    "0F8FAD5B-D9CB-469F-A165-70867728950E",
    "0f8fad5b-d9cb-469f-a165-70867728950",
    "%3Brm%20-rf%20%2F",
    "%24(id)",
    "%60id%60",
]


@pytest.mark.parametrize("sid", BAD_IDS, ids=[str(i) for i in range(len(BAD_IDS))])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_bad_session_ids(stack, sid, method):
    # docs/api.md: a malformed id is 400 "session id must be a UUID"
    r = stack.request(method, "/v1/sessions/" + sid)
    assert r.status == 400, r
    error_of(r, 400)


def test_dot_segments(stack):
    for path in ("/v1/sessions/../", "/v1/sessions/../../etc/passwd",
                 "/v1/sessions/./x"):
        r = stack.request("GET", path)
        assert r.status == 400, (path, r)
        error_of(r, 400)


def test_unknown_session(stack):
    error_of(stack.request("GET", "/v1/sessions/0f8fad5b-d9cb-469f-a165-70867728950e"), 404)
    error_of(stack.delete("0f8fad5b-d9cb-469f-a165-70867728950e"), 404)


def test_unknown_route_and_method(stack):
    error_of(stack.request("GET", "/v2/nothing"), 404)
    r = stack.request("PUT", "/v1/sessions")
    error_of(r, 405)
    assert "POST" in r.headers.get("Allow", "")
    r = stack.request("POST", "/v1/sessions/0f8fad5b-d9cb-469f-a165-70867728950e")
    error_of(r, 405)
    assert "DELETE" in r.headers.get("Allow", "")
    error_of(stack.request("DELETE", "/health"), 405)


def test_nothing_leaked(stack):
    """After all the above, the backend still runs and only live sessions
    have sandboxes."""
    r = stack.request("GET", "/health")
    assert r.status == 200, r
    live = {x["session_id"] for x in stack.request("GET", "/v1/sessions").json()["sessions"]}
    for c in stack.runc_containers():
        assert any(sid in c for sid in live), c
    for b in stack.backends:
        assert b.proc.poll() is None, b.read_log()


def test_limit_and_redis_outage():
    """max_sessions gives 429; with Redis down the API answers 503 JSON and
    recovers by itself when Redis is back."""
    from pico_stack import Stack
    st = Stack(name="limits")
    st.configure()
    st.set_conf("max_sessions", "2")
    st.start(configure=False)
    try:
        a = st.create(ttl=120)["session_id"]
        b = st.create(ttl=120)["session_id"]
        error_of(st.request("POST", "/v1/sessions", body={"ttl": 60}), 429)
        assert st.delete(a).status == 200
        c = st.create(ttl=120)["session_id"]

        st.stop_redis()
        r = st.request("GET", "/health")
        assert r.status == 503, r
        assert r.json()["redis"] != "ok"
        error_of(st.request("GET", "/v1/sessions"), 503)
        error_of(st.request("POST", "/v1/sessions", body={"ttl": 60}), 503)
        st.start_redis()
        assert st.request("GET", "/health").status == 200
        ids = {x["session_id"] for x in st.request("GET", "/v1/sessions").json()["sessions"]}
        assert ids == {b, c}
        assert st.backend.proc.poll() is None
    finally:
        st.stop()
    assert st.runc_containers() == []
    assert st.sanitizer_reports() == []
