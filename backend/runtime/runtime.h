/*
 * runtime.h - the interface every sandbox runtime driver implements.
 *
 * The backend core (HTTP API, store, reaper, reconcile) knows sessions; a
 * driver knows how to turn one into a running sandbox whose sshd is
 * reachable at an endpoint the nginx module can connect to. Two drivers
 * exist: runtime/local/ (runc on this host, endpoint "unix:<path>") and
 * runtime/kubernetes/ (a pod per session, endpoint "<podIP>:22"). Each
 * declares its runtime_ops in its own header, which only main.c includes:
 * the core, the API and the store see drivers through this file alone.
 *
 * Drivers are called from many request threads at once and must be
 * thread-safe. They never see unvalidated input: ids are canonical UUIDs,
 * images have passed runtime_ops.image_exists, limits are within config.
 */
#ifndef PICO_RUNTIME_H
#define PICO_RUNTIME_H

#include <stddef.h>
#include "core/session.h"

struct pico_config;

typedef struct runtime runtime;

/* Called by runtime_ops.list once per sandbox the driver finds. */
typedef void (*runtime_list_cb)(const char *session_id, void *arg);

/*
 * Called by a driver's watch (runtime_ops.watch) from its own thread.
 * sandbox_uid names the one sandbox object meant (a pod's uid), since a
 * new object may take an old one's name. lost NULL: that sandbox exists
 * and runs. Otherwise why it cannot serve the session any more (deleted,
 * evicted, failed, not ready): the core fails the session and clears its
 * endpoint, so no tunnel reaches whoever gets its address next.
 */
typedef void (*runtime_watch_cb)(const char *session_id,
                                 const char *sandbox_uid, const char *lost,
                                 void *arg);

typedef struct {
    const char *name; /* "local", "kubernetes" */

    /* Allocate driver state from configuration. NULL plus err on failure. */
    runtime *(*open)(const struct pico_config *cfg, char *err, size_t errlen);
    void (*close)(runtime *rt);

    /* 1 when `image` (already syntax-checked, e.g. "sandbox:latest") can be
     * started by this driver, 0 when not. */
    int (*image_exists)(runtime *rt, const char *image);

    /*
     * Start the sandbox for s and return once its sshd accepts
     * connections. On entry s->id, image, limits, ssh_public_key and
     * sandbox_name are set. On success fills s->endpoint, s->host_key,
     * s->host_key_fpr and s->sandbox_uid (or leaves it "") and returns 0. On
     * failure returns -1 with a reason fit for users in err, having removed
     * everything it created.
     */
    int (*create)(runtime *rt, session *s, char *err, size_t errlen);

    /* Remove the sandbox and everything it owns. Idempotent: a sandbox
     * that is already gone is success. */
    int (*destroy)(runtime *rt, const char *session_id, char *err,
                   size_t errlen);

    /* The longest destroy can take: every timeout of its steps added up.
     * The core's deletion lease is longer (lifecycle_lease_ms), so no
     * other backend takes over a delete that is still running. */
    long long destroy_max_ms;

    /*
     * Optional (NULL: the driver cannot pause; the core answers 501).
     * pause freezes every process of the sandbox where it stands (it
     * holds its memory but gets no CPU); resume thaws them. Files stay.
     * Idempotent: pausing a paused sandbox, resuming a running one is
     * success. 0, or -1 with a reason fit for users in err.
     */
    int (*pause)(runtime *rt, const char *session_id, char *err, size_t errlen);
    int (*resume)(runtime *rt, const char *session_id, char *err,
                  size_t errlen);

    /* 1 if the sandbox exists and runs (or is paused), 0 if gone, -1 if
     * unknown (error). */
    int (*alive)(runtime *rt, const char *session_id);

    /* The reaper's every-second liveness check of this node's running
     * sessions: like alive, but cheap enough to call for every session
     * each second (no subprocess, no remote call). 1 runs (a paused
     * sandbox runs: its init lives, frozen), 0 dead or
     * gone, -1 cannot tell. NULL when the driver has no cheap way yet
     * (kubernetes): its sandboxes are then not checked. */
    int (*running)(runtime *rt, const char *session_id);

    /* Enumerate sandboxes this driver manages (for reconcile). */
    int (*list)(runtime *rt, runtime_list_cb cb, void *arg, char *err,
                size_t errlen);

    /* 0 when the runtime can start sandboxes (GET /health), -1 + err. */
    int (*health)(runtime *rt, char *err, size_t errlen);

    /* Optional (NULL: the driver has no such events). Starts following
     * the sandboxes for as long as the backend serves, calling cb as
     * runtime_watch_cb says; close() stops it before returning. 0, or -1
     * + err. */
    int (*watch)(runtime *rt, runtime_watch_cb cb, void *arg, char *err,
                 size_t errlen);
} runtime_ops;

#endif
