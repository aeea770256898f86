/*
 * k8s.h - what the files of the kubernetes runtime driver share: its
 * state, the names of a session's objects, and the functions one file of
 * runtime/kubernetes/ calls in another. Internal to the driver: main.c
 * picks it through runtime_k8s.h.
 *
 *   k8s.c         runtime_ops: open, create, destroy, alive, health
 *   k8s_pods.c    a session's Secret and Pod: names, objects, API calls
 *   k8s_netpol.c  a session's NetworkPolicy: its "network" as the cluster
 *                 enforces it
 *   k8s_ready.c   watching a new pod until it is Ready (or fails)
 *   k8s_list.c    list(): the sandboxes reconcile compares with Redis
 *   k8s_follow.c  watch(): every sandbox pod, for as long as pico serves
 *   k8s_client.c  the API server over libcurl (k8s_client.h)
 *   k8s_config.c  in-cluster service account or kubeconfig (k8s_client.h)
 */
#ifndef PICO_RUNTIME_K8S_INTERNAL_H
#define PICO_RUNTIME_K8S_INTERNAL_H

#include <stddef.h>
#include <jansson.h>
#include "core/session.h"
#include "runtime/hostkey.h"
#include "runtime/kubernetes/k8s_client.h"
#include "runtime/kubernetes/runtime_k8s.h"

#define K8S_CALL_TIMEOUT_S 30
/* Undoing a failed create must not wait as long as a call may. */
#define K8S_CLEANUP_TIMEOUT_S 10
#define K8S_HEALTH_TIMEOUT_S 5
#define K8S_LIST_PAGE 500
/* Fresh starts of a list whose continue token expired (410). */
#define K8S_LIST_RESTARTS 3
/* Backoff between failed watch / relist calls: doubling from the first
 * to the last, never past the create's deadline. */
#define K8S_BACKOFF_FIRST_MS 100
#define K8S_BACKOFF_MAX_MS 3200
/* The Secret's mount, and where the pod's start copies its keys: the
 * kubelet's secret volume is a mode-1777 tmpfs of symlinks, which sshd's
 * StrictModes refuses for authorized_keys (k8s_pods.c, start_script). */
#define K8S_SECRET_MOUNT "/etc/ssh/pico-secret"
#define K8S_KEYS_DIR "/etc/ssh/pico"
#define K8S_SELECTOR "managed-by%3Dpico-apiserver"
/* What deploy/k8s has for the registry until the operator names one. */
#define K8S_IMAGE_PLACEHOLDER "REGISTRY.example/"

typedef struct k8s_follower k8s_follower;

/* The driver's state: the API server connection and the configuration. */
struct runtime {
    k8s_follower *follower; /* the pod watch thread, or NULL */
    k8s_conn conn;
    char ns[128];
    char image_prefix[256];
    char runtime_class[254]; /* runtimeClassName, or "" */
    char egress_allow[2048]; /* egress_allow_cidrs, egress_deny_cidrs */
    char egress_deny[2048];
    int ready_timeout_s;
};

/* A new pod's readiness as the watch (k8s_ready.c) follows it. */
typedef struct {
    char rv[64];                /* last resourceVersion seen */
    char ip[64];                /* podIP once Ready */
    char uid[PICO_UID_MAX + 1]; /* the pod's, from the create */
    char why[160];              /* the pod's last reported trouble */
    int done;                   /* 1 ready, -1 failed for good */
    int gone;                   /* 410: re-list before watching again */
    int retry;        /* a transient ERROR event: pause, then watch again */
    int errors;       /* failed calls in a row, for the backoff */
    long retry_after; /* seconds the API server asked us to wait, or 0 */
    char fail[PICO_REASON_MAX];
} ready_state;

/* -- k8s_pods.c: a session's objects -------------------------------------- */
int dns_label_valid(const char *s);
int dns_subdomain_valid(const char *s);
void pod_name(const char *id, char *out, size_t outlen);
void secret_name(const char *id, char *out, size_t outlen);
void object_path(const runtime *rt, const char *kind, const char *name,
                 char *out, size_t outlen);
json_t *object_labels(const session *s);
json_t *secret_object(const runtime *rt, const session *s, const hostkey *hk);
json_t *pod_object(const runtime *rt, const session *s);
double mono_now(void);
long call_timeout(double deadline);
int delete_object(runtime *rt, const char *kind, const char *name,
                  long timeout_s, char *err, size_t errlen);
void delete_all(runtime *rt, const char *id);
json_t *create_object(runtime *rt, const char *kind, json_t *obj,
                      double deadline, char *err, size_t errlen);
int own_object(runtime *rt, const char *kind, const char *name,
               const session *s, const char *pod_uid, double deadline,
               char *err, size_t errlen);
int own_secret(runtime *rt, const session *s, const char *pod_uid,
               double deadline, char *err, size_t errlen);

/* -- k8s_netpol.c: a session's NetworkPolicy ------------------------------ */
void netpol_name(const char *id, char *out, size_t outlen);
json_t *netpol_object(const runtime *rt, const session *s);
int own_netpol(runtime *rt, const session *s, const char *pod_uid,
               double deadline, char *err, size_t errlen);

/* -- k8s_ready.c: readiness ----------------------------------------------- */
const char *jstr(json_t *o, const char *a, const char *b);
void judge_pod(ready_state *st, json_t *pod);
int wait_ready(runtime *rt, const char *name, ready_state *st, double deadline,
               char *err, size_t errlen);

/* -- k8s_list.c ----------------------------------------------------------- */
int k8s_list(runtime *rt, runtime_list_cb cb, void *arg, char *err,
             size_t errlen);

/* -- k8s_follow.c: the pod watch ---------------------------------------- */
int k8s_follow_start(runtime *rt, runtime_watch_cb cb, void *arg, char *err,
                     size_t errlen);
void k8s_follow_stop(runtime *rt);

#endif
