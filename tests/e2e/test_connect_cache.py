"""The module's cache of session checks (ngx_pico_module/ngx_pico_cache.c,
docs/nginx-module.md "pico_cache_size"): with the cache warm (a CONNECT to
the session just succeeded and the next one was answered from the cache,
`cache=hit` in the access log), every way a session or token stops being
good is seen by the very next CONNECT: DELETE, a revoked token, a failed
session, a new endpoint, a Redis restart (resubscribe), and, with no event
at all, the age bound.

The stacks run one worker (so the CONNECTs meet the cache they warmed)
and, but for the age test, pico_cache_max_age 60s: only the invalidation
under test can make the next answer right within the test's time."""

import os
import re
import subprocess
import time

import pytest

from pico_stack import backend_binary, wait_for
from test_tunnel import EchoEndpoint, add_record, cleanup_records, tunnel_answer  # noqa: F401

LONG = "pico_cache_max_age 60s;"


def access_lines(stack, sid):
    path = os.path.join(stack.var, "log", "nginx-access.log")
    with open(path) as f:
        return [l for l in f if "session=" + sid in l]


def cache_field(line):
    m = re.search(r"cache=(\S+)", line)
    return m.group(1) if m else None


def connect_ok(stack, sid, token=None):
    """One CONNECT that must open, closed at once; returns its cache field."""
    before = len(access_lines(stack, sid))
    s, status, _ = stack.open_tunnel(sid, token=token, extra=b"")
    assert status == "HTTP/1.1 200 Connection Established", status
    s.close()
    # the tunnel's line is written when it closes
    wait_for(lambda: len(access_lines(stack, sid)) > before, timeout=5,
             what="access log line")
    return cache_field(access_lines(stack, sid)[-1])


def warm(stack, sid, token=None):
    """CONNECTs until one is a hit: the first fills the cache, unless the
    worker was not subscribed yet (a just started stack) or an event came
    while its lookup was on its way, when nothing is kept."""
    wait_for(lambda: subscribed(stack), timeout=10, what="subscribed")
    for _ in range(5):
        if connect_ok(stack, sid, token) == "hit":
            return
    raise AssertionError("cache not warm after 5 CONNECTs")


def subscribed(stack):
    """The worker's subscription as Redis sees it (one worker)."""
    out = stack.redis_cli("PUBSUB", "NUMSUB", "pico:events").split()
    return out[-1:] == ["1"]


def test_warm_connect_is_a_hit_cold_is_a_miss(new_stack):
    stack = new_stack(name="cachehit", workers=1, nginx_http_extra=LONG)
    echo = EchoEndpoint(stack)
    sid = add_record(stack, echo.endpoint)
    wait_for(lambda: subscribed(stack), timeout=10, what="subscribed")
    assert connect_ok(stack, sid) == "miss"
    assert connect_ok(stack, sid) == "hit"
    # an answer that is not a 200 is never cached
    other = add_record(stack, echo.endpoint, status="pending")
    for _ in range(2):
        assert tunnel_answer(stack, other)[0] == 503
    stack.redis_cli("HSET", "pico:session:" + other, "status", "running")
    assert connect_ok(stack, other) == "miss"
    echo.stop()


def test_delete_after_warm_is_404(new_stack):
    stack = new_stack(name="cachedel", workers=1, nginx_http_extra=LONG)
    sid = stack.create()["session_id"]
    warm(stack, sid)
    r = stack.delete(sid)
    assert r.status in (200, 202, 204), r
    code, _, body = tunnel_answer(stack, sid)
    assert (code, body) == (404, "Session not found\n")


def test_revoked_token_after_warm_is_401(new_stack):
    stack = new_stack(name="cacherevoke", workers=1, auth=True,
                      nginx_http_extra=LONG)
    alice = stack.make_token("alice")
    sid = stack.create(token=alice)["session_id"]
    warm(stack, sid, token=alice)
    out = subprocess.run([backend_binary(), "--config",
                          stack.conf_path("pico.conf"), "token", "revoke",
                          alice.split("_")[1]],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    code, head, _ = tunnel_answer(stack, sid, token="Bearer " + alice)
    assert code == 401 and "invalid_token" in head
    # a good token of another principal: still 404, from Redis
    bob = stack.make_token("bob")
    code, _, _ = tunnel_answer(stack, sid, token="Bearer " + bob)
    assert code == 404


def test_failed_after_warm_is_503(new_stack):
    stack = new_stack(name="cachefail", workers=1, nginx_http_extra=LONG)
    echo = EchoEndpoint(stack)
    sid = add_record(stack, echo.endpoint)
    warm(stack, sid)
    # what the backend's fail script does (backend/store/store.c)
    stack.redis_cli("HSET", "pico:session:" + sid, "status", "failed",
                    "endpoint", "")
    stack.redis_cli("PUBLISH", "pico:events", "deleted " + sid)
    code, _, body = tunnel_answer(stack, sid)
    assert (code, body) == (503, "Sandbox not ready\n")
    echo.stop()


def test_terminating_after_warm_is_503(new_stack):
    """The claim of a DELETE or of the reaper (status terminating) is
    published as "changed <id>"."""
    stack = new_stack(name="cacheterm", workers=1, nginx_http_extra=LONG)
    echo = EchoEndpoint(stack)
    sid = add_record(stack, echo.endpoint)
    warm(stack, sid)
    stack.redis_cli("HSET", "pico:session:" + sid, "status", "terminating")
    stack.redis_cli("PUBLISH", "pico:events", "changed " + sid)
    assert tunnel_answer(stack, sid)[0] == 503
    echo.stop()


def test_endpoint_change_after_warm_uses_the_new_one(new_stack):
    stack = new_stack(name="cacheep", workers=1, nginx_http_extra=LONG)
    old = EchoEndpoint(stack, name="old")
    new = EchoEndpoint(stack, name="new")
    sid = add_record(stack, old.endpoint)
    warm(stack, sid)
    stack.redis_cli("HSET", "pico:session:" + sid, "endpoint", new.endpoint)
    stack.redis_cli("PUBLISH", "pico:events", "changed " + sid)
    old.stop()  # the old endpoint would answer 502 now
    assert connect_ok(stack, sid) == "miss"
    warm(stack, sid)
    new.stop()


def test_redis_restart_empties_the_cache(new_stack):
    stack = new_stack(name="cacheredis", workers=1, nginx_http_extra=LONG)
    echo = EchoEndpoint(stack)
    sid = add_record(stack, echo.endpoint)
    warm(stack, sid)
    stack.stop_redis()
    stack.start_redis()
    wait_for(lambda: subscribed(stack), timeout=10, what="resubscribe")
    # changed with no event at all: only the emptied cache sees it
    stack.redis_cli("HSET", "pico:session:" + sid, "status", "failed")
    assert tunnel_answer(stack, sid)[0] == 503
    echo.stop()


def test_subscription_lost_switches_the_cache_off(new_stack):
    """While pico:events is not subscribed nothing is answered from the
    cache: a change then, with its event lost, is seen at once."""
    stack = new_stack(name="cachesub", workers=1, nginx_http_extra=LONG)
    echo = EchoEndpoint(stack)
    sid = add_record(stack, echo.endpoint)
    warm(stack, sid)
    stack.redis_cli("CLIENT", "KILL", "TYPE", "pubsub")
    stack.redis_cli("HSET", "pico:session:" + sid, "status", "failed")
    stack.redis_cli("PUBLISH", "pico:events", "changed " + sid)  # lost
    assert tunnel_answer(stack, sid)[0] == 503
    wait_for(lambda: subscribed(stack), timeout=10, what="resubscribe")
    assert tunnel_answer(stack, sid)[0] == 503
    echo.stop()


def test_max_age_bounds_a_change_without_event(new_stack):
    stack = new_stack(name="cacheage", workers=1,
                      nginx_http_extra="pico_cache_max_age 1s;")
    echo = EchoEndpoint(stack)
    sid = add_record(stack, echo.endpoint)
    warm(stack, sid)
    # behind the module's back: no event (a publish lost on a connection
    # that did not fail)
    stack.redis_cli("HSET", "pico:session:" + sid, "status", "failed")
    changed = time.monotonic()
    deadline = changed + 3
    while tunnel_answer(stack, sid)[0] == 200:
        assert time.monotonic() < deadline, "stale entry outlived its age"
        time.sleep(0.05)
    assert time.monotonic() - changed <= 1.0 + 0.5
    echo.stop()


def test_cache_off(new_stack):
    stack = new_stack(name="cacheoff", workers=1,
                      nginx_http_extra="pico_cache_size 0;")
    echo = EchoEndpoint(stack)
    sid = add_record(stack, echo.endpoint)
    assert connect_ok(stack, sid) == "miss"
    assert connect_ok(stack, sid) == "miss"
    echo.stop()


@pytest.mark.parametrize("size", [2])
def test_size_bound_evicts_least_recently_used(new_stack, size):
    stack = new_stack(name="cachesize", workers=1,
                      nginx_http_extra="pico_cache_size %d; %s" % (size, LONG))
    echo = EchoEndpoint(stack)
    a, b, c = (add_record(stack, echo.endpoint) for _ in range(3))
    wait_for(lambda: subscribed(stack), timeout=10, what="subscribed")
    connect_ok(stack, a)
    connect_ok(stack, b)
    assert connect_ok(stack, a) == "hit"  # a is now the most recent
    connect_ok(stack, c)                  # b goes
    assert connect_ok(stack, a) == "hit"
    assert connect_ok(stack, b) == "miss"
    echo.stop()
