/*
 * state.c - a local sandbox's folder, <state_dir>/sessions/<id>/ (or
 * pool/<name>/ while it waits in the warm pool): the paths in it, the
 * user's folders, the host key and authorized_keys, config.json (from
 * oci.c), the quota image's mount (disk.c) and removing it all. The
 * layout is described in local.c.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "runtime/local/disk.h"
#include "runtime/local/oci.h"
#include "runtime/local/local.h"

int fmt_exact(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    int n;

    va_start(ap, f);
    n = vsnprintf(buf, len, f, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < len ? 0 : -1;
}

/* "name[:tag]" (no tag = "latest") as the API allows it
 * (session_image_valid), and no "..": it becomes the folder name
 * <name>_<tag>. */
int image_dir(const runtime *rt, const char *image, char *buf, size_t len)
{
    const char *colon = strchr(image, ':');
    const char *tag = colon ? colon + 1 : "latest";
    size_t nlen = colon ? (size_t)(colon - image) : strlen(image);

    if (!session_image_valid(image) || strstr(image, "..") != NULL)
        return -1;
    return fmt_exact(buf, len, "%s/%.*s_%s", rt->images_dir, (int)nlen, image,
                     tag);
}

int write_file(const char *path, const char *data, size_t len, mode_t mode)
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
int remove_tree(const char *path)
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
static void copy_skel(const char *rootfs, const char *home, unsigned uid)
{
    char src[PICO_PATH_MAX], dst[PICO_PATH_MAX], data[16384];
    struct dirent *e;
    DIR *d;

    if (fmt_exact(src, sizeof(src), "%s/etc/skel", rootfs) < 0 ||
        (d = opendir(src)) == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        int fd;
        ssize_t n;

        if (e->d_type != DT_REG ||
            fmt_exact(src, sizeof(src), "%s/etc/skel/%s", rootfs, e->d_name) <
                0 ||
            fmt_exact(dst, sizeof(dst), "%s/%s", home, e->d_name) < 0)
            continue;
        fd = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        n = read(fd, data, sizeof(data));
        close(fd);
        if (n >= 0 && (size_t)n < sizeof(data) &&
            write_file(dst, data, (size_t)n, 0644) == 0 &&
            chown(dst, uid, uid) < 0)
            (void)unlink(dst);
    }
    closedir(d);
}

/* Paths of the sandbox in <parent>/<folder> whose container and cgroup
 * are named after `name` (the session id, or a pool name). */
int paths_in(const char *parent, const char *folder, const char *name,
             session_paths *p)
{
    p->gvisor = 0; /* runc unless tier_of reads otherwise */
    return fmt_exact(p->dir, sizeof(p->dir), "%s/%s", parent, folder) ||
                   fmt_exact(p->workspace, sizeof(p->workspace), "%s/workspace",
                             p->dir) ||
                   fmt_exact(p->home, sizeof(p->home), "%s/home", p->dir) ||
                   fmt_exact(p->keys, sizeof(p->keys), "%s/keys", p->dir) ||
                   fmt_exact(p->sock, sizeof(p->sock), "%s/ssh.sock", p->dir) ||
                   fmt_exact(p->config, sizeof(p->config), "%s/config.json",
                             p->dir) ||
                   fmt_exact(p->disk, sizeof(p->disk), "%s/disk", p->dir) ||
                   fmt_exact(p->image, sizeof(p->image), "%s/disk.img",
                             p->dir) ||
                   fmt_exact(p->loop, sizeof(p->loop), "%s/disk.loop",
                             p->dir) ||
                   fmt_exact(p->ep, sizeof(p->ep), "%s/ep", p->dir) ||
                   fmt_exact(p->netns, sizeof(p->netns), "%s/netns", p->dir) ||
                   fmt_exact(p->resolv, sizeof(p->resolv), "%s/resolv.conf",
                             p->dir) ||
                   fmt_exact(p->slirp, sizeof(p->slirp), "%s/slirp.pid",
                             p->dir) ||
                   fmt_exact(p->dnsmasq, sizeof(p->dnsmasq), "%s/dnsmasq.pid",
                             p->dir) ||
                   fmt_exact(p->cid, sizeof(p->cid), CID_PREFIX "%s", name) ||
                   fmt_exact(p->cgroup, sizeof(p->cgroup), CGROUP_PARENT "/%s",
                             name)
               ? -1
               : 0;
}

/* 1 when name is "pool-" plus [A-Za-z0-9_.-]: safe in paths, in runc's
 * container ids and on its command line. */
int pool_name_valid(const char *name)
{
    if (strncmp(name, POOL_PREFIX, strlen(POOL_PREFIX)) != 0 ||
        strlen(name) >= sizeof(((pool_entry *)0)->name) ||
        strstr(name, "..") != NULL)
        return 0;
    return name_chars_valid(name, strlen(name));
}

/* The container named by <dir>/container (a claimed pool sandbox) into
 * name; 0 when there is none (a cold-started session). */
static int read_container_file(const char *dir, char *name, size_t len)
{
    char path[PICO_PATH_MAX];

    if (fmt_exact(path, sizeof(path), "%s/" CONTAINER_FILE, dir) < 0 ||
        read_small_file(path, O_NOFOLLOW, name, len) == 0)
        return 0;
    return pool_name_valid(name);
}

int paths_for(const runtime *rt, const char *id, session_paths *p)
{
    char dir[PICO_PATH_MAX], name[sizeof(((pool_entry *)0)->name)];

    /* the core hands us validated UUIDs; check again, since the id becomes
     * part of paths and of runc's command line */
    if (id == NULL || !uuid_valid(id) ||
        fmt_exact(dir, sizeof(dir), "%s/%s", rt->sessions_dir, id) < 0)
        return -1;
    if (read_container_file(dir, name, sizeof(name))
            ? paths_in(rt->sessions_dir, id, name, p) < 0
            : paths_in(rt->sessions_dir, id, id, p) < 0)
        return -1;
    return tier_of(p);
}

/* p->gvisor from the folder's tier file; for gvisor the endpoint is the
 * socket pico-init made in ep/. */
int tier_of(session_paths *p)
{
    char path[PICO_PATH_MAX], tier[16];

    p->gvisor = fmt_exact(path, sizeof(path), "%s/" TIER_FILE, p->dir) == 0 &&
                read_small_file(path, O_NOFOLLOW, tier, sizeof(tier)) > 0 &&
                strcmp(tier, "gvisor") == 0;
    if (p->gvisor &&
        fmt_exact(p->sock, sizeof(p->sock), "%s/ssh.sock", p->ep) < 0)
        return -1;
    return 0;
}

/* The folders, keys and config of a new session, in its just-made
 * folder p->dir. */
int prepare_bundle(const runtime *rt, const session *s, const session_paths *p,
                   const char *rootfs, unsigned id_base, hostkey *hk, char *err,
                   size_t errlen)
{
    /* the sandbox user and root as the host sees them (idmap.c) */
    unsigned user = id_base + SANDBOX_UID;
    char path[PICO_PATH_MAX], workspace[PICO_PATH_MAX], home[PICO_PATH_MAX],
        *config;
    int disk = s->limits.disk_mb > 0, rc;
    oci_params op;

    /* socket_group (nginx) may pass through to ssh.sock, but must not read
     * the user's files: workspace and home are the user's alone. With a
     * disk quota they are made in the image once it is mounted. */
    if (chown(p->dir, 0, rt->socket_gid) < 0 || chmod(p->dir, 0710) < 0 ||
        (!disk && make_dir(p->workspace, 0700, user, user) < 0) ||
        (!disk && make_dir(p->home, 0700, user, user) < 0) ||
        (disk && make_dir(p->disk, 0700, 0, 0) < 0) ||
        make_dir(p->keys, 0755, id_base, id_base) < 0 ||
        (p->gvisor && make_dir(p->ep, 0710, 0, rt->socket_gid) < 0)) {
        snprintf(err, errlen, "session folders: %s", strerror(errno));
        return -1;
    }
    if (!disk)
        copy_skel(rootfs, p->home, user);
    /* with a quota the folders are in the image (paths valid only in the
     * namespace it is mounted in, the one runc starts from) */
    if (fmt_exact(workspace, sizeof(workspace), "%s", p->workspace) < 0 ||
        fmt_exact(home, sizeof(home), "%s", p->home) < 0 ||
        (disk && (fmt_exact(workspace, sizeof(workspace), "%s/workspace",
                            p->disk) < 0 ||
                  fmt_exact(home, sizeof(home), "%s/home", p->disk) < 0))) {
        snprintf(err, errlen, "session folders: path too long");
        return -1;
    }

    if (hostkey_generate(hk, err, errlen) < 0)
        return -1;
    if (fmt_exact(path, sizeof(path), "%s/ssh_host_ed25519_key", p->keys) < 0 ||
        write_file(path, hk->private_key, strlen(hk->private_key), 0600) < 0 ||
        chown(path, id_base, id_base) < 0) {
        snprintf(err, errlen, "host key file: %s", strerror(errno));
        return -1;
    }
    if (s->ssh_public_key[0] != '\0' &&
        write_authorized_keys(p->keys, s->ssh_public_key, id_base) < 0) {
        snprintf(err, errlen, "authorized_keys: %s", strerror(errno));
        return -1;
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
        .id_base = id_base,
        /* gVisor's sentry is the boundary there; runsc 2022 has no use
         * for OCI id mappings */
        .id_size = p->gvisor ? 0 : IDMAP_SIZE,
        .listen = p->gvisor ? GVISOR_SOCK : NULL,
        .ep = p->gvisor ? p->ep : NULL,
        .netns = strcmp(s->network, "egress") == 0 ? p->netns : NULL,
        .resolv = strcmp(s->network, "egress") == 0 ? p->resolv : NULL,
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

int write_authorized_keys(const char *keys, const char *pubkey,
                          unsigned id_base)
{
    char path[PICO_PATH_MAX], line[PICO_PUBKEY_MAX + 2];
    /* one key, one line: a newline inside would add more keys */
    size_t n = strcspn(pubkey, "\r\n");

    memcpy(line, pubkey, n);
    line[n++] = '\n';
    if (fmt_exact(path, sizeof(path), "%s/authorized_keys", keys) < 0)
        return -1;
    /* StrictModes: the file must be root's or the user's in the sandbox */
    if (write_file(path, line, n, 0644) < 0 ||
        chown(path, id_base, id_base) < 0)
        return -1;
    return 0;
}

/* With a quota: the image mounted at p->disk (in the calling thread's
 * private namespace), its number in disk.loop, the user's folders in it. */
int disk_setup(const char *rootfs, const session_paths *p, unsigned id_base,
               char *err, size_t errlen)
{
    unsigned user = id_base + SANDBOX_UID;
    char num[16], ws[PICO_PATH_MAX], home[PICO_PATH_MAX];
    int nr = -1;

    if (disk_attach_mount(p->image, p->disk, &nr, err, errlen) < 0)
        return -1;
    snprintf(num, sizeof(num), "%d", nr);
    if (write_file(p->loop, num, strlen(num), 0600) < 0 ||
        fmt_exact(ws, sizeof(ws), "%s/workspace", p->disk) < 0 ||
        fmt_exact(home, sizeof(home), "%s/home", p->disk) < 0 ||
        make_dir(ws, 0700, user, user) < 0 ||
        make_dir(home, 0700, user, user) < 0) {
        snprintf(err, errlen, "disk folders: %s", strerror(errno));
        return -1;
    }
    copy_skel(rootfs, home, user);
    return 0;
}

/* Waits (bounded) until the session's quota image, if any, is off its
 * loop device: the sandbox is gone, so its mount namespace was the last
 * user. After this a delete has left no loop device behind. */
void disk_release(const session_paths *p)
{
    char num[16];
    long long nr;

    if (read_small_file(p->loop, O_NOFOLLOW, num, sizeof(num)) == 0 ||
        parse_ll(num, &nr) < 0 || nr < 0 || nr > 1 << 20)
        return;
    if (disk_wait_released((int)nr, p->image, DISK_RELEASE_MS) < 0)
        log_warn("disk: loop%lld still holds %s; it detaches when its last "
                 "user goes",
                 nr, p->image);
}
