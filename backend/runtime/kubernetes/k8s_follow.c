/*
 * k8s_follow.c - following every sandbox pod for as long as the backend
 * serves (runtime_ops.watch), so that a session whose pod is lost stops
 * being reachable at once.
 *
 * Why: a session's endpoint is its pod's IP, fixed at create. When the
 * pod dies (deleted from outside, evicted, its container exits, the node
 * goes) the cluster may give that IP to another session's pod, and a
 * CONNECT to the first session would land in the second one's sandbox.
 * So one thread watches the pods labelled managed-by=pico-apiserver and
 * reports, through the core's callback, every pod it has seen Ready that
 * is deleted, being deleted, Failed/Succeeded, or no longer Ready; the
 * core then fails the session and clears its endpoint. Pods never seen
 * Ready are a create's own business (k8s_ready.c watches those).
 *
 * A session is bound to its pod's uid, not its name: each report carries
 * the uid, and a Ready pod is reported too (lost NULL) so the core can
 * tell that the name now belongs to another object.
 *
 * The watch starts with a LIST (its resourceVersion is current) and
 * resumes from the last resourceVersion seen when a stream ends; after a
 * 410 Gone it lists again, and a pod that was known but is missing from
 * the new list was deleted while the watch was away. Failures back off
 * (100 ms doubling to 3.2 s, or Retry-After), forever: the thread stops
 * only when close() asks.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/util.h"
#include "runtime/kubernetes/k8s.h"

/* A server-side end to each stream, so a half-dead connection that
 * never errors is replaced now and then. */
#define FOLLOW_WATCH_S 300

/* A pod seen Ready: the session it serves and the object it is. */
typedef struct {
    char id[PICO_ID_LEN + 1];
    char uid[PICO_UID_MAX + 1];
    int listed; /* seen in the current relist */
} known_pod;

struct k8s_follower {
    runtime *rt;
    runtime_watch_cb cb;
    void *arg;
    pthread_t thread;
    atomic_int stop;
    char rv[64];
    known_pod *pods;
    size_t npods, cap;
    int gone, retry, errors;
    long retry_after;
};

static known_pod *find_pod(k8s_follower *f, const char *id)
{
    size_t i;

    for (i = 0; i < f->npods; i++)
        if (strcmp(f->pods[i].id, id) == 0)
            return &f->pods[i];
    return NULL;
}

static void forget_pod(k8s_follower *f, known_pod *p)
{
    *p = f->pods[--f->npods];
}

static known_pod *add_pod(k8s_follower *f, const char *id, const char *uid)
{
    known_pod *p;

    if (f->npods == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        known_pod *n = realloc(f->pods, cap * sizeof(*n));

        if (n == NULL)
            return NULL;
        f->pods = n;
        f->cap = cap;
    }
    p = &f->pods[f->npods++];
    memset(p, 0, sizeof(*p));
    copy_str(p->id, sizeof(p->id), id);
    copy_str(p->uid, sizeof(p->uid), uid);
    return p;
}

/* Why this version of a pod cannot serve (into why), or 0 if it can:
 * Ready with an IP. */
static int pod_trouble(json_t *pod, char *why, size_t whylen)
{
    json_t *status = json_object_get(pod, "status");
    const char *phase = jstr(status, "phase", NULL);
    const char *reason = jstr(status, "reason", NULL);
    const char *ip = jstr(status, "podIP", NULL);
    size_t i;
    json_t *c;

    if (json_object_get(json_object_get(pod, "metadata"),
                        "deletionTimestamp") != NULL) {
        snprintf(why, whylen, "pod is being deleted");
        return 1;
    }
    if (phase != NULL &&
        (strcmp(phase, "Failed") == 0 || strcmp(phase, "Succeeded") == 0)) {
        snprintf(why, whylen, "pod stopped (phase %s%s%s)", phase,
                 reason ? ", " : "", reason ? reason : "");
        return 1;
    }
    json_array_foreach(json_object_get(status, "conditions"), i, c)
    {
        const char *type = jstr(c, "type", NULL);
        const char *val = jstr(c, "status", NULL);

        if (type && val && strcmp(type, "Ready") == 0 &&
            strcmp(val, "True") == 0 && ip != NULL && ip[0])
            return 0;
    }
    snprintf(why, whylen, "pod is not ready%s%s", reason ? ": " : "",
             reason ? reason : "");
    return 1;
}

/* One version of one pod (deleted: its last version). */
static void on_pod(k8s_follower *f, json_t *pod, int deleted)
{
    json_t *labels =
        json_object_get(json_object_get(pod, "metadata"), "labels");
    const char *id = jstr(labels, "session-id", NULL);
    const char *uid = jstr(pod, "metadata", "uid");
    char why[PICO_REASON_MAX];
    known_pod *p;
    int bad;

    if (id == NULL || !uuid_valid(id) || uid == NULL ||
        strlen(uid) > PICO_UID_MAX)
        return;
    bad = deleted ? 1 : pod_trouble(pod, why, sizeof(why));
    if (deleted)
        snprintf(why, sizeof(why), "pod was deleted");
    p = find_pod(f, id);
    if (p != NULL && strcmp(p->uid, uid) != 0) {
        /* The name passed to another object: ours is gone. */
        f->cb(id, p->uid, "pod is gone (another pod has its name)", f->arg);
        forget_pod(f, p);
        p = NULL;
    }
    if (!bad) {
        if (p == NULL && (p = add_pod(f, id, uid)) != NULL)
            f->cb(id, uid, NULL, f->arg); /* binds, or unbinds, the name */
        if (p != NULL)
            p->listed = 1;
        return;
    }
    if (p != NULL) {
        f->cb(id, uid, why, f->arg);
        forget_pod(f, p);
    }
}

static int on_event(const char *type, json_t *obj, void *arg)
{
    k8s_follower *f = arg;
    const char *rv = jstr(obj, "metadata", "resourceVersion");

    if (atomic_load(&f->stop))
        return 1;
    if (strcmp(type, "ERROR") == 0) {
        json_int_t code = json_integer_value(json_object_get(obj, "code"));

        if (code == 410) {
            f->gone = 1;
        } else {
            f->retry = 1;
            f->retry_after = (long)json_integer_value(json_object_get(
                json_object_get(obj, "details"), "retryAfterSeconds"));
        }
        return 1;
    }
    if (rv != NULL)
        snprintf(f->rv, sizeof(f->rv), "%s", rv);
    if (strcmp(type, "BOOKMARK") != 0)
        on_pod(f, obj, strcmp(type, "DELETED") == 0);
    return 0;
}

/* Sleeps ms, waking early when asked to stop. */
static void pause_ms(k8s_follower *f, long ms)
{
    while (ms > 0 && !atomic_load(&f->stop)) {
        long step = ms > 50 ? 50 : ms;

        usleep((useconds_t)step * 1000);
        ms -= step;
    }
}

static void backoff(k8s_follower *f)
{
    long ms = K8S_BACKOFF_FIRST_MS << (f->errors > 5 ? 5 : f->errors);

    if (ms > K8S_BACKOFF_MAX_MS)
        ms = K8S_BACKOFF_MAX_MS;
    if (f->retry_after > 0)
        ms = f->retry_after * 1000;
    f->errors++;
    f->retry_after = 0;
    pause_ms(f, ms);
}

/* Lists every sandbox pod; known pods missing from it were deleted while
 * no stream was open. 0, or -1 to back off and try again. */
static int relist(k8s_follower *f)
{
    char base[320], path[K8S_PATH_MAX], err[PICO_REASON_MAX];
    const char *rv;
    k8s_resp r;
    size_t i;
    json_t *items, *pod;

    object_path(f->rt, "pods", NULL, base, sizeof(base));
    snprintf(path, sizeof(path), "%s?labelSelector=%s", base, K8S_SELECTOR);
    if (k8s_request(&f->rt->conn, "GET", path, NULL, NULL, K8S_CALL_TIMEOUT_S,
                    &r, err, sizeof(err)) < 0) {
        log_warn("k8s follow: %s", err);
        return -1;
    }
    rv = jstr(r.body, "metadata", "resourceVersion");
    if (r.status != 200 || rv == NULL) {
        k8s_error(&r, "k8s follow: listing pods", err, sizeof(err));
        log_warn("%s", err);
        f->retry_after = r.retry_after;
        k8s_resp_free(&r);
        return -1;
    }
    for (i = 0; i < f->npods; i++)
        f->pods[i].listed = 0;
    items = json_object_get(r.body, "items");
    json_array_foreach(items, i, pod)
    {
        on_pod(f, pod, 0);
    }
    for (i = f->npods; i-- > 0;) {
        if (f->pods[i].listed)
            continue;
        f->cb(f->pods[i].id, f->pods[i].uid, "pod was deleted", f->arg);
        forget_pod(f, &f->pods[i]);
    }
    snprintf(f->rv, sizeof(f->rv), "%s", rv);
    k8s_resp_free(&r);
    return 0;
}

/* One stream from f->rv. 0 when it ended as streams do, -1 on failure
 * (f->gone set for a 410). */
static int watch_once(k8s_follower *f)
{
    char base[320], path[K8S_PATH_MAX], err[PICO_REASON_MAX];
    long status = 0, after = 0;
    int rc;

    object_path(f->rt, "pods", NULL, base, sizeof(base));
    snprintf(path, sizeof(path),
             "%s?watch=1&allowWatchBookmarks=true&labelSelector=%s"
             "&resourceVersion=%s&timeoutSeconds=%d",
             base, K8S_SELECTOR, f->rv, FOLLOW_WATCH_S);
    rc = k8s_watch_stoppable(&f->rt->conn, path, FOLLOW_WATCH_S + 30, &f->stop,
                             on_event, f, &status, &after, err, sizeof(err));
    if (atomic_load(&f->stop))
        return 0;
    if (rc < 0 && status == 410)
        f->gone = 1;
    if (rc < 0 && status != 410) {
        log_warn("k8s follow: %s", err);
        f->retry_after = after;
        return -1;
    }
    return f->gone || f->retry ? -1 : 0;
}

static void *follow_main(void *arg)
{
    k8s_follower *f = arg;
    int listed = 0;

    while (!atomic_load(&f->stop)) {
        int rc;

        if (!listed) {
            rc = relist(f);
            listed = rc == 0;
            if (rc == 0)
                continue; /* errors count on: a list is no working stream */
        } else {
            rc = watch_once(f);
            if (f->gone)
                listed = 0; /* the history moved on: list again */
        }
        if (rc == 0) {
            f->errors = 0;
            continue;
        }
        /* No pause before the first relist after a 410: it answers it. */
        if (!(f->gone && f->errors == 0))
            backoff(f);
        else
            f->errors++;
        f->gone = f->retry = 0;
    }
    return NULL;
}

int k8s_follow_start(runtime *rt, runtime_watch_cb cb, void *arg, char *err,
                     size_t errlen)
{
    k8s_follower *f;

    if (rt->follower != NULL) {
        snprintf(err, errlen, "the pod watch is running already");
        return -1;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->rt = rt;
    f->cb = cb;
    f->arg = arg;
    atomic_init(&f->stop, 0);
    if (pthread_create(&f->thread, NULL, follow_main, f) != 0) {
        free(f);
        snprintf(err, errlen, "cannot start the pod watch thread");
        return -1;
    }
    rt->follower = f;
    return 0;
}

void k8s_follow_stop(runtime *rt)
{
    k8s_follower *f = rt->follower;

    if (f == NULL)
        return;
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    free(f->pods);
    free(f);
    rt->follower = NULL;
}
