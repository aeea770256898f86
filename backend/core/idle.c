/*
 * idle.c - the idle stop: a running session with an idle_timeout whose
 * sandbox had no open tunnel for that long is paused (idle_action
 * "pause", where the runtime can pause) or deleted.
 *
 * Idle means, from the counters the nginx module keeps in
 * pico:tunnels:<id>: open == 0, and now - max(last_activity, active_at)
 * >= idle_timeout, where active_at is when the session became running
 * (created or resumed) and the module sets last_activity when a tunnel
 * moves bytes and when it closes. So an open SSH connection keeps its
 * session whatever its traffic, and the clock starts when the last one
 * closes. The reaper thread runs this about once a second, for this
 * node's running sessions that have an idle_timeout (one script finds
 * them; only those are read in full).
 *
 * "idle" is appended to the stream first, then "paused" (pause.c) or
 * "terminated" (the delete, as DELETE does it) follows. A pause that fails
 * falls back to the delete, so an idle session always stops.
 */
#include <stdio.h>
#include <string.h>

#include "core/events.h"
#include "core/pause.h"
#include "core/util.h"

/* 1 when rec has been idle for its idle_timeout at now (ms). */
static int session_idle(const session_record *rec, long long now)
{
    long long since = rec->s.active_at;

    if (rec->s.idle_timeout <= 0 || rec->tunnels.open > 0)
        return 0;
    if (since <= 0)
        since = rec->s.created_at * 1000;
    if (rec->tunnels.last_activity_ms > since)
        since = rec->tunnels.last_activity_ms;
    return now - since >= rec->s.idle_timeout * 1000;
}

static void idle_stop(pico_app *app, const char *id, long long timeout)
{
    int pause =
        strcmp(app->cfg.idle_action, "pause") == 0 && app->ops->pause != NULL;
    char reason[128];
    api_error e;

    snprintf(reason, sizeof(reason), "no open tunnel for %lld s; %s", timeout,
             pause ? "pausing" : "deleting");
    log_info("%s idle: %s", id, reason);
    events_emit(app, id, "idle", reason);
    if (pause && pause_session(app, id, &e) == 0)
        return;
    if (pause)
        log_warn("idle %s: pause failed (%s); deleting instead", id, e.message);
    /* claimed like a DELETE (a failed destroy is retried when the lease
     * ends); the session is this node's, its sandbox here */
    if (store_session_claim(app->st, id, lifecycle_lease_ms(app->ops)) == 1 &&
        lifecycle_destroy_claimed(app, id) == 0)
        log_info("deleted idle %s", id);
}

int idle_check(pico_app *app)
{
    char **ids;
    size_t n, i;
    int stopped = 0;

    if (store_node_idle_candidates(app->st, app->cfg.node_name, app->ops->name,
                                   &ids, &n) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        session_record rec;
        if (store_session_get(app->st, ids[i], &rec) != 1)
            continue;
        session_free(&rec.s);
        if (rec.s.status == SESSION_RUNNING && session_idle(&rec, now_ms())) {
            idle_stop(app, ids[i], rec.s.idle_timeout);
            stopped++;
        }
    }
    store_free_ids(ids, n);
    return stopped;
}
