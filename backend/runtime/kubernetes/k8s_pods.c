/*
 * k8s_pods.c - a session's objects in the sandbox namespace: their names
 * (from the session id), the Secret (host key, authorized_keys) and the
 * Pod as JSON, and the create / patch / delete calls that make and remove
 * them (and the NetworkPolicy, k8s_netpol.c), each bounded by the
 * create's deadline. What create() does with
 * them, in order, is in k8s.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/config.h"
#include "core/util.h"
#include "runtime/kubernetes/k8s.h"

/* A DNS-1123 label: what a namespace name must be. */
int dns_label_valid(const char *s)
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

/* A DNS-1123 subdomain: what a RuntimeClass name must be. */
int dns_subdomain_valid(const char *s)
{
    char label[254];
    char *p, *save = NULL;
    size_t n = strlen(s);

    if (n == 0 || n > 253)
        return 0;
    memcpy(label, s, n + 1);
    if (label[0] == '.' || label[n - 1] == '.' || strstr(label, "..") != NULL)
        return 0;
    for (p = strtok_r(label, ".", &save); p != NULL;
         p = strtok_r(NULL, ".", &save))
        if (!dns_label_valid(p))
            return 0;
    return 1;
}

void pod_name(const char *id, char *out, size_t outlen)
{
    snprintf(out, outlen, "sandbox-%s", id);
}

void secret_name(const char *id, char *out, size_t outlen)
{
    snprintf(out, outlen, "sandbox-%s-ssh", id);
}

/* NetworkPolicies are in the networking.k8s.io group, the rest core. */
void object_path(const runtime *rt, const char *kind, const char *name,
                 char *out, size_t outlen)
{
    snprintf(out, outlen, "/%s/namespaces/%s/%s%s%s",
             strcmp(kind, "networkpolicies") == 0 ? "apis/networking.k8s.io/v1"
                                                  : "api/v1",
             rt->ns, kind, name ? "/" : "", name ? name : "");
}

json_t *object_labels(const session *s)
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

json_t *secret_object(const runtime *rt, const session *s, const hostkey *hk)
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
                      name, "namespace", rt->ns, "labels", object_labels(s),
                      "type", "Opaque", "data", "ssh_host_ed25519_key", key,
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

/*
 * The container's command: copy the keys out of the Secret volume into
 * the image's root-owned 0755 /etc/ssh/pico, then exec sshd with the
 * pod's args. sshd (StrictModes) refuses an authorized_keys reached
 * through a group- or world-writable folder, and the kubelet mounts a
 * Secret as a tmpfs whose top folder is 1777, the keys symlinks into
 * "..data". An emptyDir would not do either: its folder is 0777. The
 * copy needs no capability: root owns the target.
 */
static const char start_script[] =
    "set -eu; umask 022; "
    "install -d -m 0755 " K8S_KEYS_DIR "; "
    "install -m 0400 " K8S_SECRET_MOUNT "/ssh_host_ed25519_key " K8S_KEYS_DIR
    "/; "
    "install -m 0444 " K8S_SECRET_MOUNT "/authorized_keys " K8S_KEYS_DIR "/; "
    "exec /usr/sbin/sshd \"$@\"";

static json_t *container(const runtime *rt, const session *s)
{
    char image[PICO_IMAGE_MAX + 256 + 1];

    snprintf(image, sizeof(image), "%s%s", rt->image_prefix, s->image);
    /* sshd needs root to switch to the user, and only these capabilities
     * for it, the local runtime's set (docs/runtime-local.md) plus
     * NET_BIND_SERVICE, because here sshd binds port 22 itself: CHOWN
     * (pty ownership), SETUID and SETGID (become the user), SYS_CHROOT
     * (privilege separation), AUDIT_WRITE (sshd treats a refused login
     * audit record on a pty as fatal). No DAC_OVERRIDE, FOWNER or KILL:
     * sshd does not need them, and the start script's copy is root's
     * own files. No privilege escalation (no setuid binaries). */
    return json_pack(
        "{s:s, s:s, s:s, s:[s,s,s,s], s:[s,s], s:[{s:s, s:i, s:s}], "
        "s:{s:{s:i}, s:i, s:i, s:i}, "
        "s:o, s:{s:b, s:{s:[s], s:[s,s,s,s,s,s]}}, "
        "s:[{s:s, s:s, s:b}, {s:s, s:s}]}",
        "name", "sshd", "image", image, "imagePullPolicy", "IfNotPresent",
        "command", "/bin/sh", "-c", start_script, "pico-sshd", "args", "-D",
        "-e", "ports", "name", "ssh", "containerPort", 22, "protocol", "TCP",
        "readinessProbe", "tcpSocket", "port", 22, "periodSeconds", 1,
        "timeoutSeconds", 1, "failureThreshold", 3, "resources", resources(s),
        "securityContext", "allowPrivilegeEscalation", 0, "capabilities",
        "drop", "ALL", "add", "CHOWN", "SETUID", "SETGID", "SYS_CHROOT",
        "AUDIT_WRITE", "NET_BIND_SERVICE", "volumeMounts", "name", "ssh-keys",
        "mountPath", K8S_SECRET_MOUNT, "readOnly", 1, "name", "workspace",
        "mountPath", "/workspace");
}

json_t *pod_object(const runtime *rt, const session *s)
{
    char name[PICO_NAME_MAX + 16], secret[PICO_NAME_MAX + 16];
    json_t *pod;

    pod_name(s->id, name, sizeof(name));
    secret_name(s->id, secret, sizeof(secret));
    /* Host key 0400 for sshd (root) alone; authorized_keys 0444 because
     * sshd reads it as the user it authenticates. The start script
     * copies both with the same modes (start_script above). */
    pod = json_pack(
        "{s:s, s:s, s:{s:s, s:s, s:o}, s:{s:s, s:s, s:b, s:b, s:i, "
        "s:{s:{s:s}}, s:[o], s:[{s:s, s:{s:s, s:i, s:[{s:s, s:s, s:i}, "
        "{s:s, s:s, s:i}]}}, o]}}",
        "apiVersion", "v1", "kind", "Pod", "metadata", "name", name,
        "namespace", rt->ns, "labels", object_labels(s), "spec",
        "restartPolicy", "Never", "hostname", "sandbox",
        "automountServiceAccountToken", 0, "enableServiceLinks", 0,
        "terminationGracePeriodSeconds", 5, "securityContext", "seccompProfile",
        "type", "RuntimeDefault", "containers", container(rt, s), "volumes",
        "name", "ssh-keys", "secret", "secretName", secret, "defaultMode", 0400,
        "items", "key", "ssh_host_ed25519_key", "path", "ssh_host_ed25519_key",
        "mode", 0400, "key", "authorized_keys", "path", "authorized_keys",
        "mode", 0444, workspace_volume(s));
    /* gVisor, Kata...: a second wall around the sandbox, where the
     * cluster offers one (k8s_runtime_class). */
    if (pod != NULL && rt->runtime_class[0])
        json_object_set_new(json_object_get(pod, "spec"), "runtimeClassName",
                            json_string(rt->runtime_class));
    return pod;
}

double mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A call made for create() may take what is left of its deadline, so a
 * hanging API server fails the create in time (at least 1 s, at most
 * K8S_CALL_TIMEOUT_S). */
long call_timeout(double deadline)
{
    double left = deadline - mono_now();

    if (left < 1)
        return 1;
    return left > K8S_CALL_TIMEOUT_S ? K8S_CALL_TIMEOUT_S : (long)left + 1;
}

/* Deletes one object; a missing one is success. */
int delete_object(runtime *rt, const char *kind, const char *name,
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

/* The pod first: the policy goes only once nothing runs under it. */
void delete_all(runtime *rt, const char *id)
{
    char name[PICO_NAME_MAX + 16], err[PICO_REASON_MAX];

    pod_name(id, name, sizeof(name));
    delete_object(rt, "pods", name, K8S_CLEANUP_TIMEOUT_S, err, sizeof(err));
    secret_name(id, name, sizeof(name));
    delete_object(rt, "secrets", name, K8S_CLEANUP_TIMEOUT_S, err, sizeof(err));
    netpol_name(id, name, sizeof(name));
    delete_object(rt, "networkpolicies", name, K8S_CLEANUP_TIMEOUT_S, err,
                  sizeof(err));
}

/* POSTs obj (and releases it); on 201 returns the created object, which
 * the caller releases. */
json_t *create_object(runtime *rt, const char *kind, json_t *obj,
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
                 strcmp(kind, "pods") == 0      ? "pod"
                 : strcmp(kind, "secrets") == 0 ? "secret"
                                                : "network policy");
        k8s_error(&r, what, err, errlen);
    }
    k8s_resp_free(&r);
    if (out == NULL && err[0] == '\0')
        snprintf(err, errlen, "creating the %s: no object in the answer", kind);
    return out;
}

/* Makes the Pod the owner of a session's object (merge patch of
 * ownerReferences). */
int own_object(runtime *rt, const char *kind, const char *name,
               const session *s, const char *pod_uid, double deadline,
               char *err, size_t errlen)
{
    char pod[PICO_NAME_MAX + 16], path[K8S_PATH_MAX], what[96];
    json_t *patch;
    k8s_resp r;
    int rc = 0;

    pod_name(s->id, pod, sizeof(pod));
    object_path(rt, kind, name, path, sizeof(path));
    patch = json_pack("{s:{s:[{s:s, s:s, s:s, s:s}]}}", "metadata",
                      "ownerReferences", "apiVersion", "v1", "kind", "Pod",
                      "name", pod, "uid", pod_uid);
    if (k8s_request(&rt->conn, "PATCH", path, "application/merge-patch+json",
                    patch, call_timeout(deadline), &r, err, errlen) < 0) {
        json_decref(patch);
        return -1;
    }
    if (r.status != 200) {
        snprintf(what, sizeof(what), "making the pod own its %s",
                 strcmp(kind, "secrets") == 0 ? "secret" : "network policy");
        k8s_error(&r, what, err, errlen);
        rc = -1;
    }
    k8s_resp_free(&r);
    json_decref(patch);
    return rc;
}

int own_secret(runtime *rt, const session *s, const char *pod_uid,
               double deadline, char *err, size_t errlen)
{
    char name[PICO_NAME_MAX + 16];

    secret_name(s->id, name, sizeof(name));
    return own_object(rt, "secrets", name, s, pod_uid, deadline, err, errlen);
}
