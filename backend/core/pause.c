/*
 * pause.c - pause and resume: a paused session's sandbox is frozen by the
 * runtime (runc pause: the freezer cgroup), its files and processes stay
 * where they are, and resume thaws them, so a loop that was counting goes
 * on from where it stood.
 *
 * Order: the runtime acts first, then the record changes with its event
 * in one script (store_session_transition), then "changed <id>" makes the
 * nginx modules drop their cached verdict. So a reader that sees
 * "paused" knows the sandbox is frozen, and one that sees "running"
 * after a resume knows it is thawed. A CONNECT that slips in before the
 * record changes reaches a frozen sshd that answers once thawed.
 *
 * A transition that finds the status changed (a concurrent pause, resume
 * or DELETE) never undoes the runtime step: whoever changed the status
 * owns the sandbox's state now, and destroy thaws before it kills.
 */
#include <stdio.h>
#include <string.h>

#include "core/pause.h"
#include "core/util.h"

/* Reads the session for a pause/resume: 0 with its status, or -1 with e
 * (404, 501 the runtime cannot, 409 another node's). */
static int pause_target(pico_app *app, const char *id, const char *principal,
                        session_status *status, api_error *e)
{
    session_record rec;

    if (lifecycle_get(app, id, principal, &rec, e) < 0)
        return -1;
    session_free(&rec.s);
    *status = rec.s.status;
    if (app->ops->pause == NULL || app->ops->resume == NULL) {
        api_error_set(e, 501, "not_supported",
                      "the %s runtime cannot pause sessions", app->ops->name);
        return -1;
    }
    if (rec.node[0] && strcmp(rec.node, app->cfg.node_name) != 0) {
        api_error_set(e, 409, "conflict",
                      "the session runs on node %s; only that node's backend "
                      "can pause or resume it",
                      rec.node);
        return -1;
    }
    return 0;
}

/* The 409 of a transition that found the status changed under it. */
static void changed_error(pico_app *app, const char *id, api_error *e)
{
    session_record rec;

    if (store_session_get(app->st, id, &rec) != 1) {
        api_error_set(e, 409, "conflict", "the session was deleted");
        return;
    }
    session_free(&rec.s);
    api_error_set(e, 409, "conflict", "the session is %s now",
                  session_status_name(rec.s.status));
}

int pause_session(pico_app *app, const char *id, api_error *e)
{
    char err[PICO_REASON_MAX] = "", at[24];
    const char *pairs[] = {"status", "paused", "paused_at", at};
    int rc;

    if (app->ops->pause(app->rt, id, err, sizeof(err)) < 0) {
        log_error("pause %s failed: %s", id, err);
        api_error_set(e, 500, "pause_failed", "%s", err);
        return -1;
    }
    snprintf(at, sizeof(at), "%lld", now_ms());
    rc = store_session_transition(app->st, id, "running", "paused", pairs, 2);
    if (rc == 0) {
        changed_error(app, id, e);
        return -1;
    }
    if (rc < 0) {
        /* the record still says running: do not leave it frozen */
        app->ops->resume(app->rt, id, err, sizeof(err));
        api_error_set(e, 503, "redis_unavailable", "cannot store the pause");
        return -1;
    }
    store_session_changed(app->st, id);
    log_info("paused %s", id);
    return 0;
}

int lifecycle_pause(pico_app *app, const char *id, const char *principal,
                    session_record *rec, api_error *e)
{
    session_status status;

    if (pause_target(app, id, principal, &status, e) < 0)
        return -1;
    if (status != SESSION_RUNNING) {
        api_error_set(e, 409, "conflict",
                      status == SESSION_PAUSED
                          ? "the session is already paused"
                          : "the session is %s; only a running session can "
                            "be paused",
                      session_status_name(status));
        return -1;
    }
    if (pause_session(app, id, e) < 0)
        return -1;
    return lifecycle_get(app, id, principal, rec, e);
}

int lifecycle_resume(pico_app *app, const char *id, const char *principal,
                     session_record *rec, api_error *e)
{
    char err[PICO_REASON_MAX] = "", at[24];
    const char *pairs[] = {"status", "running", "active_at", at};
    session_status status;
    int rc;

    if (pause_target(app, id, principal, &status, e) < 0)
        return -1;
    if (status != SESSION_PAUSED) {
        api_error_set(e, 409, "conflict",
                      "the session is %s; only a paused session can be "
                      "resumed",
                      session_status_name(status));
        return -1;
    }
    if (app->ops->resume(app->rt, id, err, sizeof(err)) < 0) {
        log_error("resume %s failed: %s", id, err);
        api_error_set(e, 500, "resume_failed", "%s", err);
        return -1;
    }
    /* the idle clock starts again at the resume */
    snprintf(at, sizeof(at), "%lld", now_ms());
    rc = store_session_transition(app->st, id, "paused", "resumed", pairs, 2);
    if (rc != 1) {
        if (rc < 0)
            api_error_set(e, 503, "redis_unavailable",
                          "cannot store the resume");
        else
            changed_error(app, id, e);
        return -1;
    }
    store_session_changed(app->st, id);
    log_info("resumed %s", id);
    return lifecycle_get(app, id, principal, rec, e);
}
