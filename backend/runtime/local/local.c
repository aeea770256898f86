/*
 * local.c - the "local" runtime driver: one runc container per
 * session, on this host.
 *
 * A session's files live in <state_dir>/sessions/<id>/:
 *
 *   config.json   the OCI bundle config (oci.c); the root filesystem is the
 *                 shared, read-only <images_dir>/<name>_<tag>/rootfs
 *   idmap         the slot of its user namespace range (idmap.c)
 *   workspace/    mounted at /workspace     (uid 1000, read-write)
 *   home/         mounted at /home/sandbox  (uid 1000, read-write)
 *   keys/         mounted at /etc/ssh/pico  (read-only: host key,
 *                 authorized_keys)
 *   ssh.sock      the session's endpoint
 *
 * With a disk quota (disk_mb > 0, disk.c) workspace/ and home/ are not
 * plain folders but the two folders of an ext4 image, disk.img, mounted at
 * disk/ only in the namespace runc starts the container from; disk.loop
 * holds the number of its loop device.
 *
 * The backend binds and listens on ssh.sock itself and hands the listening
 * descriptor to the container as fd 3 (`runc run --preserve-fds 1`), where
 * pico-init accepts on it and runs `sshd -i` per connection. So the
 * sandbox needs no network at all (its network namespace has only lo) and
 * the endpoint exists before the container does. nginx connects to it as
 * socket_group.
 *
 * runc runs with its own state root, <state_dir>/runc, so `runc list`
 * there is exactly this backend's sandboxes. Containers are named
 * "pico-<session id>" and their cgroups are /pico/<session id> in each v1
 * hierarchy (absolute, so they do not depend on the cgroup of whoever
 * started the backend).
 *
 * Every function is safe to call from many request threads at once: the
 * driver's only mutable state is the warm pool (under its mutex), runc is
 * started with posix_spawn (no fork of a threaded process) and only the
 * descriptors it needs (subprocess.c).
 *
 * Isolation tiers: by default (runc) every sandbox runs in a user
 * namespace of its own range (idmap.c; the folder's file "idmap" holds
 * the slot). With "isolation": "gvisor" runsc runs the same bundle
 * (state root <state_dir>/runsc, the folder's file "isolation" says so):
 * it cannot take our listener, so pico-init binds ep/ssh.sock itself and
 * that is the endpoint (endpoint.c, gvisor_endpoint).
 *
 * This file is the driver's entry (runtime_ops) and the cold create path;
 * local.h lists the other files of runtime/local/.
 *
 * The warm pool (warm_pool N > 0, off by default): a driver thread keeps N
 * sandboxes with the default image and limits started and ready in
 * <state_dir>/pool/pool-<node>.<n>/, container "pico-pool-<node>.<n>".
 * A matching create renames one folder to sessions/<id>/; the file
 * "container" in it (written before the container started) names the
 * container and cgroup, so destroy, alive and list keep working by session
 * id. docs/runtime-local.md, "The warm pool", has the invariants.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "runtime/local/disk.h"
#include "runtime/local/local.h"

int ensure_dir(const char *path, mode_t mode)
{
    struct stat st;

    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return -1;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

static runtime *local_open(const struct pico_config *cfg, char *err,
                           size_t errlen)
{
    runtime *rt = calloc(1, sizeof(*rt));
    char buf[4096], init[PATH_MAX], pool_dir[PICO_PATH_MAX];
    struct group gr, *grp = NULL;

    if (rt == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rt->tmp_size_mb = cfg->tmp_size_mb > 0 ? cfg->tmp_size_mb : 256;
    rt->ready_timeout_ms =
        cfg->ready_timeout_ms > 0 ? cfg->ready_timeout_ms : 5000;
    if (fmt_exact(rt->runc, sizeof(rt->runc), "%s", cfg->runc) < 0 ||
        fmt_exact(rt->runc_root, sizeof(rt->runc_root), "%s/runc",
                  cfg->state_dir) < 0 ||
        fmt_exact(rt->sessions_dir, sizeof(rt->sessions_dir), "%s/sessions",
                  cfg->state_dir) < 0 ||
        fmt_exact(rt->images_dir, sizeof(rt->images_dir), "%s",
                  cfg->images_dir) < 0 ||
        fmt_exact(rt->mkfs_ext4, sizeof(rt->mkfs_ext4), "%s", cfg->mkfs_ext4) <
            0 ||
        realpath(cfg->init_binary, init) == NULL ||
        fmt_exact(rt->init_binary, sizeof(rt->init_binary), "%s", init) < 0) {
        snprintf(err, errlen, "local runtime: init_binary %s: %s",
                 cfg->init_binary, strerror(errno));
        goto fail;
    }
    if (cfg->state_dir[0] != '/' || cfg->images_dir[0] != '/') {
        snprintf(err, errlen,
                 "local runtime: state_dir and images_dir must be absolute");
        goto fail;
    }
    if (access(rt->runc, X_OK) < 0 || access(rt->init_binary, X_OK) < 0) {
        snprintf(err, errlen, "local runtime: %s or %s is not executable",
                 rt->runc, rt->init_binary);
        goto fail;
    }
    if (ensure_dir(rt->runc_root, 0700) < 0 ||
        ensure_dir(rt->sessions_dir, 0750) < 0) {
        snprintf(err, errlen,
                 "local runtime: cannot create %s/{runc,"
                 "sessions}: %s",
                 cfg->state_dir, strerror(errno));
        goto fail;
    }
    if (cfg->socket_group[0] == '\0') {
        rt->socket_gid = 0;
    } else if (getgrnam_r(cfg->socket_group, &gr, buf, sizeof(buf), &grp) !=
                   0 ||
               grp == NULL) {
        snprintf(err, errlen, "local runtime: socket_group %s: no such group",
                 cfg->socket_group);
        goto fail;
    } else {
        rt->socket_gid = grp->gr_gid;
    }
    rt->gvisor = config_isolation_allowed(cfg, "gvisor");
    if (rt->gvisor &&
        (fmt_exact(rt->runsc, sizeof(rt->runsc), "%s", cfg->runsc) < 0 ||
         fmt_exact(rt->runsc_root, sizeof(rt->runsc_root), "%s/runsc",
                   cfg->state_dir) < 0 ||
         access(rt->runsc, X_OK) < 0 || ensure_dir(rt->runsc_root, 0700) < 0)) {
        snprintf(err, errlen,
                 "local runtime: isolation gvisor needs runsc (%s) and "
                 "%s/runsc: %s",
                 cfg->runsc, cfg->state_dir, strerror(errno));
        goto fail;
    }
    if (fmt_exact(pool_dir, sizeof(pool_dir), "%s/pool", cfg->state_dir) == 0) {
        const char *dirs[] = {rt->sessions_dir, pool_dir, NULL};
        /* a crash can leave no mount (they live in namespaces that died
         * with it) nor an idle loop device (autoclear); check anyway */
        int n = disk_reconcile(dirs);
        if (n > 0)
            log_warn("local runtime: released %d leftover disk mounts or "
                     "loop devices",
                     n);
        /* the ranges of the sandboxes reconcile and the pool will find */
        rt->slots = idmap_open(dirs);
    }
    if (rt->slots == NULL) {
        snprintf(err, errlen, "local runtime: out of memory");
        goto fail;
    }
    if (egress_open(rt, cfg, err, errlen) < 0)
        goto fail;
    if (pool_open(rt, cfg, err, errlen) < 0) {
        pool_close(rt);
        goto fail;
    }
    return rt;
fail:
    idmap_close(rt->slots);
    free(rt);
    return NULL;
}

static void local_close(runtime *rt)
{
    pool_close(rt);
    idmap_close(rt->slots);
    free(rt);
}

static int local_image_exists(runtime *rt, const char *image)
{
    char dir[PICO_PATH_MAX], path[PICO_PATH_MAX];
    struct stat st;

    if (image_dir(rt, image, dir, sizeof(dir)) < 0 ||
        fmt_exact(path, sizeof(path), "%s/.complete", dir) < 0 ||
        stat(path, &st) < 0)
        return 0;
    if (fmt_exact(path, sizeof(path), "%s/rootfs", dir) < 0 ||
        stat(path, &st) < 0)
        return 0;
    return S_ISDIR(st.st_mode);
}

/*
 * Starts the container from a private mount namespace of this thread
 * (disk.c): there the rootfs is mounted again, idmapped to the sandbox's
 * range (idmap.c), and with a disk quota the image is mounted too. The
 * container's mounts keep what they need; the namespace, and with it the
 * only other reference to those mounts, goes when the thread leaves it.
 */
static int start_container_ns(const runtime *rt, const session *s,
                              const session_paths *p, const char *rootfs,
                              int slot, int lfd, int pfd, char *err,
                              size_t errlen)
{
    disk_ns ns;
    int rc;

    /* gvisor: its gofer serves the rootfs, no user namespace of ours */
    if (p->gvisor && s->limits.disk_mb <= 0)
        return start_container(rt, p, lfd, pfd, err, errlen);
    if (disk_ns_enter(&ns, err, errlen) < 0)
        return -1;
    rc = p->gvisor ? 0 : idmap_mount_rootfs(rootfs, slot, err, errlen);
    if (rc == 0 && s->limits.disk_mb > 0)
        rc = disk_setup(rootfs, p, idmap_base(slot), err, errlen);
    if (rc == 0)
        rc = start_container(rt, p, lfd, pfd, err, errlen);
    (void)disk_ns_leave(&ns);
    return rc;
}

/*
 * Makes p->dir and starts the sandbox for s in it; returns once its sshd
 * answered, with the host key in hk. pool_name, when not NULL, goes into
 * <dir>/container before the container exists, so whatever happens later
 * (claim, crash) the folder names its container. On failure removes
 * everything it made.
 */
int start_sandbox(const runtime *rt, const session *s, const session_paths *p,
                  const char *pool_name, hostkey *hk, char *err, size_t errlen)
{
    char dir[PICO_PATH_MAX], rootfs[PICO_PATH_MAX], path[PICO_PATH_MAX],
        ignored[PICO_REASON_MAX];
    int lfd = -1, pfd = -1, probe = -1, started = 0, slot;

    if (check_sock_len(p->sock, err, errlen) < 0)
        return -1;
    if (image_dir(rt, s->image, dir, sizeof(dir)) < 0 ||
        fmt_exact(rootfs, sizeof(rootfs), "%s/rootfs", dir) < 0 ||
        !local_image_exists((runtime *)rt, s->image)) {
        snprintf(err, errlen, "image %s is not available", s->image);
        return -1;
    }
    /* an existing folder is not ours to clean up on failure */
    if (mkdir(p->dir, 0710) < 0) {
        snprintf(err, errlen, "session folder %s: %s", p->dir, strerror(errno));
        return -1;
    }
    /* recorded in the folder before anything runs under it */
    slot = p->gvisor ? -1 : idmap_take(rt->slots, p->dir);
    if (p->gvisor &&
        (fmt_exact(path, sizeof(path), "%s/" TIER_FILE, p->dir) < 0 ||
         write_file(path, "gvisor", 6, 0600) < 0)) {
        snprintf(err, errlen, "tier file: %s", strerror(errno));
        (void)remove_tree(p->dir);
        return -1;
    }
    if (!p->gvisor && slot < 0) {
        snprintf(err, errlen, "no free user namespace range: %s",
                 strerror(errno));
        (void)remove_tree(p->dir);
        return -1;
    }
    if (pool_name != NULL &&
        (fmt_exact(path, sizeof(path), "%s/" CONTAINER_FILE, p->dir) < 0 ||
         write_file(path, pool_name, strlen(pool_name), 0600) < 0)) {
        snprintf(err, errlen, "container file: %s", strerror(errno));
        goto fail;
    }
    if (strcmp(s->network, "egress") == 0 &&
        egress_setup(rt, s, p, err, errlen) < 0)
        goto fail;
    if (prepare_bundle(rt, s, p, rootfs, slot < 0 ? 0 : idmap_base(slot), hk,
                       err, errlen) < 0)
        goto fail;
    if (s->limits.disk_mb > 0 &&
        disk_make_image(rt->mkfs_ext4, p->image, s->limits.disk_mb, err,
                        errlen) < 0)
        goto fail;
    if (!p->gvisor) {
        lfd = sandbox_listen(rt, p->sock, err, errlen);
        if (lfd < 0 || (probe = probe_connect(p->sock, err, errlen)) < 0)
            goto fail;
        pfd = ports_listen(rt, p, err, errlen);
        if (pfd < 0)
            goto fail;
    }
    started = 1; /* from here a half-made container may exist */
    if (start_container_ns(rt, s, p, rootfs, slot, lfd, pfd, err, errlen) < 0)
        goto fail;
    /* the container holds the listeners now */
    if (lfd >= 0)
        close(lfd);
    if (pfd >= 0)
        close(pfd);
    lfd = pfd = -1;
    if (p->gvisor &&
        (probe = gvisor_endpoint(rt, p, rt->ready_timeout_ms, err, errlen)) < 0)
        goto fail;
    if (wait_banner(probe, rt->ready_timeout_ms, err, errlen) < 0)
        goto fail;
    close(probe);
    return 0;

fail:
    hostkey_wipe(hk);
    if (lfd >= 0)
        close(lfd);
    if (pfd >= 0)
        close(pfd);
    if (probe >= 0)
        close(probe);
    if (started)
        (void)runc_delete(rt, p, ignored, sizeof(ignored));
    disk_release(p);
    egress_teardown(p);
    if (remove_tree(p->dir) == 0)
        idmap_put(rt->slots, slot);
    return -1;
}

static int local_create(runtime *rt, session *s, char *err, size_t errlen)
{
    session_paths p;
    hostkey hk;
    int rc;

    if (paths_for(rt, s->id, &p) < 0) {
        snprintf(err, errlen, "invalid session id or state_dir too long");
        return -1;
    }
    if (strcmp(s->network, "egress") == 0 &&
        strcmp(s->isolation, "gvisor") == 0) {
        snprintf(err, errlen, "network egress needs isolation runc");
        return -1;
    }
    if (strcmp(s->isolation, "gvisor") == 0) {
        if (!rt->gvisor) {
            snprintf(err, errlen, "isolation gvisor is not enabled");
            return -1;
        }
        p.gvisor = 1;
        if (fmt_exact(p.sock, sizeof(p.sock), "%s/ssh.sock", p.ep) < 0) {
            snprintf(err, errlen, "state_dir too long");
            return -1;
        }
    } else if (strcmp(s->network, "egress") != 0) {
        /* pool sandboxes have no network; egress ones start cold */
        rc = pool_claim(rt, s, &p, err, errlen);
        if (rc <= 0)
            return rc;
    }
    if (start_sandbox(rt, s, &p, NULL, &hk, err, errlen) < 0)
        return -1;
    if (fmt_exact(s->endpoint, sizeof(s->endpoint), "unix:%s", p.sock) < 0 ||
        fmt_exact(s->host_key, sizeof(s->host_key), "%s", hk.public_key) < 0 ||
        fmt_exact(s->host_key_fpr, sizeof(s->host_key_fpr), "%s",
                  hk.fingerprint) < 0) {
        char ignored[PICO_REASON_MAX];
        hostkey_wipe(&hk);
        snprintf(err, errlen, "endpoint or host key too long");
        (void)destroy_paths(rt, &p, ignored, sizeof(ignored));
        return -1;
    }
    hostkey_wipe(&hk);
    return 0;
}

int destroy_paths(const runtime *rt, const session_paths *p, char *err,
                  size_t errlen)
{
    char why[PICO_REASON_MAX];
    pid_t pid = 0;
    int running = 0, slot = idmap_read_slot(p->dir);

    if (runc_state(rt, p, &pid, &running) == 1 && running == RUNC_PAUSED) {
        /* a frozen process takes no signal: thaw first, so the kill
         * lands and no frozen cgroup is left behind */
        if (runc_freeze(rt, p, "resume", why, sizeof(why)) < 0)
            log_warn("destroy %s: %s", p->cid, why);
    }
    if (running)
        kill_init(pid, p);
    /* stopped now (or gone, or runc state failed): delete --force removes
     * what is left, and is still right if the kill did not work */
    if (runc_delete(rt, p, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "cannot remove sandbox: %s", why);
        return -1;
    }
    disk_release(p);
    egress_teardown(p);
    /* Only once the container is gone: nothing in it can race the walk
     * through its files any more. */
    if (remove_tree(p->dir) < 0) {
        snprintf(err, errlen, "cannot remove %s: %s", p->dir, strerror(errno));
        return -1;
    }
    /* the range is free only once nothing of the sandbox is left */
    idmap_put(rt->slots, slot);
    return 0;
}

static int local_destroy(runtime *rt, const char *session_id, char *err,
                         size_t errlen)
{
    session_paths p;

    if (paths_for(rt, session_id, &p) < 0) {
        snprintf(err, errlen, "invalid session id");
        return -1;
    }
    return destroy_paths(rt, &p, err, errlen);
}

static int local_alive(runtime *rt, const char *session_id)
{
    session_paths p;
    pid_t pid;
    int running = 0, rc;

    if (paths_for(rt, session_id, &p) < 0)
        return -1;
    rc = runc_state(rt, &p, &pid, &running);
    return rc == 1 ? running != 0 : rc;
}

/* runtime_ops.pause and resume: `runc pause|resume` (runsc's too). */
static int local_freeze(runtime *rt, const char *session_id, const char *op,
                        char *err, size_t errlen)
{
    session_paths p;

    if (paths_for(rt, session_id, &p) < 0) {
        snprintf(err, errlen, "invalid session id");
        return -1;
    }
    return runc_freeze(rt, &p, op, err, errlen);
}

static int local_pause(runtime *rt, const char *session_id, char *err,
                       size_t errlen)
{
    return local_freeze(rt, session_id, "pause", err, errlen);
}

static int local_resume(runtime *rt, const char *session_id, char *err,
                        size_t errlen)
{
    return local_freeze(rt, session_id, "resume", err, errlen);
}

static int local_running(runtime *rt, const char *session_id)
{
    session_paths p;

    if (paths_for(rt, session_id, &p) < 0)
        return -1;
    /* runsc keeps no runc state.json to read: a gVisor sandbox costs one
     * `runsc state` a check, fewer than runc sandboxes are expected. */
    if (p.gvisor)
        return local_alive(rt, session_id);
    return runc_init_running(rt, &p);
}

/* Appends runsc's containers to *arr (runc's), so gvisor sandboxes are
 * listed and reconciled like the others. */
static int list_runsc(runtime *rt, json_t **arr, char *err, size_t errlen)
{
    const char *args[] = {"list", "--format", "json", NULL};
    char why[PICO_REASON_MAX];
    buf_t out = {0};
    json_t *more;

    if (run_runc(rt, 1, args, -1, -1, &out, why, sizeof(why)) != 0) {
        free(out.data);
        snprintf(err, errlen, "runsc list: %s", why);
        return -1;
    }
    more = out.data ? json_loads(out.data, JSON_DECODE_ANY, NULL) : NULL;
    free(out.data);
    if (!json_is_array(*arr)) {
        json_decref(*arr);
        *arr = json_array();
    }
    if (json_is_array(more))
        json_array_extend(*arr, more);
    json_decref(more);
    return 0;
}

/*
 * Reports the session id of every pico container under our runc root,
 * and of every session folder without one (left by a crash between
 * mkdir and runc run), so reconcile can destroy leftovers too.
 */
static int local_list(runtime *rt, runtime_list_cb cb, void *arg, char *err,
                      size_t errlen)
{
    const char *args[] = {"list", "--format", "json", NULL};
    char why[PICO_REASON_MAX], path[PICO_PATH_MAX];
    buf_t out = {0};
    json_t *arr, *c;
    struct dirent *e;
    size_t i;
    DIR *d;

    if (run_runc(rt, 0, args, -1, -1, &out, why, sizeof(why)) != 0) {
        free(out.data);
        snprintf(err, errlen, "runc list: %s", why);
        return -1;
    }
    arr = out.data ? json_loads(out.data, JSON_DECODE_ANY, NULL) : NULL;
    free(out.data);
    if (rt->gvisor && list_runsc(rt, &arr, err, errlen) < 0) {
        json_decref(arr);
        return -1;
    }
    /* runc prints "null" when there are no containers */
    json_array_foreach(arr, i, c)
    {
        const char *id = json_string_value(json_object_get(c, "id"));
        if (id && strncmp(id, CID_PREFIX, strlen(CID_PREFIX)) == 0 &&
            uuid_valid(id + strlen(CID_PREFIX)))
            cb(id + strlen(CID_PREFIX), arg);
    }

    d = opendir(rt->sessions_dir);
    if (d == NULL) {
        json_decref(arr);
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        int listed = 0;
        if (!uuid_valid(e->d_name) ||
            fmt_exact(path, sizeof(path), CID_PREFIX "%s", e->d_name) < 0)
            continue;
        json_array_foreach(arr, i, c)
        {
            const char *id = json_string_value(json_object_get(c, "id"));
            if (id && strcmp(id, path) == 0)
                listed = 1;
        }
        if (!listed)
            cb(e->d_name, arg);
    }
    closedir(d);
    json_decref(arr);
    return 0;
}

static int local_health(runtime *rt, char *err, size_t errlen)
{
    if (access(rt->runc, X_OK) < 0) {
        snprintf(err, errlen, "runc %s: %s", rt->runc, strerror(errno));
        return -1;
    }
    if (access(rt->init_binary, X_OK) < 0) {
        snprintf(err, errlen, "init_binary %s: %s", rt->init_binary,
                 strerror(errno));
        return -1;
    }
    if (access(rt->runc_root, W_OK) < 0 || access(rt->sessions_dir, W_OK) < 0) {
        snprintf(err, errlen, "state folder not writable: %s", strerror(errno));
        return -1;
    }
    return 0;
}

const runtime_ops runtime_local_ops = {
    .name = "local",
    .open = local_open,
    .close = local_close,
    .image_exists = local_image_exists,
    .create = local_create,
    .destroy = local_destroy,
    .destroy_max_ms = DESTROY_MAX_MS,
    .pause = local_pause,
    .resume = local_resume,
    .alive = local_alive,
    .running = local_running,
    .list = local_list,
    .health = local_health,
};
