/*
 * runtime_k8s.c - the "kubernetes" runtime driver: one pod per session.
 *
 * create() makes, in the sandbox namespace (k8s_namespace):
 *   1. Secret sandbox-<id>-ssh: the session's ed25519 host key and the
 *      user's authorized_keys. Keys never travel in env vars or the pod
 *      spec; the pod mounts the Secret read-only at /etc/ssh/pico, where
 *      the image's sshd_config (deploy/sandbox/sshd_config) looks.
 *   2. Pod sandbox-<id>: the sandbox image, sshd on 22, a tcpSocket
 *      readiness probe, the session's limits as requests and limits.
 *   3. The Secret's ownerReference to the Pod (its uid is known only now),
 *      so the garbage collector removes the Secret with the Pod even if
 *      pico never gets to; destroy() still deletes both itself.
 * and then watches the pod until it is Ready (endpoint "<podIP>:22") or
 * k8s_ready_timeout_s passes. Whatever fails, everything made is deleted
 * before create() returns.
 *
 * Every name and label value is derived from the session id, a canonical
 * UUID the core has validated (checked again here: it ends up in URLs).
 * Objects carry the labels app.kubernetes.io/managed-by=pico,
 * managed-by=pico-apiserver, session-id=<id> and sandbox=<sandbox_name>;
 * list() finds them by label for reconcile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include "core/config.h"
#include "runtime/hostkey.h"
#include "runtime/kubernetes/k8s_client.h"
#include "runtime/kubernetes/runtime_k8s.h"
#include "core/util.h"

#define K8S_CALL_TIMEOUT_S 30
/* Undoing a failed create must not wait as long as a call may. */
#define K8S_CLEANUP_TIMEOUT_S 10
#define K8S_HEALTH_TIMEOUT_S 5
#define K8S_LIST_PAGE 500
#define K8S_MOUNT "/etc/ssh/pico"
#define K8S_SELECTOR "managed-by%3Dpico-apiserver"

struct runtime {
    k8s_conn conn;
    char ns[128];
    char image_prefix[256];
    int ready_timeout_s;
};

/* ---- names ------------------------------------------------------------ */

/* A DNS-1123 label: what a namespace name must be. */
static int dns_label_valid(const char *s)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '-'))
            return 0;
    return 1;
}

static void pod_name(const char *id, char *out, size_t outlen)
{
    snprintf(out, outlen, "sandbox-%s", id);
}

static void secret_name(const char *id, char *out, size_t outlen)
{
    snprintf(out, outlen, "sandbox-%s-ssh", id);
}

static void object_path(const runtime *rt, const char *kind, const char *name,
                        char *out, size_t outlen)
{
    snprintf(out, outlen, "/api/v1/namespaces/%s/%s%s%s", rt->ns, kind,
             name ? "/" : "", name ? name : "");
}

static json_t *labels(const session *s)
{
    char pod[PICO_NAME_MAX + 16];

    pod_name(s->id, pod, sizeof(pod));
    /* sandbox_name is "sandbox-<id>" by contract; use the pod name should
     * it ever be something a label value cannot hold. */
    return json_pack("{s:s, s:s, s:s, s:s}", "app.kubernetes.io/managed-by",
                     "pico", "managed-by", "pico-apiserver", "session-id",
                     s->id, "sandbox",
                     dns_label_valid(s->sandbox_name) ? s->sandbox_name : pod);
}

/* ---- objects ------------------------------------------------------------ */

static json_t *secret_object(const runtime *rt, const session *s,
                             const hostkey *hk)
{
    char name[PICO_NAME_MAX + 16];
    char *key = k8s_b64_encode((const unsigned char *)hk->private_key,
                               strlen(hk->private_key));
    char *auth = k8s_b64_encode((const unsigned char *)s->ssh_public_key,
                                strlen(s->ssh_public_key));
    json_t *o = NULL;

    secret_name(s->id, name, sizeof(name));
    if (key != NULL && auth != NULL)
        o = json_pack("{s:s, s:s, s:{s:s, s:s, s:o}, s:s, s:{s:s, s:s}}",
                      "apiVersion", "v1", "kind", "Secret", "metadata", "name",
                      name, "namespace", rt->ns, "labels", labels(s), "type",
                      "Opaque", "data", "ssh_host_ed25519_key", key,
                      "authorized_keys", auth);
    if (key != NULL) {
        memset(key, 0, strlen(key));
        free(key);
    }
    free(auth);
    return o;
}

static json_t *resources(const session *s)
{
    char cpu[32], mem[32], disk[32];
    json_t *r;

    snprintf(cpu, sizeof(cpu), "%dm", s->limits.cpu_millicores);
    snprintf(mem, sizeof(mem), "%dMi", s->limits.memory_mb);
    /* requests == limits: the Guaranteed QoS class, so a sandbox is never
     * the first one evicted for its neighbours' sake. */
    r = json_pack("{s:{s:s, s:s}, s:{s:s, s:s}}", "requests", "cpu", cpu,
                  "memory", mem, "limits", "cpu", cpu, "memory", mem);
    /* A disk quota is the pod's ephemeral storage (its writable layer,
     * logs and the workspace emptyDir): the kubelet evicts a pod that
     * writes past it. Not exactly ENOSPC as locally, but bounded. */
    if (r != NULL && s->limits.disk_mb > 0) {
        snprintf(disk, sizeof(disk), "%dMi", s->limits.disk_mb);
        json_object_set_new(json_object_get(r, "requests"), "ephemeral-storage",
                            json_string(disk));
        json_object_set_new(json_object_get(r, "limits"), "ephemeral-storage",
                            json_string(disk));
    }
    return r;
}

/* The workspace volume: an emptyDir, capped at the disk quota if any. */
static json_t *workspace_volume(const session *s)
{
    char disk[32];

    if (s->limits.disk_mb <= 0)
        return json_pack("{s:s, s:{}}", "name", "workspace", "emptyDir");
    snprintf(disk, sizeof(disk), "%dMi", s->limits.disk_mb);
    return json_pack("{s:s, s:{s:s}}", "name", "workspace", "emptyDir",
                     "sizeLimit", disk);
}

static json_t *container(const runtime *rt, const session *s)
{
    char image[PICO_IMAGE_MAX + 256 + 1];

    snprintf(image, sizeof(image), "%s%s", rt->image_prefix, s->image);
    /* sshd needs root to switch to the user, and only these capabilities
     * for it; no privilege escalation beyond that (no setuid binaries). */
    return json_pack(
        "{s:s, s:s, s:s, s:[{s:s, s:i, s:s}], s:{s:{s:i}, s:i, s:i, s:i}, "
        "s:o, s:{s:b, s:{s:[s], s:[s,s,s,s,s,s,s,s]}}, "
        "s:[{s:s, s:s, s:b}, {s:s, s:s}]}",
        "name", "sshd", "image", image, "imagePullPolicy", "IfNotPresent",
        "ports", "name", "ssh", "containerPort", 22, "protocol", "TCP",
        "readinessProbe", "tcpSocket", "port", 22, "periodSeconds", 1,
        "timeoutSeconds", 1, "failureThreshold", 3, "resources", resources(s),
        "securityContext", "allowPrivilegeEscalation", 0, "capabilities",
        "drop", "ALL", "add", "CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID",
        "SETGID", "SYS_CHROOT", "NET_BIND_SERVICE", "KILL", "volumeMounts",
        "name", "ssh-keys", "mountPath", K8S_MOUNT, "readOnly", 1, "name",
        "workspace", "mountPath", "/workspace");
}

static json_t *pod_object(const runtime *rt, const session *s)
{
    char name[PICO_NAME_MAX + 16], secret[PICO_NAME_MAX + 16];

    pod_name(s->id, name, sizeof(name));
    secret_name(s->id, secret, sizeof(secret));
    /* Host key 0400 for sshd (root) alone; authorized_keys 0444 because
     * sshd reads it as the user it authenticates. */
    return json_pack(
        "{s:s, s:s, s:{s:s, s:s, s:o}, s:{s:s, s:s, s:b, s:b, s:i, "
        "s:{s:{s:s}}, s:[o], s:[{s:s, s:{s:s, s:i, s:[{s:s, s:s, s:i}, "
        "{s:s, s:s, s:i}]}}, o]}}",
        "apiVersion", "v1", "kind", "Pod", "metadata", "name", name,
        "namespace", rt->ns, "labels", labels(s), "spec", "restartPolicy",
        "Never", "hostname", "sandbox", "automountServiceAccountToken", 0,
        "enableServiceLinks", 0, "terminationGracePeriodSeconds", 5,
        "securityContext", "seccompProfile", "type", "RuntimeDefault",
        "containers", container(rt, s), "volumes", "name", "ssh-keys", "secret",
        "secretName", secret, "defaultMode", 0400, "items", "key",
        "ssh_host_ed25519_key", "path", "ssh_host_ed25519_key", "mode", 0400,
        "key", "authorized_keys", "path", "authorized_keys", "mode", 0444,
        workspace_volume(s));
}

/* ---- small API helpers ------------------------------------------------ */

static double mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A call made for create() may take what is left of its deadline, so a
 * hanging API server fails the create in time (at least 1 s, at most
 * K8S_CALL_TIMEOUT_S). */
static long call_timeout(double deadline)
{
    double left = deadline - mono_now();

    if (left < 1)
        return 1;
    return left > K8S_CALL_TIMEOUT_S ? K8S_CALL_TIMEOUT_S : (long)left + 1;
}

/* Deletes one object; a missing one is success. */
static int delete_object(runtime *rt, const char *kind, const char *name,
                         long timeout_s, char *err, size_t errlen)
{
    char path[K8S_PATH_MAX];
    k8s_resp r;
    int rc = 0;
    json_t *opts = json_pack("{s:s, s:s, s:i, s:s}", "kind", "DeleteOptions",
                             "apiVersion", "v1", "gracePeriodSeconds", 1,
                             "propagationPolicy", "Background");

    object_path(rt, kind, name, path, sizeof(path));
    if (k8s_request(&rt->conn, "DELETE", path, NULL, opts, timeout_s, &r, err,
                    errlen) < 0) {
        json_decref(opts);
        return -1;
    }
    if (r.status != 200 && r.status != 202 && r.status != 404) {
        char what[256];

        snprintf(what, sizeof(what), "deleting %s %s", kind, name);
        k8s_error(&r, what, err, errlen);
        rc = -1;
    }
    k8s_resp_free(&r);
    json_decref(opts);
    return rc;
}

static void delete_both(runtime *rt, const char *id)
{
    char name[PICO_NAME_MAX + 16], err[PICO_REASON_MAX];

    pod_name(id, name, sizeof(name));
    delete_object(rt, "pods", name, K8S_CLEANUP_TIMEOUT_S, err, sizeof(err));
    secret_name(id, name, sizeof(name));
    delete_object(rt, "secrets", name, K8S_CLEANUP_TIMEOUT_S, err, sizeof(err));
}

/* POSTs obj (and releases it); on 201 returns the created object, which
 * the caller releases. */
static json_t *create_object(runtime *rt, const char *kind, json_t *obj,
                             double deadline, char *err, size_t errlen)
{
    char path[K8S_PATH_MAX];
    json_t *out = NULL;
    k8s_resp r;

    object_path(rt, kind, NULL, path, sizeof(path));
    if (obj == NULL) {
        snprintf(err, errlen, "out of memory building the %s", kind);
        return NULL;
    }
    if (k8s_request(&rt->conn, "POST", path, NULL, obj, call_timeout(deadline),
                    &r, err, errlen) < 0) {
        json_decref(obj);
        return NULL;
    }
    json_decref(obj);
    if (r.status == 201 || r.status == 200) {
        out = json_incref(r.body);
    } else {
        char what[64];

        snprintf(what, sizeof(what), "creating the %s",
                 strcmp(kind, "pods") == 0 ? "pod" : "secret");
        k8s_error(&r, what, err, errlen);
    }
    k8s_resp_free(&r);
    if (out == NULL && err[0] == '\0')
        snprintf(err, errlen, "creating the %s: no object in the answer", kind);
    return out;
}

/* Makes the Pod the Secret's owner (merge patch of ownerReferences). */
static int own_secret(runtime *rt, const session *s, const char *pod_uid,
                      double deadline, char *err, size_t errlen)
{
    char name[PICO_NAME_MAX + 16], pod[PICO_NAME_MAX + 16];
    char path[K8S_PATH_MAX];
    json_t *patch;
    k8s_resp r;
    int rc = 0;

    secret_name(s->id, name, sizeof(name));
    pod_name(s->id, pod, sizeof(pod));
    object_path(rt, "secrets", name, path, sizeof(path));
    patch = json_pack("{s:{s:[{s:s, s:s, s:s, s:s}]}}", "metadata",
                      "ownerReferences", "apiVersion", "v1", "kind", "Pod",
                      "name", pod, "uid", pod_uid);
    if (k8s_request(&rt->conn, "PATCH", path, "application/merge-patch+json",
                    patch, call_timeout(deadline), &r, err, errlen) < 0) {
        json_decref(patch);
        return -1;
    }
    if (r.status != 200) {
        k8s_error(&r, "making the pod own its secret", err, errlen);
        rc = -1;
    }
    k8s_resp_free(&r);
    json_decref(patch);
    return rc;
}

/* ---- readiness --------------------------------------------------------- */

typedef struct {
    char rv[64];   /* last resourceVersion seen */
    char ip[64];   /* podIP once Ready */
    char why[160]; /* the pod's last reported trouble */
    int done;      /* 1 ready, -1 failed for good */
    int gone;      /* 410: re-list before watching again */
    char fail[PICO_REASON_MAX];
} ready_state;

static const char *jstr(json_t *o, const char *a, const char *b)
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
static void judge_pod(ready_state *st, json_t *pod)
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
static int wait_ready(runtime *rt, const char *name, ready_state *st,
                      double deadline, char *err, size_t errlen)
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

/* ---- runtime_ops -------------------------------------------------------- */

static runtime *k8s_open(const struct pico_config *cfg, char *err,
                         size_t errlen)
{
    runtime *rt;

    if (!dns_label_valid(cfg->k8s_namespace)) {
        snprintf(err, errlen, "k8s_namespace \"%s\" is not a valid namespace",
                 cfg->k8s_namespace);
        return NULL;
    }
    if (strpbrk(cfg->k8s_image_prefix, " \t\"\\") != NULL) {
        snprintf(err, errlen,
                 "k8s_image_prefix must not contain blanks, "
                 "quotes or backslashes");
        return NULL;
    }
    k8s_global_init();
    rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (k8s_conn_init(&rt->conn, cfg, err, errlen) < 0) {
        free(rt);
        return NULL;
    }
    snprintf(rt->ns, sizeof(rt->ns), "%s", cfg->k8s_namespace);
    snprintf(rt->image_prefix, sizeof(rt->image_prefix), "%s",
             cfg->k8s_image_prefix);
    rt->ready_timeout_s =
        cfg->k8s_ready_timeout_s > 0 ? cfg->k8s_ready_timeout_s : 120;
    return rt;
}

static void k8s_close(runtime *rt)
{
    if (rt == NULL)
        return;
    k8s_conn_free(&rt->conn);
    free(rt);
}

/* The cluster pulls images itself; pico cannot tell in advance whether a
 * registry has one. A missing image shows as a pod that never starts. */
static int k8s_image_exists(runtime *rt, const char *image)
{
    (void)rt;
    return image != NULL && image[0] != '\0';
}

/* Secret, then Pod, then the owner link; on failure undoes what exists. */
static int start_objects(runtime *rt, session *s, const hostkey *hk,
                         ready_state *st, double deadline, char *err,
                         size_t errlen)
{
    json_t *created;
    const char *uid, *rv;

    created = create_object(rt, "secrets", secret_object(rt, s, hk), deadline,
                            err, errlen);
    if (created == NULL)
        return -1;
    json_decref(created);
    created =
        create_object(rt, "pods", pod_object(rt, s), deadline, err, errlen);
    if (created == NULL) {
        delete_both(rt, s->id);
        return -1;
    }
    uid = jstr(created, "metadata", "uid");
    rv = jstr(created, "metadata", "resourceVersion");
    if (uid == NULL || rv == NULL) {
        snprintf(err, errlen, "the created pod has no uid/resourceVersion");
        json_decref(created);
        delete_both(rt, s->id);
        return -1;
    }
    snprintf(st->rv, sizeof(st->rv), "%s", rv);
    judge_pod(st, created);
    if (own_secret(rt, s, uid, deadline, err, errlen) < 0) {
        json_decref(created);
        delete_both(rt, s->id);
        return -1;
    }
    json_decref(created);
    return 0;
}

static int k8s_create(runtime *rt, session *s, char *err, size_t errlen)
{
    char name[PICO_NAME_MAX + 16];
    double deadline = mono_now() + rt->ready_timeout_s;
    ready_state st;
    hostkey hk;
    int rc;

    err[0] = '\0';
    if (!uuid_valid(s->id)) {
        snprintf(err, errlen, "invalid session id");
        return -1;
    }
    memset(&st, 0, sizeof(st));
    if (hostkey_generate(&hk, err, errlen) < 0)
        return -1;
    rc = start_objects(rt, s, &hk, &st, deadline, err, errlen);
    if (rc == 0) {
        snprintf(s->host_key, sizeof(s->host_key), "%s", hk.public_key);
        snprintf(s->host_key_fpr, sizeof(s->host_key_fpr), "%s",
                 hk.fingerprint);
    }
    hostkey_wipe(&hk);
    if (rc < 0)
        return -1;

    pod_name(s->id, name, sizeof(name));
    rc = wait_ready(rt, name, &st, deadline, err, errlen);
    if (rc == 1) {
        snprintf(s->endpoint, sizeof(s->endpoint),
                 strchr(st.ip, ':') ? "[%s]:22" : "%s:22", st.ip);
        return 0;
    }
    if (rc == 0)
        snprintf(err, errlen, "pod did not become ready within %ds%s%s%s",
                 rt->ready_timeout_s, st.why[0] ? " (" : "", st.why,
                 st.why[0] ? ")" : "");
    delete_both(rt, s->id);
    return -1;
}

static int k8s_destroy(runtime *rt, const char *session_id, char *err,
                       size_t errlen)
{
    char name[PICO_NAME_MAX + 16];

    if (!uuid_valid(session_id)) {
        snprintf(err, errlen, "invalid session id");
        return -1;
    }
    pod_name(session_id, name, sizeof(name));
    if (delete_object(rt, "pods", name, K8S_CALL_TIMEOUT_S, err, errlen) < 0)
        return -1;
    /* Garbage collection would remove it too, but not at once, and not
     * at all if the owner link was never made. */
    secret_name(session_id, name, sizeof(name));
    return delete_object(rt, "secrets", name, K8S_CALL_TIMEOUT_S, err, errlen);
}

static int k8s_alive(runtime *rt, const char *session_id)
{
    char name[PICO_NAME_MAX + 16], path[K8S_PATH_MAX], err[PICO_REASON_MAX];
    const char *phase;
    k8s_resp r;
    int rc;

    if (!uuid_valid(session_id))
        return -1;
    pod_name(session_id, name, sizeof(name));
    object_path(rt, "pods", name, path, sizeof(path));
    if (k8s_request(&rt->conn, "GET", path, NULL, NULL, K8S_CALL_TIMEOUT_S, &r,
                    err, sizeof(err)) < 0)
        return -1;
    if (r.status == 404) {
        rc = 0;
    } else if (r.status != 200) {
        rc = -1;
    } else {
        phase = jstr(json_object_get(r.body, "status"), "phase", NULL);
        rc = 1;
        if (json_object_get(json_object_get(r.body, "metadata"),
                            "deletionTimestamp") != NULL ||
            (phase &&
             (strcmp(phase, "Failed") == 0 || strcmp(phase, "Succeeded") == 0)))
            rc = 0;
    }
    k8s_resp_free(&r);
    return rc;
}

/* Session ids already reported by list() (pods first, then secrets). */
typedef struct {
    char (*ids)[PICO_ID_LEN + 1];
    size_t n, cap;
} id_set;

static int id_set_add(id_set *set, const char *id)
{
    size_t i;

    for (i = 0; i < set->n; i++)
        if (strcmp(set->ids[i], id) == 0)
            return 0;
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        void *p = realloc(set->ids, cap * sizeof(*set->ids));

        if (p == NULL)
            return 0;
        set->ids = p;
        set->cap = cap;
    }
    memcpy(set->ids[set->n++], id, PICO_ID_LEN + 1);
    return 1;
}

/* Pages through one kind's labelled objects, reporting new session ids. */
static int list_kind(runtime *rt, const char *kind, id_set *seen,
                     runtime_list_cb cb, void *arg, char *err, size_t errlen)
{
    char base[320], path[K8S_PATH_MAX * 2], cont[1024] = "";

    object_path(rt, kind, NULL, base, sizeof(base));
    do {
        const char *next;
        json_t *item;
        k8s_resp r;
        size_t i;

        snprintf(path, sizeof(path), "%s?labelSelector=%s&limit=%d%s%s", base,
                 K8S_SELECTOR, K8S_LIST_PAGE, cont[0] ? "&continue=" : "",
                 cont);
        if (k8s_request(&rt->conn, "GET", path, NULL, NULL, K8S_CALL_TIMEOUT_S,
                        &r, err, errlen) < 0)
            return -1;
        if (r.status != 200) {
            k8s_error(&r, "listing sandboxes", err, errlen);
            k8s_resp_free(&r);
            return -1;
        }
        json_array_foreach(json_object_get(r.body, "items"), i, item)
        {
            json_t *lb =
                json_object_get(json_object_get(item, "metadata"), "labels");
            const char *id =
                json_string_value(json_object_get(lb, "session-id"));

            if (id != NULL && uuid_valid(id) && id_set_add(seen, id))
                cb(id, arg);
        }
        next = jstr(r.body, "metadata", "continue");
        cont[0] = '\0';
        /* The token is opaque; only URL-safe ones are passed back. */
        if (next != NULL && strlen(next) < sizeof(cont) &&
            strspn(next, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                         "0123456789-_.~") == strlen(next))
            snprintf(cont, sizeof(cont), "%s", next);
        k8s_resp_free(&r);
    } while (cont[0]);
    return 0;
}

/* Pods, and Secrets too: a backend that died between making the Secret
 * and the Pod leaves a Secret no Pod owns. */
static int k8s_list(runtime *rt, runtime_list_cb cb, void *arg, char *err,
                    size_t errlen)
{
    id_set seen = {NULL, 0, 0};
    int rc;

    rc = list_kind(rt, "pods", &seen, cb, arg, err, errlen);
    if (rc == 0)
        rc = list_kind(rt, "secrets", &seen, cb, arg, err, errlen);
    free(seen.ids);
    return rc;
}

/* The API answers and lets us list pods in our namespace: the one thing
 * every call needs. */
static int k8s_health(runtime *rt, char *err, size_t errlen)
{
    char base[K8S_PATH_MAX], path[K8S_PATH_MAX * 2];
    k8s_resp r;
    int rc = 0;

    object_path(rt, "pods", NULL, base, sizeof(base));
    snprintf(path, sizeof(path), "%s?labelSelector=%s&limit=1", base,
             K8S_SELECTOR);
    if (k8s_request(&rt->conn, "GET", path, NULL, NULL, K8S_HEALTH_TIMEOUT_S,
                    &r, err, errlen) < 0)
        return -1;
    if (r.status != 200) {
        k8s_error(&r, "kubernetes API", err, errlen);
        rc = -1;
    }
    k8s_resp_free(&r);
    return rc;
}

const runtime_ops runtime_k8s_ops = {
    .name = "kubernetes",
    .open = k8s_open,
    .close = k8s_close,
    .image_exists = k8s_image_exists,
    .create = k8s_create,
    .destroy = k8s_destroy,
    .alive = k8s_alive,
    .list = k8s_list,
    .health = k8s_health,
};
