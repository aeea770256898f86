/*
 * runtime_local.c - the "local" runtime driver: one runc container per
 * session, on this host.
 *
 * A session's files live in <state_dir>/sessions/<id>/:
 *
 *   config.json   the OCI bundle config (oci.c); the root filesystem is the
 *                 shared, read-only <images_dir>/<name>_<tag>/rootfs
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
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include "core/config.h"
#include "runtime/local/disk.h"
#include "runtime/hostkey.h"
#include "runtime/local/oci.h"
#include "runtime/local/runtime_local.h"
#include "runtime/local/subprocess.h"
#include "core/util.h"

#define SANDBOX_UID 1000
#define SANDBOX_GID 1000
#define CID_PREFIX "pico-"
#define CGROUP_PARENT "/pico"
#define RUNC_TIMEOUT_MS 30000 /* runc itself never takes this long */
#define POOL_PREFIX "pool-"
#define CONTAINER_FILE "container" /* names a pooled session's container */
#define DISK_RELEASE_MS 2000 /* a dead sandbox's loop device frees by then */

/* A started, ready pool sandbox nobody has claimed yet. */
typedef struct {
    char name[96]; /* folder under pool/, container CID_PREFIX + name */
    char host_key[PICO_HOSTKEY_MAX + 1];
    char host_key_fpr[PICO_FPR_MAX + 1];
    pid_t init; /* its PID 1 on the host, for the hostname at claim */
} pool_entry;

typedef struct {
    int size;                /* warm_pool; 0 = no pool, nothing below is used */
    char dir[PICO_PATH_MAX]; /* <state_dir>/pool */
    char prefix[96];         /* "pool-<node>.": this node's entries */
    char image[128];
    session_limits limits;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pool_entry *ready; /* size slots, nready used */
    int nready, stop, started;
    unsigned long long seq;
    pthread_t thread;
} warm_pool;

struct runtime {
    char runc[PICO_PATH_MAX];
    char runc_root[PICO_PATH_MAX];    /* <state_dir>/runc */
    char sessions_dir[PICO_PATH_MAX]; /* <state_dir>/sessions */
    char images_dir[PICO_PATH_MAX];
    char init_binary[PICO_PATH_MAX];
    char mkfs_ext4[PICO_PATH_MAX];
    gid_t socket_gid;
    int tmp_size_mb;
    int ready_timeout_ms;
    warm_pool pool;
};

/* ---------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------- */

/* snprintf that treats truncation as an error: every path here must fit
 * exactly or not be used at all. */
static int fmt(char *buf, size_t len, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static int fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    int n;

    va_start(ap, f);
    n = vsnprintf(buf, len, f, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < len ? 0 : -1;
}

/* "name[:tag]" (no tag = "latest") with both parts made of [a-z0-9._-],
 * no "..": it becomes the folder name <name>_<tag>. */
static int image_dir(const runtime *rt, const char *image, char *buf,
                     size_t len)
{
    const char *colon = strchr(image, ':');
    const char *tag = colon ? colon + 1 : "latest";
    size_t nlen = colon ? (size_t)(colon - image) : strlen(image);
    const char *p;

    if (nlen == 0 || tag[0] == '\0' || strstr(image, "..") != NULL)
        return -1;
    for (p = image; *p; p++) {
        if (p == colon)
            continue;
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return -1;
    }
    return fmt(buf, len, "%s/%.*s_%s", rt->images_dir, (int)nlen, image, tag);
}

static int write_file(const char *path, const char *data, size_t len,
                      mode_t mode)
{
    int fd =
        open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    size_t off = 0;

    if (fd < 0)
        return -1;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    return close(fd);
}

/* ---------------------------------------------------------------------
 * Running runc
 * ------------------------------------------------------------------- */

/*
 * Runs `runc --root <runc_root> <args...>` through subprocess.c (no
 * shell; nothing of ours but keep_fd, which, if >= 0, becomes runc's fd
 * 3). stdout is captured into out when out is not NULL. Returns runc's
 * exit status (0 = success), or -1 when runc could not be run or timed
 * out; errbuf says why: the last line of runc's stderr (logrus prints its
 * warnings before the error) or "runc <args[0]> failed (status N)".
 *
 * runc run --detach leaves the container holding runc's stdio until
 * pico-init swaps it for /dev/null, so subprocess.c tells the end of runc
 * by its pidfd, never by EOF on the pipes.
 */
static int run_runc(const runtime *rt, const char *const *args, int keep_fd,
                    buf_t *out, char *errbuf, size_t errlen)
{
    const char *argv[16];
    char what[64];
    subprocess sp = {.argv = argv,
                     .fd3 = keep_fd,
                     .out = out,
                     .timeout_ms = RUNC_TIMEOUT_MS,
                     .name = "runc",
                     .what = what};
    int n = 0;

    argv[n++] = rt->runc;
    argv[n++] = "--root";
    argv[n++] = rt->runc_root;
    for (int i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    snprintf(what, sizeof(what), "runc %s", args[0]);
    return subprocess_run(&sp, errbuf, errlen);
}

/* `runc delete --force` kills the container if it runs and removes its
 * state and cgroups; a container that does not exist is success. */
static int runc_delete(const runtime *rt, const char *cid, char *err,
                       size_t errlen)
{
    const char *args[] = {"delete", "--force", cid, NULL};

    return run_runc(rt, args, -1, NULL, err, errlen) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------------
 * Session folder
 * ------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int type,
                    struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
    return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* rm -rf without a shell: depth first, never following symlinks (the
 * sandbox user controls what is in workspace/ and home/) and never
 * crossing into another file system. */
static int remove_tree(const char *path)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static int make_dir(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    if (mkdir(path, mode) < 0)
        return -1;
    /* mkdir's mode is filtered by the umask; say exactly what we mean */
    if (chmod(path, mode) < 0 || chown(path, uid, gid) < 0)
        return -1;
    return 0;
}

/* The image's /etc/skel goes into the fresh home, so shells get the
 * usual prompt and aliases. Plain files only; a failure is not fatal. */
static void copy_skel(const char *rootfs, const char *home)
{
    char src[PICO_PATH_MAX], dst[PICO_PATH_MAX], data[16384];
    struct dirent *e;
    DIR *d;

    if (fmt(src, sizeof(src), "%s/etc/skel", rootfs) < 0 ||
        (d = opendir(src)) == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        int fd;
        ssize_t n;

        if (e->d_type != DT_REG ||
            fmt(src, sizeof(src), "%s/etc/skel/%s", rootfs, e->d_name) < 0 ||
            fmt(dst, sizeof(dst), "%s/%s", home, e->d_name) < 0)
            continue;
        fd = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        n = read(fd, data, sizeof(data));
        close(fd);
        if (n >= 0 && (size_t)n < sizeof(data) &&
            write_file(dst, data, (size_t)n, 0644) == 0 &&
            chown(dst, SANDBOX_UID, SANDBOX_GID) < 0)
            (void)unlink(dst);
    }
    closedir(d);
}

/* ---------------------------------------------------------------------
 * The endpoint
 * ------------------------------------------------------------------- */

/* Binds and listens on path, reachable by socket_group (nginx) and root
 * only. */
static int listen_unix(const runtime *rt, const char *path, char *err,
                       size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen,
                 "socket path too long (%zu bytes, the limit is %zu): "
                 "choose a shorter state_dir",
                 strlen(path), sizeof(sa.sun_path) - 1);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    /* nobody can connect before listen(), so fixing the mode after bind
     * is not a race */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        chown(path, 0, rt->socket_gid) < 0 || chmod(path, 0660) < 0 ||
        listen(fd, 128) < 0) {
        snprintf(err, errlen, "session socket %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Connects to the session's own listener before the container exists:
 * the connection waits in the backlog, so pico-init takes it the moment it
 * starts and sshd comes up while runc is still finishing. */
static int probe_connect(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        snprintf(err, errlen, "session socket: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The sandbox is ready when its sshd sends the SSH banner on the probe
 * connection: that proves pico-init accepts, sshd starts and its host key
 * and configuration load. */
static int wait_banner(int fd, int timeout_ms, char *err, size_t errlen)
{
    long long deadline = mono_ms() + timeout_ms;
    char buf[256];
    size_t got = 0;

    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        long long left = deadline - mono_ms();
        ssize_t n;

        if (left <= 0 || poll(&p, 1, (int)left) == 0) {
            snprintf(err, errlen, "sandbox sshd did not answer within %d ms",
                     timeout_ms);
            return -1;
        }
        n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0) {
            snprintf(err, errlen,
                     "sandbox sshd closed the connection before its banner");
            return -1;
        }
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "SSH-2.0-") != NULL)
            return 0;
        if (got == sizeof(buf) - 1) {
            snprintf(err, errlen, "sandbox sshd sent no SSH banner");
            return -1;
        }
    }
}

/* ---------------------------------------------------------------------
 * runtime_ops
 * ------------------------------------------------------------------- */

static int pool_open(runtime *rt, const struct pico_config *cfg, char *err,
                     size_t errlen);
static void pool_close(runtime *rt);

static int ensure_dir(const char *path, mode_t mode)
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
    if (fmt(rt->runc, sizeof(rt->runc), "%s", cfg->runc) < 0 ||
        fmt(rt->runc_root, sizeof(rt->runc_root), "%s/runc", cfg->state_dir) <
            0 ||
        fmt(rt->sessions_dir, sizeof(rt->sessions_dir), "%s/sessions",
            cfg->state_dir) < 0 ||
        fmt(rt->images_dir, sizeof(rt->images_dir), "%s", cfg->images_dir) <
            0 ||
        fmt(rt->mkfs_ext4, sizeof(rt->mkfs_ext4), "%s", cfg->mkfs_ext4) < 0 ||
        realpath(cfg->init_binary, init) == NULL ||
        fmt(rt->init_binary, sizeof(rt->init_binary), "%s", init) < 0) {
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
    if (fmt(pool_dir, sizeof(pool_dir), "%s/pool", cfg->state_dir) == 0) {
        const char *dirs[] = {rt->sessions_dir, pool_dir, NULL};
        /* a crash can leave no mount (they live in namespaces that died
         * with it) nor an idle loop device (autoclear); check anyway */
        int n = disk_reconcile(dirs);
        if (n > 0)
            log_warn("local runtime: released %d leftover disk mounts or "
                     "loop devices",
                     n);
    }
    if (pool_open(rt, cfg, err, errlen) < 0) {
        pool_close(rt);
        goto fail;
    }
    return rt;
fail:
    free(rt);
    return NULL;
}

static void local_close(runtime *rt)
{
    pool_close(rt);
    free(rt);
}

static int local_image_exists(runtime *rt, const char *image)
{
    char dir[PICO_PATH_MAX], path[PICO_PATH_MAX];
    struct stat st;

    if (image_dir(rt, image, dir, sizeof(dir)) < 0 ||
        fmt(path, sizeof(path), "%s/.complete", dir) < 0 || stat(path, &st) < 0)
        return 0;
    if (fmt(path, sizeof(path), "%s/rootfs", dir) < 0 || stat(path, &st) < 0)
        return 0;
    return S_ISDIR(st.st_mode);
}

typedef struct {
    char dir[PICO_PATH_MAX];
    char workspace[PICO_PATH_MAX];
    char home[PICO_PATH_MAX];
    char keys[PICO_PATH_MAX];
    char sock[PICO_PATH_MAX];
    char config[PICO_PATH_MAX];
    char disk[PICO_PATH_MAX];  /* mount point of the quota image */
    char image[PICO_PATH_MAX]; /* the quota image, disk.img */
    char loop[PICO_PATH_MAX];  /* disk.loop: its loop device's number */
    char cid[128];
    char cgroup[160];
} session_paths;

/* Paths of the sandbox in <parent>/<folder> whose container and cgroup
 * are named after `name` (the session id, or a pool name). */
static int paths_in(const char *parent, const char *folder, const char *name,
                    session_paths *p)
{
    return fmt(p->dir, sizeof(p->dir), "%s/%s", parent, folder) ||
                   fmt(p->workspace, sizeof(p->workspace), "%s/workspace",
                       p->dir) ||
                   fmt(p->home, sizeof(p->home), "%s/home", p->dir) ||
                   fmt(p->keys, sizeof(p->keys), "%s/keys", p->dir) ||
                   fmt(p->sock, sizeof(p->sock), "%s/ssh.sock", p->dir) ||
                   fmt(p->config, sizeof(p->config), "%s/config.json",
                       p->dir) ||
                   fmt(p->disk, sizeof(p->disk), "%s/disk", p->dir) ||
                   fmt(p->image, sizeof(p->image), "%s/disk.img", p->dir) ||
                   fmt(p->loop, sizeof(p->loop), "%s/disk.loop", p->dir) ||
                   fmt(p->cid, sizeof(p->cid), CID_PREFIX "%s", name) ||
                   fmt(p->cgroup, sizeof(p->cgroup), CGROUP_PARENT "/%s", name)
               ? -1
               : 0;
}

/* 1 when name is "pool-" plus [A-Za-z0-9_.-]: safe in paths, in runc's
 * container ids and on its command line. */
static int pool_name_valid(const char *name)
{
    if (strncmp(name, POOL_PREFIX, strlen(POOL_PREFIX)) != 0 ||
        strlen(name) >= sizeof(((pool_entry *)0)->name) ||
        strstr(name, "..") != NULL)
        return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' || *c == '-'))
            return 0;
    return 1;
}

/* The container named by <dir>/container (a claimed pool sandbox) into
 * name; 0 when there is none (a cold-started session). */
static int read_container_file(const char *dir, char *name, size_t len)
{
    char path[PICO_PATH_MAX];
    ssize_t n;
    int fd;

    if (fmt(path, sizeof(path), "%s/" CONTAINER_FILE, dir) < 0)
        return 0;
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, name, len - 1);
    close(fd);
    if (n <= 0)
        return 0;
    name[n] = '\0';
    return pool_name_valid(name);
}

static int paths_for(const runtime *rt, const char *id, session_paths *p)
{
    char dir[PICO_PATH_MAX], name[sizeof(((pool_entry *)0)->name)];

    /* the core hands us validated UUIDs; check again, since the id becomes
     * part of paths and of runc's command line */
    if (id == NULL || !uuid_valid(id) ||
        fmt(dir, sizeof(dir), "%s/%s", rt->sessions_dir, id) < 0)
        return -1;
    if (read_container_file(dir, name, sizeof(name)))
        return paths_in(rt->sessions_dir, id, name, p);
    return paths_in(rt->sessions_dir, id, id, p);
}

/* The folders, keys and config of a new session, in its just-made
 * folder p->dir. */
static int prepare_bundle(const runtime *rt, const session *s,
                          const session_paths *p, const char *rootfs,
                          hostkey *hk, char *err, size_t errlen)
{
    char path[PICO_PATH_MAX], workspace[PICO_PATH_MAX], home[PICO_PATH_MAX],
        *config;
    int disk = s->limits.disk_mb > 0, rc;
    oci_params op;

    /* socket_group (nginx) may pass through to ssh.sock, but must not read
     * the user's files: workspace and home are the user's alone. With a
     * disk quota they are made in the image once it is mounted. */
    if (chown(p->dir, 0, rt->socket_gid) < 0 || chmod(p->dir, 0710) < 0 ||
        (!disk && make_dir(p->workspace, 0700, SANDBOX_UID, SANDBOX_GID) < 0) ||
        (!disk && make_dir(p->home, 0700, SANDBOX_UID, SANDBOX_GID) < 0) ||
        (disk && make_dir(p->disk, 0700, 0, 0) < 0) ||
        make_dir(p->keys, 0755, 0, 0) < 0) {
        snprintf(err, errlen, "session folders: %s", strerror(errno));
        return -1;
    }
    if (!disk)
        copy_skel(rootfs, p->home);
    /* with a quota the folders are in the image (paths valid only in the
     * namespace it is mounted in, the one runc starts from) */
    if (fmt(workspace, sizeof(workspace), "%s", p->workspace) < 0 ||
        fmt(home, sizeof(home), "%s", p->home) < 0 ||
        (disk &&
         (fmt(workspace, sizeof(workspace), "%s/workspace", p->disk) < 0 ||
          fmt(home, sizeof(home), "%s/home", p->disk) < 0))) {
        snprintf(err, errlen, "session folders: path too long");
        return -1;
    }

    if (hostkey_generate(hk, err, errlen) < 0)
        return -1;
    if (fmt(path, sizeof(path), "%s/ssh_host_ed25519_key", p->keys) < 0 ||
        write_file(path, hk->private_key, strlen(hk->private_key), 0600) < 0) {
        snprintf(err, errlen, "host key file: %s", strerror(errno));
        return -1;
    }
    if (s->ssh_public_key[0] != '\0') {
        char line[PICO_PUBKEY_MAX + 2];
        /* one key, one line: a newline inside would add more keys */
        size_t n = strcspn(s->ssh_public_key, "\r\n");
        memcpy(line, s->ssh_public_key, n);
        line[n++] = '\n';
        if (fmt(path, sizeof(path), "%s/authorized_keys", p->keys) < 0 ||
            write_file(path, line, n, 0644) < 0) {
            snprintf(err, errlen, "authorized_keys: %s", strerror(errno));
            return -1;
        }
    }

    op = (oci_params){
        .rootfs = rootfs,
        .hostname = s->sandbox_name[0] ? s->sandbox_name : "sandbox",
        .init_binary = rt->init_binary,
        .workspace = workspace,
        .home = home,
        .keys = p->keys,
        .cgroups_path = p->cgroup,
        .memory_mb = s->limits.memory_mb,
        .cpu_millicores = s->limits.cpu_millicores,
        .pids = s->limits.pids,
        .tmp_size_mb = rt->tmp_size_mb,
    };
    config = oci_config_json(&op);
    if (config == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rc = write_file(p->config, config, strlen(config), 0600);
    free(config);
    if (rc < 0)
        snprintf(err, errlen, "config.json: %s", strerror(errno));
    return rc;
}

static int start_container(const runtime *rt, const session_paths *p, int lfd,
                           char *err, size_t errlen)
{
    const char *args[] = {"run",      "--detach", "--preserve-fds", "1",
                          "--bundle", p->dir,     p->cid,           NULL};
    char why[PICO_REASON_MAX];

    if (run_runc(rt, args, lfd, NULL, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "sandbox failed to start: %s", why);
        return -1;
    }
    return 0;
}

/* With a quota: the image mounted at p->disk (in the calling thread's
 * private namespace), its number in disk.loop, the user's folders in it. */
static int disk_setup(const char *rootfs, const session_paths *p, char *err,
                      size_t errlen)
{
    char num[16], ws[PICO_PATH_MAX], home[PICO_PATH_MAX];
    int nr = -1;

    if (disk_attach_mount(p->image, p->disk, &nr, err, errlen) < 0)
        return -1;
    snprintf(num, sizeof(num), "%d", nr);
    if (write_file(p->loop, num, strlen(num), 0600) < 0 ||
        fmt(ws, sizeof(ws), "%s/workspace", p->disk) < 0 ||
        fmt(home, sizeof(home), "%s/home", p->disk) < 0 ||
        make_dir(ws, 0700, SANDBOX_UID, SANDBOX_GID) < 0 ||
        make_dir(home, 0700, SANDBOX_UID, SANDBOX_GID) < 0) {
        snprintf(err, errlen, "disk folders: %s", strerror(errno));
        return -1;
    }
    copy_skel(rootfs, home);
    return 0;
}

/*
 * Starts the container. With a disk quota this thread first moves into a
 * private mount namespace, mounts the image there and starts runc from
 * it: the container's bind mounts keep the file system; the namespace,
 * and with it the only other mount, goes when the thread leaves it.
 */
static int start_container_disk(const runtime *rt, const session *s,
                                const session_paths *p, const char *rootfs,
                                int lfd, char *err, size_t errlen)
{
    disk_ns ns;
    int rc;

    if (s->limits.disk_mb <= 0)
        return start_container(rt, p, lfd, err, errlen);
    if (disk_ns_enter(&ns, err, errlen) < 0)
        return -1;
    rc = disk_setup(rootfs, p, err, errlen);
    if (rc == 0)
        rc = start_container(rt, p, lfd, err, errlen);
    (void)disk_ns_leave(&ns);
    return rc;
}

/* Waits (bounded) until the session's quota image, if any, is off its
 * loop device: the sandbox is gone, so its mount namespace was the last
 * user. After this a delete has left no loop device behind. */
static void disk_release(const session_paths *p)
{
    char num[16];
    long long nr;
    ssize_t n;
    int fd = open(p->loop, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return;
    n = read(fd, num, sizeof(num) - 1);
    close(fd);
    if (n <= 0)
        return;
    num[n] = '\0';
    if (parse_ll(num, &nr) < 0 || nr < 0 || nr > 1 << 20)
        return;
    if (disk_wait_released((int)nr, p->image, DISK_RELEASE_MS) < 0)
        log_warn("disk: loop%lld still holds %s; it detaches when its last "
                 "user goes",
                 nr, p->image);
}

static int destroy_paths(const runtime *rt, const session_paths *p, char *err,
                         size_t errlen);
static int pool_claim(runtime *rt, session *s, const session_paths *p,
                      char *err, size_t errlen);

static int check_sock_len(const char *sock, char *err, size_t errlen)
{
    if (strlen(sock) < sizeof(((struct sockaddr_un *)0)->sun_path))
        return 0;
    snprintf(err, errlen,
             "session socket path %s is %zu bytes, over the unix "
             "socket limit of 107: choose a shorter state_dir",
             sock, strlen(sock));
    return -1;
}

/*
 * Makes p->dir and starts the sandbox for s in it; returns once its sshd
 * answered, with the host key in hk. pool_name, when not NULL, goes into
 * <dir>/container before the container exists, so whatever happens later
 * (claim, crash) the folder names its container. On failure removes
 * everything it made.
 */
static int start_sandbox(const runtime *rt, const session *s,
                         const session_paths *p, const char *pool_name,
                         hostkey *hk, char *err, size_t errlen)
{
    char dir[PICO_PATH_MAX], rootfs[PICO_PATH_MAX], path[PICO_PATH_MAX],
        ignored[PICO_REASON_MAX];
    int lfd = -1, probe = -1, started = 0;

    if (check_sock_len(p->sock, err, errlen) < 0)
        return -1;
    if (image_dir(rt, s->image, dir, sizeof(dir)) < 0 ||
        fmt(rootfs, sizeof(rootfs), "%s/rootfs", dir) < 0 ||
        !local_image_exists((runtime *)rt, s->image)) {
        snprintf(err, errlen, "image %s is not available", s->image);
        return -1;
    }
    /* an existing folder is not ours to clean up on failure */
    if (mkdir(p->dir, 0710) < 0) {
        snprintf(err, errlen, "session folder %s: %s", p->dir, strerror(errno));
        return -1;
    }
    if (pool_name != NULL &&
        (fmt(path, sizeof(path), "%s/" CONTAINER_FILE, p->dir) < 0 ||
         write_file(path, pool_name, strlen(pool_name), 0600) < 0)) {
        snprintf(err, errlen, "container file: %s", strerror(errno));
        goto fail;
    }
    if (prepare_bundle(rt, s, p, rootfs, hk, err, errlen) < 0)
        goto fail;
    if (s->limits.disk_mb > 0 &&
        disk_make_image(rt->mkfs_ext4, p->image, s->limits.disk_mb, err,
                        errlen) < 0)
        goto fail;
    lfd = listen_unix(rt, p->sock, err, errlen);
    if (lfd < 0 || (probe = probe_connect(p->sock, err, errlen)) < 0)
        goto fail;
    started = 1; /* from here a half-made container may exist */
    if (start_container_disk(rt, s, p, rootfs, lfd, err, errlen) < 0)
        goto fail;
    /* the container holds the listener now */
    close(lfd);
    lfd = -1;
    if (wait_banner(probe, rt->ready_timeout_ms, err, errlen) < 0)
        goto fail;
    close(probe);
    return 0;

fail:
    hostkey_wipe(hk);
    if (lfd >= 0)
        close(lfd);
    if (probe >= 0)
        close(probe);
    if (started)
        (void)runc_delete(rt, p->cid, ignored, sizeof(ignored));
    disk_release(p);
    (void)remove_tree(p->dir);
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
    rc = pool_claim(rt, s, &p, err, errlen);
    if (rc <= 0)
        return rc;
    if (start_sandbox(rt, s, &p, NULL, &hk, err, errlen) < 0)
        return -1;
    if (fmt(s->endpoint, sizeof(s->endpoint), "unix:%s", p.sock) < 0 ||
        fmt(s->host_key, sizeof(s->host_key), "%s", hk.public_key) < 0 ||
        fmt(s->host_key_fpr, sizeof(s->host_key_fpr), "%s", hk.fingerprint) <
            0) {
        char ignored[PICO_REASON_MAX];
        hostkey_wipe(&hk);
        snprintf(err, errlen, "endpoint or host key too long");
        (void)destroy_paths(rt, &p, ignored, sizeof(ignored));
        return -1;
    }
    hostkey_wipe(&hk);
    return 0;
}

/*
 * `runc state`: 1 with the init pid and whether it runs when the container
 * exists, 0 when it does not, -1 when runc fails otherwise.
 */
static int runc_state(const runtime *rt, const session_paths *p, pid_t *pid,
                      int *running)
{
    const char *args[] = {"state", p->cid, NULL};
    char why[PICO_REASON_MAX];
    buf_t out = {0};
    json_t *st;
    const char *status;

    if (run_runc(rt, args, -1, &out, why, sizeof(why)) != 0) {
        char statedir[PICO_PATH_MAX];
        free(out.data);
        /* runc fails on a missing container; tell that from a broken runc
         * by its state folder */
        if (fmt(statedir, sizeof(statedir), "%s/%s", rt->runc_root, p->cid) < 0)
            return -1;
        return access(statedir, F_OK) < 0 && errno == ENOENT ? 0 : -1;
    }
    st = out.data ? json_loads(out.data, 0, NULL) : NULL;
    free(out.data);
    if (st == NULL)
        return -1;
    status = json_string_value(json_object_get(st, "status"));
    *running = status != NULL && strcmp(status, "running") == 0;
    *pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
    json_decref(st);
    return 1;
}

/* 1 when pid is in the sandbox's own pids cgroup, so it is its init and
 * not some process that reused a dead init's pid. */
static int pid_in_sandbox(pid_t pid, const session_paths *p)
{
    char path[64], text[4096], want[200];
    ssize_t n;
    int fd;

    if (fmt(path, sizeof(path), "/proc/%d/cgroup", (int)pid) < 0 ||
        fmt(want, sizeof(want), ":%s\n", p->cgroup) < 0)
        return 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    return strstr(text, want) != NULL;
}

/*
 * Kills the sandbox's init (the kernel then kills everything in its pid
 * namespace) and waits for it to be gone. `runc delete --force` would do
 * the same but polls in 100 ms steps; a pidfd tells us at once. The pidfd
 * pins the process, so checking its cgroup after opening it makes sure we
 * signal the sandbox and nothing else.
 */
static void kill_init(pid_t pid, const session_paths *p)
{
    struct pollfd pf;
    int fd;

    if (pid <= 1)
        return;
    fd = (int)pidfd_open(pid, 0);
    if (fd < 0)
        return;
    if (pid_in_sandbox(pid, p) &&
        pidfd_send_signal(fd, SIGKILL, NULL, 0) == 0) {
        pf.fd = fd;
        pf.events = POLLIN;
        (void)poll(&pf, 1, 10000);
    }
    close(fd);
}

static int destroy_paths(const runtime *rt, const session_paths *p, char *err,
                         size_t errlen)
{
    char why[PICO_REASON_MAX];
    pid_t pid = 0;
    int running = 0;

    if (runc_state(rt, p, &pid, &running) == 1 && running)
        kill_init(pid, p);
    /* stopped now (or gone, or runc state failed): delete --force removes
     * what is left, and is still right if the kill did not work */
    if (runc_delete(rt, p->cid, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "cannot remove sandbox: %s", why);
        return -1;
    }
    disk_release(p);
    /* Only once the container is gone: nothing in it can race the walk
     * through its files any more. */
    if (remove_tree(p->dir) < 0) {
        snprintf(err, errlen, "cannot remove %s: %s", p->dir, strerror(errno));
        return -1;
    }
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
    return rc == 1 ? running : rc;
}

/* ---------------------------------------------------------------------
 * The warm pool
 * ------------------------------------------------------------------- */

static int pool_destroy(const runtime *rt, const char *name)
{
    char why[PICO_REASON_MAX] = "path too long";
    session_paths p;

    if (paths_in(rt->pool.dir, name, name, &p) < 0 ||
        destroy_paths(rt, &p, why, sizeof(why)) < 0) {
        log_error("warm pool: cannot remove %s: %s", name, why);
        return -1;
    }
    return 0;
}

/* Starts one pool sandbox: default image and limits, no user key. */
static int pool_start_one(runtime *rt, pool_entry *e, char *err, size_t errlen)
{
    session s;
    session_paths p;
    hostkey hk;
    int rc, running = 0;

    memset(&s, 0, sizeof(s));
    snprintf(s.image, sizeof(s.image), "%s", rt->pool.image);
    s.limits = rt->pool.limits;
    if (fmt(e->name, sizeof(e->name), "%s%llx", rt->pool.prefix,
            rt->pool.seq++) < 0 ||
        paths_in(rt->pool.dir, e->name, e->name, &p) < 0) {
        snprintf(err, errlen, "pool path too long");
        return -1;
    }
    if (start_sandbox(rt, &s, &p, e->name, &hk, err, errlen) < 0)
        return -1;
    rc = fmt(e->host_key, sizeof(e->host_key), "%s", hk.public_key) |
         fmt(e->host_key_fpr, sizeof(e->host_key_fpr), "%s", hk.fingerprint);
    hostkey_wipe(&hk);
    if (rc < 0 || runc_state(rt, &p, &e->init, &running) != 1 || !running) {
        (void)pool_destroy(rt, e->name);
        snprintf(err, errlen, "pool sandbox %s: no host key or init", e->name);
        return -1;
    }
    return 0;
}

/* Waits up to ms on the pool's condition; called with the mutex held. */
static void pool_wait(warm_pool *wp, int ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    (void)pthread_cond_timedwait(&wp->cv, &wp->mu, &ts);
}

/* The refill thread: tops the pool up whenever a claim took one. Requests
 * never start pool sandboxes themselves, so none waits for a refill. */
static void *pool_thread(void *arg)
{
    runtime *rt = arg;
    warm_pool *wp = &rt->pool;
    char err[PICO_REASON_MAX];
    pool_entry e;

    pthread_mutex_lock(&wp->mu);
    while (!wp->stop) {
        int rc;
        if (wp->nready >= wp->size) {
            pthread_cond_wait(&wp->cv, &wp->mu);
            continue;
        }
        pthread_mutex_unlock(&wp->mu);
        rc = pool_start_one(rt, &e, err, sizeof(err));
        pthread_mutex_lock(&wp->mu);
        if (rc < 0) {
            log_error("warm pool: %s", err);
            pool_wait(wp, 1000); /* do not spin on a broken runtime */
        } else if (wp->stop) {
            pthread_mutex_unlock(&wp->mu);
            (void)pool_destroy(rt, e.name);
            pthread_mutex_lock(&wp->mu);
        } else {
            wp->ready[wp->nready++] = e;
            log_info("warm pool: %s ready", e.name);
        }
    }
    pthread_mutex_unlock(&wp->mu);
    return NULL;
}

/* 1 when s asks for what pool sandboxes are: the default image and
 * limits (the user's key is added at claim). */
static int pool_fits(const runtime *rt, const session *s)
{
    const session_limits *a = &s->limits, *b = &rt->pool.limits;

    return rt->pool.size > 0 && strcmp(s->image, rt->pool.image) == 0 &&
           a->memory_mb == b->memory_mb &&
           a->cpu_millicores == b->cpu_millicores && a->pids == b->pids &&
           a->disk_mb == b->disk_mb;
}

/* The oldest ready entry, if any; wakes the refill thread. */
static int pool_take(runtime *rt, pool_entry *e)
{
    warm_pool *wp = &rt->pool;
    int got = 0;

    pthread_mutex_lock(&wp->mu);
    if (wp->nready > 0) {
        *e = wp->ready[0];
        memmove(wp->ready, wp->ready + 1,
                (size_t)(wp->nready - 1) * sizeof(*e));
        wp->nready--;
        got = 1;
        pthread_cond_signal(&wp->cv);
    }
    pthread_mutex_unlock(&wp->mu);
    return got;
}

static int write_authorized_keys(const char *keys, const char *pubkey)
{
    char path[PICO_PATH_MAX], line[PICO_PUBKEY_MAX + 2];
    /* one key, one line: a newline inside would add more keys */
    size_t n = strcspn(pubkey, "\r\n");

    memcpy(line, pubkey, n);
    line[n++] = '\n';
    if (fmt(path, sizeof(path), "%s/authorized_keys", keys) < 0)
        return -1;
    return write_file(path, line, n, 0644);
}

/*
 * Gives a claimed sandbox its session's hostname (a cold one gets it from
 * config.json): this thread joins the sandbox's UTS namespace through a
 * pidfd of its init (checked to be that sandbox's, by cgroup, as in
 * kill_init), sets the name and goes back. Only this thread's UTS
 * namespace changes, for microseconds; nothing in the backend reads it.
 */
static int set_hostname(pid_t init, const session_paths *p, const char *name)
{
    int self = open("/proc/thread-self/ns/uts", O_RDONLY | O_CLOEXEC);
    int fd = (int)pidfd_open(init, 0), rc = -1;

    if (self >= 0 && fd >= 0 && pid_in_sandbox(init, p) &&
        setns(fd, CLONE_NEWUTS) == 0) {
        rc = sethostname(name, strlen(name));
        if (setns(self, CLONE_NEWUTS) < 0)
            log_error("warm pool: cannot return to the backend's UTS "
                      "namespace: %s",
                      strerror(errno));
    }
    if (fd >= 0)
        close(fd);
    if (self >= 0)
        close(self);
    return rc;
}

/*
 * Serves s from the pool: renames a ready sandbox's folder to p->dir (its
 * "container" file goes along, so p's names are wrong from here and the
 * session is always addressed through paths_for), adds the user's key
 * (sshd reads AuthorizedKeysFile per connection, through the keys mount)
 * and sets its hostname.
 * 0 served, 1 not served (cold path), -1 failed with err.
 */
static int pool_claim(runtime *rt, session *s, const session_paths *p,
                      char *err, size_t errlen)
{
    session_paths from, to;
    pool_entry e;

    if (!pool_fits(rt, s) || !pool_take(rt, &e))
        return 1;
    if (paths_in(rt->pool.dir, e.name, e.name, &from) < 0 ||
        paths_in(rt->sessions_dir, s->id, e.name, &to) < 0 ||
        check_sock_len(p->sock, err, errlen) < 0) {
        (void)pool_destroy(rt, e.name);
        return 1;
    }
    /* NOREPLACE: an existing session folder is never taken over */
    if (renameat2(AT_FDCWD, from.dir, AT_FDCWD, to.dir, RENAME_NOREPLACE) < 0) {
        log_warn("warm pool: cannot claim %s: %s", e.name, strerror(errno));
        (void)pool_destroy(rt, e.name);
        return 1;
    }
    if ((s->sandbox_name[0] != '\0' &&
         set_hostname(e.init, &to, s->sandbox_name) < 0) ||
        (s->ssh_public_key[0] != '\0' &&
         write_authorized_keys(to.keys, s->ssh_public_key) < 0) ||
        fmt(s->endpoint, sizeof(s->endpoint), "unix:%s", to.sock) < 0 ||
        fmt(s->host_key, sizeof(s->host_key), "%s", e.host_key) < 0 ||
        fmt(s->host_key_fpr, sizeof(s->host_key_fpr), "%s", e.host_key_fpr) <
            0) {
        char ignored[PICO_REASON_MAX];
        snprintf(err, errlen, "claiming a pool sandbox: %s", strerror(errno));
        (void)destroy_paths(rt, &to, ignored, sizeof(ignored));
        return -1;
    }
    log_info("session %s: sandbox %s from pool", s->id, e.name);
    return 0;
}

/* Removes this node's unclaimed pool sandboxes: a claimed one lives in
 * sessions/, so every pool/<prefix>* folder is unclaimed, left by this
 * node's last run (crash or not). Other nodes' entries are not touched. */
static void pool_cleanup(runtime *rt)
{
    struct dirent *e;
    DIR *d = opendir(rt->pool.dir);

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, rt->pool.prefix, strlen(rt->pool.prefix)) == 0 &&
            pool_name_valid(e->d_name) && pool_destroy(rt, e->d_name) == 0)
            log_info("warm pool: removed leftover %s", e->d_name);
    }
    closedir(d);
}

static int node_valid(const char *node)
{
    if (node[0] == '\0')
        return 0;
    for (const char *c = node; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return 0;
    return 1;
}

static int pool_open(runtime *rt, const struct pico_config *cfg, char *err,
                     size_t errlen)
{
    warm_pool *wp = &rt->pool;
    struct timespec ts;

    wp->size = cfg->warm_pool;
    if (wp->size <= 0)
        return 0;
    /* the node name is in the pool's names; '.' ends it, so one node's
     * prefix is never the start of another's */
    if (!node_valid(cfg->node_name) ||
        fmt(wp->prefix, sizeof(wp->prefix), POOL_PREFIX "%s.", cfg->node_name) <
            0 ||
        fmt(wp->dir, sizeof(wp->dir), "%s/pool", cfg->state_dir) < 0 ||
        fmt(wp->image, sizeof(wp->image), "%s", cfg->default_image) < 0) {
        snprintf(err, errlen,
                 "warm_pool: node_name must be 1-63 of [A-Za-z0-9_-]");
        return -1;
    }
    if (ensure_dir(wp->dir, 0700) < 0) {
        snprintf(err, errlen, "warm_pool: %s: %s", wp->dir, strerror(errno));
        return -1;
    }
    wp->limits =
        (session_limits){cfg->memory_mb_default, cfg->cpu_millicores_default,
                         cfg->pids_default, cfg->disk_mb_default};
    clock_gettime(CLOCK_REALTIME, &ts);
    /* names stay unique across restarts: claimed ones outlive this run */
    wp->seq = (unsigned long long)ts.tv_sec * 1000000 +
              (unsigned long long)ts.tv_nsec / 1000;
    wp->ready = calloc((size_t)wp->size, sizeof(*wp->ready));
    if (wp->ready == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pool_cleanup(rt);
    pthread_mutex_init(&wp->mu, NULL);
    pthread_cond_init(&wp->cv, NULL);
    if (pthread_create(&wp->thread, NULL, pool_thread, rt) != 0) {
        snprintf(err, errlen, "warm_pool: cannot start its thread");
        return -1;
    }
    wp->started = 1;
    return 0;
}

/* Stops the refill thread and removes every unclaimed sandbox: a pool
 * outlives neither a clean shutdown nor a drain. */
static void pool_close(runtime *rt)
{
    warm_pool *wp = &rt->pool;

    if (wp->started) {
        pthread_mutex_lock(&wp->mu);
        wp->stop = 1;
        pthread_cond_signal(&wp->cv);
        pthread_mutex_unlock(&wp->mu);
        pthread_join(wp->thread, NULL);
        for (int i = 0; i < wp->nready; i++)
            (void)pool_destroy(rt, wp->ready[i].name);
        wp->nready = 0;
        log_info("warm pool: stopped, unclaimed sandboxes removed");
    }
    free(wp->ready);
    wp->ready = NULL;
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

    if (run_runc(rt, args, -1, &out, why, sizeof(why)) != 0) {
        free(out.data);
        snprintf(err, errlen, "runc list: %s", why);
        return -1;
    }
    arr = out.data ? json_loads(out.data, JSON_DECODE_ANY, NULL) : NULL;
    free(out.data);
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
            fmt(path, sizeof(path), CID_PREFIX "%s", e->d_name) < 0)
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
    .alive = local_alive,
    .list = local_list,
    .health = local_health,
};
