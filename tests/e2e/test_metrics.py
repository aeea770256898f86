"""Metrics and tunnel events on the real stack.

GET /metrics (pico-backend) and GET /metrics/nginx (the module's
pico_metrics, summed over nginx's workers in shared memory): after known
actions on a fresh stack the counters say exactly those actions; Debian's
promtool accepts both texts, and a real Prometheus scrapes both and answers
a query with the same numbers. Both are refused to any client but
loopback's 127.0.0.1 / ::1. A session's SSE stream has tunnel_opened and
tunnel_closed (written by the module's accounting script) in order with
the other events."""

import json
import re
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
import uuid

from pico_stack import free_port, read_head, wait_for
from test_lifecycle import EventStream, ids_increase
from test_tunnel import EchoEndpoint, echo_roundtrip, new_workers, worker_pids

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def scrape(stack, path):
    r = stack.request("GET", path)
    assert r.status == 200, r
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
    return r.body


def samples(text):
    """{'name{labels}': value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def promtool_check(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.stdout, p.stderr)


def echo_record(stack, endpoint):
    sid = str(uuid.uuid4())
    stack.redis_cli("HSET", "pico:session:" + sid, "session_id", sid,
                    "status", "running", "endpoint", endpoint, "owner", "")
    return sid


N = 300000  # bytes each tunnel moves each way, past "echo\n"


def known_actions(stack):
    """3 sessions, 2 refused creates, 2 echo tunnels of N bytes, one
    CONNECT to no session."""
    sids = [stack.create(ttl=600)["session_id"] for _ in range(3)]
    r = stack.request("POST", "/v1/sessions", body={"image": "nope:latest"})
    assert r.status == 400 and "unknown image" in r.body, r
    r = stack.request("POST", "/v1/sessions", body={"ttl": -1})
    assert r.status == 400, r

    echo = EchoEndpoint(stack)
    try:
        for i in range(2):
            sid = echo_record(stack, echo.endpoint)
            s, status, rest = stack.open_tunnel(sid, extra=b"echo\n")
            assert status == "HTTP/1.1 200 Connection Established", status
            data = bytes([65 + i]) * N
            assert echo_roundtrip(s, data, rest) == data
            s.close()
        s, status, _ = stack.open_tunnel(str(uuid.uuid4()))
        s.close()
        assert status.startswith("HTTP/1.1 404"), status
        # the tunnels' closes are counted when nginx sees them
        wait_for(lambda: samples(scrape(stack, "/metrics/nginx"))
                 ["pico_tunnels_open"] == 0, what="tunnels closed")
    finally:
        echo.stop()
    return sids


def check_backend(m):
    assert m['pico_sessions{status="running"}'] == 3
    assert m['pico_sessions{status="pending"}'] == 0
    assert m["pico_session_creates_total"] == 3
    assert m['pico_session_create_failures_total{reason="unknown_image"}'] == 1
    assert m['pico_session_create_failures_total{reason="invalid_request"}'] == 1
    fails = sum(v for k, v in m.items()
                if k.startswith("pico_session_create_failures_total"))
    assert fails == 2
    assert m["pico_session_create_duration_seconds_count"] == 3
    assert m['pico_session_create_duration_seconds_bucket{le="+Inf"}'] == 3
    op = "pico_runtime_operation_duration_seconds_count"
    assert m[op + '{op="create"}'] == 3
    assert m[op + '{op="image_exists"}'] == 4  # not for the bad ttl
    assert m[op + '{op="destroy"}'] == 0
    assert m["pico_redis_up"] == 1
    assert m['pico_redis_errors_total{kind="connection"}'] == 0
    assert m['pico_redis_errors_total{kind="reply"}'] == 0


def check_module(m):
    assert m["pico_tunnels_open"] == 0
    assert m['pico_tunnels_total{status="200"}'] == 2
    assert m['pico_tunnels_total{status="404"}'] == 1
    assert sum(v for k, v in m.items() if k.startswith("pico_tunnels_total")) == 3
    assert m['pico_tunnel_bytes_total{direction="up"}'] == 2 * (N + 5)
    assert m['pico_tunnel_bytes_total{direction="down"}'] == 2 * N
    assert m["pico_tunnel_connect_seconds_count"] == 2
    assert m['pico_tunnel_connect_seconds_bucket{le="+Inf"}'] == 2
    assert m['pico_redis_lookups_total{result="found"}'] == 2
    assert m['pico_redis_lookups_total{result="not_found"}'] == 1
    assert m['pico_redis_lookups_total{result="error"}'] == 0
    assert m['pico_redis_lookups_total{result="timeout"}'] == 0


def test_metrics_count_exactly_what_was_done(new_stack):
    stack = new_stack(workers=3)
    sids = known_actions(stack)
    backend, module = scrape(stack, "/metrics"), scrape(stack, "/metrics/nginx")
    promtool_check(backend)
    promtool_check(module)
    check_backend(samples(backend))
    check_module(samples(module))

    # a delete: one destroy, one session fewer
    assert stack.delete(sids[0]).status == 200
    m = samples(scrape(stack, "/metrics"))
    assert m['pico_sessions{status="running"}'] == 2
    assert m['pico_runtime_operation_duration_seconds_count{op="destroy"}'] == 1

    # a pause and a resume: counted as operations, the session by status
    op = "pico_runtime_operation_duration_seconds_count"
    assert stack.request("POST", "/v1/sessions/%s/pause" % sids[1]).status == 200
    m = samples(scrape(stack, "/metrics"))
    assert m['pico_sessions{status="paused"}'] == 1
    assert m['pico_sessions{status="running"}'] == 1
    assert (m[op + '{op="pause"}'], m[op + '{op="resume"}']) == (1, 0)
    assert stack.request("POST", "/v1/sessions/%s/resume" % sids[1]).status == 200
    m = samples(scrape(stack, "/metrics"))
    assert m['pico_sessions{status="paused"}'] == 0
    assert (m[op + '{op="pause"}'], m[op + '{op="resume"}']) == (1, 1)
    for sid in sids[1:]:
        assert stack.delete(sid).status == 200


def test_reaper_lag_and_destroy_are_observed(new_stack):
    stack = new_stack()
    sid = stack.create(ttl=1)["session_id"]
    wait_for(lambda: stack.request("GET", "/v1/sessions/" + sid).status == 404,
             timeout=30, what="the session reaped")
    text = scrape(stack, "/metrics")
    promtool_check(text)
    m = samples(text)
    assert m["pico_reaper_lag_seconds_count"] == 1
    assert m['pico_reaper_lag_seconds_bucket{le="+Inf"}'] == 1
    assert m['pico_runtime_operation_duration_seconds_count{op="destroy"}'] == 1
    assert m['pico_sessions{status="running"}'] == 0


def test_redis_down_is_counted_on_both_sides(new_stack):
    stack = new_stack()
    stack.stop_redis()
    r = stack.request("POST", "/v1/sessions", body={"ttl": 60})
    assert r.status == 503 and "redis_unavailable" in r.body, r
    s, status, _ = stack.open_tunnel(str(uuid.uuid4()))
    s.close()
    assert status.startswith("HTTP/1.1 503"), status

    text = scrape(stack, "/metrics")
    promtool_check(text)
    m = samples(text)
    assert m["pico_redis_up"] == 0
    assert "pico_sessions{status=\"running\"}" not in m
    assert m['pico_session_create_failures_total{reason="redis_unavailable"}'] == 1
    assert m['pico_redis_errors_total{kind="connection"}'] > 0

    text = scrape(stack, "/metrics/nginx")
    promtool_check(text)
    m = samples(text)
    assert m['pico_redis_lookups_total{result="error"}'] == 1
    assert m['pico_redis_lookups_total{result="found"}'] == 0
    assert m['pico_tunnels_total{status="503"}'] == 1
    assert m['pico_tunnels_total{status="200"}'] == 0


def test_module_counters_survive_a_reload(new_stack):
    """One zone for every worker, old and new: a tunnel opened before a
    reload and closed after it leaves the gauge at 0, and the counts go
    on from where they were."""
    stack = new_stack()
    echo = EchoEndpoint(stack)
    try:
        sid = echo_record(stack, echo.endpoint)
        s, status, rest = stack.open_tunnel(sid, extra=b"echo\n")
        assert status == "HTTP/1.1 200 Connection Established", status
        assert echo_roundtrip(s, b"before", rest) == b"before"
        m = samples(scrape(stack, "/metrics/nginx"))
        assert m["pico_tunnels_open"] == 1

        old = worker_pids(stack)
        stack.reload_nginx()
        wait_for(lambda: new_workers(stack, old), what="new workers")
        assert echo_roundtrip(s, b"after") == b"after"
        s.close()
        wait_for(lambda: samples(scrape(stack, "/metrics/nginx"))
                 ["pico_tunnels_open"] == 0, what="the old worker's close")
        m = samples(scrape(stack, "/metrics/nginx"))
        assert m['pico_tunnels_total{status="200"}'] == 1
        assert m['pico_tunnel_bytes_total{direction="up"}'] == 5 + 6 + 5
        assert m['pico_tunnel_bytes_total{direction="down"}'] == 6 + 5
    finally:
        echo.stop()


# -- a real Prometheus -----------------------------------------------------

PROM_CONFIG = """global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: pico-backend
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:%(port)d"]
  - job_name: pico-nginx
    metrics_path: /metrics/nginx
    static_configs:
      - targets: ["127.0.0.1:%(port)d"]
"""


def prom_query(port, query):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (
        port, urllib.parse.urlencode({"query": query}))
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
    except OSError:
        return None
    assert body["status"] == "success", body
    return body["data"]["result"]


def prom_value(port, query):
    res = prom_query(port, query)
    return float(res[0]["value"][1]) if res else None


def test_prometheus_scrapes_both_endpoints(new_stack, tmp_path):
    stack = new_stack()
    known_actions(stack)
    port = free_port()
    conf = tmp_path / "prometheus.yml"
    conf.write_text(PROM_CONFIG % {"port": stack.port})
    p = subprocess.run(["promtool", "check", "config", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.stdout, p.stderr)
    log = open(tmp_path / "prometheus.log", "w")
    prom = subprocess.Popen(
        ["prometheus", "--config.file=%s" % conf,
         "--storage.tsdb.path=%s" % (tmp_path / "data"),
         "--web.listen-address=127.0.0.1:%d" % port],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        # both targets up, then the values this stack was given
        wait_for(lambda: prom_value(port, 'sum(up{job=~"pico-.*"})') == 2,
                 timeout=60, interval=0.5, what="both targets scraped")
        assert prom_value(port, "pico_session_creates_total") == 3
        assert prom_value(port, 'pico_sessions{status="running"}') == 3
        assert prom_value(port, 'pico_tunnel_bytes_total{direction="up"}') \
            == 2 * (N + 5)
        assert prom_value(port, 'pico_tunnels_total{status="200"}') == 2
        assert prom_value(port, "pico_tunnel_connect_seconds_count") == 2
    finally:
        prom.send_signal(signal.SIGTERM)
        try:
            prom.wait(30)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait(10)
        log.close()
    assert prom.returncode == 0, open(tmp_path / "prometheus.log").read()[-2000:]


# -- not public ------------------------------------------------------------

def get_from(stack, source, path):
    """GET path with the connection's source address bound to source."""
    s = socket.create_connection(("127.0.0.1", stack.port), 10,
                                 source_address=(source, 0))
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   % path).encode())
        head, rest = read_head(s)
        body = rest
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(head.split(b" ", 2)[1]), body.decode()
    finally:
        s.close()


def test_metrics_are_refused_to_other_addresses(stack):
    for path in ("/metrics", "/metrics/nginx"):
        code, body = get_from(stack, "127.0.0.1", path)
        assert code == 200 and "# TYPE" in body
        # 127.0.0.2 is loopback's interface but not an allowed address
        code, body = get_from(stack, "127.0.0.2", path)
        assert code == 403, (code, body)
        assert json.loads(body)["error"]["code"] == "forbidden"
    # and only GET
    r = stack.request("POST", "/metrics", body={})
    assert r.status == 405, r


# -- tunnel events ---------------------------------------------------------

def test_session_stream_has_tunnel_events_in_order(stack):
    sid = stack.create(ttl=600)["session_id"]
    for i in range(2):
        s, status, rest = stack.open_tunnel(sid)
        assert status == "HTTP/1.1 200 Connection Established", status
        banner = rest
        while b"\n" not in banner:
            banner += s.recv(4096)
        assert banner.startswith(b"SSH-2.0-")
        s.close()

        # the close reaches Redis with the next merged update
        wait_for(lambda: stack.redis_cli("HMGET", "pico:tunnels:" + sid,
                                         "opened", "open").split()
                 == [str(i + 1), "0"], what="tunnel closed in redis")
    # the session's history, then the stream follows it to terminated
    es = EventStream(stack, "/v1/sessions/%s/events" % sid)
    try:
        assert stack.delete(sid).status == 200
        events = es.rest()
    finally:
        es.close()
    types = [e[1] for e in events]
    assert types == ["created", "running", "tunnel_opened", "tunnel_closed",
                     "tunnel_opened", "tunnel_closed", "terminated"], events
    assert ids_increase(events)
    assert all(e[2]["session_id"] == sid and e[2]["time"].endswith("Z")
               for e in events)
