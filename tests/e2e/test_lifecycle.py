"""Lifecycle beyond create and delete, end to end on the real stack:
PATCH /v1/sessions/<id> moves a session's deadline (the reaper honours
the new one), and every bad PATCH gets a 4xx JSON error that names the
field."""

import time

import pytest

from pico_stack import wait_for
from test_api import error_of, unix_time


def patch(stack, sid, body, token=None, **kw):
    return stack.request("PATCH", "/v1/sessions/" + sid, body=body, token=token, **kw)


def watch_until_gone(stack, sid, not_before, timeout):
    """Polls until the session is gone; asserts it never went before
    not_before (unix seconds). Returns when it went."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        before = time.time()
        r = stack.request("GET", "/v1/sessions/" + sid)
        if r.status == 404:
            assert before >= not_before, "gone %.1f s before its deadline" % (
                not_before - before)
            return before
        assert r.status == 200, r
        time.sleep(0.1)
    raise AssertionError("session %s still there after %s s" % (sid, timeout))


def test_extend_outlives_the_old_deadline(stack):
    s = stack.create(ttl=3)
    sid = s["session_id"]
    old = unix_time(s["expires_at"])
    r = patch(stack, sid, {"ttl": 8})
    assert r.status == 200, r
    body = r.json()
    new = unix_time(body["expires_at"])
    assert new >= old + 4, (old, new)
    assert new - unix_time(body["created_at"]) == body["ttl"]
    assert body["status"] == "running"
    assert stack.redis_cli("ZSCORE", "pico:expiry", sid) == str(new * 1000)
    assert stack.redis_cli("HGET", "pico:session:" + sid, "expires_at") == str(new)
    # The reaper removes a session within 2 s after its deadline: past the
    # old one and that margin, it must still be there and usable.
    time.sleep(max(0, old + 3 - time.time()))
    got = stack.request("GET", "/v1/sessions/" + sid)
    assert got.status == 200 and got.json()["expires_at"] == body["expires_at"], got
    sock, status, _ = stack.open_tunnel(sid)
    sock.close()
    assert " 200 " in status, status
    watch_until_gone(stack, sid, new, timeout=new - time.time() + 30)
    assert stack.backend.read_log().count("reaped " + sid) == 1


def test_shorten_ends_at_the_new_deadline(stack):
    s = stack.create(ttl=600)
    sid = s["session_id"]
    r = patch(stack, sid, {"ttl": 2})
    assert r.status == 200, r
    new = unix_time(r.json()["expires_at"])
    assert new < unix_time(s["expires_at"])
    watch_until_gone(stack, sid, new, timeout=60)


@pytest.mark.parametrize("body,field", [
    ({"ttl": -1}, "ttl"), ({"ttl": 0}, "ttl"), ({"ttl": 1.5}, "ttl"),
    ({"ttl": "60"}, "ttl"), ({"ttl": True}, "ttl"), ({"ttl": None}, "ttl"),
    ({"ttl": 86401}, "ttl"), ('{"ttl": 100000000000000000000000000000}', "ttl"),
    ({"ttl": 10 ** 18}, "ttl"), ({}, "ttl"), ({"ttl": 60, "image": "x"}, "image"),
    ('{"ttl": 60', "body"), ("[60]", "body"), ('{"ttl": 1, "ttl": 2}', "body"),
])
def test_bad_patch_is_400_naming_the_field(stack, body, field):
    sid = stack.create(ttl=60)["session_id"]
    try:
        hdrs = {"Content-Type": "application/json"} if isinstance(body, str) else None
        msg = error_of(patch(stack, sid, body, headers=hdrs), 400)
        assert msg.startswith(field + ":"), msg
        # nothing changed
        assert stack.request("GET", "/v1/sessions/" + sid).json()["ttl"] == 60
    finally:
        stack.delete(sid)


def test_patch_without_body_or_json_type(stack):
    sid = stack.create(ttl=60)["session_id"]
    try:
        assert error_of(patch(stack, sid, None), 400).startswith("ttl:")
        r = patch(stack, sid, '{"ttl": 5}', headers={"Content-Type": "text/plain"})
        error_of(r, 415)
    finally:
        stack.delete(sid)


def test_patch_unknown_malformed_and_deleting(stack):
    import uuid
    error_of(patch(stack, str(uuid.uuid4()), {"ttl": 60}), 404)
    error_of(patch(stack, "not-a-uuid", {"ttl": 60}), 400)
    sid = stack.create(ttl=60)["session_id"]
    # What a backend holding the delete claim leaves: terminating, in
    # pico:reaping with a lease (which ends in 2 s; the reaper then
    # finishes the delete, as after a backend died mid-delete).
    lease = int(time.time() * 1000) + 2000
    stack.redis_cli("EVAL", "redis.call('ZREM', 'pico:expiry', ARGV[1]);"
                    "redis.call('ZADD', 'pico:reaping', ARGV[2], ARGV[1]);"
                    "redis.call('HSET', KEYS[1], 'status', 'terminating')",
                    "1", "pico:session:" + sid, sid, str(lease))
    msg = error_of(patch(stack, sid, {"ttl": 600}), 409)
    assert "deleted" in msg
    assert stack.redis_cli("ZSCORE", "pico:expiry", sid) == ""
    wait_for(lambda: stack.request("GET", "/v1/sessions/" + sid).status == 404,
             timeout=60, what="the claimed session deleted")


def test_patch_bounded_by_lifetime_max(new_stack):
    st = new_stack(conf={"pico.conf": {"ttl_max": "10", "ttl_default": "5",
                                       "lifetime_max": "10"}})
    s = st.create(ttl=5)
    sid = s["session_id"]
    created = unix_time(s["created_at"])
    # A second later now + 10 is past created_at + lifetime_max.
    time.sleep(max(0, created + 1.1 - time.time()))
    msg = error_of(patch(st, sid, {"ttl": 10}), 400)
    assert msg.startswith("ttl:") and "lifetime_max" in msg, msg
    assert st.request("GET", "/v1/sessions/" + sid).json()["expires_at"] == s["expires_at"]
    r = patch(st, sid, {"ttl": 2})
    assert r.status == 200, r
    assert unix_time(r.json()["expires_at"]) <= created + 10
    st.delete(sid)


def test_patch_of_another_principals_session_is_404(new_stack):
    st = new_stack(auth=True)
    alice, bob = st.make_token("alice"), st.make_token("bob")
    sid = st.create(token=alice, ttl=60)["session_id"]
    error_of(patch(st, sid, {"ttl": 600}, token=bob), 404)
    error_of(patch(st, sid, {"ttl": 600}), 401)
    r = patch(st, sid, {"ttl": 600}, token=alice)
    assert r.status == 200, r
    st.delete(sid, token=alice)


# -- idempotent create -------------------------------------------------
def post(stack, body, key=None, token=None, **kw):
    hdrs = {"Idempotency-Key": key} if key is not None else {}
    return stack.request("POST", "/v1/sessions", body=body, headers=hdrs,
                         token=token, **kw)


def sessions_with(stack, marker):
    r = stack.request("GET", "/v1/sessions")
    return [s for s in r.json()["sessions"] if s["metadata"].get("m") == marker]


def test_retried_create_with_the_same_key_makes_one_session(stack):
    import uuid
    key, marker = str(uuid.uuid4()), str(uuid.uuid4())
    body = {"ttl": 120, "metadata": {"m": marker}}
    first = post(stack, body, key)
    assert first.status == 201, first
    sid = first.json()["session_id"]
    try:
        # the same body with other spacing and key order is the same body
        again = stack.request("POST", "/v1/sessions",
                              body='{"metadata": {"m": "%s"},  "ttl": 120}' % marker,
                              headers={"Idempotency-Key": key,
                                       "Content-Type": "application/json"})
        assert again.status == 200, again
        assert again.json()["session_id"] == sid
        assert again.json()["status"] == "running"
        assert again.headers.get("Location") == "/v1/sessions/" + sid
        assert [s["session_id"] for s in sessions_with(stack, marker)] == [sid]
        # another body with the same key: 422, nothing created
        msg = error_of(post(stack, {"ttl": 121, "metadata": {"m": marker}}, key), 422)
        assert msg.startswith("Idempotency-Key:"), msg
        # another key makes another session
        other = post(stack, body, str(uuid.uuid4()))
        assert other.status == 201 and other.json()["session_id"] != sid
        stack.delete(other.json()["session_id"])
        assert len(sessions_with(stack, marker)) == 1
        keys = stack.redis_cli("KEYS", "pico:idem:*").split()
        assert keys and all(len(k.rsplit(":", 1)[1]) == 64 for k in keys), keys
    finally:
        stack.delete(sid)
    # the session is gone: a repeat says so, and does not create one
    error_of(post(stack, body, key), 409)
    assert sessions_with(stack, marker) == []


def test_five_concurrent_retries_create_exactly_one(stack):
    import threading
    import uuid
    key, marker = str(uuid.uuid4()), str(uuid.uuid4())
    body = {"ttl": 120, "metadata": {"m": marker}}
    answers, start = [], threading.Barrier(5)

    def one():
        start.wait()
        answers.append(post(stack, body, key))

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(a.status for a in answers)
    assert statuses == [200, 200, 200, 200, 201], answers
    sids = {a.json()["session_id"] for a in answers}
    assert len(sids) == 1
    assert [s["session_id"] for s in sessions_with(stack, marker)] == list(sids)
    stack.delete(sids.pop())


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "a\tb"])
def test_bad_idempotency_key_is_400(stack, key):
    marker = "bad-key"
    hdr = key.encode("utf-8").decode("latin-1")
    r = post(stack, {"metadata": {"m": marker}}, hdr)
    msg = error_of(r, 400)
    assert msg.startswith("Idempotency-Key:"), msg
    assert sessions_with(stack, marker) == []


def test_idempotency_key_of_255_bytes_is_fine(stack):
    key = "k" * 254 + "~"
    r = post(stack, {"ttl": 60}, key)
    assert r.status == 201, r
    r2 = post(stack, {"ttl": 60}, key)
    assert r2.status == 200 and r2.json()["session_id"] == r.json()["session_id"]
    stack.delete(r.json()["session_id"])


def test_idempotency_keys_are_per_principal(new_stack):
    st = new_stack(auth=True)
    alice, bob = st.make_token("alice"), st.make_token("bob")
    a = post(st, {"ttl": 60}, "shared-key", token=alice)
    b = post(st, {"ttl": 60}, "shared-key", token=bob)
    assert a.status == 201 and b.status == 201, (a, b)
    assert a.json()["session_id"] != b.json()["session_id"]
    st.delete(a.json()["session_id"], token=alice)
    st.delete(b.json()["session_id"], token=bob)


def test_failed_create_releases_the_key(new_stack):
    st = new_stack(conf={"pico.conf": {"max_sessions": "1"}})
    first = st.create(ttl=60)["session_id"]
    error_of(post(st, {"ttl": 60}, "release-me"), 429)
    assert st.redis_cli("KEYS", "pico:idem:*") == ""
    st.delete(first)
    r = post(st, {"ttl": 60}, "release-me")
    assert r.status == 201, r
    assert post(st, {"ttl": 60}, "release-me").status == 200
    st.delete(r.json()["session_id"])


# -- events ------------------------------------------------------------
import http.client  # noqa: E402
import json  # noqa: E402


class EventStream:
    """GET an SSE path through nginx; next() returns (id, type, data)."""

    def __init__(self, stack, path, last_event_id=None, token=None, timeout=30):
        self.conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=timeout)
        hdrs = {"Accept": "text/event-stream"}
        if last_event_id:
            hdrs["Last-Event-ID"] = last_event_id
        if token:
            hdrs["Authorization"] = "Bearer " + token
        self.conn.request("GET", path, headers=hdrs)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, (self.resp.status, self.resp.read())
        assert self.resp.getheader("Content-Type") == "text/event-stream"

    def next(self):
        ev = {}
        while True:
            line = self.resp.readline()
            if not line:
                return None  # the stream ended
            line = line.decode().rstrip("\n")
            if line == "":
                if "data" in ev:
                    return ev["id"], ev["event"], json.loads(ev["data"])
                ev = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            ev[name] = value

    def rest(self):
        """Every event up to the end of the stream."""
        events = []
        while True:
            e = self.next()
            if e is None:
                return events
            events.append(e)

    def until(self, etype, sid=None):
        seen = []
        while True:
            e = self.next()
            assert e is not None, "stream ended before %s: %s" % (etype, seen)
            seen.append(e)
            if e[1] == etype and (sid is None or e[2]["session_id"] == sid):
                return seen

    def close(self):
        self.conn.close()


def ids_increase(events):
    keys = [tuple(int(x) for x in e[0].split("-")) for e in events]
    return keys == sorted(keys) and len(set(keys)) == len(keys)


def test_session_events_in_order_and_the_stream_ends(stack):
    s = stack.create(ttl=600)
    sid = s["session_id"]
    es = EventStream(stack, "/v1/sessions/%s/events" % sid)
    try:
        assert patch(stack, sid, {"ttl": 300}).status == 200
        assert stack.delete(sid).status == 200
        events = es.rest()
    finally:
        es.close()
    types = [e[1] for e in events]
    assert types == ["created", "running", "ttl_changed", "terminated"], events
    assert ids_increase(events)
    assert all(e[2]["session_id"] == sid and e[2]["id"] == e[0] for e in events)
    assert all(e[2]["type"] == e[1] and e[2]["time"].endswith("Z") for e in events)
    changed = events[2][2]
    assert changed["ttl"] == unix_time(changed["expires_at"]) - unix_time(s["created_at"])


def test_events_resume_after_a_reconnect(stack):
    es = EventStream(stack, "/v1/events")
    sid = stack.create(ttl=600)["session_id"]
    first = es.until("running", sid)
    created = [e for e in first if e[2]["session_id"] == sid][0]
    es.close()
    # while nobody listens
    assert patch(stack, sid, {"ttl": 120}).status == 200
    assert stack.delete(sid).status == 200
    es = EventStream(stack, "/v1/events", last_event_id=created[0])
    try:
        got = [e for e in es.until("terminated", sid) if e[2]["session_id"] == sid]
    finally:
        es.close()
    assert [e[1] for e in got] == ["running", "ttl_changed", "terminated"], got
    assert ids_increase([created] + got)
    # the per-session stream resumes the same way and ends after terminated
    es = EventStream(stack, "/v1/sessions/%s/events" % sid, last_event_id=got[0][0])
    try:
        rest = [es.next(), es.next(), es.next()]
    finally:
        es.close()
    assert [e[1] for e in rest[:2]] == ["ttl_changed", "terminated"] and rest[2] is None


def test_expiring_then_terminated_by_the_reaper(stack):
    s = stack.create(ttl=3)
    sid = s["session_id"]
    es = EventStream(stack, "/v1/sessions/%s/events" % sid)
    try:
        got = es.until("terminated")
    finally:
        es.close()
    types = [e[1] for e in got]
    assert types == ["created", "running", "expiring", "terminated"], got
    assert got[2][2]["expires_at"] == s["expires_at"]


def test_bad_last_event_id(stack):
    sid = stack.create(ttl=60)["session_id"]
    try:
        for path in ("/v1/events", "/v1/sessions/%s/events" % sid):
            for bad in ("abc", "1-", "-1", "1-0-0", "99999999999999999999999-0", "1.5-0"):
                r = stack.request("GET", path, headers={"Last-Event-ID": bad})
                assert error_of(r, 400).startswith("Last-Event-ID:"), (bad, r)
            r = stack.request("GET", path, headers={"Last-Event-ID": "99999999999999-0"})
            assert r.json()["error"]["code"] == "unknown_event"
            assert error_of(r, 400).startswith("Last-Event-ID:")
            r = stack.request("GET", path, headers={"Last-Event-ID": "1-0"})
            assert r.json()["error"]["code"] == "event_expired"
            assert error_of(r, 410).startswith("Last-Event-ID:")
        import uuid
        error_of(stack.request("GET", "/v1/sessions/%s/events" % uuid.uuid4()), 404)
        error_of(stack.request("POST", "/v1/events"), 405)
    finally:
        stack.delete(sid)


def test_events_are_per_principal(new_stack):
    st = new_stack(auth=True)
    alice, bob = st.make_token("alice"), st.make_token("bob")
    es = EventStream(st, "/v1/events", token=bob)
    a = st.create(token=alice, ttl=60)["session_id"]
    b = st.create(token=bob, ttl=60)["session_id"]
    try:
        seen = es.until("running", b)
        assert all(e[2]["session_id"] == b for e in seen), seen
        error_of(st.request("GET", "/v1/sessions/%s/events" % a, token=bob), 404)
        error_of(st.request("GET", "/v1/events"), 401)
    finally:
        es.close()
        st.delete(a, token=alice)
        st.delete(b, token=bob)
