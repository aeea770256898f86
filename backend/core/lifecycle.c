/*
 * lifecycle.c - creating and deleting sessions, in the order that keeps
 * Redis and the runtime consistent when a backend dies half-way:
 *
 *   create: record "pending" (and in pico:expiry) first, then the
 *           sandbox, then "running". Reconcile on any backend thus always
 *           finds a record for a sandbox that is being created.
 *   delete: claim (status "terminating", lease in pico:reaping), destroy
 *           the sandbox, then remove the records. A backend that dies
 *           after the claim leaves a lease another one takes over.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/events.h"
#include "core/lifecycle.h"
#include "core/metrics.h"
#include "core/util.h"

void api_error_set(api_error *e, int status, const char *code, const char *fmt,
                   ...)
{
    va_list ap;

    e->status = status;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

long long lifecycle_lease_ms(const runtime_ops *ops)
{
    long long bound = ops->destroy_max_ms + PICO_LEASE_SLACK_MS;

    return bound > PICO_LEASE_MS ? bound : PICO_LEASE_MS;
}

static int mark_failed(pico_app *app, const char *id, const char *reason)
{
    int rc = store_session_fail(app->st, id, reason,
                                now_s() + PICO_FAILED_RETENTION_S);

    if (rc == 1)
        events_emit(app, id, "failed", reason);
    return rc;
}

int lifecycle_create(pico_app *app, session *s, const char *owner, api_error *e)
{
    char err[PICO_REASON_MAX + 1] = "";
    long long t0 = now_ms();
    int rc;

    if (s->id[0] == '\0' && uuid_v4(s->id) < 0) {
        api_error_set(e, 500, "internal", "no randomness for a session id");
        return -1;
    }
    s->status = SESSION_PENDING;
    s->created_at = now_s();
    s->expires_at = s->created_at + s->ttl;
    snprintf(s->sandbox_name, sizeof(s->sandbox_name), "sandbox-%s", s->id);
    copy_str(s->owner, sizeof(s->owner), owner);
    s->endpoint[0] = s->reason[0] = s->host_key[0] = s->host_key_fpr[0] = 0;
    s->sandbox_uid[0] = 0;

    rc = store_session_create(app->st, s, app->ops->name, app->cfg.node_name,
                              app->cfg.max_sessions);
    if (rc == 0) {
        api_error_set(e, 429, "too_many_sessions",
                      "the limit of %d live sessions is reached",
                      app->cfg.max_sessions);
        return -1;
    }
    if (rc < 0) {
        api_error_set(e, 503, "redis_unavailable", "cannot store the session");
        return -1;
    }
    log_info("creating %s image=%s ttl=%lld owner=%s", s->id, s->image, s->ttl,
             owner[0] ? owner : "-");
    events_emit(app, s->id, "created", NULL);

    if (app->ops->create(app->rt, s, err, sizeof(err)) < 0) {
        if (err[0] == '\0')
            copy_str(err, sizeof(err), "sandbox failed to start");
        log_error("create %s failed: %s", s->id, err);
        mark_failed(app, s->id, err);
        s->status = SESSION_FAILED;
        copy_str(s->reason, sizeof(s->reason), err);
        api_error_set(e, 500, "sandbox_failed", "%s", err);
        return -1;
    }

    {
        char idle[24], at[24];
        const char *pairs[] = {"status",       "running",
                               "endpoint",     s->endpoint,
                               "host_key",     s->host_key,
                               "host_key_fpr", s->host_key_fpr,
                               "sandbox_uid",  s->sandbox_uid,
                               "idle_timeout", idle,
                               "active_at",    at};
        s->active_at = now_ms(); /* the idle clock starts (idle.c) */
        snprintf(idle, sizeof(idle), "%lld", s->idle_timeout);
        snprintf(at, sizeof(at), "%lld", s->active_at);
        rc = store_session_transition(app->st, s->id, "pending", "running",
                                      pairs, 7);
    }
    if (rc != 1) {
        /* Deleted or expired while starting (or Redis went away): the
         * sandbox must not outlive its record. */
        char derr[256];
        log_warn("create %s: record changed while starting; removing "
                 "sandbox",
                 s->id);
        app->ops->destroy(app->rt, s->id, derr, sizeof(derr));
        if (rc < 0) {
            api_error_set(e, 503, "redis_unavailable",
                          "cannot store the session");
        } else {
            api_error_set(e, 409, "conflict",
                          "the session was deleted while it was starting");
        }
        return -1;
    }
    s->status = SESSION_RUNNING;
    metrics_create_done(now_ms() - t0);
    log_info("created %s endpoint=%s in %lld ms", s->id, s->endpoint,
             now_ms() - t0);
    return 0;
}

/*
 * What the runtime's watch saw (runtime_watch_cb). The record is bound
 * to the sandbox's uid: news of another object under the session's name
 * is not news of the session, except that a running session whose name
 * now belongs to another object has lost its own. Only pending and
 * running records change (store_session_fail), so a delete in progress
 * (terminating) is left to finish.
 */
void lifecycle_sandbox_event(const char *id, const char *uid, const char *lost,
                             void *arg)
{
    pico_app *app = arg;
    char reason[PICO_REASON_MAX];
    session_record rec;
    int same;

    if (store_session_get(app->st, id, &rec) != 1)
        return;
    session_free(&rec.s);
    if (strcmp(rec.runtime, app->ops->name) != 0)
        return;
    same = rec.s.sandbox_uid[0] == '\0' || strcmp(rec.s.sandbox_uid, uid) == 0;
    if (lost == NULL) {
        if (same || rec.s.status != SESSION_RUNNING)
            return;
        snprintf(reason, sizeof(reason),
                 "sandbox replaced: its pod (uid %s) is gone and another "
                 "(uid %s) has its name",
                 rec.s.sandbox_uid, uid);
    } else {
        if (!same)
            return;
        copy_str(reason, sizeof(reason), lost);
    }
    if (mark_failed(app, id, reason) == 1)
        log_warn("%s failed: %s", id, reason);
}

int lifecycle_get(pico_app *app, const char *id, const char *principal,
                  session_record *rec, api_error *e)
{
    int rc = store_session_get(app->st, id, rec);

    if (rc < 0) {
        api_error_set(e, 503, "redis_unavailable", "cannot read sessions");
        return -1;
    }
    if (rc == 0 || strcmp(rec->s.owner, principal) != 0) {
        session_free(&rec->s);
        api_error_set(e, 404, "not_found", "session not found");
        return -1;
    }
    return 0;
}

int lifecycle_extend(pico_app *app, const char *id, const char *principal,
                     long long ttl, session_record *rec, api_error *e)
{
    long long out = 0;
    int rc;

    if (lifecycle_get(app, id, principal, rec, e) < 0)
        return -1;
    session_free(&rec->s);
    rc = store_session_extend(app->st, id, now_ms(), ttl, app->cfg.lifetime_max,
                              &out);
    if (rc == 4) {
        if (out >= 1)
            api_error_set(e, 400, "invalid_request",
                          "ttl: at most %lld now: a session lives at most "
                          "lifetime_max (%lld s) after created_at",
                          out, app->cfg.lifetime_max);
        else
            api_error_set(e, 400, "invalid_request",
                          "ttl: the session has reached lifetime_max (%lld s "
                          "after created_at) and cannot be extended",
                          app->cfg.lifetime_max);
        return -1;
    }
    if (rc == 0 || rc == 2 || rc == 3) {
        api_error_set(e, rc == 0 ? 404 : 409,
                      rc == 0 ? "not_found" : "conflict",
                      rc == 0   ? "session not found"
                      : rc == 2 ? "the session is being deleted"
                                : "the session has failed; its ttl cannot "
                                  "change");
        return -1;
    }
    if (rc != 1) {
        api_error_set(e, 503, "redis_unavailable", "cannot store the ttl");
        return -1;
    }
    log_info("extended %s ttl=%lld expires_at=%lld", id, ttl, out);
    return lifecycle_get(app, id, principal, rec, e);
}

void lifecycle_free_list(session_record *recs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        session_free(&recs[i].s);
    free(recs);
}

static int by_created(const void *a, const void *b)
{
    const session_record *x = a, *y = b;

    if (x->s.created_at != y->s.created_at)
        return x->s.created_at < y->s.created_at ? -1 : 1;
    return strcmp(x->s.id, y->s.id);
}

int lifecycle_list(pico_app *app, const char *principal, session_record **out,
                   size_t *nout, api_error *e)
{
    char **ids;
    size_t n, i, k = 0;
    session_record *recs;

    *out = NULL;
    *nout = 0;
    if (store_session_ids(app->st, &ids, &n) < 0) {
        api_error_set(e, 503, "redis_unavailable", "cannot read sessions");
        return -1;
    }
    recs = calloc(n ? n : 1, sizeof(*recs));
    if (recs == NULL) {
        store_free_ids(ids, n);
        api_error_set(e, 500, "internal", "out of memory");
        return -1;
    }
    for (i = 0; i < n; i++) {
        int rc = store_session_get(app->st, ids[i], &recs[k]);
        if (rc < 0) {
            store_free_ids(ids, n);
            lifecycle_free_list(recs, k);
            api_error_set(e, 503, "redis_unavailable", "cannot read sessions");
            return -1;
        }
        if (rc == 0)
            continue; /* deleted between the two reads */
        if (strcmp(recs[k].s.owner, principal) != 0) {
            session_free(&recs[k].s);
            continue;
        }
        k++;
    }
    store_free_ids(ids, n);
    qsort(recs, k, sizeof(*recs), by_created);
    *out = recs;
    *nout = k;
    return 0;
}

int lifecycle_destroy_claimed(pico_app *app, const char *id)
{
    char err[256] = "";

    if (app->ops->destroy(app->rt, id, err, sizeof(err)) < 0) {
        log_error("destroy %s failed: %s (will be retried when the lease "
                  "ends)",
                  id, err);
        return -1;
    }
    events_emit(app, id, "terminated", NULL);
    if (store_session_remove(app->st, id) < 0) {
        log_error("remove %s: redis failed (will be retried)", id);
        return -1;
    }
    return 0;
}

/* DELETE of another node's session: its sandbox is on that node, so that
 * node's reaper destroys it. We make it due now and wait (the reaper runs
 * every reaper_interval_ms) until the record is gone. */
static int delete_via_owner(pico_app *app, const char *id, const char *node,
                            api_error *e)
{
    long long deadline = now_ms() + 10000; /* a request cannot wait longer */
    session_record rec;
    int rc;

    log_info("delete %s: hands it to its node %s", id, node);
    if (store_session_expire_now(app->st, id) < 0) {
        api_error_set(e, 503, "redis_unavailable", "cannot delete the session");
        return -1;
    }
    while (now_ms() < deadline) {
        rc = store_session_get(app->st, id, &rec);
        if (rc == 0)
            return 0;
        if (rc == 1)
            session_free(&rec.s);
        (void)usleep(100000);
    }
    api_error_set(e, 503, "owner_unavailable",
                  "node %s has not deleted the session yet; it will when it "
                  "runs",
                  node);
    return -1;
}

int lifecycle_delete(pico_app *app, const char *id, const char *principal,
                     api_error *e)
{
    session_record rec;
    int rc;

    if (lifecycle_get(app, id, principal, &rec, e) < 0)
        return -1;
    session_free(&rec.s);
    if (rec.node[0] && strcmp(rec.node, app->cfg.node_name) != 0)
        return delete_via_owner(app, id, rec.node, e);
    rc = store_session_claim(app->st, id, lifecycle_lease_ms(app->ops));
    if (rc == 0) {
        api_error_set(e, 404, "not_found", "session not found");
        return -1;
    }
    if (rc == 2) {
        api_error_set(e, 409, "conflict", "the session is being deleted");
        return -1;
    }
    if (rc < 0) {
        api_error_set(e, 503, "redis_unavailable", "cannot claim the session");
        return -1;
    }
    if (lifecycle_destroy_claimed(app, id) < 0) {
        api_error_set(e, 500, "destroy_failed",
                      "the sandbox could not be removed; it will be retried");
        return -1;
    }
    log_info("deleted %s", id);
    return 0;
}

typedef struct {
    char **ids;
    size_t n, cap;
} id_set;

static void collect_id(const char *id, void *arg)
{
    id_set *set = arg;

    if (!uuid_valid(id))
        return;
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        char **t = realloc(set->ids, cap * sizeof(*t));
        if (t == NULL)
            return;
        set->ids = t;
        set->cap = cap;
    }
    set->ids[set->n] = strdup(id);
    if (set->ids[set->n])
        set->n++;
}

int lifecycle_list_sandboxes(pico_app *app, char ***ids, size_t *n)
{
    id_set set = {NULL, 0, 0};
    char err[256] = "";

    if (app->ops->list(app->rt, collect_id, &set, err, sizeof(err)) < 0) {
        log_error("cannot list sandboxes: %s", err);
        store_free_ids(set.ids, set.n);
        *ids = NULL;
        *n = 0;
        return -1;
    }
    *ids = set.ids;
    *n = set.n;
    return 0;
}

int lifecycle_drain(pico_app *app)
{
    char **ids = NULL, **boxes = NULL, err[256];
    size_t n = 0, nboxes = 0, i;
    int count = 0;

    if (app->st == NULL || store_session_ids(app->st, &ids, &n) < 0)
        log_error("drain: cannot list sessions in redis; removing the "
                  "sandboxes only");
    for (i = 0; i < n; i++) {
        /* Whatever the claim says, drain removes it: the stack stops. */
        store_session_claim(app->st, ids[i], lifecycle_lease_ms(app->ops));
        if (lifecycle_destroy_claimed(app, ids[i]) == 0) {
            log_info("drained %s", ids[i]);
            count++;
        }
    }
    store_free_ids(ids, n);
    lifecycle_list_sandboxes(app, &boxes, &nboxes);
    for (i = 0; i < nboxes; i++) {
        err[0] = '\0';
        if (app->ops->destroy(app->rt, boxes[i], err, sizeof(err)) < 0)
            log_error("drain: destroy %s: %s", boxes[i], err);
        else {
            log_info("drained sandbox %s", boxes[i]);
            count++;
        }
    }
    store_free_ids(boxes, nboxes);
    return count;
}
