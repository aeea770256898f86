/*
 * liveness.c - a sandbox whose processes were killed from outside (OOM
 * killer, an operator, a crash of its init) leaves a "running" record
 * whose endpoint nobody answers: tunnels to it would hang and the session
 * would hold its slot for its whole ttl. So once a second the reaper
 * thread asks the driver about each running session of this node
 * (runtime_ops.running, cheap: no subprocess) and marks the dead ones
 * failed with a reason. Marking clears the endpoint, brings the expiry
 * forward like any failure (docs/decisions.md, "Failed sessions give
 * their slot back") and publishes "deleted <id>", so the module closes
 * the session's tunnels and answers new CONNECTs 503. The sandbox's
 * remains are destroyed when the failed record expires or is deleted.
 *
 * Only this node's sessions: another node's sandboxes are not on this
 * host, and its own reaper checks them.
 */
#include "core/lifecycle.h"
#include "core/events.h"
#include "core/liveness.h"
#include "core/util.h"

int liveness_check(pico_app *app)
{
    char **ids;
    size_t n, i;
    int marked = 0;

    if (app->ops->running == NULL)
        return 0; /* the driver cannot tell cheaply (yet) */
    if (store_node_running(app->st, app->cfg.node_name, app->ops->name, &ids,
                           &n) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        /* 1 runs, -1 unknown: only a sure "dead" fails a session. A
         * session deleted or claimed meanwhile is no longer "running",
         * and store_session_fail leaves it alone. */
        if (app->ops->running(app->rt, ids[i]) != 0)
            continue;
        if (store_session_fail(app->st, ids[i], PICO_DIED_REASON,
                               now_s() + PICO_FAILED_RETENTION_S) == 1) {
            log_warn("%s marked failed: %s", ids[i], PICO_DIED_REASON);
            events_emit(app, ids[i], "failed", PICO_DIED_REASON);
            marked++;
        }
    }
    store_free_ids(ids, n);
    return marked;
}
