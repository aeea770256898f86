/*
 * k8s_ready.c - readiness of a new sandbox pod: watches it from the
 * resourceVersion create() saw until it is Ready with an IP, fails for
 * good (image pull errors, a failed phase, deletion) or the deadline
 * passes; after a 410 Gone it lists again and watches on. The watch
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

        if (json_integer_value(code) == 410) {
            st->gone = 1; /* our resourceVersion is too old: re-list */
        } else {
            snprintf(st->fail, sizeof(st->fail), "watching the pod: %s",
                     jstr(obj, "message", NULL) ? jstr(obj, "message", NULL)
                                                : "error event");
            st->done = -1;
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

/* GET the pod and judge it; also restarts the watch after a 410. */
static int relist(runtime *rt, const char *name, ready_state *st,
                  double deadline, char *err, size_t errlen)
{
    char path[K8S_PATH_MAX];
    k8s_resp r;
    int rc = 0;

    object_path(rt, "pods", name, path, sizeof(path));
    if (k8s_request(&rt->conn, "GET", path, NULL, NULL, call_timeout(deadline),
                    &r, err, errlen) < 0)
        return -1;
    if (r.status == 200) {
        judge_pod(st, r.body);
    } else if (r.status == 404) {
        snprintf(st->fail, sizeof(st->fail), "pod was deleted while starting");
        st->done = -1;
    } else {
        k8s_error(&r, "reading the pod", err, errlen);
        rc = -1;
    }
    k8s_resp_free(&r);
    return rc;
}

/*
 * Watches pod `name` from resourceVersion st->rv until it is Ready (1),
 * fails (-1, reason in err) or the deadline passes (0). Streams that end
 * are resumed from the last resourceVersion seen; a 410 Gone re-reads
 * the pod and resumes from its version. Transient API errors (5xx, 429,
 * dropped connections) are retried until the deadline; others fail.
 */
int wait_ready(runtime *rt, const char *name, ready_state *st, double deadline,
               char *err, size_t errlen)
{
    char path[K8S_PATH_MAX], base[320];
    double left;

    object_path(rt, "pods", NULL, base, sizeof(base));
    while (st->done == 0 && (left = deadline - mono_now()) > 0) {
        long status = 0, secs = (long)left + 1;
        int rc;

        if (st->gone) {
            st->gone = 0;
            if (relist(rt, name, st, deadline, err, errlen) < 0)
                return -1;
            continue;
        }
        snprintf(path, sizeof(path),
                 "%s?watch=1&allowWatchBookmarks=true&fieldSelector="
                 "metadata.name%%3D%s&resourceVersion=%s&timeoutSeconds=%ld",
                 base, name, st->rv, secs);
        rc = k8s_watch(&rt->conn, path, secs + 2, on_pod_event, st, &status,
                       err, errlen);
        if (rc >= 0)
            continue;
        if (status == 410) {
            st->gone = 1;
        } else if (status != 0 && status < 500 && status != 429) {
            return -1; /* 401, 403, 404...: waiting will not help */
        } else {
            usleep(200 * 1000); /* brief pause before trying again */
        }
    }
    if (st->done < 0) {
        snprintf(err, errlen, "%s", st->fail);
        return -1;
    }
    return st->done;
}
