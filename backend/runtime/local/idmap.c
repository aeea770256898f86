/*
 * idmap.c - every local sandbox runs in a user namespace of its own: its
 * root is host uid/gid idmap_base(slot), its uid 1000 is that + 1000, and
 * no process of it is ever host root or a host user.
 *
 *   - slots: IDMAP_SLOTS ranges of IDMAP_SIZE ids from IDMAP_BASE, one per
 *     sandbox (pool sandboxes included), so two sandboxes are two
 *     different host users. The slot is written into the sandbox's folder
 *     (file "idmap") before its container exists; the in-memory table is
 *     rebuilt from those files at open, so a restarted backend finds the
 *     ranges of the sandboxes it reconciles, and a slot is freed only
 *     after its folder (and so its container) is gone;
 *   - the shared read-only rootfs is owned by host root. It is mounted for
 *     each sandbox through an idmapped mount (open_tree + mount_setattr
 *     with MOUNT_ATTR_IDMAP + move_mount; runc 1.1.5 cannot ask for one)
 *     in the private mount namespace runc starts from (disk.c), on top of
 *     the rootfs path itself: only that namespace and the container see
 *     it, and the host's mount table never holds it;
 *   - the mapping for mount_setattr needs a user namespace descriptor:
 *     a child cloned into a new user namespace (CLONE_VM, it only waits on
 *     a pipe with raw syscalls), whose uid_map/gid_map we write, whose
 *     /proc/<pid>/ns/user we open; then it exits.
 * The per-session folders (workspace, home, keys) are fresh and small, so
 * they are simply chowned to the range (state.c) instead.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "runtime/local/local.h"

#define CHILD_STACK ((size_t)64 * 1024)

struct idmap_slots {
    pthread_mutex_t mu;
    unsigned char used[IDMAP_SLOTS];
    int next; /* where the search starts: spreads reuse of a freed range */
};

unsigned idmap_base(int slot)
{
    return IDMAP_BASE + (unsigned)slot * IDMAP_SIZE;
}

/* The slot recorded in dir/idmap, or -1. */
int idmap_read_slot(const char *dir)
{
    char path[PICO_PATH_MAX], num[16];
    long long n;

    if (fmt_exact(path, sizeof(path), "%s/" IDMAP_FILE, dir) < 0 ||
        read_small_file(path, O_NOFOLLOW, num, sizeof(num)) == 0 ||
        parse_ll(num, &n) < 0 || n < 0 || n >= IDMAP_SLOTS)
        return -1;
    return (int)n;
}

static void mark_folders(idmap_slots *t, const char *parent)
{
    char dir[PICO_PATH_MAX];
    struct dirent *e;
    DIR *d = opendir(parent);
    int slot;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' ||
            fmt_exact(dir, sizeof(dir), "%s/%s", parent, e->d_name) < 0)
            continue;
        slot = idmap_read_slot(dir);
        if (slot >= 0)
            t->used[slot] = 1;
    }
    closedir(d);
}

idmap_slots *idmap_open(const char *const *dirs)
{
    idmap_slots *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    pthread_mutex_init(&t->mu, NULL);
    for (; *dirs != NULL; dirs++)
        mark_folders(t, *dirs);
    return t;
}

void idmap_close(idmap_slots *t)
{
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* Takes a free slot and records it in dir/idmap; -1 when none is free. */
int idmap_take(idmap_slots *t, const char *dir)
{
    char path[PICO_PATH_MAX], num[16];
    int slot = -1;

    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < IDMAP_SLOTS && slot < 0; i++) {
        int s = (t->next + i) % IDMAP_SLOTS;
        if (!t->used[s]) {
            slot = s;
            t->used[s] = 1;
            t->next = (s + 1) % IDMAP_SLOTS;
        }
    }
    pthread_mutex_unlock(&t->mu);
    if (slot < 0)
        return -1;
    snprintf(num, sizeof(num), "%d", slot);
    if (fmt_exact(path, sizeof(path), "%s/" IDMAP_FILE, dir) < 0 ||
        write_file(path, num, strlen(num), 0600) < 0) {
        idmap_put(t, slot);
        return -1;
    }
    return slot;
}

void idmap_put(idmap_slots *t, int slot)
{
    if (slot < 0 || slot >= IDMAP_SLOTS)
        return;
    pthread_mutex_lock(&t->mu);
    t->used[slot] = 0;
    pthread_mutex_unlock(&t->mu);
}

/* ---------------------------------------------------------------------
 * A user namespace descriptor with the slot's mapping
 * ------------------------------------------------------------------- */

/* The child shares our memory (CLONE_VM): raw syscalls only, no libc
 * state touched. It waits for a byte on the pipe, then exits. It closes
 * its own copy of the write end first, and dies with the thread that made
 * it: a backend killed while the child waits must not leave it blocked
 * for ever, holding copies of every descriptor (the API's listener among
 * them, so the restarted backend found its socket "in use"). */
static int userns_child(void *arg)
{
    const int *pipefd = arg;
    char c;

    (void)syscall(SYS_close, pipefd[1]);
    (void)syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    (void)syscall(SYS_read, pipefd[0], &c, 1);
    syscall(SYS_exit, 0);
    return 0;
}

static int write_map(pid_t pid, const char *file, unsigned base)
{
    char path[64], line[64];
    int fd, n, rc;

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    n = snprintf(line, sizeof(line), "0 %u %u\n", base, (unsigned)IDMAP_SIZE);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    rc = write(fd, line, (size_t)n) == n ? 0 : -1;
    close(fd);
    return rc;
}

/* A descriptor of a new user namespace mapping 0..IDMAP_SIZE-1 to the
 * slot's range, or -1 with errno. */
static int userns_fd(int slot)
{
    char path[64];
    int pipefd[2], fd = -1, saved = 0;
    char *stack = malloc(CHILD_STACK);
    pid_t pid;

    if (stack == NULL)
        return -1;
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        free(stack);
        return -1;
    }
    pid = clone(userns_child, stack + CHILD_STACK,
                CLONE_VM | CLONE_NEWUSER | SIGCHLD, pipefd);
    if (pid > 0) {
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
        if (write_map(pid, "uid_map", idmap_base(slot)) == 0 &&
            write_map(pid, "gid_map", idmap_base(slot)) == 0)
            fd = open(path, O_RDONLY | O_CLOEXEC);
        saved = errno;
    } else {
        saved = errno;
    }
    /* the child has its own copy of both ends (no CLONE_FILES), so
     * closing ours would not wake it: a byte does */
    if (pid > 0 && write(pipefd[1], "x", 1) != 1)
        kill(pid, SIGKILL);
    close(pipefd[1]);
    if (pid > 0)
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
    close(pipefd[0]);
    free(stack);
    errno = saved;
    return fd;
}

/*
 * In the calling thread's private mount namespace: mounts `rootfs`
 * again on top of itself, read-only, nosuid, nodev and idmapped to the
 * slot's range, so that root's files are root's in the sandbox.
 */
int idmap_mount_rootfs(const char *rootfs, int slot, char *err, size_t errlen)
{
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                    MOUNT_ATTR_NODEV,
    };
    int ns = userns_fd(slot), tree = -1, rc = -1;

    if (ns < 0) {
        snprintf(err, errlen, "user namespace: %s", strerror(errno));
        return -1;
    }
    attr.userns_fd = (unsigned)ns;
    tree = open_tree(AT_FDCWD, rootfs, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0 ||
        mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0 ||
        move_mount(tree, "", AT_FDCWD, rootfs, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        snprintf(err, errlen, "idmapped rootfs %s: %s", rootfs,
                 strerror(errno));
    else
        rc = 0;
    if (tree >= 0)
        close(tree);
    close(ns);
    return rc;
}
