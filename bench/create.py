"""Create-to-ready benchmark of pico-backend against a real local stack
(redis, backend, nginx, runc sandboxes with sshd).

Latency: POST /v1/sessions answers 201 only once the sandbox's sshd
accepts, so the POST round trip *is* create -> ready. Measured over N
sequential creates (each session deleted again right after, outside the
timed part), then concurrent creates C at a time for throughput. A
sample counts only if a tunnel to it then gets the SSH banner.

Live sandboxes (--live N, default 500, the DESIGN goal; 0 skips): creates
N sessions one after another and keeps them all, reports create p50/p99
per stretch as the count grows, checks that every one answers its SSH
banner through a tunnel, reports host memory per sandbox (MemAvailable
delta / N, and the sum of the sandboxes' memory cgroups), backend and
nginx RSS and the backend's descriptor count (which must not grow per
session), then deletes them all and checks nothing is left: no runc
container, no session folder, no /pico/<id> cgroup. Bounded by
--live-budget seconds; when creates fail before N it reports how many
were reached and why.

Warm pool (--pool N, default 4; 0 skips): a second stack with warm_pool
N. The same sequential creates, back to back (the refill thread may fall
behind, so some go cold) and paced (each create waits until the pool is
full again), with how many the backend served from the pool (its log
says "from pool").

Prints a markdown section to stdout (make bench-create writes it to
build/bench/create.md)."""

import argparse
import glob
import os
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
# Measure the optimised build, not the sanitizer one the tests prefer.
os.environ.setdefault("PICO_BACKEND", os.path.join(ROOT, "bin", "pico-backend"))
from pico_stack import Stack, run_parallel, ssh_banner  # noqa: E402


def pct(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def create_timed(st, ttl=600):
    t0 = time.perf_counter()
    r = st.request("POST", "/v1/sessions", body=dict({"ttl": ttl}, **TIER))
    dt = time.perf_counter() - t0
    if r.status != 201:
        raise RuntimeError("create failed: %r" % r)
    return r.json()["session_id"], dt


def check_ready(st, sid):
    banner = ssh_banner(st, sid)
    if not banner.startswith(b"SSH-2.0-"):
        raise RuntimeError("no SSH banner from %s: %r" % (sid, banner[:64]))


# "isolation" of every create (--isolation); empty = the server's default
TIER = {}


def sequential(st, n):
    lat = []
    for i in range(n):
        sid, dt = create_timed(st)
        check_ready(st, sid)
        lat.append(dt)
        st.delete(sid)
    return lat


def concurrent(st, total, width):
    def one(_):
        try:
            return create_timed(st)
        except Exception as e:  # reported, not hidden
            return e

    t0 = time.perf_counter()
    threads, results = run_parallel(one, total, width)
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done = [r for r in results if not isinstance(r, Exception)]
    errors = [str(r) for r in results if isinstance(r, Exception)]
    lat = [dt for _, dt in done]
    for sid, _ in done:
        check_ready(st, sid)
    for sid, _ in done:
        st.delete(sid)
    return lat, wall, errors


# -- warm pool ---------------------------------------------------------------

def pool_ready(st, size):
    """Unclaimed pool sandboxes whose sshd answered (the backend logs each
    when it joins the pool; its folder is renamed away when claimed)."""
    pool = os.path.join(st.var, "pool")
    log = st.backend.read_log()
    names = os.listdir(pool) if os.path.isdir(pool) else []
    return sum(1 for x in names if "warm pool: %s ready" % x in log) >= size


def wait_pool(st, size, timeout=10.0):
    end = time.time() + timeout
    while not pool_ready(st, size) and time.time() < end:
        time.sleep(0.005)


def pool_bench(n, size):
    st = Stack(name="bench-pool")
    st.configure()
    st.set_conf("warm_pool", size)
    st.start(configure=False)
    try:
        wait_pool(st, size, 60)
        sequential(st, 3)
        before = st.backend.read_log().count(" from pool")
        back = sequential(st, n)
        mid = st.backend.read_log().count(" from pool")
        paced = []
        for _ in range(n):
            wait_pool(st, size)
            paced += sequential(st, 1)
        after = st.backend.read_log().count(" from pool")
    finally:
        st.stop()
    return back, mid - before, paced, after - mid


def report_pool(r, n, size):
    back, back_hits, paced, paced_hits = r
    ms = lambda v: "%.1f" % (v * 1000)  # noqa: E731
    print("## Session create -> ready with a warm pool (local runtime)\n")
    print("A second stack with `warm_pool %d`; %d sequential creates back to "
          "back, then %d paced (each waits until the pool is full again). "
          "Same measure as above: POST until 201, then the SSH banner "
          "through a tunnel.\n" % (size, n, n))
    print("| measure | back to back | paced |")
    print("|---|---|---|")
    print("| served from the pool | %d of %d | %d of %d |"
          % (back_hits, len(back), paced_hits, len(paced)))
    print("| p50 latency, ms | %s | %s |"
          % (ms(statistics.median(back)), ms(statistics.median(paced))))
    print("| p99 latency, ms | %s | %s |" % (ms(pct(back, 99)), ms(pct(paced, 99))))
    print("| min / max, ms | %s / %s | %s / %s |"
          % (ms(min(back)), ms(max(back)), ms(min(paced)), ms(max(paced))))
    print("| goal (DESIGN) | p50 <= 5 ms warm | |")
    print()


# -- live sandboxes ---------------------------------------------------------

CGROUP_ROOT = "/sys/fs/cgroup"


def mem_available_kb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def nginx_rss_kb(st):
    master = st.nginx.pid
    return sum(rss_kb(p) for p in [master] + children(master))


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def sandbox_mem_bytes(sid):
    try:
        with open(os.path.join(CGROUP_ROOT, "memory", "pico", sid,
                               "memory.usage_in_bytes")) as f:
            return int(f.read())
    except OSError:
        return 0


def leftovers(st, sids):
    """What is left of these sessions: runc containers, folders, cgroups."""
    left = []
    running = set(st.runc_containers())
    left += [c for c in running if c.startswith("pico-")]
    sdir = os.path.join(st.var, "sessions")
    left += [os.path.join(sdir, d) for d in os.listdir(sdir)] if os.path.isdir(sdir) else []
    for sid in sids:
        left += glob.glob(os.path.join(CGROUP_ROOT, "*", "pico", sid))
    return left


def live(st, n, budget_s, checkpoints):
    """Creates n sandboxes and keeps them; returns a dict of results."""
    bpid = st.backend.proc.pid
    r = {"target": n, "stop_reason": "", "stretches": [], "sids": []}
    time.sleep(1)  # let the earlier parts' deletes settle
    r["mem0"] = mem_available_kb()
    r["fd0"] = fd_count(bpid)
    r["backend_rss0"] = rss_kb(bpid)
    r["nginx_rss0"] = nginx_rss_kb(st)
    lat = []
    marks = sorted(set(c for c in checkpoints if c < n) | {n})
    deadline = time.monotonic() + budget_s
    t0 = time.perf_counter()
    while len(r["sids"]) < n:
        if time.monotonic() > deadline:
            r["stop_reason"] = "time budget of %d s used up" % budget_s
            break
        try:
            sid, dt = create_timed(st, ttl=3 * budget_s + 600)
        except Exception as e:  # reported, not hidden
            r["stop_reason"] = "create %d failed: %s" % (len(r["sids"]) + 1, e)
            break
        r["sids"].append(sid)
        lat.append(dt)
        if len(lat) in marks:
            prev = r["stretches"][-1]["upto"] if r["stretches"] else 0
            part = lat[prev:]
            r["stretches"].append({
                "upto": len(lat), "from": prev + 1,
                "p50": statistics.median(part), "p99": pct(part, 99),
                "fds": fd_count(bpid), "mem": mem_available_kb()})
    r["create_wall"] = time.perf_counter() - t0
    r["reached"] = len(r["sids"])
    r["lat"] = lat

    # every sandbox answers through a tunnel, with all of them alive
    bad = []
    for sid in r["sids"]:
        try:
            check_ready(st, sid)
        except Exception as e:
            bad.append("%s: %s" % (sid, e))
    r["banner_ok"] = r["reached"] - len(bad)
    r["banner_bad"] = bad

    time.sleep(1)
    r["mem1"] = mem_available_kb()
    r["fd1"] = fd_count(bpid)
    r["backend_rss1"] = rss_kb(bpid)
    r["nginx_rss1"] = nginx_rss_kb(st)
    r["cg_sum"] = sum(sandbox_mem_bytes(sid) for sid in r["sids"])
    r["init_rss"] = 0
    for c in st.runc_containers():
        try:
            with open(os.path.join(st.var, "runc", c, "state.json")) as f:
                pid = int(re.search(r'"init_process_pid":(\d+)', f.read()).group(1))
            r["init_rss"] += rss_kb(pid)
        except (OSError, AttributeError, ValueError):
            pass

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda sid: st.delete(sid).status, r["sids"]))
    r["delete_wall"] = time.perf_counter() - t0
    r["delete_failed"] = sum(1 for c in codes if c != 200)
    r["left"] = leftovers(st, r["sids"])
    r["fd2"] = fd_count(bpid)
    time.sleep(1)
    r["mem2"] = mem_available_kb()
    return r


def report_live(r):
    n = r["reached"]
    mib = lambda kb: "%.1f" % (kb / 1024.0)  # noqa: E731
    ms = lambda v: "%.1f" % (v * 1000)  # noqa: E731
    print("## Live sandboxes (local runtime)\n")
    print("Sequential creates, every session kept; then a tunnel to each "
          "one must return its SSH banner while all are alive; then all "
          "deleted (8 at a time).\n")
    print("| measure | value |")
    print("|---|---|")
    print("| target / reached | %d / %d%s |" % (
        r["target"], n, "" if not r["stop_reason"] else " (stopped: %s)" % r["stop_reason"]))
    print("| answered the SSH banner through a tunnel | %d of %d |" % (r["banner_ok"], n))
    for s in r["stretches"]:
        print("| create p50 / p99, sessions %d-%d, ms | %s / %s |"
              % (s["from"], s["upto"], ms(s["p50"]), ms(s["p99"])))
    if r["lat"]:
        print("| create p50 / p99, all %d, ms | %s / %s |"
              % (n, ms(statistics.median(r["lat"])), ms(pct(r["lat"], 99))))
        print("| time to create all, s | %.1f |" % r["create_wall"])
    if n:
        print("| host memory per sandbox (MemAvailable delta / N), MiB | %s |"
              % mib((r["mem0"] - r["mem1"]) / n))
        print("| sum of sandbox memory cgroups (usage_in_bytes), MiB | %.1f (%.2f per sandbox) |"
              % (r["cg_sum"] / 1048576.0, r["cg_sum"] / 1048576.0 / n))
        print("| pico-init RSS, sum / per sandbox, MiB | %s / %s |"
              % (mib(r["init_rss"]), mib(r["init_rss"] / n)))
    print("| backend RSS before / with all live, MiB | %s / %s |"
          % (mib(r["backend_rss0"]), mib(r["backend_rss1"])))
    print("| nginx RSS (master + workers) before / with all live, MiB | %s / %s |"
          % (mib(r["nginx_rss0"]), mib(r["nginx_rss1"])))
    print("| backend open descriptors: before / all live / after delete | %d / %d / %d |"
          % (r["fd0"], r["fd1"], r["fd2"]))
    print("| backend descriptors at each stretch | %s |"
          % ", ".join("%d@%d" % (s["fds"], s["upto"]) for s in r["stretches"]))
    print("| delete all, s (failed) | %.1f (%d) |" % (r["delete_wall"], r["delete_failed"]))
    print("| MemAvailable back after delete, MiB below the start | %s |"
          % mib(r["mem0"] - r["mem2"]))
    print("| left behind (containers, folders, cgroups) | %s |"
          % (len(r["left"]) if not r["left"] else "%d: %s" % (len(r["left"]), ", ".join(r["left"][:5]))))
    print("| goal (DESIGN) | >= 200 live, >= 500 on 2 cores / 24 GiB |")
    if r["banner_bad"]:
        print("\nno banner: %s" % "; ".join(r["banner_bad"][:5]))
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=60, help="sequential creates (>= 50)")
    ap.add_argument("-c", type=int, default=8, help="concurrent creates at a time")
    ap.add_argument("--total", type=int, default=64, help="concurrent creates in all")
    ap.add_argument("--live", type=int, default=500,
                    help="sandboxes kept alive at once (0 skips; goal 500, minimum 200)")
    ap.add_argument("--live-budget", type=int, default=1200,
                    help="seconds the live creates may take in all")
    ap.add_argument("--live-only", action="store_true",
                    help="only the live-sandboxes part")
    ap.add_argument("--pool", type=int, default=4,
                    help="warm_pool of the second stack (0 skips)")
    ap.add_argument("--pool-only", action="store_true",
                    help="only the warm-pool part")
    ap.add_argument("--isolation", choices=("runc", "gvisor"), default="",
                    help="isolation tier of every create (default: the server's)")
    args = ap.parse_args()
    if args.isolation:
        TIER["isolation"] = args.isolation
    if args.pool_only:
        report_pool(pool_bench(args.n, args.pool), args.n, args.pool)
        return

    st = Stack(name="bench-create")
    st.configure()
    # the stack's own cap must not be what stops the live part
    st.set_conf("max_sessions", max(500, args.live + 50))
    if args.isolation == "gvisor":
        st.set_conf("isolation_allowed", "runc,gvisor")
    st.start(configure=False)
    warm, lat, clat, wall, errors, lv = [], [], [], 0, [], None
    try:
        if not args.live_only:
            warm = sequential(st, 3)  # first create pays cold caches
            lat = sequential(st, args.n)
            clat, wall, errors = concurrent(st, args.total, args.c)
        if args.live > 0:
            lv = live(st, args.live, args.live_budget, (100, 200, 500))
    finally:
        st.stop()
    if args.live_only:
        if lv is not None:
            report_live(lv)
        return
    # The backend logs how long each create took on its side (record,
    # runtime create, record again); the rest is HTTP and nginx.
    inside = [int(x) / 1000.0 for x in
              re.findall(r"created \S+ endpoint=\S+ in (\d+) ms", st.backend.read_log())]
    inside = inside[len(warm):len(warm) + len(lat)]  # the sequential ones

    ms = lambda v: "%.1f" % (v * 1000)  # noqa: E731
    print("## Session create -> ready (local runtime, isolation %s)\n"
          % (args.isolation or "runc"))
    print("Command: `make bench-create`, which runs `/usr/bin/python3 "
          "bench/create.py` (%s).\n" % " ".join(sys.argv[1:] or ["defaults"]))
    print("POST /v1/sessions through nginx until 201 (the sandbox's sshd "
          "accepts); every session then answered a tunnel with its SSH banner.\n")
    print("| measure | value |")
    print("|---|---|")
    print("| first creates (cold), ms | %s |" % ", ".join(ms(v) for v in warm))
    print("| sequential creates | %d |" % len(lat))
    print("| p50 latency, ms | %s |" % ms(statistics.median(lat)))
    print("| p99 latency, ms | %s |" % ms(pct(lat, 99)))
    print("| min / max, ms | %s / %s |" % (ms(min(lat)), ms(max(lat))))
    if inside:
        print("| p50 inside the backend (log: record + sandbox start), ms | %s |"
              % ms(statistics.median(inside)))
    print("| concurrent creates (%d at a time) | %d ok, %d failed |"
          % (args.c, len(clat), len(errors)))
    if clat:
        print("| concurrent p50 / p99 latency, ms | %s / %s |"
              % (ms(statistics.median(clat)), ms(pct(clat, 99))))
        print("| concurrent throughput, sessions/s | %.1f |" % (len(clat) / wall))
    print("| target (issue) | p50 <= 50 ms, p99 <= 150 ms |")
    if errors:
        print("\nerrors: %s" % "; ".join(errors[:5]))
    print()
    if args.pool > 0:
        report_pool(pool_bench(args.n, args.pool), args.n, args.pool)
    if lv is not None:
        report_live(lv)


if __name__ == "__main__":
    main()
