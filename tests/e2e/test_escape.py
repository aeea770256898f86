"""Escape probes and the user namespace of local sandboxes, end to end.

On the host: every process of a sandbox runs under a uid and gid of its
own range (none 0, none 1000), two sandboxes have different ranges, and
no descriptor any sandbox process holds is a host file. Inside, as the
sandbox user: each door out is tried and must stay shut. The seccomp
probes (keyctl, bpf, io_uring, userfaultfd, perf_event_open, namespaces,
mount) live in test_sandbox.py::test_seccomp_refuses_kernel_attack_surface
and are not repeated here; these are the others.

Each probe is written so that it fails when its protection goes: the
assertion is on what the kernel answered (an errno, a missing file), not
on the absence of output."""

import glob
import os
import socket

import pytest

from test_sandbox import Sandbox, endpoint_path, CGROUP_ROOT

IDMAP_BASE = 0x100000
IDMAP_SIZE = 65536


@pytest.fixture(scope="module")
def pair(stack):
    """Two sessions with an SSH connection each, one login kept open."""
    a, b = stack.create(), stack.create()
    box_a = Sandbox(endpoint_path(stack, a["session_id"]))
    box_b = Sandbox(endpoint_path(stack, b["session_id"]))
    # something long-lived of the user's in each, for the host-side checks
    for box in (box_a, box_b):
        box.ok("sleep 600 </dev/null >/dev/null 2>&1 &")
    yield (a, box_a), (b, box_b)
    for sess, box in ((a, box_a), (b, box_b)):
        box.close()
        assert stack.delete(sess["session_id"]).status == 200


def sandbox_pids(sid):
    procs = glob.glob(os.path.join(CGROUP_ROOT, "pids", "pico", sid, "cgroup.procs"))
    assert procs, "no pids cgroup for %s" % sid
    with open(procs[0]) as f:
        return [int(l) for l in f if l.strip()]


def ids_of(pid):
    """(real, effective, saved, fs) uids and gids of pid from /proc."""
    with open("/proc/%d/status" % pid) as f:
        lines = dict(l.split(":", 1) for l in f if ":" in l)
    return ([int(x) for x in lines["Uid"].split()],
            [int(x) for x in lines["Gid"].split()])


def host_range(box):
    """The host id the sandbox's root maps to, from inside."""
    uid_map = box.ok("cat /proc/self/uid_map").split()
    gid_map = box.ok("cat /proc/self/gid_map").split()
    assert uid_map == gid_map, (uid_map, gid_map)
    assert uid_map[0] == "0" and int(uid_map[2]) == IDMAP_SIZE, uid_map
    return int(uid_map[1])


# -- the user namespace, seen from the host and from inside --------------

def test_every_sandbox_process_runs_in_its_own_range(pair):
    (a, box_a), (b, box_b) = pair
    bases = []
    for sess, box in ((a, box_a), (b, box_b)):
        base = host_range(box)
        assert base >= IDMAP_BASE and (base - IDMAP_BASE) % IDMAP_SIZE == 0
        pids = sandbox_pids(sess["session_id"])
        # pico-init, sshd (root's and the user's), bash, sleep
        assert len(pids) >= 3, pids
        for pid in pids:
            uids, gids = ids_of(pid)
            for i in uids + gids:
                assert base <= i < base + IDMAP_SIZE, (pid, uids, gids)
                assert i not in (0, 1000), (pid, uids, gids)
        # the user's own processes are the range's 1000
        assert box.ok("id -u; id -g").split() == ["1000", "1000"]
        bases.append(base)
    assert bases[0] != bases[1], bases


def test_files_look_right_inside(pair):
    (_, box), _ = pair
    # the shared rootfs is root's (idmapped), the user's folders are the user's
    out = box.ok("stat -c '%u:%g %n' / /etc/ssh/pico /etc/ssh/pico/ssh_host_ed25519_key "
                 "/workspace /home/sandbox /usr/bin/passwd")
    owners = dict(l.split(" ", 1)[::-1] for l in out.splitlines())
    assert owners == {"/": "0:0", "/etc/ssh/pico": "0:0",
                      "/etc/ssh/pico/ssh_host_ed25519_key": "0:0",
                      "/workspace": "1000:1000", "/home/sandbox": "1000:1000",
                      "/usr/bin/passwd": "0:0"}, owners
    # nothing shows up as the overflow id: nothing unmapped is visible
    assert "65534" not in box.ok("stat -c '%u %g' /etc/passwd /usr /tmp /run")


def test_no_host_descriptor_in_any_sandbox_process(stack, pair):
    """Every descriptor of every process of both sandboxes is a pipe, a
    socket, an anonymous inode, a device or a file of the sandbox itself
    (its rootfs or its session folder): nothing of the host leaked in."""
    rootfs = os.path.realpath(os.path.join(os.environ.get(
        "PICO_IMAGES", os.path.join(stack.var, "..", "images")), "sandbox_latest", "rootfs"))
    for sess, _ in pair:
        sdir = os.path.join(stack.var, "sessions", sess["session_id"])
        for pid in sandbox_pids(sess["session_id"]):
            for fd in glob.glob("/proc/%d/fd/*" % pid):
                try:
                    target = os.readlink(fd)
                except FileNotFoundError:
                    continue
                ok = (target.split(":")[0] in ("pipe", "socket", "anon_inode")
                      or target.startswith(("/dev/", rootfs + "/", sdir + "/"))
                      or target in ("/dev", "/", rootfs))
                assert ok, (sess["session_id"], pid, fd, target)


# -- probes from inside, as the sandbox user -------------------------------

PROBE = r"""
import ctypes, errno, os, socket, sys
def tell(name, fn):
    try:
        fn(); print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
libc = ctypes.CDLL(None, use_errno=True)
def sysc(nr, *a):
    r = libc.syscall(nr, *[ctypes.c_ulong(x) for x in a])
    if r < 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
def write(path, data):
    with open(path, "w") as f: f.write(data)
def read(path, n=1):
    with open(path, "rb") as f: f.read(n)
tell("mknod_char", lambda: os.mknod("/tmp/mem", 0o20600, os.makedev(1, 1)))
tell("mknod_block", lambda: os.mknod("/tmp/sda", 0o60600, os.makedev(8, 0)))
tell("ptrace_init", lambda: sysc(101, 16, 1, 0, 0))             # PTRACE_ATTACH pid 1
tell("init_module", lambda: sysc(175, 0, 0, 0))
tell("finit_module", lambda: sysc(313, 0, 0, 0))
tell("raw_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
tell("packet_socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
tell("write_proc_sys", lambda: write("/proc/sys/kernel/hostname", "x"))
tell("write_sys", lambda: write("/sys/kernel/uevent_helper", "/tmp/x"))
tell("read_kcore", lambda: read("/proc/kcore"))
tell("syslog_read", lambda: sysc(103, 3, 0, 0))                 # SYSLOG_ACTION_READ_ALL
tell("dev_kmsg", lambda: read("/dev/kmsg"))
tell("proc1_root", lambda: os.listdir("/proc/1/root/"))
tell("proc1_cwd", lambda: os.listdir("/proc/1/cwd/"))
tell("setuid_root", lambda: os.setuid(0))
tell("cgroup_memory", lambda: write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "-1"))
tell("cgroup_pids", lambda: write("/sys/fs/cgroup/pids/pids.max", "max"))
tell("sysrq", lambda: write("/proc/sysrq-trigger", "h"))
"""


def probe(box, script=PROBE):
    out = box.ok("python3 - <<'EOF'\n%s\nEOF" % script)
    return dict(l.split(" ", 1) for l in out.splitlines() if l)


def test_escape_probes_as_the_sandbox_user(pair):
    (_, box), _ = pair
    got = probe(box)
    want = {
        "mknod_char": "EPERM", "mknod_block": "EPERM",
        "ptrace_init": "EPERM",
        "init_module": "EPERM", "finit_module": "EPERM",
        "raw_socket": "EPERM", "packet_socket": "EPERM",
        "write_proc_sys": "EROFS", "write_sys": "EROFS",
        # this kernel has no /proc/kcore; where it has, the mask binds
        # /dev/null over it (checked below)
        "read_kcore": got.get("read_kcore") if got.get("read_kcore") == "ok" else "ENOENT",
        "syslog_read": "EPERM", "dev_kmsg": "ENOENT",
        "proc1_root": "EACCES", "proc1_cwd": "EACCES",
        "setuid_root": "EPERM",
        # no cgroup file system in the sandbox at all
        "cgroup_memory": "ENOENT", "cgroup_pids": "ENOENT",
        # no sysrq on this kernel; read-only /proc where there is
        "sysrq": "EROFS" if got.get("sysrq") == "EROFS" else "ENOENT",
    }
    assert got == want
    if got["read_kcore"] == "ok":
        # /proc/kcore reads as the empty /dev/null, not the kernel's memory
        assert box.ok("wc -c < /proc/kcore").strip() == "0"


SUID_PROBE = r"""
import os, subprocess, time
# passwd is setuid root; while it waits for the current password, its
# effective uid shows in /proc: 0 would mean the setuid bit worked
p = subprocess.Popen(["/usr/bin/passwd"], stdin=subprocess.PIPE,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
seen = set()
for _ in range(200):
    try:
        with open("/proc/%d/status" % p.pid) as f:
            for l in f:
                if l.startswith("Uid:"):
                    seen.add(l.split()[2])
    except OSError:
        break
    if p.poll() is not None:
        break
    time.sleep(0.005)
p.kill(); p.wait()
print(" ".join(sorted(seen)))
"""


def test_no_setuid_way_to_root(pair):
    (_, box), _ = pair
    assert box.ok("stat -c %a /usr/bin/passwd").strip() == "4755"
    assert box.ok("python3 - <<'EOF'\n%s\nEOF" % SUID_PROBE).split() == ["1000"]
    assert "NoNewPrivs:\t1" in box.ok("grep NoNewPrivs /proc/self/status")
    root = [l for l in box.ok("cat /proc/self/mountinfo").splitlines()
            if l.split()[4] == "/"]
    assert root and "nosuid" in root[0].split()[5], root


def test_other_sandbox_files_and_socket_unreachable(stack, pair):
    (a, box_a), (b, box_b) = pair
    b_dir = os.path.join(stack.var, "sessions", b["session_id"])
    for path in (b_dir, os.path.join(b_dir, "ssh.sock"), os.path.join(b_dir, "workspace")):
        rc, _, _ = box_a.run("ls -d %s" % path)
        assert rc != 0, path
    # b's processes are in another pid namespace: none visible in a
    rc, out, _ = box_a.run("ls /proc | grep -c '^[0-9]'")
    assert int(out) < 20, out


def test_host_abstract_and_path_sockets_unreachable(stack, pair):
    (_, box), _ = pair
    # an abstract socket on the host: the sandbox's network namespace has
    # its own abstract namespace, so connecting there must fail
    name = "pico-escape-probe-%d" % os.getpid()
    host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    host.bind("\0" + name)
    host.listen(1)
    try:
        script = ("import socket, errno\n"
                  "s = socket.socket(socket.AF_UNIX)\n"
                  "try:\n"
                  "    s.connect('\\0%s'); print('CONNECTED')\n"
                  "except OSError as e:\n"
                  "    print(errno.errorcode[e.errno])\n") % name
        assert box.ok("python3 -c \"%s\"" % script).strip() == "ECONNREFUSED"
    finally:
        host.close()
    # the backend's and Redis' sockets are not in the sandbox's tree
    rc, _, _ = box.run("ls %s" % os.path.join(stack.var, "run"))
    assert rc != 0
