"""The local runtime's per-session disk quota (resources.disk_mb), end to
end: real pico-backend, real runc, real mkfs.ext4, loop devices and sshd.

What is checked: a session with disk_mb gets an ext4 file system of that
size for /workspace and /home/sandbox (df shows it; writing past it fails
with ENOSPC and the sandbox and the service stay fine; space comes back
after a delete); the API validates disk_mb; nothing is left behind (no
loop device backed by a file under the stack's folder, no mount under it,
no image, no container) after DELETE, expiry, a failed create (mkfs
failing, runc failing after the image was mounted), a SIGKILLed backend
and the warm pool; sandboxes cannot see loop devices (they would name
other sessions). Sessions without disk_mb are covered by the other tests
and are unchanged. No timing thresholds."""

import os
import signal

import pytest

from pico_stack import Stack, wait_for
from test_api import error_of
from test_sandbox import Sandbox, endpoint_path


def loops_under(st):
    """Loop devices whose backing file is under the stack's folder."""
    found = []
    for name in os.listdir("/sys/block"):
        try:
            with open("/sys/block/%s/loop/backing_file" % name) as f:
                backing = f.read().strip()
        except OSError:
            continue
        if backing.startswith(st.var + "/"):
            found.append((name, backing))
    return found


def mounts_under(st):
    """Mount points under the stack's folder in the host's mount table."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(st.var + "/"):
                out.append(point)
    return out


def images_under(st):
    out = []
    for top in ("sessions", "pool"):
        for dirpath, _, files in os.walk(os.path.join(st.var, top)):
            out += [os.path.join(dirpath, f) for f in files if f == "disk.img"]
    return out


def nothing_left(st, sid=None):
    return (loops_under(st) == [] and mounts_under(st) == [] and
            images_under(st) == [] and
            (sid is None or (not os.path.exists(os.path.join(st.var, "sessions", sid))
                             and "pico-" + sid not in st.runc_containers())))


def df_kib(box, path):
    """(size, available) of the file system at path, KiB, as the sandbox
    sees it."""
    line = box.ok("df -k --output=size,avail %s" % path).splitlines()[1]
    size, avail = line.split()
    return int(size), int(avail)


@pytest.fixture
def conf_stack(new_stack):
    """Private stacks with some pico.conf keys changed (key -> value, or a
    function of the stack); each must have left nothing once stopped."""
    made = []

    def make(name, **conf):
        st = new_stack(name=name, conf={"pico.conf": conf})
        made.append(st)
        return st

    yield make
    for st in made:
        st.stop()  # before new_stack's own stop: nothing_left looks after it
        assert nothing_left(st)


# -- the quota itself -------------------------------------------------------

def test_quota_bounds_workspace_and_home(stack):
    sess = stack.create(resources={"disk_mb": 32})
    sid = sess["session_id"]
    assert sess["resources"]["disk_mb"] == 32
    assert stack.request("GET", "/v1/sessions/" + sid).json()["resources"]["disk_mb"] == 32
    assert stack.redis_cli("HGET", "pico:session:" + sid, "disk_mb") == "32"
    box = Sandbox(endpoint_path(stack, sid))
    try:
        size, avail = df_kib(box, "/workspace")
        # 32 MiB less ext4's own metadata
        assert 24 * 1024 <= size <= 32 * 1024, size
        assert avail > 20 * 1024
        # /home/sandbox is the same file system: one quota for both
        assert box.ok("stat -c %d /workspace") == box.ok("stat -c %d /home/sandbox")
        assert box.ok("ls -A ~").split() == [".bash_logout", ".bashrc", ".profile"]
        assert box.ok("ls -A /workspace") == ""
        assert box.ok("stat -c '%U %a' /workspace ~") == "sandbox 700\nsandbox 700\n"

        rc, out, err = box.run("dd if=/dev/zero of=/workspace/big bs=1M count=64")
        assert rc != 0 and "No space left on device" in err, (rc, out, err)
        rc, _, err = box.run("dd if=/dev/zero of=$HOME/f bs=1M count=2")
        assert rc != 0 and "No space left on device" in err, err
        # the sandbox, the session and the service are fine
        assert box.ok("echo still-here") == "still-here\n"
        assert stack.request("GET", "/health").status == 200
        assert stack.request("GET", "/v1/sessions/" + sid).json()["status"] == "running"
        # space comes back
        box.ok("rm /workspace/big")
        box.ok("echo small > /workspace/small && cat /workspace/small")
        box.ok("dd if=/dev/zero of=/workspace/ten bs=1M count=10 status=none")
    finally:
        box.close()
    # files stay until the session is deleted, across connections
    again = Sandbox(endpoint_path(stack, sid))
    assert again.ok("cat /workspace/small; stat -c %s /workspace/ten") == \
        "small\n%d\n" % (10 << 20)
    again.close()
    # the host's mount table never holds the image: it is mounted only in
    # the sandbox's own mount namespace
    assert mounts_under(stack) == []
    assert [b for _, b in loops_under(stack)] == \
        [os.path.join(stack.var, "sessions", sid, "disk.img")]

    assert stack.delete(sid).status == 200
    # DELETE returns once the loop device let go of the image
    assert nothing_left(stack, sid)


def test_sandbox_sees_no_loop_devices(stack):
    a = stack.create(resources={"disk_mb": 16})
    b = stack.create(resources={"disk_mb": 16})
    box = Sandbox(endpoint_path(stack, a["session_id"]))
    try:
        # backing files would name other sessions' folders
        out = box.ok("cat /sys/block/loop*/loop/backing_file 2>/dev/null; "
                     "ls /sys/devices/virtual/block; true")
        assert b["session_id"] not in out and "disk.img" not in out, out
        # and the image is not reachable as a device
        rc, _, _ = box.run("ls /dev/loop0 /dev/loop-control")
        assert rc != 0
    finally:
        box.close()
        assert stack.delete(a["session_id"]).status == 200
        assert stack.delete(b["session_id"]).status == 200
    assert nothing_left(stack)


def test_default_session_has_no_quota(stack):
    sess = stack.create()
    sid = sess["session_id"]
    assert sess["resources"]["disk_mb"] == 0
    assert not os.path.exists(os.path.join(stack.var, "sessions", sid, "disk.img"))
    box = Sandbox(endpoint_path(stack, sid))
    try:
        # the plain folders on the state folder's file system, as before
        assert box.ok("stat -f -c %T /workspace").strip() != "tmpfs"
        assert os.path.isdir(os.path.join(stack.var, "sessions", sid, "workspace"))
    finally:
        box.close()
    assert stack.delete(sid).status == 200


@pytest.mark.parametrize("disk_mb", [-1, 8, 15, 10241, 10 ** 9, 32.5, "32", None, True])
def test_bad_disk_mb_is_refused(stack, disk_mb):
    r = stack.request("POST", "/v1/sessions", body={"resources": {"disk_mb": disk_mb}})
    msg = error_of(r, 400)
    assert msg == "resources.disk_mb: must be an integer between 16 and 10240", msg
    assert loops_under(stack) == []


# -- nothing leaks -------------------------------------------------------------

def test_expiry_releases_the_disk(stack):
    sid = stack.create(ttl=2, resources={"disk_mb": 16})["session_id"]
    assert loops_under(stack)
    wait_for(lambda: stack.request("GET", "/v1/sessions/" + sid).status == 404,
             timeout=30, what="session reaped")
    assert nothing_left(stack, sid)


def _broken_images(st):
    """A private images_dir with only broken:latest, whose /.pico is a
    file, so runc fails mounting pico-init, after the quota image was
    attached and mounted."""
    images = os.path.join(st.var, "images")
    os.makedirs(os.path.join(images, "broken_latest", "rootfs"))
    open(os.path.join(images, "broken_latest", ".complete"), "w").close()
    open(os.path.join(images, "broken_latest", "rootfs", ".pico"), "w").close()
    return images


def test_failed_creates_leave_nothing(conf_stack):
    st = conf_stack("diskfail", images_dir=_broken_images)
    # runc fails after the image was made, attached and mounted
    r = st.request("POST", "/v1/sessions",
                   body={"image": "broken:latest", "resources": {"disk_mb": 32}})
    msg = error_of(r, 500)
    assert "sandbox failed to start" in msg, msg
    assert nothing_left(st)
    assert os.listdir(os.path.join(st.var, "sessions")) == []
    assert st.runc_containers() == []
    assert st.request("GET", "/health").status == 200

    # mkfs fails: nothing was attached, the image is removed too
    st = conf_stack("diskmkfs", mkfs_ext4="/bin/false")
    r = st.request("POST", "/v1/sessions", body={"resources": {"disk_mb": 32}})
    msg = error_of(r, 500)
    assert "mkfs.ext4" in msg, msg
    assert nothing_left(st)
    assert os.listdir(os.path.join(st.var, "sessions")) == []
    # sessions without a quota never run mkfs
    sid = st.create()["session_id"]
    assert st.delete(sid).status == 200


def test_sigkill_restart_reconciles_disks(new_stack):
    st = new_stack(name="diskkill")
    keep = st.create(ttl=600, resources={"disk_mb": 32})["session_id"]
    orphan = st.create(ttl=600, resources={"disk_mb": 32})["session_id"]
    box = Sandbox(endpoint_path(st, keep))
    box.ok("echo kept > /workspace/f")
    box.close()
    assert len(loops_under(st)) == 2

    st.backend.stop(sig=signal.SIGKILL)
    # behind the backend's back, one sandbox loses its record
    st.redis_cli("DEL", "pico:session:" + orphan)
    st.redis_cli("ZREM", "pico:expiry", orphan)
    st.backend.start()
    assert "reconcile: removed orphan sandbox " + orphan in st.backend.read_log()

    # the orphan's container, image and loop device are gone
    assert "pico-" + orphan not in st.runc_containers()
    assert not os.path.exists(os.path.join(st.var, "sessions", orphan))
    wait_for(lambda: all(orphan not in b for _, b in loops_under(st)),
             what="orphan's loop device released")
    assert mounts_under(st) == []
    # the live one keeps its quota and its files
    assert st.request("GET", "/v1/sessions/" + keep).json()["status"] == "running"
    box = Sandbox(endpoint_path(st, keep))
    assert box.ok("cat /workspace/f") == "kept\n"
    size, _ = df_kib(box, "/workspace")
    assert size <= 32 * 1024
    box.close()
    assert st.delete(keep).status == 200
    assert nothing_left(st, keep)


def test_warm_pool_with_a_default_quota(conf_stack):
    st = conf_stack("diskpool", warm_pool="2", disk_mb_default="32")

    def pool_ready():
        names = os.listdir(os.path.join(st.var, "pool"))
        log = st.backend.read_log()
        return len(names) == 2 and all("warm pool: %s ready" % n in log for n in names)
    wait_for(pool_ready, timeout=30, what="pool of 2")
    assert len(loops_under(st)) == 2

    # the default (a 32 MiB quota) comes from the pool, with its disk
    pooled = st.create()
    assert pooled["resources"]["disk_mb"] == 32
    assert "session %s: sandbox" % pooled["session_id"] in st.backend.read_log()
    # another size starts cold with its own quota
    cold = st.create(resources={"disk_mb": 64})
    assert "session %s: sandbox" % cold["session_id"] not in st.backend.read_log()
    # with a default quota, a request cannot turn it off
    r = st.request("POST", "/v1/sessions", body={"resources": {"disk_mb": 0}})
    error_of(r, 400)
    for sess, mib in ((pooled, 32), (cold, 64)):
        box = Sandbox(endpoint_path(st, sess["session_id"]))
        size, _ = df_kib(box, "/workspace")
        assert (mib - 8) * 1024 <= size <= mib * 1024, (mib, size)
        rc, _, err = box.run("dd if=/dev/zero of=/workspace/big bs=1M count=%d" % (mib + 8))
        assert rc != 0 and "No space left on device" in err
        box.close()
        assert st.delete(sess["session_id"]).status == 200
        assert not any(sess["session_id"] in b for _, b in loops_under(st))
    wait_for(pool_ready, timeout=30, what="pool refilled")
    # at the end the fixture's SIGTERM removes the unclaimed pool
    # sandboxes, and must leave no disk behind either
