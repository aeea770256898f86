/*
 * disk.c - the per-session disk quota of the local runtime (disk_mb > 0).
 *
 * /workspace and /home/sandbox are then two folders of one ext4 file
 * system in a sparse image file, <session>/disk.img, so writing past the
 * quota fails with ENOSPC inside the sandbox and nowhere else. How it is
 * wired so that nothing can outlive the sandbox:
 *
 *   - the image is attached to a loop device with LO_FLAGS_AUTOCLEAR: the
 *     device detaches itself when its last user (open descriptor or
 *     mount) goes;
 *   - it is mounted only in a private mount namespace of the creating
 *     thread (unshare(CLONE_NEWNS), everything made private), from which
 *     runc starts the container; the container's bind mounts of its
 *     folders keep the file system, and through it the loop device,
 *     alive. Once runc returned the thread goes back to the host's
 *     namespace and the private one, with its mount, is freed. The host's
 *     mount table never holds the image, a crash of the backend at any
 *     point frees whatever the dying thread held, and when the container
 *     dies its namespace was the last user: the loop device detaches;
 *   - the image is a file in the session folder, which destroy and
 *     reconcile remove anyway.
 *
 * mkfs.ext4 runs through subprocess.c: an argv array, never a shell, and
 * a timeout.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

#include "runtime/local/disk.h"
#include "runtime/local/subprocess.h"
#include "core/util.h"

#define LOOP_TRIES 32 /* another thread may take the free device first */

/* mkfs of a sparse image without journal and with lazy inode tables
 * takes under a second even at the largest disk_mb_max (0.02 s at 100
 * GiB, 0.9 s at 15 TiB); one that hangs (stuck I/O on the state disk)
 * must cost its create an error, not the create thread forever. */
#define MKFS_TIMEOUT_MS 30000

/* ---------------------------------------------------------------------
 * The image
 * ------------------------------------------------------------------- */

int disk_make_image(const char *mkfs, const char *image, int size_mb, char *err,
                    size_t errlen)
{
    /* no journal: a sandbox's scratch files need no crash consistency,
     * and a journal costs its size up front; no reserved blocks; inode
     * tables left for lazy init, which on a sparse file (reading zeros)
     * is never needed (mounted with noinit_itable) */
    const char *argv[] = {mkfs,
                          "-q",
                          "-F",
                          "-O",
                          "^has_journal",
                          "-E",
                          "lazy_itable_init=1,nodiscard",
                          "-m",
                          "0",
                          image,
                          NULL};
    /* mke2fs's first line is the error; later ones explain it */
    subprocess sp = {.argv = argv,
                     .fd3 = -1,
                     .timeout_ms = MKFS_TIMEOUT_MS,
                     .name = mkfs,
                     .what = mkfs,
                     .first_line = 1};
    char why[256];
    int fd =
        open(image, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

    if (fd < 0) {
        snprintf(err, errlen, "disk image: %s", strerror(errno));
        return -1;
    }
    if (ftruncate(fd, (off_t)size_mb * 1024 * 1024) < 0) {
        snprintf(err, errlen, "disk image: %s", strerror(errno));
        close(fd);
        (void)unlink(image);
        return -1;
    }
    close(fd);
    if (subprocess_run(&sp, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "disk image: mkfs.ext4: %s", why);
        (void)unlink(image);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * The private mount namespace
 * ------------------------------------------------------------------- */

int disk_ns_enter(disk_ns *saved, char *err, size_t errlen)
{
    saved->ns_fd = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
    saved->cwd_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (saved->ns_fd < 0 || saved->cwd_fd < 0) {
        snprintf(err, errlen, "mount namespace: %s", strerror(errno));
        goto fail;
    }
    /* CLONE_NEWNS implies CLONE_FS: only this thread moves */
    if (unshare(CLONE_NEWNS) < 0) {
        snprintf(err, errlen, "unshare: %s", strerror(errno));
        goto fail;
    }
    /* private all the way down: a mount made here never propagates to
     * the host, whatever the host's propagation is */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        snprintf(err, errlen, "mount namespace: %s", strerror(errno));
        (void)disk_ns_leave(saved);
        return -1;
    }
    return 0;
fail:
    if (saved->ns_fd >= 0)
        close(saved->ns_fd);
    if (saved->cwd_fd >= 0)
        close(saved->cwd_fd);
    saved->ns_fd = saved->cwd_fd = -1;
    return -1;
}

int disk_ns_leave(disk_ns *saved)
{
    int rc = setns(saved->ns_fd, CLONE_NEWNS);

    if (rc < 0)
        log_error("disk: cannot return to the host's mount namespace: %s",
                  strerror(errno));
    /* setns moved this thread's working folder to the namespace's root */
    else if (fchdir(saved->cwd_fd) < 0)
        log_warn("disk: cannot return to the working folder: %s",
                 strerror(errno));
    close(saved->ns_fd);
    close(saved->cwd_fd);
    saved->ns_fd = saved->cwd_fd = -1;
    return rc;
}

/* ---------------------------------------------------------------------
 * Loop device and mount
 * ------------------------------------------------------------------- */

/* Attaches file (an open descriptor) to a free loop device with
 * autoclear; returns the device's descriptor (read-write) and number. */
static int loop_attach(int file, const char *image, int *nr, char *err,
                       size_t errlen)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);

    if (ctl < 0) {
        snprintf(err, errlen, "/dev/loop-control: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < LOOP_TRIES; i++) {
        struct loop_config lc;
        char dev[32];
        int n = ioctl(ctl, LOOP_CTL_GET_FREE), fd;

        if (n < 0) {
            snprintf(err, errlen, "no free loop device: %s", strerror(errno));
            break;
        }
        snprintf(dev, sizeof(dev), "/dev/loop%d", n);
        fd = open(dev, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            snprintf(err, errlen, "%s: %s", dev, strerror(errno));
            break;
        }
        memset(&lc, 0, sizeof(lc));
        lc.fd = (unsigned int)file;
        lc.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        snprintf((char *)lc.info.lo_file_name, sizeof(lc.info.lo_file_name),
                 "%s", image);
        if (ioctl(fd, LOOP_CONFIGURE, &lc) == 0) {
            close(ctl);
            *nr = n;
            return fd;
        }
        snprintf(err, errlen, "%s: %s", dev, strerror(errno));
        close(fd);
        if (errno != EBUSY) /* EBUSY: another thread took it first */
            break;
    }
    close(ctl);
    return -1;
}

int disk_attach_mount(const char *image, const char *mnt, int *loop_nr,
                      char *err, size_t errlen)
{
    char dev[32];
    int file = open(image, O_RDWR | O_NOFOLLOW | O_CLOEXEC), rw, ro, rc;

    if (file < 0) {
        snprintf(err, errlen, "disk image: %s", strerror(errno));
        return -1;
    }
    rw = loop_attach(file, image, loop_nr, err, errlen);
    close(file); /* the loop device holds its own reference */
    if (rw < 0)
        return -1;
    /* Mount with no writer open: kernels built without
     * CONFIG_BLK_DEV_WRITE_MOUNTED refuse to mount a device someone else
     * has open for writing. A read-only descriptor keeps the device (and
     * autoclear from firing) until the mount holds it. */
    snprintf(dev, sizeof(dev), "/dev/loop%d", *loop_nr);
    ro = open(dev, O_RDONLY | O_CLOEXEC);
    close(rw);
    if (ro < 0) {
        snprintf(err, errlen, "%s: %s", dev, strerror(errno));
        return -1;
    }
    /* discard: deleted files give their blocks back to the host (the
     * loop driver punches holes into the sparse image) */
    rc = mount(dev, mnt, "ext4", MS_NODEV | MS_NOSUID | MS_NOATIME,
               "noinit_itable,discard");
    if (rc < 0)
        snprintf(err, errlen, "mount %s: %s", dev, strerror(errno));
    close(ro); /* from here the mount alone holds the device */
    return rc;
}

/* Reads /sys/block/loop<nr>/loop/backing_file into buf; 0 when the
 * device has none (detached) or does not exist. */
static int backing_file(int nr, char *buf, size_t len)
{
    char path[64];

    snprintf(path, sizeof(path), "/sys/block/loop%d/loop/backing_file", nr);
    if (read_small_file(path, 0, buf, len) == 0)
        return 0;
    buf[strcspn(buf, "\n")] = '\0';
    return 1;
}

/* 1 when `file` (a backing file, maybe with " (deleted)") is `path` or a
 * file under it (prefix: 1). */
static int names(const char *file, const char *path, int prefix)
{
    size_t n = strlen(path);

    if (strncmp(file, path, n) != 0)
        return 0;
    return prefix ? file[n] == '/' : file[n] == '\0' || file[n] == ' ';
}

int disk_wait_released(int loop_nr, const char *image, int timeout_ms)
{
    char file[4096];

    for (int waited = 0;; waited += 2) {
        if (!backing_file(loop_nr, file, sizeof(file)) ||
            !names(file, image, 0))
            return 0;
        if (waited >= timeout_ms)
            return -1;
        (void)poll(NULL, 0, 2);
    }
}

/* ---------------------------------------------------------------------
 * Reconcile
 * ------------------------------------------------------------------- */

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
    char *out = s;

    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
            s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
            *out++ =
                (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
}

static int under_any(const char *path, const char *const *dirs)
{
    for (; *dirs; dirs++)
        if (names(path, *dirs, 1))
            return 1;
    return 0;
}

/* Lazily unmounts every mount under dirs, last mounted first. */
static int unmount_under(const char *const *dirs)
{
    char line[8192], *found[256];
    int nfound = 0, done = 0;
    FILE *f = fopen("/proc/self/mountinfo", "re");

    if (f == NULL)
        return 0;
    while (nfound < 256 && fgets(line, sizeof(line), f) != NULL) {
        char *save = NULL, *tok = strtok_r(line, " ", &save);
        for (int i = 0; tok != NULL && i < 4; i++)
            tok = strtok_r(NULL, " ", &save);
        if (tok == NULL)
            continue;
        unescape(tok);
        if (under_any(tok, dirs) && (found[nfound] = strdup(tok)) != NULL)
            nfound++;
    }
    (void)fclose(f); /* read only */
    while (nfound-- > 0) {
        if (umount2(found[nfound], MNT_DETACH | UMOUNT_NOFOLLOW) == 0) {
            log_info("reconcile: unmounted %s", found[nfound]);
            done++;
        }
        free(found[nfound]);
    }
    return done;
}

/* Asks every loop device backed by a file under dirs to detach. */
static int detach_loops(const char *const *dirs)
{
    char file[4096], dev[32];
    struct dirent *e;
    int nr, done = 0;
    DIR *d = opendir("/sys/block");

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        int fd;
        long long n;
        if (strncmp(e->d_name, "loop", 4) != 0 ||
            parse_ll(e->d_name + 4, &n) < 0 || n < 0 || n > 1 << 20)
            continue;
        nr = (int)n;
        if (!backing_file(nr, file, sizeof(file)) || !under_any(file, dirs))
            continue;
        snprintf(dev, sizeof(dev), "/dev/loop%d", nr);
        fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        /* busy (a live sandbox's): only sets autoclear; idle: detaches
         * when this descriptor closes */
        (void)ioctl(fd, LOOP_CLR_FD, 0);
        close(fd);
        if (disk_wait_released(nr, file, 0) == 0) {
            log_info("reconcile: loop%d (%s) detached", nr, file);
            done++;
        }
    }
    closedir(d);
    return done;
}

int disk_reconcile(const char *const *dirs)
{
    return unmount_under(dirs) + detach_loops(dirs);
}
