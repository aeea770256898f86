/*
 * k8s_ready.c - readiness of a new sandbox pod: watches it from the
 * resourceVersion create() saw until it is Ready with an IP, fails for
 * good (image pull errors, a failed phase, deletion) or the deadline
 * passes; after a 410 Gone it lists the pod again and watches on from
 * the list's resourceVersion, backing off when that keeps failing. The watch
 * stream is split into events by k8s_client.c; tests/fuzz/k8s_watch.c
 * compiles this file in for its static on_pod_event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/util.h"
#include "runtime/kubernetes/k8s.h"

const char *jstr(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);

    if (b != NULL)
        v = json_object_get(v, b);
    return json_string_value(v);
}

/* Notes why a pending pod is not running yet (image pull, mounts...). */
static void note_waiting(ready_state *st, json_t *status)
{
    json_t *cs =
        json_array_get(json_object_get(status, "containerStatuses"), 0);
    json_t *waiting = json_object_get(json_object_get(cs, "state"), "waiting");
    const char *reason = json_string_value(json_object_get(waiting, "reason"));
    const char *msg = jstr(status, "message", NULL);

    if (reason != NULL)
        snprintf(st->why, sizeof(st->why), "container %s", reason);
    else if (msg != NULL)
        snprintf(st->why, sizeof(st->why), "%s", msg);
    /* These never heal by waiting: fail now rather than at the deadline. */
    if (reason != NULL && (strcmp(reason, "InvalidImageName") == 0 ||
                           strcmp(reason, "ErrImageNeverPull") == 0)) {
        snprintf(st->fail, sizeof(st->fail), "pod cannot start: %s", reason);
        st->done = -1;
    }
}

/* Looks at one version of the pod: Ready, failed, or not yet. */
void judge_pod(ready_state *st, json_t *pod)
{
    json_t *status = json_object_get(pod, "status");
    json_t *conds = json_object_get(status, "conditions");
    const char *phase = jstr(status, "phase", NULL);
    const char *rv = jstr(pod, "metadata", "resourceVersion");
    const char *ip = jstr(status, "podIP", NULL);
    size_t i;
    json_t *c;

    if (rv != NULL)
        snprintf(st->rv, sizeof(st->rv), "%s", rv);
    if (json_object_get(json_object_get(pod, "metadata"),
                        "deletionTimestamp") != NULL) {
        snprintf(st->fail, sizeof(st->fail), "pod is being deleted");
        st->done = -1;
        return;
    }
    if (phase != NULL &&
        (strcmp(phase, "Failed") == 0 || strcmp(phase, "Succeeded") == 0)) {
        snprintf(st->fail, sizeof(st->fail), "pod stopped (phase %s)", phase);
        st->done = -1;
        return;
    }
    json_array_foreach(conds, i, c)
    {
        const char *type = jstr(c, "type", NULL);
        const char *val = jstr(c, "status", NULL);

        if (type && val && strcmp(type, "Ready") == 0 &&
            strcmp(val, "True") == 0 && ip != NULL && ip[0] &&
            strlen(ip) < sizeof(st->ip)) {
            snprintf(st->ip, sizeof(st->ip), "%s", ip);
            st->done = 1;
            return;
        }
    }
    note_waiting(st, status);
}

static int on_pod_event(const char *type, json_t *obj, void *arg)
{
    ready_state *st = arg;

    if (strcmp(type, "ERROR") == 0) {
        json_t *code = json_object_get(obj, "code");
        const char *msg = jstr(obj, "message", NULL);

        if (json_integer_value(code) == 410) {
            st->gone = 1; /* our resourceVersion is too old: re-list */
        } else {
            /* The API server's trouble (etcd, throttling), not the pod's:
             * pause and watch again, until the deadline. */
            st->retry = 1;
            st->retry_after = json_integer_value(json_object_get(
                json_object_get(obj, "details"), "retryAfterSeconds"));
            snprintf(st->why, sizeof(st->why), "watch error %lld: %s",
                     (long long)json_integer_value(code),
                     msg ? msg : "error event");
        }
        return 1;
    }
    if (strcmp(type, "DELETED") == 0) {
        snprintf(st->fail, sizeof(st->fail), "pod was deleted while starting");
        st->done = -1;
        return 1;
    }
    if (strcmp(type, "BOOKMARK") == 0) {
        const char *rv = jstr(obj, "metadata", "resourceVersion");

        if (rv != NULL)
            snprintf(st->rv, sizeof(st->rv), "%s", rv);
        return 0;
    }
    judge_pod(st, obj);
    return st->done != 0;
}

/* Answers worth asking again: the API server is busy or restarting. */
static int transient(long status)
{
    return status == 0 || status == 429 || status >= 500;
}

/*
 * Waits before the next call after a failure: nothing after the first
 * 410 (the relist answers it), then 100 ms doubling to 3.2 s, or what
 * Retry-After asked for; never past the deadline. Without the pause, a
 * pod that does not change within the server's history window makes
 * every new watch answer 410 at once, a storm of requests.
 */
static void backoff(ready_state *st, double deadline)
{
    double wait = 0, left;

    if (st->retry_after > 0)
        wait = (double)st->retry_after;
    else if (st->errors > 0)
        wait = K8S_BACKOFF_FIRST_MS *
               (double)(1 << (st->errors > 5 ? 5 : st->errors - 1)) / 1000;
    if (wait * 1000 > K8S_BACKOFF_MAX_MS && st->retry_after <= 0)
        wait = K8S_BACKOFF_MAX_MS / 1000.0;
    st->errors++;
    st->retry_after = 0;
    left = deadline - mono_now();
    if (wait > left)
        wait = left;
    if (wait > 0)
        usleep((useconds_t)(wait * 1e6));
}

/*
 * Lists the pod (fieldSelector on its name) and judges it; the watch
 * then resumes from the LIST's resourceVersion, which is current, where
 * the pod's own may be older than the server's history. 0 done, 1 a
 * transient failure to retry (st->retry_after set), -1 fatal (err).
 */
static int relist(runtime *rt, const char *name, ready_state *st,
                  double deadline, char *err, size_t errlen)
{
    char path[K8S_PATH_MAX], base[320];
    const char *rv;
    json_t *pod;
    k8s_resp r;
    int rc = 0;

    object_path(rt, "pods", NULL, base, sizeof(base));
    snprintf(path, sizeof(path), "%s?fieldSelector=metadata.name%%3D%s", base,
             name);
    if (k8s_request(&rt->conn, "GET", path, NULL, NULL, call_timeout(deadline),
                    &r, err, errlen) < 0) {
        snprintf(st->why, sizeof(st->why), "%s", err);
        return 1; /* a dropped connection: try again */
    }
    if (r.status == 200) {
        pod = json_array_get(json_object_get(r.body, "items"), 0);
        rv = jstr(r.body, "metadata", "resourceVersion");
        if (pod == NULL) {
            snprintf(st->fail, sizeof(st->fail),
                     "pod was deleted while starting");
            st->done = -1;
        } else {
            judge_pod(st, pod);
        }
        if (rv != NULL)
            snprintf(st->rv, sizeof(st->rv), "%s", rv);
    } else if (transient(r.status)) {
        k8s_error(&r, "listing the pod", st->why, sizeof(st->why));
        st->retry_after = r.retry_after;
        rc = 1;
    } else {
        k8s_error(&r, "listing the pod", err, errlen);
        rc = -1;
    }
    k8s_resp_free(&r);
    return rc;
}

/* One watch from st->rv. 0 to go on (st->gone / st->retry say how), -1
 * for an answer waiting will not mend (err). */
static int watch_once(runtime *rt, const char *name, ready_state *st,
                      double left, char *err, size_t errlen)
{
    char path[K8S_PATH_MAX], base[320];
    long status = 0, after = 0, secs = (long)left + 1;
    int rc;

    object_path(rt, "pods", NULL, base, sizeof(base));
    snprintf(path, sizeof(path),
             "%s?watch=1&allowWatchBookmarks=true&fieldSelector="
             "metadata.name%%3D%s&resourceVersion=%s&timeoutSeconds=%ld",
             base, name, st->rv, secs);
    rc = k8s_watch(&rt->conn, path, secs + 2, on_pod_event, st, &status, &after,
                   err, errlen);
    if (rc >= 0) {
        if (!st->gone && !st->retry)
            st->errors = 0; /* a stream that worked: start backoff over */
        return 0;
    }
    if (status == 410) {
        st->gone = 1;
    } else if (transient(status)) {
        snprintf(st->why, sizeof(st->why), "%s", err);
        st->retry = 1;
        st->retry_after = after;
    } else {
        return -1; /* 401, 403, 404...: waiting will not help */
    }
    return 0;
}

/*
 * Watches pod `name` from resourceVersion st->rv until it is Ready (1),
 * fails (-1, reason in err) or the deadline passes (0). Streams that end
 * are resumed from the last resourceVersion seen; a 410 Gone lists the
 * pod and resumes from the list's version. Transient API errors (5xx,
 * 429, dropped connections, ERROR events) are retried with backoff,
 * honouring Retry-After, until the deadline; others fail.
 */
int wait_ready(runtime *rt, const char *name, ready_state *st, double deadline,
               char *err, size_t errlen)
{
    double left;

    while (st->done == 0 && (left = deadline - mono_now()) > 0) {
        int rc;

        if (st->gone || st->retry) {
            backoff(st, deadline);
            st->retry = 0;
            if (mono_now() >= deadline)
                break;
        }
        if (st->gone) {
            rc = relist(rt, name, st, deadline, err, errlen);
            if (rc < 0)
                return -1;
            if (rc == 0)
                st->gone = 0;
            else
                st->retry = 1;
            continue;
        }
        if (watch_once(rt, name, st, left, err, errlen) < 0)
            return -1;
    }
    if (st->done < 0) {
        snprintf(err, errlen, "%s", st->fail);
        return -1;
    }
    return st->done;
}
