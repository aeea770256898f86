/*
 * disk.h - the per-session disk quota of the local runtime: an ext4 image
 * file in the session folder, attached to a loop device and mounted only
 * in a private mount namespace of the creating thread, from which runc
 * starts the container. The host's mount table never holds it; the
 * container's mount namespace is its last user, and the loop device
 * (LO_FLAGS_AUTOCLEAR) detaches itself when that goes.
 * docs/runtime-local.md, "Disk quota", has the reasoning.
 */
#ifndef PICO_DISK_H
#define PICO_DISK_H

#include <stddef.h>

/* Creates `image` (must not exist) as a sparse file of size_mb MiB and
 * formats it ext4 with `mkfs` (argv only, no shell; killed after 30 s).
 * 0, or -1 + err with the file removed. */
int disk_make_image(const char *mkfs, const char *image, int size_mb, char *err,
                    size_t errlen);

/* The calling thread's mount namespace and working folder, to come back
 * to after disk_ns_enter. */
typedef struct {
    int ns_fd;
    int cwd_fd;
} disk_ns;

/* Moves the calling thread (only it) into a new mount namespace whose
 * mounts are all private, so nothing mounted there shows on the host. */
int disk_ns_enter(disk_ns *saved, char *err, size_t errlen);

/* Back to the saved namespace; closes its descriptors. -1 is logged: the
 * thread then stays in the private namespace (it still works, it only
 * misses later host mounts). */
int disk_ns_leave(disk_ns *saved);

/*
 * Attaches `image` to a free loop device (autoclear) and mounts it ext4,
 * nodev and nosuid, at `mnt` (in the caller's namespace: call it between
 * disk_ns_enter and disk_ns_leave). No descriptor stays open: from here
 * the mount holds the device. *loop_nr gets the device's number.
 */
int disk_attach_mount(const char *image, const char *mnt, int *loop_nr,
                      char *err, size_t errlen);

/* Waits up to timeout_ms until loop device loop_nr no longer has `image`
 * as its backing file (the file system was released and autoclear
 * detached it). 0 released, -1 still attached. */
int disk_wait_released(int loop_nr, const char *image, int timeout_ms);

/*
 * Start-up repair after a crash: unmounts (lazily) every host mount under
 * one of `dirs` (NULL-terminated, absolute, no trailing slash) and asks
 * every loop device whose backing file is under one of them to detach
 * (LOOP_CLR_FD: an idle one goes at once, one still mounted by a live
 * sandbox only gets autoclear, which it has anyway). Returns how many
 * mounts and loop devices it released.
 */
int disk_reconcile(const char *const *dirs);

#endif
