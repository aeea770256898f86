/*
 * k8s.c - the "kubernetes" runtime driver: one pod per session.
 *
 * create() makes, in the sandbox namespace (k8s_namespace):
 *   1. Secret sandbox-<id>-ssh: the session's ed25519 host key and the
 *      user's authorized_keys. Keys never travel in env vars or the pod
 *      spec; the pod mounts the Secret read-only at /etc/ssh/pico-secret
 *      and its command copies the keys to /etc/ssh/pico, where the
 *      image's sshd_config (deploy/sandbox/sshd_config) looks.
 *   2. NetworkPolicy sandbox-<id>: the session's "network" (k8s_netpol.c),
 *      before the pod, so the pod never runs without it.
 *   3. Pod sandbox-<id>: the sandbox image, sshd on 22, a tcpSocket
 *      readiness probe, the session's limits as requests and limits.
 *   4. The Secret's and the policy's ownerReference to the Pod (its uid
 *      is known only now), so the garbage collector removes them with
 *      the Pod even if pico never gets to; destroy() still deletes all
 *      three itself.
 * and then watches the pod until it is Ready (endpoint "<podIP>:22") or
 * k8s_ready_timeout_s passes. Whatever fails, everything made is deleted
 * before create() returns.
 *
 * Every name and label value is derived from the session id, a canonical
 * UUID the core has validated (checked again here: it ends up in URLs).
 * Objects carry the labels app.kubernetes.io/managed-by=pico,
 * managed-by=pico-apiserver, session-id=<id> and sandbox=<sandbox_name>;
 * list() finds them by label for reconcile.
 *
 * This file is the driver's entry (runtime_ops); k8s.h lists the other
 * files of runtime/kubernetes/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "core/config.h"
#include "core/util.h"
#include "runtime/kubernetes/k8s.h"

/*
 * The registry must be named: "pico/" (the old default) or any prefix
 * whose first part has no '.' or ':' and is not localhost is a Docker
 * Hub account, which pico does not control, so whoever holds that name
 * would choose what every sandbox runs. The manifests' placeholder must
 * have been replaced. "" is allowed (tests, images preloaded on nodes).
 */
static int image_prefix_ok(const char *prefix, char *err, size_t errlen)
{
    size_t first = strcspn(prefix, "/");

    if (strstr(prefix, K8S_IMAGE_PLACEHOLDER) != NULL) {
        snprintf(err, errlen,
                 "k8s_image_prefix is still the placeholder \"%s\": name "
                 "your registry (docs/kubernetes.md, Deploy)",
                 prefix);
        return -1;
    }
    if (prefix[0] == '\0')
        return 0;
    if (prefix[first] != '/' || (memchr(prefix, '.', first) == NULL &&
                                 memchr(prefix, ':', first) == NULL &&
                                 strncmp(prefix, "localhost/", 10) != 0)) {
        snprintf(err, errlen,
                 "k8s_image_prefix \"%s\" names no registry, so images "
                 "would come from that account on Docker Hub: write "
                 "\"registry.example.com/pico/\" (or \"docker.io/%s\" if "
                 "that account is yours)",
                 prefix, prefix);
        return -1;
    }
    return 0;
}

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
    if (image_prefix_ok(cfg->k8s_image_prefix, err, errlen) < 0)
        return NULL;
    if (cfg->k8s_runtime_class[0] &&
        !dns_subdomain_valid(cfg->k8s_runtime_class)) {
        snprintf(err, errlen,
                 "k8s_runtime_class \"%s\" is not a valid RuntimeClass name",
                 cfg->k8s_runtime_class);
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
    snprintf(rt->runtime_class, sizeof(rt->runtime_class), "%s",
             cfg->k8s_runtime_class);
    snprintf(rt->egress_allow, sizeof(rt->egress_allow), "%s",
             cfg->egress_allow_cidrs);
    snprintf(rt->egress_deny, sizeof(rt->egress_deny), "%s",
             cfg->egress_deny_cidrs);
    rt->ready_timeout_s =
        cfg->k8s_ready_timeout_s > 0 ? cfg->k8s_ready_timeout_s : 120;
    return rt;
}

static void k8s_close(runtime *rt)
{
    if (rt == NULL)
        return;
    k8s_follow_stop(rt);
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

/* Secret, then the policy, then Pod, then the owner links; on failure
 * undoes what exists. */
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
    created = create_object(rt, "networkpolicies", netpol_object(rt, s),
                            deadline, err, errlen);
    if (created == NULL) {
        delete_all(rt, s->id);
        return -1;
    }
    json_decref(created);
    created =
        create_object(rt, "pods", pod_object(rt, s), deadline, err, errlen);
    if (created == NULL) {
        delete_all(rt, s->id);
        return -1;
    }
    uid = jstr(created, "metadata", "uid");
    rv = jstr(created, "metadata", "resourceVersion");
    if (uid == NULL || rv == NULL) {
        snprintf(err, errlen, "the created pod has no uid/resourceVersion");
        json_decref(created);
        delete_all(rt, s->id);
        return -1;
    }
    snprintf(st->rv, sizeof(st->rv), "%s", rv);
    snprintf(st->uid, sizeof(st->uid), "%s", uid);
    judge_pod(st, created);
    if (own_secret(rt, s, uid, deadline, err, errlen) < 0 ||
        own_netpol(rt, s, uid, deadline, err, errlen) < 0) {
        json_decref(created);
        delete_all(rt, s->id);
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
        snprintf(s->sandbox_uid, sizeof(s->sandbox_uid), "%s", st.uid);
        return 0;
    }
    if (rc == 0)
        snprintf(err, errlen, "pod did not become ready within %ds%s%s%s",
                 rt->ready_timeout_s, st.why[0] ? " (" : "", st.why,
                 st.why[0] ? ")" : "");
    delete_all(rt, s->id);
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
    if (delete_object(rt, "secrets", name, K8S_CALL_TIMEOUT_S, err, errlen) < 0)
        return -1;
    netpol_name(session_id, name, sizeof(name));
    return delete_object(rt, "networkpolicies", name, K8S_CALL_TIMEOUT_S, err,
                         errlen);
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
    /* pod, secret, network policy */
    .destroy_max_ms = 3LL * K8S_CALL_TIMEOUT_S * 1000,
    .alive = k8s_alive,
    .list = k8s_list,
    .health = k8s_health,
    .watch = k8s_follow_start,
};
