/*
 * reconcile.c - start-up repair after the backend was down (crash,
 * SIGKILL, host restart). Two directions:
 *
 *   sandbox without a record (or with a "terminated" one): nobody can
 *     reach or delete it through the API any more, so it is destroyed;
 *   record "running"/"pending"/"paused" whose sandbox is gone: marked "failed"
 *     with a reason, endpoint cleared, so clients see why; the reaper
 *     removes it at its expiry like any other.
 *
 * Records of another runtime or node, terminating records (another backend
 * holds a lease) and young pending records (a create in flight elsewhere) are
 * left alone.
 */
#include <string.h>

#include "core/lifecycle.h"
#include "core/events.h"
#include "core/reconcile.h"
#include "core/util.h"

static void reconcile_sandbox(pico_app *app, const char *id, int *removed)
{
    session_record rec;
    char err[256] = "";
    int rc = store_session_get(app->st, id, &rec);

    if (rc < 0)
        return;
    if (rc == 1 && rec.s.status != SESSION_TERMINATED) {
        session_free(&rec.s);
        return;
    }
    if (rc == 1)
        session_free(&rec.s);
    if (app->ops->destroy(app->rt, id, err, sizeof(err)) < 0) {
        log_error("reconcile: cannot remove orphan sandbox %s: %s", id, err);
        return;
    }
    if (rc == 1)
        store_session_remove(app->st, id);
    log_info("reconcile: removed orphan sandbox %s", id);
    (*removed)++;
}

static void reconcile_record(pico_app *app, const char *id, int *failed)
{
    static const char reason[] =
        "sandbox disappeared while the backend was down";
    session_record rec;
    int rc = store_session_get(app->st, id, &rec), alive;

    if (rc <= 0)
        return;
    session_free(&rec.s);
    if (strcmp(rec.runtime, app->ops->name) != 0 ||
        strcmp(rec.node, app->cfg.node_name) != 0)
        return; /* another node's: its sandbox is not ours to judge */
    /* paused: its frozen sandbox is alive and stays paused; after a host
     * restart its processes are gone and it fails like a running one */
    if (rec.s.status != SESSION_RUNNING && rec.s.status != SESSION_PENDING &&
        rec.s.status != SESSION_PAUSED)
        return;
    if (rec.s.status == SESSION_PENDING &&
        rec.s.created_at > now_s() - PICO_PENDING_GRACE_S)
        return;
    alive = app->ops->alive(app->rt, id);
    if (alive != 0)
        return; /* running, or unknown: do not guess */
    if (store_session_fail(app->st, id, reason,
                           now_s() + PICO_FAILED_RETENTION_S) == 1) {
        log_warn("reconcile: %s marked failed: %s", id, reason);
        events_emit(app, id, "failed", reason);
        (*failed)++;
    }
}

int reconcile(pico_app *app)
{
    char **boxes, **ids;
    size_t nboxes, n, i;
    int removed = 0, failed = 0;

    if (lifecycle_list_sandboxes(app, &boxes, &nboxes) < 0)
        return -1;
    if (store_session_ids(app->st, &ids, &n) < 0) {
        store_free_ids(boxes, nboxes);
        log_error("reconcile: cannot list sessions in redis");
        return -1;
    }
    for (i = 0; i < nboxes; i++)
        reconcile_sandbox(app, boxes[i], &removed);
    for (i = 0; i < n; i++)
        reconcile_record(app, ids[i], &failed);
    log_info("reconcile: %zu sandboxes, %zu records, %d orphans removed, %d "
             "records marked failed",
             nboxes, n, removed, failed);
    store_free_ids(boxes, nboxes);
    store_free_ids(ids, n);
    return 0;
}
